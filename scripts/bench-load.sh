#!/usr/bin/env bash
# Open-loop HTTPS load on the real `serve` binary over keep-alive HTTP/1.1, the way the API server
# calls webhooks: vegeta at constant rates over 16 connections, cycling through the corpus in
# webhook/benches/corpus/ (small, typical and large pods, injected and not; the same bodies as the
# criterion bench). For each rate: latency p50/p99/p99.9, errors, achieved rate, the server's CPU
# (share of one core, and CPU-seconds per 1,000 admissions) and its peak RSS so far.
# Loopback only. A benchmark, not a test: nothing is asserted. Prints a Markdown table.
#   RATES="500 1000 2000" DURATION=10s scripts/bench-load.sh
#
# Another webhook server can run beside ours, interleaved (at each rate ours, then it), on the
# same certificate and corpus. BESIDE is its command line, where {cert_dir} (holding tls.crt and
# tls.key) and {port} are filled in; it must serve POST /mutate over TLS on 127.0.0.1:{port}.
# BESIDE_ANNOTATION renames the corpus's opt-in annotation to the one it reads.
#   BESIDE='/tmp/other-serve {cert_dir} {port}' BESIDE_NAME=other BESIDE_ANNOTATION=dragonfly.io/inject \
#     scripts/bench-load.sh
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$repo_root"
RATES="${RATES:-500 1000 2000 4000 8000}"
DURATION="${DURATION:-10s}"
CONNECTIONS=16
BESIDE="${BESIDE:-}"
BESIDE_NAME="${BESIDE_NAME:-beside}"
vegeta=$(scripts/vegeta.sh)
cargo build --quiet --release -p dragonfly-injector
binary="${CARGO_TARGET_DIR:-target}/release/dragonfly-injector"
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
# Polls until the command succeeds, for at most 10 s.
wait_ready() { for _ in $(seq 1 200); do "$@" >/dev/null 2>&1 && return 0; sleep 0.05; done; die "not ready: $*"; }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
  -addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout "$work/tls.key" -out "$work/tls.crt" 2>/dev/null
printf 'tools:\n  image: "docker.io/dragonflyoss/dragonfly-injector-tools:v0.1.0@sha256:%s"\n' \
  "$(printf '0123456789abcdef%.0s' 1 2 3 4)" > "$work/config.yaml"

port=$(free_port)
admin=$(free_port)
python3 scripts/bench-corpus.py "https://127.0.0.1:$port/mutate" webhook/benches/corpus > "$work/ours.targets"
"$binary" --log-format json --log-level warn serve --config "$work/config.yaml" \
  --tls-cert-file "$work/tls.crt" --tls-key-file "$work/tls.key" \
  --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" --shutdown-delay 0s 2>"$work/ours.log" &
ours=$!
pids+=("$ours")
wait_ready curl -sf "http://127.0.0.1:$admin/readyz"

beside=""
if [ -n "$BESIDE" ]; then
  beside_port=$(free_port)
  python3 scripts/bench-corpus.py "https://127.0.0.1:$beside_port/mutate" webhook/benches/corpus \
    ${BESIDE_ANNOTATION:+"$BESIDE_ANNOTATION"} > "$work/beside.targets"
  command=${BESIDE//\{cert_dir\}/$work}
  command=${command//\{port\}/$beside_port}
  # Word splitting is wanted: BESIDE is a command line.
  # shellcheck disable=SC2086
  $command >"$work/beside.log" 2>&1 &
  beside=$!
  pids+=("$beside")
  # Any HTTP answer over TLS means it listens.
  wait_ready curl -s --cacert "$work/tls.crt" -o /dev/null "https://127.0.0.1:$beside_port/"
fi

status() { awk -v key="$2:" '$1 == key {print $2}' "/proc/$1/status"; }
ticks=$(getconf CLK_TCK)
echo "machine: $(nproc) cores, $(uname -m); rustc $(rustc --version | cut -d' ' -f2); vegeta $(basename "$vegeta" | cut -d- -f2); $(date -u +%Y-%m-%d)"
echo "binary: $(stat -c %s "$binary") bytes; idle RSS after start: $(status "$ours" VmRSS) KiB"
[ -z "$beside" ] || echo "$BESIDE_NAME: idle RSS after start: $(status "$beside" VmRSS) KiB"
echo
echo "| server | rate (req/s) | achieved | p50 | p99 | p99.9 | errors | server CPU | CPU-s per 1,000 | peak RSS |"
echo "|---|---|---|---|---|---|---|---|---|---|"

# One rate against one server: NAME PID TARGETS RATE.
attack() {
  local name=$1 pid=$2 targets=$3 rate=$4 cpu_before cpu_after
  cpu_before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  "$vegeta" attack -targets="$targets" -format=json -rate="$rate" -duration="$DURATION" \
    -connections="$CONNECTIONS" -max-connections="$CONNECTIONS" -keepalive=true -http2=false \
    -root-certs="$work/tls.crt" -timeout=5s > "$work/results.bin"
  cpu_after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  "$vegeta" encode --to csv < "$work/results.bin" > "$work/results.csv"
  python3 - "$work/results.csv" "$name" "$rate" "$DURATION" "$(( cpu_after - cpu_before ))" "$ticks" "$(status "$pid" VmHWM)" <<'PY'
import csv, sys
path, name, rate, duration, cpu_ticks, ticks, peak = sys.argv[1:]
rows = list(csv.reader(open(path)))
latencies = sorted(int(r[2]) for r in rows)
errors = sum(1 for r in rows if r[1] != "200")
start = min(int(r[0]) for r in rows); end = max(int(r[0]) for r in rows)
seconds = float(duration.rstrip("s"))
def pct(p):
    return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] / 1e6
achieved = len(rows) / max((end - start) / 1e9, 1e-9)
cpu_seconds = int(cpu_ticks) / int(ticks)
per_thousand = cpu_seconds / (len(rows) / 1000)
print(f"| {name} | {rate} | {achieved:.0f} | {pct(50):.2f} ms | {pct(99):.2f} ms | {pct(99.9):.2f} ms | {errors} "
      f"| {cpu_seconds / seconds * 100:.0f}% | {per_thousand:.2f} | {int(peak) / 1024:.1f} MiB |")
PY
}

for rate in $RATES; do
  attack ours "$ours" "$work/ours.targets" "$rate"
  [ -z "$beside" ] || attack "$BESIDE_NAME" "$beside" "$work/beside.targets" "$rate"
done
