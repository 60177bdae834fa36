//! The in-memory object store: one global resourceVersion, an event history window for watches,
//! and the lifecycle rules (finalizers, garbage collection, namespace cascade).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::apply;
use crate::errors::{ApiError, qualified};
use crate::resources::{self, Behavior, GroupResource, ResourceInfo};
use crate::util::{meta_str, name_suffix, now_rfc3339, uuid};
use crate::validation;

/// Watch event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// ADDED
    Added,
    /// MODIFIED
    Modified,
    /// DELETED
    Deleted,
}

impl EventType {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change, as broadcast to watchers.
#[derive(Debug)]
pub struct WatchEvent {
    /// resourceVersion of the change.
    pub rv: u64,
    /// Resource.
    pub gr: GroupResource,
    /// Namespace ("" for cluster-scoped).
    pub namespace: String,
    /// Type.
    pub etype: EventType,
    /// Object after the change (before it, for DELETED, with the new resourceVersion).
    pub object: Value,
    /// The previous state for MODIFIED events (watch selectors turn transitions into ADDED/DELETED).
    pub prev: Option<Value>,
    /// The serialized watch line, shared by every watcher that sends the event unchanged.
    pub line: std::sync::OnceLock<bytes::Bytes>,
}

/// Options shared by writes.
#[derive(Debug, Clone, Default)]
pub struct WriteCtx {
    /// dryRun=All: validate and compute, do not persist.
    pub dry_run: bool,
    /// Field manager recorded in managedFields.
    pub manager: String,
    /// Skip managedFields tracking (server-side apply already computed them).
    pub fields_done: bool,
    /// `fieldValidation=Strict`: unknown fields are an error instead of being pruned.
    pub strict_fields: bool,
    /// The requesting user while RBAC is enforced: writes of Roles, ClusterRoles and their bindings are
    /// checked for privilege escalation ([`crate::rbac::check_escalation`]).
    pub requester: Option<crate::auth::UserInfo>,
}

/// Which part of an object an update may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateMode {
    /// The main resource: status is ignored when the kind has a status subresource.
    Main,
    /// The `/status` subresource: only status changes.
    Status,
}

/// Deletion propagation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Propagation {
    /// Delete the object, then its dependents.
    #[default]
    Background,
    /// Delete dependents first; the owner keeps a `foregroundDeletion` finalizer until they are gone.
    Foreground,
    /// Leave dependents, removing their ownerReferences.
    Orphan,
}

/// Delete options.
#[derive(Debug, Clone, Default)]
pub struct DeleteOpts {
    /// Propagation policy.
    pub propagation: Propagation,
    /// dryRun=All.
    pub dry_run: bool,
    /// Precondition on uid.
    pub uid: Option<String>,
    /// Precondition on resourceVersion.
    pub resource_version: Option<String>,
}

type ObjKey = (String, String);
type ObjRef = (GroupResource, String, String);

/// Mutable server state, guarded by [`Store`]'s lock.
#[derive(Debug)]
pub struct State {
    rv: u64,
    objects: HashMap<GroupResource, BTreeMap<ObjKey, Value>>,
    uids: HashMap<String, (GroupResource, String, String)>,
    /// owner uid -> dependents (objects whose ownerReferences name it)
    dependents: HashMap<String, BTreeSet<ObjRef>>,
    /// owners waiting for their dependents (foreground deletion)
    foreground: BTreeSet<ObjRef>,
    history: VecDeque<Arc<WatchEvent>>,
    history_cap: usize,
    compacted_rv: u64,
    /// Next ClusterIP to hand out (10.96.0.0/12 like a default cluster).
    next_cluster_ip: u32,
    builtins: Vec<ResourceInfo>,
    crds: BTreeMap<String, Vec<ResourceInfo>>,
    tx: broadcast::Sender<Arc<WatchEvent>>,
    /// Authorization decisions while RBAC is enforced.
    audit: crate::rbac::AuditLog,
}

/// The store: a lock around [`State`].
#[derive(Debug)]
pub struct Store {
    state: Mutex<State>,
}

