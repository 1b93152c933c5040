//! Golden, data-driven tests of the FloQL executor (in the spirit of Prometheus' promqltest): one
//! file per feature under `tests/floql/`, run in process through `flo::ts::floql::parse`,
//! `flo::ts::query::Plan` and the shard/finish split the server uses.
//!
//! File format — commands separated by blank lines; `#` starts a comment line:
//! ```text
//! load
//! <line protocol, precision ms (a missing timestamp is 0), one point per line>
//!
//! eval [@now=<ms>] <query>
//! <expected series, one per line, in answer order; none = an empty answer>
//!
//! eval_error [@now=<ms>] <query>
//! at <position>: <fragment of the message>
//! ```
//! * `load` replaces the data of the file's earlier `load`s. Each series (measurement + tags +
//!   field) keeps one value per timestamp, the last one written.
//! * `@now` is the server's clock for ranges relative to now; it defaults to 3600000, so a query
//!   without a range reads [0, 3600000].
//! * An expected series is `<measurement> <field> {k=v,..} <ts>:<value> ..` (`{}` without tags;
//!   a tag value may be double-quoted, with `\"` and `\\`); a value is a number, `NaN`, `+Inf`
//!   or `-Inf`. Values match within a relative 1e-9 (NaN matches NaN); everything else exactly.
//! * An error is matched from any stage: the parser, `Plan::new`, `shard` or `finish`.
//!
//! Every query runs twice: with the series spread over 3 simulated shards by a hash of the
//! series key (shard outputs handed to `finish` in reverse order), and with all of them on one
//! shard; the two answers must be identical bit for bit, and the rendered answer valid JSON.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use flo::ts::floql;
use flo::ts::line::{self, Precision};
use flo::ts::query::{render, Plan, QueryError, SeriesData};

const DEFAULT_NOW_MS: i64 = 3_600_000;
const SHARDS: usize = 3;

type Store = BTreeMap<(String, String, Vec<(String, String)>), BTreeMap<i64, f64>>;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("floql")
}

/// One command of a file, with the line it starts on.
enum Command {
    Load(String),
    Eval {
        now_ms: i64,
        query: String,
        expected: Vec<SeriesData>,
    },
    EvalError {
        now_ms: i64,
        query: String,
        position: usize,
        fragment: String,
    },
}

fn parse_file(name: &str, text: &str) -> Vec<(usize, Command)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_end();
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            i += 1;
            continue;
        }
        let start = i + 1;
        i += 1;
        let mut block = Vec::new();
        while i < lines.len() && !lines[i].trim().is_empty() {
            if !lines[i].trim_start().starts_with('#') {
                block.push(lines[i].trim());
            }
            i += 1;
        }
        let here = |msg: &str| -> ! { panic!("{name}:{start}: {msg}: {line}") };
        let command = if line == "load" {
            Command::Load(block.join("\n"))
        } else if let Some(rest) = line.strip_prefix("eval_error ") {
            let (now_ms, query) = split_now(rest).unwrap_or_else(|| here("bad @now"));
            let [at] = block[..] else {
                here("eval_error needs one `at <position>: <fragment>` line")
            };
            let (pos, fragment) = at
                .strip_prefix("at ")
                .and_then(|r| r.split_once(':'))
                .unwrap_or_else(|| here("expected `at <position>: <fragment>`"));
            Command::EvalError {
                now_ms,
                query,
                position: pos.trim().parse().unwrap_or_else(|_| here("bad position")),
                fragment: fragment.trim().to_string(),
            }
        } else if let Some(rest) = line.strip_prefix("eval ") {
            let (now_ms, query) = split_now(rest).unwrap_or_else(|| here("bad @now"));
            let expected = block
                .iter()
                .map(|l| parse_series(l).unwrap_or_else(|e| panic!("{name}:{start}: bad expected series {l:?}: {e}")))
                .collect();
            Command::Eval {
                now_ms,
                query,
                expected,
            }
        } else {
            here("unknown command")
        };
        out.push((start, command));
    }
    out
}

fn split_now(rest: &str) -> Option<(i64, String)> {
    let rest = rest.trim();
    match rest.strip_prefix("@now=") {
        Some(r) => {
            let (now, query) = r.split_once(' ')?;
            Some((now.parse().ok()?, query.trim().to_string()))
        }
        None => Some((DEFAULT_NOW_MS, rest.to_string())),
    }
}

