#!/usr/bin/env bash
# Benchmarks of issue 8: builds the release binaries and runs the harness (prints a table, writes
# bench/results.json). Extra arguments go to sealant-bench, e.g. `scripts/bench.sh --scenario unseal,seal-cli`
# or `--out /tmp/results.json`; `sealant-bench --help` lists them. Builds into the persistent CARGO_TARGET_DIR
# (scripts/env.sh), so that a fresh clone reuses an earlier release build.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
scripts/setup.sh
cargo build --release --locked --workspace --bins
exec "$CARGO_TARGET_DIR/release/sealant-bench" "$@"
