//! Scenario 5: ExternalSecrets over AWS Secrets Manager (moto): many ExternalSecrets over fewer distinct keys,
//! refreshed every minute; provider calls per refresh cycle (from the controller's own call counter) and the
//! controller's peak RSS; the same over Vault KV v2 (OpenBao dev server), which has no batch read.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::Settings;
use crate::cluster::{Api, Controller, wait_until};
use crate::report::Report;

/// `moto_server` or `bao server -dev` in its own process group; the group is killed on drop.
#[derive(Debug)]
struct Server {
    child: Child,
    port: u16,
}

const BAO_TOKEN: &str = "bench-root-token";

impl Server {
    fn start(provider: Provider, dir: &std::path::Path) -> Result<Server> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut cmd = match provider {
            Provider::Aws => {
                let mut c = Command::new("moto_server");
                c.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
                c
            }
            Provider::Vault => {
                let mut c = Command::new("bao");
                c.args(["server", "-dev", "-dev-no-store-token"])
                    .arg(format!("-dev-root-token-id={BAO_TOKEN}"))
                    .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
                    .env_remove("BAO_ADDR")
                    .env_remove("BAO_TOKEN")
                    .env_remove("VAULT_ADDR")
                    .env_remove("VAULT_TOKEN");
                c
            }
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("server.log"))?)
            .stderr(std::fs::File::create(dir.join("server.err"))?)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {cmd:?} (run scripts/setup.sh)"))?;
        let server = Server { child, port };
        wait_until("the provider server", Duration::from_secs(60), || {
            Ok(TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ()))
        })?;
        Ok(server)
    }

    /// Writes a KV v2 secret through the Vault HTTP API (retried while the dev server unseals).
    fn vault_put(&self, path: &str, value: &str) -> Result<()> {
        let body = json!({"data": {"value": value}}).to_string();
        wait_until("a Vault write", Duration::from_secs(30), || {
            let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
            write!(
                s,
                "POST /v1/secret/data/{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Vault-Token: {BAO_TOKEN}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )?;
            let mut answer = String::new();
            s.read_to_string(&mut answer)?;
            Ok(answer.starts_with("HTTP/1.1 200").then_some(()))
        })
    }

    /// A Secrets Manager call (moto does not verify the signature).
    fn call(&self, target: &str, body: &str) -> Result<()> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        write!(
            s,
            "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: secretsmanager.{target}\r\nContent-Type: \
             application/x-amz-json-1.1\r\nAuthorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/\
             secretsmanager/aws4_request, SignedHeaders=host, Signature=0\r\nContent-Length: {}\r\nConnection: \
             close\r\n\r\n{body}",
            body.len()
        )?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)?;
        if !answer.starts_with("HTTP/1.1 200") {
            bail!("moto {target}: {answer}");
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-s", "KILL", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The controller's provider call counters for one provider, summed over operations, from /metrics.
fn provider_calls(addr: std::net::SocketAddr, provider: Provider) -> Result<(u64, Value)> {
    let label = format!("provider=\"{}\"", provider.label());
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET /metrics HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let mut total = 0;
    let mut by_op = serde_json::Map::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("sealant_provider_calls_total{") {
            if !rest.contains(&label) {
                continue;
            }
            let op = rest
                .split("operation=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("?");
            let v = line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0) as u64;
            total += v;
            by_op.insert(op.to_owned(), json!(v));
        }
    }
    Ok((total, Value::Object(by_op)))
}

/// The two providers of issue 8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Provider {
    Aws,
    Vault,
}

impl Provider {
    fn label(self) -> &'static str {
        match self {
            Provider::Aws => "aws",
            Provider::Vault => "vault",
        }
    }
}

pub fn run(s: &Settings, report: &mut Report) -> Result<()> {
    let bin = s.bin_dir.join("sealant-controller");
    if !bin.exists() {
        bail!(
            "{} not found (build it: cargo build --release --workspace --bins)",
            bin.display()
        );
    }
    let mut json = serde_json::Map::new();
    let mut errors = Vec::new();
    for provider in [Provider::Aws, Provider::Vault] {
        match one(s, provider, &bin, report) {
            Ok(v) => {
                json.insert(provider.label().into(), v);
            }
            Err(e) => {
                report.row(
                    "external",
                    &format!("{}: status", provider.label()),
                    format!("FAILED: {e:#}"),
                    "",
                );
                json.insert(
                    provider.label().into(),
                    json!({"status": "failed", "error": format!("{e:#}")}),
                );
                errors.push(format!("{}: {e:#}", provider.label()));
            }
        }
    }
    json.insert(
        "status".into(),
        json!(if errors.is_empty() {
            "done"
        } else {
            "partly failed"
        }),
    );
    json.insert(
        "note".into(),
        json!(
            "calls are the controller's own sealant_provider_calls_total for the provider over a window of \
               whole refresh intervals after every Secret existed, scaled to one interval"
        ),
    );
    report.scenario("external", Value::Object(json));
    if !errors.is_empty() {
        bail!("{}", errors.join("; "));
    }
    Ok(())
}

fn one(s: &Settings, provider: Provider, bin: &std::path::Path, report: &mut Report) -> Result<Value> {
    let dir = tempfile::tempdir()?;
    let server = Server::start(provider, dir.path())?;
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
    let result = measure(s, provider, &api, &server, bin, &kubeconfig, dir.path(), report);
    runtime.block_on(handle.shutdown());
    result
}