impl Store {
    /// A new store with the default namespaces, keeping `history_cap` events for watch resumes.
    pub fn new(history_cap: usize) -> Self {
        let (tx, _) = broadcast::channel(16 * 1024);
        let mut st = State {
            rv: 0,
            objects: HashMap::new(),
            uids: HashMap::new(),
            dependents: HashMap::new(),
            foreground: BTreeSet::new(),
            history: VecDeque::new(),
            history_cap: history_cap.max(16),
            compacted_rv: 0,
            next_cluster_ip: 10,
            builtins: resources::builtins(),
            crds: BTreeMap::new(),
            tx,
            audit: crate::rbac::AuditLog::default(),
        };
        let ns_info = st.resolve("", "v1", "namespaces").cloned();
        if let Some(info) = ns_info {
            for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
                let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
                let ctx = WriteCtx {
                    manager: "devcluster".into(),
                    ..Default::default()
                };
                let _ = st.create(&info, "", obj, &ctx);
            }
        }
        st.bootstrap_rbac();
        Self {
            state: Mutex::new(st),
        }
    }

    /// Locks the state (a poisoned lock is recovered: every operation leaves the state consistent).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Result of subscribing a watch.
#[derive(Debug)]
pub struct Subscription {
    /// Events after the requested version, from the history window.
    pub backlog: Vec<Arc<WatchEvent>>,
    /// Live events from now on.
    pub rx: broadcast::Receiver<Arc<WatchEvent>>,
    /// The current resourceVersion at subscription time.
    pub rv: u64,
}

impl State {
    /// The log of authorization decisions.
    pub fn audit(&self) -> &crate::rbac::AuditLog {
        &self.audit
    }

    /// The log of authorization decisions, to record into or clear.
    pub fn audit_mut(&mut self) -> &mut crate::rbac::AuditLog {
        &mut self.audit
    }

