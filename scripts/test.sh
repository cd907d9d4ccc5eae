#!/usr/bin/env bash
# The whole test suite, the README's test command; `.ci/run` calls it. In order:
#   1. the gates, so a run fails fast on them: rustfmt and shellcheck (seconds), then clippy
#      -D warnings beside scripts/setup.sh, which installs and builds what the suites need
#      (seconds when cached): a clippy failure stops the builds at once;
#   2. every test binary: unit, in-process HTTP, real TLS, the real binaries, property tests,
#      the YAML oracle, the real registry, the Helm chart, the end-to-end control plane, the
#      cross-built copiers under qemu, and the images built with `docker buildx bake`;
#   3. each libFuzzer target for 15 s (FUZZ_SECONDS) from its seed corpus (scripts/fuzz.sh), built
#      and run at nice 19 beside step 2.
# Ends with one line totalling every test binary: "summary: N passed, M failed".
#
# One part at a time (CONTRIBUTING.md lists them):
#   scripts/test.sh gates             the three gates only
#   scripts/test.sh unit              the crates' own unit tests (seconds once built; no setup)
#   scripts/test.sh suite NAME...     the named test binaries (webhook/tests/NAME.rs,
#                                     dfget-copier/tests/NAME.rs), after setup
# Arguments after `--` go to the test binaries.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$repo_root"

quick_gates() {
  log "gate: cargo fmt --check"
  cargo fmt --all --check
  cargo fmt --manifest-path fuzz/Cargo.toml --check
  log "gate: shellcheck"
  command -v shellcheck >/dev/null 2>&1 || apt_install shellcheck
  shellcheck -x scripts/*.sh .ci/run
}

clippy_gate() {
  log "gate: cargo clippy -D warnings"
  cargo clippy --quiet --workspace --all-targets --locked -- -D warnings
  # The engine alone, as the fuzz targets build it (the webhook without its `server` feature).
  cargo clippy --quiet -p dragonfly-injector --no-default-features --lib --locked -- -D warnings
}

gates() {
  quick_gates
  clippy_gate
}

# Runs cargo test with the given arguments and prints the summary line over every test binary:
# libtest's "test result: ok. N passed; M failed; ..." and the end-to-end binary's own
# "N passed, M failed".
run_tests() {
  local out status passed failed
  out=$(mktemp)
  set +e
  cargo test --locked --no-fail-fast "$@" 2>&1 | tee "$out"
  status=${PIPESTATUS[0]}
  set -e
  passed=$(sed -nE 's/^test result: [A-Za-z]+\. ([0-9]+) passed; ([0-9]+) failed.*/\1/p; s/^([0-9]+) passed, ([0-9]+) failed$/\1/p' "$out" | awk '{s+=$1} END {print s+0}')
  failed=$(sed -nE 's/^test result: [A-Za-z]+\. ([0-9]+) passed; ([0-9]+) failed.*/\2/p; s/^([0-9]+) passed, ([0-9]+) failed$/\2/p' "$out" | awk '{s+=$1} END {print s+0}')
  rm -f "$out"
  if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
    failed=1   # a build failure or a crashed binary counts too
  fi
  echo "summary: $passed passed, $failed failed"
  return "$status"
}

# The test binaries of each package, for `suite NAME`.
suite_args() {
  local name args=()
  for name in "$@"; do
    if [ -f "webhook/tests/$name.rs" ]; then
      args+=(-p dragonfly-injector --test "$name")
    elif [ -f "dfget-copier/tests/$name.rs" ]; then
      args+=(-p dfget-copier --test "$name")
    else
      die "no test binary $name (webhook/tests/*.rs, dfget-copier/tests/*.rs)"
    fi
  done
  printf '%s\n' "${args[@]}"
}

started=$SECONDS
extra=()
mode=all
names=()
while [ $# -gt 0 ]; do
  case "$1" in
    --) shift; extra=("$@"); break ;;
    gates | unit | all) mode=$1; shift ;;
    suite) mode=suite; shift ;;
    *) [ "$mode" = suite ] || die "usage: $0 [gates | unit | suite NAME...] [-- TEST-ARGS]"; names+=("$1"); shift ;;
  esac
done

case "$mode" in
  gates) gates ;;
  unit) run_tests --workspace --lib --bins -- "${extra[@]}" ;;
  suite)
    [ ${#names[@]} -gt 0 ] || die "suite needs at least one name"
    scripts/setup.sh
    mapfile -t args < <(suite_args "${names[@]}")
    run_tests "${args[@]}" -- "${extra[@]}"
    ;;
  all)
    quick_gates
    jobs_start
    job clippy clippy_gate
    job setup scripts/setup.sh
    jobs_wait
    status=0
    # The fuzz targets build, then run each briefly from its seed corpus (the long runs are in
    # BENCHMARKS.md), at nice 19 beside the test binaries, which wait on pods and processes much
    # of the time: a cold build (about 4 minutes) and the runs then cost little wall time. The
    # seed corpus is replayed whole before the clock matters, so a slow run still checks it.
    fuzz_log=$(mktemp)
    nice -n 19 scripts/fuzz.sh "${FUZZ_SECONDS:-15}" >"$fuzz_log" 2>&1 &
    fuzz=$!
    run_tests --workspace --all-targets -- "${extra[@]}" || status=$?
    wait "$fuzz" || { log "the fuzz targets failed:"; status=1; }
    cat "$fuzz_log" >&2
    rm -f "$fuzz_log"
    log "whole run: $((SECONDS - started)) s"
    exit "$status"
    ;;
esac
