//! ExternalSecrets: values from Vault and AWS Secrets Manager, refreshed on `refreshInterval`.
//!
//! Efficiency comes from two pieces: every (store, interval) pair refreshes on shared *ticks* whose phase is
//! derived from the store (so a restart does not align anything, and stores are spread out), and a per-store
//! [`coalesce::Coalescer`] that, when the first ExternalSecret of a tick asks, fetches every reference the
//! store's ExternalSecrets use in one sweep (AWS: batches of 20), so each distinct remote value is fetched once
//! per refresh window however many ExternalSecrets use it.

pub mod admission;
pub mod build;
pub mod coalesce;
pub mod reconcile;
pub mod reload;
pub mod schedule;
pub mod stores;
