//! Shared test helpers: start a devcluster in-process and build kube clients for it.
#![allow(dead_code)]

use std::time::Duration;

use axum::http;
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use sealant_devcluster::{DevCluster, Handle, Options};
use serde_json::Value;

/// Starts a devcluster with default options (HTTPS, RBAC off).
pub async fn start() -> (Handle, Client) {
    start_with(Options::default()).await
}

/// Starts a devcluster with the given options.
pub async fn start_with(opts: Options) -> (Handle, Client) {
    let h = DevCluster::start(opts).await.expect("devcluster starts");
    let c = client_with_token(&h, h.token()).await;
    (h, c)
}

/// A client for the devcluster authenticating with `token`.
pub async fn client_with_token(h: &Handle, token: &str) -> Client {
    let yaml = sealant_devcluster::kubeconfig_yaml(&h.url(), token, h.ca_pem());
    let kc = Kubeconfig::from_yaml(&yaml).expect("kubeconfig parses");
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    // kube retries 429/503/504 with a long backoff; tests want to see injected faults
    cfg.default_retry = false;
    Client::try_from(cfg).expect("client")
}

/// A client that impersonates `user` (and `groups`) with the admin token.
pub async fn impersonating(h: &Handle, user: &str, groups: &[&str]) -> Client {
    let yaml = sealant_devcluster::kubeconfig_yaml(&h.url(), h.token(), h.ca_pem());
    let kc = Kubeconfig::from_yaml(&yaml).expect("kubeconfig parses");
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    cfg.default_retry = false;
    cfg.auth_info.impersonate = Some(user.to_string());
    cfg.auth_info.impersonate_groups = Some(groups.iter().map(|g| g.to_string()).collect());
    Client::try_from(cfg).expect("client")
}

/// Sends a raw JSON request; returns (status, body).
pub async fn raw(
    client: &Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let bytes = body.map(|b| serde_json::to_vec(&b).unwrap()).unwrap_or_default();
    raw_bytes(client, method, path, content_type, bytes).await
}

/// Sends a raw request with a byte body; returns (status, body as JSON or string).
pub async fn raw_bytes(
    client: &Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(body)
        .unwrap();
    let resp = client
        .send(req.map(kube::client::Body::from))
        .await
        .expect("request is sent");
    let status = resp.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, v)
}

/// Waits until `f` returns true, polling every 20 ms for at most `secs` seconds.
pub async fn eventually<F, Fut>(secs: u64, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// The HTTP status code of a kube error (0 when it is not an API error).
pub fn code(e: &kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        _ => 0,
    }
}

/// The reason of a kube API error.
pub fn reason(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.reason.clone(),
        _ => String::new(),
    }
}

/// The message of a kube API error.
pub fn message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}
