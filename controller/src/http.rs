//! The controller's endpoints (axum): health, readiness, metrics, and the sealing helpers used by the CLI.
//!
//! | path | what |
//! |---|---|
//! | `GET /healthz` | the process is up |
//! | `GET /readyz` | the key Secrets have been listed once (nothing slower is waited for) |
//! | `GET /metrics` | Prometheus metrics (OpenMetrics text) |
//! | `GET /v1/recipients` | the recipient to seal to, as a recipients file |
//! | `POST /v1/verify` | a SealedSecret (YAML or JSON): 200 when this controller can unseal it, 422 with the reason |
//! | `POST /v1/rotate` | a SealedSecret: the same, re-sealed to the newest key with each value's scope kept |

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sealant_crds::SealedSecret;
use serde_json::json;

use crate::keys::KeyStore;
use crate::metrics::Metrics;
use crate::sealed::{build, rotate};

/// What the endpoints share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub keys: KeyStore,
    pub metrics: Metrics,
    pub ready: Arc<AtomicBool>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/recipients", get(recipients))
        .route("/v1/verify", post(verify))
        .route("/v1/rotate", post(rotate_handler))
        .with_state(state)
}

async fn readyz(State(s): State<AppState>) -> Response {
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "key Secrets not listed yet\n").into_response()
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    s.metrics
        .keys
        .set(i64::try_from(s.keys.len()).unwrap_or(i64::MAX));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}

async fn recipients(State(s): State<AppState>) -> Response {
    let text = s.keys.recipients_file();
    if text.is_empty() {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "NoKey",
            "the controller holds no key yet",
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

fn problem(status: StatusCode, reason: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"valid": false, "reason": reason, "message": message})),
    )
        .into_response()
}

fn wants_json(headers: &HeaderMap, body: &str) -> bool {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    ct.contains("json") || body.trim_start().starts_with('{')
}

/// A SealedSecret as YAML or JSON. JSON the YAML parser refuses (a key over 1024 characters is no YAML
/// implicit key) is read as JSON; when neither reads it, the YAML parser's error is the one told.
fn parse_sealed(body: &str) -> Result<SealedSecret, String> {
    let ss: SealedSecret = serde_saphyr::from_str(body).or_else(|e| {
        serde_json::from_str(body).map_err(|_| format!("the body is not a SealedSecret: {e}"))
    })?;
    if ss.metadata.name.is_none() {
        return Err("the SealedSecret has no metadata.name".to_owned());
    }
    Ok(ss)
}

async fn verify(State(s): State<AppState>, body: String) -> Response {
    let ss = match parse_sealed(&body) {
        Ok(ss) => ss,
        Err(m) => return problem(StatusCode::BAD_REQUEST, "BadRequest", &m),
    };
    match build(&ss, &s.keys.keyring()) {
        Ok(desired) => {
            let keys: Vec<&String> = desired.data.keys().collect();
            (
                StatusCode::OK,
                axum::Json(json!({"valid": true, "reason": "Unsealed", "keys": keys})),
            )
                .into_response()
        }
        Err(e) => problem(StatusCode::UNPROCESSABLE_ENTITY, e.reason.as_str(), &e.message),
    }
}

