//! Name validation and kind-specific defaulting/validation (Secrets, ConfigMaps, Namespaces, ...).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

/// The Secret/ConfigMap payload limit.
pub const MAX_DATA_BYTES: usize = 1024 * 1024;

/// Field errors: `(field, message)`.
pub type FieldErrors = Vec<(String, String)>;

/// DNS-1123 subdomain check; returns an error message.
pub fn dns1123_subdomain(name: &str) -> Option<String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    let ok_ends = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().last().is_some_and(|c| c.is_ascii_alphanumeric());
    if name.len() > 253 {
        return Some("must be no more than 253 characters".into());
    }
    if !ok_chars || !ok_ends || name.split('.').any(str::is_empty) {
        return Some(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', \
             and must start and end with an alphanumeric character (e.g. 'example.com', regex used for \
             validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
                .into(),
        );
    }
    None
}

/// DNS-1123 label check (namespaces); returns an error message.
pub fn dns1123_label(name: &str) -> Option<String> {
    if name.len() > 63 {
        return Some("must be no more than 63 characters".into());
    }
    let ok = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().last().is_some_and(|c| c.is_ascii_alphanumeric());
    if !ok {
        return Some(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must \
             start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for \
             validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
                .into(),
        );
    }
    None
}

/// DNS-1035 label check (services); returns an error message.
pub fn dns1035_label(name: &str) -> Option<String> {
    if let Some(e) = dns1123_label(name) {
        return Some(e.replace("RFC 1123", "RFC 1035"));
    }
    if name.chars().next().is_some_and(|c| c.is_ascii_digit()) {
        return Some(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an \
             alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', \
             regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
                .into(),
        );
    }
    None
}

/// Validates `metadata.name` for a resource.
pub fn validate_name(resource: &str, name: &str) -> Option<(String, String)> {
    if name.is_empty() {
        return Some((
            "metadata.name".into(),
            "Required value: name or generateName is required".into(),
        ));
    }
    let err = match resource {
        "namespaces" => dns1123_label(name),
        "services" => dns1035_label(name),
        "roles" | "clusterroles" | "rolebindings" | "clusterrolebindings" => {
            (name.contains('/') || name.contains('%') || name == "." || name == "..")
                .then(|| "may not contain '/' or '%'".to_string())
        }
        _ => dns1123_subdomain(name),
    };
    err.map(|e| {
        (
            "metadata.name".to_string(),
            format!("Invalid value: \"{name}\": {e}"),
        )
    })
}

fn qualified_name(s: &str) -> bool {
    let ok_part = |p: &str| {
        !p.is_empty()
            && p.len() <= 63
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && p.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && p.chars().last().is_some_and(|c| c.is_ascii_alphanumeric())
    };
    match s.split_once('/') {
        Some((prefix, name)) => dns1123_subdomain(prefix).is_none() && ok_part(name),
        None => ok_part(s),
    }
}

fn label_value(v: &str) -> bool {
    v.is_empty() || (v.len() <= 63 && qualified_name(v) && !v.contains('/'))
}

