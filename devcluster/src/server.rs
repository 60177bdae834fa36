//! HTTP entry point: authentication, impersonation, authorization, fault injection and routing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tracing::{Instrument, debug, info_span, warn};

use crate::auth::{Authenticator, UserInfo};
use crate::errors::ApiError;
use crate::faults::{FaultConfig, Faults};
use crate::proxy::Proxy;
use crate::rbac::{self, Attributes};
use crate::store::Store;
use crate::{discovery, handlers};

/// Largest accepted request body.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// Shared server state.
#[derive(Debug)]
pub struct App {
    /// Object store.
    pub store: Store,
    /// Token authentication.
    pub auth: Authenticator,
    /// Whether RBAC is enforced.
    pub rbac: AtomicBool,
    /// Fault injection.
    pub faults: Faults,
    /// Service proxy endpoints.
    pub proxy: Proxy,
    /// Flips to true on shutdown (ends watches).
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Listen address.
    pub addr: SocketAddr,
    /// How often watches with `allowWatchBookmarks` get a BOOKMARK.
    pub bookmark_interval: Duration,
    /// PEM of the serving CA (written into ServiceAccount token Secrets as `ca.crt`).
    pub ca_pem: Option<String>,
}

/// Per-request context.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The effective user (after impersonation).
    pub user: UserInfo,
    /// Query parameters (last value wins).
    pub query: HashMap<String, String>,
    /// Request headers.
    pub headers: HeaderMap,
    /// Method.
    pub method: Method,
    /// The raw query string.
    pub raw_query: String,
    /// Whether RBAC is enforced for this request.
    pub rbac: bool,
}

impl Ctx {
    /// A query parameter.
    pub fn q(&self, k: &str) -> Option<&str> {
        self.query.get(k).map(String::as_str)
    }

