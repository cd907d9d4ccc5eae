#!/usr/bin/env bash
# Builds Dragonfly itself from source, once, into the cache outside the repository, and prints
# one "NAME PATH" line per thing built:
#
#   scripts/dragonfly.sh client [--profile test|release] [PLATFORM...]
#       dfget, dfcache, dfstore and dfctl from the `dragonfly-client` crate
#       ($DRAGONFLY_CLIENT_VERSION, --locked), statically linked, in one cargo build per
#       platform (default: linux/amd64), and dfdaemon for linux/amd64, where the tests run it
#       (statically linked for arm64, dfdaemon outgrows the GOT its glibc start code allows:
#       "relocation truncated to fit", and no image ships it). Prints "<platform> <dir>".
#   scripts/dragonfly.sh scheduler
#       the Go scheduler d7y.io/dragonfly/v2 ($DRAGONFLY_SCHEDULER_VERSION), cmd/scheduler.
#       Prints "scheduler <path>".
#
# Profiles: "test" is what CI builds for the tests (no optimisation, no LTO, parallel codegen,
# RocksDB's C++ unoptimised: the build's CPU time drops by a third or more against opt-level 1,
# and the tests only move a few megabytes); "release" is the crate's own release profile, what
# the tools image ships (scripts/release.sh).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# The client's source with the smallest changes that build it where it does not build as locked
# (linux/arm/v7, ppc64le, s390x), unpacked into DIR. images/README.md lists each change with its
# upstream cause; the lock file keeps every other version, and the build log shows cargo's
# changes to it.
#   - x509-parser 0.15.1 (through rcgen 0.12.1) asks for ring 0.16, which has no s390x or
#     ppc64le support: ring 0.17, which has, with the same verification API.
#   - mappings 0.5.0 (through jemalloc_pprof) gives a u32 where it keeps a u64 on 32-bit targets:
#     widened with u64::from.
patched_client_source() {
  local dir=$1 lock
  mkdir -p "$dir"
  fetch_crate dragonfly-client "$DRAGONFLY_CLIENT_VERSION" "$(index_checksum dragonfly-client "$DRAGONFLY_CLIENT_VERSION")" "$dir"
  lock="$dir/dragonfly-client-$DRAGONFLY_CLIENT_VERSION/Cargo.lock"
  fetch_crate x509-parser 0.15.1 "$(lock_checksum "$lock" x509-parser 0.15.1)" "$dir"
  fetch_crate mappings 0.5.0 "$(lock_checksum "$lock" mappings 0.5.0)" "$dir"
  sed -i '/^\[dependencies.ring\]$/,/^$/ s/^version = "0.16.11"$/version = "0.17"/' "$dir/x509-parser-0.15.1/Cargo.toml"
  grep -q '^version = "0.17"$' "$dir/x509-parser-0.15.1/Cargo.toml" || die "x509-parser 0.15.1: ring line not found"
  sed -i 's/file_offset: ph.p_offset,/file_offset: u64::from(ph.p_offset),/' "$dir/mappings-0.5.0/src/lib.rs"
  grep -q 'u64::from(ph.p_offset)' "$dir/mappings-0.5.0/src/lib.rs" || die "mappings 0.5.0: line not found"
  # A path dependency's lints are not capped as a registry one's are, and x509-parser denies
  # `unused_qualifications`, which today's compiler finds seven of: warnings, as from the registry.
  sed -i 's/^#!\[deny(/#![warn(/' "$dir/x509-parser-0.15.1/src/lib.rs" "$dir/mappings-0.5.0/src/lib.rs"
  cat >>"$dir/dragonfly-client-$DRAGONFLY_CLIENT_VERSION/Cargo.toml" <<'TOML'

[patch.crates-io]
x509-parser = { path = "../x509-parser-0.15.1" }
mappings = { path = "../mappings-0.5.0" }
TOML
  # cargo swaps the two packages in the lock file (and drops ring 0.16 with what only it used);
  # every other entry stays, and the build then runs --locked on it.
  cp "$lock" "$dir/Cargo.lock.upstream"
  (cd "$(dirname "$lock")" && cargo metadata --format-version 1 >/dev/null)
  log "dragonfly-client's lock file as built (< upstream, > patched):"
  diff "$dir/Cargo.lock.upstream" "$lock" >&2 || true
}

# Platforms where the client builds only from patched_client_source.
needs_patched_client() {
  case "$1" in linux/arm/v7 | linux/ppc64le | linux/s390x) return 0 ;; *) return 1 ;; esac
}

