//! Input, atomic output, and walking directory trees.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use zeroize::Zeroizing;

use crate::error::hinted;

/// Reads FILE, or standard input when `None`. The text may hold plaintext, so it is zeroized on drop.
pub fn read_input(path: Option<&Path>) -> Result<(Zeroizing<String>, String)> {
    let mut text = Zeroizing::new(String::new());
    match path {
        Some(p) if p != Path::new("-") => {
            if p.is_dir() {
                return Err(hinted(
                    format!("{} is a directory", p.display()),
                    "pass a YAML or JSON file with -f/--file (reencrypt is the command that walks directories)",
                ));
            }
            let mut f = std::fs::File::open(p).map_err(|e| {
                hinted(
                    format!("cannot read {}: {e}", p.display()),
                    "check the path given with -f/--file",
                )
            })?;
            f.read_to_string(&mut text)
                .map_err(|e| not_text(&p.display().to_string(), &e))?;
            Ok((text, p.display().to_string()))
        }
        _ => {
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| not_text("standard input", &e))?;
            Ok((text, "standard input".to_owned()))
        }
    }
}

fn not_text(source: &str, e: &std::io::Error) -> anyhow::Error {
    hinted(
        format!("cannot read {source} as UTF-8 text: {e}"),
        "pass YAML or JSON text; binary values go base64-encoded under data (or seal one with --raw --from-file)",
    )
}

/// Reads a file with a clear error naming the flag it came from.
pub fn read_file(path: &Path, flag: &str) -> Result<Zeroizing<String>> {
    std::fs::read_to_string(path).map(Zeroizing::new).map_err(|e| {
        hinted(
            format!("cannot read {} ({flag}): {e}", path.display()),
            format!("check the path given with {flag}"),
        )
    })
}

/// The permissions of a file written by [`write_atomic`].
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// An existing file keeps its permissions; a new one gets these.
    KeepOr(u32),
    /// Always these (private keys).
    Exactly(u32),
}

/// Writes `contents` to `path` atomically: a temporary file in the same directory, then a rename.
pub fn write_atomic(path: &Path, contents: &[u8], mode: Mode) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(hinted(
            format!(
                "cannot write {}: directory {} does not exist",
                path.display(),
                dir.display()
            ),
            "create the directory first, or choose another path",
        ));
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".sealant-")
        .tempfile_in(&dir)
        .map_err(|e| {
            hinted(
                format!("cannot write in {}: {e}", dir.display()),
                "check that the directory exists and is writable",
            )
        })?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    set_mode(tmp.path(), path, mode)?;
    tmp.persist(path)
        .map_err(|e| anyhow::anyhow!("cannot replace {}: {}", path.display(), e.error))?;
    Ok(())
}

#[cfg(unix)]
fn set_mode(tmp: &Path, dest: &Path, mode: Mode) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = match mode {
        Mode::Exactly(m) => m,
        Mode::KeepOr(m) => std::fs::metadata(dest)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(m),
    };
    std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

#[cfg(not(unix))]
fn set_mode(_tmp: &Path, _dest: &Path, _mode: Mode) -> Result<()> {
    Ok(())
}

/// Writes to FILE atomically, or to standard output.
pub fn write_output(path: Option<&Path>, contents: &str) -> Result<()> {
    match path {
        Some(p) if p != Path::new("-") => write_atomic(p, contents.as_bytes(), Mode::KeepOr(0o644)),
        _ => {
            let mut out = std::io::stdout().lock();
            out.write_all(contents.as_bytes())?;
            out.flush()?;
            Ok(())
        }
    }
}

/// Manifest files under `paths`: files as given, directories walked (hidden entries skipped), sorted.
pub fn manifest_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p)
            .map_err(|e| hinted(format!("cannot read {}: {e}", p.display()), "check the path"))?;
        if meta.is_dir() {
            walk(p, &mut out)?;
        } else {
            out.push(p.clone());
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let ty = entry.file_type()?;
        if ty.is_dir() {
            walk(&path, out)?;
        } else if ty.is_file() && is_manifest(&path) {
            out.push(path);
        }
    }
    Ok(())
}

fn is_manifest(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}
