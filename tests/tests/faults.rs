//! Fault convergence (issue #9): with devcluster failing 10% of the controller's writes with 500/503 and 5%
//! with 409, dropping its watches every 5 s and answering every resume with 410 Gone, 1,000 SealedSecrets and
//! 200 ExternalSecrets (100 on OpenBao, 100 on moto) converge while the controller is killed with SIGKILL five
//! times. A kubectl watch running from the start proves no managed Secret is deleted and none changes its bytes
//! except through the one intended rotation. Then OpenBao and moto are stopped for 60 s: the Secrets stay
//! byte-identical, the conditions say the provider is unavailable, and after the restart a rotated value
//! arrives and every ExternalSecret is synced again.

#[path = "../../providers/tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::io::{BufReader, Read as _, Write as _};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use sealant_devcluster::{FaultConfig, VerbFault};
use sealant_e2e::{Cluster, Controller, ready, wait_for};
use serde_json::{Value, json};
use support::{Server, random_id};

const SEALED: usize = 1000;
const SEALED_NAMESPACES: usize = 5;
const VAULT_ES: usize = 100;
const AWS_ES: usize = 100;
const KILLS: usize = 5;
const CHAOS_USER: &str = "sealant-chaos";
const WRITES: [&str; 4] = ["create", "update", "patch", "delete"];
const CONVERGE: Duration = Duration::from_secs(180);
const OUTAGE: Duration = Duration::from_secs(60);

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The bytes of the binary key of SealedSecret `i`: every byte value, shifted by `i`.
fn binary_value(i: usize) -> Vec<u8> {
    (0..64).map(|b| ((b * 7 + i) % 256) as u8).collect()
}

fn vault_value(i: usize, generation: &str) -> String {
    format!("vault-{i}-{generation}")
}

fn aws_value(i: usize, generation: &str) -> String {
    format!("aws-{i}-{generation}")
}

