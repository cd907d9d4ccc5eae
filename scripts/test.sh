#!/usr/bin/env bash
# The whole test suite. `.ci/run` calls this; so can you.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --all-targets --locked "$@"
