//! Sealing keys: X25519 identities kept in labelled Secrets in the controller namespace.
//!
//! Each key Secret holds one age identity file under `identity.txt`, is labelled `sealant.dev/key: identity`
//! and records when the key was made in the `sealant.dev/created-at` annotation (so a restored backup keeps its
//! age). The newest key is the one new values are sealed to; older keys are kept to open what was sealed
//! before. The store is updated live from a watch on those Secrets, so restored or brought-in keys work
//! without a restart.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sealant_seal::{Fingerprint, Identity, Keyring, Recipient, parse_identities};

pub const KEY_LABEL: &str = "sealant.dev/key";
pub const KEY_LABEL_VALUE: &str = "identity";
pub const CREATED_ANNOTATION: &str = "sealant.dev/created-at";
pub const IDENTITY_FILE_KEY: &str = "identity.txt";
/// The ConfigMap (in the controller namespace) that publishes the recipients to seal to.
pub const RECIPIENTS_CONFIGMAP: &str = "sealant-recipients";
pub const RECIPIENTS_FILE_KEY: &str = "recipients.txt";

/// Why a key Secret could not be loaded. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyLoadError {
    #[error("key Secret {name} has no {IDENTITY_FILE_KEY}")]
    Missing { name: String },
    #[error("key Secret {name}: {IDENTITY_FILE_KEY} is not an age identity file: {reason}")]
    Invalid { name: String, reason: String },
}

/// One identity and when it was made.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    pub identity: Identity,
    pub created: Timestamp,
    pub secret_name: String,
}

/// The name of the Secret that holds `identity`.
pub fn key_secret_name(identity: &Identity) -> String {
    format!("sealant-key-{}", identity.fingerprint())
}

/// The key Secret for a new identity.
pub fn key_secret(identity: &Identity, namespace: &str, created: Timestamp) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(key_secret_name(identity)),
            namespace: Some(namespace.to_owned()),
            labels: Some([(KEY_LABEL.to_owned(), KEY_LABEL_VALUE.to_owned())].into()),
            annotations: Some([(CREATED_ANNOTATION.to_owned(), created.to_string())].into()),
            ..Default::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(
            [(
                IDENTITY_FILE_KEY.to_owned(),
                ByteString(identity.to_identity_file().as_bytes().to_vec()),
            )]
            .into(),
        ),
        ..Default::default()
    }
}

/// The identities of a key Secret. The creation time is the annotation, else the Secret's creationTimestamp.
pub fn keys_from_secret(secret: &Secret) -> Result<Vec<KeyEntry>, KeyLoadError> {
    let name = secret.metadata.name.clone().unwrap_or_default();
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(IDENTITY_FILE_KEY))
        .ok_or_else(|| KeyLoadError::Missing { name: name.clone() })?;
    let text = zeroize::Zeroizing::new(String::from_utf8_lossy(&bytes.0).into_owned());
    let ids = parse_identities(&text).map_err(|e| KeyLoadError::Invalid {
        name: name.clone(),
        reason: e.to_string(),
    })?;
    let created = secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CREATED_ANNOTATION))
        .and_then(|t| t.parse::<Timestamp>().ok())
        .or_else(|| secret.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .unwrap_or(Timestamp::UNIX_EPOCH);
    Ok(ids
        .into_iter()
        .map(|identity| KeyEntry {
            identity,
            created,
            secret_name: name.clone(),
        })
        .collect())
}

/// True when a new key should be made: there is none, or renewal is on and the newest is `period` old.
pub fn renewal_due(newest: Option<Timestamp>, now: Timestamp, period: Option<Duration>) -> bool {
    match (newest, period) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(created), Some(period)) => {
            let age = now.duration_since(created);
            age.is_positive() && age.unsigned_abs() >= period
        }
    }
}

#[derive(Debug, Default)]
struct State {
    entries: BTreeMap<Fingerprint, KeyEntry>,
    keyring: Arc<Keyring>,
}

impl State {
    fn refresh(&mut self) {
        self.keyring = Arc::new(Keyring::new(self.entries.values().map(|e| e.identity.clone())));
    }
}

/// The keys the controller holds, shared between the key watcher, the reconcilers and the endpoints.
#[derive(Debug, Clone, Default)]
pub struct KeyStore {
    state: Arc<RwLock<State>>,
}

impl KeyStore {
    /// Adds (or replaces) the keys of a key Secret.
    pub fn upsert(&self, secret: &Secret) -> Result<usize, KeyLoadError> {
        let entries = keys_from_secret(secret)?;
        let n = entries.len();
        let mut state = self.state.write().expect("key store lock");
        let name = secret.metadata.name.as_deref().unwrap_or_default();
        state.entries.retain(|_, e| e.secret_name != name);
        for e in entries {
            state.entries.insert(e.identity.fingerprint(), e);
        }
        state.refresh();
        Ok(n)
    }

    /// Drops the keys of a deleted key Secret.
    pub fn remove(&self, secret_name: &str) {
        let mut state = self.state.write().expect("key store lock");
        state.entries.retain(|_, e| e.secret_name != secret_name);
        state.refresh();
    }

