//! sealant-controller: turns SealedSecrets into Secrets.
//!
//! Built as fetch -> pure build -> apply -> status. This milestone holds the pure build step
//! ([`sealed::build`]): unsealing with the identity named by `spec.recipients` and rendering `spec.template`.
//! The kube-runtime wiring, key management, leader election and endpoints follow with issue 4.

pub mod http;
pub mod keys;
pub mod metrics;
pub mod sealed;
