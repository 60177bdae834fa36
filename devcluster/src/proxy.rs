//! Service proxy: `/api/v1/namespaces/{ns}/services/{name}[:{port}]/proxy/{path}` forwarded to a
//! local endpoint registered through the library or the `devcluster.sealant.dev/endpoint` annotation.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::RwLock;

use axum::body::Body;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::errors::ApiError;

/// Annotation on a Service naming its loopback endpoint (`127.0.0.1:8080`).
pub const ENDPOINT_ANNOTATION: &str = "devcluster.sealant.dev/endpoint";

/// Registered endpoints and the HTTP client used to reach them.
#[derive(Debug)]
pub struct Proxy {
    endpoints: RwLock<HashMap<(String, String, String), SocketAddr>>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for Proxy {
    fn default() -> Self {
        Self {
            endpoints: RwLock::default(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "host",
];

impl Proxy {
    /// Registers an endpoint for a service port (`port` is the number or name as used in URLs).
    pub fn register(&self, ns: &str, name: &str, port: &str, addr: SocketAddr) {
        self.endpoints
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert((ns.into(), name.into(), port.into()), addr);
    }

    /// Finds the endpoint for a service port; with an empty port, the only registered one.
    pub fn lookup(&self, ns: &str, name: &str, port: &str, annotation: Option<&str>) -> Option<SocketAddr> {
        let map = self.endpoints.read().unwrap_or_else(|e| e.into_inner());
        if let Some(a) = map.get(&(ns.to_string(), name.to_string(), port.to_string())) {
            return Some(*a);
        }
        let candidates: Vec<&SocketAddr> = map
            .iter()
            .filter(|((n, s, _), _)| n == ns && s == name)
            .map(|(_, a)| a)
            .collect();
        if port.is_empty() && candidates.len() == 1 {
            return Some(*candidates[0]);
        }
        // only loopback endpoints are honoured from annotations
        annotation
            .and_then(|a| a.parse::<SocketAddr>().ok())
            .filter(|a| a.ip().is_loopback())
    }

    /// Forwards a request to `addr` with `path_and_query`.
    pub async fn forward(
        &self,
        addr: SocketAddr,
        method: axum::http::Method,
        path_and_query: &str,
        headers: &axum::http::HeaderMap,
        body: Bytes,
    ) -> Result<axum::http::Response<Body>, ApiError> {
        let uri: axum::http::Uri = format!("http://{addr}{path_and_query}")
            .parse()
            .map_err(|e| ApiError::bad_request(format!("invalid proxy path: {e}")))?;
        let mut req = axum::http::Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            let n = k.as_str();
            if HOP_BY_HOP.contains(&n) || n == "authorization" || n.starts_with("impersonate-") {
                continue;
            }
            req = req.header(k, v);
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let resp = self.client.request(req).await.map_err(|e| {
            ApiError::new(
                503,
                "ServiceUnavailable",
                format!("error trying to reach service: {e}"),
            )
        })?;
        let (mut parts, body) = resp.into_parts();
        for h in HOP_BY_HOP {
            parts.headers.remove(*h);
        }
        Ok(axum::http::Response::from_parts(parts, Body::new(body)))
    }
}
