//! Applying a loaded revision: server-side dry-run of every object whose kind the cluster knows (nothing is
//! written when one fails), then staged server-side apply with field manager `sealant` (CRDs, Namespaces and
//! ClusterRoles, waiting until CRDs are established; then secrets, waiting until SealedSecrets and
//! ExternalSecrets are Ready; then the rest). Objects that already hold what the revision says are not
//! written, so a no-change reconcile makes no writes, while drift from manual edits is put back.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use base64::Engine;
use futures::{StreamExt, stream};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::{ApiCapabilities, Discovery, Scope};
use kube::{Client, ResourceExt};
use serde_json::Value;
use tracing::{info, warn};

use super::load::{Object, ObjectId};
use super::stage::{Stage, ordered, to_prune};

pub const FIELD_MANAGER: &str = "sealant";
/// The label on every object a GitSync applied: `<namespace>.<name>` of the GitSync. Prune deletes only
/// objects that carry it.
pub const OWNER_LABEL: &str = "sealant.dev/gitsync";
/// `sealant.dev/prune: disabled` on an object keeps prune away from it.
pub const PRUNE_ANNOTATION: &str = "sealant.dev/prune";

/// Why a revision was not (completely) applied. Nothing secret in any message.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{file}: {kind} {name}: {reason}")]
    Invalid {
        file: String,
        kind: String,
        name: String,
        reason: String,
    },
    #[error("{0}")]
    NotReady(String),
    #[error(
        "refusing to prune all {0} objects: the revision holds no manifests (set spec.allowEmpty to allow)"
    )]
    EmptyPrune(usize),
    #[error(
        "{object} cannot be pruned: {reason}; nothing of this revision was applied: let the identity the GitSync \
         applies with delete it, or annotate it sealant.dev/prune: disabled"
    )]
    PruneForbidden { object: String, reason: String },
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

impl ApplyError {
    pub fn reason(&self) -> &'static str {
        match self {
            ApplyError::Invalid { .. } => "ValidationFailed",
            ApplyError::NotReady(_) => "DependencyNotReady",
            ApplyError::EmptyPrune(_) => "PruneRefused",
            ApplyError::PruneForbidden { .. } => "PruneForbidden",
            ApplyError::Kube(_) => "ApplyFailed",
        }
    }
}

/// Requests a GitSync keeps in flight while it dry-runs or applies one stage (kubectl sends one at a time).
const CONCURRENCY: usize = 16;

/// Server-side dry-run of one object. With `force`, an immutable-field change is allowed through (the write
/// recreates the object).
async fn dry_run(api: &Api<DynamicObject>, o: &Object, value: &Value, force: bool) -> Result<(), ApplyError> {
    let pp = PatchParams::apply(FIELD_MANAGER).force().dry_run();
    match api.patch(&o.name, &pp, &Patch::Apply(value)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 422 && force => Ok(()),
        Err(kube::Error::Api(s)) if matches!(s.code, 400 | 403 | 404 | 422) => Err(invalid(o, s.message)),
        Err(other) => Err(other.into()),
    }
}

/// What applying did.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Every object of the revision, with the version applied (the new inventory, before prune failures).
    pub applied: Vec<(ObjectId, String)>,
    pub written: usize,
    pub unchanged: usize,
    pub pruned: Vec<ObjectId>,
    /// Objects prune could not delete: they stay in the inventory.
    pub prune_failed: Vec<(ObjectId, String)>,
}

/// What a GitSync asks for besides the objects.
#[derive(Debug, Clone)]
pub struct Options {
    /// `<namespace>.<name>` of the GitSync.
    pub owner: String,
    /// Namespace for namespaced objects that name none (the GitSync's own).
    pub default_namespace: String,
    /// Namespace forced onto every namespaced object.
    pub target_namespace: Option<String>,
    pub force: bool,
    pub timeout: Duration,
}

/// True when `current` holds every field of `desired` with the same value.
pub fn contains(current: &Value, desired: &Value) -> bool {
    match (current, desired) {
        (Value::Object(c), Value::Object(d)) => d
            .iter()
            .all(|(k, dv)| c.get(k).is_some_and(|cv| contains(cv, dv))),
        (Value::Array(c), Value::Array(d)) => {
            c.len() == d.len() && c.iter().zip(d).all(|(cv, dv)| contains(cv, dv))
        }
        (Value::Number(c), Value::Number(d)) => c.as_f64() == d.as_f64(),
        (c, d) => c == d,
    }
}

