//! Identities (private keys), recipients (public keys) and their fingerprints.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use ring::digest;
use zeroize::Zeroizing;

use crate::error::KeyError;
use crate::x25519::X25519Key;

/// A short, stable name for a recipient: the first 8 bytes of SHA-256 over the recipient's
/// canonical `age1…` string, as 16 lowercase hex digits.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fingerprint(String);

impl Fingerprint {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn of(recipient: &str) -> Self {
        let d = digest::digest(&digest::SHA256, recipient.as_bytes());
        Fingerprint(d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Fingerprint {
    fn from(s: &str) -> Self {
        Fingerprint(s.to_owned())
    }
}

/// An age X25519 public key that values are sealed to.
#[derive(Clone)]
pub struct Recipient {
    inner: age::x25519::Recipient,
    text: String,
}

impl Recipient {
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.text)
    }

    pub(crate) fn age(&self) -> &age::x25519::Recipient {
        &self.inner
    }
}

impl FromStr for Recipient {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let inner = age::x25519::Recipient::from_str(s)
            .map_err(|_| KeyError::InvalidRecipient { value: s.to_owned() })?;
        Ok(Recipient {
            text: inner.to_string(),
            inner,
        })
    }
}

impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Recipient").field(&self.text).finish()
    }
}

impl PartialEq for Recipient {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}
impl Eq for Recipient {}

/// An age X25519 private key. Its `Debug` output is redacted; the key text is only handed out zeroizing.
#[derive(Clone)]
pub struct Identity {
    inner: age::x25519::Identity,
    /// The same secret with its public key precomputed, used to unseal.
    key: X25519Key,
    recipient: Recipient,
}

impl Identity {
    /// A new random identity.
    pub fn generate() -> Self {
        Self::from_age(age::x25519::Identity::generate())
            .expect("a generated age identity encodes as a valid AGE-SECRET-KEY-1 string")
    }

    /// `None` only if age hands out an identity whose text is not a 32-byte Bech32 key (it never does).
    fn from_age(inner: age::x25519::Identity) -> Option<Self> {
        let text = inner.to_string();
        let (_, bytes) = bech32::decode(text.expose_secret()).ok()?;
        let bytes = Zeroizing::new(bytes);
        let mut secret = Zeroizing::new([0u8; 32]);
        if bytes.len() != secret.len() {
            return None;
        }
        secret.copy_from_slice(&bytes);
        let key = X25519Key::new(&secret)?;
        let public = inner.to_public();
        let recipient = Recipient {
            text: public.to_string(),
            inner: public,
        };
        Some(Identity {
            inner,
            key,
            recipient,
        })
    }

    pub fn recipient(&self) -> &Recipient {
        &self.recipient
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.recipient.fingerprint()
    }

    /// The `AGE-SECRET-KEY-1…` text of this identity.
    pub fn to_secret_string(&self) -> Zeroizing<String> {
        Zeroizing::new(self.inner.to_string().expose_secret().to_owned())
    }

    /// The contents of an age identity file for this identity, readable by the reference `age -d -i`.
    pub fn to_identity_file(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(format!("# public key: {}\n", self.recipient));
        out.push_str(&self.to_secret_string());
        out.push('\n');
        out
    }

    pub(crate) fn key(&self) -> &X25519Key {
        &self.key
    }
}

