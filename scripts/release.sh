#!/usr/bin/env bash
# The release tier: builds what a release ships and checks it, outside CI (hours from cold).
#   1. every platform's webhook ($ALL_PLATFORMS) and the Dragonfly tools ($TOOLS_PLATFORMS) in
#      full release profiles, and the copier for every platform (scripts/setup.sh with
#      DRAGONFLY_DIST_PROFILE=release runs scripts/cross-build.sh --profile release);
#   2. the suites that test those binaries: the copiers and the Dragonfly tools under qemu
#      (dfget-copier's `platforms`), and both images baked with `docker buildx bake`, pushed to a
#      loopback registry, read back, run, and rebuilt from a fresh daemon for identical digests
#      (the webhook's `images`);
#   3. the clean room (scripts/clean-room.sh): the test tier's set-up from nothing in a fresh
#      Debian root, which proves setup.sh's package lists complete (about an hour; `--no-clean-room`
#      leaves it out, for a rerun of the suites alone).
# It starts as setup.sh does, with the preflight (lib.sh's preflight, here for the test and
# release tiers), so a missing package stops it in seconds rather than in a build.
# Run it before resolving an image-affecting change and record its results in BENCHMARKS.md
# (sizes, times). Its dist is target/dist-release ($DRAGONFLY_DIST), beside the test tier's.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$repo_root"

clean_room=true
case "${1:-}" in
  "") ;;
  --no-clean-room) clean_room=false ;;
  *) die "usage: $0 [--no-clean-room]" ;;
esac
started=$SECONDS
export DRAGONFLY_DIST_PROFILE=release DRAGONFLY_DIST="$repo_root/target/dist-release"
scripts/setup.sh
log "release dist ready after $((SECONDS - started)) s:"
for platform in $ALL_PLATFORMS; do
  for file in "$DRAGONFLY_DIST/$platform"/dfget-copier "$DRAGONFLY_DIST/$platform"/dragonfly-injector "$DRAGONFLY_DIST/$platform"/tools/*; do
    [ -f "$file" ] && printf '  %-16s %-20s %12s bytes\n' "$platform" "${file#"$DRAGONFLY_DIST/$platform"/}" "$(stat -c %s "$file")" >&2
  done
done
status=0
scripts/test.sh suite platforms images || status=$?
if [ "$clean_room" = true ]; then
  scripts/clean-room.sh || status=$?
fi
log "release tier: $((SECONDS - started)) s"
exit "$status"
