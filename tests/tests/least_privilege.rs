//! Least privilege, proven from devcluster's audit log of RBAC decisions: the Helm chart (rendered by the real
//! Helm SDK, applied with kubectl) grants the controller exactly what it uses. The controller runs as the
//! chart's ServiceAccount through every flow it has; afterwards no request of its user was denied (nothing
//! missing) and every permission the chart grants it was used by at least one allowed request (nothing
//! granted and unused). A GitSync applying as a ServiceAccount cannot write where that account may not, for
//! every kind of write the applier makes, and those writes are made (and refused) as the ServiceAccount.

#[path = "../../gitsource/tests/support/mod.rs"]
mod gitsupport;
#[path = "../../providers/tests/support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use sealant_devcluster::AuditEntry;
use sealant_devcluster::rbac::rule_allows;
use sealant_e2e::{
    Cluster, Controller, SHOP_DEPLOYER, http_get, ready, render_chart, secret_value, wait_for, wait_value,
};
use serde_json::{Value, json};
use support::{Server, random_id};

const T: Duration = Duration::from_secs(60);
const CONTROLLER_USER: &str = "system:serviceaccount:sealant:sealant-controller";

/// Permissions the chart grants that this test cannot make the controller use: (group, resource, verb, why).
/// Empty: every flow that needs a permission is exercised. An entry must say why its path cannot be reached.
const NOT_EXERCISED: &[(&str, &str, &str, &str)] = &[];

/// A cluster with the chart applied, RBAC on, and the namespaces the flows use.
fn chart_cluster(namespaces: &[&str], set: &[&str]) -> (Cluster, Vec<Value>, std::path::PathBuf) {
    let c = Cluster::start().expect("devcluster");
    for ns in ["sealant"].iter().chain(namespaces) {
        c.kubectl_ok(&["create", "namespace", ns]).unwrap();
    }
    let (yaml, docs) = render_chart(set);
    c.apply(&yaml).expect("the rendered chart applies with kubectl");
    let token = c
        .handle()
        .service_account_token("sealant", "sealant-controller", Duration::from_secs(3600))
        .unwrap();
    let kubeconfig = c.token_kubeconfig("controller", &token);
    (c, docs, kubeconfig)
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
        .unwrap_or_default()
}

/// One permission the chart grants the controller: a single (group, resource, verb[, name]) of one rule,
/// with the namespace its Role is bound in (empty for a ClusterRole bound cluster-wide).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Grant {
    role: String,
    namespace: String,
    group: String,
    resource: String,
    verb: String,
    name: String,
}

impl Grant {
    fn rule(&self) -> Value {
        let mut r = json!({"apiGroups": [self.group], "resources": [self.resource], "verbs": [self.verb]});
        if !self.name.is_empty() {
            r["resourceNames"] = json!([self.name]);
        }
        r
    }

    fn used_by(&self, e: &AuditEntry) -> bool {
        e.allowed
            && e.user == CONTROLLER_USER
            && (self.namespace.is_empty() || e.namespace == self.namespace)
            && rule_allows(&self.rule(), &e.attributes())
    }
}

/// Every permission of every Role/ClusterRole the chart binds to the controller's ServiceAccount.
fn grants(docs: &[Value]) -> Vec<Grant> {
    let is_sa = |b: &Value| {
        b["subjects"].as_array().into_iter().flatten().any(|s| {
            s["kind"] == "ServiceAccount" && s["name"] == "sealant-controller" && s["namespace"] == "sealant"
        })
    };
    let mut out = BTreeSet::new();
    for b in docs
        .iter()
        .filter(|d| matches!(d["kind"].as_str(), Some("RoleBinding" | "ClusterRoleBinding")))
    {
        if !is_sa(b) {
            continue;
        }
        let ns = if b["kind"] == "RoleBinding" {
            b["metadata"]["namespace"].as_str().unwrap_or_default()
        } else {
            ""
        };
        let (kind, name) = (&b["roleRef"]["kind"], &b["roleRef"]["name"]);
        let role = docs
            .iter()
            .find(|d| d["kind"] == *kind && d["metadata"]["name"] == *name)
            .unwrap_or_else(|| panic!("the chart binds {kind} {name}, which it does not render"));
        for rule in role["rules"].as_array().into_iter().flatten() {
            let names = strs(&rule["resourceNames"]);
            let names = if names.is_empty() {
                vec![String::new()]
            } else {
                names
            };
            for group in strs(&rule["apiGroups"]) {
                for resource in strs(&rule["resources"]) {
                    for verb in strs(&rule["verbs"]) {
                        for n in &names {
                            out.insert(Grant {
                                role: format!("{}/{}", kind.as_str().unwrap(), name.as_str().unwrap()),
                                namespace: ns.into(),
                                group: group.clone(),
                                resource: resource.clone(),
                                verb: verb.clone(),
                                name: n.clone(),
                            });
                        }
                    }
                }
            }
        }
    }
    out.into_iter().collect()
}

