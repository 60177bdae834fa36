//! The resource registry: built-in kinds plus kinds defined by CustomResourceDefinitions.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// Group + plural resource name: the storage key of a kind (versions share storage).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupResource {
    /// API group ("" for core).
    pub group: String,
    /// Plural resource name.
    pub resource: String,
}

impl GroupResource {
    /// Builds a key.
    pub fn new(group: &str, resource: &str) -> Self {
        Self {
            group: group.to_string(),
            resource: resource.to_string(),
        }
    }
}

/// How a resource behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    /// Stored normally.
    Stored,
    /// Create-only virtual resource (reviews): never stored.
    Virtual,
}

/// Everything the server knows about one resource in one version.
#[derive(Debug, Clone)]
pub struct ResourceInfo {
    /// API group ("" for core).
    pub group: String,
    /// Version served.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Plural name.
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Namespaced or cluster scoped.
    pub namespaced: bool,
    /// Short names for kubectl.
    pub short_names: Vec<String>,
    /// Whether `/status` is a separate subresource.
    pub status: bool,
    /// Other subresources (`token`, `proxy`, `finalize`).
    pub subresources: Vec<String>,
    /// Stored or virtual.
    pub behavior: Behavior,
    /// Categories (`all`).
    pub categories: Vec<String>,
    /// For CRD kinds: the owning CRD name.
    pub crd: Option<String>,
    /// Associative list keys declared by a CRD schema (`path` -> keys).
    pub list_keys: BTreeMap<String, Vec<String>>,
    /// The CRD version's `openAPIV3Schema` (pruning, defaulting, validation).
    pub schema: Option<std::sync::Arc<Value>>,
    /// The CRD version's `additionalPrinterColumns`.
    pub printer_columns: Vec<Value>,
}

impl ResourceInfo {
    /// The storage key.
    pub fn gr(&self) -> GroupResource {
        if self.is_new_event() {
            // events.k8s.io/v1 Events share storage with core/v1 Events, as in a real cluster
            return GroupResource::new("", "events");
        }
        GroupResource::new(&self.group, &self.plural)
    }

    fn is_new_event(&self) -> bool {
        self.group == "events.k8s.io" && self.plural == "events"
    }

    /// `apiVersion` of the stored form.
    pub fn storage_api_version(&self) -> String {
        if self.is_new_event() {
            "v1".into()
        } else {
            self.api_version()
        }
    }

    /// Converts a request body of this version into the stored form.
    pub fn to_storage(&self, obj: &mut Value) {
        if self.is_new_event() {
            rename_fields(obj, EVENT_FIELDS.iter().map(|(new, old)| (*new, *old)));
            obj["apiVersion"] = json!("v1");
        }
    }

    /// Converts a stored object into this version's form (apiVersion/kind included).
    pub fn from_storage(&self, obj: &mut Value) {
        if self.is_new_event() {
            rename_fields(obj, EVENT_FIELDS.iter().map(|(new, old)| (*old, *new)));
        }
        obj["apiVersion"] = json!(self.api_version());
        obj["kind"] = json!(self.kind);
    }

    /// Field-selector paths of this version mapped to the stored form.
    pub fn storage_field_paths(&self) -> &'static [(&'static str, &'static str)] {
        if self.is_new_event() { EVENT_FIELDS } else { &[] }
    }

    /// `apiVersion` string.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Verbs for discovery.
    pub fn verbs(&self) -> Vec<&'static str> {
        match self.behavior {
            Behavior::Virtual => vec!["create"],
            Behavior::Stored => {
                vec![
                    "create",
                    "delete",
                    "deletecollection",
                    "get",
                    "list",
                    "patch",
                    "update",
                    "watch",
                ]
            }
        }
    }

    /// Whether this version serves the given subresource.
    pub fn has_subresource(&self, sub: &str) -> bool {
        (sub == "status" && self.status) || self.subresources.iter().any(|s| s == sub)
    }
}

/// events.k8s.io/v1 field -> core/v1 field.
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn rename_fields<'a>(obj: &mut Value, pairs: impl Iterator<Item = (&'a str, &'a str)>) {
    let Some(m) = obj.as_object_mut() else { return };
    let moved: Vec<(String, Value)> = pairs
        .filter_map(|(from, to)| m.remove(from).map(|v| (to.to_string(), v)))
        .collect();
    for (k, v) in moved {
        m.insert(k, v);
    }
}

#[allow(clippy::too_many_arguments)]
fn builtin(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    namespaced: bool,
    short: &[&str],
    status: bool,
    subs: &[&str],
) -> ResourceInfo {
    ResourceInfo {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        status,
        subresources: subs.iter().map(|s| s.to_string()).collect(),
        behavior: Behavior::Stored,
        categories: Vec::new(),
        crd: None,
        list_keys: BTreeMap::new(),
        schema: None,
        printer_columns: Vec::new(),
    }
}

