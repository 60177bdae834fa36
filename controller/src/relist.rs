//! Re-lists without reconcile storms. A watch that is dropped and answered 410 Gone on resume makes the
//! watcher list everything again; kube-runtime then reports every object as applied, so each re-list would
//! queue a reconcile of every object (1,000s of no-op reconciles every few seconds starve the real work).
//! [`ChangeFilter`] remembers the resourceVersion last seen per object and passes on only objects that are new
//! or changed. With deletions on (owned Secrets), it also passes deleted objects, including the ones that
//! vanished while the watch was down and are simply missing from the re-list (the watcher reports no
//! deletion for those), so their owners recreate them at once.
//!
//! The table holds an entry per watched object for the controller's lifetime (10,000s), so an entry is small:
//! a 128-bit digest of the uid, a 64-bit digest of the resourceVersion and, for owned objects only, the
//! namespace (shared), name and ownerReferences (kinds shared) needed to find the owners of a vanished object.
//! A digest collision between two objects (about 1 in 10^28 at 100,000 objects) would at worst cost one
//! needless or one missed re-list trigger; the regular watch is unaffected.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use futures::{Stream, StreamExt, future};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use kube::runtime::watcher::{self, Event};

/// Digest of an object's identity: its uid (namespace and name when it has none).
type Id = u128;

