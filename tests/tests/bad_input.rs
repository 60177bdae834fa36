//! Bad input, in one place (issue #9): tampered, truncated and garbled ciphertexts, values copied to another
//! place, unknown keys, oversized Secrets, empty or garbled SealedSecrets, malformed `sealant seal` input,
//! malformed manifests in Git, ExternalSecrets with missing or foreign stores, missing credentials and missing
//! remote keys. Each gets a clear condition or error that says what to do; the controller keeps running and
//! keeps serving the good objects next to the bad ones; nothing is half-applied (no Secret, or the existing one
//! byte-identical; nothing of a bad Git revision).

#[path = "../../providers/tests/support/mod.rs"]
mod support;

use std::process::{Command, Output};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sealant_e2e::{Cluster, Controller, Repo, ok, ready, secret_yaml, wait_for, wait_value};
use serde_json::{Value, json};
use support::{Server, random_id};

const T: Duration = Duration::from_secs(40);

fn setup(namespaces: &[&str]) -> Cluster {
    let c = Cluster::start().expect("devcluster");
    for ns in ["sealant"].iter().chain(namespaces) {
        c.kubectl_ok(&["create", "namespace", ns]).unwrap();
    }
    c
}

fn fetch_recipients(c: &Cluster) -> String {
    wait_for("the recipients ConfigMap", T, || {
        c.get("configmap", "sealant", "sealant-recipients")
    });
    let path = c.dir.path().join("recipients.txt");
    ok(&c.sealant(&["recipients", "fetch", "-o", path.to_str().unwrap()], None));
    path.to_str().unwrap().to_owned()
}

/// Seals with the real CLI and returns the SealedSecret as JSON, ready to be edited.
fn seal(c: &Cluster, recipients: &[&str], secret: &str) -> Value {
    let mut args = vec!["seal", "--format", "json"];
    for r in recipients {
        args.extend([if r.starts_with("age1") { "-r" } else { "-R" }, r]);
    }
    serde_json::from_str(&ok(&c.sealant(&args, Some(secret)))).expect("sealed JSON")
}

fn apply_json(c: &Cluster, v: &Value) {
    c.apply(&v.to_string()).unwrap();
}

fn wait_reason(c: &Cluster, kind: &str, ns: &str, name: &str, reason: &str) -> String {
    wait_for(&format!("{kind} {ns}/{name} reason {reason}"), T, || {
        let r = ready(&c.get(kind, ns, name)?)?;
        (r.1 == reason).then_some(())?;
        assert_eq!(r.0, "False", "{kind} {ns}/{name}: {reason} must be Ready=False");
        Some(r.2)
    })
}

/// The message tells the user what to do: it names the problem and carries an instruction.
fn assert_says(message: &str, needles: &[&str]) {
    for n in needles {
        assert!(message.contains(n), "`{n}` missing from: {message}");
    }
}

fn assert_alive(controller: &mut Controller) {
    assert!(
        controller.is_running(),
        "the controller died on bad input:\n{}",
        controller.logs()
    );
}

/// A byte of the age payload (after the header) flipped, base64 kept valid.
fn flip_payload_byte(sealed: &str) -> String {
    let mut bytes = STANDARD.decode(sealed).unwrap();
    let header_end = bytes.windows(4).position(|w| w == b"\n---").expect("age header");
    let payload_start = header_end + bytes[header_end + 1..].iter().position(|b| *b == b'\n').unwrap() + 2;
    let at = payload_start + (bytes.len() - payload_start) / 2;
    bytes[at] ^= 0x01;
    STANDARD.encode(bytes)
}

fn truncate(sealed: &str) -> String {
    let bytes = STANDARD.decode(sealed).unwrap();
    STANDARD.encode(&bytes[..bytes.len() - 17])
}

// ------------------------------------------------------------------------------------------ SealedSecrets

