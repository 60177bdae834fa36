//! Integration tests for the `sealant` binary: each test runs the built binary in its own temp dir.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;
use serde_json::Value;

const FULL_SECRET: &str = r#"apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: prod
  labels:
    app: shop
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: '{"stringData":{"password":"lastapplied-plain"}}'
    team: payments
  resourceVersion: "4242"
  uid: 0d2c6c1e-aaaa-bbbb-cccc-000000000001
  creationTimestamp: "2024-01-01T00:00:00Z"
  managedFields:
  - manager: kubectl
    operation: Update
type: kubernetes.io/basic-auth
immutable: true
data:
  username: YWRtaW4tdXNlcg==
stringData:
  password: hunter2-plaintext
"#;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Seals `input` (stdin) to `recipient` with extra args; returns the YAML.
#[track_caller]
fn seal(sb: &Sandbox, recipient: &str, input: &str, extra: &[&str]) -> String {
    let mut args = vec!["seal", "-r", recipient];
    args.extend_from_slice(extra);
    let out = sb.run(&args, input);
    out.ok();
    out.stdout()
}

/// Sandbox with one identity `key.txt`; returns (sandbox, recipient).
fn with_key() -> (Sandbox, String) {
    let sb = Sandbox::new();
    let r = sb.keygen("key.txt");
    (sb, r)
}

// ---------------------------------------------------------------------------------------------- keygen

#[test]
fn keygen_writes_private_file_and_refuses_to_overwrite() {
    let sb = Sandbox::new();
    let r1 = sb.keygen("key.txt");
    let p = sb.path("key.txt");
    assert_eq!(mode(&p), 0o600);
    let text1 = sb.read("key.txt");
    assert!(text1.contains(&format!("# public key: {r1}")), "{text1}");
    assert!(
        text1.lines().any(|l| l.starts_with("AGE-SECRET-KEY-1")),
        "{text1}"
    );

    let again = sb.run(&["keygen", "-o", "key.txt"], "");
    again.fails_with_hint().stderr_has(&["already exists", "--force"]);
    assert!(again.stdout.is_empty());
    assert_eq!(sb.read("key.txt"), text1, "refused keygen changed the file");

    // --force replaces it, still 0600, even over a world-readable file.
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    let forced = sb.run(&["keygen", "-o", "key.txt", "--force"], "");
    forced.ok();
    let r2 = forced.stdout().trim().to_owned();
    assert!(r2.starts_with("age1") && r2 != r1);
    let text2 = sb.read("key.txt");
    assert_ne!(text2, text1);
    assert!(text2.contains(&r2));
    assert_eq!(mode(&p), 0o600);
    assert!(temp_leftovers(sb.root()).is_empty());
}

#[test]
fn keygen_without_output_prints_identity_and_public_key() {
    let sb = Sandbox::new();
    let out = sb.run(&["keygen"], "");
    out.ok();
    let identity = out.stdout();
    assert!(
        identity.lines().any(|l| l.starts_with("AGE-SECRET-KEY-1")),
        "{identity}"
    );
    let line = out
        .stderr
        .lines()
        .find(|l| l.starts_with("Public key: age1"))
        .unwrap_or_else(|| panic!("no public key line: {}", out.stderr));
    let recipient = line.trim_start_matches("Public key: ").trim();
    assert!(!out.stderr.contains("AGE-SECRET-KEY"), "secret on stderr");
    // The printed identity opens what is sealed to the printed recipient.
    sb.write("id.txt", &identity);
    let sealed = seal(&sb, recipient, &secret_yaml("s", Some("ns"), &[("k", "v")]), &[]);
    assert_eq!(sb.unseal_data("id.txt", &sealed)[0]["k"], b"v");
}

// ------------------------------------------------------------------------------------------ seal/unseal

#[test]
fn round_trip_data_and_string_data_including_binary() {
    let (sb, r) = with_key();
    let binary: Vec<u8> = (0..=255u8).rev().collect();
    let mut input = secret_yaml_data("app", Some("prod"), &[("blob", &binary), ("empty", b"")]);
    input.push_str("stringData:\n  text: \"multi\\nline ünïcode: #not-a-comment\"\n");
    let sealed = seal(&sb, &r, &input, &[]);
    let data = &sb.unseal_data("key.txt", &sealed)[0];
    assert_eq!(data.len(), 3);
    assert_eq!(data["blob"], binary);
    assert_eq!(data["empty"], b"");
    assert_eq!(data["text"], "multi\nline ünïcode: #not-a-comment".as_bytes());
}

#[test]
fn multi_document_output_keeps_order() {
    let (sb, r) = with_key();
    let names = ["zeta", "alpha", "mid"];
    let input = names
        .iter()
        .map(|n| secret_yaml(n, Some("ns"), &[("v", &format!("value-of-{n}"))]))
        .collect::<Vec<_>>()
        .join("---\n");
    let sealed = seal(&sb, &r, &input, &[]);
    let out = docs(&sealed);
    let got: Vec<&str> = out
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(got, names);
    let opened = sb.unseal_data("key.txt", &sealed);
    assert_eq!(opened.len(), 3);
    for (n, data) in names.iter().zip(&opened) {
        assert_eq!(data["v"], format!("value-of-{n}").as_bytes());
    }
}

