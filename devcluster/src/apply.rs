//! Field ownership (`metadata.managedFields`, `FieldsV1`) and server-side apply.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use crate::errors::ApiError;
use crate::resources::ResourceInfo;

/// A path in `FieldsV1` notation: `f:spec`, `k:{"name":"a"}`, `v:"x"`, `.`.
pub type FieldPath = Vec<String>;
/// A set of owned leaf paths.
pub type FieldSet = BTreeSet<FieldPath>;

/// Metadata fields the server owns and that are never tracked.
const SYSTEM_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
    "generateName",
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum ListKind {
    Map(Vec<String>),
    Set,
    Atomic,
}

const KEY_CANDIDATES: &[&str] = &[
    "uid",
    "name",
    "containerPort",
    "mountPath",
    "type",
    "port",
    "ip",
    "key",
];

fn list_kind(schema_path: &str, items: &[Value], info: Option<&ResourceInfo>) -> ListKind {
    if let Some(keys) = info.and_then(|i| i.list_keys.get(schema_path)) {
        return ListKind::Map(keys.clone());
    }
    if schema_path == ".metadata.finalizers" {
        return ListKind::Set;
    }
    if schema_path == ".metadata.ownerReferences" {
        return ListKind::Map(vec!["uid".into()]);
    }
    if items.is_empty() || !items.iter().all(Value::is_object) {
        return ListKind::Atomic;
    }
    for cand in KEY_CANDIDATES {
        let vals: Vec<&Value> = items.iter().filter_map(|i| i.get(*cand)).collect();
        if vals.len() == items.len() && vals.iter().all(|v| v.is_string() || v.is_number()) {
            let uniq: BTreeSet<String> = vals.iter().map(|v| v.to_string()).collect();
            if uniq.len() == vals.len() {
                return ListKind::Map(vec![(*cand).to_string()]);
            }
        }
    }
    ListKind::Atomic
}

fn key_of(item: &Value, keys: &[String]) -> String {
    let mut sorted: Vec<&String> = keys.iter().collect();
    sorted.sort();
    let parts: Vec<String> = sorted
        .iter()
        .map(|k| {
            format!(
                "{}:{}",
                Value::String((*k).clone()),
                item.get(k.as_str()).cloned().unwrap_or(Value::Null)
            )
        })
        .collect();
    format!("k:{{{}}}", parts.join(","))
}

fn walk(v: &Value, schema_path: &str, path: &mut FieldPath, out: &mut FieldSet, info: Option<&ResourceInfo>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                path.push(format!("f:{k}"));
                walk(child, &format!("{schema_path}.{k}"), path, out, info);
                path.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => match list_kind(schema_path, items, info) {
            ListKind::Map(keys) => {
                for item in items {
                    path.push(key_of(item, &keys));
                    let mut dot = path.clone();
                    dot.push(".".into());
                    out.insert(dot);
                    walk(item, &format!("{schema_path}[]"), path, out, info);
                    path.pop();
                }
            }
            ListKind::Set => {
                for item in items {
                    path.push(format!("v:{item}"));
                    out.insert(path.clone());
                    path.pop();
                }
            }
            ListKind::Atomic => {
                out.insert(path.clone());
            }
        },
        _ => {
            out.insert(path.clone());
        }
    }
}

/// The tracked fields of an object.
pub fn fieldset_of(obj: &Value, info: Option<&ResourceInfo>) -> FieldSet {
    let mut out = FieldSet::new();
    let Some(m) = obj.as_object() else { return out };
    let mut path = Vec::new();
    for (k, v) in m {
        if k == "apiVersion" || k == "kind" {
            continue;
        }
        if k == "metadata" {
            if let Some(meta) = v.as_object() {
                for (mk, mv) in meta {
                    if SYSTEM_META.contains(&mk.as_str()) {
                        continue;
                    }
                    path.push("f:metadata".into());
                    path.push(format!("f:{mk}"));
                    walk(mv, &format!(".metadata.{mk}"), &mut path, &mut out, info);
                    path.clear();
                }
            }
            continue;
        }
        path.push(format!("f:{k}"));
        walk(v, &format!(".{k}"), &mut path, &mut out, info);
        path.clear();
    }
    out
}

/// Converts a set into the nested `fieldsV1` JSON form.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for p in set {
        let mut cur = &mut root;
        for el in p {
            let entry = cur.entry(el.clone()).or_insert_with(|| json!({}));
            let Some(next) = entry.as_object_mut() else { break };
            cur = next;
        }
    }
    Value::Object(root)
}

