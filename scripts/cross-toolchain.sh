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
#       packages no rustc-web std for (rust_web_cargo in lib.sh);
#     - for the copier, which links static musl: each architecture's musl-dev, fetched with a
#       private apt state (so apt still checks Debian's signatures and hashes) and unpacked into
#       the cache rather than installed, since installing foreign-architecture packages would
#       change the machine's apt configuration. Each platform's link directory (musl_dir in
#       lib.sh) gets musl's start files and libc.a, and a libunwind.a made of the cross gcc's own
#       unwinder (libgcc_eh) and scripts/dl_find_object.c.
#   scripts/cross-toolchain.sh release    also what the release tier's foreign builds need:
#     - the arm64 standard library of rustc-web (a normal multi-arch install);
#     - protoc, clang/libclang, cmake and a cross g++ per platform for dragonfly-client (RocksDB
#       is C++).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# The packages are lib.sh's requirements table (the test tier, and the release tier's with
# `release`), so setup.sh's preflight checks exactly what is installed here.
case "${1:-}" in
  "") install_requirements test ;;
  release) install_requirements test release ;;
  *) die "usage: $0 [release]" ;;
esac

# The copier's musl link directories. Done when any is missing: a new DEBIAN_MUSL_VERSION or a
# changed shim is a new directory (musl_dir).
musl_missing=()
for platform in $ALL_PLATFORMS; do
  [ -f "$(musl_dir "$platform")/libunwind.a" ] || musl_missing+=("$platform")
done
if [ ${#musl_missing[@]} -gt 0 ]; then
  log "unpacking Debian's musl-dev $DEBIAN_MUSL_VERSION for ${musl_missing[*]}"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/lists/partial" "$work/archives/partial" "$work/debs"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main" >"$work/sources.list"
  arches=() downloads=()
  for platform in "${musl_missing[@]}"; do
    arches+=("$(platform_debian_arch "$platform")")
    downloads+=("musl-dev:$(platform_debian_arch "$platform")=$DEBIAN_MUSL_VERSION")
  done
  apt_private=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
    -o "Dir::State::Lists=$work/lists" -o "Dir::Cache::Archives=$work/archives"
    -o "APT::Architectures=$(IFS=,; echo "${arches[*]}")" -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
  apt-get "${apt_private[@]}" update -qq
  (cd "$work/debs" && apt-get "${apt_private[@]}" download "${downloads[@]}" >/dev/null)
  for platform in "${musl_missing[@]}"; do
    arch=$(platform_debian_arch "$platform")
    prefix=$(platform_gnu_prefix "$platform")
    dir=$(musl_dir "$platform")
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp/unpacked" "$dir.tmp/unwind"
    dpkg -x "$work"/debs/musl-dev_*_"$arch".deb "$dir.tmp/unpacked"
    # musl-dev holds one library directory, /usr/lib/<Debian's musl tuple>/.
    cp "$dir.tmp/unpacked"/usr/lib/*-linux-musl*/{crt1.o,crti.o,crtn.o,libc.a} "$dir.tmp/"
    # Rust's standard library links "unwind" for musl targets: GCC's unwinder, the one the
    # glibc builds use, plus the one function of glibc it asks for (scripts/dl_find_object.c).
    (cd "$dir.tmp/unwind" && "${prefix}ar" x "$("${prefix}gcc" -print-file-name=libgcc_eh.a)")
    "${prefix}gcc" -O2 -c "$repo_root/scripts/dl_find_object.c" -o "$dir.tmp/unwind/dl_find_object.o"
    "${prefix}ar" rcs "$dir.tmp/libunwind.a" "$dir.tmp/unwind"/*.o
    rm -rf "$dir.tmp/unpacked" "$dir.tmp/unwind"
    mkdir -p "${dir%/*}"
    publish_dir "$dir"
  done
fi
