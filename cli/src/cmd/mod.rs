//! The subcommands, and what several of them share: loading identities and opening sealed values.

pub mod cluster_cmds;
pub mod keygen;
pub mod reencrypt;
pub mod seal;
pub mod unseal;

use std::path::PathBuf;

use anyhow::{Result, bail};
use sealant_crds::SealedSecret;
use sealant_seal::{Fingerprint, Keyring, Target, UnsealError, Unsealed, parse_identities};

use crate::error::hinted;
use crate::files::read_file;

/// Loads every identity from the given files.
pub fn load_keyring(paths: &[PathBuf]) -> Result<Keyring> {
    if paths.is_empty() {
        bail!(hinted(
            "no identity file given",
            "pass --identity FILE (the private key, e.g. from `sealant keygen`)"
        ));
    }
    let mut ring = Keyring::default();
    for p in paths {
        let text = read_file(p, "--identity")?;
        let ids = parse_identities(&text).map_err(|e| {
            hinted(
                format!("{}: {e}", p.display()),
                "pass an age identity file (lines starting with AGE-SECRET-KEY-1), not a recipient or a \
                 SealedSecret",
            )
        })?;
        for id in ids {
            ring.insert(id);
        }
    }
    Ok(ring)
}

/// Names the object for messages: `namespace/name`.
pub fn object_name(ss: &SealedSecret) -> String {
    format!(
        "{}/{}",
        ss.metadata.namespace.as_deref().unwrap_or(""),
        ss.metadata.name.as_deref().unwrap_or("")
    )
}

/// Opens one value of a SealedSecret, picking identities by `spec.recipients` (every identity when the
/// SealedSecret does not list them).
pub fn open_value(ring: &Keyring, ss: &SealedSecret, key: &str, sealed: &str) -> Result<Unsealed> {
    let target = Target {
        namespace: ss.metadata.namespace.as_deref().unwrap_or(""),
        name: ss.metadata.name.as_deref().unwrap_or(""),
        key,
    };
    let fps: Vec<Fingerprint> = ss
        .spec
        .recipients
        .iter()
        .map(|f| Fingerprint::from(f.as_str()))
        .collect();
    let result = if fps.is_empty() {
        sealant_seal::unseal(ring.identities(), &target, sealed)
    } else {
        ring.unseal(&fps, &target, sealed)
    };
    result.map_err(|e| explain(e, ring, &format!("{} key {key}", object_name(ss))))
}

/// Turns an unseal error into a message with a suggested fix.
pub fn explain(e: UnsealError, ring: &Keyring, what: &str) -> anyhow::Error {
    let held = || {
        ring.identities()
            .map(|i| i.fingerprint().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let hint = match &e {
        UnsealError::UnknownKey { .. } | UnsealError::NoMatchingIdentity => format!(
            "the identity file holds key(s) {}; pass the identity of one of the keys the value was sealed to",
            held()
        ),
        UnsealError::Tampered | UnsealError::Malformed | UnsealError::Encoding | UnsealError::BadFrame(_) => {
            "the sealed text was changed or cut after sealing: restore it from Git history or seal the value \
             again"
                .to_owned()
        }
        UnsealError::ScopeMismatch { .. } => {
            "a sealed value only opens where its scope allows: seal it again \
             for the new place, or seal with --scope namespace-wide / cluster-wide"
                .to_owned()
        }
    };
    hinted(format!("cannot open {what}: {e}"), hint)
}
