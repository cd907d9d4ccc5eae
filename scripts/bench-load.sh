#!/usr/bin/env bash
# Open-loop HTTPS load on the real `serve` binary over keep-alive HTTP/1.1, the way the API server
# calls webhooks: vegeta at constant rates over 16 connections, cycling through the corpus in
# webhook/benches/corpus/ (small, typical and large pods, injected and not; the same bodies as the
# criterion bench). For each
# rate: latency p50/p99/p99.9, errors, achieved rate, the server's CPU and its peak RSS.
# Loopback only. A benchmark, not a test: nothing is asserted. Prints a Markdown table.
#   RATES="500 1000 2000" DURATION=10s scripts/bench-load.sh
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$repo_root"
RATES="${RATES:-500 1000 2000 4000 8000}"
DURATION="${DURATION:-10s}"
CONNECTIONS=16
vegeta=$(scripts/vegeta.sh)
cargo build --quiet --release -p dragonfly-injector
work=$(mktemp -d)
server=""
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
  -addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout "$work/tls.key" -out "$work/tls.crt" 2>/dev/null
printf 'tools:\n  image: "docker.io/dragonflyoss/dragonfly-injector-tools:v0.1.0@sha256:%s"\n' \
  "$(printf '0123456789abcdef%.0s' 1 2 3 4)" > "$work/config.yaml"
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
admin=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
python3 scripts/bench-corpus.py "https://127.0.0.1:$port/mutate" webhook/benches/corpus > "$work/targets.json"

target/release/dragonfly-injector --log-format json --log-level warn serve --config "$work/config.yaml" \
  --tls-cert-file "$work/tls.crt" --tls-key-file "$work/tls.key" \
  --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" --shutdown-delay 0s 2>"$work/server.log" &
server=$!
for _ in $(seq 1 200); do
  curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && break
  sleep 0.05
done
status() { awk -v key="$1:" '$1 == key {print $2}' "/proc/$server/status"; }
ticks=$(getconf CLK_TCK)
echo "machine: $(nproc) cores, $(uname -m); rustc $(rustc --version | cut -d' ' -f2); vegeta $(basename "$vegeta" | cut -d- -f2); $(date -u +%Y-%m-%d)"
echo "binary: $(stat -c %s target/release/dragonfly-injector) bytes; idle RSS after start: $(status VmRSS) KiB"
echo
echo "| rate (req/s) | achieved | p50 | p99 | p99.9 | errors | server CPU | peak RSS |"
echo "|---|---|---|---|---|---|---|---|"
for rate in $RATES; do
  cpu_before=$(awk '{print $14 + $15}' "/proc/$server/stat")
  "$vegeta" attack -targets="$work/targets.json" -format=json -rate="$rate" -duration="$DURATION" \
    -connections="$CONNECTIONS" -max-connections="$CONNECTIONS" -keepalive=true -http2=false \
    -root-certs="$work/tls.crt" -timeout=5s > "$work/results.bin"
  cpu_after=$(awk '{print $14 + $15}' "/proc/$server/stat")
  "$vegeta" encode --to csv < "$work/results.bin" > "$work/results.csv"
  python3 - "$work/results.csv" "$rate" "$DURATION" "$(( cpu_after - cpu_before ))" "$ticks" "$(status VmHWM)" <<'PY'
import csv, sys
path, rate, duration, cpu_ticks, ticks, peak = sys.argv[1:]
rows = list(csv.reader(open(path)))
latencies = sorted(int(r[2]) for r in rows)
errors = sum(1 for r in rows if r[1] != "200")
start = min(int(r[0]) for r in rows); end = max(int(r[0]) for r in rows)
seconds = float(duration.rstrip("s"))
def pct(p):
    return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] / 1e6
achieved = len(rows) / max((end - start) / 1e9, 1e-9)
cpu = int(cpu_ticks) / int(ticks) / seconds * 100
print(f"| {rate} | {achieved:.0f} | {pct(50):.2f} ms | {pct(99):.2f} ms | {pct(99.9):.2f} ms | {errors} | {cpu:.0f}% | {int(peak) / 1024:.1f} MiB |")
PY
done
