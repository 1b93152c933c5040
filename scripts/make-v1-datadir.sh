#!/usr/bin/env bash
# Writes the data directories of the release before per-partition state (commit ad5e41e: snapshot
# container version 1, time-series entries that name no partition) that tests/old_data.rs opens
# with the current binary:
#   tests/data/v1-datadir/          the workload below, then a clean stop (SIGTERM)
#   tests/data/v1-datadir-tail/     the same directory, started again, a few more writes of every
#                                   primitive but time series, then SIGKILL: old entries after the
#                                   last snapshot, which the current server replays
#   tests/data/v1-datadir-crashed/  one shard, a clean stop, then a time-series write and SIGKILL:
#                                   old time-series entries after the last snapshot, which the
#                                   current server refuses (start the old release once, stop it
#                                   cleanly, then upgrade)
# Segment files are preallocated (1 MiB, zero-filled): each is stored without its trailing zero
# bytes, and tests/data/<name>.manifest lists every file with its size and SHA-256 as the old
# server left it, so the test rebuilds the directory byte for byte.
#
# Usage: scripts/make-v1-datadir.sh OLD_CHECKOUT
#   OLD_CHECKOUT is a checkout of that release, e.g. `git worktree add --detach ../flo-v1 ad5e41e`;
#   it is built with `cargo build --release` there (its own target directory) unless FLO_OLD_BIN
#   names an old binary already built. Needs curl, perl, sha256sum.
# The run's server-assigned times (enqueue, lease, append, namespace creation, TTL) are printed at
# the end as the constants tests/old_data.rs declares: paste them over the ones there.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OLD_CHECKOUT" >&2; exit 2; }
old=$(cd "$1" && pwd)
if [ -n "${FLO_OLD_BIN:-}" ]; then
  bin=$(cd "$(dirname "$FLO_OLD_BIN")" && pwd)/$(basename "$FLO_OLD_BIN")
else
  (cd "$old" && cargo build --release -q)
  bin="$old/target/release/flo"
fi
[ -x "$bin" ] || { echo "no binary at $bin" >&2; exit 1; }
cd "$(dirname "$0")/.."

