#!/usr/bin/env bash
# Snapshot pause and recovery time with a big data directory: KEYS keys (default 1 M, 100-byte
# values), then overwrites with 4 KiB values until the log holds LOG_GIB GiB (default 10), with
# compaction off so the log stays that big. Reports the longest snapshot pause, then the time
# from start to /health 200 after SIGKILL and after a clean stop, and what recovery did.
# Usage: scripts/bench-recovery.sh   (KEYS, LOG_GIB, DIR override)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench/lib.sh
KEYS=${KEYS:-1000000}
LOG_GIB=${LOG_GIB:-10}
DIR=${DIR:-$(mktemp -d /tmp/flo-recovery.XXXX)}
mkdir -p "$DIR"
PORT=19702
cargo build --release -q
conf="$DIR/flo.toml"
cat > "$conf" <<CONF
durability = "async"
[log]
compact_live_percent = 0
CONF
start() { target/release/flo server start --config "$conf" --data-dir "$DIR/data" --dashboard-port $PORT \
  --metrics-port $((PORT + 1)) --log-level info 2>>"$DIR/server.log" & PID=$!; }
healthy_ms() {
  local t0; t0=$(date +%s%N)
  until curl -sf "127.0.0.1:$PORT/health" >/dev/null 2>&1; do sleep 0.02; done
  echo $(( ($(date +%s%N) - t0) / 1000000 ))
}
log_bytes() { du -sb --apparent-size "$DIR/data" | cut -f1; }
start; healthy_ms >/dev/null
echo "# filling: $KEYS keys of 100 bytes, then 4 KiB overwrites up to $LOG_GIB GiB of log ($DIR)"
target/release/flo bench --host 127.0.0.1:$PORT -w kv-put --keys "$KEYS" --value-bytes 100 \
  -n $((KEYS * 5)) -d 10m -c 64 >/dev/null
while [ "$(log_bytes)" -lt $((LOG_GIB * 1024 * 1024 * 1024)) ]; do
  target/release/flo bench --host 127.0.0.1:$PORT -w kv-put --keys "$KEYS" --value-bytes 4096 \
    -n 200000 -d 10m -c 64 >/dev/null
done
sleep 2
metrics=$(curl -s "127.0.0.1:$((PORT + 1))/metrics")
pause=$(echo "$metrics" | awk '/^flo_snapshot_pause_seconds_max/ {if ($2 > m) m = $2} END {printf "%.1f", m * 1000}')
keys=$(curl -s "127.0.0.1:$PORT/api/v1/namespaces" | grep -o '"kv_keys":[0-9]*' | head -1)
echo "log: $(log_bytes) bytes in $(ls "$DIR"/data/shard-*/*.log | wc -l) segments; $keys; longest snapshot pause ${pause} ms"
grep "snapshot taken" "$DIR/server.log" | tail -4
kill -9 $PID; wait $PID 2>/dev/null || true
start; ms=$(healthy_ms)
echo "after SIGKILL: healthy in $ms ms"
grep -E "snapshot loaded|log recovered" "$DIR/server.log" | tail -4
kill -TERM $PID; wait $PID 2>/dev/null || true
start; ms=$(healthy_ms)
echo "after a clean stop: healthy in $ms ms"
grep -E "snapshot loaded|log recovered" "$DIR/server.log" | tail -4
kill -TERM $PID; wait $PID 2>/dev/null || true
[ -n "${KEEP:-}" ] || rm -rf "$DIR"
