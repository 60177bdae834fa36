//! Scenarios 3 and 4: SealedSecret create -> Secret visible latency, and controller cold start over many
//! SealedSecrets already stored, with the controller's peak RSS. devcluster runs in this process (plain HTTP on
//! 127.0.0.1, so the harness talks to it with a few lines of std networking), the controller is the release
//! `sealant-controller` binary as a child process.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sealant_seal::{Fingerprint, Recipient, Scope, Target, parse_recipients, seal};
use serde_json::{Value, json};

use crate::Settings;
use crate::report::Report;

/// A plain-HTTP client for devcluster: one connection per request (HTTP/1.0, the server closes).
#[derive(Clone, Debug)]
pub struct Api {
    pub addr: SocketAddr,
    pub token: String,
}

impl Api {
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Vec<u8>)> {
        let body = body.map(serde_json::to_vec).transpose()?.unwrap_or_default();
        let mut s = TcpStream::connect(self.addr).context("connecting to devcluster")?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        let head = format!(
            "{method} {path} HTTP/1.0\r\nHost: {}\r\nAuthorization: Bearer {}\r\nAccept: application/json\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            self.token,
            body.len()
        );
        let mut req = head.into_bytes();
        req.extend_from_slice(&body);
        s.write_all(&req)?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp)?;
        let split = resp
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .context("no HTTP header end")?;
        let status = std::str::from_utf8(&resp[..split])?
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("no HTTP status")?;
        Ok((status, resp[split + 4..].to_vec()))
    }

    pub fn create(&self, path: &str, body: &Value) -> Result<()> {
        let (status, resp) = self.call("POST", path, Some(body))?;
        if !(200..300).contains(&status) && status != 409 {
            bail!("POST {path}: {status} {}", String::from_utf8_lossy(&resp));
        }
        Ok(())
    }

    /// Creates every object under `path` from 4 threads at once.
    pub fn create_all(&self, path: &str, objects: &[Value]) -> Result<()> {
        let threads = 4;
        std::thread::scope(|scope| -> Result<()> {
            let handles: Vec<_> = (0..threads)
                .map(|k| {
                    scope.spawn(move || -> Result<()> {
                        for obj in objects.iter().skip(k).step_by(threads) {
                            self.create(path, obj)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            for h in handles {
                h.join()
                    .map_err(|_| anyhow::anyhow!("creator thread panicked"))??;
            }
            Ok(())
        })
    }

    pub fn get(&self, path: &str) -> Result<Option<Value>> {
        let (status, resp) = self.call("GET", path, None)?;
        match status {
            200 => Ok(Some(serde_json::from_slice(&resp)?)),
            404 => Ok(None),
            _ => bail!("GET {path}: {status} {}", String::from_utf8_lossy(&resp)),
        }
    }

    fn exists(&self, path: &str) -> Result<bool> {
        Ok(self.call("GET", path, None)?.0 == 200)
    }

    pub fn namespace(&self, ns: &str) -> Result<()> {
        self.create(
            "/api/v1/namespaces",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
    }
}

/// The controller child process; killed on drop.
#[derive(Debug)]
pub struct Controller {
    child: Child,
    /// The controller's HTTP endpoint (/metrics).
    pub addr: SocketAddr,
}

impl Controller {
    pub fn start(bin: &Path, kubeconfig: &Path, dir: &Path, name: &str) -> Result<Controller> {
        let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let child = Command::new(bin)
            .env("KUBECONFIG", kubeconfig)
            .env(
                "RUST_LOG",
                std::env::var("SEALANT_BENCH_LOG").unwrap_or_else(|_| "info".into()),
            )
            .args(["--namespace", "sealant", "--no-leader-election"])
            .args(["--http-addr", &addr.to_string(), "--identity", name])
            .args(["--log-format", "json"])
            .arg("--git-cache-dir")
            .arg(dir.join(format!("{name}-git")))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join(format!("{name}.log")))?)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok(Controller { child, addr })
    }

    /// (VmHWM, VmRSS) in KiB from /proc.
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmHWM:"), field("VmRSS:"))
    }

    /// CPU seconds (user + system) the controller has used so far.
    pub fn cpu_s(&self) -> f64 {
        cpu_seconds(&format!("/proc/{}/stat", self.child.id()))
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// User + system CPU seconds of a process from its `/proc/PID/stat` (fields 14 and 15, in USER_HZ = 100 ticks).
pub fn cpu_seconds(stat_path: &str) -> f64 {
    let stat = std::fs::read_to_string(stat_path).unwrap_or_default();
    // the command name (field 2) may hold spaces: count fields after its closing parenthesis
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
    // after ")" field 3 (state) is index 0, so utime (14) is index 11 and stime (15) index 12
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    ticks as f64 / 100.0
}

fn sealed_secret(ns: &str, name: &str, recipient: &Recipient, fp: &Fingerprint) -> Result<Value> {
    let mut value = [0u8; 24];
    for (i, b) in value.iter_mut().enumerate() {
        *b = b'a' + ((name.len() + i * 7) % 26) as u8;
    }
    let target = Target {
        namespace: ns,
        name,
        key: "password",
    };
    let text = seal(std::slice::from_ref(recipient), Scope::Strict, &target, &value)?;
    Ok(json!({
        "apiVersion": "sealant.dev/v1",
        "kind": "SealedSecret",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"encryptedData": {"password": text}, "recipients": [fp.as_str()]},
    }))
}

pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

pub fn run(s: &Settings, latency: bool, cold: bool, report: &mut Report) -> Result<()> {
    let bin: PathBuf = s.bin_dir.join("sealant-controller");
    if !bin.exists() {
        bail!(
            "{} not found (build it: cargo build --release --workspace --bins)",
            bin.display()
        );
    }
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let opts = sealant_devcluster::Options {
        kubeconfig: Some(kubeconfig.clone()),
        tls: false,
        ..Default::default()
    };
    let handle = runtime.block_on(sealant_devcluster::DevCluster::start(opts))?;
    let api = Api {
        addr: handle.addr(),
        token: handle.token().to_owned(),
    };
    let result = scenarios(s, latency, cold, &api, &bin, &kubeconfig, dir.path(), report);
    runtime.block_on(handle.shutdown());
    result
}

#[allow(clippy::too_many_arguments)]
fn scenarios(
    s: &Settings,
    latency: bool,
    cold: bool,
    api: &Api,
    bin: &Path,
    kubeconfig: &Path,
    dir: &Path,
    report: &mut Report,
) -> Result<()> {
    for (_, crd) in sealant_crds::all_crds() {
        api.create(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            &serde_json::to_value(&crd)?,
        )?;
    }
    for ns in ["sealant", "bench-lat", "bench-cold"] {
        api.namespace(ns)?;
    }

    // the first controller makes the key and publishes the recipient
    let mut first = Controller::start(bin, kubeconfig, dir, "first")?;
    let text = wait_until("the recipients ConfigMap", Duration::from_secs(60), || {
        let cm = api.get("/api/v1/namespaces/sealant/configmaps/sealant-recipients")?;
        Ok(cm.and_then(|cm| cm["data"]["recipients.txt"].as_str().map(str::to_owned)))
    })?;
    let recipient = parse_recipients(&text)?
        .into_iter()
        .next()
        .context("no recipient published")?;
    let fp = recipient.fingerprint();

    if latency {
        let n = s.latency_samples;
        let objects: Vec<Value> = (0..n)
            .map(|i| sealed_secret("bench-lat", &format!("lat-{i}"), &recipient, &fp))
            .collect::<Result<_>>()?;
        // one warm-up object (the controller's watches and client connections are up afterwards)
        let warm = sealed_secret("bench-lat", "warm-up", &recipient, &fp)?;
        api.create("/apis/sealant.dev/v1/namespaces/bench-lat/sealedsecrets", &warm)?;
        wait_until("the warm-up Secret", Duration::from_secs(60), || {
            Ok(api
                .exists("/api/v1/namespaces/bench-lat/secrets/warm-up")?
                .then_some(()))
        })?;
        let mut ms = Vec::with_capacity(n);
        for (i, obj) in objects.iter().enumerate() {
            let path = format!("/api/v1/namespaces/bench-lat/secrets/lat-{i}");
            let start = Instant::now();
            api.create("/apis/sealant.dev/v1/namespaces/bench-lat/sealedsecrets", obj)?;
            loop {
                if api.exists(&path)? {
                    break;
                }
                if start.elapsed() > Duration::from_secs(30) {
                    bail!("Secret lat-{i} did not appear in 30 s");
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            ms.push(start.elapsed().as_secs_f64() * 1e3);
        }
        let mut sorted = ms.clone();
        sorted.sort_by(f64::total_cmp);
        let (p50, p99, max) = (
            percentile(&sorted, 0.5),
            percentile(&sorted, 0.99),
            sorted[sorted.len() - 1],
        );
        report.row(
            "latency",
            "create -> Secret visible p50 (ms)",
            format!("{p50:.1}"),
            "",
        );
        report.row(
            "latency",
            "create -> Secret visible p99 (ms)",
            format!("{p99:.1}"),
            "",
        );
        report.scenario(
            "latency",
            json!({
                "status": "done",
                "samples": n,
                "poll_interval_ms": 1,
                "p50_ms": p50,
                "p99_ms": p99,
                "max_ms": max,
                "note": "sequential creates; each timed from the POST until a GET of the Secret answers 200 \
                         (polled every 1 ms, one connection per request)",
            }),
        );
    }
    let _ = first.child.kill();
    let _ = first.child.wait();

    if cold {
        let n = s.cold_objects;
        let t = Instant::now();
        let objects: Vec<Value> = (0..n)
            .map(|i| sealed_secret("bench-cold", &format!("cold-{i}"), &recipient, &fp))
            .collect::<Result<_>>()?;
        let seal_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        api.create_all(
            "/apis/sealant.dev/v1/namespaces/bench-cold/sealedsecrets",
            &objects,
        )?;
        let create_s = t.elapsed().as_secs_f64();
        // counted with a one-item list and its remainingItemCount: a full list of 10,000 Secrets every 100 ms
        // would load the API server (same process, same cores) more than the controller does
        let count = || -> Result<usize> {
            let list = api
                .get("/api/v1/namespaces/bench-cold/secrets?limit=1")?
                .context("listing Secrets")?;
            let items = list["items"].as_array().map_or(0, Vec::len);
            let remaining = list["metadata"]["remainingItemCount"].as_u64().unwrap_or(0);
            Ok(items + remaining as usize)
        };
        if count()? != 0 {
            bail!("Secrets exist before the cold start");
        }

        let harness_cpu_start = cpu_seconds("/proc/self/stat");
        let start = Instant::now();
        let mut ctl = Controller::start(bin, kubeconfig, dir, "cold")?;
        let mut first_secret = None;
        let mut polls = 0;
        let all_s = loop {
            let c = count()?;
            polls += 1;
            if c > 0 && first_secret.is_none() {
                first_secret = Some(start.elapsed().as_secs_f64());
            }
            if c >= n {
                break start.elapsed().as_secs_f64();
            }
            if !ctl.running() {
                bail!("the controller exited during the cold start");
            }
            if start.elapsed() > Duration::from_secs(600) {
                bail!("only {c} of {n} Secrets after 600 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let (hwm_done, rss_done) = ctl.memory_kib();
        let controller_cpu = ctl.cpu_s();
        let harness_cpu = cpu_seconds("/proc/self/stat") - harness_cpu_start;
        let load = crate::report::loadavg();
        std::thread::sleep(Duration::from_secs(if s.quick { 1 } else { 5 }));
        let (hwm, rss) = ctl.memory_kib();
        let mib = |kib: u64| kib as f64 / 1024.0;
        report.row(
            "cold-start",
            &format!("{n} SealedSecrets -> all Secrets (s)"),
            format!("{all_s:.2}"),
            "< 10 s (10k)",
        );
        report.row(
            "cold-start",
            "CPU s used: controller / devcluster+harness",
            format!("{controller_cpu:.1} / {harness_cpu:.1}"),
            "",
        );
        report.row(
            "cold-start",
            "controller peak RSS, VmHWM (MiB)",
            format!("{:.1}", mib(hwm)),
            "< 64 MiB (10k)",
        );
        report.scenario(
            "cold_start",
            json!({
                "status": "done",
                "objects": n,
                "values_per_object": 1,
                "seconds_to_all_secrets": all_s,
                "seconds_to_first_secret": first_secret,
                "poll_interval_ms": 100,
                "polls": polls,
                "peak_rss_mib_when_done": mib(hwm_done),
                "rss_mib_when_done": mib(rss_done),
                "peak_rss_mib_after_settle": mib(hwm),
                "rss_mib_after_settle": mib(rss),
                "controller_cpu_s": controller_cpu,
                "devcluster_and_harness_cpu_s": harness_cpu,
                "loadavg_when_done": load,
                "setup_seal_s": seal_s,
                "setup_create_s": create_s,
                "target_seconds": 10.0,
                "target_rss_mib": 64.0,
                "meets_time_target": n >= 10_000 && all_s < 10.0,
                "meets_rss_target": n >= 10_000 && mib(hwm) < 64.0,
                "note": "timed from spawning sealant-controller (release) until a list of the namespace's \
                         Secrets holds them all (limit=1 + remainingItemCount, every 100 ms); devcluster runs in \
                         the harness process on the same cores",
            }),
        );
    }
    Ok(())
}
