//! GitSync end to end: repositories made by the tests with the real `git`, the real controller applying them
//! to devcluster, checked with the real kubectl.

use std::time::Duration;

use sealant_e2e::{Cluster, Repo, ready, secret_value, wait_for};

const T: Duration = Duration::from_secs(40);

fn deployment(name: &str, replicas: u32, extra_metadata: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n{extra_metadata}spec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec: {{containers: [{{name: app, image: \"app:1\"}}]}}\n"
    )
}

fn gitsync(name: &str, url: &str, extra: &str) -> String {
    format!(
        "apiVersion: sealant.dev/v1\nkind: GitSync\nmetadata: {{name: {name}, namespace: apps}}\nspec:\n  url: {url}\n  ref: {{branch: main}}\n  path: deploy\n  interval: 2s\n  prune: true\n{extra}"
    )
}

fn status(c: &Cluster, name: &str) -> Option<serde_json::Value> {
    c.get("gitsync", "apps", name).map(|g| g["status"].clone())
}

fn wait_applied(c: &Cluster, name: &str, revision: &str) -> serde_json::Value {
    wait_for(&format!("GitSync {name} at {revision}"), T, || {
        let s = status(c, name)?;
        (s["lastAppliedRevision"] == revision).then_some(s)
    })
}

fn replicas(c: &Cluster, name: &str) -> Option<u64> {
    c.get("deployment", "shop", name)?["spec"]["replicas"].as_u64()
}

#[test]
fn commits_apply_prune_revert_drift_and_bad_commits_change_nothing() {
    let c = Cluster::start().expect("devcluster");
    for ns in ["sealant", "apps"] {
        c.kubectl_ok(&["create", "namespace", ns]).unwrap();
    }
    let _controller = c.controller("gitops", &["--no-leader-election"]).unwrap();
    let recipients = c.dir.path().join("r.txt");
    wait_for("recipients", T, || {
        c.get("configmap", "sealant", "sealant-recipients")
    });
    let out = c.sealant(&["recipients", "fetch", "-o", recipients.to_str().unwrap()], None);
    assert!(out.status.success());

    // a repository with a namespace, a SealedSecret sealed by the CLI, and two workloads
    let repo = Repo::new();
    repo.write(
        "deploy/namespace.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
    );
    let secret = "apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: shop}\nstringData: {password: from-git}\n";
    let sealed = c.sealant(&["seal", "-R", recipients.to_str().unwrap()], Some(secret));
    assert!(sealed.status.success());
    repo.write("deploy/db.sealed.yaml", &String::from_utf8_lossy(&sealed.stdout));
    repo.write("deploy/web.yaml", &deployment("web", 1, "  namespace: shop\n"));
    repo.write(
        "deploy/worker.yaml",
        &deployment("worker", 1, "  namespace: shop\n"),
    );
    repo.write("README.md", "not applied: outside the path\n");
    let first = repo.commit("first");
    c.apply(&gitsync("shop", &repo.url(), "")).unwrap();
    let s = wait_applied(&c, "shop", &first);
    // the SealedSecret became a Secret in the same cycle (applied and waited for before the workloads)
    assert_eq!(
        secret_value(&c.get("secret", "shop", "db").unwrap(), "password").unwrap(),
        b"from-git"
    );
    assert_eq!(replicas(&c, "web"), Some(1));
    let ids: Vec<&str> = s["inventory"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"shop_web_apps_Deployment") && ids.contains(&"_shop__Namespace"),
        "{ids:?}"
    );
    assert_eq!(
        ready(&c.get("gitsync", "apps", "shop").unwrap()).unwrap().0,
        "True"
    );

    // nothing changes: no writes at all, over several intervals
    std::thread::sleep(Duration::from_secs(1));
    let rv = c.handle().resource_version();
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        c.handle().resource_version(),
        rv,
        "a no-change reconcile wrote something"
    );

    // a commit changes a Deployment
    repo.write("deploy/web.yaml", &deployment("web", 3, "  namespace: shop\n"));
    let second = repo.commit("scale web");
    wait_applied(&c, "shop", &second);
    assert_eq!(replicas(&c, "web"), Some(3));

    // a manual edit is reverted
    c.kubectl_ok(&["scale", "deployment", "web", "-n", "shop", "--replicas=7"])
        .unwrap();
    wait_for("drift to be reverted", T, || {
        (replicas(&c, "web") == Some(3)).then_some(())
    });

    // a commit deletes a file: pruned; an object annotated to be kept is not
    repo.write(
        "deploy/worker.yaml",
        &deployment("worker", 1, "  namespace: shop\n"),
    );
    repo.write(
        "deploy/kept.yaml",
        &deployment(
            "kept",
            1,
            "  namespace: shop\n  annotations: {sealant.dev/prune: disabled}\n",
        ),
    );
    let third = repo.commit("add kept");
    wait_applied(&c, "shop", &third);
    repo.remove("deploy/worker.yaml");
    repo.remove("deploy/kept.yaml");
    let fourth = repo.commit("remove worker and kept");
    wait_applied(&c, "shop", &fourth);
    wait_for("worker to be pruned", T, || {
        c.get("deployment", "shop", "worker").is_none().then_some(())
    });
    assert!(
        c.get("deployment", "shop", "kept").is_some(),
        "an object annotated prune: disabled was deleted"
    );

    // a bad commit: one broken file means nothing of that revision is applied
    repo.write("deploy/web.yaml", &deployment("web", 5, "  namespace: shop\n"));
    repo.write(
        "deploy/broken.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [\n",
    );
    let bad = repo.commit("bad");
    let message = wait_for("the bad commit to be refused", T, || {
        let g = c.get("gitsync", "apps", "shop")?;
        let r = ready(&g)?;
        (r.1 == "ValidationFailed" && g["status"]["lastAttemptedRevision"] == bad).then_some(r.2)
    });
    assert!(message.contains("deploy/broken.yaml"), "{message}");
    assert_eq!(status(&c, "shop").unwrap()["lastAppliedRevision"], fourth);
    assert_eq!(replicas(&c, "web"), Some(3), "part of a bad revision was applied");

    // the fix is applied
    repo.remove("deploy/broken.yaml");
    let fixed = repo.commit("fix");
    wait_applied(&c, "shop", &fixed);
    assert_eq!(replicas(&c, "web"), Some(5));

    // an empty revision does not prune everything unless allowed
    for f in [
        "deploy/namespace.yaml",
        "deploy/db.sealed.yaml",
        "deploy/web.yaml",
    ] {
        repo.remove(f);
    }
    repo.write("deploy/README.md", "manifests go here\n");
    let empty = repo.commit("empty");
    wait_for("an empty revision to be refused", T, || {
        let g = c.get("gitsync", "apps", "shop")?;
        (ready(&g)?.1 == "PruneRefused" && g["status"]["lastAttemptedRevision"] == empty).then_some(())
    });
    assert_eq!(replicas(&c, "web"), Some(5));
}

#[test]
fn service_account_limits_what_a_gitsync_can_write() {
    let c = Cluster::start().expect("devcluster");
    for ns in ["sealant", "apps", "allowed", "forbidden"] {
        c.kubectl_ok(&["create", "namespace", ns]).unwrap();
    }
    c.apply(
        r#"
apiVersion: v1
kind: ServiceAccount
metadata: {name: deployer, namespace: apps}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: deploy, namespace: allowed}
rules: [{apiGroups: ["", apps], resources: [configmaps, deployments], verbs: [get, list, watch, create, update, patch, delete]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: deploy, namespace: allowed}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: deploy}
subjects: [{kind: ServiceAccount, name: deployer, namespace: apps}]
"#,
    )
    .unwrap();
    c.handle().set_rbac(true);
    let _controller = c.controller("gitops-rbac", &["--no-leader-election"]).unwrap();
    let repo = Repo::new();
    repo.write(
        "deploy/ok.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok, namespace: allowed}\ndata: {a: b}\n",
    );
    let good = repo.commit("allowed only");
    c.apply(&gitsync(
        "scoped",
        &repo.url(),
        "  serviceAccountName: deployer\n",
    ))
    .unwrap();
    wait_applied(&c, "scoped", &good);
    assert!(c.get("configmap", "allowed", "ok").is_some());
    repo.write(
        "deploy/sneaky.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: sneaky, namespace: forbidden}\ndata: {a: b}\n",
    );
    let bad = repo.commit("writes where it may not");
    let message = wait_for("the forbidden write to fail", T, || {
        let g = c.get("gitsync", "apps", "scoped")?;
        let r = ready(&g)?;
        (r.0 == "False" && g["status"]["lastAttemptedRevision"] == bad).then_some(r.2)
    });
    assert!(
        message.contains("forbidden") || message.contains("Forbidden"),
        "{message}"
    );
    assert!(
        c.get("configmap", "forbidden", "sneaky").is_none(),
        "wrote where the ServiceAccount may not"
    );
}
