#!/usr/bin/env bash
# Slow clients against a Flo release build, with slowhttptest in its three slow modes:
#
#   slow-header (-H)  Slowloris: heads that never end, one more header line every 10 s
#   slow-body   (-B)  R-U-Dead-Yet: a Content-Length body sent a few bytes every 10 s
#   slow-read   (-X)  complete pipelined GETs of a 64 KiB value, read with a tiny TCP window
#
# Each mode opens CONNECTIONS connections (default 500) for DURATION seconds (default 30).
# Meanwhile a probe sends `GET /health` on a fresh connection every 100 ms and records the
# latency, and a sampler reads the server's RSS (/proc/PID/status) and open descriptors
# (/proc/PID/fd) every second. One summary line per mode:
#
#   slow-clients: slow-header: 500 conns 30 s; probe 123 sent, 0 failed, max 6.4 ms, p99 5.6 ms
#     (< 1 s ok); max RSS 24 MiB, max fds 522; closed by the server's timeouts: 408s 500; open at
#     end 0; slowhttptest: service available YES (No open connections left)
#
# "408s" is the server's protocol-error count over the mode (request_timeout_ms); slow readers
# are dropped by the write timeout without a response, so for them "open at end" (the server's
# flo_http_connections_active when slowhttptest stops) and slowhttptest's exit status tell.
# slowhttptest stops early ("No open connections left") once the server has closed them all. The server runs with its
# default [http] settings (request_timeout_ms 10000, idle_timeout_ms 60000) unless
# FLO_HTTP_CONFIG holds other TOML lines for the [http] section.
#
# Needs slowhttptest (installed with apt-get when missing and run as root) and a release
# build (target/release/flo, or FLO_BIN; built with cargo build --release when missing).
set -euo pipefail

cd "$(dirname "$0")/.."
CONNECTIONS=${CONNECTIONS:-500}
DURATION=${DURATION:-30}
MODES=${MODES:-"slow-header slow-body slow-read"}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
FLO_BIN=${FLO_BIN:-$TARGET_DIR/release/flo}

if ! command -v slowhttptest >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get install -y slowhttptest >/dev/null || { apt-get update >/dev/null && apt-get install -y slowhttptest >/dev/null; }
    else
        echo "slow-clients: slowhttptest is missing (Debian package slowhttptest)" >&2
        exit 1
    fi
fi
if [ ! -x "$FLO_BIN" ]; then
    cargo build --release --bin flo
fi

WORK=$(mktemp -d -t flo-slow-clients.XXXXXX)
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
PORT=$(free_port)
METRICS=$(free_port)
printf '[http]\n%s\n' "${FLO_HTTP_CONFIG:-}" >"$WORK/flo.toml"
"$FLO_BIN" server start --config "$WORK/flo.toml" --data-dir "$WORK/data" --bind 127.0.0.1 \
    --dashboard-port "$PORT" --metrics-port "$METRICS" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

# The probe, the sampler and the metrics reader.
cat >"$WORK/probe.py" <<'EOF'
import json, os, socket, sys, threading, time

port, metrics, pid, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
stop = threading.Event()
lat, failed, rss, fds = [], [], [], []

def get(p, path, timeout=5.0):
    s = socket.create_connection(("127.0.0.1", p), timeout=timeout)
    s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path.encode())
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return data

def probe():
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            ok = get(port, "/health").startswith(b"HTTP/1.1 200")
        except OSError as e:
            ok = False
        dt = time.monotonic() - t0
        (lat if ok else failed).append(dt)
        stop.wait(max(0.0, 0.1 - dt))

def sample():
    while not stop.is_set():
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss.append(int(line.split()[1]) * 1024)
            fds.append(len(os.listdir(f"/proc/{pid}/fd")))
        except OSError:
            pass
        stop.wait(1.0)

if sys.argv[5] == "metrics":
    text = get(metrics, "/metrics").decode("latin-1")
    m = {}
    for line in text.splitlines():
        for name in ("flo_http_protocol_errors_total", "flo_http_connections_active"):
            if line.startswith(name):
                m[name] = m.get(name, 0) + float(line.rsplit(" ", 1)[1])
    print(json.dumps(m))
    sys.exit(0)

