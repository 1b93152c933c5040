#!/usr/bin/env bash
# Compaction measured on the release build, two parts:
#
# 1. Disk bound: KEYS keys (default 100 k) of VALUE bytes (default 1000) overwritten until
#    WRITE_GIB GiB (default 2) of values have been sent; the data directory's size is sampled
#    every second. Reports the largest and final size against the live data (keys + values),
#    and write amplification: log bytes written / value bytes sent, and compaction's copies /
#    value bytes sent.
# 2. Foreground latency: the same keys, a kv-put load (which makes the garbage) beside a kv-get
#    load for SECONDS (default 30), once with compaction off and once on; reports each load's
#    p99 and the ratio, and how much compaction copied during the run.
#
# Usage: scripts/bench-compaction.sh [disk|latency|all]   (KEYS, VALUE, WRITE_GIB, SECONDS,
# SEGMENT_MIB (default: the built-in 64), SHARDS (default: one per CPU) override)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench/lib.sh
MODE=${1:-all}
KEYS=${KEYS:-100000}
VALUE=${VALUE:-1000}
WRITE_GIB=${WRITE_GIB:-2}
SECONDS_RUN=${SECONDS:-30}
SEGMENT_MIB=${SEGMENT_MIB:-64}
SHARDS=${SHARDS:-0}
PORT=19712
MPORT=$((PORT + 1))
cargo build --release -q
WORK=$(mktemp -d /tmp/flo-compaction.XXXX)
trap 'kill $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
PID=

# start PERCENT -- a fresh server with compaction at PERCENT
start() {
  rm -rf "$WORK/data"
  cat > "$WORK/flo.toml" <<CONF
[log]
segment_bytes = $((SEGMENT_MIB * 1024 * 1024))
compact_live_percent = $1
CONF
  target/release/flo server start --config "$WORK/flo.toml" --data-dir "$WORK/data" --shards "$SHARDS" \
    --dashboard-port $PORT --metrics-port $MPORT --log-level info 2>"$WORK/server.log" &
  PID=$!
  wait_port $PORT
}
stop() { kill -TERM "$PID"; wait "$PID" 2>/dev/null || true; PID=; }
metric() { curl -s "127.0.0.1:$MPORT/metrics" | awk -v m="$1" '$1 ~ "^"m"({|$)" {s += $2} END {printf "%.0f", s}'; }
dir_bytes() { du -sb "$WORK/data" | cut -f1; }
bench() { target/release/flo bench --host 127.0.0.1:$PORT --keys "$KEYS" --value-bytes "$VALUE" "$@"; }
fill() { bench -w kv-put -n "$KEYS" -d 10m -c 64 >/dev/null; }
mib() { awk -v b="$1" 'BEGIN {printf "%.0f MiB", b / 1048576}'; }

if [ "$MODE" = disk ] || [ "$MODE" = all ]; then
  start 50
  fill
  key_bytes=$(awk -v k="$KEYS" 'BEGIN {s = 0; for (i = 0; i < k; i++) s += length("k" i); print s}')
  live=$((KEYS * VALUE + key_bytes))
  puts=$(( (WRITE_GIB * 1024 * 1024 * 1024) / VALUE ))
  shards=$(ls -d "$WORK"/data/shard-* | wc -l)
  echo "# disk: $KEYS keys of $VALUE bytes (live $(mib $live)), $puts overwrites ($WRITE_GIB GiB)," \
    "$shards shards, ${SEGMENT_MIB} MiB segments"
  max=0
  ( while kill -0 $PID 2>/dev/null; do dir_bytes; sleep 1; done ) > "$WORK/sizes" 2>/dev/null &
  SAMPLER=$!
  bench -w kv-put -n "$puts" -d 30m -c 64 | grep -E "requests|latency"
  sleep 3
  kill $SAMPLER 2>/dev/null || true
  max=$(sort -n "$WORK/sizes" | tail -1)
  median=$(median $(cat "$WORK/sizes"))
  [ -z "${SIZES:-}" ] || cp "$WORK/sizes" "$SIZES"
  final=$(dir_bytes)
  seg=$((SEGMENT_MIB * 1024 * 1024))
  bound=$((3 * live + shards * seg))
  log=$(metric flo_log_bytes_total)
  copied=$(metric flo_compaction_copied_bytes_total)
  deleted=$(metric flo_compaction_segments_deleted_total)
  sent=$((puts * VALUE))
  echo "dir: largest $(mib "$max") ($(ratio "$max" "$live")x live), median $(mib "$median")" \
    "($(ratio "$median" "$live")x), final $(mib "$final") ($(ratio "$final" "$live")x);" \
    "bound 3x live + 1 segment/shard = $(mib $bound)"
  echo "log written $(mib "$log") for $(mib $sent) of values: write amplification $(ratio "$log" "$sent");" \
    "compaction copied $(mib "$copied") ($(ratio "$copied" "$sent") of values sent), deleted $deleted segments"
  stop
fi

if [ "$MODE" = latency ] || [ "$MODE" = all ]; then
  echo "# latency: kv-put (32 conns) beside kv-get (32 conns), $SECONDS_RUN s, $KEYS keys of $VALUE bytes"
  for percent in 0 50 0 50; do
    start $percent
    fill
    # Garbage first, so compaction has work from the start of the measured run.
    bench -w kv-put -n $((KEYS * 3)) -d 10m -c 64 >/dev/null
    c0=$(metric flo_compaction_copied_bytes_total)
    bench -w kv-put -d "${SECONDS_RUN}s" -c 32 --json > "$WORK/put.json" &
    P=$!
    bench -w kv-get -d "${SECONDS_RUN}s" -c 32 --json > "$WORK/get.json"
    wait $P
    c1=$(metric flo_compaction_copied_bytes_total)
    p99() { grep -o '"p99":[0-9]*' "$1" | head -1 | cut -d: -f2; }
    rate() { grep -o '"ops_per_sec":[0-9.]*' "$1" | head -1 | cut -d: -f2; }
    echo "compaction ${percent}%: put p99 $(p99 "$WORK/put.json") us ($(rate "$WORK/put.json")/s)," \
      "get p99 $(p99 "$WORK/get.json") us ($(rate "$WORK/get.json")/s); compaction copied $(mib $((c1 - c0)))"
    stop
  done
fi
