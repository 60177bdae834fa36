//! devcluster: a loopback Kubernetes API server for tests and the quickstart.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sealant_devcluster::Error> {
//! let handle = sealant_devcluster::DevCluster::start(sealant_devcluster::Options::default()).await?;
//! println!("KUBECONFIG={}", handle.kubeconfig_path().display());
//! handle.shutdown().await;
//! # Ok(()) }
//! ```

pub mod apply;
pub mod auth;
pub mod discovery;
pub mod errors;
pub mod faults;
mod handlers;
pub mod patch;
pub mod protobuf;
pub mod proxy;
pub mod rbac;
pub mod resources;
pub mod schema;
pub mod selectors;
mod serve;
pub mod server;
pub mod store;
mod table;
pub mod tls;
pub mod util;
pub mod validation;
mod watch;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::info;

pub use auth::UserInfo;
pub use errors::ApiError;
pub use faults::{FaultConfig, FaultStats, VerbFault};
pub use rbac::AuditEntry;

/// Errors starting or driving a devcluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listener could not be bound.
    #[error("binding 127.0.0.1:{port}: {source}")]
    Bind {
        /// Requested port.
        port: u16,
        /// Cause.
        source: std::io::Error,
    },
    /// The kubeconfig could not be written.
    #[error("writing kubeconfig {path}: {source}")]
    Kubeconfig {
        /// Path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// TLS material could not be generated.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// A ServiceAccount token could not be issued.
    #[error("{0}")]
    Api(#[from] ApiError),
}

/// Start options.
#[derive(Debug, Clone)]
pub struct Options {
    /// Port on 127.0.0.1 (0 = any free port).
    pub port: u16,
    /// Admin bearer token (random when None).
    pub token: Option<String>,
    /// Where to write the kubeconfig (a temp file removed on shutdown when None).
    pub kubeconfig: Option<PathBuf>,
    /// Enforce RBAC for non-admin users.
    pub rbac: bool,
    /// Number of events kept for watch resumes (older resumes get 410 Gone).
    pub history: usize,
    /// Interval of BOOKMARK events on watches that allow them.
    pub bookmark_interval: Duration,
    /// Serve HTTPS with a generated CA (kubectl sends bearer tokens only over TLS). When false,
    /// plain HTTP is served (fine for kube-rs clients and curl).
    pub tls: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            port: 0,
            token: None,
            kubeconfig: None,
            rbac: false,
            history: 10_000,
            bookmark_interval: Duration::from_secs(10),
            tls: true,
        }
    }
}

/// Entry point.
#[derive(Debug)]
pub struct DevCluster;

/// A running devcluster.
#[derive(Debug)]
pub struct Handle {
    addr: SocketAddr,
    scheme: &'static str,
    ca_pem: Option<String>,
    token: String,
    kubeconfig: PathBuf,
    remove_kubeconfig: bool,
    app: Arc<server::App>,
    shutdown_tx: tokio::sync::watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

/// Renders a kubeconfig for `server` with a bearer token and, for HTTPS, the CA that signed the server.
pub fn kubeconfig_yaml(server: &str, token: &str, ca_pem: Option<&str>) -> String {
    use base64::Engine;
    let ca = ca_pem
        .map(|p| {
            format!(
                "    certificate-authority-data: {}\n",
                base64::engine::general_purpose::STANDARD.encode(p)
            )
        })
        .unwrap_or_default();
    let mut s = String::new();
    s.push_str("apiVersion: v1\nkind: Config\nclusters:\n- name: devcluster\n  cluster:\n");
    s.push_str(&format!("    server: {server}\n{ca}"));
    s.push_str("contexts:\n- name: devcluster\n  context:\n    cluster: devcluster\n");
    s.push_str("    user: devcluster-admin\n    namespace: default\n");
    s.push_str("current-context: devcluster\npreferences: {}\nusers:\n- name: devcluster-admin\n  user:\n");
    s.push_str(&format!("    token: {token}\n"));
    s
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path)?;
    f.write_all(contents.as_bytes())
}