/// One HTTP/1.1 request to 127.0.0.1:`port`; returns (status, body).
fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connecting");
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Content-Type: application/json\r\nContent-Length: \
         {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("writing");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("reading");
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn seed_vault(vault: &Server, root: &str, generation: &str, rotated: Option<usize>) {
    for i in 0..VAULT_ES {
        let g = if Some(i) == rotated { "rotated" } else { generation };
        let body = json!({"data": {"password": vault_value(i, g)}}).to_string();
        let (status, answer) = http(
            vault.port,
            "POST",
            &format!("/v1/secret/data/app-{i}"),
            &[("X-Vault-Token", root)],
            &body,
        );
        assert_eq!(status, 200, "seeding OpenBao: {answer}");
    }
}

fn seed_moto(moto: &Server, generation: &str, rotated: Option<usize>) {
    for i in 0..AWS_ES {
        let g = if Some(i) == rotated { "rotated" } else { generation };
        let body = json!({"Name": format!("app-{i}"), "SecretString": json!({"value": aws_value(i, g)}).to_string()});
        sealant_e2e::moto_call(moto.port, "CreateSecret", &body.to_string());
    }
}

/// What the kubectl watch saw of the managed Secrets.
#[derive(Debug, Default)]
struct SecretLog {
    /// ns/name -> (uid when first seen, data when first seen).
    first: HashMap<String, (String, Value)>,
    /// ns/name -> data now.
    current: HashMap<String, Value>,
    /// ns/name of every DELETED event.
    deleted: Vec<String>,
    /// (ns/name, old data, new data) of every change of data.
    changes: Vec<(String, Value, Value)>,
    /// ns/name of every Secret seen with a uid different from its first.
    recreated: Vec<String>,
    events: u64,
    restarts: u64,
    ended: bool,
}

fn managed(ns: &str, name: &str) -> bool {
    (ns.starts_with("ss-") && name.starts_with("s-"))
        || (ns == "es-vault" && name.starts_with("v-"))
        || (ns == "es-aws" && name.starts_with("a-"))
}

/// The Secret watch: `kubectl get secrets -A -l <managed-by> --watch --output-watch-events -o json` in a
/// thread, recording into the log. Should kubectl's watch end (the server closes a watch whose reader lags),
/// it is started again and the restart counted; a Secret deleted and recreated in such a gap still shows as
/// recreated (another uid), and the final check reads every Secret from the API server.
struct SecretWatch {
    child: Arc<Mutex<Option<Child>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl SecretWatch {
    fn start(c: &Cluster, log: Arc<Mutex<SecretLog>>) -> SecretWatch {
        let child: Arc<Mutex<Option<Child>>> = Arc::default();
        let stop: Arc<std::sync::atomic::AtomicBool> = Arc::default();
        let kubeconfig = c.kubeconfig().to_path_buf();
        let (child2, stop2) = (Arc::clone(&child), Arc::clone(&stop));
        let spawn = move || {
            let mut ch = Command::new("kubectl")
                .env("KUBECONFIG", &kubeconfig)
                .args([
                    "get",
                    "secrets",
                    "-A",
                    "-l",
                    "app.kubernetes.io/managed-by=sealant-controller",
                ])
                .args(["--watch", "--output-watch-events", "-o", "json"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("kubectl watch");
            let out = ch.stdout.take().expect("stdout");
            *child2.lock().unwrap() = Some(ch);
            out
        };
        let first = spawn();
        let child3 = Arc::clone(&child);
        std::thread::spawn(move || {
            let mut stdout = first;
            loop {
                let events =
                    serde_json::Deserializer::from_reader(BufReader::new(stdout)).into_iter::<Value>();
                for ev in events {
                    let Ok(ev) = ev else { break };
                    record(&log, &ev);
                }
                if stop2.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                log.lock().unwrap().restarts += 1;
                if let Some(mut old) = child3.lock().unwrap().take() {
                    let _ = old.wait();
                }
                stdout = spawn();
            }
            log.lock().unwrap().ended = true;
        });
        SecretWatch {
            child: child.clone(),
            stop,
        }
    }

    fn stop(&self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(mut ch) = self.child.lock().unwrap().take() {
            let _ = ch.kill();
            let _ = ch.wait();
        }
    }
}

fn record(log: &Mutex<SecretLog>, ev: &Value) {
    let obj = &ev["object"];
    let (ns, name) = (
        obj["metadata"]["namespace"].as_str().unwrap_or_default(),
        obj["metadata"]["name"].as_str().unwrap_or_default(),
    );
    if !managed(ns, name) {
        return;
    }
    let key = format!("{ns}/{name}");
    let uid = obj["metadata"]["uid"].as_str().unwrap_or_default().to_owned();
    let data = obj["data"].clone();
    let mut l = log.lock().unwrap();
    l.events += 1;
    match ev["type"].as_str() {
        Some("DELETED") => {
            l.deleted.push(key.clone());
            l.current.remove(&key);
        }
        Some("ADDED" | "MODIFIED") => {
            let first_uid = l
                .first
                .entry(key.clone())
                .or_insert_with(|| (uid.clone(), data.clone()))
                .0
                .clone();
            if first_uid != uid {
                l.recreated.push(key.clone());
            }
            if let Some(old) = l.current.insert(key.clone(), data.clone())
                && old != data
            {
                l.changes.push((key, old, data));
            }
        }
        _ => {}
    }
}

/// Every managed Secret as the API server has it now: ns/name -> (uid, data).
fn secrets_now(c: &Cluster) -> HashMap<String, (String, Value)> {
    let out = c.kubectl_ok(&["get", "secrets", "-A", "-o", "json"]).unwrap();
    let list: Value = serde_json::from_str(&out).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| {
            let (ns, name) = (
                o["metadata"]["namespace"].as_str()?,
                o["metadata"]["name"].as_str()?,
            );
            managed(ns, name).then(|| {
                let uid = o["metadata"]["uid"].as_str().unwrap_or_default().to_owned();
                (format!("{ns}/{name}"), (uid, o["data"].clone()))
            })
        })
        .collect()
}

/// Checks what the API server holds against `want` and the uids the watch saw first.
fn check_api_server(c: &Cluster, log: &Mutex<SecretLog>, want: &HashMap<String, Value>) {
    let now = secrets_now(c);
    let l = log.lock().unwrap();
    assert_eq!(now.len(), want.len(), "managed Secrets in the cluster");
    for (k, v) in want {
        let (uid, data) = now.get(k).unwrap_or_else(|| panic!("{k} is missing"));
        assert_eq!(data, v, "{k} holds other bytes");
        assert_eq!(
            Some(uid),
            l.first.get(k).map(|f| &f.0),
            "{k} was deleted and recreated"
        );
    }
}

/// The data every managed Secret must hold (base64, as the API shows it).
fn expected(run: &str, generation: &str, rotated: Option<usize>) -> HashMap<String, Value> {
    let mut want = HashMap::new();
    for i in 0..SEALED {
        want.insert(
            format!("ss-{}/s-{i}", i % SEALED_NAMESPACES),
            json!({"bin": b64(&binary_value(i)), "value": b64(format!("sealed-{i}-{run}").as_bytes())}),
        );
    }
    for i in 0..VAULT_ES {
        let g = if Some(i) == rotated { "rotated" } else { generation };
        want.insert(
            format!("es-vault/v-{i}"),
            json!({"password": b64(vault_value(i, g).as_bytes())}),
        );
    }
    for i in 0..AWS_ES {
        let g = if Some(i) == rotated { "rotated" } else { generation };
        want.insert(
            format!("es-aws/a-{i}"),
            json!({"value": b64(aws_value(i, g).as_bytes())}),
        );
    }
    want
}

fn matching(log: &Mutex<SecretLog>, want: &HashMap<String, Value>) -> usize {
    let l = log.lock().unwrap();
    want.iter().filter(|(k, v)| l.current.get(*k) == Some(v)).count()
}

/// A few of the Secrets that are not right yet, with what they hold (for failure messages).
fn missing(log: &Mutex<SecretLog>, want: &HashMap<String, Value>) -> String {
    let l = log.lock().unwrap();
    let mut wrong: Vec<String> = want
        .iter()
        .filter(|(k, v)| l.current.get(*k) != Some(v))
        .map(|(k, _)| {
            format!(
                "{k}: {}",
                if l.current.contains_key(k) {
                    "other bytes"
                } else {
                    "absent"
                }
            )
        })
        .collect();
    wrong.sort();
    let n = wrong.len();
    let mut by_ns: std::collections::BTreeMap<&str, usize> = Default::default();
    for w in &wrong {
        *by_ns.entry(w.split('/').next().unwrap_or_default()).or_default() += 1;
    }
    let by_ns = format!("{by_ns:?}");
    wrong.truncate(8);
    format!(
        "{n} not right ({by_ns}), e.g. {wrong:?} (Secret watch restarts: {})",
        l.restarts
    )
}

/// Ready conditions of every object of `kind` in the cluster: ns/name -> (status, reason, message).
fn conditions(c: &Cluster, kind: &str) -> HashMap<String, (String, String, String)> {
    let out = c.kubectl(&["get", kind, "-A", "-o", "json"], None);
    if !out.status.success() {
        return HashMap::new();
    }
    let list: Value = serde_json::from_slice(&out.stdout).expect("kubectl JSON");
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| {
            let key = format!(
                "{}/{}",
                o["metadata"]["namespace"].as_str()?,
                o["metadata"]["name"].as_str()?
            );
            Some((key, ready(o)?))
        })
        .collect()
}

fn count_reason(conds: &HashMap<String, (String, String, String)>, status: &str, reason: &str) -> usize {
    conds
        .values()
        .filter(|(s, r, _)| s == status && r == reason)
        .count()
}

/// Polls `f` every `every` until it returns `Some`, failing with `what` (and the last state) after `timeout`.
fn poll<T>(what: &str, timeout: Duration, every: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return v,
            Err(state) => assert!(
                start.elapsed() < timeout,
                "timed out after {timeout:?} waiting for {what}: {state}"
            ),
        }
        std::thread::sleep(every);
    }
}

