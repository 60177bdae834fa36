//! Secrets in, SealedSecrets out (and back).

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sealant_crds::{SCOPE_ANNOTATION, SealedSecret, SealedSecretSpec, SecretTemplate, TemplateMetadata};
use sealant_seal::{Plaintext, Recipient, Scope, Target};
use serde_json::Value;
use zeroize::Zeroize;

use crate::docs::kind_of;
use crate::error::hinted;
use crate::k8s;

/// The annotation `kubectl apply` leaves behind; it may hold the plaintext, so it never reaches the output.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Kubernetes refuses a Secret whose values add up to more than this many bytes.
const MAX_SECRET_BYTES: usize = 1024 * 1024;

/// A Secret read from input, with its values decoded into zeroizing buffers.
#[derive(Debug, Default)]
pub struct SecretInput {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub type_: Option<String>,
    pub immutable: Option<bool>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub data: BTreeMap<String, Plaintext>,
}

fn string_map(v: Option<&Value>, what: &str, doc: &str) -> Result<BTreeMap<String, String>> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(BTreeMap::new());
    };
    let Some(obj) = v.as_object() else {
        bail!(hinted(
            format!("{doc}: {what} must be a map of strings"),
            "write it as `key: value` lines"
        ));
    };
    obj.iter()
        .map(|(k, v)| match v.as_str() {
            Some(s) => Ok((k.clone(), s.to_owned())),
            None => Err(hinted(
                format!("{doc}: {what}.{k} must be a string"),
                "quote the value, e.g. `\"5432\"` or `\"true\"`",
            )),
        })
        .collect()
}

/// Overwrites the strings under `data` and `stringData` so the parsed document holds no plaintext.
pub fn scrub(doc: &mut Value) {
    for field in ["data", "stringData"] {
        if let Some(Value::Object(map)) = doc.get_mut(field) {
            for v in map.values_mut() {
                if let Value::String(s) = v {
                    s.zeroize();
                }
            }
        }
    }
}

fn valid_key(k: &str) -> bool {
    k != "."
        && k != ".."
        && !k.is_empty()
        && k.len() <= 253
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
}

/// Reads a v1 Secret document (1-based `index` for messages).
pub fn secret_from_doc(mut doc: Value, index: usize) -> Result<SecretInput> {
    let result = read_secret(&doc, index);
    scrub(&mut doc);
    result
}

fn read_secret(doc: &Value, index: usize) -> Result<SecretInput> {
    let (kind, api_version) = kind_of(doc);
    if kind != "Secret" || api_version != "v1" {
        bail!(hinted(
            format!("document {index} is a {kind} ({api_version}), not a v1 Secret"),
            "only Secrets can be sealed: pass just the Secret(s), e.g. `kubectl create secret generic NAME \
             --from-literal=KEY=VALUE --dry-run=client -o yaml | sealant seal`",
        ));
    }
    let meta = doc.get("metadata");
    let get = |field: &str| -> Result<Option<String>> {
        match meta.and_then(|m| m.get(field)) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(hinted(
                format!("document {index}: metadata.{field} must be a string, not `{other}`"),
                format!(
                    "quote it: `{field}: \"{other}\"` (YAML reads yes/no/on/off and numbers as other types)"
                ),
            )),
        }
    };
    let name = get("name")?;
    let label = format!(
        "document {index} (Secret {})",
        name.as_deref().unwrap_or("<unnamed>")
    );
    let mut input = SecretInput {
        namespace: get("namespace")?,
        type_: doc.get("type").and_then(Value::as_str).map(str::to_owned),
        immutable: doc.get("immutable").and_then(Value::as_bool),
        labels: string_map(meta.and_then(|m| m.get("labels")), "metadata.labels", &label)?,
        annotations: string_map(
            meta.and_then(|m| m.get("annotations")),
            "metadata.annotations",
            &label,
        )?,
        name,
        data: BTreeMap::new(),
    };
    input.annotations.remove(LAST_APPLIED);
    if let Some(data) = doc.get("data").filter(|v| !v.is_null()) {
        let Some(map) = data.as_object() else {
            bail!(hinted(
                format!("{label}: data must be a map"),
                "write data as `key: base64value` lines"
            ));
        };
        for (k, v) in map {
            let Some(text) = v.as_str() else {
                bail!(hinted(
                    format!("{label}: data.{k} must be a base64 string"),
                    "base64-encode the value, or put the plain text under stringData instead",
                ));
            };
            let bytes = STANDARD.decode(text.trim()).map_err(|_| {
                hinted(
                    format!("{label}: data.{k} is not valid base64"),
                    "base64-encode the value, or put the plain text under stringData instead",
                )
            })?;
            input.data.insert(k.clone(), Plaintext::new(bytes));
        }
    }
    if let Some(sd) = doc.get("stringData").filter(|v| !v.is_null()) {
        let Some(map) = sd.as_object() else {
            bail!(hinted(
                format!("{label}: stringData must be a map"),
                "write stringData as `key: value` lines"
            ));
        };
        for (k, v) in map {
            let Some(s) = v.as_str() else {
                bail!(hinted(
                    format!("{label}: stringData.{k} must be a string"),
                    "quote the value, e.g. `\"5432\"` or `\"true\"`"
                ));
            };
            input
                .data
                .insert(k.clone(), Plaintext::new(s.as_bytes().to_vec()));
        }
    }
    if input.data.is_empty() {
        bail!(hinted(
            format!("{label} has no data: nothing to seal"),
            "add values under data (base64) or stringData (plain text)",
        ));
    }
    let total: usize = input.data.values().map(|v| v.as_bytes().len()).sum();
    if total > MAX_SECRET_BYTES {
        bail!(hinted(
            format!(
                "{label} holds {total} bytes of data, more than the {MAX_SECRET_BYTES} bytes (1 MiB) Kubernetes \
                 accepts in one Secret, so it could never be unsealed"
            ),
            "split the values over several Secrets, or keep large files out of Secrets",
        ));
    }
    if let Some(bad) = input.data.keys().find(|k| !valid_key(k)) {
        bail!(hinted(
            format!("{label}: `{bad}` is not a valid Secret key"),
            "keys may contain only letters, digits, `-`, `_` and `.` (and may not be `.` or `..`)",
        ));
    }
    k8s::check_metadata(&label, &input.labels, &input.annotations)?;
    k8s::check_type(&label, input.type_.as_deref(), &input.data, &input.annotations)?;
    Ok(input)
}

