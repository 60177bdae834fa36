//! `meta.k8s.io/v1 Table` rendering for `kubectl get` (`Accept: application/json;as=Table`).
//! Columns are Name and Age, or Name plus a CRD version's `additionalPrinterColumns`.

use serde_json::{Value, json};

use crate::resources::ResourceInfo;
use crate::util::now_unix;

/// Whether the Accept header asks for a Table.
pub fn wants_table(accept: &str) -> bool {
    shape(accept) == Shape::Table
}

/// The representation a client asked for in its Accept header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The objects themselves.
    Full,
    /// `meta.k8s.io/v1 Table`.
    Table,
    /// `meta.k8s.io/v1 PartialObjectMetadata(List)` (kube-rs `metadata_watcher`, `get_metadata`).
    Metadata,
}

/// Parses the first (preferred) media type of an Accept header.
pub fn shape(accept: &str) -> Shape {
    let first = accept.split(',').next().unwrap_or_default();
    if first.contains("as=Table") {
        Shape::Table
    } else if first.contains("as=PartialObjectMetadata") {
        Shape::Metadata
    } else {
        Shape::Full
    }
}

/// An object as `PartialObjectMetadata`.
pub fn partial(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]})
}

/// A list (or a single object) as `PartialObjectMetadataList` / `PartialObjectMetadata`.
pub fn partial_response(v: &Value) -> Value {
    match v.get("items").and_then(Value::as_array) {
        Some(items) => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": v["metadata"],
            "items": items.iter().map(partial).collect::<Vec<_>>(),
        }),
        None => partial(v),
    }
}

fn age(ts: &str) -> String {
    let Ok(t) = ts.parse::<jiff::Timestamp>() else {
        return "<unknown>".into();
    };
    let secs = (now_unix() - t.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 3600 * 2 => format!("{}m", s / 60),
        s if s < 86400 * 2 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// Evaluates the JSONPath subset printer columns use: `.a.b`, `.a[0]`, `.a[*].b`,
/// `.a[?(@.type=="Ready")].status`. Returns every match.
pub fn json_path(obj: &Value, path: &str) -> Vec<Value> {
    let path = path
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim_start_matches('$');
    let mut cur = vec![obj.clone()];
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let key = &r[..end];
            cur = cur.iter().filter_map(|v| v.get(key).cloned()).collect();
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else { return Vec::new() };
            let sel = &r[..end];
            rest = &r[end + 1..];
            let items: Vec<Value> = cur
                .iter()
                .filter_map(|v| v.as_array().cloned())
                .flatten()
                .collect();
            cur = if sel == "*" {
                items
            } else if let Ok(i) = sel.parse::<usize>() {
                items.get(i).cloned().into_iter().collect()
            } else if let Some(f) = sel.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let Some((k, v)) = f.split_once("==") else {
                    return Vec::new();
                };
                let want = v.trim().trim_matches(|c| c == '"' || c == '\'');
                items
                    .into_iter()
                    .filter(|i| i.get(k.trim()).and_then(Value::as_str) == Some(want))
                    .collect()
            } else {
                return Vec::new();
            };
        } else {
            return Vec::new();
        }
    }
    cur
}

fn cell(v: &[Value], col_type: &str) -> Value {
    match v {
        [] => Value::Null,
        [one] if col_type == "date" => json!(age(one.as_str().unwrap_or_default())),
        [one] => one.clone(),
        many => json!(
            many.iter()
                .map(|x| x.as_str().map(String::from).unwrap_or_else(|| x.to_string()))
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

/// Evaluates a printer-column path; besides JSONPath, devcluster's built-in columns use
/// `len(PATH)` (entries of a map or list) and `ref(PATH)` (`kind/name` of an object reference).
fn column_value(obj: &Value, path: &str) -> Vec<Value> {
    if let Some(inner) = path.strip_prefix("len(").and_then(|p| p.strip_suffix(')')) {
        let n = json_path(obj, inner).first().map_or(0, |v| match v {
            Value::Object(m) => m.len(),
            Value::Array(a) => a.len(),
            _ => 0,
        });
        return vec![json!(n)];
    }
    if let Some(inner) = path.strip_prefix("ref(").and_then(|p| p.strip_suffix(')')) {
        return json_path(obj, inner)
            .first()
            .map(|r| {
                let kind = r["kind"].as_str().unwrap_or_default().to_lowercase();
                json!(format!("{kind}/{}", r["name"].as_str().unwrap_or_default()))
            })
            .into_iter()
            .collect();
    }
    json_path(obj, path)
}

/// Whether the kind's columns place Name themselves (Events show it only with `-o wide`).
fn explicit_name(info: &ResourceInfo) -> bool {
    info.crd.is_none() && info.printer_columns.iter().any(|c| c["name"] == "Name")
}

fn row(obj: &Value, include: &str, info: &ResourceInfo) -> Value {
    let meta = &obj["metadata"];
    let mut cells = if explicit_name(info) {
        Vec::new()
    } else {
        vec![meta["name"].clone()]
    };
    if info.printer_columns.is_empty() {
        cells.push(json!(age(meta["creationTimestamp"].as_str().unwrap_or_default())));
    } else {
        for c in &info.printer_columns {
            let ty = c["type"].as_str().unwrap_or("string");
            cells.push(cell(
                &column_value(obj, c["jsonPath"].as_str().unwrap_or_default()),
                ty,
            ));
        }
    }
    match include {
        "None" => json!({"cells": cells}),
        "Object" => json!({"cells": cells, "object": obj}),
        _ => {
            let mut m = meta.clone();
            if let Some(mm) = m.as_object_mut() {
                mm.remove("managedFields");
            }
            json!({"cells": cells, "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": m}})
        }
    }
}

/// A Table of `objs`.
pub fn table(objs: &[Value], meta: Value, include: &str, info: &ResourceInfo) -> Value {
    let mut columns = Vec::new();
    if !explicit_name(info) {
        columns.push(json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}));
    }
    if info.printer_columns.is_empty() {
        columns.push(json!({"name": "Age", "type": "string", "format": "", "description": "CreationTimestamp is a timestamp representing the server time when this object was created.", "priority": 0}));
    } else {
        for c in &info.printer_columns {
            columns.push(json!({
                "name": c["name"], "type": if c["type"] == "date" { json!("string") } else { c["type"].clone() },
                "format": c.get("format").cloned().unwrap_or(json!("")),
                "description": c.get("description").cloned().unwrap_or(json!("")),
                "priority": c.get("priority").cloned().unwrap_or(json!(0)),
            }));
        }
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": columns,
        "rows": objs.iter().map(|o| row(o, include, info)).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_column_functions() {
        let o = json!({"data": {"a": "1", "b": "2"}, "involvedObject": {"kind": "Secret", "name": "s"}});
        assert_eq!(column_value(&o, "len(.data)"), vec![json!(2)]);
        assert_eq!(column_value(&o, "len(.missing)"), vec![json!(0)]);
        assert_eq!(column_value(&o, "ref(.involvedObject)"), vec![json!("secret/s")]);
    }

    #[test]
    fn json_paths() {
        let o = json!({"spec": {"a": [1, 2]}, "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "X", "status": "False"}]}});
        assert_eq!(json_path(&o, ".spec.a[1]"), vec![json!(2)]);
        assert_eq!(
            json_path(&o, ".status.conditions[?(@.type==\"Ready\")].status"),
            vec![json!("True")]
        );
        assert_eq!(
            json_path(&o, ".status.conditions[*].type"),
            vec![json!("Ready"), json!("X")]
        );
        assert!(json_path(&o, ".nope.x").is_empty());
    }
}
