#!/usr/bin/env python3
"""Times queries (median of N, one connection, sequential) against Flo's FloQL endpoint or
InfluxDB 1.x's InfluxQL endpoint, so both are timed by the same client.

usage: ts_query.py flo|influx URL DB N NAME=QUERY...
prints one JSON object: {name: {"median_ms", "all_ms", "series", "points"}}
"""
import http.client, json, statistics, sys, time, urllib.parse

kind, url, db, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
host = urllib.parse.urlparse(url).netloc
conn = http.client.HTTPConnection(host, timeout=300)


def run(q):
    if kind == "flo":
        body = json.dumps({"query": q})
        conn.request("POST", f"/api/v1/ts/{db}/query", body, {"Content-Type": "application/json"})
    else:
        conn.request("GET", "/query?" + urllib.parse.urlencode({"db": db, "q": q, "epoch": "ms"}))
    r = conn.getresponse()
    data = r.read()
    if r.status != 200:
        raise SystemExit(f"{kind} {q!r}: {r.status} {data[:300]!r}")
    d = json.loads(data)
    if kind == "flo":
        series = d["series"]
        return len(series), sum(len(s["points"]) for s in series)
    res = d["results"][0]
    if "error" in res:
        raise SystemExit(f"influx {q!r}: {res['error']}")
    series = res.get("series", [])
    return len(series), sum(len(s["values"]) for s in series)


out = {}
for spec in sys.argv[5:]:
    name, q = spec.split("=", 1)
    run(q)  # warm-up
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        shape = run(q)
        times.append((time.perf_counter() - t0) * 1e3)
    out[name] = {"median_ms": statistics.median(times), "all_ms": times, "series": shape[0], "points": shape[1]}
print(json.dumps(out))
