//! Talking to a cluster through the user's kubeconfig: the controller's published recipients, its key
//! Secrets, and its endpoints through the API server's service proxy (as `kubectl` reaches services).

use anyhow::{Context, Result, anyhow};
use clap::Args;
use http_body_util::BodyExt;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::error::hinted;

/// Where the controller runs.
#[derive(Debug, Args, Clone)]
pub struct ClusterArgs {
    /// kubeconfig context to use [default: the current context]
    #[arg(long, env = "SEALANT_CONTEXT")]
    pub context: Option<String>,
    /// Namespace of sealant-controller
    #[arg(long, env = "SEALANT_CONTROLLER_NAMESPACE", default_value = "sealant")]
    pub controller_namespace: String,
    /// Service name of sealant-controller
    #[arg(long, env = "SEALANT_CONTROLLER_NAME", default_value = "sealant-controller")]
    pub controller_name: String,
    /// Service port (name or number) of the controller's HTTP endpoints
    #[arg(long, env = "SEALANT_CONTROLLER_PORT", default_value = "http")]
    pub controller_port: String,
}

/// A single-threaded runtime for the few requests a command makes.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

const REACH_HINT: &str = "check the kubeconfig context (`kubectl config current-context`, or --context) and that \
                          the cluster answers (`kubectl get ns`)";

pub async fn client(args: &ClusterArgs) -> Result<kube::Client> {
    // Built with the whole workspace, rustls may have two crypto backends: name the process default.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..Default::default()
    };
    let config = kube::Config::from_kubeconfig(&options)
        .await
        .map_err(|e| hinted(format!("cannot load the kubeconfig: {e}"), REACH_HINT))?;
    kube::Client::try_from(config)
        .map_err(|e| hinted(format!("cannot make a Kubernetes client: {e}"), REACH_HINT))
}

/// The name of the context in use, for cache file names.
pub fn context_name(args: &ClusterArgs) -> String {
    if let Some(c) = &args.context {
        return c.clone();
    }
    Kubeconfig::read()
        .ok()
        .and_then(|k| k.current_context)
        .unwrap_or_else(|| "default".to_owned())
}

/// Explains an API error in the user's terms.
pub fn api_error(e: kube::Error, what: &str, args: &ClusterArgs) -> anyhow::Error {
    match &e {
        kube::Error::Api(s) if s.code == 404 => hinted(
            format!("{what}: not found ({})", s.message),
            format!(
                "is sealant-controller installed in namespace {}? pass --controller-namespace / \
                 --controller-name if it runs elsewhere",
                args.controller_namespace
            ),
        ),
        kube::Error::Api(s) if s.code == 401 || s.code == 403 => hinted(
            format!("{what}: not allowed ({})", s.message),
            "ask for read access to it, or use a kubeconfig context that has it",
        ),
        _ => hinted(format!("{what}: {e}"), REACH_HINT),
    }
}

/// POSTs `body` to a controller endpoint through the service proxy; returns the status code and body.
pub async fn proxy_post(
    client: &kube::Client,
    args: &ClusterArgs,
    path: &str,
    body: String,
    content_type: &str,
) -> Result<(u16, String)> {
    let uri = format!(
        "/api/v1/namespaces/{}/services/{}:{}/proxy{path}",
        args.controller_namespace, args.controller_name, args.controller_port
    );
    let request = http::Request::post(&uri)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(kube::client::Body::from(body.into_bytes()))
        .map_err(|e| anyhow!("building the request: {e}"))?;
    let response = client
        .send(request)
        .await
        .map_err(|e| hinted(format!("cannot reach the controller at {uri}: {e}"), REACH_HINT))?;
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| anyhow!("reading the answer: {e}"))?
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    if status == 404 || status == 503 && !text.contains("\"reason\"") {
        return Err(hinted(
            format!("the controller endpoint {uri} answered {status}: {}", text.trim()),
            format!(
                "is sealant-controller running in namespace {} with a Service named {}? pass \
                 --controller-namespace / --controller-name / --controller-port if not",
                args.controller_namespace, args.controller_name
            ),
        ));
    }
    Ok((status, text))
}
