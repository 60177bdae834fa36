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
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
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
        let retry = self.duration / 3;
        let deadline = self.duration * 2 / 3;
        let mut last_renewed: Option<tokio::time::Instant> = None;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewed = Some(tokio::time::Instant::now()),
                Ok(false) => last_renewed = None,
                Err(e) => warn!(error = %e, "leader election round failed"),
            }
            let lead = last_renewed.is_some_and(|t| t.elapsed() < deadline);
            leading.send_if_modified(|v| std::mem::replace(v, lead) != lead);
            tokio::time::sleep(retry).await;
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
