# Sourced by the cross-build scripts: the five Docker platforms the images are built for and the
# Rust target and C toolchain each one needs on this (amd64 Debian 12) host. The dist keeps a
# platform's binaries under its Docker platform path (target/dist/linux/arm/v7/), which the
# Dockerfiles find from TARGETPLATFORM; the caches use platform_dir's flat names.

ALL_PLATFORMS="linux/amd64 linux/arm64 linux/arm/v7 linux/ppc64le linux/s390x"

# linux/arm/v7 -> linux_arm_v7
platform_dir() { printf '%s' "$1" | tr / _; }

platform_triple() {
  case "$1" in
    linux/amd64) echo x86_64-unknown-linux-gnu ;;
    linux/arm64) echo aarch64-unknown-linux-gnu ;;
    linux/arm/v7) echo armv7-unknown-linux-gnueabihf ;;
    linux/ppc64le) echo powerpc64le-unknown-linux-gnu ;;
    linux/s390x) echo s390x-unknown-linux-gnu ;;
    *) echo "unknown platform $1 (known: $ALL_PLATFORMS)" >&2; return 1 ;;
  esac
}

# GNU toolchain prefix ("" for the native compiler).
platform_gnu_prefix() {
  case "$1" in
    linux/amd64) echo "" ;;
    linux/arm64) echo aarch64-linux-gnu- ;;
    linux/arm/v7) echo arm-linux-gnueabihf- ;;
    linux/ppc64le) echo powerpc64le-linux-gnu- ;;
    linux/s390x) echo s390x-linux-gnu- ;;
  esac
}

# Debian architecture name, for the foreign standard-library packages.
platform_debian_arch() {
  case "$1" in
    linux/amd64) echo amd64 ;;
    linux/arm64) echo arm64 ;;
    linux/arm/v7) echo armhf ;;
    linux/ppc64le) echo ppc64el ;;
    linux/s390x) echo s390x ;;
  esac
}

# Exports the variables cargo and the cc crate read to cross-compile for the platform with the
# given rustc: the linker, C/C++ compilers and archiver, and static linking for the target only
# (RUSTFLAGS would also reach build scripts and proc macros, which run here).
cross_env() {
  local platform=$1 triple prefix var
  triple=$(platform_triple "$platform")
  prefix=$(platform_gnu_prefix "$platform")
  var=$(printf '%s' "$triple" | tr 'a-z-' 'A-Z_')
  export "CARGO_TARGET_${var}_LINKER=${prefix}gcc"
  export "CARGO_TARGET_${var}_RUSTFLAGS=-C target-feature=+crt-static"
  export "CC_${triple//-/_}=${prefix}gcc"
  export "CXX_${triple//-/_}=${prefix}g++"
  export "AR_${triple//-/_}=${prefix}ar"
  if [ -n "$prefix" ]; then
    export "BINDGEN_EXTRA_CLANG_ARGS_${triple//-/_}=--sysroot=/usr/${prefix%-}"
  fi
}

cache_dir() { echo "${DRAGONFLY_INJECTOR_CACHE:-$HOME/.cache/dragonfly-injector}"; }

# The dfget release the tools image carries, and the directory where scripts/dfget.sh caches
# the platform's static build.
DFGET_VERSION="${DFGET_VERSION:-1.5.10}"
dfget_dir() { echo "$(cache_dir)/dfget-$DFGET_VERSION/$(platform_dir "$1")"; }

# Runs cargo with Debian's rustc-web (1.96) for the platform. Its standard library is packaged
# for amd64 and arm64; for the other platforms cargo builds std from Debian's rust-web-src
# (-Zbuild-std), which needs RUSTC_BOOTSTRAP=1 to accept that unstable flag on a stable
# compiler. Debian's own cargo is used there so that cargo, rustc and the std sources are one
# release. Call inside a subshell after cross_env.
needs_build_std() { [ ! -d "/usr/lib/rustlib/$(platform_triple "$1")/lib" ]; }

rust_web_cargo() {
  local platform=$1; shift
  if ! needs_build_std "$platform"; then
    RUSTC=/usr/bin/rustc cargo "$@"
  else
    local subcommand=$1; shift
    RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc /usr/bin/cargo "$subcommand" -Zbuild-std=std,panic_unwind "$@"
  fi
}
