//! `sealant unseal`: recovery with an identity file.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sealant_seal::{Target, UnsealError};
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use crate::Format;
use crate::cmd::{explain, load_keyring, open_value};
use crate::docs::{parse_documents, render};
use crate::error::hinted;
use crate::files::{read_input, write_output};
use crate::secret::sealed_from_doc;

#[derive(Debug)]
pub struct Options {
    pub identities: Vec<PathBuf>,
    pub input: Option<PathBuf>,
    pub format: Format,
    pub raw: bool,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub key: Option<String>,
}

pub fn run(o: Options) -> Result<()> {
    let ring = load_keyring(&o.identities)?;
    if o.raw {
        let mut sealed = String::new();
        std::io::stdin().read_to_string(&mut sealed)?;
        let target = Target {
            namespace: o.namespace.as_deref().unwrap_or(""),
            name: o.name.as_deref().unwrap_or(""),
            key: o.key.as_deref().unwrap_or(""),
        };
        let opened = sealant_seal::unseal(ring.identities(), &target, &sealed).map_err(|e| {
            let unplaced = o.namespace.is_none() || o.name.is_none() || o.key.is_none();
            if matches!(e, UnsealError::ScopeMismatch { .. }) && unplaced {
                hinted(
                    format!("cannot open the sealed value: {e}"),
                    "pass --namespace, --name and --key of the place the value is used at: they are bound into it",
                )
            } else {
                explain(e, &ring, "the sealed value")
            }
        })?;
        let mut out = std::io::stdout().lock();
        out.write_all(opened.value.as_bytes())?;
        out.flush()?;
        return Ok(());
    }
    let (text, source) = read_input(o.input.as_deref())?;
    let docs = parse_documents(&text, &source)?;
    if docs.is_empty() {
        bail!(hinted(
            format!("{source} holds no documents"),
            "pass a SealedSecret file with -f"
        ));
    }
    let mut secrets = Vec::with_capacity(docs.len());
    for (i, doc) in docs.into_iter().enumerate() {
        let ss = sealed_from_doc(doc, &format!("document {}", i + 1))?;
        let mut data = Map::new();
        for (key, sealed) in &ss.spec.encrypted_data {
            let opened = open_value(&ring, &ss, key, sealed)?;
            let encoded = Zeroizing::new(STANDARD.encode(opened.value.as_bytes()));
            data.insert(key.clone(), Value::String(encoded.to_string()));
        }
        let template = ss.spec.template.clone().unwrap_or_default();
        let mut metadata = Map::new();
        metadata.insert("name".into(), json!(ss.metadata.name));
        if let Some(ns) = &ss.metadata.namespace {
            metadata.insert("namespace".into(), json!(ns));
        }
        let tm = template.metadata.unwrap_or_default();
        let non_empty = |m: BTreeMap<String, String>| (!m.is_empty()).then_some(m);
        if let Some(labels) = non_empty(tm.labels) {
            metadata.insert("labels".into(), json!(labels));
        }
        if let Some(annotations) = non_empty(tm.annotations) {
            metadata.insert("annotations".into(), json!(annotations));
        }
        let mut secret = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": metadata,
            "type": template.type_.unwrap_or_else(|| "Opaque".to_owned()),
            "data": data,
        });
        if let Some(imm) = template.immutable {
            secret["immutable"] = json!(imm);
        }
        if !template.data.is_empty() {
            eprintln!(
                "warning: {} has spec.template.data ({} keys); those are rendered by the controller and are not \
                 included here",
                crate::cmd::object_name(&ss),
                template.data.len()
            );
        }
        secrets.push(secret);
    }
    let rendered = Zeroizing::new(render(&secrets, o.format)?);
    write_output(None, &rendered)
}
