//! Events on the objects the controllers reconcile: one on every change of their Ready condition.
//!
//! kube-runtime's `Recorder` keeps every event it published for several minutes (to turn repeats into a
//! series) and scans that cache on each publish: at a cold start over 10,000 objects that is 10,000 cached
//! events and 10^8 cache visits. Our events are already one per change of condition, so they are created
//! as they are, with nothing kept.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tracing::warn;

/// Creates `events.k8s.io/v1` Events as one controller instance.
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    controller: Arc<str>,
    instance: Arc<str>,
    sequence: Arc<AtomicU64>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("controller", &self.controller)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    pub fn new(client: Client, controller: &str, instance: &str) -> Self {
        Recorder {
            client,
            controller: controller.into(),
            instance: instance.into(),
            sequence: Arc::default(),
        }
    }
}

/// The Event for `object` (pure; `now` and `sequence` make the name unique as the API server requires).
fn event(
    (controller, instance): (&str, &str),
    object: &ObjectReference,
    ready: bool,
    reason: &str,
    message: &str,
    action: &str,
    (now, sequence): (jiff::Timestamp, u64),
) -> Event {
    let base = object.name.as_deref().unwrap_or(controller);
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{base}.{:x}{sequence:x}", now.as_nanosecond())),
            namespace: object.namespace.clone(),
            ..Default::default()
        },
        action: Some(action.into()),
        reason: Some(reason.into()),
        note: Some(message.chars().take(1000).collect()),
        type_: Some(if ready { "Normal" } else { "Warning" }.into()),
        event_time: Some(MicroTime(now)),
        regarding: Some(object.clone()),
        reporting_controller: Some(controller.to_string()),
        reporting_instance: Some(instance.to_string()),
        ..Default::default()
    }
}

/// Publishes a Normal (ready) or Warning event; a failure to publish is logged, never fatal.
pub async fn publish(
    recorder: &Recorder,
    object: &ObjectReference,
    ready: bool,
    reason: &str,
    message: &str,
    action: &str,
) {
    let sequence = recorder.sequence.fetch_add(1, Ordering::Relaxed);
    let event = event(
        (&recorder.controller, &recorder.instance),
        object,
        ready,
        reason,
        message,
        action,
        (jiff::Timestamp::now(), sequence),
    );
    let api: Api<Event> = Api::namespaced(
        recorder.client.clone(),
        object.namespace.as_deref().unwrap_or("default"),
    );
    if let Err(e) = api.create(&PostParams::default(), &event).await {
        warn!(error = %e, "could not publish event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_named_uniquely_and_say_what_happened() {
        let me = ("sealant-controller", "pod-a");
        let object = ObjectReference {
            kind: Some("SealedSecret".into()),
            namespace: Some("shop".into()),
            name: Some("db".into()),
            ..Default::default()
        };
        let now = jiff::Timestamp::now();
        let long = "x".repeat(2000);
        let a = event(me, &object, false, "ScopeMismatch", &long, "Unseal", (now, 0));
        let b = event(me, &object, true, "Unsealed", "ok", "Unseal", (now, 1));
        assert_ne!(a.metadata.name, b.metadata.name);
        assert!(a.metadata.name.as_deref().unwrap().starts_with("db."));
        assert_eq!(a.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(a.type_.as_deref(), Some("Warning"));
        assert_eq!(b.type_.as_deref(), Some("Normal"));
        assert_eq!(a.note.as_ref().unwrap().len(), 1000);
        assert_eq!(a.reporting_instance.as_deref(), Some("pod-a"));
        assert_eq!(a.regarding.as_ref(), Some(&object));
    }
}
