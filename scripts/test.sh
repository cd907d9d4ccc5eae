#!/usr/bin/env bash
# The whole test suite: unit, in-process HTTP, real TLS, the real binaries, property tests, the
# YAML oracle, the real registry, the Helm chart, the end-to-end control plane, the cross-built
# copiers under qemu and the images built with `docker buildx bake`. `.ci/run` calls
# this after scripts/setup.sh. Ends with one line totalling every test binary.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
[ -x /usr/local/go/bin/go ] && export PATH="$PATH:/usr/local/go/bin"
export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"
# The image tests need every platform's cross-built binaries and at least amd64's real dfget
# (built once and cached: about 25 minutes on a fresh machine; arm64's is used when cached).
scripts/dfget.sh linux/amd64 >/dev/null
scripts/cross-build.sh >/dev/null
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --all-targets --locked --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# libtest binaries ("test result: ok. N passed; M failed; ...") and the end-to-end binary,
# which runs its own scenarios ("N passed, M failed").
passed=$(sed -nE 's/^test result: [A-Za-z]+\. ([0-9]+) passed; ([0-9]+) failed.*/\1/p; s/^([0-9]+) passed, ([0-9]+) failed$/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
failed=$(sed -nE 's/^test result: [A-Za-z]+\. ([0-9]+) passed; ([0-9]+) failed.*/\2/p; s/^([0-9]+) passed, ([0-9]+) failed$/\2/p' "$log" | awk '{s+=$1} END {print s+0}')
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  failed=1   # a build failure or a crashed binary counts too
fi
echo "summary: $passed passed, $failed failed"
exit "$status"
