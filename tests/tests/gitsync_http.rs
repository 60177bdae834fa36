//! GitSync over HTTP: a repository served by `git http-backend` on 127.0.0.1 behind basic auth, plus
//! targetNamespace, suspend and force.

#[path = "../../gitsource/tests/support/mod.rs"]
mod support;

use std::time::Duration;

use sealant_e2e::{Cluster, ready, wait_for};
use support::{GitHttpServer, Repos, ServerAuth};

const T: Duration = Duration::from_secs(40);

fn condition(c: &Cluster, name: &str) -> Option<(String, String, String, serde_json::Value)> {
    let g = c.get("gitsync", "apps", name)?;
    let (status, reason, message) = ready(&g)?;
    Some((status, reason, message, g["status"].clone()))
}

fn configmap(ns: &str, name: &str, value: &str, immutable: bool) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: {ns}}}\nimmutable: {immutable}\ndata: {{value: \"{value}\"}}\n"
    )
}

fn value(c: &Cluster, ns: &str, name: &str) -> Option<String> {
    c.get("configmap", ns, name)?["data"]["value"]
        .as_str()
        .map(str::to_owned)
}

#[test]
fn basic_auth_over_http_target_namespace_suspend_and_force() {
    let repos = Repos::new();
    let repo = repos.init("shop");
    repo.write(
        "deploy/settings.yaml",
        configmap("ignored", "settings", "one", false),
    );
    repo.write("deploy/frozen.yaml", configmap("ignored", "frozen", "one", true));
    let first = repo.commit("first");
    let server = GitHttpServer::start(
        repos.root(),
        ServerAuth::Basic {
            username: "git".into(),
            password: "pw-s3cret".into(),
        },
    );
    let c = Cluster::start().expect("devcluster");
    for ns in ["sealant", "apps", "tenant"] {
        c.kubectl_ok(&["create", "namespace", ns]).unwrap();
    }
    c.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "git-creds",
        "-n",
        "apps",
        "--from-literal=username=git",
        "--from-literal=password=not-it",
    ])
    .unwrap();
    let _controller = c.controller("gitops-http", &["--no-leader-election"]).unwrap();
    c.apply(&format!(
        "apiVersion: sealant.dev/v1\nkind: GitSync\nmetadata: {{name: shop, namespace: apps}}\nspec:\n  url: {}\n  \
         path: deploy\n  interval: 2s\n  secretRef: {{name: git-creds}}\n  targetNamespace: tenant\n",
        server.url("shop")
    ))
    .unwrap();

    // the wrong password: an authentication failure that never shows the password
    let (_, _, message, _) = wait_for("the auth failure", T, || {
        condition(&c, "shop").filter(|x| x.1 == "GitAuthFailed")
    });
    assert!(!message.contains("not-it"), "{message}");
    let secrets = c
        .kubectl_ok(&["get", "gitsyncs,events.events.k8s.io", "-A", "-o", "json"])
        .unwrap();
    assert!(!secrets.contains("not-it"));

    // the right one: applied, every namespaced object moved to targetNamespace
    c.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "git-creds",
        "-n",
        "apps",
        "--from-literal=username=git",
        "--from-literal=password=pw-s3cret",
        "--dry-run=client",
        "-o",
        "yaml",
    ])
    .map(|y| c.apply(&y))
    .unwrap()
    .unwrap();
    wait_for("the first revision", T, || {
        condition(&c, "shop").filter(|x| x.3["lastAppliedRevision"] == first)
    });
    assert_eq!(value(&c, "tenant", "settings").as_deref(), Some("one"));
    assert!(c.get("configmap", "ignored", "settings").is_none());

    // suspended: new commits wait
    c.kubectl_ok(&[
        "patch",
        "gitsync",
        "shop",
        "-n",
        "apps",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":true}}"#,
    ])
    .unwrap();
    wait_for("Suspended", T, || {
        condition(&c, "shop").filter(|x| x.1 == "Suspended")
    });
    repo.write(
        "deploy/settings.yaml",
        configmap("ignored", "settings", "two", false),
    );
    repo.commit("two");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        value(&c, "tenant", "settings").as_deref(),
        Some("one"),
        "a suspended GitSync applied"
    );
    c.kubectl_ok(&[
        "patch",
        "gitsync",
        "shop",
        "-n",
        "apps",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":false}}"#,
    ])
    .unwrap();
    wait_for("the resumed apply", T, || {
        (value(&c, "tenant", "settings").as_deref() == Some("two")).then_some(())
    });

    // an immutable object changes: refused without force (nothing applied), recreated with it
    repo.write("deploy/frozen.yaml", configmap("ignored", "frozen", "two", true));
    repo.write(
        "deploy/settings.yaml",
        configmap("ignored", "settings", "three", false),
    );
    let frozen = repo.commit("change the immutable one");
    let (_, _, message, _) = wait_for("the immutable change to be refused", T, || {
        condition(&c, "shop").filter(|x| x.0 == "False" && x.3["lastAttemptedRevision"] == frozen)
    });
    assert!(
        message.contains("spec.force") || message.contains("immutable"),
        "{message}"
    );
    assert_eq!(
        value(&c, "tenant", "settings").as_deref(),
        Some("two"),
        "part of a refused revision was applied"
    );
    c.kubectl_ok(&[
        "patch",
        "gitsync",
        "shop",
        "-n",
        "apps",
        "--type=merge",
        "-p",
        r#"{"spec":{"force":true}}"#,
    ])
    .unwrap();
    wait_for("the forced apply", T, || {
        condition(&c, "shop").filter(|x| x.3["lastAppliedRevision"] == frozen)
    });
    assert_eq!(value(&c, "tenant", "frozen").as_deref(), Some("two"));
    assert_eq!(value(&c, "tenant", "settings").as_deref(), Some("three"));
    assert!(server.count(401) >= 1);
}

