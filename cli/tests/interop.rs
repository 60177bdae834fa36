//! Interoperability with the reference `age` tool: sealant's sealed text is a plain age file (base64) over the
//! documented frame, and age-encrypted frames open with sealant.

mod common;

use std::path::Path;

use common::*;

const AGE: &str = "/usr/bin/age";
const AGE_KEYGEN: &str = "/usr/bin/age-keygen";

/// The reference tools must be installed: a missing tool fails the test instead of skipping it.
fn require_age() {
    for tool in [AGE, AGE_KEYGEN] {
        assert!(
            Path::new(tool).exists(),
            "{tool} not found: the interop tests need the reference age tool; run `apt-get install age`"
        );
    }
}

fn age(sb: &Sandbox, args: &[&str], stdin: &[u8]) -> Out {
    let out = run_program(AGE, sb.root(), args, stdin, &[]);
    assert_eq!(out.code, Some(0), "age {args:?} failed: {}", out.stderr);
    out
}

/// A sealant frame: magic, version 1, scope tag, u16-BE-length-prefixed bound fields, then the value.
fn frame(scope: u8, bound: &[&str], value: &[u8]) -> Vec<u8> {
    let mut f = b"SLNT".to_vec();
    f.push(1);
    f.push(scope);
    for field in bound {
        f.extend_from_slice(&u16::try_from(field.len()).unwrap().to_be_bytes());
        f.extend_from_slice(field.as_bytes());
    }
    f.extend_from_slice(value);
    f
}

/// Splits a frame into (scope tag, bound fields, value), checking magic and version.
fn parse_frame(bytes: &[u8]) -> (u8, Vec<String>, Vec<u8>) {
    assert_eq!(&bytes[..4], b"SLNT", "magic");
    assert_eq!(bytes[4], 1, "version");
    let scope = bytes[5];
    let count = match scope {
        0 => 3,
        1 => 1,
        2 => 0,
        other => panic!("unknown scope tag {other}"),
    };
    let mut rest = &bytes[6..];
    let mut bound = Vec::new();
    for _ in 0..count {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        bound.push(String::from_utf8(rest[2..2 + len].to_vec()).unwrap());
        rest = &rest[2 + len..];
    }
    (scope, bound, rest.to_vec())
}

#[test]
fn sealant_raw_output_decrypts_with_age() {
    require_age();
    let sb = Sandbox::new();
    let r = sb.keygen("key.txt");
    let value = b"p@ss\x00word\xff\n";
    sb.write("value.bin", value);
    let cases: [(&str, &[&str], u8, &[&str]); 3] = [
        (
            "strict",
            &["-n", "prod", "--name", "db", "--key", "password"],
            0,
            &["prod", "db", "password"],
        ),
        ("namespace-wide", &["-n", "prod"], 1, &["prod"]),
        ("cluster-wide", &[], 2, &[]),
    ];
    for (scope, place, tag, bound) in cases {
        let mut args = vec![
            "seal",
            "--raw",
            "-r",
            &r,
            "--scope",
            scope,
            "--from-file",
            "value.bin",
        ];
        args.extend_from_slice(place);
        let sealed = sb.run(&args, "");
        sealed.ok();
        let age_file = unb64(&sealed.stdout());
        assert!(age_file.starts_with(b"age-encryption.org/v1\n"));
        let plain = age(&sb, &["-d", "-i", "key.txt"], &age_file).stdout;
        let (got_tag, got_bound, got_value) = parse_frame(&plain);
        assert_eq!(got_tag, tag, "{scope}");
        assert_eq!(got_bound, bound, "{scope}");
        assert_eq!(got_value, value, "{scope}");
        // The whole frame, byte for byte.
        assert_eq!(plain, frame(tag, bound, value), "{scope}");
    }
}

