//! Resource handlers: CRUD, list with selectors and pagination, patch, apply, subresources, reviews.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::apply;
use crate::auth::{ISSUER, UserInfo};
use crate::errors::ApiError;
use crate::patch::{self, PatchType};
use crate::proxy::ENDPOINT_ANNOTATION;
use crate::rbac::{self, Attributes};
use crate::resources::{Behavior, ResourceInfo};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::server::{App, Ctx, ResPath, json_response};
use crate::store::{DeleteOpts, Propagation, UpdateMode, WriteCtx, present};
use crate::table;
use crate::util::{meta_str, now_rfc3339};
use crate::watch;

/// Parses a request body as JSON, or YAML for YAML content types.
pub fn parse_body(body: &[u8], content_type: &str) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    if content_type.contains("protobuf") {
        return crate::protobuf::decode_object(body);
    }
    let yaml = content_type.contains("yaml");
    let parsed = if yaml {
        let text =
            std::str::from_utf8(body).map_err(|_| ApiError::bad_request("the body is not valid UTF-8"))?;
        serde_saphyr::from_str::<Value>(text)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
    } else {
        serde_json::from_slice::<Value>(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding request body as JSON: {e}")))
    }?;
    Ok(parsed)
}

fn write_ctx(ctx: &Ctx) -> WriteCtx {
    WriteCtx {
        dry_run: ctx.dry_run(),
        manager: ctx.manager(),
        fields_done: false,
        strict_fields: ctx.q("fieldValidation") == Some("Strict"),
        requester: ctx.rbac.then(|| ctx.user.clone()),
    }
}

fn respond(ctx: &Ctx, info: &ResourceInfo, code: StatusCode, v: &Value) -> Result<Response, ApiError> {
    let accept = ctx.header("accept");
    let not_status = v.get("kind").and_then(Value::as_str) != Some("Status");
    if not_status && table::shape(accept) == table::Shape::Metadata {
        return Ok(json_response(code, &table::partial_response(v)));
    }
    if table::wants_table(accept) && not_status {
        let include = ctx.q("includeObject").unwrap_or("Metadata");
        let rv = json!({"resourceVersion": v["metadata"]["resourceVersion"]});
        let t = match v.get("items").and_then(Value::as_array) {
            Some(items) => {
                let mut meta = v["metadata"].clone();
                if meta.is_null() {
                    meta = rv;
                }
                table::table(items, meta, include, info)
            }
            None => table::table(std::slice::from_ref(v), rv, include, info),
        };
        return Ok(json_response(code, &t));
    }
    Ok(json_response(code, v))
}

