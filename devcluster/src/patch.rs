//! JSON merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge patch.

use serde_json::{Map, Value};

use crate::errors::ApiError;

/// The patch flavours the server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json`
    Json,
    /// `application/merge-patch+json`
    Merge,
    /// `application/strategic-merge-patch+json`
    Strategic,
    /// `application/apply-patch+yaml`
    Apply,
}

impl PatchType {
    /// Maps a Content-Type to a patch type.
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let base = ct.split(';').next().unwrap_or_default().trim();
        match base {
            "application/json-patch+json" => Some(Self::Json),
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Some(Self::Apply),
            _ => None,
        }
    }
}

/// Applies an RFC 7386 merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// Applies an RFC 6902 JSON patch. Like the API server, a `test` of `null` against a missing path
/// succeeds (kube-rs' finalizer helper relies on it). The patch applies to a copy, so a failing
/// operation leaves the stored object untouched.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let ops = patch
        .as_array()
        .ok_or_else(|| ApiError::bad_request("invalid JSON patch: expected an array of operations"))?;
    for op in ops {
        let missing_null_test = op["op"] == "test"
            && op["value"].is_null()
            && op["path"].as_str().is_some_and(|p| target.pointer(p).is_none());
        if missing_null_test {
            continue;
        }
        let one: json_patch::PatchOperation = serde_json::from_value(op.clone())
            .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
        json_patch::patch(target, &json_patch::Patch(vec![one])).map_err(|e| {
            ApiError::new(
                422,
                "Invalid",
                format!("the server rejected our request due to an error in our request: {e}"),
            )
        })?;
    }
    Ok(())
}

const MERGE_KEYS: &[&str] = &[
    "name",
    "containerPort",
    "mountPath",
    "uid",
    "type",
    "port",
    "ip",
    "key",
];

fn merge_key(items: &[Value]) -> Option<&'static str> {
    if items.is_empty() || !items.iter().all(Value::is_object) {
        return None;
    }
    MERGE_KEYS
        .iter()
        .copied()
        .find(|k| items.iter().all(|i| i.get(*k).is_some()))
}

/// Applies a strategic merge patch. Lists of maps are merged by a well-known key
/// (`name`, `containerPort`, `mountPath`, ...); `$patch: delete|replace` and the
/// `$setElementOrder`/`$retainKeys`/`$deleteFromPrimitiveList` directives are honoured or ignored.
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    strategic_at(target, patch, true);
}

/// Primitive lists with the `merge` patch strategy (union instead of replace): `metadata.finalizers`.
fn merge_primitive_list(cur: &mut Vec<Value>, items: &[Value]) {
    for i in items {
        if !cur.contains(i) {
            cur.push(i.clone());
        }
    }
}

