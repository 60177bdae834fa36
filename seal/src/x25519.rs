//! The X25519 side of unsealing, implemented on age's public `Identity` trait.
//!
//! age's own `x25519::Identity` derives its public key from the secret scalar on every stanza it tries (a
//! base-point multiplication, about a third of the cost of the Diffie-Hellman itself). The public key is fixed
//! for an identity, so this one computes it once. Stanza handling follows the age v1 specification
//! (<https://c2sp.org/age#x25519-recipient-stanza>): the same checks, the same HKDF label and salt, and the same
//! answer to the decryptor (`None` when the stanza is not ours, an error only when it is malformed).
//!
//! The Diffie-Hellman itself is AWS-LC's X25519 (through aws-lc-rs, which the workspace already builds for
//! rustls): its x86-64 and Arm assembly runs 2 to 3 times as fast as the portable Montgomery ladder of
//! x25519-dalek that age uses, and unsealing is mostly this one operation. It is the same function (RFC 7748:
//! any 32-byte share, top bit ignored); AWS-LC refuses an all-zero result, as age does. A test checks it against
//! x25519-dalek on real, random (half of them on the twist), low-order and non-canonical shares.
//!
//! It also takes a hint: which stanza to try first. A SealedSecret names its recipients in
//! `spec.recipients`, in the order they were sealed to, which is the order of the stanzas; trying that one
//! first costs one Diffie-Hellman per value however many recipients it has.

use age::DecryptError;
use age_core::format::{FILE_KEY_BYTES, FileKey, Stanza};
use age_core::primitives::{aead_decrypt, hkdf};
use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use std::sync::Arc;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, Zeroizing};

const TAG: &str = "X25519";
const KEY_LABEL: &[u8] = b"age-encryption.org/v1/X25519";
const ENCRYPTED_FILE_KEY_BYTES: usize = FILE_KEY_BYTES + 16;

/// An X25519 private key for [`shared_secret`] (AWS-LC frees it with its memory cleansed).
#[derive(Clone)]
pub struct DhKey(Arc<PrivateKey>);

impl std::fmt::Debug for DhKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DhKey([REDACTED])")
    }
}

impl DhKey {
    /// The key of a 32-byte X25519 secret (clamped by X25519 itself). AWS-LC takes any 32 bytes; `None` would
    /// mean it refused them anyway.
    pub fn new(secret: &[u8; 32]) -> Option<Self> {
        PrivateKey::from_private_key(&agreement::X25519, secret)
            .ok()
            .map(|k| DhKey(Arc::new(k)))
    }
}

/// X25519(key, share), the shared secret of RFC 7748; None when it is all zeros (a low-order share).
pub fn shared_secret(key: &DhKey, share: &[u8; 32]) -> Option<Zeroizing<[u8; 32]>> {
    agreement::agree(
        &key.0,
        UnparsedPublicKey::new(&agreement::X25519, share),
        (),
        |shared| {
            let mut out = Zeroizing::new([0u8; 32]);
            if shared.len() != 32 {
                return Err(());
            }
            out.copy_from_slice(shared);
            Ok(out)
        },
    )
    .ok()
}

/// An X25519 secret key with its public key computed once. The secret is zeroized on drop.
#[derive(Clone)]
pub(crate) struct X25519Key {
    dh: DhKey,
    public: PublicKey,
}

impl X25519Key {
    pub(crate) fn new(secret: &[u8; 32]) -> Option<Self> {
        let dh = DhKey::new(secret)?;
        // StaticSecret zeroizes its copy on drop
        let public = PublicKey::from(&StaticSecret::from(*secret));
        Some(X25519Key { dh, public })
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
        // an all-zero secret means a low-order share: refused, as age refuses it
        let Some(shared) = shared_secret(&self.dh, &epk) else {
            return Some(Err(DecryptError::InvalidHeader));
        };
        let mut salt = [0u8; 64];
        salt[..32].copy_from_slice(&epk);
        salt[32..].copy_from_slice(self.public.as_bytes());
        let mut key = hkdf(&salt, KEY_LABEL, &shared[..]);
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

    fn hex32(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    /// Deterministic pseudo-random 32-byte strings.
    fn bytes(seed: &str, i: u32) -> [u8; 32] {
        let d = ring::digest::digest(&ring::digest::SHA256, format!("{seed}{i}").as_bytes());
        d.as_ref().try_into().unwrap()
    }

    /// x25519-dalek's answer, None for all zeros.
    fn ladder(scalar: &[u8; 32], share: &[u8; 32]) -> Option<[u8; 32]> {
        Some(x25519_dalek::x25519(*scalar, *share)).filter(|s| *s != [0u8; 32])
    }

    fn ours(scalar: &[u8; 32], share: &[u8; 32]) -> Option<[u8; 32]> {
        shared_secret(&DhKey::new(scalar).unwrap(), share).map(|s| *s)
    }

    #[test]
    fn shared_secret_is_x25519_on_the_rfc_7748_vector() {
        let k = hex32("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4");
        let u = hex32("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c");
        let want = hex32("c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552");
        assert_eq!(*shared_secret(&DhKey::new(&k).unwrap(), &u).unwrap(), want);
    }

    #[test]
    fn shared_secret_matches_the_ladder_for_every_kind_of_share() {
        let mut on_curve = 0;
        for i in 0..3000 {
            let k = bytes("scalar", i);
            let mut u = bytes("share", i);
            if i % 3 == 0 {
                // a real public key (always on the curve)
                u = *PublicKey::from(&StaticSecret::from(bytes("peer", i))).as_bytes();
            } else if i % 3 == 1 {
                // stray top bit: X25519 ignores it
                u[31] |= 0x80;
            }
            // a u-coordinate of the curve itself has an Edwards point, one of its twist has none
            if curve25519_dalek::montgomery::MontgomeryPoint(u)
                .to_edwards(0)
                .is_some()
            {
                on_curve += 1;
            }
            assert_eq!(ours(&k, &u), ladder(&k, &u), "share {u:02x?}");
        }
        // both paths were taken: about half of random strings are on the twist
        assert!(
            (1500..2800).contains(&on_curve),
            "{on_curve} of 3000 on the curve"
        );

        // low-order and edge points, non-canonical encodings (u >= p) and u = -1
        let p = hex32("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");
        let add = |mut x: [u8; 32], n: u8| {
            let mut carry = n as u16;
            for b in x.iter_mut() {
                let v = *b as u16 + carry;
                *b = v as u8;
                carry = v >> 8;
            }
            x
        };
        let minus_one = hex32("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");
        let mut edge = vec![
            [0u8; 32],
            add([0u8; 32], 1),
            hex32("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
            hex32("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
            minus_one,
            p,
            add(p, 1),
            add(p, 2),
            [0xff; 32],
        ];
        edge.extend(edge.clone().into_iter().map(|mut u| {
            u[31] ^= 0x80;
            u
        }));
        for u in &edge {
            for i in 0..4 {
                let k = bytes("edge", i);
                assert_eq!(ours(&k, u), ladder(&k, u), "share {u:02x?}");
            }
        }
        // low-order shares give zero, which is refused
        assert_eq!(ours(&bytes("edge", 0), &[0u8; 32]), None);
        assert_eq!(ours(&bytes("edge", 0), &edge[2]), None);
    }

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
