#!/usr/bin/env bash
# Time series side by side with InfluxDB 1.6 in one run, REPS times (medians reported):
#   ingest, same data and same client: the 1000 series x 1000 points data set of
#     ../shared/bench (influx_gen.py, precision s), posted in 5000-line batches by 2 writers
#     (influx_write.py) to InfluxDB's /write and to Flo's compatible /write (both durable:
#     InfluxDB fsyncs its WAL, Flo its log); points/s
#     (that client is Python: its CPU share is printed, it can be the bottleneck)
#   ingest, the load tool: `flo bench -w ts-ingest` (TSBS-like cpu lines, 1000 hosts, 5000 lines
#     a request, 4 connections, 10 s) with 10 fields a line and with 1 (the data set's shape),
#     against InfluxDB (--influx) and Flo; values/s
#   queries on the data set, timed by one client (scripts/bench/ts_query.py, median of 9):
#     the mean per 5 minutes of one series, of all 1000 series merged, and of each of the 1000
#     series (InfluxQL GROUP BY time(5m)[, host]; FloQL avg(5m) [| group_by()])
#   bytes per point of the data set: Flo's measurement listing (compressed chunks + points not
#     yet chunked; heads are cut after 1 s here), and its log's entry bytes (the raw points stay
#     in the log as dead bytes until compaction, which is not built yet); InfluxDB's data+wal
#     right after the write (its full compaction takes minutes; ../shared/bench/influx_bench.sh
#     measures it: 7.2 bytes/point)
# Needs influxd (../shared/bench/install.sh); builds Flo in release mode.
#
#   scripts/bench-ts.sh            # REPS=3
set -euo pipefail
cd "$(dirname "$0")/.."
REPS="${REPS:-3}"
FLO_PORT="${FLO_PORT:-19002}"
SHARED="${SHARED_BENCH:-../shared/bench}"
command -v influxd >/dev/null || { echo "missing influxd: see $SHARED/install.sh" >&2; exit 1; }
cargo build --release --quiet
WORK="$(mktemp -d -p "${BENCH_DIR:-${TMPDIR:-/tmp}}" flo-bench-ts.XXXXXX)"
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
source scripts/bench/lib.sh
FLO=target/release/flo
LP="$WORK/influx_1m.lp"
python3 "$SHARED/influx_gen.py" "$LP"

# The data set's range (influx_query.py's): 2024-01-01T00:00:00Z + 1000 x 10 s.
T0=1704067200000; T1=$((T0 + 10000 * 1000 - 1))
FLOQL_ONE="cpu{host=h1}[$T0..$T1] | avg(5m)"
FLOQL_ALL="cpu[$T0..$T1] | group_by() | avg(5m)"
FLOQL_EACH="cpu[$T0..$T1] | avg(5m)"
TW="time >= ${T0}ms AND time <= ${T1}ms"
INFLUXQL_ONE="SELECT mean(usage) FROM cpu WHERE host='h1' AND $TW GROUP BY time(5m)"
INFLUXQL_ALL="SELECT mean(usage) FROM cpu WHERE $TW GROUP BY time(5m)"
INFLUXQL_EACH="SELECT mean(usage) FROM cpu WHERE $TW GROUP BY time(5m), host"

json_field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); 
for k in sys.argv[2].split("."): d = d[k]
print(d)' "$1" "$2"; }

# bench ARGS... FIELD -- the load tool against HOST:PORT ($BHOST), one JSON field of its report
bench() {
  local field="${*: -1}"
  $FLO bench --host "$BHOST" --json "${@:1:$#-1}" > "$WORK/bench.json"
  python3 - "$WORK/bench.json" "$field" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
bad = {k: v for k, v in r["status"].items() if k not in ("200", "204")}
if bad or r["errors"]:
    sys.exit(f"flo bench {r['workload']}: statuses {r['status']}, errors {r['error_kinds']}")
print(r[sys.argv[2]])
PY
}

# settle -- let the previous server's writeback finish, so each starts on a quiet disk
settle() { sync; sleep 2; }
start_influx() {
  local d="$WORK/influx"; rm -rf "$d" "$WORK/flo"; settle; mkdir -p "$d"
  sed "s|@DIR@|$d|g" "$SHARED/influxdb.conf.tmpl" > "$d/influxdb.conf"
  influxd run -config "$d/influxdb.conf" > "$WORK/influxd.log" 2>&1 &
  IPID=$!; PIDS+=($IPID)
  wait_port 18086
  curl -fsS -XPOST http://127.0.0.1:18086/query --data-urlencode "q=CREATE DATABASE bench" > /dev/null
}
stop_influx() { kill "$IPID"; wait "$IPID" 2>/dev/null || true; }
start_flo_ts() {
  rm -rf "$WORK/flo" "$WORK/influx"; settle; mkdir -p "$WORK/flo"
  printf '[ts]\nhead_age_ms = 1000\n' > "$WORK/flo.toml"
  start_flo "$WORK/flo/data" "$FLO_PORT" --config "$WORK/flo.toml"
  FPID=$!; PIDS+=($FPID)
  wait_port "$FLO_PORT"
}
stop_flo() { kill "$FPID"; wait "$FPID" 2>/dev/null || true; }

