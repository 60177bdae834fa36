//! Semantics tests through kube-rs clients against an in-process devcluster.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use sealant_devcluster::{FaultConfig, Options, VerbFault};
use serde_json::{Value, json};

fn cm(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>()},
        "data": {"k": "v"},
    }))
    .unwrap()
}

#[tokio::test]
async fn crud_errors_and_resource_versions() {
    let (h, c) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let created = api.create(&PostParams::default(), &cm("a", &[])).await.unwrap();
    let rv1: u64 = created
        .metadata
        .resource_version
        .clone()
        .unwrap()
        .parse()
        .unwrap();
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());

    // 409 AlreadyExists on create of an existing name
    let e = api
        .create(&PostParams::default(), &cm("a", &[]))
        .await
        .unwrap_err();
    assert_eq!((code(&e), reason(&e).as_str()), (409, "AlreadyExists"));
    // 404 NotFound as a Status
    let e = api.get("missing").await.unwrap_err();
    assert_eq!((code(&e), reason(&e).as_str()), (404, "NotFound"));
    assert!(message(&e).contains("configmaps \"missing\" not found"));

    // the resourceVersion is global across kinds and increases on every write
    let secrets: Api<Secret> = Api::namespaced(c.clone(), "default");
    let s = secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "s"}})).unwrap(),
        )
        .await
        .unwrap();
    let rv2: u64 = s.metadata.resource_version.unwrap().parse().unwrap();
    assert!(rv2 > rv1);

    // update with the current version succeeds; with a stale one it is a 409 Conflict
    let mut cur = api.get("a").await.unwrap();
    cur.data.as_mut().unwrap().insert("k".into(), "w".into());
    let updated = api.replace("a", &PostParams::default(), &cur).await.unwrap();
    assert_ne!(updated.metadata.resource_version, cur.metadata.resource_version);
    let e = api.replace("a", &PostParams::default(), &cur).await.unwrap_err();
    assert_eq!((code(&e), reason(&e).as_str()), (409, "Conflict"));

    // a no-op update keeps the resourceVersion
    let same = api.replace("a", &PostParams::default(), &updated).await.unwrap();
    assert_eq!(same.metadata.resource_version, updated.metadata.resource_version);

    // delete, then 404
    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert_eq!(code(&api.get("a").await.unwrap_err()), 404);
    assert_eq!(
        code(&api.delete("a", &DeleteParams::default()).await.unwrap_err()),
        404
    );
    h.shutdown().await;
}

#[tokio::test]
async fn generation_bumps_on_spec_changes_only() {
    let (h, c) = start().await;
    let api: Api<Deployment> = Api::namespaced(c, "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1"}]}}},
        "status": {"replicas": 7},
    }))
    .unwrap();
    let d = api.create(&PostParams::default(), &d).await.unwrap();
    assert_eq!(d.metadata.generation, Some(1));
    assert!(
        d.status.is_none(),
        "status is dropped on create for kinds with a status subresource"
    );
    let pp = PatchParams::default();
    let d = api
        .patch(
            "web",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(1));
    let d = api
        .patch("web", &pp, &Patch::Merge(json!({"spec": {"replicas": 3}})))
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(2));
    let d = api
        .patch_status("web", &pp, &Patch::Merge(json!({"status": {"replicas": 3}})))
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(2));
    assert_eq!(d.status.unwrap().replicas, Some(3));
    // the main endpoint ignores status changes
    let d = api
        .patch("web", &pp, &Patch::Merge(json!({"status": {"replicas": 9}})))
        .await
        .unwrap();
    assert_eq!(d.status.unwrap().replicas, Some(3));
    h.shutdown().await;
}

#[tokio::test]
async fn selectors_and_pagination() {
    let (h, c) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    for i in 0..7 {
        let tier = if i % 2 == 0 { "even" } else { "odd" };
        api.create(
            &PostParams::default(),
            &cm(&format!("cm-{i}"), &[("tier", tier), ("app", "demo")]),
        )
        .await
        .unwrap();
    }
    let names = |l: kube::core::ObjectList<ConfigMap>| -> Vec<String> {
        l.items.into_iter().map(|o| o.metadata.name.unwrap()).collect()
    };
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("tier=even"))
                .await
                .unwrap()
        )
        .len(),
        4
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("tier!=even,app=demo"))
                .await
                .unwrap()
        )
        .len(),
        3
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("tier in (odd),app"))
                .await
                .unwrap()
        )
        .len(),
        3
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().fields("metadata.name=cm-3"))
                .await
                .unwrap()
        ),
        vec!["cm-3"]
    );
    assert_eq!(
        api.list(&ListParams::default().fields("metadata.namespace=other"))
            .await
            .unwrap()
            .items
            .len(),
        0
    );
    let e = api
        .list(&ListParams::default().fields("spec.nope=1"))
        .await
        .unwrap_err();
    assert_eq!(code(&e), 400);

    // pagination: 7 items in pages of 3
    let mut seen = Vec::new();
    let mut lp = ListParams::default().limit(3);
    let mut pages = 0;
    loop {
        let page = api.list(&lp).await.unwrap();
        pages += 1;
        let cont = page.metadata.continue_.clone();
        if pages == 1 {
            assert_eq!(page.metadata.remaining_item_count, Some(4));
        }
        seen.extend(names(page));
        match cont {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, (0..7).map(|i| format!("cm-{i}")).collect::<Vec<_>>());
    // all-namespaces list
    let all: Api<ConfigMap> = Api::all(c);
    assert_eq!(all.list(&ListParams::default()).await.unwrap().items.len(), 7);
    h.shutdown().await;
}

#[tokio::test]
async fn watch_resume_bookmarks_timeout_and_410() {
    let (h, c) = start_with(Options {
        bookmark_interval: Duration::from_millis(100),
        history: 64,
        ..Options::default()
    })
    .await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let a = api.create(&PostParams::default(), &cm("a", &[])).await.unwrap();
    let rv_a = a.metadata.resource_version.clone().unwrap();
    api.create(&PostParams::default(), &cm("b", &[])).await.unwrap();
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "2"}})),
    )
    .await
    .unwrap();
    api.delete("b", &DeleteParams::default()).await.unwrap();

    // resume after `a` was created: exactly the three later changes, in order
    let wp = WatchParams::default().timeout(1);
    let events: Vec<WatchEvent<ConfigMap>> =
        api.watch(&wp, &rv_a).await.unwrap().try_collect().await.unwrap();
    let kinds: Vec<String> = events
        .iter()
        .filter(|e| !matches!(e, WatchEvent::Bookmark(_)))
        .map(|e| match e {
            WatchEvent::Added(o) => format!("ADDED {}", o.metadata.name.clone().unwrap()),
            WatchEvent::Modified(o) => format!("MODIFIED {}", o.metadata.name.clone().unwrap()),
            WatchEvent::Deleted(o) => format!("DELETED {}", o.metadata.name.clone().unwrap()),
            WatchEvent::Bookmark(_) => "BOOKMARK".into(),
            WatchEvent::Error(e) => format!("ERROR {}", e.code),
        })
        .collect();
    assert_eq!(
        kinds,
        vec!["ADDED b", "MODIFIED a", "DELETED b"],
        "timeoutSeconds ends the stream"
    );

    // bookmarks carry the latest resourceVersion
    let wp = WatchParams::default().timeout(1);
    let now = h.resource_version().to_string();
    let events: Vec<WatchEvent<ConfigMap>> = api.watch(&wp, &now).await.unwrap().try_collect().await.unwrap();
    let bm = events.iter().find_map(|e| match e {
        WatchEvent::Bookmark(b) => Some(b.metadata.resource_version.clone()),
        _ => None,
    });
    assert_eq!(bm, Some(now.clone()));

    // an expired version gets 410 Gone as an ERROR event
    h.compact();
    let wp = WatchParams::default().timeout(2);
    let events: Vec<WatchEvent<ConfigMap>> =
        api.watch(&wp, &rv_a).await.unwrap().try_collect().await.unwrap();
    match events.first() {
        Some(WatchEvent::Error(s)) => assert_eq!((s.code, s.reason.as_str()), (410, "Expired")),
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    // ... and so does a version older than the history window
    for i in 0..80 {
        api.patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"k": i.to_string()}})),
        )
        .await
        .unwrap();
    }
    let events: Vec<WatchEvent<ConfigMap>> = api.watch(&wp, &now).await.unwrap().try_collect().await.unwrap();
    assert!(matches!(events.first(), Some(WatchEvent::Error(s)) if s.code == 410));
    h.shutdown().await;
}

#[tokio::test]
async fn watch_selector_transitions() {
    let (h, c) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(c, "default");
    api.create(&PostParams::default(), &cm("x", &[("sel", "yes")]))
        .await
        .unwrap();
    let rv = h.resource_version().to_string();
    api.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"sel": "no"}}})),
    )
    .await
    .unwrap();
    api.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"sel": "yes"}}})),
    )
    .await
    .unwrap();
    let wp = WatchParams::default()
        .labels("sel=yes")
        .timeout(1)
        .disable_bookmarks();
    let events: Vec<WatchEvent<ConfigMap>> = api.watch(&wp, &rv).await.unwrap().try_collect().await.unwrap();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match e {
            WatchEvent::Added(_) => "ADDED",
            WatchEvent::Modified(_) => "MODIFIED",
            WatchEvent::Deleted(_) => "DELETED",
            _ => "OTHER",
        })
        .collect();
    assert_eq!(kinds, vec!["DELETED", "ADDED"]);
    h.shutdown().await;
}

