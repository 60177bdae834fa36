//! RBAC authorization: Roles, ClusterRoles and their bindings, evaluated per request; the audit log of those
//! decisions; and escalation prevention for writes of Roles, ClusterRoles and their bindings.

use std::collections::VecDeque;

use serde_json::{Value, json};

use crate::auth::UserInfo;
use crate::errors::ApiError;
use crate::store::State;

/// The API group of Roles, ClusterRoles and bindings.
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// What a request wants to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    /// Verb (`get`, `list`, `watch`, `create`, `impersonate`, ...).
    pub verb: String,
    /// API group.
    pub group: String,
    /// Resource (plural).
    pub resource: String,
    /// Subresource.
    pub subresource: String,
    /// Namespace.
    pub namespace: String,
    /// Object name.
    pub name: String,
    /// Non-resource path (when `resource` is empty).
    pub path: String,
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Whether one PolicyRule (`verbs`, `apiGroups`, `resources`, `resourceNames`, `nonResourceURLs`) allows `a`.
pub fn rule_allows(rule: &Value, a: &Attributes) -> bool {
    let verbs = strs(&rule["verbs"]);
    if !verbs.iter().any(|v| *v == "*" || *v == a.verb) {
        return false;
    }
    if a.resource.is_empty() {
        return strs(&rule["nonResourceURLs"]).iter().any(|u| {
            *u == "*" || *u == a.path || u.strip_suffix('*').is_some_and(|p| a.path.starts_with(p))
        });
    }
    if !strs(&rule["apiGroups"])
        .iter()
        .any(|g| *g == "*" || *g == a.group)
    {
        return false;
    }
    let full = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let res_ok = strs(&rule["resources"]).iter().any(|r| {
        *r == "*" || *r == full || (!a.subresource.is_empty() && *r == format!("*/{}", a.subresource))
    });
    if !res_ok {
        return false;
    }
    let names = strs(&rule["resourceNames"]);
    names.is_empty() || (!a.name.is_empty() && names.contains(&a.name.as_str()))
}

fn subject_matches(subject: &Value, user: &UserInfo, binding_ns: &str) -> bool {
    let name = subject["name"].as_str().unwrap_or_default();
    match subject["kind"].as_str().unwrap_or_default() {
        "User" => name == user.name,
        "Group" => user.groups.iter().any(|g| g == name),
        "ServiceAccount" => {
            let ns = subject["namespace"]
                .as_str()
                .filter(|s| !s.is_empty())
                .unwrap_or(binding_ns);
            user.name == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

fn role_rules<'a>(st: &'a State, role_ref: &Value, binding_ns: &str) -> Vec<&'a Value> {
    let name = role_ref["name"].as_str().unwrap_or_default();
    let role = match role_ref["kind"].as_str().unwrap_or_default() {
        "ClusterRole" => st.raw_object("rbac.authorization.k8s.io", "clusterroles", "", name),
        "Role" => st.raw_object("rbac.authorization.k8s.io", "roles", binding_ns, name),
        _ => None,
    };
    role.and_then(|r| r["rules"].as_array())
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

/// Whether `user` may perform `attrs`. `system:masters` may do anything; non-resource GETs are open
/// to every authenticated user (like the default `system:discovery` role).
pub fn authorize(st: &State, user: &UserInfo, a: &Attributes) -> bool {
    if user.is_master() {
        return true;
    }
    if a.resource.is_empty() && a.verb == "get" && user.groups.iter().any(|g| g == "system:authenticated") {
        return true;
    }
    // self-reviews are always allowed, as the default `system:basic-user` role does
    if a.verb == "create"
        && matches!(
            a.resource.as_str(),
            "selfsubjectaccessreviews" | "selfsubjectrulesreviews" | "selfsubjectreviews"
        )
    {
        return true;
    }
    for crb in st.objects_of("rbac.authorization.k8s.io", "clusterrolebindings") {
        if strs_subjects(crb).iter().any(|s| subject_matches(s, user, ""))
            && role_rules(st, &crb["roleRef"], "")
                .into_iter()
                .any(|r| rule_allows(r, a))
        {
            return true;
        }
    }
    if !a.namespace.is_empty() {
        for rb in st.objects_of("rbac.authorization.k8s.io", "rolebindings") {
            let ns = rb["metadata"]["namespace"].as_str().unwrap_or_default();
            if ns != a.namespace {
                continue;
            }
            if strs_subjects(rb).iter().any(|s| subject_matches(s, user, ns))
                && role_rules(st, &rb["roleRef"], ns)
                    .into_iter()
                    .any(|r| rule_allows(r, a))
            {
                return true;
            }
        }
    }
    false
}

/// How many decisions the audit log keeps (the oldest are dropped first, and counted).
pub const AUDIT_CAPACITY: usize = 100_000;

/// One authorization decision of an enforced RBAC: who asked for what, and the answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// The effective user (after impersonation).
    pub user: String,
    /// Verb (`get`, `list`, `watch`, `create`, `impersonate`, and `bind`/`escalate` for refused RBAC writes).
    pub verb: String,
    /// API group.
    pub api_group: String,
    /// Resource (plural).
    pub resource: String,
    /// Subresource.
    pub subresource: String,
    /// Namespace.
    pub namespace: String,
    /// Object name.
    pub name: String,
    /// Non-resource path (when `resource` is empty).
    pub path: String,
    /// The decision.
    pub allowed: bool,
}

impl AuditEntry {
    /// The request attributes, for [`rule_allows`].
    pub fn attributes(&self) -> Attributes {
        Attributes {
            verb: self.verb.clone(),
            group: self.api_group.clone(),
            resource: self.resource.clone(),
            subresource: self.subresource.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            path: self.path.clone(),
        }
    }
}

/// The bounded log of authorization decisions (kept while RBAC is enforced; nothing is decided otherwise).
#[derive(Debug, Default)]
pub struct AuditLog {
    entries: VecDeque<AuditEntry>,
    dropped: u64,
}

impl AuditLog {
    /// Records one decision.
    pub fn record(&mut self, user: &UserInfo, a: &Attributes, allowed: bool) {
        if self.entries.len() >= AUDIT_CAPACITY {
            self.entries.pop_front();
            self.dropped += 1;
        }
        // Non-resource requests are recorded by path; their URL is all there is.
        let path = if a.resource.is_empty() {
            a.path.clone()
        } else {
            String::new()
        };
        self.entries.push_back(AuditEntry {
            user: user.name.clone(),
            verb: a.verb.clone(),
            api_group: a.group.clone(),
            resource: a.resource.clone(),
            subresource: a.subresource.clone(),
            namespace: a.namespace.clone(),
            name: a.name.clone(),
            path,
            allowed,
        });
    }

    /// The decisions kept, oldest first.
    pub fn entries(&self) -> Vec<AuditEntry> {
        self.entries.iter().cloned().collect()
    }

    /// How many decisions were dropped because the log was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Forgets every decision (and the dropped count).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.dropped = 0;
    }
}

