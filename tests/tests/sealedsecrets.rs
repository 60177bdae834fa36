//! SealedSecrets end to end: the real CLI seals, the real kubectl applies, the real controller unseals, all
//! against devcluster on 127.0.0.1.

use std::time::Duration;

use sealant_e2e::{Cluster, http_get, ok, ready, secret_value, secret_yaml, wait_for};

const T: Duration = Duration::from_secs(30);

const CONTROLLER_SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: sealant-controller, namespace: sealant}
spec:
  ports: [{name: http, port: 8080, targetPort: 8080}]
"#;

fn setup() -> Cluster {
    let c = Cluster::start().expect("devcluster");
    for ns in ["sealant", "prod", "dev"] {
        c.kubectl_ok(&["create", "namespace", ns]).unwrap();
    }
    c.apply(CONTROLLER_SERVICE).unwrap();
    c
}

/// Fetches the published recipients into a file and returns its path.
fn fetch_recipients(c: &Cluster, file: &str) -> String {
    wait_for("the recipients ConfigMap", T, || {
        c.get("configmap", "sealant", "sealant-recipients")
    });
    let path = c.dir.path().join(file);
    ok(&c.sealant(
        &[
            "recipients",
            "fetch",
            "-o",
            path.to_str().unwrap(),
            "--controller-namespace",
            "sealant",
        ],
        None,
    ));
    path.to_str().unwrap().to_owned()
}

fn seal(c: &Cluster, recipients: &str, secret: &str) -> String {
    ok(&c.sealant(&["seal", "-R", recipients], Some(secret)))
}

fn wait_value(c: &Cluster, ns: &str, name: &str, key: &str, want: &[u8]) {
    wait_for(&format!("Secret {ns}/{name} with {key}"), T, || {
        let s = c.get("secret", ns, name)?;
        (secret_value(&s, key).as_deref() == Some(want)).then_some(())
    });
}

fn wait_reason(c: &Cluster, ns: &str, name: &str, reason: &str) -> (String, String, String) {
    wait_for(&format!("SealedSecret {ns}/{name} reason {reason}"), T, || {
        let r = ready(&c.get("sealedsecret", ns, name)?)?;
        (r.1 == reason).then_some(r)
    })
}

#[test]
fn seal_apply_unseal_self_heal_scope_and_ownership() {
    let c = setup();
    let controller = c.controller("solo", &["--no-leader-election"]).unwrap();
    let recipients = fetch_recipients(&c, "recipients.txt");

    let sealed = seal(
        &c,
        &recipients,
        &secret_yaml("prod", "db", &[("password", "hunter2"), ("user", "app")]),
    );
    assert!(!sealed.contains("hunter2"));
    c.apply(&sealed).unwrap();
    wait_value(&c, "prod", "db", "password", b"hunter2");
    let (status, _, _) = wait_reason(&c, "prod", "db", "Unsealed");
    assert_eq!(status, "True");
    let secret = c.get("secret", "prod", "db").unwrap();
    let owner = &secret["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "SealedSecret");
    assert_eq!(owner["controller"], true);

    // a reconcile that changes nothing writes nothing
    let rv = secret["metadata"]["resourceVersion"].clone();
    c.kubectl_ok(&["label", "sealedsecret", "db", "-n", "prod", "touched=yes"])
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        c.get("secret", "prod", "db").unwrap()["metadata"]["resourceVersion"],
        rv,
        "no-op reconcile wrote"
    );

    // self-heal: deleted and edited Secrets come back
    c.kubectl_ok(&["delete", "secret", "db", "-n", "prod"]).unwrap();
    wait_value(&c, "prod", "db", "password", b"hunter2");
    c.kubectl_ok(&[
        "patch",
        "secret",
        "db",
        "-n",
        "prod",
        "--type=merge",
        "-p",
        r#"{"data":{"password":"ZWRpdGVk"}}"#,
    ])
    .unwrap();
    wait_value(&c, "prod", "db", "password", b"hunter2");

    // scope: the same SealedSecret in another namespace does not open
    c.apply(&sealed.replace("namespace: prod", "namespace: dev"))
        .unwrap();
    let (status, _, message) = wait_reason(&c, "dev", "db", "ScopeMismatch");
    assert_eq!(status, "False");
    assert!(message.contains("prod/db"), "{message}");
    assert!(
        c.get("secret", "dev", "db").is_none(),
        "no Secret from a moved SealedSecret"
    );

    // ownership: a Secret it did not make is left alone until annotated
    c.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "foreign",
        "-n",
        "prod",
        "--from-literal=password=theirs",
    ])
    .unwrap();
    c.apply(&seal(
        &c,
        &recipients,
        &secret_yaml("prod", "foreign", &[("password", "ours")]),
    ))
    .unwrap();
    wait_reason(&c, "prod", "foreign", "Unmanaged");
    assert_eq!(
        secret_value(&c.get("secret", "prod", "foreign").unwrap(), "password").unwrap(),
        b"theirs"
    );
    c.kubectl_ok(&[
        "annotate",
        "secret",
        "foreign",
        "-n",
        "prod",
        "sealant.dev/managed=true",
    ])
    .unwrap();
    // the annotation is not a SealedSecret change: a spec touch (relabel) triggers the reconcile
    c.kubectl_ok(&["label", "sealedsecret", "foreign", "-n", "prod", "touch=1"])
        .unwrap();
    wait_value(&c, "prod", "foreign", "password", b"ours");

    // verify through the service proxy
    let file = c.dir.path().join("db.yaml");
    std::fs::write(&file, &sealed).unwrap();
    let out = c.sealant(&["verify", "-f", file.to_str().unwrap()], None);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("prod/db: ok"),
        "{out:?}"
    );
    std::fs::write(&file, sealed.replace("namespace: prod", "namespace: dev")).unwrap();
    let out = c.sealant(&["verify", "-f", file.to_str().unwrap()], None);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ScopeMismatch"),
        "{out:?}"
    );

    // metrics count unseals by result
    let (status, metrics) = http_get(controller.addr, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics.contains(r#"sealant_unseal_total{result="ok"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"sealant_unseal_total{result="ScopeMismatch"}"#),
        "{metrics}"
    );
    assert!(metrics.contains("sealant_leader 1"), "{metrics}");

    // nothing secret in logs, events or conditions
    let mut events = c
        .kubectl_ok(&["get", "events.events.k8s.io", "-A", "-o", "json"])
        .unwrap();
    assert!(
        events.contains("ScopeMismatch") && events.contains("Unmanaged"),
        "events were published: {events}"
    );
    events.push_str(&c.kubectl_ok(&["get", "events", "-A", "-o", "json"]).unwrap());
    let conditions = c
        .kubectl_ok(&["get", "sealedsecrets", "-A", "-o", "json"])
        .unwrap();
    for text in [controller.logs(), events, conditions] {
        for value in ["hunter2", "ours"] {
            assert!(!text.contains(value), "secret value {value} leaked");
        }
    }
}

