//! ExternalSecrets end to end: real OpenBao and moto servers, devcluster, the real kubectl and controller.

#[path = "../../providers/tests/support/mod.rs"]
mod support;

use std::time::Duration;

use sealant_e2e::{Cluster, Controller, http_get, ready, wait_for, wait_value, wait_value_within};
use support::{Server, random_id};

const T: Duration = Duration::from_secs(40);

fn setup(namespaces: &[&str]) -> Cluster {
    let c = Cluster::start().expect("devcluster");
    for ns in namespaces.iter().chain(["sealant"].iter()) {
        c.kubectl_ok(&["create", "namespace", ns]).unwrap();
    }
    c
}

use support::bao_cli as bao;

fn moto(server: &Server, target: &str, body: &str) -> String {
    sealant_e2e::moto_call(server.port, target, body)
}

fn metric(controller: &Controller, line_prefix: &str) -> u64 {
    let (_, text) = http_get(controller.addr, "/metrics").expect("metrics");
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or(0)
}

fn wait_reason(c: &Cluster, ns: &str, name: &str, reason: &str) -> String {
    wait_for(&format!("ExternalSecret {ns}/{name} reason {reason}"), T, || {
        let r = ready(&c.get("externalsecret", ns, name)?)?;
        (r.1 == reason).then_some(r.2)
    })
}

