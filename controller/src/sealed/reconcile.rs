//! The SealedSecret reconciler: fetch -> pure build -> apply -> status.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::events::Recorder;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use sealant_crds::{SealedSecret, SealedSecretStatus};
use serde_json::json;
use tracing::{info, instrument, warn};

use super::build::{BuildError, Desired, Reason, build};
use crate::keys::KeyStore;
use crate::metrics::Metrics;
use crate::secretwriter::{self, Applied, MANAGED_ANNOTATION};

/// How often a converged SealedSecret is looked at again (self-heal of edits the watch cannot see).
pub const RESYNC: Duration = Duration::from_secs(3600);

/// Errors talking to the API server (retried with backoff). Build failures are not errors: they are
/// reported in the status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the SealedSecret has no namespace")]
    NoNamespace,
}

/// What the reconciler shares.
#[derive(Clone)]
pub struct Context {
    pub client: kube::Client,
    pub keys: KeyStore,
    pub metrics: Metrics,
    pub recorder: Recorder,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

#[instrument(skip_all, fields(namespace = ss.namespace().unwrap_or_default(), name = ss.name_any()))]
pub async fn reconcile(ss: Arc<SealedSecret>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_inner(&ss, &ctx).await;
    ctx.metrics.observe_reconcile("sealedsecret", started.elapsed());
    if result.is_err() {
        ctx.metrics.count_reconcile_error("sealedsecret");
    }
    result
}

async fn reconcile_inner(ss: &SealedSecret, ctx: &Context) -> Result<Action, Error> {
    let namespace = ss.namespace().ok_or(Error::NoNamespace)?;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    // fetch
    let existing = secrets.get_opt(&ss.name_any()).await?;
    // build
    let built = build(ss, &ctx.keys.keyring());
    // apply
    let outcome = match &built {
        Ok(desired) => match apply(&secrets, ss, desired, existing).await {
            Ok(applied) => Ok(applied),
            // An invalid Secret fails the same way on every retry: say so in the status instead.
            Err(kube::Error::Api(e)) if e.code == 422 => Err(BuildError {
                reason: Reason::Rejected,
                message: format!(
                    "the API server refused the Secret: {}; fix spec.template (or the keys of \
                     spec.encryptedData) so that it makes a valid Secret",
                    e.message
                ),
            }),
            Err(e) => return Err(e.into()),
        },
        Err(e) => Err(e.clone()),
    };
    // status
    let (status, reason, message) = match &outcome {
        Ok(Applied::Unmanaged) => (
            "False",
            Reason::Unmanaged,
            format!(
                "Secret {} exists and is not owned by this SealedSecret; annotate it {MANAGED_ANNOTATION}=\"true\" \
                 to let sealant manage it",
                ss.name_any()
            ),
        ),
        Ok(_) => (
            "True",
            Reason::Unsealed,
            format!("Secret {} is up to date", ss.name_any()),
        ),
        Err(BuildError { reason, message }) => ("False", *reason, message.clone()),
    };
    ctx.metrics
        .count_unseal(if status == "True" { "ok" } else { reason.as_str() });
    let changed = write_status(ctx, ss, &namespace, status, reason, &message).await?;
    if changed
        || matches!(
            outcome,
            Ok(Applied::Created | Applied::Updated | Applied::Recreated)
        )
    {
        crate::events::publish(
            &ctx.recorder,
            &ss.object_ref(&()),
            status == "True",
            reason.as_str(),
            &message,
            "Unseal",
        )
        .await;
    }
    match outcome {
        Ok(Applied::Unmanaged) | Err(_) => {
            warn!(reason = reason.as_str(), %message, "SealedSecret not unsealed");
            Ok(Action::requeue(RESYNC))
        }
        Ok(applied) => {
            if applied != Applied::Unchanged {
                info!(?applied, "Secret written");
            }
            Ok(Action::requeue(RESYNC))
        }
    }
}

/// Writes the Secret when it differs from `desired`; never touches a Secret that is not ours.
async fn apply(
    secrets: &Api<Secret>,
    ss: &SealedSecret,
    desired: &Desired,
    existing: Option<Secret>,
) -> Result<Applied, kube::Error> {
    let uid = ss.metadata.uid.clone().unwrap_or_default();
    secretwriter::write(
        secrets,
        desired.to_secret(ss.controller_owner_ref(&())),
        existing,
        &uid,
    )
    .await
}

/// Patches the status when the Ready condition or observedGeneration changed; returns whether it did.
async fn write_status(
    ctx: &Context,
    ss: &SealedSecret,
    namespace: &str,
    status: &str,
    reason: Reason,
    message: &str,
) -> Result<bool, kube::Error> {
    let current = ss.status.clone().unwrap_or_default();
    let old = current.conditions.iter().find(|c| c.type_ == "Ready");
    let same = old.is_some_and(|c| c.status == status && c.reason == reason.as_str() && c.message == message);
    if same && current.observed_generation == ss.metadata.generation {
        return Ok(false);
    }
    let condition = crate::status::condition(
        "Ready",
        status == "True",
        reason.as_str(),
        message,
        ss.metadata.generation,
        &current.conditions,
    );
    let new = SealedSecretStatus {
        conditions: vec![condition],
        observed_generation: ss.metadata.generation,
    };
    let api: Api<SealedSecret> = Api::namespaced(ctx.client.clone(), namespace);
    api.patch_status(
        &ss.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": new })),
    )
    .await?;
    Ok(true)
}

/// Failures talking to the API are retried with a short backoff.
pub fn error_policy(_ss: Arc<SealedSecret>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(%error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}
