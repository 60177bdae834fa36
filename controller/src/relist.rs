//! Re-lists without reconcile storms. A watch that is dropped and answered 410 Gone on resume makes the
//! watcher list everything again; kube-runtime then reports every object as applied, so each re-list would
//! queue a reconcile of every object (1,000s of no-op reconciles every few seconds starve the real work).
//! [`ChangeFilter`] remembers the resourceVersion last seen per object and passes on only objects that are new
//! or changed. With deletions on (owned Secrets), it also passes deleted objects, including the ones that
//! vanished while the watch was down and are simply missing from the re-list (the watcher reports no
//! deletion for those), so their owners recreate them at once.

use std::collections::{HashMap, HashSet};

use futures::{Stream, StreamExt, future};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::runtime::watcher::{self, Event};

/// namespace, name, uid.
type Key = (String, String, String);

fn key<K: Resource>(obj: &K) -> Key {
    let m = obj.meta();
    (
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
        m.uid.clone().unwrap_or_default(),
    )
}

/// Decides which watcher events trigger a reconcile.
#[derive(Debug)]
pub struct ChangeFilter<K> {
    deletions: bool,
    /// Key -> (resourceVersion, the object when deletions are passed on; boxed, so that the table of 10,000s
    /// of entries stays small).
    seen: HashMap<Key, (String, Option<Box<K>>)>,
    /// Keys listed since the current re-list began.
    relisting: Option<HashSet<Key>>,
}

impl<K: Resource + Clone> ChangeFilter<K> {
    /// New and changed objects only (like `applied_objects`, without the re-list repeats).
    pub fn applied() -> Self {
        ChangeFilter {
            deletions: false,
            seen: HashMap::new(),
            relisting: None,
        }
    }

    /// New, changed and deleted objects (like `touched_objects`, without the re-list repeats, with the
    /// deletions a re-list reveals).
    pub fn touched() -> Self {
        ChangeFilter {
            deletions: true,
            ..Self::applied()
        }
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
                    listed.insert(key(&obj));
                }
                self.apply(obj)
            }
            Event::InitDone => {
                let Some(listed) = self.relisting.take() else {
                    return Vec::new();
                };
                let gone: Vec<Key> = self
                    .seen
                    .keys()
                    .filter(|k| !listed.contains(*k))
                    .cloned()
                    .collect();
                gone.into_iter()
                    .filter_map(|k| self.seen.remove(&k).and_then(|(_, obj)| obj.map(|o| *o)))
                    .collect()
            }
            Event::Apply(obj) => self.apply(obj),
            Event::Delete(obj) => {
                self.seen.remove(&key(&obj));
                if self.deletions { vec![obj] } else { Vec::new() }
            }
        }
    }

    fn apply(&mut self, obj: K) -> Vec<K> {
        let rv = obj.meta().resource_version.clone().unwrap_or_default();
        // kept only to be handed on when it vanishes, to find its owner: identity and ownerReferences are all
        // that takes (managedFields, labels and annotations of 10,000 Secrets would be tens of MiB)
        let kept = self.deletions.then(|| {
            let mut copy = obj.clone();
            let meta = copy.meta_mut();
            *meta = ObjectMeta {
                name: meta.name.take(),
                namespace: meta.namespace.take(),
                uid: meta.uid.take(),
                resource_version: meta.resource_version.take(),
                owner_references: meta.owner_references.take(),
                ..ObjectMeta::default()
            };
            Box::new(copy)
        });
        match self.seen.insert(key(&obj), (rv.clone(), kept)) {
            Some((old, _)) if old == rv && !rv.is_empty() => Vec::new(),
            _ => vec![obj],
        }
    }
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
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

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

    #[test]
    fn deletions_including_those_a_relist_reveals() {
        let mut f = ChangeFilter::touched();
        assert_eq!(
            relist(&mut f, &[cm("a", "1", "10"), cm("b", "2", "11")]),
            ["a", "b"]
        );
        assert_eq!(names(&f.on_event(Event::Delete(cm("a", "1", "12")))), ["a"]);
        // b vanished while the watch was down: the re-list does not list it, its deletion is passed on
        assert_eq!(relist(&mut f, &[cm("c", "3", "13")]), ["c", "b"]);
        assert_eq!(relist(&mut f, &[cm("c", "3", "13")]), Vec::<String>::new());
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
