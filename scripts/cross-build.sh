#!/usr/bin/env bash
# Builds the static binaries the images carry into the layout the image build consumes, one
# directory per Docker platform, and prints the dist directory:
#
#   target/dist/linux/amd64/dfget-copier         static musl, std built from source, every platform
#   target/dist/linux/amd64/dragonfly-injector   the webhook, static
#   target/dist/linux/amd64/tools/<tool>         dfget, dfcache, dfstore, dfctl (scripts/dragonfly.sh)
#   target/dist/linux/amd64/tools/SHA256SUMS     the copier's manifest for tools/
#
#   scripts/cross-build.sh [--profile test|release] [--only tools|webhook|ours] [PLATFORM...]
#
# "test" (the default, what scripts/test.sh and CI build): the copier for every platform, and the
# webhook and the Dragonfly tools for linux/amd64 only, in fast profiles; the tests run each of
# them. "release" (scripts/release.sh): every platform's webhook and Dragonfly tools in full
# release profiles; platforms default to $ALL_PLATFORMS for the webhook and $TOOLS_PLATFORMS for
# the tools. The Dragonfly tools are built by scripts/dragonfly.sh when missing from its cache.
# `--only tools` builds the tools image's part (copier and Dragonfly tools), `--only webhook` the
# webhook: each image's in-Docker build asks for its own. `--only ours` builds this workspace's
# binaries (the copier and the webhook) and not the Dragonfly tools: setup.sh runs it beside the
# Dragonfly client's long build, so the whole dist after it only copies. target/dist/PROFILE
# records the profile, so the image tests know which platforms to expect.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$repo_root"

