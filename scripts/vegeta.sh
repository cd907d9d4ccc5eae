#!/usr/bin/env bash
# Builds the pinned vegeta (open-loop, constant-rate HTTP load) from the Go module proxy into the
# cache, once, and prints its path. Used by scripts/bench-load.sh, never by the tests.
set -euo pipefail
VEGETA_VERSION=v12.13.0
cache="${DRAGONFLY_INJECTOR_CACHE:-$HOME/.cache/dragonfly-injector}"
bin="$cache/bin/vegeta-$VEGETA_VERSION"
if [ ! -x "$bin" ]; then
  command -v go >/dev/null 2>&1 || export PATH="$PATH:/usr/local/go/bin"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  GOBIN="$tmp" GOFLAGS=-mod=mod GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" go install "github.com/tsenart/vegeta/v12@$VEGETA_VERSION" >&2
  mkdir -p "$cache/bin"
  mv "$tmp/vegeta" "$bin"
fi
echo "$bin"