#[tokio::test]
async fn watcher_and_reflector_converge() {
    let (h, c) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    api.create(&PostParams::default(), &cm("pre", &[])).await.unwrap();
    let (reader, writer) = reflector::store::<ConfigMap>();
    let stream = reflector(writer, watcher(api.clone(), watcher::Config::default())).applied_objects();
    let task = tokio::spawn(async move {
        let mut s = std::pin::pin!(stream);
        while let Some(r) = s.next().await {
            let _ = r;
        }
    });
    for i in 0..5 {
        api.create(&PostParams::default(), &cm(&format!("n{i}"), &[]))
            .await
            .unwrap();
    }
    api.delete("n0", &DeleteParams::default()).await.unwrap();
    api.patch(
        "n1",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "changed"}})),
    )
    .await
    .unwrap();
    let ok = eventually(10, || {
        let reader = reader.clone();
        async move {
            let mut names: Vec<String> = reader
                .state()
                .iter()
                .map(|o| o.metadata.name.clone().unwrap())
                .collect();
            names.sort();
            let n1 = reader
                .state()
                .iter()
                .find(|o| o.metadata.name.as_deref() == Some("n1"))
                .cloned();
            names == ["n1", "n2", "n3", "n4", "pre"]
                && n1
                    .and_then(|o| o.data.clone())
                    .and_then(|d| d.get("k").cloned())
                    .as_deref()
                    == Some("changed")
        }
    })
    .await;
    assert!(
        ok,
        "reflector converged: {:?}",
        reader
            .state()
            .iter()
            .map(|o| o.metadata.name.clone())
            .collect::<Vec<_>>()
    );
    task.abort();
    h.shutdown().await;
}

#[tokio::test]
async fn watcher_recovers_from_dropped_watches_and_forced_410() {
    let (h, c) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    h.set_faults(FaultConfig {
        watch_drop_after_ms: 150,
        force_watch_expired: true,
        ..FaultConfig::default()
    });
    let (reader, writer) = reflector::store::<ConfigMap>();
    let stream = reflector(
        writer,
        watcher(api.clone(), watcher::Config::default()).default_backoff(),
    )
    .applied_objects();
    let task = tokio::spawn(async move {
        let mut s = std::pin::pin!(stream);
        while s.next().await.is_some() {}
    });
    for i in 0..6 {
        api.create(&PostParams::default(), &cm(&format!("f{i}"), &[]))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ok = eventually(15, || {
        let r = reader.clone();
        async move { r.state().len() == 6 }
    })
    .await;
    assert!(
        ok,
        "reflector caught up through drops and 410s, has {}",
        reader.state().len()
    );
    task.abort();
    h.shutdown().await;
}

#[tokio::test]
async fn merge_json_and_strategic_patches() {
    let (h, c) = start().await;
    let api: Api<Deployment> = Api::namespaced(c.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "d"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}},
            "spec": {"containers": [{"name": "one", "image": "i:1"}, {"name": "two", "image": "j:1"}]}}},
    }))
    .unwrap();
    api.create(&PostParams::default(), &d).await.unwrap();
    let pp = PatchParams::default();
    // strategic merge: containers merge by name
    let d = api
        .patch(
            "d",
            &pp,
            &Patch::Strategic(
                json!({"spec": {"template": {"spec": {"containers": [{"name": "two", "image": "j:2"}]}}}}),
            ),
        )
        .await
        .unwrap();
    let cs = d.spec.unwrap().template.spec.unwrap().containers;
    assert_eq!(cs.len(), 2);
    assert_eq!(cs[1].image.as_deref(), Some("j:2"));
    // merge patch replaces lists
    let d = api
        .patch(
            "d",
            &pp,
            &Patch::Merge(
                json!({"spec": {"template": {"spec": {"containers": [{"name": "only", "image": "k"}]}}}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(d.spec.unwrap().template.spec.unwrap().containers.len(), 1);
    // JSON patch, including a failing test op
    let p: json_patch::Patch =
        serde_json::from_value(json!([{"op": "replace", "path": "/spec/replicas", "value": 4}])).unwrap();
    let d = api.patch("d", &pp, &Patch::Json::<()>(p)).await.unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(4));
    let p: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/spec/replicas", "value": 5}])).unwrap();
    let e = api.patch("d", &pp, &Patch::Json::<()>(p)).await.unwrap_err();
    assert_eq!(code(&e), 422);
    // merge patch with a stale resourceVersion is a conflict
    let e = api
        .patch(
            "d",
            &pp,
            &Patch::Merge(json!({"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 1}})),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), 409);
    h.shutdown().await;
}

#[tokio::test]
async fn server_side_apply_managed_fields_conflicts_and_force() {
    let (h, c) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let a = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa", "labels": {"owner": "a"}},
        "data": {"shared": "1", "onlya": "x"}});
    let o = api
        .patch("ssa", &PatchParams::apply("alice"), &Patch::Apply(&a))
        .await
        .unwrap();
    let mf = o.metadata.managed_fields.clone().unwrap();
    assert_eq!(mf.len(), 1);
    assert_eq!(mf[0].manager.as_deref(), Some("alice"));
    assert_eq!(mf[0].operation.as_deref(), Some("Apply"));
    let fields = serde_json::to_value(&mf[0].fields_v1).unwrap();
    assert_eq!(fields["f:data"]["f:shared"], json!({}));
    assert_eq!(fields["f:metadata"]["f:labels"]["f:owner"], json!({}));

    // bob sets a field alice owns to another value: conflict naming alice and the field
    let b = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"shared": "2"}});
    let e = api
        .patch("ssa", &PatchParams::apply("bob"), &Patch::Apply(&b))
        .await
        .unwrap_err();
    assert_eq!(code(&e), 409);
    assert!(
        message(&e).contains("alice") && message(&e).contains(".data.shared"),
        "{}",
        message(&e)
    );
    // the same value is shared ownership, no conflict
    let same = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"shared": "1"}});
    api.patch("ssa", &PatchParams::apply("carol"), &Patch::Apply(&same))
        .await
        .unwrap();
    // force takes ownership
    let o = api
        .patch("ssa", &PatchParams::apply("bob").force(), &Patch::Apply(&b))
        .await
        .unwrap();
    assert_eq!(o.data.as_ref().unwrap()["shared"], "2");
    let owners: Vec<String> = o
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter(|m| {
            serde_json::to_value(&m.fields_v1).unwrap()["f:data"]
                .get("f:shared")
                .is_some()
        })
        .map(|m| m.manager.unwrap())
        .collect();
    assert_eq!(owners, vec!["bob"]);

    // alice stops applying `onlya` and the label: they are removed
    let a2 = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {}});
    let o = api
        .patch("ssa", &PatchParams::apply("alice"), &Patch::Apply(&a2))
        .await
        .unwrap();
    let data = o.data.unwrap();
    assert!(!data.contains_key("onlya"));
    assert_eq!(data["shared"], "2");
    assert!(o.metadata.labels.unwrap_or_default().is_empty());

    // non-apply writes are tracked as Update operations
    let o = api
        .patch(
            "ssa",
            &PatchParams {
                field_manager: Some("editor".into()),
                ..Default::default()
            },
            &Patch::Merge(json!({"data": {"edited": "y"}})),
        )
        .await
        .unwrap();
    assert!(
        o.metadata
            .managed_fields
            .unwrap()
            .iter()
            .any(|m| m.manager.as_deref() == Some("editor") && m.operation.as_deref() == Some("Update"))
    );

    // apply without a field manager is rejected; apply creates missing objects
    let (status, _) = raw(
        &c,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/new",
        "application/apply-patch+yaml",
        Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "new"}})),
    )
    .await;
    assert_eq!(status, 422);
    let created = api.patch("new", &PatchParams::apply("alice"), &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "new"}, "data": {"a": "b"}}))).await.unwrap();
    assert_eq!(created.data.unwrap()["a"], "b");
    h.shutdown().await;
}

fn crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    })
}