/// Validates `metadata.labels` and `metadata.annotations`.
pub fn validate_metadata(obj: &Value) -> FieldErrors {
    let mut errs = FieldErrors::new();
    let meta = &obj["metadata"];
    match &meta["labels"] {
        Value::Object(m) => {
            for (k, v) in m {
                if !qualified_name(k) {
                    errs.push(("metadata.labels".into(), format!("Invalid value: \"{k}\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character")));
                }
                match v.as_str() {
                    Some(s) if label_value(s) => {}
                    _ => errs.push(("metadata.labels".into(), format!("Invalid value: {v}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"))),
                }
            }
        }
        Value::Null => {}
        _ => errs.push((
            "metadata.labels".into(),
            "Invalid value: must be a map of strings".into(),
        )),
    }
    match &meta["annotations"] {
        Value::Object(m) => {
            let mut total = 0usize;
            for (k, v) in m {
                // apimachinery checks annotation keys lowercased
                if !qualified_name(&k.to_ascii_lowercase()) {
                    errs.push(("metadata.annotations".into(), format!("Invalid value: \"{k}\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character")));
                }
                match v.as_str() {
                    Some(s) => total += k.len() + s.len(),
                    None => errs.push((
                        "metadata.annotations".into(),
                        format!("Invalid value: {v}: must be a string"),
                    )),
                }
            }
            if total > 256 * 1024 {
                errs.push((
                    "metadata.annotations".into(),
                    "Too long: must have at most 262144 bytes".into(),
                ));
            }
        }
        Value::Null => {}
        _ => errs.push((
            "metadata.annotations".into(),
            "Invalid value: must be a map of strings".into(),
        )),
    }
    if !meta["finalizers"].is_null()
        && !meta["finalizers"]
            .as_array()
            .is_some_and(|a| a.iter().all(Value::is_string))
    {
        errs.push((
            "metadata.finalizers".into(),
            "Invalid value: must be a list of strings".into(),
        ));
    }
    errs
}

/// The keys (and annotation) the built-in Secret types require, as kube-apiserver's ValidateSecret checks them.
fn secret_type_errors(obj: &Value) -> FieldErrors {
    let data = &obj["data"];
    let has = |key: &str| data.get(key).is_some_and(|v| !v.is_null());
    let decoded = |key: &str| {
        data[key]
            .as_str()
            .and_then(|b64| STANDARD.decode(b64).ok())
            .unwrap_or_default()
    };
    let required = |key: &str| (format!("data[{key}]"), "Required value".to_string());
    let mut errs = FieldErrors::new();
    match obj["type"].as_str().unwrap_or_default() {
        "kubernetes.io/tls" => errs.extend(
            ["tls.crt", "tls.key"]
                .into_iter()
                .filter(|k| !has(k))
                .map(required),
        ),
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            errs.extend(["username", "password"].map(required));
        }
        "kubernetes.io/ssh-auth" if decoded("ssh-privatekey").is_empty() => {
            errs.push(required("ssh-privatekey"))
        }
        docker @ ("kubernetes.io/dockercfg" | "kubernetes.io/dockerconfigjson") => {
            let key = if docker == "kubernetes.io/dockercfg" {
                ".dockercfg"
            } else {
                ".dockerconfigjson"
            };
            if !has(key) {
                errs.push(required(key));
            } else if !serde_json::from_slice::<Value>(&decoded(key))
                .is_ok_and(|v| v.is_object() || v.is_null())
            {
                errs.push((
                    format!("data[{key}]"),
                    "Invalid value: \"<secret contents redacted>\": not a JSON object".into(),
                ));
            }
        }
        "kubernetes.io/service-account-token"
            if obj["metadata"]["annotations"]["kubernetes.io/service-account.name"]
                .as_str()
                .is_none_or(str::is_empty) =>
        {
            errs.push((
                "metadata.annotations[kubernetes.io/service-account.name]".into(),
                "Required value".into(),
            ));
        }
        _ => {}
    }
    errs
}

fn valid_data_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 253
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && k != "."
        && k != ".."
}

