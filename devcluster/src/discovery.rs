//! Discovery documents (`/version`, `/api`, `/apis`, group/version resource lists) and OpenAPI stubs.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::resources::ResourceInfo;
use crate::store::State;

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-devcluster",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `/api`.
pub fn core_versions(server_addr: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_addr}],
    })
}

/// Served non-core groups and their versions (preferred first).
fn groups(st: &State) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in st.all_resources().filter(|r| !r.group.is_empty()) {
        let v = out.entry(r.group.clone()).or_default();
        if !v.contains(&r.version) {
            v.push(r.version.clone());
        }
    }
    out
}

fn group_json(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({"name": name, "versions": vs, "preferredVersion": vs.first().cloned().unwrap_or(Value::Null)})
}

/// `/apis`.
pub fn group_list(st: &State) -> Value {
    let gs: Vec<Value> = groups(st).iter().map(|(n, v)| group_json(n, v)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": gs})
}

/// `/apis/{group}`.
pub fn group(st: &State, name: &str) -> Option<Value> {
    groups(st).get(name).map(|v| {
        let mut g = group_json(name, v);
        g["kind"] = json!("APIGroup");
        g["apiVersion"] = json!("v1");
        g
    })
}

fn resource_json(r: &ResourceInfo) -> Vec<Value> {
    let mut main = json!({
        "name": r.plural,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": r.verbs(),
    });
    if !r.short_names.is_empty() {
        main["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        main["categories"] = json!(r.categories);
    }
    let mut out = vec![main];
    if r.status {
        out.push(
            json!({"name": format!("{}/status", r.plural), "singularName": "", "namespaced": r.namespaced,
            "kind": r.kind, "verbs": ["get", "patch", "update"]}),
        );
    }
    for s in &r.subresources {
        let (kind, verbs, group, version) = match s.as_str() {
            "token" => ("TokenRequest", json!(["create"]), "authentication.k8s.io", "v1"),
            "scale" => ("Scale", json!(["get", "patch", "update"]), "autoscaling", "v1"),
            "proxy" => (
                "ServiceProxyOptions",
                json!(["create", "delete", "get", "patch", "update"]),
                "",
                "",
            ),
            _ => (r.kind.as_str(), json!(["update"]), "", ""),
        };
        let mut v = json!({"name": format!("{}/{s}", r.plural), "singularName": "", "namespaced": r.namespaced,
            "kind": kind, "verbs": verbs});
        if !group.is_empty() {
            v["group"] = json!(group);
            v["version"] = json!(version);
        }
        out.push(v);
    }
    out
}

/// `/api/v1` or `/apis/{group}/{version}`.
pub fn resource_list(st: &State, group: &str, version: &str) -> Option<Value> {
    let rs: Vec<&ResourceInfo> = st
        .all_resources()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if rs.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let resources: Vec<Value> = rs.into_iter().flat_map(resource_json).collect();
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}

/// `/openapi/v3`: the index of group-version documents.
pub fn openapi_v3_index(st: &State) -> Value {
    let mut paths = serde_json::Map::new();
    paths.insert(
        "api/v1".into(),
        json!({"serverRelativeURL": "/openapi/v3/api/v1"}),
    );
    for (g, vs) in groups(st) {
        for v in vs {
            paths.insert(
                format!("apis/{g}/{v}"),
                json!({"serverRelativeURL": format!("/openapi/v3/apis/{g}/{v}")}),
            );
        }
    }
    json!({"paths": paths})
}

/// A minimal OpenAPI v3 document for one group-version: the paths advertise the `fieldValidation`
/// parameter (so kubectl uses server-side field validation) and each kind gets an open schema
/// carrying its `x-kubernetes-group-version-kind`.
pub fn openapi_v3_doc(st: &State, group: &str, version: &str) -> Option<Value> {
    let rs: Vec<&ResourceInfo> = st
        .all_resources()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if rs.is_empty() {
        return None;
    }
    let prefix = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    let fv = json!({"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true},
        "description": "fieldValidation instructs the server on how to handle objects in the request"});
    for r in rs {
        let coll = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{prefix}/{}", r.plural)
        };
        let gvk = json!([{"group": r.group, "version": r.version, "kind": r.kind}]);
        let op = json!({"x-kubernetes-group-version-kind": gvk[0], "parameters": [fv],
            "responses": {"200": {"description": "OK"}}});
        paths.insert(coll.clone(), json!({"post": op, "parameters": [fv]}));
        paths.insert(
            format!("{coll}/{{name}}"),
            json!({"put": op, "patch": op, "parameters": [fv]}),
        );
        let schema_name = format!(
            "{}.{}.{}",
            if r.group.is_empty() {
                "io.k8s.api.core"
            } else {
                r.group.as_str()
            },
            r.version,
            r.kind
        );
        schemas.insert(
            schema_name,
            json!({"type": "object", "x-kubernetes-group-version-kind": gvk,
                "x-kubernetes-preserve-unknown-fields": true}),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0-devcluster"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}