#[tokio::test]
async fn crds_custom_resources_and_status_subresource() {
    let (h, c) = start().await;
    let crds: Api<DynamicObject> = Api::all_with(
        c.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    let created = crds
        .create(&PostParams::default(), &serde_json::from_value(crd()).unwrap())
        .await
        .unwrap();
    let conds = created.data["status"]["conditions"].as_array().unwrap().clone();
    assert!(
        conds
            .iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True")
    );
    // discovery lists the new kind
    let (status, doc) = raw(&c, "GET", "/apis/example.com/v1", "application/json", None).await;
    assert_eq!(status, 200);
    assert!(
        doc["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "widgets/status")
    );

    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("example.com", "v1", "Widget"), "widgets");
    let w: Api<DynamicObject> = Api::namespaced_with(c.clone(), "default", &ar);
    let obj: DynamicObject = serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w1"}, "spec": {"size": 1}, "status": {"ready": true}}))
    .unwrap();
    let o = w.create(&PostParams::default(), &obj).await.unwrap();
    assert!(o.data.get("status").is_none(), "status is ignored on create");
    let o = w
        .patch(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 2}, "status": {"ready": true}})),
        )
        .await
        .unwrap();
    assert!(o.data.get("status").is_none(), "main endpoint ignores status");
    assert_eq!(o.metadata.generation, Some(2));
    let o = w
        .patch_status(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 9}, "status": {"ready": true}})),
        )
        .await
        .unwrap();
    assert_eq!(o.data["status"]["ready"], true);
    assert_eq!(o.data["spec"]["size"], 2, "status endpoint ignores spec");
    assert_eq!(o.metadata.generation, Some(2));
    // SSA on the status subresource
    let o = w
        .patch_status("w1", &PatchParams::apply("ctrl").force(), &Patch::Apply(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"}, "status": {"phase": "Ok"}})))
        .await
        .unwrap();
    assert_eq!(o.data["status"]["phase"], "Ok");

    // deleting the CRD removes the kind and its objects
    crds.delete("widgets.example.com", &DeleteParams::default())
        .await
        .unwrap();
    let (status, _) = raw(
        &c,
        "GET",
        "/apis/example.com/v1/namespaces/default/widgets",
        "application/json",
        None,
    )
    .await;
    assert_eq!(status, 404);
    h.shutdown().await;
}

#[tokio::test]
async fn dry_run_does_not_persist() {
    let (h, c) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(c, "default");
    let pp = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let before = h.resource_version();
    let o = api.create(&pp, &cm("dry", &[])).await.unwrap();
    assert_eq!(o.metadata.name.as_deref(), Some("dry"));
    assert_eq!(code(&api.get("dry").await.unwrap_err()), 404);
    api.create(&PostParams::default(), &cm("real", &[]))
        .await
        .unwrap();
    let o = api
        .patch(
            "real",
            &PatchParams::default().dry_run(),
            &Patch::Merge(json!({"data": {"k": "dry"}})),
        )
        .await
        .unwrap();
    assert_eq!(o.data.unwrap()["k"], "dry");
    assert_eq!(api.get("real").await.unwrap().data.unwrap()["k"], "v");
    api.delete(
        "real",
        &DeleteParams {
            dry_run: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(api.get("real").await.is_ok());
    assert_eq!(h.resource_version(), before + 1);
    h.shutdown().await;
}

#[tokio::test]
async fn finalizers_and_deletion_timestamp() {
    let (h, c) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(c, "default");
    let mut o = cm("fin", &[]);
    o.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    api.create(&PostParams::default(), &o).await.unwrap();
    api.delete("fin", &DeleteParams::default()).await.unwrap();
    let o = api.get("fin").await.unwrap();
    assert!(o.metadata.deletion_timestamp.is_some());
    // no new finalizers while deleting
    let e = api
        .patch(
            "fin",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/hold", "x/y"]}})),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), 422);
    api.patch(
        "fin",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(code(&api.get("fin").await.unwrap_err()), 404);
    h.shutdown().await;
}

fn owned_by(name: &str, owner: &ConfigMap) -> Secret {
    let mut s: Secret = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    s.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: owner.metadata.name.clone().unwrap(),
        uid: owner.metadata.uid.clone().unwrap(),
        ..Default::default()
    }]);
    s
}

#[tokio::test]
async fn owner_reference_garbage_collection() {
    let (h, c) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(c.clone(), "default");
    let pp = PostParams::default();
    // background
    let owner = cms.create(&pp, &cm("owner", &[])).await.unwrap();
    secrets.create(&pp, &owned_by("dep", &owner)).await.unwrap();
    cms.delete("owner", &DeleteParams::background()).await.unwrap();
    assert_eq!(code(&secrets.get("dep").await.unwrap_err()), 404);
    // orphan
    let owner = cms.create(&pp, &cm("owner2", &[])).await.unwrap();
    secrets.create(&pp, &owned_by("dep2", &owner)).await.unwrap();
    cms.delete("owner2", &DeleteParams::orphan()).await.unwrap();
    let dep = secrets.get("dep2").await.unwrap();
    assert!(dep.metadata.owner_references.unwrap_or_default().is_empty());
    // foreground: the owner waits for a dependent that has a finalizer
    let owner = cms.create(&pp, &cm("owner3", &[])).await.unwrap();
    let mut dep = owned_by("dep3", &owner);
    dep.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    secrets.create(&pp, &dep).await.unwrap();
    cms.delete("owner3", &DeleteParams::foreground()).await.unwrap();
    let o = cms.get("owner3").await.unwrap();
    assert!(o.metadata.deletion_timestamp.is_some());
    assert!(
        o.metadata
            .finalizers
            .unwrap()
            .contains(&"foregroundDeletion".to_string())
    );
    assert!(
        secrets
            .get("dep3")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    secrets
        .patch(
            "dep3",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    assert_eq!(code(&cms.get("owner3").await.unwrap_err()), 404);
    // a dependent created for an owner that is already gone is collected
    let gone = cms.create(&pp, &cm("gone", &[])).await.unwrap();
    cms.delete("gone", &DeleteParams::default()).await.unwrap();
    secrets.create(&pp, &owned_by("late", &gone)).await.unwrap();
    assert_eq!(code(&secrets.get("late").await.unwrap_err()), 404);
    // a dependent with another live owner survives
    let a = cms.create(&pp, &cm("oa", &[])).await.unwrap();
    let b = cms.create(&pp, &cm("ob", &[])).await.unwrap();
    let mut shared = owned_by("shared", &a);
    shared
        .metadata
        .owner_references
        .as_mut()
        .unwrap()
        .extend(owned_by("x", &b).metadata.owner_references.unwrap());
    secrets.create(&pp, &shared).await.unwrap();
    cms.delete("oa", &DeleteParams::background()).await.unwrap();
    let s = secrets.get("shared").await.unwrap();
    assert_eq!(s.metadata.owner_references.unwrap().len(), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn namespace_deletion_cascades() {
    let (h, c) = start().await;
    let nss: Api<Namespace> = Api::all(c.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "doomed"}})).unwrap(),
    )
    .await
    .unwrap();
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "doomed");
    api.create(&PostParams::default(), &cm("plain", &[]))
        .await
        .unwrap();
    let mut held = cm("held", &[]);
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    api.create(&PostParams::default(), &held).await.unwrap();
    nss.delete("doomed", &DeleteParams::default()).await.unwrap();
    let ns = nss.get("doomed").await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Terminating"));
    assert_eq!(code(&api.get("plain").await.unwrap_err()), 404);
    // creating in a terminating namespace is forbidden
    let e = api
        .create(&PostParams::default(), &cm("late", &[]))
        .await
        .unwrap_err();
    assert_eq!(code(&e), 403);
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(code(&nss.get("doomed").await.unwrap_err()), 404);
    // a namespace finalizer keeps the namespace until it is removed, and removing it
    // while content remains does not orphan that content
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "held-ns", "finalizers": ["example.com/x"]}}))
            .unwrap(),
    )
    .await
    .unwrap();
    let held_api: Api<ConfigMap> = Api::namespaced(c.clone(), "held-ns");
    let mut pinned = cm("pinned", &[]);
    pinned.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    held_api.create(&PostParams::default(), &pinned).await.unwrap();
    nss.delete("held-ns", &DeleteParams::default()).await.unwrap();
    nss.patch(
        "held-ns",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(
        nss.get("held-ns").await.is_ok(),
        "content remains, so the namespace stays"
    );
    held_api
        .patch(
            "pinned",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    assert_eq!(code(&nss.get("held-ns").await.unwrap_err()), 404);
    // creating in a missing namespace is a 404
    let e = Api::<ConfigMap>::namespaced(c, "nope")
        .create(&PostParams::default(), &cm("x", &[]))
        .await
        .unwrap_err();
    assert_eq!(code(&e), 404);
    h.shutdown().await;
}

#[tokio::test]
async fn secrets_configmaps_validation() {
    let (h, c) = start().await;
    let secrets: Api<Secret> = Api::namespaced(c.clone(), "default");
    let pp = PostParams::default();
    // stringData is folded into data
    let s = secrets
        .create(
            &pp,
            &serde_json::from_value(
                json!({"metadata": {"name": "sd"}, "stringData": {"user": "admin"}, "data": {"x": "eQ=="}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let data = s.data.unwrap();
    assert_eq!(data["user"].0, b"admin");
    assert_eq!(data["x"].0, b"y");
    assert!(s.string_data.is_none());
    assert_eq!(s.type_.as_deref(), Some("Opaque"));
    // immutable secrets reject data changes
    secrets
        .create(
            &pp,
            &serde_json::from_value(
                json!({"metadata": {"name": "imm"}, "immutable": true, "data": {"a": "YQ=="}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let e = secrets
        .patch(
            "imm",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"a": "Yg=="}})),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), 422);
    assert!(message(&e).contains("immutable"));
    // labels of an immutable secret can still change
    secrets
        .patch(
            "imm",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    cms.create(
        &pp,
        &serde_json::from_value(json!({"metadata": {"name": "immc"}, "immutable": true, "data": {"a": "1"}}))
            .unwrap(),
    )
    .await
    .unwrap();
    let e = cms
        .patch(
            "immc",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"a": "2"}})),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), 422);
    // the 1 MiB limit
    let big = "a".repeat(1024 * 1024 + 1);
    let e = secrets
        .create(
            &pp,
            &serde_json::from_value(json!({"metadata": {"name": "big"}, "stringData": {"k": big}})).unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), 422);
    let e = cms
        .create(
            &pp,
            &serde_json::from_value(json!({"metadata": {"name": "big"}, "data": {"k": big}})).unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), 422);
    // name validation
    let e = cms.create(&pp, &cm("Bad_Name", &[])).await.unwrap_err();
    assert_eq!((code(&e), reason(&e).as_str()), (422, "Invalid"));
    assert!(message(&e).contains("RFC 1123"), "{}", message(&e));
    let (status, body) = raw(
        &c,
        "POST",
        "/api/v1/namespaces",
        "application/json",
        Some(json!({"metadata": {"name": "a.b"}})),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    // label values are validated like the real server does
    let e = cms
        .create(&pp, &cm("badlabel", &[("app", "not valid!")]))
        .await
        .unwrap_err();
    assert_eq!(code(&e), 422);
    assert!(message(&e).contains("metadata.labels"), "{}", message(&e));
    // generateName
    let mut g = cm("", &[]);
    g.metadata.name = None;
    g.metadata.generate_name = Some("gen-".into());
    let o = cms.create(&pp, &g).await.unwrap();
    assert!(o.metadata.name.unwrap().starts_with("gen-"));
    h.shutdown().await;
}

