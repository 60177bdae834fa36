//! `devcluster`: run the loopback Kubernetes API server until SIGINT/SIGTERM.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use sealant_devcluster::{DevCluster, Options};

/// A loopback Kubernetes API server for sealant's tests and quickstart.
#[derive(Debug, Parser)]
#[command(name = "devcluster", version)]
struct Args {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 6443)]
    port: u16,
    /// Where to write the kubeconfig.
    #[arg(long, default_value = "devcluster.kubeconfig")]
    kubeconfig: PathBuf,
    /// Admin bearer token (random if not given).
    #[arg(long, env = "DEVCLUSTER_TOKEN")]
    token: Option<String>,
    /// Enforce RBAC for non-admin users.
    #[arg(long)]
    rbac: bool,
    /// Log as JSON lines instead of plain text.
    #[arg(long)]
    json_logs: bool,
    /// Events kept for watch resumes.
    #[arg(long, default_value_t = 10_000)]
    history: usize,
    /// Serve plain HTTP instead of HTTPS (kubectl will then not send the bearer token).
    #[arg(long)]
    plain_http: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if args.json_logs {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let handle = DevCluster::start(Options {
        port: args.port,
        token: args.token,
        kubeconfig: Some(args.kubeconfig),
        rbac: args.rbac,
        history: args.history,
        tls: !args.plain_http,
        ..Options::default()
    })
    .await
    .context("starting devcluster")?;
    println!("devcluster listening on {}", handle.url());
    println!("export KUBECONFIG={}", handle.kubeconfig_path().display());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    handle.shutdown().await;
    Ok(())
}