#[test]
fn json_input_and_json_output() {
    let (sb, r) = with_key();
    let json_secret = r#"{"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "j", "namespace": "ns"}, "data": {"k": "anNvbi12YWx1ZQ=="}}"#;
    let sealed = seal(&sb, &r, json_secret, &[]);
    assert_eq!(sb.unseal_data("key.txt", &sealed)[0]["k"], b"json-value");

    let one = seal(&sb, &r, json_secret, &["--format", "json"]);
    let v: Value = serde_json::from_str(&one).expect("--format json output is JSON");
    assert_eq!(v["kind"], "SealedSecret");
    assert_eq!(sb.unseal_data("key.txt", &one)[0]["k"], b"json-value");

    let two_input = format!(
        "{}---\n{}",
        secret_yaml("a", Some("ns"), &[("k", "1")]),
        secret_yaml("b", Some("ns"), &[("k", "2")])
    );
    let two = seal(&sb, &r, &two_input, &["--format", "json"]);
    let v: Value = serde_json::from_str(&two).expect("JSON");
    assert_eq!(v["kind"], "List");
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["metadata"]["name"], "a");
    assert_eq!(items[1]["metadata"]["name"], "b");
    assert!(items.iter().all(|i| i["kind"] == "SealedSecret"));
    let opened = sb.unseal_data("key.txt", &two);
    assert_eq!(opened[0]["k"], b"1");
    assert_eq!(opened[1]["k"], b"2");
}

#[test]
fn output_shape_and_server_metadata_stripped() {
    let (sb, r) = with_key();
    let fp = sb.fingerprint(&r);
    let sealed = seal(&sb, &r, FULL_SECRET, &[]);
    let doc = &docs(&sealed)[0];
    assert_eq!(doc["apiVersion"], "sealant.dev/v1");
    assert_eq!(doc["kind"], "SealedSecret");
    assert_eq!(doc["metadata"]["name"], "db");
    assert_eq!(doc["metadata"]["namespace"], "prod");
    assert_eq!(doc["metadata"]["annotations"]["sealant.dev/scope"], "strict");
    assert_eq!(string_list(&doc["spec"]["recipients"]), vec![fp]);
    let keys: Vec<String> = encrypted(doc).into_keys().collect();
    assert_eq!(keys, ["password", "username"]);
    let t = &doc["spec"]["template"];
    assert_eq!(t["type"], "kubernetes.io/basic-auth");
    assert_eq!(t["immutable"], true);
    assert_eq!(t["metadata"]["labels"]["app"], "shop");
    assert_eq!(t["metadata"]["annotations"]["team"], "payments");
    assert!(
        t["metadata"]["annotations"]
            .get("kubectl.kubernetes.io/last-applied-configuration")
            .is_none()
    );
    for field in ["resourceVersion", "uid", "creationTimestamp", "managedFields"] {
        assert!(doc["metadata"].get(field).is_none(), "{field} kept");
        assert!(!sealed.contains(field), "{field} in output:\n{sealed}");
    }
    for plain in [
        "hunter2-plaintext",
        "aHVudGVyMi1wbGFpbnRleHQ", // base64 of the stringData value
        "admin-user",
        "YWRtaW4tdXNlcg",
        "lastapplied-plain",
        "last-applied-configuration",
    ] {
        assert!(!sealed.contains(plain), "{plain} leaked:\n{sealed}");
    }
    let unsealed = sb.unseal("key.txt", &sealed);
    unsealed.ok();
    let secret = &docs(&unsealed.stdout())[0];
    assert_eq!(secret["type"], "kubernetes.io/basic-auth");
    assert_eq!(secret["immutable"], true);
    assert_eq!(secret["metadata"]["labels"]["app"], "shop");
    let data = secret_data(secret);
    assert_eq!(data["password"], b"hunter2-plaintext");
    assert_eq!(data["username"], b"admin-user");
}

// ------------------------------------------------------------------------------------- multi-recipient

fn assert_both_open(sb: &Sandbox, sealed: &str, fps: &[String]) {
    let doc = &docs(sealed)[0];
    let mut got = string_list(&doc["spec"]["recipients"]);
    got.sort();
    let mut want = fps.to_vec();
    want.sort();
    assert_eq!(got, want);
    for id in ["a.txt", "b.txt"] {
        assert_eq!(sb.unseal_data(id, sealed)[0]["k"], b"shared", "{id}");
    }
    sb.unseal("c.txt", sealed)
        .fails_with_hint()
        .stderr_has(&["is known"]);
}

#[test]
fn multi_recipient_flags_file_and_env() {
    let sb = Sandbox::new();
    let a = sb.keygen("a.txt");
    let b = sb.keygen("b.txt");
    sb.keygen("c.txt");
    let fps = vec![sb.fingerprint(&a), sb.fingerprint(&b)];
    let input = secret_yaml("s", Some("ns"), &[("k", "shared")]);

    let out = sb.run(&["seal", "-r", &a, "-r", &b], &input);
    out.ok();
    assert_both_open(&sb, &out.stdout(), &fps);

    sb.write("recipients.txt", format!("# cluster a\n{a}\n\n  # backup\n{b}\n"));
    let out = sb.run(&["seal", "--recipients-file", "recipients.txt"], &input);
    out.ok();
    assert_both_open(&sb, &out.stdout(), &fps);

    let both = format!("{a},{b}");
    let out = sb.run_env(&["seal"], &input, &[("SEALANT_RECIPIENT", &both)]);
    out.ok();
    assert_both_open(&sb, &out.stdout(), &fps);
}

// --------------------------------------------------------------------------------------------- scopes

fn moved(sealed: &str, name: Option<&str>, namespace: Option<&str>) -> String {
    let mut s = sealed.to_owned();
    if let Some(n) = name {
        assert!(s.contains("  name: db\n"), "{s}");
        s = s.replace("  name: db\n", &format!("  name: {n}\n"));
    }
    if let Some(ns) = namespace {
        assert!(s.contains("  namespace: prod\n"), "{s}");
        s = s.replace("  namespace: prod\n", &format!("  namespace: {ns}\n"));
    }
    s
}

#[test]
fn strict_scope_binds_namespace_and_name() {
    let (sb, r) = with_key();
    let sealed = seal(&sb, &r, &secret_yaml("db", Some("prod"), &[("pw", "x")]), &[]);
    assert_eq!(sb.unseal_data("key.txt", &sealed)[0]["pw"], b"x");
    for (name, ns) in [(Some("other"), None), (None, Some("dev"))] {
        sb.unseal("key.txt", &moved(&sealed, name, ns))
            .fails_with_hint()
            .stderr_has(&["strict scope", "prod/db key pw"]);
    }
}