fn virtual_kind(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> ResourceInfo {
    let mut r = builtin(group, version, kind, plural, namespaced, &[], false, &[]);
    r.behavior = Behavior::Virtual;
    r
}

/// The built-in resources served by devcluster.
pub fn builtins() -> Vec<ResourceInfo> {
    let mut v = vec![
        builtin(
            "",
            "v1",
            "Namespace",
            "namespaces",
            false,
            &["ns"],
            true,
            &["finalize"],
        ),
        builtin("", "v1", "Secret", "secrets", true, &[], false, &[]),
        builtin("", "v1", "ConfigMap", "configmaps", true, &["cm"], false, &[]),
        builtin(
            "",
            "v1",
            "ServiceAccount",
            "serviceaccounts",
            true,
            &["sa"],
            false,
            &["token"],
        ),
        builtin("", "v1", "Service", "services", true, &["svc"], true, &["proxy"]),
        builtin("", "v1", "Endpoints", "endpoints", true, &["ep"], false, &[]),
        builtin("", "v1", "Event", "events", true, &["ev"], false, &[]),
        builtin("", "v1", "Pod", "pods", true, &["po"], true, &[]),
        builtin(
            "apps",
            "v1",
            "Deployment",
            "deployments",
            true,
            &["deploy"],
            true,
            &["scale"],
        ),
        builtin(
            "apps",
            "v1",
            "StatefulSet",
            "statefulsets",
            true,
            &["sts"],
            true,
            &["scale"],
        ),
        builtin("apps", "v1", "DaemonSet", "daemonsets", true, &["ds"], true, &[]),
        // stored only, so charts (sealant's own) apply as they would to a real cluster
        builtin(
            "policy",
            "v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            true,
            &["pdb"],
            true,
            &[],
        ),
        builtin(
            "networking.k8s.io",
            "v1",
            "NetworkPolicy",
            "networkpolicies",
            true,
            &["netpol"],
            false,
            &[],
        ),
        builtin(
            "apps",
            "v1",
            "ReplicaSet",
            "replicasets",
            true,
            &["rs"],
            true,
            &["scale"],
        ),
        builtin(
            "coordination.k8s.io",
            "v1",
            "Lease",
            "leases",
            true,
            &[],
            false,
            &[],
        ),
        builtin(
            "events.k8s.io",
            "v1",
            "Event",
            "events",
            true,
            &["ev"],
            false,
            &[],
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "Role",
            "roles",
            true,
            &[],
            false,
            &[],
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
            true,
            &[],
            false,
            &[],
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
            false,
            &[],
            false,
            &[],
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            false,
            &[],
            false,
            &[],
        ),
        builtin(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
            &["crd", "crds"],
            true,
            &[],
        ),
        virtual_kind(
            "authentication.k8s.io",
            "v1",
            "TokenReview",
            "tokenreviews",
            false,
        ),
        virtual_kind(
            "authentication.k8s.io",
            "v1",
            "SelfSubjectReview",
            "selfsubjectreviews",
            false,
        ),
        virtual_kind(
            "authorization.k8s.io",
            "v1",
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
            false,
        ),
        virtual_kind(
            "authorization.k8s.io",
            "v1",
            "SubjectAccessReview",
            "subjectaccessreviews",
            false,
        ),
        virtual_kind(
            "authorization.k8s.io",
            "v1",
            "LocalSubjectAccessReview",
            "localsubjectaccessreviews",
            true,
        ),
    ];
    for r in &mut v {
        r.printer_columns = builtin_columns(&r.group, &r.plural);
        if matches!(
            r.plural.as_str(),
            "pods" | "services" | "deployments" | "statefulsets" | "daemonsets" | "replicasets"
        ) {
            r.categories.push("all".into());
        }
    }
    v
}

fn col(name: &str, ty: &str, path: &str) -> Value {
    json!({"name": name, "type": ty, "jsonPath": path})
}

/// kubectl's usual columns for the common built-in kinds (Name is always first).
fn builtin_columns(group: &str, plural: &str) -> Vec<Value> {
    let age = col("Age", "date", ".metadata.creationTimestamp");
    match (group, plural) {
        ("", "secrets") => vec![
            col("Type", "string", ".type"),
            col("Data", "integer", "len(.data)"),
            age,
        ],
        ("", "configmaps") => vec![col("Data", "integer", "len(.data)"), age],
        ("", "namespaces") => vec![col("Status", "string", ".status.phase"), age],
        ("", "serviceaccounts") => vec![col("Secrets", "integer", "len(.secrets)"), age],
        ("", "services") => vec![
            col("Type", "string", ".spec.type"),
            col("Cluster-IP", "string", ".spec.clusterIP"),
            age,
        ],
        ("", "events") => vec![
            col("Last Seen", "date", ".lastTimestamp"),
            col("Type", "string", ".type"),
            col("Reason", "string", ".reason"),
            col("Object", "string", "ref(.involvedObject)"),
            col("Message", "string", ".message"),
            json!({"name": "Name", "type": "string", "jsonPath": ".metadata.name", "priority": 1, "format": "name"}),
        ],
        ("coordination.k8s.io", "leases") => vec![col("Holder", "string", ".spec.holderIdentity"), age],
        _ => Vec::new(),
    }
}

/// Collects `x-kubernetes-list-map-keys` declarations from an openAPIV3 schema.
fn collect_list_keys(schema: &Value, path: &str, out: &mut BTreeMap<String, Vec<String>>) {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            collect_list_keys(v, &format!("{path}.{k}"), out);
        }
    }
    if let Some(items) = schema.get("items") {
        if schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map")
            && let Some(keys) = schema.get("x-kubernetes-list-map-keys").and_then(Value::as_array)
        {
            out.insert(
                path.to_string(),
                keys.iter().filter_map(|k| k.as_str().map(String::from)).collect(),
            );
        }
        collect_list_keys(items, &format!("{path}[]"), out);
    }
}

