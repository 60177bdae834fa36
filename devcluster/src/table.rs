//! `meta.k8s.io/v1 Table` rendering for `kubectl get` (`Accept: application/json;as=Table`).

use serde_json::{Value, json};

use crate::util::now_unix;

/// Whether the Accept header asks for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
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

fn row(obj: &Value, include: &str) -> Value {
    let meta = &obj["metadata"];
    let cells = json!([
        meta["name"],
        age(meta["creationTimestamp"].as_str().unwrap_or_default())
    ]);
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

/// A Table of `objs` with Name and Age columns.
pub fn table(objs: &[Value], meta: Value, include: &str, with_columns: bool) -> Value {
    let columns = if with_columns {
        json!([
            {"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0},
            {"name": "Age", "type": "string", "format": "", "description": "CreationTimestamp is a timestamp representing the server time when this object was created.", "priority": 0},
        ])
    } else {
        json!([])
    };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": columns,
        "rows": objs.iter().map(|o| row(o, include)).collect::<Vec<_>>(),
    })
}
