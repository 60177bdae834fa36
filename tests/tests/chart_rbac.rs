//! The Helm chart's RBAC is what the controller needs, and no less: the chart rendered by the real Helm SDK is
//! applied to devcluster with kubectl, RBAC is switched on, and the controller runs with the chart
//! ServiceAccount's token through every flow; then a permission taken out of the chart makes a flow fail.

#[path = "../../providers/tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::Duration;

use sealant_e2e::{Cluster, SHOP_DEPLOYER, render_chart, wait_for, wait_value};
use serde_json::Value;

const T: Duration = Duration::from_secs(40);
const SERVICE_ACCOUNT: &str = "sealant-controller";

/// The ClusterRole without the `create` verb on Secrets.
fn without_creating_secrets(role: &Value) -> Value {
    let mut role = role.clone();
    for rule in role["rules"].as_array_mut().into_iter().flatten() {
        if rule["resources"]
            .as_array()
            .is_some_and(|rs| rs.iter().any(|x| x == "secrets"))
        {
            let verbs: Vec<Value> = rule["verbs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|v| *v != "create")
                .cloned()
                .collect();
            rule["verbs"] = Value::Array(verbs);
        }
    }
    role
}

#[test]
fn the_controller_works_with_the_chart_rbac_and_needs_it() {
    let aws = support::Server::moto();
    sealant_e2e::moto_call(
        aws.port,
        "CreateSecret",
        r#"{"Name":"shop/api","SecretString":"{\"token\":\"t0k\"}"}"#,
    );
    let c = Cluster::start().expect("devcluster");
    for ns in ["sealant", "shop"] {
        c.kubectl_ok(&["create", "namespace", ns]).unwrap();
    }
    let (yaml, docs) = render_chart(&[]);
    c.apply(&yaml).expect("the rendered chart applies with kubectl");
    let token = c
        .handle()
        .service_account_token("sealant", SERVICE_ACCOUNT, Duration::from_secs(3600))
        .unwrap();
    let kubeconfig = c.token_kubeconfig("controller", &token);
    c.handle().set_rbac(true);
    let controller = c
        .controller_as("chart-rbac", &kubeconfig, &["--lease-duration", "3s"], &[])
        .unwrap();

    // SealedSecrets: keys, recipients, unseal (as the chart's ServiceAccount, leading through its Lease)
    wait_for("recipients", T, || {
        c.get("configmap", "sealant", "sealant-recipients")
    });
    let recipients = c.dir.path().join("r.txt");
    assert!(
        c.sealant(&["recipients", "fetch", "-o", recipients.to_str().unwrap()], None)
            .status
            .success()
    );
    let seal = |name: &str, value: &str| {
        let secret = format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: shop}}\nstringData: {{k: {value}}}\n"
        );
        let out = c.sealant(&["seal", "-R", recipients.to_str().unwrap()], Some(&secret));
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    c.apply(&seal("sealed", "one")).unwrap();
    wait_value(&c, "shop", "sealed", "k", b"one");

    // ExternalSecrets from moto, credentials read from the store's namespace
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
    c.apply(&format!(
        "apiVersion: sealant.dev/v1\nkind: SecretStore\nmetadata: {{name: aws, namespace: shop}}\nspec:\n  provider:\n    \
         aws:\n      region: us-east-1\n      endpoint: {}\n      auth: {{secretRef: {{accessKeyIDSecretRef: {{name: aws, \
         key: id}}, secretAccessKeySecretRef: {{name: aws, key: key}}}}}}\n---\napiVersion: sealant.dev/v1\nkind: \
         ExternalSecret\nmetadata: {{name: api, namespace: shop}}\nspec:\n  secretStoreRef: {{name: aws}}\n  data: \
         [{{secretKey: token, remoteRef: {{key: shop/api, property: token}}}}]\n",
        aws.http_url()
    ))
    .unwrap();
    wait_value(&c, "shop", "api", "token", b"t0k");

    // GitSync applying as a ServiceAccount that may write ConfigMaps in shop (impersonation)
    let repo = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        let ok = Command::new("git")
            .current_dir(repo.path())
            .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
            .args(args)
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {args:?}");
    };
    git(&["init", "-q", "-b", "main"]);
    std::fs::create_dir_all(repo.path().join("deploy")).unwrap();
    std::fs::write(
        repo.path().join("deploy/cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: from-git, namespace: shop}\ndata: {a: b}\n",
    )
    .unwrap();
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "first"]);
    c.apply(&format!(
        r#"{SHOP_DEPLOYER}---
apiVersion: sealant.dev/v1
kind: GitSync
metadata: {{name: shop, namespace: shop}}
spec: {{url: "file://{}", path: deploy, interval: 3s, serviceAccountName: deployer}}
"#,
        repo.path().display()
    ))
    .unwrap();
    wait_for("the GitSync to apply", T, || {
        c.get("configmap", "shop", "from-git")
    });
    assert!(
        !controller.logs().contains("\"level\":\"ERROR\""),
        "errors under the chart's RBAC:\n{}",
        controller.logs()
    );

    // a permission taken out of the chart makes the flow fail: no ClusterRole may create Secrets any more
    let roles: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "ClusterRole").collect();
    assert!(
        roles
            .iter()
            .any(|r| r["rules"].to_string().contains("sealedsecrets")),
        "the chart renders a ClusterRole for SealedSecrets"
    );
    for role in roles {
        c.apply(&serde_json::to_string(&without_creating_secrets(role)).unwrap())
            .unwrap();
    }
    c.apply(&seal("blocked", "two")).unwrap();
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        c.get("secret", "shop", "blocked").is_none(),
        "a Secret was created without the permission"
    );
    wait_for("the controller to report the refusal", T, || {
        controller.logs().contains("forbidden").then_some(())
    });
    // ... and putting it back heals it
    c.apply(&yaml).unwrap();
    wait_value(&c, "shop", "blocked", "k", b"two");
}
