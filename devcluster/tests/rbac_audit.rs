//! The audit log of authorization decisions and RBAC escalation prevention, against an in-process devcluster
//! with RBAC enforced.

mod common;

use common::{client_with_token, raw, start_with};
use sealant_devcluster::{AuditEntry, Options};
use serde_json::{Value, json};

const JSON: &str = "application/json";
const RBAC: &str = "/apis/rbac.authorization.k8s.io/v1";

fn entry<'a>(
    log: &'a [AuditEntry],
    user: &str,
    verb: &str,
    resource: &str,
    name: &str,
) -> Option<&'a AuditEntry> {
    log.iter()
        .find(|e| e.user == user && e.verb == verb && e.resource == resource && e.name == name)
}

fn role(name: &str, rules: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": name}, "rules": rules})
}

fn binding(name: &str, kind: &str, role: &str, user: &str) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]})
}

#[tokio::test]
async fn every_decision_is_audited_while_rbac_is_enforced() {
    let (h, admin) = start_with(Options::default()).await;
    h.add_user_token("alice-token", "alice", &[]);
    let alice = client_with_token(&h, "alice-token").await;
    // RBAC off: nothing is decided, nothing recorded
    let (code, _) = raw(&alice, "GET", "/api/v1/namespaces/default/configmaps", JSON, None).await;
    assert_eq!(code, 200);
    assert!(h.audit().is_empty(), "{:?}", h.audit());

    h.set_rbac(true);
    let (code, _) = raw(
        &admin,
        "POST",
        &format!("{RBAC}/namespaces/default/roles"),
        JSON,
        Some(role(
            "read-cm",
            json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"], "resourceNames": ["x"]}]),
        )),
    )
    .await;
    assert_eq!(code, 201);
    let (code, _) = raw(
        &admin,
        "POST",
        &format!("{RBAC}/namespaces/default/rolebindings"),
        JSON,
        Some(binding("read-cm", "Role", "read-cm", "alice")),
    )
    .await;
    assert_eq!(code, 201);
    let (code, _) = raw(
        &admin,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        JSON,
        Some(json!({"metadata": {"name": "x"}, "data": {"a": "b"}})),
    )
    .await;
    assert_eq!(code, 201);
    let (code, _) = raw(
        &alice,
        "GET",
        "/api/v1/namespaces/default/configmaps/x",
        JSON,
        None,
    )
    .await;
    assert_eq!(code, 200);
    let (code, _) = raw(
        &alice,
        "GET",
        "/api/v1/namespaces/default/configmaps/y",
        JSON,
        None,
    )
    .await;
    assert_eq!(code, 403);
    let (code, _) = raw(&alice, "GET", "/api/v1/secrets", JSON, None).await;
    assert_eq!(code, 403);
    // impersonation is decided (and recorded) for the impersonator, the request for the impersonated user
    let as_bob = common::impersonating(&h, "bob", &["team"]).await;
    let (code, _) = raw(&as_bob, "GET", "/api/v1/namespaces/default/pods", JSON, None).await;
    assert_eq!(code, 403);

    let (code, _) = raw(&alice, "GET", "/api/v1", JSON, None).await;
    assert_eq!(code, 200);

    let log = h.audit();
    let ok = entry(&log, "alice", "get", "configmaps", "x").expect("alice's get is recorded");
    assert!(ok.allowed);
    assert_eq!((ok.namespace.as_str(), ok.api_group.as_str()), ("default", ""));
    assert!(!entry(&log, "alice", "get", "configmaps", "y").unwrap().allowed);
    let list = entry(&log, "alice", "list", "secrets", "").unwrap();
    assert!(!list.allowed && list.namespace.is_empty());
    assert!(
        entry(&log, "devcluster-admin", "create", "roles", "")
            .unwrap()
            .allowed
    );
    assert!(
        entry(&log, "devcluster-admin", "impersonate", "users", "bob")
            .unwrap()
            .allowed
    );
    assert!(
        entry(&log, "devcluster-admin", "impersonate", "groups", "team")
            .unwrap()
            .allowed
    );
    assert!(!entry(&log, "bob", "list", "pods", "").unwrap().allowed);
    // the rule evaluator answers for recorded attributes as it did for the request
    let rule =
        json!({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"], "resourceNames": ["x"]});
    assert!(sealant_devcluster::rbac::rule_allows(&rule, &ok.attributes()));
    assert!(!sealant_devcluster::rbac::rule_allows(&rule, &list.attributes()));
    // discovery is recorded by path
    assert!(
        log.iter()
            .any(|e| e.resource.is_empty() && e.path == "/api/v1" && e.user == "alice" && e.allowed)
    );
    assert_eq!(h.audit_dropped(), 0);

    // the admin endpoint serves the same log, and empties it
    let (code, body) = raw(&admin, "GET", "/devcluster/audit", JSON, None).await;
    assert_eq!(code, 200);
    assert!(
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["user"] == "alice" && e["verb"] == "list" && e["allowed"] == false),
        "{body}"
    );
    let (code, _) = raw(&alice, "GET", "/devcluster/audit", JSON, None).await;
    assert_eq!(code, 403, "only the admin reads the audit log");
    h.clear_audit();
    assert!(h.audit().is_empty());
    let (code, _) = raw(
        &alice,
        "GET",
        "/api/v1/namespaces/default/configmaps/x",
        JSON,
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(h.audit().len(), 1, "{:?}", h.audit());
    let (code, _) = raw(&admin, "DELETE", "/devcluster/audit", JSON, None).await;
    assert_eq!(code, 200);
    assert!(h.audit().iter().all(|e| e.user != "alice"));
    h.shutdown().await;
}

#[tokio::test]
async fn roles_and_bindings_cannot_grant_what_their_writer_does_not_hold() {
    let (h, admin) = start_with(Options {
        rbac: true,
        ..Options::default()
    })
    .await;
    h.add_user_token("alice-token", "alice", &[]);
    let alice = client_with_token(&h, "alice-token").await;
    let post = |client: kube::Client, path: String, body: Value| async move {
        raw(&client, "POST", &path, JSON, Some(body)).await
    };
    let roles = format!("{RBAC}/namespaces/default/roles");
    let bindings = format!("{RBAC}/namespaces/default/rolebindings");
    // alice may write Roles and RoleBindings in default, and read ConfigMaps there
    let (code, _) = post(
        admin.clone(),
        roles.clone(),
        role(
            "rbac-writer",
            json!([
                {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": ["create", "update", "patch", "get"]},
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}
            ]),
        ),
    )
    .await;
    assert_eq!(code, 201);
    let (code, _) = post(
        admin.clone(),
        bindings.clone(),
        binding("rbac-writer", "Role", "rbac-writer", "alice"),
    )
    .await;
    assert_eq!(code, 201);

    // a Role with only what she holds: fine
    let (code, body) = post(
        alice.clone(),
        roles.clone(),
        role(
            "cm-reader",
            json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]),
        ),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    // more than she holds: refused, dry-run too, with the missing permission named
    let secrets = role(
        "secret-reader",
        json!([{"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": ["get"]}]),
    );
    for path in [roles.clone(), format!("{roles}?dryRun=All")] {
        let (code, body) = post(alice.clone(), path, secrets.clone()).await;
        assert_eq!(code, 403, "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains("roles.rbac.authorization.k8s.io \"secret-reader\" is forbidden")
                && message.contains("attempting to grant RBAC permissions not currently held")
                && message.contains("Resources:[\"secrets\"]")
                && !message.contains("Resources:[\"configmaps\"]"),
            "{message}"
        );
    }
    let (code, _) = raw(&admin, "GET", &format!("{roles}/secret-reader"), JSON, None).await;
    assert_eq!(code, 404, "nothing was stored");
    let log = h.audit();
    let refusal = entry(&log, "alice", "escalate", "roles", "secret-reader").expect("the refusal is audited");
    assert!(!refusal.allowed);
    assert!(
        entry(&log, "alice", "create", "roles", "").unwrap().allowed,
        "the create itself was authorized"
    );
    // a wildcard verb is not covered by a list of verbs
    let (code, _) = post(
        alice.clone(),
        roles.clone(),
        role(
            "star",
            json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}]),
        ),
    )
    .await;
    assert_eq!(code, 403);
    // a Role she may not exceed cannot be widened by update or patch either; a label-only change is fine
    let (code, _) = post(
        admin.clone(),
        roles.clone(),
        role("wide", secrets["rules"].clone()),
    )
    .await;
    assert_eq!(code, 201);
    let (code, body) = raw(
        &alice,
        "PATCH",
        &format!("{roles}/cm-reader"),
        "application/merge-patch+json",
        Some(json!({"rules": secrets["rules"]})),
    )
    .await;
    assert_eq!(code, 403, "{body}");
    let (code, body) = raw(
        &alice,
        "PATCH",
        &format!("{roles}/wide"),
        "application/merge-patch+json",
        Some(json!({"metadata": {"labels": {"team": "a"}}})),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let (code, _) = raw(
        &alice,
        "PATCH",
        &format!("{roles}/cm-reader?fieldManager=alice&force=true"),
        "application/apply-patch+yaml",
        Some(role("cm-reader", secrets["rules"].clone())),
    )
    .await;
    assert_eq!(code, 403, "server-side apply is checked too");

    // bindings: to a role whose permissions she holds, fine; to more, refused (and audited as bind)
    let (code, body) = post(
        alice.clone(),
        bindings.clone(),
        binding("b1", "Role", "cm-reader", "bob"),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    for (name, kind, target) in [("b2", "Role", "wide"), ("b3", "ClusterRole", "cluster-admin")] {
        let (code, body) = post(
            alice.clone(),
            bindings.clone(),
            binding(name, kind, target, "alice"),
        )
        .await;
        assert_eq!(code, 403, "{name}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains(&format!(
                "rolebindings.rbac.authorization.k8s.io \"{name}\" is forbidden"
            )),
            "{body}"
        );
        let log = h.audit();
        let bind = entry(
            &log,
            "alice",
            "bind",
            if kind == "Role" { "roles" } else { "clusterroles" },
            target,
        )
        .expect("bind refusal audited");
        assert!(!bind.allowed);
    }
    let (code, body) = post(
        alice.clone(),
        bindings.clone(),
        binding("b4", "Role", "missing", "alice"),
    )
    .await;
    assert_eq!(
        code, 403,
        "a binding to a role that does not exist needs bind: {body}"
    );
    // the `bind` verb on that one role lets her bind it; `escalate` lets her write Roles beyond her rights
    let (code, _) = post(
        admin.clone(),
        roles.clone(),
        role(
            "binder",
            json!([
                {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["bind"], "resourceNames": ["wide"]},
                {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["escalate"]}
            ]),
        ),
    )
    .await;
    assert_eq!(code, 201);
    let (code, _) = post(
        admin.clone(),
        bindings.clone(),
        binding("binder", "Role", "binder", "alice"),
    )
    .await;
    assert_eq!(code, 201);
    let (code, body) = post(
        alice.clone(),
        bindings.clone(),
        binding("b2", "Role", "wide", "alice"),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = post(alice.clone(), roles.clone(), secrets.clone()).await;
    assert_eq!(code, 201, "{body}");

    // cluster scope: carol may write ClusterRoles and ClusterRoleBindings and list ConfigMaps everywhere; what she
    // holds only in one namespace does not count for a ClusterRole
    h.add_user_token("carol-token", "carol", &[]);
    let carol = client_with_token(&h, "carol-token").await;
    let cluster_role = |name: &str, rules: Value| json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name}, "rules": rules});
    let crb = |name: &str, role: &str, user: &str| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]})
    };
    let (code, _) = post(
        admin.clone(),
        format!("{RBAC}/clusterroles"),
        cluster_role(
            "rbac-admin-ish",
            json!([
                {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles", "clusterrolebindings"], "verbs": ["create"]},
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}
            ]),
        ),
    )
    .await;
    assert_eq!(code, 201);
    let (code, _) = post(
        admin.clone(),
        format!("{RBAC}/clusterrolebindings"),
        crb("carol", "rbac-admin-ish", "carol"),
    )
    .await;
    assert_eq!(code, 201);
    let (code, _) = post(
        admin.clone(),
        bindings.clone(),
        binding("carol-ns", "Role", "cm-reader", "carol"),
    )
    .await;
    assert_eq!(code, 201);
    let list_cm = json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]);
    let get_cm = json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]);
    let (code, body) = post(
        carol.clone(),
        format!("{RBAC}/clusterroles"),
        cluster_role("cm-lister", list_cm),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = post(
        carol.clone(),
        format!("{RBAC}/clusterroles"),
        cluster_role("cm-getter", get_cm.clone()),
    )
    .await;
    assert_eq!(code, 403, "get on ConfigMaps is hers in default only: {body}");
    let (code, body) = post(
        admin.clone(),
        format!("{RBAC}/clusterroles"),
        cluster_role("cm-getter", get_cm),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = post(
        carol.clone(),
        format!("{RBAC}/clusterrolebindings"),
        crb("c1", "cm-lister", "dave"),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    for role in ["cm-getter", "cluster-admin"] {
        let (code, body) = post(
            carol.clone(),
            format!("{RBAC}/clusterrolebindings"),
            crb(&format!("grab-{role}"), role, "carol"),
        )
        .await;
        assert_eq!(code, 403, "{role}: {body}");
    }
    // ... while a RoleBinding in default to cm-getter is fine: there she holds get on ConfigMaps (she may not
    // create RoleBindings, though: that is plain RBAC)
    let (code, _) = post(
        carol.clone(),
        bindings.clone(),
        binding("c2", "ClusterRole", "cm-getter", "dave"),
    )
    .await;
    assert_eq!(code, 403);
    let log = h.audit();
    assert!(
        !entry(&log, "carol", "create", "rolebindings", "")
            .unwrap()
            .allowed
    );
    assert!(
        !entry(&log, "carol", "bind", "clusterroles", "cluster-admin")
            .unwrap()
            .allowed
    );
    h.shutdown().await;
}