/// `cpu usage {host=a,path="/a,b"} 0:1.5 60000:NaN`
fn parse_series(l: &str) -> Result<SeriesData, String> {
    let (measurement, rest) = l.split_once(' ').ok_or("no field")?;
    let (field, rest) = rest.split_once(' ').ok_or("no tags")?;
    let rest = rest.strip_prefix('{').ok_or("tags must start with '{'")?;
    let mut tags = Vec::new();
    let mut chars = rest.char_indices().peekable();
    let end;
    loop {
        match chars.peek() {
            Some(&(i, '}')) => {
                end = i + 1;
                break;
            }
            Some(&(_, ',')) => {
                chars.next();
            }
            Some(_) => {
                let mut key = String::new();
                for (_, c) in chars.by_ref() {
                    if c == '=' {
                        break;
                    }
                    key.push(c);
                }
                let mut value = String::new();
                if chars.peek().map(|&(_, c)| c) == Some('"') {
                    chars.next();
                    while let Some((_, c)) = chars.next() {
                        match c {
                            '"' => break,
                            '\\' => value.extend(chars.next().map(|(_, c)| c)),
                            _ => value.push(c),
                        }
                    }
                } else {
                    while let Some(&(_, c)) = chars.peek() {
                        if c == ',' || c == '}' {
                            break;
                        }
                        value.push(c);
                        chars.next();
                    }
                }
                tags.push((key, value));
            }
            None => return Err("unclosed '{'".to_string()),
        }
    }
    let mut points = Vec::new();
    for p in rest[end..].split_whitespace() {
        let (t, v) = p
            .split_once(':')
            .ok_or_else(|| format!("point {p:?} is not ts:value"))?;
        let t: i64 = t.parse().map_err(|_| format!("bad timestamp in {p:?}"))?;
        let v = match v {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            _ => v.parse().map_err(|_| format!("bad value in {p:?}"))?,
        };
        points.push((t, v));
    }
    Ok(SeriesData {
        measurement: measurement.to_string(),
        field: field.to_string(),
        tags,
        points,
    })
}

