//! Rolling workloads when a Secret they use changes.
//!
//! A Deployment, StatefulSet or DaemonSet annotated `sealant.dev/reload-on: "secret-a,secret-b"` gets the pod
//! template annotation `checksum.sealant.dev/<secret>: <hash of the Secret's data>` set whenever sealant writes
//! one of those Secrets with new data, so the workload rolls. The hash is of the data only (never the data) and
//! the same data gives the same hash, so a no-change refresh never rolls anything.

use std::collections::BTreeMap;

use ring::digest;
use serde_json::{Value, json};

pub const RELOAD_ANNOTATION: &str = "sealant.dev/reload-on";
pub const CHECKSUM_PREFIX: &str = "checksum.sealant.dev/";

/// A short, stable hash of a Secret's data (keys and values).
pub fn data_hash<'a>(data: impl IntoIterator<Item = (&'a String, &'a [u8])>) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    let sorted: BTreeMap<&String, &[u8]> = data.into_iter().collect();
    for (k, v) in sorted {
        ctx.update(&(k.len() as u64).to_be_bytes());
        ctx.update(k.as_bytes());
        ctx.update(&(v.len() as u64).to_be_bytes());
        ctx.update(v);
    }
    ctx.finish().as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The pod template annotation key for a Secret (names longer than an annotation name part are hashed).
pub fn checksum_key(secret: &str) -> String {
    if secret.len() <= 63 {
        format!("{CHECKSUM_PREFIX}{secret}")
    } else {
        let d = digest::digest(&digest::SHA256, secret.as_bytes());
        let short: String = d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!("{CHECKSUM_PREFIX}{}-{short}", &secret[..40])
    }
}

/// True when the workload asks to be reloaded on `secret`.
pub fn wants_reload(workload: &Value, secret: &str) -> bool {
    workload["metadata"]["annotations"][RELOAD_ANNOTATION]
        .as_str()
        .is_some_and(|list| list.split(',').any(|s| s.trim() == secret))
}

/// The merge patch that rolls the workload for a new `hash` of `secret`, or `None` when nothing is to change.
pub fn reload_patch(workload: &Value, secret: &str, hash: &str) -> Option<Value> {
    if !wants_reload(workload, secret) {
        return None;
    }
    let key = checksum_key(secret);
    let current = workload["spec"]["template"]["metadata"]["annotations"][&key].as_str();
    if current == Some(hash) {
        return None;
    }
    Some(json!({"spec": {"template": {"metadata": {"annotations": {key: hash}}}}}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(reload_on: Option<&str>, checksum: Option<&str>) -> Value {
        let mut d = json!({"metadata": {"name": "web", "annotations": {}}, "spec": {"template": {"metadata": {"annotations": {}}}}});
        if let Some(r) = reload_on {
            d["metadata"]["annotations"][RELOAD_ANNOTATION] = json!(r);
        }
        if let Some(c) = checksum {
            d["spec"]["template"]["metadata"]["annotations"][checksum_key("db")] = json!(c);
        }
        d
    }

    #[test]
    fn hash_is_stable_and_sensitive() {
        let a = [("u".to_string(), b"x".to_vec()), ("p".to_string(), b"y".to_vec())];
        let h1 = data_hash(a.iter().map(|(k, v)| (k, v.as_slice())));
        let h2 = data_hash(a.iter().rev().map(|(k, v)| (k, v.as_slice())));
        assert_eq!(h1, h2, "order does not matter");
        let b = [("u".to_string(), b"x".to_vec()), ("p".to_string(), b"z".to_vec())];
        assert_ne!(h1, data_hash(b.iter().map(|(k, v)| (k, v.as_slice()))));
        let c = [("ux".to_string(), b"".to_vec()), ("p".to_string(), b"y".to_vec())];
        let d = [("u".to_string(), b"x".to_vec()), ("p".to_string(), b"y".to_vec())];
        assert_ne!(
            data_hash(c.iter().map(|(k, v)| (k, v.as_slice()))),
            data_hash(d.iter().map(|(k, v)| (k, v.as_slice())))
        );
    }

    #[test]
    fn patches_only_opted_in_workloads_and_only_on_change() {
        assert_eq!(reload_patch(&deployment(None, None), "db", "h1"), None);
        assert_eq!(reload_patch(&deployment(Some("cache"), None), "db", "h1"), None);
        let p = reload_patch(&deployment(Some("cache, db"), None), "db", "h1").unwrap();
        assert_eq!(
            p["spec"]["template"]["metadata"]["annotations"]["checksum.sealant.dev/db"],
            "h1"
        );
        assert_eq!(
            reload_patch(&deployment(Some("db"), Some("h1")), "db", "h1"),
            None
        );
        assert!(reload_patch(&deployment(Some("db"), Some("h0")), "db", "h1").is_some());
    }

    #[test]
    fn long_names_fit_an_annotation() {
        let long = "a".repeat(200);
        let key = checksum_key(&long);
        assert!(key.len() - CHECKSUM_PREFIX.len() <= 63, "{key}");
        assert_ne!(checksum_key(&format!("{long}b")), key);
    }
}
