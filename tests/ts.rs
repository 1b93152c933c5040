//! Time series through the real binary: line-protocol writes (precisions, server time for a
//! missing timestamp, string fields dropped, comments, empty bodies), a bad line answered 400
//! with its line number and nothing of the body written (also when its lines span shards),
//! the InfluxDB-compatible endpoints (204, ns default, gzip bodies, partial writes), listings,
//! FloQL answers and errors with positions, heads filling into chunks (bit-exact values, late
//! and rewritten points, fewer bytes per sample), retention, and all of it across SIGTERM and
//! SIGKILL restarts.

mod common;

use std::io::Write;

use common::{now_ms, Response, Server};
use serde_json::{json, Value};

fn write(s: &Server, ns: &str, query: &str, body: &str) -> Response {
    s.request(
        "POST",
        &format!("/api/v1/ts/{ns}/write{query}"),
        &[("Content-Type", "text/plain")],
        body.as_bytes(),
    )
}

fn query(s: &Server, ns: &str, q: &str) -> Response {
    s.post_json(&format!("/api/v1/ts/{ns}/query"), &json!({ "query": q }).to_string())
}

/// The answer's series as (field, tags as "k=v,..", points).
/// Points of an answer; `None` for a value answered as null.
type Points = Vec<(i64, Option<f64>)>;

fn series(r: &Response) -> Vec<(String, String, Points)> {
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    v["series"]
        .as_array()
        .expect("series")
        .iter()
        .map(|s| {
            let tags = s["tags"]
                .as_object()
                .expect("tags")
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().expect("tag value")))
                .collect::<Vec<_>>()
                .join(",");
            let pts = s["points"]
                .as_array()
                .expect("points")
                .iter()
                .map(|p| (p[0].as_i64().expect("ts"), p[1].as_f64()))
                .collect();
            (s["field"].as_str().expect("field").to_string(), tags, pts)
        })
        .collect()
}

fn points(r: &Response) -> Vec<(i64, f64)> {
    let all = series(r);
    assert_eq!(all.len(), 1, "one series expected: {}", r.text());
    all[0].2.iter().map(|(t, v)| (*t, v.expect("a finite value"))).collect()
}

fn measurements(s: &Server, ns: &str) -> Value {
    let r = s.get(&format!("/api/v1/ts/{ns}"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["measurements"].clone()
}

#[test]
fn writes_in_every_precision_are_read_back_in_ms() {
    let s = Server::start();
    let r = write(
        &s,
        "app",
        "",
        "# a comment\n\ncpu,host=a usage=1.5,n=3i,u=4u,b=true,msg=\"hi there\" 1000\n",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"points_written": 1, "fields_dropped": 1}));
    for (p, ts) in [("s", "2"), ("ms", "3000"), ("us", "4000000"), ("ns", "5000000000")] {
        let r = write(
            &s,
            "app",
            &format!("?precision={p}"),
            &format!("cpu,host=a usage=9 {ts}"),
        );
        assert_eq!(r.status, 200, "{p}: {}", r.text());
    }
    let all = series(&query(&s, "app", "cpu[0..10000]"));
    let fields: Vec<(&str, Points)> = all.iter().map(|(f, _, p)| (f.as_str(), p.clone())).collect();
    assert_eq!(
        fields,
        [
            ("b", vec![(1000, Some(1.0))]),
            ("n", vec![(1000, Some(3.0))]),
            ("u", vec![(1000, Some(4.0))]),
            (
                "usage",
                vec![
                    (1000, Some(1.5)),
                    (2000, Some(9.0)),
                    (3000, Some(9.0)),
                    (4000, Some(9.0)),
                    (5000, Some(9.0))
                ]
            ),
        ]
    );
    // No timestamp: the server's time.
    let before = now_ms() as i64;
    assert_eq!(write(&s, "app", "", "mem,host=a used=1").status, 200);
    let after = now_ms() as i64;
    let pts = points(&query(&s, "app", "mem[1m]"));
    assert!(
        pts.len() == 1 && pts[0].0 >= before - 100 && pts[0].0 <= after + 100,
        "{pts:?}"
    );
    // Empty and comment-only bodies write nothing and succeed.
    for body in ["", "# nothing\n\n"] {
        let r = write(&s, "app", "", body);
        assert_eq!(
            (r.status, r.json()),
            (200, json!({"points_written": 0, "fields_dropped": 0}))
        );
    }
    assert_eq!(write(&s, "app", "?precision=h", "cpu usage=1 1").status, 400);
}

