//! The tasks around keys: a live watch of the key Secrets (every replica), and, on the leader, making the
//! first key, renewing it, and publishing the recipients ConfigMap.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, PostParams};
use kube::runtime::watcher::{self, Event};
use sealant_seal::Identity;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::keys::{KEY_LABEL, KEY_LABEL_VALUE, KeyStore, RECIPIENTS_CONFIGMAP, key_secret, renewal_due};

/// Keeps `store` equal to the key Secrets in `namespace`; bumps `changed` after the first complete list and
/// after every change of the keys (never mid-list), and sets `ready` after the first list. A re-list that finds
/// the same keys (a dropped watch, a 410 Gone) bumps nothing: every bump re-reconciles every SealedSecret.
pub async fn watch_keys(
    client: kube::Client,
    namespace: String,
    store: KeyStore,
    ready: Arc<AtomicBool>,
    changed: watch::Sender<u64>,
) {
    let api: Api<Secret> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().labels(&format!("{KEY_LABEL}={KEY_LABEL_VALUE}"));
    let mut stream = watcher::watcher(api, config).boxed();
    let mut initial = Vec::new();
    let mut listed_once = false;
    while let Some(event) = stream.next().await {
        let before = fingerprints(&store);
        let mut first_listing = false;
        match event {
            Ok(Event::Init) => {
                initial.clear();
                continue;
            }
            Ok(Event::InitApply(s)) => {
                initial.push(s);
                continue;
            }
            Ok(Event::InitDone) => {
                for e in store.replace_all(initial.iter()) {
                    error!(error = %e, "key Secret ignored");
                }
                initial.clear();
                ready.store(true, Ordering::Relaxed);
                first_listing = !std::mem::replace(&mut listed_once, true);
                info!(keys = store.len(), "key Secrets listed");
            }
            Ok(Event::Apply(s)) => match store.upsert(&s) {
                Ok(n) => info!(
                    secret = s.metadata.name.as_deref().unwrap_or_default(),
                    keys = n,
                    "key Secret loaded"
                ),
                Err(e) => error!(error = %e, "key Secret ignored"),
            },
            Ok(Event::Delete(s)) => store.remove(s.metadata.name.as_deref().unwrap_or_default()),
            Err(e) => {
                warn!(error = %e, "key Secret watch failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        }
        if first_listing || fingerprints(&store) != before {
            changed.send_modify(|v| *v += 1);
        }
    }
}

/// The keys held, in a comparable form.
fn fingerprints(store: &KeyStore) -> Vec<String> {
    let mut f: Vec<String> = store.list().into_iter().map(|(f, _, _)| f.to_string()).collect();
    f.sort_unstable();
    f
}

/// Leader duty: make the first key (unless `keygen` is off), renew it every `renew`, and keep the recipients
/// ConfigMap current. Runs until dropped.
pub async fn maintain_keys(
    client: kube::Client,
    namespace: String,
    store: KeyStore,
    keygen: bool,
    renew: Option<Duration>,
    mut changed: watch::Receiver<u64>,
) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let configmaps: Api<ConfigMap> = Api::namespaced(client, &namespace);
    // Decide about keys only once the key Secrets have been listed, or a restart would make a needless key.
    if changed.wait_for(|v| *v > 0).await.is_err() {
        return;
    }
    loop {
        let now = Timestamp::now();
        let newest = store.newest().map(|(_, created)| created);
        if keygen && renewal_due(newest, now, renew) {
            let identity = Identity::generate();
            match secrets
                .create(&PostParams::default(), &key_secret(&identity, &namespace, now))
                .await
            {
                Ok(created) => {
                    if let Err(e) = store.upsert(&created) {
                        error!(error = %e, "new key Secret unreadable");
                    }
                    info!(fingerprint = %identity.fingerprint(), "new sealing key made");
                }
                Err(e) => warn!(error = %e, "could not store a new key; retrying"),
            }
        } else if store.is_empty() {
            warn!(
                "no sealing key: key generation is off, so restore one (`sealant keys backup` output) into {namespace}"
            );
        }
        if let Err(e) = publish_recipients(&configmaps, &store, &namespace).await {
            warn!(error = %e, "could not publish the recipients ConfigMap; retrying");
        }
        let wait = match (store.newest(), renew) {
            (Some((_, created)), Some(period)) => {
                let age = Timestamp::now().duration_since(created).unsigned_abs();
                period
                    .saturating_sub(age)
                    .clamp(Duration::from_secs(1), Duration::from_secs(60))
            }
            _ => Duration::from_secs(60),
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            r = changed.changed() => if r.is_err() { return },
        }
    }
}

async fn publish_recipients(
    api: &Api<ConfigMap>,
    store: &KeyStore,
    namespace: &str,
) -> Result<(), kube::Error> {
    if store.is_empty() {
        return Ok(());
    }
    let mut wanted = store.recipients_configmap(namespace);
    match api.get_opt(RECIPIENTS_CONFIGMAP).await? {
        None => {
            api.create(&PostParams::default(), &wanted).await?;
        }
        Some(current) if current.data != wanted.data => {
            wanted.metadata.resource_version = current.metadata.resource_version;
            api.replace(RECIPIENTS_CONFIGMAP, &PostParams::default(), &wanted)
                .await?;
        }
        Some(_) => {}
    }
    Ok(())
}
