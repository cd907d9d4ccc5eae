#!/usr/bin/env bash
# The clean room (release tier): proves that scripts/setup.sh installs every Debian package the
# test tier's builds need, on a machine that has nothing else. It
#   1. makes a fresh Debian 12 root with debootstrap (--variant=minbase, Debian's archive, with
#      bookworm-updates and bookworm-security as this kind of machine has them);
#   2. gives it only what this kind of machine provides beyond Debian's minimal base: rustup's
#      Rust (~/.rustup and ~/.cargo/bin, with clippy and rustfmt) and Go (/usr/local/go), both
#      bind-mounted read-only from this machine, and the machine's own trusted CAs
#      (/usr/local/share/ca-certificates, copied: the network it reaches the registries through
#      presents certificates they sign; the ca-certificates package setup.sh installs adds them);
#   3. clones this repository's HEAD into it and runs scripts/setup.sh there from nothing: every
#      package, every download, every build of the test tier, with empty caches;
#   4. runs `scripts/setup.sh --check` and lists what was built, then removes the root.
# About an hour on 2 cores; BENCHMARKS.md ("Set-up on a new machine") has the last run. The
# chroot runs in its own mount and PID namespaces, so its mounts and processes end with it and
# the machine is left as it was.
#
#   scripts/clean-room.sh [--keep]   --keep leaves the root (under /var/tmp) for a look inside
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$repo_root"

keep=false
case "${1:-}" in
  "") ;;
  --keep) keep=true ;;
  *) die "usage: $0 [--keep]" ;;
esac
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, mounts)"
install_requirements clean-room
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
cargo_bin=$(dirname "$(command -v cargo)")
go_root=$(GOTOOLCHAIN=local go env GOROOT)
[ -d "$rustup_home/toolchains" ] || die "no rustup toolchain at $rustup_home"

started=$SECONDS
root=$(mktemp -d /var/tmp/dfi-clean-room.XXXXXX)
# A root directory's own mode (mktemp's 0700 would keep apt's unprivileged _apt user out).
chmod 0755 "$root"
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  # Nothing is mounted under the root outside the namespace; check before removing anything.
  if grep -q " $root" /proc/mounts; then
    log "mounts remain under $root; not removing it"
  elif [ "$keep" = false ]; then
    rm -rf --one-file-system "$root"
  else
    log "kept $root"
  fi
}
trap cleanup EXIT

log "debootstrap bookworm (minbase) into $root"
debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >"$root.debootstrap.log" 2>&1 ||
  { tail -n 20 "$root.debootstrap.log" >&2; rm -f "$root.debootstrap.log"; die "debootstrap failed"; }
rm -f "$root.debootstrap.log"
cat >"$root/etc/apt/sources.list.d/debian.sources" <<'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
rm -f "$root/etc/apt/sources.list"
cp /etc/resolv.conf "$root/etc/resolv.conf"
mkdir -p "$root/usr/local/share/ca-certificates"
cp -r /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
mkdir -p "$root/root/.rustup" "$root/root/.cargo/bin" "$root/usr/local/go"
log "base root made in $((SECONDS - started)) s ($(du -sh --one-file-system "$root" | cut -f1)); cloning $(git rev-parse --short HEAD)"
git clone --quiet --no-hardlinks "$repo_root" "$root/root/dragonfly-injector"

# Inside: the namespace's own /proc, /sys, /dev/pts and /dev/shm, the toolchains read-only, and
# an environment of its own (nothing of this shell's: no CARGO_HOME, no cache variables).
inside=$(cat <<'INSIDE'
set -euo pipefail
cd /root/dragonfly-injector
started=$SECONDS
status=0
scripts/setup.sh || status=$?
echo "clean-room: setup.sh exited $status after $((SECONDS - started)) s"
[ "$status" = 0 ] || exit "$status"
scripts/setup.sh --check
echo "clean-room: built:"
du -sh /root/.cache/dragonfly-injector/* target/dist 2>/dev/null | sed 's/^/  /'
find target/dist -type f -printf '  %p %s bytes\n' | sort
INSIDE
)
log "running scripts/setup.sh in the clean room (about an hour)"
status=0
# shellcheck disable=SC2016 # the inner shell expands these, from its own arguments
unshare --mount --pid --fork --propagation private bash -c '
  set -e
  root=$1 rustup_home=$2 cargo_bin=$3 go_root=$4 inside=$5
  mount -t proc proc "$root/proc"
  mount -t sysfs sysfs "$root/sys"
  mkdir -p "$root/dev/pts" "$root/dev/shm"
  mount -t devpts -o newinstance,ptmxmode=0666 devpts "$root/dev/pts"
  mount -t tmpfs tmpfs "$root/dev/shm"
  for pair in "$rustup_home:/root/.rustup" "$cargo_bin:/root/.cargo/bin" "$go_root:/usr/local/go"; do
    mount --bind "${pair%%:*}" "$root${pair#*:}"
    mount -o remount,bind,ro "$root${pair#*:}"
  done
  exec chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin /bin/bash -c "$inside"
' clean-room "$root" "$rustup_home" "$cargo_bin" "$go_root" "$inside" || status=$?
log "clean room: $((SECONDS - started)) s in all, exit $status"
exit "$status"