#[test]
fn sealed_secret_values_decrypt_with_age() {
    require_age();
    let sb = Sandbox::new();
    let r = sb.keygen("key.txt");
    let backup = sb.keygen("backup.txt");
    let out = sb.run(
        &["seal", "-r", &r, "-r", &backup],
        secret_yaml("db", Some("prod"), &[("pw", "from-yaml")]),
    );
    out.ok();
    let value = &encrypted(&docs(&out.stdout())[0])["pw"];
    for id in ["key.txt", "backup.txt"] {
        let plain = age(&sb, &["-d", "-i", id], &unb64(value)).stdout;
        assert_eq!(plain, frame(0, &["prod", "db", "pw"], b"from-yaml"));
    }
}

#[test]
fn age_encrypted_frame_opens_with_sealant() {
    require_age();
    let sb = Sandbox::new();
    let r = sb.keygen("key.txt");
    let value = b"made by age \x01\x02";
    let plain = frame(0, &["prod", "db", "password"], value);
    let encrypted_file = age(&sb, &["-r", &r], &plain).stdout;
    assert!(
        encrypted_file.starts_with(b"age-encryption.org/v1\n"),
        "age wrote armor?"
    );
    let sealed = b64(&encrypted_file);

    let out = sb.run(
        &[
            "unseal",
            "--raw",
            "--identity",
            "key.txt",
            "-n",
            "prod",
            "--name",
            "db",
            "--key",
            "password",
        ],
        &sealed,
    );
    out.ok();
    assert_eq!(out.stdout, value);
    // The frame binds the place: another key is refused.
    sb.run(
        &[
            "unseal",
            "--raw",
            "--identity",
            "key.txt",
            "-n",
            "prod",
            "--name",
            "db",
            "--key",
            "user",
        ],
        &sealed,
    )
    .fails_with_hint()
    .stderr_has(&["strict scope"]);

    // In a SealedSecret, with spec.recipients = the fingerprint sealant records for this recipient.
    let fp = sb.fingerprint(&r);
    let yaml = format!(
        "apiVersion: sealant.dev/v1\nkind: SealedSecret\nmetadata:\n  name: db\n  namespace: prod\n  \
         annotations:\n    sealant.dev/scope: strict\nspec:\n  recipients:\n  - \"{fp}\"\n  encryptedData:\n    \
         password: {sealed}\n"
    );
    sb.write("db.yaml", &yaml);
    let out = sb.run(&["unseal", "--identity", "key.txt", "-f", "db.yaml"], "");
    out.ok();
    let secret = &docs(&out.stdout())[0];
    assert_eq!(secret["kind"], "Secret");
    assert_eq!(secret_data(secret)["password"], value);
}

#[test]
fn age_keygen_identity_works_with_sealant() {
    require_age();
    let sb = Sandbox::new();
    let gen_out = run_program(AGE_KEYGEN, sb.root(), &["-o", "age-key.txt"], b"", &[]);
    assert_eq!(gen_out.code, Some(0), "age-keygen failed: {}", gen_out.stderr);
    let key_text = sb.read("age-key.txt");
    let recipient = key_text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .expect("age-keygen writes a public key comment")
        .to_owned();

    let sealed = sb.run(
        &["seal", "-r", &recipient],
        secret_yaml("db", Some("prod"), &[("pw", "age-keygen-made")]),
    );
    sealed.ok();
    let out = sb.run(&["unseal", "--identity", "age-key.txt"], sealed.stdout());
    out.ok();
    assert_eq!(secret_data(&docs(&out.stdout())[0])["pw"], b"age-keygen-made");

    // A frame age encrypted to it opens with sealant too.
    let enc = age(&sb, &["-r", &recipient], &frame(2, &[], b"cw")).stdout;
    let out = sb.run(&["unseal", "--raw", "--identity", "age-key.txt"], b64(&enc));
    out.ok();
    assert_eq!(out.stdout, b"cw");

    // spec.recipients names it by the same fingerprint as a `sealant keygen` recipient would be.
    let fp = sb.fingerprint(&recipient);
    assert_eq!(fp.len(), 16);
    assert_eq!(
        string_list(&docs(&sealed.stdout())[0]["spec"]["recipients"]),
        vec![fp]
    );
}
