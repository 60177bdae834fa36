//! Secret values never leave the Secrets they are meant for (issue #9). Distinctive values are seeded into
//! every path a value travels: SealedSecrets sealed by the real CLI (with a template), ExternalSecrets from
//! OpenBao and moto (with a template), a GitSync of a repository holding a SealedSecret, key rotation and online
//! re-encryption, and failing cases (a tampered value next to good ones, missing remote keys, a provider
//! outage). The controller runs with every log target at `trace`. First each value is found in its Secret (so
//! it really flowed), then it is looked for, raw, base64-encoded at every alignment and JSON-escaped, in every
//! other output: the controller log, all Events, every sealant object, `kubectl describe`, the HTTP endpoints
//! and the output of failing `sealant` commands.

#[path = "../../providers/tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::process::Output;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sealant_e2e::{
    Cluster, git, http_get, moto_call, ok, ready, secret_value, secret_yaml, wait_for, wait_value,
};
use support::{Server, random_id};

const T: Duration = Duration::from_secs(40);

/// A value nobody could produce by accident: a marker, a label and 24 random characters.
fn seeded(label: &str) -> String {
    let r = random_id("");
    format!("leak{label}{}", &r[..24])
}

/// Every form in which `value` could appear in text: raw, JSON-escaped, base64 at each of the three
/// alignments inside a longer encoded string (the stable middle part of each).
fn forms(value: &str) -> Vec<String> {
    let mut out = vec![value.to_owned()];
    let json = serde_json::to_string(value).unwrap();
    out.push(json[1..json.len() - 1].to_owned());
    for pad in 0..3 {
        let encoded = STANDARD.encode(format!("{}{value}", "x".repeat(pad)));
        let skip = if pad == 0 { 0 } else { 4 };
        out.push(encoded[skip..encoded.len() - 4].to_owned());
    }
    out.sort();
    out.dedup();
    out
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

use support::bao_cli as bao;

fn wait_reason(c: &Cluster, kind: &str, ns: &str, name: &str, reason: &str) {
    wait_for(&format!("{kind} {ns}/{name} reason {reason}"), T, || {
        (ready(&c.get(kind, ns, name)?)?.1 == reason).then_some(())
    });
}

/// POST to a local HTTP endpoint; returns the whole response (status line, headers, body).
fn http_post(addr: SocketAddr, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/yaml\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn seeded_values_reach_their_secrets_and_nothing_else() {
    let root = random_id("root-");
    let mut vault = Server::bao(&root);
    let mut aws = Server::moto();
    let c = Cluster::start().expect("devcluster");
    for ns in ["sealant", "prod", "shop", "apps"] {
        c.kubectl_ok(&["create", "namespace", ns]).unwrap();
    }
    // the Service that `sealant verify` and `sealant reencrypt` reach the controller through
    c.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: sealant-controller, namespace: sealant}\nspec:\n  \
         ports: [{name: http, port: 8080, targetPort: 8080}]\n",
    )
    .unwrap();
    let mut controller = c
        .controller_with_env(
            "leaks",
            &["--no-leader-election", "--key-renew-period", "4s"],
            &[("RUST_LOG", "trace")],
        )
        .unwrap();
    wait_for("the recipients ConfigMap", T, || {
        c.get("configmap", "sealant", "sealant-recipients")
    });
    let recipients = c.dir.path().join("recipients.txt");
    ok(&c.sealant(&["recipients", "fetch", "-o", recipients.to_str().unwrap()], None));
    let r = recipients.to_str().unwrap();
    let seal = |secret: &str| ok(&c.sealant(&["seal", "-R", r], Some(secret)));

    // values that must reach a Secret, and where: (value, namespace, Secret, key, expected Secret value)
    let mut flowed: Vec<(String, &str, &str, &str, String)> = Vec::new();
    // values that must reach no Secret at all (they only travel failing paths)
    let mut refused: Vec<String> = Vec::new();

    // SealedSecrets by the CLI, one with a template over the values
    let (a, b) = (seeded("ssa"), seeded("ssb"));
    let sealed = seal(&secret_yaml("prod", "db", &[("a", &a), ("b", &b)]));
    let templated = sealed.replace(
        "spec:\n",
        "spec:\n  template:\n    data:\n      url: \"pg://u:{{ .a }}@db\"\n",
    );
    assert_ne!(templated, sealed);
    c.apply(&templated).unwrap();
    wait_value(&c, "prod", "db", "b", b.as_bytes());
    flowed.push((a.clone(), "prod", "db", "a", a.clone()));
    flowed.push((b.clone(), "prod", "db", "b", b.clone()));
    flowed.push((a.clone(), "prod", "db", "url", format!("pg://u:{a}@db")));

    // a tampered value next to good ones, as an update of a synced SealedSecret and as a new one
    let (m1, m2) = (seeded("mixa"), seeded("mixb"));
    c.apply(&seal(&secret_yaml(
        "prod",
        "mixed",
        &[("good", &m1), ("bad", &m2)],
    )))
    .unwrap();
    wait_value(&c, "prod", "mixed", "bad", m2.as_bytes());
    flowed.push((m1.clone(), "prod", "mixed", "good", m1.clone()));
    flowed.push((m2.clone(), "prod", "mixed", "bad", m2.clone()));
    let (n1, n2) = (seeded("upda"), seeded("updb"));
    let update = seal(&secret_yaml("prod", "mixed", &[("good", &n1), ("bad", &n2)]));
    let ss: serde_json::Value = serde_saphyr::from_str(&update).unwrap();
    let bad_value = ss["spec"]["encryptedData"]["bad"].as_str().unwrap().to_owned();
    let mut bytes = STANDARD.decode(&bad_value).unwrap();
    let last = bytes.len() - 20;
    bytes[last] ^= 0x01;
    let tampered = update.replace(&bad_value, &STANDARD.encode(bytes));
    c.apply(&tampered).unwrap();
    wait_reason(&c, "sealedsecret", "prod", "mixed", "DecryptFailed");
    refused.extend([n1.clone(), n2.clone()]);
    let moved = seal(&secret_yaml("prod", "moved", &[("k", &seeded("mov"))]));
    c.apply(&moved.replace("namespace: prod", "namespace: shop"))
        .unwrap();
    wait_reason(&c, "sealedsecret", "shop", "moved", "ScopeMismatch");
    // a Secret the API server refuses (a template key it does not accept, rendered from a value)
    let rejected = seeded("rej");
    refused.push(rejected.clone());
    c.apply(
        &seal(&secret_yaml("prod", "rejected", &[("k", &rejected)])).replace(
            "spec:\n",
            "spec:\n  template:\n    data:\n      \"not/a/key\": \"{{ .k }}\"\n",
        ),
    )
    .unwrap();
    wait_reason(&c, "sealedsecret", "prod", "rejected", "SecretRejected");

    // ExternalSecrets: OpenBao with a template, moto with dataFrom.extract; the credentials are seeded too
    let vault_pw = seeded("vault");
    bao(
        &vault,
        &root,
        &[
            "kv",
            "put",
            "-mount=secret",
            "shop/db",
            &format!("password={vault_pw}"),
        ],
    );
    let aws_token = seeded("aws");
    let aws_secret_key = seeded("awskey");
    moto_call(
        aws.port,
        "CreateSecret",
        &serde_json::json!({"Name": "app/api", "SecretString": serde_json::json!({"token": aws_token}).to_string()})
            .to_string(),
    );
    // a remote value that is not JSON (and not base64): extracting it fails
    let aws_plain = format!("{}!", seeded("awsplain"));
    moto_call(
        aws.port,
        "CreateSecret",
        &serde_json::json!({"Name": "app/plain", "SecretString": aws_plain}).to_string(),
    );
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
        &format!("--from-literal=secret-key={aws_secret_key}"),
    ])
    .unwrap();
    c.apply(&format!(
        r#"
apiVersion: sealant.dev/v1
kind: SecretStore
metadata: {{name: vault, namespace: shop}}
spec:
  provider:
    vault: {{server: "{vault_url}", path: secret, version: v2, auth: {{tokenSecretRef: {{name: vault-token, key: token}}}}}}
---
apiVersion: sealant.dev/v1
kind: SecretStore
metadata: {{name: aws, namespace: shop}}
spec:
  provider:
    aws:
      service: SecretsManager
      region: us-east-1
      endpoint: "{aws_url}"
      auth:
        secretRef:
          accessKeyIDSecretRef: {{name: aws-creds, key: access-key}}
          secretAccessKeySecretRef: {{name: aws-creds, key: secret-key}}
---
apiVersion: sealant.dev/v1
kind: ExternalSecret
metadata: {{name: from-vault, namespace: shop}}
spec:
  refreshInterval: 2s
  secretStoreRef: {{name: vault}}
  target:
    template:
      mergePolicy: Merge
      data: {{dsn: "pg://app:{{{{ .password }}}}@db"}}
  data: [{{secretKey: password, remoteRef: {{key: shop/db, property: password}}}}]
---
apiVersion: sealant.dev/v1
kind: ExternalSecret
metadata: {{name: from-aws, namespace: shop}}
spec:
  refreshInterval: 2s
  secretStoreRef: {{name: aws}}
  dataFrom: [{{extract: {{key: app/api}}}}]
---
apiVersion: sealant.dev/v1
kind: ExternalSecret
metadata: {{name: half-missing, namespace: shop}}
spec:
  refreshInterval: 2s
  secretStoreRef: {{name: vault}}
  data:
    - {{secretKey: password, remoteRef: {{key: shop/db, property: password}}}}
    - {{secretKey: other, remoteRef: {{key: shop/missing, property: x}}}}
---
apiVersion: sealant.dev/v1
kind: ExternalSecret
metadata: {{name: not-json, namespace: shop}}
spec:
  refreshInterval: 2s
  secretStoreRef: {{name: aws}}
  dataFrom: [{{extract: {{key: app/plain}}}}]
---
apiVersion: sealant.dev/v1
kind: ExternalSecret
metadata: {{name: not-base64, namespace: shop}}
spec:
  refreshInterval: 2s
  secretStoreRef: {{name: aws}}
  data: [{{secretKey: v, remoteRef: {{key: app/plain, decodingStrategy: Base64}}}}]
"#,
        vault_url = vault.http_url(),
        aws_url = aws.http_url()
    ))
    .unwrap();
    wait_value(
        &c,
        "shop",
        "from-vault",
        "dsn",
        format!("pg://app:{vault_pw}@db").as_bytes(),
    );
    wait_value(&c, "shop", "from-aws", "token", aws_token.as_bytes());
    wait_reason(&c, "externalsecret", "shop", "half-missing", "ProviderError");
    wait_reason(&c, "externalsecret", "shop", "not-json", "ExtractFailed");
    wait_reason(&c, "externalsecret", "shop", "not-base64", "ExtractFailed");
    refused.push(aws_plain.clone());
    flowed.push((
        vault_pw.clone(),
        "shop",
        "from-vault",
        "password",
        vault_pw.clone(),
    ));
    flowed.push((
        vault_pw.clone(),
        "shop",
        "from-vault",
        "dsn",
        format!("pg://app:{vault_pw}@db"),
    ));
    flowed.push((aws_token.clone(), "shop", "from-aws", "token", aws_token.clone()));
    flowed.push((root.clone(), "shop", "vault-token", "token", root.clone()));
    flowed.push((
        aws_secret_key.clone(),
        "shop",
        "aws-creds",
        "secret-key",
        aws_secret_key.clone(),
    ));

    // GitSync of a repository holding a SealedSecret
    let git_value = seeded("git");
    let repo = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    std::fs::create_dir_all(repo.path().join("deploy")).unwrap();
    std::fs::write(
        repo.path().join("deploy/db.sealed.yaml"),
        seal(&secret_yaml("apps", "from-git", &[("password", &git_value)])),
    )
    .unwrap();
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "sealed"]);
    c.apply(&format!(
        "apiVersion: sealant.dev/v1\nkind: GitSync\nmetadata: {{name: repo, namespace: apps}}\nspec:\n  url: \
         file://{}\n  ref: {{branch: main}}\n  path: deploy\n  interval: 2s\n",
        repo.path().display()
    ))
    .unwrap();
    wait_value(&c, "apps", "from-git", "password", git_value.as_bytes());
    flowed.push((
        git_value.clone(),
        "apps",
        "from-git",
        "password",
        git_value.clone(),
    ));

    // a plain Secret in Git (the applier carries its values), then a revision broken next to a value
    let plain_value = seeded("plain");
    std::fs::write(
        repo.path().join("deploy/plain.yaml"),
        secret_yaml("apps", "plain", &[("password", &plain_value)]),
    )
    .unwrap();
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "plain"]);
    wait_value(&c, "apps", "plain", "password", plain_value.as_bytes());
    flowed.push((
        plain_value.clone(),
        "apps",
        "plain",
        "password",
        plain_value.clone(),
    ));
    let broken_value = seeded("broken");
    refused.push(broken_value.clone());
    std::fs::write(
        repo.path().join("deploy/plain.yaml"),
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: plain, namespace: apps}}\nstringData:\n  password: \
             {broken_value}\n   other: {broken_value}\n  more: [{broken_value}\n"
        ),
    )
    .unwrap();
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "broken"]);
    wait_reason(&c, "gitsync", "apps", "repo", "ValidationFailed");

    // key rotation: a renewed key, online re-encryption through /v1/rotate, the re-encrypted one applied
    let rot_value = seeded("rot");
    let rot_file = c.dir.path().join("rot.yaml");
    std::fs::write(
        &rot_file,
        seal(&secret_yaml("prod", "rotated", &[("k", &rot_value)])),
    )
    .unwrap();
    let before = std::fs::read_to_string(&rot_file).unwrap();
    wait_for("a renewed key", T, || {
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
    let reencrypt = c.sealant(&["reencrypt", rot_file.to_str().unwrap()], None);
    let mut cli_outputs = vec![text(&reencrypt)];
    ok(&reencrypt);
    let rotated = std::fs::read_to_string(&rot_file).unwrap();
    assert_ne!(rotated, before, "reencrypt changed nothing");
    c.apply(&rotated).unwrap();
    wait_value(&c, "prod", "rotated", "k", rot_value.as_bytes());
    flowed.push((rot_value.clone(), "prod", "rotated", "k", rot_value.clone()));

    // a provider outage after a sync
    aws.stop();
    wait_reason(&c, "externalsecret", "shop", "from-aws", "ProviderError");
    vault.stop();
    wait_reason(&c, "externalsecret", "shop", "from-vault", "ProviderError");

    // failing sealant commands, each fed with seeded values
    let cm_value = seeded("cm");
    refused.push(cm_value.clone());
    let cm = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c, namespace: prod}}\ndata: {{k: \"{cm_value}\"}}\n"
    );
    let tampered_file = c.dir.path().join("tampered.yaml");
    std::fs::write(&tampered_file, &tampered).unwrap();
    let moved_file = c.dir.path().join("moved.yaml");
    std::fs::write(&moved_file, moved.replace("namespace: prod", "namespace: shop")).unwrap();
    let wrong_key = c.dir.path().join("wrong.txt");
    ok(&c.sealant(&["keygen", "-o", wrong_key.to_str().unwrap()], None));
    let bad_key_value = seeded("badkey");
    refused.push(bad_key_value.clone());
    let bad_name = secret_yaml("prod", "Not_A_Name", &[("k", &bad_key_value)]);
    let bad_key = secret_yaml("prod", "s", &[("a/b", &bad_key_value)]);
    let malformed = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: s, namespace: prod}}\nstringData:\n  password: \
         {bad_key_value}\n   other: {bad_key_value}\n"
    );
    for (args, stdin) in [
        (vec!["verify", "-f", tampered_file.to_str().unwrap()], None),
        (vec!["verify", "-f", moved_file.to_str().unwrap()], None),
        (
            vec![
                "unseal",
                "-i",
                wrong_key.to_str().unwrap(),
                "-f",
                tampered_file.to_str().unwrap(),
            ],
            None,
        ),
        (vec!["seal", "-R", r], Some(cm.as_str())),
        (vec!["seal", "-R", r], Some(bad_name.as_str())),
        (vec!["seal", "-R", r], Some(bad_key.as_str())),
        (vec!["seal", "-R", r], Some(malformed.as_str())),
    ] {
        let out = c.sealant(&args, stdin);
        assert!(!out.status.success(), "sealant {args:?} succeeded");
        cli_outputs.push(text(&out));
    }

    // 1. every value flowed into its Secret (and only the refused ones are in no Secret)
    for (value, ns, name, key, want) in &flowed {
        let s = c
            .get("secret", ns, name)
            .unwrap_or_else(|| panic!("Secret {ns}/{name}"));
        let got = secret_value(&s, key).unwrap_or_default();
        assert_eq!(got, want.as_bytes(), "{ns}/{name}/{key}");
        assert!(want.contains(value.as_str()));
    }
    let all_secrets = c.kubectl_ok(&["get", "secrets", "-A", "-o", "json"]).unwrap();
    for value in &refused {
        for form in forms(value) {
            assert!(!all_secrets.contains(&form), "a refused value reached a Secret");
        }
    }

    // 2. ... and appears nowhere else
    std::thread::sleep(Duration::from_secs(1));
    let mut outputs: Vec<(String, String)> = vec![
        ("controller log".into(), controller.logs()),
        (
            "events".into(),
            c.kubectl_ok(&["get", "events.events.k8s.io,events", "-A", "-o", "json"])
                .unwrap(),
        ),
        (
            "sealant objects".into(),
            c.kubectl_ok(&[
                "get",
                "sealedsecrets,externalsecrets,gitsyncs,secretstores,clustersecretstores",
                "-A",
                "-o",
                "json",
            ])
            .unwrap(),
        ),
        (
            "kubectl describe".into(),
            c.kubectl_ok(&[
                "describe",
                "sealedsecrets,externalsecrets,gitsyncs,secretstores",
                "-A",
            ])
            .unwrap(),
        ),
        (
            "kubectl describe secrets".into(),
            c.kubectl_ok(&["describe", "secrets", "-A"]).unwrap(),
        ),
    ];
    for path in ["/metrics", "/healthz", "/readyz", "/v1/recipients"] {
        let (_, body) = http_get(controller.addr, path).unwrap_or_default();
        outputs.push((path.into(), body));
    }
    for (what, file) in [("verify tampered", &tampered), ("verify templated", &templated)] {
        outputs.push((
            format!("/v1/verify {what}"),
            http_post(controller.addr, "/v1/verify", file),
        ));
    }
    outputs.push((
        "/v1/rotate".into(),
        http_post(controller.addr, "/v1/rotate", &templated),
    ));
    for (i, out) in cli_outputs.into_iter().enumerate() {
        outputs.push((format!("sealant command {i}"), out));
    }
    let log_lines = outputs[0].1.lines().count();
    assert!(
        log_lines > 1000,
        "the controller did not log at trace level: {log_lines} lines"
    );
    assert!(outputs[1].1.contains("DecryptFailed"), "no Events were published");
    assert!(outputs[2].1.contains("ProviderError"), "no failure conditions");
    // the controller's own private keys are secrets too
    let keys: serde_json::Value = serde_json::from_str(
        &c.kubectl_ok(&[
            "get",
            "secrets",
            "-n",
            "sealant",
            "-l",
            "sealant.dev/key=identity",
            "-o",
            "json",
        ])
        .unwrap(),
    )
    .unwrap();
    let identities: Vec<String> = keys["items"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|k| k["data"].as_object().unwrap().values())
        .map(|v| String::from_utf8(STANDARD.decode(v.as_str().unwrap()).unwrap()).unwrap())
        .flat_map(|text| {
            text.lines()
                .filter(|l| l.starts_with("AGE-SECRET-KEY-1"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(identities.len() >= 2, "key Secrets: {keys}");
    let values: Vec<&String> = flowed
        .iter()
        .map(|f| &f.0)
        .chain(refused.iter())
        .chain(identities.iter())
        .collect();
    let mut leaks = Vec::new();
    for (what, output) in &outputs {
        for value in &values {
            for form in forms(value) {
                if let Some(at) = output.find(&form) {
                    let start = output[..at].char_indices().rev().nth(200).map_or(0, |(i, _)| i);
                    let end = (at + form.len() + 200).min(output.len());
                    let end = (end..output.len())
                        .find(|i| output.is_char_boundary(*i))
                        .unwrap_or(output.len());
                    leaks.push(format!("{what}: {form:?} in …{}…", &output[start..end]));
                }
            }
        }
    }
    assert!(leaks.is_empty(), "{} leaks:\n{}", leaks.len(), leaks.join("\n\n"));
    assert!(controller.is_running());
}