/// The permissions of `rules` that `user` does not hold in `namespace` (cluster-wide when empty), in the
/// real server's notation (`{APIGroups:[""], Resources:["secrets"], Verbs:["get"]}`).
fn not_held(st: &State, user: &UserInfo, rules: &[&Value], namespace: &str) -> Vec<String> {
    let mut missing = Vec::new();
    let q = |xs: &[&str]| xs.iter().map(|x| format!("{x:?}")).collect::<Vec<_>>().join(" ");
    for rule in rules {
        let verbs = strs(&rule["verbs"]);
        for url in strs(&rule["nonResourceURLs"]) {
            for verb in &verbs {
                let a = Attributes {
                    verb: (*verb).into(),
                    path: url.into(),
                    ..Default::default()
                };
                if !authorize(st, user, &a) {
                    missing.push(format!(
                        "{{NonResourceURLs:[{}], Verbs:[{}]}}",
                        q(&[url]),
                        q(&[verb])
                    ));
                }
            }
        }
        let names = strs(&rule["resourceNames"]);
        let names: Vec<&str> = if names.is_empty() { vec![""] } else { names };
        for group in strs(&rule["apiGroups"]) {
            for resource in strs(&rule["resources"]) {
                let (res, sub) = resource.split_once('/').unwrap_or((resource, ""));
                for verb in &verbs {
                    for name in &names {
                        let a = Attributes {
                            verb: (*verb).into(),
                            group: group.into(),
                            resource: res.into(),
                            subresource: sub.into(),
                            namespace: namespace.into(),
                            name: (*name).into(),
                            path: String::new(),
                        };
                        if !authorize(st, user, &a) {
                            let names = if name.is_empty() {
                                String::new()
                            } else {
                                format!(", ResourceNames:[{}]", q(&[name]))
                            };
                            missing.push(format!(
                                "{{APIGroups:[{}], Resources:[{}]{names}, Verbs:[{}]}}",
                                q(&[group]),
                                q(&[resource]),
                                q(&[verb])
                            ));
                        }
                    }
                }
            }
        }
    }
    missing
}

/// Whether a write changes what a Role/ClusterRole grants or whom a binding grants it to (other updates,
/// such as labels, are not checked again, as in the real server).
pub fn grants_changed(old: &Value, new: &Value) -> bool {
    ["rules", "aggregationRule", "roleRef", "subjects"]
        .iter()
        .any(|f| old[f] != new[f])
}