profile="test"
only=""
platforms=()
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    linux/*) platforms+=("$1"); shift ;;
    *) die "usage: $0 [--profile test|release] [--only tools|webhook|ours] [PLATFORM...]   (platforms: $ALL_PLATFORMS)" ;;
  esac
done
case "$profile" in test | release) ;; *) die "unknown profile $profile (test, release)" ;; esac
case "$only" in "" | tools | webhook | ours) ;; *) die "unknown part $only (tools, webhook, ours)" ;; esac
[ ${#platforms[@]} -gt 0 ] || read -r -a platforms <<<"$ALL_PLATFORMS"

# Which platforms get a webhook and the Dragonfly tools in this profile.
wants_webhook() { [ "$only" != tools ] && { [ "$profile" = release ] || [ "$1" = linux/amd64 ]; }; }
wants_copier() { [ "$only" != webhook ]; }
wants_tools() {
  wants_copier || return 1
  [ "$only" != ours ] || return 1
  if [ "$profile" = release ]; then
    case " $TOOLS_PLATFORMS " in *" $1 "*) return 0 ;; esac
    return 1
  fi
  [ "$1" = linux/amd64 ]
}

toolchain_args=()
[ "$profile" = test ] || toolchain_args=(release)
"$repo_root/scripts/cross-toolchain.sh" "${toolchain_args[@]}" >&2
# The test tier's dist is target/dist; the release tier writes its own ($DRAGONFLY_DIST), so the
# two never overwrite each other.
dist="${DRAGONFLY_DIST:-target/dist}"
mkdir -p "$dist"
# Cargo's output for the cross builds lives in the cache, outside any clone: a new clone (CI
# always starts from one) rebuilds only this workspace's own crates, not every dependency.
targets="$(cache_dir)/cross-target"

# What the release webhook binary for a platform is built from: its sources, the lock file, the
# profiles, the compiler, and the build flags (lib.sh). Delete $CACHE/dist-cache to force a
# rebuild.
source_key() {
  {
    echo "$1"
    /usr/bin/rustc --version
    find Cargo.toml Cargo.lock webhook/Cargo.toml webhook/src scripts/lib.sh -type f | LC_ALL=C sort | xargs sha256sum
  } | sha256sum | cut -c1-32
}

# Kept release binaries nobody has used for two weeks go (about 70 MB for five targets).
mkdir -p "$(cache_dir)/dist-cache"
find "$(cache_dir)/dist-cache" -mindepth 2 -maxdepth 2 -name dragonfly-injector -atime +14 \
  -exec sh -c 'rm -rf "${1%/*}"' prune {} \; 2>/dev/null || true

build_webhook() {
  local platform=$1 triple=$2 out=$3 key kept web_target
  if [ "$profile" = test ]; then
    # The test tier's webhook: rustup's compiler, static, the `ci` profile (no LTO, parallel
    # codegen). Its target directory is the workspace's own, beside the test build (wherever
    # CARGO_TARGET_DIR puts it).
    log "$platform: dragonfly-injector (ci profile, static)"
    (
      cross_env "$platform"
      cargo build --quiet --locked --profile ci -p dragonfly-injector --target "$triple"
    )
    install -m 0755 "${CARGO_TARGET_DIR:-target}/$triple/ci/dragonfly-injector" "$out/dragonfly-injector"
    return
  fi
  # The release needs rustc >= 1.89 on every platform: Debian's rustc-web 1.96 (rust_web_cargo).
  # The binary is kept by a hash of the sources and toolchain, so an unchanged tree is not
  # rebuilt for five targets in every clone.
  key=$(source_key "$platform")
  kept="$(cache_dir)/dist-cache/$key/dragonfly-injector"
  if [ ! -x "$kept" ]; then
    log "$platform: dragonfly-injector (release) with Debian's rustc-web $(/usr/bin/rustc --version | cut -d' ' -f2)"
    # (Not `$(needs_build_std ... && echo ...)`: under set -e a substitution that ends false
    # stops the script.)
    web_target="$targets/rust-web"
    if needs_build_std "$platform"; then web_target="$web_target-build-std"; fi
    (
      cross_env "$platform"
      CARGO_TARGET_DIR="$web_target" \
        rust_web_cargo "$platform" build --quiet --locked --release -p dragonfly-injector --target "$triple"
    )
    mkdir -p "${kept%/*}"
    install -m 0755 "$web_target/$triple/release/dragonfly-injector" "$kept.tmp"
    mv "$kept.tmp" "$kept"
  else
    log "$platform: dragonfly-injector (release) unchanged since its last build"
  fi
  install -m 0755 "$kept" "$out/dragonfly-injector"
}

for platform in "${platforms[@]}"; do
  triple=$(platform_triple "$platform")
  out="$dist/$platform"
  rm -rf "$out" && mkdir -p "$out"

  if wants_copier "$platform"; then
    log "$platform: dfget-copier with Debian's rustc-web $(/usr/bin/rustc --version | cut -d' ' -f2), std from source, static musl"
    musl_triple=$(platform_musl_triple "$platform")
    (
      # The copier runs in every injected pod, so it is built for size (BENCHMARKS.md, "Binary
      # sizes"): static musl rather than static glibc (glibc alone was 0.9 MB of it); std from
      # source without its `backtrace` feature (the DWARF symboliser, 280 KB: a panic still
      # prints its message and still unwinds, so the staged temporary files are still removed);
      # a non-PIE static executable (no relocations for every pointer); fat LTO.
      musl_env "$platform" -C relocation-model=static
      RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc CARGO_TARGET_DIR="$targets/copier" CARGO_PROFILE_RELEASE_LTO=fat \
        /usr/bin/cargo build --quiet --locked --release -p dfget-copier --target "$musl_triple" \
        -Zbuild-std=std,panic_unwind -Zbuild-std-features=
    )
    install -m 0755 "$targets/copier/$musl_triple/release/dfget-copier" "$out/dfget-copier"
  fi

  wants_webhook "$platform" && build_webhook "$platform" "$triple" "$out"

  if wants_tools "$platform"; then
    client=$("$repo_root/scripts/dragonfly.sh" client --profile "$profile" "$platform" | cut -d' ' -f2)
    mkdir -p "$out/tools"
    for tool in $DRAGONFLY_TOOLS; do install -m 0755 "$client/$tool" "$out/tools/$tool"; done
    # shellcheck disable=SC2086 # one argument per tool
    (cd "$out/tools" && sha256sum $DRAGONFLY_TOOLS >SHA256SUMS)
    log "$platform: Dragonfly tools $DRAGONFLY_CLIENT_VERSION ($profile) from the cache"
  fi
done
echo "$profile" >"$dist/PROFILE"
echo "$dist"
