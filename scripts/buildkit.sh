#!/usr/bin/env bash
# Builds the pinned BuildKit daemon (buildkitd, buildctl) and buildx from the Go module proxy
# into the cache, once, and prints the directory holding them. buildx is also installed there as
# a Docker CLI plugin (cli-plugins/docker-buildx), so `docker buildx bake` works with
# DOCKER_CONFIG pointing at that directory, with no Docker engine: the builder is a remote
# buildkitd. Debian's runc (installed here if missing) is buildkitd's OCI worker.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/platforms.sh

BUILDKIT_VERSION=v0.34.2
BUILDX_VERSION=v0.38.2
dir="$(cache_dir)/buildkit-$BUILDKIT_VERSION-buildx-$BUILDX_VERSION"

if ! command -v runc >/dev/null 2>&1; then
  echo "buildkit.sh: installing runc from Debian" >&2
  apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq runc >/dev/null
fi

if [ ! -x "$dir/buildx" ] || [ ! -x "$dir/buildkitd" ] || [ ! -x "$dir/buildctl" ]; then
  command -v go >/dev/null 2>&1 || export PATH="$PATH:/usr/local/go/bin"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  echo "buildkit.sh: building buildkitd/buildctl $BUILDKIT_VERSION and buildx $BUILDX_VERSION into $dir (minutes, once)" >&2
  export GOFLAGS=-mod=mod GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" CGO_ENABLED=0
  # BuildKit's go.mod has `exclude` lines, which `go install module@version` refuses. Build in a
  # module whose go.mod is the tool's own (every requirement and exclude as the tool's release
  # pins them), renamed, with the tool itself required.
  build_in_own_module() {
    local module=$1 version=$2 ldflags=$3; shift 3
    local work="$tmp/modules/$(basename "$module")" gomod gosum package
    mkdir -p "$work"
    gomod=$(go mod download -json "$module@$version" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    sed -e "s|^module .*|module dragonfly-injector.local/$(basename "$module")-build|" "$gomod" >"$work/go.mod"
    gosum=$(go mod download -json "$module@$version" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')/go.sum
    cp "$gosum" "$work/go.sum"
    (cd "$work" && go mod edit -require="$module@$version" && for package in "$@"; do
      go build -trimpath -ldflags "$ldflags" -o "$tmp/bin/$(basename "$package")" "$package" >&2
    done)
  }
  build_in_own_module github.com/moby/buildkit "$BUILDKIT_VERSION" \
    "-s -w -X github.com/moby/buildkit/version.Version=$BUILDKIT_VERSION" \
    github.com/moby/buildkit/cmd/buildkitd github.com/moby/buildkit/cmd/buildctl
  build_in_own_module github.com/docker/buildx "$BUILDX_VERSION" \
    "-s -w -X github.com/docker/buildx/version.Version=$BUILDX_VERSION" \
    github.com/docker/buildx/cmd/buildx
  mkdir -p "$dir/cli-plugins"
  mv "$tmp/bin/buildkitd" "$tmp/bin/buildctl" "$tmp/bin/buildx" "$dir/"
  ln -sf ../buildx "$dir/cli-plugins/docker-buildx"
fi
echo "$dir"