fn load(body: &str) -> Result<Store, String> {
    let mut store = Store::new();
    line::parse(body.as_bytes(), Precision::Ms, 0, |p| -> Result<(), String> {
        let tags: Vec<(String, String)> = p.tags().map(|t| (t.key.to_string(), t.value.to_string())).collect();
        let ts_ms = p.timestamp_ns().div_euclid(1_000_000);
        for f in p.fields() {
            if let Some(v) = f.value.as_f64() {
                let key = (p.measurement().to_string(), f.key.to_string(), tags.clone());
                store.entry(key).or_default().insert(ts_ms, v);
            }
        }
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    Ok(store)
}

/// FNV-1a of the series key: which simulated shard owns the series.
fn shard_of(measurement: &str, field: &str, tags: &[(String, String)], shards: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |s: &str| {
        for b in s.bytes().chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(measurement);
    eat(field);
    for (k, v) in tags {
        eat(k);
        eat(v);
    }
    (h % shards as u64) as usize
}

/// Runs `query` over `store` on `shards` simulated shards, as the server would.
fn execute(store: &Store, query: &str, now_ms: i64, shards: usize) -> Result<Vec<SeriesData>, QueryError> {
    let q = floql::parse(query).map_err(|e| QueryError {
        position: e.position,
        message: e.message,
    })?;
    let plan = Plan::new(&q, now_ms)?;
    let (from, to) = plan.range();
    let equal = plan.equal_filters();
    let mut per_shard: Vec<Vec<SeriesData>> = vec![Vec::new(); shards];
    for ((measurement, field, tags), points) in store {
        if measurement != plan.measurement() {
            continue;
        }
        let tag_refs: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        if !plan.matches(&tag_refs, field) {
            continue;
        }
        for (k, v) in &equal {
            assert!(
                tag_refs.contains(&(*k, *v)),
                "{query}: matches() passed a series without {k}={v}, which the tag index would not give"
            );
        }
        per_shard[shard_of(measurement, field, tags, shards)].push(SeriesData {
            measurement: measurement.clone(),
            field: field.clone(),
            tags: tags.clone(),
            points: points.range(from..=to).map(|(&t, &v)| (t, v)).collect(),
        });
    }
    let mut outs = Vec::with_capacity(shards);
    for series in per_shard {
        outs.push(plan.shard(series)?);
    }
    outs.reverse();
    plan.finish(outs)
}

fn same_value(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan())
        || a == b
        || (a.is_finite() && b.is_finite() && (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0))
}

fn matches_expected(got: &[SeriesData], want: &[SeriesData]) -> bool {
    got.len() == want.len()
        && got.iter().zip(want).all(|(g, w)| {
            g.measurement == w.measurement
                && g.field == w.field
                && g.tags == w.tags
                && g.points.len() == w.points.len()
                && g.points
                    .iter()
                    .zip(&w.points)
                    .all(|(a, b)| a.0 == b.0 && same_value(a.1, b.1))
        })
}

/// A series with its values as bit patterns (every NaN alike), to compare answers exactly.
type Bits = (String, String, String, Vec<(i64, u64)>);

fn bits(out: &Result<Vec<SeriesData>, QueryError>) -> Result<Vec<Bits>, QueryError> {
    out.clone().map(|ss| {
        ss.into_iter()
            .map(|s| {
                (
                    s.measurement,
                    s.field,
                    format!("{:?}", s.tags),
                    s.points
                        .iter()
                        .map(|&(t, v)| (t, if v.is_nan() { 0 } else { v.to_bits() }))
                        .collect(),
                )
            })
            .collect()
    })
}

fn show(series: &[SeriesData]) -> String {
    if series.is_empty() {
        return "    (no series)\n".to_string();
    }
    let mut s = String::new();
    for x in series {
        let tags: Vec<String> = x.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let points: Vec<String> = x.points.iter().map(|(t, v)| format!("{t}:{v}")).collect();
        s += &format!(
            "    {} {} {{{}}} {}\n",
            x.measurement,
            x.field,
            tags.join(","),
            points.join(" ")
        );
    }
    s
}

fn run_file(name: &str) {
    let name = name.trim_start_matches("r#");
    let path = dir().join(format!("{name}.test"));
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file = format!("tests/floql/{name}.test");
    let mut store = Store::new();
    let mut failures = Vec::new();
    let mut evals = 0;
    for (line_no, command) in parse_file(&file, &text) {
        let (now_ms, query) = match &command {
            Command::Load(body) => {
                store = load(body).unwrap_or_else(|e| panic!("{file}:{line_no}: bad load: {e}"));
                continue;
            }
            Command::Eval { now_ms, query, .. } | Command::EvalError { now_ms, query, .. } => (*now_ms, query),
        };
        evals += 1;
        let spread = execute(&store, query, now_ms, SHARDS);
        let single = execute(&store, query, now_ms, 1);
        if bits(&spread) != bits(&single) {
            failures.push(format!(
                "{file}:{line_no}: {query}\n  {SHARDS} shards and 1 shard differ:\n  {SHARDS}: {spread:?}\n  1: {single:?}"
            ));
            continue;
        }
        match (&command, spread) {
            (Command::Eval { expected, .. }, Ok(got)) => {
                let mut json = Vec::new();
                render(&got, &mut json);
                if let Err(e) = serde_json::from_slice::<serde_json::Value>(&json) {
                    failures.push(format!("{file}:{line_no}: {query}\n  rendered invalid JSON ({e})"));
                }
                if !matches_expected(&got, expected) {
                    failures.push(format!(
                        "{file}:{line_no}: {query}\n  expected:\n{}  got:\n{}",
                        show(expected),
                        show(&got)
                    ));
                }
            }
            (Command::Eval { .. }, Err(e)) => {
                failures.push(format!("{file}:{line_no}: {query}\n  expected series, got error {e:?}"));
            }
            (Command::EvalError { position, fragment, .. }, Err(e)) => {
                if e.position != *position || !e.message.contains(fragment.as_str()) {
                    failures.push(format!(
                        "{file}:{line_no}: {query}\n  expected error at {position} containing {fragment:?}\n  got error at {}: {:?}",
                        e.position, e.message
                    ));
                }
            }
            (Command::EvalError { position, fragment, .. }, Ok(got)) => failures.push(format!(
                "{file}:{line_no}: {query}\n  expected error at {position} containing {fragment:?}, got:\n{}",
                show(&got)
            )),
            (Command::Load(_), _) => {}
        }
    }
    assert!(evals > 0, "{file} evaluates nothing");
    assert!(
        failures.is_empty(),
        "{} of {evals} evals failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

macro_rules! golden {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run_file(stringify!($name));
            }
        )*
        const FILES: &[&str] = &[$(stringify!($name)),*];
    };
}

golden!(
    select,
    filters,
    window,
    aggregations,
    percentile,
    rate,
    delta,
    r#where,
    math,
    rounding,
    field_alias,
    group_by,
    topk,
    ranges,
    errors,
);

/// Every file in `tests/floql/` runs (a new one is not silently skipped), and every stage of the
/// language appears in some file.
#[test]
fn every_file_runs_and_every_stage_is_tested() {
    let mut on_disk: Vec<String> = fs::read_dir(dir())
        .expect("tests/floql exists")
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".test").map(str::to_string))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = FILES.iter().map(|f| f.trim_start_matches("r#").to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed, "tests/floql/*.test and the golden! list differ");
    let all: String = listed
        .iter()
        .map(|f| fs::read_to_string(dir().join(format!("{f}.test"))).unwrap_or_default())
        .collect();
    for stage in floql::STAGE_NAMES {
        let used = all
            .lines()
            .filter(|l| l.starts_with("eval"))
            .any(|l| l.contains(&format!("| {stage}(")));
        assert!(used, "no golden test uses the stage {stage}()");
    }
}
