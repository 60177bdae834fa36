//! Writing Secrets on behalf of a source object (a SealedSecret or an ExternalSecret), shared by both
//! reconcilers: never overwrite a Secret that is not ours, write only when something differs, recreate when
//! Kubernetes forbids an in-place change (immutable Secrets, a new type), keep what other tools added.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::json;

/// The annotation that lets sealant take over a Secret it did not create.
pub const MANAGED_ANNOTATION: &str = "sealant.dev/managed";
/// The label on every Secret sealant writes (the owned-Secret watches select on it).
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "sealant-controller";
/// The uid of the object a Secret was written for (ownership without an ownerReference, e.g. ESO's Orphan).
pub const SOURCE_UID_ANNOTATION: &str = "sealant.dev/source-uid";

/// Kubernetes refuses a Secret whose values add up to more than this many bytes (1 MiB).
pub const MAX_SECRET_BYTES: usize = 1024 * 1024;

/// Why a Secret with these values (key, size in bytes) would be refused by the API server as too large, or
/// `None` when it fits. Names the largest key and sizes, never values.
pub fn too_large<'a>(values: impl IntoIterator<Item = (&'a str, usize)>) -> Option<String> {
    let mut total = 0usize;
    let mut largest: Option<(&str, usize)> = None;
    for (key, len) in values {
        total += len;
        if largest.is_none_or(|(_, l)| len > l) {
            largest = Some((key, len));
        }
    }
    if total <= MAX_SECRET_BYTES {
        return None;
    }
    let (key, len) = largest.unwrap_or_default();
    Some(format!(
        "the Secret would hold {total} bytes of data, more than the {MAX_SECRET_BYTES} bytes (1 MiB) Kubernetes \
         accepts in one Secret (largest value: key {key}, {len} bytes); split the values over several Secrets, \
         or keep large files out of Secrets"
    ))
}

/// What writing did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Unchanged,
    Created,
    Updated,
    Recreated,
    /// A Secret of that name exists, is not ours and is not annotated for adoption.
    Unmanaged,
    /// Nothing to merge into (ESO's creationPolicy Merge needs an existing Secret).
    Missing,
}

impl Applied {
    pub fn wrote(self) -> bool {
        matches!(self, Applied::Created | Applied::Updated | Applied::Recreated)
    }
}

/// True when `secret` was written for the object with `uid`, or is annotated for adoption.
pub fn is_ours(secret: &Secret, uid: &str) -> bool {
    let owned = secret
        .owner_references()
        .iter()
        .any(|o| o.uid == uid && o.controller == Some(true));
    let marked = secret
        .annotations()
        .get(SOURCE_UID_ANNOTATION)
        .is_some_and(|u| u == uid);
    owned || marked
}

fn adoptable(secret: &Secret) -> bool {
    secret
        .annotations()
        .get(MANAGED_ANNOTATION)
        .is_some_and(|v| v == "true")
}

/// True when `existing` already is `wanted`: same data, type and immutability, and every wanted label,
/// annotation and owner reference present (others may have been added by other tools).
pub fn satisfied(existing: &Secret, wanted: &Secret) -> bool {
    let empty = BTreeMap::new();
    let contains = |have: &BTreeMap<String, String>, want: &BTreeMap<String, String>| {
        want.iter().all(|(k, v)| have.get(k) == Some(v))
    };
    existing.data.as_ref().unwrap_or(&empty) == wanted.data.as_ref().unwrap_or(&empty)
        && existing.type_.as_deref().unwrap_or("Opaque") == wanted.type_.as_deref().unwrap_or("Opaque")
        && existing.immutable.unwrap_or(false) == wanted.immutable.unwrap_or(false)
        && contains(existing.labels(), wanted.labels())
        && contains(existing.annotations(), wanted.annotations())
        && wanted
            .owner_references()
            .iter()
            .all(|w| existing.owner_references().iter().any(|e| e.uid == w.uid))
}

/// Labels, annotations and owner references that other tools put on the Secret are kept.
fn keep_foreign_metadata(current: &Secret, wanted: &mut Secret) {
    for (k, v) in current.labels() {
        wanted.labels_mut().entry(k.clone()).or_insert_with(|| v.clone());
    }
    for (k, v) in current.annotations() {
        wanted
            .annotations_mut()
            .entry(k.clone())
            .or_insert_with(|| v.clone());
    }
    let ours: Vec<String> = wanted.owner_references().iter().map(|o| o.uid.clone()).collect();
    let mut refs: Vec<OwnerReference> = current
        .owner_references()
        .iter()
        .filter(|o| !ours.contains(&o.uid) && o.controller != Some(true))
        .cloned()
        .collect();
    refs.extend(wanted.owner_references().iter().cloned());
    wanted.metadata.owner_references = (!refs.is_empty()).then_some(refs);
}

