//! The function the `secret_parsers` fuzz target and the regression test (below) both call, so they cannot
//! drift apart. Not part of the API.

use std::sync::OnceLock;

use sealant_crds::SealedSecret;
use sealant_seal::fuzz_support::TEST_IDENTITY;
use sealant_seal::{Fingerprint, Identity, Keyring, Scope, Target};

use crate::Format;
use crate::docs::{join_segments, parse_documents, render, split_segments};
use crate::error::Hinted;
use crate::secret::{
    SecretInput, build_sealed, is_sealed_secret, recorded_scope, sealed_from_doc, sealed_to_doc,
    secret_from_doc,
};

/// Documents of one input looked at (more only slows the fuzzer down).
const MAX_DOCS: usize = 8;
/// Secrets with at most this many values are sealed and opened again (a value costs two X25519 operations).
const MAX_ROUND_TRIP_VALUES: usize = 4;

fn keys() -> &'static (Identity, Keyring) {
    static KEYS: OnceLock<(Identity, Keyring)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let id: Identity = TEST_IDENTITY.parse().expect("the test identity is valid");
        (id.clone(), Keyring::new([id]))
    })
}

/// Every error the user sees carries a hint that says what to do.
fn assert_hinted(e: &anyhow::Error) {
    assert!(
        e.chain().any(|c| c.downcast_ref::<Hinted>().is_some()),
        "error without a hint: {e:#}"
    );
}

/// Reads `data` as the CLI reads its input (a YAML/JSON stream) and as the controller receives a
/// SealedSecret (JSON from the API server). Each document is read as a SealedSecret (written back, it reads
/// back the same) and as a Secret; a Secret that reads is sealed with the CLI's own builder, rendered as YAML
/// and JSON, parsed again, and every value must open to what it was, with the Secret's metadata kept.
/// Panics when a promise is broken.
pub fn secret_parsers(data: &[u8]) {
    let _ = serde_json::from_slice::<SealedSecret>(data);
    let text = String::from_utf8_lossy(data);
    let docs = match parse_documents(&text, "input") {
        Ok(docs) => docs,
        Err(e) => return assert_hinted(&e),
    };
    segments_agree(&text, &docs);
    for (i, doc) in docs.into_iter().take(MAX_DOCS).enumerate() {
        match sealed_from_doc(doc.clone(), "input") {
            Ok(ss) => {
                let _ = recorded_scope(&ss);
                let written = sealed_to_doc(&ss).expect("a SealedSecret serializes");
                let again =
                    sealed_from_doc(written.clone(), "output").expect("written SealedSecret reads back");
                assert_eq!(sealed_to_doc(&again).unwrap(), written);
            }
            Err(e) => assert_hinted(&e),
        }
        match secret_from_doc(doc, i + 1) {
            Ok(secret) => {
                if secret.data.len() <= MAX_ROUND_TRIP_VALUES {
                    round_trip(&secret);
                }
            }
            Err(e) => assert_hinted(&e),
        }
    }
}

/// `sealant reencrypt` rewrites a YAML file document by document (split at `---` lines, so the others stay
/// byte-identical): the SealedSecrets it finds that way must be the ones the file holds, unless it stops
/// with an error (a document that names SealedSecret and does not parse on its own).
fn segments_agree(text: &str, whole: &[serde_json::Value]) {
    let segments = split_segments(text);
    assert_eq!(join_segments(&segments), text, "segments do not join back");
    let mut found = Vec::new();
    for seg in &segments {
        match parse_documents(&seg.body, "segment") {
            Ok(docs) => found.extend(docs.into_iter().filter(is_sealed_secret)),
            Err(_) if seg.body.contains("SealedSecret") => return,
            Err(_) => {}
        }
    }
    let expected: Vec<_> = whole.iter().filter(|d| is_sealed_secret(d)).cloned().collect();
    assert_eq!(
        found, expected,
        "document by document, other SealedSecrets than in the whole file"
    );
}

fn round_trip(secret: &SecretInput) {
    let (id, ring) = keys();
    let name = secret.name.as_deref().filter(|n| !n.is_empty()).unwrap_or("fuzz");
    let namespace = secret
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or("fuzz");
    // Bindings longer than 65535 bytes are refused with an error; nothing else may fail.
    let Ok(ss) = build_sealed(
        secret,
        name,
        Some(namespace),
        Scope::Strict,
        &[id.recipient().clone()],
    ) else {
        assert!(name.len() > 65535 || namespace.len() > 65535);
        return;
    };
    for format in [Format::Yaml, Format::Json] {
        let rendered = render(&[sealed_to_doc(&ss).unwrap()], format).expect("a SealedSecret renders");
        let mut docs = parse_documents(&rendered, "output")
            .unwrap_or_else(|e| panic!("sealant's own {format:?} output does not parse: {e:#}\n{rendered}"));
        assert_eq!(docs.len(), 1, "{rendered}");
        let back = sealed_from_doc(docs.remove(0), "output").unwrap_or_else(|e| {
            panic!("sealant's own {format:?} output is not a SealedSecret: {e:#}\n{rendered}")
        });
        assert_eq!(back.metadata.name.as_deref(), Some(name));
        assert_eq!(back.metadata.namespace.as_deref(), Some(namespace));
        assert_eq!(recorded_scope(&back).unwrap(), Scope::Strict);
        let template = back.spec.template.clone().unwrap_or_default();
        let meta = template.metadata.unwrap_or_default();
        assert_eq!(meta.labels, secret.labels, "labels changed");
        assert_eq!(meta.annotations, secret.annotations, "annotations changed");
        assert_eq!(template.type_, secret.type_);
        assert_eq!(template.immutable, secret.immutable);
        let fingerprints: Vec<Fingerprint> = back.spec.recipients.iter().map(|f| f.as_str().into()).collect();
        assert_eq!(
            back.spec.encrypted_data.keys().collect::<Vec<_>>(),
            secret.data.keys().collect::<Vec<_>>()
        );
        for (key, sealed) in &back.spec.encrypted_data {
            let target = Target { namespace, name, key };
            let opened = ring
                .unseal(&fingerprints, &target, sealed)
                .unwrap_or_else(|e| panic!("key {key} does not open: {e}"));
            assert!(opened.value == secret.data[key], "key {key} changed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every input under `fuzz/regressions/secret_parsers/` (what the fuzzer found, and hand-made tricky
    /// cases) and every seed under `fuzz/corpus/secret_parsers/` goes through the same function as the fuzz
    /// target.
    #[test]
    fn fuzz_regressions() {
        let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        for dir in [
            fuzz.join("regressions/secret_parsers"),
            fuzz.join("corpus/secret_parsers"),
        ] {
            let mut inputs: Vec<_> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .map(|e| e.unwrap().path())
                .collect();
            inputs.sort();
            assert!(inputs.len() >= 2, "too few inputs in {}", dir.display());
            for path in inputs {
                eprintln!("{}", path.display());
                secret_parsers(&std::fs::read(&path).unwrap());
            }
        }
    }
}