/// Handles one resource request.
#[tracing::instrument(skip_all, fields(verb = %verb, resource = %info.plural, namespace = rp.namespace.as_deref().unwrap_or(""), name = rp.name.as_deref().unwrap_or("")))]
pub async fn resource(
    app: Arc<App>,
    ctx: Ctx,
    info: ResourceInfo,
    rp: ResPath,
    verb: &str,
    body: Bytes,
) -> Result<Response, ApiError> {
    let ns = rp.namespace.clone().unwrap_or_default();
    let sub = rp.sub.as_deref().unwrap_or_default();
    let ct = ctx.header("content-type").to_string();
    if sub == "proxy" {
        return proxy(&app, &ctx, &rp, body).await;
    }
    if info.behavior == Behavior::Virtual {
        if verb != "create" {
            return Err(ApiError::method_not_allowed());
        }
        let obj = parse_body(&body, &ct)?;
        return review(&app, &ctx, &info, &ns, obj);
    }
    if sub == "scale"
        && let Some(name) = rp.name.as_deref()
    {
        return scale(&app, &ctx, &info, &ns, name, verb, &body, &ct);
    }
    match (verb, rp.name.as_deref()) {
        ("watch", _) => watch::start(app, &ctx, info, rp.namespace.clone(), rp.name.clone()),
        ("list", _) => {
            let v = list(&app, &ctx, &info, rp.namespace.as_deref())?;
            respond(&ctx, &info, StatusCode::OK, &v)
        }
        ("get", Some(name)) => {
            let v = app.store.lock().get(&info, &ns, name)?;
            respond(&ctx, &info, StatusCode::OK, &v)
        }
        ("create", None) => {
            let obj = parse_body(&body, &ct)?;
            let wctx = write_ctx(&ctx);
            let mut st = app.store.lock();
            let mut v = st.create(&info, &ns, obj, &wctx)?;
            if info.group.is_empty() && info.plural == "secrets" && !wctx.dry_run {
                v = populate_sa_token_secret(&app, &mut st, &info, v);
            }
            drop(st);
            respond(&ctx, &info, StatusCode::CREATED, &v)
        }
        ("create", Some(name)) if sub == "token" => token_request(&app, &ns, name, &body, &ct),
        ("update", Some(name)) => {
            let obj = parse_body(&body, &ct)?;
            let mode = if sub == "status" {
                UpdateMode::Status
            } else {
                UpdateMode::Main
            };
            let v = app
                .store
                .lock()
                .update(&info, &ns, name, obj, mode, &write_ctx(&ctx))?;
            respond(&ctx, &info, StatusCode::OK, &v)
        }
        ("patch", Some(name)) => {
            let (code, v) = patch_object(&app, &ctx, &info, &ns, name, sub, &body, &ct)?;
            respond(&ctx, &info, code, &v)
        }
        ("delete", Some(name)) => {
            let opts = delete_opts(&ctx, &body)?;
            let v = app.store.lock().delete(&info, &ns, name, &opts)?;
            respond(&ctx, &info, StatusCode::OK, &v)
        }
        ("deletecollection", None) => {
            let opts = delete_opts(&ctx, &body)?;
            let labels = LabelSelector::parse(ctx.q("labelSelector").unwrap_or_default())?;
            let fields = FieldSelector::parse(ctx.q("fieldSelector").unwrap_or_default(), &info.plural)?
                .renamed(info.storage_field_paths());
            let mut st = app.store.lock();
            let keys: Vec<(String, String)> = st
                .list(&info, rp.namespace.as_deref(), None)
                .filter(|(_, o)| labels.matches(o) && fields.matches(o))
                .map(|(k, _)| k.clone())
                .collect();
            let mut items = Vec::new();
            for (n, name) in keys {
                if let Ok(v) = st.delete(&info, &n, &name, &opts) {
                    items.push(v);
                }
            }
            let v = json!({"kind": format!("{}List", info.kind), "apiVersion": info.api_version(),
                "metadata": {"resourceVersion": st.current_rv().to_string()}, "items": items});
            drop(st);
            respond(&ctx, &info, StatusCode::OK, &v)
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn delete_opts(ctx: &Ctx, body: &[u8]) -> Result<DeleteOpts, ApiError> {
    let b = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        parse_body(body, ctx.header("content-type"))?
    };
    let policy = b["propagationPolicy"]
        .as_str()
        .or_else(|| ctx.q("propagationPolicy"))
        .unwrap_or("Background");
    let propagation = match policy {
        "Background" => Propagation::Background,
        "Foreground" => Propagation::Foreground,
        "Orphan" => Propagation::Orphan,
        other => {
            return Err(ApiError::bad_request(format!(
                "unsupported propagationPolicy {other:?}"
            )));
        }
    };
    let propagation = if b["orphanDependents"] == json!(true) {
        Propagation::Orphan
    } else {
        propagation
    };
    let dry = ctx.dry_run()
        || b["dryRun"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "All"));
    Ok(DeleteOpts {
        propagation,
        dry_run: dry,
        uid: b["preconditions"]["uid"].as_str().map(String::from),
        resource_version: b["preconditions"]["resourceVersion"].as_str().map(String::from),
    })
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Continue {
    ns: String,
    name: String,
}

fn list(app: &App, ctx: &Ctx, info: &ResourceInfo, ns: Option<&str>) -> Result<Value, ApiError> {
    let labels = LabelSelector::parse(ctx.q("labelSelector").unwrap_or_default())?;
    let fields = FieldSelector::parse(ctx.q("fieldSelector").unwrap_or_default(), &info.plural)?
        .renamed(info.storage_field_paths());
    let limit = match ctx.q("limit") {
        Some(l) => l
            .parse::<usize>()
            .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
        None => 0,
    };
    let after = match ctx.q("continue").filter(|c| !c.is_empty()) {
        Some(c) => {
            let raw = URL_SAFE_NO_PAD
                .decode(c)
                .map_err(|_| ApiError::bad_request("invalid continue token"))?;
            let t: Continue =
                serde_json::from_slice(&raw).map_err(|_| ApiError::bad_request("invalid continue token"))?;
            Some((t.ns, t.name))
        }
        None => None,
    };
    let st = app.store.lock();
    let mut items = Vec::new();
    let mut next = None;
    let mut remaining = 0usize;
    for (key, obj) in st.list(info, ns, after.as_ref()) {
        if !labels.matches(obj) || !fields.matches(obj) {
            continue;
        }
        if limit > 0 && items.len() >= limit {
            remaining += 1;
            continue;
        }
        items.push(present(obj, info));
        if limit > 0 && items.len() == limit {
            next = Some(key.clone());
        }
    }
    let mut meta = json!({"resourceVersion": st.current_rv().to_string()});
    if remaining > 0
        && let Some((n, name)) = next
    {
        let tok = serde_json::to_vec(&Continue { ns: n, name }).unwrap_or_default();
        meta["continue"] = json!(URL_SAFE_NO_PAD.encode(tok));
        meta["remainingItemCount"] = json!(remaining);
    }
    Ok(
        json!({"kind": format!("{}List", info.kind), "apiVersion": info.api_version(), "metadata": meta, "items": items}),
    )
}

#[allow(clippy::too_many_arguments)]
fn patch_object(
    app: &App,
    ctx: &Ctx,
    info: &ResourceInfo,
    ns: &str,
    name: &str,
    sub: &str,
    body: &[u8],
    ct: &str,
) -> Result<(StatusCode, Value), ApiError> {
    let ptype = PatchType::from_content_type(ct).ok_or_else(|| ApiError::unsupported_media_type(ct))?;
    let p = parse_body(
        body,
        if ptype == PatchType::Apply {
            "application/yaml"
        } else {
            "application/json"
        },
    )?;
    let mode = if sub == "status" {
        UpdateMode::Status
    } else {
        UpdateMode::Main
    };
    let mut wctx = write_ctx(ctx);
    let mut st = app.store.lock();
    let current = st.get(info, ns, name);
    if ptype == PatchType::Apply {
        let manager = ctx.q("fieldManager").filter(|m| !m.is_empty()).ok_or_else(|| {
            ApiError::invalid(
                "PatchOptions",
                "meta.k8s.io",
                "",
                &[(
                    "fieldManager".into(),
                    "Required value: is required for apply patch".into(),
                )],
            )
        })?;
        let force = ctx.q("force").is_some_and(|f| f == "true");
        if !p.is_object() {
            return Err(ApiError::bad_request("apply patch must be an object"));
        }
        if p["kind"].as_str() != Some(info.kind.as_str())
            || p["apiVersion"].as_str() != Some(&info.api_version())
        {
            return Err(ApiError::bad_request(format!(
                "the apply configuration must have apiVersion {:?} and kind {:?}",
                info.api_version(),
                info.kind
            )));
        }
        let body_name = p["metadata"]["name"].as_str().unwrap_or_default();
        if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let now = now_rfc3339();
        wctx.fields_done = true;
        return match current {
            Err(e) if e.code == 404 && sub.is_empty() => {
                let mut obj = apply::apply(None, &p, manager, force, info, sub, &now)?;
                obj["metadata"]["name"] = json!(name);
                let v = st.create(info, ns, obj, &wctx)?;
                Ok((StatusCode::CREATED, v))
            }
            Err(e) => Err(e),
            Ok(cur) => {
                let mut applied = p.clone();
                if mode == UpdateMode::Main && info.status {
                    // status is owned by the status subresource
                    if let Some(o) = applied.as_object_mut() {
                        o.remove("status");
                    }
                }
                let mut new = apply::apply(Some(&cur), &applied, manager, force, info, sub, &now)?;
                if let Some(rv) = p["metadata"]["resourceVersion"].as_str() {
                    new["metadata"]["resourceVersion"] = json!(rv);
                }
                let v = st.update(info, ns, name, new, mode, &wctx)?;
                Ok((StatusCode::OK, v))
            }
        };
    }
    let mut doc = current?;
    match ptype {
        PatchType::Json => patch::json_patch(&mut doc, &p)?,
        PatchType::Merge => {
            if !p.is_object() {
                return Err(ApiError::bad_request("merge patch must be a JSON object"));
            }
            patch::merge_patch(&mut doc, &p)
        }
        PatchType::Strategic => {
            if !p.is_object() {
                return Err(ApiError::bad_request(
                    "strategic merge patch must be a JSON object",
                ));
            }
            patch::strategic_merge(&mut doc, &p)
        }
        // handled (and returned) above
        PatchType::Apply => return Err(ApiError::internal("apply patches take the apply path")),
    }
    let v = st.update(info, ns, name, doc, mode, &wctx)?;
    Ok((StatusCode::OK, v))
}

fn scale_of(obj: &Value) -> Value {
    let labels = obj["spec"]["selector"]["matchLabels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let selector: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    let m = &obj["metadata"];
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {"name": m["name"], "namespace": m["namespace"], "uid": m["uid"],
            "resourceVersion": m["resourceVersion"], "creationTimestamp": m["creationTimestamp"]},
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector.join(",")},
    })
}