fn workloads(ns: &str, secret: &str) -> String {
    let pod = "selector: {matchLabels: {app: w}}\n  template:\n    metadata: {labels: {app: w}}\n    spec: {containers: [{name: w, image: \"w:1\"}]}";
    ["Deployment", "StatefulSet", "DaemonSet"]
        .iter()
        .map(|k| {
            format!(
                "apiVersion: apps/v1\nkind: {k}\nmetadata:\n  name: w-{}\n  namespace: {ns}\n  annotations: {{sealant.dev/reload-on: {secret}}}\nspec:\n  {pod}\n",
                k.to_lowercase()
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// The provider servers and what they need, made before RBAC is switched on.
struct Providers {
    vault: Server,
    aws: Server,
}

fn providers(c: &Cluster) -> Providers {
    let root = random_id("root-");
    let vault = Server::bao_tls(&root);
    let aws = Server::moto();
    for (name, value) in [
        ("shop/api", r#"{\"token\":\"t0k\"}"#),
        ("shop/gone", r#"{\"v\":\"here\"}"#),
    ] {
        sealant_e2e::moto_call(
            aws.port,
            "CreateSecret",
            &format!(r#"{{"Name":"{name}","SecretString":"{value}"}}"#),
        );
    }
    // OpenBao over TLS (CA from a ConfigMap), Kubernetes auth verified through devcluster's TokenReview
    let bao_ca = c.dir.path().join("bao-ca.pem");
    std::fs::write(&bao_ca, vault.bao_ca_pem()).unwrap();
    support::bao_cli(
        &vault,
        &root,
        &["kv", "put", "-mount=secret", "shop/db", "password=s3cret"],
    );
    support::bao_kubernetes_auth(
        &vault,
        &root,
        &c.handle().url(),
        c.handle().token(),
        c.handle().ca_pem().expect("devcluster serves TLS"),
    );
    c.kubectl_ok(&["create", "serviceaccount", "vault-reader", "-n", "shop"])
        .unwrap();
    c.kubectl_ok(&[
        "create",
        "configmap",
        "bao-ca",
        "-n",
        "shop",
        &format!("--from-file=ca.crt={}", bao_ca.display()),
    ])
    .unwrap();

    Providers { vault, aws }
}

/// SealedSecrets: created, updated, and recreated when the Secret type changes.
fn sealed_flow(c: &Cluster) {
    let recipients = c.dir.path().join("r.txt");
    let out = c.sealant(&["recipients", "fetch", "-o", recipients.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let seal = |name: &str, value: &str| {
        let secret = format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: shop}}\nstringData: {{k: {value}}}\n"
        );
        let out = c.sealant(&["seal", "-R", recipients.to_str().unwrap()], Some(&secret));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    c.apply(&seal("sealed", "one")).unwrap();
    wait_value(c, "shop", "sealed", "k", b"one");
    c.apply(&seal("sealed", "two")).unwrap();
    wait_value(c, "shop", "sealed", "k", b"two");
    let uid = c.get("secret", "shop", "sealed").unwrap()["metadata"]["uid"].clone();
    c.kubectl_ok(&[
        "patch",
        "sealedsecret",
        "sealed",
        "-n",
        "shop",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"template":{"type":"example.com/other"}}}"#,
    ])
    .unwrap();
    wait_for("the Secret recreated with its new type", T, || {
        let s = c.get("secret", "shop", "sealed")?;
        (s["type"] == "example.com/other" && s["metadata"]["uid"] != uid).then_some(())
    });
}

/// ExternalSecrets: Vault (TLS CA from a ConfigMap, Kubernetes auth with a TokenRequest), AWS through a
/// ClusterSecretStore admitting namespaces by label (credentials read from a Secret), a Merge into an existing
/// Secret, workloads that reload on a Secret, a value rotated at the provider, a remote value deleted.
fn external_flow(c: &Cluster, p: &Providers) {
    // ExternalSecrets: Vault (TLS CA from a ConfigMap, Kubernetes auth with a TokenRequest), AWS through a
    // ClusterSecretStore admitting namespaces by label (credentials read from a Secret), a Merge into an
    // existing Secret, and the workloads that reload on a Secret rolled
    c.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "aws",
        "-n",
        "shop",
        "--from-literal=id=x",
        "--from-literal=key=y",
    ])
    .unwrap();
    c.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "existing",
        "-n",
        "shop",
        "--from-literal=mine=kept",
    ])
    .unwrap();
    c.kubectl_ok(&["label", "namespace", "shop", "tier=shop"])
        .unwrap();
    c.apply(&workloads("shop", "api")).unwrap();
    c.apply(&format!(
        r#"
apiVersion: sealant.dev/v1
kind: SecretStore
metadata: {{name: vault, namespace: shop}}
spec:
  provider:
    vault:
      server: {vault}
      caProvider: {{type: ConfigMap, name: bao-ca, key: ca.crt}}
      auth:
        kubernetes: {{mountPath: kubernetes, role: shop, serviceAccountRef: {{name: vault-reader}}}}
---
apiVersion: sealant.dev/v1
kind: ClusterSecretStore
metadata: {{name: aws}}
spec:
  conditions: [{{namespaceSelector: {{matchLabels: {{tier: shop}}}}}}]
  provider:
    aws:
      region: us-east-1
      endpoint: {aws}
      auth: {{secretRef: {{accessKeyIDSecretRef: {{name: aws, namespace: shop, key: id}}, secretAccessKeySecretRef: {{name: aws, namespace: shop, key: key}}}}}}
---
apiVersion: sealant.dev/v1
kind: ExternalSecret
metadata: {{name: db, namespace: shop}}
spec:
  refreshInterval: 1h
  secretStoreRef: {{name: vault}}
  data: [{{secretKey: password, remoteRef: {{key: shop/db, property: password}}}}]
---
apiVersion: sealant.dev/v1
kind: ExternalSecret
metadata: {{name: api, namespace: shop}}
spec:
  refreshInterval: 2s
  secretStoreRef: {{name: aws, kind: ClusterSecretStore}}
  data: [{{secretKey: token, remoteRef: {{key: shop/api, property: token}}}}]
---
apiVersion: sealant.dev/v1
kind: ExternalSecret
metadata: {{name: gone, namespace: shop}}
spec:
  refreshInterval: 2s
  secretStoreRef: {{name: aws, kind: ClusterSecretStore}}
  target: {{deletionPolicy: Delete}}
  data: [{{secretKey: v, remoteRef: {{key: shop/gone, property: v}}}}]
---
apiVersion: sealant.dev/v1
kind: ExternalSecret
metadata: {{name: merge, namespace: shop}}
spec:
  refreshInterval: 1h
  secretStoreRef: {{name: aws, kind: ClusterSecretStore}}
  target: {{name: existing, creationPolicy: Merge}}
  data: [{{secretKey: token, remoteRef: {{key: shop/api, property: token}}}}]
"#,
        vault = p.vault.https_url(),
        aws = p.aws.http_url()
    ))
    .unwrap();
    wait_value(c, "shop", "db", "password", b"s3cret");
    wait_value(c, "shop", "api", "token", b"t0k");
    wait_value(c, "shop", "existing", "token", b"t0k");
    assert_eq!(
        secret_value(&c.get("secret", "shop", "existing").unwrap(), "mine").as_deref(),
        Some(&b"kept"[..])
    );
    for kind in ["deployment", "statefulset", "daemonset"] {
        wait_for(&format!("the {kind} to roll"), T, || {
            let w = c.get(kind, "shop", &format!("w-{kind}"))?;
            w["spec"]["template"]["metadata"]["annotations"]["checksum.sealant.dev/api"]
                .as_str()
                .map(|_| ())
        });
    }

    // a new value at the provider: the Secret updated and the workloads rolled again; the remote value gone:
    // the Secret deleted (deletionPolicy Delete)
    wait_value(c, "shop", "gone", "v", b"here");
    let rolled = c.get("deployment", "shop", "w-deployment").unwrap()["spec"]["template"]["metadata"]
        ["annotations"]["checksum.sealant.dev/api"]
        .clone();
    sealant_e2e::moto_call(
        p.aws.port,
        "PutSecretValue",
        r#"{"SecretId":"shop/api","SecretString":"{\"token\":\"t1k\"}"}"#,
    );
    wait_value(c, "shop", "api", "token", b"t1k");
    wait_for("the deployment to roll again", T, || {
        let w = c.get("deployment", "shop", "w-deployment")?;
        (w["spec"]["template"]["metadata"]["annotations"]["checksum.sealant.dev/api"] != rolled).then_some(())
    });
    sealant_e2e::moto_call(
        p.aws.port,
        "DeleteSecret",
        r#"{"SecretId":"shop/gone","ForceDeleteWithoutRecovery":true}"#,
    );
    wait_for("the Secret of a deleted remote value to go", T, || {
        c.get("secret", "shop", "gone").is_none().then_some(())
    });
    // looked for again every few seconds (refreshInterval 2s), the condition still says the Secret was
    // deleted, and nothing is written; the value back at the provider brings the Secret back
    let reason = |c: &Cluster| ready(&c.get("externalsecret", "shop", "gone").unwrap()).map(|r| r.1);
    wait_for("reason SecretDeleted", T, || {
        (reason(c).as_deref() == Some("SecretDeleted")).then_some(())
    });
    let es_version = c.get("externalsecret", "shop", "gone").unwrap()["metadata"]["resourceVersion"].clone();
    std::thread::sleep(Duration::from_secs(7));
    assert_eq!(reason(c).as_deref(), Some("SecretDeleted"));
    assert_eq!(
        c.get("externalsecret", "shop", "gone").unwrap()["metadata"]["resourceVersion"],
        es_version,
        "the status of a deleted Secret was rewritten"
    );
    assert!(c.get("secret", "shop", "gone").is_none());
    sealant_e2e::moto_call(
        p.aws.port,
        "CreateSecret",
        r#"{"Name":"shop/gone","SecretString":"{\"v\":\"back\"}"}"#,
    );
    wait_value(c, "shop", "gone", "v", b"back");
}

/// GitSync: over HTTP with basic auth from a Secret, applied as a ServiceAccount (impersonation). The servers
/// are returned to live as long as the test.
fn gitsync_flow(c: &Cluster) -> (gitsupport::Repos, gitsupport::GitHttpServer) {
    // GitSync: over HTTP with basic auth from a Secret, applied as a ServiceAccount (impersonation)
    let repos = gitsupport::Repos::new();
    let repo = repos.init("shop");
    repo.write(
        "deploy/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: from-git, namespace: shop}\ndata: {a: b}\n",
    );
    repo.commit("first");
    let git_server = gitsupport::GitHttpServer::start(
        repos.root(),
        gitsupport::ServerAuth::Basic {
            username: "u".into(),
            password: "p".into(),
        },
    );
    c.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "git-auth",
        "-n",
        "shop",
        "--from-literal=username=u",
        "--from-literal=password=p",
    ])
    .unwrap();
    c.apply(&format!(
        r#"{SHOP_DEPLOYER}---
apiVersion: sealant.dev/v1
kind: GitSync
metadata: {{name: shop, namespace: shop}}
spec: {{url: "{}", path: deploy, interval: 1h, serviceAccountName: deployer, secretRef: {{name: git-auth}}}}
"#,
        git_server.url("shop")
    ))
    .unwrap();
    wait_for("the GitSync to apply", T, || {
        c.get("configmap", "shop", "from-git")
    });
    wait_for("the GitSync to be Ready", T, || {
        (ready(&c.get("gitsync", "shop", "shop")?)?.0 == "True").then_some(())
    });

    (repos, git_server)
}

