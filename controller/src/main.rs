//! `sealant-controller`: turns SealedSecrets into Secrets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Parser, ValueEnum};
use futures::FutureExt;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use sealant_controller::events::Recorder;
use sealant_controller::external::reconcile as external;
use sealant_controller::external::stores::Registry;
use sealant_controller::gitops::reconcile as gitops;
use sealant_controller::http::{AppState, router};
use sealant_controller::keys::KeyStore;
use sealant_controller::keys_task::{maintain_keys, watch_keys};
use sealant_controller::leader::Elector;
use sealant_controller::metrics::Metrics;
use sealant_controller::relist::{ChangeFilter, changed_objects};
use sealant_controller::sealed::reconcile::{Context, error_policy, reconcile};
use sealant_controller::secretwriter::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use sealant_crds::{ExternalSecret, GitSync, SealedSecret};
use tokio::sync::watch;
use tracing::{error, info, warn};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    Sealedsecrets,
    Externalsecrets,
    Gitsyncs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

/// Turns SealedSecrets into Secrets.
#[derive(Debug, Parser)]
#[command(name = "sealant-controller", version, max_term_width = 100)]
struct Config {
    /// Namespace holding the key Secrets, the recipients ConfigMap and the leader Lease
    #[arg(long, env = "SEALANT_NAMESPACE", default_value = "sealant")]
    namespace: String,
    /// Address of the HTTP endpoints (health, metrics, /v1/*)
    #[arg(long, env = "SEALANT_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,
    /// Do not make a key on first start (bring your own, or restore a backup)
    #[arg(long, env = "SEALANT_NO_KEYGEN")]
    no_keygen: bool,
    /// Make a new sealing key this often; 0 turns renewal off (old keys are always kept)
    #[arg(long, env = "SEALANT_KEY_RENEW_PERIOD", default_value = "30d", value_parser = parse_period)]
    key_renew_period: Duration,
    /// Run without leader election (only for a single replica)
    #[arg(long, env = "SEALANT_NO_LEADER_ELECTION")]
    no_leader_election: bool,
    /// Name of the leader Lease
    #[arg(long, env = "SEALANT_LEASE_NAME", default_value = "sealant-controller")]
    lease_name: String,
    /// How long a Lease lasts without renewal
    #[arg(long, env = "SEALANT_LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    lease_duration: Duration,
    /// This replica's name in the Lease (the pod name)
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Only handle SealedSecrets matching this label selector (to split a large cluster between Deployments)
    #[arg(long, env = "SEALANT_SHARD_SELECTOR")]
    shard_selector: Option<String>,
    /// The controllers to run
    #[arg(
        long,
        env = "SEALANT_CONTROLLERS",
        value_enum,
        value_delimiter = ',',
        default_value = "sealedsecrets,externalsecrets,gitsyncs"
    )]
    controllers: Vec<Which>,
    /// Where GitSync keeps its Git cache (one bare repository per URL)
    #[arg(long, env = "SEALANT_GIT_CACHE_DIR", default_value = "/tmp/sealant-git")]
    git_cache_dir: std::path::PathBuf,
    /// How many objects each controller reconciles at once
    #[arg(long, env = "SEALANT_CONCURRENCY", default_value_t = 16)]
    concurrency: u16,
    /// Log format
    #[arg(long, env = "SEALANT_LOG_FORMAT", value_enum, default_value = "json")]
    log_format: LogFormat,
}

