#!/usr/bin/env bash
# Instructions per review (valgrind callgrind, deterministic whatever the machine's load) for
# every body of webhook/benches/corpus, ours beside two floors: the `instructions` bench target
# runs each body COUNT times and once with 0, and the difference over COUNT is what one review
# costs, without process start and corpus loading. Results go to BENCHMARKS.md by hand.
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
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$binary" "$@" 2>&1 |
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
# Ours, and beside it the two floors (webhook/benches/instructions.rs): the same response after
# a whole-tree parse (`value`) or after a skim that reads only the uid (`skim`).
printf '%-18s %12s %12s %12s %10s %10s\n' corpus ours value-floor skim-floor "ours/value" "ours/skim"
for body in webhook/benches/corpus/*.json; do
  name=$(basename "$body" .json)
  row=()
  for mode in ours value skim; do
    base=$(instructions "$name" 0 "$mode")
    total=$(instructions "$name" "$count" "$mode")
    row+=($(((total - base) / count)))
  done
  printf '%-18s %12d %12d %12d %10s %10s\n' "$name" "${row[@]}" \
    "$(awk -v a="${row[0]}" -v b="${row[1]}" 'BEGIN {printf "%.2f", a / b}')" \
    "$(awk -v a="${row[0]}" -v b="${row[2]}" 'BEGIN {printf "%.2f", a / b}')"
done