    /// The current global resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.rv
    }

    /// Resolves group/version/plural to a served resource.
    pub fn resolve(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceInfo> {
        self.all_resources()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    /// Every served resource (all versions).
    pub fn all_resources(&self) -> impl Iterator<Item = &ResourceInfo> {
        self.builtins.iter().chain(self.crds.values().flatten())
    }

    /// The storage info (first served version) for a group/resource.
    fn storage_info(&self, gr: &GroupResource) -> Option<ResourceInfo> {
        self.all_resources()
            .find(|r| r.group == gr.group && r.plural == gr.resource)
            .cloned()
    }

    fn bucket(&self, gr: &GroupResource) -> Option<&BTreeMap<ObjKey, Value>> {
        self.objects.get(gr)
    }

    /// Reads one object, with apiVersion/kind set for `info`'s version.
    pub fn get(&self, info: &ResourceInfo, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.bucket(&info.gr())
            .and_then(|b| b.get(&(ns.to_string(), name.to_string())))
            .map(|o| present(o, info))
            .ok_or_else(|| ApiError::not_found(&info.plural, &info.group, name))
    }

    /// Raw stored object.
    fn raw(&self, gr: &GroupResource, ns: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(gr)
            .and_then(|b| b.get(&(ns.to_string(), name.to_string())))
    }

    /// All objects of a resource in `ns` (or all namespaces when `ns` is None), sorted by namespace/name,
    /// starting strictly after `after`.
    pub fn list<'a>(
        &'a self,
        info: &'a ResourceInfo,
        ns: Option<&'a str>,
        after: Option<&'a (String, String)>,
    ) -> impl Iterator<Item = (&'a ObjKey, &'a Value)> + 'a {
        let range = self.bucket(&info.gr()).into_iter().flat_map(move |b| {
            let lower = match after {
                Some(k) => std::ops::Bound::Excluded(k.clone()),
                None => std::ops::Bound::Unbounded,
            };
            b.range((lower, std::ops::Bound::Unbounded))
        });
        range.filter(move |((n, _), _)| ns.is_none_or(|want| want == n))
    }

    /// Subscribes a watch. `since` = None starts at the current version.
    pub fn subscribe(&self, since: Option<u64>) -> Result<Subscription, ApiError> {
        let rx = self.tx.subscribe();
        let backlog = match since {
            None => Vec::new(),
            Some(v) if v >= self.rv => Vec::new(),
            Some(v) => {
                if v < self.compacted_rv {
                    return Err(ApiError::expired(format!(
                        "too old resource version: {v} ({})",
                        self.compacted_rv
                    )));
                }
                self.history.iter().filter(|e| e.rv > v).cloned().collect()
            }
        };
        Ok(Subscription {
            backlog,
            rx,
            rv: self.rv,
        })
    }

    /// Every stored object of a group/resource (all namespaces).
    pub fn objects_of(&self, group: &str, resource: &str) -> impl Iterator<Item = &Value> {
        self.objects
            .get(&GroupResource::new(group, resource))
            .into_iter()
            .flat_map(|b| b.values())
    }

    /// Whether a stored object exists with this uid at (ns, name) of a group/resource.
    pub fn raw_object(&self, group: &str, resource: &str, ns: &str, name: &str) -> Option<&Value> {
        self.raw(&GroupResource::new(group, resource), ns, name)
    }

    /// Drops the history window so any resume older than now gets 410 Gone (fault injection and tests).
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted_rv = self.rv;
    }

    fn emit(&mut self, gr: &GroupResource, ns: &str, etype: EventType, object: Value, prev: Option<Value>) {
        let ev = Arc::new(WatchEvent {
            rv: self.rv,
            gr: gr.clone(),
            namespace: ns.to_string(),
            etype,
            object,
            prev,
            line: std::sync::OnceLock::new(),
        });
        self.history.push_back(ev.clone());
        while self.history.len() > self.history_cap {
            if let Some(old) = self.history.pop_front() {
                self.compacted_rv = old.rv;
            }
        }
        let _ = self.tx.send(ev);
    }

    fn put(&mut self, gr: &GroupResource, ns: &str, name: &str, mut obj: Value, etype: EventType) -> Value {
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let uid = meta_str(&obj, "uid").to_string();
        self.uids
            .insert(uid, (gr.clone(), ns.to_string(), name.to_string()));
        let prev = self
            .objects
            .entry(gr.clone())
            .or_default()
            .insert((ns.to_string(), name.to_string()), obj.clone());
        let key: ObjRef = (gr.clone(), ns.to_string(), name.to_string());
        if let Some(p) = &prev {
            self.unindex_owners(p, &key);
        }
        for owner in owner_uids(&obj) {
            self.dependents.entry(owner).or_default().insert(key.clone());
        }
        self.emit(gr, ns, etype, obj.clone(), prev.as_ref().map(selector_view));
        obj
    }

    fn check_namespace(&self, info: &ResourceInfo, ns: &str) -> Result<(), ApiError> {
        if !info.namespaced {
            return Ok(());
        }
        if ns.is_empty() {
            return Err(ApiError::bad_request("the namespace of the object is required"));
        }
        let ns_gr = GroupResource::new("", "namespaces");
        match self.raw(&ns_gr, "", ns) {
            None => Err(ApiError::not_found("namespaces", "", ns)),
            Some(n) if !n["metadata"]["deletionTimestamp"].is_null() => Err(ApiError::forbidden(format!(
                "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                info.plural,
                meta_str(n, "name")
            ))
            .with_details(json!({"name": ns, "kind": "namespaces"}))),
            Some(_) => Ok(()),
        }
    }

    /// Creates an object.
    pub fn create(
        &mut self,
        info: &ResourceInfo,
        ns: &str,
        mut obj: Value,
        ctx: &WriteCtx,
    ) -> Result<Value, ApiError> {
        if info.behavior == Behavior::Virtual {
            return Err(ApiError::method_not_allowed());
        }
        if !obj.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        check_kind(&obj, info)?;
        info.to_storage(&mut obj);
        if !obj["metadata"].is_object() {
            obj["metadata"] = json!({});
        }
        let body_ns = meta_str(&obj, "namespace").to_string();
        if info.namespaced && !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let mut name = meta_str(&obj, "name").to_string();
        if name.is_empty() {
            let gen_name = meta_str(&obj, "generateName").to_string();
            if !gen_name.is_empty() {
                name = format!("{gen_name}{}", name_suffix());
            }
        }
        let mut errs: Vec<(String, String)> = validation::validate_name(&info.plural, &name)
            .into_iter()
            .collect();
        self.check_namespace(info, ns)?;
        if self.raw(&info.gr(), ns, &name).is_some() {
            return Err(ApiError::already_exists(&info.plural, &info.group, &name));
        }
        let now = now_rfc3339();
        {
            let meta = &mut obj["metadata"];
            meta["name"] = json!(name);
            if info.namespaced {
                meta["namespace"] = json!(ns);
            } else if let Some(m) = meta.as_object_mut() {
                m.remove("namespace");
            }
            meta["uid"] = json!(uuid());
            meta["creationTimestamp"] = json!(now);
            meta["generation"] = json!(1);
            if let Some(m) = meta.as_object_mut() {
                m.remove("deletionTimestamp");
                m.remove("deletionGracePeriodSeconds");
                m.remove("resourceVersion");
                m.remove("selfLink");
            }
        }
        obj["apiVersion"] = json!(info.storage_api_version());
        obj["kind"] = json!(info.kind);
        if info.status
            && info.plural != "namespaces"
            && info.plural != "customresourcedefinitions"
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        errs.extend(validation::validate_metadata(&obj));
        errs.extend(validation::prepare(&info.plural, &info.group, &mut obj));
        if let Some(schema) = &info.schema {
            let report = crate::schema::process(schema, &mut obj);
            strict_check(ctx, &report)?;
            errs.extend(report.errors);
        }
        if info.group == "apiextensions.k8s.io" && info.plural == "customresourcedefinitions" {
            errs.extend(resources::validate_crd(&obj));
            if errs.is_empty() {
                self.check_crd_conflict(&obj)?;
                obj["status"] = resources::crd_status(&obj, &now);
            }
        }
        if !errs.is_empty() {
            return Err(ApiError::invalid(&info.kind, &info.group, &name, &errs));
        }
        if let Some(user) = &ctx.requester
            && info.group == crate::rbac::RBAC_GROUP
        {
            crate::rbac::check_escalation(self, user, &info.plural, ns, &obj)?;
        }
        if info.group.is_empty() && info.plural == "services" && !ctx.dry_run {
            self.allocate_cluster_ip(&mut obj);
        }
        if !ctx.fields_done {
            apply::track_update(None, &mut obj, &ctx.manager, "", &now, info);
        }
        if ctx.dry_run {
            return Ok(obj);
        }
        let stored = self.put(&info.gr(), ns, &name, obj, EventType::Added);
        if info.plural == "customresourcedefinitions" && info.group == "apiextensions.k8s.io" {
            self.register_crd(&stored);
        }
        let owners = owner_uids(&stored);
        if !owners.is_empty() && owners.iter().all(|u| !self.uids.contains_key(u)) {
            // every owner is already gone: the garbage collector removes the new dependent
            let _ = self.delete(info, ns, &name, &DeleteOpts::default());
            return Ok(present(&stored, info));
        }
        if info.plural == "namespaces" && info.group.is_empty() {
            // the service account controller's job: every namespace gets a `default` ServiceAccount
            if let Some(sa) = self.resolve("", "v1", "serviceaccounts").cloned() {
                let obj =
                    json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}});
                let sa_ctx = WriteCtx {
                    manager: "devcluster".into(),
                    ..Default::default()
                };
                let _ = self.create(&sa, &name, obj, &sa_ctx);
            }
        }
        Ok(present(&stored, info))
    }

    /// The default ClusterRoles/ClusterRoleBindings every cluster has that sealant relies on.
    fn bootstrap_rbac(&mut self) {
        let g = "rbac.authorization.k8s.io";
        let ctx = WriteCtx {
            manager: "devcluster".into(),
            ..Default::default()
        };
        let roles = [
            json!({"metadata": {"name": "cluster-admin"}, "rules": [
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                {"nonResourceURLs": ["*"], "verbs": ["*"]}]}),
            json!({"metadata": {"name": "system:auth-delegator"}, "rules": [
                {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
                {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]}]}),
        ];
        if let Some(info) = self.resolve(g, "v1", "clusterroles").cloned() {
            for r in roles {
                let _ = self.create(&info, "", r, &ctx);
            }
        }
        if let Some(info) = self.resolve(g, "v1", "clusterrolebindings").cloned() {
            let b = json!({"metadata": {"name": "cluster-admin"},
                "roleRef": {"apiGroup": g, "kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [{"apiGroup": g, "kind": "Group", "name": "system:masters"}]});
            let _ = self.create(&info, "", b, &ctx);
        }
    }

    /// Gives a ClusterIP Service an address (headless `None` and ExternalName Services get none).
    fn allocate_cluster_ip(&mut self, obj: &mut Value) {
        let spec = &mut obj["spec"];
        if spec["type"] == "ExternalName" {
            return;
        }
        if spec["clusterIP"].as_str().is_none_or(str::is_empty) {
            let n = self.next_cluster_ip;
            self.next_cluster_ip += 1;
            // 10.96.0.0/12
            let ip = std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(10, 96, 0, 0)) + n);
            spec["clusterIP"] = json!(ip.to_string());
        }
        spec["clusterIPs"] = json!([spec["clusterIP"]]);
        if spec["ipFamilies"].is_null() {
            spec["ipFamilies"] = json!(["IPv4"]);
        }
        if spec["ipFamilyPolicy"].is_null() {
            spec["ipFamilyPolicy"] = json!("SingleStack");
        }
    }

    fn check_crd_conflict(&self, crd: &Value) -> Result<(), ApiError> {
        let group = crd["spec"]["group"].as_str().unwrap_or_default();
        let plural = crd["spec"]["names"]["plural"].as_str().unwrap_or_default();
        if self
            .builtins
            .iter()
            .any(|b| b.group == group && b.plural == plural)
        {
            return Err(ApiError::invalid(
                "CustomResourceDefinition",
                "apiextensions.k8s.io",
                meta_str(crd, "name"),
                &[(
                    "spec.names.plural".into(),
                    "Invalid value: conflicts with a built-in resource".into(),
                )],
            ));
        }
        Ok(())
    }

    fn register_crd(&mut self, crd: &Value) {
        let name = meta_str(crd, "name").to_string();
        self.crds.insert(name, resources::from_crd(crd));
    }

    /// Updates an object (PUT, or the result of a patch).
    pub fn update(
        &mut self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
        mut new: Value,
        mode: UpdateMode,
        ctx: &WriteCtx,
    ) -> Result<Value, ApiError> {
        if info.behavior == Behavior::Virtual {
            return Err(ApiError::method_not_allowed());
        }
        let gr = info.gr();
        let old = self
            .raw(&gr, ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&info.plural, &info.group, name))?;
        if !new.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        check_kind(&new, info)?;
        info.to_storage(&mut new);
        if !new["metadata"].is_object() {
            new["metadata"] = json!({});
        }
        let body_name = meta_str(&new, "name");
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let body_ns = meta_str(&new, "namespace");
        if info.namespaced && !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let rv = meta_str(&new, "resourceVersion");
        if !rv.is_empty() && rv != meta_str(&old, "resourceVersion") {
            return Err(ApiError::stale(&info.plural, &info.group, name));
        }
        let now = now_rfc3339();
        let mut merged = match mode {
            UpdateMode::Main => {
                let mut m = new;
                for f in [
                    "uid",
                    "creationTimestamp",
                    "generation",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                ] {
                    match old["metadata"].get(f) {
                        Some(v) => m["metadata"][f] = v.clone(),
                        None => {
                            if let Some(mm) = m["metadata"].as_object_mut() {
                                mm.remove(f);
                            }
                        }
                    }
                }
                m["metadata"]["name"] = json!(name);
                if info.namespaced {
                    m["metadata"]["namespace"] = json!(ns);
                }
                if info.status {
                    match old.get("status") {
                        Some(s) => m["status"] = s.clone(),
                        None => {
                            if let Some(o) = m.as_object_mut() {
                                o.remove("status");
                            }
                        }
                    }
                }
                m
            }
            UpdateMode::Status => {
                let mut m = old.clone();
                match new.get("status") {
                    Some(s) => m["status"] = s.clone(),
                    None => {
                        if let Some(o) = m.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
                if ctx.fields_done {
                    m["metadata"]["managedFields"] = new["metadata"]["managedFields"].clone();
                }
                m
            }
        };
        merged["apiVersion"] = json!(info.storage_api_version());
        merged["kind"] = json!(info.kind);
        if info.group.is_empty() && info.plural == "services" && merged["spec"].is_object() {
            // allocated values survive updates that leave them out
            for f in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
                if merged["spec"][f].is_null() && !old["spec"][f].is_null() {
                    merged["spec"][f] = old["spec"][f].clone();
                }
            }
        }
        let mut errs = validation::validate_metadata(&merged);
        errs.extend(validation::prepare(&info.plural, &info.group, &mut merged));
        if let Some(schema) = &info.schema {
            let report = crate::schema::process(schema, &mut merged);
            strict_check(ctx, &report)?;
            errs.extend(report.errors);
        }
        errs.extend(validation::validate_update(
            &info.plural,
            &info.group,
            &old,
            &merged,
        ));
        if info.plural == "customresourcedefinitions" && info.group == "apiextensions.k8s.io" {
            errs.extend(resources::validate_crd(&merged));
            if merged["spec"]["group"] != old["spec"]["group"]
                || merged["spec"]["names"]["plural"] != old["spec"]["names"]["plural"]
            {
                errs.push((
                    "spec.names.plural".into(),
                    "Invalid value: field is immutable".into(),
                ));
            }
            if errs.is_empty() {
                merged["status"] = resources::crd_status(&merged, &now);
            }
        }
        if !old["metadata"]["deletionTimestamp"].is_null() {
            let old_f = finalizers(&old);
            if finalizers(&merged).iter().any(|f| !old_f.contains(f)) {
                errs.push((
                    "metadata.finalizers".into(),
                    "Forbidden: no new finalizers can be added if the object is being deleted".into(),
                ));
            }
        }
        if !errs.is_empty() {
            return Err(ApiError::invalid(&info.kind, &info.group, name, &errs));
        }
        if let Some(user) = &ctx.requester
            && info.group == crate::rbac::RBAC_GROUP
            && crate::rbac::grants_changed(&old, &merged)
        {
            crate::rbac::check_escalation(self, user, &info.plural, ns, &merged)?;
        }
        if strip_volatile(&merged, info) != strip_volatile(&old, info) {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
            merged["metadata"]["generation"] = json!(generation + 1);
        }
        if !ctx.fields_done {
            let sub = if mode == UpdateMode::Status { "status" } else { "" };
            apply::track_update(Some(&old), &mut merged, &ctx.manager, sub, &now, info);
        }
        // a no-op write does not bump the resourceVersion
        merged["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        if without_mf_times(&merged) == without_mf_times(&old) {
            return Ok(present(&old, info));
        }
        if ctx.dry_run {
            return Ok(present(&merged, info));
        }
        let is_ns = info.group.is_empty() && info.plural == "namespaces";
        if !merged["metadata"]["deletionTimestamp"].is_null() && finalizers(&merged).is_empty() && !is_ns {
            let out = self.remove_final(&gr, ns, name);
            self.after_removals();
            return Ok(present(&out.unwrap_or(merged), info));
        }
        let stored = self.put(&gr, ns, name, merged, EventType::Modified);
        if is_ns && !stored["metadata"]["deletionTimestamp"].is_null() {
            // a terminating namespace goes away once it is empty and has no finalizers left
            self.after_removals();
            if let Some(o) = self.raw(&gr, ns, name) {
                return Ok(present(o, info));
            }
            return Ok(present(&stored, info));
        }
        if info.plural == "customresourcedefinitions" && info.group == "apiextensions.k8s.io" {
            self.register_crd(&stored);
        }
        Ok(present(&stored, info))
    }

    /// Deletes an object, honouring finalizers and the propagation policy.
    pub fn delete(
        &mut self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
        opts: &DeleteOpts,
    ) -> Result<Value, ApiError> {
        let out = self.delete_inner(info, ns, name, opts)?;
        self.after_removals();
        let gr = info.gr();
        Ok(self.raw(&gr, ns, name).map(|o| present(o, info)).unwrap_or(out))
    }

    fn delete_inner(
        &mut self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
        opts: &DeleteOpts,
    ) -> Result<Value, ApiError> {
        let gr = info.gr();
        let old = self
            .raw(&gr, ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&info.plural, &info.group, name))?;
        if let Some(uid) = &opts.uid
            && uid != meta_str(&old, "uid")
        {
            return Err(ApiError::conflict(
                &info.plural,
                &info.group,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(&old, "uid")
                ),
            ));
        }
        if let Some(rv) = &opts.resource_version
            && rv != meta_str(&old, "resourceVersion")
        {
            return Err(ApiError::conflict(
                &info.plural,
                &info.group,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    meta_str(&old, "resourceVersion")
                ),
            ));
        }
        if opts.dry_run {
            return Ok(present(&old, info));
        }
        let uid = meta_str(&old, "uid").to_string();
        if opts.propagation == Propagation::Orphan {
            self.orphan_dependents(&uid);
        }
        let mut fins = finalizers(&old);
        if opts.propagation == Propagation::Foreground
            && self.has_dependents(&uid)
            && !fins.iter().any(|f| f == "foregroundDeletion")
        {
            fins.push("foregroundDeletion".into());
        }
        let is_ns = info.group.is_empty() && info.plural == "namespaces";
        if fins.is_empty() && !is_ns {
            let out = self.remove_final(&gr, ns, name);
            return Ok(present(&out.unwrap_or(old), info));
        }
        // mark for deletion
        let mut marked = old.clone();
        if marked["metadata"]["deletionTimestamp"].is_null() {
            marked["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        }
        if !fins.is_empty() {
            marked["metadata"]["finalizers"] = json!(fins);
        }
        if is_ns {
            marked["status"]["phase"] = json!("Terminating");
        }
        let stored = if marked != old {
            self.put(&gr, ns, name, marked, EventType::Modified)
        } else {
            old
        };
        if is_ns {
            self.cascade_namespace(name);
        }
        if fins.iter().any(|f| f == "foregroundDeletion") {
            self.foreground
                .insert((gr.clone(), ns.to_string(), name.to_string()));
            self.delete_dependents(&uid);
        }
        let current = self.raw(&gr, ns, name).cloned().unwrap_or(stored);
        Ok(present(&current, info))
    }

    /// Removes an object for good, emitting DELETED; queues GC work.
    fn remove_final(&mut self, gr: &GroupResource, ns: &str, name: &str) -> Option<Value> {
        let obj = self
            .objects
            .get_mut(gr)?
            .remove(&(ns.to_string(), name.to_string()))?;
        self.uids.remove(meta_str(&obj, "uid"));
        let key: ObjRef = (gr.clone(), ns.to_string(), name.to_string());
        self.unindex_owners(&obj, &key);
        self.foreground.remove(&key);
        self.rv += 1;
        let mut obj = obj;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.emit(gr, ns, EventType::Deleted, obj.clone(), None);
        if gr.group == "apiextensions.k8s.io"
            && gr.resource == "customresourcedefinitions"
            && let Some(infos) = self.crds.remove(name)
            && let Some(first) = infos.first()
        {
            {
                // custom resources of a deleted CRD are deleted with it
                let crgr = first.gr();
                let keys: Vec<ObjKey> = self
                    .objects
                    .get(&crgr)
                    .map(|b| b.keys().cloned().collect())
                    .unwrap_or_default();
                for (cns, cname) in keys {
                    self.remove_final(&crgr, &cns, &cname);
                }
            }
        }
        let uid = meta_str(&obj, "uid").to_string();
        self.delete_dependents(&uid);
        Some(obj)
    }

    fn unindex_owners(&mut self, obj: &Value, key: &ObjRef) {
        for owner in owner_uids(obj) {
            if let Some(set) = self.dependents.get_mut(&owner) {
                set.remove(key);
                if set.is_empty() {
                    self.dependents.remove(&owner);
                }
            }
        }
    }

    fn has_dependents(&self, uid: &str) -> bool {
        self.dependents.get(uid).is_some_and(|s| !s.is_empty())
    }

    fn dependents_of(&self, uid: &str) -> Vec<ObjRef> {
        self.dependents
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Background GC: deletes dependents whose owners are all gone (or being deleted in the foreground).
    fn delete_dependents(&mut self, uid: &str) {
        for (gr, ns, name) in self.dependents_of(uid) {
            let Some(dep) = self.raw(&gr, &ns, &name).cloned() else {
                continue;
            };
            let owner_gone_or_deleting = |st: &State, u: &str| match st.uids.get(u) {
                None => true,
                Some((g, n, nm)) => st
                    .raw(g, n, nm)
                    .is_none_or(|o| finalizers(o).iter().any(|f| f == "foregroundDeletion")),
            };
            if owner_uids(&dep).iter().all(|u| owner_gone_or_deleting(self, u)) {
                if !dep["metadata"]["deletionTimestamp"].is_null() {
                    continue;
                }
                if let Some(info) = self.storage_info(&gr) {
                    let _ = self.delete_inner(&info, &ns, &name, &DeleteOpts::default());
                }
            } else if !self.uids.contains_key(uid) {
                // another owner remains: drop the dangling reference
                let mut upd = dep.clone();
                if let Some(refs) = upd["metadata"]["ownerReferences"].as_array_mut() {
                    refs.retain(|r| r["uid"].as_str() != Some(uid));
                }
                self.put(&gr, &ns, &name, upd, EventType::Modified);
            }
        }
    }

    fn orphan_dependents(&mut self, uid: &str) {
        for (gr, ns, name) in self.dependents_of(uid) {
            let Some(mut dep) = self.raw(&gr, &ns, &name).cloned() else {
                continue;
            };
            if let Some(refs) = dep["metadata"]["ownerReferences"].as_array_mut() {
                refs.retain(|r| r["uid"].as_str() != Some(uid));
                if refs.is_empty()
                    && let Some(m) = dep["metadata"].as_object_mut()
                {
                    m.remove("ownerReferences");
                }
            }
            self.put(&gr, &ns, &name, dep, EventType::Modified);
        }
    }

    fn cascade_namespace(&mut self, ns: &str) {
        let grs: Vec<GroupResource> = self.objects.keys().cloned().collect();
        for gr in grs {
            let Some(info) = self.storage_info(&gr) else {
                continue;
            };
            if !info.namespaced {
                continue;
            }
            let names: Vec<String> = self
                .objects
                .get(&gr)
                .map(|b| {
                    b.keys()
                        .filter(|(n, _)| n == ns)
                        .map(|(_, name)| name.clone())
                        .collect()
                })
                .unwrap_or_default();
            for name in names {
                let deleting = self
                    .raw(&gr, ns, &name)
                    .is_some_and(|o| !o["metadata"]["deletionTimestamp"].is_null());
                if !deleting {
                    let _ = self.delete_inner(&info, ns, &name, &DeleteOpts::default());
                }
            }
        }
    }

    /// Finishes foreground deletions and terminating namespaces whose contents are gone.
    fn after_removals(&mut self) {
        loop {
            let mut progressed = false;
            // owners waiting in the foreground
            let waiting: Vec<(GroupResource, String, String, String)> = self
                .foreground
                .iter()
                .filter_map(|(gr, ns, n)| {
                    let o = self.raw(gr, ns, n)?;
                    Some((gr.clone(), ns.clone(), n.clone(), meta_str(o, "uid").to_string()))
                })
                .collect();
            for (gr, ns, name, uid) in waiting {
                if !self.has_dependents(&uid)
                    && let Some(mut o) = self.raw(&gr, &ns, &name).cloned()
                {
                    let fins: Vec<String> = finalizers(&o)
                        .into_iter()
                        .filter(|f| f != "foregroundDeletion")
                        .collect();
                    self.foreground.remove(&(gr.clone(), ns.clone(), name.clone()));
                    if fins.is_empty() {
                        self.remove_final(&gr, &ns, &name);
                    } else {
                        o["metadata"]["finalizers"] = json!(fins);
                        self.put(&gr, &ns, &name, o, EventType::Modified);
                    }
                    progressed = true;
                }
            }
            // terminating namespaces that are empty
            let ns_gr = GroupResource::new("", "namespaces");
            let terminating: Vec<String> = self
                .objects
                .get(&ns_gr)
                .map(|b| {
                    b.values()
                        .filter(|o| !o["metadata"]["deletionTimestamp"].is_null())
                        .map(|o| meta_str(o, "name").to_string())
                        .collect()
                })
                .unwrap_or_default();
            for ns in terminating {
                let lower = (ns.clone(), String::new());
                let empty = self
                    .objects
                    .iter()
                    .filter(|(gr, _)| **gr != ns_gr)
                    .all(|(_, b)| b.range(lower.clone()..).next().is_none_or(|((n, _), _)| *n != ns));
                if empty && let Some(mut o) = self.raw(&ns_gr, "", &ns).cloned() {
                    if finalizers(&o).is_empty() {
                        self.remove_final(&ns_gr, "", &ns);
                        progressed = true;
                    } else if !o["spec"]["finalizers"].as_array().is_none_or(Vec::is_empty) {
                        o["spec"]["finalizers"] = json!([]);
                        self.put(&ns_gr, "", &ns, o, EventType::Modified);
                        progressed = true;
                    }
                }
            }
            if !progressed {
                break;
            }
        }
    }
}

/// The parts of an object label and field selectors look at: what watches keep of the previous
/// state of a MODIFIED object (not the whole object, to keep the history window small).
fn selector_view(obj: &Value) -> Value {
    let m = &obj["metadata"];
    let mut v = json!({"metadata": {"name": m["name"], "namespace": m["namespace"], "labels": m["labels"]}});
    for f in [
        "type",
        "reason",
        "source",
        "reportingComponent",
        "involvedObject",
        "regarding",
    ] {
        if let Some(x) = obj.get(f) {
            v[f] = x.clone();
        }
    }
    if let Some(p) = obj.get("status").and_then(|s| s.get("phase")) {
        v["status"] = json!({"phase": p});
    }
    if let Some(n) = obj.get("spec").and_then(|s| s.get("nodeName")) {
        v["spec"] = json!({"nodeName": n});
    }
    v
}

/// Copies a stored object with apiVersion/kind for the requested version.
pub fn present(obj: &Value, info: &ResourceInfo) -> Value {
    let mut o = obj.clone();
    info.from_storage(&mut o);
    o
}

fn check_kind(obj: &Value, info: &ResourceInfo) -> Result<(), ApiError> {
    if let Some(k) = obj.get("kind").and_then(Value::as_str)
        && !k.is_empty()
        && k != info.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind of the body ({k}) does not match the resource {}",
            qualified(&info.plural, &info.group)
        )));
    }
    Ok(())
}

fn strict_check(ctx: &WriteCtx, report: &crate::schema::Report) -> Result<(), ApiError> {
    if !ctx.strict_fields || report.pruned.is_empty() {
        return Ok(());
    }
    let fields: Vec<String> = report
        .pruned
        .iter()
        .map(|p| format!("unknown field \"{p}\""))
        .collect();
    Err(ApiError::bad_request(format!(
        "strict decoding error: {}",
        fields.join(", ")
    )))
}

/// `metadata.finalizers` as strings.
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj["metadata"]["finalizers"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

fn owner_uids(obj: &Value) -> Vec<String> {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["uid"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The object without metadata and status: what bumps `generation`.
fn strip_volatile(obj: &Value, _info: &ResourceInfo) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
        m.remove("apiVersion");
        m.remove("kind");
    }
    o
}

fn without_mf_times(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(mf) = o["metadata"]["managedFields"].as_array_mut() {
        for e in mf {
            if let Some(m) = e.as_object_mut() {
                m.remove("time");
            }
        }
    }
    o
}
