//! Conformance tests driving the real `kubectl` against an in-process devcluster.
//! Each test uses its own KUBECONFIG and a throwaway HOME/cache dir, never `~/.kube`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use sealant_devcluster::{Handle, Options};
use serde_json::json;

struct Kubectl {
    kubeconfig: PathBuf,
    home: tempfile::TempDir,
}

#[derive(Debug)]
struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Kubectl {
    fn new(h: &Handle) -> Self {
        Self {
            kubeconfig: h.kubeconfig_path().to_path_buf(),
            home: tempfile::tempdir().unwrap(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("kubectl");
        c.args(args)
            .arg(format!(
                "--cache-dir={}",
                self.home.path().join("cache").display()
            ))
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.home.path())
            .env_remove("KUBECTL_EXTERNAL_DIFF");
        c
    }

    async fn run(&self, args: &[&str]) -> Out {
        self.run_stdin(args, None).await
    }

    async fn run_stdin(&self, args: &[&str], stdin: Option<&str>) -> Out {
        let mut cmd = self.command(args);
        let input = stdin.map(str::to_string);
        tokio::task::spawn_blocking(move || {
            cmd.stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            let mut child = cmd.spawn().expect("kubectl is installed (/usr/bin/kubectl)");
            if let Some(i) = input {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(i.as_bytes()).unwrap();
            }
            let o = child.wait_with_output().unwrap();
            Out {
                ok: o.status.success(),
                stdout: String::from_utf8_lossy(&o.stdout).into(),
                stderr: String::from_utf8_lossy(&o.stderr).into(),
            }
        })
        .await
        .unwrap()
    }

    async fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args).await;
        assert!(o.ok, "kubectl {args:?} failed: {}", o.stderr);
        o.stdout
    }

    async fn apply(&self, args: &[&str], yaml: &str) -> Out {
        let mut a = vec!["apply", "-f", "-"];
        a.extend_from_slice(args);
        self.run_stdin(&a, Some(yaml)).await
    }
}

const MANIFEST: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: demo
  labels: {app: demo}
data:
  greeting: hello
---
apiVersion: v1
kind: Secret
metadata:
  name: creds
stringData:
  password: s3cret
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx:1
      - name: sidecar
        image: busybox:1
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_get_yaml_reapply_and_delete() {
    let (h, c) = start().await;
    let k = Kubectl::new(&h);
    let o = k.apply(&[], MANIFEST).await;
    assert!(o.ok, "{}", o.stderr);
    assert!(
        o.stdout.contains("configmap/demo created") && o.stdout.contains("deployment.apps/web created"),
        "{}",
        o.stdout
    );
    let y = k.ok(&["get", "configmap", "demo", "-o", "yaml"]).await;
    assert!(
        y.contains("greeting: hello") && y.contains("kind: ConfigMap") && y.contains("resourceVersion:"),
        "{y}"
    );
    // stringData was folded into data
    let pw = k
        .ok(&["get", "secret", "creds", "-o", "jsonpath={.data.password}"])
        .await;
    assert_eq!(pw, "czNjcmV0");
    // re-apply with a change: client-side apply patches (strategic merge for the Deployment)
    let changed = MANIFEST
        .replace("greeting: hello", "greeting: bye")
        .replace("image: busybox:1", "image: busybox:2");
    let o = k.apply(&[], &changed).await;
    assert!(o.ok, "{}", o.stderr);
    assert!(o.stdout.contains("configmap/demo configured"), "{}", o.stdout);
    let images = k
        .ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[*].image}",
        ])
        .await;
    assert_eq!(images, "nginx:1 busybox:2");
    let cm: ConfigMap = Api::namespaced(c.clone(), "default").get("demo").await.unwrap();
    assert_eq!(cm.data.unwrap()["greeting"], "bye");
    // table output, label and field selectors, pagination
    let t = k.ok(&["get", "configmaps", "-l", "app=demo"]).await;
    assert!(t.starts_with("NAME") && t.contains("demo"), "{t}");
    let t = k
        .ok(&["get", "configmaps", "--field-selector", "metadata.name=nothing"])
        .await;
    assert!(!t.contains("demo"));
    for i in 0..5 {
        k.ok(&["create", "configmap", &format!("page-{i}")]).await;
    }
    let names = k.ok(&["get", "configmaps", "--chunk-size=2", "-o", "name"]).await;
    assert_eq!(
        names.lines().filter(|l| l.starts_with("configmap/page-")).count(),
        5,
        "{names}"
    );
    let all = k.ok(&["get", "configmaps", "-A", "-o", "name"]).await;
    assert!(all.contains("configmap/demo"));
    // delete -f removes everything
    let o = k.run_stdin(&["delete", "-f", "-"], Some(MANIFEST)).await;
    assert!(o.ok, "{}", o.stderr);
    let o = k.run(&["get", "configmap", "demo"]).await;
    assert!(!o.ok && o.stderr.contains("NotFound"), "{}", o.stderr);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_server_side_with_conflicts_and_force() {
    let (h, _c) = start().await;
    let k = Kubectl::new(&h);
    let o = k.apply(&["--server-side"], MANIFEST).await;
    assert!(o.ok, "{}", o.stderr);
    assert!(
        o.stdout.contains("configmap/demo serverside-applied"),
        "{}",
        o.stdout
    );
    let y = k
        .ok(&["get", "cm", "demo", "-o", "yaml", "--show-managed-fields"])
        .await;
    assert!(
        y.contains("manager: kubectl") && y.contains("operation: Apply") && y.contains("f:greeting: {}"),
        "{y}"
    );
    let other = MANIFEST.replace("greeting: hello", "greeting: mine");
    let o = k.apply(&["--server-side", "--field-manager=other"], &other).await;
    assert!(!o.ok);
    assert!(
        o.stderr.contains("conflict with \"kubectl\"") && o.stderr.contains(".data.greeting"),
        "{}",
        o.stderr
    );
    let o = k
        .apply(
            &["--server-side", "--field-manager=other", "--force-conflicts"],
            &other,
        )
        .await;
    assert!(o.ok, "{}", o.stderr);
    assert_eq!(
        k.ok(&["get", "cm", "demo", "-o", "jsonpath={.data.greeting}"])
            .await,
        "mine"
    );
    // dry-run=server does not persist
    let o = k
        .apply(
            &["--server-side", "--force-conflicts", "--dry-run=server"],
            &MANIFEST.replace("greeting: hello", "greeting: dry"),
        )
        .await;
    assert!(o.ok, "{}", o.stderr);
    assert_eq!(
        k.ok(&["get", "cm", "demo", "-o", "jsonpath={.data.greeting}"])
            .await,
        "mine"
    );
    h.shutdown().await;
}