#[test]
fn namespace_wide_survives_rename_not_namespace_change() {
    let (sb, r) = with_key();
    let sealed = seal(
        &sb,
        &r,
        &secret_yaml("db", Some("prod"), &[("pw", "x")]),
        &["--scope", "namespace-wide"],
    );
    assert_eq!(
        docs(&sealed)[0]["metadata"]["annotations"]["sealant.dev/scope"],
        "namespace-wide"
    );
    assert_eq!(
        sb.unseal_data("key.txt", &moved(&sealed, Some("renamed"), None))[0]["pw"],
        b"x"
    );
    sb.unseal("key.txt", &moved(&sealed, None, Some("dev")))
        .fails_with_hint()
        .stderr_has(&["namespace-wide scope"]);
}

#[test]
fn cluster_wide_survives_rename_and_namespace_change() {
    let (sb, r) = with_key();
    let sealed = seal(
        &sb,
        &r,
        &secret_yaml("db", Some("prod"), &[("pw", "x")]),
        &["--scope", "cluster-wide"],
    );
    let elsewhere = moved(&sealed, Some("renamed"), Some("dev"));
    assert_eq!(sb.unseal_data("key.txt", &elsewhere)[0]["pw"], b"x");
}

#[test]
fn unknown_scope_flag_lists_valid_scopes() {
    let (sb, r) = with_key();
    let out = sb.run(
        &["seal", "-r", &r, "--scope", "bogus"],
        secret_yaml("db", Some("prod"), &[("pw", "x")]),
    );
    out.fails()
        .stderr_has(&["bogus", "strict", "namespace-wide", "cluster-wide"]);
    assert!(out.stdout.is_empty());
}

// ------------------------------------------------------------------------------------------- -o FILE