#[tokio::test]
async fn malformed_requests_and_unknown_paths() {
    let (h, c) = start().await;
    let (status, body) = raw_bytes(
        &c,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        b"{not json".to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["kind"], "Status");
    let (status, _) = raw_bytes(
        &c,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/x",
        "text/plain",
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(status, 415);
    let (status, body) = raw(
        &c,
        "GET",
        "/api/v1/namespaces/default/nothings",
        "application/json",
        None,
    )
    .await;
    assert_eq!((status, body["reason"].as_str()), (404, Some("NotFound")));
    let (status, _) = raw(&c, "GET", "/apis/nope.example.com/v1", "application/json", None).await;
    assert_eq!(status, 404);
    let (status, v) = raw(&c, "GET", "/version", "application/json", None).await;
    assert_eq!((status, v["major"].as_str()), (200, Some("1")));
    // a wrong token is a 401
    let bad = client_with_token(&h, "wrong").await;
    let (status, body) = raw(&bad, "GET", "/api/v1/namespaces", "application/json", None).await;
    assert_eq!((status, body["reason"].as_str()), (401, Some("Unauthorized")));
    h.shutdown().await;
}

#[tokio::test]
async fn token_request_and_token_review() {
    let (h, c) = start().await;
    let sas: Api<ServiceAccount> = Api::namespaced(c.clone(), "default");
    sas.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "bot"}})).unwrap(),
    )
    .await
    .unwrap();
    let (status, tr) = raw(&c, "POST", "/api/v1/namespaces/default/serviceaccounts/bot/token", "application/json",
        Some(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"audiences": ["vault"], "expirationSeconds": 600}}))).await;
    assert_eq!(status, 201, "{tr}");
    let token = tr["status"]["token"].as_str().unwrap().to_string();
    let review = |token: &str, auds: Value| json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token, "audiences": auds}});
    let (status, r) = raw(
        &c,
        "POST",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        "application/json",
        Some(review(&token, json!(["vault"]))),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(r["status"]["authenticated"], true);
    assert_eq!(
        r["status"]["user"]["username"],
        "system:serviceaccount:default:bot"
    );
    let groups: Vec<&str> = r["status"]["user"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap())
        .collect();
    assert_eq!(
        groups,
        vec![
            "system:serviceaccounts",
            "system:serviceaccounts:default",
            "system:authenticated"
        ]
    );
    // wrong audience, tampered token
    let (_, r) = raw(
        &c,
        "POST",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        "application/json",
        Some(review(&token, json!(["other"]))),
    )
    .await;
    assert_eq!(r["status"]["authenticated"], false);
    let mut tampered = token.clone();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
    let (_, r) = raw(
        &c,
        "POST",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        "application/json",
        Some(review(&tampered, json!([]))),
    )
    .await;
    assert_eq!(r["status"]["authenticated"], false);
    // the admin token reviews as a master
    let (_, r) = raw(
        &c,
        "POST",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        "application/json",
        Some(review(h.token(), json!([]))),
    )
    .await;
    assert_eq!(r["status"]["authenticated"], true);
    assert!(
        r["status"]["user"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == "system:masters")
    );
    // the token authenticates API requests as the service account
    let sa_client = client_with_token(&h, &token).await;
    let (_, r) = raw(
        &sa_client,
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        "application/json",
        Some(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})),
    )
    .await;
    assert_eq!(
        r["status"]["userInfo"]["username"],
        "system:serviceaccount:default:bot"
    );
    // deleting the service account invalidates its tokens
    sas.delete("bot", &DeleteParams::default()).await.unwrap();
    let (_, r) = raw(
        &c,
        "POST",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        "application/json",
        Some(review(&token, json!(["vault"]))),
    )
    .await;
    assert_eq!(r["status"]["authenticated"], false);
    let (status, _) = raw(
        &c,
        "POST",
        "/api/v1/namespaces/default/serviceaccounts/bot/token",
        "application/json",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 404);
    h.shutdown().await;
}

#[tokio::test]
async fn rbac_roles_bindings_and_impersonation() {
    let (h, c) = start_with(Options {
        rbac: true,
        ..Options::default()
    })
    .await;
    let sas: Api<ServiceAccount> = Api::namespaced(c.clone(), "default");
    sas.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "ctrl"}})).unwrap(),
    )
    .await
    .unwrap();
    let token = h
        .service_account_token("default", "ctrl", Duration::from_secs(3600))
        .unwrap();
    let sa = client_with_token(&h, &token).await;
    let sa_secrets: Api<Secret> = Api::namespaced(sa.clone(), "default");
    let e = sa_secrets.list(&ListParams::default()).await.unwrap_err();
    assert_eq!(code(&e), 403);
    assert!(
        message(&e).contains("system:serviceaccount:default:ctrl")
            && message(&e).contains("cannot list resource \"secrets\""),
        "{}",
        message(&e)
    );

    let roles: Api<DynamicObject> = Api::namespaced_with(
        c.clone(),
        "default",
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", "Role"),
            "roles",
        ),
    );
    let rbs: Api<DynamicObject> = Api::namespaced_with(
        c.clone(),
        "default",
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", "RoleBinding"),
            "rolebindings",
        ),
    );
    roles.create(&PostParams::default(), &serde_json::from_value(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "r"}, "rules": [
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["update"], "resourceNames": ["allowed"]},
            {"apiGroups": [""], "resources": ["secrets/status"], "verbs": ["patch"]}]})).unwrap()).await.unwrap();
    rbs.create(&PostParams::default(), &serde_json::from_value(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "rb"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
        "subjects": [{"kind": "ServiceAccount", "name": "ctrl", "namespace": "default"}]})).unwrap()).await.unwrap();
    assert!(sa_secrets.list(&ListParams::default()).await.is_ok());
    assert_eq!(
        code(
            &sa_secrets
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap()
                )
                .await
                .unwrap_err()
        ),
        403
    );
    // other namespaces stay forbidden
    assert_eq!(
        code(
            &Api::<Secret>::namespaced(sa.clone(), "kube-system")
                .list(&ListParams::default())
                .await
                .unwrap_err()
        ),
        403
    );
    // resourceNames
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    cms.create(&PostParams::default(), &cm("allowed", &[]))
        .await
        .unwrap();
    cms.create(&PostParams::default(), &cm("denied", &[]))
        .await
        .unwrap();
    let sa_cms: Api<ConfigMap> = Api::namespaced(sa.clone(), "default");
    let mut allowed = cms.get("allowed").await.unwrap();
    allowed.data = Some(BTreeMap::from([("k".to_string(), "new".to_string())]));
    assert!(
        sa_cms
            .replace("allowed", &PostParams::default(), &allowed)
            .await
            .is_ok()
    );
    let denied = cms.get("denied").await.unwrap();
    assert_eq!(
        code(
            &sa_cms
                .replace("denied", &PostParams::default(), &denied)
                .await
                .unwrap_err()
        ),
        403
    );

    // impersonation by the admin; SelfSubjectAccessReview answers for the impersonated user
    let imp = impersonating(&h, "system:serviceaccount:default:ctrl", &[]).await;
    assert!(
        Api::<Secret>::namespaced(imp.clone(), "default")
            .list(&ListParams::default())
            .await
            .is_ok()
    );
    assert_eq!(
        code(
            &Api::<Namespace>::all(imp.clone())
                .list(&ListParams::default())
                .await
                .unwrap_err()
        ),
        403
    );
    let ssar = |verb: &str, res: &str, sub: &str| {
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"namespace": "default", "verb": verb, "resource": res, "subresource": sub}}})
    };
    let (_, r) = raw(
        &imp,
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        "application/json",
        Some(ssar("watch", "secrets", "")),
    )
    .await;
    assert_eq!(r["status"]["allowed"], true);
    let (_, r) = raw(
        &imp,
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        "application/json",
        Some(ssar("delete", "secrets", "")),
    )
    .await;
    assert_eq!(r["status"]["allowed"], false);
    let (_, r) = raw(
        &imp,
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        "application/json",
        Some(ssar("patch", "secrets", "status")),
    )
    .await;
    assert_eq!(r["status"]["allowed"], true);
    // a group granted through a ClusterRoleBinding
    let crs: Api<DynamicObject> = Api::all_with(
        c.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", "ClusterRole"),
            "clusterroles",
        ),
    );
    let crbs: Api<DynamicObject> = Api::all_with(
        c.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding"),
            "clusterrolebindings",
        ),
    );
    crs.create(&PostParams::default(), &serde_json::from_value(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "ns-reader"}, "rules": [{"apiGroups": ["*"], "resources": ["namespaces"], "verbs": ["*"]}]})).unwrap()).await.unwrap();
    crbs.create(&PostParams::default(), &serde_json::from_value(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "ns-reader"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "ns-reader"},
        "subjects": [{"kind": "Group", "name": "readers"}]})).unwrap()).await.unwrap();
    let grp = impersonating(&h, "someone", &["readers"]).await;
    assert!(
        Api::<Namespace>::all(grp)
            .list(&ListParams::default())
            .await
            .is_ok()
    );
    // non-admins cannot impersonate
    let (status, _) = {
        let req = axum::http::Request::builder()
            .uri("/api/v1/namespaces")
            .header("Impersonate-User", "devcluster-admin")
            .body(Vec::new())
            .unwrap();
        let resp = sa.send(req.map(kube::client::Body::from)).await.unwrap();
        (resp.status().as_u16(), ())
    };
    assert_eq!(status, 403);
    // switching RBAC off allows everything again
    h.set_rbac(false);
    assert!(
        sa_secrets
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap()
            )
            .await
            .is_ok()
    );
    h.shutdown().await;
}

