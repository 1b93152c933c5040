//! Table-driven tests of the FloQL parser and its canonical text, plus a seeded property test
//! (random trees print and parse back) and a mutation test (never panics, errors point inside
//! the text).

use super::*;

const S: u64 = 1_000;
const M: u64 = 60_000;
const H: u64 = 3_600_000;
const D: u64 = 86_400_000;
const W: u64 = 604_800_000;

fn ok(text: &str) -> Query {
    parse(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
}

fn query(measurement: &str, filters: &[(&str, TagOp, &str)], range: Range, stages: Vec<Stage>) -> Query {
    Query {
        source: Source {
            measurement: measurement.to_string(),
            filters: filters.iter().map(|&(k, op, v)| TagFilter::new(k, op, v)).collect(),
            range,
        },
        stages,
    }
}

fn plain(measurement: &str, stages: Vec<Stage>) -> Query {
    query(measurement, &[], Range::Default, stages)
}

fn agg(func: AggFunc, window: Option<u64>, field: Option<&str>) -> Stage {
    Stage::Agg {
        func,
        window,
        field: field.map(str::to_string),
    }
}

fn pct(q: f64, window: Option<u64>, field: Option<&str>) -> Stage {
    Stage::Percentile {
        q,
        window,
        field: field.map(str::to_string),
    }
}

fn num(n: f64) -> Expr {
    Expr::Num(n)
}

fn bin(l: Expr, op: Op, r: Expr) -> Expr {
    Expr::Bin(Box::new(l), op, Box::new(r))
}

fn neg(e: Expr) -> Expr {
    Expr::Neg(Box::new(e))
}

fn rel(ms: u64) -> Range {
    Range::Relative { ms }
}

/// Asserts the text parses to `want`, and that its canonical text parses to the same tree and
/// prints the same again.
fn check_valid(text: &str, want: &Query) {
    let got = ok(text);
    assert_eq!(&got, want, "{text:?}");
    let canonical = got.to_string();
    let again = parse(&canonical).unwrap_or_else(|e| panic!("canonical {canonical:?} of {text:?}: {e}"));
    assert_eq!(again, got, "canonical {canonical:?} of {text:?}");
    assert_eq!(again.to_string(), canonical, "canonical text is a fixed point");
}

#[test]
fn seed_example() {
    check_valid(
        "cpu{host=web-01}[1h] | avg(5m)",
        &query(
            "cpu",
            &[("host", TagOp::Eq, "web-01")],
            rel(H),
            vec![agg(AggFunc::Avg, Some(5 * M), None)],
        ),
    );
}

#[test]
fn valid_sources_parse_to_their_trees() {
    use TagOp::*;
    let cases: Vec<(&str, Query)> =
        vec![
        ("cpu", plain("cpu", vec![])),
        ("cpu{}", plain("cpu", vec![])),
        ("cpu { }", plain("cpu", vec![])),
        ("  cpu  ", plain("cpu", vec![])),
        ("mem.used:total-x_1", plain("mem.used:total-x_1", vec![])),
        ("_internal", plain("_internal", vec![])),
        ("\"my meas\"", plain("my meas", vec![])),
        ("\"1m_load\"", plain("1m_load", vec![])),
        ("\"\u{e9}t\u{e9}\"", plain("\u{e9}t\u{e9}", vec![])),
        ("cpu{host=web-01}", query("cpu", &[("host", Eq, "web-01")], Range::Default, vec![])),
        (
            "cpu{host=web-01,region!=eu}",
            query("cpu", &[("host", Eq, "web-01"), ("region", Ne, "eu")], Range::Default, vec![]),
        ),
        (
            "cpu { host = web-01 , region != \"eu west\" }",
            query("cpu", &[("host", Eq, "web-01"), ("region", Ne, "eu west")], Range::Default, vec![]),
        ),
        (
            "cpu{host=~web-.*,dc!~\"us-(east|west)\"}",
            query("cpu", &[("host", Re, "web-.*"), ("dc", NotRe, "us-(east|west)")], Range::Default, vec![]),
        ),
        ("cpu{host=~\\d+}", query("cpu", &[("host", Re, "\\d+")], Range::Default, vec![])),
        ("cpu{host=~\"\\\\d+\"}", query("cpu", &[("host", Re, "\\d+")], Range::Default, vec![])),
        ("cpu{h=~(a|b)[0-9]}", query("cpu", &[("h", Re, "(a|b)[0-9]")], Range::Default, vec![])),
        ("cpu{path=\"/a,b\"}", query("cpu", &[("path", Eq, "/a,b")], Range::Default, vec![])),
        (
            "cpu{path=/var/log,ip=10.0.0.1,az=eu-west-1a,t=a:b,n=007}",
            query(
                "cpu",
                &[
                    ("path", Eq, "/var/log"),
                    ("ip", Eq, "10.0.0.1"),
                    ("az", Eq, "eu-west-1a"),
                    ("t", Eq, "a:b"),
                    ("n", Eq, "007"),
                ],
                Range::Default,
                vec![],
            ),
        ),
        ("cpu{k=\"a\\\"b\\\\c\"}", query("cpu", &[("k", Eq, "a\"b\\c")], Range::Default, vec![])),
        ("cpu{k=\"\"}", query("cpu", &[("k", Eq, "")], Range::Default, vec![])),
        ("cpu{k=\"a b|c}\"}", query("cpu", &[("k", Eq, "a b|c}")], Range::Default, vec![])),
        (
            "\"my meas\"{\"tag key\"=v,\"k\u{e9}\"=\"v\u{e9}\"}",
            query("my meas", &[("tag key", Eq, "v"), ("k\u{e9}", Eq, "v\u{e9}")], Range::Default, vec![]),
        ),
        ("cpu{h=a,h!=b}", query("cpu", &[("h", Eq, "a"), ("h", Ne, "b")], Range::Default, vec![])),
        ("cpu[1h]", query("cpu", &[], rel(H), vec![])),
        ("cpu [ 30s ]", query("cpu", &[], rel(30 * S), vec![])),
        ("cpu[500ms]", query("cpu", &[], rel(500), vec![])),
        ("cpu[5m]", query("cpu", &[], rel(5 * M), vec![])),
        ("cpu[1d]", query("cpu", &[], rel(D), vec![])),
        ("cpu[2w]", query("cpu", &[], rel(2 * W), vec![])),
        ("cpu[007m]", query("cpu", &[], rel(7 * M), vec![])),
        (
            "cpu[1718900000000..1718990000000]",
            query(
                "cpu",
                &[],
                Range::Absolute {
                    from_ms: 1_718_900_000_000,
                    to_ms: 1_718_990_000_000,
                },
                vec![],
            ),
        ),
        ("cpu[-5..-5]", query("cpu", &[], Range::Absolute { from_ms: -5, to_ms: -5 }, vec![])),
        ("cpu[ -100 .. 100 ]", query("cpu", &[], Range::Absolute { from_ms: -100, to_ms: 100 }, vec![])),
        (
            "cpu[-9223372036854775808..9223372036854775807]",
            query(
                "cpu",
                &[],
                Range::Absolute {
                    from_ms: i64::MIN,
                    to_ms: i64::MAX,
                },
                vec![],
            ),
        ),
        ("cpu[9223372036854775807ms]", query("cpu", &[], rel(MAX_DURATION_MS), vec![])),
        (
            "cpu{host=a}[1h]",
            query("cpu", &[("host", Eq, "a")], rel(H), vec![]),
        ),
        (
            "cpu {host=a} [1h]",
            query("cpu", &[("host", Eq, "a")], rel(H), vec![]),
        ),
        (
            "cpu\n|\tavg()\r\n",
            plain("cpu", vec![agg(AggFunc::Avg, None, None)]),
        ),
        (
            "cpu|avg()|max(1h)",
            plain("cpu", vec![agg(AggFunc::Avg, None, None), agg(AggFunc::Max, Some(H), None)]),
        ),
        (
            "  cpu { host = web-01 , region != \"eu west\" } [ 1h ]  |  avg( 5m ,  usage )  ",
            query(
                "cpu",
                &[("host", Eq, "web-01"), ("region", Ne, "eu west")],
                rel(H),
                vec![agg(AggFunc::Avg, Some(5 * M), Some("usage"))],
            ),
        ),
        (
            "temp{room=\"lab 1\"}[1718900000000..1718990000000] | window(5m) | avg(celsius) | math(value * 1.8 + 32) \
             | alias(fahrenheit) | where(value > 90) | round(1) | group_by(room) | topk(3)",
            query(
                "temp",
                &[("room", Eq, "lab 1")],
                Range::Absolute {
                    from_ms: 1_718_900_000_000,
                    to_ms: 1_718_990_000_000,
                },
                vec![
                    Stage::Window(5 * M),
                    agg(AggFunc::Avg, None, Some("celsius")),
                    Stage::Math(bin(bin(Expr::Value, Op::Mul, num(1.8)), Op::Add, num(32.0))),
                    Stage::Alias("fahrenheit".into()),
                    Stage::Where(Cmp::Gt, 90.0),
                    Stage::Round(1),
                    Stage::GroupBy(vec!["room".into()]),
                    Stage::TopK(3),
                ],
            ),
        ),
    ];
    for (text, want) in &cases {
        check_valid(text, want);
    }
}

fn stage_cases() -> Vec<(&'static str, Stage)> {
    use AggFunc::*;
    vec![
        ("window(5m)", Stage::Window(5 * M)),
        ("window(30s)", Stage::Window(30 * S)),
        ("window(500ms)", Stage::Window(500)),
        ("window(1h)", Stage::Window(H)),
        ("window(1d)", Stage::Window(D)),
        ("window(1w)", Stage::Window(W)),
        ("window( 10m )", Stage::Window(10 * M)),
        ("avg()", agg(Avg, None, None)),
        ("avg( )", agg(Avg, None, None)),
        ("sum(5m)", agg(Sum, Some(5 * M), None)),
        ("count(\"usage\")", agg(Count, None, Some("usage"))),
        ("min(usage)", agg(Min, None, Some("usage"))),
        ("max(5m, usage)", agg(Max, Some(5 * M), Some("usage"))),
        ("first(\"usage rate\", 1h)", agg(First, Some(H), Some("usage rate"))),
        ("last(\"5m\")", agg(Last, None, Some("5m"))),
        ("percentile(0.99)", pct(0.99, None, None)),
        ("percentile(99)", pct(0.99, None, None)),
        ("percentile(50)", pct(0.5, None, None)),
        ("percentile(1)", pct(1.0, None, None)),
        ("percentile(0)", pct(0.0, None, None)),
        ("percentile(100)", pct(1.0, None, None)),
        ("percentile(9.5e1)", pct(0.95, None, None)),
        ("percentile(0.5, 5m)", pct(0.5, Some(5 * M), None)),
        ("percentile(95, \"usage\", 1h)", pct(0.95, Some(H), Some("usage"))),
        ("percentile( 0.9 , usage )", pct(0.9, None, Some("usage"))),
        ("rate()", Stage::Rate(None)),
        ("rate(1m)", Stage::Rate(Some(M))),
        ("delta()", Stage::Delta),
        ("where(value > 90)", Stage::Where(Cmp::Gt, 90.0)),
        ("where(value>=-1.5)", Stage::Where(Cmp::Ge, -1.5)),
        ("where(value < 1e3)", Stage::Where(Cmp::Lt, 1000.0)),
        ("where( value <= 2.5E-3 )", Stage::Where(Cmp::Le, 0.0025)),
        ("where(value == 0)", Stage::Where(Cmp::Eq, 0.0)),
        ("where(value != -7)", Stage::Where(Cmp::Ne, -7.0)),
        ("where(value > 1e+2)", Stage::Where(Cmp::Gt, 100.0)),
        (
            "math(value * 1.8 + 32)",
            Stage::Math(bin(bin(Expr::Value, Op::Mul, num(1.8)), Op::Add, num(32.0))),
        ),
        (
            "math(32 + value * 1.8)",
            Stage::Math(bin(num(32.0), Op::Add, bin(Expr::Value, Op::Mul, num(1.8)))),
        ),
        ("math(value)", Stage::Math(Expr::Value)),
        ("math(-value)", Stage::Math(neg(Expr::Value))),
        ("math(--value)", Stage::Math(neg(neg(Expr::Value)))),
        (
            "math(value - -1)",
            Stage::Math(bin(Expr::Value, Op::Sub, neg(num(1.0)))),
        ),
        (
            "math(-2 * value)",
            Stage::Math(bin(neg(num(2.0)), Op::Mul, Expr::Value)),
        ),
        (
            "math((value + 1) * 2)",
            Stage::Math(bin(bin(Expr::Value, Op::Add, num(1.0)), Op::Mul, num(2.0))),
        ),
        (
            "math(value % 60 / 2)",
            Stage::Math(bin(bin(Expr::Value, Op::Rem, num(60.0)), Op::Div, num(2.0))),
        ),
        (
            "math(1 - 2 - 3)",
            Stage::Math(bin(bin(num(1.0), Op::Sub, num(2.0)), Op::Sub, num(3.0))),
        ),
        (
            "math(1 - (2 - 3))",
            Stage::Math(bin(num(1.0), Op::Sub, bin(num(2.0), Op::Sub, num(3.0)))),
        ),
        (
            "math(2*-(value+1))",
            Stage::Math(bin(num(2.0), Op::Mul, neg(bin(Expr::Value, Op::Add, num(1.0))))),
        ),
        ("math(((value)))", Stage::Math(Expr::Value)),
        ("math(1e3 / value)", Stage::Math(bin(num(1000.0), Op::Div, Expr::Value))),
        ("abs()", Stage::Abs),
        ("ceil()", Stage::Ceil),
        ("floor()", Stage::Floor),
        ("round()", Stage::Round(0)),
        ("round(2)", Stage::Round(2)),
        ("round( 3 )", Stage::Round(3)),
        ("round(308)", Stage::Round(308)),
        ("field(usage)", Stage::Field("usage".into())),
        ("field(\"usage rate\")", Stage::Field("usage rate".into())),
        ("alias(temp_f)", Stage::Alias("temp_f".into())),
        ("alias(\"Temp \u{b0}F\")", Stage::Alias("Temp \u{b0}F".into())),
        ("group_by(host)", Stage::GroupBy(vec!["host".into()])),
        (
            "group_by(host, \"data center\",region)",
            Stage::GroupBy(vec!["host".into(), "data center".into(), "region".into()]),
        ),
        ("topk(5)", Stage::TopK(5)),
        ("bottomk(1)", Stage::BottomK(1)),
        ("topk ( 10 )", Stage::TopK(10)),
    ]
}

#[test]
fn every_stage_parses() {
    for (text, stage) in stage_cases() {
        check_valid(&format!("m | {text}"), &plain("m", vec![stage]));
    }
}

#[test]
fn all_stages_in_long_pipelines() {
    let cases = stage_cases();
    for chunk in cases.chunks(MAX_STAGES) {
        let text = format!(
            "m{{a=b}}[1h] | {}",
            chunk.iter().map(|c| c.0).collect::<Vec<_>>().join(" | ")
        );
        let want = query(
            "m",
            &[("a", TagOp::Eq, "b")],
            rel(H),
            chunk.iter().map(|c| c.1.clone()).collect(),
        );
        check_valid(&text, &want);
    }
    for name in STAGE_NAMES {
        assert!(cases.iter().any(|c| c.1.name() == name), "{name} not covered");
    }
}

#[test]
fn invalid_queries_report_position_and_message() {
    let cases: &[(&str, usize, &str)] = &[
        // Source.
        ("", 0, "empty query"),
        ("   ", 3, "empty query"),
        ("{host=a}", 0, "expected a measurement name, found '{'"),
        ("| avg()", 0, "expected a measurement name"),
        ("[1h]", 0, "expected a measurement name"),
        ("1cpu", 0, "must be double-quoted"),
        ("\"\"", 0, "found an empty string"),
        ("\"cpu", 0, "unterminated quoted string"),
        ("\u{e9}", 0, "expected a measurement name, found '\u{e9}'"),
        ("cpu}", 3, "expected '|' or the end of the query, found '}'"),
        ("cpu)", 3, "expected '|' or the end"),
        ("cpu avg()", 4, "expected '|' or the end of the query, found 'avg'"),
        ("cpu{a=b}{c=d}", 8, "expected '|' or the end"),
        ("cpu[1h][2h]", 7, "expected '|' or the end"),
        ("cpu[1h]{a=b}", 7, "expected '|' or the end"),
        // Tag filters.
        ("cpu{", 4, "expected a tag key, found the end of the query"),
        ("cpu{host=a", 10, "expected '}' to close the '{' at byte 3"),
        ("cpu{host", 8, "expected '=', '!=', '=~' or '!~'"),
        ("cpu{host}", 8, "expected '=', '!=', '=~' or '!~'"),
        ("cpu{host=}", 9, "expected a tag value"),
        ("cpu{host=a b}", 11, "expected ',' or '}'"),
        ("cpu{host=a,}", 11, "expected a tag key"),
        ("cpu{,}", 4, "expected a tag key"),
        ("cpu{host==a}", 9, "found '='"),
        ("cpu{host=~}", 10, "expected a regex"),
        ("cpu{host=~\"\"}", 10, "expected a regex, found an empty string"),
        ("cpu{\"\"=a}", 4, "found an empty string"),
        ("cpu{path=\"/a,b}", 9, "unterminated quoted string"),
        ("cpu{path=\"a\\nb\"}", 11, "unknown escape"),
        ("cpu{path=\"a\\", 9, "unterminated quoted string"),
        ("cpu{h=web*}", 9, "expected ',' or '}'"),
        ("cpu{h=\u{e9}}", 6, "found '\u{e9}'"),
        ("cpu{1h=a}", 4, "must be double-quoted"),
        // Ranges.
        ("cpu[1h", 6, "expected ']' to close the '[' at byte 3"),
        ("cpu[1h x]", 7, "expected ']'"),
        ("cpu[]", 4, "expected a duration"),
        ("cpu[h]", 4, "expected a duration"),
        ("cpu[0h]", 4, "greater than zero"),
        ("cpu[0ms]", 4, "greater than zero"),
        ("cpu[5]", 5, "'..'"),
        ("cpu[5x]", 5, "unknown duration unit 'x'"),
        ("cpu[5min]", 5, "unknown duration unit 'min'"),
        ("cpu[5M]", 5, "unknown duration unit 'M'"),
        ("cpu[1.5h]", 4, "whole number of its unit"),
        ("cpu[1h30m]", 6, "compound"),
        ("cpu[-1h]", 4, "cannot be negative"),
        ("cpu[99999999999999999999h]", 4, "too long"),
        ("cpu[3000000000000000w]", 4, "too long"),
        ("cpu[9223372036854775808ms]", 4, "too long"),
        ("cpu[10..5]", 4, "starts after it ends"),
        ("cpu[10..]", 8, "expected an epoch timestamp"),
        ("cpu[1.. 5m]", 9, "expected ']'"),
        ("cpu[10...20]", 8, "expected an epoch timestamp"),
        ("cpu[1..99999999999999999999]", 7, "out of range"),
        ("cpu[-9223372036854775809..0]", 4, "out of range"),
        ("cpu[0..9223372036854775808]", 7, "out of range"),
        ("cpu[1.5..2]", 4, "whole number of milliseconds"),
        ("cpu[--1..2]", 4, "expected a duration"),
        // The pipeline.
        ("cpu |", 5, "expected a stage after '|', found the end of the query"),
        ("cpu | | avg()", 6, "empty stage"),
        ("cpu | avg() |", 13, "expected a stage after '|'"),
        ("cpu || avg()", 5, "empty stage"),
        ("cpu | 5m", 6, "expected a stage name, found '5m'"),
        ("cpu | foo()", 6, "unknown stage 'foo'; the stages are window, avg"),
        (
            "cpu | AVG(5m)",
            6,
            "unknown stage 'AVG' (stage names are lower case: 'avg')",
        ),
        ("cpu | group-by(host)", 6, "unknown stage 'group'"),
        ("cpu | avg", 9, "expected '(' after 'avg', found the end of the query"),
        ("cpu | abs", 9, "expected '(' after 'abs'"),
        ("cpu | avg 5m", 10, "expected '(' after 'avg', found '5m'"),
        ("cpu | avg(5m", 12, "expected ')' to close the '(' of 'avg' at byte 9"),
        ("cpu | avg(5m))", 13, "expected '|' or the end"),
        ("cpu | avg(5m) avg()", 14, "expected '|' or the end"),
        // Aggregations.
        ("cpu | avg(0m)", 10, "greater than zero"),
        ("cpu | avg(5)", 10, "needs a unit"),
        ("cpu | avg(5min)", 11, "unknown duration unit 'min'"),
        ("cpu | avg(5m, 1h)", 14, "at most one window"),
        ("cpu | avg(a, b)", 13, "at most one field"),
        ("cpu | avg(,)", 10, "expected a window (e.g. 5m) or a field name"),
        ("cpu | avg(5m,)", 13, "expected a window"),
        ("cpu | avg(5m usage)", 13, "expected ')' to close 'avg('"),
        ("cpu | avg(\"\")", 10, "found an empty string"),
        ("cpu | window()", 13, "expected a duration"),
        ("cpu | window(usage)", 13, "expected a duration"),
        ("cpu | window(5m, 1h)", 15, "expected ')' to close 'window('"),
        ("cpu | percentile()", 17, "expected a quantile"),
        ("cpu | percentile(101)", 17, "a fraction in [0, 1]"),
        ("cpu | percentile(-0.5)", 17, "a fraction in [0, 1]"),
        ("cpu | percentile(0.5,)", 21, "expected a window"),
        ("cpu | percentile(0.5, 5m, 1h)", 26, "at most one window"),
        ("cpu | percentile(usage)", 17, "expected a quantile"),
        // Transforms.
        ("cpu | rate(5)", 11, "needs a unit"),
        ("cpu | rate(usage)", 11, "expected a duration"),
        ("cpu | abs(1)", 10, "'abs' takes no arguments"),
        (
            "cpu | delta(",
            12,
            "expected ')' to close the '(' of 'delta' at byte 11",
        ),
        ("cpu | where(value > )", 20, "expected a number, found ')'"),
        ("cpu | where(value = 5)", 18, "'=='"),
        ("cpu | where(x > 5)", 12, "expected 'value'"),
        ("cpu | where(values > 5)", 12, "expected 'value'"),
        ("cpu | where(value 5)", 18, "expected a comparison"),
        ("cpu | where(value > 1e999)", 20, "number out of range"),
        ("cpu | where(value > 1e)", 21, "exponent"),
        ("cpu | where(value > - 5)", 21, "expected a digit after '-'"),
        ("cpu | where(value > .5)", 20, "expected a number"),
        ("cpu | where(value > 5.)", 21, "expected ')'"),
        (
            "cpu | where(value > 5 and value < 6)",
            22,
            "expected ')' to close 'where('",
        ),
        ("cpu | math()", 11, "expected a number, 'value' or '(', found ')'"),
        ("cpu | math(value +)", 18, "expected a number, 'value' or '('"),
        ("cpu | math(x * 2)", 11, "unknown name 'x' in math()"),
        (
            "cpu | math((value)",
            18,
            "expected ')' to close the '(' of 'math' at byte 10",
        ),
        ("cpu | math(value value)", 17, "expected ')' to close 'math('"),
        (
            "cpu | math(value * (2 + 3)",
            26,
            "expected ')' to close the '(' of 'math'",
        ),
        ("cpu | math((value 2))", 18, "expected an operator or ')'"),
        ("cpu | math(value * (2", 21, "expected ')' to close the '(' at byte 19"),
        ("cpu | math(value ^ 2)", 17, "expected ')' to close 'math('"),
        ("cpu | math(value * 1e400)", 19, "number out of range"),
        ("cpu | round(-1)", 12, "expected a number of decimal places"),
        ("cpu | round(309)", 12, "at most 308 decimal places"),
        ("cpu | round(1.5)", 13, "expected ')'"),
        ("cpu | field()", 12, "expected a field name, found ')'"),
        ("cpu | field(a, b)", 13, "expected ')' to close 'field('"),
        ("cpu | alias(\"\")", 12, "found an empty string"),
        ("cpu | alias()", 12, "expected an alias"),
        ("cpu | group_by(host, host)", 21, "tag 'host' listed twice"),
        ("cpu | group_by(host,)", 20, "expected a tag name"),
        ("cpu | topk(0)", 11, "k must be at least 1"),
        ("cpu | topk()", 11, "positive integer"),
        ("cpu | topk(-1)", 11, "positive integer"),
        ("cpu | bottomk(99999999999999999999)", 14, "k is too large"),
        ("cpu | topk(1.5)", 12, "expected ')'"),
        // Positions are byte offsets, also after non-ASCII text.
        ("\"\u{e9}\"{a=b} | foo()", 12, "unknown stage 'foo'"),
        ("cpu{\"\u{e9}\"=a}[1h] | avg(5m", 24, "expected ')'"),
    ];
    let mut failures = Vec::new();
    for &(text, position, message) in cases {
        match parse(text) {
            Ok(q) => failures.push(format!("{text:?} should not parse, got {q:?}")),
            Err(e) if e.position != position || !e.message.contains(message) => failures.push(format!(
                "{text:?}: got {e:?}, want position {position} and a message containing {message:?}"
            )),
            Err(_) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn canonical_text() {
    let cases: &[(&str, &str)] = &[
        ("cpu{host=web-01}[1h] | avg(5m)", "cpu{host=web-01}[1h] | avg(5m)"),
        (
            "  cpu { host = web-01 }[60m]|avg( 5m )",
            "cpu{host=web-01}[1h] | avg(5m)",
        ),
        ("cpu{}", "cpu"),
        ("\"cpu\"", "cpu"),
        ("\"my cpu\"", "\"my cpu\""),
        ("cpu{path=\"/a,b\",h=\"web\"}", "cpu{path=\"/a,b\",h=web}"),
        ("cpu{k=\"a\\\"b\\\\c\"}", "cpu{k=\"a\\\"b\\\\c\"}"),
        ("cpu{k=\"\"}", "cpu{k=\"\"}"),
        ("cpu{k=\"~x\"}", "cpu{k=\"~x\"}"),
        ("cpu{h=~\"web-.*\"}", "cpu{h=~web-.*}"),
        ("cpu{h!~\"a b\"}", "cpu{h!~\"a b\"}"),
        ("cpu{h=~\"\\\\d+\"}", "cpu{h=~\\d+}"),
        ("cpu{h=~\"a\\\"b\"}", "cpu{h=~\"a\\\"b\"}"),
        ("cpu[60000ms]", "cpu[1m]"),
        ("cpu[90s]", "cpu[90s]"),
        ("cpu[1500ms]", "cpu[1500ms]"),
        ("cpu[24h]", "cpu[1d]"),
        ("cpu[14d]", "cpu[2w]"),
        ("cpu[ -1 .. 2 ]", "cpu[-1..2]"),
        ("cpu | count(\"usage\")", "cpu | count(usage)"),
        ("cpu | count(usage, 5m)", "cpu | count(5m, usage)"),
        ("cpu | count(\"5m\")", "cpu | count(\"5m\")"),
        ("cpu | percentile(99, usage, 5m)", "cpu | percentile(0.99, 5m, usage)"),
        ("cpu | percentile(100)", "cpu | percentile(1)"),
        ("cpu | math(((value)) * (1.8) + (32))", "cpu | math(value * 1.8 + 32)"),
        ("cpu | math(value - (1 - 2))", "cpu | math(value - (1 - 2))"),
        ("cpu | math((value - 1) - 2)", "cpu | math(value - 1 - 2)"),
        ("cpu | math((value + 1) * 2)", "cpu | math((value + 1) * 2)"),
        ("cpu | math(value / (2 * 3))", "cpu | math(value / (2 * 3))"),
        ("cpu | math(-(value * 2))", "cpu | math(-(value * 2))"),
        ("cpu | math(-(-value))", "cpu | math(--value)"),
        ("cpu | math(-(2) * value)", "cpu | math(-2 * value)"),
        ("cpu | math(1.50)", "cpu | math(1.5)"),
        ("cpu | where(value > 1e300)", "cpu | where(value > 1e300)"),
        ("cpu | where(value > 0.0000001)", "cpu | where(value > 0.0000001)"),
        ("cpu | where(value > 1e-20)", "cpu | where(value > 1e-20)"),
        ("cpu | where(value > 1e16)", "cpu | where(value > 1e16)"),
        ("cpu | where(value > 1e15)", "cpu | where(value > 1000000000000000)"),
        ("cpu | where(value>=-2.50)", "cpu | where(value >= -2.5)"),
        ("cpu | where(value > 1000)", "cpu | where(value > 1000)"),
        ("cpu | round()", "cpu | round(0)"),
        ("cpu | rate()", "cpu | rate()"),
        ("cpu | rate(60s)", "cpu | rate(1m)"),
        ("cpu | field(\"1x\")", "cpu | field(\"1x\")"),
        ("cpu | alias(\"a\")", "cpu | alias(a)"),
        ("cpu | group_by(\"a\",b)", "cpu | group_by(a, b)"),
        ("cpu|topk(3)|bottomk(2)", "cpu | topk(3) | bottomk(2)"),
    ];
    for &(text, want) in cases {
        let q = ok(text);
        assert_eq!(q.to_string(), want, "{text:?}");
        assert_eq!(ok(want), q, "{want:?}");
    }
}

#[test]
fn durations_in_every_unit() {
    let units = [("ms", 1), ("s", S), ("m", M), ("h", H), ("d", D), ("w", W)];
    for (unit, size) in units {
        for n in [1u64, 7, 60, 1000] {
            let text = format!("m[{n}{unit}] | window({n}{unit}) | rate({n}{unit})");
            let q = ok(&text);
            assert_eq!(q.source.range, rel(n * size), "{text}");
            assert_eq!(
                q.stages,
                vec![Stage::Window(n * size), Stage::Rate(Some(n * size))],
                "{text}"
            );
            assert_eq!(ok(&q.to_string()), q);
        }
    }
    assert_eq!(format_duration(1), "1ms");
    assert_eq!(format_duration(1_001), "1001ms");
    assert_eq!(format_duration(7 * D), "1w");
    assert_eq!(format_duration(MAX_DURATION_MS), "9223372036854775807ms");
}

#[test]
fn filter_positions_point_at_values() {
    let q = ok("cpu{host=web-01, dc=~\"x\" ,r!~ y}");
    let positions: Vec<usize> = q.source.filters.iter().map(|f| f.position).collect();
    assert_eq!(positions, vec![9, 21, 30]);
}

#[test]
fn limits() {
    // Length: 16 KiB is fine, one byte more is not.
    let mut text = "cpu".to_string();
    text.push_str(&" ".repeat(MAX_QUERY_BYTES - text.len()));
    ok(&text);
    text.push(' ');
    let e = parse(&text).unwrap_err();
    assert_eq!(e.position, MAX_QUERY_BYTES);
    assert!(e.message.contains("at most 16384"), "{e}");

    // Stages: 64 are fine, the 65th is an error at its name.
    let text = format!("cpu{}", " | abs()".repeat(MAX_STAGES));
    assert_eq!(ok(&text).stages.len(), MAX_STAGES);
    let text = format!("{text} | abs()");
    let e = parse(&text).unwrap_err();
    assert_eq!(e.position, text.len() - "abs()".len());
    assert!(e.message.contains("too many stages"), "{e}");

    // Nesting: deep parentheses and minus signs are errors, not stack overflows.
    let prefix = "cpu | math(";
    for opener in ["(", "-", "-(", "(-"] {
        let text = format!("{prefix}{}value", opener.repeat(5_000));
        let e = parse(&text).unwrap_err();
        assert!(e.message.contains("nested too deeply"), "{opener}: {e}");
        assert!(
            e.position > prefix.len() && e.position < prefix.len() + 2 * MAX_EXPR_DEPTH,
            "{opener}: {e}"
        );
    }
    let text = format!(
        "{prefix}{}value{})",
        "(".repeat(MAX_EXPR_DEPTH),
        ")".repeat(MAX_EXPR_DEPTH)
    );
    assert_eq!(ok(&text).stages, vec![Stage::Math(Expr::Value)]);
    let text = format!(
        "{prefix}{}value{})",
        "(".repeat(MAX_EXPR_DEPTH + 1),
        ")".repeat(MAX_EXPR_DEPTH + 1)
    );
    assert_eq!(parse(&text).unwrap_err().position, prefix.len() + MAX_EXPR_DEPTH);

    // Tree depth: 63 operators make a tree 64 deep; the 64th operator is one too many.
    let chain = |n: usize| format!("{prefix}value{})", " + 1".repeat(n));
    let q = ok(&chain(MAX_EXPR_DEPTH - 1));
    assert_eq!(ok(&q.to_string()), q);
    let text = chain(MAX_EXPR_DEPTH);
    let e = parse(&text).unwrap_err();
    assert_eq!(e.position, text.len() - " 1)".len() - 1, "{e}");
    let text = format!("{prefix}{}value)", "-".repeat(MAX_EXPR_DEPTH - 1));
    let q = ok(&text);
    assert_eq!(ok(&q.to_string()), q);
    let text = format!("{prefix}{}value)", "-".repeat(MAX_EXPR_DEPTH));
    assert_eq!(parse(&text).unwrap_err().position, prefix.len());
    // Right-nested: the printed form keeps only the parentheses it needs, within the limit.
    let text = format!("{prefix}{}value{})", "1 - (".repeat(31), ")".repeat(31));
    let q = ok(&text);
    assert_eq!(ok(&q.to_string()), q);
}

// ---- Property and mutation tests (seeded, deterministic) ----

use crate::test_rng::Rng;

/// A number for generated queries: small integers, decimals, and awkward values.
fn float(rng: &mut Rng) -> f64 {
    match rng.index(4) {
        0 => rng.index(1000) as f64,
        1 => rng.index(100_000) as f64 / 1000.0,
        2 => *rng.pick(&[
            0.1,
            1.8,
            1e300,
            5e-324,
            1e-7,
            123456789.125,
            f64::MAX,
            f64::MIN_POSITIVE,
        ]),
        _ => loop {
            let f = f64::from_bits(rng.next_u64());
            if f.is_finite() {
                break f.abs();
            }
        },
    }
}

const NAMES: &[&str] = &[
    "cpu",
    "_x",
    "a.b:c-d",
    "web-01",
    "1abc",
    "with space",
    "quote\"in",
    "back\\slash",
    "\u{e9}t\u{e9}",
    "}",
    "|",
    "a,b",
    "value",
    "5m",
];
const VALUES: &[&str] = &[
    "", "web-01", "/a,b", "10.0.0.1", "a b", "~x", "\"", "\\", "\u{e9}", "x}y", "007",
];
const REGEXES: &[&str] = &[
    "web-.*", "\\d+", "a b", "(a|b)", "x,y", "a{2}", "\"q\"", "^\u{e9}$", "[}]",
];

fn random_duration(rng: &mut Rng) -> u64 {
    let units = [1, S, M, H, D, W];
    match rng.index(10) {
        0 => MAX_DURATION_MS,
        1 => 1 + rng.next_u64() % MAX_DURATION_MS,
        _ => (1 + rng.index(1000) as u64) * rng.pick(&units),
    }
}

fn random_expr(rng: &mut Rng, depth: usize) -> Expr {
    if depth <= 1 || rng.chance(30) {
        return if rng.chance(50) {
            Expr::Value
        } else {
            Expr::Num(float(rng))
        };
    }
    if rng.chance(20) {
        return Expr::Neg(Box::new(random_expr(rng, depth - 1)));
    }
    let op = *rng.pick(&[Op::Add, Op::Sub, Op::Mul, Op::Div, Op::Rem]);
    Expr::Bin(
        Box::new(random_expr(rng, depth - 1)),
        op,
        Box::new(random_expr(rng, depth - 1)),
    )
}

fn random_stage(rng: &mut Rng) -> Stage {
    let opt_window = |rng: &mut Rng| rng.chance(50).then(|| random_duration(rng));
    let field = |rng: &mut Rng| rng.chance(50).then(|| rng.pick(NAMES).to_string());
    match rng.index(16) {
        0 => Stage::Window(random_duration(rng)),
        1 => Stage::Agg {
            func: *rng.pick(&AggFunc::ALL),
            window: opt_window(rng),
            field: field(rng),
        },
        2 => Stage::Percentile {
            q: float(rng) % 1.0,
            window: opt_window(rng),
            field: field(rng),
        },
        3 => Stage::Rate(opt_window(rng)),
        4 => Stage::Delta,
        5 => {
            let n = float(rng);
            let n = if rng.chance(50) { -n } else { n };
            Stage::Where(*rng.pick(&[Cmp::Gt, Cmp::Ge, Cmp::Lt, Cmp::Le, Cmp::Eq, Cmp::Ne]), n)
        }
        6 => Stage::Math(random_expr(rng, 12)),
        7 => Stage::Abs,
        8 => Stage::Ceil,
        9 => Stage::Floor,
        10 => Stage::Round(rng.index(MAX_ROUND_DIGITS as usize + 1) as u32),
        11 => Stage::Field(rng.pick(NAMES).to_string()),
        12 => Stage::Alias(rng.pick(NAMES).to_string()),
        13 => {
            let mut tags: Vec<String> = Vec::new();
            for _ in 0..1 + rng.index(4) {
                let t = rng.pick(NAMES).to_string();
                if !tags.contains(&t) {
                    tags.push(t);
                }
            }
            Stage::GroupBy(tags)
        }
        14 => Stage::TopK(1 + rng.index(100)),
        _ => Stage::BottomK(1 + rng.index(100)),
    }
}

fn random_query(rng: &mut Rng) -> Query {
    let mut filters = Vec::new();
    for _ in 0..rng.index(4) {
        let op = *rng.pick(&[TagOp::Eq, TagOp::Ne, TagOp::Re, TagOp::NotRe]);
        let value = match op {
            TagOp::Eq | TagOp::Ne => rng.pick(VALUES),
            TagOp::Re | TagOp::NotRe => rng.pick(REGEXES),
        };
        filters.push(TagFilter::new(*rng.pick(NAMES), op, *value));
    }
    let range = match rng.index(3) {
        0 => Range::Default,
        1 => Range::Relative {
            ms: random_duration(rng),
        },
        _ => {
            let (a, b) = (rng.next_u64() as i64, rng.next_u64() as i64);
            Range::Absolute {
                from_ms: a.min(b),
                to_ms: a.max(b),
            }
        }
    };
    let stages = (0..rng.index(8)).map(|_| random_stage(rng)).collect();
    Query {
        source: Source {
            measurement: rng.pick(NAMES).to_string(),
            filters,
            range,
        },
        stages,
    }
}

#[test]
fn random_trees_print_and_parse_back() {
    let mut rng = Rng(0x0f10_f10f_10f1_0f10);
    for i in 0..5_000 {
        let q = random_query(&mut rng);
        let text = q.to_string();
        match parse(&text) {
            Ok(back) => assert_eq!(back, q, "case {i}: {text:?}"),
            Err(e) => panic!("case {i}: {text:?} does not parse: {e}"),
        }
    }
}

/// Parses `text`: never panics; an error points at a char boundary inside the text; a success
/// prints to text that parses to the same tree.
fn check_any(text: &str) {
    match parse(text) {
        Ok(q) => {
            let canonical = q.to_string();
            if canonical.len() <= MAX_QUERY_BYTES {
                assert_eq!(parse(&canonical).as_ref(), Ok(&q), "{text:?} → {canonical:?}");
            }
        }
        Err(e) => {
            assert!(
                e.position <= text.len() && text.is_char_boundary(e.position),
                "{text:?}: {e:?}"
            );
            assert!(!e.message.is_empty());
        }
    }
}

#[test]
fn mutated_queries_never_panic_and_print_back() {
    let mut seeds: Vec<String> = stage_cases()
        .iter()
        .map(|c| format!("m{{a=b,c=~\"d\"}}[1h] | {}", c.0))
        .collect();
    seeds.push("cpu{host=web-01}[1h] | avg(5m)".into());
    seeds.push("cpu[1718900000000..1718990000000] | math(-(value * 1.8) + 32 % 7) | where(value >= -1e3)".into());
    const PIECES: &[&str] = &[
        "(",
        ")",
        "{",
        "}",
        "[",
        "]",
        "|",
        ",",
        "\"",
        "\\",
        "=",
        "!",
        "~",
        "-",
        "+",
        "*",
        "/",
        "%",
        ".",
        "..",
        " ",
        "0",
        "9",
        "e",
        "m",
        "ms",
        "h",
        "value",
        "avg",
        "\u{e9}",
        "\u{1f600}",
        "\n",
        "99999999999999999999",
    ];
    let mut rng = Rng(0x5eed_cafe_f00d_beef);
    for _ in 0..30_000 {
        let mut text = rng.pick(&seeds).clone();
        for _ in 0..1 + rng.index(4) {
            let boundaries: Vec<usize> = (0..=text.len()).filter(|&i| text.is_char_boundary(i)).collect();
            let at = *rng.pick(&boundaries);
            match rng.index(3) {
                0 => {
                    let piece = *rng.pick(PIECES);
                    text.insert_str(at, piece);
                }
                1 => {
                    let end = *rng.pick(&boundaries);
                    let (a, b) = (at.min(end), at.max(end));
                    if b - a < 8 {
                        text.replace_range(a..b, "");
                    }
                }
                _ => text.truncate(at),
            }
        }
        check_any(&text);
    }
}