/// The served versions of a CRD object as resource infos.
pub fn from_crd(crd: &Value) -> Vec<ResourceInfo> {
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let names = &spec["names"];
    let plural = names["plural"].as_str().unwrap_or_default();
    let kind = names["kind"].as_str().unwrap_or_default();
    let singular = names["singular"]
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| kind.to_lowercase());
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    let strs = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for ver in spec["versions"].as_array().into_iter().flatten() {
        if ver["served"].as_bool() == Some(false) {
            continue;
        }
        let mut list_keys = BTreeMap::new();
        collect_list_keys(&ver["schema"]["openAPIV3Schema"], "", &mut list_keys);
        out.push(ResourceInfo {
            group: group.into(),
            version: ver["name"].as_str().unwrap_or_default().into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: singular.clone(),
            namespaced,
            short_names: strs(&names["shortNames"]),
            status: ver["subresources"].get("status").is_some(),
            subresources: Vec::new(),
            behavior: Behavior::Stored,
            categories: strs(&names["categories"]),
            crd: crd["metadata"]["name"].as_str().map(String::from),
            list_keys,
            schema: ver["schema"]["openAPIV3Schema"]
                .as_object()
                .map(|_| std::sync::Arc::new(ver["schema"]["openAPIV3Schema"].clone())),
            printer_columns: ver["additionalPrinterColumns"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        });
    }
    out
}

/// Validates a CRD object before it is stored; returns field errors.
pub fn validate_crd(crd: &Value) -> Vec<(String, String)> {
    let mut errs = Vec::new();
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let plural = spec["names"]["plural"].as_str().unwrap_or_default();
    if group.is_empty() {
        errs.push(("spec.group".into(), "Required value".into()));
    }
    if plural.is_empty() {
        errs.push(("spec.names.plural".into(), "Required value".into()));
    }
    if spec["names"]["kind"].as_str().unwrap_or_default().is_empty() {
        errs.push(("spec.names.kind".into(), "Required value".into()));
    }
    let name = crd["metadata"]["name"].as_str().unwrap_or_default();
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        errs.push((
            "metadata.name".into(),
            format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions
        .iter()
        .filter(|v| v["storage"].as_bool() == Some(true))
        .count()
        != 1
    {
        errs.push((
            "spec.versions".into(),
            "Invalid value: must have exactly one version marked as storage version".into(),
        ));
    }
    errs
}

/// The status the server sets on an accepted CRD (Established, NamesAccepted).
pub fn crd_status(crd: &Value, now: &str) -> Value {
    let names = crd["spec"]["names"].clone();
    let mut accepted = names.clone();
    if accepted.get("singular").is_none() {
        let k = names["kind"].as_str().unwrap_or_default().to_lowercase();
        accepted["singular"] = json!(k);
    }
    if accepted.get("listKind").is_none() {
        let k = names["kind"].as_str().unwrap_or_default();
        accepted["listKind"] = json!(format!("{k}List"));
    }
    let stored: Vec<Value> = crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["storage"].as_bool() == Some(true))
        .map(|v| v["name"].clone())
        .collect();
    json!({
        "acceptedNames": accepted,
        "storedVersions": stored,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "lastTransitionTime": now,
             "reason": "NoConflicts", "message": "no conflicts found"},
            {"type": "Established", "status": "True", "lastTransitionTime": now,
             "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"},
        ],
    })
}
