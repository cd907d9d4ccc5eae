#!/usr/bin/env bash
# Cross-builds the static binaries the images carry, for the given platforms (default: all five),
# into the layout the image build consumes, one directory per Docker platform:
#
#   target/dist/linux/amd64/dfget-copier         (every platform; Debian's rustc 1.85)
#   target/dist/linux/amd64/dragonfly-injector   (every platform; Debian's rustc-web 1.96)
#   target/dist/linux/amd64/tools/dfget          (where dfget is cached, see scripts/dfget.sh)
#   target/dist/linux/amd64/tools/SHA256SUMS     (the copier's manifest for tools/)
#
# With --dfget it builds dfget where it is missing (20 to 30 minutes per platform, once);
# without, it takes dfget only from the cache. Prints the dist directory.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/platforms.sh

build_dfget=false
platforms=()
for arg in "$@"; do
  case "$arg" in
    --dfget) build_dfget=true ;;
    linux/*) platforms+=("$arg") ;;
    *) echo "usage: $0 [--dfget] [PLATFORM...]   (platforms: $ALL_PLATFORMS)" >&2; exit 2 ;;
  esac
done
[ ${#platforms[@]} -gt 0 ] || read -r -a platforms <<<"$ALL_PLATFORMS"

log() { printf 'cross-build.sh: %s\n' "$*" >&2; }

rustc_185=$(scripts/cross-toolchain.sh)
sysroot_185=${rustc_185%/usr/bin/rustc}
dist=target/dist
# Cargo's output for the cross builds lives in the cache, outside any clone: a new clone (CI
# always starts from one) rebuilds only this workspace's own crates, not every dependency for
# every target.
targets="$(cache_dir)/cross-target"

# What the webhook binary for a platform is built from: its sources, the lock file, the release
# profile, the compiler, and the build flags (platforms.sh). Delete $CACHE/dist-cache to force a
# rebuild.
source_key() {
  {
    echo "$1"
    /usr/bin/rustc --version
    find Cargo.toml Cargo.lock webhook/Cargo.toml webhook/src scripts/platforms.sh -type f | LC_ALL=C sort | xargs sha256sum
  } | sha256sum | cut -c1-32
}

# Kept binaries nobody has used for two weeks go (each tree costs about 70 MB for five targets).
mkdir -p "$(cache_dir)/dist-cache"
find "$(cache_dir)/dist-cache" -mindepth 2 -maxdepth 2 -name dragonfly-injector -atime +14 \
  -exec sh -c 'rm -rf "${1%/*}"' prune {} \; 2>/dev/null || true

for platform in "${platforms[@]}"; do
  triple=$(platform_triple "$platform")
  out="$dist/$platform"
  mkdir -p "$out"

  log "$platform: dfget-copier with Debian's rustc 1.85"
  (
    cross_env "$platform"
    # Fat LTO trims 7% off the copier (static glibc is most of its size); it keeps unwinding,
    # so a panic still removes the staged temporary files.
    LD_LIBRARY_PATH="$sysroot_185/usr/lib/x86_64-linux-gnu" RUSTC="$rustc_185" \
      CARGO_TARGET_DIR="$targets/rust-1.85" CARGO_PROFILE_RELEASE_LTO=fat \
      cargo build --quiet --locked --release -p dfget-copier --target "$triple"
  )
  install -m 0755 "$targets/rust-1.85/$triple/release/dfget-copier" "$out/dfget-copier"

  # The webhook needs rustc 1.89: Debian's rustc-web 1.96 (see rust_web_cargo). The binary is
  # kept by a hash of the sources and toolchain, so an unchanged tree is not rebuilt for five
  # targets in every clone.
  webhook_key=$(source_key "$platform")
  kept="$(cache_dir)/dist-cache/$webhook_key/dragonfly-injector"
  if [ ! -x "$kept" ]; then
    log "$platform: dragonfly-injector with Debian's rustc-web $(/usr/bin/rustc --version | cut -d' ' -f2)"
    web_target="$targets/rust-web$(needs_build_std "$platform" && echo -build-std)"
    (
      cross_env "$platform"
      CARGO_TARGET_DIR="$web_target" \
        rust_web_cargo "$platform" build --quiet --locked --release -p dragonfly-injector --target "$triple"
    )
    mkdir -p "${kept%/*}"
    install -m 0755 "$web_target/$triple/release/dragonfly-injector" "$kept.tmp"
    mv "$kept.tmp" "$kept"
  else
    log "$platform: dragonfly-injector unchanged since its last build"
  fi
  install -m 0755 "$kept" "$out/dragonfly-injector"

  dfget="$(dfget_dir "$platform")/dfget"
  if [ ! -x "$dfget" ] && $build_dfget; then
    scripts/dfget.sh "$platform" >/dev/null
  fi
  rm -rf "$out/tools"
  if [ -x "$dfget" ]; then
    mkdir -p "$out/tools"
    install -m 0755 "$dfget" "$out/tools/dfget"
    (cd "$out/tools" && sha256sum dfget >SHA256SUMS)
    log "$platform: dfget $DFGET_VERSION from the cache"
  else
    log "$platform: no dfget (run scripts/dfget.sh $platform, or pass --dfget)"
  fi
done
echo "$dist"