    /// Replaces everything with the keys of `secrets` (after a relist); returns the Secrets that failed.
    pub fn replace_all<'a>(&self, secrets: impl IntoIterator<Item = &'a Secret>) -> Vec<KeyLoadError> {
        let mut entries = BTreeMap::new();
        let mut errors = Vec::new();
        for s in secrets {
            match keys_from_secret(s) {
                Ok(es) => entries.extend(es.into_iter().map(|e| (e.identity.fingerprint(), e))),
                Err(e) => errors.push(e),
            }
        }
        let mut state = self.state.write().expect("key store lock");
        state.entries = entries;
        state.refresh();
        errors
    }

    /// A snapshot of the keyring, cheap to take per reconcile.
    pub fn keyring(&self) -> Arc<Keyring> {
        self.state.read().expect("key store lock").keyring.clone()
    }

    /// The newest key: the one to seal to.
    pub fn newest(&self) -> Option<(Recipient, Timestamp)> {
        let state = self.state.read().expect("key store lock");
        state
            .entries
            .values()
            .max_by_key(|e| (e.created, e.identity.fingerprint()))
            .map(|e| (e.identity.recipient().clone(), e.created))
    }

    /// Every key, newest first: (fingerprint, recipient, created).
    pub fn list(&self) -> Vec<(Fingerprint, Recipient, Timestamp)> {
        let state = self.state.read().expect("key store lock");
        let mut all: Vec<_> = state
            .entries
            .values()
            .map(|e| {
                (
                    e.identity.fingerprint(),
                    e.identity.recipient().clone(),
                    e.created,
                )
            })
            .collect();
        all.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
        all
    }

    pub fn len(&self) -> usize {
        self.state.read().expect("key store lock").entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The text published in the recipients ConfigMap and at `/v1/recipients`: the recipient to seal to.
    pub fn recipients_file(&self) -> String {
        match self.newest() {
            Some((r, created)) => format!("# sealant recipient {} created {created}\n{r}\n", r.fingerprint()),
            None => String::new(),
        }
    }

    /// The recipients ConfigMap.
    pub fn recipients_configmap(&self, namespace: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(RECIPIENTS_CONFIGMAP.to_owned()),
                namespace: Some(namespace.to_owned()),
                ..Default::default()
            },
            data: Some([(RECIPIENTS_FILE_KEY.to_owned(), self.recipients_file())].into()),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn key_secret_round_trips_without_leaking_in_debug() {
        let id = Identity::generate();
        let s = key_secret(&id, "sealant", ts("2026-01-01T00:00:00Z"));
        let keys = keys_from_secret(&s).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].identity.recipient(), id.recipient());
        assert_eq!(keys[0].created, ts("2026-01-01T00:00:00Z"));
        assert!(!format!("{:?}", keys[0]).contains("AGE-SECRET-KEY"));
        let mut broken = s.clone();
        broken
            .data
            .as_mut()
            .unwrap()
            .insert(IDENTITY_FILE_KEY.into(), ByteString(b"junk".to_vec()));
        assert!(matches!(
            keys_from_secret(&broken),
            Err(KeyLoadError::Invalid { .. })
        ));
        broken.data = None;
        assert!(matches!(
            keys_from_secret(&broken),
            Err(KeyLoadError::Missing { .. })
        ));
    }

    #[test]
    fn renewal_schedule() {
        let day = Duration::from_secs(86_400);
        let now = ts("2026-02-01T00:00:00Z");
        assert!(renewal_due(None, now, None));
        assert!(!renewal_due(Some(ts("2025-01-01T00:00:00Z")), now, None));
        assert!(renewal_due(Some(ts("2026-01-01T00:00:00Z")), now, Some(30 * day)));
        assert!(!renewal_due(
            Some(ts("2026-01-15T00:00:00Z")),
            now,
            Some(30 * day)
        ));
        assert!(
            !renewal_due(Some(ts("2026-03-01T00:00:00Z")), now, Some(30 * day)),
            "key from the future"
        );
    }

    #[test]
    fn store_tracks_secrets_and_newest() {
        let store = KeyStore::default();
        let old = Identity::generate();
        let new = Identity::generate();
        store
            .upsert(&key_secret(&old, "ns", ts("2026-01-01T00:00:00Z")))
            .unwrap();
        store
            .upsert(&key_secret(&new, "ns", ts("2026-02-01T00:00:00Z")))
            .unwrap();
        assert_eq!(store.len(), 2);
        assert_eq!(store.newest().unwrap().0, *new.recipient());
        assert!(store.keyring().get(&old.fingerprint()).is_some());
        assert!(store.recipients_file().contains(&new.recipient().to_string()));
        store.remove(&key_secret_name(&new));
        assert_eq!(store.newest().unwrap().0, *old.recipient());
        let errors = store.replace_all([&key_secret(&new, "ns", ts("2026-02-01T00:00:00Z"))]);
        assert!(errors.is_empty());
        assert_eq!(store.list().len(), 1);
        assert!(store.keyring().get(&old.fingerprint()).is_none());
    }
}
