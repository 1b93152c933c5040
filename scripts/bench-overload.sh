#!/usr/bin/env bash
# Overload behaviour of durable KV writes, on the release build:
#
# 1. Capacity: closed loop, kv-put (durability = sync, VALUE-byte values, default 100), 64
#    connections, CAP_SECONDS (default 10 s) after a 2 s warmup. Its 2xx/s is the peak.
# 2. Open loop (`flo bench --rate`) at 0.5x, 1x, 2x and 5x the peak, PHASE_SECONDS (default 15 s)
#    each, then at once a recovery phase at 0.5x (RECOVERY_SECONDS, default 15 s). Latency counts
#    from each request's intended send time. Every write of every phase has its own key
#    (--run-id) and the keys of the acknowledged ones are recorded (--acked-file).
# 3. Read back every acknowledged write (kv-verify): lost must be 0.
#
# Connections in the open loop: OPEN_CONNS (default 1024) in every phase, fewer than the
# configured http.max_connections, so the server never refuses a connection: every 429 it
# sends is a keep-alive answer (a full shard inbox or log batch; or, when WRITES_IN_FLIGHT is
# set, too many writes in progress on a shard: http.max_writes_in_flight) and the connection
# carries on.
# A connection refused for the connection limit would get 429 and be closed (the load tool would
# reopen it for its next request), which is much dearer than a keep-alive 429; the config keeps
# that out of this measurement. When all OPEN_CONNS are busy the next free one sends the oldest
# due request late; requests still unsent at the end are reported ("unsent").
#
# Memory: the server's RSS is sampled every second, its anonymous part (heap, stacks: what the
# budget below is about) apart from its file-backed part (log segments mapped for reading, which
# the kernel reclaims at will; reported, not budgeted). The configuration below bounds what overload
# can make the server hold beyond its data: per open connection its two 16 KiB base buffers
# (max_connections of them), the request-body budget (max_buffered_body_bytes, bodies over
# 16 KiB), the shard inboxes (inbox_capacity commands per shard, ~1 KiB each for these writes),
# and two log batches per shard (batch_max_bytes each). The budget is that, plus the RSS of the
# idle server before the run, plus the KV index the run's keys need (flo_kv_index_bytes at the
# end): the data the run wrote is not overload.
#
# "Back to baseline": the first second of the recovery phase whose 2xx p99 is within 1.5x of the
# 0.5x phase's 2xx p99.
#
#   scripts/bench-overload.sh     # SHARDS=2 PHASE_SECONDS=15 OPEN_CONNS=1024 VALUE=100 [WRITES_IN_FLIGHT=N]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench/lib.sh
SHARDS=${SHARDS:-2}
VALUE=${VALUE:-100}
CAP_SECONDS=${CAP_SECONDS:-10}
PHASE_SECONDS=${PHASE_SECONDS:-15}
RECOVERY_SECONDS=${RECOVERY_SECONDS:-15}
OPEN_CONNS=${OPEN_CONNS:-1024}
MULTIPLES=${MULTIPLES:-0.5 1 2 5}
PORT=${FLO_PORT:-19722}
MPORT=$((PORT + 1))
for tool in jq curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
cargo build --release -q
WORK=$(mktemp -d -t flo-overload.XXXXXX)
PID=
SAMPLER=
trap '[ -n "$SAMPLER" ] && kill $SAMPLER 2>/dev/null; [ -n "$PID" ] && kill $PID 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
cp "${CARGO_TARGET_DIR:-target}/release/flo" "$WORK/flo"
FLO="$WORK/flo"

MAX_CONNECTIONS=4096
BODY_BUDGET=$((64 * 1024 * 1024))
INBOX=4096
WRITES_IN_FLIGHT=${WRITES_IN_FLIGHT:-}
BATCH=$((4 * 1024 * 1024))
cat > "$WORK/flo.toml" <<CONF
shards = $SHARDS
durability = "sync"
[http]
max_connections = $MAX_CONNECTIONS
max_body_bytes = $((4 * 1024 * 1024))
max_buffered_body_bytes = $BODY_BUDGET
inbox_capacity = $INBOX
${WRITES_IN_FLIGHT:+max_writes_in_flight = $WRITES_IN_FLIGHT}
[log]
batch_max_bytes = $BATCH
CONF
echo "# config:"; sed 's/^/#   /' "$WORK/flo.toml"
"$FLO" server start --config "$WORK/flo.toml" --data-dir "$WORK/data" --dashboard-port $PORT \
  --metrics-port $MPORT --log-level warn 2>"$WORK/server.log" &
PID=$!
wait_port $PORT
sleep 1
rss_kib() { awk '/^RssAnon:/ {a = $2} /^RssFile:/ {f = $2} END {print a, f}' "/proc/$PID/status"; }
IDLE_KIB=$(rss_kib | cut -d' ' -f1)
( while kill -0 $PID 2>/dev/null; do echo "$(date +%s.%N) $(rss_kib)"; sleep 1; done ) > "$WORK/rss" 2>/dev/null &
SAMPLER=$!
now() { date +%s.%N; }
# max_rss_mib FROM TO -- largest RSS sampled between two times
max_rss_mib() { awk -v a="$1" -v b="$2" '$1 >= a && $1 <= b + 1 && $2 > m {m = $2} END {printf "%.0f", m / 1024}' "$WORK/rss"; }
metric() { curl -s "127.0.0.1:$MPORT/metrics" | awk -v m="$1" '$1 ~ "^"m"({|$)" {s += $2} END {printf "%.0f", s}'; }
bench() { "$FLO" bench --host 127.0.0.1:$PORT -w kv-put --value-bytes "$VALUE" --json "$@"; }
alive() { kill -0 $PID 2>/dev/null || { echo "the server died; its log:" >&2; cat "$WORK/server.log" >&2; exit 1; }; }

