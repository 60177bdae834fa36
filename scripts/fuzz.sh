#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/) for a bounded time: FUZZ_SECONDS each (default 30). Exits non-zero when a
# target crashes, panics, times out or runs out of memory, after printing the input that did it and how to
# reproduce it. Optional: FUZZ_TARGETS="sealed_value manifests" to run only some, FUZZ_ARGS for more libFuzzer
# options (e.g. "-max_len=65536").
#
# Stable toolchain: no sanitizer (`--sanitizer none`), so libFuzzer's coverage guidance and Rust's own checks
# (panics, overflow checks, debug assertions, stack overflow) find the bugs. The build goes to its own
# persistent target dir (other RUSTFLAGS than the main one, which it would otherwise rebuild); the corpora grow
# outside the clone, started from the committed seeds in fuzz/corpus/, so nothing of a run lands in git.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
cache="$(dirname "$CARGO_TARGET_DIR")"
FUZZ_TARGET_DIR="${FUZZ_TARGET_DIR:-$cache/fuzz-target}"
FUZZ_WORK="${FUZZ_WORK:-$cache/fuzz-work}"
flags=(--sanitizer none --codegen-units 16 --target-dir "$FUZZ_TARGET_DIR")

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz (crates.io)"
  # its own temporary build dir, not ours
  env -u CARGO_TARGET_DIR cargo install --locked cargo-fuzz
fi

cd fuzz
read -r -a targets <<<"${FUZZ_TARGETS:-$(cargo fuzz list | tr '\n' ' ')}"
echo "building fuzz targets: ${targets[*]}"
cargo fuzz build "${flags[@]}"

failed=()
for t in "${targets[@]}"; do
  corpus="$FUZZ_WORK/corpus/$t"
  artifacts="$FUZZ_WORK/artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  cp -n "corpus/$t"/* "$corpus"/ 2>/dev/null || true
  ls -1 "$artifacts" | sort >"$FUZZ_WORK/$t.before"
  echo "== fuzz $t (${FUZZ_SECONDS}s, corpus $corpus)"
  if cargo fuzz run "${flags[@]}" "$t" "$corpus" -- \
    -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$artifacts/" \
    -print_final_stats=1 ${FUZZ_ARGS:-} >"$FUZZ_WORK/$t.log" 2>&1; then
    grep -E '^stat::number_of_executed_units|^Done [0-9]+ runs' "$FUZZ_WORK/$t.log" | tr '\n' ' ' || true
    echo
  else
    tail -n 40 "$FUZZ_WORK/$t.log"
    failed+=("$t")
    comm -13 "$FUZZ_WORK/$t.before" <(ls -1 "$artifacts" | sort) | while read -r a; do
      echo "FUZZ CRASH in $t: $artifacts/$a"
      echo "  reproduce: (cd fuzz && cargo fuzz run ${flags[*]} $t $artifacts/$a)"
      echo "  then: fix the code, copy the input to fuzz/regressions/$t/ and run the owning crate's tests"
    done
  fi
done

if ((${#failed[@]})); then
  echo "fuzzing failed: ${failed[*]} (full logs in $FUZZ_WORK/*.log)" >&2
  exit 1
fi
echo "fuzzing: ${targets[*]} ran ${FUZZ_SECONDS}s each without a crash"