/// Writes `wanted` (named, with its owner reference if any) for the object `source_uid`, when it differs from
/// `existing`. Never touches a Secret that is not ours unless it is annotated for adoption.
pub async fn write(
    api: &Api<Secret>,
    mut wanted: Secret,
    existing: Option<Secret>,
    source_uid: &str,
) -> Result<Applied, kube::Error> {
    wanted
        .labels_mut()
        .insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned());
    wanted
        .annotations_mut()
        .insert(SOURCE_UID_ANNOTATION.to_owned(), source_uid.to_owned());
    let Some(current) = existing else {
        api.create(&PostParams::default(), &wanted).await?;
        return Ok(Applied::Created);
    };
    if !is_ours(&current, source_uid) && !adoptable(&current) {
        return Ok(Applied::Unmanaged);
    }
    if satisfied(&current, &wanted) {
        return Ok(Applied::Unchanged);
    }
    let name = current.name_any();
    keep_foreign_metadata(&current, &mut wanted);
    let type_changed =
        current.type_.as_deref().unwrap_or("Opaque") != wanted.type_.as_deref().unwrap_or("Opaque");
    if current.immutable == Some(true) || type_changed {
        // Immutable Secrets and Secret types cannot change in place: delete exactly that object, create anew.
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: current.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        api.delete(&name, &dp).await?;
        api.create(&PostParams::default(), &wanted).await?;
        return Ok(Applied::Recreated);
    }
    wanted.metadata.resource_version = current.metadata.resource_version.clone();
    api.replace(&name, &PostParams::default(), &wanted).await?;
    Ok(Applied::Updated)
}

/// Merges `data` into an existing Secret that is not necessarily ours (ESO's creationPolicy `Merge`): only the
/// given keys change, everything else stays.
pub async fn merge_data(
    api: &Api<Secret>,
    existing: Option<Secret>,
    data: &BTreeMap<String, ByteString>,
) -> Result<Applied, kube::Error> {
    let Some(current) = existing else {
        return Ok(Applied::Missing);
    };
    let have = current.data.clone().unwrap_or_default();
    if data.iter().all(|(k, v)| have.get(k) == Some(v)) {
        return Ok(Applied::Unchanged);
    }
    let patch = json!({"data": data});
    api.patch(
        &current.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(Applied::Updated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn secret(data: &[(&str, &str)], annotations: &[(&str, &str)]) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some("db".into()),
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn satisfaction_ignores_foreign_additions_only() {
        let wanted = secret(&[("p", "1")], &[("a", "x")]);
        assert!(satisfied(
            &secret(&[("p", "1")], &[("a", "x"), ("other", "y")]),
            &wanted
        ));
        assert!(!satisfied(&secret(&[("p", "2")], &[("a", "x")]), &wanted));
        assert!(
            !satisfied(&secret(&[("p", "1"), ("q", "2")], &[("a", "x")]), &wanted),
            "extra data key"
        );
        assert!(
            !satisfied(&secret(&[("p", "1")], &[]), &wanted),
            "missing annotation"
        );
        let mut immutable = wanted.clone();
        immutable.immutable = Some(true);
        assert!(!satisfied(&secret(&[("p", "1")], &[("a", "x")]), &immutable));
    }

    #[test]
    fn too_large_counts_value_bytes_and_names_the_largest_key() {
        assert_eq!(
            too_large([("a", MAX_SECRET_BYTES)]),
            None,
            "exactly the limit fits"
        );
        assert_eq!(too_large(std::iter::empty()), None);
        let m = too_large([("small", 10), ("big", MAX_SECRET_BYTES - 5)]).unwrap();
        assert!(
            m.contains(&format!("{} bytes of data", MAX_SECRET_BYTES + 5)),
            "{m}"
        );
        assert!(m.contains("key big") && m.contains("split the values"), "{m}");
    }

    #[test]
    fn ownership_by_reference_or_source_annotation() {
        let mut s = secret(&[], &[]);
        assert!(!is_ours(&s, "u1"));
        s.annotations_mut()
            .insert(SOURCE_UID_ANNOTATION.into(), "u1".into());
        assert!(is_ours(&s, "u1"));
        assert!(!is_ours(&s, "u2"));
        let mut owned = secret(&[], &[]);
        owned.metadata.owner_references = Some(vec![OwnerReference {
            uid: "u3".into(),
            controller: Some(true),
            ..Default::default()
        }]);
        assert!(is_ours(&owned, "u3"));
        assert!(adoptable(&secret(&[], &[(MANAGED_ANNOTATION, "true")])));
    }
}