impl DevCluster {
    /// Binds 127.0.0.1, writes the kubeconfig and serves until [`Handle::shutdown`].
    pub async fn start(opts: Options) -> Result<Handle, Error> {
        // Clients in the same process (tests, the quickstart) need a rustls default; in a workspace build rustls
        // has two backends (ring, and aws-lc from the AWS SDK) and picks none by itself.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, opts.port))
            .await
            .map_err(|source| Error::Bind {
                port: opts.port,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            port: opts.port,
            source,
        })?;
        let token = opts.token.clone().unwrap_or_else(|| util::random_token(24));
        let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
        let tls = if opts.tls { Some(tls::generate()?) } else { None };
        let app = Arc::new(server::App {
            ca_pem: tls.as_ref().map(|t| t.ca_pem.clone()),
            store: store::Store::new(opts.history),
            auth: auth::Authenticator::new(token.clone()),
            rbac: opts.rbac.into(),
            faults: faults::Faults::default(),
            proxy: proxy::Proxy::default(),
            shutdown: shutdown_rx.clone(),
            addr,
            bookmark_interval: opts.bookmark_interval,
        });
        let (kubeconfig, remove_kubeconfig) = match &opts.kubeconfig {
            Some(p) => (p.clone(), false),
            None => (
                std::env::temp_dir().join(format!(
                    "devcluster-{}-{}.kubeconfig",
                    std::process::id(),
                    addr.port()
                )),
                true,
            ),
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let yaml = kubeconfig_yaml(
            &format!("{scheme}://{addr}"),
            &token,
            tls.as_ref().map(|t| t.ca_pem.as_str()),
        );
        write_private(&kubeconfig, &yaml).map_err(|source| Error::Kubeconfig {
            path: kubeconfig.clone(),
            source,
        })?;
        let router = server::router(app.clone());
        let acceptor = tls
            .as_ref()
            .map(|t| tokio_rustls::TlsAcceptor::from(t.config.clone()));
        let task = tokio::spawn(serve::run(listener, router, acceptor, shutdown_rx));
        info!(%addr, kubeconfig = %kubeconfig.display(), rbac = opts.rbac, "devcluster listening");
        Ok(Handle {
            addr,
            scheme,
            ca_pem: tls.map(|t| t.ca_pem),
            token,
            kubeconfig,
            remove_kubeconfig,
            app,
            shutdown_tx,
            task: Some(task),
        })
    }
}

impl Handle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:PORT` (or `http://` without TLS).
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// PEM of the CA that signed the serving certificate (None without TLS).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// The admin bearer token (user `devcluster-admin`, group `system:masters`).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Path of the kubeconfig written on start.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// Registers a loopback endpoint for `services/{name}:{port}/proxy`.
    pub fn register_service_endpoint(&self, ns: &str, name: &str, port: u16, addr: SocketAddr) {
        self.app.proxy.register(ns, name, &port.to_string(), addr);
    }

    /// Registers an endpoint under a named service port.
    pub fn register_named_service_endpoint(&self, ns: &str, name: &str, port_name: &str, addr: SocketAddr) {
        self.app.proxy.register(ns, name, port_name, addr);
    }

    /// Replaces the fault injection configuration.
    pub fn set_faults(&self, cfg: FaultConfig) {
        self.app.faults.set(cfg);
    }

    /// The current fault configuration.
    pub fn faults(&self) -> FaultConfig {
        self.app.faults.get()
    }

    /// What fault injection did so far (requests subject to faults, errors by verb and code, watches dropped,
    /// 410s answered).
    pub fn fault_stats(&self) -> FaultStats {
        self.app.faults.stats()
    }

    /// Resets the fault counters to zero.
    pub fn reset_fault_stats(&self) {
        self.app.faults.reset_stats();
    }

    /// Turns RBAC enforcement on or off.
    pub fn set_rbac(&self, enabled: bool) {
        self.app.rbac.store(enabled, Ordering::Relaxed);
    }

    /// The authorization decisions made while RBAC was enforced, oldest first (at most
    /// [`rbac::AUDIT_CAPACITY`]; older ones are dropped and counted by [`Handle::audit_dropped`]).
    pub fn audit(&self) -> Vec<AuditEntry> {
        self.app.store.lock().audit().entries()
    }

    /// How many decisions the bounded audit log dropped.
    pub fn audit_dropped(&self) -> u64 {
        self.app.store.lock().audit().dropped()
    }

    /// Empties the audit log.
    pub fn clear_audit(&self) {
        self.app.store.lock().audit_mut().clear();
    }

    /// Adds a bearer token authenticating as `user` with `groups`.
    pub fn add_user_token(&self, token: &str, user: &str, groups: &[&str]) {
        self.app.auth.add_token(token, UserInfo::new(user, groups));
    }

    /// Issues a token for an existing ServiceAccount (like `kubectl create token`).
    pub fn service_account_token(&self, ns: &str, name: &str, ttl: Duration) -> Result<String, Error> {
        let uid = {
            let st = self.app.store.lock();
            let sa = st
                .raw_object("", "serviceaccounts", ns, name)
                .ok_or_else(|| ApiError::not_found("serviceaccounts", "", name))?;
            util::meta_str(sa, "uid").to_string()
        };
        let (t, _) =
            self.app
                .auth
                .issue_sa_token(ns, name, &uid, &[auth::ISSUER.to_string()], ttl.as_secs() as i64);
        Ok(t)
    }

    /// Drops the watch history: any resume from an older resourceVersion gets 410 Gone.
    pub fn compact(&self) {
        self.app.store.lock().compact();
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.app.store.lock().current_rv()
    }

    /// Stops the server, ends open watches, and removes a temporary kubeconfig.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown_tx.send(true);
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
        // Drop removes the temporary kubeconfig
    }
}

impl Drop for Handle {
    /// A handle dropped without [`Handle::shutdown`] (a panicking test) still stops the server and
    /// removes its temporary kubeconfig.
    fn drop(&mut self) {
        let _ = self.shutdown_tx.send(true);
        if self.remove_kubeconfig {
            let _ = std::fs::remove_file(&self.kubeconfig);
        }
    }
}
