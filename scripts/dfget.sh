#!/usr/bin/env bash
# Builds the real, statically linked dfget from the `dragonfly-client` crate on crates.io for the
# given platforms (default: every platform it can be built for here) and caches each binary
# outside the repository, at $CACHE/dfget-<version>/<os_arch[_variant]>/dfget. Prints one line
# per platform: "<platform> <path>" for the built ones. Builds take 20 to 30 minutes each on two
# cores, once.
#
# dfget needs a newer rustc than Debian's 1.85 (tonic 0.14 and sysinfo 0.38 in its lock file
# need 1.88), so it is built with Debian's rustc-web 1.96 (rust_web_cargo in platforms.sh). The
# default platforms are the ones whose build works here; the others (std built from source) can
# be asked for by name but fail upstream in 1.5.10: s390x and ppc64le in ring 0.16.20 (from rcgen
# 0.12.1), arm/v7 in mappings 0.5.0 (32-bit). See images/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/platforms.sh

DFGET_PLATFORMS="linux/amd64 linux/arm64"
platforms=("$@")
[ ${#platforms[@]} -gt 0 ] || read -r -a platforms <<<"$DFGET_PLATFORMS"

log() { printf 'dfget.sh: %s\n' "$*" >&2; }

scripts/cross-toolchain.sh dfget >/dev/null

for platform in "${platforms[@]}"; do
  out=$(dfget_dir "$platform")
  if [ ! -x "$out/dfget" ]; then
    triple=$(platform_triple "$platform")
    log "building dfget $DFGET_VERSION for $platform ($triple); 20-30 minutes, once"
    # The build directory is kept in the cache until the build succeeds, so a failed build
    # (a missing package, a lost session) resumes instead of starting over.
    work="$out.build"
    mkdir -p "$work"
    (
      cross_env "$platform"
      # jemalloc must assume the largest page size the platform's kernels use (64 KiB on
      # some arm64 distributions and most ppc64le ones), or it fails at start on those.
      case "$platform" in linux/arm64 | linux/ppc64le) export JEMALLOC_SYS_WITH_LG_PAGE=16 ;; esac
      CARGO_TARGET_DIR="$work/target" rust_web_cargo "$platform" install dragonfly-client \
        --version "$DFGET_VERSION" --bin dfget --locked --target "$triple" --root "$work/root" >&2
    )
    "$(platform_gnu_prefix "$platform")strip" "$work/root/bin/dfget"
    mkdir -p "$out"
    mv "$work/root/bin/dfget" "$out/dfget.tmp"
    mv "$out/dfget.tmp" "$out/dfget"
    rm -rf "$work"
  fi
  echo "$platform $out/dfget"
done