fn parse_period(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 30d, 720h, 0 for off)"))
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn,tower=warn,hyper=warn,vaultrs=off,rustify=off,aws_config=warn,aws_smithy_runtime=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = Config::parse();
    init_tracing(config.log_format);
    // The AWS SDK brings rustls' aws-lc-rs backend next to ring: name the process default explicitly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            error!(
                error = format!("{e}: {}", e.root_cause()),
                "sealant-controller stopped"
            );
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> Result<()> {
    let kube_config = kube::Config::infer()
        .await
        .context("connecting to Kubernetes (in-cluster config or KUBECONFIG)")?;
    let client = kube::Client::try_from(kube_config.clone()).context("making the Kubernetes client")?;
    let identity = config
        .identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("sealant-controller-{}", std::process::id()));
    let keys = KeyStore::default();
    let metrics = Metrics::new();
    let ready = Arc::new(AtomicBool::new(false));

    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("binding {}", config.http_addr))?;
    info!(addr = %listener.local_addr()?, "serving endpoints");
    let app = router(AppState {
        keys: keys.clone(),
        metrics: metrics.clone(),
        ready: ready.clone(),
    });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            error!(error = %e, "HTTP server stopped");
        }
    });

    let (keys_changed, keys_changed_rx) = watch::channel(0u64);
    tokio::spawn(watch_keys(
        client.clone(),
        config.namespace.clone(),
        keys.clone(),
        ready,
        keys_changed,
    ));

    let (lead_tx, mut leading) = watch::channel(config.no_leader_election);
    let elector = Elector::new(
        client.clone(),
        &config.namespace,
        &config.lease_name,
        &identity,
        config.lease_duration,
    );
    if !config.no_leader_election {
        tokio::spawn(elector.clone().run(lead_tx));
    }

    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    info!(%identity, "waiting for leadership");
    loop {
        if *leading.borrow_and_update() {
            break;
        }
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            r = leading.changed() => { r.context("leader election stopped")?; }
        }
    }
    info!(%identity, "leading: starting controllers");
    metrics.leader.set(1);
    let maintain = tokio::spawn(maintain_keys(
        client.clone(),
        config.namespace.clone(),
        keys.clone(),
        !config.no_keygen,
        (!config.key_renew_period.is_zero()).then_some(config.key_renew_period),
        keys_changed_rx.clone(),
    ));

    let recorder = Recorder::new(client.clone(), "sealant-controller", &identity);
    // Owned Secrets only trigger reconciles: their metadata is enough, their data is never held.
    let owned_secrets = || {
        let secrets = watcher(
            Api::<PartialObjectMeta<Secret>>::all(client.clone()),
            watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}")),
        )
        .default_backoff();
        // a re-list (dropped watch, 410 Gone) triggers only Secrets that changed or vanished
        changed_objects(secrets, ChangeFilter::touched())
    };
    let mut object_config = watcher::Config::default();
    if let Some(sel) = &config.shard_selector {
        object_config = object_config.labels(sel);
    }
    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel::<()>();
    let mut lost_tx = Some(lost_tx);
    let mut leading_watch = leading.clone();
    tokio::spawn(async move {
        while leading_watch.changed().await.is_ok() {
            if !*leading_watch.borrow() {
                if let Some(tx) = lost_tx.take() {
                    let _ = tx.send(());
                }
                return;
            }
        }
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|v| *v).await;
        }
    };
    let controller_config = kube::runtime::controller::Config::default().concurrency(config.concurrency);
    let mut running: Vec<futures::future::BoxFuture<'static, ()>> = Vec::new();
    if config.controllers.contains(&Which::Sealedsecrets) {
        let ctx = Arc::new(Context {
            client: client.clone(),
            keys: keys.clone(),
            metrics: metrics.clone(),
            recorder: recorder.clone(),
        });
        let (store, objects) = trimmed_watch(Api::<SealedSecret>::all(client.clone()), object_config.clone());
        running.push(
            Controller::for_stream(objects, store)
                .owns_stream(owned_secrets())
                .reconcile_all_on(tokio_stream_from_watch(keys_changed_rx.clone()))
                .with_config(controller_config.clone())
                .graceful_shutdown_on(stopped())
                .run(reconcile, error_policy, ctx)
                .for_each(report_errors)
                .boxed(),
        );
    }
    if config.controllers.contains(&Which::Externalsecrets) {
        let ctx = Arc::new(external::Context {
            client: client.clone(),
            metrics: metrics.clone(),
            recorder: recorder.clone(),
            registry: Registry::new(metrics.provider_call_counter(), Duration::from_secs(3 * 3600)),
            failures: Default::default(),
        });
        let (store, objects) =
            trimmed_watch(Api::<ExternalSecret>::all(client.clone()), object_config.clone());
        running.push(
            Controller::for_stream(objects, store)
                .owns_stream(owned_secrets())
                .with_config(controller_config.clone())
                .graceful_shutdown_on(stopped())
                .run(external::reconcile, external::error_policy, ctx)
                .for_each(report_errors)
                .boxed(),
        );
    }
    if config.controllers.contains(&Which::Gitsyncs) {
        let ctx = Arc::new(gitops::Context::new(
            client.clone(),
            kube_config.clone(),
            metrics.clone(),
            recorder.clone(),
            config.git_cache_dir.clone(),
        ));
        let (store, objects) = trimmed_watch(Api::<GitSync>::all(client.clone()), object_config.clone());
        running.push(
            Controller::for_stream(objects, store)
                .with_config(controller_config.clone())
                .graceful_shutdown_on(stopped())
                .run(gitops::reconcile, gitops::error_policy, ctx)
                .for_each(report_errors)
                .boxed(),
        );
    }
    let controller = futures::future::join_all(running);
    tokio::pin!(controller);
    let lost = tokio::select! {
        _ = &mut controller => false,
        _ = &mut shutdown => { let _ = stop_tx.send(true); controller.await; false }
        _ = lost_rx => true,
    };
    maintain.abort();
    metrics.leader.set(0);
    if lost {
        anyhow::bail!("lost the leader Lease; exiting so a restart rejoins the election cleanly");
    }
    if !config.no_leader_election {
        elector.release().await;
    }
    warn!("shut down");
    Ok(())
}

