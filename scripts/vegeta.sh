#!/usr/bin/env bash
# Builds the pinned vegeta ($VEGETA_VERSION: open-loop, constant-rate HTTP load) from the Go
# module proxy into the cache, once, and prints its path. Used by scripts/bench-load.sh, never by
# the tests.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

bin="$(cache_dir)/bin/vegeta-$VEGETA_VERSION"
if [ ! -x "$bin" ]; then
  work="$(cache_dir)/src/vegeta-$VEGETA_VERSION"
  rm -rf "$work" && mkdir -p "$work" "$(cache_dir)/bin"
  (
    cd "$work"
    go mod init dragonfly-injector.local/vegeta >/dev/null 2>&1
    GOFLAGS=-mod=mod go get "github.com/tsenart/vegeta/v12@$VEGETA_VERSION" >&2
    go_build "$bin.tmp" "-s -w" github.com/tsenart/vegeta/v12
  )
  mv "$bin.tmp" "$bin"
  rm -rf "$work"
fi
echo "$bin"