/// Defaulting and normalisation applied to every write of an object of `resource`.
pub fn prepare(resource: &str, group: &str, obj: &mut Value) -> FieldErrors {
    let mut errs = FieldErrors::new();
    let builtin_group = matches!(
        group,
        "" | "apps"
            | "coordination.k8s.io"
            | "events.k8s.io"
            | "rbac.authorization.k8s.io"
            | "apiextensions.k8s.io"
    );
    for field in ["spec", "status", "data", "stringData", "binaryData"] {
        if !builtin_group {
            break;
        }
        if let Some(v) = obj.get(field)
            && !v.is_object()
            && !v.is_null()
        {
            errs.push((field.to_string(), "Invalid value: must be an object".into()));
        }
    }
    if group.is_empty() && matches!(resource, "secrets" | "configmaps") {
        if obj
            .get("immutable")
            .is_some_and(|v| !v.is_boolean() && !v.is_null())
        {
            errs.push(("immutable".into(), "Invalid value: must be a boolean".into()));
        }
        if resource == "secrets" && obj.get("type").is_some_and(|v| !v.is_string() && !v.is_null()) {
            errs.push(("type".into(), "Invalid value: must be a string".into()));
        }
    }
    if !errs.is_empty() {
        return errs;
    }
    match (group, resource) {
        ("", "secrets") => {
            // fold stringData into data (stringData wins), then drop it
            if let Some(sd) = obj.as_object_mut().and_then(|o| o.remove("stringData")) {
                if let Some(m) = sd.as_object() {
                    if !obj["data"].is_object() {
                        obj["data"] = json!({});
                    }
                    for (k, v) in m {
                        let s = v.as_str().map(String::from).unwrap_or_else(|| v.to_string());
                        obj["data"][k] = json!(STANDARD.encode(s.as_bytes()));
                    }
                } else if !sd.is_null() {
                    errs.push((
                        "stringData".into(),
                        "Invalid value: must be a map of strings".into(),
                    ));
                }
            }
            if obj.get("type").and_then(Value::as_str).is_none_or(str::is_empty) {
                obj["type"] = json!("Opaque");
            }
            let mut total = 0usize;
            if let Some(data) = obj.get("data").and_then(Value::as_object) {
                for (k, v) in data {
                    if !valid_data_key(k) {
                        errs.push((format!("data[{k}]"), format!("Invalid value: \"{k}\": a valid config key must consist of alphanumeric characters, '-', '_' or '.'")));
                    }
                    match v.as_str().map(|s| STANDARD.decode(s)) {
                        Some(Ok(bytes)) => total += bytes.len(),
                        Some(Err(_)) => errs.push((
                            format!("data[{k}]"),
                            "Invalid value: <redacted>: illegal base64 data".into(),
                        )),
                        None if v.is_null() => {}
                        None => errs.push((
                            format!("data[{k}]"),
                            "Invalid value: must be a base64 string".into(),
                        )),
                    }
                }
            }
            errs.extend(secret_type_errors(obj));
            if total > MAX_DATA_BYTES {
                errs.push((
                    "data".into(),
                    format!("Too long: may not be more than {MAX_DATA_BYTES} bytes"),
                ));
            }
        }
        ("", "configmaps") => {
            let mut total = 0usize;
            for field in ["data", "binaryData"] {
                if let Some(data) = obj.get(field).and_then(Value::as_object) {
                    for (k, v) in data {
                        if !valid_data_key(k) {
                            errs.push((format!("{field}[{k}]"), format!("Invalid value: \"{k}\": a valid config key must consist of alphanumeric characters, '-', '_' or '.'")));
                        }
                        match v.as_str() {
                            Some(text) => total += k.len() + text.len(),
                            None if v.is_null() => {}
                            None => {
                                errs.push((format!("{field}[{k}]"), "Invalid value: must be a string".into()))
                            }
                        }
                    }
                }
            }
            if total > MAX_DATA_BYTES {
                errs.push((
                    "[]".into(),
                    format!("Too long: must have at most {MAX_DATA_BYTES} bytes"),
                ));
            }
        }
        ("", "namespaces") => {
            if obj["spec"]["finalizers"].is_null() {
                obj["spec"] = json!({"finalizers": ["kubernetes"]});
            }
            if obj["status"]["phase"].is_null() {
                obj["status"] = json!({"phase": "Active"});
            }
            let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
            let labels_ok = obj["metadata"]["labels"].is_object() || obj["metadata"]["labels"].is_null();
            if !name.is_empty() && labels_ok {
                obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
            }
        }
        ("apps", "deployments" | "statefulsets" | "replicasets")
            if obj["spec"].is_object() && obj["spec"]["replicas"].is_null() =>
        {
            obj["spec"]["replicas"] = json!(1);
        }
        ("", "services") if obj["spec"].is_object() || obj["spec"].is_null() => {
            if obj["spec"]["type"].is_null() {
                obj["spec"]["type"] = json!("ClusterIP");
            }
            if obj["spec"]["sessionAffinity"].is_null() {
                obj["spec"]["sessionAffinity"] = json!("None");
            }
            if let Some(ports) = obj["spec"]["ports"].as_array_mut() {
                for p in ports.iter_mut().filter(|p| p.is_object()) {
                    if p["protocol"].is_null() {
                        p["protocol"] = json!("TCP");
                    }
                    if p["targetPort"].is_null() && !p["port"].is_null() {
                        p["targetPort"] = p["port"].clone();
                    }
                }
            }
        }
        _ => {}
    }
    errs
}