#[test]
fn output_file_is_written_atomically() {
    let (sb, r) = with_key();
    let input = secret_yaml("db", Some("prod"), &[("pw", "x")]);
    let out = sb.run(&["seal", "-r", &r, "-o", "out/db.yaml"], &input);
    // The directory does not exist: a clear error, nothing written.
    out.fails_with_hint();
    sb.mkdir("out");
    let out = sb.run(&["seal", "-r", &r, "-o", "out/db.yaml"], &input);
    out.ok();
    assert!(out.stdout.is_empty(), "-o also printed to stdout");
    let written = sb.read("out/db.yaml");
    assert_eq!(sb.unseal_data("key.txt", &written)[0]["pw"], b"x");
    assert!(temp_leftovers(&sb.path("out")).is_empty());
    assert_eq!(mode(&sb.path("out/db.yaml")), 0o644);
    // Re-sealing over an existing file keeps its permissions.
    std::fs::set_permissions(sb.path("out/db.yaml"), std::fs::Permissions::from_mode(0o640)).unwrap();
    sb.run(&["seal", "-r", &r, "-o", "out/db.yaml"], &input).ok();
    assert_eq!(mode(&sb.path("out/db.yaml")), 0o640);
    let written = sb.read("out/db.yaml");

    // A failing run leaves the existing file alone and no temp file behind.
    let bad = sb.run(
        &["seal", "-r", &r, "-o", "out/db.yaml"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\n",
    );
    bad.fails_with_hint();
    assert_eq!(sb.read("out/db.yaml"), written);
    assert!(temp_leftovers(&sb.path("out")).is_empty());
    assert!(temp_leftovers(sb.root()).is_empty());
}

// -------------------------------------------------------------------------------------- --merge-into

#[test]
fn merge_into_reseals_only_given_keys() {
    let (sb, r) = with_key();
    let original = seal(
        &sb,
        &r,
        &secret_yaml("db", Some("prod"), &[("a", "A0"), ("b", "B0"), ("c", "C0")]),
        &[],
    );
    sb.write("db.yaml", &original);
    let before = encrypted(&docs(&original)[0]);

    let out = sb.run(
        &["seal", "-r", &r, "--merge-into", "db.yaml"],
        secret_yaml("db", Some("prod"), &[("b", "B1"), ("d", "D1")]),
    );
    out.ok();
    let merged = sb.read("db.yaml");
    let after = encrypted(&docs(&merged)[0]);
    assert_eq!(after.len(), 4);
    assert_eq!(after["a"], before["a"], "untouched key re-sealed");
    assert_eq!(after["c"], before["c"], "untouched key re-sealed");
    assert_ne!(after["b"], before["b"]);
    let data = &sb.unseal_data("key.txt", &merged)[0];
    assert_eq!(data["a"], b"A0");
    assert_eq!(data["b"], b"B1");
    assert_eq!(data["c"], b"C0");
    assert_eq!(data["d"], b"D1");
    assert!(temp_leftovers(sb.root()).is_empty());
}

#[test]
fn merge_into_refusals_leave_file_unchanged() {
    let (sb, r) = with_key();
    let other = sb.keygen("other.txt");
    sb.write(
        "db.yaml",
        seal(&sb, &r, &secret_yaml("db", Some("prod"), &[("a", "A0")]), &[]),
    );
    let before = sb.read_bytes("db.yaml");
    let refuse = |args: &[&str], input: String, needles: &[&str]| {
        let out = sb.run(args, input);
        out.fails_with_hint().stderr_has(needles);
        assert_eq!(sb.read_bytes("db.yaml"), before, "{args:?} changed the file");
        assert!(temp_leftovers(sb.root()).is_empty());
    };
    let merge = ["seal", "-r", &r, "--merge-into", "db.yaml"];
    refuse(
        &merge,
        secret_yaml("cache", Some("prod"), &[("b", "x")]),
        &["does not belong", "cache", "prod/db"],
    );
    refuse(&merge, secret_yaml("db", Some("dev"), &[("b", "x")]), &["prod"]);
    refuse(
        &["seal", "-r", &other, "--merge-into", "db.yaml"],
        secret_yaml("db", Some("prod"), &[("b", "x")]),
        &["sealant reencrypt"],
    );
    refuse(
        &["seal", "-r", &r, "-r", &other, "--merge-into", "db.yaml"],
        secret_yaml("db", Some("prod"), &[("b", "x")]),
        &["sealant reencrypt"],
    );
    refuse(
        &[
            "seal",
            "-r",
            &r,
            "--scope",
            "cluster-wide",
            "--merge-into",
            "db.yaml",
        ],
        secret_yaml("db", Some("prod"), &[("b", "x")]),
        &["strict", "cluster-wide"],
    );
}

// ----------------------------------------------------------------------------------------- .sealant.yaml

#[test]
fn config_found_by_walking_up_from_output_path() {
    let sb = Sandbox::new();
    let a = sb.keygen("a.txt");
    sb.write(
        "repo/.sealant.yaml",
        format!("creation_rules:\n  - recipients: [{a}]\n"),
    );
    let cwd = sb.mkdir("elsewhere");
    sb.mkdir("repo/sub/dir");
    let out = sb.run_in(
        &cwd,
        &["seal", "-o", "../repo/sub/dir/x.yaml"],
        secret_yaml("db", Some("prod"), &[("pw", "x")]),
        &[],
    );
    out.ok();
    let written = sb.read("repo/sub/dir/x.yaml");
    assert_eq!(
        string_list(&docs(&written)[0]["spec"]["recipients"]),
        vec![sb.fingerprint(&a)]
    );
    assert_eq!(sb.unseal_data("a.txt", &written)[0]["pw"], b"x");
    // Without -o, stdout output looks at the cwd, which has no config above it.
    sb.run_in(
        &cwd,
        &["seal"],
        secret_yaml("db", Some("prod"), &[("pw", "x")]),
        &[],
    )
    .fails_with_hint()
    .stderr_has(&[".sealant.yaml"]);
}

#[test]
fn config_path_regex_picks_rule_and_recipients_file_is_relative_to_config() {
    let sb = Sandbox::new();
    let prod = sb.keygen("prod.txt");
    let dev = sb.keygen("dev.txt");
    sb.write("repo/keys/dev.txt", format!("# dev cluster\n{dev}\n"));
    sb.write(
        "repo/.sealant.yaml",
        format!(
            "creation_rules:\n  - path_regex: ^clusters/prod/\n    recipients: [{prod}]\n  - path_regex: \
             ^clusters/dev/\n    recipients_file: keys/dev.txt\n    scope: namespace-wide\n"
        ),
    );
    sb.mkdir("repo/clusters/prod");
    sb.mkdir("repo/clusters/dev");
    let input = secret_yaml("db", Some("prod"), &[("pw", "x")]);
    // Run from the sandbox root: recipients_file must resolve against repo/, not the cwd.
    for env in ["prod", "dev"] {
        sb.run(&["seal", "-o", &format!("repo/clusters/{env}/db.yaml")], &input)
            .ok();
    }
    let prod_out = sb.read("repo/clusters/prod/db.yaml");
    let dev_out = sb.read("repo/clusters/dev/db.yaml");
    assert_eq!(sb.unseal_data("prod.txt", &prod_out)[0]["pw"], b"x");
    assert_eq!(sb.unseal_data("dev.txt", &dev_out)[0]["pw"], b"x");
    sb.unseal("dev.txt", &prod_out).fails_with_hint();
    sb.unseal("prod.txt", &dev_out).fails_with_hint();
    let scope = |t: &str| docs(t)[0]["metadata"]["annotations"]["sealant.dev/scope"].clone();
    assert_eq!(scope(&prod_out), "strict");
    assert_eq!(scope(&dev_out), "namespace-wide");

    // A path no rule matches: no recipients.
    sb.mkdir("repo/clusters/stage");
    sb.run(&["seal", "-o", "repo/clusters/stage/db.yaml"], &input)
        .fails_with_hint();
    assert!(!sb.path("repo/clusters/stage/db.yaml").exists());
}

#[test]
fn recipient_flag_overrides_config() {
    let sb = Sandbox::new();
    let a = sb.keygen("a.txt");
    let b = sb.keygen("b.txt");
    sb.write(
        ".sealant.yaml",
        format!("creation_rules:\n  - recipients: [{a}]\n    scope: cluster-wide\n"),
    );
    let input = secret_yaml("db", Some("prod"), &[("pw", "x")]);
    let out = sb.run(&["seal", "-r", &b], &input);
    out.ok();
    let sealed = out.stdout();
    assert_eq!(
        string_list(&docs(&sealed)[0]["spec"]["recipients"]),
        vec![sb.fingerprint(&b)]
    );
    assert_eq!(sb.unseal_data("b.txt", &sealed)[0]["pw"], b"x");
    sb.unseal("a.txt", &sealed).fails_with_hint();
    // Without flags the config applies (stdout output: config found from the cwd), with its scope.
    let out = sb.run(&["seal"], &input);
    out.ok();
    let sealed = out.stdout();
    assert_eq!(
        docs(&sealed)[0]["metadata"]["annotations"]["sealant.dev/scope"],
        "cluster-wide"
    );
    assert_eq!(sb.unseal_data("a.txt", &sealed)[0]["pw"], b"x");
}

#[test]
fn no_recipients_anywhere_is_an_error() {
    let sb = Sandbox::new();
    let out = sb.run(&["seal"], secret_yaml("db", Some("prod"), &[("pw", "x")]));
    out.fails_with_hint()
        .stderr_has(&["no recipients", ".sealant.yaml"]);
    assert!(out.stdout.is_empty());
}

#[test]
fn invalid_config_is_a_clear_error() {
    let sb = Sandbox::new();
    let a = sb.keygen("a.txt");
    let input = secret_yaml("db", Some("prod"), &[("pw", "x")]);
    sb.write(
        ".sealant.yaml",
        format!("creation_rules:\n  - recipientz: [{a}]\n"),
    );
    sb.run(&["seal"], &input)
        .fails_with_hint()
        .stderr_has(&[".sealant.yaml", "recipientz"]);
    sb.write(
        ".sealant.yaml",
        format!("creation_rules:\n  - recipients: [{a}]\n    scope: bogus\n"),
    );
    sb.run(&["seal"], &input)
        .fails_with_hint()
        .stderr_has(&["bogus", "strict, namespace-wide, cluster-wide"]);
    sb.write(
        ".sealant.yaml",
        "creation_rules:\n  - path_regex: '(['\n    recipients: []\n",
    );
    sb.run(&["seal"], &input)
        .fails_with_hint()
        .stderr_has(&["path_regex"]);
}

// ------------------------------------------------------------------------------------------- namespace

#[test]
fn namespace_flag_must_agree_and_fills_missing() {
    let (sb, r) = with_key();
    sb.run(
        &["seal", "-r", &r, "--namespace", "dev"],
        secret_yaml("db", Some("prod"), &[("pw", "x")]),
    )
    .fails_with_hint()
    .stderr_has(&["`prod`", "`dev`"]);

    sb.run(&["seal", "-r", &r], secret_yaml("db", None, &[("pw", "x")]))
        .fails_with_hint()
        .stderr_has(&["no namespace", "--namespace"]);

    let sealed = seal(&sb, &r, &secret_yaml("db", None, &[("pw", "x")]), &["-n", "dev"]);
    assert_eq!(docs(&sealed)[0]["metadata"]["namespace"], "dev");
    assert_eq!(sb.unseal_data("key.txt", &sealed)[0]["pw"], b"x");
    // Agreeing flag and metadata are fine.
    seal(
        &sb,
        &r,
        &secret_yaml("db", Some("dev"), &[("pw", "x")]),
        &["-n", "dev"],
    );
    // Cluster-wide needs no namespace.
    let cw = seal(
        &sb,
        &r,
        &secret_yaml("db", None, &[("pw", "x")]),
        &["--scope", "cluster-wide"],
    );
    assert!(docs(&cw)[0]["metadata"].get("namespace").is_none());
    assert_eq!(sb.unseal_data("key.txt", &cw)[0]["pw"], b"x");
}

// ------------------------------------------------------------------------------------------------- raw

#[test]
fn raw_round_trip_from_stdin_and_file() {
    let (sb, r) = with_key();
    let value: Vec<u8> = b"\x00bin\xffary\r\nwith trailing newline\n".to_vec();
    let place = ["-n", "prod", "--name", "db", "--key", "pw"];
    let mut args = vec!["seal", "--raw", "-r", &r];
    args.extend_from_slice(&place);
    let from_stdin = sb.run(&args, &value);
    from_stdin.ok();
    sb.write("value.bin", &value);
    args.extend_from_slice(&["--from-file", "value.bin"]);
    let from_file = sb.run(&args, "ignored");
    from_file.ok();
    for sealed in [from_stdin.stdout(), from_file.stdout()] {
        assert_eq!(sealed.trim().lines().count(), 1, "{sealed}");
        let mut unseal = vec!["unseal", "--raw", "-i", "key.txt"];
        unseal.extend_from_slice(&place);
        let out = sb.run(&unseal, &sealed);
        out.ok();
        assert_eq!(out.stdout, value);
        // Another key is another place.
        let out = sb.run(
            &[
                "unseal", "--raw", "-i", "key.txt", "-n", "prod", "--name", "db", "--key", "user",
            ],
            &sealed,
        );
        out.fails_with_hint().stderr_has(&["strict scope"]);
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn raw_strict_needs_key() {
    let (sb, r) = with_key();
    let out = sb.run(&["seal", "--raw", "-r", &r, "-n", "prod", "--name", "db"], "v");
    out.fails_with_hint().stderr_has(&["--key"]);
    assert!(out.stdout.is_empty());
    // cluster-wide needs none of them.
    let out = sb.run(&["seal", "--raw", "-r", &r, "--scope", "cluster-wide"], "v");
    out.ok();
    let opened = sb.run(&["unseal", "--raw", "-i", "key.txt"], out.stdout());
    opened.ok();
    assert_eq!(opened.stdout, b"v");
}

// ------------------------------------------------------------------------------------------- reencrypt

/// A data key and its expected value.
type KeyValue<'a> = (&'a str, &'a [u8]);

const CONFIGMAP_PART: &str = "# Application settings (keep this comment)\napiVersion: v1\nkind: ConfigMap\n\
metadata:\n  name: settings   # trailing comment\n  namespace: prod\ndata:\n  # comment inside data\n  \
level: \"debug\"\n  quoted: 'single'\n";

struct Tree {
    sb: Sandbox,
    old_fp: String,
}

/// A repository tree sealed to `old.txt`.
fn reencrypt_tree() -> Tree {
    let sb = Sandbox::new();
    let old = sb.keygen("old.txt");
    sb.keygen("new.txt");
    let old_fp = sb.fingerprint(&old);
    let strict = seal(
        &sb,
        &old,
        &secret_yaml("db", Some("prod"), &[("pw", "p1"), ("user", "u1")]),
        &[],
    );
    sb.write("tree/app.yaml", format!("{CONFIGMAP_PART}---\n{strict}"));
    let nsw = seal(
        &sb,
        &old,
        &secret_yaml("db", Some("prod"), &[("token", "t1")]),
        &["--scope", "namespace-wide", "--format", "json"],
    );
    sb.write("tree/api.json", nsw);
    let cw = seal(
        &sb,
        &old,
        &secret_yaml("shared", None, &[("ca", "c1")]),
        &["--scope", "cluster-wide"],
    );
    sb.write("tree/nested/deeper/shared.yml", cw);
    sb.write("tree/README.md", "Not a manifest; mentions SealedSecret.\n");
    sb.write("tree/nested/only-config.yaml", CONFIGMAP_PART);
    Tree { sb, old_fp }
}

#[test]
fn reencrypt_tree_to_new_recipient() {
    let Tree { sb, old_fp } = reencrypt_tree();
    let new = sb.read("new.txt");
    let new_r = new
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .unwrap()
        .to_owned();
    let new_fp = sb.fingerprint(&new_r);
    let before = snapshot_tree(&sb.path("tree"));

    let out = sb.run(&["reencrypt", "-i", "old.txt", "-r", &new_r, "tree"], "");
    out.ok();
    assert!(out.stdout.is_empty());
    out.stderr_has(&["re-sealed 4 values in 3 SealedSecrets across 3 files"]);
    let after = snapshot_tree(&sb.path("tree"));
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );

    // Untouched files.
    for f in ["README.md", "nested/only-config.yaml"] {
        assert_eq!(
            before[std::path::Path::new(f)],
            after[std::path::Path::new(f)],
            "{f}"
        );
    }
    // The ConfigMap document and its comments are byte-identical.
    let app = sb.read("tree/app.yaml");
    assert!(app.starts_with(&format!("{CONFIGMAP_PART}---\n")), "{app}");

    let expect: [(&str, &[KeyValue]); 3] = [
        ("tree/app.yaml", &[("pw", b"p1"), ("user", b"u1")]),
        ("tree/api.json", &[("token", b"t1")]),
        ("tree/nested/deeper/shared.yml", &[("ca", b"c1")]),
    ];
    for (file, values) in expect {
        let text = sb.read(file);
        let sealed: Vec<Value> = docs(&text)
            .into_iter()
            .filter(|d| d["kind"] == "SealedSecret")
            .collect();
        assert_eq!(sealed.len(), 1, "{file}");
        let recipients = string_list(&sealed[0]["spec"]["recipients"]);
        assert_eq!(recipients, vec![new_fp.clone()], "{file}");
        assert_ne!(recipients, vec![old_fp.clone()]);
        let ss_text = serde_json::to_string(&sealed[0]).unwrap();
        let data = &sb.unseal_data("new.txt", &ss_text)[0];
        for (k, v) in values {
            assert_eq!(data[*k], *v, "{file} {k}");
        }
        sb.unseal("old.txt", &ss_text).fails_with_hint();
    }
    assert!(
        serde_json::from_str::<Value>(&sb.read("tree/api.json")).is_ok(),
        "JSON file no longer JSON"
    );

    // Scopes are kept: the namespace-wide value survives a rename, the strict one does not.
    let api = sb.read("tree/api.json");
    assert_eq!(
        docs(&api)[0]["metadata"]["annotations"]["sealant.dev/scope"],
        "namespace-wide"
    );
    let renamed = api.replace("\"name\": \"db\"", "\"name\": \"renamed\"");
    assert_ne!(renamed, api);
    assert_eq!(sb.unseal_data("new.txt", &renamed)[0]["token"], b"t1");
    let other_ns = api.replace("\"namespace\": \"prod\"", "\"namespace\": \"dev\"");
    assert_ne!(other_ns, api);
    sb.unseal("new.txt", &other_ns)
        .fails_with_hint()
        .stderr_has(&["namespace-wide scope"]);
    let app_renamed = app.replace("  name: db\n", "  name: renamed\n");
    assert_ne!(app_renamed, app);
    sb.unseal("new.txt", &app_renamed[app_renamed.find("---\n").unwrap() + 4..])
        .fails_with_hint()
        .stderr_has(&["strict scope"]);
    let shared = sb.read("tree/nested/deeper/shared.yml");
    let moved = shared.replace("  name: shared\n", "  name: x\n  namespace: anywhere\n");
    assert_ne!(moved, shared);
    assert_eq!(sb.unseal_data("new.txt", &moved)[0]["ca"], b"c1");
    assert!(temp_leftovers(&sb.path("tree")).is_empty());
}

#[test]
fn reencrypt_with_wrong_identity_writes_nothing() {
    let sb = Sandbox::new();
    let old = sb.keygen("old.txt");
    let other = sb.keygen("other.txt");
    let new = sb.keygen("new.txt");
    // a.yaml opens with other.txt, b.yaml does not: the failure comes after a success in memory.
    sb.write(
        "tree/a.yaml",
        seal(
            &sb,
            &old,
            &secret_yaml("a", Some("ns"), &[("k", "1")]),
            &["-r", &other],
        ),
    );
    sb.write(
        "tree/sub/b.yaml",
        format!(
            "{CONFIGMAP_PART}---\n{}",
            seal(&sb, &old, &secret_yaml("b", Some("ns"), &[("k", "2")]), &[])
        ),
    );
    let before = snapshot_tree(sb.root());
    let out = sb.run(&["reencrypt", "-i", "other.txt", "-r", &new, "tree"], "");
    out.fails_with_hint().stderr_has(&["ns/b"]);
    assert_eq!(snapshot_tree(sb.root()), before, "a failed reencrypt wrote files");
}

#[test]
fn reencrypt_stdin_to_stdout() {
    let sb = Sandbox::new();
    let old = sb.keygen("old.txt");
    let new = sb.keygen("new.txt");
    let input = format!(
        "{CONFIGMAP_PART}---\n{}",
        seal(&sb, &old, &secret_yaml("db", Some("prod"), &[("pw", "p")]), &[])
    );
    let out = sb.run(&["reencrypt", "-i", "old.txt", "-r", &new], &input);
    out.ok();
    let text = out.stdout();
    assert!(text.starts_with(&format!("{CONFIGMAP_PART}---\n")), "{text}");
    let ss = &text[text.find("---\n").unwrap() + 4..];
    assert_eq!(sb.unseal_data("new.txt", ss)[0]["pw"], b"p");
    sb.unseal("old.txt", ss).fails_with_hint();
}

/// A sandbox with keys `old.txt` and `new.txt`, the recipient of `new.txt`, and Secret prod/db {pw: p} sealed
/// to `old.txt` as JSON.
fn one_sealed_json() -> (Sandbox, String, String) {
    let sb = Sandbox::new();
    let old = sb.keygen("old.txt");
    let new = sb.keygen("new.txt");
    let sealed = seal(
        &sb,
        &old,
        &secret_yaml("db", Some("prod"), &[("pw", "p")]),
        &["--format", "json"],
    );
    (sb, new, sealed)
}

/// A document may start on its `---` line (the `secret_parsers` fuzz target checks it; reencrypt skipped it).
#[test]
fn reencrypt_finds_a_sealed_secret_on_its_separator_line() {
    let (sb, new, sealed) = one_sealed_json();
    let flow: Value = serde_json::from_str(&sealed).unwrap();
    let input = format!("{CONFIGMAP_PART}--- {flow}\n");
    let out = sb.run(&["reencrypt", "-i", "old.txt", "-r", &new], &input);
    out.ok();
    let text = out.stdout();
    assert!(text.starts_with(&format!("{CONFIGMAP_PART}--- ")), "{text}");
    let ss = &text[text.find("--- ").unwrap() + 4..];
    assert_eq!(sb.unseal_data("new.txt", ss)[0]["pw"], b"p");
    sb.unseal("old.txt", ss).fails_with_hint();
}

/// A kind spelled with escapes is still a SealedSecret (the fast path skipped files without the literal word).
#[test]
fn reencrypt_finds_a_kind_spelled_with_escapes() {
    let (sb, new, sealed) = one_sealed_json();
    let escaped = sealed.replacen("\"SealedSecret\"", "\"Sealed\\u0053ecret\"", 1);
    assert!(!escaped.contains("SealedSecret"), "{escaped}");
    sb.write("tree/escaped.json", &escaped);
    // files with backslashes that hold no SealedSecret, one not even valid JSON: left alone, no error
    sb.write("tree/paths.json", "{\"dir\": \"C:\\\\temp\"}\n");
    sb.write("tree/broken.json", "{\"a\": \"\\q\n");
    sb.write("tree/notes.yaml", "text: \"tab\\there\"\n");
    let out = sb.run(&["reencrypt", "-i", "old.txt", "-r", &new, "tree"], "");
    out.ok();
    out.stderr_has(&["re-sealed 1 values in 1 SealedSecrets across 1 files"]);
    let text = sb.read("tree/escaped.json");
    assert_eq!(sb.unseal_data("new.txt", &text)[0]["pw"], b"p");
    assert_eq!(sb.read("tree/broken.json"), "{\"a\": \"\\q\n");
    sb.unseal("old.txt", &text).fails_with_hint();
}

#[test]
fn reencrypt_without_recipient_uses_config_rule_per_file() {
    let sb = Sandbox::new();
    let old = sb.keygen("old.txt");
    let prod = sb.keygen("prod.txt");
    let dev = sb.keygen("dev.txt");
    sb.write(
        "repo/.sealant.yaml",
        format!(
            "creation_rules:\n  - path_regex: ^clusters/prod/\n    recipients: [{prod}]\n  - path_regex: \
             ^clusters/dev/\n    recipients: [{dev}]\n"
        ),
    );
    for env in ["prod", "dev"] {
        sb.write(
            &format!("repo/clusters/{env}/db.yaml"),
            seal(&sb, &old, &secret_yaml("db", Some(env), &[("pw", env)]), &[]),
        );
    }
    sb.run(&["reencrypt", "-i", "old.txt", "repo/clusters"], "").ok();
    let prod_out = sb.read("repo/clusters/prod/db.yaml");
    let dev_out = sb.read("repo/clusters/dev/db.yaml");
    assert_eq!(sb.unseal_data("prod.txt", &prod_out)[0]["pw"], b"prod");
    assert_eq!(sb.unseal_data("dev.txt", &dev_out)[0]["pw"], b"dev");
    sb.unseal("dev.txt", &prod_out).fails_with_hint();
    sb.unseal("prod.txt", &dev_out).fails_with_hint();
    sb.unseal("old.txt", &dev_out).fails_with_hint();
}

// ------------------------------------------------------------------------------------------- bad input

/// `data` values that are not strings (null, numbers, lists) are refused, not sealed as empty values.
#[test]
fn non_string_data_values_are_refused() {
    let (sb, r) = with_key();
    for value in ["null", "123", "[1]"] {
        let input = format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: s, namespace: ns}}\ndata: {{a: {value}}}\n"
        );
        sb.run(&["seal", "-r", &r], input)
            .fails_with_hint()
            .stderr_has(&["data.a must be a base64 string"]);
    }
}

