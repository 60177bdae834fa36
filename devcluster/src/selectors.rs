//! Label and field selectors.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::errors::ApiError;
use crate::util::{get_path, scalar_string};

/// One label requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelReq {
    Eq(String, String),
    NotEq(String, String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector.
#[derive(Debug, Clone, Default)]
pub struct LabelSelector(Vec<LabelReq>);

fn split_top_level(s: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    parts.push(cur);
    parts
        .into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 317
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn parse_set(s: &str) -> Option<BTreeSet<String>> {
    let inner = s.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect(),
    )
}

impl LabelSelector {
    /// Parses `a=b,c!=d,e in (x,y),!f,g`.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let bad = |p: &str| {
            ApiError::bad_request(format!(
                "unable to parse requirement: invalid label selector: {p:?}"
            ))
        };
        let mut reqs = Vec::new();
        for part in split_top_level(s) {
            let req = if let Some(k) = part.strip_prefix('!') {
                LabelReq::NotExists(k.trim().to_string())
            } else if let Some((k, v)) = part.split_once("!=") {
                LabelReq::NotEq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once("==") {
                LabelReq::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once('=') {
                LabelReq::Eq(k.trim().into(), v.trim().into())
            } else if let Some(idx) = part.find(" notin ") {
                LabelReq::NotIn(
                    part[..idx].trim().into(),
                    parse_set(&part[idx + 7..]).ok_or_else(|| bad(&part))?,
                )
            } else if let Some(idx) = part.find(" in ") {
                LabelReq::In(
                    part[..idx].trim().into(),
                    parse_set(&part[idx + 4..]).ok_or_else(|| bad(&part))?,
                )
            } else {
                LabelReq::Exists(part.trim().to_string())
            };
            let key = match &req {
                LabelReq::Eq(k, _)
                | LabelReq::NotEq(k, _)
                | LabelReq::In(k, _)
                | LabelReq::NotIn(k, _)
                | LabelReq::Exists(k)
                | LabelReq::NotExists(k) => k,
            };
            if !valid_key(key) {
                return Err(bad(&part));
            }
            reqs.push(req);
        }
        Ok(Self(reqs))
    }

    /// Whether the object's labels match.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.get("metadata").and_then(|m| m.get("labels"));
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            LabelReq::Eq(k, v) => get(k) == Some(v.as_str()),
            LabelReq::NotEq(k, v) => get(k) != Some(v.as_str()),
            LabelReq::In(k, set) => get(k).is_some_and(|x| set.contains(x)),
            LabelReq::NotIn(k, set) => get(k).is_none_or(|x| !set.contains(x)),
            LabelReq::Exists(k) => get(k).is_some(),
            LabelReq::NotExists(k) => get(k).is_none(),
        })
    }

    /// Matches a selector given as a `matchLabels` map.
    pub fn from_match_labels(labels: &serde_json::Map<String, Value>) -> Self {
        Self(
            labels
                .iter()
                .map(|(k, v)| LabelReq::Eq(k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect(),
        )
    }
}

/// A parsed field selector (`metadata.name=x,type!=y`).
#[derive(Debug, Clone, Default)]
pub struct FieldSelector(Vec<(String, bool, String)>);

/// Fields a resource supports in field selectors, beyond metadata.name/metadata.namespace.
fn extra_fields(resource: &str) -> &'static [&'static str] {
    match resource {
        "secrets" => &["type"],
        "events" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
            "regarding.name",
            "regarding.kind",
            "regarding.namespace",
            "regarding.uid",
            "reportingController",
            "note",
        ],
        "namespaces" => &["status.phase"],
        "pods" => &["spec.nodeName", "status.phase"],
        _ => &[],
    }
}

impl FieldSelector {
    /// Parses a field selector for the given resource; unsupported fields are a 400 like the real server.
    pub fn parse(s: &str, resource: &str) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, neg, v) = if let Some((k, v)) = part.split_once("!=") {
                (k, true, v)
            } else if let Some((k, v)) = part.split_once("==") {
                (k, false, v)
            } else if let Some((k, v)) = part.split_once('=') {
                (k, false, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{part}'; can't understand '{part}'"
                )));
            };
            let k = k.trim();
            if k != "metadata.name" && k != "metadata.namespace" && !extra_fields(resource).contains(&k) {
                return Err(ApiError::bad_request(format!("field label not supported: {k}")));
            }
            reqs.push((k.to_string(), neg, v.trim().to_string()));
        }
        Ok(Self(reqs))
    }

    /// Whether the object matches.
    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(k, neg, v)| {
            let actual = get_path(obj, k).map(scalar_string).unwrap_or_default();
            (actual == *v) != *neg
        })
    }

    /// Renames field paths (`from` prefix to `to` prefix), for versions stored in another shape.
    #[must_use]
    pub fn renamed(mut self, pairs: &[(&str, &str)]) -> Self {
        for (k, _, _) in &mut self.0 {
            for (from, to) in pairs {
                if k == from {
                    *k = (*to).to_string();
                } else if let Some(rest) = k.strip_prefix(&format!("{from}.")) {
                    *k = format!("{to}.{rest}");
                }
            }
        }
        self
    }

    /// The exact `metadata.name` this selector pins, if any.
    pub fn pinned_name(&self) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, neg, _)| k == "metadata.name" && !neg)
            .map(|(_, _, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors() {
        let o = json!({"metadata": {"labels": {"app": "a", "tier": "web"}}});
        assert!(LabelSelector::parse("app=a").unwrap().matches(&o));
        assert!(!LabelSelector::parse("app!=a").unwrap().matches(&o));
        assert!(LabelSelector::parse("app in (a, b),tier").unwrap().matches(&o));
        assert!(!LabelSelector::parse("app notin (a)").unwrap().matches(&o));
        assert!(LabelSelector::parse("!missing").unwrap().matches(&o));
        assert!(!LabelSelector::parse("missing").unwrap().matches(&o));
        assert!(LabelSelector::parse("a b c").is_err());
    }

    #[test]
    fn field_selectors() {
        let o = json!({"metadata": {"name": "x", "namespace": "n"}, "type": "Opaque"});
        assert!(
            FieldSelector::parse("metadata.name=x", "secrets")
                .unwrap()
                .matches(&o)
        );
        assert!(FieldSelector::parse("type!=tls", "secrets").unwrap().matches(&o));
        assert!(
            !FieldSelector::parse("metadata.namespace==m", "secrets")
                .unwrap()
                .matches(&o)
        );
        assert!(FieldSelector::parse("spec.foo=x", "secrets").is_err());
    }
}