/// Which controllers the chart enables (and so the controller runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Only {
    All,
    SealedSecrets,
    ExternalSecrets,
    GitSync,
}

/// Renders the chart with only `only` enabled, runs the controller as its ServiceAccount with the
/// `--controllers` the chart's Deployment passes, through that controller's flows, and checks the audit log.
fn granted_is_used(only: Only) {
    let started = Instant::now();
    let set = match only {
        Only::All => vec![],
        Only::SealedSecrets => vec![
            "--set",
            "controllers.externalSecrets.enabled=false,controllers.gitSync.enabled=false",
        ],
        Only::ExternalSecrets => vec![
            "--set",
            "controllers.sealedSecrets.enabled=false,controllers.gitSync.enabled=false",
        ],
        Only::GitSync => vec![
            "--set",
            "controllers.sealedSecrets.enabled=false,controllers.externalSecrets.enabled=false",
        ],
    };
    let (c, docs, kubeconfig) = chart_cluster(&["shop"], &set);
    let controllers = docs
        .iter()
        .filter(|d| d["kind"] == "Deployment")
        .flat_map(|d| strs(&d["spec"]["template"]["spec"]["containers"][0]["args"]))
        .find(|a| a.starts_with("--controllers="))
        .expect("the Deployment passes --controllers");
    let runs = |o: Only| only == Only::All || only == o;
    let p = runs(Only::ExternalSecrets).then(|| providers(&c));

    c.handle().set_rbac(true);
    c.handle().clear_audit();
    // Renewal every 12 s: key generation and renewal, and the recipients ConfigMap made and then updated.
    let mut controller = c
        .controller_as(
            &format!("least-privilege-{only:?}"),
            &kubeconfig,
            &[
                "--lease-duration",
                "3s",
                "--key-renew-period",
                "12s",
                &controllers,
            ],
            &[],
        )
        .unwrap();
    let first_recipients = wait_for("recipients", T, || {
        c.get("configmap", "sealant", "sealant-recipients")
    });
    if runs(Only::SealedSecrets) {
        sealed_flow(&c);
    }
    if let Some(p) = &p {
        external_flow(&c, p);
    }
    let _git = runs(Only::GitSync).then(|| gitsync_flow(&c));
    // key renewal: a new key, and the recipients ConfigMap updated to it
    wait_for("a renewed key in the recipients", T, || {
        (c.get("configmap", "sealant", "sealant-recipients")?["data"] != first_recipients["data"])
            .then_some(())
    });
    assert!(
        c.kubectl_ok(&["get", "secrets", "-n", "sealant", "-o", "name"])
            .unwrap()
            .lines()
            .count()
            >= 2,
        "renewal keeps the old key"
    );
    // metrics (served from memory, no API request)
    let (code, metrics) = http_get(controller.addr, "/metrics").expect("metrics");
    assert_eq!(code, 200);
    assert!(metrics.contains("sealant_"), "{metrics}");
    // events on every Ready change
    wait_for("events", T, || {
        let out = c
            .kubectl_ok(&["get", "events.events.k8s.io", "-n", "shop", "-o", "json"])
            .ok()?;
        let v: Value = serde_json::from_str(&out).ok()?;
        (!v["items"].as_array()?.is_empty()).then_some(())
    });
    // a graceful stop releases the Lease (an update)
    controller.terminate();
    let lease = c
        .get("lease", "sealant", "sealant-controller")
        .expect("the Lease");
    assert!(
        lease["spec"]["holderIdentity"].is_null() || lease["spec"]["holderIdentity"] == "",
        "the Lease was not released: {lease}"
    );
    report(&c, &docs, &controller, started, &format!("{only:?}"));
}

