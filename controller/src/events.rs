//! Events on the objects the controllers reconcile: one on every change of their Ready condition.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};
use tracing::warn;

/// Publishes a Normal (ready) or Warning event; a failure to publish is logged, never fatal.
pub async fn publish(
    recorder: &Recorder,
    object: &ObjectReference,
    ready: bool,
    reason: &str,
    message: &str,
    action: &str,
) {
    let event = Event {
        type_: if ready {
            EventType::Normal
        } else {
            EventType::Warning
        },
        reason: reason.into(),
        note: Some(message.chars().take(1000).collect()),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, object).await {
        warn!(error = %e, "could not publish event");
    }
}