/// Secrets: `stringData` folded into `data`, so what is applied is what the server stores (and compares).
fn fold_string_data(obj: &mut Value) {
    if obj["apiVersion"] != "v1" || obj["kind"] != "Secret" {
        return;
    }
    let Some(Value::Object(sd)) = obj.as_object_mut().and_then(|o| o.remove("stringData")) else {
        return;
    };
    let data = obj["data"]
        .as_object_mut()
        .map(std::mem::take)
        .unwrap_or_default();
    let mut data = data;
    for (k, v) in sd {
        let text = v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string());
        data.insert(
            k,
            Value::String(base64::engine::general_purpose::STANDARD.encode(text)),
        );
    }
    obj["data"] = Value::Object(data);
}

/// Applies revisions for one GitSync.
pub struct Applier {
    client: Client,
    discovery: Option<Discovery>,
}

impl std::fmt::Debug for Applier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Applier").finish_non_exhaustive()
    }
}

impl Applier {
    /// `client` is the one writes go through (impersonating the GitSync's ServiceAccount when it names one).
    pub fn new(client: Client) -> Self {
        Applier {
            client,
            discovery: None,
        }
    }

    async fn refresh(&mut self) -> Result<(), kube::Error> {
        self.discovery = Some(Discovery::new(self.client.clone()).run().await?);
        Ok(())
    }

    async fn resolve(
        &mut self,
        group: &str,
        version: &str,
        kind: &str,
    ) -> Result<Option<(ApiResource, ApiCapabilities)>, kube::Error> {
        let gvk = GroupVersionKind::gvk(group, version, kind);
        if self.discovery.is_none() {
            self.refresh().await?;
        }
        if let Some(found) = self.discovery.as_ref().and_then(|d| d.resolve_gvk(&gvk)) {
            return Ok(Some(found));
        }
        self.refresh().await?;
        Ok(self.discovery.as_ref().and_then(|d| d.resolve_gvk(&gvk)))
    }

    fn api(&self, ar: &ApiResource, caps: &ApiCapabilities, namespace: Option<&str>) -> Api<DynamicObject> {
        match (caps.scope == Scope::Namespaced, namespace) {
            (true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, ar),
            _ => Api::all_with(self.client.clone(), ar),
        }
    }

    /// Fixes namespace and owner label of an object for its scope; returns the object to send and its id.
    fn prepare(&self, o: &Object, caps: &ApiCapabilities, opts: &Options) -> (Value, ObjectId) {
        let mut value = o.value.clone();
        let namespaced = caps.scope == Scope::Namespaced;
        let ns = namespaced.then(|| {
            opts.target_namespace
                .clone()
                .or_else(|| o.namespace.clone())
                .unwrap_or_else(|| opts.default_namespace.clone())
        });
        match &ns {
            Some(ns) => value["metadata"]["namespace"] = Value::String(ns.clone()),
            None => {
                if let Some(m) = value["metadata"].as_object_mut() {
                    m.remove("namespace");
                }
            }
        }
        if !value["metadata"]["labels"].is_object() {
            value["metadata"]["labels"] = Value::Object(Default::default());
        }
        value["metadata"]["labels"][OWNER_LABEL] = Value::String(opts.owner.clone());
        fold_string_data(&mut value);
        let id = ObjectId {
            namespace: ns,
            ..o.id()
        };
        (value, id)
    }

