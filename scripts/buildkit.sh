#!/usr/bin/env bash
# Builds the pinned BuildKit daemon (buildkitd, buildctl: $BUILDKIT_VERSION) and buildx
# ($BUILDX_VERSION) from the Go module proxy into the cache, once, and prints the directory
# holding them. buildx is also installed there as a Docker CLI plugin (cli-plugins/docker-buildx),
# so `docker buildx bake` works with DOCKER_CONFIG pointing at that directory, with no Docker
# engine: the builder is a remote buildkitd. Debian's runc is buildkitd's OCI worker.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

apt_install runc
dir="$(cache_dir)/buildkit-$BUILDKIT_VERSION-buildx-$BUILDX_VERSION"

# BuildKit's go.mod has `exclude` lines, which a consuming module does not inherit. Build in a
# module whose go.mod is the tool's own (every requirement and exclude as the tool's release pins
# them), renamed, with the tool itself required.
build_in_own_module() {
  local module=$1 version=$2 ldflags=$3; shift 3
  local work package
  work="$(cache_dir)/src/$(basename "$module")-$version"
  rm -rf "$work" && mkdir -p "$work"
  sed -e "s|^module .*|module dragonfly-injector.local/$(basename "$module")-build|" \
    "$(go_mod_file "$module@$version")" >"$work/go.mod"
  cp "$(go_mod_dir "$module@$version")/go.sum" "$work/go.sum"
  (
    cd "$work"
    go mod edit -require="$module@$version"
    for package in "$@"; do go_build "$dir.tmp/$(basename "$package")" "$ldflags" "$package"; done
  )
  rm -rf "$work"
}

if [ ! -x "$dir/buildx" ] || [ ! -x "$dir/buildkitd" ] || [ ! -x "$dir/buildctl" ]; then
  log "building buildkitd/buildctl $BUILDKIT_VERSION and buildx $BUILDX_VERSION into $dir (minutes, once)"
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp/cli-plugins"
  build_in_own_module github.com/moby/buildkit "$BUILDKIT_VERSION" \
    "-s -w -X github.com/moby/buildkit/version.Version=$BUILDKIT_VERSION" \
    github.com/moby/buildkit/cmd/buildkitd github.com/moby/buildkit/cmd/buildctl
  build_in_own_module github.com/docker/buildx "$BUILDX_VERSION" \
    "-s -w -X github.com/docker/buildx/version.Version=$BUILDX_VERSION" \
    github.com/docker/buildx/cmd/buildx
  ln -sf ../buildx "$dir.tmp/cli-plugins/docker-buildx"
  publish_dir "$dir"
fi
echo "$dir"
