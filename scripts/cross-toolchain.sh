#!/usr/bin/env bash
# Installs, once, what the cross builds need, all from Debian's packages (rustup here has only
# the x86_64 target and cannot download others):
#   - GNU cross compilers and C libraries for arm64, armhf, ppc64el and s390x, and qemu-user-static
#     to run the results;
#   - Debian's rustc-web 1.96 and cargo-web with the arm64 standard library (a normal install),
#     and its standard library's sources (rust-web-src), from which cargo builds std for the
#     three platforms Debian has no rustc-web std for (see rust_web_cargo in platforms.sh);
#   - Debian's rustc-web 1.85 with the standard library of all five architectures, unpacked into
#     $CACHE/rust-1.85-sysroot. Installing foreign-architecture packages with apt fails on
#     multi-arch version skew, and enabling those architectures system-wide makes `apt-get update`
#     fail whenever a security mirror is mid-sync, so the packages are fetched with a private apt
#     state that knows only the main suite, then unpacked.
# With "dfget": also protoc, clang/libclang and cmake, which dragonfly-client's build needs.
# Prints the 1.85 rustc's path.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/platforms.sh

RUST_185=1.85.0+dfsg3-1~deb12u3
log() { printf 'cross-toolchain.sh: %s\n' "$*" >&2; }

packages=(qemu-user-static libllvm19 rustc-web cargo-web rust-web-src libstd-rust-web-dev:arm64)
for platform in $ALL_PLATFORMS; do
  prefix=$(platform_gnu_prefix "$platform")
  [ -n "$prefix" ] || continue
  arch=$(platform_debian_arch "$platform")
  packages+=("gcc-${prefix%-}" "libc6-dev-${arch}-cross")
done
if [ "${1:-}" = dfget ]; then
  # RocksDB is C++: a cross g++ for every foreign platform.
  packages+=(protobuf-compiler clang libclang-dev cmake)
  for platform in $ALL_PLATFORMS; do
    prefix=$(platform_gnu_prefix "$platform")
    [ -z "$prefix" ] || packages+=("g++-${prefix%-}")
  done
fi

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f '${Status}' "$package" 2>/dev/null | grep -q 'ok installed' || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
    rm -f /var/lib/apt/lists/.dragonfly-injector-updated
  fi
  # A failing index for one architecture must not stop the install: apt says which.
  apt-get update -qq || log "apt-get update reported errors; trying the install anyway"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

sysroot="$(cache_dir)/rust-1.85-sysroot"
if [ ! -x "$sysroot/usr/bin/rustc" ]; then
  log "unpacking Debian's rustc-web $RUST_185 and its standard library for five architectures"
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
  downloads=("rustc-web=$RUST_185")
  for platform in $ALL_PLATFORMS; do
    arch=$(platform_debian_arch "$platform")
    downloads+=("libstd-rust-web-1.85:$arch=$RUST_185" "libstd-rust-web-dev:$arch=$RUST_185")
  done
  (cd "$work/debs" && apt-get "${apt_private[@]}" download "${downloads[@]}" >/dev/null)
  rm -rf "$sysroot.tmp" && mkdir -p "$sysroot.tmp"
  for deb in "$work"/debs/*.deb; do dpkg -x "$deb" "$sysroot.tmp"; done
  rm -rf "$sysroot" && mv "$sysroot.tmp" "$sysroot"
fi
echo "$sysroot/usr/bin/rustc"
