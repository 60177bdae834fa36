//! The Helm chart (charts/sealant) through the real Helm SDK (PyPI `helm-python-sdk`, driven by
//! scripts/chart.py): lint, render, the values schema and the CRD copies. Nothing is applied to a cluster here.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The repository root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `python3 scripts/chart.py ARGS`; fails (never skips) when the Helm SDK is missing.
fn chart(args: &[&str]) -> Output {
    let probe = Command::new("python3")
        .args(["-c", "import helm_python"])
        .output()
        .expect("running python3 (needed for the chart tests)");
    assert!(
        probe.status.success(),
        "the Python module helm_python (PyPI helm-python-sdk) is missing: run scripts/setup.sh\n{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    Command::new("python3")
        .current_dir(root())
        .arg("scripts/chart.py")
        .args(args)
        .output()
        .expect("running scripts/chart.py")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `chart.py render ARGS` as parsed documents; every document must be an object with apiVersion, kind and
/// metadata.name.
fn render(args: &[&str]) -> Vec<Value> {
    let mut full = vec!["render"];
    full.extend_from_slice(args);
    let out = chart(&full);
    assert!(out.status.success(), "render failed: {}", text(&out));
    let yaml = String::from_utf8(out.stdout).expect("UTF-8 output");
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&yaml).unwrap_or_else(|e| panic!("rendered YAML: {e}\n{yaml}"));
    let docs: Vec<Value> = docs.into_iter().filter(|d| !d.is_null()).collect();
    assert!(!docs.is_empty(), "nothing rendered");
    for d in &docs {
        for field in ["apiVersion", "kind"] {
            assert!(
                d[field].as_str().is_some_and(|s| !s.is_empty()),
                "no {field} in {d}"
            );
        }
        assert!(
            d["metadata"]["name"].as_str().is_some_and(|s| !s.is_empty()),
            "no metadata.name in {d}"
        );
        assert_ne!(
            d["kind"], "CustomResourceDefinition",
            "render must leave the CRDs out"
        );
    }
    docs
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
}

fn get<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    find(docs, kind, name).unwrap_or_else(|| {
        let have: Vec<String> = docs
            .iter()
            .map(|d| format!("{}/{}", d["kind"], d["metadata"]["name"]))
            .collect();
        panic!("no {kind} {name} rendered; have {have:?}")
    })
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The controller container's args.
fn args(docs: &[Value], deployment: &str) -> Vec<String> {
    let d = get(docs, "Deployment", deployment);
    strs(&d["spec"]["template"]["spec"]["containers"][0]["args"])
        .into_iter()
        .map(String::from)
        .collect()
}

fn has_rule(role: &Value, group: &str, resource: &str, verbs: &[&str]) -> bool {
    role["rules"].as_array().into_iter().flatten().any(|r| {
        strs(&r["apiGroups"]).contains(&group)
            && strs(&r["resources"]).contains(&resource)
            && verbs.iter().all(|v| strs(&r["verbs"]).contains(v))
    })
}

/// Asserts an RBAC role names no `*` anywhere in its rules.
fn assert_no_wildcards(docs: &[Value]) {
    for d in docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
    {
        let rules = d["rules"].as_array().unwrap_or_else(|| panic!("no rules in {d}"));
        assert!(!rules.is_empty(), "empty rules in {d}");
        for r in rules {
            for field in [
                "apiGroups",
                "resources",
                "verbs",
                "resourceNames",
                "nonResourceURLs",
            ] {
                assert!(
                    !strs(&r[field]).iter().any(|s| s.contains('*')),
                    "wildcard in {field} of {}: {r}",
                    d["metadata"]["name"]
                );
            }
        }
    }
}

const NON_DEFAULT: &str = "\
replicas: 3
networkPolicy:
  enabled: true
  ingressNamespaceSelectors:
    - matchLabels: {kubernetes.io/metadata.name: monitoring}
serviceMonitor:
  enabled: true
  labels: {release: prometheus}
controllers:
  gitSync:
    enabled: false
resources:
  requests: {cpu: 50m, memory: 64Mi}
  limits: {memory: 256Mi}
shardSelector: shard=a
logFormat: text
keyRenewPeriod: 720h
";

fn values_file(dir: &tempfile::TempDir, name: &str, body: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, body).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn lint_is_clean_with_default_and_non_default_values() {
    let out = chart(&["lint"]);
    assert!(out.status.success(), "lint with defaults: {}", text(&out));
    let dir = tempfile::tempdir().unwrap();
    let file = values_file(&dir, "values.yaml", NON_DEFAULT);
    let out = chart(&["lint", "--values", &file]);
    assert!(out.status.success(), "lint with {NON_DEFAULT}: {}", text(&out));
    let out = chart(&[
        "lint",
        "--set",
        "replicas=1,leaderElection.enabled=false,controllers.gitSync.clusterAdmin=true",
    ]);
    assert!(out.status.success(), "lint with a single replica: {}", text(&out));
    // ... and lint reports values the schema refuses
    let out = chart(&["lint", "--set", "logFormat=xml"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "lint accepted logFormat=xml: {}",
        text(&out)
    );
}

#[test]
fn default_render_has_every_object_the_install_needs() {
    let docs = render(&["--namespace", "sealant", "--release", "sealant"]);
    let name = "sealant-controller";
    for kind in ["Deployment", "ServiceAccount", "Service", "PodDisruptionBudget"] {
        assert_eq!(
            get(&docs, kind, name)["metadata"]["namespace"],
            "sealant",
            "{kind}"
        );
    }
    for role in [
        name,
        "sealant-controller-sealedsecrets",
        "sealant-controller-externalsecrets",
        "sealant-controller-gitsyncs",
    ] {
        get(&docs, "ClusterRole", role);
        let binding = get(&docs, "ClusterRoleBinding", role);
        assert_eq!(binding["roleRef"]["name"], role);
        assert_eq!(binding["subjects"][0]["kind"], "ServiceAccount");
        assert_eq!(binding["subjects"][0]["name"], name);
        assert_eq!(binding["subjects"][0]["namespace"], "sealant");
    }
    for role in [name, "sealant-recipients-reader"] {
        assert_eq!(get(&docs, "Role", role)["metadata"]["namespace"], "sealant");
        assert_eq!(get(&docs, "RoleBinding", role)["roleRef"]["name"], role);
    }
    assert!(
        find(
            &docs,
            "ClusterRoleBinding",
            "sealant-controller-gitsyncs-cluster-admin"
        )
        .is_none(),
        "cluster-admin must be opt-in"
    );
    for kind in ["NetworkPolicy", "ServiceMonitor"] {
        assert!(
            !docs.iter().any(|d| d["kind"] == kind),
            "{kind} must be off by default"
        );
    }

    // the Service the CLI reaches through the service proxy: port named http on 8080
    let svc = get(&docs, "Service", name);
    assert_eq!(svc["spec"]["ports"][0]["name"], "http");
    assert_eq!(svc["spec"]["ports"][0]["port"], 8080);
    assert_eq!(get(&docs, "PodDisruptionBudget", name)["spec"]["minAvailable"], 1);

    // the Deployment: replicas, identity, args, probes, volumes, restricted security context
    let deployment = get(&docs, "Deployment", name);
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], name);
    let c = &pod["containers"][0];
    assert_eq!(c["image"], "ghcr.io/sealant/sealant:0.1.0");
    assert_eq!(c["command"][0], "/usr/local/bin/sealant-controller");
    let args = args(&docs, name);
    for want in [
        "--namespace=sealant",
        "--http-addr=0.0.0.0:8080",
        "--controllers=sealedsecrets,externalsecrets,gitsyncs",
        "--lease-name=sealant-controller",
        "--lease-duration=15s",
        "--key-renew-period=30d",
        "--log-format=json",
        "--git-cache-dir=/var/cache/sealant-git",
    ] {
        assert!(args.iter().any(|a| a == want), "{want} missing from {args:?}");
    }
    for absent in ["--no-leader-election", "--no-keygen", "--shard-selector"] {
        assert!(
            !args.iter().any(|a| a.starts_with(absent)),
            "{absent} in {args:?}"
        );
    }
    let env = c["env"].as_array().unwrap();
    assert!(
        env.iter()
            .any(|e| e["name"] == "POD_NAME" && e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"),
        "POD_NAME from the downward API: {env:?}"
    );
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    assert!(
        c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mountPath"] == "/var/cache/sealant-git"),
        "the Git cache is mounted"
    );
    assert!(
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == "git-cache" && v["emptyDir"].is_object()),
        "the Git cache is an emptyDir"
    );
    for sc in [&pod["securityContext"], &c["securityContext"]] {
        assert_eq!(sc["runAsNonRoot"], true, "{sc}");
        assert_eq!(sc["runAsUser"], 65532, "{sc}");
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{sc}");
    }
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(strs(&sc["capabilities"]["drop"]), ["ALL"]);

    // RBAC: what each part needs
    let base = get(&docs, "Role", name);
    assert!(has_rule(base, "coordination.k8s.io", "leases", &["create"]));
    assert!(has_rule(
        base,
        "coordination.k8s.io",
        "leases",
        &["get", "update"]
    ));
    assert!(has_rule(base, "", "configmaps", &["create"]));
    assert!(has_rule(base, "", "configmaps", &["get", "update"]));
    assert!(
        has_rule(base, "", "secrets", &["list", "watch", "create"]),
        "the key Secrets"
    );
    assert!(
        !has_rule(base, "", "secrets", &["get"]),
        "key Secrets are watched, never read one by one"
    );
    let events = get(&docs, "ClusterRole", name);
    assert!(has_rule(events, "events.k8s.io", "events", &["create"]));
    assert!(
        !has_rule(events, "events.k8s.io", "events", &["patch"]),
        "events are never patched"
    );
    assert!(
        !has_rule(events, "", "events", &["create"]),
        "only events.k8s.io Events are made"
    );
    let sealed = get(&docs, "ClusterRole", "sealant-controller-sealedsecrets");
    assert!(has_rule(
        sealed,
        "sealant.dev",
        "sealedsecrets",
        &["list", "watch"]
    ));
    assert!(has_rule(
        sealed,
        "sealant.dev",
        "sealedsecrets/status",
        &["patch"]
    ));
    assert!(has_rule(
        sealed,
        "",
        "secrets",
        &["get", "list", "watch", "create", "update", "delete"]
    ));
    assert!(
        !has_rule(sealed, "", "secrets", &["patch"]),
        "unsealed Secrets are never patched"
    );
    assert!(!has_rule(sealed, "sealant.dev", "sealedsecrets", &["get"]));
    assert!(!has_rule(
        sealed,
        "sealant.dev",
        "sealedsecrets/status",
        &["update"]
    ));
    let external = get(&docs, "ClusterRole", "sealant-controller-externalsecrets");
    assert!(has_rule(
        external,
        "sealant.dev",
        "externalsecrets",
        &["list", "watch"]
    ));
    for r in ["secretstores", "clustersecretstores"] {
        assert!(has_rule(external, "sealant.dev", r, &["get"]), "{r}");
        assert!(
            !has_rule(external, "sealant.dev", r, &["list"]),
            "{r} are not watched"
        );
    }
    assert!(has_rule(
        external,
        "",
        "secrets",
        &["get", "list", "watch", "create", "update", "patch", "delete"]
    ));
    assert!(has_rule(external, "", "serviceaccounts/token", &["create"]));
    assert!(has_rule(external, "apps", "deployments", &["list", "patch"]));
    let git = get(&docs, "ClusterRole", "sealant-controller-gitsyncs");
    assert!(has_rule(git, "sealant.dev", "gitsyncs/status", &["patch"]));
    assert!(has_rule(git, "", "serviceaccounts", &["impersonate"]));
    assert!(has_rule(git, "", "groups", &["impersonate"]));
    assert!(
        !has_rule(git, "", "secrets", &["list"]),
        "GitSync only reads named credentials"
    );
    let reader = get(&docs, "Role", "sealant-recipients-reader");
    assert_eq!(strs(&reader["rules"][0]["resourceNames"]), ["sealant-recipients"]);
    assert_eq!(strs(&reader["rules"][0]["verbs"]), ["get"]);
    let reader_binding = get(&docs, "RoleBinding", "sealant-recipients-reader");
    assert_eq!(reader_binding["subjects"][0]["kind"], "Group");
    assert_eq!(reader_binding["subjects"][0]["name"], "system:authenticated");
    assert_no_wildcards(&docs);
}

