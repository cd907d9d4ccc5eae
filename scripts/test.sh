#!/usr/bin/env bash
# The whole test suite: unit, in-process HTTP, real TLS, the real binaries, property tests and
# the YAML oracle. `.ci/run` calls this after scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
[ -x /usr/local/go/bin/go ] && export PATH="$PATH:/usr/local/go/bin"
export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"
cargo test --workspace --all-targets --locked "$@"
