use crate::frame::Scope;

/// Errors reading keys: identities, recipients, identity and recipient files.
///
/// Messages never contain secret key material; an invalid identity is reported by line number only.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("`{value}` is not an age X25519 recipient (expected a public key starting with `age1`)")]
    InvalidRecipient { value: String },
    #[error("line {line} is not an age X25519 identity (expected a line starting with `AGE-SECRET-KEY-1`)")]
    InvalidIdentity { line: usize },
    #[error("no identities found (expected lines starting with `AGE-SECRET-KEY-1`)")]
    NoIdentities,
}

/// Errors sealing a value.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("no recipients given")]
    NoRecipients,
    #[error("{scope} scope needs a {field}, but it is empty")]
    MissingBinding { scope: Scope, field: &'static str },
    #[error("{field} is {len} bytes long; at most 65535 bytes can be bound")]
    BindingTooLong { field: &'static str, len: usize },
    #[error("age encryption failed: {0}")]
    Encrypt(String),
}

/// Errors unsealing a value. None of them carries plaintext.
#[derive(Debug, thiserror::Error)]
pub enum UnsealError {
    #[error("the sealed value is not valid base64")]
    Encoding,
    #[error("the sealed value is not an age file (damaged or truncated)")]
    Malformed,
    #[error("none of the given identities can open the sealed value (it was sealed to other keys)")]
    NoMatchingIdentity,
    #[error("none of the keys the value was sealed to ({fingerprints}) is known")]
    UnknownKey { fingerprints: String },
    #[error("the sealed value was tampered with or damaged (authentication failed)")]
    Tampered,
    #[error("the decrypted value is not a sealant frame: {0}")]
    BadFrame(&'static str),
    #[error("sealed for {sealed_for} ({scope} scope) but used at {used_at}")]
    ScopeMismatch {
        scope: Scope,
        sealed_for: String,
        used_at: String,
    },
}