#[test]
fn ssh_identity_and_known_hosts_from_a_secret() {
    let sshd = support::Sshd::start();
    let repos = Repos::new();
    let repo = repos.init("over-ssh");
    repo.write("deploy/cm.yaml", configmap("apps", "via-ssh", "yes", false));
    let first = repo.commit("first");
    let c = Cluster::start().expect("devcluster");
    for ns in ["sealant", "apps"] {
        c.kubectl_ok(&["create", "namespace", ns]).unwrap();
    }
    let dir = c.dir.path();
    std::fs::write(dir.join("identity"), sshd.identity()).unwrap();
    std::fs::write(dir.join("known_hosts"), sshd.known_hosts()).unwrap();
    c.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "git-ssh",
        "-n",
        "apps",
        &format!("--from-file=identity={}", dir.join("identity").display()),
        &format!("--from-file=known_hosts={}", dir.join("known_hosts").display()),
    ])
    .unwrap();
    let _controller = c.controller("gitops-ssh", &["--no-leader-election"]).unwrap();
    c.apply(&format!(
        "apiVersion: sealant.dev/v1\nkind: GitSync\nmetadata: {{name: ssh, namespace: apps}}\nspec:\n  url: {}\n  \
         path: deploy\n  interval: 5s\n  secretRef: {{name: git-ssh}}\n",
        sshd.url(&repos.root().join("over-ssh"))
    ))
    .unwrap();
    wait_for("the ssh revision", T, || {
        condition(&c, "ssh").filter(|x| x.3["lastAppliedRevision"] == first)
    });
    assert_eq!(value(&c, "apps", "via-ssh").as_deref(), Some("yes"));
    let logs = c
        .kubectl_ok(&["get", "gitsyncs,events.events.k8s.io", "-A", "-o", "json"])
        .unwrap();
    assert!(!logs.contains("PRIVATE KEY"));
}