    /// Applies `objects`. With `revision_changed` false, objects already as wanted are not written.
    pub async fn apply(
        &mut self,
        objects: &[Object],
        previous: &[ObjectId],
        opts: &Options,
        revision_changed: bool,
        prune: bool,
        allow_empty: bool,
    ) -> Result<Report, ApplyError> {
        let started = Instant::now();
        let mut report = Report::default();
        if prune && objects.is_empty() && !previous.is_empty() && !allow_empty {
            return Err(ApplyError::EmptyPrune(previous.len()));
        }
        // 1. dry-run everything the cluster can already check; nothing is written if one fails
        let defined: BTreeSet<(String, String)> = objects
            .iter()
            .filter(|o| o.kind == "CustomResourceDefinition")
            .filter_map(|o| {
                let group = o.value["spec"]["group"].as_str()?;
                let kind = o.value["spec"]["names"]["kind"].as_str()?;
                Some((group.to_owned(), kind.to_owned()))
            })
            .collect();
        let new_namespaces: BTreeSet<&str> = objects
            .iter()
            .filter(|o| o.group().is_empty() && o.kind == "Namespace")
            .map(|o| o.name.as_str())
            .collect();
        let mut checks = Vec::with_capacity(objects.len());
        // What the revision keeps, for the prune check: exact ids, and (group, kind, name) of kinds it defines.
        let mut planned: BTreeSet<ObjectId> = BTreeSet::new();
        let mut defined_objects: BTreeSet<(String, String, String)> = BTreeSet::new();
        for o in objects {
            if defined.contains(&(o.group().to_owned(), o.kind.clone())) {
                defined_objects.insert((o.group().to_owned(), o.kind.clone(), o.name.clone()));
                continue;
            }
            let Some((ar, caps)) = self.resolve(o.group(), o.version(), &o.kind).await? else {
                return Err(unchecked(invalid(
                    o,
                    format!(
                        "the cluster knows no kind {} in {}; check apiVersion and kind, or apply its \
                         CustomResourceDefinition first (or in this revision)",
                        o.kind, o.api_version
                    ),
                )));
            };
            let (value, id) = self.prepare(o, &caps, opts);
            planned.insert(id.clone());
            // The revision's own Namespaces do not exist before it is applied: their contents are checked then.
            if id
                .namespace
                .as_deref()
                .is_some_and(|ns| new_namespaces.contains(ns))
            {
                continue;
            }
            let api = self.api(&ar, &caps, value["metadata"]["namespace"].as_str());
            checks.push((o, api, value));
        }
        // The dry-runs go out CONCURRENCY at a time; the first failure in file order is the one reported.
        // (The futures are made first: a stream combinator holding the closure trips up Send inference.)
        let checks: Vec<_> = checks
            .into_iter()
            .map(|(o, api, value)| async move { dry_run(&api, o, &value, opts.force).await })
            .collect();
        let results: Vec<Result<(), ApplyError>> = stream::iter(checks).buffered(CONCURRENCY).collect().await;
        results
            .into_iter()
            .collect::<Result<(), ApplyError>>()
            .map_err(unchecked)?;
        // 1b. what prune will delete is dry-run deleted too: a delete the identity may not make stops the revision
        // before anything is written (other failures are left to prune itself, which keeps the object listed)
        if prune {
            let gone = previous.iter().filter(|id| {
                !planned.contains(*id)
                    && !defined_objects.contains(&(id.group.clone(), id.kind.clone(), id.name.clone()))
            });
            for id in gone {
                if let Err(ApplyError::Kube(kube::Error::Api(s))) = self.prune_one(id, opts, true).await
                    && s.code == 403
                {
                    let ns = id
                        .namespace
                        .as_deref()
                        .map(|n| format!("{n}/"))
                        .unwrap_or_default();
                    return Err(ApplyError::PruneForbidden {
                        object: format!("{} {ns}{}", id.kind, id.name),
                        reason: s.message,
                    });
                }
            }
        }
        // 2. staged apply: the objects of a stage concurrently, the stages in order
        let ordered = ordered(objects);
        for stage in [Stage::Definitions, Stage::Secrets, Stage::Workloads] {
            let mut batch = Vec::new();
            for (_, o) in ordered.iter().filter(|(s, _)| *s == stage) {
                let Some((ar, caps)) = self.resolve(o.group(), o.version(), &o.kind).await? else {
                    return Err(invalid(
                        o,
                        format!("the cluster knows no kind {} in {}", o.kind, o.api_version),
                    ));
                };
                let (value, id) = self.prepare(o, &caps, opts);
                let api = self.api(&ar, &caps, id.namespace.as_deref());
                batch.push((*o, api, value, id, ar, caps));
            }
            if batch.is_empty() {
                continue;
            }
            let this = &*self;
            let writes: Vec<_> = batch
                .iter()
                .map(|(o, api, value, _, _, _)| async move {
                    let unchanged = !revision_changed
                        && match api.get_opt(&o.name).await? {
                            Some(current) => {
                                contains(&serde_json::to_value(&current).unwrap_or_default(), value)
                            }
                            None => false,
                        };
                    if !unchanged {
                        this.write(api, o, value, opts.force).await?;
                    }
                    Ok::<bool, ApplyError>(!unchanged)
                })
                .collect();
            let results: Vec<Result<bool, ApplyError>> =
                stream::iter(writes).buffered(CONCURRENCY).collect().await;
            // Count what was written before reporting a failure: those writes happened.
            let mut failed = None;
            for r in results {
                match r {
                    Ok(true) => report.written += 1,
                    Ok(false) => report.unchanged += 1,
                    Err(e) => {
                        failed.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
            let mut stage_objects = Vec::with_capacity(batch.len());
            for (o, _, value, id, ar, caps) in batch {
                report.applied.push((id, o.version().to_owned()));
                stage_objects.push((value, ar, caps));
            }
            self.after_stage(stage, &stage_objects, opts, started).await?;
        }
        // 3. prune
        if prune {
            let now: BTreeSet<ObjectId> = report.applied.iter().map(|(id, _)| id.clone()).collect();
            for id in to_prune(previous, &now) {
                match self.prune_one(&id, opts, false).await {
                    Ok(true) => report.pruned.push(id),
                    Ok(false) => {}
                    Err(e) => report.prune_failed.push((id, e.to_string())),
                }
            }
        }
        Ok(report)
    }

    async fn write(
        &self,
        api: &Api<DynamicObject>,
        o: &Object,
        value: &Value,
        force: bool,
    ) -> Result<(), ApplyError> {
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        match api.patch(&o.name, &pp, &Patch::Apply(value)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 422 && force => {
                warn!(kind = %o.kind, name = %o.name, reason = %s.message, "recreating an object whose immutable fields changed");
                api.delete(&o.name, &DeleteParams::foreground()).await?;
                let deadline = Instant::now() + Duration::from_secs(30);
                while api.get_opt(&o.name).await?.is_some() && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                api.patch(&o.name, &pp, &Patch::Apply(value)).await?;
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 422 || s.code == 400 => Err(invalid(
                o,
                format!(
                    "{} (set spec.force to recreate objects whose immutable fields change)",
                    s.message
                ),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Waits after a stage: CRDs established (and discovery refreshed), SealedSecrets/ExternalSecrets Ready.
    async fn after_stage(
        &mut self,
        stage: Stage,
        applied: &[(Value, ApiResource, ApiCapabilities)],
        opts: &Options,
        started: Instant,
    ) -> Result<(), ApplyError> {
        let watched: Vec<&(Value, ApiResource, ApiCapabilities)> = applied
            .iter()
            .filter(|(v, _, _)| match stage {
                Stage::Definitions => v["kind"] == "CustomResourceDefinition",
                Stage::Secrets => v["apiVersion"] == "sealant.dev/v1" && v["kind"] != "Secret",
                Stage::Workloads => false,
            })
            .collect();
        for (value, ar, caps) in &watched {
            let name = value["metadata"]["name"].as_str().unwrap_or_default();
            let api = self.api(ar, caps, value["metadata"]["namespace"].as_str());
            let want = if stage == Stage::Definitions {
                "Established"
            } else {
                "Ready"
            };
            loop {
                let obj = api.get_opt(name).await?;
                let status = obj.as_ref().map(|o| o.data["status"].clone()).unwrap_or_default();
                let generation = obj.as_ref().and_then(|o| o.metadata.generation);
                let cond = status["conditions"]
                    .as_array()
                    .and_then(|cs| cs.iter().find(|c| c["type"] == want))
                    .cloned();
                let observed = status["observedGeneration"]
                    .as_i64()
                    .or(cond.as_ref().and_then(|c| c["observedGeneration"].as_i64()));
                let current = stage == Stage::Definitions || generation.is_none() || observed >= generation;
                match &cond {
                    Some(c) if c["status"] == "True" && current => break,
                    _ if started.elapsed() >= opts.timeout => {
                        let why = cond
                            .as_ref()
                            .map(|c| {
                                format!(
                                    "{}: {}",
                                    c["reason"].as_str().unwrap_or(""),
                                    c["message"].as_str().unwrap_or("")
                                )
                            })
                            .unwrap_or_else(|| "no status yet".into());
                        return Err(ApplyError::NotReady(format!(
                            "{} {name} is not {want} after {:?} ({why}); later stages were not applied",
                            value["kind"].as_str().unwrap_or_default(),
                            opts.timeout
                        )));
                    }
                    _ => tokio::time::sleep(Duration::from_millis(250)).await,
                }
            }
        }
        if stage == Stage::Definitions && !watched.is_empty() {
            self.refresh().await?;
        }
        Ok(())
    }

    /// Deletes one object of the previous inventory if it still carries this GitSync's label and is not
    /// annotated to be kept (with `dry_run`, a server-side dry-run delete). Ok(false): nothing to delete (gone,
    /// or not ours).
    async fn prune_one(&mut self, id: &ObjectId, opts: &Options, dry_run: bool) -> Result<bool, ApplyError> {
        let version = self
            .discovery
            .as_ref()
            .and_then(|d| d.get(&id.group))
            .and_then(|g| {
                g.resources_by_stability()
                    .into_iter()
                    .find(|(ar, _)| ar.kind == id.kind)
            })
            .map(|(ar, _)| ar.version.clone());
        let Some(version) = version else {
            return Err(ApplyError::NotReady(format!(
                "kind {} of group {} is no longer known",
                id.kind, id.group
            )));
        };
        let Some((ar, caps)) = self.resolve(&id.group, &version, &id.kind).await? else {
            return Ok(false);
        };
        let api = self.api(&ar, &caps, id.namespace.as_deref());
        let Some(obj) = api.get_opt(&id.name).await? else {
            return Ok(false);
        };
        if obj.labels().get(OWNER_LABEL) != Some(&opts.owner) {
            if !dry_run {
                info!(object = %id, "not pruned: it does not carry this GitSync's label");
            }
            return Ok(false);
        }
        if obj
            .annotations()
            .get(PRUNE_ANNOTATION)
            .is_some_and(|v| v == "disabled")
        {
            if !dry_run {
                info!(object = %id, "not pruned: annotated {PRUNE_ANNOTATION}=disabled");
            }
            return Ok(false);
        }
        if dry_run {
            let dp = DeleteParams {
                dry_run: true,
                ..DeleteParams::background()
            };
            api.delete(&id.name, &dp).await?;
            return Ok(true);
        }
        api.delete(&id.name, &DeleteParams::background()).await?;
        info!(object = %id, "pruned");
        Ok(true)
    }
}

/// A refusal found before anything was written says so, and what to do.
fn unchecked(e: ApplyError) -> ApplyError {
    match e {
        ApplyError::Invalid {
            file,
            kind,
            name,
            reason,
        } => ApplyError::Invalid {
            file,
            kind,
            name,
            reason: format!(
                "{reason}; nothing of this revision was applied: fix the manifest and commit again"
            ),
        },
        other => other,
    }
}

fn invalid(o: &Object, reason: String) -> ApplyError {
    ApplyError::Invalid {
        file: o.file.clone(),
        kind: o.kind.clone(),
        name: o.name.clone(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containment_ignores_server_additions_only() {
        let current = json!({"metadata": {"name": "a", "uid": "1", "labels": {"x": "1", "y": "2"}}, "spec": {"replicas": 2, "ports": [{"port": 80, "protocol": "TCP"}]}});
        assert!(contains(
            &current,
            &json!({"metadata": {"labels": {"x": "1"}}, "spec": {"replicas": 2}})
        ));
        assert!(contains(&current, &json!({"spec": {"ports": [{"port": 80}]}})));
        assert!(!contains(&current, &json!({"spec": {"replicas": 3}})));
        assert!(!contains(
            &current,
            &json!({"spec": {"ports": [{"port": 80}, {"port": 81}]}})
        ));
        assert!(!contains(
            &current,
            &json!({"metadata": {"annotations": {"a": "b"}}})
        ));
        assert!(contains(&json!({"n": 1.0}), &json!({"n": 1})));
    }

    #[test]
    fn secret_string_data_is_folded() {
        let mut s =
            json!({"apiVersion": "v1", "kind": "Secret", "data": {"a": "eA=="}, "stringData": {"b": "y"}});
        fold_string_data(&mut s);
        assert_eq!(
            s,
            json!({"apiVersion": "v1", "kind": "Secret", "data": {"a": "eA==", "b": "eQ=="}})
        );
        let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "stringData": {"b": "y"}});
        fold_string_data(&mut cm);
        assert!(cm.get("stringData").is_some());
    }
}
