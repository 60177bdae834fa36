//! Which namespaces may use a ClusterSecretStore (`spec.conditions`), with Kubernetes label selectors.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use regex::Regex;
use sealant_crds::ClusterSecretStoreCondition;

/// A condition that cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    #[error("namespaceRegexes: `{0}` is not a regular expression")]
    BadRegex(String),
    #[error("namespaceSelector: unknown operator `{0}` (use In, NotIn, Exists or DoesNotExist)")]
    BadOperator(String),
}

/// True when `selector` selects an object with `labels`.
pub fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> Result<bool, AdmissionError> {
    if let Some(ml) = &selector.match_labels
        && !ml.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return Ok(false);
    }
    for expr in selector.match_expressions.iter().flatten() {
        let value = labels.get(&expr.key);
        let values = expr.values.as_deref().unwrap_or_default();
        let ok = match expr.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            other => return Err(AdmissionError::BadOperator(other.to_owned())),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// True when a namespace may use a ClusterSecretStore with these conditions: no conditions admit every
/// namespace; otherwise any one condition must admit it (by name list, name regex, or label selector).
pub fn admitted(
    conditions: &[ClusterSecretStoreCondition],
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Result<bool, AdmissionError> {
    if conditions.is_empty() {
        return Ok(true);
    }
    for c in conditions {
        if c.namespaces.iter().any(|n| n == namespace) {
            return Ok(true);
        }
        for re in &c.namespace_regexes {
            let r = Regex::new(re).map_err(|_| AdmissionError::BadRegex(re.clone()))?;
            if r.is_match(namespace) {
                return Ok(true);
            }
        }
        if let Some(sel) = &c.namespace_selector
            && selects(sel, labels)?
        {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn label_selectors() {
        let team = labels(&[("team", "shop"), ("env", "prod")]);
        let sel = LabelSelector {
            match_labels: Some(labels(&[("team", "shop")])),
            match_expressions: None,
        };
        assert!(selects(&sel, &team).unwrap());
        assert!(!selects(&sel, &labels(&[("team", "ops")])).unwrap());
        let sel = LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![
                expr("env", "In", &["prod", "stage"]),
                expr("tier", "DoesNotExist", &[]),
            ]),
        };
        assert!(selects(&sel, &team).unwrap());
        assert!(!selects(&sel, &labels(&[("env", "dev")])).unwrap());
        let sel = LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![expr("env", "NotIn", &["prod"])]),
        };
        assert!(!selects(&sel, &team).unwrap());
        assert!(selects(&sel, &labels(&[])).unwrap());
        let sel = LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![expr("env", "Near", &[])]),
        };
        assert!(selects(&sel, &team).is_err());
    }

    #[test]
    fn conditions_admit_by_name_regex_or_labels() {
        let none = labels(&[]);
        assert!(admitted(&[], "anything", &none).unwrap());
        let by_name = ClusterSecretStoreCondition {
            namespaces: vec!["shop".into()],
            ..Default::default()
        };
        let by_regex = ClusterSecretStoreCondition {
            namespace_regexes: vec!["^team-".into()],
            ..Default::default()
        };
        let by_label = ClusterSecretStoreCondition {
            namespace_selector: Some(LabelSelector {
                match_labels: Some(labels(&[("secrets", "allowed")])),
                match_expressions: None,
            }),
            ..Default::default()
        };
        let all = [by_name, by_regex, by_label];
        assert!(admitted(&all, "shop", &none).unwrap());
        assert!(admitted(&all, "team-a", &none).unwrap());
        assert!(admitted(&all, "other", &labels(&[("secrets", "allowed")])).unwrap());
        assert!(!admitted(&all, "other", &none).unwrap());
        assert!(!admitted(&all, "shop-2", &none).unwrap(), "names match exactly");
        let broken = [ClusterSecretStoreCondition {
            namespace_regexes: vec!["(".into()],
            ..Default::default()
        }];
        assert!(admitted(&broken, "x", &none).is_err());
    }
}
