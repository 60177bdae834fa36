//! `sealant reencrypt`: re-seal SealedSecrets to new recipients, keeping each value's scope. Offline with an
//! identity file, or online through the controller's `/v1/rotate` (to its newest key).

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use sealant_crds::SealedSecret;
use sealant_seal::{Keyring, Recipient, Target};
use serde_json::Value;

use crate::RecipientArgs;
use crate::cluster::{ClusterArgs, client, proxy_post, runtime};
use crate::cmd::{load_keyring, object_name, open_value};
use crate::config;
use crate::docs::{join_segments, parse_documents, split_segments, to_yaml};
use crate::error::hinted;
use crate::files::{Mode, manifest_files, read_input, write_atomic, write_output};
use crate::secret::{fingerprints, is_sealed_secret, sealed_from_doc, sealed_to_doc};

#[derive(Debug, Default)]
struct Tally {
    objects: usize,
    values: usize,
}

/// Re-seals one SealedSecret document.
type Reseal<'a> = dyn FnMut(SealedSecret, &mut Tally) -> Result<SealedSecret> + 'a;

pub fn run(
    identities: &[PathBuf],
    recipients: &RecipientArgs,
    cluster: &ClusterArgs,
    paths: &[PathBuf],
) -> Result<()> {
    if identities.is_empty() {
        if !recipients.recipients.is_empty() || !recipients.recipients_file.is_empty() {
            bail!(hinted(
                "--recipient needs --identity: online re-encryption seals to the controller's newest key",
                "pass --identity FILE to re-seal offline to the recipients you name, or drop --recipient",
            ));
        }
        return online(cluster, paths);
    }
    let ring = load_keyring(identities)?;
    let chooser = |anchor: &Path| config::choose(recipients, None, anchor).map(|c| c.recipients);
    each_input(paths, &mut |anchor: &Path| {
        let recipients = chooser(anchor)?;
        let ring = ring.clone();
        Ok(Box::new(move |ss: SealedSecret, tally: &mut Tally| {
            offline(ss, &ring, &recipients, tally)
        }))
    })
}

fn online(cluster: &ClusterArgs, paths: &[PathBuf]) -> Result<()> {
    let rt = runtime()?;
    let client = rt.block_on(client(cluster))?;
    each_input(paths, &mut |_anchor: &Path| {
        let rt = &rt;
        let client = client.clone();
        Ok(Box::new(move |ss: SealedSecret, tally: &mut Tally| {
            let name = object_name(&ss);
            let body = serde_json::to_string(&ss)?;
            let (status, answer) = rt.block_on(proxy_post(
                &client,
                cluster,
                "/v1/rotate",
                body,
                "application/json",
            ))?;
            if status != 200 {
                let v: Value = serde_json::from_str(&answer).unwrap_or_default();
                bail!(hinted(
                    format!(
                        "the controller cannot rotate {name}: {}: {}",
                        v["reason"].as_str().unwrap_or("Failed"),
                        v["message"].as_str().unwrap_or(answer.trim())
                    ),
                    "check the SealedSecret with `sealant verify`; values it cannot open cannot be re-sealed",
                ));
            }
            let rotated: SealedSecret = serde_json::from_str(&answer)?;
            tally.values += rotated.spec.encrypted_data.len();
            tally.objects += 1;
            Ok(rotated)
        }))
    })
}

/// Runs `make_resealer` (given the file path, for `.sealant.yaml` lookups) over standard input or every
/// manifest under `paths`. Everything is re-sealed in memory first; files are written only when all succeeded.
fn each_input<'a>(
    paths: &[PathBuf],
    make_resealer: &mut dyn FnMut(&Path) -> Result<Box<Reseal<'a>>>,
) -> Result<()> {
    let mut tally = Tally::default();
    if paths.is_empty() {
        let (text, source) = read_input(None)?;
        let mut reseal = make_resealer(Path::new("."))?;
        let out = rewrite(&text, &source, false, &mut *reseal, &mut tally)?;
        return write_output(None, out.as_deref().unwrap_or(&text));
    }
    let mut pending = Vec::new();
    for file in manifest_files(paths)? {
        let text = crate::files::read_file(&file, "PATH")?;
        // fast path: a file that cannot hold a SealedSecret is not parsed. The kind may be spelled with escapes
        // (JSON `\u0053`, YAML double-quoted `\x53`), so a file with a backslash is parsed anyway.
        if !text.contains("SealedSecret") && !text.contains('\\') {
            continue;
        }
        let json = file.extension().is_some_and(|e| e == "json");
        let mut reseal = make_resealer(&file)?;
        if let Some(new) = rewrite(&text, &file.display().to_string(), json, &mut *reseal, &mut tally)? {
            pending.push((file, new));
        }
    }
    for (file, text) in &pending {
        write_atomic(file, text.as_bytes(), Mode::KeepOr(0o644))?;
    }
    eprintln!(
        "re-sealed {} values in {} SealedSecrets across {} files",
        tally.values,
        tally.objects,
        pending.len()
    );
    Ok(())
}

/// The new text of a manifest file, or `None` when it holds no SealedSecret.
fn rewrite(
    text: &str,
    source: &str,
    json: bool,
    reseal: &mut Reseal<'_>,
    tally: &mut Tally,
) -> Result<Option<String>> {
    let mut reseal_value = |doc: Value, what: &str, tally: &mut Tally| -> Result<Value> {
        let ss = sealed_from_doc(doc, what)?;
        sealed_to_doc(&reseal(ss, tally)?)
    };
    if json || text.trim_start().starts_with('{') {
        let mut doc: Value = match serde_json::from_str(text) {
            Ok(doc) => doc,
            // not JSON and not naming a SealedSecret (parsed only for a backslash): not one of ours to fix
            Err(_) if !text.contains("SealedSecret") => return Ok(None),
            Err(e) => bail!(hinted(
                format!("{source} is not valid JSON: {e}"),
                "fix the JSON syntax"
            )),
        };
        let changed = if is_sealed_secret(&doc) {
            doc = reseal_value(doc, source, tally)?;
            true
        } else if let Some(items) = doc.get_mut("items").and_then(Value::as_array_mut) {
            let mut changed = false;
            for item in items.iter_mut().filter(|i| is_sealed_secret(i)) {
                *item = reseal_value(item.take(), source, tally)?;
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
        seg.body = to_yaml(&reseal_value(doc, &what, tally)?)?;
        changed = true;
    }
    Ok(changed.then(|| join_segments(&segments)))
}

fn offline(
    mut ss: SealedSecret,
    ring: &Keyring,
    recipients: &[Recipient],
    tally: &mut Tally,
) -> Result<SealedSecret> {
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
    Ok(ss)
}
