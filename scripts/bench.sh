#!/usr/bin/env bash
# Benchmarks of issue 8: builds the release binaries and runs the harness (prints a table, writes
# bench/results.json). Extra arguments go to sealant-bench, e.g. `scripts/bench.sh --scenario unseal,seal-cli`
# or `--out /tmp/results.json`; `target/release/sealant-bench --help` lists them.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --workspace --bins
exec target/release/sealant-bench "$@"