/// Parses a nested `fieldsV1` object back into leaf paths.
pub fn from_fields_v1(v: &Value) -> FieldSet {
    fn go(v: &Value, path: &mut FieldPath, out: &mut FieldSet) {
        match v.as_object() {
            Some(m) if !m.is_empty() => {
                for (k, child) in m {
                    path.push(k.clone());
                    go(child, path, out);
                    path.pop();
                }
            }
            _ => {
                if !path.is_empty() {
                    out.insert(path.clone());
                }
            }
        }
    }
    let mut out = FieldSet::new();
    go(v, &mut Vec::new(), &mut out);
    out
}

fn find_item(arr: &[Value], el: &str) -> Option<usize> {
    if let Some(k) = el.strip_prefix("k:") {
        let want: Map<String, Value> = serde_json::from_str(k).ok()?;
        arr.iter()
            .position(|i| want.iter().all(|(wk, wv)| i.get(wk) == Some(wv)))
    } else if let Some(v) = el.strip_prefix("v:") {
        let want: Value = serde_json::from_str(v).ok()?;
        arr.iter().position(|i| *i == want)
    } else {
        None
    }
}

/// The value at a `FieldsV1` path.
pub fn get_at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = v;
    for el in path {
        if el == "." {
            return Some(cur);
        }
        cur = if let Some(f) = el.strip_prefix("f:") {
            cur.get(f)?
        } else {
            let arr = cur.as_array()?;
            &arr[find_item(arr, el)?]
        };
    }
    Some(cur)
}

fn get_at_mut<'a>(v: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let mut cur = v;
    for el in path {
        cur = if let Some(f) = el.strip_prefix("f:") {
            cur.get_mut(f)?
        } else {
            let arr = cur.as_array_mut()?;
            let idx = find_item(arr, el)?;
            &mut arr[idx]
        };
    }
    Some(cur)
}

/// Removes the value at a path (a `.` path removes the list item), pruning emptied maps below depth 1.
pub fn remove_at(v: &mut Value, path: &[String]) {
    let path: &[String] = if path.last().map(String::as_str) == Some(".") {
        &path[..path.len() - 1]
    } else {
        path
    };
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    let Some(container) = get_at_mut(v, parent) else {
        return;
    };
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = container.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(arr) = container.as_array_mut()
        && let Some(idx) = find_item(arr, last)
    {
        arr.remove(idx);
    }
    // prune emptied maps (e.g. `metadata.labels: {}`), but keep top-level fields like `spec: {}`
    let mut depth = parent.len();
    while depth >= 2 {
        let p = &parent[..depth];
        let empty = get_at(v, p).is_some_and(|x| x.as_object().is_some_and(Map::is_empty));
        if !empty || !p[depth - 1].starts_with("f:") {
            break;
        }
        if let Some(Value::Object(m)) = get_at_mut(v, &p[..depth - 1]) {
            m.remove(&p[depth - 1][2..]);
        }
        depth -= 1;
    }
}

fn merge_apply(live: &mut Value, applied: &Value, schema_path: &str, info: Option<&ResourceInfo>) {
    match (live, applied) {
        (Value::Object(l), Value::Object(a)) => {
            for (k, av) in a {
                if av.is_null() {
                    l.remove(k);
                    continue;
                }
                match l.get_mut(k) {
                    Some(lv) => merge_apply(lv, av, &format!("{schema_path}.{k}"), info),
                    None => {
                        l.insert(k.clone(), av.clone());
                    }
                }
            }
        }
        (Value::Array(l), Value::Array(a)) => match list_kind(schema_path, a, info) {
            ListKind::Map(keys) if l.iter().all(Value::is_object) => {
                for item in a {
                    let k = key_of(item, &keys);
                    match find_item(l, &k) {
                        Some(idx) => merge_apply(&mut l[idx], item, &format!("{schema_path}[]"), info),
                        None => l.push(item.clone()),
                    }
                }
            }
            ListKind::Set => {
                for item in a {
                    if !l.contains(item) {
                        l.push(item.clone());
                    }
                }
            }
            _ => *l = a.clone(),
        },
        (live, applied) => *live = applied.clone(),
    }
}

/// One `managedFields` entry.
#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: String,
    subresource: String,
    set: FieldSet,
}

