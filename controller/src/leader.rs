//! Lease leader election: every replica serves the endpoints, only the Lease holder writes.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tracing::{info, instrument, warn};

/// What to do with the Lease as found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// No Lease yet: create it, holding it.
    Create,
    /// We hold it: renew.
    Renew,
    /// Someone else held it and it expired (or was released): take it over.
    TakeOver,
    /// Someone else holds it.
    Wait,
}

/// The pure rule: who may hold the Lease at `now`.
pub fn decide(spec: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Decision {
    let Some(spec) = spec else { return Decision::Create };
    match spec.holder_identity.as_deref() {
        Some(h) if h == me => Decision::Renew,
        None | Some("") => Decision::TakeOver,
        Some(_) => {
            let duration = i64::from(spec.lease_duration_seconds.unwrap_or(15));
            let renewed = spec
                .renew_time
                .as_ref()
                .map(|t| t.0)
                .unwrap_or(Timestamp::UNIX_EPOCH);
            let expired = now.as_second() >= renewed.as_second() + duration;
            if expired {
                Decision::TakeOver
            } else {
                Decision::Wait
            }
        }
    }
}

/// How a write conflict (409) on the Lease is read. Creating or taking over: another replica won the race.
/// Renewing our own Lease: only that our copy was stale (or the API server said so); that is no proof another
/// replica holds it, so it is an error retried soon, and leadership still ends when no renewal succeeded for
/// two thirds of the Lease duration (before anyone else may take it over).
pub fn conflict_means_lost(decision: Decision) -> bool {
    decision != Decision::Renew
}

/// The pause before the next round: a third of the Lease duration after a clear answer, a quarter of that
/// after an error, so one failed write does not cost leadership.
pub fn next_round_after(duration: Duration, round_failed: bool) -> Duration {
    let retry = duration / 3;
    if round_failed { retry / 4 } else { retry }
}

/// Takes part in the election for one Lease.
#[derive(Clone)]
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

impl std::fmt::Debug for Elector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Elector")
            .field("name", &self.name)
            .field("identity", &self.identity)
            .finish()
    }
}

impl Elector {
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> Self {
        Elector {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration,
        }
    }

    fn spec(&self, now: Timestamp, previous: Option<&LeaseSpec>, taking_over: bool) -> LeaseSpec {
        let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(i32::try_from(self.duration.as_secs()).unwrap_or(15)),
            acquire_time: if taking_over || previous.is_none() {
                Some(MicroTime(now))
            } else {
                previous.and_then(|p| p.acquire_time.clone())
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(if taking_over && previous.is_some() {
                transitions + 1
            } else {
                transitions
            }),
            ..Default::default()
        }
    }

    /// One round: returns whether this replica holds the Lease afterwards. Conflicts (another replica won the
    /// race) are a plain `false`.
    #[instrument(skip(self), fields(lease = %self.name, identity = %self.identity))]
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let current = self.api.get_opt(&self.name).await?;
        let decision = decide(
            current.as_ref().and_then(|l| l.spec.as_ref()),
            &self.identity,
            now,
        );
        let result = match (decision, current) {
            (Decision::Wait, _) => return Ok(false),
            (Decision::Create, _) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..Default::default()
                    },
                    spec: Some(self.spec(now, None, true)),
                };
                self.api.create(&PostParams::default(), &lease).await.map(|_| ())
            }
            (d, Some(mut lease)) => {
                lease.spec = Some(self.spec(now, lease.spec.as_ref(), d == Decision::TakeOver));
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
                    .map(|_| ())
            }
            (_, None) => return Ok(false),
        };
        match result {
            Ok(()) => {
                if decision != Decision::Renew {
                    info!(?decision, "acquired leader Lease");
                }
                Ok(true)
            }
            Err(kube::Error::Api(e)) if e.code == 409 && conflict_means_lost(decision) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up (on shutdown) so another replica takes over without waiting for it to expire.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        if lease.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) != Some(self.identity.as_str()) {
            return;
        }
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
        }
        if let Err(e) = self.api.replace(&self.name, &PostParams::default(), &lease).await {
            warn!(error = %e, "could not release the leader Lease");
        }
    }

    /// Runs the election forever, publishing whether this replica leads. Leadership is dropped when the
    /// Lease could not be renewed for two thirds of its duration.
    pub async fn run(self, leading: watch::Sender<bool>) {
        let deadline = self.duration * 2 / 3;
        let mut last_renewed: Option<tokio::time::Instant> = None;
        loop {
            let failed = match self.try_acquire_or_renew().await {
                Ok(true) => {
                    last_renewed = Some(tokio::time::Instant::now());
                    false
                }
                Ok(false) => {
                    last_renewed = None;
                    false
                }
                Err(e) => {
                    warn!(error = %e, "leader election round failed");
                    true
                }
            };
            let lead = last_renewed.is_some_and(|t| t.elapsed() < deadline);
            leading.send_if_modified(|v| std::mem::replace(v, lead) != lead);
            tokio::time::sleep(next_round_after(self.duration, failed)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: Option<&str>, renewed: &str, secs: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_owned),
            renew_time: Some(MicroTime(renewed.parse().unwrap())),
            lease_duration_seconds: Some(secs),
            ..Default::default()
        }
    }

    #[test]
    fn a_conflict_on_our_own_renewal_is_retried_soon_not_a_loss() {
        assert!(!conflict_means_lost(Decision::Renew));
        assert!(conflict_means_lost(Decision::Create));
        assert!(conflict_means_lost(Decision::TakeOver));
        let d = Duration::from_secs(15);
        assert_eq!(next_round_after(d, false), Duration::from_secs(5));
        assert_eq!(next_round_after(d, true), Duration::from_millis(1250));
        // several retries fit before leadership would end (two thirds of the duration)
        assert!(next_round_after(d, false) + 3 * next_round_after(d, true) < d * 2 / 3);
    }

    #[test]
    fn election_rules() {
        let now: Timestamp = "2026-01-01T00:00:20Z".parse().unwrap();
        assert_eq!(decide(None, "a", now), Decision::Create);
        assert_eq!(
            decide(Some(&spec(Some("a"), "2026-01-01T00:00:00Z", 15)), "a", now),
            Decision::Renew
        );
        assert_eq!(
            decide(Some(&spec(Some("b"), "2026-01-01T00:00:10Z", 15)), "a", now),
            Decision::Wait
        );
        assert_eq!(
            decide(Some(&spec(Some("b"), "2026-01-01T00:00:00Z", 15)), "a", now),
            Decision::TakeOver
        );
        assert_eq!(
            decide(Some(&spec(None, "2026-01-01T00:00:19Z", 15)), "a", now),
            Decision::TakeOver
        );
    }
}
