//! The function the `manifests` fuzz target and the regression test (below) both call, so they cannot
//! drift apart.
//!
//! The input is a small file set as text: the first line is the GitSync path (`spec.path`), then each file
//! starts with a line `=== <path>` followed by its contents (any bytes):
//!
//! ```text
//! deploy
//! === deploy/kustomization.yaml
//! resources: [cm.yaml]
//! === deploy/cm.yaml
//! apiVersion: v1
//! kind: ConfigMap
//! metadata: {name: a}
//! ```

use std::collections::BTreeSet;

use serde_json::Value;

use crate::{ObjectId, load};

/// At most this many files are taken from one input (more only slows the fuzzer down).
const MAX_FILES: usize = 32;

/// Splits `data` into the GitSync path and the files.
pub fn split(data: &[u8]) -> (String, Vec<(String, Vec<u8>)>) {
    let mut chunks = split_on(data, b"\n=== ");
    let root = chunks.next().unwrap_or_default();
    let files = chunks
        .take(MAX_FILES)
        .map(|chunk| {
            let (path, contents) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (&chunk[..i], &chunk[i + 1..]),
                None => (chunk, &[][..]),
            };
            (String::from_utf8_lossy(path).into_owned(), contents.to_vec())
        })
        .collect();
    (String::from_utf8_lossy(root).trim().to_owned(), files)
}

fn split_on<'a>(mut data: &'a [u8], sep: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        match data.windows(sep.len()).position(|w| w == sep) {
            Some(i) => {
                let chunk = &data[..i];
                data = &data[i + sep.len()..];
                Some(chunk)
            }
            None => {
                done = true;
                Some(data)
            }
        }
    })
}

/// Loads the file set in `data` and checks what a successful load promises: every object has an
/// apiVersion, kind and name, comes from one of the given files, agrees with its own document, is
/// defined once, and its inventory id reads back as the same id (prune relies on that). Panics when a
/// promise is broken; an error must name a file.
pub fn manifests(data: &[u8]) {
    let (root, files) = split(data);
    let paths: BTreeSet<String> = files
        .iter()
        .map(|(p, _)| {
            p.split('/')
                .filter(|s| !s.is_empty() && *s != ".")
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect();
    match load(&files, &root) {
        Ok(objects) => {
            let mut ids = BTreeSet::new();
            for o in &objects {
                assert!(
                    !o.api_version.is_empty() && !o.kind.is_empty() && !o.name.is_empty(),
                    "{o:?}"
                );
                assert!(paths.contains(&o.file), "{} is not one of the files", o.file);
                assert_eq!(o.value["apiVersion"].as_str(), Some(o.api_version.as_str()));
                assert_eq!(o.value["kind"].as_str(), Some(o.kind.as_str()));
                assert_eq!(o.value["metadata"]["name"].as_str(), Some(o.name.as_str()));
                let ns = match &o.value["metadata"]["namespace"] {
                    Value::Null => None,
                    v => Some(v.as_str().expect("a namespace is a string")),
                };
                assert_eq!(ns, o.namespace.as_deref());
                let id = o.id();
                assert_eq!(
                    ObjectId::parse(&id.to_string()).as_ref(),
                    Some(&id),
                    "inventory id {id} does not read back"
                );
                assert!(ids.insert(id), "{} {} loaded twice", o.kind, o.name);
            }
        }
        Err(e) => {
            assert!(!e.file.is_empty() && !e.reason.is_empty(), "{e:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every input under `fuzz/regressions/manifests/` (what the fuzzer found, and hand-made tricky
    /// cases) and every seed under `fuzz/corpus/manifests/` goes through the same function as the fuzz
    /// target.
    #[test]
    fn fuzz_regressions() {
        let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        for dir in [fuzz.join("regressions/manifests"), fuzz.join("corpus/manifests")] {
            let mut inputs: Vec<_> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .map(|e| e.unwrap().path())
                .collect();
            inputs.sort();
            assert!(inputs.len() >= 2, "too few inputs in {}", dir.display());
            for path in inputs {
                eprintln!("{}", path.display());
                manifests(&std::fs::read(&path).unwrap());
            }
        }
    }

    #[test]
    fn split_reads_root_and_files() {
        let (root, files) = split(b"deploy\n=== deploy/a.yaml\nkind: A\n=== deploy/b\n");
        assert_eq!(root, "deploy");
        assert_eq!(
            files,
            [
                ("deploy/a.yaml".to_owned(), b"kind: A".to_vec()),
                ("deploy/b".to_owned(), Vec::new())
            ]
        );
        let (root, files) = split(b"");
        assert_eq!((root.as_str(), files.len()), ("", 0));
    }
}
