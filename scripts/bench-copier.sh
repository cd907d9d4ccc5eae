#!/usr/bin/env bash
# Times dfget-copier installing the real dfget (linux/amd64, from target/dist) into an empty
# directory on disk, as the init container does: read, SHA-256, write, fsync, rename. hyperfine
# runs it repeatedly with a warm page cache, then with the page cache dropped before every run
# (cold: the image's dfget is read from disk), then with the target already holding dfget
# (verify only). Needs root for the cold runs. Results go to BENCHMARKS.md by hand.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$repo_root"
dist="${DRAGONFLY_DIST:-target/dist}/linux/amd64"   # the release tier's: DRAGONFLY_DIST=target/dist-release
if [ ! -x "$dist/dfget-copier" ] || [ ! -x "$dist/tools/dfget" ]; then
  die "run scripts/cross-build.sh (or scripts/release.sh for the release build) first"
fi
apt_install hyperfine
work=$(mktemp -d -p "${BENCH_DIR:-/var/tmp}")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/image" "$work/shared"
cp "$dist/tools/dfget" "$dist/tools/SHA256SUMS" "$work/image/"
copier="$PWD/$dist/dfget-copier --from $work/image --to $work/shared"
echo "dfget: $(stat -c %s "$work/image/dfget") bytes; copier: $(stat -c %s "$dist/dfget-copier") bytes"
hyperfine --shell=none --warmup 3 --runs "${RUNS:-30}" --export-json "$work/warm.json" \
  --prepare "rm -f $work/shared/dfget" --command-name "copy, warm page cache" "$copier"
hyperfine --shell=none --runs "${COLD_RUNS:-15}" --export-json "$work/cold.json" \
  --prepare "sh -c 'rm -f $work/shared/dfget; sync; echo 3 > /proc/sys/vm/drop_caches'" \
  --command-name "copy, cold page cache" "$copier"
"$PWD/$dist/dfget-copier" --from "$work/image" --to "$work/shared" >/dev/null
hyperfine --shell=none --warmup 3 --runs "${RUNS:-30}" --export-json "$work/unchanged.json" \
  --command-name "already present, verify only" "$copier"
for run in warm cold unchanged; do
  python3 - "$work/$run.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
ms = lambda seconds: "%.1f ms" % (seconds * 1000)
print("%s: median %s (min %s, max %s, %d runs)" % (r["command"], ms(r["median"]), ms(r["min"]), ms(r["max"]), len(r["times"])))
PY
done