/// A controller's watch and store of the objects it reconciles, kept without `managedFields` and kubectl's
/// last-applied-configuration annotation: no reconciler reads them, and at 10,000 objects they are most of
/// what the store would hold.
fn trimmed_watch<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (
    Store<K>,
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let objects = watcher(api, config)
        .default_backoff()
        .modify(|o: &mut K| {
            o.managed_fields_mut().clear();
            o.annotations_mut().remove(LAST_APPLIED_ANNOTATION);
        })
        .reflect(writer);
    // a re-list (dropped watch, 410 Gone) triggers only objects that are new or changed
    (reader, changed_objects(objects, ChangeFilter::applied()))
}

const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Logs what a controller stream reports as failed: watch errors (e.g. a missing permission) and reconcile errors.
fn report_errors<K, E1: std::fmt::Display, E2: std::fmt::Display>(
    result: Result<K, kube::runtime::controller::Error<E1, E2>>,
) -> futures::future::Ready<()> {
    if let Err(e) = result {
        match &e {
            kube::runtime::controller::Error::ObjectNotFound(_) => {}
            _ => warn!(error = %e, "controller error"),
        }
    }
    futures::future::ready(())
}

/// A stream that yields once per change of a watch channel (to re-reconcile everything when keys change).
fn tokio_stream_from_watch(rx: watch::Receiver<u64>) -> impl futures::Stream<Item = ()> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move {
        rx.changed().await.ok()?;
        Some(((), rx))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_with_defaults_and_overrides() {
        <Config as clap::CommandFactory>::command().debug_assert();
        let c = Config::try_parse_from(["sealant-controller"]).unwrap();
        assert_eq!(c.key_renew_period, Duration::from_secs(30 * 86_400));
        assert_eq!(c.namespace, "sealant");
        let c = Config::try_parse_from([
            "sealant-controller",
            "--key-renew-period",
            "0",
            "--lease-duration",
            "3s",
        ])
        .unwrap();
        assert!(c.key_renew_period.is_zero());
        assert_eq!(c.lease_duration, Duration::from_secs(3));
        assert!(Config::try_parse_from(["sealant-controller", "--key-renew-period", "soon"]).is_err());
    }
}
