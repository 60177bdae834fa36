//! The ExternalSecret reconciler: find the store -> (when due) fetch through the store's coalescer -> pure
//! build -> write the Secret per creationPolicy -> roll workloads that asked for it -> status.
//!
//! Provider errors never delete or blank an existing Secret: the Secret stays as it was, the condition says
//! why, and the fetch is retried with backoff (5 s doubling, capped by refreshInterval).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as StdInstant};

use crate::events::Recorder;
use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use sealant_crds::{CreationPolicy, DeletionPolicy, ExternalSecret, ExternalSecretStatus, SecretBinding};
use sealant_providers::ProviderError;
use sealant_seal::Plaintext;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::{info, instrument, warn};

use super::build::{self, BuildError};
use super::reload::{data_hash, reload_patch};
use super::schedule::{due_at, last_tick, parse_go_duration, phase, retry_delay};
use super::stores::{self, Registry};
use crate::metrics::Metrics;
use crate::secretwriter::{self, Applied};

/// Errors talking to the Kubernetes API (retried by the controller). Everything else is a status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the ExternalSecret has no namespace")]
    NoNamespace,
}

/// What the reconciler shares.
pub struct Context {
    pub client: kube::Client,
    pub metrics: Metrics,
    pub recorder: Recorder,
    pub registry: Registry,
    /// Consecutive failures by ExternalSecret uid, for the retry backoff.
    pub failures: Mutex<HashMap<String, u32>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

/// The outcome that goes into the Ready condition.
struct Outcome {
    ready: bool,
    reason: &'static str,
    message: String,
    fetched: bool,
    synced_version: Option<String>,
}

#[instrument(skip_all, fields(namespace = es.namespace().unwrap_or_default(), name = es.name_any()))]
pub async fn reconcile(es: Arc<ExternalSecret>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = StdInstant::now();
    let result = reconcile_inner(&es, &ctx).await;
    ctx.metrics.observe_reconcile("externalsecret", started.elapsed());
    if result.is_err() {
        ctx.metrics.count_reconcile_error("externalsecret");
    }
    result
}

fn fail(reason: &'static str, message: String) -> Outcome {
    Outcome {
        ready: false,
        reason,
        message,
        fetched: false,
        synced_version: None,
    }
}

async fn reconcile_inner(es: &ExternalSecret, ctx: &Context) -> Result<Action, Error> {
    let ns = es.namespace().ok_or(Error::NoNamespace)?;
    let uid = es.metadata.uid.clone().unwrap_or_default();
    let now = Timestamp::now();
    let interval = match parse_go_duration(&es.spec.refresh_interval) {
        Ok(d) => d,
        Err(e) => {
            finish(ctx, es, &ns, fail("InvalidSpec", format!("refreshInterval: {e}"))).await?;
            return Ok(Action::await_change());
        }
    };
    let target = es.spec.target.name.clone().unwrap_or_else(|| es.name_any());
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);

    // the store
    let store = match stores::find(&ctx.client, es).await {
        Ok(s) => s,
        Err(e) => return failed(ctx, es, &ns, &uid, interval, e.reason(), e.to_string()).await,
    };

    // due?
    let status = es.status.clone().unwrap_or_default();
    let last = status
        .refresh_time
        .as_deref()
        .and_then(|t| t.parse::<Timestamp>().ok());
    let store_phase = phase(&store.key, interval);
    let existing = secrets.get_opt(&target).await?;
    let spec_changed = status.observed_generation != es.metadata.generation;
    let writes = !matches!(
        es.spec.target.creation_policy,
        CreationPolicy::None | CreationPolicy::Merge
    );
    let secret_gone = writes && existing.is_none();
    let failing = ctx
        .failures
        .lock()
        .expect("failures lock")
        .get(&uid)
        .copied()
        .unwrap_or(0)
        > 0;
    match due_at(last, now, interval, store_phase) {
        Some(due) if due > now && !spec_changed && !secret_gone && !failing => {
            return Ok(Action::requeue(until(due, now)));
        }
        None if !spec_changed && !secret_gone && !failing => return Ok(Action::await_change()),
        _ => {}
    }

