//! Structural-schema handling for custom resources: pruning of unknown fields, defaulting, and
//! the common OpenAPI v3 validations (type, nullable, required, enum, bounds, lengths, pattern).

use serde_json::{Map, Value, json};

/// Field errors: `(path, message)`.
pub type FieldErrors = Vec<(String, String)>;

/// What processing found: validation errors and the paths of pruned (unknown) fields.
#[derive(Debug, Default)]
pub struct Report {
    /// Validation errors.
    pub errors: FieldErrors,
    /// Unknown fields that were dropped.
    pub pruned: Vec<String>,
}

impl std::ops::Deref for Report {
    type Target = FieldErrors;
    fn deref(&self) -> &FieldErrors {
        &self.errors
    }
}

impl std::ops::DerefMut for Report {
    fn deref_mut(&mut self) -> &mut FieldErrors {
        &mut self.errors
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 64 {
        format!(
            "{}...",
            &s[..s.char_indices().nth(60).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s
    }
}

/// Prunes, defaults and validates `obj` (a whole custom resource) against `schema`.
pub fn process(schema: &Value, obj: &mut Value) -> Report {
    let mut errs = Report::default();
    let Some(root) = obj.as_object_mut() else {
        errs.push((String::new(), "Invalid value: must be an object".into()));
        return errs;
    };
    let props = schema.get("properties").and_then(Value::as_object);
    let preserve = schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true);
    // defaults for top-level fields
    if let Some(p) = props {
        for (k, s) in p {
            if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            if !root.contains_key(k)
                && let Some(d) = s.get("default")
            {
                root.insert(k.clone(), d.clone());
            }
        }
    }
    let keys: Vec<String> = root.keys().cloned().collect();
    for k in keys {
        if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        match props.and_then(|p| p.get(&k)) {
            Some(s) => {
                if let Some(v) = root.get_mut(&k) {
                    walk(s, v, &k, &mut errs);
                }
            }
            None if preserve => {}
            None => {
                root.remove(&k);
                errs.pruned.push(k.clone());
            }
        }
    }
    if let Some(req) = schema.get("required").and_then(Value::as_array) {
        for r in req.iter().filter_map(Value::as_str) {
            if !root.contains_key(r) {
                errs.push((r.to_string(), "Required value".into()));
            }
        }
    }
    errs
}

fn walk(schema: &Value, v: &mut Value, path: &str, errs: &mut Report) {
    if v.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) != Some(true) && schema.get("type").is_some() {
            errs.push((
                path.into(),
                format!(
                    "Invalid value: \"null\": {path} in body must be of type {}: \"null\"",
                    schema["type"].as_str().unwrap_or("object")
                ),
            ));
        }
        return;
    }
    let int_or_string = schema.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true);
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        let actual = type_name(v);
        let ok = actual == t || (t == "number" && actual == "integer");
        if !ok {
            errs.push((
                path.into(),
                format!("Invalid value: \"{actual}\": {path} in body must be of type {t}: \"{actual}\""),
            ));
            return;
        }
    } else if int_or_string && !matches!(type_name(v), "integer" | "string") {
        errs.push((
            path.into(),
            format!(
                "Invalid value: {}: {path} in body must be of type integer-or-string",
                short(v)
            ),
        ));
        return;
    }
    if let Some(en) = schema.get("enum").and_then(Value::as_array)
        && !en.contains(v)
    {
        let supported: Vec<String> = en.iter().map(|e| e.to_string()).collect();
        errs.push((
            path.into(),
            format!(
                "Unsupported value: {}: supported values: {}",
                short(v),
                supported.join(", ")
            ),
        ));
    }
    match v {
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or_default();
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
                && x < min
            {
                errs.push((
                    path.into(),
                    format!("Invalid value: {n}: {path} in body should be greater than or equal to {min}"),
                ));
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
                && x > max
            {
                errs.push((
                    path.into(),
                    format!("Invalid value: {n}: {path} in body should be less than or equal to {max}"),
                ));
            }
        }
        Value::String(s) => {
            let len = s.chars().count() as u64;
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
                && len < min
            {
                errs.push((
                    path.into(),
                    format!(
                        "Invalid value: {}: {path} in body should be at least {min} chars long",
                        short(&json!(s))
                    ),
                ));
            }
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                && len > max
            {
                errs.push((path.into(), format!("Too long: may not be more than {max} bytes")));
            }
            if let Some(p) = schema.get("pattern").and_then(Value::as_str)
                && let Ok(re) = regex::Regex::new(p)
                && !re.is_match(s)
            {
                errs.push((
                    path.into(),
                    format!(
                        "Invalid value: {}: {path} in body should match '{p}'",
                        short(&json!(s))
                    ),
                ));
            }
        }
        Value::Array(items) => {
            let n = items.len() as u64;
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && n < min
            {
                errs.push((
                    path.into(),
                    format!("Invalid value: {n}: {path} in body should have at least {min} items"),
                ));
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && n > max
            {
                errs.push((
                    path.into(),
                    format!("Too many: {n}: must have at most {max} items"),
                ));
            }
            if let Some(is) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    walk(is, item, &format!("{path}[{i}]"), errs);
                }
            }
        }
        Value::Object(m) => walk_object(schema, m, path, errs),
        _ => {}
    }
}

