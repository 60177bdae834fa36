//! SealedSecret -> Secret.

mod build;
pub mod reconcile;
mod rotate;

pub use build::{BuildError, Desired, Reason, build, open_all};
pub use rotate::rotate;
