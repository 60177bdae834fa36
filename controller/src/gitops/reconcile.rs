//! The GitSync reconciler: ask the remote for its revision (no fetch when unchanged) -> checkout (cached) ->
//! load and validate -> staged apply as the GitSync's ServiceAccount -> prune -> status with the inventory.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::events::Recorder;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use sealant_crds::{GitSync, GitSyncStatus, Inventory, InventoryEntry};
use sealant_gitsource::{Auth, Fetcher, GitError, Reference, Source};
use serde_json::json;
use tracing::{info, instrument, warn};
use zeroize::Zeroizing;

use super::apply::{Applier, ApplyError, Options};
use super::load::{ObjectId, load};
use crate::external::schedule::parse_go_duration;
use crate::metrics::Metrics;
use crate::status;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the GitSync has no namespace")]
    NoNamespace,
}

/// What the reconciler shares.
pub struct Context {
    pub client: kube::Client,
    /// The configuration the client was made from, to impersonate ServiceAccounts.
    pub config: kube::Config,
    pub metrics: Metrics,
    pub recorder: Recorder,
    pub fetcher: Arc<Fetcher>,
    /// Consecutive failures by GitSync uid, for the retry backoff.
    pub failures: Mutex<HashMap<String, u32>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

impl Context {
    pub fn new(
        client: kube::Client,
        config: kube::Config,
        metrics: Metrics,
        recorder: Recorder,
        cache: PathBuf,
    ) -> Self {
        Context {
            client,
            config,
            metrics,
            recorder,
            fetcher: Arc::new(Fetcher::new(cache)),
            failures: Mutex::default(),
        }
    }
}

struct Outcome {
    ready: bool,
    reason: &'static str,
    message: String,
    attempted: Option<String>,
    applied: Option<(String, Vec<InventoryEntry>)>,
}

fn fail(reason: &'static str, message: String, attempted: Option<String>) -> Outcome {
    Outcome {
        ready: false,
        reason,
        message,
        attempted,
        applied: None,
    }
}

#[instrument(skip_all, fields(namespace = gs.namespace().unwrap_or_default(), name = gs.name_any()))]
pub async fn reconcile(gs: Arc<GitSync>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(&gs, &ctx).await;
    ctx.metrics.observe_reconcile("gitsync", started.elapsed());
    if result.is_err() {
        ctx.metrics.count_reconcile_error("gitsync");
    }
    result
}

async fn source(ctx: &Context, gs: &GitSync, ns: &str) -> Result<Source, String> {
    let spec = &gs.spec;
    let r = spec.reference.clone().unwrap_or_default();
    let reference = match (r.commit, r.tag, r.branch) {
        (Some(c), _, _) => Reference::Commit(c),
        (None, Some(t), _) => Reference::Tag(t),
        (None, None, Some(b)) => Reference::Branch(b),
        (None, None, None) => Reference::Branch("main".into()),
    };
    let auth = match &spec.secret_ref {
        None => Auth::None,
        Some(r) => {
            let secret = Api::<Secret>::namespaced(ctx.client.clone(), ns)
                .get_opt(&r.name)
                .await
                .map_err(|e| format!("reading Secret {ns}/{}: {e}", r.name))?
                .ok_or_else(|| format!("secretRef: Secret {ns}/{} not found", r.name))?;
            let data = secret.data.unwrap_or_default();
            let get = |k: &str| {
                data.get(k)
                    .map(|b| Zeroizing::new(String::from_utf8_lossy(&b.0).trim().to_owned()))
            };
            if let (Some(u), Some(p)) = (get("username"), get("password")) {
                Auth::Basic {
                    username: u.to_string(),
                    password: p,
                }
            } else if let Some(t) = get("bearerToken") {
                Auth::Bearer(t)
            } else if let Some(id) = get("identity") {
                Auth::Ssh {
                    identity: id,
                    known_hosts: get("known_hosts").map(|k| k.to_string()).unwrap_or_default(),
                }
            } else {
                return Err(format!(
                    "secretRef: Secret {ns}/{} needs username+password, bearerToken, or identity (+known_hosts)",
                    r.name
                ));
            }
        }
    };
    let timeout = timeout_of(gs);
    Ok(Source {
        url: spec.url.clone(),
        reference,
        auth,
        timeout,
    })
}

fn timeout_of(gs: &GitSync) -> Duration {
    gs.spec
        .timeout
        .as_deref()
        .and_then(|t| parse_go_duration(t).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(Duration::from_secs(120))
}

fn git_reason(e: &GitError) -> &'static str {
    match e {
        GitError::Auth { .. } => "GitAuthFailed",
        GitError::NotFound { .. } => "GitNotFound",
        GitError::Unreachable { .. } => "GitUnreachable",
        _ => "GitFailed",
    }
}

async fn reconcile_inner(gs: &GitSync, ctx: &Context) -> Result<Action, Error> {
    let ns = gs.namespace().ok_or(Error::NoNamespace)?;
    let uid = gs.metadata.uid.clone().unwrap_or_default();
    if gs.spec.suspend {
        finish(
            ctx,
            gs,
            &ns,
            fail(
                "Suspended",
                "reconciliation is suspended (spec.suspend)".into(),
                None,
            ),
        )
        .await?;
        return Ok(Action::await_change());
    }
    let interval = match parse_go_duration(&gs.spec.interval) {
        Ok(d) if !d.is_zero() => d,
        _ => {
            let message = format!("interval `{}` is not a Go duration such as 5m", gs.spec.interval);
            finish(ctx, gs, &ns, fail("InvalidSpec", message, None)).await?;
            return Ok(Action::await_change());
        }
    };
    let outcome = sync(ctx, gs, &ns).await?;
    let ok = outcome.ready;
    finish(ctx, gs, &ns, outcome).await?;
    let failures = {
        let mut f = ctx.failures.lock().expect("failures lock");
        if ok {
            f.remove(&uid);
            0
        } else {
            let n = f.entry(uid).or_default();
            *n += 1;
            *n
        }
    };
    Ok(Action::requeue(if ok {
        interval
    } else {
        crate::external::schedule::retry_delay(failures, interval)
    }))
}

async fn sync(ctx: &Context, gs: &GitSync, ns: &str) -> Result<Outcome, Error> {
    let source = match source(ctx, gs, ns).await {
        Ok(s) => s,
        Err(message) => return Ok(fail("InvalidSpec", message, None)),
    };
    // ask the remote first; fetch only a revision we do not hold
    let fetcher = ctx.fetcher.clone();
    let s = source.clone();
    let revision = match tokio::task::spawn_blocking(move || fetcher.remote_revision(&s)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Ok(fail(git_reason(&e), e.to_string(), None)),
        Err(e) => return Ok(fail("GitFailed", format!("git task failed: {e}"), None)),
    };
    let status = gs.status.clone().unwrap_or_default();
    let revision_changed = status.last_applied_revision.as_deref() != Some(revision.as_str())
        || status.observed_generation != gs.metadata.generation;
    let fetcher = ctx.fetcher.clone();
    let (s, rev, path) = (source.clone(), revision.clone(), gs.spec.path.clone());
    let snapshot = match tokio::task::spawn_blocking(move || fetcher.checkout(&s, &rev, &path)).await {
        Ok(Ok(snap)) => snap,
        Ok(Err(e)) => return Ok(fail(git_reason(&e), e.to_string(), Some(revision))),
        Err(e) => return Ok(fail("GitFailed", format!("git task failed: {e}"), Some(revision))),
    };
    let files: Vec<(String, Vec<u8>)> = snapshot.files.into_iter().map(|f| (f.path, f.contents)).collect();
    let objects = match load(&files, &gs.spec.path) {
        Ok(o) => o,
        Err(e) => {
            let message = format!(
                "revision {}: {e}; nothing of this revision was applied: fix the manifest and commit again",
                short(&revision)
            );
            return Ok(fail("ValidationFailed", message, Some(revision)));
        }
    };
    let previous: Vec<ObjectId> = status
        .inventory
        .as_ref()
        .map(|i| i.entries.iter().filter_map(|e| ObjectId::parse(&e.id)).collect())
        .unwrap_or_default();
    let client = match &gs.spec.service_account_name {
        None => ctx.client.clone(),
        Some(sa) => {
            let mut config = ctx.config.clone();
            config.auth_info.impersonate = Some(format!("system:serviceaccount:{ns}:{sa}"));
            config.auth_info.impersonate_groups = Some(vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".into(),
            ]);
            match kube::Client::try_from(config) {
                Ok(c) => c,
                Err(e) => {
                    return Ok(fail(
                        "ApplyFailed",
                        format!("impersonating {sa}: {e}"),
                        Some(revision),
                    ));
                }
            }
        }
    };
    let opts = Options {
        owner: format!("{ns}.{}", gs.name_any()),
        default_namespace: ns.to_owned(),
        target_namespace: gs.spec.target_namespace.clone(),
        force: gs.spec.force,
        timeout: timeout_of(gs),
    };
    let mut applier = Applier::new(client);
    let report = match applier
        .apply(
            &objects,
            &previous,
            &opts,
            revision_changed,
            gs.spec.prune,
            gs.spec.allow_empty,
        )
        .await
    {
        Ok(r) => r,
        Err(e @ ApplyError::Kube(kube::Error::Api(_))) | Err(e @ ApplyError::Invalid { .. }) => {
            return Ok(fail(
                e.reason(),
                format!("revision {}: {e}", short(&revision)),
                Some(revision),
            ));
        }
        Err(e) => {
            return Ok(fail(
                e.reason(),
                format!("revision {}: {e}", short(&revision)),
                Some(revision),
            ));
        }
    };
    let mut entries: Vec<InventoryEntry> = report
        .applied
        .iter()
        .map(|(id, v)| InventoryEntry {
            id: id.to_string(),
            v: v.clone(),
        })
        .collect();
    for (id, why) in &report.prune_failed {
        warn!(object = %id, reason = %why, "prune failed; kept in the inventory");
        entries.push(InventoryEntry {
            id: id.to_string(),
            v: String::new(),
        });
    }
    entries.sort();
    if report.written > 0 || !report.pruned.is_empty() {
        info!(revision = %short(&revision), written = report.written, unchanged = report.unchanged, pruned = report.pruned.len(), "applied");
    }
    // The message stays the same across reconciles of one revision, so a no-change reconcile writes nothing.
    let mut message = format!(
        "applied revision {} ({} objects)",
        short(&revision),
        report.applied.len()
    );
    if !report.prune_failed.is_empty() {
        message.push_str(&format!(
            "; {} could not be pruned and stay in the inventory",
            report.prune_failed.len()
        ));
    }
    Ok(Outcome {
        ready: true,
        reason: "ReconciliationSucceeded",
        message,
        attempted: Some(revision.clone()),
        applied: Some((revision, entries)),
    })
}

