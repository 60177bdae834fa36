//! Every input under `fuzz/regressions/manifests/` (crashes the fuzzer found, and hand-made tricky cases)
//! goes through the same function as the `manifests` fuzz target; none may panic.

use std::path::Path;

#[test]
fn fuzz_regressions() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions/manifests");
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    entries.sort();
    assert!(!entries.is_empty(), "no inputs in {}", dir.display());
    for path in entries {
        let data = std::fs::read(&path).unwrap();
        eprintln!("{}", path.display());
        sealant_manifests::fuzz_support::manifests(&data);
    }
}
