//! The sealant sealing format.
//!
//! Every Secret value is sealed on its own: the value is wrapped in a versioned *frame* that binds it to a
//! [`Scope`] (strict = namespace/name/key, namespace-wide = namespace, cluster-wide = nothing), and the frame
//! is encrypted with [age](https://age-encryption.org) to one or more X25519 recipients. The result is the
//! base64 (standard alphabet, padded) encoding of the binary age file. See `docs/FORMAT.md` for the bytes.
//!
//! Plaintext is only ever held in [`Plaintext`] (zeroized on drop, redacted in `Debug`), and identities
//! print as `[REDACTED]`.

mod error;
mod frame;
#[doc(hidden)]
pub mod fuzz_support;
mod keys;
mod sealing;
mod x25519;

pub use error::{KeyError, SealError, UnsealError};
pub use frame::{FRAME_MAGIC, FRAME_VERSION, Frame, Scope, Target};
pub use keys::{Fingerprint, Identity, Keyring, Recipient, parse_identities, parse_recipients};
pub use sealing::{Plaintext, Unsealed, seal, unseal};
/// The X25519 function unsealing runs (exposed for the benchmarks, which measure it as the bound).
#[doc(hidden)]
pub use x25519::{DhKey, shared_secret};
