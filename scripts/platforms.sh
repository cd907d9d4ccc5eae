# Sourced by the cross-build scripts: the five Docker platforms the images are built for and the
# Rust target, C toolchain prefix and qemu runner each one needs on this (amd64 Debian 12) host.
# Directory names use Docker's TARGETOS_TARGETARCH[_TARGETVARIANT] so the Dockerfiles can find a
# platform's binaries from the build arguments alone.

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

# The command that runs one of the platform's binaries here ("" when native).
platform_runner() {
  case "$1" in
    linux/amd64) echo "" ;;
    linux/arm64) echo qemu-aarch64-static ;;
    linux/arm/v7) echo qemu-arm-static ;;
    linux/ppc64le) echo qemu-ppc64le-static ;;
    linux/s390x) echo qemu-s390x-static ;;
  esac
}

# What `file` says of a binary built for the platform.
platform_file_arch() {
  case "$1" in
    linux/amd64) echo "x86-64" ;;
    linux/arm64) echo "ARM aarch64" ;;
    linux/arm/v7) echo "ARM, EABI5" ;;
    linux/ppc64le) echo "64-bit PowerPC" ;;
    linux/s390x) echo "IBM S/390" ;;
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