fn event(line: &str) -> (String, String) {
    let mut w = line.split_whitespace();
    (
        w.next().unwrap_or_default().to_string(),
        w.next().unwrap_or_default().to_string(),
    )
}

async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_watch_streams_events() {
    let (h, c) = start().await;
    let k = Kubectl::new(&h);
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "before"}})).unwrap(),
    )
    .await
    .unwrap();
    let mut child = k
        .command(&[
            "get",
            "configmaps",
            "-w",
            "--output-watch-events",
            "--request-timeout=20s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl runs");
    let stdout = child.stdout.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let header = next(&mut rx).await;
    assert!(header.contains("EVENT") && header.contains("NAME"), "{header}");
    assert_eq!(
        event(&next(&mut rx).await),
        ("ADDED".to_string(), "before".to_string())
    );
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "during"}})).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        event(&next(&mut rx).await),
        ("ADDED".to_string(), "during".to_string())
    );
    api.patch(
        "during",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"a": "b"}})),
    )
    .await
    .unwrap();
    assert_eq!(
        event(&next(&mut rx).await),
        ("MODIFIED".to_string(), "during".to_string())
    );
    api.delete("during", &DeleteParams::default()).await.unwrap();
    assert_eq!(
        event(&next(&mut rx).await),
        ("DELETED".to_string(), "during".to_string())
    );
    let _ = child.kill();
    let _ = child.wait();
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_merge_json_and_strategic() {
    let (h, _c) = start().await;
    let k = Kubectl::new(&h);
    assert!(k.apply(&[], MANIFEST).await.ok);
    k.ok(&[
        "patch",
        "configmap",
        "demo",
        "--type=merge",
        "-p",
        r#"{"data":{"extra":"1","greeting":null}}"#,
    ])
    .await;
    assert_eq!(
        k.ok(&["get", "cm", "demo", "-o", "jsonpath={.data}"]).await,
        r#"{"extra":"1"}"#
    );
    k.ok(&[
        "patch",
        "configmap",
        "demo",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/data/j","value":"2"},{"op":"remove","path":"/data/extra"}]"#,
    ])
    .await;
    assert_eq!(
        k.ok(&["get", "cm", "demo", "-o", "jsonpath={.data}"]).await,
        r#"{"j":"2"}"#
    );
    let o = k
        .run(&[
            "patch",
            "configmap",
            "demo",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/data/missing"}]"#,
        ])
        .await;
    assert!(!o.ok && o.stderr.contains("invalid"), "{}", o.stderr);
    // strategic merge (kubectl's default) merges containers by name
    k.ok(&[
        "patch",
        "deployment",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox:9"}]}}}}"#,
    ])
    .await;
    let images = k
        .ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[*].image}",
        ])
        .await;
    assert_eq!(images, "nginx:1 busybox:9");
    k.ok(&["scale", "deployment", "web", "--replicas=3"])
        .await
        .to_string();
    assert_eq!(
        k.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"])
            .await,
        "3"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_with_cascade_policies_and_namespaces() {
    let (h, c) = start().await;
    let k = Kubectl::new(&h);
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(c.clone(), "default");
    for (owner, dep) in [("o1", "d1"), ("o2", "d2")] {
        let o = cms
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": owner}})).unwrap(),
            )
            .await
            .unwrap();
        secrets
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": dep, "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": owner, "uid": o.metadata.uid.unwrap()}]}}))
                .unwrap(),
            )
            .await
            .unwrap();
    }
    k.ok(&["delete", "configmap", "o1", "--cascade=orphan"]).await;
    let d1 = secrets.get("d1").await.unwrap();
    assert!(d1.metadata.owner_references.unwrap_or_default().is_empty());
    k.ok(&["delete", "configmap", "o2", "--cascade=background"]).await;
    assert!(secrets.get("d2").await.is_err());
    // namespace deletion cascades, and `kubectl delete` waits for it to finish
    k.ok(&["create", "namespace", "team"]).await;
    k.ok(&["create", "configmap", "x", "-n", "team"]).await;
    k.ok(&[
        "create",
        "secret",
        "generic",
        "y",
        "-n",
        "team",
        "--from-literal=a=b",
    ])
    .await;
    let o = k.run(&["delete", "namespace", "team", "--timeout=20s"]).await;
    assert!(o.ok, "{}", o.stderr);
    let o = k.run(&["get", "namespace", "team"]).await;
    assert!(!o.ok && o.stderr.contains("NotFound"));
    assert!(Api::<ConfigMap>::namespaced(c, "team").get("x").await.is_err());
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_secret_and_validation_errors() {
    let (h, _c) = start().await;
    let k = Kubectl::new(&h);
    k.ok(&[
        "create",
        "secret",
        "generic",
        "db",
        "--from-literal=user=admin",
        "--from-literal=pass=pw",
    ])
    .await;
    let table = k.ok(&["get", "secret", "db"]).await;
    let rows: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], vec!["NAME", "TYPE", "DATA", "AGE"], "{table}");
    assert_eq!(&rows[1][..3], &["db", "Opaque", "2"], "{table}");
    assert_eq!(
        k.ok(&["get", "secret", "db", "-o", "jsonpath={.data.user}"])
            .await,
        "YWRtaW4="
    );
    assert_eq!(
        k.ok(&["get", "secret", "db", "-o", "jsonpath={.type}"]).await,
        "Opaque"
    );
    let o = k
        .run(&["create", "secret", "generic", "db", "--from-literal=a=b"])
        .await;
    assert!(!o.ok && o.stderr.contains("already exists"), "{}", o.stderr);
    let o = k.run(&["create", "configmap", "Bad_Name"]).await;
    assert!(!o.ok && o.stderr.contains("RFC 1123"), "{}", o.stderr);
    k.ok(&["create", "secret", "generic", "frozen", "--from-literal=a=b"])
        .await;
    k.ok(&[
        "patch",
        "secret",
        "frozen",
        "--type=merge",
        "-p",
        r#"{"immutable":true}"#,
    ])
    .await;
    let o = k
        .run(&[
            "patch",
            "secret",
            "frozen",
            "--type=merge",
            "-p",
            r#"{"data":{"a":"Yw=="}}"#,
        ])
        .await;
    assert!(!o.ok && o.stderr.contains("immutable"), "{}", o.stderr);

    // the built-in types need their keys (secret values stay out of the message); annotation keys are
    // checked lowercased
    for (name, type_, literals, says) in [
        ("web", "tls", &["tls.crt=c"][..], "data[tls.key]: Required value"),
        (
            "ssh",
            "ssh-auth",
            &["ssh-privatekey="][..],
            "data[ssh-privatekey]: Required value",
        ),
        (
            "reg",
            "dockerconfigjson",
            &[".dockerconfigjson=hunter2"][..],
            "data[.dockerconfigjson]: Invalid",
        ),
    ] {
        let mut args = vec![
            "create".to_owned(),
            "secret".into(),
            "generic".into(),
            name.into(),
            format!("--type=kubernetes.io/{type_}"),
        ];
        args.extend(literals.iter().map(|l| format!("--from-literal={l}")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = k.run(&args).await;
        assert!(!o.ok && o.stderr.contains(says), "{name}: {}", o.stderr);
        assert!(
            !o.stderr.contains("tls.crt]") && !o.stderr.contains("hunter2"),
            "{}",
            o.stderr
        );
    }
    k.ok(&[
        "create",
        "secret",
        "generic",
        "web",
        "--type=kubernetes.io/tls",
        "--from-literal=tls.crt=c",
        "--from-literal=tls.key=k",
    ])
    .await;
    k.ok(&[
        "create",
        "secret",
        "docker-registry",
        "reg",
        "--docker-server=registry.example",
        "--docker-username=u",
        "--docker-password=p",
    ])
    .await;
    k.ok(&["annotate", "secret", "db", "Example.com/Note=x"]).await;
    let o = k.run(&["label", "secret", "db", "Example.com/tier=x"]).await;
    assert!(!o.ok && o.stderr.contains("metadata.labels"), "{}", o.stderr);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_create_commands_send_protobuf() {
    // kubectl's typed clients send protobuf bodies; devcluster decodes them
    let (h, _c) = start().await;
    let k = Kubectl::new(&h);
    k.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.27",
        "--replicas=0",
        "--port=8080",
    ])
    .await;
    let spec = k.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas} {.spec.selector.matchLabels.app} {.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].ports[0].containerPort}"]).await;
    assert_eq!(spec, "0 web nginx:1.27 8080");
    let meta = k
        .ok(&["get", "deploy", "web", "-o", "jsonpath={.metadata}"])
        .await;
    assert!(
        !meta.contains("generateName"),
        "Go zero values are not materialised: {meta}"
    );
    k.ok(&["create", "service", "clusterip", "web", "--tcp=80:http"])
        .await;
    let ports = k.ok(&["get", "svc", "web", "-o", "jsonpath={.spec.ports[0].port} {.spec.ports[0].targetPort} {.spec.ports[0].protocol} {.spec.selector.app}"]).await;
    assert_eq!(ports, "80 http TCP web");
    let ip = k
        .ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"])
        .await;
    assert!(ip.starts_with("10.96."), "a ClusterIP is allocated: {ip}");
    let table = k.ok(&["get", "svc", "web"]).await;
    assert!(table.contains(&ip) && table.contains("ClusterIP"), "{table}");
    k.ok(&["create", "namespace", "team-a"]).await;
    k.ok(&["create", "configmap", "cfg", "-n", "team-a", "--from-literal=k=v"])
        .await;
    assert_eq!(
        k.ok(&["get", "cm", "cfg", "-n", "team-a", "-o", "jsonpath={.data.k}"])
            .await,
        "v"
    );
    k.ok(&[
        "create",
        "clusterrole",
        "reader",
        "--verb=get,list",
        "--resource=secrets",
    ])
    .await;
    k.ok(&[
        "create",
        "clusterrolebinding",
        "reader",
        "--clusterrole=reader",
        "--group=readers",
    ])
    .await;
    let rules = k
        .ok(&[
            "get",
            "clusterrole",
            "reader",
            "-o",
            "jsonpath={.rules[0].verbs} {.rules[0].resources}",
        ])
        .await;
    assert_eq!(rules, r#"["get","list"] ["secrets"]"#);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_can_i_with_impersonation_under_rbac() {
    let (h, _c) = start_with(Options {
        rbac: true,
        ..Options::default()
    })
    .await;
    let k = Kubectl::new(&h);
    k.ok(&["create", "serviceaccount", "ctrl"]).await;
    k.ok(&[
        "create",
        "role",
        "secret-reader",
        "--verb=get,list,watch",
        "--resource=secrets",
    ])
    .await;
    k.ok(&[
        "create",
        "rolebinding",
        "ctrl-reads",
        "--role=secret-reader",
        "--serviceaccount=default:ctrl",
    ])
    .await;
    let sa = "--as=system:serviceaccount:default:ctrl";
    assert_eq!(
        k.ok(&["auth", "can-i", "list", "secrets", sa]).await.trim(),
        "yes"
    );
    let o = k.run(&["auth", "can-i", "delete", "secrets", sa]).await;
    assert!(!o.ok);
    assert_eq!(o.stdout.trim(), "no");
    let o = k
        .run(&["auth", "can-i", "list", "secrets", "-n", "kube-system", sa])
        .await;
    assert_eq!(o.stdout.trim(), "no");
    assert_eq!(
        k.ok(&["auth", "can-i", "delete", "secrets"]).await.trim(),
        "yes",
        "the admin can do anything"
    );
    let o = k.run(&["get", "configmaps", sa]).await;
    assert!(!o.ok && o.stderr.contains("forbidden"), "{}", o.stderr);
    assert!(k.run(&["get", "secrets", sa]).await.ok);
    // tokens minted by kubectl authenticate as the service account
    let token = k.ok(&["create", "token", "ctrl"]).await;
    let o = k
        .run(&[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
            &format!("--token={}", token.trim()),
        ])
        .await;
    assert_eq!(o.stdout, "system:serviceaccount:default:ctrl", "{}", o.stderr);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crd_then_custom_resources() {
    let (h, _c) = start().await;
    let k = Kubectl::new(&h);
    let crd = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: sealedthings.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: sealedthings, singular: sealedthing, kind: SealedThing, shortNames: [st]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    - {name: Ready, type: string, jsonPath: '.status.conditions[?(@.type=="Ready")].status'}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#;
    assert!(k.apply(&[], crd).await.ok);
    k.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/sealedthings.example.com",
        "--timeout=10s",
    ])
    .await;
    let cr = "apiVersion: example.com/v1\nkind: SealedThing\nmetadata:\n  name: one\nspec:\n  size: 1\n";
    let o = k.apply(&[], cr).await;
    assert!(o.ok, "{}", o.stderr);
    assert_eq!(
        k.ok(&["get", "st", "one", "-o", "jsonpath={.spec.size}"]).await,
        "1"
    );
    k.ok(&[
        "patch",
        "st",
        "one",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#,
    ])
    .await;
    let table = k.ok(&["get", "sealedthings"]).await;
    let lines: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], vec!["NAME", "SIZE", "READY", "AGE"], "{table}");
    assert_eq!(&lines[1][..3], &["one", "1", "True"], "{table}");
    let o = k.apply(&[], &cr.replace("size: 1", "size: 2")).await;
    assert!(o.ok && o.stdout.contains("configured"), "{}", o.stderr);
    assert_eq!(
        k.ok(&[
            "get",
            "sealedthings",
            "one",
            "-o",
            "jsonpath={.metadata.generation}"
        ])
        .await,
        "2"
    );
    k.ok(&["delete", "st", "one"]).await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_serves_until_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kc");
    let mut child = Command::new(env!("CARGO_BIN_EXE_devcluster"))
        .args(["--port", "0", "--kubeconfig"])
        .arg(&kubeconfig)
        .args(["--token", "bin-test-token", "--json-logs"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("devcluster binary runs");
    let mut first = String::new();
    // keep the pipe open for the whole test: the binary prints more lines
    let mut out = BufReader::new(child.stdout.take().unwrap());
    out.read_line(&mut first).unwrap();
    assert!(
        first.starts_with("devcluster listening on https://127.0.0.1:"),
        "{first}"
    );
    let kc = std::fs::read_to_string(&kubeconfig).unwrap();
    assert!(kc.contains("token: bin-test-token") && kc.contains("certificate-authority-data:"));
    let k = Kubectl {
        kubeconfig: kubeconfig.clone(),
        home: tempfile::tempdir().unwrap(),
    };
    let ns = k.ok(&["get", "namespaces", "-o", "name"]).await;
    assert!(
        ns.contains("namespace/default") && ns.contains("namespace/kube-system"),
        "{ns}"
    );
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    drop(out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_rejects_unknown_custom_resource_fields() {
    // kubectl sends fieldValidation=Strict: a typo in a custom resource is an error, as on a real cluster
    let (h, _c) = start().await;
    let k = Kubectl::new(&h);
    let crd = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
"#;
    assert!(k.apply(&[], crd).await.ok);
    k.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/gadgets.example.com",
        "--timeout=10s",
    ])
    .await;
    let bad =
        "apiVersion: example.com/v1\nkind: Gadget\nmetadata:\n  name: g\nspec:\n  size: 1\n  colour: red\n";
    for extra in [&[][..], &["--server-side"][..]] {
        let o = k.apply(extra, bad).await;
        assert!(!o.ok, "{extra:?}: {}", o.stdout);
        assert!(
            o.stderr.contains("unknown field \"spec.colour\""),
            "{extra:?}: {}",
            o.stderr
        );
    }
    let o = k.apply(&["--validate=false"], bad).await;
    assert!(o.ok, "{}", o.stderr);
    assert_eq!(
        k.ok(&["get", "gadget", "g", "-o", "jsonpath={.spec}"]).await,
        r#"{"size":1}"#,
        "pruned without Strict"
    );
    h.shutdown().await;
}
