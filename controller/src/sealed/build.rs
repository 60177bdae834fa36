//! The pure build step: a SealedSecret and the keyring in, the desired Secret (or a reason why not) out.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use sealant_crds::SealedSecret;
use sealant_seal::{Fingerprint, Keyring, Plaintext, Target, UnsealError, Unsealed};

use crate::template::render;

/// The reason of the Ready condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Unsealed,
    DecryptFailed,
    ScopeMismatch,
    UnknownKey,
    Unmanaged,
    TemplateFailed,
    /// The Secret would be more than Kubernetes accepts (1 MiB of data).
    TooLarge,
    /// The API server refused the Secret as invalid (e.g. a template key or type it does not accept).
    Rejected,
    /// Neither `spec.encryptedData` nor `spec.template.data` holds anything.
    NoValues,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Unsealed => "Unsealed",
            Reason::DecryptFailed => "DecryptFailed",
            Reason::ScopeMismatch => "ScopeMismatch",
            Reason::UnknownKey => "UnknownKey",
            Reason::Unmanaged => "Unmanaged",
            Reason::TemplateFailed => "TemplateFailed",
            Reason::TooLarge => "SecretTooLarge",
            Reason::Rejected => "SecretRejected",
            Reason::NoValues => "NoValues",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a SealedSecret cannot become a Secret. The message names keys and places, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BuildError {
    pub reason: Reason,
    pub message: String,
}

/// The Secret a SealedSecret asks for. Values are held in zeroizing buffers.
#[derive(Debug, Clone)]
pub struct Desired {
    pub name: String,
    pub namespace: String,
    pub type_: String,
    pub immutable: Option<bool>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub data: BTreeMap<String, Plaintext>,
}

/// Opens every value of `ss` with the identity named by `spec.recipients` (never trying other keys), checking
/// each value's scope against where it is found.
pub fn open_all(ss: &SealedSecret, keyring: &Keyring) -> Result<BTreeMap<String, Unsealed>, BuildError> {
    let name = ss.metadata.name.as_deref().unwrap_or_default();
    let namespace = ss.metadata.namespace.as_deref().unwrap_or_default();
    let fingerprints: Vec<Fingerprint> = ss
        .spec
        .recipients
        .iter()
        .map(|f| Fingerprint::from(f.as_str()))
        .collect();
    if fingerprints.is_empty() {
        return Err(BuildError {
            reason: Reason::UnknownKey,
            message:
                "spec.recipients is empty, so the key to use is unknown; seal with `sealant seal`, which \
                      records the key fingerprints"
                    .into(),
        });
    }
    ss.spec
        .encrypted_data
        .iter()
        .map(|(key, sealed)| {
            let target = Target { namespace, name, key };
            let opened = keyring
                .unseal(&fingerprints, &target, sealed)
                .map_err(|e| unseal_failure(key, e))?;
            Ok((key.clone(), opened))
        })
        .collect()
}

/// Unseals every value with the identity named by `spec.recipients` and renders `spec.template`.
pub fn build(ss: &SealedSecret, keyring: &Keyring) -> Result<Desired, BuildError> {
    let name = ss.metadata.name.clone().unwrap_or_default();
    let namespace = ss.metadata.namespace.clone().unwrap_or_default();
    let templated = ss.spec.template.as_ref().is_some_and(|t| !t.data.is_empty());
    if ss.spec.encrypted_data.is_empty() && !templated {
        return Err(BuildError {
            reason: Reason::NoValues,
            message:
                "spec.encryptedData is empty or missing, so there is nothing to unseal and no Secret is \
                      written; seal a Secret that has values with `sealant seal`"
                    .into(),
        });
    }
    let mut data: BTreeMap<String, Plaintext> = open_all(ss, keyring)?
        .into_iter()
        .map(|(k, u)| (k, u.value))
        .collect();
    let template = ss.spec.template.clone().unwrap_or_default();
    let mut rendered = BTreeMap::new();
    for (key, tpl) in &template.data {
        let value = render(key, tpl, &data).map_err(|e| BuildError {
            reason: Reason::TemplateFailed,
            message: e.to_string(),
        })?;
        rendered.insert(key.clone(), value);
    }
    data.extend(rendered);
    // Checked here, not left to the API server: its refusal would be retried forever with no condition.
    if let Some(message) =
        crate::secretwriter::too_large(data.iter().map(|(k, v)| (k.as_str(), v.as_bytes().len())))
    {
        return Err(BuildError {
            reason: Reason::TooLarge,
            message,
        });
    }
    let meta = template.metadata.unwrap_or_default();
    Ok(Desired {
        name,
        namespace,
        type_: template.type_.unwrap_or_else(|| "Opaque".to_owned()),
        immutable: template.immutable,
        labels: meta.labels,
        annotations: meta.annotations,
        data,
    })
}

