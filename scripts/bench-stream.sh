#!/usr/bin/env bash
# Streams side by side in one run, REPS times (medians reported):
#   fio: 256 KiB writes with an fdatasync every 32 (../shared/bench/fio_disk.sh job c) in the
#     same file system as Flo's data, for DURATION
#   Flo durable append bandwidth: `flo bench -w stream-append`, 64 connections, batches of 16
#     records of 64 KiB and of 256 records of 1 KiB (a stream each), for DURATION each
#   Flo sequential read of the 1 KiB stream (`-w stream-read`, 1000 records a request, 8
#     connections) vs fio reading Flo's segment files with 1 MiB reads (the same bytes, the same
#     page cache), for DURATION each
#   single-record appends of 100 bytes at 64 connections vs Redis XADD with appendfsync always
#     (redis-benchmark -c 64), if Redis is installed
# Figures are payload bytes (before base64). Needs fio; builds Flo in release mode.
#
#   scripts/bench-stream.sh            # REPS=3 DURATION=10s
set -euo pipefail
cd "$(dirname "$0")/.."
REPS="${REPS:-3}"
DURATION="${DURATION:-10s}"
FLO_PORT="${FLO_PORT:-19002}"
REDIS_PORT="${REDIS_PORT:-16379}"
command -v fio >/dev/null || { echo "missing fio: apt-get install fio" >&2; exit 1; }
cargo build --release --quiet
WORK="$(mktemp -d -p "${BENCH_DIR:-${TMPDIR:-/tmp}}" flo-bench-stream.XXXXXX)"
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
source scripts/bench/lib.sh
secs() { awk -v d="$1" 'BEGIN { if (d ~ /ms$/) print d / 1000; else if (d ~ /m$/) print d * 60; else print d + 0 }'; }
S=$(secs "$DURATION")
FLO=target/release/flo

start_flo "$WORK/flo" "$FLO_PORT"
PIDS+=($!)
maybe_redis "$WORK/redis" "$REDIS_PORT"
wait_port "$FLO_PORT"
[ "$HAVE_REDIS" = 1 ] && wait_port "$REDIS_PORT"

# bench ARGS... -- runs the load tool, prints one field of its JSON report (the last argument)
bench() {
  local field="${*: -1}"
  $FLO bench --host "127.0.0.1:$FLO_PORT" --json "${@:1:$#-1}" > "$WORK/bench.json"
  python3 - "$WORK/bench.json" "$field" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
bad = {k: v for k, v in r["status"].items() if k != "200"}
if bad or r["errors"]:
    sys.exit(f"flo bench {r['workload']}: statuses {r['status']}, errors {r['error_kinds']}")
print(r[sys.argv[2]])
PY
}
fio_mbs() {  # fio JSON on stdin (after any notes) -> MB/s of its first job (read or write side: $1)
  python3 -c 'import json,sys; t=sys.stdin.read(); print(json.loads(t[t.index("{"):])["jobs"][0][sys.argv[1]]["bw_bytes"] / 1e6)' "$1"
}

fw_r=(); a64_r=(); a1_r=(); rd_r=(); fr_r=(); one_r=(); xadd_r=()
for run in $(seq "$REPS"); do
  fw=$(fio --name=c_seqwrite_256k_fdatasync32 --filename="$WORK/fio.dat" --rw=write --bs=256k \
    --fdatasync=32 --size=24G --ioengine=sync --iodepth=1 --time_based --runtime="$S" \
    --output-format=json | fio_mbs write)
  rm -f "$WORK/fio.dat"
  a64=$(bench -w stream-append --namespace "a64k$run" --batch 16 --value-bytes 65536 -c 64 -d "$DURATION" payload_mb_per_sec)
  a1=$(bench -w stream-append --namespace "a1k$run" --batch 256 --value-bytes 1024 -c 64 -d "$DURATION" payload_mb_per_sec)
  n=$(curl -s "http://127.0.0.1:$FLO_PORT/api/v1/stream/a1k$run/bench/info" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["record_count"])')
  rd=$(bench -w stream-read --namespace "a1k$run" --keys "$n" --batch 1000 --value-bytes 1024 -c 8 -d "$DURATION" payload_mb_per_sec)
  fr=$(fio --name=read_segments --opendir="$WORK/flo" --file_service_type=sequential --rw=read --bs=1M \
    --ioengine=sync --time_based --runtime="$S" --output-format=json | fio_mbs read)
  one=$(bench -w stream-append --namespace "one$run" --batch 1 --value-bytes 100 -c 64 -d "$DURATION" records_per_sec)
  x=0
  if [ "$HAVE_REDIS" = 1 ]; then
    x=$(redis-benchmark -p "$REDIS_PORT" -c 64 -n 200000 --csv XADD "s$run" '*' f "$(head -c 100 /dev/zero | tr '\0' 'x')" |
      awk -F'"' 'NR == 2 {print $4}')
  fi
  fw_r+=("$fw"); a64_r+=("$a64"); a1_r+=("$a1"); rd_r+=("$rd"); fr_r+=("$fr"); one_r+=("$one"); xadd_r+=("$x")
  printf 'run %s: fio write %.0f MB/s; flo append 64K %.0f MB/s, 1K %.0f MB/s; flo read %.0f MB/s, fio read %.0f MB/s; flo single %.0f/s, redis XADD %.0f/s\n' \
    "$run" "$fw" "$a64" "$a1" "$rd" "$fr" "$one" "$x"
done
fw=$(median "${fw_r[@]}"); a64=$(median "${a64_r[@]}"); a1=$(median "${a1_r[@]}")
rd=$(median "${rd_r[@]}"); fr=$(median "${fr_r[@]}"); one=$(median "${one_r[@]}"); x=$(median "${xadd_r[@]}")
printf 'median: fio write %.0f MB/s; flo append 64K %.0f MB/s (%s of fio), 1K %.0f MB/s (%s); flo read %.0f MB/s vs fio read %.0f MB/s (%s); flo single-record %.0f/s vs redis XADD %.0f/s (%s)\n' \
  "$fw" "$a64" "$(ratio "$a64" "$fw")" "$a1" "$(ratio "$a1" "$fw")" "$rd" "$fr" "$(ratio "$rd" "$fr")" "$one" "$x" "$(ratio "$one" "$x")"
