//! The parts of the `sealant` CLI that read and write documents, as a library so the fuzz targets (and the
//! regression tests of their findings) call the same code as the binary. The binary (`main.rs`) holds the
//! command line and the subcommands.

pub mod docs;
pub mod error;
#[doc(hidden)]
pub mod fuzz_support;
pub mod k8s;
pub mod secret;

/// The output format of documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Yaml,
    Json,
}
