#!/usr/bin/env bash
# Installs and builds what the tests and the demo need on a fresh machine of this project's kind
# (Debian 12, root, crates.io, the Go module proxy and Debian's packages reachable). Idempotent:
# seconds when everything is cached. Everything built goes to the cache outside the repository
# ($DRAGONFLY_INJECTOR_CACHE, default ~/.cache/dragonfly-injector).
#
# Three chains of builds run side by side, so that on a new machine (about 40 minutes of CPU-bound
# building on two cores) neither core idles:
#   go:        Kubernetes and etcd, Helm, BuildKit and buildx, the Dragonfly scheduler, the YAML
#              oracle. It needs only Go (and a trust store), so it starts at once, beside Debian's
#              packages (minutes of downloading and unpacking that leave the cores idle).
#   client:    the Dragonfly client (test profile), the longest chain (RocksDB's C++ alone is 14
#              CPU-minutes), at full priority; the other two run at nice 5 and take what it
#              leaves, above all during its single-threaded end (the last crate, the links).
#   workspace: this workspace's binaries for the dist (the copier for every platform, the
#              webhook) and every test binary.
# Then the dist itself (scripts/cross-build.sh; the profile is $DRAGONFLY_DIST_PROFILE, default
# test), which by then only copies.
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

go_chain() {
  renice -n 5 -p "$BASHPID" >/dev/null
  step kubernetes scripts/kubernetes.sh
  step helm scripts/helm.sh
  # buildkit.sh installs runc if it is missing: after apt, which holds dpkg's lock until then.
  wait_for_file "$JOBS_DIR/apt.done" 3600
  step buildkit scripts/buildkit.sh
  step scheduler scripts/dragonfly.sh scheduler
  step yaml-oracle sh -c 'cd tests/yaml-oracle && GOFLAGS=-mod=mod go build -o /dev/null .'
  step promlint sh -c 'cd tests/promlint && GOFLAGS=-mod=mod go build -o /dev/null .'
}

client_chain() {
  step dragonfly-client scripts/dragonfly.sh client --profile test linux/amd64
}

workspace_chain() {
  renice -n 5 -p "$BASHPID" >/dev/null
  step cargo-fetch cargo fetch --locked
  # The test tier's dist unless the release tier (scripts/release.sh) asks for its own.
  step dist-ours scripts/cross-build.sh --profile "${DRAGONFLY_DIST_PROFILE:-test}" --only ours
  # Every test binary, once, so the suite starts compiled (scripts/test.sh then only runs them).
  step test-build cargo test --workspace --all-targets --locked --no-run
}

# (A failure from here on stops the running chains: jobs_start's traps.)
jobs_start
# The Go chain needs only Go and a trust store for its downloads: where the machine has one (this
# kind's base image does), it starts now, beside apt; a bare root (the clean room) gets the store
# from apt's ca-certificates, so there it starts after.
go_started=false
if [ -s /etc/ssl/certs/ca-certificates.crt ]; then job go go_chain; go_started=true; fi
install_requirements "${tiers[@]}"
preflight "${tiers[@]}" || die "stopping before the builds: install what is missing above"
# The copier's musl link directories (their own script: the release tier adds to it).
scripts/cross-toolchain.sh "${tiers[@]:1}" >/dev/null
touch "$JOBS_DIR/apt.done"
$go_started || job go go_chain
job client client_chain
job workspace workspace_chain
jobs_wait
step dist scripts/cross-build.sh --profile "${DRAGONFLY_DIST_PROFILE:-test}"
log "ready: $(cargo --version), $(go version), $("$(scripts/helm.sh)" version --short)"