fn unseal_failure(key: &str, e: UnsealError) -> BuildError {
    let reason = match &e {
        UnsealError::ScopeMismatch { .. } => Reason::ScopeMismatch,
        UnsealError::UnknownKey { .. } => Reason::UnknownKey,
        _ => Reason::DecryptFailed,
    };
    let hint = match reason {
        Reason::ScopeMismatch => {
            "a value opens only where it was sealed for: seal it again for this namespace, name and key \
             (`sealant seal --merge-into FILE` keeps the other values)"
        }
        Reason::UnknownKey => {
            "restore the key from a backup (`kubectl apply -f sealant-keys.yaml`), or seal the value again \
             to this cluster (`sealant recipients fetch`)"
        }
        _ => {
            "seal the value again (`sealant seal --merge-into FILE` keeps the other values); no Secret is \
             written until every value opens"
        }
    };
    BuildError {
        reason,
        message: format!("key {key}: {e}; {hint}"),
    }
}

impl Desired {
    /// The Secret object, owned by `owner` (the SealedSecret) as its controller.
    pub fn to_secret(&self, owner: Option<OwnerReference>) -> Secret {
        let non_empty = |m: &BTreeMap<String, String>| (!m.is_empty()).then(|| m.clone());
        Secret {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                labels: non_empty(&self.labels),
                annotations: non_empty(&self.annotations),
                owner_references: owner.map(|o| vec![o]),
                ..Default::default()
            },
            type_: Some(self.type_.clone()),
            immutable: self.immutable,
            data: Some(
                self.data
                    .iter()
                    .map(|(k, v)| (k.clone(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealant_crds::{SealedSecretSpec, SecretTemplate, TemplateMetadata};
    use sealant_seal::{Identity, Scope, seal};

    fn sealed(id: &Identity, ns: &str, name: &str, values: &[(&str, &str)], scope: Scope) -> SealedSecret {
        let recipients = [id.recipient().clone()];
        let encrypted_data = values
            .iter()
            .map(|(k, v)| {
                let t = Target {
                    namespace: ns,
                    name,
                    key: k,
                };
                (k.to_string(), seal(&recipients, scope, &t, v.as_bytes()).unwrap())
            })
            .collect();
        SealedSecret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            spec: SealedSecretSpec {
                encrypted_data,
                template: None,
                recipients: vec![id.fingerprint().to_string()],
            },
            status: None,
        }
    }

    #[test]
    fn builds_secret_with_template() {
        let id = Identity::generate();
        let mut ss = sealed(
            &id,
            "prod",
            "db",
            &[("user", "app"), ("password", "s3cret")],
            Scope::Strict,
        );
        ss.spec.template = Some(SecretTemplate {
            metadata: Some(TemplateMetadata {
                labels: [("app".into(), "db".into())].into(),
                annotations: BTreeMap::new(),
            }),
            type_: Some("kubernetes.io/basic-auth".into()),
            immutable: Some(true),
            data: [("url".into(), "pg://{{ .user }}:{{ .password }}@db".into())].into(),
        });
        let d = build(&ss, &Keyring::new([id])).unwrap();
        assert_eq!(d.data["password"].as_bytes(), b"s3cret");
        assert_eq!(d.data["url"].as_bytes(), b"pg://app:s3cret@db");
        let secret = d.to_secret(None);
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/basic-auth"));
        assert_eq!(secret.immutable, Some(true));
        assert!(crate::secretwriter::satisfied(&secret, &secret.clone()));
        let mut edited = secret.clone();
        edited
            .data
            .as_mut()
            .unwrap()
            .insert("password".into(), ByteString(b"changed".to_vec()));
        assert!(!crate::secretwriter::satisfied(&edited, &secret));
        let mut extra = secret.clone();
        extra.metadata.annotations = Some([("other-tool".into(), "x".into())].into());
        assert!(crate::secretwriter::satisfied(&extra, &secret));
    }

    #[test]
    fn failures_have_reasons_and_no_values() {
        let id = Identity::generate();
        let other = Identity::generate();
        let ss = sealed(&id, "prod", "db", &[("password", "s3cret")], Scope::Strict);
        let e = build(&ss, &Keyring::new([other.clone()])).unwrap_err();
        assert_eq!(e.reason, Reason::UnknownKey);

        let mut moved = ss.clone();
        moved.metadata.namespace = Some("dev".into());
        let e = build(&moved, &Keyring::new([id.clone()])).unwrap_err();
        assert_eq!(e.reason, Reason::ScopeMismatch);
        assert!(e.message.contains("key password"), "{}", e.message);

        let mut lying = ss.clone();
        lying.spec.recipients = vec![other.fingerprint().to_string()];
        let e = build(&lying, &Keyring::new([id.clone(), other])).unwrap_err();
        assert_eq!(e.reason, Reason::DecryptFailed);

        let mut tampered = ss.clone();
        let v = tampered.spec.encrypted_data.get_mut("password").unwrap();
        let mid = v.len() / 2;
        let c = if &v[mid..mid + 1] == "A" { "B" } else { "A" };
        v.replace_range(mid..mid + 1, c);
        let e = build(&tampered, &Keyring::new([id.clone()])).unwrap_err();
        assert_eq!(e.reason, Reason::DecryptFailed);

        let mut bad_tpl = ss.clone();
        bad_tpl.spec.template = Some(SecretTemplate {
            data: [("x".into(), "{{ .nope }}".into())].into(),
            ..Default::default()
        });
        let e = build(&bad_tpl, &Keyring::new([id.clone()])).unwrap_err();
        assert_eq!(e.reason, Reason::TemplateFailed);
        assert!(!e.message.contains("s3cret"));

        let mut empty = ss.clone();
        empty.spec.encrypted_data.clear();
        let e = build(&empty, &Keyring::new([id])).unwrap_err();
        assert_eq!(e.reason, Reason::NoValues);
        assert!(e.message.contains("sealant seal"), "{}", e.message);
    }

    #[test]
    fn a_secret_over_one_mib_is_refused_with_a_reason() {
        let id = Identity::generate();
        let half = "x".repeat(crate::secretwriter::MAX_SECRET_BYTES / 2);
        let fits = sealed(&id, "prod", "big", &[("a", &half), ("b", &half)], Scope::Strict);
        assert!(
            build(&fits, &Keyring::new([id.clone()])).is_ok(),
            "exactly 1 MiB fits"
        );
        let mut over = fits.clone();
        // a template adding one byte on top of the two halves makes it too large
        over.spec.template = Some(SecretTemplate {
            data: [("c".into(), "!".into())].into(),
            ..Default::default()
        });
        let e = build(&over, &Keyring::new([id])).unwrap_err();
        assert_eq!(e.reason, Reason::TooLarge);
        assert_eq!(e.reason.as_str(), "SecretTooLarge");
        assert!(
            e.message.contains("1048577 bytes") && e.message.contains("split"),
            "{}",
            e.message
        );
        assert!(!e.message.contains("xxxx"));
    }
}
