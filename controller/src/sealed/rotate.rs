//! Re-sealing a SealedSecret to the newest key, keeping every value's scope (POST /v1/rotate).

use sealant_crds::SealedSecret;
use sealant_seal::{Keyring, Recipient, Target};

use super::build::{BuildError, Reason, open_all};

/// The SealedSecret with every value re-sealed to `newest`. Values sealed to other recipients as well (a
/// backup key, another cluster) are re-sealed to `newest` only: the controller knows no other public keys.
pub fn rotate(ss: &SealedSecret, keyring: &Keyring, newest: &Recipient) -> Result<SealedSecret, BuildError> {
    let namespace = ss.metadata.namespace.as_deref().unwrap_or_default();
    let name = ss.metadata.name.as_deref().unwrap_or_default();
    let mut out = ss.clone();
    out.status = None;
    for (key, opened) in open_all(ss, keyring)? {
        let target = Target {
            namespace,
            name,
            key: &key,
        };
        let resealed = sealant_seal::seal(
            std::slice::from_ref(newest),
            opened.scope,
            &target,
            opened.value.as_bytes(),
        )
        .map_err(|e| BuildError {
            reason: Reason::DecryptFailed,
            message: format!("key {key}: {e}"),
        })?;
        out.spec.encrypted_data.insert(key, resealed);
    }
    out.spec.recipients = vec![newest.fingerprint().to_string()];
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use sealant_crds::SealedSecretSpec;
    use sealant_seal::{Identity, Scope, seal};

    #[test]
    fn rotates_to_newest_keeping_scope() {
        let old = Identity::generate();
        let new = Identity::generate();
        let t = Target {
            namespace: "prod",
            name: "db",
            key: "password",
        };
        let ss = SealedSecret {
            metadata: ObjectMeta {
                name: Some("db".into()),
                namespace: Some("prod".into()),
                ..Default::default()
            },
            spec: SealedSecretSpec {
                encrypted_data: [(
                    "password".to_owned(),
                    seal(&[old.recipient().clone()], Scope::NamespaceWide, &t, b"s3cret").unwrap(),
                )]
                .into(),
                template: None,
                recipients: vec![old.fingerprint().to_string()],
            },
            status: None,
        };
        let ring = Keyring::new([old.clone(), new.clone()]);
        let rotated = rotate(&ss, &ring, new.recipient()).unwrap();
        assert_eq!(rotated.spec.recipients, vec![new.fingerprint().to_string()]);
        let only_new = Keyring::new([new.clone()]);
        let opened = only_new
            .unseal(
                &[new.fingerprint()],
                &Target { name: "other", ..t },
                &rotated.spec.encrypted_data["password"],
            )
            .unwrap();
        assert_eq!(opened.scope, Scope::NamespaceWide);
        assert_eq!(opened.value.as_bytes(), b"s3cret");
        let e = rotate(&ss, &Keyring::new([new.clone()]), new.recipient()).unwrap_err();
        assert_eq!(e.reason, Reason::UnknownKey);
    }
}