#[test]
fn the_chart_grants_the_controller_exactly_what_it_uses() {
    granted_is_used(Only::All);
}

#[test]
fn each_controller_alone_uses_all_the_chart_grants_it() {
    for only in [Only::SealedSecrets, Only::ExternalSecrets, Only::GitSync] {
        granted_is_used(only);
    }
}

fn report(c: &Cluster, docs: &[Value], controller: &Controller, started: Instant, what: &str) {
    let log = c.handle().audit();
    assert_eq!(c.handle().audit_dropped(), 0, "the audit log overflowed");
    let mine: Vec<&AuditEntry> = log.iter().filter(|e| e.user == CONTROLLER_USER).collect();
    // (a) nothing missing
    let denied: BTreeSet<String> = mine
        .iter()
        .filter(|e| !e.allowed)
        .map(|e| {
            format!(
                "{} {}/{}/{} ns={:?} name={:?}",
                e.verb, e.api_group, e.resource, e.subresource, e.namespace, e.name
            )
        })
        .collect();
    assert!(
        denied.is_empty(),
        "the controller was refused under the chart's RBAC:\n{}\n\nlogs:\n{}",
        denied.iter().cloned().collect::<Vec<_>>().join("\n"),
        controller.logs()
    );
    // (b) nothing granted and unused
    let grants = grants(docs);
    let unused: Vec<&Grant> = grants
        .iter()
        .filter(|g| !mine.iter().any(|e| g.used_by(e)))
        .filter(|g| {
            !NOT_EXERCISED
                .iter()
                .any(|(gr, r, v, _why)| *gr == g.group && *r == g.resource && *v == g.verb)
        })
        .collect();
    assert!(
        unused.is_empty(),
        "the chart grants permissions the controller never used:\n{}",
        unused
            .iter()
            .map(|g| format!("{g:?}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let stale: Vec<_> = NOT_EXERCISED
        .iter()
        .filter(|(gr, r, v, _)| {
            !grants
                .iter()
                .any(|g| g.group == *gr && g.resource == *r && g.verb == *v)
        })
        .collect();
    assert!(
        stale.is_empty(),
        "allow-list entries the chart no longer grants: {stale:?}"
    );
    let rules: usize = docs
        .iter()
        .filter(|d| matches!(d["kind"].as_str(), Some("Role" | "ClusterRole")))
        .filter(|d| d["metadata"]["name"] != "sealant-recipients-reader")
        .map(|d| d["rules"].as_array().map_or(0, Vec::len))
        .sum();
    eprintln!(
        "least privilege ({what}): {rules} rules = {} permissions granted, {} exercised, {} on the allow-list; {} requests of \
         the controller audited ({} denied), {} audited in all; {:?}",
        grants.len(),
        grants.len() - NOT_EXERCISED.len(),
        NOT_EXERCISED.len(),
        mine.len(),
        denied.len(),
        log.len(),
        started.elapsed()
    );
}

/// A request as the audit log records it: (verb, resource, namespace, name).
type Request = (&'static str, &'static str, &'static str, &'static str);

/// A ConfigMap manifest.
fn configmap(ns: &str, name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: {ns}}}\ndata: {{a: b}}\n")
}

#[test]
fn a_gitsync_cannot_write_where_its_service_account_may_not() {
    let started = Instant::now();
    let (c, _docs, kubeconfig) = chart_cluster(&["apps", "forbidden"], &[]);
    const SA: &str = "system:serviceaccount:apps:deployer";
    // deployer: ConfigMaps in apps (no delete), Deployments there read-only, Roles and RoleBindings there (so
    // only escalation prevention stands between it and more rights)
    c.apply(
        r#"
apiVersion: v1
kind: ServiceAccount
metadata: {name: deployer, namespace: apps}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: deployer, namespace: apps}
rules:
  - {apiGroups: [""], resources: [configmaps], verbs: [get, list, watch, create, update, patch]}
  - {apiGroups: [apps], resources: [deployments], verbs: [get, list, watch]}
  - {apiGroups: [rbac.authorization.k8s.io], resources: [roles, rolebindings], verbs: [get, list, watch, create, update, patch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: deployer, namespace: apps}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: deployer}
subjects: [{kind: ServiceAccount, name: deployer, namespace: apps}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: apps}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "web:1"}]}
"#,
    )
    .unwrap();
    c.handle().set_rbac(true);
    c.handle().clear_audit();
    let controller = c
        .controller_as("gitsync-sa", &kubeconfig, &["--lease-duration", "3s"], &[])
        .unwrap();
    let repos = gitsupport::Repos::new();
    let repo = repos.init("apps");
    repo.write("deploy/keep.yaml", configmap("apps", "keep"));
    repo.write("deploy/old.yaml", configmap("apps", "old"));
    let good = repo.commit("what deployer may write");
    c.apply(&format!(
        "apiVersion: sealant.dev/v1\nkind: GitSync\nmetadata: {{name: scoped, namespace: apps}}\nspec:\n  url: {}\n  \
         path: deploy\n  interval: 2s\n  prune: true\n  serviceAccountName: deployer\n",
        repo.file_url()
    ))
    .unwrap();
    wait_for("the allowed revision", T, || {
        let g = c.get("gitsync", "apps", "scoped")?;
        (g["status"]["lastAppliedRevision"] == good.as_str()).then_some(())
    });
    assert!(c.get("configmap", "apps", "old").is_some());

    // Each refused revision also holds a ConfigMap deployer may write: it must not appear (nothing applied).
    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: apps}\nspec:\n  \
                      replicas: 3\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: \
                      web}}\n    spec: {containers: [{name: web, image: \"web:2\"}]}\n";
    let binding = "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: grab, namespace: \
                   apps}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\n\
                   subjects: [{kind: ServiceAccount, name: deployer, namespace: apps}]\n";
    let cases: Vec<(&str, String, &str, Request)> = vec![
        // (what, manifest, text the condition must name, the refused request: verb, resource, namespace, name)
        (
            "create in a namespace it may not write",
            configmap("forbidden", "sneaky"),
            "sneaky",
            ("patch", "configmaps", "forbidden", "sneaky"),
        ),
        (
            "patch of an object it may only read",
            deployment.to_string(),
            "web",
            ("patch", "deployments", "apps", "web"),
        ),
        (
            "a Namespace (cluster-scoped)",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: grabbed}\n".to_string(),
            "grabbed",
            ("patch", "namespaces", "", "grabbed"),
        ),
        (
            "a ClusterRole (cluster-scoped)",
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: grabbed}\nrules: []\n"
                .to_string(),
            "grabbed",
            ("patch", "clusterroles", "", "grabbed"),
        ),
        (
            "a RoleBinding granting itself cluster-admin (escalation)",
            binding.to_string(),
            "grab",
            ("bind", "clusterroles", "apps", "cluster-admin"),
        ),
        (
            "a Role granting more than it holds (escalation)",
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: wider, namespace: apps}\nrules: \
             [{apiGroups: [\"\"], resources: [secrets], verbs: [get]}]\n"
                .to_string(),
            "wider",
            ("escalate", "roles", "apps", "wider"),
        ),
    ];
    let total = cases.len() + 1;
    let refused = |i: usize, what: &str, names: &str, reason: Option<&str>| {
        let rev = repo.commit(what);
        c.kubectl_ok(&[
            "annotate",
            "gitsync",
            "scoped",
            "-n",
            "apps",
            &format!("try={i}"),
            "--overwrite",
        ])
        .unwrap();
        let (status, got, message) = wait_for(&format!("the refusal of {what}"), T, || {
            let g = c.get("gitsync", "apps", "scoped")?;
            (g["status"]["lastAttemptedRevision"] == rev.as_str()).then_some(())?;
            ready(&g)
        });
        assert_eq!(status, "False", "{what}: {message}");
        if let Some(r) = reason {
            assert_eq!(got, r, "{what}: {message}");
        }
        assert!(
            message.contains(names),
            "{what}: the condition names the object: {message}"
        );
        assert!(
            message.contains("nothing of this revision was applied"),
            "{what}: {message}"
        );
        let g = c.get("gitsync", "apps", "scoped").unwrap();
        assert_eq!(g["status"]["lastAppliedRevision"], good.as_str(), "{what}");
        assert!(
            c.get("configmap", "apps", &format!("marker-{i}")).is_none(),
            "{what}: part of the revision was applied"
        );
    };
    for (i, (what, manifest, names, _)) in cases.iter().enumerate() {
        if i > 0 {
            repo.remove(&format!("deploy/bad-{}.yaml", i - 1));
            repo.remove(&format!("deploy/marker-{}.yaml", i - 1));
        }
        repo.write(&format!("deploy/bad-{i}.yaml"), manifest);
        repo.write(
            &format!("deploy/marker-{i}.yaml"),
            configmap("apps", &format!("marker-{i}")),
        );
        refused(i, what, names, Some("ValidationFailed"));
    }
    // prune of an inventory object it may not delete: refused before anything is applied
    let i = cases.len();
    repo.remove(&format!("deploy/bad-{}.yaml", i - 1));
    repo.remove(&format!("deploy/marker-{}.yaml", i - 1));
    repo.remove("deploy/old.yaml");
    repo.write(
        &format!("deploy/marker-{i}.yaml"),
        configmap("apps", &format!("marker-{i}")),
    );
    refused(
        i,
        "prune of an object it may not delete",
        "ConfigMap apps/old",
        Some("PruneForbidden"),
    );
    assert!(
        c.get("configmap", "apps", "old").is_some(),
        "pruned without the right"
    );

    // nothing written anywhere it may not: the objects do not exist, the Deployment is unchanged
    assert!(c.get("configmap", "forbidden", "sneaky").is_none());
    assert!(c.get("namespace", "", "grabbed").is_none());
    assert!(c.kubectl(&["get", "clusterrole", "grabbed"], None).status.code() != Some(0));
    assert!(c.get("rolebinding", "apps", "grab").is_none());
    assert!(c.get("role", "apps", "wider").is_none());
    assert_eq!(c.get("deployment", "apps", "web").unwrap()["spec"]["replicas"], 1);

    // the audit log: every refused write was asked for (and denied) as the ServiceAccount, never as the controller
    let log = c.handle().audit();
    let mut expected: Vec<Request> = cases.iter().map(|x| x.3).collect();
    expected.push(("delete", "configmaps", "apps", "old"));
    for (verb, resource, ns, name) in &expected {
        let as_sa = log.iter().find(|e| {
            e.user == SA
                && e.verb == *verb
                && e.resource == *resource
                && e.namespace == *ns
                && e.name == *name
        });
        assert!(
            as_sa.is_some_and(|e| !e.allowed),
            "{verb} {resource} {ns}/{name} was not refused as {SA}"
        );
        assert!(
            !log.iter().any(|e| e.user == CONTROLLER_USER
                && e.name == *name
                && e.resource == *resource
                && !matches!(e.verb.as_str(), "get" | "list" | "watch")),
            "the controller wrote {resource} {name} with its own identity"
        );
    }
    // writes the ServiceAccount may make were made as it too (impersonation by the controller)
    assert!(
        log.iter()
            .any(|e| e.user == SA && e.verb == "patch" && e.name == "keep" && e.allowed)
    );
    assert!(log.iter().any(|e| {
        e.user == CONTROLLER_USER && e.verb == "impersonate" && e.resource == "serviceaccounts" && e.allowed
    }));
    let controller_denied: Vec<&AuditEntry> = log
        .iter()
        .filter(|e| e.user == CONTROLLER_USER && !e.allowed)
        .collect();
    assert!(
        controller_denied.is_empty(),
        "{controller_denied:?}\n{}",
        controller.logs()
    );
    let sa_denied = log.iter().filter(|e| e.user == SA && !e.allowed).count();
    eprintln!(
        "gitsync as a ServiceAccount: {total} forbidden writes attempted, {total} refused before anything was \
         applied; {sa_denied} denied requests of {SA}, {} of the controller; {} requests audited; {:?}",
        controller_denied.len(),
        log.len(),
        started.elapsed()
    );
}