async fn tiny_http_server() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let line = req.lines().next().unwrap_or_default().to_string();
                let has_auth = req.to_ascii_lowercase().contains("authorization:");
                let body = format!("echo {line} auth={has_auth}");
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn service_proxy_to_registered_endpoints() {
    let (h, c) = start().await;
    let (addr, task) = tiny_http_server().await;
    let svcs: Api<DynamicObject> = Api::namespaced_with(
        c.clone(),
        "default",
        &ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "Service"), "services"),
    );
    svcs.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ctrl"},
        "spec": {"ports": [{"name": "http", "port": 8080}]}}),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    // not registered yet: 503
    let (status, _) = raw(
        &c,
        "GET",
        "/api/v1/namespaces/default/services/ctrl:8080/proxy/healthz",
        "",
        None,
    )
    .await;
    assert_eq!(status, 503);
    h.register_service_endpoint("default", "ctrl", 8080, addr);
    let (status, body) = raw(
        &c,
        "GET",
        "/api/v1/namespaces/default/services/ctrl:8080/proxy/v1/seal?x=1",
        "",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!("echo GET /v1/seal?x=1 HTTP/1.1 auth=false"),
        "path and query forwarded, credentials stripped"
    );
    let (status, body) = raw(
        &c,
        "POST",
        "/api/v1/namespaces/default/services/ctrl/proxy/",
        "",
        None,
    )
    .await;
    assert_eq!((status, body), (200, json!("echo POST / HTTP/1.1 auth=false")));
    // annotation-registered loopback endpoint
    svcs.create(&PostParams::default(), &serde_json::from_value(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "annotated",
        "annotations": {"devcluster.sealant.dev/endpoint": addr.to_string()}}, "spec": {"ports": [{"port": 80}]}})).unwrap()).await.unwrap();
    let (status, _) = raw(
        &c,
        "GET",
        "/api/v1/namespaces/default/services/annotated:80/proxy/x",
        "",
        None,
    )
    .await;
    assert_eq!(status, 200);
    // missing service
    let (status, _) = raw(
        &c,
        "GET",
        "/api/v1/namespaces/default/services/none:80/proxy/x",
        "",
        None,
    )
    .await;
    assert_eq!(status, 404);
    task.abort();
    h.shutdown().await;
}

#[tokio::test]
async fn fault_injection_errors_latency_and_admin_endpoint() {
    let (h, c) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    api.create(&PostParams::default(), &cm("f", &[])).await.unwrap();
    h.set_faults(FaultConfig {
        errors: BTreeMap::from([("get".into(), VerbFault { rate: 1.0, code: 503 })]),
        ..FaultConfig::default()
    });
    assert_eq!(code(&api.get("f").await.unwrap_err()), 503);
    assert!(
        api.list(&ListParams::default()).await.is_ok(),
        "other verbs unaffected"
    );
    h.set_faults(FaultConfig {
        errors: BTreeMap::from([("update".into(), VerbFault { rate: 1.0, code: 409 })]),
        ..FaultConfig::default()
    });
    let cur = api.get("f").await.unwrap();
    assert_eq!(
        code(&api.replace("f", &PostParams::default(), &cur).await.unwrap_err()),
        409
    );
    // a 50% rate fails some but not all of 60 requests
    h.set_faults(FaultConfig {
        errors: BTreeMap::from([("get".into(), VerbFault { rate: 0.5, code: 500 })]),
        ..FaultConfig::default()
    });
    let mut failed = 0;
    for _ in 0..60 {
        if api.get("f").await.is_err() {
            failed += 1;
        }
    }
    assert!((5..55).contains(&failed), "failed {failed} of 60");
    // latency
    h.set_faults(FaultConfig {
        latency_ms: 150,
        ..FaultConfig::default()
    });
    let t = std::time::Instant::now();
    api.get("f").await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(150));
    // the HTTP admin endpoint (admin token only)
    let (status, cfg) = raw(
        &c,
        "PUT",
        "/devcluster/faults",
        "application/json",
        Some(json!({"errors": {"list": {"rate": 1.0, "code": 500}}})),
    )
    .await;
    assert_eq!(status, 200, "{cfg}");
    assert_eq!(h.faults().errors["list"].code, 500);
    assert_eq!(code(&api.list(&ListParams::default()).await.unwrap_err()), 500);
    let (status, _) = raw(&c, "DELETE", "/devcluster/faults", "", None).await;
    assert_eq!(status, 200);
    assert!(api.list(&ListParams::default()).await.is_ok());
    let sas: Api<ServiceAccount> = Api::namespaced(c.clone(), "default");
    sas.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "u"}})).unwrap(),
    )
    .await
    .unwrap();
    let user = client_with_token(
        &h,
        &h.service_account_token("default", "u", Duration::from_secs(600))
            .unwrap(),
    )
    .await;
    let (status, _) = raw(
        &user,
        "PUT",
        "/devcluster/faults",
        "application/json",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 403);
    h.shutdown().await;
}

#[tokio::test]
async fn fault_mix_per_user_and_counters() {
    let (h, admin) = start().await;
    h.add_user_token("chaos-token", "chaos", &["system:masters"]);
    let chaos = client_with_token(&h, "chaos-token").await;
    let api: Api<ConfigMap> = Api::namespaced(chaos.clone(), "default");
    let admin_api: Api<ConfigMap> = Api::namespaced(admin.clone(), "default");
    // 30% 503 and 20% 409 on create, as one draw: about half the creates fail, with both codes
    h.set_faults(FaultConfig {
        error_mix: BTreeMap::from([(
            "create".into(),
            vec![
                VerbFault { rate: 0.3, code: 503 },
                VerbFault { rate: 0.2, code: 409 },
            ],
        )]),
        watch_drop_after_ms: 200,
        force_watch_expired: true,
        only_users: vec!["chaos".into()],
        ..FaultConfig::default()
    });
    let (mut created, mut c503, mut c409) = (0u64, 0u64, 0u64);
    for i in 0..200 {
        match api
            .create(&PostParams::default(), &cm(&format!("m{i}"), &[]))
            .await
        {
            Ok(_) => created += 1,
            Err(e) => match code(&e) {
                503 => c503 += 1,
                409 => c409 += 1,
                other => panic!("unexpected code {other}"),
            },
        }
    }
    assert!(
        (30..90).contains(&c503) && (15..70).contains(&c409),
        "503: {c503}, 409: {c409}"
    );
    // a failed request wrote nothing
    let stored = admin_api.list(&ListParams::default()).await.unwrap().items.len() as u64;
    assert_eq!(stored, created);
    // other users are not disturbed
    for i in 0..50 {
        admin_api
            .create(&PostParams::default(), &cm(&format!("a{i}"), &[]))
            .await
            .unwrap();
    }
    let stats = h.fault_stats();
    assert_eq!(stats.requests["create"], 200, "{stats:?}");
    assert_eq!(stats.injected_code(503), c503);
    assert_eq!(stats.injected_code(409), c409);
    assert_eq!(stats.injected_verb("create"), c503 + c409);
    assert_eq!(stats.requests_of(&["create", "update"]), 200);
    // watches by the faulty user are dropped and their resumes answered 410; the admin's are not
    let rv = admin_api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let wp = WatchParams::default().timeout(2);
    let mut events = 0;
    let mut stream = api.watch(&wp, &rv).await.unwrap().boxed();
    while let Some(ev) = stream.next().await {
        if let Ok(WatchEvent::Error(e)) = ev {
            assert_eq!(e.code, 410);
        }
        events += 1;
    }
    assert!(events <= 1);
    let t = std::time::Instant::now();
    let mut stream = api
        .watch(&WatchParams::default().timeout(5), "0")
        .await
        .unwrap()
        .boxed();
    while stream.next().await.is_some() {}
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "dropped after 200 ms, not the 5 s timeout"
    );
    let mut stream = admin_api.watch(&wp, &rv).await.unwrap().boxed();
    while let Some(ev) = stream.next().await {
        assert!(!matches!(ev, Ok(WatchEvent::Error(_))), "admin watch got {ev:?}");
    }
    let stats = h.fault_stats();
    assert_eq!(
        (stats.watches_expired, stats.watches_dropped),
        (1, 1),
        "{stats:?}"
    );
    // the admin endpoint serves the counters and refuses rates adding up to more than 1
    let (status, body) = raw(&admin, "GET", "/devcluster/faults/stats", "", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["injected"]["create"]["503"], json!(c503), "{body}");
    assert_eq!(body["watchesDropped"], json!(1));
    let (status, body) = raw(
        &admin,
        "PUT",
        "/devcluster/faults",
        "application/json",
        Some(json!({"errors": {"patch": {"rate": 0.7}}, "errorMix": {"*": [{"rate": 0.5, "code": 409}]}})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("more than 1"),
        "{body}"
    );
    h.reset_fault_stats();
    assert_eq!(h.fault_stats(), sealant_devcluster::FaultStats::default());
    h.shutdown().await;
}

