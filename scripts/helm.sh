#!/usr/bin/env bash
# Builds the pinned Helm from the Go module proxy into the cache, once, and prints its path.
# The ldflags are the ones Helm's own Makefile sets: without them Helm reports its version as
# "v3.22" and assumes Kubernetes 1.20 when rendering, which the chart's kubeVersion refuses.
set -euo pipefail
HELM_VERSION=v3.22.0
K8S_MINOR=37   # Helm v3.22.0 is built against k8s.io/client-go v0.37
cache="${DRAGONFLY_INJECTOR_CACHE:-$HOME/.cache/dragonfly-injector}"
bin="$cache/bin/helm-$HELM_VERSION"
if [ ! -x "$bin" ]; then
  command -v go >/dev/null 2>&1 || { [ -x /usr/local/go/bin/go ] && export PATH="$PATH:/usr/local/go/bin"; }
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  echo "helm.sh: building helm $HELM_VERSION into $bin (about a minute, once)" >&2
  ldflags="-w -s -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  for package in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags="$ldflags -X $package.k8sVersionMajor=1 -X $package.k8sVersionMinor=$K8S_MINOR"
  done
  GOBIN="$tmp" GOFLAGS=-mod=mod GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" \
    go install -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
  mkdir -p "$cache/bin"
  mv "$tmp/helm" "$bin"
fi
echo "$bin"
