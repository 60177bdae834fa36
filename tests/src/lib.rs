//! End-to-end test harness: a devcluster in the test process, the real `kubectl`, and the real `sealant` and
//! `sealant-controller` binaries as child processes. Everything listens on 127.0.0.1 and stops with the test.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The directory the workspace binaries are built into (next to this test's executable).
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

/// The path of a workspace binary, building the CLI and the controller once if they are missing. They are not
/// rebuilt when present: run `cargo build --workspace --bins` first (scripts/test.sh does), or a stale binary
/// from an earlier build is tested.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let path = bin_dir().join(name);
    if !path.exists() {
        BUILT.get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "-p", "sealant-cli", "-p", "sealant-controller"])
                .status()
                .expect("running cargo build");
            assert!(status.success(), "cargo build of the binaries failed");
        });
    }
    assert!(
        path.exists(),
        "{} not found; run `cargo build --workspace` first",
        path.display()
    );
    path
}

/// A free port on 127.0.0.1.
pub fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    l.local_addr().expect("local addr")
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A devcluster served from a background runtime for the life of this value.
#[derive(Debug)]
pub struct Cluster {
    pub dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    handle: Option<sealant_devcluster::Handle>,
    runtime: tokio::runtime::Runtime,
}

impl Cluster {
    pub fn start() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let kubeconfig = dir.path().join("kubeconfig");
        let opts = sealant_devcluster::Options {
            kubeconfig: Some(kubeconfig.clone()),
            ..Default::default()
        };
        let handle = runtime.block_on(sealant_devcluster::DevCluster::start(opts))?;
        let cluster = Cluster {
            dir,
            kubeconfig,
            handle: Some(handle),
            runtime,
        };
        for (file, crd) in sealant_crds::all_crds() {
            let path = cluster.dir.path().join(file);
            std::fs::write(&path, sealant_crds::crd_yaml(&crd))?;
            cluster.kubectl_ok(&["apply", "-f", path.to_str().unwrap()])?;
        }
        Ok(cluster)
    }

    pub fn handle(&self) -> &sealant_devcluster::Handle {
        self.handle.as_ref().expect("running")
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// A kubeconfig for a user authenticated by `token` (registered with devcluster as `user` in `groups`).
    pub fn user_kubeconfig(&self, token: &str, user: &str, groups: &[&str]) -> PathBuf {
        self.handle().add_user_token(token, user, groups);
        self.token_kubeconfig(user, token)
    }

    /// Runs the real kubectl against this cluster.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        run(
            Command::new("kubectl")
                .env("KUBECONFIG", &self.kubeconfig)
                .args(args),
            stdin,
        )
    }

    pub fn kubectl_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.kubectl(args, None);
        if !out.status.success() {
            bail!(
                "kubectl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn apply(&self, yaml: &str) -> Result<()> {
        let out = self.kubectl(&["apply", "-f", "-"], Some(yaml));
        if !out.status.success() {
            bail!("kubectl apply failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// `kubectl get -o json`, or `None` when it does not exist.
    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let out = self.kubectl(&["get", kind, name, "-n", namespace, "-o", "json"], None);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).expect("kubectl JSON"))
    }

    /// Runs the real `sealant` CLI with this cluster's kubeconfig.
    pub fn sealant(&self, args: &[&str], stdin: Option<&str>) -> Output {
        run(
            Command::new(binary("sealant"))
                .env("KUBECONFIG", &self.kubeconfig)
                .args(args),
            stdin,
        )
    }

    /// Starts `sealant-controller` against this cluster; its endpoints get a Service reachable through the
    /// API server's proxy (`sealant/sealant-controller:http`).
    pub fn controller(&self, name: &str, extra: &[&str]) -> Result<Controller> {
        self.controller_with_env(name, extra, &[])
    }

    /// Like [`Cluster::controller`], with extra environment variables.
    pub fn controller_with_env(
        &self,
        name: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Controller> {
        self.controller_as(name, &self.kubeconfig, extra, env)
    }

    /// A kubeconfig that authenticates with `token` (e.g. a ServiceAccount's), written under the test directory.
    pub fn token_kubeconfig(&self, name: &str, token: &str) -> PathBuf {
        let admin = std::fs::read_to_string(&self.kubeconfig).expect("kubeconfig");
        let path = self.dir.path().join(format!("kubeconfig-{name}"));
        std::fs::write(&path, admin.replace(self.handle().token(), token)).expect("writing kubeconfig");
        path
    }

    /// Starts `sealant-controller` with the given kubeconfig (and so identity).
    pub fn controller_as(
        &self,
        name: &str,
        kubeconfig: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Controller> {
        let addr = free_addr();
        let log = self.dir.path().join(format!("{name}.log"));
        let child = Command::new(binary("sealant-controller"))
            .env("KUBECONFIG", kubeconfig)
            .env(
                "RUST_LOG",
                std::env::var("SEALANT_E2E_LOG").unwrap_or_else(|_| "info,vaultrs=off,rustify=off".into()),
            )
            .args([
                "--namespace",
                "sealant",
                "--http-addr",
                &addr.to_string(),
                "--identity",
                name,
            ])
            .args(["--log-format", "json"])
            .arg("--git-cache-dir")
            .arg(self.dir.path().join(format!("{name}-git")))
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting sealant-controller")?;
        self.handle()
            .register_named_service_endpoint("sealant", "sealant-controller", "http", addr);
        Ok(Controller {
            child: Some(child),
            addr,
            log,
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::env::var_os("SEALANT_E2E_KEEP").is_some() {
            eprintln!("keeping {}", self.dir.path().display());
            std::mem::forget(std::mem::replace(
                &mut self.dir,
                tempfile::tempdir().expect("tempdir"),
            ));
        }
        if let Some(h) = self.handle.take() {
            self.runtime.block_on(h.shutdown());
        }
    }
}

fn run(cmd: &mut Command, stdin: Option<&str>) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawning a command");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    child.wait_with_output().expect("waiting for a command")
}

/// A running controller process; killed on drop.
#[derive(Debug)]
pub struct Controller {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl Controller {
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, no goodbye.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, and wait for a graceful exit.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.kill();
    }
}

/// GET a path from a local HTTP endpoint; returns (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

/// A Secrets Manager call to a moto server on 127.0.0.1:`port` (JSON protocol; moto reads the region and
/// account from the signature header but does not verify it). Panics unless moto answers 200.
pub fn moto_call(port: u16, target: &str, body: &str) -> String {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("moto");
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: secretsmanager.{target}\r\nContent-Type: \
         application/x-amz-json-1.1\r\nAuthorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/\
         secretsmanager/aws4_request, SignedHeaders=host, Signature=0\r\nContent-Length: {}\r\nConnection: \
         close\r\n\r\n{body}",
        body.len()
    )
    .expect("writing to moto");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("reading from moto");
    assert!(answer.starts_with("HTTP/1.1 200"), "moto {target}: {answer}");
    answer
}

/// The Ready condition of an object as (status, reason, message).
pub fn ready(obj: &Value) -> Option<(String, String, String)> {
    let conds = obj["status"]["conditions"].as_array()?;
    let c = conds.iter().find(|c| c["type"] == "Ready")?;
    Some((
        c["status"].as_str()?.to_owned(),
        c["reason"].as_str().unwrap_or_default().to_owned(),
        c["message"].as_str().unwrap_or_default().to_owned(),
    ))
}

/// A Secret's data value, decoded.
pub fn secret_value(secret: &Value, key: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let b64 = secret["data"][key].as_str()?;
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// How long [`wait_value`] waits for a Secret to hold a value.
pub const WAIT: Duration = Duration::from_secs(60);

/// Waits until Secret `ns/name` holds `want` under `key`.
pub fn wait_value(c: &Cluster, ns: &str, name: &str, key: &str, want: &[u8]) {
    wait_value_within(c, ns, name, key, want, WAIT);
}

/// [`wait_value`] with its own timeout.
pub fn wait_value_within(c: &Cluster, ns: &str, name: &str, key: &str, want: &[u8], timeout: Duration) {
    let what = format!("Secret {ns}/{name} {key}={}", String::from_utf8_lossy(want));
    wait_for(&what, timeout, || {
        (secret_value(&c.get("secret", ns, name)?, key).as_deref() == Some(want)).then_some(())
    });
}

/// The stdout of a command that must have succeeded (its stderr in the failure message).
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A Secret manifest with `pairs` as stringData (values quoted as JSON strings, which YAML reads as they are).
pub fn secret_yaml(ns: &str, name: &str, pairs: &[(&str, &str)]) -> String {
    let data: String = pairs
        .iter()
        .map(|(k, v)| format!("  {k}: {}\n", Value::from(*v)))
        .collect();
    format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {ns}\nstringData:\n{data}")
}

/// Runs the system `git` in `dir` with a fixed identity; its trimmed stdout (panics with stderr on failure).
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "test")
        .env("GIT_AUTHOR_EMAIL", "test@example.invalid")
        .env("GIT_COMMITTER_NAME", "test")
        .env("GIT_COMMITTER_EMAIL", "test@example.invalid")
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A Git repository in a temporary directory (branch `main`), committed to with the system `git`.
#[derive(Debug)]
pub struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    pub fn new() -> Repo {
        let r = Repo {
            dir: tempfile::tempdir().expect("temporary directory"),
        };
        r.git(&["init", "-q", "-b", "main"]);
        r
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.path().display())
    }

    pub fn git(&self, args: &[&str]) -> String {
        git(self.path(), args)
    }

    /// Writes `text` to `rel`, creating its directories.
    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("a file path")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }

    pub fn remove(&self, rel: &str) {
        std::fs::remove_file(self.path().join(rel)).expect("remove");
    }

    /// Commits everything; returns the commit id.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }
}

impl Default for Repo {
    fn default() -> Self {
        Repo::new()
    }
}

/// `scripts/chart.py render` for release `sealant` in namespace `sealant`, with extra `--set`-style arguments:
/// the rendered YAML and its documents (empty ones dropped).
pub fn render_chart(set: &[&str]) -> (String, Vec<Value>) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = Command::new("python3")
        .current_dir(root)
        .args([
            "scripts/chart.py",
            "render",
            "--namespace",
            "sealant",
            "--release",
            "sealant",
        ])
        .args(set)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "chart render failed (run scripts/setup.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8 YAML");
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).expect("rendered YAML");
    (text, docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// ServiceAccount shop/deployer with a Role that manages ConfigMaps in shop: the identity GitSync tests apply
/// as (`serviceAccountName: deployer`).
pub const SHOP_DEPLOYER: &str = r#"
apiVersion: v1
kind: ServiceAccount
metadata: {name: deployer, namespace: shop}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: deployer, namespace: shop}
rules: [{apiGroups: [""], resources: [configmaps], verbs: [get, list, watch, create, update, patch, delete]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: deployer, namespace: shop}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: deployer}
subjects: [{kind: ServiceAccount, name: deployer, namespace: shop}]
"#;