#[tokio::test]
async fn dropped_watches_cannot_resume_but_fresh_lists_can() {
    let (h, c) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(c.clone(), "default");
    api.create(&PostParams::default(), &cm("x", &[])).await.unwrap();
    let rv = h.resource_version().to_string();
    h.set_faults(FaultConfig {
        watch_drop_after_ms: 300,
        expire_dropped: true,
        ..FaultConfig::default()
    });
    // a watch from now works until it is dropped
    // a write the ConfigMap watch does not see, so the drop happens past `rv`
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "s"}})).unwrap(),
        )
        .await
        .unwrap();
    let events: Vec<WatchEvent<ConfigMap>> = api
        .watch(&WatchParams::default().timeout(30), &rv)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(h.fault_stats().watches_dropped, 1);
    // resuming from before the drop is 410 Gone; from the current version it works
    let events: Vec<WatchEvent<ConfigMap>> = api
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert!(
        matches!(events.first(), Some(WatchEvent::Error(s)) if s.code == 410),
        "{events:?}"
    );
    let now = h.resource_version().to_string();
    let events: Vec<WatchEvent<ConfigMap>> = api
        .watch(&WatchParams::default().timeout(5), &now)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert!(
        !events.iter().any(|e| matches!(e, WatchEvent::Error(_))),
        "{events:?}"
    );
    let stats = h.fault_stats();
    assert_eq!(
        (stats.watches_dropped, stats.watches_expired),
        (2, 1),
        "{stats:?}"
    );
    // a kube-runtime reflector keeps up through drops and 410s while other objects change
    let (reader, writer) = reflector::store::<ConfigMap>();
    let stream = reflector(
        writer,
        watcher(api.clone(), watcher::Config::default()).default_backoff(),
    )
    .applied_objects();
    let task = tokio::spawn(async move {
        let mut s = std::pin::pin!(stream);
        while s.next().await.is_some() {}
    });
    for i in 0..10 {
        api.create(&PostParams::default(), &cm(&format!("r{i}"), &[]))
            .await
            .unwrap();
        let s = json!({"metadata": {"name": format!("s{i}")}});
        secrets
            .create(&PostParams::default(), &serde_json::from_value(s).unwrap())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let ok = eventually(15, || {
        let r = reader.clone();
        async move { r.state().len() == 11 }
    })
    .await;
    assert!(ok, "reflector has {}", reader.state().len());
    let stats = h.fault_stats();
    assert!(
        stats.watches_dropped >= 3 && stats.watches_expired >= 2,
        "{stats:?}"
    );
    task.abort();
    h.shutdown().await;
}

#[tokio::test]
async fn events_leases_and_apps_kinds() {
    let (h, c) = start().await;
    let leases: Api<Lease> = Api::namespaced(c.clone(), "default");
    let l = leases.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "leader"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}})).unwrap()).await.unwrap();
    let mut l2 = l.clone();
    l2.spec.as_mut().unwrap().holder_identity = Some("b".into());
    leases
        .replace("leader", &PostParams::default(), &l2)
        .await
        .unwrap();
    assert_eq!(
        code(
            &leases
                .replace("leader", &PostParams::default(), &l)
                .await
                .unwrap_err()
        ),
        409,
        "lease takeover races are detected"
    );

    let core_ev: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(c.clone(), "default");
    for (n, obj) in [("e1", "s1"), ("e2", "s2")] {
        core_ev.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": n}, "involvedObject": {"kind": "Secret", "name": obj, "namespace": "default"}, "reason": "Sealed", "type": "Normal", "message": "ok"})).unwrap()).await.unwrap();
    }
    let l = core_ev
        .list(&ListParams::default().fields("involvedObject.name=s2"))
        .await
        .unwrap();
    assert_eq!(l.items.len(), 1);
    let new_ev: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(c.clone(), "default");
    new_ev.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "n1"}, "eventTime": "2025-01-01T00:00:00.000000Z", "reportingController": "sealant", "reportingInstance": "x", "action": "Seal", "reason": "Sealed", "type": "Normal", "regarding": {"kind": "Secret", "name": "s1"}})).unwrap()).await.unwrap();
    // a core Event shows up on an events.k8s.io watch, converted
    let rv = h.resource_version().to_string();
    core_ev
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "e3"}, "involvedObject": {"kind": "Secret", "name": "s3"}, "message": "watch me"})).unwrap())
        .await
        .unwrap();
    let wp = WatchParams::default().timeout(1).disable_bookmarks();
    let seen: Vec<WatchEvent<k8s_openapi::api::events::v1::Event>> =
        new_ev.watch(&wp, &rv).await.unwrap().try_collect().await.unwrap();
    match seen.first() {
        Some(WatchEvent::Added(e)) => assert_eq!(e.note.as_deref(), Some("watch me")),
        other => panic!("expected ADDED, got {other:?}"),
    }
    core_ev.delete("e3", &DeleteParams::default()).await.unwrap();
    // one storage, two shapes: core and events.k8s.io Events see each other's objects
    let n1 = new_ev.get("n1").await.unwrap();
    assert_eq!(n1.reporting_controller.as_deref(), Some("sealant"));
    assert_eq!(new_ev.list(&ListParams::default()).await.unwrap().items.len(), 3);
    let as_core = core_ev.get("n1").await.unwrap();
    assert_eq!(as_core.involved_object.name.as_deref(), Some("s1"));
    assert_eq!(as_core.reporting_component.as_deref(), Some("sealant"));
    let e1 = new_ev.get("e1").await.unwrap();
    assert_eq!(e1.regarding.unwrap().name.as_deref(), Some("s1"));
    assert_eq!(e1.note.as_deref(), Some("ok"));
    let by_regarding = new_ev
        .list(&ListParams::default().fields("regarding.name=s2"))
        .await
        .unwrap();
    assert_eq!(
        by_regarding
            .items
            .iter()
            .map(|e| e.metadata.name.clone().unwrap())
            .collect::<Vec<_>>(),
        vec!["e2"]
    );
    for (kind, plural) in [("StatefulSet", "statefulsets"), ("DaemonSet", "daemonsets")] {
        let api: Api<DynamicObject> = Api::namespaced_with(
            c.clone(),
            "default",
            &ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("apps", "v1", kind), plural),
        );
        api.create(&PostParams::default(), &serde_json::from_value(json!({"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": "x"}, "spec": {"selector": {"matchLabels": {"a": "b"}}}})).unwrap()).await.unwrap();
        assert_eq!(api.list(&ListParams::default()).await.unwrap().items.len(), 1);
    }
    h.shutdown().await;
}

#[tokio::test]
async fn deletecollection_with_selector() {
    let (h, c) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(c, "default");
    for i in 0..4 {
        let app = if i < 3 { "gone" } else { "kept" };
        api.create(&PostParams::default(), &cm(&format!("dc-{i}"), &[("app", app)]))
            .await
            .unwrap();
    }
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("app=gone"),
    )
    .await
    .unwrap();
    let left: Vec<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|o| o.metadata.name.unwrap())
        .collect();
    assert_eq!(left, vec!["dc-3"]);
    h.shutdown().await;
}

