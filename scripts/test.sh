#!/usr/bin/env bash
# Runs every check and test of sealant: format, lints, unit, integration, snapshot and interop tests.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
scripts/setup.sh

echo "== rustfmt"
cargo fmt --all --check
cargo fmt --check --manifest-path fuzz/Cargo.toml   # its own workspace
echo "== clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== binaries (the end-to-end tests run them; cargo test alone does not rebuild them all)"
cargo build --workspace --bins --locked
echo "== tests"
cargo test --workspace --locked
echo "== fuzz (every cargo-fuzz target for FUZZ_SECONDS, default 30 s)"
scripts/fuzz.sh
