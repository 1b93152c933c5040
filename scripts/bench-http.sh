#!/usr/bin/env bash
# The HTTP ceiling, side by side in one run: Flo's GET /api/v1/status against nginx (2 workers)
# serving a 100-byte file, each driven by wrk -t2 -c64 for DURATION, REPS times, alternating so
# both see the same machine noise. Prints each run and the median ratio Flo / nginx.
# Needs wrk and nginx (apt-get install wrk nginx-light); builds Flo in release mode.
#
#   scripts/bench-http.sh            # REPS=3 DURATION=10s
#   REPS=5 DURATION=20s scripts/bench-http.sh
set -euo pipefail
cd "$(dirname "$0")/.."
REPS="${REPS:-3}"
DURATION="${DURATION:-10s}"
SHARDS="${SHARDS:-2}"
FLO_PORT="${FLO_PORT:-19002}"
NGINX_PORT="${NGINX_PORT:-18080}"
for tool in wrk nginx; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install wrk nginx-light" >&2; exit 1; }
done
cargo build --release --quiet
WORK="$(mktemp -d -t flo-bench-http.XXXXXX)"
chmod 755 "$WORK"
trap 'kill "${FLO_PID:-}" "${NGINX_PID:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

source scripts/bench/lib.sh
mkdir -p "$WORK/flo-data"
nginx_conf "$WORK" "$NGINX_PORT"


target/release/flo server start --data-dir "$WORK/flo-data" --dashboard-port "$FLO_PORT" \
  --metrics-port $((FLO_PORT + 1)) --shards "$SHARDS" --log-level warn &
FLO_PID=$!
nginx -p "$WORK" -c "$WORK/nginx.conf" -g 'daemon off;' &
NGINX_PID=$!
wait_port "$FLO_PORT"
wait_port "$NGINX_PORT"

rps() { wrk -t2 -c64 -d"$DURATION" --latency "$1" | tee "$WORK/last.txt" | awk '/Requests\/sec/ {print $2}'; }
p99() { awk '$1 == "99%" {print $2}' "$WORK/last.txt"; }
flo_runs=(); nginx_runs=()
for run in $(seq "$REPS"); do
  f=$(rps "http://127.0.0.1:$FLO_PORT/api/v1/status"); fp=$(p99)
  n=$(rps "http://127.0.0.1:$NGINX_PORT/100b.txt"); np=$(p99)
  flo_runs+=("$f"); nginx_runs+=("$n")
  printf 'run %s: flo %.0f req/s (p99 %s)   nginx-2w %.0f req/s (p99 %s)   ratio %.2f\n' \
    "$run" "$f" "$fp" "$n" "$np" "$(awk -v a="$f" -v b="$n" 'BEGIN {print a / b}')"
done
fm=$(median "${flo_runs[@]}"); nm=$(median "${nginx_runs[@]}")
printf 'median: flo %.0f req/s, nginx (2 workers) %.0f req/s, flo/nginx = %.2f\n' "$fm" "$nm" "$(awk -v a="$fm" -v b="$nm" 'BEGIN {print a / b}')"