/// Throughput figures for the README. Run with:
/// `cargo test --release -p sealant-devcluster --test api -- --ignored bench_throughput --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run explicitly"]
async fn bench_throughput() {
    const N: usize = 5000;
    const CONCURRENCY: usize = 16;
    const WATCHERS: usize = 4;
    let (h, c) = start_with(Options {
        history: 100_000,
        ..Options::default()
    })
    .await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");

    // live fan-out: WATCHERS watch streams each receive every create
    let start_rv = h.resource_version().to_string();
    let mut watchers = Vec::new();
    for _ in 0..WATCHERS {
        let api = api.clone();
        let rv = start_rv.clone();
        watchers.push(tokio::spawn(async move {
            let wp = WatchParams::default().timeout(120).disable_bookmarks();
            let mut s = api.watch(&wp, &rv).await.unwrap().boxed();
            let mut n = 0;
            while let Some(ev) = s.next().await {
                if matches!(ev, Ok(WatchEvent::Added(_))) {
                    n += 1;
                    if n == N {
                        break;
                    }
                }
            }
            std::time::Instant::now()
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t0 = std::time::Instant::now();
    futures::stream::iter(0..N)
        .map(|i| {
            let api = api.clone();
            async move {
                api.create(
                    &PostParams::default(),
                    &cm(&format!("b-{i}"), &[("bench", "yes")]),
                )
                .await
                .unwrap()
            }
        })
        .buffer_unordered(CONCURRENCY)
        .for_each(|_| async {})
        .await;
    let create_secs = t0.elapsed().as_secs_f64();
    let mut last = t0;
    for w in watchers {
        last = last.max(w.await.unwrap());
    }
    let fanout_secs = (last - t0).as_secs_f64();

    // updates
    let t1 = std::time::Instant::now();
    futures::stream::iter(0..N)
        .map(|i| {
            let api = api.clone();
            async move {
                api.patch(
                    &format!("b-{i}"),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"data": {"k": "updated"}})),
                )
                .await
                .unwrap()
            }
        })
        .buffer_unordered(CONCURRENCY)
        .for_each(|_| async {})
        .await;
    let update_secs = t1.elapsed().as_secs_f64();

    // replay: one watcher resuming from before all 2N writes drains the history window
    let t2 = std::time::Instant::now();
    let wp = WatchParams::default().timeout(120).disable_bookmarks();
    let mut s = api.watch(&wp, &start_rv).await.unwrap().boxed();
    let mut n = 0;
    while let Some(Ok(_)) = s.next().await {
        n += 1;
        if n == 2 * N {
            break;
        }
    }
    let replay_secs = t2.elapsed().as_secs_f64();

    // deletes
    let t3 = std::time::Instant::now();
    futures::stream::iter(0..N)
        .map(|i| {
            let api = api.clone();
            async move {
                api.delete(&format!("b-{i}"), &DeleteParams::default())
                    .await
                    .unwrap()
            }
        })
        .buffer_unordered(CONCURRENCY)
        .for_each(|_| async {})
        .await;
    let delete_secs = t3.elapsed().as_secs_f64();

    println!(
        "creates: {N} in {create_secs:.2}s = {:.0}/s (concurrency {CONCURRENCY})",
        N as f64 / create_secs
    );
    println!(
        "updates (merge patch): {N} in {update_secs:.2}s = {:.0}/s",
        N as f64 / update_secs
    );
    println!(
        "deletes: {N} in {delete_secs:.2}s = {:.0}/s",
        N as f64 / delete_secs
    );
    println!(
        "live watch fan-out: {WATCHERS} watchers x {N} events in {fanout_secs:.2}s = {:.0} events/s delivered",
        (WATCHERS * N) as f64 / fanout_secs
    );
    println!(
        "watch replay from history: {} events in {replay_secs:.2}s = {:.0} events/s",
        2 * N,
        (2 * N) as f64 / replay_secs
    );
    h.shutdown().await;
}

#[tokio::test]
async fn watcher_with_streaming_lists() {
    let (h, c) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    for i in 0..3 {
        api.create(&PostParams::default(), &cm(&format!("s{i}"), &[]))
            .await
            .unwrap();
    }
    let (reader, writer) = reflector::store::<ConfigMap>();
    let stream = reflector(
        writer,
        watcher(api.clone(), watcher::Config::default().streaming_lists()),
    );
    let task = tokio::spawn(async move {
        let mut s = std::pin::pin!(stream);
        while s.next().await.is_some() {}
    });
    assert!(reader.wait_until_ready().await.is_ok());
    assert_eq!(
        reader.state().len(),
        3,
        "initial events end with the initial-events-end bookmark"
    );
    api.create(&PostParams::default(), &cm("s3", &[])).await.unwrap();
    let ok = eventually(10, || {
        let r = reader.clone();
        async move { r.state().len() == 4 }
    })
    .await;
    assert!(ok);
    task.abort();
    h.shutdown().await;
}

#[tokio::test]
async fn odd_bodies_are_rejected_without_breaking_the_server() {
    let (h, c) = start().await;
    let bodies = [
        (
            "POST",
            "/api/v1/namespaces/default/services",
            "application/json",
            json!({"metadata": {"name": "s"}, "spec": "x"}),
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            json!({"metadata": {"name": "c"}, "data": [1]}),
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            json!({"metadata": {"name": "c"}, "data": {"a": 1}}),
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            json!({"metadata": {"name": "c"}, "immutable": "yes"}),
        ),
        (
            "POST",
            "/apis/authentication.k8s.io/v1/tokenreviews",
            "application/json",
            json!([1, 2]),
        ),
        (
            "POST",
            "/api/v1/namespaces/default/secrets",
            "application/json",
            json!("just a string"),
        ),
        (
            "POST",
            "/api/v1/namespaces/default/secrets",
            "application/json",
            json!({"metadata": {"name": "s"}, "data": {"k": "not base64!"}}),
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            json!({"kind": "Secret", "metadata": {"name": "c"}}),
        ),
        (
            "POST",
            "/api/v1/namespaces/other/configmaps",
            "application/json",
            json!({"metadata": {"name": "c", "namespace": "default"}}),
        ),
    ];
    for (method, path, ct, body) in bodies {
        let (status, resp) = raw(&c, method, path, ct, Some(body.clone())).await;
        assert!(
            (400..500).contains(&status),
            "{method} {path} {body}: {status} {resp}"
        );
        assert_eq!(resp["kind"], "Status", "{resp}");
    }
    let (status, _) = raw_bytes(
        &c,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/x",
        "application/apply-patch+yaml",
        b"a: [unclosed".to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    for q in [
        "limit=-1",
        "continue=garbage",
        "labelSelector=a%20b%20c",
        "watch=1&resourceVersion=abc",
    ] {
        let (status, _) = raw(
            &c,
            "GET",
            &format!("/api/v1/namespaces/default/configmaps?{q}"),
            "",
            None,
        )
        .await;
        assert_eq!(status, 400, "{q}");
    }
    // still serving
    let (status, _) = raw(&c, "GET", "/api/v1/namespaces", "", None).await;
    assert_eq!(status, 200);
    h.shutdown().await;
}

#[tokio::test]
async fn crd_schema_pruning_defaulting_and_validation() {
    let (h, c) = start().await;
    let crds: Api<DynamicObject> = Api::all_with(
        c.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    let mut def = crd();
    def["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = json!({"type": "object", "properties": {
        "spec": {"type": "object", "required": ["size"], "properties": {
            "size": {"type": "integer", "minimum": 1},
            "mode": {"type": "string", "enum": ["fast", "slow"], "default": "slow"}}},
        "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}}});
    crds.create(&PostParams::default(), &serde_json::from_value(def).unwrap())
        .await
        .unwrap();
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("example.com", "v1", "Widget"), "widgets");
    let w: Api<DynamicObject> = Api::namespaced_with(c.clone(), "default", &ar);
    let o = w
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w"}, "spec": {"size": 1, "unknown": "dropped"}, "top": 1}))
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        o.data["spec"],
        json!({"size": 1, "mode": "slow"}),
        "pruned and defaulted"
    );
    assert!(o.data.get("top").is_none());
    let e = w
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "bad"}, "spec": {"size": 0, "mode": "warp"}}))
            .unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), 422);
    assert!(
        message(&e).contains("spec.size") && message(&e).contains("spec.mode"),
        "{}",
        message(&e)
    );
    let e = w
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"ready": "yes"}})),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), 422);
    h.shutdown().await;
}

#[tokio::test]
async fn token_review_by_a_delegated_reviewer_under_rbac() {
    // OpenBao's kubernetes auth: a reviewer ServiceAccount bound to system:auth-delegator
    // validates other ServiceAccounts' tokens through TokenReview.
    let (h, c) = start_with(Options {
        rbac: true,
        ..Options::default()
    })
    .await;
    let sas: Api<ServiceAccount> = Api::namespaced(c.clone(), "default");
    for n in ["openbao", "app", "nobody"] {
        sas.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": n}})).unwrap(),
        )
        .await
        .unwrap();
    }
    let crbs: Api<DynamicObject> = Api::all_with(
        c.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding"),
            "clusterrolebindings",
        ),
    );
    crbs.create(&PostParams::default(), &serde_json::from_value(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "openbao-delegator"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"},
        "subjects": [{"kind": "ServiceAccount", "name": "openbao", "namespace": "default"}]})).unwrap()).await.unwrap();
    let reviewer = client_with_token(
        &h,
        &h.service_account_token("default", "openbao", Duration::from_secs(3600))
            .unwrap(),
    )
    .await;
    let nobody = client_with_token(
        &h,
        &h.service_account_token("default", "nobody", Duration::from_secs(3600))
            .unwrap(),
    )
    .await;
    let app_token = h
        .service_account_token("default", "app", Duration::from_secs(3600))
        .unwrap();
    let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": app_token}});
    let (status, r) = raw(
        &reviewer,
        "POST",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        "application/json",
        Some(review.clone()),
    )
    .await;
    assert_eq!(status, 201, "{r}");
    assert_eq!(r["status"]["authenticated"], true);
    assert_eq!(
        r["status"]["user"]["username"],
        "system:serviceaccount:default:app"
    );
    let (status, _) = raw(
        &nobody,
        "POST",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        "application/json",
        Some(review),
    )
    .await;
    assert_eq!(status, 403);
    h.shutdown().await;
}

