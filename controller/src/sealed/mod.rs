//! SealedSecret -> Secret.

mod build;
pub mod reconcile;
mod rotate;
mod template;

pub use build::{BuildError, Desired, Reason, build, open_all};
pub use rotate::rotate;
pub use template::{TemplateError, render};
