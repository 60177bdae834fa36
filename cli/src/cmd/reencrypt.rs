//! `sealant reencrypt`: re-seal SealedSecrets to new recipients offline, keeping each value's scope.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use sealant_crds::SealedSecret;
use sealant_seal::{Keyring, Recipient, Target};
use serde_json::Value;

use crate::RecipientArgs;
use crate::cmd::{load_keyring, open_value};
use crate::config;
use crate::docs::{join_segments, parse_documents, split_segments, to_yaml};
use crate::error::hinted;
use crate::files::{Mode, manifest_files, read_input, write_atomic, write_output};
use crate::secret::{fingerprints, is_sealed_secret, sealed_from_doc, sealed_to_doc};

#[derive(Debug, Default)]
struct Tally {
    objects: usize,
    values: usize,
    files: usize,
}

pub fn run(identities: &[PathBuf], recipients: &RecipientArgs, paths: &[PathBuf]) -> Result<()> {
    let ring = load_keyring(identities)?;
    let mut tally = Tally::default();
    if paths.is_empty() {
        let (text, source) = read_input(None)?;
        let choice = config::choose(recipients, None, Path::new("."))?;
        let out = rewrite(&text, &source, false, &ring, &choice.recipients, &mut tally)?;
        return write_output(None, out.as_deref().unwrap_or(&text));
    }
    // Everything is re-sealed in memory first; files are written only when every one of them succeeded.
    let mut pending = Vec::new();
    for file in manifest_files(paths)? {
        let text = crate::files::read_file(&file, "PATH")?;
        if !text.contains("SealedSecret") {
            continue;
        }
        let choice = config::choose(recipients, None, &file)?;
        let json = file.extension().is_some_and(|e| e == "json");
        if let Some(new) = rewrite(
            &text,
            &file.display().to_string(),
            json,
            &ring,
            &choice.recipients,
            &mut tally,
        )? {
            pending.push((file, new));
        }
    }
    for (file, text) in &pending {
        write_atomic(file, text.as_bytes(), Mode::KeepOr(0o644))?;
    }
    tally.files = pending.len();
    eprintln!(
        "re-sealed {} values in {} SealedSecrets across {} files",
        tally.values, tally.objects, tally.files
    );
    Ok(())
}

/// The new text of a manifest file, or `None` when it holds no SealedSecret.
fn rewrite(
    text: &str,
    source: &str,
    json: bool,
    ring: &Keyring,
    recipients: &[Recipient],
    tally: &mut Tally,
) -> Result<Option<String>> {
    if json || text.trim_start().starts_with('{') {
        let mut doc: Value = serde_json::from_str(text)
            .map_err(|e| hinted(format!("{source} is not valid JSON: {e}"), "fix the JSON syntax"))?;
        let changed = if is_sealed_secret(&doc) {
            doc = reseal_doc(doc, source, ring, recipients, tally)?;
            true
        } else if let Some(items) = doc.get_mut("items").and_then(Value::as_array_mut) {
            let mut changed = false;
            for item in items.iter_mut().filter(|i| is_sealed_secret(i)) {
                *item = reseal_doc(item.take(), source, ring, recipients, tally)?;
                changed = true;
            }
            changed
        } else {
            false
        };
        return Ok(changed
            .then(|| serde_json::to_string_pretty(&doc).map(|s| s + "\n"))
            .transpose()?);
    }
    let mut segments = split_segments(text);
    let mut changed = false;
    for (i, seg) in segments.iter_mut().enumerate() {
        let what = format!("{source} document {}", i + 1);
        let docs = match parse_documents(&seg.body, &what) {
            Ok(d) => d,
            Err(e) if seg.body.contains("SealedSecret") => return Err(e),
            Err(_) => continue,
        };
        if !docs.iter().any(is_sealed_secret) {
            continue;
        }
        if docs.len() != 1 {
            bail!(hinted(
                format!("{what} is a List holding SealedSecrets"),
                "write each SealedSecret as its own document"
            ));
        }
        let doc = docs.into_iter().next().expect("one document");
        seg.body = to_yaml(&reseal_doc(doc, &what, ring, recipients, tally)?)?;
        changed = true;
    }
    Ok(changed.then(|| join_segments(&segments)))
}

fn reseal_doc(
    doc: Value,
    what: &str,
    ring: &Keyring,
    recipients: &[Recipient],
    tally: &mut Tally,
) -> Result<Value> {
    let mut ss: SealedSecret = sealed_from_doc(doc, what)?;
    let namespace = ss.metadata.namespace.clone().unwrap_or_default();
    let name = ss.metadata.name.clone().unwrap_or_default();
    let mut resealed = std::collections::BTreeMap::new();
    for (key, sealed) in &ss.spec.encrypted_data {
        let opened = open_value(ring, &ss, key, sealed)?;
        let target = Target {
            namespace: &namespace,
            name: &name,
            key,
        };
        resealed.insert(
            key.clone(),
            sealant_seal::seal(recipients, opened.scope, &target, opened.value.as_bytes())?,
        );
        tally.values += 1;
    }
    ss.spec.encrypted_data = resealed;
    ss.spec.recipients = fingerprints(recipients);
    tally.objects += 1;
    sealed_to_doc(&ss)
}
