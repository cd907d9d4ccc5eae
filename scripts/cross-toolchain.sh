#!/usr/bin/env bash
# Installs, once, what the cross builds need, all from Debian's packages (rustup here has only
# the x86_64 target and cannot download others). Prints the path of the rustc 1.85 below.
#
#   scripts/cross-toolchain.sh            the copier's toolchain (the test tier):
#     - GNU cross compilers and C libraries for arm64, armhf, ppc64el and s390x, and
#       qemu-user-static to run the results;
#     - Debian's rustc-web $DEBIAN_RUSTC_185 with the standard library of all five architectures,
#       unpacked into $CACHE/rust-1.85-sysroot. Installing foreign-architecture packages with apt
#       fails on multi-arch version skew, and enabling those architectures system-wide makes
#       `apt-get update` fail whenever a security mirror is mid-sync, so the packages are fetched
#       with a private apt state that knows only the main suite, then unpacked.
#   scripts/cross-toolchain.sh release    also what the release tier's foreign builds need:
#     - Debian's rustc-web 1.96 and cargo-web with the arm64 standard library (a normal install)
#       and its standard library's sources (rust-web-src), from which cargo builds std for the
#       three platforms Debian has no rustc-web std for (rust_web_cargo in lib.sh);
#     - protoc, clang/libclang, cmake and a cross g++ per platform for dragonfly-client (RocksDB
#       is C++).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

packages=(qemu-user-static)
for platform in $ALL_PLATFORMS; do
  prefix=$(platform_gnu_prefix "$platform")
  [ -n "$prefix" ] || continue
  packages+=("gcc-${prefix%-}" "libc6-dev-$(platform_debian_arch "$platform")-cross")
done
case "${1:-}" in
  "") ;;
  release)
    packages+=(libllvm19 rustc-web cargo-web rust-web-src protobuf-compiler clang libclang-dev cmake)
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

sysroot="$(cache_dir)/rust-1.85-sysroot"
if [ ! -x "$sysroot/usr/bin/rustc" ]; then
  log "unpacking Debian's rustc-web $DEBIAN_RUSTC_185 and its standard library for five architectures"
  apt_install libllvm19   # rustc-web's one shared-library need
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/lists/partial" "$work/archives/partial" "$work/debs"
  arches=""
  for platform in $ALL_PLATFORMS; do arches="$arches,$(platform_debian_arch "$platform")"; done
  echo "deb http://deb.debian.org/debian bookworm main" >"$work/sources.list"
  apt_private=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
    -o "Dir::State::Lists=$work/lists" -o "Dir::Cache::Archives=$work/archives"
    -o "APT::Architectures=${arches#,}" -o "APT::Architecture=amd64" -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
  apt-get "${apt_private[@]}" update -qq
  downloads=("rustc-web=$DEBIAN_RUSTC_185")
  for platform in $ALL_PLATFORMS; do
    arch=$(platform_debian_arch "$platform")
    downloads+=("libstd-rust-web-1.85:$arch=$DEBIAN_RUSTC_185" "libstd-rust-web-dev:$arch=$DEBIAN_RUSTC_185")
  done
  (cd "$work/debs" && apt-get "${apt_private[@]}" download "${downloads[@]}" >/dev/null)
  rm -rf "$sysroot.tmp" && mkdir -p "$sysroot.tmp"
  for deb in "$work"/debs/*.deb; do dpkg -x "$deb" "$sysroot.tmp"; done
  publish_dir "$sysroot"
fi
echo "$sysroot/usr/bin/rustc"