/// Checks a value given both in the document and by flag; returns the one to use.
pub fn agree(
    field: &str,
    from_doc: Option<String>,
    from_flag: Option<&str>,
    label: &str,
) -> Result<Option<String>> {
    match (from_doc, from_flag) {
        (Some(d), Some(f)) if d != f => Err(hinted(
            format!("{label}: metadata.{field} is `{d}` but --{field} is `{f}`"),
            format!("drop --{field}, or change metadata.{field} to `{f}` if that is where it belongs"),
        )),
        (d, f) => Ok(d.or(f.map(str::to_owned))),
    }
}

/// Seals `data` for `namespace`/`name` into a SealedSecret's spec.encryptedData.
pub fn seal_data<'a>(
    data: impl IntoIterator<Item = (&'a String, &'a Plaintext)>,
    namespace: &str,
    name: &str,
    scope: Scope,
    recipients: &[Recipient],
) -> Result<BTreeMap<String, String>> {
    data.into_iter()
        .map(|(key, value)| {
            let target = Target { namespace, name, key };
            let sealed = sealant_seal::seal(recipients, scope, &target, value.as_bytes())?;
            Ok((key.clone(), sealed))
        })
        .collect()
}

/// Fingerprints of recipients, deduplicated, in the order given.
pub fn fingerprints(recipients: &[Recipient]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in recipients {
        let f = r.fingerprint().to_string();
        if !out.contains(&f) {
            out.push(f);
        }
    }
    out
}

/// Builds the SealedSecret for a Secret.
pub fn build_sealed(
    input: &SecretInput,
    name: &str,
    namespace: Option<&str>,
    scope: Scope,
    recipients: &[Recipient],
) -> Result<SealedSecret> {
    let encrypted = seal_data(&input.data, namespace.unwrap_or(""), name, scope, recipients)?;
    let metadata = (!input.labels.is_empty() || !input.annotations.is_empty()).then(|| TemplateMetadata {
        labels: input.labels.clone(),
        annotations: input.annotations.clone(),
    });
    let template = SecretTemplate {
        metadata,
        type_: input.type_.clone(),
        immutable: input.immutable,
        data: BTreeMap::new(),
    };
    Ok(SealedSecret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: namespace.map(str::to_owned),
            annotations: Some([(SCOPE_ANNOTATION.to_owned(), scope.to_string())].into()),
            ..Default::default()
        },
        spec: SealedSecretSpec {
            encrypted_data: encrypted,
            template: (template != SecretTemplate::default()).then_some(template),
            recipients: fingerprints(recipients),
        },
        status: None,
    })
}

/// True when a document is a sealant SealedSecret.
pub fn is_sealed_secret(doc: &Value) -> bool {
    let (kind, api_version) = kind_of(doc);
    kind == "SealedSecret" && api_version == format!("{}/v1", sealant_crds::GROUP)
}

/// Reads a SealedSecret document; `what` names it in messages.
pub fn sealed_from_doc(doc: Value, what: &str) -> Result<SealedSecret> {
    if !is_sealed_secret(&doc) {
        let (kind, api_version) = kind_of(&doc);
        bail!(hinted(
            format!("{what} is a {kind} ({api_version}), not a sealant.dev/v1 SealedSecret"),
            "pass a file written by `sealant seal`",
        ));
    }
    let mut ss: SealedSecret = serde_json::from_value(doc).map_err(|e| {
        hinted(
            format!("{what} is not a well-formed SealedSecret: {e}"),
            "compare it with `sealant seal` output",
        )
    })?;
    ss.status = None;
    Ok(ss)
}

/// The scope recorded on a SealedSecret (strict when absent).
pub fn recorded_scope(ss: &SealedSecret) -> Result<Scope> {
    match ss
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SCOPE_ANNOTATION))
    {
        None => Ok(Scope::Strict),
        Some(s) => s.parse().map_err(|e| {
            hinted(
                format!("annotation {SCOPE_ANNOTATION}: {e}"),
                "fix the annotation or remove it (strict)",
            )
        }),
    }
}

/// The SealedSecret as a JSON document for output (no status, no server fields).
pub fn sealed_to_doc(ss: &SealedSecret) -> Result<Value> {
    Ok(serde_json::to_value(ss)?)
}