threads = [threading.Thread(target=probe), threading.Thread(target=sample)]
for t in threads:
    t.start()
sys.stdin.read()  # runs until the script closes our stdin
stop.set()
for t in threads:
    t.join()
json.dump({"lat": lat, "failed": len(failed), "rss": max(rss or [0]), "fds": max(fds or [0])}, open(out, "w"))
EOF

metrics() { python3 "$WORK/probe.py" "$PORT" "$METRICS" "$SERVER_PID" - metrics; }

for _ in $(seq 1 300); do
    if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$PORT),timeout=1)" 2>/dev/null &&
        metrics >/dev/null 2>&1; then
        break
    fi
    sleep 0.1
done

# A 64 KiB value for the slow-read mode: each GET answers about 88 KB.
python3 - "$PORT" <<'EOF'
import base64, socket, sys
body = b'{"value":"%s"}' % base64.b64encode(b"x" * 65536)
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"PUT /api/v1/kv/default/big HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
          b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
answer = s.recv(4096)
assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
EOF

for mode in $MODES; do
    case $mode in
    slow-header) args=(-H -i 10 -u "http://127.0.0.1:$PORT/health") ;;
    slow-body) args=(-B -i 10 -s 8192 -u "http://127.0.0.1:$PORT/api/v1/namespaces") ;;
    slow-read) args=(-X -k 8 -n 1 -w 1 -y 512 -z 32 -u "http://127.0.0.1:$PORT/api/v1/kv/default/big") ;;
    *)
        echo "slow-clients: unknown mode $mode" >&2
        exit 2
        ;;
    esac
    before=$(metrics)
    exec {probe_in}> >(python3 "$WORK/probe.py" "$PORT" "$METRICS" "$SERVER_PID" "$WORK/$mode.json" run)
    probe_pid=$!
    slowhttptest "${args[@]}" -c "$CONNECTIONS" -r 250 -l "$DURATION" -p 3 >"$WORK/$mode.out" 2>&1 || true
    after=$(metrics)
    exec {probe_in}>&-
    wait "$probe_pid" 2>/dev/null || true
    while [ ! -s "$WORK/$mode.json" ]; do sleep 0.1; done
    python3 - "$mode" "$CONNECTIONS" "$DURATION" "$WORK/$mode.json" "$WORK/$mode.out" "$before" "$after" <<'EOF'
import json, re, sys
mode, conns, duration, res_file, out_file, before, after = sys.argv[1:]
r = json.load(open(res_file))
out = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", open(out_file, errors="replace").read())
exit_status = (re.findall(r"Exit status:\s*(.*)", out) or ["?"])[-1].strip()
def last(field):
    m = re.findall(rf"{field}:\s+(\d+)", out)
    return int(m[-1]) if m else -1
before, after = json.loads(before), json.loads(after)
errs = int(after.get("flo_http_protocol_errors_total", 0) - before.get("flo_http_protocol_errors_total", 0))
lat = sorted(r["lat"])
mx = lat[-1] * 1000 if lat else float("nan")
p99 = lat[int(len(lat) * 0.99) - 1] * 1000 if lat else float("nan")
verdict = "ok" if lat and mx < 1000 and r["failed"] == 0 else "SLOW"
available = "NO" if re.search(r"service available:\s+NO", out) else "YES"
print(f"slow-clients: {mode}: {conns} conns {duration} s; probe {len(lat) + r['failed']} sent, {r['failed']} failed, "
      f"max {mx:.1f} ms, p99 {p99:.1f} ms (< 1 s {verdict}); max RSS {r['rss'] / 2**20:.0f} MiB, max fds {r['fds']}; "
      f"closed by the server's timeouts: 408s {errs}; open at end "
      f"{int(after.get('flo_http_connections_active', -1))}; slowhttptest: service available "
      f"{available} ({exit_status})")
EOF
done