/// The `scale` subresource of Deployments, StatefulSets and ReplicaSets.
#[allow(clippy::too_many_arguments)]
fn scale(
    app: &App,
    ctx: &Ctx,
    info: &ResourceInfo,
    ns: &str,
    name: &str,
    verb: &str,
    body: &[u8],
    ct: &str,
) -> Result<Response, ApiError> {
    let mut st = app.store.lock();
    let cur = st.get(info, ns, name)?;
    let mut sc = scale_of(&cur);
    match verb {
        "get" => return respond(ctx, info, StatusCode::OK, &sc),
        "update" => sc = parse_body(body, ct)?,
        "patch" => {
            let p = parse_body(body, "application/json")?;
            match PatchType::from_content_type(ct) {
                Some(PatchType::Json) => patch::json_patch(&mut sc, &p)?,
                Some(PatchType::Merge | PatchType::Strategic) => patch::merge_patch(&mut sc, &p),
                _ => return Err(ApiError::unsupported_media_type(ct)),
            }
        }
        _ => return Err(ApiError::method_not_allowed()),
    }
    let replicas = sc["spec"]["replicas"]
        .as_i64()
        .filter(|r| *r >= 0)
        .ok_or_else(|| {
            ApiError::invalid(
                "Scale",
                "autoscaling",
                name,
                &[(
                    "spec.replicas".into(),
                    "Invalid value: must be greater than or equal to 0".into(),
                )],
            )
        })?;
    let mut obj = cur;
    if !obj["spec"].is_object() {
        obj["spec"] = json!({});
    }
    obj["spec"]["replicas"] = json!(replicas);
    if let Some(rv) = sc["metadata"]["resourceVersion"].as_str() {
        obj["metadata"]["resourceVersion"] = json!(rv);
    }
    let v = st.update(info, ns, name, obj, UpdateMode::Main, &write_ctx(ctx))?;
    respond(ctx, info, StatusCode::OK, &scale_of(&v))
}

