//! One fetch per remote value per refresh window, however many ExternalSecrets ask for it.
//!
//! A [`Coalescer`] belongs to one store. Callers ask for keys that must have been fetched at or after a point in
//! time (the start of their refresh tick). When anything asked for is stale, the coalescer sweeps: it fetches,
//! in one call to the provider, every key any caller asked for recently that is stale too, so the first
//! ExternalSecret of a tick refreshes the whole store and the others read the result. Concurrent callers wait
//! for a running sweep instead of starting their own; what they ask for is registered before they wait, so the
//! next sweep fetches it for all of them at once (at start-up, 2,000 ExternalSecrets over 100 keys make a
//! handful of sweeps, not one per key). Failures are kept only briefly, so a retry fetches again.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;

/// Fetches a set of keys; returns a result for each.
pub type FetchFn<K, V, E> = Arc<dyn Fn(Vec<K>) -> BoxFuture<'static, Vec<(K, Result<V, E>)>> + Send + Sync>;

/// How long a failure is served before the key is fetched again.
const ERROR_TTL: Duration = Duration::from_secs(1);

struct Entry<V, E> {
    fetched_at: Instant,
    result: Result<V, E>,
}

/// The per-store fetch cache and sweeper.
pub struct Coalescer<K, V, E> {
    /// The fetched values; held across a sweep, so callers queue here.
    entries: Arc<tokio::sync::Mutex<HashMap<K, Entry<V, E>>>>,
    /// When each key was last asked for; written before a caller queues for `entries`, never held across an
    /// await.
    requested: Arc<std::sync::Mutex<HashMap<K, Instant>>>,
    fetch: FetchFn<K, V, E>,
    retention: Duration,
}

impl<K, V, E> Clone for Coalescer<K, V, E> {
    fn clone(&self) -> Self {
        Coalescer {
            entries: self.entries.clone(),
            requested: self.requested.clone(),
            fetch: self.fetch.clone(),
            retention: self.retention,
        }
    }
}

impl<K, V, E> std::fmt::Debug for Coalescer<K, V, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescer")
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

