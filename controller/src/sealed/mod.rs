//! SealedSecret -> Secret.

mod build;
mod template;

pub use build::{BuildError, Desired, Reason, build};
pub use template::{TemplateError, render};
