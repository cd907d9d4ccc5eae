#!/usr/bin/env bash
# The main job on an embedded default: sets up the machine, then brings up a real control plane
# (etcd, kube-apiserver, kube-controller-manager), a loopback registry holding a multi-arch tools
# image, and the injector installed by its Helm chart; creates the annotated pod in
# examples/demo-pod.yaml, prints it as the API server stored it, runs it on the real node, shows
# node B (a second dfdaemon) getting the same file from node A by the origin's byte count, and
# cleans everything up.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$repo_root"
scripts/setup.sh
exec cargo test --quiet -p dragonfly-injector --test e2e -- --demo
