//! Fault injection: per-verb error rates (several per verb, one draw), added latency, periodic watch drops,
//! forced 410 on resume, optionally only for some users; counters of everything injected.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
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
    /// More errors by verb (or `*`), several per verb: together with the verb's entry in `errors` they are
    /// rolled as one draw, so the rates add up (`[{rate: 0.1, code: 503}, {rate: 0.05, code: 409}]` fails 15%
    /// of the requests). The sum of a verb's rates must not exceed 1.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub error_mix: BTreeMap<String, Vec<VerbFault>>,
    /// Latency added to every resource request, in milliseconds.
    #[serde(default)]
    pub latency_ms: u64,
    /// Watch streams are closed by the server after this many milliseconds (0 = never).
    #[serde(default)]
    pub watch_drop_after_ms: u64,
    /// Every watch that asks to resume from a resourceVersion gets 410 Gone.
    #[serde(default)]
    pub force_watch_expired: bool,
    /// A watch resuming from a resourceVersion older than the store's when a watch was last dropped (by
    /// `watch_drop_after_ms`) gets 410 Gone, as if the history were compacted at every drop: dropped watches
    /// cannot resume, while a watch from a fresh list's resourceVersion works (unlike `force_watch_expired`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expire_dropped: bool,
    /// Only requests by these users (names as authenticated, after impersonation) get faults; empty = everyone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub only_users: Vec<String>,
}

impl FaultConfig {
    /// The faults rolled for `verb`: its (or `*`'s) `errors` entry, then its (or `*`'s) `error_mix` entries.
    fn candidates(&self, verb: &str) -> impl Iterator<Item = &VerbFault> {
        let single = self.errors.get(verb).or_else(|| self.errors.get("*"));
        let mix = self.error_mix.get(verb).or_else(|| self.error_mix.get("*"));
        single.into_iter().chain(mix.into_iter().flatten())
    }

    /// Checks that every rate is in [0, 1], that no verb's rates add up to more than 1, and that the codes
    /// are HTTP error codes.
    pub fn validate(&self) -> Result<(), String> {
        let verbs = self.errors.keys().chain(self.error_mix.keys());
        for verb in verbs {
            let mut sum = 0.0;
            for f in self.candidates(verb) {
                if !(0.0..=1.0).contains(&f.rate) {
                    return Err(format!(
                        "errors for {verb:?}: rate {} is not between 0 and 1",
                        f.rate
                    ));
                }
                if !(400..=599).contains(&f.code) {
                    return Err(format!(
                        "errors for {verb:?}: code {} is not an HTTP error code (400-599)",
                        f.code
                    ));
                }
                sum += f.rate;
            }
            if sum > 1.0 + 1e-9 {
                return Err(format!(
                    "errors for {verb:?}: the rates add up to {sum}, more than 1; lower them"
                ));
            }
        }
        Ok(())
    }

    fn applies_to(&self, user: &str) -> bool {
        self.only_users.is_empty() || self.only_users.iter().any(|u| u == user)
    }
}

/// What was injected since the counters were last reset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultStats {
    /// Requests that were subject to fault injection (the user matched), by verb.
    pub requests: BTreeMap<String, u64>,
    /// Injected errors by verb, then by HTTP code.
    pub injected: BTreeMap<String, BTreeMap<u16, u64>>,
    /// Watch streams closed by the server because of `watch_drop_after_ms`.
    pub watches_dropped: u64,
    /// Watch resumes answered with an injected 410 Gone.
    pub watches_expired: u64,
}

impl FaultStats {
    /// Injected errors with `code`, over all verbs.
    pub fn injected_code(&self, code: u16) -> u64 {
        self.injected
            .values()
            .filter_map(|by_code| by_code.get(&code))
            .sum()
    }

    /// Injected errors for `verb`, over all codes.
    pub fn injected_verb(&self, verb: &str) -> u64 {
        self.injected.get(verb).map_or(0, |m| m.values().sum())
    }

    /// Requests with any of `verbs` that were subject to faults.
    pub fn requests_of(&self, verbs: &[&str]) -> u64 {
        verbs.iter().filter_map(|v| self.requests.get(*v)).sum()
    }
}

/// Shared, runtime-switchable faults.
#[derive(Debug, Default)]
pub struct Faults {
    cfg: RwLock<FaultConfig>,
    stats: Mutex<FaultStats>,
    /// The store's resourceVersion when a watch was last dropped.
    dropped_at: AtomicU64,
}