struct Supervisor<'a> {
    c: &'a Cluster,
    kubeconfig: std::path::PathBuf,
    started: usize,
    self_exits: usize,
    current: Option<Controller>,
    logs: Vec<String>,
}

impl Supervisor<'_> {
    fn start(&mut self) {
        self.started += 1;
        let name = format!("chaos-{}", self.started);
        let controller = self
            .c
            .controller_as(
                &name,
                &self.kubeconfig,
                &["--lease-duration", "4s", "--key-renew-period", "0"],
                &[],
            )
            .expect("starting the controller");
        self.current = Some(controller);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.current.take() {
            c.kill();
            self.logs.push(c.logs());
        }
    }

    /// Restarts a controller that exited on its own (a pod would be restarted); counts it.
    fn keep_running(&mut self) {
        if let Some(c) = self.current.as_mut()
            && !c.is_running()
        {
            self.self_exits += 1;
            let logs = c.logs();
            let tail: Vec<&str> = logs.lines().rev().take(5).collect();
            eprintln!("controller exited on its own; last lines: {tail:?}");
            self.kill();
            self.start();
        }
    }
}

#[test]
fn faults_kills_and_provider_outages_converge_without_losses() {
    let t_start = Instant::now();
    let run = random_id("")[..12].to_owned();
    let root = random_id("root-");
    let mut vault = Server::bao(&root);
    let mut moto = Server::moto();
    seed_vault(&vault, &root, "v1", None);
    seed_moto(&moto, "v1", None);

    let c = Cluster::start().expect("devcluster");
    let namespaces: Vec<String> = (0..SEALED_NAMESPACES)
        .map(|n| format!("ss-{n}"))
        .chain(["es-vault".into(), "es-aws".into(), "sealant".into()])
        .collect();
    let ns_yaml: String = namespaces
        .iter()
        .map(|n| format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {n}}}\n---\n"))
        .collect();
    c.apply(&ns_yaml).unwrap();

    // keys: one controller run without faults makes them, then the CLI fetches the recipients
    let mut keygen = c.controller("keygen", &["--no-leader-election"]).unwrap();
    wait_for("the recipients ConfigMap", Duration::from_secs(60), || {
        c.get("configmap", "sealant", "sealant-recipients")
    });
    keygen.terminate();
    let recipients = c.dir.path().join("recipients.txt");
    let out = c.sealant(
        &[
            "recipients",
            "fetch",
            "-o",
            recipients.to_str().unwrap(),
            "--controller-namespace",
            "sealant",
        ],
        None,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // 1,000 Secrets sealed in one CLI run, created with one kubectl run
    let secrets: String = (0..SEALED)
        .map(|i| {
            format!(
                "apiVersion: v1\nkind: Secret\nmetadata: {{name: s-{i}, namespace: ss-{}}}\ndata:\n  bin: {}\n  \
                 value: {}\n---\n",
                i % SEALED_NAMESPACES,
                b64(&binary_value(i)),
                b64(format!("sealed-{i}-{run}").as_bytes())
            )
        })
        .collect();
    let t = Instant::now();
    let out = c.sealant(&["seal", "-R", recipients.to_str().unwrap()], Some(&secrets));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sealed = String::from_utf8(out.stdout).unwrap();
    assert!(!sealed.contains(&format!("sealed-0-{run}")) && !sealed.contains(&b64(b"sealed-0-")));
    let seal_time = t.elapsed();
    let sealed_file = c.dir.path().join("sealed.yaml");
    std::fs::write(&sealed_file, &sealed).unwrap();

    // 200 ExternalSecrets with their stores and credentials
    let mut es = format!(
        r#"apiVersion: v1
kind: Secret
metadata: {{name: vault-token, namespace: es-vault}}
stringData: {{token: {root}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: aws-creds, namespace: es-aws}}
stringData: {{access-key: test, secret-key: test}}
---
apiVersion: sealant.dev/v1
kind: SecretStore
metadata: {{name: vault, namespace: es-vault}}
spec:
  provider:
    vault:
      server: {}
      path: secret
      version: v2
      auth: {{tokenSecretRef: {{name: vault-token, key: token}}}}
---
apiVersion: sealant.dev/v1
kind: SecretStore
metadata: {{name: aws, namespace: es-aws}}
spec:
  provider:
    aws:
      service: SecretsManager
      region: us-east-1
      endpoint: {}
      auth:
        secretRef:
          accessKeyIDSecretRef: {{name: aws-creds, key: access-key}}
          secretAccessKeySecretRef: {{name: aws-creds, key: secret-key}}
"#,
        vault.http_url(),
        moto.http_url()
    );
    for i in 0..VAULT_ES {
        es.push_str(&format!(
            "---\napiVersion: sealant.dev/v1\nkind: ExternalSecret\nmetadata: {{name: v-{i}, namespace: es-vault}}\n\
             spec:\n  refreshInterval: 5s\n  secretStoreRef: {{name: vault}}\n  \
             data: [{{secretKey: password, remoteRef: {{key: app-{i}, property: password}}}}]\n"
        ));
    }
    for i in 0..AWS_ES {
        es.push_str(&format!(
            "---\napiVersion: sealant.dev/v1\nkind: ExternalSecret\nmetadata: {{name: a-{i}, namespace: es-aws}}\n\
             spec:\n  refreshInterval: 5s\n  secretStoreRef: {{name: aws}}\n  \
             data: [{{secretKey: value, remoteRef: {{key: app-{i}, property: value}}}}]\n"
        ));
    }
    let es_file = c.dir.path().join("externalsecrets.yaml");
    std::fs::write(&es_file, &es).unwrap();

    // the watch that sees every managed Secret from before the first one exists
    let log = Arc::new(Mutex::new(SecretLog::default()));
    let watch = SecretWatch::start(&c, Arc::clone(&log));
    let t = Instant::now();
    c.kubectl_ok(&["create", "-f", sealed_file.to_str().unwrap()])
        .unwrap();
    c.kubectl_ok(&["create", "-f", es_file.to_str().unwrap()])
        .unwrap();
    let create_time = t.elapsed();
    let setup_time = t_start.elapsed();

    // faults, for the controller's user only (the test's kubectl and watch are not disturbed)
    let mix = vec![
        VerbFault {
            rate: 0.05,
            code: 500,
        },
        VerbFault {
            rate: 0.05,
            code: 503,
        },
        VerbFault {
            rate: 0.05,
            code: 409,
        },
    ];
    let faults = FaultConfig {
        error_mix: WRITES.iter().map(|v| (v.to_string(), mix.clone())).collect(),
        watch_drop_after_ms: 5_000,
        expire_dropped: true,
        only_users: vec![CHAOS_USER.into()],
        ..FaultConfig::default()
    };
    faults.validate().unwrap();
    c.handle().reset_fault_stats();
    c.handle().set_faults(faults);
    let kubeconfig = c.user_kubeconfig(&random_id("chaos-"), CHAOS_USER, &["system:masters"]);

    // convergence, with a SIGKILL whenever another sixth of the Secrets is right (or after 15 s)
    let want = expected(&run, "v1", None);
    let total = want.len();
    let mut sup = Supervisor {
        c: &c,
        kubeconfig,
        started: 0,
        self_exits: 0,
        current: None,
        logs: Vec::new(),
    };
    let t_converge = Instant::now();
    sup.start();
    let mut kills = Vec::new();
    let mut since = Instant::now();
    while kills.len() < KILLS {
        assert!(
            t_converge.elapsed() < CONVERGE,
            "no convergence before the kills were done"
        );
        std::thread::sleep(Duration::from_millis(250));
        sup.keep_running();
        let good = matching(&log, &want);
        let target = (kills.len() + 1) * total / (KILLS + 1);
        if (good >= target && since.elapsed() > Duration::from_secs(2))
            || since.elapsed() > Duration::from_secs(15)
        {
            sup.kill();
            kills.push((t_converge.elapsed(), good));
            sup.start();
            since = Instant::now();
        }
    }
    let converged_values = poll(
        "every Secret with its value",
        CONVERGE,
        Duration::from_millis(500),
        || {
            sup.keep_running();
            let good = matching(&log, &want);
            if good == total {
                Ok(t_converge.elapsed())
            } else {
                Err(format!("{good} of {total} right; {}", missing(&log, &want)))
            }
        },
    );
    let remaining = CONVERGE
        .saturating_sub(t_converge.elapsed())
        .max(Duration::from_secs(30));
    poll("every object Ready", remaining, Duration::from_secs(2), || {
        sup.keep_running();
        let ss = conditions(&c, "sealedsecrets");
        let es = conditions(&c, "externalsecrets");
        let (a, b) = (
            count_reason(&ss, "True", "Unsealed"),
            count_reason(&es, "True", "SecretSynced"),
        );
        if a == SEALED && b == VAULT_ES + AWS_ES {
            Ok(())
        } else {
            Err(format!(
                "{a} SealedSecrets Unsealed, {b} ExternalSecrets SecretSynced"
            ))
        }
    });
    let converged = t_converge.elapsed();
    check_api_server(&c, &log, &want);
    let stats = c.handle().fault_stats();
    {
        let l = log.lock().unwrap();
        assert!(!l.ended, "the Secret watch ended early");
        assert_eq!(l.deleted, Vec::<String>::new(), "managed Secrets were deleted");
        assert_eq!(
            l.recreated,
            Vec::<String>::new(),
            "managed Secrets were recreated"
        );
        assert!(
            l.changes.is_empty(),
            "Secrets changed bytes: {:?}",
            &l.changes[..l.changes.len().min(3)]
        );
        for (k, (_, data)) in &l.first {
            assert_eq!(Some(data), want.get(k), "{k} appeared with other bytes");
        }
    }
    // the faults were real
    let writes = stats.requests_of(&WRITES);
    let (e5xx, e409) = (
        stats.injected_code(500) + stats.injected_code(503),
        stats.injected_code(409),
    );
    assert!(writes >= total as u64, "{stats:?}");
    assert!(
        e5xx > 0 && e409 > 0 && stats.watches_dropped > 0 && stats.watches_expired > 0,
        "{stats:?}"
    );
    let share = (e5xx + e409) as f64 / writes as f64;
    assert!(
        (0.10..0.20).contains(&share),
        "{share} of the writes failed: {stats:?}"
    );

    // provider outage: OpenBao and moto stopped for 60 s
    let before: HashMap<String, Value> = {
        let l = log.lock().unwrap();
        l.current
            .iter()
            .filter(|(k, _)| k.starts_with("es-"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    assert_eq!(before.len(), VAULT_ES + AWS_ES);
    let t_outage = Instant::now();
    vault.stop();
    moto.stop();
    let outage_conditions = poll(
        "every ExternalSecret to say why",
        OUTAGE + Duration::from_secs(30),
        Duration::from_secs(2),
        || {
            sup.keep_running();
            let es = conditions(&c, "externalsecrets");
            let n = count_reason(&es, "False", "ProviderError");
            if n == VAULT_ES + AWS_ES {
                Ok(es)
            } else {
                Err(format!("{n} ProviderError"))
            }
        },
    );
    let said_why = t_outage.elapsed();
    for (k, (_, _, message)) in &outage_conditions {
        assert!(
            message.contains("unavailable") && message.contains("left as it was"),
            "{k}: {message}"
        );
        assert!(
            !message.contains("vault-") && !message.contains("aws-0"),
            "{k}: a value in {message}"
        );
    }
    while t_outage.elapsed() < OUTAGE {
        sup.keep_running();
        std::thread::sleep(Duration::from_secs(1));
    }
    {
        let l = log.lock().unwrap();
        for (k, v) in &before {
            assert_eq!(l.current.get(k), Some(v), "{k} changed during the outage");
        }
        assert!(
            l.changes.is_empty() && l.deleted.is_empty(),
            "Secrets changed or vanished during the outage"
        );
    }
    // recovery: both come back empty and are seeded again, with one value rotated in each
    vault.start();
    moto.start();
    seed_vault(&vault, &root, "v1", Some(0));
    seed_moto(&moto, "v1", Some(0));
    let t_recover = Instant::now();
    let want = expected(&run, "v1", Some(0));
    poll(
        "the rotated values",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || {
            sup.keep_running();
            let good = matching(&log, &want);
            if good == total {
                Ok(())
            } else {
                Err(format!("{good} of {total} right; {}", missing(&log, &want)))
            }
        },
    );
    let rotated = t_recover.elapsed();
    poll(
        "every ExternalSecret synced again",
        Duration::from_secs(60),
        Duration::from_secs(2),
        || {
            sup.keep_running();
            let es = conditions(&c, "externalsecrets");
            let n = count_reason(&es, "True", "SecretSynced");
            if n == VAULT_ES + AWS_ES {
                Ok(())
            } else {
                Err(format!("{n} SecretSynced"))
            }
        },
    );
    let recovered = t_recover.elapsed();
    check_api_server(&c, &log, &want);
    let final_stats = c.handle().fault_stats();
    {
        let l = log.lock().unwrap();
        assert!(!l.ended, "the Secret watch ended early");
        assert!(
            l.deleted.is_empty() && l.recreated.is_empty(),
            "{:?} {:?}",
            l.deleted,
            l.recreated
        );
        let mut changed: Vec<&str> = l.changes.iter().map(|(k, _, _)| k.as_str()).collect();
        changed.sort_unstable();
        assert_eq!(
            changed,
            ["es-aws/a-0", "es-vault/v-0"],
            "only the two rotations changed bytes"
        );
        for (k, _, new) in &l.changes {
            assert_eq!(
                Some(new),
                want.get(k),
                "{k} changed to other bytes than the rotated value"
            );
        }
    }
    // no value in the controllers' logs
    sup.kill();
    for logs in &sup.logs {
        for v in [
            format!("sealed-1-{run}"),
            vault_value(1, "v1"),
            aws_value(1, "v1"),
            "rotated".into(),
        ] {
            assert!(!logs.contains(&v), "a secret value in the controller log");
        }
    }
    watch.stop();

    let (events, restarts) = {
        let l = log.lock().unwrap();
        (l.events, l.restarts)
    };
    eprintln!(
        "FAULTS SUMMARY: objects={} ({SEALED} SealedSecrets, {} ExternalSecrets), writes attempted={}, 5xx \
         injected={}, 409 injected={}, watches dropped={}, 410 answered={}, SIGKILLs={}, self-exits={}, controller \
         starts={}, losses=0, wrong deletions=0, Secret watch events={events} (restarts {restarts}), values right after {:.1?}, all Ready \
         after {:.1?}; outage 60 s: conditions said why after {:.1?}, Secrets byte-identical, rotated values after {:.1?} and all synced {:.1?} \
         after the restart; setup {:.1?} (seal 1000 in {:.1?}, create in {:.1?}), total {:.1?}; kills at {:?}",
        total,
        VAULT_ES + AWS_ES,
        final_stats.requests_of(&WRITES),
        final_stats.injected_code(500) + final_stats.injected_code(503),
        final_stats.injected_code(409),
        final_stats.watches_dropped,
        final_stats.watches_expired,
        kills.len(),
        sup.self_exits,
        sup.started,
        converged_values,
        converged,
        said_why,
        rotated,
        recovered,
        setup_time,
        seal_time,
        create_time,
        t_start.elapsed(),
        kills
            .iter()
            .map(|(t, good)| format!("{:.0?}:{good}", t))
            .collect::<Vec<_>>(),
    );
}
