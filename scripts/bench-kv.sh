#!/usr/bin/env bash
# KV side by side in one run, alternating so every system sees the same machine noise, each
# driven by wrk -t2 -c64 for DURATION, REPS times:
#   nginx (2 workers) serving a 100-byte file          — the HTTP ceiling
#   Flo  PUT of distinct keys, 100-byte values         — durable (answered after fdatasync)
#   Flo  GET of 10k keys written beforehand
#   etcd PUT of distinct keys through its JSON gateway  — if etcd is installed
#   Redis SET with appendfsync always (redis-benchmark -c 64 -d 100) — if redis-server is installed
# Prints each run and the median ratios. Needs wrk and nginx; etcd and Redis are optional
# (apt-get install wrk nginx-light etcd-server redis-server). Builds Flo in release mode.
#
#   scripts/bench-kv.sh               # REPS=3 DURATION=10s SHARDS=2
set -euo pipefail
cd "$(dirname "$0")/.."
REPS="${REPS:-3}"
DURATION="${DURATION:-10s}"
SHARDS="${SHARDS:-2}"
FLO_PORT="${FLO_PORT:-19002}"
NGINX_PORT="${NGINX_PORT:-18080}"
ETCD_PORT="${ETCD_PORT:-12379}"
REDIS_PORT="${REDIS_PORT:-16379}"
for tool in wrk nginx; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install wrk nginx-light" >&2; exit 1; }
done
cargo build --release --quiet
WORK="$(mktemp -d -t flo-bench-kv.XXXXXX)"
chmod 755 "$WORK"
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

source scripts/bench/lib.sh
mkdir -p "$WORK/flo-data"
nginx_conf "$WORK" "$NGINX_PORT"
nginx -p "$WORK" -c "$WORK/nginx.conf" -g 'daemon off;' &
PIDS+=($!)
start_flo "$WORK/flo-data" "$FLO_PORT" --shards "$SHARDS"
PIDS+=($!)
HAVE_ETCD=0
if command -v etcd >/dev/null; then
  etcd --data-dir "$WORK/etcd" --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" --listen-peer-urls http://127.0.0.1:12380 \
    --initial-advertise-peer-urls http://127.0.0.1:12380 --initial-cluster default=http://127.0.0.1:12380 \
    > "$WORK/etcd.log" 2>&1 &
  PIDS+=($!)
  HAVE_ETCD=1
fi
maybe_redis "$WORK/redis" "$REDIS_PORT"
wait_port "$NGINX_PORT"
wait_port "$FLO_PORT"
[ "$HAVE_ETCD" = 1 ] && wait_port "$ETCD_PORT"
[ "$HAVE_REDIS" = 1 ] && wait_port "$REDIS_PORT"

export VALUE_B64
VALUE_B64=$(head -c 100 /dev/zero | tr '\0' 'v' | base64 -w0)
export KEYS=10000
target/release/flo bench --host "127.0.0.1:$FLO_PORT" -w kv-put --namespace bench --keys "$KEYS" \
  -n "$KEYS" -d 120s -c 1 -t 1 > /dev/null

nginx_r=(); put_r=(); get_r=(); etcd_r=(); redis_r=()
for run in $(seq "$REPS"); do
  n=$(wrk_rps "http://127.0.0.1:$NGINX_PORT/100b.txt")
  p=$(RUN=$run wrk_rps "http://127.0.0.1:$FLO_PORT" scripts/bench/flo_kv_put.lua)
  g=$(wrk_rps "http://127.0.0.1:$FLO_PORT" scripts/bench/flo_kv_get.lua)
  e=0; r=0
  if [ "$HAVE_ETCD" = 1 ]; then e=$(RUN=$run wrk_rps "http://127.0.0.1:$ETCD_PORT" scripts/bench/etcd_put.lua); fi
  if [ "$HAVE_REDIS" = 1 ]; then
    r=$(redis-benchmark -p "$REDIS_PORT" -c 64 -n 200000 -d 100 -t set --csv | awk -F'"' 'NR == 2 {print $4}')
  fi
  nginx_r+=("$n"); put_r+=("$p"); get_r+=("$g"); etcd_r+=("$e"); redis_r+=("$r")
  printf 'run %s: nginx %.0f  flo-put %.0f  flo-get %.0f  etcd-put %.0f  redis-set(always) %.0f req/s\n' \
    "$run" "$n" "$p" "$g" "$e" "$r"
done
nm=$(median "${nginx_r[@]}"); pm=$(median "${put_r[@]}"); gm=$(median "${get_r[@]}")
em=$(median "${etcd_r[@]}"); rm_=$(median "${redis_r[@]}")
printf 'median req/s: nginx %.0f, flo PUT %.0f, flo GET %.0f, etcd PUT %.0f, redis SET %.0f\n' "$nm" "$pm" "$gm" "$em" "$rm_"
printf 'ratios: PUT/etcd %s  PUT/nginx %s  PUT/redis %s  GET/nginx %s\n' \
  "$(ratio "$pm" "$em")" "$(ratio "$pm" "$nm")" "$(ratio "$pm" "$rm_")" "$(ratio "$gm" "$nm")"