fn strategic_at(target: &mut Value, patch: &Value, top: bool) {
    match patch {
        Value::Object(p) => {
            if p.get("$patch").and_then(Value::as_str) == Some("replace") {
                let mut clean = p.clone();
                clean.remove("$patch");
                *target = Value::Object(clean);
                return;
            }
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let Some(t) = target.as_object_mut() else { return };
            for (k, pv) in p {
                if let Some(list_key) = k.strip_prefix("$deleteFromPrimitiveList/") {
                    if let (Some(Value::Array(cur)), Some(del)) = (t.get_mut(list_key), pv.as_array()) {
                        cur.retain(|x| !del.contains(x));
                    }
                    continue;
                }
                if k.starts_with('$') {
                    continue;
                }
                match pv {
                    Value::Null => {
                        t.remove(k);
                    }
                    Value::Object(_) => {
                        let entry = t.entry(k.clone()).or_insert(Value::Null);
                        strategic_at(entry, pv, top && k == "metadata");
                    }
                    Value::Array(items) if top && k == "finalizers" => match t.get_mut(k) {
                        Some(Value::Array(cur)) => merge_primitive_list(cur, items),
                        _ => {
                            t.insert(k.clone(), pv.clone());
                        }
                    },
                    Value::Array(items) => {
                        let existing = t.get_mut(k);
                        match (existing, merge_key(items)) {
                            (Some(Value::Array(cur)), Some(key)) if cur.iter().all(Value::is_object) => {
                                for item in items {
                                    let id = item.get(key);
                                    let pos = cur.iter().position(|c| c.get(key) == id);
                                    let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                                    match (pos, delete) {
                                        (Some(i), true) => {
                                            cur.remove(i);
                                        }
                                        (Some(i), false) => strategic_at(&mut cur[i], item, false),
                                        (None, true) => {}
                                        (None, false) => {
                                            let mut clean = Value::Null;
                                            strategic_at(&mut clean, item, false);
                                            cur.push(clean);
                                        }
                                    }
                                }
                            }
                            _ => {
                                let mut clean = Vec::with_capacity(items.len());
                                for item in items {
                                    if item.is_object() {
                                        let mut c = Value::Null;
                                        strategic_at(&mut c, item, false);
                                        clean.push(c);
                                    } else {
                                        clean.push(item.clone());
                                    }
                                }
                                t.insert(k.clone(), Value::Array(clean));
                            }
                        }
                    }
                    other => {
                        t.insert(k.clone(), other.clone());
                    }
                }
            }
            // drop directive keys that were given as `$setElementOrder/x`
            t.retain(|k, _| !k.starts_with('$'));
        }
        other => *target = other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merges_containers_by_name() {
        let mut t =
            json!({"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}]}});
        let p = json!({"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "containers": [{"name": "b", "image": "3"}]}});
        strategic_merge(&mut t, &p);
        assert_eq!(t["spec"]["containers"][0]["image"], "1");
        assert_eq!(t["spec"]["containers"][1]["image"], "3");
        assert!(t["spec"].get("$setElementOrder/containers").is_none());
    }

    #[test]
    fn strategic_delete_and_null() {
        let mut t =
            json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "list": [{"name": "x"}, {"name": "y"}]});
        strategic_merge(
            &mut t,
            &json!({"metadata": {"labels": {"a": null}}, "list": [{"name": "x", "$patch": "delete"}]}),
        );
        assert_eq!(t["metadata"]["labels"], json!({"b": "2"}));
        assert_eq!(t["list"], json!([{"name": "y"}]));
    }

    #[test]
    fn strategic_finalizers_merge_and_delete_from_primitive_list() {
        let mut t = json!({"metadata": {"finalizers": ["a", "b"]}});
        strategic_merge(&mut t, &json!({"metadata": {"finalizers": ["c"]}}));
        assert_eq!(t["metadata"]["finalizers"], json!(["a", "b", "c"]));
        strategic_merge(
            &mut t,
            &json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
        );
        assert_eq!(t["metadata"]["finalizers"], json!(["b", "c"]));
        strategic_merge(&mut t, &json!({"metadata": {"finalizers": null}}));
        assert!(t["metadata"].get("finalizers").is_none());
    }

    #[test]
    fn json_patch_errors_are_422() {
        let mut t = json!({"a": 1});
        assert!(json_patch(&mut t, &json!([{"op": "replace", "path": "/a", "value": 2}])).is_ok());
        assert_eq!(t["a"], 2);
        assert_eq!(
            json_patch(&mut t, &json!([{"op": "remove", "path": "/zzz"}]))
                .unwrap_err()
                .code,
            422
        );
        assert_eq!(json_patch(&mut t, &json!({"op": 1})).unwrap_err().code, 400);
        // test-null on a missing path passes; test-null on a present value fails
        json_patch(
            &mut t,
            &json!([{"op": "test", "path": "/f", "value": null}, {"op": "add", "path": "/f", "value": [1]}]),
        )
        .unwrap();
        assert_eq!(t["f"], json!([1]));
        assert_eq!(
            json_patch(&mut t, &json!([{"op": "test", "path": "/f", "value": null}]))
                .unwrap_err()
                .code,
            422
        );
    }
}
