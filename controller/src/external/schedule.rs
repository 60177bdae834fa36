//! Refresh intervals, shared refresh ticks, and retry backoff.

use std::hash::{Hash, Hasher};
use std::time::Duration;

use jiff::Timestamp;

/// A `refreshInterval` that is not a Go duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a duration: use a Go duration such as `1h`, `15m`, `1h30m` or `0` (fetch once)")]
pub struct BadDuration(pub String);

/// Parses a Go duration (`1h30m`, `15m`, `90s`, `1.5h`, `300ms`, `0`). `0` means "fetch once, never refresh".
pub fn parse_go_duration(text: &str) -> Result<Duration, BadDuration> {
    let bad = || BadDuration(text.to_owned());
    let s = text.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_len == 0 {
            return Err(bad());
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * seconds;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total > 10.0 * 365.0 * 86_400.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(total))
}

/// The phase of a store's refresh ticks: a stable offset in `[0, interval)` derived from the store's identity.
pub fn phase(store_key: &str, interval: Duration) -> Duration {
    if interval.is_zero() {
        return Duration::ZERO;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    store_key.hash(&mut h);
    let nanos = u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX).max(1);
    Duration::from_nanos(h.finish() % nanos)
}

/// The latest tick at or before `now`: ticks are at `epoch + phase + k * interval`.
pub fn last_tick(now: Timestamp, interval: Duration, phase: Duration) -> Timestamp {
    let step = i128::try_from(interval.as_nanos()).unwrap_or(i128::MAX).max(1);
    let offset = i128::try_from(phase.as_nanos()).unwrap_or(0);
    let t = now.as_nanosecond() - offset;
    let k = t.div_euclid(step);
    Timestamp::from_nanosecond(k * step + offset).unwrap_or(now)
}

/// When an ExternalSecret last refreshed at `last` is due again. A never-refreshed one is due at once.
/// With `interval` zero (fetch once) it is never due again after the first refresh.
pub fn due_at(
    last: Option<Timestamp>,
    now: Timestamp,
    interval: Duration,
    phase: Duration,
) -> Option<Timestamp> {
    let Some(last) = last else { return Some(now) };
    if interval.is_zero() {
        return None;
    }
    let tick = last_tick(now, interval, phase);
    if last < tick {
        Some(now)
    } else {
        let next = tick.checked_add(interval).unwrap_or(now);
        Some(next)
    }
}

/// Delay before retrying after `failures` consecutive failures: 5 s doubling, never beyond the refresh
/// interval (nothing is gained by asking faster than the values are wanted) and never beyond 10 minutes.
pub fn retry_delay(failures: u32, interval: Duration) -> Duration {
    let base = Duration::from_secs(5);
    let exp = base.saturating_mul(
        1u32.checked_shl(failures.saturating_sub(1).min(16))
            .unwrap_or(u32::MAX),
    );
    let cap = if interval.is_zero() {
        Duration::from_secs(600)
    } else {
        interval.min(Duration::from_secs(600))
    };
    exp.min(cap.max(base))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_go_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_go_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_go_duration("300ms").unwrap(), Duration::from_millis(300));
        assert_eq!(parse_go_duration("0").unwrap(), Duration::ZERO);
        for bad in ["", "h", "1", "1d", "ten minutes", "-1h", "1h-5m"] {
            assert!(parse_go_duration(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn ticks_are_shared_and_phased() {
        let minute = Duration::from_secs(60);
        let p = Duration::from_secs(7);
        assert_eq!(
            last_tick(ts("2026-01-01T00:00:30Z"), minute, p),
            ts("2026-01-01T00:00:07Z")
        );
        assert_eq!(
            last_tick(ts("2026-01-01T00:00:05Z"), minute, p),
            ts("2025-12-31T23:59:07Z")
        );
        assert_eq!(phase("shop/aws", minute), phase("shop/aws", minute));
        assert!(phase("shop/aws", minute) < minute);
        let phases: std::collections::BTreeSet<_> = (0..50)
            .map(|i| phase(&format!("ns/store-{i}"), minute).as_secs())
            .collect();
        assert!(phases.len() > 20, "phases spread over the interval: {phases:?}");
    }

    #[test]
    fn due_times() {
        let minute = Duration::from_secs(60);
        let p = Duration::ZERO;
        let now = ts("2026-01-01T00:10:30Z");
        assert_eq!(due_at(None, now, minute, p), Some(now));
        // refreshed before the current tick (00:10:00): due now
        assert_eq!(
            due_at(Some(ts("2026-01-01T00:09:59Z")), now, minute, p),
            Some(now)
        );
        // refreshed after it: due at the next tick, whatever the restart time
        assert_eq!(
            due_at(Some(ts("2026-01-01T00:10:01Z")), now, minute, p),
            Some(ts("2026-01-01T00:11:00Z"))
        );
        assert_eq!(
            due_at(Some(ts("2026-01-01T00:10:01Z")), now, Duration::ZERO, p),
            None
        );
    }

    #[test]
    fn retry_backoff_doubles_and_is_capped() {
        let hour = Duration::from_secs(3600);
        let delays: Vec<u64> = (1..=9).map(|n| retry_delay(n, hour).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 320, 600, 600]);
        assert_eq!(retry_delay(6, Duration::from_secs(60)), Duration::from_secs(60));
        assert_eq!(retry_delay(1, Duration::from_secs(1)), Duration::from_secs(5));
        assert_eq!(retry_delay(100, hour), Duration::from_secs(600));
    }
}