fn digest(parts: &[&str]) -> u64 {
    // SipHash with fixed keys: stable within the process, which is all the table needs
    let mut h = DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

fn id<K: Resource>(obj: &K) -> Id {
    let m = obj.meta();
    let ns = m.namespace.as_deref().unwrap_or_default();
    let name = m.name.as_deref().unwrap_or_default();
    let parts: [&str; 3] = match m.uid.as_deref() {
        Some(uid) if !uid.is_empty() => ["uid", uid, ""],
        _ => ["ref", ns, name],
    };
    // two differently salted 64-bit digests
    let lo = digest(&parts);
    let hi = digest(&[parts[0], parts[1], parts[2], "hi"]);
    (u128::from(hi) << 64) | u128::from(lo)
}

fn rv_digest<K: Resource>(obj: &K) -> u64 {
    digest(&[obj.meta().resource_version.as_deref().unwrap_or_default()])
}

/// What an entry keeps of an owned object: enough to hand its owners a deletion.
#[derive(Debug)]
struct Owned {
    namespace: Option<Arc<str>>,
    name: Box<str>,
    owners: Box<[Owner]>,
}

#[derive(Debug)]
struct Owner {
    /// apiVersion and kind
    kind: Arc<(String, String)>,
    /// None: the same as the owned object's name (the common case, e.g. a SealedSecret's Secret).
    name: Option<Box<str>>,
    controller: Option<bool>,
}

#[derive(Debug)]
struct Seen {
    rv: u64,
    owned: Option<Box<Owned>>,
}

/// Decides which watcher events trigger a reconcile.
#[derive(Debug)]
pub struct ChangeFilter<K> {
    deletions: Deletions<K>,
    seen: HashMap<Id, Seen>,
    /// Ids listed since the current re-list began.
    relisting: Option<HashSet<Id>>,
    /// Shared copies of namespaces and owner kinds (a handful, referenced by 10,000s of entries).
    namespaces: HashSet<Arc<str>>,
    kinds: Vec<Arc<(String, String)>>,
}

/// The filter's view of whether deletions are passed on: when they are, how to make the stand-in of an
/// object that vanished.
#[derive(Debug)]
enum Deletions<K> {
    Ignored,
    Passed(fn() -> K),
}

impl<K: Resource + Clone + Default> ChangeFilter<K> {
    /// New, changed and deleted objects (like `touched_objects`, without the re-list repeats, with the
    /// deletions a re-list reveals).
    pub fn touched() -> Self {
        ChangeFilter {
            deletions: Deletions::Passed(K::default),
            ..Self::applied()
        }
    }
}

impl<K: Resource + Clone> ChangeFilter<K> {
    /// New and changed objects only (like `applied_objects`, without the re-list repeats).
    pub fn applied() -> Self {
        ChangeFilter {
            deletions: Deletions::Ignored,
            seen: HashMap::new(),
            relisting: None,
            namespaces: HashSet::new(),
            kinds: Vec::new(),
        }
    }

    /// The number of objects remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no object is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// The objects this event should trigger a reconcile for.
    pub fn on_event(&mut self, event: Event<K>) -> Vec<K> {
        match event {
            Event::Init => {
                self.relisting = Some(HashSet::new());
                Vec::new()
            }
            Event::InitApply(obj) => {
                if let Some(listed) = self.relisting.as_mut() {
                    listed.insert(id(&obj));
                }
                self.apply(obj)
            }
            Event::InitDone => {
                let Some(listed) = self.relisting.take() else {
                    return Vec::new();
                };
                let gone: Vec<Id> = self
                    .seen
                    .keys()
                    .filter(|k| !listed.contains(*k))
                    .copied()
                    .collect();
                let Deletions::Passed(make) = self.deletions else {
                    for k in gone {
                        self.seen.remove(&k);
                    }
                    return Vec::new();
                };
                gone.into_iter()
                    .filter_map(|k| self.seen.remove(&k).and_then(|seen| seen.owned))
                    .map(|owned| vanished(&owned, make()))
                    .collect()
            }
            Event::Apply(obj) => self.apply(obj),
            Event::Delete(obj) => {
                self.seen.remove(&id(&obj));
                match self.deletions {
                    Deletions::Passed(_) => vec![obj],
                    Deletions::Ignored => Vec::new(),
                }
            }
        }
    }

    fn apply(&mut self, obj: K) -> Vec<K> {
        let rv = rv_digest(&obj);
        let has_rv = obj
            .meta()
            .resource_version
            .as_deref()
            .is_some_and(|v| !v.is_empty());
        let owned = match self.deletions {
            Deletions::Passed(_) => self.owned(obj.meta()),
            Deletions::Ignored => None,
        };
        match self.seen.insert(id(&obj), Seen { rv, owned }) {
            Some(old) if old.rv == rv && has_rv => Vec::new(),
            _ => vec![obj],
        }
    }

    /// The compact record of an owned object; None when it has no owners (nothing to trigger when it goes).
    fn owned(&mut self, meta: &ObjectMeta) -> Option<Box<Owned>> {
        let refs = meta.owner_references.as_deref().filter(|r| !r.is_empty())?;
        let name = meta.name.as_deref().unwrap_or_default();
        let owners = refs
            .iter()
            .map(|r| Owner {
                kind: self.kind(r),
                name: (r.name != name).then(|| r.name.as_str().into()),
                controller: r.controller,
            })
            .collect();
        Some(Box::new(Owned {
            namespace: meta.namespace.as_deref().map(|ns| self.namespace(ns)),
            name: name.into(),
            owners,
        }))
    }

    /// The shared copy of a namespace (looked up without allocating: this runs on every owned-object event).
    fn namespace(&mut self, ns: &str) -> Arc<str> {
        if let Some(shared) = self.namespaces.get(ns) {
            return shared.clone();
        }
        let shared: Arc<str> = ns.into();
        self.namespaces.insert(shared.clone());
        shared
    }

    /// The shared copy of an owner's apiVersion and kind (a handful of kinds: a linear search).
    fn kind(&mut self, r: &OwnerReference) -> Arc<(String, String)> {
        if let Some(shared) = self.kinds.iter().find(|k| k.0 == r.api_version && k.1 == r.kind) {
            return shared.clone();
        }
        let shared = Arc::new((r.api_version.clone(), r.kind.clone()));
        self.kinds.push(shared.clone());
        shared
    }
}

/// A stand-in for an object that vanished: identity and ownerReferences, which is all that finds its owners
/// (kube-runtime maps an owned object to its owners by namespace and the references' apiVersion, kind and
/// name; the owners' uids are not kept).
fn vanished<K: Resource>(owned: &Owned, mut obj: K) -> K {
    *obj.meta_mut() = ObjectMeta {
        name: Some(owned.name.to_string()),
        namespace: owned.namespace.as_deref().map(String::from),
        owner_references: Some(
            owned
                .owners
                .iter()
                .map(|o| OwnerReference {
                    api_version: o.kind.0.clone(),
                    kind: o.kind.1.clone(),
                    name: o.name.as_deref().unwrap_or(&owned.name).to_string(),
                    controller: o.controller,
                    ..OwnerReference::default()
                })
                .collect(),
        ),
        ..ObjectMeta::default()
    };
    obj
}

/// A watcher event stream turned into the stream of objects to reconcile, filtered by `filter`.
pub fn changed_objects<K, S>(
    stream: S,
    filter: ChangeFilter<K>,
) -> impl Stream<Item = Result<K, watcher::Error>>
where
    S: Stream<Item = Result<Event<K>, watcher::Error>>,
    K: Resource + Clone,
{
    stream
        .scan(filter, |filter, event| {
            let out: Vec<Result<K, watcher::Error>> = match event {
                Ok(event) => filter.on_event(event).into_iter().map(Ok).collect(),
                Err(e) => vec![Err(e)],
            };
            future::ready(Some(futures::stream::iter(out)))
        })
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    fn cm(name: &str, uid: &str, rv: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(uid.into()),
                resource_version: Some(rv.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn names(objs: &[ConfigMap]) -> Vec<String> {
        objs.iter()
            .map(|o| o.metadata.name.clone().unwrap_or_default())
            .collect()
    }

    fn relist(f: &mut ChangeFilter<ConfigMap>, objs: &[ConfigMap]) -> Vec<String> {
        let mut out = f.on_event(Event::Init);
        for o in objs {
            out.extend(f.on_event(Event::InitApply(o.clone())));
        }
        out.extend(f.on_event(Event::InitDone));
        names(&out)
    }

    #[test]
    fn a_relist_triggers_only_new_and_changed_objects() {
        let mut f = ChangeFilter::applied();
        assert_eq!(
            relist(&mut f, &[cm("a", "1", "10"), cm("b", "2", "11")]),
            ["a", "b"]
        );
        // dropped watch, 410, re-list: nothing changed, nothing to do
        assert_eq!(
            relist(&mut f, &[cm("a", "1", "10"), cm("b", "2", "11")]),
            Vec::<String>::new()
        );
        // b changed, c is new
        assert_eq!(
            relist(
                &mut f,
                &[cm("a", "1", "10"), cm("b", "2", "15"), cm("c", "3", "16")]
            ),
            ["b", "c"]
        );
        // live events: a repeat is dropped, a change passes
        assert!(f.on_event(Event::Apply(cm("a", "1", "10"))).is_empty());
        assert_eq!(names(&f.on_event(Event::Apply(cm("a", "1", "20")))), ["a"]);
        // without deletions, deleted and vanished objects trigger nothing
        assert!(f.on_event(Event::Delete(cm("c", "3", "16"))).is_empty());
        assert_eq!(relist(&mut f, &[cm("a", "1", "20")]), Vec::<String>::new());
        // deleted and recreated under the same name (a new uid): passes
        assert_eq!(relist(&mut f, &[cm("a", "9", "30")]), ["a"]);
    }

    fn owned_by(mut obj: ConfigMap, kind: &str, owner: &str) -> ConfigMap {
        obj.metadata
            .owner_references
            .get_or_insert_with(Vec::new)
            .push(OwnerReference {
                api_version: "sealant.dev/v1".into(),
                kind: kind.into(),
                name: owner.into(),
                uid: format!("uid-of-{owner}"),
                controller: Some(true),
                ..OwnerReference::default()
            });
        obj
    }

    #[test]
    fn deletions_including_those_a_relist_reveals() {
        let mut f = ChangeFilter::touched();
        let b = owned_by(cm("b", "2", "11"), "SealedSecret", "b");
        let d = owned_by(
            owned_by(cm("d", "4", "12"), "ExternalSecret", "es-d"),
            "GitSync",
            "sync",
        );
        assert_eq!(
            relist(&mut f, &[cm("a", "1", "10"), b.clone(), d, cm("e", "5", "1")]),
            ["a", "b", "d", "e"]
        );
        assert_eq!(f.len(), 4);
        assert_eq!(names(&f.on_event(Event::Delete(cm("a", "1", "12")))), ["a"]);
        // b and d vanished while the watch was down: the re-list does not list them, stand-ins carrying their
        // owners are passed on (e vanished too, but has no owner to tell)
        let mut out = f.on_event(Event::Init);
        out.extend(f.on_event(Event::InitApply(cm("c", "3", "13"))));
        out.extend(f.on_event(Event::InitDone));
        out.sort_by_key(|o| o.metadata.name.clone());
        assert_eq!(names(&out), ["b", "c", "d"]);
        let stand_in = |name: &str| {
            out.iter()
                .find(|o| o.metadata.name.as_deref() == Some(name))
                .unwrap()
                .metadata
                .clone()
        };
        let vanished_b = stand_in("b");
        assert_eq!(vanished_b.namespace.as_deref(), Some("ns"));
        assert_eq!(
            vanished_b.owner_references.unwrap(),
            [OwnerReference {
                uid: String::new(),
                ..b.metadata.owner_references.clone().unwrap()[0].clone()
            }]
        );
        let owners: Vec<(String, String, String)> = stand_in("d")
            .owner_references
            .unwrap()
            .into_iter()
            .map(|r| (r.api_version, r.kind, r.name))
            .collect();
        assert_eq!(
            owners,
            [
                ("sealant.dev/v1".into(), "ExternalSecret".into(), "es-d".into()),
                ("sealant.dev/v1".into(), "GitSync".into(), "sync".into()),
            ]
        );
        assert_eq!(relist(&mut f, &[cm("c", "3", "13")]), Vec::<String>::new());
        assert_eq!(f.len(), 1);
        // namespaces and owner kinds are shared, not copied per entry
        assert_eq!((f.namespaces.len(), f.kinds.len()), (1, 3));
    }

    #[tokio::test]
    async fn the_stream_passes_errors_through() {
        let events: Vec<Result<Event<ConfigMap>, watcher::Error>> = vec![
            Ok(Event::Apply(cm("a", "1", "1"))),
            Ok(Event::Apply(cm("a", "1", "1"))),
            Err(watcher::Error::NoResourceVersion),
            Ok(Event::Apply(cm("a", "1", "2"))),
        ];
        let out: Vec<_> = changed_objects(futures::stream::iter(events), ChangeFilter::applied())
            .collect()
            .await;
        assert_eq!(out.len(), 3);
        assert!(out[1].is_err());
    }
}
