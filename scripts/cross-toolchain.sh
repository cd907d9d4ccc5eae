#!/usr/bin/env bash
# Installs, once, what the cross builds need, all from Debian's packages (rustup here has only
# the x86_64 target and cannot download others).
#
#   scripts/cross-toolchain.sh            the copier's toolchain (the test tier):
#     - GNU cross compilers and C libraries for arm64, armhf, ppc64el and s390x, and
#       qemu-user-static to run the results;
#     - Debian's rustc-web and cargo-web (1.96) and the sources of its standard library
#       (rust-web-src): cargo builds std from them for every platform (-Zbuild-std), the copier's
#       without the backtrace symboliser, and the webhook's for the three platforms Debian
#       packages no rustc-web std for (rust_web_cargo in lib.sh).
#   scripts/cross-toolchain.sh release    also what the release tier's foreign builds need:
#     - the arm64 standard library of rustc-web (a normal multi-arch install);
#     - protoc, clang/libclang, cmake and a cross g++ per platform for dragonfly-client (RocksDB
#       is C++).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

packages=(qemu-user-static rustc-web cargo-web rust-web-src)
for platform in $ALL_PLATFORMS; do
  prefix=$(platform_gnu_prefix "$platform")
  [ -n "$prefix" ] || continue
  packages+=("gcc-${prefix%-}" "libc6-dev-$(platform_debian_arch "$platform")-cross")
done
case "${1:-}" in
  "") ;;
  release)
    packages+=(protobuf-compiler clang libclang-dev cmake)
    for platform in $ALL_PLATFORMS; do
      prefix=$(platform_gnu_prefix "$platform")
      [ -z "$prefix" ] || packages+=("g++-${prefix%-}")
    done
    # The arm64 standard library is a normal multi-arch install.
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
      dpkg --add-architecture arm64
      rm -f /var/lib/apt/lists/.dragonfly-injector-updated
    fi
    packages+=(libstd-rust-web-dev:arm64)
    ;;
  *) die "usage: $0 [release]" ;;
esac
apt_install "${packages[@]}"
