#!/usr/bin/env bash
# The libFuzzer targets in fuzz/ (review, config, yaml), built with libFuzzer's coverage
# instrumentation the way `cargo fuzz` builds them (stable rustc; ASan, which needs
# -Zsanitizer, only with FUZZ_ASAN=1 and RUSTC_BOOTSTRAP=1), then run from the committed seed
# corpus in a throw-away working corpus, so the repository is left as it was. They link the
# engine alone (fuzz/Cargo.toml: the webhook without its `server` feature), so a cold build
# compiles 38 crates, not the server's 350 (BENCHMARKS.md, "Set-up on a new machine").
#   scripts/fuzz.sh                  every target for 15 s (what scripts/test.sh runs, at nice 19
#                                    beside the test binaries, which leave a core partly idle)
#   scripts/fuzz.sh 600 review       one target for 10 minutes
#   FUZZ_RUNS=10000000 scripts/fuzz.sh 0 yaml   ten million executions (the long run in BENCHMARKS.md)
#   scripts/fuzz.sh build            only build every target
# A crash stops the script with the input libFuzzer saved (fuzz/artifacts/<target>/).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$repo_root/fuzz"

seconds="${1:-15}"
shift || true
build_only=false
[ "$seconds" = build ] && build_only=true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(review config yaml)
host=$(rustc -vV | sed -n 's/^host: //p')
target_dir="$(cache_dir)/fuzz-target"
bins=()
for target in "${targets[@]}"; do bins+=(--bin "$target"); done
flags="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4"
flags+=" -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table"
flags+=" -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
[ "${FUZZ_ASAN:-0}" = 1 ] && flags+=" -Zsanitizer=address"
log "building the fuzz targets (${targets[*]})"
# --target keeps the instrumentation off build scripts and proc macros, as cargo fuzz does.
RUSTFLAGS="$flags" CARGO_TARGET_DIR="$target_dir" cargo build --quiet --locked --release --target "$host" "${bins[@]}"
[ "$build_only" = false ] || exit 0
for target in "${targets[@]}"; do
  work=$(mktemp -d)
  mkdir -p "artifacts/$target"
  limit=(-max_total_time="$seconds")
  [ -n "${FUZZ_RUNS:-}" ] && limit=(-runs="$FUZZ_RUNS")
  log "fuzzing $target (${FUZZ_RUNS:-$seconds s})"
  status=0
  "$target_dir/$host/release/$target" "${limit[@]}" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="artifacts/$target/" "$work" "corpus/$target" 2>"$work.log" || status=$?
  grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$work.log" >&2 || true
  rm -rf "$work"
  if [ "$status" -ne 0 ]; then
    tail -n 40 "$work.log" >&2
    rm -f "$work.log"
    die "$target: libFuzzer found a failing input (fuzz/artifacts/$target/)"
  fi
  rm -f "$work.log"
done