    // fetch, through the store's coalescer: each remote value once per refresh window
    let plan = match build::plan(&es.spec) {
        Ok(p) => p,
        Err(e) => {
            finish(ctx, es, &ns, fail(e.reason(), e.to_string())).await?;
            return Ok(Action::await_change());
        }
    };
    let resolved = match stores::resolve(&ctx.client, &store).await {
        Ok(r) => r,
        Err(e) => return failed(ctx, es, &ns, &uid, interval, e.reason(), e.to_string()).await,
    };
    let client = match ctx.registry.client(&ctx.client, &store, resolved).await {
        Ok(c) => c,
        Err(e) => return failed(ctx, es, &ns, &uid, interval, e.reason(), e.to_string()).await,
    };
    // The start of this refresh window on the monotonic clock; both clocks are read at the same moment, or
    // the time spent above would push the window's start past a sweep another reconcile just made.
    let (wall, mono) = (Timestamp::now(), tokio::time::Instant::now());
    let tick = if interval.is_zero() {
        wall
    } else {
        last_tick(now, interval, store_phase)
    };
    let behind = wall.duration_since(tick).unsigned_abs();
    let fresh_since = mono.checked_sub(behind).unwrap_or(mono);
    let mut refs = plan.refs;
    let mut found = BTreeMap::new();
    for (i, find) in &plan.finds {
        match client.provider.list(find).await {
            Ok(keys) => {
                refs.extend(
                    keys.iter()
                        .map(|k| sealant_providers::RemoteRef::latest(k.clone())),
                );
                found.insert(*i, keys);
            }
            Err(e) => {
                let message = format!("dataFrom[{i}].find: {e}");
                return failed(ctx, es, &ns, &uid, interval, "ProviderError", message).await;
            }
        }
    }
    refs.sort();
    refs.dedup();
    let results = client.coalescer.get(&refs, fresh_since).await;