/// RBAC escalation prevention, as the real API server applies it to writes of `roles`, `clusterroles`,
/// `rolebindings` and `clusterrolebindings` (`obj` is the object as it would be stored, in `namespace`):
/// a user may write a Role only with the `escalate` verb on it or when they already hold every permission it
/// grants (in its namespace; cluster-wide for a ClusterRole), and a binding only with the `bind` verb on the
/// referenced role or when they hold every permission of that role (in the binding's namespace; cluster-wide
/// for a ClusterRoleBinding). A refusal is recorded in the audit log as a denied `escalate`/`bind`.
pub fn check_escalation(
    st: &mut State,
    user: &UserInfo,
    resource: &str,
    namespace: &str,
    obj: &Value,
) -> Result<(), ApiError> {
    if user.is_master() {
        return Ok(());
    }
    let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let scope = if resource.starts_with("cluster") {
        ""
    } else {
        namespace
    };
    let (check, rules, role_missing) = match resource {
        "roles" | "clusterroles" => {
            let check = Attributes {
                verb: "escalate".into(),
                group: RBAC_GROUP.into(),
                resource: resource.into(),
                namespace: scope.into(),
                name: name.clone(),
                ..Default::default()
            };
            let rules: Vec<Value> = obj["rules"].as_array().cloned().unwrap_or_default();
            (check, rules, None)
        }
        "rolebindings" | "clusterrolebindings" => {
            let role_ref = &obj["roleRef"];
            let ref_name = role_ref["name"].as_str().unwrap_or_default();
            let ref_kind = role_ref["kind"].as_str().unwrap_or_default();
            let check = Attributes {
                verb: "bind".into(),
                group: RBAC_GROUP.into(),
                resource: if ref_kind == "ClusterRole" {
                    "clusterroles"
                } else {
                    "roles"
                }
                .into(),
                namespace: scope.into(),
                name: ref_name.into(),
                ..Default::default()
            };
            let role = match ref_kind {
                "ClusterRole" => st.raw_object(RBAC_GROUP, "clusterroles", "", ref_name),
                "Role" => st.raw_object(RBAC_GROUP, "roles", scope, ref_name),
                _ => None,
            };
            let missing = role
                .is_none()
                .then(|| format!("{ref_kind} {ref_name:?} not found"));
            let rules = role
                .and_then(|r| r["rules"].as_array().cloned())
                .unwrap_or_default();
            (check, rules, missing)
        }
        _ => return Ok(()),
    };
    if authorize(st, user, &check) {
        return Ok(());
    }
    let refs: Vec<&Value> = rules.iter().collect();
    let problem = match role_missing {
        Some(m) => Some(m),
        None => {
            let missing = not_held(st, user, &refs, scope);
            (!missing.is_empty()).then(|| {
                format!(
                    "user {:?} (groups={:?}) is attempting to grant RBAC permissions not currently held:\n{}",
                    user.name,
                    user.groups,
                    missing.join("\n")
                )
            })
        }
    };
    let Some(problem) = problem else {
        return Ok(());
    };
    st.audit_mut().record(user, &check, false);
    Err(ApiError::forbidden(format!(
        "{resource}.{RBAC_GROUP} {name:?} is forbidden: {problem}"
    ))
    .with_details(json!({"name": name, "group": RBAC_GROUP, "kind": resource})))
}

fn strs_subjects(binding: &Value) -> Vec<&Value> {
    binding["subjects"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

/// The message of a 403 for `attrs`, in the real server's words.
pub fn forbidden_message(user: &UserInfo, a: &Attributes) -> String {
    if a.resource.is_empty() {
        return format!(
            "forbidden: User \"{}\" cannot {} path \"{}\"",
            user.name, a.verb, a.path
        );
    }
    let res = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let head = if a.name.is_empty() {
        res.clone()
    } else {
        format!("{res} \"{}\"", a.name)
    };
    let scope = if a.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{}\"", a.namespace)
    };
    format!(
        "{head} is forbidden: User \"{}\" cannot {} resource \"{res}\" in API group \"{}\" {scope}",
        user.name, a.verb, a.group
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rules() {
        let a = Attributes {
            verb: "get".into(),
            resource: "secrets".into(),
            namespace: "n".into(),
            name: "s".into(),
            ..Default::default()
        };
        assert!(rule_allows(
            &json!({"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]}),
            &a
        ));
        assert!(!rule_allows(
            &json!({"verbs": ["list"], "apiGroups": [""], "resources": ["secrets"]}),
            &a
        ));
        assert!(!rule_allows(
            &json!({"verbs": ["*"], "apiGroups": ["apps"], "resources": ["*"]}),
            &a
        ));
        assert!(rule_allows(
            &json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["secrets"], "resourceNames": ["s"]}),
            &a
        ));
        assert!(!rule_allows(
            &json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["secrets"], "resourceNames": ["t"]}),
            &a
        ));
        let sub = Attributes {
            subresource: "status".into(),
            ..a.clone()
        };
        assert!(!rule_allows(
            &json!({"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]}),
            &sub
        ));
        assert!(rule_allows(
            &json!({"verbs": ["get"], "apiGroups": [""], "resources": ["secrets/status"]}),
            &sub
        ));
    }
}