fn parse_entries(obj: Option<&Value>) -> Vec<Entry> {
    let Some(arr) = obj
        .and_then(|o| o.get("metadata"))
        .and_then(|m| m.get("managedFields"))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    arr.iter()
        .map(|e| Entry {
            manager: e["manager"].as_str().unwrap_or_default().into(),
            operation: e["operation"].as_str().unwrap_or("Update").into(),
            api_version: e["apiVersion"].as_str().unwrap_or_default().into(),
            time: e["time"].as_str().unwrap_or_default().into(),
            subresource: e["subresource"].as_str().unwrap_or_default().into(),
            set: from_fields_v1(&e["fieldsV1"]),
        })
        .collect()
}

fn write_entries(obj: &mut Value, entries: Vec<Entry>) {
    let arr: Vec<Value> = entries
        .into_iter()
        .filter(|e| !e.set.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&e.set),
            });
            if !e.subresource.is_empty() {
                v["subresource"] = json!(e.subresource);
            }
            v
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if arr.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(arr));
        }
    }
}

fn all_prefixes(set: &FieldSet) -> BTreeSet<&[String]> {
    let mut out = BTreeSet::new();
    for p in set {
        for i in 1..=p.len() {
            out.insert(&p[..i]);
        }
    }
    out
}

fn prune_to(entries: &mut [Entry], present: &FieldSet) {
    let prefixes = all_prefixes(present);
    for e in entries.iter_mut() {
        e.set.retain(|p| prefixes.contains(p.as_slice()));
    }
}

/// Records field ownership for a non-apply write (create/update/patch) by `manager`.
pub fn track_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: &str,
    now: &str,
    info: &ResourceInfo,
) {
    let mut entries = parse_entries(old);
    let new_set = fieldset_of(new, Some(info));
    let empty = json!({});
    let old_v = old.unwrap_or(&empty);
    let changed: FieldSet = new_set
        .iter()
        .filter(|p| get_at(old_v, p) != get_at(new, p) || old.is_none())
        .cloned()
        .collect();
    let is_mine = |e: &Entry| e.manager == manager && e.operation == "Update" && e.subresource == subresource;
    for e in entries.iter_mut().filter(|e| !is_mine(e)) {
        e.set.retain(|p| !changed.contains(p));
    }
    if !changed.is_empty() {
        let api_version = new["apiVersion"].as_str().unwrap_or_default().to_string();
        match entries.iter_mut().find(|e| is_mine(e)) {
            Some(e) => {
                e.set.extend(changed);
                e.time = now.to_string();
                e.api_version = api_version;
            }
            None => entries.push(Entry {
                manager: manager.into(),
                operation: "Update".into(),
                api_version,
                time: now.into(),
                subresource: subresource.into(),
                set: changed,
            }),
        }
    }
    prune_to(&mut entries, &new_set);
    write_entries(new, entries);
}

/// Renders a path the way conflict messages do (`.spec.containers[name="a"].image`).
pub fn render_path(p: &[String]) -> String {
    let mut s = String::new();
    for el in p {
        if let Some(f) = el.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = el.strip_prefix("k:") {
            let inner: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = inner.iter().map(|(a, b)| format!("{a}={b}")).collect();
            s.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = el.strip_prefix("v:") {
            s.push_str(&format!("[={v}]"));
        }
    }
    s
}

/// Server-side apply of `applied` by `manager` onto `live` (None when the object does not exist yet).
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    info: &ResourceInfo,
    subresource: &str,
    now: &str,
) -> Result<Value, ApiError> {
    let mut entries = parse_entries(live);
    let mut applied_clean = applied.clone();
    if let Some(meta) = applied_clean.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
        meta.remove("resourceVersion");
    }
    let new_set = fieldset_of(&applied_clean, Some(info));
    let mut result = live.cloned().unwrap_or_else(|| json!({}));
    let is_mine = |e: &Entry| e.manager == manager && e.operation == "Apply" && e.subresource == subresource;

    // conflicts: another manager owns a leaf we set to a different value
    let mut conflicts: BTreeMap<String, Vec<FieldPath>> = BTreeMap::new();
    for p in new_set
        .iter()
        .filter(|p| p.last().map(String::as_str) != Some("."))
    {
        let lv = get_at(&result, p);
        if lv.is_none() || lv == get_at(&applied_clean, p) {
            continue;
        }
        for e in entries.iter().filter(|e| !is_mine(e) && e.set.contains(p)) {
            conflicts
                .entry(format!("{}|{}", e.manager, e.api_version))
                .or_default()
                .push(p.clone());
        }
    }
    if !conflicts.is_empty() {
        if !force {
            return Err(conflict_error(
                &conflicts,
                info,
                result["metadata"]["name"].as_str().unwrap_or_default(),
            ));
        }
        let taken: FieldSet = conflicts.values().flatten().cloned().collect();
        for e in entries.iter_mut().filter(|e| !is_mine(e)) {
            e.set.retain(|p| !taken.contains(p));
        }
    }

    // fields this manager applied before but no longer applies, and nobody else owns, are removed
    let previous: FieldSet = entries
        .iter()
        .filter(|e| is_mine(e))
        .flat_map(|e| e.set.iter().cloned())
        .collect();
    let others: FieldSet = entries
        .iter()
        .filter(|e| !is_mine(e))
        .flat_map(|e| e.set.iter().cloned())
        .collect();
    let other_prefixes = all_prefixes(&others);
    let mut to_remove: Vec<&FieldPath> = previous
        .iter()
        .filter(|p| !new_set.contains(*p))
        .filter(|p| {
            let base: &[String] = if p.last().map(String::as_str) == Some(".") {
                &p[..p.len() - 1]
            } else {
                p.as_slice()
            };
            !others.contains(*p) && !other_prefixes.contains(base)
        })
        .collect();
    to_remove.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in to_remove {
        remove_at(&mut result, p);
    }

    merge_apply(&mut result, &applied_clean, "", Some(info));

    let api_version = applied_clean["apiVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    entries.retain(|e| !is_mine(e));
    entries.push(Entry {
        manager: manager.into(),
        operation: "Apply".into(),
        api_version,
        time: now.into(),
        subresource: subresource.into(),
        set: new_set,
    });
    let present = fieldset_of(&result, Some(info));
    prune_to(&mut entries, &present);
    write_entries(&mut result, entries);
    Ok(result)
}