#[test]
fn bad_seal_input_is_a_hinted_error() {
    let (sb, r) = with_key();
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "malformed YAML",
            "apiVersion: v1\nkind: [Secret\n",
            &["not valid YAML", "fix the syntax"],
        ),
        (
            "nested past the parser's depth limit",
            &format!(
                "apiVersion: v1\nkind: Secret\ndata: {}{}\n",
                "[".repeat(5000),
                "]".repeat(5000)
            ),
            &["not valid YAML", "nested deeper", "flatten it"],
        ),
        (
            "an alias bomb",
            &format!(
                "apiVersion: v1\nkind: Secret\nl0: &l0 [x, x, x, x, x, x, x, x, x, x]\n{}data: {{a: eA==}}\n",
                (1..12)
                    .map(|i| format!("l{i}: &l{i} [{}]\n", vec![format!("*l{}", i - 1); 10].join(", ")))
                    .collect::<String>()
            ),
            &["not valid YAML", "aliases", "write the values out"],
        ),
        (
            "ConfigMap",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: ns}\ndata: {a: b}\n",
            &["ConfigMap", "not a v1 Secret"],
        ),
        (
            "empty data",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: ns}\ndata: {}\n",
            &["has no data"],
        ),
        (
            "bad base64",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: ns}\ndata: {a: \"!!notbase64\"}\n",
            &["data.a is not valid base64"],
        ),
        ("empty stdin", "", &["no documents"]),
        ("only separators", "---\n---\n", &["no documents"]),
        (
            "bad key",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: ns}\nstringData: {\"a/b\": x}\n",
            &["not a valid Secret key"],
        ),
    ];
    for (what, input, needles) in cases {
        let out = sb.run(&["seal", "-r", &r], input);
        out.fails_with_hint().stderr_has(needles);
        assert!(out.stdout.is_empty(), "{what}: printed {}", out.stdout());
    }
}

