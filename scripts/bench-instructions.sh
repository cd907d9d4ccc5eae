#!/usr/bin/env bash
# Instructions per review (valgrind callgrind, deterministic whatever the machine's load) for
# every body of webhook/benches/corpus: the `instructions` bench target runs each body COUNT
# times and once with 0, and the difference over COUNT is what one review costs, without process
# start and corpus loading. Results go to BENCHMARKS.md by hand.
#   scripts/bench-instructions.sh [COUNT]     (default 200)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$repo_root"
apt_install valgrind
count="${1:-200}"
binary=$(cargo bench -p dragonfly-injector --bench instructions --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "instructions" and m.get("executable"):
        print(m["executable"])')
[ -x "$binary" ] || die "the instructions bench did not build"
instructions() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$binary" "$1" "$2" 2>&1 |
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
printf '%-18s %14s\n' corpus instructions/review
for body in webhook/benches/corpus/*.json; do
  name=$(basename "$body" .json)
  base=$(instructions "$name" 0)
  total=$(instructions "$name" "$count")
  printf '%-18s %14d\n' "$name" $(((total - base) / count))
done