# 1. Capacity.
bench -c 64 -t 2 --warmup 2s -d "${CAP_SECONDS}s" --run-id cap --acked-file "$WORK/acked-cap" > "$WORK/cap.json"
alive
PEAK=$(jq '.goodput_per_sec | floor' "$WORK/cap.json")
echo "capacity (closed loop, 64 connections): $PEAK/s 2xx, p99 $(jq '.latency_2xx_us.p99' "$WORK/cap.json") us," \
  "429 $(jq '.rejected' "$WORK/cap.json")"

# 2. Open loop at each multiple, then the recovery phase.
LINES=()
declare -A GOOD
for m in $MULTIPLES recovery; do
  mult=$m; seconds=$PHASE_SECONDS
  [ "$m" = recovery ] && { mult=0.5; seconds=$RECOVERY_SECONDS; }
  rate=$(awk -v p="$PEAK" -v m="$mult" 'BEGIN {printf "%.0f", p * m}')
  id="m${m//./_}"
  t0=$(now)
  bench --rate "$rate" -c "$OPEN_CONNS" -t 2 -d "${seconds}s" --series --run-id "$id" \
    --acked-file "$WORK/acked-$id" > "$WORK/$id.json"
  t1=$(now)
  alive
  j="$WORK/$id.json"
  good=$(jq '.goodput_per_sec | floor' "$j")
  GOOD[$m]=$good
  rss=$(max_rss_mib "$t0" "$t1")
  line=$(jq -r --arg m "$m" --argjson peak "$PEAK" --arg rate "$rate" --arg rss "$rss" '
    def ms: . / 1000 * 100 | round / 100;
    "\($m)x: offered \($rate)/s, goodput \(.goodput_per_sec | floor)/s (\(.goodput_per_sec / $peak * 100 | round)% of peak),"
    + " 429/503 \(.rejected) (p99 \(.latency_rejected_us.p99 | ms) ms), 2xx p99 \(.latency_2xx_us.p99 | ms) ms,"
    + " errors \(.errors), unsent \(.unsent), RSS max \($rss) MiB"' "$j")
  [ "$m" = recovery ] && line="recovery (0.5x right after 5x):${line#recovery*x:}"
  echo "$line"
  LINES+=("$line")
  if [ "$m" = recovery ]; then
    echo "  per second: t sent 2xx 429/503 2xx-p99(ms)"
    jq -r '.series[] | "  \(.t) \(.sent) \(.ok) \(.rejected) \(.ok_p99_us / 1000)"' "$j"
  fi
done

# Baseline p99 (0.5x phase) and the first recovery second within 1.5x of it.
BASE_P99=$(jq '.latency_2xx_us.p99' "$WORK/m0_5.json")
BACK=$(jq --argjson b "$BASE_P99" '[.series[] | select(.ok > 0 and .ok_p99_us <= 1.5 * $b) | .t] | first // "never"' \
  "$WORK/mrecovery.json")

# 3. Read back every acknowledged write.
cat "$WORK"/acked-* > "$WORK/acked-all"
ACKED=$(wc -l < "$WORK/acked-all")
"$FLO" bench --host 127.0.0.1:$PORT -w kv-verify --keys-file "$WORK/acked-all" --value-bytes "$VALUE" \
  -c 64 -t 2 -d 30m --json > "$WORK/verify.json"
FOUND=$(jq '.records' "$WORK/verify.json")
LOST=$(( ACKED - FOUND ))
echo "read back: $ACKED acknowledged writes, $FOUND found, $LOST lost"

# Memory budget.
INDEX=$(metric flo_kv_index_bytes)
OVERLOAD_BYTES=$(( MAX_CONNECTIONS * 32 * 1024 + BODY_BUDGET + SHARDS * INBOX * 1024 + SHARDS * 2 * BATCH ))
BUDGET_MIB=$(( (IDLE_KIB * 1024 + INDEX + OVERLOAD_BYTES) / 1048576 ))
RSS_MAX=$(awk '$2 > m {m = $2} END {printf "%.0f", m / 1024}' "$WORK/rss")
FILE_MAX=$(awk '$3 > m {m = $3} END {printf "%.0f", m / 1024}' "$WORK/rss")
echo "memory: idle $((IDLE_KIB / 1024)) MiB + KV index $((INDEX / 1048576)) MiB + overload bound" \
  "$((OVERLOAD_BYTES / 1048576)) MiB ($MAX_CONNECTIONS connections x 32 KiB, body budget" \
  "$((BODY_BUDGET / 1048576)) MiB, inboxes, log batches) = budget $BUDGET_MIB MiB; anonymous RSS max" \
  "$RSS_MAX MiB (file-backed RSS max $FILE_MAX MiB, mapped log segments)"

REJECTED=$(jq -s '[.[] | .rejected] | add' "$WORK"/m2.json "$WORK"/m5.json)
REJ_P99=$(jq -s '[.[] | .latency_rejected_us.p99] | max / 1000 * 100 | round / 100' "$WORK"/m2.json "$WORK"/m5.json)
REJ_TEXT="429 p99 $REJ_P99 ms"
[ "$REJECTED" = 0 ] && REJ_TEXT="no 429 (the excess waited instead)"
pct() { awk -v g="${GOOD[$1]:-0}" -v p="$PEAK" 'BEGIN {printf "%.0f%%", g / p * 100}'; }
echo "overload: peak $PEAK/s; goodput at 2x $(pct 2), 5x $(pct 5); $REJ_TEXT; $LOST lost;" \
  "RSS max $RSS_MAX MiB anonymous (budget $BUDGET_MIB MiB); back to baseline in $BACK s"
[ "$LOST" = 0 ]