async fn rotate_handler(State(s): State<AppState>, headers: HeaderMap, body: String) -> Response {
    let ss = match parse_sealed(&body) {
        Ok(ss) => ss,
        Err(m) => return problem(StatusCode::BAD_REQUEST, "BadRequest", &m),
    };
    let Some((newest, _)) = s.keys.newest() else {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "NoKey",
            "the controller holds no key yet",
        );
    };
    match rotate(&ss, &s.keys.keyring(), &newest) {
        Ok(rotated) => {
            if wants_json(&headers, &body) {
                axum::Json(rotated).into_response()
            } else {
                match serde_saphyr::to_string(&rotated) {
                    Ok(yaml) => ([(header::CONTENT_TYPE, "application/yaml")], yaml).into_response(),
                    Err(e) => problem(StatusCode::INTERNAL_SERVER_ERROR, "Internal", &e.to_string()),
                }
            }
        }
        Err(e) => problem(StatusCode::UNPROCESSABLE_ENTITY, e.reason.as_str(), &e.message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::key_secret;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use sealant_crds::SealedSecretSpec;
    use sealant_seal::{Identity, Scope, Target, seal};
    use tower::ServiceExt;

    fn state_with(ids: &[(&Identity, &str)]) -> AppState {
        let keys = KeyStore::default();
        for (id, created) in ids {
            keys.upsert(&key_secret(id, "sealant", created.parse().unwrap()))
                .unwrap();
        }
        AppState {
            keys,
            metrics: Metrics::new(),
            ready: Arc::new(AtomicBool::new(true)),
        }
    }

    fn sealed_for(id: &Identity, ns: &str) -> String {
        let t = Target {
            namespace: ns,
            name: "db",
            key: "password",
        };
        let ss = SealedSecret {
            metadata: ObjectMeta {
                name: Some("db".into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            spec: SealedSecretSpec {
                encrypted_data: [(
                    "password".to_owned(),
                    seal(&[id.recipient().clone()], Scope::Strict, &t, b"s3cret").unwrap(),
                )]
                .into(),
                template: None,
                recipients: vec![id.fingerprint().to_string()],
            },
            status: None,
        };
        serde_saphyr::to_string(&ss).unwrap()
    }

    async fn call(state: AppState, method: &str, path: &str, body: String) -> (StatusCode, String) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::from(body))
            .unwrap();
        let resp = router(state).oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn health_ready_recipients_metrics() {
        let id = Identity::generate();
        let state = state_with(&[(&id, "2026-01-01T00:00:00Z")]);
        assert_eq!(
            call(state.clone(), "GET", "/healthz", String::new()).await.0,
            StatusCode::OK
        );
        let (st, text) = call(state.clone(), "GET", "/v1/recipients", String::new()).await;
        assert_eq!(st, StatusCode::OK);
        assert!(text.contains(&id.recipient().to_string()));
        let (st, text) = call(state.clone(), "GET", "/metrics", String::new()).await;
        assert_eq!(st, StatusCode::OK);
        assert!(text.contains("sealant_keys 1"), "{text}");
        state.ready.store(false, Ordering::Relaxed);
        assert_eq!(
            call(state, "GET", "/readyz", String::new()).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        let empty = state_with(&[]);
        assert_eq!(
            call(empty, "GET", "/v1/recipients", String::new()).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[tokio::test]
    async fn verify_reports_reasons_without_values() {
        let id = Identity::generate();
        let stranger = Identity::generate();
        let state = state_with(&[(&id, "2026-01-01T00:00:00Z")]);
        let (st, text) = call(state.clone(), "POST", "/v1/verify", sealed_for(&id, "prod")).await;
        assert_eq!(st, StatusCode::OK, "{text}");
        assert!(text.contains("\"valid\":true") && !text.contains("s3cret"));
        let moved = sealed_for(&id, "prod").replace("namespace: prod", "namespace: dev");
        let (st, text) = call(state.clone(), "POST", "/v1/verify", moved).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(text.contains("ScopeMismatch"), "{text}");
        let (st, text) = call(state.clone(), "POST", "/v1/verify", sealed_for(&stranger, "prod")).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(text.contains("UnknownKey"), "{text}");
        assert_eq!(
            call(state, "POST", "/v1/verify", "a: [".into()).await.0,
            StatusCode::BAD_REQUEST
        );
    }

    #[tokio::test]
    async fn json_with_a_long_key_is_read() {
        let id = Identity::generate();
        let state = state_with(&[(&id, "2026-01-01T00:00:00Z")]);
        let mut ss: serde_json::Value = serde_saphyr::from_str(&sealed_for(&id, "prod")).unwrap();
        ss["spec"]["template"] = serde_json::json!({"metadata": {"annotations": {"k".repeat(1100): "v"}}});
        let body = serde_json::to_string(&ss).unwrap();
        assert!(serde_saphyr::from_str::<serde_json::Value>(&body).is_err());
        let (st, text) = call(state, "POST", "/v1/verify", body).await;
        assert_eq!(st, StatusCode::OK, "{text}");
    }

    #[tokio::test]
    async fn rotate_reseals_to_newest() {
        let old = Identity::generate();
        let new = Identity::generate();
        let state = state_with(&[(&old, "2026-01-01T00:00:00Z"), (&new, "2026-02-01T00:00:00Z")]);
        let (st, yaml) = call(state, "POST", "/v1/rotate", sealed_for(&old, "prod")).await;
        assert_eq!(st, StatusCode::OK, "{yaml}");
        let rotated: SealedSecret = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(rotated.spec.recipients, vec![new.fingerprint().to_string()]);
        let only_new = state_with(&[(&new, "2026-02-01T00:00:00Z")]);
        let (st, _) = call(only_new, "POST", "/v1/verify", yaml).await;
        assert_eq!(st, StatusCode::OK);
    }
}
