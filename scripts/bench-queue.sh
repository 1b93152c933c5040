#!/usr/bin/env bash
# Queues side by side in one run, REPS times (medians reported):
#   Flo enqueue: wrk -t2 -c64 for DURATION, 100-byte payloads, every enqueue durable
#   Flo consume: wrk -t2 -c64 for DURATION, dequeue COUNT + ack of what was received
#   Flo full cycle = 1 / (1/enqueue rate + 1/consume rate) jobs/s. The consume phase starts
#     with what the enqueue phase left; when it drains the queue before DURATION ends, its rate
#     (and so the cycle) is a lower bound (`flo bench -w queue-consume` on a full queue shows
#     the consumers' own rate)
#   beanstalkd -f 0 (fsync every write): put, reserve+delete and full cycle with the stdlib
#     client of ../shared/bench (BEANSTALK_CLIENT), if beanstalkd is installed
#   Redis LPUSH with appendfsync always (redis-benchmark -c 64 -d 100), if installed
# Needs wrk; builds Flo in release mode.
#
#   scripts/bench-queue.sh            # REPS=3 DURATION=10s COUNT=10
set -euo pipefail
cd "$(dirname "$0")/.."
REPS="${REPS:-3}"
DURATION="${DURATION:-10s}"
COUNT="${COUNT:-10}"
FLO_PORT="${FLO_PORT:-19002}"
REDIS_PORT="${REDIS_PORT:-16379}"
BEANSTALK_CLIENT="${BEANSTALK_CLIENT:-../shared/bench/beanstalk_client.py}"
command -v wrk >/dev/null || { echo "missing wrk: apt-get install wrk" >&2; exit 1; }
cargo build --release --quiet
WORK="$(mktemp -d -t flo-bench-queue.XXXXXX)"
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
source scripts/bench/lib.sh
secs() { awk -v d="$1" 'BEGIN { if (d ~ /ms$/) print d / 1000; else if (d ~ /m$/) print d * 60; else print d + 0 }'; }

start_flo "$WORK/flo" "$FLO_PORT"
PIDS+=($!)
HAVE_BS=0
if command -v beanstalkd >/dev/null && [ -f "$BEANSTALK_CLIENT" ]; then
  mkdir -p "$WORK/bs"
  beanstalkd -l 127.0.0.1 -p 11300 -b "$WORK/bs" -f 0 &
  BS_PID=$!
  PIDS+=("$BS_PID")
  HAVE_BS=1
fi
maybe_redis "$WORK/redis" "$REDIS_PORT"
wait_port "$FLO_PORT"
[ "$HAVE_BS" = 1 ] && wait_port 11300
[ "$HAVE_REDIS" = 1 ] && wait_port "$REDIS_PORT"

export PAYLOAD_B64 COUNT
PAYLOAD_B64=$(head -c 100 /dev/zero | tr '\0' 'j' | base64 -w0)
S=$(secs "$DURATION")
enq_r=(); con_r=(); cyc_r=(); bs_r=(); bsput_r=(); redis_r=()
for run in $(seq "$REPS"); do
  export QUEUE="q$run"
  wrk -t2 -c64 -d"$DURATION" -s scripts/bench/flo_queue_enqueue.lua "http://127.0.0.1:$FLO_PORT" > "$WORK/enq.txt"
  grep -q "Non-2xx" "$WORK/enq.txt" && { cat "$WORK/enq.txt" >&2; exit 1; }
  enq=$(awk '/Requests\/sec/ {print $2}' "$WORK/enq.txt")
  wrk -t2 -c64 -d"$DURATION" -s scripts/bench/flo_queue_consume.lua "http://127.0.0.1:$FLO_PORT" > "$WORK/con.txt"
  grep -q "Non-2xx" "$WORK/con.txt" && { cat "$WORK/con.txt" >&2; exit 1; }
  con=$(awk -v s="$S" '/^acked/ {print $2 / s}' "$WORK/con.txt")
  cyc=$(awk -v a="$enq" -v b="$con" 'BEGIN { print 1 / (1 / a + 1 / b) }')
  bs=0; bsput=0; r=0
  if [ "$HAVE_BS" = 1 ]; then
    python3 "$BEANSTALK_CLIENT" 127.0.0.1 11300 8 "$S" 100 "$BS_PID" > "$WORK/bs.json"
    bs=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["cycle_per_s"])' "$WORK/bs.json")
    bsput=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["put_per_s"])' "$WORK/bs.json")
  fi
  if [ "$HAVE_REDIS" = 1 ]; then
    r=$(redis-benchmark -p "$REDIS_PORT" -c 64 -n 200000 -d 100 -t lpush --csv | awk -F'"' 'NR == 2 {print $4}')
  fi
  enq_r+=("$enq"); con_r+=("$con"); cyc_r+=("$cyc"); bs_r+=("$bs"); bsput_r+=("$bsput"); redis_r+=("$r")
  printf 'run %s: flo enqueue %.0f/s  consume %.0f/s  cycle %.0f jobs/s   beanstalkd put %.0f/s cycle %.0f jobs/s   redis LPUSH %.0f/s\n' \
    "$run" "$enq" "$con" "$cyc" "$bsput" "$bs" "$r"
done
em=$(median "${enq_r[@]}"); cm=$(median "${con_r[@]}"); ym=$(median "${cyc_r[@]}")
bm=$(median "${bs_r[@]}"); rm_=$(median "${redis_r[@]}")
printf 'median: flo enqueue %.0f/s, consume %.0f/s, cycle %.0f jobs/s; beanstalkd cycle %.0f jobs/s; redis LPUSH %.0f/s\n' \
  "$em" "$cm" "$ym" "$bm" "$rm_"
printf 'ratios: cycle/beanstalkd %s  enqueue/redis-LPUSH %s\n' "$(ratio "$ym" "$bm")" "$(ratio "$em" "$rm_")"