fn conflict_error(conflicts: &BTreeMap<String, Vec<FieldPath>>, info: &ResourceInfo, name: &str) -> ApiError {
    let mut causes = Vec::new();
    let mut lines = Vec::new();
    for (key, paths) in conflicts {
        let (mgr, av) = key.split_once('|').unwrap_or((key, ""));
        for p in paths {
            let field = render_path(p);
            lines.push(format!("conflict with \"{mgr}\" using {av}: {field}"));
            causes.push(json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with \"{mgr}\" using {av}"),
                "field": field,
            }));
        }
    }
    let n = lines.len();
    let message = if n == 1 {
        format!("Apply failed with 1 conflict: {}", lines[0])
    } else {
        format!("Apply failed with {n} conflicts: {}", lines.join("\n"))
    };
    ApiError::new(409, "Conflict", message).with_details(json!({
        "name": name, "group": info.group, "kind": info.plural, "causes": causes,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::builtins;

    fn cm_info() -> ResourceInfo {
        builtins().into_iter().find(|r| r.plural == "configmaps").unwrap()
    }

    #[test]
    fn fields_v1_roundtrip() {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "x", "labels": {"a": "1"}, "finalizers": ["f1"]},
            "spec": {"containers": [{"name": "c", "image": "i"}]}});
        let set = fieldset_of(&obj, Some(&cm_info()));
        let v1 = to_fields_v1(&set);
        assert_eq!(v1["f:metadata"]["f:labels"]["f:a"], json!({}));
        assert_eq!(v1["f:metadata"]["f:finalizers"]["v:\"f1\""], json!({}));
        assert_eq!(v1["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"]["."], json!({}));
        assert_eq!(from_fields_v1(&v1), set);
    }

    #[test]
    fn apply_conflicts_and_force() {
        let info = cm_info();
        let a =
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"k": "1"}});
        let live = apply(None, &a, "alice", false, &info, "", "t").unwrap();
        let b =
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"k": "2"}});
        let err = apply(Some(&live), &b, "bob", false, &info, "", "t").unwrap_err();
        assert_eq!(err.code, 409);
        assert!(
            err.message.contains("alice") && err.message.contains(".data.k"),
            "{}",
            err.message
        );
        let forced = apply(Some(&live), &b, "bob", true, &info, "", "t").unwrap();
        assert_eq!(forced["data"]["k"], "2");
        let mf = forced["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(mf.len(), 1);
        assert_eq!(mf[0]["manager"], "bob");
    }

    #[test]
    fn apply_removes_dropped_fields() {
        let info = cm_info();
        let a = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"},
            "data": {"k": "1", "j": "2"}});
        let live = apply(None, &a, "alice", false, &info, "", "t").unwrap();
        let b =
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"k": "1"}});
        let out = apply(Some(&live), &b, "alice", false, &info, "", "t").unwrap();
        assert_eq!(out["data"], json!({"k": "1"}));
    }
}
