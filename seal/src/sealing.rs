//! Sealing and unsealing single values.

use std::fmt;
use std::io::{Read, Write};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::error::{SealError, UnsealError};
use crate::frame::{Frame, Scope, Target};
use crate::keys::{Fingerprint, Identity, Keyring, Recipient};
use crate::x25519::Hinted;

/// A decrypted value: zeroized on drop, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Plaintext(Zeroizing<Vec<u8>>);

impl Plaintext {
    pub fn new(bytes: Vec<u8>) -> Self {
        Plaintext(Zeroizing::new(bytes))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Plaintext([REDACTED; {} bytes])", self.0.len())
    }
}

/// The result of unsealing: the scope the value was sealed with, and the value.
#[derive(Debug, Clone)]
pub struct Unsealed {
    pub scope: Scope,
    pub value: Plaintext,
}

/// Seals `value` for `target` under `scope` to every recipient; returns the base64 text of the age file.
pub fn seal(
    recipients: &[Recipient],
    scope: Scope,
    target: &Target<'_>,
    value: &[u8],
) -> Result<String, SealError> {
    if recipients.is_empty() {
        return Err(SealError::NoRecipients);
    }
    let frame = Frame::encode(scope, target, value)?;
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r.age() as &dyn age::Recipient))
            .map_err(|e| SealError::Encrypt(e.to_string()))?;
    let mut out = Vec::with_capacity(frame.len() + 100 + 90 * recipients.len());
    let mut writer = encryptor
        .wrap_output(&mut out)
        .map_err(|e| SealError::Encrypt(e.to_string()))?;
    writer
        .write_all(&frame)
        .map_err(|e| SealError::Encrypt(e.to_string()))?;
    writer.finish().map_err(|e| SealError::Encrypt(e.to_string()))?;
    Ok(STANDARD.encode(out))
}

/// Unseals `sealed` with any of `identities` and checks that it may be used at `target`.
pub fn unseal<'a>(
    identities: impl IntoIterator<Item = &'a Identity>,
    target: &Target<'_>,
    sealed: &str,
) -> Result<Unsealed, UnsealError> {
    let keys: Vec<_> = identities.into_iter().map(|i| i.key().hinted(None)).collect();
    unseal_with(&keys, target, sealed)
}