#[test]
fn a_bad_line_is_400_with_its_number_and_nothing_of_the_body_is_written() {
    let s = Server::builder().shards(2).start();
    // Many hosts, so the good lines span both shards.
    let mut body = String::new();
    for h in 0..40 {
        body.push_str(&format!("cpu,host=h{h} usage={h} 1000\n"));
    }
    body.push_str("cpu,host=x usage=1,usage=2i 1000\n");
    let r = write(&s, "app", "", &body);
    assert_eq!(r.status, 400, "{}", r.text());
    let v = r.json();
    assert_eq!(v["error"], "bad_request");
    assert_eq!(v["details"]["line"], 41);
    assert!(v["details"]["reason"].as_str().unwrap().contains("usage"), "{v}");
    assert_eq!(measurements(&s, "app"), json!([]), "nothing written");
    assert!(series(&query(&s, "app", "cpu[0..2000]")).is_empty());
    let long_tag = format!("cpu,host={} usage=1", "h".repeat(70_000));
    for (bad, why) in [
        ("_cpu usage=1", "underscore measurement"),
        ("cpu,time=1 usage=1", "time tag"),
        ("cpu usage", "no value"),
        ("cpu,host=a,host=b usage=1", "repeated tag"),
        ("cpu,host=a host=1", "field is also a tag"),
        ("cpu usage=1 99999999999999999999", "timestamp out of range"),
        (&long_tag, "a tag value longer than the log's names hold"),
    ] {
        let r = write(&s, "app", "", bad);
        assert_eq!(r.status, 400, "{why}: {}", r.text());
        assert_eq!(r.json()["details"]["line"], 1, "{why}");
    }
    // A large body is parsed in pieces on every shard: the line number is still the body's,
    // and nothing is written.
    let mut big = String::new();
    for i in 0..6000 {
        big.push_str(&format!("big,host=h{} usage={i} {}\n", i % 97, 1000 + i));
    }
    assert!(big.len() > 128 * 1024);
    let good_big = big.clone();
    big.push_str("big,host=x usage=\n");
    big.push_str("big,host=y usage=1 1\n");
    let r = write(&s, "app", "", &big);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["details"]["line"], 6001);
    assert!(series(&query(&s, "app", "big[0..100000]")).is_empty());
    let r = write(&s, "app", "", &good_big);
    assert_eq!(r.json()["points_written"], 6000);
    let counted = series(&query(&s, "app", "big[0..100000] | count()"));
    assert_eq!(counted.len(), 97);
    assert_eq!(counted.iter().map(|(_, _, p)| p[0].1.unwrap()).sum::<f64>(), 6000.0);
    // The same body without the bad line is written whole.
    let good: String = body.lines().take(40).map(|l| format!("{l}\n")).collect();
    assert_eq!(write(&s, "app", "", &good).status, 200);
    let m = measurements(&s, "app");
    assert_eq!(
        (m[1]["name"].clone(), m[1]["series_count"].clone()),
        (json!("cpu"), json!(40))
    );
}

#[test]
fn influxdb_endpoints_take_ns_gzip_and_partial_writes() {
    let s = Server::start();
    let r = s.request("POST", "/write?db=influx", &[], b"cpu,host=a usage=1 1000000000");
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(r.body.is_empty());
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"cpu,host=a usage=2 2000000000\ncpu,host=a usage=3 3000000000\n")
        .unwrap();
    let gz = gz.finish().unwrap();
    let r = s.request(
        "POST",
        "/api/v2/write?bucket=influx&precision=ns",
        &[("Content-Encoding", "gzip")],
        &gz,
    );
    assert_eq!(r.status, 204, "{}", r.text());
    let r = s.request(
        "POST",
        "/write?db=influx&precision=s",
        &[],
        b"cpu,host=a usage=4 4\nnot a line\ncpu,host=a usage=5 5\n",
    );
    assert_eq!(r.status, 400, "a partial write is reported");
    let v = r.json();
    assert!(v["message"].as_str().unwrap().starts_with("partial write"), "{v}");
    assert_eq!(v["details"]["dropped"], 1);
    assert_eq!(
        points(&query(&s, "influx", "cpu[0..10000]")),
        [(1000, 1.0), (2000, 2.0), (3000, 3.0), (4000, 4.0), (5000, 5.0)],
        "the valid lines of the partial write are kept"
    );
    assert_eq!(s.request("POST", "/write", &[], b"cpu usage=1").status, 400, "no db");
    let bomb = {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![b'#'; 40 << 20]).unwrap();
        gz.finish().unwrap()
    };
    assert_eq!(s.request("POST", "/write?db=influx", &[], &bomb).status, 413);
}