#[test]
fn bad_unseal_input_is_a_hinted_error() {
    let (sb, r) = with_key();
    sb.keygen("wrong.txt");
    sb.write("recipient.txt", format!("{r}\n"));
    let sealed = seal(
        &sb,
        &r,
        &secret_yaml("db", Some("prod"), &[("pw", "a-long-enough-value")]),
        &[],
    );
    sb.write("sealed.yaml", &sealed);

    // Wrong identity.
    sb.run(&["unseal", "-i", "wrong.txt", "-f", "sealed.yaml"], "")
        .fails_with_hint()
        .stderr_has(&["identity"]);
    // Identity file that holds a recipient.
    let out = sb.run(&["unseal", "-i", "recipient.txt", "-f", "sealed.yaml"], "");
    out.fails_with_hint().stderr_has(&["AGE-SECRET-KEY-1"]);
    // Empty stdin.
    sb.run(&["unseal", "-i", "key.txt"], "")
        .fails_with_hint()
        .stderr_has(&["no documents"]);
    // A Secret instead of a SealedSecret.
    sb.run(
        &["unseal", "-i", "key.txt"],
        secret_yaml("db", Some("prod"), &[("pw", "x")]),
    )
    .fails_with_hint()
    .stderr_has(&["not a sealant.dev/v1 SealedSecret"]);
    // Tampered ciphertext: flip one character in the middle of the value.
    let value = encrypted(&docs(&sealed)[0])["pw"].clone();
    let mid = value.len() / 2;
    let c = value.as_bytes()[mid];
    let flipped = if c == b'A' { 'B' } else { 'A' };
    let tampered_value = format!("{}{flipped}{}", &value[..mid], &value[mid + 1..]);
    let tampered = sealed.replace(&value, &tampered_value);
    assert_ne!(tampered, sealed);
    let out = sb.run(&["unseal", "-i", "key.txt"], &tampered);
    out.fails_with_hint().stderr_has(&["changed or cut"]);
    assert!(!out.stderr.contains("a-long-enough-value"));
    assert!(out.stdout.is_empty());
    // Garbage that is not base64 (quoted: unquoted `!!` starts a YAML tag).
    sb.run(
        &["unseal", "-i", "key.txt"],
        sealed.replace(&value, "\"!!not-base64!!\""),
    )
    .fails_with_hint()
    .stderr_has(&["base64"]);
    // Unknown scope annotation on a SealedSecret given to --merge-into.
    sb.write(
        "bogus-scope.yaml",
        sealed.replace("sealant.dev/scope: strict", "sealant.dev/scope: bogus"),
    );
    sb.run(
        &["seal", "-r", &r, "--merge-into", "bogus-scope.yaml"],
        secret_yaml("db", Some("prod"), &[("pw", "x")]),
    )
    .fails_with_hint()
    .stderr_has(&["bogus", "strict, namespace-wide, cluster-wide"]);
}