#[test]
fn key_rotation_keeps_old_sealed_secrets_working() {
    let c = setup();
    let _controller = c
        .controller("rotating", &["--no-leader-election", "--key-renew-period", "3s"])
        .unwrap();
    let first = fetch_recipients(&c, "first.txt");
    let old = seal(&c, &first, &secret_yaml("prod", "old", &[("token", "one")]));
    c.apply(&old).unwrap();
    wait_value(&c, "prod", "old", "token", b"one");
    wait_for("a second key", T, || {
        let keys = c
            .kubectl_ok(&[
                "get",
                "secrets",
                "-n",
                "sealant",
                "-l",
                "sealant.dev/key=identity",
                "-o",
                "name",
            ])
            .ok()?;
        (keys.lines().count() >= 2).then_some(())
    });
    let second = wait_for("new recipients", T, || {
        let path = fetch_recipients(&c, "second.txt");
        (std::fs::read_to_string(&path).ok()? != std::fs::read_to_string(&first).ok()?).then_some(path)
    });
    c.apply(&seal(
        &c,
        &second,
        &secret_yaml("prod", "new", &[("token", "two")]),
    ))
    .unwrap();
    wait_value(&c, "prod", "new", "token", b"two");
    // the old one still opens (old keys are kept), and online re-encryption moves it to the newest key
    c.kubectl_ok(&["delete", "secret", "old", "-n", "prod"]).unwrap();
    wait_value(&c, "prod", "old", "token", b"one");
    let file = c.dir.path().join("old.yaml");
    std::fs::write(&file, &old).unwrap();
    ok(&c.sealant(&["reencrypt", file.to_str().unwrap()], None));
    let rotated = std::fs::read_to_string(&file).unwrap();
    assert_ne!(rotated, old);
    c.apply(&rotated).unwrap();
    wait_reason(&c, "prod", "old", "Unsealed");
}

