//! SealedSecret -> Secret.

mod build;
mod rotate;
mod template;

pub use build::{BuildError, Desired, Reason, build};
pub use rotate::rotate;
pub use template::{TemplateError, render};