impl FromStr for Identity {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        age::x25519::Identity::from_str(s.trim())
            .ok()
            .and_then(Self::from_age)
            .ok_or(KeyError::InvalidIdentity { line: 1 })
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("recipient", &self.recipient.text)
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

fn content_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

/// Parses an age identity file: one `AGE-SECRET-KEY-1…` per line, `#` comments and blank lines ignored.
pub fn parse_identities(text: &str) -> Result<Vec<Identity>, KeyError> {
    let ids = content_lines(text)
        .map(|(line, l)| {
            age::x25519::Identity::from_str(l)
                .ok()
                .and_then(Identity::from_age)
                .ok_or(KeyError::InvalidIdentity { line })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if ids.is_empty() {
        return Err(KeyError::NoIdentities);
    }
    Ok(ids)
}

/// Parses a recipients file: one `age1…` per line, `#` comments and blank lines ignored.
pub fn parse_recipients(text: &str) -> Result<Vec<Recipient>, KeyError> {
    content_lines(text).map(|(_, l)| l.parse()).collect()
}

/// Identities indexed by fingerprint, so the right key is picked directly from `spec.recipients`.
#[derive(Debug, Default, Clone)]
pub struct Keyring {
    by_fingerprint: BTreeMap<Fingerprint, Identity>,
}

impl Keyring {
    pub fn new(identities: impl IntoIterator<Item = Identity>) -> Self {
        let mut k = Keyring::default();
        for id in identities {
            k.insert(id);
        }
        k
    }

    pub fn insert(&mut self, identity: Identity) {
        self.by_fingerprint.insert(identity.fingerprint(), identity);
    }

    pub fn get(&self, fingerprint: &Fingerprint) -> Option<&Identity> {
        self.by_fingerprint.get(fingerprint)
    }

    pub fn identities(&self) -> impl Iterator<Item = &Identity> {
        self.by_fingerprint.values()
    }

    pub fn len(&self) -> usize {
        self.by_fingerprint.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_fingerprint.is_empty()
    }

    /// The identities among `fingerprints`, in the order given.
    pub fn select<'a>(&'a self, fingerprints: &'a [Fingerprint]) -> impl Iterator<Item = &'a Identity> + 'a {
        self.select_indexed(fingerprints).map(|(_, id)| id)
    }

    /// Like [`Keyring::select`], with each identity's position in `fingerprints`.
    pub(crate) fn select_indexed<'a>(
        &'a self,
        fingerprints: &'a [Fingerprint],
    ) -> impl Iterator<Item = (usize, &'a Identity)> + 'a {
        fingerprints
            .iter()
            .enumerate()
            .filter_map(|(i, f)| self.by_fingerprint.get(f).map(|id| (i, id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_round_trips_and_redacts() {
        let id = Identity::generate();
        let text = id.to_identity_file();
        let back = parse_identities(&text).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].recipient(), id.recipient());
        let dbg = format!("{id:?}");
        assert!(!dbg.contains("AGE-SECRET-KEY"), "{dbg}");
        assert!(dbg.contains(&id.recipient().to_string()));
    }

    #[test]
    fn precomputed_public_key_is_the_recipient() {
        for _ in 0..4 {
            let id = Identity::generate();
            let (_, public) = bech32::decode(&id.recipient().to_string()).unwrap();
            assert_eq!(&public[..], &id.key().public()[..]);
            let back: Identity = id.to_secret_string().parse().unwrap();
            assert_eq!(back.key().public(), id.key().public());
        }
    }

    #[test]
    fn bad_identity_reports_line_without_content() {
        let err = parse_identities("# comment\n\nAGE-SECRET-KEY-1NOTAKEY\n").unwrap_err();
        assert!(err.to_string().contains("line 3"));
        assert!(!err.to_string().contains("NOTAKEY"));
        assert!(matches!(
            parse_identities("# only comments\n"),
            Err(KeyError::NoIdentities)
        ));
    }

    #[test]
    fn recipients_file_and_fingerprints() {
        let a = Identity::generate();
        let b = Identity::generate();
        let text = format!("# cluster a\n{}\n\n  {}  \n", a.recipient(), b.recipient());
        let rs = parse_recipients(&text).unwrap();
        assert_eq!(rs, vec![a.recipient().clone(), b.recipient().clone()]);
        assert_eq!(a.fingerprint().as_str().len(), 16);
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint(), rs[0].fingerprint());
        assert!("age1nope".parse::<Recipient>().is_err());
    }

    #[test]
    fn keyring_selects_by_fingerprint() {
        let a = Identity::generate();
        let b = Identity::generate();
        let ring = Keyring::new([a.clone(), b.clone()]);
        let fps = [Fingerprint::from("0000000000000000"), b.fingerprint()];
        let picked: Vec<_> = ring.select(&fps).collect();
        assert_eq!(picked.len(), 1);
        assert_eq!(picked[0].recipient(), b.recipient());
    }
}
