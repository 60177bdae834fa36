//! The function the `sealed_value` fuzz target and the regression test (below) both call, so they cannot
//! drift apart. Not part of the API.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::{Fingerprint, Frame, Identity, Keyring, Scope, Target, UnsealError, Unsealed, seal, unseal};

/// A throwaway identity made for fuzzing (with `age-keygen`); it protects nothing. The seeds under
/// `fuzz/corpus/sealed_value/` are sealed to its recipient,
/// `age1ghuga0ekfcdhcwh4lqafq36a4cp4t974z3klvquullp9na9jrc3s2a3etl`.
pub const TEST_IDENTITY: &str = "AGE-SECRET-KEY-130ZJXZ6LX96ZEVAHC9DP4FGRYPNYXK0Y3XASVP6W7MM43Y962PJSEKVRUG";

/// Where the fuzzed values are unsealed (and the round trip seals them for).
pub const TARGET: Target<'static> = Target {
    namespace: "prod",
    name: "db",
    key: "password",
};

fn keys() -> &'static (Identity, Keyring, Vec<Fingerprint>) {
    static KEYS: OnceLock<(Identity, Keyring, Vec<Fingerprint>)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let id: Identity = TEST_IDENTITY.parse().expect("the test identity is valid");
        let fingerprints = vec![id.fingerprint()];
        (id.clone(), Keyring::new([id]), fingerprints)
    })
}

/// What an unseal came to, comparable: the error's variant, or the scope and the value.
fn outcome(
    r: Result<Unsealed, UnsealError>,
) -> Result<(Scope, Vec<u8>), std::mem::Discriminant<UnsealError>> {
    r.map(|u| (u.scope, u.value.as_bytes().to_vec()))
        .map_err(|e| std::mem::discriminant(&e))
}

/// Unseals `text` both ways the project does (every identity: the CLI; by fingerprint: the controller)
/// and checks that they agree.
fn unseal_both(text: &str) {
    let (id, ring, fingerprints) = keys();
    let any = outcome(unseal([id], &TARGET, text));
    let picked = outcome(ring.unseal(fingerprints, &TARGET, text));
    assert_eq!(any, picked, "unseal and Keyring::unseal disagree");
}

/// Runs `data` through the decoders: as sealed text, as the binary age file under it, and as a decrypted
/// frame (decode, scope check, and encode gives the same bytes back); then seals `data` as a value and
/// checks that it unseals to itself. Panics when a promise is broken.
pub fn sealed_value(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        unseal_both(text);
    }
    unseal_both(&STANDARD.encode(data));

    if let Ok(frame) = Frame::decode(data) {
        let _ = frame.check(&TARGET);
        let bound = |i: usize| frame.bound.get(i).map(String::as_str).unwrap_or("");
        let at = Target {
            namespace: bound(0),
            name: bound(1),
            key: bound(2),
        };
        frame.check(&at).expect("a frame opens where it was bound");
        if frame.bound.iter().all(|b| !b.is_empty()) {
            let again = Frame::encode(frame.scope, &at, &frame.value).expect("a decoded frame encodes");
            assert_eq!(&again[..], data, "decode then encode changed the frame");
        }
    }

    let (id, ring, fingerprints) = keys();
    let scope = Scope::ALL[data.len() % Scope::ALL.len()];
    let sealed = seal(&[id.recipient().clone()], scope, &TARGET, data).expect("sealing a value works");
    let opened = ring
        .unseal(fingerprints, &TARGET, &sealed)
        .expect("a sealed value opens");
    assert_eq!(opened.scope, scope);
    assert_eq!(opened.value.as_bytes(), data, "the round trip changed the value");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every input under `fuzz/regressions/sealed_value/` (what the fuzzer found, and hand-made tricky
    /// cases) and every seed under `fuzz/corpus/sealed_value/` goes through the same function as the fuzz
    /// target.
    #[test]
    fn fuzz_regressions() {
        let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        for dir in [
            fuzz.join("regressions/sealed_value"),
            fuzz.join("corpus/sealed_value"),
        ] {
            let mut inputs: Vec<_> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .map(|e| e.unwrap().path())
                .collect();
            inputs.sort();
            assert!(inputs.len() >= 2, "too few inputs in {}", dir.display());
            for path in inputs {
                eprintln!("{}", path.display());
                sealed_value(&std::fs::read(&path).unwrap());
            }
        }
    }

    #[test]
    fn test_identity_matches_its_recipient() {
        let (id, _, _) = keys();
        assert_eq!(
            id.recipient().to_string(),
            "age1ghuga0ekfcdhcwh4lqafq36a4cp4t974z3klvquullp9na9jrc3s2a3etl"
        );
    }
}
