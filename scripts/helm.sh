#!/usr/bin/env bash
# Builds the pinned Helm ($HELM_VERSION) from the Go module proxy into the cache, once, and prints
# its path. The ldflags are the ones Helm's own Makefile sets: without them Helm reports its
# version as "v3.22" and assumes Kubernetes 1.20 when rendering, which the chart's kubeVersion
# refuses.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

bin="$(cache_dir)/bin/helm-$HELM_VERSION"
if [ ! -x "$bin" ]; then
  log "building helm $HELM_VERSION into $bin (about a minute, once)"
  work="$(cache_dir)/src/helm-$HELM_VERSION"
  rm -rf "$work" && mkdir -p "$work" "$(cache_dir)/bin"
  ldflags="-w -s -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  for package in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags="$ldflags -X $package.k8sVersionMajor=1 -X $package.k8sVersionMinor=$HELM_K8S_MINOR"
  done
  (
    cd "$work"
    go mod init dragonfly-injector.local/helm >/dev/null 2>&1
    GOFLAGS=-mod=mod go get "helm.sh/helm/v3@$HELM_VERSION" >&2
    go_build "$bin.tmp" "$ldflags" helm.sh/helm/v3/cmd/helm
  )
  mv "$bin.tmp" "$bin"
  rm -rf "$work"
fi
echo "$bin"
