#!/usr/bin/env bash
# Installs what building and testing need on a fresh machine of this project's kind.
# Idempotent: a machine that already has everything does nothing here.
set -euo pipefail
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is missing; install Rust (rustup) first" >&2
  exit 1
fi
cd "$(dirname "$0")/.."
cargo fetch --locked
