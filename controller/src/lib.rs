//! sealant-controller: turns SealedSecrets into Secrets.
//!
//! Each reconcile is fetch -> pure build ([`sealed::build`]) -> apply -> status
//! ([`sealed::reconcile`]). Keys live in labelled Secrets ([`keys`], watched live by [`keys_task`]); only the
//! holder of the leader Lease ([`leader`]) writes; every replica serves the endpoints ([`http`]).

pub mod events;
pub mod external;
pub mod gitops;
pub mod http;
pub mod keys;
pub mod keys_task;
pub mod leader;
pub mod metrics;
pub mod relist;
pub mod sealed;
pub mod secretwriter;
pub mod status;
pub mod template;
