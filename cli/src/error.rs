//! Errors the user can act on: a message and a hint that says what to do next.

use std::fmt;

/// An error with a suggested fix, carried inside `anyhow::Error`.
#[derive(Debug)]
pub struct Hinted {
    pub message: String,
    pub hint: String,
}

impl fmt::Display for Hinted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Hinted {}

/// An `anyhow::Error` with a hint.
pub fn hinted(message: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Hinted {
        message: message.into(),
        hint: hint.into(),
    })
}

/// Prints `error: …`, its causes, and the first hint found in the chain.
pub fn report(e: &anyhow::Error) {
    eprintln!("error: {e}");
    for cause in e.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
    if let Some(h) = e.chain().find_map(|c| c.downcast_ref::<Hinted>()) {
        eprintln!("hint: {}", h.hint);
    }
}