    // remote values that are gone: deletionPolicy
    let all_missing = results
        .values()
        .all(|r| matches!(r, Err(ProviderError::NotFound { .. })));
    if all_missing && !results.is_empty() {
        let mut keys: Vec<&str> = results.keys().map(|r| r.key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        gone(ctx, es, &ns, &uid, &secrets, existing, &keys.join(", ")).await?;
        let n = count_failure(ctx, &uid);
        return Ok(Action::requeue(retry_delay(n, interval)));
    }

    // build
    let data = match build::data(&es.spec, &found, &results) {
        Ok(d) => d,
        Err(e @ BuildError::Provider { .. }) => {
            return failed(ctx, es, &ns, &uid, interval, e.reason(), e.to_string()).await;
        }
        Err(e) => {
            finish(ctx, es, &ns, fail(e.reason(), e.to_string())).await?;
            return Ok(Action::await_change());
        }
    };

    // a Secret the API server would refuse is reported, not retried blindly without a condition
    if let Some(message) = secretwriter::too_large(data.iter().map(|(k, v)| (k.as_str(), v.as_bytes().len())))
    {
        return failed(ctx, es, &ns, &uid, interval, "SecretTooLarge", message).await;
    }

    // apply
    let applied = apply(&secrets, es, &target, &data, existing).await?;
    let outcome = match applied {
        Applied::Unmanaged => fail(
            "SecretUnmanaged",
            format!(
                "Secret {target} exists and is not owned by this ExternalSecret; annotate it {}=\"true\" to let \
                 sealant manage it, or use creationPolicy Merge",
                secretwriter::MANAGED_ANNOTATION
            ),
        ),
        Applied::Missing => fail(
            "SecretMissing",
            format!("Secret {target} does not exist (creationPolicy Merge)"),
        ),
        a => {
            if a.wrote() {
                ctx.metrics.secret_writes.inc();
                info!(applied = ?a, secret = %target, "Secret written");
                reload_workloads(ctx, &ns, &target, &data).await;
            }
            let synced = secrets
                .get_opt(&target)
                .await?
                .and_then(|s| s.metadata.resource_version);
            Outcome {
                ready: true,
                reason: "SecretSynced",
                message: format!("Secret {target} is in sync"),
                fetched: true,
                synced_version: synced,
            }
        }
    };
    ctx.failures.lock().expect("failures lock").remove(&uid);
    finish(ctx, es, &ns, outcome).await?;
    let next = if interval.is_zero() {
        return Ok(Action::await_change());
    } else {
        last_tick(now, interval, store_phase)
            .checked_add(interval)
            .unwrap_or(now)
    };
    Ok(Action::requeue(until(next, Timestamp::now())))
}

fn until(t: Timestamp, now: Timestamp) -> Duration {
    let d = t.duration_since(now);
    if d.is_negative() {
        Duration::from_millis(100)
    } else {
        d.unsigned_abs().max(Duration::from_millis(100))
    }
}

/// A retryable failure: the Secret stays as it is, the status says why, and the next try backs off.
async fn failed(
    ctx: &Context,
    es: &ExternalSecret,
    ns: &str,
    uid: &str,
    interval: Duration,
    reason: &'static str,
    message: String,
) -> Result<Action, Error> {
    let n = count_failure(ctx, uid);
    warn!(reason, %message, failures = n, "ExternalSecret not synced; the Secret is left as it was");
    finish(
        ctx,
        es,
        ns,
        fail(reason, format!("{message} (the Secret is left as it was)")),
    )
    .await?;
    Ok(Action::requeue(retry_delay(n, interval)))
}

/// One more consecutive failure of ExternalSecret `uid`; the count after it.
fn count_failure(ctx: &Context, uid: &str) -> u32 {
    let mut f = ctx.failures.lock().expect("failures lock");
    let n = f.entry(uid.to_owned()).or_default();
    *n += 1;
    *n
}

/// Every remote value is gone: deletionPolicy decides. The caller looks for the values again on the retry
/// backoff (capped by refreshInterval), so a value created in the provider is picked up by the next refresh;
/// until then a Secret already deleted (or emptied) is not written again and the condition keeps saying so.
async fn gone(
    ctx: &Context,
    es: &ExternalSecret,
    ns: &str,
    uid: &str,
    secrets: &Api<Secret>,
    existing: Option<Secret>,
    keys: &str,
) -> Result<(), Error> {
    let target = es.spec.target.name.clone().unwrap_or_else(|| es.name_any());
    let deleted = || {
        fail(
            "SecretDeleted",
            format!("the remote values are gone; Secret {target} deleted"),
        )
    };
    let emptied = || {
        fail(
            "SecretDeleted",
            format!("the remote values are gone; their keys left {target}"),
        )
    };
    let was_deleted = es
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.reason == "SecretDeleted");
    let outcome = match (es.spec.target.deletion_policy, existing) {
        (DeletionPolicy::Delete, Some(s)) if secretwriter::is_ours(&s, uid) => {
            secrets.delete(&target, &DeleteParams::default()).await?;
            deleted()
        }
        (DeletionPolicy::Delete, None) if was_deleted => deleted(),
        (DeletionPolicy::Merge, Some(s)) if secretwriter::is_ours(&s, uid) => {
            let keys: Vec<String> = s.data.unwrap_or_default().into_keys().collect();
            if !keys.is_empty() {
                let patch = json!({"data": keys.iter().map(|k| (k.clone(), serde_json::Value::Null)).collect::<BTreeMap<_, _>>()});
                secrets
                    .patch(&target, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
            emptied()
        }
        (_, existing) => {
            let secret = if existing.is_some() {
                format!("Secret {target} kept (deletionPolicy)")
            } else {
                "no Secret was written".to_owned()
            };
            fail(
                "RemoteNotFound",
                format!(
                    "no remote value found ({keys}); {secret}; create the values in the provider, or fix the \
                     remoteRef keys"
                ),
            )
        }
    };
    finish(ctx, es, ns, outcome).await?;
    Ok(())
}

async fn apply(
    secrets: &Api<Secret>,
    es: &ExternalSecret,
    target: &str,
    data: &BTreeMap<String, Plaintext>,
    existing: Option<Secret>,
) -> Result<Applied, kube::Error> {
    let bytes: BTreeMap<String, ByteString> = data
        .iter()
        .map(|(k, v)| (k.clone(), ByteString(v.as_bytes().to_vec())))
        .collect();
    let t = &es.spec.target;
    let tpl = t.template.clone().unwrap_or_default();
    let meta = tpl.metadata.unwrap_or_default();
    let uid = es.metadata.uid.clone().unwrap_or_default();
    let owner = match t.creation_policy {
        CreationPolicy::Owner => es.controller_owner_ref(&()),
        CreationPolicy::Orphan => None,
        CreationPolicy::Merge => return secretwriter::merge_data(secrets, existing, &bytes).await,
        CreationPolicy::None => return Ok(Applied::Unchanged),
    };
    let non_empty = |m: BTreeMap<String, String>| (!m.is_empty()).then_some(m);
    let wanted = Secret {
        metadata: ObjectMeta {
            name: Some(target.to_owned()),
            namespace: es.namespace(),
            labels: non_empty(meta.labels),
            annotations: non_empty(meta.annotations),
            owner_references: owner.map(|o| vec![o]),
            ..Default::default()
        },
        type_: Some(tpl.type_.unwrap_or_else(|| "Opaque".to_owned())),
        immutable: t.immutable,
        data: Some(bytes),
        ..Default::default()
    };
    secretwriter::write(secrets, wanted, existing, &uid).await
}

/// Rolls Deployments, StatefulSets and DaemonSets annotated to reload on this Secret.
async fn reload_workloads(ctx: &Context, ns: &str, secret: &str, data: &BTreeMap<String, Plaintext>) {
    let hash = data_hash(data.iter().map(|(k, v)| (k, v.as_bytes())));
    roll::<Deployment>(ctx, ns, secret, &hash).await;
    roll::<StatefulSet>(ctx, ns, secret, &hash).await;
    roll::<DaemonSet>(ctx, ns, secret, &hash).await;
}

async fn roll<K>(ctx: &Context, ns: &str, secret: &str, hash: &str)
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let list = match api.list(&ListParams::default()).await {
        Ok(l) => l,
        Err(e) => {
            warn!(error = %e, kind = K::kind(&()).as_ref(), "cannot list workloads to reload");
            return;
        }
    };
    for w in list.items {
        let Ok(value) = serde_json::to_value(&w) else {
            continue;
        };
        if let Some(patch) = reload_patch(&value, secret, hash) {
            let name = w.name_any();
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    info!(kind = K::kind(&()).as_ref(), workload = %name, secret, "workload rolled for a new Secret")
                }
                Err(e) => warn!(error = %e, workload = %name, "cannot roll workload"),
            }
        }
    }
}