#[allow(clippy::too_many_arguments)]
fn measure(
    s: &Settings,
    provider: Provider,
    api: &Api,
    server: &Server,
    bin: &std::path::Path,
    kubeconfig: &std::path::Path,
    dir: &std::path::Path,
    report: &mut Report,
) -> Result<Value> {
    let (objects, keys, refresh, cycles) = if s.quick {
        (40, 10, 2u64, 2u64)
    } else {
        (s.external_objects, s.external_keys, 60, 2)
    };
    let name = provider.label();
    for i in 0..keys {
        match provider {
            Provider::Aws => server.call(
                "CreateSecret",
                &format!(r#"{{"Name":"app/key-{i}","SecretString":"{{\"value\":\"v{i}\"}}"}}"#),
            )?,
            Provider::Vault => server.vault_put(&format!("app/key-{i}"), &format!("v{i}"))?,
        }
    }
    for (_, crd) in sealant_crds::all_crds() {
        api.create(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            &serde_json::to_value(&crd)?,
        )?;
    }
    for ns in ["sealant", "bench-es"] {
        api.namespace(ns)?;
    }
    let endpoint = format!("http://127.0.0.1:{}", server.port);
    let store = match provider {
        Provider::Aws => {
            api.create(
                "/api/v1/namespaces/bench-es/secrets",
                &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
                        "data": {"access-key": "dGVzdA==", "secret-key": "dGVzdA=="}}),
            )?;
            json!({"aws": {
                "service": "SecretsManager", "region": "us-east-1", "endpoint": endpoint,
                "auth": {"secretRef": {
                    "accessKeyIDSecretRef": {"name": "creds", "key": "access-key"},
                    "secretAccessKeySecretRef": {"name": "creds", "key": "secret-key"},
                }},
            }})
        }
        Provider::Vault => {
            api.create(
                "/api/v1/namespaces/bench-es/secrets",
                &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
                        "stringData": {"token": BAO_TOKEN}}),
            )?;
            json!({"vault": {
                "server": endpoint, "path": "secret", "version": "v2",
                "auth": {"tokenSecretRef": {"name": "creds", "key": "token"}},
            }})
        }
    };
    api.create(
        "/apis/sealant.dev/v1/namespaces/bench-es/secretstores",
        &json!({
            "apiVersion": "sealant.dev/v1", "kind": "SecretStore", "metadata": {"name": "store"},
            "spec": {"provider": store},
        }),
    )?;
    let refresh_text = format!("{refresh}s");
    let all: Vec<Value> = (0..objects)
        .map(|i| {
            json!({
                "apiVersion": "sealant.dev/v1", "kind": "ExternalSecret",
                "metadata": {"name": format!("es-{i}")},
                "spec": {
                    "refreshInterval": refresh_text,
                    "secretStoreRef": {"name": "store", "kind": "SecretStore"},
                    "data": [{"secretKey": "value",
                              "remoteRef": {"key": format!("app/key-{}", i % keys), "property": "value"}}],
                },
            })
        })
        .collect();
    api.create_all("/apis/sealant.dev/v1/namespaces/bench-es/externalsecrets", &all)?;

    let start = Instant::now();
    let mut ctl = Controller::start(bin, kubeconfig, dir, name)?;
    let count = || -> Result<usize> {
        let list = api
            .get("/api/v1/namespaces/bench-es/secrets")?
            .context("listing Secrets")?;
        // the credentials Secret is not one of them
        Ok(list["items"].as_array().map_or(0, Vec::len).saturating_sub(1))
    };
    let synced_s = loop {
        if count()? >= objects {
            break start.elapsed().as_secs_f64();
        }
        if !ctl.running() {
            bail!("the controller exited");
        }
        if start.elapsed() > Duration::from_secs(600) {
            bail!("the ExternalSecrets did not all sync in 600 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let (initial_calls, initial_ops) = provider_calls(ctl.addr, provider)?;
    let window = Duration::from_secs(refresh * cycles);
    let t = Instant::now();
    std::thread::sleep(window);
    let (later_calls, later_ops) = provider_calls(ctl.addr, provider)?;
    let measured = t.elapsed().as_secs_f64();
    let (hwm, rss) = ctl.memory_kib();
    let per_cycle = (later_calls - initial_calls) as f64 * refresh as f64 / measured;
    let target = keys as f64 / 20.0;
    let mib = |kib: u64| kib as f64 / 1024.0;

    report.row(
        "external",
        &format!("{name}: {objects} ES over {keys} keys, all synced (s)"),
        format!("{synced_s:.2}"),
        "",
    );
    report.row(
        "external",
        &format!("{name}: provider calls per {refresh}s refresh cycle"),
        format!("{per_cycle:.1}"),
        &if provider == Provider::Aws {
            format!("<= {target:.1}")
        } else {
            String::new()
        },
    );
    report.row(
        "external",
        &format!("{name}: controller peak RSS, VmHWM (MiB)"),
        format!("{:.1}", mib(hwm)),
        "",
    );
    Ok(json!({
        "status": "done",
        "external_secrets": objects,
        "distinct_keys": keys,
        "refresh_interval_s": refresh,
        "seconds_to_all_synced": synced_s,
        "calls_for_initial_sync": initial_calls,
        "calls_for_initial_sync_by_operation": initial_ops,
        "measured_window_s": measured,
        "calls_in_window": later_calls - initial_calls,
        "calls_by_operation_after_window": later_ops,
        "calls_per_cycle": per_cycle,
        "target_calls_per_cycle": if provider == Provider::Aws { Some(target) } else { None },
        "meets_target": if provider == Provider::Aws { Some(per_cycle <= target) } else { None },
        "peak_rss_mib": mib(hwm),
        "rss_mib": mib(rss),
    }))
}