    /// A header as string.
    pub fn header(&self, k: &str) -> &str {
        self.headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// Whether `dryRun=All` was given.
    pub fn dry_run(&self) -> bool {
        self.q("dryRun").is_some_and(|v| v == "All")
    }

    /// The field manager: the query parameter, else the User-Agent's program name.
    pub fn manager(&self) -> String {
        if let Some(m) = self.q("fieldManager").filter(|m| !m.is_empty()) {
            return m.to_string();
        }
        let ua = self.header("user-agent");
        let prefix = ua.split('/').next().unwrap_or_default().trim();
        if prefix.is_empty() {
            "unknown".into()
        } else {
            prefix.to_string()
        }
    }
}

/// Builds the router.
pub fn router(app: Arc<App>) -> Router {
    Router::new().fallback(entry).with_state(app)
}

/// JSON response helper.
pub fn json_response(code: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    (code, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

/// A `Status` error response.
pub fn error_response(e: &ApiError) -> Response {
    json_response(
        StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &e.to_status(),
    )
}

async fn entry(State(app): State<Arc<App>>, req: Request) -> Response {
    let span = info_span!("request", method = %req.method(), path = %req.uri().path());
    async move {
        let started = std::time::Instant::now();
        let method = req.method().clone();
        // a bug must cost one request a 500, not the connection
        let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(dispatch(app, req))).await;
        let resp = match outcome {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                debug!(code = e.code, reason = %e.reason, "request failed");
                error_response(&e)
            }
            Err(_) => {
                tracing::error!("request handler panicked");
                error_response(&ApiError::internal("internal error while handling the request"))
            }
        };
        debug!(%method, status = resp.status().as_u16(), elapsed_us = started.elapsed().as_micros() as u64, "done");
        resp
    }
    .instrument(span)
    .await
}

fn parse_query(uri: &axum::http::Uri) -> HashMap<String, String> {
    let mut out = HashMap::new();
    if let Some(q) = uri.query() {
        let pairs: Vec<(String, String)> = serde_urlencoded_pairs(q);
        for (k, v) in pairs {
            out.insert(k, v);
        }
    }
    out
}

fn serde_urlencoded_pairs(q: &str) -> Vec<(String, String)> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(
        &format!("/?{q}")
            .parse()
            .unwrap_or_else(|_| axum::http::Uri::from_static("/")),
    )
    .map(|x| x.0)
    .unwrap_or_default()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

fn authz(app: &App, user: &UserInfo, attrs: &Attributes) -> Result<(), ApiError> {
    if !app.rbac.load(Ordering::Relaxed) {
        return Ok(());
    }
    let mut st = app.store.lock();
    let allowed = rbac::authorize(&st, user, attrs);
    st.audit_mut().record(user, attrs, allowed);
    if allowed {
        Ok(())
    } else {
        let mut e = ApiError::forbidden(rbac::forbidden_message(user, attrs));
        if !attrs.resource.is_empty() {
            let mut d = json!({"kind": attrs.resource});
            if !attrs.name.is_empty() {
                d["name"] = json!(attrs.name);
            }
            if !attrs.group.is_empty() {
                d["group"] = json!(attrs.group);
            }
            e = e.with_details(d);
        }
        Err(e)
    }
}

fn impersonate(app: &App, user: UserInfo, headers: &HeaderMap) -> Result<UserInfo, ApiError> {
    let imp_user = headers
        .get("impersonate-user")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let imp_groups: Vec<String> = headers
        .get_all("impersonate-group")
        .iter()
        .filter_map(|v| v.to_str().ok().map(String::from))
        .collect();
    let Some(name) = imp_user else {
        if !imp_groups.is_empty() {
            return Err(ApiError::bad_request(
                "requested [Impersonate-Group] without impersonating a user",
            ));
        }
        return Ok(user);
    };
    let sa = name
        .strip_prefix("system:serviceaccount:")
        .and_then(|r| r.split_once(':'));
    let attrs = match sa {
        Some((ns, n)) => Attributes {
            verb: "impersonate".into(),
            resource: "serviceaccounts".into(),
            namespace: ns.into(),
            name: n.into(),
            ..Default::default()
        },
        None => Attributes {
            verb: "impersonate".into(),
            resource: "users".into(),
            name: name.clone(),
            ..Default::default()
        },
    };
    authz(app, &user, &attrs)?;
    for g in &imp_groups {
        let attrs = Attributes {
            verb: "impersonate".into(),
            resource: "groups".into(),
            name: g.clone(),
            ..Default::default()
        };
        authz(app, &user, &attrs)?;
    }
    let mut out = match sa {
        Some((ns, n)) => UserInfo::service_account(ns, n, ""),
        None => UserInfo::new(&name, &[]),
    };
    for g in imp_groups {
        if !out.groups.contains(&g) {
            out.groups.push(g);
        }
    }
    Ok(out)
}

/// A parsed resource path.
#[derive(Debug, Clone, Default)]
pub struct ResPath {
    /// Group.
    pub group: String,
    /// Version.
    pub version: String,
    /// Namespace from the URL.
    pub namespace: Option<String>,
    /// Plural.
    pub plural: String,
    /// Object name.
    pub name: Option<String>,
    /// Subresource.
    pub sub: Option<String>,
    /// Remainder after the subresource (proxy path).
    pub rest: String,
}

enum Route {
    Root,
    Version,
    Health,
    CoreVersions,
    Groups,
    Group(String),
    GroupVersion(String, String),
    OpenApiV2,
    OpenApiV3Index,
    OpenApiV3(String, String),
    Devcluster(String),
    Resource(ResPath),
    NotFound,
}

fn route(app: &App, path: &str) -> Route {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest) = match segs.as_slice() {
        [] => return Route::Root,
        ["version"] => return Route::Version,
        ["healthz" | "livez" | "readyz", ..] => return Route::Health,
        ["api"] => return Route::CoreVersions,
        ["apis"] => return Route::Groups,
        ["apis", g] => return Route::Group((*g).into()),
        ["api", "v1"] => return Route::GroupVersion(String::new(), "v1".into()),
        ["apis", g, v] => return Route::GroupVersion((*g).into(), (*v).into()),
        ["openapi", "v2"] => return Route::OpenApiV2,
        ["openapi", "v3"] => return Route::OpenApiV3Index,
        ["openapi", "v3", "api", "v1"] => return Route::OpenApiV3(String::new(), "v1".into()),
        ["openapi", "v3", "apis", g, v] => return Route::OpenApiV3((*g).into(), (*v).into()),
        ["devcluster", rest @ ..] => return Route::Devcluster(rest.join("/")),
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Route::NotFound,
    };
    let st = app.store.lock();
    let namespaced_plural = |p: &str| st.resolve(group, version, p).is_some_and(|r| r.namespaced);
    let (namespace, rest) = if rest.len() >= 3 && rest[0] == "namespaces" && namespaced_plural(rest[2]) {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    let Some(plural) = rest.first() else {
        return Route::NotFound;
    };
    Route::Resource(ResPath {
        group: group.into(),
        version: version.into(),
        namespace,
        plural: (*plural).into(),
        name: rest.get(1).map(|s| (*s).to_string()),
        sub: rest.get(2).map(|s| (*s).to_string()),
        rest: if rest.len() > 3 {
            format!("/{}", rest[3..].join("/"))
        } else {
            String::new()
        },
    })
}

/// The RBAC verb of a resource request.
fn verb_of(method: &Method, rp: &ResPath, query: &HashMap<String, String>) -> &'static str {
    let watch = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    match (method.as_str(), rp.name.is_some()) {
        ("GET", false) if watch => "watch",
        ("GET", false) => "list",
        ("GET", true) if watch => "watch",
        ("GET", true) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}

async fn dispatch(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = parse_query(&parts.uri);
    let route = route(&app, &path);
    match route {
        Route::Version => return Ok(json_response(StatusCode::OK, &discovery::version())),
        Route::Health => return Ok((StatusCode::OK, "ok").into_response()),
        _ => {}
    }
    let user = {
        let token = bearer(&parts.headers).ok_or_else(ApiError::unauthorized)?;
        let st = app.store.lock();
        app.auth
            .authenticate(token, &st)
            .ok_or_else(ApiError::unauthorized)?
    };
    let user = impersonate(&app, user, &parts.headers)?;
    let ctx = Ctx {
        user,
        query,
        headers: parts.headers.clone(),
        method: parts.method.clone(),
        raw_query: parts.uri.query().unwrap_or_default().to_string(),
        rbac: app.rbac.load(Ordering::Relaxed),
    };
    let nonres = |p: &str| Attributes {
        verb: "get".into(),
        path: p.into(),
        ..Default::default()
    };
    let ok = |v: Value| Ok(json_response(StatusCode::OK, &v));
    match route {
        Route::Root => {
            authz(&app, &ctx.user, &nonres(&path))?;
            ok(
                json!({"paths": ["/api", "/api/v1", "/apis", "/openapi/v2", "/openapi/v3", "/version", "/healthz"]}),
            )
        }
        Route::CoreVersions => {
            authz(&app, &ctx.user, &nonres(&path))?;
            ok(discovery::core_versions(&app.addr.to_string()))
        }
        Route::Groups => {
            authz(&app, &ctx.user, &nonres(&path))?;
            let v = discovery::group_list(&app.store.lock());
            ok(v)
        }
        Route::Group(g) => {
            authz(&app, &ctx.user, &nonres(&path))?;
            let v = discovery::group(&app.store.lock(), &g);
            v.map_or_else(|| Err(ApiError::path_not_found()), ok)
        }
        Route::GroupVersion(g, v) => {
            authz(&app, &ctx.user, &nonres(&path))?;
            let doc = discovery::resource_list(&app.store.lock(), &g, &v);
            doc.map_or_else(|| Err(ApiError::path_not_found()), ok)
        }
        Route::OpenApiV2 => Err(ApiError::path_not_found()),
        Route::OpenApiV3Index => {
            authz(&app, &ctx.user, &nonres(&path))?;
            let v = discovery::openapi_v3_index(&app.store.lock());
            ok(v)
        }
        Route::OpenApiV3(g, v) => {
            authz(&app, &ctx.user, &nonres(&path))?;
            let doc = discovery::openapi_v3_doc(&app.store.lock(), &g, &v);
            doc.map_or_else(|| Err(ApiError::path_not_found()), ok)
        }
        Route::Devcluster(rest) => {
            if !ctx.user.is_master() {
                return Err(ApiError::forbidden(
                    "devcluster admin endpoints need the admin token",
                ));
            }
            let body = read_body(body).await?;
            devcluster_admin(&app, &ctx, &rest, &body)
        }
        Route::Resource(rp) => {
            let info = {
                let st = app.store.lock();
                st.resolve(&rp.group, &rp.version, &rp.plural).cloned()
            }
            .ok_or_else(ApiError::path_not_found)?;
            if let Some(sub) = &rp.sub
                && !info.has_subresource(sub)
            {
                return Err(ApiError::path_not_found());
            }
            if info.namespaced && rp.namespace.is_none() && rp.name.is_some() {
                return Err(ApiError::path_not_found());
            }
            let verb = verb_of(&ctx.method, &rp, &ctx.query);
            if verb == "unknown" {
                return Err(ApiError::method_not_allowed());
            }
            let attrs = Attributes {
                verb: verb.into(),
                group: rp.group.clone(),
                resource: rp.plural.clone(),
                subresource: rp.sub.clone().unwrap_or_default(),
                namespace: rp.namespace.clone().unwrap_or_default(),
                name: rp.name.clone().or_else(|| pinned_name(&ctx)).unwrap_or_default(),
                path: path.clone(),
            };
            authz(&app, &ctx.user, &attrs)?;
            if let Some(lat) = app.faults.latency(&ctx.user.name) {
                tokio::time::sleep(lat).await;
            }
            if let Some(code) = app.faults.roll(verb, &ctx.user.name) {
                warn!(verb, code, "injected fault");
                return Err(injected(
                    code,
                    &info.plural,
                    &info.group,
                    rp.name.as_deref().unwrap_or_default(),
                ));
            }
            let body = read_body(body).await?;
            handlers::resource(app, ctx, info, rp, verb, body).await
        }
        Route::Version | Route::Health => Err(ApiError::path_not_found()),
        Route::NotFound => Err(ApiError::path_not_found()),
    }
}

/// For list/watch, a `metadata.name=X` field selector authorizes like a request for X
/// (so `resourceNames` rules allow single-object informers, as in a real cluster).
fn pinned_name(ctx: &Ctx) -> Option<String> {
    ctx.q("fieldSelector")?
        .split(',')
        .filter_map(|p| p.trim().strip_prefix("metadata.name="))
        .map(|n| n.trim_start_matches('=').to_string())
        .next()
}

fn injected(code: u16, plural: &str, group: &str, name: &str) -> ApiError {
    match code {
        409 => ApiError::stale(plural, group, name),
        429 => ApiError::new(429, "TooManyRequests", "injected fault: too many requests"),
        503 => ApiError::new(503, "ServiceUnavailable", "injected fault: service unavailable"),
        504 => ApiError::new(504, "Timeout", "injected fault: timeout"),
        c => ApiError::new(c, "InternalError", "injected fault: internal error"),
    }
}

async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| ApiError::too_large())
}