#[test]
fn leader_failover_and_restart_converge() {
    let c = setup();
    let lease = ["--lease-duration", "3s"];
    let mut a = c.controller("replica-a", &lease).unwrap();
    let recipients = fetch_recipients(&c, "r.txt");
    let mut b = c.controller("replica-b", &lease).unwrap();
    // every replica serves the endpoints, leader or not
    for replica in [&a, &b] {
        // 503 until the replica has read the keys (it starts a moment after replica-a made them)
        let (status, body) = wait_for("endpoints", T, || {
            http_get(replica.addr, "/v1/recipients").filter(|(status, _)| *status != 503)
        });
        assert_eq!(status, 200);
        assert!(body.contains("age1"), "{body}");
    }
    c.apply(&seal(&c, &recipients, &secret_yaml("prod", "one", &[("k", "1")])))
        .unwrap();
    wait_value(&c, "prod", "one", "k", b"1");
    let holder = wait_for("a Lease holder", T, || {
        let l = c.get("lease", "sealant", "sealant-controller")?;
        l["spec"]["holderIdentity"].as_str().map(str::to_owned)
    });
    let (leader, standby) = if holder == "replica-a" {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    leader.kill();
    c.apply(&seal(&c, &recipients, &secret_yaml("prod", "two", &[("k", "2")])))
        .unwrap();
    wait_value(&c, "prod", "two", "k", b"2");
    let new_holder =
        c.get("lease", "sealant", "sealant-controller").unwrap()["spec"]["holderIdentity"].clone();
    assert_ne!(new_holder.as_str(), Some(holder.as_str()));
    assert!(standby.is_running());

    // everything stops; work arrives meanwhile; a restart converges
    standby.terminate();
    c.apply(&seal(
        &c,
        &recipients,
        &secret_yaml("prod", "three", &[("k", "3")]),
    ))
    .unwrap();
    c.kubectl_ok(&["delete", "secret", "one", "-n", "prod"]).unwrap();
    let _again = c.controller("replica-c", &lease).unwrap();
    wait_value(&c, "prod", "three", "k", b"3");
    wait_value(&c, "prod", "one", "k", b"1");
}

#[test]
fn keys_backup_and_restore_without_restart() {
    let c = setup();
    let _controller = c
        .controller("keys", &["--no-leader-election", "--key-renew-period", "0"])
        .unwrap();
    let recipients = fetch_recipients(&c, "r.txt");
    let backup = c.dir.path().join("backup.yaml");
    ok(&c.sealant(&["keys", "backup", "-o", backup.to_str().unwrap()], None));
    let ss = seal(&c, &recipients, &secret_yaml("prod", "restored", &[("k", "v")]));
    // the key disappears (a cluster rebuilt from Git would have none) ...
    c.kubectl_ok(&[
        "delete",
        "secrets",
        "-n",
        "sealant",
        "-l",
        "sealant.dev/key=identity",
    ])
    .unwrap();
    c.apply(&ss).unwrap();
    let (_, reason, _) = wait_reason(&c, "prod", "restored", "UnknownKey");
    assert_eq!(reason, "UnknownKey");
    // ... and the backup brings it back without restarting the controller
    c.kubectl_ok(&["apply", "-f", backup.to_str().unwrap()]).unwrap();
    wait_value(&c, "prod", "restored", "k", b"v");
}

#[test]
fn shard_selector_splits_sealed_secrets() {
    let c = setup();
    let _a = c
        .controller(
            "shard-a",
            &["--no-leader-election", "--shard-selector", "shard=a"],
        )
        .unwrap();
    let recipients = fetch_recipients(&c, "r.txt");
    let mine = seal(&c, &recipients, &secret_yaml("prod", "mine", &[("k", "a")]))
        .replace("metadata:\n", "metadata:\n  labels:\n    shard: a\n");
    c.apply(&mine).unwrap();
    c.apply(&seal(
        &c,
        &recipients,
        &secret_yaml("prod", "theirs", &[("k", "b")]),
    ))
    .unwrap();
    wait_value(&c, "prod", "mine", "k", b"a");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        c.get("secret", "prod", "theirs").is_none(),
        "a SealedSecret outside the shard was handled"
    );
    assert!(ready(&c.get("sealedsecret", "prod", "theirs").unwrap()).is_none());
}

#[test]
fn any_authenticated_user_reads_recipients_but_not_keys() {
    let c = setup();
    let _controller = c.controller("rbac", &["--no-leader-election"]).unwrap();
    wait_for("the recipients ConfigMap", T, || {
        c.get("configmap", "sealant", "sealant-recipients")
    });
    let rbac = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/recipients-reader.yaml");
    c.kubectl_ok(&["apply", "-f", rbac]).unwrap();
    c.handle().set_rbac(true);
    let user = c.user_kubeconfig("dev-token", "alice", &[]);
    let out = std::process::Command::new(sealant_e2e::binary("sealant"))
        .env("KUBECONFIG", &user)
        .args([
            "recipients",
            "fetch",
            "-o",
            c.dir.path().join("alice.txt").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("age1"));
    let secrets = std::process::Command::new("kubectl")
        .env("KUBECONFIG", &user)
        .args(["get", "secrets", "-n", "sealant"])
        .output()
        .unwrap();
    assert!(!secrets.status.success(), "alice must not read the key Secrets");
    let out = std::process::Command::new(sealant_e2e::binary("sealant"))
        .env("KUBECONFIG", &user)
        .args(["keys", "backup"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not allowed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