fn unseal_with(keys: &[Hinted<'_>], target: &Target<'_>, sealed: &str) -> Result<Unsealed, UnsealError> {
    let bytes = STANDARD
        .decode(sealed.trim().as_bytes())
        .map_err(|_| UnsealError::Encoding)?;
    let decryptor = age::Decryptor::new_buffered(&bytes[..]).map_err(map_age_error)?;
    let mut reader = decryptor
        .decrypt(keys.iter().map(|k| k as &dyn age::Identity))
        .map_err(map_age_error)?;
    let mut plain = Zeroizing::new(Vec::with_capacity(bytes.len()));
    reader
        .read_to_end(&mut plain)
        .map_err(|_| UnsealError::Tampered)?;
    let frame = Frame::decode(&plain)?;
    frame.check(target)?;
    Ok(Unsealed {
        scope: frame.scope,
        value: Plaintext(frame.value),
    })
}

fn map_age_error(e: age::DecryptError) -> UnsealError {
    match e {
        age::DecryptError::NoMatchingKeys => UnsealError::NoMatchingIdentity,
        age::DecryptError::InvalidMac | age::DecryptError::DecryptionFailed => UnsealError::Tampered,
        _ => UnsealError::Malformed,
    }
}

impl Keyring {
    /// Unseals with the identity named by `fingerprints` (the object's `spec.recipients`), without trying
    /// every key the keyring holds. The position of a fingerprint is the position of its recipient stanza
    /// (values are sealed to the recipients in that order), so each key tries its own stanza first.
    pub fn unseal(
        &self,
        fingerprints: &[Fingerprint],
        target: &Target<'_>,
        sealed: &str,
    ) -> Result<Unsealed, UnsealError> {
        let keys: Vec<_> = self
            .select_indexed(fingerprints)
            .map(|(i, id)| id.key().hinted(Some(i)))
            .collect();
        if keys.is_empty() {
            let fingerprints = fingerprints
                .iter()
                .map(Fingerprint::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            return Err(UnsealError::UnknownKey { fingerprints });
        }
        unseal_with(&keys, target, sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Target<'static> = Target {
        namespace: "prod",
        name: "db",
        key: "password",
    };

    #[test]
    fn seal_unseal_round_trip_multi_recipient() {
        let a = Identity::generate();
        let b = Identity::generate();
        let sealed = seal(
            &[a.recipient().clone(), b.recipient().clone()],
            Scope::Strict,
            &T,
            b"s3cret",
        )
        .unwrap();
        for id in [&a, &b] {
            let u = unseal([id], &T, &sealed).unwrap();
            assert_eq!(u.value.as_bytes(), b"s3cret");
            assert_eq!(u.scope, Scope::Strict);
        }
    }

    #[test]
    fn wrong_identity_tamper_and_garbage() {
        let a = Identity::generate();
        let other = Identity::generate();
        let sealed = seal(&[a.recipient().clone()], Scope::Strict, &T, b"s3cret").unwrap();
        assert!(matches!(
            unseal([&other], &T, &sealed),
            Err(UnsealError::NoMatchingIdentity)
        ));
        assert!(matches!(
            unseal([&a], &T, "not base64!"),
            Err(UnsealError::Encoding)
        ));
        assert!(matches!(
            unseal([&a], &T, "aGVsbG8="),
            Err(UnsealError::Malformed)
        ));

        let mut raw = STANDARD.decode(&sealed).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        let tampered = STANDARD.encode(&raw);
        assert!(matches!(unseal([&a], &T, &tampered), Err(UnsealError::Tampered)));
    }

    #[test]
    fn scope_is_enforced_after_decryption() {
        let a = Identity::generate();
        let sealed = seal(&[a.recipient().clone()], Scope::Strict, &T, b"s3cret").unwrap();
        let moved = Target {
            namespace: "dev",
            ..T
        };
        assert!(matches!(
            unseal([&a], &moved, &sealed),
            Err(UnsealError::ScopeMismatch { .. })
        ));
    }

    #[test]
    fn keyring_refuses_unknown_fingerprints() {
        let a = Identity::generate();
        let ring = Keyring::new([a.clone()]);
        let sealed = seal(&[a.recipient().clone()], Scope::ClusterWide, &T, b"x").unwrap();
        let err = ring
            .unseal(&[Fingerprint::from("0123456789abcdef")], &T, &sealed)
            .unwrap_err();
        assert!(matches!(err, UnsealError::UnknownKey { .. }));
        assert_eq!(
            ring.unseal(&[a.fingerprint()], &T, &sealed)
                .unwrap()
                .value
                .as_bytes(),
            b"x"
        );
    }

    #[test]
    fn keyring_opens_any_stanza_whatever_the_order_of_fingerprints() {
        let a = Identity::generate();
        let b = Identity::generate();
        let c = Identity::generate();
        let sealed = seal(
            &[
                a.recipient().clone(),
                b.recipient().clone(),
                c.recipient().clone(),
            ],
            Scope::Strict,
            &T,
            b"v",
        )
        .unwrap();
        let (fa, fb, fc) = (a.fingerprint(), b.fingerprint(), c.fingerprint());
        for id in [&a, &b, &c] {
            let ring = Keyring::new([id.clone()]);
            // The right order (the hint points at its stanza), a wrong one (the hint misses), and a lone one.
            for fps in [
                vec![fa.clone(), fb.clone(), fc.clone()],
                vec![fc.clone(), fa.clone(), fb.clone()],
                vec![id.fingerprint()],
            ] {
                let u = ring.unseal(&fps, &T, &sealed).unwrap();
                assert_eq!(u.value.as_bytes(), b"v");
            }
        }
        let stranger = Keyring::new([Identity::generate()]);
        let fps = stranger
            .identities()
            .map(Identity::fingerprint)
            .collect::<Vec<_>>();
        assert!(matches!(
            stranger.unseal(&fps, &T, &sealed),
            Err(UnsealError::NoMatchingIdentity)
        ));
    }

    #[test]
    fn no_recipients_is_an_error() {
        assert!(matches!(
            seal(&[], Scope::Strict, &T, b"x"),
            Err(SealError::NoRecipients)
        ));
    }

    #[test]
    fn plaintext_debug_is_redacted() {
        let p = Plaintext::new(b"hunter2".to_vec());
        assert_eq!(format!("{p:?}"), "Plaintext([REDACTED; 7 bytes])");
    }
}
