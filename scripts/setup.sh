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

# The tiers this run builds: the test tier, and the release tier's too when scripts/release.sh
# asks for its dist.
tiers=(test)
[ "${DRAGONFLY_DIST_PROFILE:-test}" = test ] || tiers+=(release)

# `--check`: only the preflight, nothing installed or built (seconds).
if [ "${1:-}" = --check ]; then
  preflight "${tiers[@]}" || die "not ready: install what is missing above"
  log "ready for the ${tiers[*]} tier: every package, file and toolchain the builds need is here"
  exit 0
fi
[ $# -eq 0 ] || die "usage: $0 [--check]"

# The toolchains first (no script installs them: a machine without them stops in a second), then
# Debian's packages in one go (the table is requirements in lib.sh), then the whole preflight: a
# missing piece stops the run here, in seconds, rather than in a build minutes later.
preflight_toolchains || die "stopping: install what is missing above"
install_requirements "${tiers[@]}"
preflight "${tiers[@]}" || die "stopping before the builds: install what is missing above"
# The copier's musl link directories (their own script: the release tier adds to it).
scripts/cross-toolchain.sh "${tiers[@]:1}" >/dev/null

go_chain() {
  step kubernetes scripts/kubernetes.sh
  step helm scripts/helm.sh
  step buildkit scripts/buildkit.sh
  step scheduler scripts/dragonfly.sh scheduler
  step yaml-oracle sh -c 'cd tests/yaml-oracle && GOFLAGS=-mod=mod go build -o /dev/null .'
  step promlint sh -c 'cd tests/promlint && GOFLAGS=-mod=mod go build -o /dev/null .'
}

rust_chain() {
  step cargo-fetch cargo fetch --locked
  step dragonfly-client scripts/dragonfly.sh client --profile test linux/amd64
  # The test tier's dist unless the release tier (scripts/release.sh) asks for its own.
  step dist scripts/cross-build.sh --profile "${DRAGONFLY_DIST_PROFILE:-test}"
  # Every test binary, once, so the suite starts compiled (scripts/test.sh then only runs them).
  step test-build cargo test --workspace --all-targets --locked --no-run
}

jobs_start
job go go_chain
job rust rust_chain
jobs_wait
log "ready: $(cargo --version), $(go version), $("$(scripts/helm.sh)" version --short)"