#[test]
fn vault_rotation_reload_outage_and_token_reuse() {
    let root = random_id("root-");
    let mut vault = Server::bao(&root);
    bao(
        &vault,
        &root,
        &["kv", "put", "-mount=secret", "shop/db", "password=v1", "user=app"],
    );
    let c = setup(&["shop"]);
    c.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "vault-token",
        "-n",
        "shop",
        &format!("--from-literal=token={root}"),
    ])
    .unwrap();
    c.apply(&format!(
        r#"
apiVersion: sealant.dev/v1
kind: SecretStore
metadata: {{name: vault, namespace: shop}}
spec:
  provider:
    vault:
      server: {}
      path: secret
      version: v2
      auth: {{tokenSecretRef: {{name: vault-token, key: token}}}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  annotations: {{sealant.dev/reload-on: db-credentials}}
spec:
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec: {{containers: [{{name: web, image: web:1}}]}}
---
apiVersion: sealant.dev/v1
kind: ExternalSecret
metadata: {{name: db, namespace: shop}}
spec:
  refreshInterval: 2s
  secretStoreRef: {{name: vault}}
  target:
    name: db-credentials
    template:
      mergePolicy: Merge
      data: {{url: "pg://{{{{ .user }}}}:{{{{ .password }}}}@db"}}
  data:
    - {{secretKey: password, remoteRef: {{key: shop/db, property: password}}}}
    - {{secretKey: user, remoteRef: {{key: shop/db, property: user}}}}
"#,
        vault.http_url()
    ))
    .unwrap();
    let controller = c.controller("es", &["--no-leader-election"]).unwrap();
    wait_value(&c, "shop", "db-credentials", "url", b"pg://app:v1@db");
    wait_reason(&c, "shop", "db", "SecretSynced");
    let es = c.get("externalsecret", "shop", "db").unwrap();
    assert!(
        es["status"]["refreshTime"].is_string() && es["status"]["syncedResourceVersion"].is_string(),
        "{es}"
    );
    let checksum = |c: &Cluster| {
        c.get("deployment", "shop", "web").unwrap()["spec"]["template"]["metadata"]["annotations"]
            ["checksum.sealant.dev/db-credentials"]
            .as_str()
            .map(str::to_owned)
    };
    let first = wait_for("the Deployment to roll", T, || checksum(&c));

    // dataFrom.find: every secret under a path whose name matches becomes a key
    bao(
        &vault,
        &root,
        &["kv", "put", "-mount=secret", "shop/api-a", "token=a"],
    );
    bao(
        &vault,
        &root,
        &["kv", "put", "-mount=secret", "shop/api-b", "token=b"],
    );
    c.apply(
        "apiVersion: sealant.dev/v1\nkind: ExternalSecret\nmetadata: {name: apis, namespace: shop}\nspec:\n  \
         refreshInterval: 1h\n  secretStoreRef: {name: vault}\n  dataFrom: [{find: {path: shop, name: {regexp: api-}}}]\n",
    )
    .unwrap();
    wait_value(&c, "shop", "apis", "shop_api-a", br#"{"token":"a"}"#);
    let apis = c.get("secret", "shop", "apis").unwrap();
    let keys: Vec<&String> = apis["data"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["shop_api-a", "shop_api-b"], "only the matching secrets");

    // rotation: the remote value changes, the Secret follows within a refresh, the Deployment rolls again
    bao(
        &vault,
        &root,
        &["kv", "put", "-mount=secret", "shop/db", "password=v2", "user=app"],
    );
    wait_value(&c, "shop", "db-credentials", "password", b"v2");
    let second = wait_for("the Deployment to roll again", T, || {
        checksum(&c).filter(|h| *h != first)
    });
    assert_ne!(first, second);

    // outage: the Secret stays byte-identical, the condition says why
    let before = c.get("secret", "shop", "db-credentials").unwrap()["data"].clone();
    vault.stop();
    let message = wait_reason(&c, "shop", "db", "ProviderError");
    assert!(
        message.contains("unavailable") && message.contains("left as it was"),
        "{message}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        c.get("secret", "shop", "db-credentials").unwrap()["data"],
        before,
        "an outage changed the Secret"
    );
    assert_eq!(
        checksum(&c).as_deref(),
        Some(second.as_str()),
        "an outage rolled the Deployment"
    );

    // recovery (a dev server starts empty: seed it again)
    vault.start();
    bao(
        &vault,
        &root,
        &["kv", "put", "-mount=secret", "shop/db", "password=v3", "user=app"],
    );
    wait_value(&c, "shop", "db-credentials", "password", b"v3");
    wait_reason(&c, "shop", "db", "SecretSynced");

    // one token for the store, looked up once, however many refreshes
    let lookups = metric(
        &controller,
        r#"sealant_provider_calls_total{provider="vault",operation="lookup"}"#,
    );
    let reads = metric(
        &controller,
        r#"sealant_provider_calls_total{provider="vault",operation="read"}"#,
    );
    assert_eq!(
        lookups, 1,
        "the token is reused, not looked up or logged in per reconcile"
    );
    assert!(reads >= 4, "reads: {reads}");
    for text in [
        controller.logs(),
        c.kubectl_ok(&["get", "externalsecrets,events.events.k8s.io", "-A", "-o", "json"])
            .unwrap(),
    ] {
        for v in ["v1@db", "password=v2", "\"v3\""] {
            assert!(!text.contains(v), "secret value {v} leaked");
        }
    }
}

#[test]

fn vault_kubernetes_auth_is_verified_through_devcluster_token_review() {
    let root = random_id("root-");
    let vault = Server::bao(&root);
    let c = setup(&["shop"]);
    bao(
        &vault,
        &root,
        &["kv", "put", "-mount=secret", "shop/api", "key=k8s-auth-works"],
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
    c.apply(&format!(
        r#"
apiVersion: sealant.dev/v1
kind: SecretStore
metadata: {{name: vault-k8s, namespace: shop}}
spec:
  provider:
    vault:
      server: {}
      auth:
        kubernetes: {{mountPath: kubernetes, role: shop, serviceAccountRef: {{name: vault-reader}}}}
---
apiVersion: sealant.dev/v1
kind: ExternalSecret
metadata: {{name: api, namespace: shop}}
spec:
  refreshInterval: 1h
  secretStoreRef: {{name: vault-k8s}}
  data: [{{secretKey: key, remoteRef: {{key: shop/api, property: key}}}}]
"#,
        vault.http_url()
    ))
    .unwrap();
    let controller = c.controller("k8s-auth", &["--no-leader-election"]).unwrap();
    wait_value(&c, "shop", "api", "key", b"k8s-auth-works");
    assert_eq!(
        metric(
            &controller,
            r#"sealant_provider_calls_total{provider="vault",operation="login"}"#
        ),
        1
    );
}

#[test]
fn aws_batches_coalesce_and_stores_stay_in_their_namespaces() {
    let mut aws = Server::moto();
    for i in 0..30 {
        moto(
            &aws,
            "CreateSecret",
            &format!(r#"{{"Name":"app/key-{i}","SecretString":"{{\"value\":\"v{i}\"}}"}}"#),
        );
    }
    let c = setup(&["shop", "other"]);
    c.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "aws-creds",
        "-n",
        "shop",
        "--from-literal=access-key=test",
        "--from-literal=secret-key=test",
    ])
    .unwrap();
    let store = |kind: &str, name: &str, ns_line: &str, ref_ns: &str, conditions: &str| {
        format!(
            r#"
apiVersion: sealant.dev/v1
kind: {kind}
metadata: {{name: {name}{ns_line}}}
spec:
  {conditions}
  provider:
    aws:
      service: SecretsManager
      region: us-east-1
      endpoint: {}
      auth:
        secretRef:
          accessKeyIDSecretRef: {{name: aws-creds, key: access-key{ref_ns}}}
          secretAccessKeySecretRef: {{name: aws-creds, key: secret-key{ref_ns}}}
"#,
            aws.http_url()
        )
    };
    c.apply(&store("SecretStore", "aws", ", namespace: shop", "", ""))
        .unwrap();
    c.apply(&store(
        "ClusterSecretStore",
        "aws-cluster",
        "",
        ", namespace: shop",
        "conditions: [{namespaces: [shop]}]",
    ))
    .unwrap();
    c.apply(&store(
        "SecretStore",
        "sneaky",
        ", namespace: other",
        ", namespace: shop",
        "",
    ))
    .unwrap();
    let es = |ns: &str, name: &str, store: &str, kind: &str, key: usize| {
        format!(
            r#"
apiVersion: sealant.dev/v1
kind: ExternalSecret
metadata: {{name: {name}, namespace: {ns}}}
spec:
  refreshInterval: 4s
  secretStoreRef: {{name: {store}, kind: {kind}}}
  data: [{{secretKey: value, remoteRef: {{key: app/key-{key}, property: value}}}}]
"#
        )
    };
    let all: String = (0..40)
        .map(|i| es("shop", &format!("es-{i}"), "aws", "SecretStore", i % 30))
        .collect::<Vec<_>>()
        .join("---");
    c.apply(&all).unwrap();
    let controller = c.controller("aws", &["--no-leader-election"]).unwrap();
    for i in 0..40 {
        wait_value(
            &c,
            "shop",
            &format!("es-{i}"),
            "value",
            format!("v{}", i % 30).as_bytes(),
        );
    }
    // 40 ExternalSecrets over 30 distinct keys: each refresh window costs ceil(30/20) = 2 batch calls
    let batch = r#"sealant_provider_calls_total{provider="aws",operation="BatchGetSecretValue"}"#;
    let single = r#"sealant_provider_calls_total{provider="aws",operation="GetSecretValue"}"#;
    let b0 = metric(&controller, batch);
    std::thread::sleep(Duration::from_secs(12));
    let b1 = metric(&controller, batch);
    let cycles = 3;
    assert!(
        b1 - b0 <= 2 * (cycles + 1),
        "{} batch calls in ~{cycles} refresh windows",
        b1 - b0
    );
    assert!(b1 - b0 >= 2, "refreshes happened: {}", b1 - b0);
    assert_eq!(metric(&controller, single), 0);

    // rotation through AWS
    moto(
        &aws,
        "PutSecretValue",
        r#"{"SecretId":"app/key-7","SecretString":"{\"value\":\"rotated\"}"}"#,
    );
    wait_value(&c, "shop", "es-7", "value", b"rotated");
    wait_value(&c, "shop", "es-37", "value", b"rotated");

    // namespaces: a SecretStore is seen only from its own namespace, a ClusterSecretStore only where admitted,
    // and a SecretStore cannot read credentials from another namespace
    c.apply(&es("other", "borrow", "aws", "SecretStore", 1)).unwrap();
    assert!(wait_reason(&c, "other", "borrow", "StoreNotFound").contains("other/aws"));
    c.apply(&es("other", "cluster", "aws-cluster", "ClusterSecretStore", 1))
        .unwrap();
    wait_reason(&c, "other", "cluster", "StoreNotAllowed");
    c.apply(&es("shop", "cluster", "aws-cluster", "ClusterSecretStore", 2))
        .unwrap();
    wait_value(&c, "shop", "cluster", "value", b"v2");
    c.apply(&es("other", "sneak", "sneaky", "SecretStore", 1))
        .unwrap();
    assert!(wait_reason(&c, "other", "sneak", "InvalidStore").contains("only from its own namespace"));
    for name in ["borrow", "cluster", "sneak"] {
        assert!(
            c.get("secret", "other", name).is_none(),
            "{name}: a Secret appeared in another namespace"
        );
    }

    // a value that does not exist yet: RemoteNotFound, looked for again on the refresh interval (not minutes
    // later), and synced once it is created
    c.apply(&es("shop", "late", "aws", "SecretStore", 99)).unwrap();
    assert!(wait_reason(&c, "shop", "late", "RemoteNotFound").contains("app/key-99"));
    moto(
        &aws,
        "CreateSecret",
        r#"{"Name":"app/key-99","SecretString":"{\"value\":\"late\"}"}"#,
    );
    wait_value_within(&c, "shop", "late", "value", b"late", Duration::from_secs(20));

    // outage: moto stops, Secrets stay byte-identical; it comes back (empty) and is seeded again
    let before = c.get("secret", "shop", "es-3").unwrap()["data"].clone();
    aws.stop();
    wait_reason(&c, "shop", "es-3", "ProviderError");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(c.get("secret", "shop", "es-3").unwrap()["data"], before);
    aws.start();
    moto(
        &aws,
        "CreateSecret",
        r#"{"Name":"app/key-3","SecretString":"{\"value\":\"back\"}"}"#,
    );
    wait_value(&c, "shop", "es-3", "value", b"back");
}

#[test]
fn aws_web_identity_from_a_service_account_and_the_default_chain() {
    let aws = Server::moto();
    moto(
        &aws,
        "CreateSecret",
        r#"{"Name":"app/token","SecretString":"{\"value\":\"via-sts\"}"}"#,
    );
    let c = setup(&["shop"]);
    c.kubectl_ok(&["create", "serviceaccount", "aws-reader", "-n", "shop"])
        .unwrap();
    c.apply(&format!(
        r#"
apiVersion: sealant.dev/v1
kind: SecretStore
metadata: {{name: aws-irsa, namespace: shop}}
spec:
  provider:
    aws:
      region: us-east-1
      endpoint: {url}
      role: arn:aws:iam::123456789012:role/shop-reader
      auth: {{jwt: {{serviceAccountRef: {{name: aws-reader, audiences: [sts.amazonaws.com]}}}}}}
---
apiVersion: sealant.dev/v1
kind: SecretStore
metadata: {{name: aws-chain, namespace: shop}}
spec:
  provider:
    aws: {{region: us-east-1, endpoint: {url}}}
---
apiVersion: sealant.dev/v1
kind: ExternalSecret
metadata: {{name: irsa, namespace: shop}}
spec:
  secretStoreRef: {{name: aws-irsa}}
  data: [{{secretKey: value, remoteRef: {{key: app/token, property: value}}}}]
---
apiVersion: sealant.dev/v1
kind: ExternalSecret
metadata: {{name: chain, namespace: shop}}
spec:
  secretStoreRef: {{name: aws-chain}}
  data: [{{secretKey: value, remoteRef: {{key: app/token, property: value}}}}]
"#,
        url = aws.http_url()
    ))
    .unwrap();
    // the default chain finds the controller's environment credentials; the web identity comes from a
    // TokenRequest for the ServiceAccount, exchanged at (moto's) STS
    let _controller = c
        .controller_with_env(
            "aws-auth",
            &["--no-leader-election"],
            &[
                ("AWS_ACCESS_KEY_ID", "AKIDCHAIN"),
                ("AWS_SECRET_ACCESS_KEY", "chain-secret"),
                ("AWS_EC2_METADATA_DISABLED", "true"),
            ],
        )
        .unwrap();
    wait_value(&c, "shop", "irsa", "value", b"via-sts");
    wait_value(&c, "shop", "chain", "value", b"via-sts");
}