build_client() {
  local profile=test platforms=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --profile) profile=$2; shift 2 ;;
      linux/*) platforms+=("$1"); shift ;;
      *) die "usage: $0 client [--profile test|release] [PLATFORM...]" ;;
    esac
  done
  [ ${#platforms[@]} -gt 0 ] || platforms=(linux/amd64)
  case "$profile" in test | release) ;; *) die "unknown profile $profile (test, release)" ;; esac

  local platform out triple work bin bins
  for platform in "${platforms[@]}"; do
    out=$(dragonfly_client_dir "$platform" "$profile")
    read -r -a bins <<<"$DRAGONFLY_TOOLS"
    [ "$platform" = linux/amd64 ] && bins+=(dfdaemon)
    if [ ! -d "$out" ]; then
      triple=$(platform_triple "$platform")
      log "building dragonfly-client $DRAGONFLY_CLIENT_VERSION ($profile) for $platform; 10-40 minutes, once"
      # protoc and its well-known types for the prost builds, clang and libclang for
      # librocksdb-sys' bindgen, cmake (lib.sh's requirements); the release tier's for a cross build.
      if [ "$platform" = linux/amd64 ]; then install_requirements test; else "$repo_root/scripts/cross-toolchain.sh" release >/dev/null; fi
      # The build directory stays in the cache until the build succeeds, so a failed build (a
      # missing package, a lost session) resumes instead of starting over.
      work="$out.build"
      mkdir -p "$work"
      (
        cross_env "$platform"
        # jemalloc must assume the largest page size the platform's kernels use (64 KiB on some
        # arm64 distributions and most ppc64le ones), or it fails at start on those.
        case "$platform" in linux/arm64 | linux/ppc64le) export JEMALLOC_SYS_WITH_LG_PAGE=16 ;; esac
        if [ "$profile" = test ]; then
          export CARGO_PROFILE_RELEASE_OPT_LEVEL=0 CARGO_PROFILE_RELEASE_LTO=false \
            CARGO_PROFILE_RELEASE_CODEGEN_UNITS=256 CARGO_PROFILE_RELEASE_DEBUG=false
          # RocksDB's C++ (several hundred files) is the longest part of the build; unoptimised
          # it compiles in about half the time, and the tests do not need its speed.
          export "CFLAGS_${triple//-/_}=-O0" "CXXFLAGS_${triple//-/_}=-O0"
        fi
        args=(install dragonfly-client --version "$DRAGONFLY_CLIENT_VERSION" --locked --target "$triple"
          --root "$work/root")
        if needs_patched_client "$platform"; then
          [ -d "$work/src" ] || { rm -rf "$work/src.tmp" && patched_client_source "$work/src.tmp" && mv "$work/src.tmp" "$work/src"; }
          args=(install --path "$work/src/dragonfly-client-$DRAGONFLY_CLIENT_VERSION" --locked --target "$triple"
            --root "$work/root")
        fi
        for bin in "${bins[@]}"; do args+=(--bin "$bin"); done
        if [ "$platform" = linux/amd64 ]; then
          # rustup's compiler builds the native target; Debian's rustc-web the foreign ones.
          CARGO_TARGET_DIR="$work/target" cargo "${args[@]}" >&2
        else
          CARGO_TARGET_DIR="$work/target" rust_web_cargo "$platform" "${args[@]}" >&2
        fi
      )
      mkdir -p "$out.tmp"
      for bin in "${bins[@]}"; do
        "$(platform_gnu_prefix "$platform")strip" -o "$out.tmp/$bin" "$work/root/bin/$bin"
      done
      publish_dir "$out"
      rm -rf "$work"
    fi
    echo "$platform $out"
  done
}

build_scheduler() {
  local dir bin work
  dir="$(cache_dir)/dragonfly-scheduler-$DRAGONFLY_SCHEDULER_VERSION"
  bin="$dir/scheduler"
  if [ ! -x "$bin" ]; then
    log "building the Dragonfly scheduler $DRAGONFLY_SCHEDULER_VERSION from the Go module proxy (minutes, once)"
    # `go install d7y.io/dragonfly/v2/cmd/scheduler@VERSION` reads @v/list, which the proxy
    # refuses here; building inside a copy of the downloaded module works (no replace lines).
    work="$(cache_dir)/src/dragonfly-$DRAGONFLY_SCHEDULER_VERSION"
    rm -rf "$work" && mkdir -p "$(dirname "$work")" "$dir.tmp"
    cp -r "$(go_mod_dir "d7y.io/dragonfly/v2@$DRAGONFLY_SCHEDULER_VERSION")" "$work"
    chmod -R u+w "$work"
    (cd "$work" && go_build "$dir.tmp/scheduler" "-s -w -X d7y.io/dragonfly/v2/version.GitVersion=$DRAGONFLY_SCHEDULER_VERSION" ./cmd/scheduler)
    publish_dir "$dir"
    rm -rf "$work"
  fi
  echo "scheduler $bin"
}

case "${1:-}" in
  client) shift; build_client "$@" ;;
  scheduler) shift; build_scheduler "$@" ;;
  *) die "usage: $0 client [--profile test|release] [PLATFORM...] | scheduler" ;;
esac
