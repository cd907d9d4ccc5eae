#!/usr/bin/env bash
# Installs what building and testing need on a fresh machine of this project's kind (Debian 12,
# root, crates.io, the Go module proxy and Debian's packages reachable). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'setup: %s\n' "$*" >&2; }

apt_install() {
  if [ "$(id -u)" != 0 ]; then
    log "need root to install $*"; exit 1
  fi
  if [ ! -f /var/lib/apt/lists/.dragonfly-injector-updated ]; then
    apt-get update -qq && touch /var/lib/apt/lists/.dragonfly-injector-updated
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Rust: the base image has rustup's stable toolchain; Debian's is the fallback.
if ! command -v cargo >/dev/null 2>&1; then
  [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
  log "installing Rust from Debian"
  apt_install cargo rustc
fi

# Go builds the YAML oracle (tests/yaml-oracle) that checks `inject` against kubectl's YAML
# library. Debian's Go is older than go.mod asks; GOTOOLCHAIN=auto then fetches the right
# toolchain through the Go module proxy.
if ! command -v go >/dev/null 2>&1; then
  [ -x /usr/local/go/bin/go ] && export PATH="/usr/local/go/bin:$PATH"
fi
if ! command -v go >/dev/null 2>&1; then
  log "installing Go from Debian"
  apt_install golang-go ca-certificates
fi

# The CNCF Distribution registry, run on loopback by the pinning tests.
if ! command -v docker-registry >/dev/null 2>&1; then
  log "installing docker-registry from Debian"
  apt_install docker-registry
fi

log "fetching crates"
cargo fetch --locked
log "fetching Go modules for the YAML oracle"
(cd tests/yaml-oracle && GOTOOLCHAIN=auto go mod download)
log "building the pinned helm (cached outside the repository)"
scripts/helm.sh >/dev/null
log "building etcd, kube-apiserver, kube-controller-manager and kubectl (cached; minutes the first time)"
scripts/control-plane.sh >/dev/null
log "installing the cross toolchains from Debian (rustc 1.85 for five architectures, rustc-web 1.96, qemu-user)"
scripts/cross-toolchain.sh dfget >/dev/null
log "building buildkitd and buildx (cached; minutes the first time)"
scripts/buildkit.sh >/dev/null
log "ready: $(cargo --version), $(go version), $("$(scripts/helm.sh)" version --short)"
