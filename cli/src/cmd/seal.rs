//! `sealant seal`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use sealant_seal::{Scope, Target};
use zeroize::Zeroizing;

use crate::config::{self, Choice};
use crate::docs::{parse_documents, render};
use crate::error::hinted;
use crate::files::{Mode, read_input, write_atomic, write_output};
use crate::k8s::check_dns_name;
use crate::secret::{
    agree, build_sealed, fingerprints, recorded_scope, seal_data, sealed_from_doc, sealed_to_doc,
    secret_from_doc,
};
use crate::{Format, RecipientArgs};

#[derive(Debug)]
pub struct Options {
    pub input: Option<PathBuf>,
    pub output: Option<PathBuf>,
    pub format: Format,
    pub recipients: RecipientArgs,
    pub scope: Option<Scope>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub raw: bool,
    pub key: Option<String>,
    pub from_file: Option<PathBuf>,
    pub merge_into: Option<PathBuf>,
}

pub fn run(o: Options) -> Result<()> {
    if o.raw {
        return raw(&o);
    }
    if let Some(file) = &o.merge_into {
        return merge(&o, file);
    }
    let (text, source) = read_input(o.input.as_deref())?;
    let docs = parse_documents(&text, &source)?;
    drop(text);
    if docs.is_empty() {
        bail!(hinted(
            format!("{source} holds no documents"),
            "pipe a Secret in, e.g. `kubectl create secret generic NAME --from-literal=KEY=VALUE \
             --dry-run=client -o yaml | sealant seal`",
        ));
    }
    let anchor = o
        .output
        .clone()
        .or_else(|| o.input.clone())
        .unwrap_or_else(|| PathBuf::from("."));
    let choice = config::choose(&o.recipients, o.scope, &anchor)?;
    let mut out = Vec::with_capacity(docs.len());
    for (i, doc) in docs.into_iter().enumerate() {
        let secret = secret_from_doc(doc, i + 1)?;
        let label = format!(
            "document {} (Secret {})",
            i + 1,
            secret.name.as_deref().unwrap_or("<unnamed>")
        );
        let (name, namespace) = place(&label, secret.name.clone(), secret.namespace.clone(), &o, &choice)?;
        let ss = build_sealed(
            &secret,
            &name,
            namespace.as_deref(),
            choice.scope,
            &choice.recipients,
        )?;
        out.push(sealed_to_doc(&ss)?);
    }
    write_output(o.output.as_deref(), &render(&out, o.format)?)
}

/// Name and namespace of the result, checked against the flags and the scope.
fn place(
    label: &str,
    name: Option<String>,
    namespace: Option<String>,
    o: &Options,
    choice: &Choice,
) -> Result<(String, Option<String>)> {
    let name = agree("name", name, o.name.as_deref(), label)?.ok_or_else(|| {
        hinted(
            format!("{label} has no metadata.name"),
            "set metadata.name or pass --name",
        )
    })?;
    let namespace = agree("namespace", namespace, o.namespace.as_deref(), label)?;
    check_dns_name(&name, "name", 253)?;
    match &namespace {
        Some(ns) => check_dns_name(ns, "namespace", 63)?,
        None if choice.scope != Scope::ClusterWide => bail!(hinted(
            format!(
                "{label} has no namespace, and {} scope binds the namespace",
                choice.scope
            ),
            "set metadata.namespace or pass --namespace (or seal with --scope cluster-wide)",
        )),
        None => {}
    }
    Ok((name, namespace))
}