// ----------------------------------------------------------------------------------------- completions

#[test]
fn completions_for_each_shell() {
    let sb = Sandbox::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = sb.run(&["completions", shell], "");
        out.ok();
        let text = out.stdout();
        assert!(text.len() > 100, "{shell}: {text}");
        assert!(text.contains("sealant"), "{shell}");
        assert!(text.contains("reencrypt"), "{shell}");
    }
    sb.run(&["completions", "tcsh"], "").fails();
}

/// Rough edges found in review: each is a clear, hinted error rather than a confusing one.
#[test]
fn confusing_inputs_get_specific_hints() {
    let (sb, r) = with_key();
    // YAML 1.1 reads `yes` (and `n`, `on`, numbers) as non-strings, as Kubernetes does
    sb.run(
        &["seal", "-r", &r],
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: yes}\nstringData: {a: b}\n",
    )
    .fails_with_hint()
    .stderr_has(&["metadata.namespace must be a string", "quote it"]);
    sb.run(
        &["seal", "-r", &r],
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: ns}\nstringData: {\"..\": b}\n",
    )
    .fails_with_hint()
    .stderr_has(&["not a valid Secret key"]);
    let dir = sb.mkdir("somedir");
    sb.run(&["seal", "-r", &r, "-f", dir.to_str().unwrap()], "")
        .fails_with_hint()
        .stderr_has(&["is a directory"]);
    sb.run(&["seal", "-r", &r, "-f", "-"], [0xff_u8, 0xfe, 0x00].as_slice())
        .fails_with_hint()
        .stderr_has(&["UTF-8"]);
    sb.run(
        &["seal", "--raw", "-r", &r, "-n", "ns", "--name", "s", "--key", "k"],
        "",
    )
    .fails_with_hint()
    .stderr_has(&["standard input was empty", "--from-file"]);
    sb.run(&["keygen", "-o", "missing-dir/key.txt"], "")
        .fails_with_hint()
        .stderr_has(&["does not exist"]);
    let sealed = sb.run(
        &["seal", "--raw", "-r", &r, "-n", "ns", "--name", "s", "--key", "k"],
        "v",
    );
    sealed.ok();
    sb.run(&["unseal", "--raw", "-i", "key.txt"], sealed.stdout())
        .fails_with_hint()
        .stderr_has(&["pass --namespace, --name and --key"]);
}