impl<K, V, E> Coalescer<K, V, E>
where
    K: Clone + Eq + Hash + Send + 'static,
    V: Clone + Send + 'static,
    E: Clone + Send + 'static,
{
    /// `retention`: a key nobody asked for in this long is forgotten (and no longer swept).
    pub fn new(fetch: FetchFn<K, V, E>, retention: Duration) -> Self {
        Coalescer {
            entries: Arc::default(),
            requested: Arc::default(),
            fetch,
            retention,
        }
    }

    /// The value of each key, fetched at or after `fresh_since`.
    pub async fn get(&self, keys: &[K], fresh_since: Instant) -> HashMap<K, Result<V, E>> {
        {
            let now = Instant::now();
            let mut requested = self.requested.lock().unwrap_or_else(|e| e.into_inner());
            for k in keys {
                requested.insert(k.clone(), now);
            }
        }
        let mut entries = self.entries.lock().await;
        let now = Instant::now();
        let is_fresh = |e: &Entry<V, E>| {
            e.fetched_at >= fresh_since
                && (e.result.is_ok() || now.saturating_duration_since(e.fetched_at) < ERROR_TTL)
        };
        let all_fresh = keys.iter().all(|k| entries.get(k).is_some_and(is_fresh));
        if !all_fresh {
            let stale: Vec<K> = {
                let mut requested = self.requested.lock().unwrap_or_else(|e| e.into_inner());
                let retention = self.retention;
                requested.retain(|_, at| now.saturating_duration_since(*at) <= retention);
                entries.retain(|k, _| requested.contains_key(k));
                requested
                    .keys()
                    .filter(|k| !entries.get(*k).is_some_and(is_fresh))
                    .cloned()
                    .collect()
            };
            tracing::debug!(stale = stale.len(), asked = keys.len(), "sweeping the store");
            let fetched = (self.fetch)(stale).await;
            for (k, result) in fetched {
                entries.insert(
                    k,
                    Entry {
                        fetched_at: now,
                        result,
                    },
                );
            }
        }
        keys.iter()
            .filter_map(|k| entries.get(k).map(|e| (k.clone(), e.result.clone())))
            .collect()
    }

    /// How many keys are remembered.
    pub async fn len(&self) -> usize {
        self.requested.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub async fn is_empty(&self) -> bool {
        self.len().await == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    type Calls = Arc<Mutex<Vec<Vec<u32>>>>;

    /// A fake store: key k has value k*10 (plus the generation), keys >= 100 fail.
    fn fetcher(calls: Calls, generation: Arc<Mutex<u32>>) -> FetchFn<u32, u32, String> {
        Arc::new(move |mut keys: Vec<u32>| {
            keys.sort();
            calls.lock().unwrap().push(keys.clone());
            let g = *generation.lock().unwrap();
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                keys.into_iter()
                    .map(|k| {
                        (
                            k,
                            if k >= 100 {
                                Err(format!("no {k}"))
                            } else {
                                Ok(k * 10 + g)
                            },
                        )
                    })
                    .collect()
            })
        })
    }

    #[tokio::test(start_paused = true)]
    async fn one_sweep_per_window_for_every_caller() {
        let calls: Calls = Arc::default();
        let generation = Arc::new(Mutex::new(0));
        let c = Coalescer::new(
            fetcher(calls.clone(), generation.clone()),
            Duration::from_secs(600),
        );
        let tick0 = Instant::now();
        // first contact: each new key set is fetched when first asked
        assert_eq!(c.get(&[1, 2], tick0).await[&1], Ok(10));
        assert_eq!(c.get(&[2, 3], tick0).await[&3], Ok(30));
        assert_eq!(calls.lock().unwrap().len(), 2);
        // the same window: served from the cache
        assert_eq!(c.get(&[1, 3], tick0).await[&1], Ok(10));
        assert_eq!(calls.lock().unwrap().len(), 2);

        // next window: the first caller sweeps every known key, in one call; 50 concurrent callers share it
        tokio::time::advance(Duration::from_secs(60)).await;
        *generation.lock().unwrap() = 1;
        let tick1 = Instant::now();
        let mut handles = Vec::new();
        for i in 0..50u32 {
            let c = c.clone();
            handles.push(tokio::spawn(async move { c.get(&[1 + i % 3], tick1).await }));
        }
        for h in handles {
            let got = h.await.unwrap();
            assert!(
                got.values().all(|v| v.as_ref().unwrap() % 10 == 1),
                "fresh values: {got:?}"
            );
        }
        let calls = calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 3, "{calls:?}");
        assert_eq!(calls[2], vec![1, 2, 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn callers_queued_behind_a_sweep_share_the_next_one() {
        let calls: Calls = Arc::default();
        let c = Coalescer::new(fetcher(calls.clone(), Arc::default()), Duration::from_secs(600));
        let tick = Instant::now();
        // 200 first contacts over 40 distinct keys at once, as at a controller start
        let mut handles = Vec::new();
        for i in 0..200u32 {
            let c = c.clone();
            handles.push(tokio::spawn(
                async move { (i % 40, c.get(&[i % 40], tick).await) },
            ));
        }
        for h in handles {
            let (k, got) = h.await.unwrap();
            assert_eq!(got[&k], Ok(k * 10));
        }
        let calls = calls.lock().unwrap().clone();
        assert!(calls.len() <= 2, "{} sweeps: {calls:?}", calls.len());
        let fetched: std::collections::BTreeSet<u32> = calls.iter().flatten().copied().collect();
        assert_eq!(fetched.len(), 40);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_returned_then_retried() {
        let calls: Calls = Arc::default();
        let c = Coalescer::new(fetcher(calls.clone(), Arc::default()), Duration::from_secs(600));
        let tick = Instant::now();
        assert_eq!(c.get(&[100], tick).await[&100], Err("no 100".to_owned()));
        assert_eq!(c.get(&[100], tick).await[&100], Err("no 100".to_owned()));
        assert_eq!(calls.lock().unwrap().len(), 1, "a failure is shared for a moment");
        tokio::time::advance(Duration::from_secs(2)).await;
        let _ = c.get(&[100], tick).await;
        assert_eq!(calls.lock().unwrap().len(), 2, "then fetched again");
    }

    #[tokio::test(start_paused = true)]
    async fn forgotten_keys_are_not_swept() {
        let calls: Calls = Arc::default();
        let c = Coalescer::new(fetcher(calls.clone(), Arc::default()), Duration::from_secs(90));
        let _ = c.get(&[1], Instant::now()).await;
        tokio::time::advance(Duration::from_secs(60)).await;
        let _ = c.get(&[2], Instant::now()).await;
        tokio::time::advance(Duration::from_secs(60)).await;
        let _ = c.get(&[2], Instant::now()).await;
        assert_eq!(
            calls.lock().unwrap().last().unwrap(),
            &vec![2],
            "key 1 was forgotten after 90 s"
        );
        assert_eq!(c.len().await, 1);
    }
}
