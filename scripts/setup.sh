#!/usr/bin/env bash
# Installs and builds what the tests and the demo need on a fresh machine of this project's kind
# (Debian 12, root, crates.io, the Go module proxy and Debian's packages reachable). Idempotent:
# seconds when everything is cached. Everything built goes to the cache outside the repository
# ($DRAGONFLY_INJECTOR_CACHE, default ~/.cache/dragonfly-injector).
#
# Debian's packages come first (apt takes one lock), then two chains of builds run side by side,
# each using both cores while the other waits on the network:
#   go:   Kubernetes and etcd, Helm, BuildKit and buildx, the Dragonfly scheduler, the YAML oracle
#   rust: the Dragonfly client (test profile), the dist (scripts/cross-build.sh; the profile is
#         $DRAGONFLY_DIST_PROFILE, default test), the test build
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$repo_root"

# Rust: the base image has rustup's stable toolchain with clippy and rustfmt; Debian's is the
# fallback (without the gates' tools).
command -v cargo >/dev/null 2>&1 || apt_install cargo rustc
# Go: Debian's is older than go.mod files ask; GOTOOLCHAIN=auto then fetches the right toolchain
# through the Go module proxy.
command -v go >/dev/null 2>&1 || apt_install golang-go ca-certificates

# Debian's packages, in one go:
#   docker-registry   the CNCF Distribution registry the pinning, image and e2e tests run
#   runc              buildkitd's OCI worker
#   and the linter the shell gate runs
#   protobuf-compiler, libprotobuf-dev (its well-known .proto files, which protobuf-compiler only
#                     Recommends), clang, libclang-dev, cmake, g++   dragonfly-client's build
#   containerd, containernetworking-plugins, busybox-static, iproute2, libc6-dev
#                     the real node of the end-to-end tests (its pause image is built static)
apt_install docker-registry runc shellcheck protobuf-compiler libprotobuf-dev clang libclang-dev cmake g++ ca-certificates \
  containerd containernetworking-plugins busybox-static iproute2 libc6-dev
# The copier's cross toolchains and qemu-user (their own script: the release tier adds to it).
scripts/cross-toolchain.sh >/dev/null

go_chain() {
  scripts/kubernetes.sh
  scripts/helm.sh
  scripts/buildkit.sh
  scripts/dragonfly.sh scheduler
  (cd tests/yaml-oracle && GOFLAGS=-mod=mod go build -o /dev/null .)
  (cd tests/promlint && GOFLAGS=-mod=mod go build -o /dev/null .)
}

rust_chain() {
  cargo fetch --locked
  scripts/dragonfly.sh client --profile test linux/amd64
  # The test tier's dist unless the release tier (scripts/release.sh) asks for its own.
  scripts/cross-build.sh --profile "${DRAGONFLY_DIST_PROFILE:-test}"
  # Every test binary, once, so the suite starts compiled (scripts/test.sh then only runs them).
  cargo test --workspace --all-targets --locked --no-run
}

jobs_start
job go go_chain
job rust rust_chain
jobs_wait
log "ready: $(cargo --version), $(go version), $("$(scripts/helm.sh)" version --short)"
