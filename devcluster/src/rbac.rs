//! RBAC authorization: Roles, ClusterRoles and their bindings, evaluated per request.

use serde_json::Value;

use crate::auth::UserInfo;
use crate::store::State;

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

fn rule_allows(rule: &Value, a: &Attributes) -> bool {
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