fn devcluster_admin(app: &App, ctx: &Ctx, rest: &str, body: &[u8]) -> Result<Response, ApiError> {
    match (ctx.method.as_str(), rest) {
        ("GET", "faults") => Ok(json_response(StatusCode::OK, &json!(app.faults.get()))),
        ("PUT" | "POST", "faults") => {
            let cfg: FaultConfig = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid fault config: {e}")))?;
            cfg.validate()
                .map_err(|e| ApiError::bad_request(format!("invalid fault config: {e}")))?;
            app.faults.set(cfg);
            Ok(json_response(StatusCode::OK, &json!(app.faults.get())))
        }
        ("DELETE", "faults") => {
            app.faults.set(FaultConfig::default());
            Ok(json_response(StatusCode::OK, &json!(app.faults.get())))
        }
        ("GET", "faults/stats") => Ok(json_response(StatusCode::OK, &json!(app.faults.stats()))),
        ("DELETE", "faults/stats") => {
            app.faults.reset_stats();
            Ok(json_response(StatusCode::OK, &json!(app.faults.stats())))
        }
        ("POST", "compact") => {
            let mut st = app.store.lock();
            st.compact();
            Ok(json_response(
                StatusCode::OK,
                &json!({"compactedResourceVersion": st.current_rv().to_string()}),
            ))
        }
        ("GET", "audit") => {
            let body = {
                let st = app.store.lock();
                json!({"items": st.audit().entries(), "dropped": st.audit().dropped()})
            };
            Ok(json_response(StatusCode::OK, &body))
        }
        ("DELETE", "audit") => {
            app.store.lock().audit_mut().clear();
            Ok(json_response(StatusCode::OK, &json!({"items": [], "dropped": 0})))
        }
        ("GET", "rbac") => Ok(json_response(
            StatusCode::OK,
            &json!({"enabled": app.rbac.load(Ordering::Relaxed)}),
        )),
        ("PUT" | "POST", "rbac") => {
            let v: Value = serde_json::from_slice(body).map_err(|e| ApiError::bad_request(e.to_string()))?;
            let on = v["enabled"]
                .as_bool()
                .ok_or_else(|| ApiError::bad_request("expected {\"enabled\": bool}"))?;
            app.rbac.store(on, Ordering::Relaxed);
            Ok(json_response(StatusCode::OK, &json!({"enabled": on})))
        }
        _ => Err(ApiError::path_not_found()),
    }
}
