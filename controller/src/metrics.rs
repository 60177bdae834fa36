//! Prometheus metrics (prometheus-client, OpenMetrics text). Labels carry reasons and controller names only.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `ok`, or the Ready reason of the failure.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderCallLabels {
    pub provider: String,
    pub operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: String,
}

fn reconcile_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Every metric the controller exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    /// SealedSecrets unsealed, by result.
    pub unseal: Family<ResultLabels, Counter>,
    /// Reconcile durations by controller.
    pub reconcile_duration: Family<ControllerLabels, Histogram, fn() -> Histogram>,
    /// Reconcile failures (errors talking to the API) by controller.
    pub reconcile_errors: Family<ControllerLabels, Counter>,
    /// Secrets written (created, updated or recreated).
    pub secret_writes: Counter,
    /// Calls to secret providers, by provider and operation (login, read, BatchGetSecretValue, ...).
    pub provider_calls: Family<ProviderCallLabels, Counter>,
    /// ExternalSecret syncs, by result (ok or the failure reason).
    pub external_sync: Family<ResultLabels, Counter>,
    /// Keys the controller holds.
    pub keys: Gauge,
    /// 1 on the replica that holds the leader Lease.
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sealant");
        let unseal = Family::<ResultLabels, Counter>::default();
        let reconcile_duration =
            Family::<ControllerLabels, Histogram, fn() -> Histogram>::new_with_constructor(reconcile_buckets);
        let reconcile_errors = Family::<ControllerLabels, Counter>::default();
        let secret_writes = Counter::default();
        let keys = Gauge::default();
        let leader = Gauge::default();
        let provider_calls = Family::<ProviderCallLabels, Counter>::default();
        let external_sync = Family::<ResultLabels, Counter>::default();
        registry.register(
            "provider_calls",
            "Calls to secret providers, by provider and operation",
            provider_calls.clone(),
        );
        registry.register(
            "external_sync",
            "ExternalSecret syncs, by result",
            external_sync.clone(),
        );
        registry.register(
            "unseal",
            "SealedSecrets unsealed, by result (ok or the failure reason)",
            unseal.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile, by controller",
            reconcile_duration.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that failed talking to the API",
            reconcile_errors.clone(),
        );
        registry.register(
            "secret_writes",
            "Secrets created, updated or recreated",
            secret_writes.clone(),
        );
        registry.register("keys", "Sealing keys held", keys.clone());
        registry.register(
            "leader",
            "1 when this replica holds the leader Lease",
            leader.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            unseal,
            reconcile_duration,
            reconcile_errors,
            secret_writes,
            provider_calls,
            external_sync,
            keys,
            leader,
        }
    }

    pub fn count_unseal(&self, result: &str) {
        self.unseal
            .get_or_create(&ResultLabels {
                result: result.to_owned(),
            })
            .inc();
    }

    pub fn observe_reconcile(&self, controller: &str, took: Duration) {
        self.reconcile_duration
            .get_or_create(&ControllerLabels {
                controller: controller.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn count_reconcile_error(&self, controller: &str) {
        self.reconcile_errors
            .get_or_create(&ControllerLabels {
                controller: controller.to_owned(),
            })
            .inc();
    }

    /// A counter the providers call for every request they make.
    pub fn provider_call_counter(&self) -> sealant_providers::CallCounter {
        let family = self.provider_calls.clone();
        std::sync::Arc::new(move |provider: &'static str, operation: &'static str| {
            family
                .get_or_create(&ProviderCallLabels {
                    provider: provider.to_owned(),
                    operation: operation.to_owned(),
                })
                .inc();
        })
    }

    /// Total provider calls so far, for one provider and operation.
    pub fn provider_call_count(&self, provider: &str, operation: &str) -> u64 {
        self.provider_calls
            .get_or_create(&ProviderCallLabels {
                provider: provider.to_owned(),
                operation: operation.to_owned(),
            })
            .get()
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_counts_by_reason() {
        let m = Metrics::new();
        m.count_unseal("ok");
        m.count_unseal("ok");
        m.count_unseal("ScopeMismatch");
        m.observe_reconcile("sealedsecret", Duration::from_millis(3));
        let text = m.encode();
        assert!(text.contains(r#"sealant_unseal_total{result="ok"} 2"#), "{text}");
        assert!(
            text.contains(r#"sealant_unseal_total{result="ScopeMismatch"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sealant_reconcile_duration_seconds_count{controller="sealedsecret"} 1"#),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