#[tokio::test]
async fn resource_names_allow_single_object_watches() {
    let (h, c) = start_with(Options {
        rbac: true,
        ..Options::default()
    })
    .await;
    Api::<ServiceAccount>::namespaced(c.clone(), "default")
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "one"}})).unwrap(),
        )
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    cms.create(&PostParams::default(), &cm("mine", &[]))
        .await
        .unwrap();
    let roles: Api<DynamicObject> = Api::namespaced_with(
        c.clone(),
        "default",
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", "Role"),
            "roles",
        ),
    );
    let rbs: Api<DynamicObject> = Api::namespaced_with(
        c.clone(),
        "default",
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", "RoleBinding"),
            "rolebindings",
        ),
    );
    roles.create(&PostParams::default(), &serde_json::from_value(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "one-cm"}, "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["mine"], "verbs": ["get", "list", "watch"]}]})).unwrap()).await.unwrap();
    rbs.create(&PostParams::default(), &serde_json::from_value(json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "one-cm"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "one-cm"},
        "subjects": [{"kind": "ServiceAccount", "name": "one", "namespace": "default"}]})).unwrap()).await.unwrap();
    let sa = client_with_token(
        &h,
        &h.service_account_token("default", "one", Duration::from_secs(3600))
            .unwrap(),
    )
    .await;
    let sa_cms: Api<ConfigMap> = Api::namespaced(sa, "default");
    assert_eq!(code(&sa_cms.list(&ListParams::default()).await.unwrap_err()), 403);
    assert_eq!(
        sa_cms
            .list(&ListParams::default().fields("metadata.name=mine"))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    let wp = WatchParams::default().fields("metadata.name=mine").timeout(1);
    let events: Vec<WatchEvent<ConfigMap>> =
        sa_cms.watch(&wp, "0").await.unwrap().try_collect().await.unwrap();
    assert!(matches!(events.first(), Some(WatchEvent::Added(_))));
    assert_eq!(
        code(
            &sa_cms
                .list(&ListParams::default().fields("metadata.name=other"))
                .await
                .unwrap_err()
        ),
        403
    );
    h.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_open_watches_promptly() {
    let (h, c) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let wp = WatchParams::default().timeout(290);
    let mut stream = api.watch(&wp, "0").await.unwrap().boxed();
    let (status, _) = raw(
        &c,
        "POST",
        "/api/v1/namespaces",
        "application/json",
        Some(json!({"metadata": {"name": "x", "labels": "oops"}})),
    )
    .await;
    assert_eq!(status, 422);
    let t = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(5), h.shutdown())
        .await
        .expect("shutdown completes");
    let drained = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
    assert!(drained.is_ok(), "the watch stream ended");
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn metadata_only_get_list_and_watch() {
    let (h, c) = start().await;
    let api: Api<Secret> = Api::namespaced(c.clone(), "default");
    api.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({"metadata": {"name": "m1", "labels": {"a": "b"}}, "stringData": {"k": "v"}}),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    let m = api.get_metadata("m1").await.unwrap();
    assert_eq!(m.metadata.labels.unwrap()["a"], "b");
    assert_eq!(m.types.unwrap().kind, "PartialObjectMetadata");
    let l = api.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(l.items.len(), 1);
    let (status, raw_list) = {
        let req = axum::http::Request::builder()
            .uri("/api/v1/namespaces/default/secrets")
            .header(
                "accept",
                "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json",
            )
            .body(Vec::new())
            .unwrap();
        let resp = c.send(req.map(kube::client::Body::from)).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        (status, serde_json::from_slice::<Value>(&bytes).unwrap())
    };
    assert_eq!(status, 200);
    assert_eq!(raw_list["kind"], "PartialObjectMetadataList");
    assert!(
        raw_list["items"][0].get("data").is_none(),
        "no secret data in metadata lists"
    );
    // a kube-rs watcher over metadata only (Api<PartialObjectMeta<K>>)
    let (reader, writer) = reflector::store();
    let stream = reflector(
        writer,
        watcher(
            Api::<kube::core::PartialObjectMeta<Secret>>::namespaced(c.clone(), "default"),
            watcher::Config::default(),
        ),
    );
    let task = tokio::spawn(async move {
        let mut s = std::pin::pin!(stream);
        while s.next().await.is_some() {}
    });
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "m2"}})).unwrap(),
    )
    .await
    .unwrap();
    let ok = eventually(10, || {
        let r = reader.clone();
        async move { r.state().len() == 2 }
    })
    .await;
    assert!(ok);
    task.abort();
    h.shutdown().await;
}

#[tokio::test]
async fn kube_runtime_finalizer_helper_round_trip() {
    use kube::runtime::controller::Action;
    use kube::runtime::finalizer::{Event, finalizer};
    let (h, c) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    api.create(&PostParams::default(), &cm("guarded", &[]))
        .await
        .unwrap();
    let cleaned = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let run = |obj: ConfigMap| {
        let api = api.clone();
        let cleaned = cleaned.clone();
        async move {
            finalizer(
                &api,
                "sealant.dev/cleanup",
                std::sync::Arc::new(obj),
                |ev| async move {
                    if let Event::Cleanup(_) = ev {
                        cleaned.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                    Ok::<_, std::convert::Infallible>(Action::await_change())
                },
            )
            .await
        }
    };
    // first reconcile adds the finalizer (JSON patch with a test-null op)
    run(api.get("guarded").await.unwrap()).await.unwrap();
    let o = api.get("guarded").await.unwrap();
    assert_eq!(
        o.metadata.finalizers.as_deref(),
        Some(&["sealant.dev/cleanup".to_string()][..])
    );
    // deletion only marks the object; the next reconcile cleans up and removes the finalizer
    api.delete("guarded", &DeleteParams::default()).await.unwrap();
    run(api.get("guarded").await.unwrap()).await.unwrap();
    assert!(cleaned.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(code(&api.get("guarded").await.unwrap_err()), 404);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_runtime_controller_end_to_end() {
    use kube::Resource;
    use kube::runtime::Controller;
    use kube::runtime::controller::Action;
    use std::sync::Arc;

    #[derive(Debug)]
    struct Never;
    impl std::fmt::Display for Never {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("never")
        }
    }
    impl std::error::Error for Never {}

    let (h, c) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(c.clone(), "default");
    // reconcile: every ConfigMap gets an owned Secret mirroring its data (server-side apply)
    let reconcile = |cm: Arc<ConfigMap>, secrets: Arc<Api<Secret>>| async move {
        let oref = cm.controller_owner_ref(&()).unwrap();
        let name = format!("{}-mirror", cm.metadata.name.clone().unwrap());
        let s = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "ownerReferences": [oref]}, "stringData": cm.data.clone().unwrap_or_default()});
        secrets
            .patch(&name, &PatchParams::apply("mirror").force(), &Patch::Apply(&s))
            .await
            .map_err(|_| Never)?;
        Ok::<_, Never>(Action::await_change())
    };
    let ctrl = Controller::new(cms.clone(), watcher::Config::default())
        .owns(secrets.clone(), watcher::Config::default())
        .run(
            reconcile,
            |_, _, _| Action::requeue(Duration::from_millis(100)),
            Arc::new(secrets.clone()),
        )
        .for_each(|_| async {});
    let task = tokio::spawn(ctrl);

    cms.create(&PostParams::default(), &cm("app", &[])).await.unwrap();
    let s = secrets.clone();
    assert!(
        eventually(10, || {
            let s = s.clone();
            async move {
                s.get("app-mirror")
                    .await
                    .is_ok_and(|x| x.data.is_some_and(|d| d["k"].0 == b"v"))
            }
        })
        .await
    );
    // an update flows through the watch and the reconcile applies it
    cms.patch(
        "app",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "w"}})),
    )
    .await
    .unwrap();
    let s = secrets.clone();
    assert!(
        eventually(10, || {
            let s = s.clone();
            async move {
                s.get("app-mirror")
                    .await
                    .is_ok_and(|x| x.data.is_some_and(|d| d["k"].0 == b"w"))
            }
        })
        .await
    );
    // deleting the owner garbage-collects the mirror
    cms.delete("app", &DeleteParams::default()).await.unwrap();
    assert_eq!(code(&secrets.get("app-mirror").await.unwrap_err()), 404);
    task.abort();
    h.shutdown().await;
}

#[tokio::test]
async fn service_account_token_secrets_are_populated() {
    let (h, c) = start().await;
    let sas: Api<ServiceAccount> = Api::namespaced(c.clone(), "default");
    sas.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "reviewer"}})).unwrap(),
    )
    .await
    .unwrap();
    let secrets: Api<Secret> = Api::namespaced(c.clone(), "default");
    let s = secrets
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "reviewer-token",
            "annotations": {"kubernetes.io/service-account.name": "reviewer"}}, "type": "kubernetes.io/service-account-token"})).unwrap())
        .await
        .unwrap();
    let data = s.data.unwrap();
    assert_eq!(data["namespace"].0, b"default");
    assert!(String::from_utf8_lossy(&data["ca.crt"].0).contains("BEGIN CERTIFICATE"));
    let token = String::from_utf8(data["token"].0.clone()).unwrap();
    let client = client_with_token(&h, &token).await;
    let (_, r) = raw(
        &client,
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        "application/json",
        Some(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})),
    )
    .await;
    assert_eq!(
        r["status"]["userInfo"]["username"],
        "system:serviceaccount:default:reviewer"
    );
    // deleting the Secret revokes the token
    secrets
        .delete("reviewer-token", &DeleteParams::default())
        .await
        .unwrap();
    let (status, _) = raw(&client, "GET", "/api/v1/namespaces", "", None).await;
    assert_eq!(status, 401);
    h.shutdown().await;
}

#[tokio::test]
async fn fault_injection_watch_drops_and_forced_expiry() {
    let (h, c) = start().await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    api.create(&PostParams::default(), &cm("w", &[])).await.unwrap();
    let rv = h.resource_version().to_string();
    // watches are cut after watchDropAfterMs even with a long timeoutSeconds
    h.set_faults(FaultConfig {
        watch_drop_after_ms: 200,
        ..FaultConfig::default()
    });
    let t = std::time::Instant::now();
    let wp = WatchParams::default().timeout(60);
    let _: Vec<WatchEvent<ConfigMap>> = api.watch(&wp, &rv).await.unwrap().try_collect().await.unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "dropped after {:?}",
        t.elapsed()
    );
    // every resume is answered with 410 Expired
    h.set_faults(FaultConfig {
        force_watch_expired: true,
        ..FaultConfig::default()
    });
    let events: Vec<WatchEvent<ConfigMap>> = api
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert!(
        matches!(events.first(), Some(WatchEvent::Error(s)) if s.code == 410),
        "{events:?}"
    );
    // ... while a fresh list+watch (resourceVersion 0) still works
    let events: Vec<WatchEvent<ConfigMap>> = api
        .watch(&WatchParams::default().timeout(1), "0")
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert!(matches!(events.first(), Some(WatchEvent::Added(_))));
    h.set_faults(FaultConfig::default());
    let events: Vec<WatchEvent<ConfigMap>> = api
        .watch(&WatchParams::default().timeout(1).disable_bookmarks(), &rv)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert!(events.is_empty(), "{events:?}");
    h.shutdown().await;
}
