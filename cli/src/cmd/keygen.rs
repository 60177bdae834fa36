use std::io::Write;
use std::path::Path;

use anyhow::Result;
use sealant_seal::Identity;

use crate::error::hinted;

/// `sealant keygen`: a new identity, written 0600 to FILE (recipient on stdout) or to stdout.
pub fn run(output: Option<&Path>, force: bool) -> Result<()> {
    let identity = Identity::generate();
    let contents = identity.to_identity_file();
    match output {
        Some(path) => {
            if path.exists() && !force {
                return Err(hinted(
                    format!("{} already exists", path.display()),
                    "choose another file, or pass --force to replace it (the old key is lost unless backed up)",
                ));
            }
            crate::files::write_atomic(path, contents.as_bytes(), crate::files::Mode::Exactly(0o600))?;
            println!("{}", identity.recipient());
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(contents.as_bytes())?;
            out.flush()?;
            eprintln!("Public key: {}", identity.recipient());
        }
    }
    Ok(())
}
