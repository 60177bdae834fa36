//! Commands that talk to the cluster: `recipients fetch`, `verify`, `keys backup`.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams};
use sealant_seal::parse_recipients;
use serde_json::{Value, json};

use crate::cluster::{ClusterArgs, api_error, client, context_name, proxy_post, runtime};
use crate::docs::{parse_documents, render};
use crate::error::hinted;
use crate::files::{Mode, read_input, write_atomic};
use crate::secret::sealed_from_doc;
use crate::{Format, cmd::object_name};

const RECIPIENTS_CONFIGMAP: &str = "sealant-recipients";
const RECIPIENTS_FILE_KEY: &str = "recipients.txt";
const KEY_SELECTOR: &str = "sealant.dev/key=identity";

/// The default cache file for a context's recipients.
pub fn cache_path(context: &str) -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("."));
    let safe: String = context
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    base.join("sealant")
        .join("recipients")
        .join(format!("{safe}.txt"))
}

/// `sealant recipients fetch`: the controller's published recipients, saved to a file.
pub fn recipients_fetch(args: &ClusterArgs, output: Option<&Path>) -> Result<()> {
    let text = runtime()?.block_on(async {
        let client = client(args).await?;
        let api: Api<ConfigMap> = Api::namespaced(client, &args.controller_namespace);
        let cm = api.get(RECIPIENTS_CONFIGMAP).await.map_err(|e| {
            api_error(
                e,
                &format!("ConfigMap {}/{RECIPIENTS_CONFIGMAP}", args.controller_namespace),
                args,
            )
        })?;
        Ok::<_, anyhow::Error>(
            cm.data
                .and_then(|mut d| d.remove(RECIPIENTS_FILE_KEY))
                .unwrap_or_default(),
        )
    })?;
    let recipients = parse_recipients(&text).map_err(|e| {
        hinted(
            format!("the published recipients are not valid: {e}"),
            "check the controller's logs",
        )
    })?;
    if recipients.is_empty() {
        bail!(hinted(
            "the controller has published no recipient yet",
            "wait until sealant-controller has made its key (it does on first start unless --no-keygen)",
        ));
    }
    let path = output
        .map(Path::to_path_buf)
        .unwrap_or_else(|| cache_path(&context_name(args)));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    write_atomic(&path, text.as_bytes(), Mode::KeepOr(0o644))?;
    for r in &recipients {
        println!("{r}");
    }
    eprintln!(
        "saved to {} (seal with: sealant seal -R {})",
        path.display(),
        path.display()
    );
    Ok(())
}

/// `sealant verify`: asks the controller whether it can unseal each SealedSecret.
pub fn verify(args: &ClusterArgs, input: Option<&Path>) -> Result<()> {
    let (text, source) = read_input(input)?;
    let docs = parse_documents(&text, &source)?;
    if docs.is_empty() {
        bail!(hinted(
            format!("{source} holds no documents"),
            "pass a SealedSecret file with -f"
        ));
    }
    let mut failures = 0;
    runtime()?.block_on(async {
        let client = client(args).await?;
        for (i, doc) in docs.into_iter().enumerate() {
            let ss = sealed_from_doc(doc, &format!("document {}", i + 1))?;
            let body = serde_json::to_string(&ss)?;
            let (status, answer) = proxy_post(&client, args, "/v1/verify", body, "application/json").await?;
            let answer: Value = serde_json::from_str(&answer).unwrap_or_else(|_| json!({"message": answer}));
            let name = object_name(&ss);
            if status == 200 {
                println!("{name}: ok");
            } else {
                failures += 1;
                println!(
                    "{name}: {}: {}",
                    answer["reason"].as_str().unwrap_or("Failed"),
                    answer["message"].as_str().unwrap_or_default()
                );
            }
        }
        Ok::<_, anyhow::Error>(())
    })?;
    if failures > 0 {
        bail!(hinted(
            format!("{failures} SealedSecret(s) would not unseal in this cluster"),
            "seal them again with `sealant seal` to the cluster's recipients (`sealant recipients fetch`)",
        ));
    }
    Ok(())
}

/// `sealant keys backup`: the controller's key Secrets, to restore with `kubectl apply -f`, or as an identity
/// file for `sealant unseal -i`.
pub fn keys_backup(args: &ClusterArgs, output: Option<&Path>, identity_file: bool) -> Result<()> {
    let secrets = runtime()?.block_on(async {
        let client = client(args).await?;
        let api: Api<Secret> = Api::namespaced(client, &args.controller_namespace);
        api.list(&ListParams::default().labels(KEY_SELECTOR))
            .await
            .map_err(|e| api_error(e, &format!("key Secrets in {}", args.controller_namespace), args))
    })?;
    if secrets.items.is_empty() {
        bail!(hinted(
            format!(
                "no key Secrets ({KEY_SELECTOR}) in namespace {}",
                args.controller_namespace
            ),
            "pass --controller-namespace if the controller runs elsewhere",
        ));
    }
    let contents = zeroize::Zeroizing::new(if identity_file {
        let mut out = String::new();
        for s in &secrets.items {
            if let Some(b) = s.data.as_ref().and_then(|d| d.get("identity.txt")) {
                out.push_str(&String::from_utf8_lossy(&b.0));
            }
        }
        out
    } else {
        let docs: Vec<Value> = secrets
            .items
            .iter()
            .map(|s| {
                json!({
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {
                        "name": s.metadata.name,
                        "namespace": s.metadata.namespace,
                        "labels": s.metadata.labels,
                        "annotations": s.metadata.annotations,
                    },
                    "type": s.type_,
                    "data": s.data,
                })
            })
            .collect();
        let mut out =
            String::from("# sealant key backup: restore with `kubectl apply -f`. Keep this file secret.\n");
        out.push_str(&render(&docs, Format::Yaml)?);
        out
    });
    match output {
        Some(p) => {
            write_atomic(p, contents.as_bytes(), Mode::Exactly(0o600))?;
            eprintln!(
                "backed up {} key(s) to {} (mode 0600)",
                secrets.items.len(),
                p.display()
            );
        }
        None => print!("{}", contents.as_str()),
    }
    Ok(())
}