WORK=$(mktemp -d)
PID=
# KEEP_WORK=1 keeps the scratch directory (the old server's log is server.log there).
cleanup() {
  if [ -n "$PID" ]; then kill -9 "$PID" 2>/dev/null || true; fi
  if [ -n "${KEEP_WORK:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# The settings tests/old_data.rs starts the current server with: 1 MiB segments (the smallest the
# old release accepts) and a snapshot every 32 KiB of log, so mid-run snapshots exist.
cat > "$WORK/flo.toml" <<'CONF'
[log]
segment_bytes = 1048576
batch_max_bytes = 32768
snapshot_bytes = 32768
[limits]
max_value_bytes = 16384
CONF
# For the runs that end in SIGKILL: no snapshot but at a clean stop (a restarted old server counts
# the log it recovered as written, and would snapshot at once, leaving nothing after it).
sed 's/^snapshot_bytes = .*/snapshot_bytes = 0/' "$WORK/flo.toml" > "$WORK/flo-no-snapshots.toml"

now_ms() { date +%s%3N; }

# start DATA_DIR SHARDS [CONFIG]: starts the old server, waits for /health (new ports if taken).
start() {
  local dir=$1 shards=$2 config=${3:-$WORK/flo.toml} attempt
  for attempt in 1 2 3 4 5; do
    PORT=$((20000 + RANDOM % 30000))
    "$bin" server start --config "$config" --data-dir "$dir" --shards "$shards" \
      --dashboard-port "$PORT" --metrics-port $((PORT + 1)) --log-level info \
      2>>"$WORK/server.log" &
    PID=$!
    local deadline=$(($(date +%s) + 30))
    while [ "$(date +%s)" -lt "$deadline" ]; do
      if ! kill -0 "$PID" 2>/dev/null; then break; fi
      if [ "$(curl -s -o /dev/null -w '%{http_code}' "127.0.0.1:$PORT/health")" = 200 ]; then
        return 0
      fi
      sleep 0.05
    done
    kill -9 "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    PID=
  done
  echo "the old server did not start; its log:" >&2
  cat "$WORK/server.log" >&2
  exit 1
}

# stop SIGNAL: stops the server and waits for it; a clean stop must exit 0.
stop() {
  kill -"$1" "$PID"
  local rc=0
  wait "$PID" 2>/dev/null || rc=$?
  PID=
  if [ "$1" = TERM ] && [ "$rc" != 0 ]; then
    echo "the old server exited $rc on SIGTERM" >&2
    exit 1
  fi
}

# req METHOD PATH STATUS [BODY]: prints the response body; stops when the status differs.
req() {
  local out code
  out=$(mktemp -p "$WORK")
  code=$(curl -sS -o "$out" -w '%{http_code}' -X "$1" "127.0.0.1:$PORT/api/v1$2" \
    -H 'Content-Type: application/json' --data-binary "${4-}")
  if [ "$code" != "$3" ]; then
    echo "$1 $2: status $code, wanted $3: $(cat "$out")" >&2
    exit 1
  fi
  cat "$out"
}
b64() { printf %s "$1" | base64 -w0; }
# field NAME JSON: the first number NAME holds in JSON.
field() { grep -o "\"$1\":[0-9-]*" <<<"$2" | awk -F: 'NR == 1 {print $2}'; }
# ns_created NAME: created_at_ms of that namespace in the listing.
ns_created() {
  req GET /namespaces 200 | grep -o "\"created_at_ms\":[0-9]*,[^{}]*\"name\":\"$1\"" | cut -d: -f2 | cut -d, -f1
}
CONSTS=()
const() { CONSTS+=("const $1: u64 = $2;"); }

# bulk ROUND: 60 KV keys of 1000 bytes in namespace app (both shards: log enough for a snapshot).
bulk() {
  local i prefix letter value
  for i in $(seq 0 59); do
    prefix=$(printf 'bulk:%03d:r%d:' "$i" "$1")
    letter=$(printf "\\$(printf %03o $((97 + i % 26)))")
    value=$prefix$(printf "%$((1000 - ${#prefix}))s" '' | tr ' ' "$letter")
    req PUT "/kv/app/$(printf 'bulk:%03d' "$i")" 200 "{\"value\":\"$(b64 "$value")\"}" >/dev/null
  done
}

# save DATA_DIR NAME: stores the directory as tests/data/NAME (trailing zeros cut) + manifest.
save() {
  local src=$1 dst=tests/data/$2 f size sha keep
  rm -rf "$dst" "$dst.manifest"
  mkdir -p "$dst"
  {
    echo "# $2: every file the old server left, as: path size sha256. The files here are"
    echo "# stored without their trailing zero bytes; tests/old_data.rs pads them back to size."
    (cd "$src" && find . -type f | sed 's|^\./||' | LC_ALL=C sort) | while read -r f; do
      size=$(stat -c %s "$src/$f")
      sha=$(sha256sum "$src/$f" | cut -d' ' -f1)
      keep=$(perl -e 'open my $h, "<:raw", $ARGV[0] or die; local $/; my $d = <$h>; $d =~ s/\0+\z//; print length $d' "$src/$f")
      mkdir -p "$dst/$(dirname "$f")"
      head -c "$keep" "$src/$f" > "$dst/$f"
      echo "$f $size $sha"
    done
  } > "$dst.manifest"
}

# ---- v1-datadir: every primitive, in namespace app (created explicitly) and in default ----
D="$WORK/main"
start "$D" 2
req POST /namespaces 201 '{"name":"app"}' >/dev/null
const DEFAULT_CREATED_AT_MS "$(ns_created default)"
const APP_CREATED_AT_MS "$(ns_created app)"
bulk 1

# KV in default: versions, a delete, CAS, a 10-year TTL, a binary value, a key with a slash.
req PUT /kv/default/greeting 200 "{\"value\":\"$(b64 hello)\"}" >/dev/null
req PUT /kv/default/greeting 200 "{\"value\":\"$(b64 'hello, world')\"}" >/dev/null
req PUT /kv/default/greeting 200 "{\"value\":\"$(b64 'hello again')\"}" >/dev/null
req PUT /kv/default/gone 200 "{\"value\":\"$(b64 'soon gone')\"}" >/dev/null
req PUT /kv/default/counter 200 "{\"value\":\"$(b64 1)\",\"cas_version\":0}" >/dev/null
req PUT /kv/default/counter 200 "{\"value\":\"$(b64 2)\",\"cas_version\":1}" >/dev/null
req PUT /kv/default/counter 409 "{\"value\":\"$(b64 x)\",\"cas_version\":1}" >/dev/null
before=$(now_ms)
req PUT /kv/default/ttl 200 "{\"value\":\"$(b64 'ten years')\",\"ttl_seconds\":315360000}" >/dev/null
after=$(now_ms)
const TTL_PUT_NOT_BEFORE_MS "$before"
const TTL_PUT_NOT_AFTER_MS "$after"
req PUT /kv/default/bin 200 "{\"value\":\"$(perl -e 'print map chr, 0..255' | base64 -w0)\"}" >/dev/null
req PUT /kv/default/dir%2Ffile 200 "{\"value\":\"$(b64 'a slash')\"}" >/dev/null
# The delete comes last: once the old release sweeps a tombstone, a new key of the namespace on
# that shard starts after its version, so a key created after it would get a version by timing.
req DELETE /kv/default/gone 200 >/dev/null
# KV in app.
req PUT /kv/app/user:1 200 "{\"value\":\"$(b64 Ada)\"}" >/dev/null
req PUT /kv/app/user:1 200 "{\"value\":\"$(b64 'Ada L.')\"}" >/dev/null
req PUT /kv/app/user:2 200 "{\"value\":\"$(b64 Grace)\"}" >/dev/null

# Queue app/jobs: priorities, a dedup key, a delay, an ack, a long lease, a dead letter.
enq() { req POST /queue/app/jobs/enqueue 200 "$1" >/dev/null; }
# enq_at PAYLOAD_BASE64 PEEK_JSON: that message's enqueued_at_ms.
enq_at() { grep -o "\"enqueued_at_ms\":[0-9]*,\"payload\":\"$1\"" <<<"$2" | cut -d: -f2 | cut -d, -f1; }
enq "{\"payload\":\"$(b64 a)\",\"priority\":5}"
enq "{\"payload\":\"$(b64 b)\",\"priority\":1}"
enq "{\"payload\":\"$(b64 c)\",\"priority\":1}"
enq "{\"payload\":\"$(b64 d)\",\"priority\":9,\"dedup_key\":\"d-1\"}"
r=$(req POST /queue/app/jobs/enqueue 200 "{\"payload\":\"$(b64 d-again)\",\"priority\":9,\"dedup_key\":\"d-1\"}")
[ "$r" = '{"deduplicated":true,"seq":4}' ] || { echo "dedup: $r" >&2; exit 1; }
enq "{\"payload\":\"$(b64 e)\",\"priority\":0}"
before=$(now_ms)
enq "{\"payload\":\"$(b64 later)\",\"priority\":3,\"delay_ms\":2592000000}"
after=$(now_ms)
const JOBS_6_ENQUEUED_NOT_BEFORE_MS "$before"
const JOBS_6_ENQUEUED_NOT_AFTER_MS "$after"
peek=$(req GET '/queue/app/jobs/peek?count=10' 200)
const JOBS_1_ENQUEUED_AT_MS "$(enq_at "$(b64 a)" "$peek")"
const JOBS_2_ENQUEUED_AT_MS "$(enq_at "$(b64 b)" "$peek")"
const JOBS_3_ENQUEUED_AT_MS "$(enq_at "$(b64 c)" "$peek")"
const JOBS_4_ENQUEUED_AT_MS "$(enq_at "$(b64 d)" "$peek")"
r=$(req POST /queue/app/jobs/dequeue 200 '{"count":1,"visibility_timeout_ms":30000}')
[ "$(field seq "$r")" = 5 ] || { echo "dequeue: $r" >&2; exit 1; }
req POST /queue/app/jobs/ack 200 '{"sequences":[5]}' >/dev/null
r=$(req POST /queue/app/jobs/dequeue 200 '{"count":1,"visibility_timeout_ms":43200000}')
[ "$(field seq "$r")" = 2 ] || { echo "dequeue: $r" >&2; exit 1; }
const JOBS_2_LEASE_EXPIRES_AT_MS "$(field lease_expires_at_ms "$r")"
r=$(req POST /queue/app/jobs/dequeue 200 '{"count":1,"visibility_timeout_ms":30000}')
[ "$(field seq "$r")" = 3 ] || { echo "dequeue: $r" >&2; exit 1; }
req POST /queue/app/jobs/nack 200 '{"sequences":[3],"to_dlq":true}' >/dev/null
const JOBS_3_DEAD_AT_MS "$(field dead_at_ms "$(req GET /queue/app/jobs/dlq 200)")"
# Queue default/mail: one message.
req POST /queue/default/mail/enqueue 200 "{\"payload\":\"$(b64 hi)\"}" >/dev/null
const MAIL_1_ENQUEUED_AT_MS "$(field enqueued_at_ms "$(req GET /queue/default/mail/peek 200)")"

# Streams: app/events with two groups and a retention; default/log.
r=$(req POST /stream/app/events/append 200 "{\"payload\":\"$(b64 e0)\"}")
const EVENTS_0_TIMESTAMP_MS "$(field timestamp_ms "$r")"
r=$(req POST /stream/app/events/append 200 "{\"records\":[{\"payload\":\"$(b64 e1)\"},{\"payload\":\"$(b64 e2)\"},{\"payload\":\"$(b64 e3)\"},{\"payload\":\"$(b64 e4)\"}]}")
const EVENTS_1_4_TIMESTAMP_MS "$(field timestamp_ms "$r")"
req POST /stream/app/events/groups/workers 201 '{"start":"earliest","ack_timeout_ms":1000,"max_deliveries":7}' >/dev/null
req POST /stream/app/events/groups/workers/read 200 '{"consumer":"w1","count":3}' >/dev/null
req POST /stream/app/events/groups/workers/ack 200 '{"offsets":[0,1]}' >/dev/null
req POST /stream/app/events/groups/late 201 '{"start":"latest"}' >/dev/null
req PUT /stream/app/events/retention 200 '{"max_records":1000}' >/dev/null
r=$(req POST /stream/default/log/append 200 "{\"records\":[{\"payload\":\"$(b64 l0)\"},{\"payload\":\"$(b64 l1)\"}]}")
const LOG_0_1_TIMESTAMP_MS "$(field timestamp_ms "$r")"

# Time series: one body over both shards (cpu web-01 and web-02 live on different shards), a late
# point, points from 2001 (hidden in cpu by its 20-year retention, kept in mem), 1100 points of one
# series (a compressed chunk of 1024 and a head of 76), and a point in default.
ts() { req POST "/ts/$1/write" 200 "$2"; }
ts app $'cpu,host=web-01 usage=10.5 1700000000000\ncpu,host=web-02 usage=20.25 1700000000000\nmem,host=web-03 used=4096i,total=8192i 1700000000000' >/dev/null
ts app 'cpu,host=web-01 usage=11.5 1700000060000' >/dev/null
ts app 'cpu,host=web-01 usage=9.5 1699999940000' >/dev/null
req PUT /ts/app/cpu/retention 200 '{"max_age_ms":630720000000}' >/dev/null
ts app $'cpu,host=web-01 usage=1 1000000000000\nmem,host=web-03 used=1i,total=2i 1000000000000' >/dev/null
load=$(for i in $(seq 0 1099); do printf 'load,host=db-01 v=%d.%02d %d\n' $((i / 4)) $((i % 4 * 25)) $((1700000000000 + i * 1000)); done)
r=$(ts app "$load")
[ "$r" = '{"fields_dropped":0,"points_written":1100}' ] || { echo "load: $r" >&2; exit 1; }
ts default 'temp,room=lab celsius=21.5 1700000000000' >/dev/null

bulk 2
stop TERM
save "$D" v1-datadir

# ---- v1-datadir-tail: started again, more writes (no time series), SIGKILL ----
start "$D" 2 "$WORK/flo-no-snapshots.toml"
req PUT /kv/default/greeting 200 "{\"value\":\"$(b64 tail)\"}" >/dev/null
req DELETE /kv/app/user:2 200 >/dev/null
req PUT /kv/default/tail:new 200 "{\"value\":\"$(b64 fresh)\"}" >/dev/null
req POST /namespaces 201 '{"name":"late-ns"}' >/dev/null
const LATE_NS_CREATED_AT_MS "$(ns_created late-ns)"
req POST /queue/app/jobs/enqueue 200 "{\"payload\":\"$(b64 g)\",\"priority\":2}" >/dev/null
r=$(req POST /queue/app/jobs/dequeue 200 '{"count":1,"visibility_timeout_ms":30000}')
[ "$(field seq "$r")" = 7 ] || { echo "tail dequeue: $r" >&2; exit 1; }
req POST /queue/app/jobs/ack 200 '{"sequences":[7]}' >/dev/null
r=$(req POST /stream/app/events/append 200 "{\"payload\":\"$(b64 e5)\"}")
const EVENTS_5_TIMESTAMP_MS "$(field timestamp_ms "$r")"
req POST /stream/app/events/groups/workers/ack 200 '{"offsets":[2]}' >/dev/null
stop KILL
save "$D" v1-datadir-tail

# ---- v1-datadir-crashed: one shard; time-series entries after the last snapshot ----
C="$WORK/crashed"
start "$C" 1
req PUT /kv/default/k 200 "{\"value\":\"$(b64 v)\"}" >/dev/null
ts default 'cpu,host=a usage=1 1700000000000' >/dev/null
stop TERM
start "$C" 1 "$WORK/flo-no-snapshots.toml"
ts default $'cpu,host=a usage=2 1700000060000\ncpu,host=b usage=3 1700000060000' >/dev/null
stop KILL
save "$C" v1-datadir-crashed

du -sh --apparent-size tests/data/v1-datadir tests/data/v1-datadir-tail tests/data/v1-datadir-crashed
echo "# the constants of tests/old_data.rs for this run:"
printf '%s\n' "${CONSTS[@]}"