/// The legacy token controller: a new `kubernetes.io/service-account-token` Secret naming an existing
/// ServiceAccount gets `token`, `namespace` and `ca.crt`.
fn populate_sa_token_secret(
    app: &App,
    st: &mut crate::store::State,
    info: &ResourceInfo,
    secret: Value,
) -> Value {
    if secret["type"] != "kubernetes.io/service-account-token" {
        return secret;
    }
    let ns = meta_str(&secret, "namespace").to_string();
    let name = meta_str(&secret, "name").to_string();
    let Some(sa_name) = secret["metadata"]["annotations"]["kubernetes.io/service-account.name"]
        .as_str()
        .map(String::from)
    else {
        return secret;
    };
    let Some(sa_uid) = st
        .raw_object("", "serviceaccounts", &ns, &sa_name)
        .map(|sa| meta_str(sa, "uid").to_string())
    else {
        return secret;
    };
    let token = app
        .auth
        .issue_secret_token(&ns, &sa_name, &sa_uid, &name, meta_str(&secret, "uid"));
    let b64 = |s: &str| json!(base64::engine::general_purpose::STANDARD.encode(s.as_bytes()));
    let mut updated = secret.clone();
    updated["metadata"]["annotations"]["kubernetes.io/service-account.uid"] = json!(sa_uid);
    if !updated["data"].is_object() {
        updated["data"] = json!({});
    }
    updated["data"]["token"] = b64(&token);
    updated["data"]["namespace"] = b64(&ns);
    if let Some(ca) = &app.ca_pem {
        updated["data"]["ca.crt"] = b64(ca);
    }
    let ctx = WriteCtx {
        manager: "kube-controller-manager".into(),
        ..WriteCtx::default()
    };
    st.update(info, &ns, &name, updated, UpdateMode::Main, &ctx)
        .unwrap_or(secret)
}

