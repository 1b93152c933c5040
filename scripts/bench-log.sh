#!/usr/bin/env bash
# The log writer against fio, side by side in one run (REPS rounds, alternating):
#   flo  `flo bench-log`: APPENDERS concurrent appenders of ENTRY_BYTES entries, sync durability
#        (one write + one fdatasync per group-commit batch, on pre-written segments)
#   fio  sequential writes of the same size as Flo's average batch, fdatasync after each,
#        overwriting a pre-written file (as Flo's segments are), for the same duration
# Prints MB/s and fdatasyncs/s of each and the ratio. Then the recovery speed of a log of
# RECOVER_MIB MiB with a cold page cache (needs root to drop caches; skipped otherwise).
#   scripts/bench-log.sh                 # REPS=3 DURATION=10 APPENDERS=64 ENTRY_BYTES=1024 RECOVER_MIB=1024
set -euo pipefail
cd "$(dirname "$0")/.."
REPS="${REPS:-3}"; DURATION="${DURATION:-10}"; APPENDERS="${APPENDERS:-64}"
ENTRY_BYTES="${ENTRY_BYTES:-1024}"; RECOVER_MIB="${RECOVER_MIB:-1024}"
command -v fio >/dev/null || { echo "missing fio: apt-get install fio" >&2; exit 1; }
cargo build --release --quiet
WORK="$(mktemp -d -p "${BENCH_DIR:-${TMPDIR:-/tmp}}" flo-bench-log.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
dd if=/dev/zero of="$WORK/fio.dat" bs=1M count=1024 conv=fsync status=none

field() { python3 -c "import json,sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }
for run in $(seq "$REPS"); do
  rm -rf "$WORK/log"
  out=$(target/release/flo bench-log --dir "$WORK/log" --appenders "$APPENDERS" --entry-bytes "$ENTRY_BYTES" \
        --duration "${DURATION}s" --json)
  flo_mb=$(echo "$out" | field log_mb_per_sec); flo_fs=$(echo "$out" | field fsyncs_per_sec)
  per=$(echo "$out" | field entries_per_fsync); bs=$(echo "$out" | field bytes_per_batch)
  bs=$(( ($(printf '%.0f' "$bs") + 511) / 512 * 512 ))
  fio --name=batch --filename="$WORK/fio.dat" --rw=write --bs="$bs" --fdatasync=1 --size=1G --ioengine=sync \
      --iodepth=1 --time_based --runtime="$DURATION" --output-format=json > "$WORK/fio.json"
  read -r fio_mb fio_fs < <(python3 -c "import json; j=json.load(open('$WORK/fio.json'))['jobs'][0]; \
print(j['write']['bw_bytes']/1e6, j['sync']['lat_ns']['N']/(j['job_runtime']/1e3))")
  printf 'run %s: flo %.1f MB/s (%.0f fdatasync/s, %.1f entries/fdatasync, %s B/batch)   fio %.1f MB/s (%.0f fdatasync/s, bs %s)   flo/fio %.2f\n' \
    "$run" "$flo_mb" "$flo_fs" "$per" "$bs" "$fio_mb" "$fio_fs" "$bs" "$(awk -v a="$flo_mb" -v b="$fio_mb" 'BEGIN {print a / b}')"
done

if [ "$RECOVER_MIB" -gt 0 ]; then
  rm -rf "$WORK/log"
  target/release/flo bench-log --dir "$WORK/log" --appenders "$APPENDERS" --entry-bytes "$ENTRY_BYTES" \
    --total-mib "$RECOVER_MIB" --durability async --json > /dev/null
  if sync && echo 3 > /proc/sys/vm/drop_caches 2>/dev/null; then cache="cold cache"; else cache="warm cache (cannot drop caches)"; fi
  out=$(target/release/flo bench-log --dir "$WORK/log" --recover-only --json)
  printf 'recovery of %s MiB (%s): %.0f MB/s (%s entries in %.3f s)\n' "$RECOVER_MIB" "$cache" \
    "$(echo "$out" | field recovery_mb_per_sec)" "$(echo "$out" | field recovered_entries)" "$(echo "$out" | field recovery_seconds)"
fi
