//! The X25519 side of unsealing, implemented on age's public `Identity` trait.
//!
//! age's own `x25519::Identity` derives its public key from the secret scalar on every stanza it tries (a
//! base-point multiplication, about a third of the cost of the Diffie-Hellman itself). The public key is fixed
//! for an identity, so this one computes it once. Stanza handling follows the age v1 specification
//! (<https://c2sp.org/age#x25519-recipient-stanza>): the same checks, the same HKDF label and salt, and the same
//! answer to the decryptor (`None` when the stanza is not ours, an error only when it is malformed).
//!
//! It also takes a hint: which stanza to try first. A SealedSecret names its recipients in
//! `spec.recipients`, in the order they were sealed to, which is the order of the stanzas; trying that one
//! first costs one Diffie-Hellman per value however many recipients it has.

use age::DecryptError;
use age_core::format::{FILE_KEY_BYTES, FileKey, Stanza};
use age_core::primitives::{aead_decrypt, hkdf};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroize;

const TAG: &str = "X25519";
const KEY_LABEL: &[u8] = b"age-encryption.org/v1/X25519";
const ENCRYPTED_FILE_KEY_BYTES: usize = FILE_KEY_BYTES + 16;

/// An X25519 secret key with its public key computed once. The secret is zeroized on drop (x25519-dalek).
#[derive(Clone)]
pub(crate) struct X25519Key {
    secret: StaticSecret,
    public: PublicKey,
}

impl X25519Key {
    pub(crate) fn new(secret: [u8; 32]) -> Self {
        let secret = StaticSecret::from(secret);
        let public = PublicKey::from(&secret);
        X25519Key { secret, public }
    }

    /// The public key (the bytes of the `age1…` recipient).
    #[cfg(test)]
    pub(crate) fn public(&self) -> &[u8; 32] {
        self.public.as_bytes()
    }

    /// This key, trying stanza `first` before the others.
    pub(crate) fn hinted(&self, first: Option<usize>) -> Hinted<'_> {
        Hinted { key: self, first }
    }

    fn unwrap(&self, stanza: &Stanza) -> Option<Result<FileKey, DecryptError>> {
        if stanza.tag != TAG {
            return None;
        }
        let epk = match &stanza.args[..] {
            [arg] => match decode_share(arg) {
                Some(epk) => epk,
                None => return Some(Err(DecryptError::InvalidHeader)),
            },
            _ => return Some(Err(DecryptError::InvalidHeader)),
        };
        let Ok(encrypted): Result<[u8; ENCRYPTED_FILE_KEY_BYTES], _> = stanza.body[..].try_into() else {
            return Some(Err(DecryptError::InvalidHeader));
        };
        let epk = PublicKey::from(epk);
        let shared = self.secret.diffie_hellman(&epk);
        if !shared.was_contributory() {
            return Some(Err(DecryptError::InvalidHeader));
        }
        let mut salt = [0u8; 64];
        salt[..32].copy_from_slice(epk.as_bytes());
        salt[32..].copy_from_slice(self.public.as_bytes());
        let mut key = hkdf(&salt, KEY_LABEL, shared.as_bytes());
        // Not ours (another recipient's stanza) is not an error: the decryptor tries the next one.
        let opened = aead_decrypt(&key, FILE_KEY_BYTES, &encrypted).ok();
        key.zeroize();
        opened.map(|mut plain| {
            Ok(FileKey::init_with_mut(|file_key| {
                file_key.copy_from_slice(&plain);
                plain.zeroize();
            }))
        })
    }
}

/// The ephemeral share: canonical unpadded base64 of exactly 32 bytes.
fn decode_share(arg: &str) -> Option<[u8; 32]> {
    if arg.len() != 43 {
        return None;
    }
    let mut out = [0u8; 33];
    let n = STANDARD_NO_PAD.decode_slice(arg, &mut out).ok()?;
    if n != 32 {
        return None;
    }
    let share: [u8; 32] = out[..32].try_into().ok()?;
    // Non-canonical encodings (stray bits in the last character) are refused, as age does.
    (STANDARD_NO_PAD.encode(share) == arg).then_some(share)
}

/// An [`X25519Key`] with the index of the stanza to try first.
pub(crate) struct Hinted<'a> {
    key: &'a X25519Key,
    first: Option<usize>,
}

impl age::Identity for Hinted<'_> {
    fn unwrap_stanza(&self, stanza: &Stanza) -> Option<Result<FileKey, DecryptError>> {
        self.key.unwrap(stanza)
    }

    fn unwrap_stanzas(&self, stanzas: &[Stanza]) -> Option<Result<FileKey, DecryptError>> {
        let first = self.first.filter(|&i| i < stanzas.len());
        let order = first
            .into_iter()
            .chain((0..stanzas.len()).filter(move |&i| Some(i) != first));
        for i in order {
            if let Some(result) = self.key.unwrap(&stanzas[i]) {
                return Some(result);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_decoding_is_canonical_and_sized() {
        let share = [7u8; 32];
        let text = STANDARD_NO_PAD.encode(share);
        assert_eq!(decode_share(&text), Some(share));
        assert_eq!(decode_share(&text[..42]), None);
        assert_eq!(decode_share(&format!("{text}A")), None);
        // The last character carries 2 spare bits; setting the lowest one encodes the same bytes non-canonically.
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut bytes = text.into_bytes();
        let last = bytes.len() - 1;
        let pos = ALPHABET.iter().position(|&c| c == bytes[last]).unwrap();
        assert_eq!(pos & 3, 0, "spare bits are zero in a canonical encoding");
        bytes[last] = ALPHABET[pos | 1];
        assert_eq!(decode_share(std::str::from_utf8(&bytes).unwrap()), None);
    }
}