fn walk_object(schema: &Value, m: &mut Map<String, Value>, path: &str, errs: &mut Report) {
    let props = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    let preserve = schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
        || schema.get("additionalProperties").and_then(Value::as_bool) == Some(true);
    let embedded = schema
        .get("x-kubernetes-embedded-resource")
        .and_then(Value::as_bool)
        == Some(true);
    if let Some(p) = props {
        for (k, s) in p {
            if !m.contains_key(k)
                && let Some(d) = s.get("default")
            {
                m.insert(k.clone(), d.clone());
            }
        }
    }
    let keys: Vec<String> = m.keys().cloned().collect();
    for k in keys {
        let child = join(path, &k);
        let sub = props.and_then(|p| p.get(&k)).or(additional);
        match sub {
            Some(s) => {
                if let Some(v) = m.get_mut(&k) {
                    walk(s, v, &child, errs);
                }
            }
            None if preserve || (embedded && matches!(k.as_str(), "apiVersion" | "kind" | "metadata")) => {}
            None if props.is_none() && schema.get("type").is_none() => {}
            None => {
                m.remove(&k);
                errs.pruned.push(child.clone());
            }
        }
    }
    if let Some(req) = schema.get("required").and_then(Value::as_array) {
        for r in req.iter().filter_map(Value::as_str) {
            if !m.contains_key(r) {
                errs.push((join(path, r), "Required value".into()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["size"], "properties": {
                "size": {"type": "integer", "minimum": 1, "maximum": 10},
                "mode": {"type": "string", "enum": ["a", "b"], "default": "a"},
                "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "items": {"type": "array", "maxItems": 2, "items": {"type": "object", "properties": {"k": {"type": "string"}}}}
            }},
            "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}
        }})
    }

    #[test]
    fn prunes_and_defaults() {
        let mut o = json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a"}, "junk": 1,
            "spec": {"size": 2, "extra": true, "labels": {"a": "b"}, "free": {"any": {"thing": 1}}, "items": [{"k": "v", "drop": 1}]}});
        let r = process(&schema(), &mut o);
        assert!(r.is_empty());
        assert_eq!(
            r.pruned,
            vec![
                "junk".to_string(),
                "spec.extra".to_string(),
                "spec.items[0].drop".to_string()
            ]
        );
        assert!(o.get("junk").is_none());
        assert!(o["spec"].get("extra").is_none());
        assert_eq!(o["spec"]["mode"], "a");
        assert_eq!(o["spec"]["free"]["any"]["thing"], 1);
        assert_eq!(o["spec"]["labels"]["a"], "b");
        assert_eq!(o["spec"]["items"], json!([{"k": "v"}]));
        assert_eq!(o["metadata"]["name"], "a");
    }

    #[test]
    fn validates() {
        let mut o = json!({"spec": {"size": "big", "mode": "c", "name": "ABCDEFG", "items": [{}, {}, {}]}});
        let errs = process(&schema(), &mut o).errors;
        let fields: Vec<&str> = errs.iter().map(|(f, _)| f.as_str()).collect();
        assert!(
            fields.contains(&"spec.size")
                && fields.contains(&"spec.mode")
                && fields.contains(&"spec.name")
                && fields.contains(&"spec.items"),
            "{errs:?}"
        );
        let mut o = json!({"spec": {"size": 11}});
        assert_eq!(process(&schema(), &mut o).len(), 1);
        let mut o = json!({"spec": {}});
        assert_eq!(
            process(&schema(), &mut o).errors,
            vec![("spec.size".to_string(), "Required value".to_string())]
        );
    }
}