impl Faults {
    /// Current configuration.
    pub fn get(&self) -> FaultConfig {
        self.cfg.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the configuration (the counters keep counting).
    pub fn set(&self, cfg: FaultConfig) {
        *self.cfg.write().unwrap_or_else(|e| e.into_inner()) = cfg;
    }

    /// The counters.
    pub fn stats(&self) -> FaultStats {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Resets the counters to zero.
    pub fn reset_stats(&self) {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner()) = FaultStats::default();
    }

    fn count(&self, f: impl FnOnce(&mut FaultStats)) {
        f(&mut self.stats.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Added latency for a request by `user`.
    pub fn latency(&self, user: &str) -> Option<Duration> {
        let cfg = self.cfg.read().unwrap_or_else(|e| e.into_inner());
        (cfg.latency_ms > 0 && cfg.applies_to(user)).then(|| Duration::from_millis(cfg.latency_ms))
    }

    /// Decides whether this request by `user` should fail (one draw over all of the verb's faults); returns
    /// the code, and counts the request and the injected error.
    pub fn roll(&self, verb: &str, user: &str) -> Option<u16> {
        let code = {
            let cfg = self.cfg.read().unwrap_or_else(|e| e.into_inner());
            if !cfg.applies_to(user) {
                return None;
            }
            let draw = crate::util::random_unit();
            let mut acc = 0.0;
            let mut code = None;
            for f in cfg.candidates(verb) {
                if f.rate <= 0.0 {
                    continue;
                }
                acc += f.rate;
                if draw < acc {
                    code = Some(f.code);
                    break;
                }
            }
            code
        };
        self.count(|s| {
            *s.requests.entry(verb.to_string()).or_default() += 1;
            if let Some(c) = code {
                *s.injected
                    .entry(verb.to_string())
                    .or_default()
                    .entry(c)
                    .or_default() += 1;
            }
        });
        code
    }

    /// Whether a watch by `user` resuming from resourceVersion `since` gets an injected 410 (counted).
    pub fn expire_watch(&self, user: &str, since: u64) -> bool {
        let hit = {
            let cfg = self.cfg.read().unwrap_or_else(|e| e.into_inner());
            let dropped_since = cfg.expire_dropped && since < self.dropped_at.load(Ordering::SeqCst);
            (cfg.force_watch_expired || dropped_since) && cfg.applies_to(user)
        };
        if hit {
            self.count(|s| s.watches_expired += 1);
        }
        hit
    }

    /// After how long a watch by `user` is dropped, if at all.
    pub fn watch_drop_after(&self, user: &str) -> Option<Duration> {
        let cfg = self.cfg.read().unwrap_or_else(|e| e.into_inner());
        (cfg.watch_drop_after_ms > 0 && cfg.applies_to(user))
            .then(|| Duration::from_millis(cfg.watch_drop_after_ms))
    }

    /// Counts a watch the server closed because of `watch_drop_after_ms`, when the store was at `current_rv`.
    pub fn count_watch_dropped(&self, current_rv: u64) {
        self.dropped_at.fetch_max(current_rv, Ordering::SeqCst);
        self.count(|s| s.watches_dropped += 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vf(rate: f64, code: u16) -> VerbFault {
        VerbFault { rate, code }
    }

    #[test]
    fn rates_add_up_in_one_draw() {
        let f = Faults::default();
        f.set(FaultConfig {
            errors: BTreeMap::from([("create".into(), vf(0.1, 503))]),
            error_mix: BTreeMap::from([("*".into(), vec![vf(0.2, 500), vf(0.3, 409)])]),
            ..FaultConfig::default()
        });
        let n = 20_000;
        for _ in 0..n {
            f.roll("create", "u");
        }
        let s = f.stats();
        assert_eq!(s.requests["create"], n);
        let share = |c| s.injected["create"].get(&c).copied().unwrap_or(0) as f64 / n as f64;
        assert!((share(503) - 0.1).abs() < 0.02, "{s:?}");
        assert!((share(500) - 0.2).abs() < 0.02, "{s:?}");
        assert!((share(409) - 0.3).abs() < 0.02, "{s:?}");
        assert_eq!(
            s.injected_verb("create"),
            s.injected_code(503) + s.injected_code(500) + s.injected_code(409)
        );
        f.reset_stats();
        assert_eq!(f.stats(), FaultStats::default());
    }

    #[test]
    fn only_users_and_validation() {
        let f = Faults::default();
        f.set(FaultConfig {
            errors: BTreeMap::from([("get".into(), vf(1.0, 500))]),
            force_watch_expired: true,
            watch_drop_after_ms: 10,
            latency_ms: 5,
            only_users: vec!["chaos".into()],
            ..FaultConfig::default()
        });
        assert_eq!(f.roll("get", "admin"), None);
        assert!(!f.expire_watch("admin", 1));
        assert!(f.watch_drop_after("admin").is_none() && f.latency("admin").is_none());
        assert_eq!(f.roll("get", "chaos"), Some(500));
        assert!(f.expire_watch("chaos", 1));
        assert!(f.watch_drop_after("chaos").is_some() && f.latency("chaos").is_some());
        let s = f.stats();
        assert_eq!(
            (s.requests["get"], s.injected_code(500), s.watches_expired),
            (1, 1, 1)
        );

        // expiry after drops: resumes from before the latest drop only
        f.set(FaultConfig {
            expire_dropped: true,
            ..FaultConfig::default()
        });
        assert!(!f.expire_watch("u", 5), "nothing dropped yet");
        f.count_watch_dropped(10);
        assert!(f.expire_watch("u", 9) && !f.expire_watch("u", 10) && !f.expire_watch("u", 12));
        f.count_watch_dropped(7);
        assert!(f.expire_watch("u", 9), "the mark never moves back");
        assert_eq!(f.stats().watches_dropped, 2);

        let too_much = FaultConfig {
            errors: BTreeMap::from([("patch".into(), vf(0.6, 500))]),
            error_mix: BTreeMap::from([("patch".into(), vec![vf(0.5, 409)])]),
            ..FaultConfig::default()
        };
        assert!(too_much.validate().unwrap_err().contains("more than 1"));
        let bad_code = FaultConfig {
            error_mix: BTreeMap::from([("patch".into(), vec![vf(0.5, 200)])]),
            ..FaultConfig::default()
        };
        assert!(bad_code.validate().unwrap_err().contains("HTTP error code"));
        let bad_rate = FaultConfig {
            errors: BTreeMap::from([("get".into(), vf(-0.1, 500))]),
            ..FaultConfig::default()
        };
        assert!(bad_rate.validate().is_err());
    }
}
