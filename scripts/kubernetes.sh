#!/usr/bin/env bash
# Builds Kubernetes ($K8S_VERSION: kube-apiserver, kube-controller-manager, kube-scheduler,
# kubelet, and a matching kubectl for the tests to drive them) and etcd ($ETCD_VERSION) from the
# Go module proxy into the cache outside the repository, once. Prints the directory holding the
# binaries. The end-to-end tests run them on loopback and on a bridge of their own.
#
# k8s.io/kubernetes points its k8s.io/* staging modules at local paths; a consuming module must
# replace each with its published v0.<minor>.<patch>. The list is generated from the real go.mod.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

KUBERNETES_COMMANDS="kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl"
bin="$(cache_dir)/kubernetes-$K8S_VERSION-etcd-$ETCD_VERSION"

complete=true
for command in $KUBERNETES_COMMANDS etcd; do [ -x "$bin/$command" ] || complete=false; done
if ! $complete; then
  work="$(cache_dir)/src/kubernetes-$K8S_VERSION"
  mkdir -p "$work/k8s" "$work/etcd" "$bin.tmp"
  log "building Kubernetes $K8S_VERSION and etcd $ETCD_VERSION into $bin (several minutes, once)"
  (
    cd "$work/k8s"
    rm -f go.mod go.sum
    go mod init dragonfly-injector.local/kubernetes >/dev/null 2>&1
    gomod=$(go_mod_file "k8s.io/kubernetes@$K8S_VERSION")
    staging_version="v0${K8S_VERSION#v1}"
    grep -E '^\s*k8s.io/[a-z0-9-]+ => ./staging/src/' "$gomod" | awk '{print $1}' | sort -u | while read -r module; do
      go mod edit -replace="$module=$module@$staging_version"
    done
    go mod edit -require="k8s.io/kubernetes@$K8S_VERSION"
    for command in $KUBERNETES_COMMANDS; do
      go_build "$bin.tmp/$command" "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION" \
        "k8s.io/kubernetes/cmd/$command"
    done
  )
  (
    cd "$work/etcd"
    rm -f go.mod go.sum
    go mod init dragonfly-injector.local/etcd >/dev/null 2>&1
    printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' >main.go
    GOFLAGS=-mod=mod go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2
    go_build "$bin.tmp/etcd" "-s -w" .
  )
  publish_dir "$bin"
fi
echo "$bin"
