//! Fault injection: per-verb error rates, added latency, periodic watch drops, forced 410 on resume.

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// An injected error for one verb.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerbFault {
    /// Probability in [0, 1] that a request with this verb fails.
    pub rate: f64,
    /// HTTP code to fail with (500, 503, 409, 429, ...).
    #[serde(default = "default_code")]
    pub code: u16,
}

fn default_code() -> u16 {
    500
}

/// The fault configuration. All defaults mean "no faults".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultConfig {
    /// Errors by verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`, or `*`).
    #[serde(default)]
    pub errors: BTreeMap<String, VerbFault>,
    /// Latency added to every resource request, in milliseconds.
    #[serde(default)]
    pub latency_ms: u64,
    /// Watch streams are closed by the server after this many milliseconds (0 = never).
    #[serde(default)]
    pub watch_drop_after_ms: u64,
    /// Every watch that asks to resume from a resourceVersion gets 410 Gone.
    #[serde(default)]
    pub force_watch_expired: bool,
}

/// Shared, runtime-switchable faults.
#[derive(Debug, Default)]
pub struct Faults {
    cfg: RwLock<FaultConfig>,
}

impl Faults {
    /// Current configuration.
    pub fn get(&self) -> FaultConfig {
        self.cfg.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the configuration.
    pub fn set(&self, cfg: FaultConfig) {
        *self.cfg.write().unwrap_or_else(|e| e.into_inner()) = cfg;
    }

    /// Added latency.
    pub fn latency(&self) -> Option<Duration> {
        let ms = self.cfg.read().unwrap_or_else(|e| e.into_inner()).latency_ms;
        (ms > 0).then(|| Duration::from_millis(ms))
    }

    /// Decides whether this request should fail; returns the code.
    pub fn roll(&self, verb: &str) -> Option<u16> {
        let cfg = self.cfg.read().unwrap_or_else(|e| e.into_inner());
        let f = cfg.errors.get(verb).or_else(|| cfg.errors.get("*"))?;
        (f.rate > 0.0 && crate::util::random_unit() < f.rate).then_some(f.code)
    }
}
