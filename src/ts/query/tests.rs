//! Unit tests of the executor: window alignment, each aggregation, exact partial merges (any split
//! of series over shards gives the single-shard answer bit for bit), rate with counter resets,
//! percentile interpolation, rounding, filters, limits and the JSON answer. The golden tests
//! (`tests/floql/*.test`) cover whole queries.

use super::agg::{percentile_sorted, window_start, ExactSum};
use super::transform::{delta, holds, rate_points, rate_windows, round_places};
use super::*;
use crate::test_rng::Rng;
use crate::ts::floql::{parse, AggFunc};

const M: i64 = 60_000;

fn plan(text: &str, now_ms: i64) -> Plan {
    let q = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    Plan::new(&q, now_ms).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn series(field: &str, tags: &[(&str, &str)], points: &[(i64, f64)]) -> SeriesData {
    SeriesData {
        measurement: "cpu".to_string(),
        field: field.to_string(),
        tags: tags.iter().map(|&(k, v)| (k.to_string(), v.to_string())).collect(),
        points: points.to_vec(),
    }
}

/// Runs `text` with each series on the shard `shard_of` names, out of `shards` shards.
fn run_on(text: &str, data: &[SeriesData], shards: usize, shard_of: impl Fn(usize) -> usize) -> Vec<SeriesData> {
    let p = plan(text, 0);
    let (from, to) = p.range();
    let mut per_shard = vec![Vec::new(); shards];
    for (i, s) in data.iter().enumerate() {
        let tags: Vec<(&str, &str)> = s.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        if s.measurement == p.measurement() && p.matches(&tags, &s.field) {
            let mut s = s.clone();
            s.points.retain(|&(t, _)| t >= from && t <= to);
            per_shard[shard_of(i) % shards].push(s);
        }
    }
    let outs = per_shard
        .into_iter()
        .map(|ss| p.shard(ss).unwrap_or_else(|e| panic!("{text:?}: {e}")))
        .collect();
    p.finish(outs).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn run(text: &str, data: &[SeriesData]) -> Vec<SeriesData> {
    run_on(text, data, 1, |_| 0)
}

fn points_of(out: &[SeriesData]) -> Vec<Vec<(i64, f64)>> {
    out.iter().map(|s| s.points.clone()).collect()
}

/// A series with its values as bit patterns, to compare answers exactly.
type Bits = (String, String, Vec<(String, String)>, Vec<(i64, u64)>);

fn bits(out: &[SeriesData]) -> Vec<Bits> {
    out.iter()
        .map(|s| {
            (
                s.measurement.clone(),
                s.field.clone(),
                s.tags.clone(),
                s.points.iter().map(|&(t, v)| (t, v.to_bits())).collect(),
            )
        })
        .collect()
}

#[test]
fn windows_align_to_multiples_of_the_width_since_the_epoch() {
    let cases = [
        (0, 60_000, 0),
        (59_999, 60_000, 0),
        (60_000, 60_000, 60_000),
        (61_000, 60_000, 60_000),
        (-1, 60_000, -60_000),
        (-60_000, 60_000, -60_000),
        (-60_001, 60_000, -120_000),
        (1_718_900_123_456, 300_000, 1_718_900_100_000),
        (5, 1, 5),
        (-5, 1, -5),
        (i64::MAX, i64::MAX as u64, i64::MAX),
        (-1, i64::MAX as u64, -i64::MAX),
        (i64::MIN, 1_000, i64::MIN),
        (i64::MIN + 1_192, 1_000, i64::MIN + 808),
        (i64::MIN, i64::MAX as u64, i64::MIN),
        (123, u64::MAX, 0),
        (-123, u64::MAX, i64::MIN),
    ];
    for (ts, d, want) in cases {
        assert_eq!(window_start(ts, d), want, "window_start({ts}, {d})");
    }
}

#[test]
fn windowed_aggregation_with_negative_timestamps() {
    let data = [series(
        "v",
        &[],
        &[
            (-2 * M - 1, 1.0),
            (-M - 1, 2.0),
            (-M, 3.0),
            (-1, 4.0),
            (0, 5.0),
            (M - 1, 6.0),
        ],
    )];
    let out = run(&format!("cpu[{}..{}] | sum(1m)", -3 * M, M), &data);
    assert_eq!(
        points_of(&out),
        vec![vec![(-3 * M, 1.0), (-2 * M, 2.0), (-M, 7.0), (0, 11.0)]]
    );
    // window() then an aggregation is the same, and a whole-range aggregate is stamped at the start.
    let out2 = run(&format!("cpu[{}..{}] | window(1m) | sum()", -3 * M, M), &data);
    assert_eq!(out, out2);
    let whole = run(&format!("cpu[{}..{}] | count()", -3 * M, M), &data);
    assert_eq!(points_of(&whole), vec![vec![(-3 * M, 6.0)]]);
}

#[test]
fn each_aggregation() {
    let data = [series(
        "v",
        &[],
        &[(0, 1.0), (10, 4.0), (20, 2.0), (30, 3.0), (M, 10.0)],
    )];
    let cases = [
        ("avg", vec![(0, 2.5), (M, 10.0)]),
        ("sum", vec![(0, 10.0), (M, 10.0)]),
        ("count", vec![(0, 4.0), (M, 1.0)]),
        ("min", vec![(0, 1.0), (M, 10.0)]),
        ("max", vec![(0, 4.0), (M, 10.0)]),
        ("first", vec![(0, 1.0), (M, 10.0)]),
        ("last", vec![(0, 3.0), (M, 10.0)]),
        ("percentile(50)", vec![(0, 2.5), (M, 10.0)]),
    ];
    for (agg, want) in cases {
        let text = if agg.ends_with(')') {
            format!("cpu[0..{}] | window(1m) | {agg}", 2 * M)
        } else {
            format!("cpu[0..{}] | {agg}(1m)", 2 * M)
        };
        assert_eq!(points_of(&run(&text, &data)), vec![want], "{text}");
    }
}

#[test]
fn exact_sums() {
    let mut s = ExactSum::default();
    for x in [1e100, 1.0, -1e100] {
        s.add(x);
    }
    assert_eq!(s.value(), 1.0);
    let mut tenth = ExactSum::default();
    for _ in 0..10 {
        tenth.add(0.1);
    }
    assert_eq!(tenth.value(), 1.0, "the correctly rounded sum, not 0.9999999999999999");
    let mut inf = ExactSum::default();
    inf.add(f64::INFINITY);
    inf.add(1.0);
    assert_eq!(inf.value(), f64::INFINITY);
    inf.add(f64::NEG_INFINITY);
    assert!(inf.value().is_nan());
    let mut over = ExactSum::default();
    over.add(f64::MAX);
    over.add(f64::MAX);
    assert_eq!(over.value(), f64::INFINITY);
    assert_eq!(ExactSum::default().value(), 0.0);
}

#[test]
fn min_max_skip_nan_and_avg_propagates_it() {
    let data = [series("v", &[], &[(0, 0.0), (1, 2.0), (2, -1.0)])];
    // math(1 / value) makes +inf at 0; math(value / value) makes NaN at 0.
    let out = run("cpu[0..10] | math(value / value) | min()", &data);
    assert_eq!(points_of(&out), vec![vec![(0, 1.0)]]);
    let out = run("cpu[0..10] | math(value / value) | max()", &data);
    assert_eq!(points_of(&out), vec![vec![(0, 1.0)]]);
    let out = run("cpu[0..10] | math(value / value) | avg()", &data);
    assert!(out[0].points[0].1.is_nan());
    let out = run("cpu[0..10] | math(1 / value) | max()", &data);
    assert_eq!(points_of(&out), vec![vec![(0, f64::INFINITY)]]);
}

#[test]
fn percentile_interpolates_between_closest_ranks() {
    let vs = [1.0, 2.0, 3.0, 4.0];
    assert_eq!(percentile_sorted(&vs, 0.0), 1.0);
    assert_eq!(percentile_sorted(&vs, 1.0), 4.0);
    assert_eq!(percentile_sorted(&vs, 0.5), 2.5);
    assert_eq!(percentile_sorted(&vs, 0.25), 1.75);
    assert_eq!(percentile_sorted(&[10.0, 20.0, 30.0, 40.0, 50.0], 0.9), 46.0);
    assert_eq!(percentile_sorted(&[7.0], 0.3), 7.0);
    assert!(percentile_sorted(&[], 0.5).is_nan());
    // Through a query: unsorted input, NaN skipped.
    let data = [series("v", &[], &[(0, 4.0), (1, 1.0), (2, 3.0), (3, 2.0)])];
    let out = run("cpu[0..10] | percentile(0.25)", &data);
    assert_eq!(points_of(&out), vec![vec![(0, 1.75)]]);
    // (value - 4) / (value - 4) * value: NaN for 4, else the value.
    let out = run(
        "cpu[0..10] | math((value - 4) / (value - 4) * value) | percentile(1)",
        &data,
    );
    assert_eq!(points_of(&out), vec![vec![(0, 3.0)]]);
    let out = run(
        "cpu[0..10] | math((value - 4) / (value - 4) * value) | percentile(0.5)",
        &data,
    );
    assert_eq!(points_of(&out), vec![vec![(0, 2.0)]]);
}

#[test]
fn rate_handles_counter_resets() {
    let pts = [(0, 10.0), (1000, 20.0), (2000, 5.0), (3000, 15.0), (5000, 17.0)];
    assert_eq!(
        rate_points(&pts),
        vec![(1000, 10.0), (2000, 5.0), (3000, 10.0), (5000, 1.0)]
    );
    // Windows of 2 s: increases 10 @1000 → [0], 5 @2000 and 10 @3000 → [2000], 2 @5000 → [4000].
    assert_eq!(rate_windows(&pts, 2000), vec![(0, 5.0), (2000, 7.5), (4000, 1.0)]);
    // A lone point has no increase; equal timestamps (a union) give no rate() point.
    assert!(rate_windows(&[(0, 1.0)], 1000).is_empty());
    assert_eq!(rate_points(&[(0, 1.0), (0, 2.0), (1000, 4.0)]), vec![(1000, 2.0)]);
    // window(d) | rate() is rate(d).
    let data = [series("c", &[], &pts)];
    assert_eq!(
        run("cpu[0..10000] | window(2s) | rate()", &data),
        run("cpu[0..10000] | rate(2s)", &data)
    );
}

#[test]
fn delta_where_and_math() {
    assert_eq!(delta(&[(0, 1.0), (5, 4.0), (9, 2.0)]), vec![(5, 3.0), (9, -2.0)]);
    assert!(delta(&[(0, 1.0)]).is_empty());
    assert!(!holds(f64::NAN, Cmp::Ne, 1.0));
    assert!(holds(2.0, Cmp::Ne, 1.0));
    assert!(holds(1.0, Cmp::Ge, 1.0));
    assert!(!holds(1.0, Cmp::Gt, 1.0));
    let data = [series("v", &[], &[(0, 10.0), (1, -7.5)])];
    let out = run("cpu[0..10] | math(-(value * 1.8 + 32) % 7)", &data);
    let want = |v: f64| -(v * 1.8 + 32.0) % 7.0;
    assert_eq!(points_of(&out), vec![vec![(0, want(10.0)), (1, want(-7.5))]]);
    let out = run("cpu[0..10] | where(value < 0) | abs()", &data);
    assert_eq!(points_of(&out), vec![vec![(1, 7.5)]]);
    assert!(
        run("cpu[0..10] | where(value > 100)", &data).is_empty(),
        "a series left empty is omitted"
    );
}

#[test]
fn rounding_is_half_away_from_zero_on_the_exact_value() {
    let cases = [
        (2.5, 0, 3.0),
        (-2.5, 0, -3.0),
        (0.5, 0, 1.0),
        (1.5, 0, 2.0),
        (0.125, 2, 0.13),
        (-0.125, 2, -0.13),
        (2.675, 2, 2.67),
        (1.005, 2, 1.0),
        (1234.5678, 2, 1234.57),
        (1234.5678, 0, 1235.0),
        (0.1 + 0.2, 15, 0.3),
        (1e300, 5, 1e300),
        (1.2345678901234567e-25, 30, 1.23457e-25),
        (4503599627370495.5, 0, 4503599627370496.0),
        (f64::INFINITY, 2, f64::INFINITY),
    ];
    for (v, n, want) in cases {
        assert_eq!(round_places(v, n), want, "round({v}, {n})");
    }
    assert!(round_places(f64::NAN, 1).is_nan());
    let data = [series("v", &[], &[(0, 1.25), (1, -1.35), (2, 1.7)])];
    assert_eq!(
        points_of(&run("cpu[0..10] | round(1)", &data)),
        vec![vec![(0, 1.3), (1, -1.4), (2, 1.7)]]
    );
    assert_eq!(
        points_of(&run("cpu[0..10] | ceil()", &data)),
        vec![vec![(0, 2.0), (1, -1.0), (2, 2.0)]]
    );
    assert_eq!(
        points_of(&run("cpu[0..10] | floor()", &data)),
        vec![vec![(0, 1.0), (1, -2.0), (2, 1.0)]]
    );
}

#[test]
fn tag_filters_treat_an_absent_tag_as_empty() {
    let p = plan(r#"cpu{host=a,dc!=x,rack=~"r[0-9]",env!~prod,zone="",path=~".*"}"#, 0);
    assert!(p.matches(&[("host", "a"), ("rack", "r1")], "v"));
    assert!(
        !p.matches(&[("host", "a"), ("rack", "r10")], "v"),
        "regexes are anchored"
    );
    assert!(!p.matches(&[("host", "a")], "v"), "an absent rack is \"\", not r[0-9]");
    assert!(!p.matches(&[("host", "a"), ("rack", "r1"), ("dc", "x")], "v"));
    assert!(p.matches(&[("host", "a"), ("rack", "r1"), ("dc", "y")], "v"));
    assert!(!p.matches(&[("host", "a"), ("rack", "r1"), ("env", "prod")], "v"));
    assert!(p.matches(&[("host", "a"), ("rack", "r1"), ("env", "production")], "v"));
    assert!(!p.matches(&[("host", "a"), ("rack", "r1"), ("zone", "z")], "v"));
    assert!(!p.matches(&[("rack", "r1")], "v"));
    assert_eq!(p.equal_filters(), vec![("host", "a")]);
    // A leading field restriction is pushed down; one after topk is not.
    let p = plan("cpu | avg(usage)", 0);
    assert!(p.matches(&[], "usage") && !p.matches(&[], "idle"));
    let p = plan("cpu | topk(1) | field(usage)", 0);
    assert!(p.matches(&[], "idle"));
}

#[test]
fn ranges_resolve_against_now() {
    assert_eq!(plan("cpu", 10_000_000).range(), (6_400_000, 10_000_000));
    assert_eq!(plan("cpu[5m]", 10_000_000).range(), (9_700_000, 10_000_000));
    assert_eq!(plan("cpu[-5..7]", 10_000_000).range(), (-5, 7));
    assert_eq!(plan("cpu[1w]", i64::MIN + 5).range(), (i64::MIN, i64::MIN + 5));
}

#[test]
fn a_bad_regex_is_an_error_at_its_position() {
    let q = parse("cpu{host=~\"a(b\"}").expect("parses");
    let e = Plan::new(&q, 0).expect_err("a bad regex");
    assert_eq!(e.position, 10);
    assert!(e.message.contains("invalid regex"), "{e:?}");
    assert!(!e.message.contains('\n'), "one line: {e:?}");
}

#[test]
fn group_by_merges_series_and_keeps_only_its_tags() {
    let data = [
        series("v", &[("dc", "x"), ("host", "a")], &[(0, 1.0), (10, 2.0)]),
        series("v", &[("dc", "x"), ("host", "b")], &[(0, 3.0)]),
        series("v", &[("host", "c")], &[(5, 10.0)]),
        series("w", &[("dc", "x")], &[(0, 100.0)]),
    ];
    let out = run("cpu[0..100] | group_by(dc) | avg()", &data);
    assert_eq!(
        out,
        vec![
            series("v", &[], &[(0, 10.0)]),
            series("v", &[("dc", "x")], &[(0, 2.0)]),
            series("w", &[("dc", "x")], &[(0, 100.0)]),
        ]
    );
    // Without an aggregation: the union, duplicate timestamps kept in series-key order.
    let out = run("cpu[0..100] | field(v) | group_by(dc)", &data);
    assert_eq!(
        points_of(&out),
        vec![vec![(5, 10.0)], vec![(0, 1.0), (0, 3.0), (10, 2.0)]]
    );
}

#[test]
fn topk_and_bottomk_rank_by_last_value_ties_by_key() {
    let data = [
        series("v", &[("host", "a")], &[(0, 5.0), (1, 1.0)]),
        series("v", &[("host", "b")], &[(0, 3.0)]),
        series("v", &[("host", "c")], &[(0, 3.0)]),
        series("v", &[("host", "d")], &[(0, 9.0)]),
    ];
    let hosts = |out: Vec<SeriesData>| out.into_iter().map(|s| s.tags[0].1.clone()).collect::<Vec<_>>();
    assert_eq!(hosts(run("cpu[0..10] | topk(3)", &data)), ["d", "b", "c"]);
    assert_eq!(hosts(run("cpu[0..10] | bottomk(2)", &data)), ["a", "b"]);
    // Spread over shards, each applying topk locally first: the same answer.
    assert_eq!(hosts(run_on("cpu[0..10] | topk(3)", &data, 3, |i| i)), ["d", "b", "c"]);
}

/// Random series spread over 1..5 shards in random ways answer exactly what one shard does.
#[test]
fn partial_merges_equal_the_single_shard_answer() {
    let mut rng = Rng(0x05ee_df10);
    let queries = [
        "cpu[0..600000] | group_by(dc) | avg()",
        "cpu[0..600000] | group_by(dc) | sum(1m)",
        "cpu[0..600000] | group_by(dc) | count(1m)",
        "cpu[0..600000] | group_by(dc) | min(1m)",
        "cpu[0..600000] | group_by(dc) | max(1m)",
        "cpu[0..600000] | group_by(dc) | first(1m)",
        "cpu[0..600000] | group_by(dc) | last(1m)",
        "cpu[0..600000] | group_by(dc) | percentile(0.9, 1m)",
        "cpu[0..600000] | window(2m) | group_by(dc, rack) | math(value * 3) | avg()",
        "cpu[0..600000] | rate(1m) | group_by(dc) | window(5m) | where(value > 0.05) | avg()",
        "cpu[0..600000] | group_by(dc) | delta() | avg()",
        "cpu[0..600000] | avg(1m) | topk(3)",
        "cpu[0..600000] | group_by(rack) | avg(1m) | bottomk(2) | alias(x)",
    ];
    for round in 0..20 {
        let mut data = Vec::new();
        for i in 0..12 {
            let dc = *rng.pick(&["x", "y", "z"]);
            let rack = format!("r{}", rng.below(3));
            let mut t = rng.range(0, 30_000);
            let mut points = Vec::new();
            while t <= 600_000 {
                // Values with long fractions, so any change of summation order would show.
                points.push((t, (rng.unit() * 100.0).round() / 10.0 + rng.unit() * 1e-9));
                t += rng.range(1, 40_000);
            }
            let field = if rng.chance(20) { "w" } else { "v" };
            data.push(series(
                field,
                &[("dc", dc), ("host", &format!("h{i}")), ("rack", &rack)],
                &points,
            ));
        }
        for text in queries {
            let one = run(text, &data);
            assert!(!one.is_empty(), "{text}");
            let shards = 1 + rng.index(5);
            let seed = rng.next_u64();
            let many = run_on(text, &data, shards, |i| (seed as usize).wrapping_add(i * 7919) % 11);
            assert_eq!(bits(&one), bits(&many), "round {round}: {text} on {shards} shards");
        }
    }
}

#[test]
fn partials_are_computed_on_the_shard_when_a_group_by_meets_an_aggregation() {
    let p = plan("cpu | window(1m) | group_by(dc) | where(value > 1) | avg()", 0);
    assert_eq!(p.partial_at, Some(2), "steps: group_by, where, avg");
    let out = p.shard(vec![series("v", &[("dc", "x")], &[(0, 2.0)])]).expect("runs");
    assert!(matches!(out.inner, Output::Partials(_)));
    let p = plan("cpu | group_by(dc) | delta() | avg()", 0);
    assert_eq!(p.partial_at, None);
    let p = plan("cpu | avg() | topk(2)", 0);
    assert_eq!((p.split, p.partial_at), (1, None));
    assert!(matches!(p.steps[0], Step::Agg(Func::Agg(AggFunc::Avg), None)));
}

#[test]
fn limits() {
    let p = plan("cpu", 0);
    let big = series("v", &[], &vec![(0, 1.0); MAX_POINTS_PER_SHARD + 1]);
    let e = p.shard(vec![big]).expect_err("too many points");
    assert_eq!(e.position, 0);
    assert!(e.message.contains("more than 1000000 points"), "{e:?}");
    let many: Vec<SeriesData> = (0..=MAX_SERIES)
        .map(|i| series("v", &[("host", &i.to_string())], &[(0, 1.0)]))
        .collect();
    let out = p.shard(many).expect("within the point limit");
    let e = p.finish(vec![out]).expect_err("too many series");
    assert!(e.message.contains("more than 10000 series"), "{e:?}");
    // Grouped down, the same series are fine.
    let p = plan("cpu | group_by(dc) | sum()", 0);
    let many: Vec<SeriesData> = (0..=MAX_SERIES)
        .map(|i| series("v", &[("host", &i.to_string())], &[(0, 1.0)]))
        .collect();
    let out = p.shard(many).expect("runs");
    assert_eq!(p.finish(vec![out]).expect("one group")[0].points[0].1, 10_001.0);
}

#[test]
fn alias_names_the_answer_only() {
    let data = [
        series("b", &[("host", "a")], &[(0, 1.0)]),
        series("a", &[("host", "a")], &[(0, 2.0)]),
        series("a", &[("host", "b")], &[(0, 3.0)]),
    ];
    let out = run("cpu[0..10] | alias(n) | group_by(host) | sum()", &data);
    let got: Vec<(String, String, f64)> = out
        .iter()
        .map(|s| (s.field.clone(), s.tags[0].1.clone(), s.points[0].1))
        .collect();
    assert_eq!(
        got,
        vec![
            ("n".to_string(), "a".to_string(), 2.0),
            ("n".to_string(), "a".to_string(), 1.0),
            ("n".to_string(), "b".to_string(), 3.0),
        ]
    );
}

#[test]
fn render_writes_the_documented_json() {
    let s = vec![
        SeriesData {
            measurement: "cpu".to_string(),
            field: "us\"age".to_string(),
            tags: vec![("host".to_string(), "web-01\n".to_string())],
            points: vec![(1, 82.5), (2, f64::NAN), (3, -0.0), (4, 1e300), (5, f64::NEG_INFINITY)],
        },
        series("idle", &[], &[(-7, 3.0)]),
    ];
    let mut out = Vec::new();
    render(&s, &mut out);
    let text = String::from_utf8(out).expect("utf-8");
    assert_eq!(
        text,
        r#"{"series":[{"measurement":"cpu","field":"us\"age","tags":{"host":"web-01\n"},"points":[[1,82.5],[2,null],[3,-0],[4,1e300],[5,null]]},{"measurement":"cpu","field":"idle","tags":{},"points":[[-7,3]]}]}"#
    );
    let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(v["series"][0]["points"][0][1], 82.5);
    let mut empty = Vec::new();
    render(&[], &mut empty);
    assert_eq!(empty, br#"{"series":[]}"#);
}

#[test]
fn plans_are_shareable_between_shards() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send + std::fmt::Debug>() {}
    send_sync::<Plan>();
    send::<ShardOutput>();
}
