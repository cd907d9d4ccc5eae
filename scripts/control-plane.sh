#!/usr/bin/env bash
# Builds a real Kubernetes control plane (kube-apiserver, kube-controller-manager, and a matching
# kubectl for the tests to drive it) and etcd from
# the Go module proxy at pinned versions, into the cache outside the repository, once. Prints the
# directory holding the binaries. The end-to-end tests run them on loopback.
#
# k8s.io/kubernetes points its k8s.io/* staging modules at local paths; a consuming module must
# replace each with its published v0.<minor>.<patch>. The list is generated from the real go.mod.
set -euo pipefail
K8S_VERSION=v1.36.3
ETCD_VERSION=v3.6.7
cache="${DRAGONFLY_INJECTOR_CACHE:-$HOME/.cache/dragonfly-injector}"
bin="$cache/control-plane-$K8S_VERSION-etcd-$ETCD_VERSION"
command -v go >/dev/null 2>&1 || export PATH="$PATH:/usr/local/go/bin"
export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" GOFLAGS=-mod=mod CGO_ENABLED=0

if [ ! -x "$bin/kube-apiserver" ] || [ ! -x "$bin/kube-controller-manager" ] || [ ! -x "$bin/kubectl" ] || [ ! -x "$bin/etcd" ]; then
  work="$cache/src/control-plane-$K8S_VERSION"
  mkdir -p "$work/k8s" "$work/etcd" "$bin.tmp"
  echo "control-plane.sh: building Kubernetes $K8S_VERSION and etcd $ETCD_VERSION into $bin (several minutes, once)" >&2

  (
    cd "$work/k8s"
    rm -f go.mod go.sum
    go mod init dragonfly-injector.local/control-plane >/dev/null 2>&1
    gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    staging_version="v0${K8S_VERSION#v1}"
    grep -E '^\s*k8s.io/[a-z0-9-]+ => ./staging/src/' "$gomod" | awk '{print $1}' | sort -u | while read -r module; do
      go mod edit -replace="$module=$module@$staging_version"
    done
    go mod edit -require="k8s.io/kubernetes@$K8S_VERSION"
    for command in kube-apiserver kube-controller-manager kubectl; do
      go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION" \
        -o "$bin.tmp/$command" "k8s.io/kubernetes/cmd/$command" >&2
    done
  )
  (
    cd "$work/etcd"
    rm -f go.mod go.sum
    go mod init dragonfly-injector.local/etcd >/dev/null 2>&1
    printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' > main.go
    go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2
    go build -trimpath -ldflags "-s -w" -o "$bin.tmp/etcd" . >&2
  )
  rm -rf "$bin"
  mv "$bin.tmp" "$bin"
fi
echo "$bin"