iw=(); fw=(); ii=(); fi_=(); ii1=(); fi1=(); icpu=(); fcpu=(); q1i=(); q1f=(); qai=(); qaf=(); qei=(); qef=(); fbp=(); fdp=(); ibp=()
for run in $(seq "$REPS"); do
  # InfluxDB: the data set with the shared client, queries, bytes; then the load tool.
  start_influx
  python3 "$SHARED/influx_write.py" "$LP" http://127.0.0.1:18086 bench 5000 2 > "$WORK/w.json"
  iw+=("$(json_field "$WORK/w.json" points_per_s)")
  icpu+=("$(python3 -c 'import json,sys; w=json.load(open(sys.argv[1])); print(100*w["client_cpu_s"]/w["seconds"])' "$WORK/w.json")")
  ibp+=("$(du -sb "$WORK/influx/data" "$WORK/influx/wal" | awk '{s+=$1} END {print s / 1e6}')")
  python3 scripts/bench/ts_query.py influx http://127.0.0.1:18086 bench 9 \
    "one=$INFLUXQL_ONE" "all=$INFLUXQL_ALL" "each=$INFLUXQL_EACH" > "$WORK/q.json"
  q1i+=("$(json_field "$WORK/q.json" one.median_ms)"); qai+=("$(json_field "$WORK/q.json" all.median_ms)")
  qei+=("$(json_field "$WORK/q.json" each.median_ms)")
  BHOST=127.0.0.1:18086
  ii+=("$(bench -w ts-ingest --influx --namespace bench --keys 1000 --batch 5000 -c 4 -d 10s records_per_sec)")
  ii1+=("$(bench -w ts-ingest --influx --fields 1 --namespace bench --keys 1000 --batch 5000 -c 4 -d 10s records_per_sec)")
  stop_influx

  start_flo_ts
  python3 "$SHARED/influx_write.py" "$LP" "http://127.0.0.1:$FLO_PORT" bench 5000 2 > "$WORK/w.json"
  fw+=("$(json_field "$WORK/w.json" points_per_s)")
  fcpu+=("$(python3 -c 'import json,sys; w=json.load(open(sys.argv[1])); print(100*w["client_cpu_s"]/w["seconds"])' "$WORK/w.json")")
  sleep 3 # heads older than 1 s are cut into chunks by the 1 s timer
  curl -fsS "http://127.0.0.1:$FLO_PORT/api/v1/ts/bench" > "$WORK/m.json"
  fbp+=("$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1]))["measurements"][0]; print(m["bytes"]/m["samples"])' "$WORK/m.json")")
  curl -fsS "http://127.0.0.1:$FLO_PORT/api/v1/metrics" > "$WORK/metrics.json"
  fdp+=("$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(sum(s["log_entry_bytes"] for s in m["shards"]) / 1e6)' "$WORK/metrics.json")")
  python3 scripts/bench/ts_query.py flo "http://127.0.0.1:$FLO_PORT" bench 9 \
    "one=$FLOQL_ONE" "all=$FLOQL_ALL" "each=$FLOQL_EACH" > "$WORK/q.json"
  q1f+=("$(json_field "$WORK/q.json" one.median_ms)"); qaf+=("$(json_field "$WORK/q.json" all.median_ms)")
  qef+=("$(json_field "$WORK/q.json" each.median_ms)")
  BHOST=127.0.0.1:$FLO_PORT
  fi_+=("$(bench -w ts-ingest --namespace tsbs --keys 1000 --batch 5000 -c 4 -d 10s records_per_sec)")
  fi1+=("$(bench -w ts-ingest --fields 1 --namespace tsbs1 --keys 1000 --batch 5000 -c 4 -d 10s records_per_sec)")
  stop_flo
  echo "run $run: same-client ingest influx ${iw[-1]} (client CPU ${icpu[-1]}%) flo ${fw[-1]} (client CPU ${fcpu[-1]}%) points/s;" \
    "ts-ingest lines/s influx ${ii[-1]} flo ${fi_[-1]}, 1 field influx ${ii1[-1]} flo ${fi1[-1]};" \
    "one-series ms influx ${q1i[-1]} flo ${q1f[-1]}; all merged ms influx ${qai[-1]} flo ${qaf[-1]};" \
    "each series ms influx ${qei[-1]} flo ${qef[-1]}; bytes/point flo live ${fbp[-1]} flo log ${fdp[-1]} influx hot ${ibp[-1]}"
done

m() { median "$@"; }
echo
echo "time series vs InfluxDB 1.6 (medians of $REPS runs)"
printf '  %-58s %12s %12s %8s\n' "" "flo" "influxdb" "ratio"
row() { printf '  %-58s %12.1f %12.1f %8s\n' "$1" "$2" "$3" "$(ratio "$2" "$3")"; }
row "ingest points/s, same data + client (5000-line batches)" "$(m "${fw[@]}")" "$(m "${iw[@]}")"
row "ingest values/s, ts-ingest TSBS 10 fields (lines x 10)" "$(awk -v v="$(m "${fi_[@]}")" 'BEGIN{print v*10}')" \
  "$(awk -v v="$(m "${ii[@]}")" 'BEGIN{print v*10}')"
row "ingest values/s, ts-ingest 1 field (the data set's shape)" "$(m "${fi1[@]}")" "$(m "${ii1[@]}")"
row "mean per 5m, one series, ms" "$(m "${q1f[@]}")" "$(m "${q1i[@]}")"
row "mean per 5m, 1000 series merged, ms" "$(m "${qaf[@]}")" "$(m "${qai[@]}")"
row "mean per 5m, each of 1000 series, ms" "$(m "${qef[@]}")" "$(m "${qei[@]}")"
row "bytes/point: flo live (chunks+heads) vs influx right after write" "$(m "${fbp[@]}")" "$(m "${ibp[@]}")"
printf '  %-58s %12.2f\n' "bytes/point: flo log entries before compaction" "$(m "${fdp[@]}")"
printf '  %-58s %12.0f %12.0f\n' "python client CPU % during same-client ingest" "$(m "${fcpu[@]}")" "$(m "${icpu[@]}")"