#[test]
fn the_recipients_reader_matches_the_plain_manifest() {
    let plain = std::fs::read_to_string(root().join("deploy/recipients-reader.yaml")).unwrap();
    let plain: Vec<Value> = serde_saphyr::from_multiple(&plain).unwrap();
    let docs = render(&[]);
    for want in plain.iter().filter(|d| !d.is_null()) {
        let kind = want["kind"].as_str().unwrap();
        let got = get(&docs, kind, want["metadata"]["name"].as_str().unwrap());
        for field in ["rules", "roleRef", "subjects"] {
            assert_eq!(got[field], want[field], "{kind} {field}");
        }
    }
}

#[test]
fn a_controller_turned_off_loses_its_rbac_and_its_flag() {
    for (value, flag, role) in [
        (
            "controllers.sealedSecrets.enabled=false",
            "sealedsecrets",
            "sealant-controller-sealedsecrets",
        ),
        (
            "controllers.externalSecrets.enabled=false",
            "externalsecrets",
            "sealant-controller-externalsecrets",
        ),
        (
            "controllers.gitSync.enabled=false",
            "gitsyncs",
            "sealant-controller-gitsyncs",
        ),
    ] {
        let docs = render(&["--set", value]);
        assert!(find(&docs, "ClusterRole", role).is_none(), "{value} left {role}");
        assert!(
            find(&docs, "ClusterRoleBinding", role).is_none(),
            "{value} left its binding"
        );
        let args = args(&docs, "sealant-controller");
        let list = args
            .iter()
            .find_map(|a| a.strip_prefix("--controllers="))
            .expect("--controllers");
        let names: Vec<&str> = list.split(',').collect();
        assert_eq!(names.len(), 2, "{list}");
        assert!(!names.contains(&flag), "{value}: --controllers={list}");
        // the base role (leases, keys, events) stays
        get(&docs, "ClusterRole", "sealant-controller");
        get(&docs, "Role", "sealant-controller");
        assert_no_wildcards(&docs);
    }
    let out = chart(&[
        "render",
        "--set",
        "controllers.sealedSecrets.enabled=false,controllers.externalSecrets.enabled=false,controllers.gitSync.enabled=false",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "no controller at all must fail: {}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("enable at least one"),
        "{}",
        text(&out)
    );
}

#[test]
fn non_default_values_render_as_asked() {
    let dir = tempfile::tempdir().unwrap();
    let file = values_file(&dir, "values.yaml", NON_DEFAULT);
    let docs = render(&["--values", &file, "--namespace", "secrets", "--release", "prod"]);
    let name = "prod-sealant-controller";
    let deployment = get(&docs, "Deployment", name);
    assert_eq!(deployment["metadata"]["namespace"], "secrets");
    assert_eq!(deployment["spec"]["replicas"], 3);
    let c = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["resources"]["limits"]["memory"], "256Mi");
    let args = args(&docs, name);
    for want in [
        "--namespace=secrets",
        "--controllers=sealedsecrets,externalsecrets",
        "--shard-selector=shard=a",
        "--log-format=text",
        "--key-renew-period=720h",
        "--lease-name=prod-sealant-controller",
    ] {
        assert!(args.iter().any(|a| a == want), "{want} missing from {args:?}");
    }
    let policy = get(&docs, "NetworkPolicy", name);
    let rule = &policy["spec"]["ingress"][0];
    assert_eq!(rule["ports"][0]["port"], 8080);
    assert_eq!(
        rule["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "monitoring"
    );
    let monitor = get(&docs, "ServiceMonitor", name);
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    assert!(find(&docs, "ClusterRole", "prod-sealant-controller-gitsyncs").is_none());
    assert_eq!(get(&docs, "PodDisruptionBudget", name)["spec"]["minAvailable"], 1);
    let binding = get(
        &docs,
        "ClusterRoleBinding",
        "prod-sealant-controller-sealedsecrets",
    );
    assert_eq!(binding["subjects"][0]["namespace"], "secrets");
    assert_no_wildcards(&docs);

    // a single replica without leader election, no PDB; cluster-admin only when asked
    let docs = render(&[
        "--set",
        "replicas=1,leaderElection.enabled=false,noKeygen=true,controllers.gitSync.clusterAdmin=true",
    ]);
    let args = self::args(&docs, "sealant-controller");
    assert!(args.iter().any(|a| a == "--no-leader-election"), "{args:?}");
    assert!(args.iter().any(|a| a == "--no-keygen"), "{args:?}");
    assert!(!args.iter().any(|a| a.starts_with("--lease-")), "{args:?}");
    assert!(find(&docs, "PodDisruptionBudget", "sealant-controller").is_none());
    let admin = get(
        &docs,
        "ClusterRoleBinding",
        "sealant-controller-gitsyncs-cluster-admin",
    );
    assert_eq!(admin["roleRef"]["name"], "cluster-admin");
    assert_no_wildcards(&docs);

    // leader election can only be turned off for one replica
    let out = chart(&["render", "--set", "leaderElection.enabled=false"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("replicas: 1"),
        "{}",
        text(&out)
    );
}

#[test]
fn the_schema_refuses_invalid_values() {
    let dir = tempfile::tempdir().unwrap();
    let good = values_file(&dir, "good.yaml", NON_DEFAULT);
    let out = chart(&["schema-check", "--values", &good]);
    assert!(out.status.success(), "{}", text(&out));
    for (body, mention) in [
        ("replicas: two\n", "/replicas"),
        ("replicas: -1\n", "/replicas"),
        ("logFormat: xml\n", "/logFormat"),
        ("keyRenewPeriod: soon\n", "/keyRenewPeriod"),
        (
            "controllers:\n  gitSync:\n    enabled: \"yes\"\n",
            "/controllers/gitSync/enabled",
        ),
        ("image:\n  pullPolicy: Sometimes\n", "/image/pullPolicy"),
        ("networkPolicy:\n  enabeld: true\n", "enabeld"),
        ("replica: 2\n", "replica"),
    ] {
        let file = values_file(&dir, "bad.yaml", body);
        let out = chart(&["schema-check", "--values", &file]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{body:?} passed the schema: {}",
            text(&out)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(mention),
            "{body:?}: the error does not name {mention}: {}",
            text(&out)
        );
        // rendering refuses them too
        let out = chart(&["render", "--values", &file]);
        assert_eq!(out.status.code(), Some(1), "{body:?} rendered: {}", text(&out));
    }
    let out = chart(&["schema-check", "--values", "/nonexistent/values.yaml"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn the_chart_crds_are_the_generated_ones() {
    let generated = root().join("crds/yaml");
    let copies = root().join("charts/sealant/crds");
    let mut names: Vec<String> = std::fs::read_dir(&generated)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    assert!(!names.is_empty());
    for name in &names {
        let want = std::fs::read(generated.join(name)).unwrap();
        let got = std::fs::read(copies.join(name))
            .unwrap_or_else(|e| panic!("charts/sealant/crds/{name}: {e}; run scripts/chart.py sync-crds"));
        assert!(
            got == want,
            "charts/sealant/crds/{name} is stale; run scripts/chart.py sync-crds"
        );
    }
    let mut in_chart: Vec<String> = std::fs::read_dir(&copies)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    in_chart.sort();
    assert_eq!(
        in_chart, names,
        "charts/sealant/crds holds exactly the generated CRDs"
    );
    let out = chart(&["sync-crds", "--check"]);
    assert!(out.status.success(), "{}", text(&out));
}
