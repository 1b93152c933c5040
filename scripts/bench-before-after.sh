#!/usr/bin/env bash
# The durable write paths of two builds of Flo side by side in one run, alternating (each
# repetition runs both, in turns, so both see the same machine noise): the release build of this
# checkout ("after") and BEFORE, another build's binary ("before"), e.g. of the previous commit:
#
#   git worktree add --detach ../flo-before HEAD~1 && (cd ../flo-before && cargo build --release)
#   BEFORE=../flo-before/target/release/flo scripts/bench-before-after.sh
#
# Each server gets a fresh data directory (SHARDS shards) and runs, DURATION each:
#   KV PUT of distinct keys, 100-byte values        wrk -t2 -c64 (scripts/bench/flo_kv_put.lua)
#   queue enqueue, 100-byte payloads                wrk -t2 -c64 (flo_queue_enqueue.lua)
#   stream append of single 100-byte records        flo bench -w stream-append -c 64
#   time-series ingest, TSBS-like cpu lines         flo bench -w ts-ingest (1000 hosts, 5000 lines)
# Every write is durable (answered after fdatasync). Prints each run, the medians of the rates and
# of the server's CPU time per operation (less disturbed by the load tools sharing the machine),
# and their ratios after / before. The load tools are this checkout's. Needs wrk.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${BEFORE:?set BEFORE to the flo binary of another build}"
REPS="${REPS:-5}"
DURATION="${DURATION:-5s}"
SHARDS="${SHARDS:-2}"
PORT="${PORT:-19402}"
command -v wrk >/dev/null || { echo "missing wrk: apt-get install wrk" >&2; exit 1; }
cargo build --release --quiet
AFTER=target/release/flo
WORK="$(mktemp -d -t flo-before-after.XXXXXX)"
PID=""
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
source scripts/bench/lib.sh
export VALUE_B64 PAYLOAD_B64 KEYS=10000 QUEUE=bench COUNT=1
VALUE_B64=$(head -c 100 /dev/zero | tr '\0' 'v' | base64 -w0)
PAYLOAD_B64=$(head -c 100 /dev/zero | tr '\0' 'j' | base64 -w0)

# bench ARGS... FIELD -- the load tool against the running server; one field of its report
bench() {
  local field="${*: -1}"
  $AFTER bench --host "127.0.0.1:$PORT" --json "${@:1:$#-1}" > "$WORK/bench.json"
  python3 - "$WORK/bench.json" "$field" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
bad = {k: v for k, v in r["status"].items() if k != "200"}
other = {k: v for k, v in r["error_kinds"].items() if k != "timeout" and v}
if bad or other:
    sys.exit(f"flo bench {r['workload']}: statuses {r['status']}, errors {r['error_kinds']}")
# Requests still unanswered 2 s after the end (a snapshot pause of a large time-series state
# can hold a shard that long) only end the run: they are noted, not fatal.
if r["error_kinds"].get("timeout"):
    print(f"note: {r['workload']}: {r['error_kinds']['timeout']} requests unanswered at the end", file=sys.stderr)
print(r[sys.argv[2]])
PY
}

# one BIN NAME RUN -- starts BIN on a fresh data directory, runs the four loads, prints a line
one() {
  local bin="$1" name="$2" run="$3"
  rm -rf "$WORK/data"
  # Built-in defaults for both (an empty file: not this checkout's flo.toml, which the other
  # build may not know every key of).
  : > "$WORK/flo.toml"
  "$bin" server start --config "$WORK/flo.toml" --data-dir "$WORK/data" --dashboard-port "$PORT" \
    --metrics-port $((PORT + 1)) --shards "$SHARDS" --log-level warn &
  PID=$!
  wait_port "$PORT"
  local kv q st ts c0 c1 c2 c3 c4
  c0=$(cpu)
  kv=$(RUN="$run" wrk_rps "http://127.0.0.1:$PORT" scripts/bench/flo_kv_put.lua)
  c1=$(cpu)
  wrk -t2 -c64 -d"$DURATION" -s scripts/bench/flo_queue_enqueue.lua "http://127.0.0.1:$PORT" > "$WORK/enq.txt"
  grep -q "Non-2xx" "$WORK/enq.txt" && { cat "$WORK/enq.txt" >&2; exit 1; }
  q=$(awk '/Requests\/sec/ {print $2}' "$WORK/enq.txt")
  c2=$(cpu)
  st=$(bench -w stream-append --namespace "s$run" --batch 1 --value-bytes 100 -c 64 -d "$DURATION" records_per_sec)
  c3=$(cpu)
  ts=$(bench -w ts-ingest --namespace "t$run" --keys 1000 --batch 5000 -c 4 -d "$DURATION" records_per_sec)
  c4=$(cpu)
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
  # The server's CPU per operation (µs), which the load tools sharing the machine disturb less
  # than the rates.
  local s; s=$(secs "$DURATION")
  per() { awk -v c="$1" -v r="$2" -v s="$s" -v hz="$HZ" 'BEGIN { printf "%.2f", c / hz * 1e6 / (r * s) }'; }
  printf '%s %s %s %s %s %s %s %s %s\n' "$name" "$kv" "$q" "$st" "$ts" \
    "$(per $((c1 - c0)) "$kv")" "$(per $((c2 - c1)) "$q")" "$(per $((c3 - c2)) "$st")" "$(per $((c4 - c3)) "$ts")" >> "$WORK/results"
  printf 'run %s %-6s: KV PUT %.0f/s, enqueue %.0f/s, stream append %.0f records/s, TS ingest %.0f lines/s\n' \
    "$run" "$name" "$kv" "$q" "$st" "$ts"
}

# cpu -- the running server's CPU time so far, in clock ticks
cpu() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
HZ=$(getconf CLK_TCK)
secs() { awk -v d="$1" 'BEGIN { if (d ~ /ms$/) print d / 1000; else if (d ~ /m$/) print d * 60; else print d + 0 }'; }

for run in $(seq "$REPS"); do
  if [ $((run % 2)) = 1 ]; then
    one "$BEFORE" before "$run"; one "$AFTER" after "$run"
  else
    one "$AFTER" after "$run"; one "$BEFORE" before "$run"
  fi
done
col() { awk -v n="$1" -v c="$2" '$1 == n {print $c}' "$WORK/results"; }
for c in 2:"KV PUT" 3:"queue enqueue" 4:"stream append" 5:"TS ingest"; do
  i="${c%%:*}"; label="${c#*:}"
  # shellcheck disable=SC2046
  b=$(median $(col before "$i")); a=$(median $(col after "$i"))
  # shellcheck disable=SC2046
  bc=$(median $(col before $((i + 4)))); ac=$(median $(col after $((i + 4))))
  printf 'median %-14s before %9.0f/s %6.2f µs CPU/op   after %9.0f/s %6.2f µs CPU/op   after/before: rate %s, CPU/op %s\n' \
    "$label" "$b" "$bc" "$a" "$ac" "$(ratio "$a" "$b")" "$(ratio "$ac" "$bc")"
done