fn token_request(app: &App, ns: &str, name: &str, body: &[u8], ct: &str) -> Result<Response, ApiError> {
    let req = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        parse_body(body, ct)?
    };
    let st = app.store.lock();
    let sa = st
        .raw_object("", "serviceaccounts", ns, name)
        .ok_or_else(|| ApiError::not_found("serviceaccounts", "", name))?;
    let uid = meta_str(sa, "uid").to_string();
    let mut audiences: Vec<String> = req["spec"]["audiences"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect())
        .unwrap_or_default();
    if audiences.is_empty() {
        audiences.push(ISSUER.to_string());
    }
    let ttl = req["spec"]["expirationSeconds"].as_i64().unwrap_or(3600);
    if ttl < 600 {
        return Err(ApiError::invalid(
            "TokenRequest",
            "authentication.k8s.io",
            name,
            &[(
                "spec.expirationSeconds".into(),
                "Invalid value: may not specify a duration less than 10 minutes".into(),
            )],
        ));
    }
    drop(st);
    let (token, exp) = app.auth.issue_sa_token(ns, name, &uid, &audiences, ttl);
    let exp_ts = jiff::Timestamp::from_second(exp)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    let v = json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": null},
        "spec": {"audiences": audiences, "expirationSeconds": ttl, "boundObjectRef": req["spec"]["boundObjectRef"]},
        "status": {"token": token, "expirationTimestamp": exp_ts},
    });
    Ok(json_response(StatusCode::CREATED, &v))
}

