//! Snapshot tests of help texts, `sealant seal`/`unseal` output and error messages: trycmd cases in
//! `tests/cmd/*.toml`, expected output in the `.stdout`/`.stderr` files next to them (an empty file means
//! "must print nothing"; `[..]` elides the random ciphertext).
//!
//! Regenerate after an intended change with `TRYCMD=overwrite cargo test -p sealant-cli --test snapshots`,
//! then read every changed `.stdout`/`.stderr` file.
//!
//! Every case runs in `tests/cmd/fixtures.in/` (inside the repository, which must hold no `.sealant.yaml`,
//! or the "no recipients" case changes) with `env.inherit = false`, so SEALANT_* variables and COLUMNS from
//! the caller's shell cannot leak in. The fixtures were made once with the built binary:
//! - `key.txt`, `other-key.txt`: `sealant keygen -o` (throwaway test identities); `recipient.txt` holds
//!   the recipient of `key.txt`.
//! - `sealed.yaml`: `sealant seal -r $(cat recipient.txt) -f secret.yaml`.
//! - `sealed-moved.yaml`: `sealed.yaml` with `namespace: prod` changed to `staging` (strict scope mismatch).
//! - `sealed-tampered.yaml`: `sealed.yaml` with one character flipped in the middle of `password`.

#[test]
fn cli_snapshots() {
    trycmd::TestCases::new().case("tests/cmd/*.toml");
}