/// `--raw`: one value from `--from-file` or standard input, printed as sealed text.
fn raw(o: &Options) -> Result<()> {
    let choice = config::choose(&o.recipients, o.scope, Path::new("."))?;
    let need = |flag: &str, v: &Option<String>| -> Result<String> {
        match v {
            Some(v) if !v.is_empty() => Ok(v.clone()),
            _ => Err(hinted(
                format!("--raw with {} scope needs --{flag}", choice.scope),
                format!("pass --{flag}, or choose a wider --scope"),
            )),
        }
    };
    let (namespace, name, key) = match choice.scope {
        Scope::Strict => (
            need("namespace", &o.namespace)?,
            need("name", &o.name)?,
            need("key", &o.key)?,
        ),
        Scope::NamespaceWide => (need("namespace", &o.namespace)?, String::new(), String::new()),
        Scope::ClusterWide => Default::default(),
    };
    let mut value = Zeroizing::new(Vec::new());
    match &o.from_file {
        Some(p) => {
            std::fs::File::open(p)
                .and_then(|mut f| f.read_to_end(&mut value))
                .map_err(|e| {
                    hinted(
                        format!("cannot read {}: {e}", p.display()),
                        "check the --from-file path",
                    )
                })?;
        }
        None => {
            std::io::stdin().read_to_end(&mut value)?;
            if value.is_empty() {
                bail!(hinted(
                    "nothing to seal: standard input was empty",
                    "pipe the value in (`printf %s VALUE | sealant seal --raw …`), or pass --from-file FILE \
                     (--from-file /dev/null seals an empty value on purpose)",
                ));
            }
        }
    }
    let target = Target {
        namespace: &namespace,
        name: &name,
        key: &key,
    };
    let sealed = sealant_seal::seal(&choice.recipients, choice.scope, &target, &value)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{sealed}")?;
    Ok(())
}

/// `--merge-into FILE`: seal the input's keys into an existing SealedSecret, leaving its other values as they
/// are, byte for byte.
fn merge(o: &Options, file: &Path) -> Result<()> {
    let existing_text = crate::files::read_file(file, "--merge-into")?;
    let mut existing_docs = parse_documents(&existing_text, &file.display().to_string())?;
    if existing_docs.len() != 1 {
        bail!(hinted(
            format!(
                "{} holds {} documents; --merge-into takes a file with one SealedSecret",
                file.display(),
                existing_docs.len()
            ),
            "split the file, or seal into a new file with -o",
        ));
    }
    let mut ss = sealed_from_doc(existing_docs.remove(0), &file.display().to_string())?;
    let scope = recorded_scope(&ss)?;
    if let Some(s) = o.scope.filter(|s| *s != scope) {
        bail!(hinted(
            format!("{} is sealed with {scope} scope, not {s}", file.display()),
            "drop --scope, or seal into a new file to change the scope",
        ));
    }
    let (text, source) = read_input(o.input.as_deref())?;
    let mut docs = parse_documents(&text, &source)?;
    drop(text);
    if docs.len() != 1 {
        bail!(hinted(
            format!(
                "{source} holds {} documents; --merge-into takes one Secret",
                docs.len()
            ),
            "pass one Secret"
        ));
    }
    let secret = secret_from_doc(docs.remove(0), 1)?;
    let label = format!("Secret {}", secret.name.as_deref().unwrap_or("<unnamed>"));
    let choice = config::choose(&o.recipients, Some(scope), file)?;
    let file_ns = ss.metadata.namespace.clone();
    let file_name = ss.metadata.name.clone();
    let (name, namespace) = place(
        &label,
        secret.name.clone().or_else(|| file_name.clone()),
        secret.namespace.clone().or_else(|| file_ns.clone()),
        o,
        &choice,
    )?;
    if Some(&name) != file_name.as_ref() || namespace != file_ns {
        bail!(hinted(
            format!(
                "{label} does not belong in {}: it is {name}, the file holds {}",
                file.display(),
                crate::cmd::object_name(&ss)
            ),
            "merge into the SealedSecret of the same name and namespace",
        ));
    }
    let mut new_fps = fingerprints(&choice.recipients);
    let mut old_fps = ss.spec.recipients.clone();
    new_fps.sort();
    old_fps.sort();
    if new_fps != old_fps {
        bail!(hinted(
            format!(
                "{} is sealed to keys {} but the recipients given are {}",
                file.display(),
                old_fps.join(", "),
                new_fps.join(", ")
            ),
            "pass the same recipients, or change the recipients of the whole file with `sealant reencrypt`",
        ));
    }
    let sealed = seal_data(
        &secret.data,
        namespace.as_deref().unwrap_or(""),
        &name,
        scope,
        &choice.recipients,
    )?;
    ss.spec.encrypted_data.extend(sealed);
    let json = file.extension().is_some_and(|e| e == "json") || existing_text.trim_start().starts_with('{');
    let format = if json { Format::Json } else { Format::Yaml };
    write_atomic(
        file,
        render(&[sealed_to_doc(&ss)?], format)?.as_bytes(),
        Mode::KeepOr(0o644),
    )
}