#[test]
fn floql_answers_and_reports_errors_at_their_position() {
    let s = Server::builder().shards(2).start();
    let mut body = String::new();
    for (h, region) in [("a", "eu"), ("b", "eu"), ("c", "us")] {
        for i in 0..12i64 {
            let v = match h {
                "a" => i as f64,
                "b" => 10.0 * i as f64,
                _ => 100.0,
            };
            body.push_str(&format!("cpu,host={h},region={region} usage={v} {}\n", i * 60_000));
        }
    }
    assert_eq!(write(&s, "q", "", &body).status, 200);
    let r = query(&s, "q", "cpu{host=a}[0..719999] | avg(5m)");
    assert_eq!(points(&r), [(0, 2.0), (300_000, 7.0), (600_000, 10.5)]);
    let r = query(&s, "q", "cpu{region=eu}[0..719999] | group_by(region) | sum(10m)");
    assert_eq!(points(&r), [(0, 495.0), (600_000, 231.0)]);
    let r = query(&s, "q", "cpu{host=~\"a|b\"}[0..719999] | max()");
    assert_eq!(
        series(&r)
            .iter()
            .map(|(_, t, p)| (t.clone(), p.clone()))
            .collect::<Vec<_>>(),
        [
            ("host=a,region=eu".to_string(), vec![(0, Some(11.0))]),
            ("host=b,region=eu".to_string(), vec![(0, Some(110.0))])
        ]
    );
    let r = query(&s, "q", "cpu[0..719999] | last() | topk(1)");
    assert_eq!(series(&r)[0].1, "host=b,region=eu");
    let r = query(
        &s,
        "q",
        "cpu{host!=c}[0..719999] | rate() | where(value > 0.1) | count()",
    );
    assert_eq!(series(&r).len(), 1, "only b rises faster than 0.1/s");
    assert!(series(&query(&s, "q", "nothing[1h]")).is_empty());
    assert!(series(&query(&s, "elsewhere", "cpu[1h]")).is_empty());
    for (q, pos) in [
        ("cpu{host=a", 10),
        ("cpu | avg(5x)", 11),
        ("cpu{host=~\"(\"}", 10),
        ("cpu | nope()", 6),
    ] {
        let r = query(&s, "q", q);
        assert_eq!(r.status, 400, "{q}: {}", r.text());
        assert_eq!(r.json()["details"]["position"], pos, "{q}: {}", r.text());
    }
    let r = s.post_json("/api/v1/ts/q/query", r#"{"query":"cpu","limit":1}"#);
    assert_eq!(r.status, 400, "unknown field");
}

#[test]
fn heads_fill_into_chunks_and_every_point_survives_restarts() {
    let mut s = Server::builder().shards(2).start();
    let n = 5000i64;
    // Values with many bits, written out of order in batches, plus a rewrite and late points.
    let value = |i: i64| (i as f64 * 0.1).sin() * 1e3 + 1.0 / 3.0;
    let mut ts: Vec<i64> = (0..n).collect();
    ts.reverse();
    ts[100..300].sort();
    for chunk in ts.chunks(700) {
        let body: String = chunk
            .iter()
            .map(|i| format!("sensor,id=s1 v={:?} {}\n", value(*i), i * 1000))
            .collect();
        assert_eq!(write(&s, "c", "", &body).status, 200);
    }
    // A rewrite of a point long in a chunk, and one still in the head: last write wins.
    assert_eq!(
        write(&s, "c", "", "sensor,id=s1 v=-1 5000\nsensor,id=s1 v=-2 4999000").status,
        200
    );
    let want = |i: i64| match i {
        5 => -1.0,
        4999 => -2.0,
        _ => value(i),
    };
    let check = |s: &Server, when: &str| {
        let got = points(&query(s, "c", &format!("sensor[0..{}]", n * 1000)));
        assert_eq!(got.len(), n as usize, "{when}");
        for (i, (t, v)) in got.iter().enumerate() {
            assert_eq!(*t, i as i64 * 1000, "{when}");
            assert_eq!(v.to_bits(), want(i as i64).to_bits(), "{when}: point {i}");
        }
        let m = &measurements(s, "c")[0];
        let (samples, bytes) = (m["samples"].as_u64().unwrap(), m["bytes"].as_u64().unwrap());
        assert!(samples >= n as u64, "{when}: {m}");
        assert!(
            bytes < 20 * samples,
            "{when}: chunked points take less than raw ones: {bytes} bytes for {samples} samples"
        );
    };
    check(&s, "live");
    s.sigkill();
    s.restart();
    check(&s, "after SIGKILL");
    let r = s.sigterm();
    assert!(r.success());
    s.restart();
    check(&s, "after SIGTERM");
    // Aggregates over chunks and heads agree with the points.
    let r = query(&s, "c", &format!("sensor[0..{}] | count()", n * 1000));
    assert_eq!(points(&r), [(0, n as f64)]);
}

#[test]
fn listings_and_retention() {
    let s = Server::builder().shards(2).start();
    let now = now_ms() as i64;
    let body = format!(
        "cpu,host=a usage=1,idle=2 {}\ncpu,host=b usage=3 {}\ndisk,dev=sda used=5 {}\n",
        now - 3_600_000,
        now,
        now
    );
    assert_eq!(write(&s, "l", "", &body).status, 200);
    let m = measurements(&s, "l");
    assert_eq!(m[0]["name"], "cpu");
    assert_eq!(m[0]["series_count"], 3);
    assert_eq!(m[0]["fields"], json!(["idle", "usage"]));
    assert_eq!(m[0]["samples"], 3);
    assert!(m[0]["bytes"].as_u64().unwrap() > 0);
    assert_eq!(m[1]["name"], "disk");
    let r = s.get("/api/v1/ts/l/cpu/series");
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["count"], 3);
    assert_eq!(v["series"][0]["tags"], json!({"host": "a"}));
    assert_eq!(s.get("/api/v1/ts/l/nothing/series").status, 404);
    assert_eq!(measurements(&s, "empty"), json!([]));
    // Retention hides what is older at once (whole chunks are dropped by the timer).
    let r = s.put_json("/api/v1/ts/l/cpu/retention", r#"{"max_age_ms":600000}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    let got = series(&query(&s, "l", "cpu[2h]"));
    assert_eq!(got.len(), 1, "only b's recent point: {got:?}");
    assert_eq!(s.put_json("/api/v1/ts/l/cpu/retention", r#"{"max_age":1}"#).status, 400);
    assert_eq!(
        s.put_json("/api/v1/ts/l/cpu/retention", r#"{"max_age_ms":0}"#).status,
        200
    );
    assert_eq!(series(&query(&s, "l", "cpu[2h]")).len(), 3, "retention removed");
}

#[test]
fn random_walk_integers_take_about_a_byte_per_sample() {
    let s = Server::builder().shards(2).start();
    // 20 series × 2048 points, 10 s apart, values a random walk in 0..=100: two full chunks each.
    let mut rng = common::Rng(7);
    let mut body = String::new();
    for host in 0..10 {
        let (mut a, mut b) = (50i64, 50i64);
        for i in 0..2048i64 {
            a = (a + rng.below(3) as i64 - 1).clamp(0, 100);
            b = (b + rng.below(3) as i64 - 1).clamp(0, 100);
            body.push_str(&format!("cpu,host=h{host} user={a}i,system={b}i {}\n", i * 10_000));
        }
    }
    assert_eq!(write(&s, "w", "", &body).status, 200);
    let m = &measurements(&s, "w")[0];
    let (samples, bytes) = (m["samples"].as_u64().unwrap(), m["bytes"].as_u64().unwrap());
    assert_eq!(samples, 20 * 2048);
    let per = bytes as f64 / samples as f64;
    assert!(per < 1.5, "{per:.3} bytes per sample ({bytes} / {samples})");
    let r = query(&s, "w", "cpu{host=h3}[0..20480000] | field(user) | count()");
    assert_eq!(points(&r), [(0, 2048.0)]);
}

#[test]
fn a_series_lives_on_the_shard_its_line_key_hashes_to() {
    // format-spec/ts.md: the owner is the shard of partition H(line key) mod partitions, H written
    // out in the spec; tests/common computes it from the spec alone.
    let s = Server::builder().shards(2).start();
    let mut prev = vec![0u64, 0];
    for (i, host) in ["web-01", "db-7", "x", "a-rather-long-host-name-for-the-hash"]
        .iter()
        .enumerate()
    {
        let ns = format!("place{i}");
        let body = format!("cpu,zone=eu,host={host} usage=1,idle=2 1000\n");
        assert_eq!(write(&s, &ns, "", &body).status, 200);
        let want = common::spec_ts_owner_shard("cpu", &[("host", host), ("zone", "eu")], 64, 2) as usize;
        // The per-shard series gauge comes from the shard's 1 s timer.
        let counts = common::poll("the series gauge", std::time::Duration::from_secs(10), || {
            let m = s.get("/api/v1/metrics").json();
            let counts: Vec<u64> = m["shards"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["ts_series"].as_u64().unwrap())
                .collect();
            (counts.iter().sum::<u64>() == prev.iter().sum::<u64>() + 2).then_some(counts)
        });
        let grew: Vec<u64> = counts.iter().zip(&prev).map(|(a, b)| a - b).collect();
        let mut expected = vec![0u64, 0];
        expected[want] = 2;
        assert_eq!(
            grew, expected,
            "{host}: where its two series went; the spec says shard {want}"
        );
        prev = counts;
    }
}

#[test]
fn one_write_of_more_points_than_a_chunk_holds_is_kept_whole() {
    // 70 000 points of one series in one body: the head outgrows one chunk (65 535 points).
    let mut s = Server::builder().shards(2).start();
    let n = 70_000i64;
    let body: String = (0..n).map(|i| format!("big,id=1 v={i} {i}\n")).collect();
    let r = write(&s, "many", "", &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let check = |s: &Server, when: &str| {
        let got = points(&query(s, "many", &format!("big[0..{n}]")));
        assert_eq!(got.len(), n as usize, "{when}");
        assert!(
            got.iter().enumerate().all(|(i, p)| *p == (i as i64, i as f64)),
            "{when}"
        );
    };
    check(&s, "live");
    s.sigkill();
    s.restart();
    check(&s, "after SIGKILL");
}

#[test]
fn retention_drops_whole_chunks_and_the_drop_survives_a_restart() {
    let config = "[ts]\nhead_age_ms = 1000\n";
    let mut s = Server::builder().shards(2).config(config).start();
    let now = now_ms() as i64;
    // 1024 points two hours old fill a head, which is cut into a chunk; a recent point, written
    // after, starts the next head (a chunk is dropped only when all its points are too old).
    let body: String = (0..1024)
        .map(|i| format!("old,id=1 v={i} {}\n", now - 7_200_000 + i))
        .collect();
    assert_eq!(write(&s, "ret", "", &body).status, 200);
    assert_eq!(write(&s, "ret", "", &format!("old,id=1 v=-1 {now}")).status, 200);
    let samples = |s: &Server| measurements(s, "ret")[0]["samples"].as_u64().unwrap();
    assert_eq!(samples(&s), 1025);
    let r = s.put_json("/api/v1/ts/ret/old/retention", r#"{"max_age_ms":3600000}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    // The shard timer drops the chunk (TS_DROP); the recent point is kept.
    common::poll("the old chunk dropped", std::time::Duration::from_secs(10), || {
        (samples(&s) == 1).then_some(())
    });
    s.sigkill();
    s.restart();
    assert_eq!(samples(&s), 1, "the drop is in the log");
    assert_eq!(points(&query(&s, "ret", "old[3h]")), [(now, -1.0)]);
    // Without retention, nothing dropped comes back.
    assert_eq!(
        s.put_json("/api/v1/ts/ret/old/retention", r#"{"max_age_ms":0}"#).status,
        200
    );
    assert_eq!(points(&query(&s, "ret", "old[3h]")), [(now, -1.0)]);
}