/// Writes the status (only when something in it changed) and an Event on a change of condition.
async fn finish(ctx: &Context, es: &ExternalSecret, ns: &str, o: Outcome) -> Result<(), kube::Error> {
    ctx.metrics
        .external_sync
        .get_or_create(&crate::metrics::ResultLabels {
            result: if o.ready { "ok".into() } else { o.reason.into() },
        })
        .inc();
    let current = es.status.clone().unwrap_or_default();
    let old = current.conditions.iter().find(|c| c.type_ == "Ready");
    let status_str = if o.ready { "True" } else { "False" };
    let same_condition =
        old.is_some_and(|c| c.status == status_str && c.reason == o.reason && c.message == o.message);
    let refresh_time = if o.fetched {
        Some(Timestamp::now().to_string())
    } else {
        current.refresh_time.clone()
    };
    let synced = o
        .synced_version
        .clone()
        .or(current.synced_resource_version.clone());
    if same_condition
        && !o.fetched
        && current.observed_generation == es.metadata.generation
        && synced == current.synced_resource_version
    {
        return Ok(());
    }
    let target = es.spec.target.name.clone().unwrap_or_else(|| es.name_any());
    let status = ExternalSecretStatus {
        conditions: vec![crate::status::condition(
            "Ready",
            o.ready,
            o.reason,
            &o.message,
            es.metadata.generation,
            &current.conditions,
        )],
        refresh_time,
        synced_resource_version: synced,
        binding: Some(SecretBinding { name: target }),
        observed_generation: es.metadata.generation,
    };
    let api: Api<ExternalSecret> = Api::namespaced(ctx.client.clone(), ns);
    api.patch_status(
        &es.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await?;
    if !same_condition {
        crate::events::publish(
            &ctx.recorder,
            &es.object_ref(&()),
            o.ready,
            o.reason,
            &o.message,
            "Sync",
        )
        .await;
    }
    Ok(())
}

/// API failures are retried with a short backoff.
pub fn error_policy(_es: Arc<ExternalSecret>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(%error, "ExternalSecret reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}