fn short(rev: &str) -> &str {
    &rev[..rev.len().min(12)]
}

async fn finish(ctx: &Context, gs: &GitSync, ns: &str, o: Outcome) -> Result<(), kube::Error> {
    let current = gs.status.clone().unwrap_or_default();
    let stalled = matches!(
        o.reason,
        "ValidationFailed" | "InvalidSpec" | "GitAuthFailed" | "PruneRefused"
    );
    let conditions = vec![
        status::condition(
            "Ready",
            o.ready,
            o.reason,
            &o.message,
            gs.metadata.generation,
            &current.conditions,
        ),
        status::condition(
            "Reconciling",
            false,
            if o.ready { "Succeeded" } else { o.reason },
            "",
            gs.metadata.generation,
            &current.conditions,
        ),
        status::condition(
            "Stalled",
            stalled,
            o.reason,
            if stalled { &o.message } else { "" },
            gs.metadata.generation,
            &current.conditions,
        ),
    ];
    let (applied_rev, inventory) = match &o.applied {
        Some((rev, entries)) => (
            Some(rev.clone()),
            Some(Inventory {
                entries: entries.clone(),
            }),
        ),
        None => (current.last_applied_revision.clone(), current.inventory.clone()),
    };
    let status = GitSyncStatus {
        conditions,
        last_applied_revision: applied_rev,
        last_attempted_revision: o.attempted.clone().or(current.last_attempted_revision.clone()),
        inventory,
        observed_generation: gs.metadata.generation,
        last_reconcile_time: Some(Timestamp::now().to_string()),
    };
    let changed_condition = current
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .is_none_or(|c| {
            c.reason != o.reason
                || c.message != o.message
                || c.status != if o.ready { "True" } else { "False" }
        });
    // A reconcile that changed nothing writes nothing, not even the status.
    let same = |a: &[Condition], b: &[Condition]| {
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| {
                (&x.type_, &x.status, &x.reason, &x.message) == (&y.type_, &y.status, &y.reason, &y.message)
            })
    };
    if same(&status.conditions, &current.conditions)
        && status.last_applied_revision == current.last_applied_revision
        && status.last_attempted_revision == current.last_attempted_revision
        && status.inventory == current.inventory
        && status.observed_generation == current.observed_generation
    {
        return Ok(());
    }
    let api: Api<GitSync> = Api::namespaced(ctx.client.clone(), ns);
    api.patch_status(
        &gs.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await?;
    if changed_condition {
        crate::events::publish(
            &ctx.recorder,
            &gs.object_ref(&()),
            o.ready,
            o.reason,
            &o.message,
            "Sync",
        )
        .await;
    }
    Ok(())
}

pub fn error_policy(_gs: Arc<GitSync>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(%error, "GitSync reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}