#[test]
fn sealed_secrets_bad_input() {
    let c = setup(&["prod", "dev"]);
    let mut controller = c.controller("bad-sealed", &["--no-leader-election"]).unwrap();
    let recipients = fetch_recipients(&c);
    let r = recipients.as_str();

    let good = seal(&c, &[r], &secret_yaml("prod", "good", &[("k", "good-value")]));
    apply_json(&c, &good);
    wait_value(&c, "prod", "good", "k", b"good-value");

    // tampered, truncated and not-base64 values among good ones: no Secret at all, whatever is wrong
    let mixed = seal(
        &c,
        &[r],
        &secret_yaml(
            "prod",
            "mixed",
            &[("a", "value-a"), ("b", "value-b"), ("c", "value-c")],
        ),
    );
    let cases: [(&str, &[&str]); 3] = [
        ("tampered", &["key b", "tampered", "seal the value again"]),
        ("truncated", &["key b", "seal the value again"]),
        ("garbled", &["key b", "not valid base64", "seal the value again"]),
    ];
    for (what, needles) in cases {
        let name = format!("mixed-{what}");
        let mut bad = seal(
            &c,
            &[r],
            &secret_yaml(
                "prod",
                &name,
                &[("a", "value-a"), ("b", "value-b"), ("c", "value-c")],
            ),
        );
        let b = bad["spec"]["encryptedData"]["b"].as_str().unwrap().to_owned();
        bad["spec"]["encryptedData"]["b"] = json!(match what {
            "tampered" => flip_payload_byte(&b),
            "truncated" => truncate(&b),
            _ => "!!not base64!!".to_owned(),
        });
        apply_json(&c, &bad);
        let message = wait_reason(&c, "sealedsecret", "prod", &name, "DecryptFailed");
        assert_says(&message, needles);
    }

    // an existing Secret stays byte-identical when an update brings one damaged value
    apply_json(&c, &mixed);
    wait_value(&c, "prod", "mixed", "c", b"value-c");
    let before = c.get("secret", "prod", "mixed").unwrap();
    let mut update = seal(
        &c,
        &[r],
        &secret_yaml("prod", "mixed", &[("a", "new-a"), ("b", "new-b"), ("c", "new-c")]),
    );
    update["spec"]["encryptedData"]["b"] = json!(flip_payload_byte(
        update["spec"]["encryptedData"]["b"].as_str().unwrap()
    ));
    apply_json(&c, &update);
    wait_reason(&c, "sealedsecret", "prod", "mixed", "DecryptFailed");

    // wrong scope: a value copied to another name, another namespace, another key
    let mut copied_name = good.clone();
    copied_name["metadata"]["name"] = json!("copy");
    let mut copied_ns = good.clone();
    copied_ns["metadata"]["namespace"] = json!("dev");
    let mut copied_key = seal(
        &c,
        &[r],
        &secret_yaml("prod", "keys", &[("k", "one"), ("other", "two")]),
    );
    let k = copied_key["spec"]["encryptedData"]["k"].clone();
    copied_key["spec"]["encryptedData"]["other"] = k;
    for (ss, ns, name, wrong) in [
        (&copied_name, "prod", "copy", "prod/copy"),
        (&copied_ns, "dev", "good", "dev/good"),
        (&copied_key, "prod", "keys", "used at prod/keys key other"),
    ] {
        apply_json(&c, ss);
        let message = wait_reason(&c, "sealedsecret", ns, name, "ScopeMismatch");
        assert_says(
            &message,
            &[wrong, "seal it again for this namespace, name and key"],
        );
        assert!(
            c.get("secret", ns, name).is_none(),
            "{ns}/{name}: a Secret from a copied value"
        );
    }

    // unknown key: sealed to a recipient this cluster does not hold; recipients naming no fingerprint
    let other_key = c.dir.path().join("other.txt");
    let other = ok(&c.sealant(&["keygen", "-o", other_key.to_str().unwrap()], None));
    let other = other.trim();
    apply_json(
        &c,
        &seal(&c, &[other], &secret_yaml("prod", "foreign-key", &[("k", "v")])),
    );
    let message = wait_reason(&c, "sealedsecret", "prod", "foreign-key", "UnknownKey");
    assert_says(
        &message,
        &[
            "is known",
            "restore the key from a backup",
            "sealant recipients fetch",
        ],
    );
    for (name, recipients) in [
        ("no-recipients", json!([])),
        ("bogus-recipients", json!(["0000000000000000"])),
    ] {
        let mut ss = seal(&c, &[r], &secret_yaml("prod", name, &[("k", "v")]));
        ss["spec"]["recipients"] = recipients;
        apply_json(&c, &ss);
        let message = wait_reason(&c, "sealedsecret", "prod", name, "UnknownKey");
        assert!(
            message.contains("sealant seal") || message.contains("restore the key"),
            "{message}"
        );
    }

    // oversized: over Kubernetes' 1 MiB per Secret (the SealedSecret itself still fits the API server)
    let big = "x".repeat(530_000);
    let secret = secret_yaml("prod", "huge", &[("a", &big), ("b", &big)]);
    let path = c.dir.path().join("huge-secret.yaml");
    std::fs::write(&path, &secret).unwrap();
    // the CLI refuses to seal it ...
    let out = c.sealant(&["seal", "-R", r, "-f", path.to_str().unwrap()], None);
    assert!(!out.status.success());
    assert_says(
        &String::from_utf8_lossy(&out.stderr),
        &["1060000 bytes", "1 MiB", "hint: split the values"],
    );
    // ... so it is sealed value by value (--raw), as someone bypassing the check would
    let raw = |key: &str| {
        let file = c.dir.path().join("big.txt");
        std::fs::write(&file, &big).unwrap();
        ok(&c.sealant(
            &[
                "seal",
                "--raw",
                "-R",
                r,
                "-n",
                "prod",
                "--name",
                "huge",
                "--key",
                key,
                "--from-file",
                file.to_str().unwrap(),
            ],
            None,
        ))
        .trim()
        .to_owned()
    };
    let mut huge = good.clone();
    huge["metadata"]["name"] = json!("huge");
    huge["spec"]["encryptedData"] = json!({"a": raw("a"), "b": raw("b")});
    let out = c.kubectl(&["create", "-f", "-"], Some(&huge.to_string()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let message = wait_reason(&c, "sealedsecret", "prod", "huge", "SecretTooLarge");
    assert_says(&message, &["1060000 bytes", "1 MiB", "split the values"]);
    assert!(c.get("secret", "prod", "huge").is_none());

    // missing / empty encryptedData
    for (name, spec) in [
        (
            "empty",
            json!({"encryptedData": {}, "recipients": good["spec"]["recipients"]}),
        ),
        ("missing", json!({"recipients": good["spec"]["recipients"]})),
    ] {
        apply_json(
            &c,
            &json!({"apiVersion": "sealant.dev/v1", "kind": "SealedSecret",
                    "metadata": {"name": name, "namespace": "prod"}, "spec": spec}),
        );
        let message = wait_reason(&c, "sealedsecret", "prod", name, "NoValues");
        assert_says(&message, &["spec.encryptedData", "sealant seal"]);
        assert!(
            c.get("secret", "prod", name).is_none(),
            "{name}: an empty Secret was made"
        );
    }

    // garbage spec.template: refused by the API server's schema, nothing stored
    let mut garbage = good.clone();
    garbage["metadata"]["name"] = json!("garbage");
    garbage["spec"]["template"] = json!("not a template");
    let out = c.kubectl(&["apply", "-f", "-"], Some(&garbage.to_string()));
    assert!(!out.status.success(), "a string spec.template was accepted");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("spec.template"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(c.get("sealedsecret", "prod", "garbage").is_none());
    // ... a template over a key that is not there, and one the API server refuses as a Secret
    let template_cases = [
        (
            "tpl-missing",
            json!({"data": {"url": "{{ .nope }}"}}),
            "TemplateFailed",
            vec!["nope"],
        ),
        (
            "tpl-bad-key",
            json!({"data": {"not/a/key": "x"}}),
            "SecretRejected",
            vec!["not/a/key", "fix spec.template"],
        ),
        (
            "tpl-bad-label",
            json!({"metadata": {"labels": {"bad label": "x"}}}),
            "SecretRejected",
            vec!["bad label", "fix spec.template"],
        ),
        (
            "tpl-tls",
            json!({"type": "kubernetes.io/tls"}),
            "SecretRejected",
            vec!["data[tls.crt]: Required value", "fix spec.template"],
        ),
    ];
    for (name, template, reason, needles) in &template_cases {
        let mut ss = seal(&c, &[r], &secret_yaml("prod", name, &[("k", "v")]));
        ss["spec"]["template"] = template.clone();
        apply_json(&c, &ss);
        let message = wait_reason(&c, "sealedsecret", "prod", name, reason);
        assert_says(&message, needles);
        assert!(
            c.get("secret", "prod", name).is_none(),
            "{name}: a Secret was made"
        );
    }

    // nothing partial, no crash, still serving
    let after = c.get("secret", "prod", "mixed").unwrap();
    assert_eq!(
        after["data"], before["data"],
        "a damaged update changed the Secret"
    );
    assert_eq!(
        after["metadata"]["resourceVersion"], before["metadata"]["resourceVersion"],
        "a damaged update wrote the Secret"
    );
    for what in ["tampered", "truncated", "garbled"] {
        assert!(
            c.get("secret", "prod", &format!("mixed-{what}")).is_none(),
            "{what}: partial Secret"
        );
    }
    assert_alive(&mut controller);
    apply_json(
        &c,
        &seal(&c, &[r], &secret_yaml("prod", "after", &[("k", "still-served")])),
    );
    wait_value(&c, "prod", "after", "k", b"still-served");
    assert_alive(&mut controller);
}

// ----------------------------------------------------------------------------------------------- the CLI

/// `sealant seal` of bad input: non-zero exit, an error with a hint, no output file, and `--merge-into`
/// leaves the file byte-identical. (cli/tests covers the messages of many more inputs on stdout.)
#[test]
fn cli_seal_bad_input_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sealant = |args: &[&str], stdin: &str| -> Output {
        use std::io::Write;
        let mut child = Command::new(sealant_e2e::binary("sealant"))
            .current_dir(dir.path())
            .env_remove("SEALANT_RECIPIENT")
            .env_remove("SEALANT_RECIPIENTS_FILE")
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let recipient = ok(&sealant(&["keygen", "-o", "key.txt"], "")).trim().to_owned();
    let r = recipient.as_str();
    let existing = ok(&sealant(
        &["seal", "-r", r],
        &secret_yaml("prod", "db", &[("a", "A")]),
    ));
    std::fs::write(dir.path().join("db.yaml"), &existing).unwrap();
    let big = "x".repeat(1024 * 1024 + 1);
    let cases: [(&str, String, &[&str]); 5] = [
        (
            "not YAML",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: [db\n".into(),
            &["not valid YAML", "hint:"],
        ),
        (
            "a ConfigMap",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: db, namespace: prod}\ndata: {a: b}\n".into(),
            &["ConfigMap", "not a v1 Secret", "hint: only Secrets can be sealed"],
        ),
        (
            "a Secret without a name",
            "apiVersion: v1\nkind: Secret\nmetadata: {namespace: prod}\nstringData: {a: b}\n".into(),
            &["has no metadata.name", "hint: set metadata.name or pass --name"],
        ),
        (
            "an oversized value",
            secret_yaml("prod", "db", &[("a", &big)]),
            &["1048577 bytes", "1 MiB", "hint: split the values"],
        ),
        (
            "a value that is not base64",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: prod}\ndata: {a: \"%%%\"}\n"
                .into(),
            &["data.a is not valid base64", "hint:"],
        ),
    ];
    for (what, input, needles) in &cases {
        let mut runs = vec![vec!["seal", "-r", r, "-o", "out.yaml"]];
        // (--merge-into takes a missing name from the file it merges into)
        if !what.contains("without a name") {
            runs.push(vec!["seal", "-r", r, "--merge-into", "db.yaml"]);
        }
        for args in runs {
            let out = sealant(&args, input);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{what} {args:?}: sealed");
            assert!(stderr.starts_with("error: "), "{what}: {stderr}");
            assert_says(&stderr, needles);
            assert!(out.stdout.is_empty(), "{what}: printed something");
            assert!(
                !dir.path().join("out.yaml").exists(),
                "{what}: wrote an output file"
            );
            assert_eq!(
                std::fs::read_to_string(dir.path().join("db.yaml")).unwrap(),
                existing,
                "{what}: --merge-into changed the file"
            );
            let names: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            assert_eq!(names.len(), 2, "{what}: left files behind: {names:?}");
        }
    }
}

// ----------------------------------------------------------------------------------------------- GitSync

fn configmap(name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: shop}}\ndata: {{v: \"{value}\"}}\n"
    )
}

#[test]
fn gitsync_bad_manifests_apply_nothing_of_their_revision() {
    let c = setup(&["apps", "shop"]);
    let mut controller = c.controller("bad-git", &["--no-leader-election"]).unwrap();
    let repo = Repo::new();
    repo.write("deploy/a.yaml", &configmap("a", "1"));
    repo.write("deploy/b.yaml", &configmap("b", "1"));
    let first = repo.commit("first");
    c.apply(&format!(
        "apiVersion: sealant.dev/v1\nkind: GitSync\nmetadata: {{name: shop, namespace: apps}}\nspec:\n  url: \
         file://{}\n  ref: {{branch: main}}\n  path: deploy\n  interval: 1s\n  prune: true\n",
        repo.path().display()
    ))
    .unwrap();
    let applied =
        |c: &Cluster| c.get("gitsync", "apps", "shop").unwrap()["status"]["lastAppliedRevision"].clone();
    wait_for("the first revision", T, || (applied(&c) == first).then_some(()));
    let snapshot = |c: &Cluster| {
        ["a", "b"].map(|n| {
            let cm = c.get("configmap", "shop", n).unwrap();
            (cm["data"].clone(), cm["metadata"]["resourceVersion"].clone())
        })
    };
    let before = snapshot(&c);

    // each bad revision also changes a.yaml (v: 2) and deletes b.yaml: none of that may happen
    repo.write("deploy/a.yaml", &configmap("a", "2"));
    repo.remove("deploy/b.yaml");
    let cases: &[(&str, &str, &str, &[&str])] = &[
        (
            "malformed YAML",
            "deploy/bad.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [x\n",
            &["deploy/bad.yaml", "not valid YAML"],
        ),
        (
            "no kind",
            "deploy/bad.yaml",
            "apiVersion: v1\nmetadata: {name: x, namespace: shop}\n",
            &["deploy/bad.yaml", "kind is missing"],
        ),
        (
            "no name",
            "deploy/bad.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {namespace: shop}\n",
            &["deploy/bad.yaml", "metadata.name is missing"],
        ),
        (
            "unknown kind",
            "deploy/bad.yaml",
            "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: x, namespace: shop}\n",
            &["deploy/bad.yaml", "knows no kind Widget"],
        ),
        (
            "a duplicate object",
            "deploy/bad.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: shop}\ndata: {v: \"3\"}\n",
            &["deploy/bad.yaml", "ConfigMap a is also defined in deploy/a.yaml"],
        ),
        (
            "an object the API server refuses",
            "deploy/bad.yaml",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: x, namespace: shop}\ndata: {k: \"%%% not base64\"}\n",
            &["deploy/bad.yaml", "Secret x"],
        ),
        (
            "a kustomization naming a missing file",
            "deploy/kustomization.yaml",
            "resources: [a.yaml, missing.yaml]\n",
            &[
                "deploy/kustomization.yaml",
                "resource `missing.yaml` does not exist",
            ],
        ),
    ];
    for (what, file, text, needles) in cases {
        repo.write(file, text);
        let bad = repo.commit(what);
        let message = wait_for(&format!("{what} to be refused"), T, || {
            let g = c.get("gitsync", "apps", "shop")?;
            let r = ready(&g)?;
            (g["status"]["lastAttemptedRevision"] == *bad && r.0 == "False").then_some(r)
        });
        assert_eq!(message.1, "ValidationFailed", "{what}: {message:?}");
        assert_says(&message.2, needles);
        assert_says(
            &message.2,
            &["nothing of this revision was applied: fix the manifest"],
        );
        assert_eq!(applied(&c), first, "{what}");
        assert_eq!(snapshot(&c), before, "{what}: part of a bad revision was applied");
        repo.remove(file);
    }
    assert_alive(&mut controller);

    // the fix applies the whole revision
    let fixed = repo.commit("fixed");
    wait_for("the fixed revision", T, || (applied(&c) == fixed).then_some(()));
    assert_eq!(c.get("configmap", "shop", "a").unwrap()["data"]["v"], "2");
    wait_for("b to be pruned", T, || {
        c.get("configmap", "shop", "b").is_none().then_some(())
    });
    assert_alive(&mut controller);
}

// ------------------------------------------------------------------------------------------ ExternalSecrets

use support::bao_cli as bao;

fn external_secret(ns: &str, name: &str, store: &str, kind: &str, refs: &[(&str, &str)]) -> String {
    let data: Vec<String> = refs
        .iter()
        .map(|(key, property)| {
            format!("{{secretKey: {property}, remoteRef: {{key: \"{key}\", property: {property}}}}}")
        })
        .collect();
    format!(
        "apiVersion: sealant.dev/v1\nkind: ExternalSecret\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  \
         refreshInterval: 2s\n  secretStoreRef: {{name: {store}, kind: {kind}}}\n  data: [{}]\n",
        data.join(", ")
    )
}

#[test]
fn external_secrets_bad_references() {
    let root = random_id("root-");
    let vault = Server::bao(&root);
    bao(
        &vault,
        &root,
        &[
            "kv",
            "put",
            "-mount=secret",
            "shop/db",
            "password=pw-1",
            "user=app",
        ],
    );
    let scratch = tempfile::tempdir().unwrap();
    let big = scratch.path().join("big.txt");
    std::fs::write(&big, "y".repeat(1024 * 1024 + 1024)).unwrap();
    bao(
        &vault,
        &root,
        &[
            "kv",
            "put",
            "-mount=secret",
            "shop/big",
            &format!("blob=@{}", big.display()),
        ],
    );
    let aws = Server::moto();
    sealant_e2e::moto_call(
        aws.port,
        "CreateSecret",
        r#"{"Name":"app/api","SecretString":"{\"token\":\"tok-1\"}"}"#,
    );
    let c = setup(&["shop", "other"]);
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
    let vault_store = |name: &str, token_secret: &str| {
        format!(
            "apiVersion: sealant.dev/v1\nkind: SecretStore\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  \
             provider:\n    vault:\n      server: {}\n      path: secret\n      version: v2\n      auth: \
             {{tokenSecretRef: {{name: {token_secret}, key: token}}}}\n",
            vault.http_url()
        )
    };
    let aws_store = |name: &str, key: &str| {
        format!(
            "apiVersion: sealant.dev/v1\nkind: SecretStore\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  \
             provider:\n    aws:\n      service: SecretsManager\n      region: us-east-1\n      endpoint: {}\n      \
             auth:\n        secretRef:\n          accessKeyIDSecretRef: {{name: aws-creds, key: {key}}}\n          \
             secretAccessKeySecretRef: {{name: aws-creds, key: secret-key}}\n",
            aws.http_url()
        )
    };
    c.apply(&vault_store("vault", "vault-token")).unwrap();
    c.apply(&vault_store("vault-no-auth", "no-such-secret")).unwrap();
    c.apply(&aws_store("aws", "access-key")).unwrap();
    c.apply(&aws_store("aws-no-key", "no-such-key")).unwrap();
    // a SecretStore in namespace `other` that names the credentials of `shop`
    c.apply(&format!(
        "apiVersion: sealant.dev/v1\nkind: SecretStore\nmetadata: {{name: borrowing, namespace: other}}\nspec:\n  \
         provider:\n    vault:\n      server: {}\n      auth: {{tokenSecretRef: {{name: vault-token, key: token, \
         namespace: shop}}}}\n",
        vault.http_url()
    ))
    .unwrap();
    let mut controller = c.controller("bad-external", &["--no-leader-election"]).unwrap();

    // good ones first (and one whose Secret must survive a bad update)
    c.apply(&external_secret(
        "shop",
        "good",
        "vault",
        "SecretStore",
        &[("shop/db", "password")],
    ))
    .unwrap();
    c.apply(&external_secret(
        "shop",
        "good-aws",
        "aws",
        "SecretStore",
        &[("app/api", "token")],
    ))
    .unwrap();
    c.apply(&external_secret(
        "shop",
        "keep",
        "vault",
        "SecretStore",
        &[("shop/db", "user")],
    ))
    .unwrap();
    wait_value(&c, "shop", "good", "password", b"pw-1");
    wait_value(&c, "shop", "good-aws", "token", b"tok-1");
    wait_value(&c, "shop", "keep", "user", b"app");
    let kept = c.get("secret", "shop", "keep").unwrap();

    // (namespace, name, store, store kind, remote refs, reason, what the message says)
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a [(&'a str, &'a str)],
        &'a str,
        &'a [&'a str],
    );
    let cases: &[Case] = &[
        (
            "shop",
            "no-store",
            "nope",
            "SecretStore",
            &[("shop/db", "password")],
            "StoreNotFound",
            &["SecretStore shop/nope not found", "create it"],
        ),
        (
            "shop",
            "no-cluster-store",
            "nope",
            "ClusterSecretStore",
            &[("shop/db", "password")],
            "StoreNotFound",
            &["ClusterSecretStore nope not found", "create it"],
        ),
        (
            "other",
            "foreign-store",
            "vault",
            "SecretStore",
            &[("shop/db", "password")],
            "StoreNotFound",
            &[
                "SecretStore other/vault not found",
                "only ExternalSecrets in its own namespace",
            ],
        ),
        (
            "shop",
            "no-auth-secret",
            "vault-no-auth",
            "SecretStore",
            &[("shop/db", "password")],
            "InvalidStore",
            &["Secret shop/no-such-secret not found", "create it"],
        ),
        (
            "shop",
            "no-auth-key",
            "aws-no-key",
            "SecretStore",
            &[("app/api", "token")],
            "InvalidStore",
            &["Secret shop/aws-creds has no key no-such-key"],
        ),
        (
            "other",
            "borrowed-credentials",
            "borrowing",
            "SecretStore",
            &[("shop/db", "password")],
            "InvalidStore",
            &[
                "names namespace shop",
                "only from its own namespace other",
                "put the credentials in other, or use a ClusterSecretStore",
            ],
        ),
        (
            "shop",
            "no-remote",
            "vault",
            "SecretStore",
            &[("shop/nope", "password")],
            "RemoteNotFound",
            &[
                "no remote value found (shop/nope)",
                "no Secret was written",
                "create the values",
            ],
        ),
        (
            "shop",
            "no-remote-aws",
            "aws",
            "SecretStore",
            &[("app/nope", "token")],
            "RemoteNotFound",
            &["no remote value found (app/nope)", "no Secret was written"],
        ),
        (
            "shop",
            "one-missing",
            "vault",
            "SecretStore",
            &[("shop/db", "password"), ("shop/nope", "x")],
            "ProviderError",
            &[
                "shop/nope",
                "not found",
                "create it in the provider",
                "left as it was",
            ],
        ),
        (
            "shop",
            "too-big",
            "vault",
            "SecretStore",
            &[("shop/big", "blob")],
            "SecretTooLarge",
            &["1 MiB", "split the values"],
        ),
    ];
    for (ns, name, store, kind, refs, _, _) in cases {
        c.apply(&external_secret(ns, name, store, kind, refs))
            .unwrap_or_else(|e| panic!("{ns}/{name}: {e}"));
    }
    // a bad update of one that synced: a missing remote key next to a good one
    c.apply(&external_secret(
        "shop",
        "keep",
        "vault",
        "SecretStore",
        &[("shop/db", "user"), ("shop/gone", "x")],
    ))
    .unwrap();
    for (ns, name, _, _, _, reason, needles) in cases {
        let message = wait_reason(&c, "externalsecret", ns, name, reason);
        eprintln!("{ns}/{name}: {reason}: {message}");
        assert_says(&message, needles);
        assert!(
            c.get("secret", ns, name).is_none(),
            "{ns}/{name}: a Secret was made"
        );
    }
    let message = wait_reason(&c, "externalsecret", "shop", "keep", "ProviderError");
    assert_says(&message, &["shop/gone", "left as it was"]);
    std::thread::sleep(Duration::from_secs(3));
    let after = c.get("secret", "shop", "keep").unwrap();
    assert_eq!(after["data"], kept["data"]);
    assert_eq!(
        after["metadata"]["resourceVersion"],
        kept["metadata"]["resourceVersion"]
    );

    // no crash; the good ones are still served
    assert_alive(&mut controller);
    bao(
        &vault,
        &root,
        &[
            "kv",
            "put",
            "-mount=secret",
            "shop/db",
            "password=pw-2",
            "user=app",
        ],
    );
    wait_value(&c, "shop", "good", "password", b"pw-2");
    assert_alive(&mut controller);
}