fn review(app: &App, ctx: &Ctx, info: &ResourceInfo, ns: &str, mut obj: Value) -> Result<Response, ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    let spec = obj["spec"].clone();
    match info.plural.as_str() {
        "tokenreviews" => {
            let token = spec["token"].as_str().unwrap_or_default();
            let wanted: Vec<String> = spec["audiences"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect())
                .unwrap_or_default();
            let st = app.store.lock();
            let status = if let Some(claims) = app.auth.verify_sa_token(token, &st) {
                let matched: Vec<String> = if wanted.is_empty() {
                    claims.audiences.clone()
                } else {
                    wanted
                        .iter()
                        .filter(|w| claims.audiences.contains(w))
                        .cloned()
                        .collect()
                };
                if matched.is_empty() {
                    json!({"authenticated": false, "error": "token audiences do not match the requested audiences"})
                } else {
                    json!({"authenticated": true, "user": claims.user.to_json(), "audiences": matched})
                }
            } else if let Some(u) = app.auth.authenticate(token, &st) {
                let auds = if wanted.is_empty() {
                    vec![ISSUER.to_string()]
                } else {
                    wanted
                };
                json!({"authenticated": true, "user": u.to_json(), "audiences": auds})
            } else {
                json!({"authenticated": false, "error": "invalid bearer token"})
            };
            obj["status"] = status;
        }
        "selfsubjectreviews" => {
            obj["status"] = json!({"userInfo": ctx.user.to_json()});
        }
        "selfsubjectaccessreviews" | "subjectaccessreviews" | "localsubjectaccessreviews" => {
            let user = if info.plural == "selfsubjectaccessreviews" {
                ctx.user.clone()
            } else {
                let mut u = UserInfo::new(spec["user"].as_str().unwrap_or_default(), &[]);
                u.groups = spec["groups"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect())
                    .unwrap_or_default();
                u
            };
            let attrs = if let Some(ra) = spec.get("resourceAttributes").filter(|v| v.is_object()) {
                let s = |k: &str| ra[k].as_str().unwrap_or_default().to_string();
                let mut namespace = s("namespace");
                if info.plural == "localsubjectaccessreviews" {
                    namespace = ns.to_string();
                }
                Attributes {
                    verb: s("verb"),
                    group: s("group"),
                    resource: s("resource"),
                    subresource: s("subresource"),
                    namespace,
                    name: s("name"),
                    path: String::new(),
                }
            } else {
                let nr = &spec["nonResourceAttributes"];
                Attributes {
                    verb: nr["verb"].as_str().unwrap_or("get").into(),
                    path: nr["path"].as_str().unwrap_or_default().into(),
                    ..Default::default()
                }
            };
            let rbac_on = app.rbac.load(std::sync::atomic::Ordering::Relaxed);
            let allowed = !rbac_on || rbac::authorize(&app.store.lock(), &user, &attrs);
            let reason = if !rbac_on {
                "RBAC is disabled: every request is allowed".to_string()
            } else if allowed {
                "allowed by RBAC".to_string()
            } else {
                String::new()
            };
            obj["status"] = json!({"allowed": allowed, "reason": reason});
        }
        _ => return Err(ApiError::method_not_allowed()),
    }
    obj["apiVersion"] = json!(info.api_version());
    obj["kind"] = json!(info.kind);
    if obj["metadata"].is_null() {
        obj["metadata"] = json!({"creationTimestamp": null});
    }
    Ok(json_response(StatusCode::CREATED, &obj))
}

async fn proxy(app: &App, ctx: &Ctx, rp: &ResPath, body: Bytes) -> Result<Response, ApiError> {
    if rp.plural != "services" {
        return Err(ApiError::path_not_found());
    }
    let ns = rp.namespace.clone().unwrap_or_default();
    let raw = rp.name.clone().unwrap_or_default();
    // `name`, `name:port` or `scheme:name:port`
    let parts: Vec<&str> = raw.split(':').collect();
    let (name, port) = match parts.as_slice() {
        [n] => (*n, ""),
        [n, p] => (*n, *p),
        [s, n, p] if *s == "http" || *s == "https" => (*n, *p),
        _ => return Err(ApiError::bad_request(format!("invalid service name {raw:?}"))),
    };
    let annotation = {
        let st = app.store.lock();
        let svc = st
            .raw_object("", "services", &ns, name)
            .ok_or_else(|| ApiError::not_found("services", "", name))?;
        svc["metadata"]["annotations"][ENDPOINT_ANNOTATION]
            .as_str()
            .map(String::from)
    };
    let addr = app
        .proxy
        .lookup(&ns, name, port, annotation.as_deref())
        .ok_or_else(|| {
            ApiError::new(
                503,
                "ServiceUnavailable",
                format!("no endpoints available for service \"{name}\""),
            )
        })?;
    let mut pq = if rp.rest.is_empty() {
        "/".to_string()
    } else {
        rp.rest.clone()
    };
    if !ctx.raw_query.is_empty() {
        pq = format!("{pq}?{}", ctx.raw_query);
    }
    app.proxy
        .forward(addr, ctx.method.clone(), &pq, &ctx.headers, body)
        .await
}
