//! Conditions in the status of the objects the controllers reconcile.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// A condition of `type_`, keeping the previous `lastTransitionTime` while its status stays the same.
pub fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    previous: &[Condition],
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let transition = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Time(Timestamp::now()));
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: transition,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_is_kept_while_the_status_holds() {
        let first = condition("Ready", false, "A", "a", Some(1), &[]);
        let same = condition("Ready", false, "B", "b", Some(2), std::slice::from_ref(&first));
        assert_eq!(same.last_transition_time, first.last_transition_time);
        assert_eq!((same.reason.as_str(), same.observed_generation), ("B", Some(2)));
        let flipped = condition(
            "Ready",
            true,
            "C",
            "c",
            Some(2),
            &[Condition {
                last_transition_time: Time("2020-01-01T00:00:00Z".parse().unwrap()),
                ..first
            }],
        );
        assert_ne!(
            flipped.last_transition_time.0,
            "2020-01-01T00:00:00Z".parse::<Timestamp>().unwrap()
        );
    }
}