/// Checks immutability rules between the stored and the proposed object.
pub fn validate_update(resource: &str, group: &str, old: &Value, new: &Value) -> FieldErrors {
    let mut errs = FieldErrors::new();
    if group.is_empty()
        && (resource == "secrets" || resource == "configmaps")
        && old["immutable"] == json!(true)
    {
        if new["immutable"] != json!(true) {
            errs.push((
                "immutable".into(),
                "Forbidden: field is immutable when `immutable` is set".into(),
            ));
        }
        let fields: &[&str] = if resource == "secrets" {
            &["data", "type"]
        } else {
            &["data", "binaryData"]
        };
        for f in fields {
            let norm = |v: &Value| if v.is_null() { json!({}) } else { v.clone() };
            if norm(&old[*f]) != norm(&new[*f]) {
                errs.push((
                    (*f).into(),
                    "Forbidden: field is immutable when `immutable` is set".into(),
                ));
            }
        }
    }
    if group.is_empty()
        && resource == "secrets"
        && old["type"] != new["type"]
        && old["immutable"] != json!(true)
    {
        errs.push(("type".into(), "Invalid value: field is immutable".into()));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(dns1123_subdomain("a.b-c").is_none());
        assert!(dns1123_subdomain("Bad_Name").is_some());
        assert!(dns1123_subdomain("-a").is_some());
        assert!(dns1123_label("a.b").is_some());
        assert!(dns1035_label("1abc").is_some());
        assert!(validate_name("secrets", "").is_some());
    }

    #[test]
    fn labels_and_annotations() {
        assert!(
            validate_metadata(&json!({"metadata": {"labels": {"app.kubernetes.io/name": "x", "a": ""}}}))
                .is_empty()
        );
        assert_eq!(
            validate_metadata(&json!({"metadata": {"labels": {"a": "has space"}}})).len(),
            1
        );
        assert_eq!(
            validate_metadata(&json!({"metadata": {"labels": {"-bad": "x"}}})).len(),
            1
        );
        assert_eq!(
            validate_metadata(&json!({"metadata": {"labels": {"a": 1}}})).len(),
            1
        );
        assert_eq!(
            validate_metadata(&json!({"metadata": {"annotations": {"a": "x".repeat(300_000)}}})).len(),
            1
        );
    }

    #[test]
    fn secret_string_data_folds() {
        let mut s = json!({"stringData": {"a": "hi"}, "data": {"b": "eA=="}});
        assert!(prepare("secrets", "", &mut s).is_empty());
        assert_eq!(s["data"]["a"], "aGk=");
        assert_eq!(s["data"]["b"], "eA==");
        assert_eq!(s["type"], "Opaque");
        assert!(s.get("stringData").is_none());
    }

    #[test]
    fn secret_too_large() {
        let big = STANDARD.encode(vec![0u8; MAX_DATA_BYTES + 1]);
        let mut s = json!({"data": {"a": big}});
        assert_eq!(prepare("secrets", "", &mut s).len(), 1);
    }
}
