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

mkdir -p "$WORK/www" "$WORK/flo-data"
head -c 100 /dev/zero | tr '\0' 'x' > "$WORK/www/100b.txt"
cat > "$WORK/nginx.conf" <<CONF
worker_processes 2;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off; sendfile on; tcp_nopush on; tcp_nodelay on;
    keepalive_timeout 65; keepalive_requests 1000000;
    client_body_temp_path $WORK/tmp_body; proxy_temp_path $WORK/tmp_proxy;
    fastcgi_temp_path $WORK/tmp_fastcgi; uwsgi_temp_path $WORK/tmp_uwsgi; scgi_temp_path $WORK/tmp_scgi;
    default_type application/octet-stream;
    server { listen 127.0.0.1:$NGINX_PORT; root $WORK/www; }
}
CONF

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "port $1 never opened" >&2; exit 1
}

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
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
fm=$(median "${flo_runs[@]}"); nm=$(median "${nginx_runs[@]}")
printf 'median: flo %.0f req/s, nginx (2 workers) %.0f req/s, flo/nginx = %.2f\n' "$fm" "$nm" "$(awk -v a="$fm" -v b="$nm" 'BEGIN {print a / b}')"
