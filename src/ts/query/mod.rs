//! The FloQL executor: owns running a parsed [`Query`] over series — selecting them (tag filters,
//! range), the pipeline of stages, the split of that pipeline between the shards that own the
//! series ([`Plan::shard`]) and the node the query arrived at ([`Plan::finish`]), and the JSON
//! answer ([`render`]).
//!
//! **How a query runs.** [`Plan::new`] compiles the query once (regexes, `math` programs, the
//! range against the server's clock, each aggregation's window). The server selects, on every
//! shard, the series of [`Plan::measurement`] that pass [`Plan::matches`] (helped by the tag
//! index through [`Plan::equal_filters`]), restricts their points to [`Plan::range`] and calls
//! [`Plan::shard`]; the outputs meet in [`Plan::finish`]. A series lives wholly on one shard, so
//! every stage up to the first cross-series one (`group_by`, `topk`, `bottomk`) runs on the
//! shard. A `topk`/`bottomk` there is also applied locally (the global top k are among the local
//! ones). A `group_by` followed by an aggregation — with only `window`, `field` and point-wise
//! stages (`where math abs ceil floor round`, which commute with the union) between — is
//! aggregated on the shard into partials per group and window, merged exactly in `finish`
//! (see `agg`): the answer never depends on how series are spread over shards, nor on the order
//! of the parts.
//!
//! **Semantics** (API.md "Time series", and what it leaves open):
//! * Range: none = the last hour up to now, `[d]` = `[now-d, now]`, `[a..b]` as given; both ends
//!   inclusive.
//! * Tag filters: an absent tag compares as the empty string (as in Prometheus): `k=v` needs the
//!   tag, `k!=v` passes when it is absent or different, `k=""` passes only when it is absent.
//!   Regexes are anchored (`^(?:re)$`) and matched against `""` when the tag is absent; a bad
//!   one is an error at its position in the query.
//! * `window(d)` is consumed by the next aggregation (`avg … percentile`, and `rate`:
//!   `window(d) | rate()` is `rate(d)`), across any stages between; an aggregation's own window
//!   (`avg(5m)`) wins over (and still consumes) a pending one; a window never consumed does
//!   nothing. An aggregation without a window aggregates the whole range into one point stamped
//!   with the range's start. Windows start at multiples of `d` since the epoch (euclidean: -1
//!   is in the window starting at -d), are stamped with their start (so the first may start
//!   before the range), and empty ones are omitted.
//! * `first`/`last`: the value of the earliest/latest point. `percentile(q)`: exact, linear
//!   interpolation between the closest ranks (rank q·(n-1)). `min`, `max` and `percentile` skip
//!   NaN points (`math(value / 0)` makes them); `sum`/`avg` propagate them. `sum` and `avg` are
//!   exactly rounded (`avg` = exact sum / count).
//! * `agg("f")` and `field(f)` keep only the series of field `f`; a restriction before any
//!   `topk`/`bottomk` is also applied by [`Plan::matches`].
//! * `alias(name)` only names the answer: every answered series' field becomes `name` (the last
//!   `alias` wins); `field()` and `group_by` still see stored field names, so two fields never
//!   merge. Aliased series are answered sorted by (measurement, alias, tags, stored field).
//! * `rate()`: per-second rate between consecutive points, stamped at the later; a decrease is
//!   a counter reset (the increase is then the new value). `rate(d)`: per window of `d`, the sum
//!   of the consecutive increases (each assigned to the window of its later point, so a window's
//!   first point brings the increase from the point before it, when that is in the range) divided
//!   by `d` in seconds; windows with no increase omitted. `delta()`: difference of consecutive
//!   points, stamped at the later, no reset handling. Pairs sharing a timestamp (only in a
//!   group's union) give no `rate()` point.
//! * `where(value > x)`: NaN never passes. `math` per point in f64 (`x / 0` is ±inf or NaN,
//!   answered as `null`); `%` is the remainder with the dividend's sign. `round(n)`: half away
//!   from zero on the exact value of the double, to `n` places.
//! * `group_by(t, ..)`: series with the same measurement, field and values of the `t`s (absent
//!   = `""`) merge into one that keeps only those tags (an absent one omitted); its points are
//!   the union ordered by time (points of the same time in order of their series' keys), so two
//!   series give two points at one timestamp until an aggregation combines them per window (avg
//!   of a group = sum of all points / their count). Stages between see the union as one series.
//! * `topk(k)`/`bottomk(k)`: the k series with the largest/smallest last value (a NaN last value
//!   ranks after every other), ties broken by series key; answered in rank order unless a later
//!   `group_by` makes new series. Otherwise series are answered sorted by (measurement, field,
//!   tags). Series left with no points are omitted at every stage.
//! * Limits: at most [`MAX_POINTS_PER_SHARD`] points entering one [`Plan::shard`] call, at most
//!   [`MAX_SERIES`] series in an answer; beyond either is a [`QueryError`] at position 0.
//!
//! **Invariants:** every series' points are ascending by time (one value per timestamp until a
//! `group_by` union), at every stage; `shard` and `finish` never panic on any query or data.

mod agg;
mod render;
mod transform;

#[cfg(test)]
mod tests;

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;

use crate::ts::floql::{Cmp, Query, Range, Stage, TagOp, DEFAULT_RANGE_MS};

use agg::{partials, Func, Partial};
use transform::Program;

pub use render::render;

/// Most points one [`Plan::shard`] call takes.
pub const MAX_POINTS_PER_SHARD: usize = 1_000_000;
/// Most series in one answer.
pub const MAX_SERIES: usize = 10_000;

/// One series with its points: measurement + tags (sorted by key) + field.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesData {
    pub measurement: String,
    pub field: String,
    pub tags: Vec<(String, String)>,
    pub points: Vec<(i64, f64)>,
}

impl SeriesData {
    fn key_cmp(&self, other: &SeriesData) -> Ordering {
        (&self.measurement, &self.field, &self.tags).cmp(&(&other.measurement, &other.field, &other.tags))
    }
}

/// A query error for the API: 400 with details.position.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryError {
    pub position: usize,
    pub message: String,
}

impl QueryError {
    pub(crate) fn new(position: usize, message: impl Into<String>) -> QueryError {
        QueryError {
            position,
            message: message.into(),
        }
    }
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.message, self.position)
    }
}

impl std::error::Error for QueryError {}

/// How one tag filter tests a value (`""` when the tag is absent).
#[derive(Debug)]
enum Matcher {
    Eq(String),
    Ne(String),
    Re(Regex),
    NotRe(Regex),
}

#[derive(Debug)]
struct Filter {
    key: String,
    matcher: Matcher,
}

impl Filter {
    fn passes(&self, value: &str) -> bool {
        match &self.matcher {
            Matcher::Eq(v) => value == v,
            Matcher::Ne(v) => value != v,
            Matcher::Re(re) => re.is_match(value),
            Matcher::NotRe(re) => !re.is_match(value),
        }
    }
}

/// A compiled stage: `window` resolved into the aggregations, `alias` lifted into the plan.
#[derive(Debug)]
enum Step {
    Field(String),
    Where(Cmp, f64),
    Math(Program),
    Abs,
    Ceil,
    Floor,
    Round(u32),
    Delta,
    Rate(Option<u64>),
    /// An aggregation over windows of this many ms, or the whole range.
    Agg(Func, Option<u64>),
    GroupBy(Vec<String>),
    Top {
        k: usize,
        largest: bool,
    },
}

impl Step {
    /// Whether the step treats each point (or each series as a whole, by its field) on its own,
    /// so that it commutes with a `group_by` union.
    fn commutes_with_union(&self) -> bool {
        matches!(
            self,
            Step::Field(_) | Step::Where(..) | Step::Math(_) | Step::Abs | Step::Ceil | Step::Floor | Step::Round(_)
        )
    }

    fn is_cross_series(&self) -> bool {
        matches!(self, Step::GroupBy(_) | Step::Top { .. })
    }
}

/// A compiled query (regexes compiled, range resolved against `now_ms`). Send + Sync (shared by
/// shards via Arc).
#[derive(Debug)]
pub struct Plan {
    measurement: String,
    from_ms: i64,
    to_ms: i64,
    filters: Vec<Filter>,
    /// Field names a series must have (from `field()`/`agg("f")` before any `topk`/`bottomk`).
    fields: Vec<String>,
    steps: Vec<Step>,
    alias: Option<String>,
    /// The first cross-series step (`steps.len()` when none): shards run the steps before it.
    split: usize,
    /// The aggregation after the `group_by` at `split` that shards compute partials of.
    partial_at: Option<usize>,
}

/// What one shard hands to [`Plan::finish`].
#[derive(Debug)]
pub struct ShardOutput {
    inner: Output,
}

#[derive(Debug)]
enum Output {
    /// The series after the shard's stages.
    Series(Vec<SeriesData>),
    /// Per group, the partials of the aggregation at `Plan::partial_at`, per window ascending.
    Partials(Vec<(GroupKey, Vec<(i64, Partial)>)>),
}

/// A series' identity: measurement, field, tags (sorted by key).
type GroupKey = (String, String, Vec<(String, String)>);

/// The error of a selection too large to answer.
fn too_many_points() -> QueryError {
    QueryError::new(
        0,
        format!("query selects more than {MAX_POINTS_PER_SHARD} points; narrow the range or the filters"),
    )
}

fn regex_error(e: &regex::Error) -> String {
    match e {
        regex::Error::Syntax(text) => {
            let reason = text
                .lines()
                .rev()
                .find_map(|l| l.strip_prefix("error: "))
                .unwrap_or("syntax error");
            format!("invalid regex: {reason}")
        }
        regex::Error::CompiledTooBig(_) => "invalid regex: too big once compiled".to_string(),
        _ => "invalid regex".to_string(),
    }
}

impl Plan {
    /// Compiles `q`; `now_ms` is the server's clock for relative ranges. A bad regex is an error
    /// at its [`TagFilter::position`](crate::ts::floql::TagFilter::position).
    pub fn new(q: &Query, now_ms: i64) -> Result<Plan, QueryError> {
        let (from_ms, to_ms) = match q.source.range {
            Range::Default => (now_ms.saturating_sub_unsigned(DEFAULT_RANGE_MS), now_ms),
            Range::Relative { ms } => (now_ms.saturating_sub_unsigned(ms), now_ms),
            Range::Absolute { from_ms, to_ms } => (from_ms, to_ms),
        };
        let mut filters = Vec::with_capacity(q.source.filters.len());
        for f in &q.source.filters {
            let matcher = match f.op {
                TagOp::Eq => Matcher::Eq(f.value.clone()),
                TagOp::Ne => Matcher::Ne(f.value.clone()),
                TagOp::Re | TagOp::NotRe => {
                    // Checked alone first, so an error speaks of the text as written.
                    Regex::new(&f.value).map_err(|e| QueryError::new(f.position, regex_error(&e)))?;
                    let re = Regex::new(&format!("^(?:{})$", f.value))
                        .map_err(|e| QueryError::new(f.position, regex_error(&e)))?;
                    if f.op == TagOp::Re {
                        Matcher::Re(re)
                    } else {
                        Matcher::NotRe(re)
                    }
                }
            };
            filters.push(Filter {
                key: f.key.clone(),
                matcher,
            });
        }

        let mut steps = Vec::with_capacity(q.stages.len());
        let mut alias = None;
        let mut pending_window = None;
        for stage in &q.stages {
            match stage {
                Stage::Window(d) => pending_window = Some(*d),
                Stage::Agg { func, window, field } => {
                    if let Some(f) = field {
                        steps.push(Step::Field(f.clone()));
                    }
                    steps.push(Step::Agg(Func::Agg(*func), window.or(pending_window.take())));
                }
                Stage::Percentile { q, window, field } => {
                    if let Some(f) = field {
                        steps.push(Step::Field(f.clone()));
                    }
                    steps.push(Step::Agg(Func::Percentile(*q), window.or(pending_window.take())));
                }
                Stage::Rate(window) => steps.push(Step::Rate(window.or(pending_window.take()))),
                Stage::Delta => steps.push(Step::Delta),
                Stage::Where(cmp, n) => steps.push(Step::Where(*cmp, *n)),
                Stage::Math(e) => steps.push(Step::Math(Program::compile(e)?)),
                Stage::Abs => steps.push(Step::Abs),
                Stage::Ceil => steps.push(Step::Ceil),
                Stage::Floor => steps.push(Step::Floor),
                Stage::Round(n) => steps.push(Step::Round(*n)),
                Stage::Field(f) => steps.push(Step::Field(f.clone())),
                Stage::Alias(name) => alias = Some(name.clone()),
                Stage::GroupBy(tags) => {
                    let mut tags = tags.clone();
                    tags.sort();
                    tags.dedup();
                    steps.push(Step::GroupBy(tags));
                }
                Stage::TopK(k) => steps.push(Step::Top { k: *k, largest: true }),
                Stage::BottomK(k) => steps.push(Step::Top { k: *k, largest: false }),
            }
        }

        let fields = steps
            .iter()
            .take_while(|s| !matches!(s, Step::Top { .. }))
            .filter_map(|s| match s {
                Step::Field(f) => Some(f.clone()),
                _ => None,
            })
            .collect();
        let split = steps.iter().position(Step::is_cross_series).unwrap_or(steps.len());
        let partial_at = match steps.get(split) {
            Some(Step::GroupBy(_)) => {
                let after = split + 1;
                let j = after + steps[after..].iter().take_while(|s| s.commutes_with_union()).count();
                matches!(steps.get(j), Some(Step::Agg(..))).then_some(j)
            }
            _ => None,
        };
        Ok(Plan {
            measurement: q.source.measurement.clone(),
            from_ms,
            to_ms,
            filters,
            fields,
            steps,
            alias,
            split,
            partial_at,
        })
    }

    pub fn measurement(&self) -> &str {
        &self.measurement
    }

    /// The points the query reads: epoch ms, both inclusive.
    pub fn range(&self) -> (i64, i64) {
        (self.from_ms, self.to_ms)
    }

    /// The `k=v` filters with a non-empty `v`, for the tag index: a matching series has every
    /// one of these tags with that value (`k=""` asks for an absent tag, so it is not listed).
    pub fn equal_filters(&self) -> Vec<(&str, &str)> {
        self.filters
            .iter()
            .filter_map(|f| match &f.matcher {
                Matcher::Eq(v) if !v.is_empty() => Some((f.key.as_str(), v.as_str())),
                _ => None,
            })
            .collect()
    }

    /// Whether the series of `field` with `tags` is selected: every tag filter passes (an absent
    /// tag is `""`) and the field is the one a leading `field()`/`agg("f")` keeps.
    pub fn matches(&self, tags: &[(&str, &str)], field: &str) -> bool {
        self.fields.iter().all(|f| f == field)
            && self.filters.iter().all(|f| {
                let value = tags.iter().find(|(k, _)| *k == f.key).map_or("", |&(_, v)| v);
                f.passes(value)
            })
    }

    /// Runs on the shard that owns `series` (each series lives wholly on one shard): every
    /// per-series stage up to the first cross-series stage (group_by, topk, bottomk), and, when
    /// group_by is followed (possibly after window) by an aggregation, that aggregation's
    /// *partial* state per group and window. `series` are those passing [`Plan::matches`], their
    /// points ascending, one per timestamp, within [`Plan::range`].
    pub fn shard(&self, series: Vec<SeriesData>) -> Result<ShardOutput, QueryError> {
        let mut points = 0usize;
        for s in &series {
            points = points.saturating_add(s.points.len());
            if points > MAX_POINTS_PER_SHARD {
                return Err(too_many_points());
            }
        }
        let mut list = series;
        list.retain(|s| !s.points.is_empty());
        for step in &self.steps[..self.split] {
            list = self.run(step, list);
        }
        let inner = match (self.steps.get(self.split), self.partial_at) {
            (Some(Step::GroupBy(tags)), Some(at)) => {
                for step in &self.steps[self.split + 1..at] {
                    list = self.run(step, list);
                }
                let Some(Step::Agg(func, window)) = self.steps.get(at) else {
                    return Err(QueryError::new(
                        0,
                        "internal error: partial aggregation without an aggregation",
                    ));
                };
                let mut groups: BTreeMap<GroupKey, BTreeMap<i64, Partial>> = BTreeMap::new();
                for s in &list {
                    let windows = groups.entry(group_key(s, tags)).or_default();
                    for (w, p) in partials(&s.points, *func, *window, self.from_ms) {
                        merge_into(windows, w, p);
                    }
                }
                Output::Partials(
                    groups
                        .into_iter()
                        .map(|(k, ws)| (k, ws.into_iter().collect()))
                        .collect(),
                )
            }
            (Some(step @ Step::Top { .. }), _) => Output::Series(self.run(step, list)),
            _ => Output::Series(list),
        };
        Ok(ShardOutput { inner })
    }

    /// Runs where the query arrived: merges every shard's output (partials merged exactly:
    /// sum+count for avg, min/max, first/last by timestamp, values for percentile), then runs the
    /// remaining stages. Result sorted as documented.
    pub fn finish(&self, parts: Vec<ShardOutput>) -> Result<Vec<SeriesData>, QueryError> {
        let (mut list, next) = match self.partial_at {
            Some(at) => {
                let Some(&Step::Agg(func, _)) = self.steps.get(at) else {
                    return Err(QueryError::new(
                        0,
                        "internal error: partial aggregation without an aggregation",
                    ));
                };
                let mut groups: BTreeMap<GroupKey, BTreeMap<i64, Partial>> = BTreeMap::new();
                for part in parts {
                    let Output::Partials(ps) = part.inner else {
                        return Err(QueryError::new(
                            0,
                            "internal error: a shard answered series, not partials",
                        ));
                    };
                    for (key, windows) in ps {
                        let merged = groups.entry(key).or_default();
                        for (w, p) in windows {
                            merge_into(merged, w, p);
                        }
                    }
                }
                let list = groups
                    .into_iter()
                    .map(|((measurement, field, tags), windows)| SeriesData {
                        measurement,
                        field,
                        tags,
                        points: windows.into_iter().map(|(w, p)| (w, p.finish(func))).collect(),
                    })
                    .collect();
                (list, at + 1)
            }
            None => {
                let mut list = Vec::new();
                for part in parts {
                    let Output::Series(s) = part.inner else {
                        return Err(QueryError::new(
                            0,
                            "internal error: a shard answered partials, not series",
                        ));
                    };
                    list.extend(s);
                }
                // Shards answer in any order: one order makes the rest deterministic.
                list.sort_by(SeriesData::key_cmp);
                (list, self.split)
            }
        };
        let mut ranked = false;
        for step in &self.steps[next..] {
            list = self.run(step, list);
            match step {
                Step::Top { .. } => ranked = true,
                Step::GroupBy(_) => ranked = false,
                _ => {}
            }
        }
        if !ranked {
            list.sort_by(SeriesData::key_cmp);
        }
        if let Some(name) = &self.alias {
            for s in &mut list {
                s.field.clone_from(name);
            }
            if !ranked {
                // Stable: series of one name stay in the order of their stored fields.
                list.sort_by(|a, b| (&a.measurement, &a.field, &a.tags).cmp(&(&b.measurement, &b.field, &b.tags)));
            }
        }
        if list.len() > MAX_SERIES {
            return Err(QueryError::new(
                0,
                format!("query answers more than {MAX_SERIES} series; narrow the filters or group them"),
            ));
        }
        Ok(list)
    }

    /// Runs one step over every series; series left with no points are dropped.
    fn run(&self, step: &Step, mut list: Vec<SeriesData>) -> Vec<SeriesData> {
        match step {
            Step::Field(f) => list.retain(|s| s.field == *f),
            Step::Where(cmp, n) => {
                for s in &mut list {
                    s.points.retain(|&(_, v)| transform::holds(v, *cmp, *n));
                }
            }
            Step::Math(program) => {
                let mut stack = Vec::new();
                for s in &mut list {
                    for p in &mut s.points {
                        p.1 = program.eval(p.1, &mut stack);
                    }
                }
            }
            Step::Abs => map_values(&mut list, f64::abs),
            Step::Ceil => map_values(&mut list, f64::ceil),
            Step::Floor => map_values(&mut list, f64::floor),
            Step::Round(n) => map_values(&mut list, |v| transform::round_places(v, *n)),
            Step::Delta => {
                for s in &mut list {
                    s.points = transform::delta(&s.points);
                }
            }
            Step::Rate(window) => {
                for s in &mut list {
                    s.points = match window {
                        Some(d) => transform::rate_windows(&s.points, *d),
                        None => transform::rate_points(&s.points),
                    };
                }
            }
            Step::Agg(func, window) => {
                for s in &mut list {
                    s.points = partials(&s.points, *func, *window, self.from_ms)
                        .into_iter()
                        .map(|(w, p)| (w, p.finish(*func)))
                        .collect();
                }
            }
            Step::GroupBy(tags) => list = group_union(list, tags),
            Step::Top { k, largest } => {
                list.retain(|s| !s.points.is_empty());
                list.sort_by(|a, b| rank(a, b, *largest));
                list.truncate(*k);
            }
        }
        list.retain(|s| !s.points.is_empty());
        list
    }
}

fn map_values(list: &mut [SeriesData], f: impl Fn(f64) -> f64) {
    for s in list {
        for p in &mut s.points {
            p.1 = f(p.1);
        }
    }
}

fn merge_into(windows: &mut BTreeMap<i64, Partial>, w: i64, p: Partial) {
    match windows.get_mut(&w) {
        Some(cur) => cur.merge(p),
        None => {
            windows.insert(w, p);
        }
    }
}

/// The group `s` belongs to under `group_by(tags)` (`tags` sorted): its measurement, field and
/// those of its tags that are present.
fn group_key(s: &SeriesData, tags: &[String]) -> GroupKey {
    let kept = s
        .tags
        .iter()
        .filter(|(k, v)| !v.is_empty() && tags.binary_search(k).is_ok())
        .cloned()
        .collect();
    (s.measurement.clone(), s.field.clone(), kept)
}

/// `group_by(tags)` without a following aggregation here: each group's series become one whose
/// points are their union, ascending by time (ties in the order of the series' keys).
fn group_union(mut list: Vec<SeriesData>, tags: &[String]) -> Vec<SeriesData> {
    list.sort_by(SeriesData::key_cmp);
    let mut groups: BTreeMap<GroupKey, Vec<(i64, f64)>> = BTreeMap::new();
    for s in list {
        let key = group_key(&s, tags);
        groups.entry(key).or_default().extend(s.points);
    }
    groups
        .into_iter()
        .map(|((measurement, field, tags), mut points)| {
            // Stable: ties keep the order of the series' keys.
            points.sort_by_key(|&(t, _)| t);
            SeriesData {
                measurement,
                field,
                tags,
                points,
            }
        })
        .collect()
}

/// The order of `topk` (`largest`) or `bottomk` by last value; NaN last; ties by series key.
fn rank(a: &SeriesData, b: &SeriesData, largest: bool) -> Ordering {
    let last = |s: &SeriesData| s.points.last().map_or(f64::NAN, |p| p.1);
    let (x, y) = (last(a), last(b));
    let by_value = match (x.is_nan(), y.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => {
            let o = x.partial_cmp(&y).unwrap_or(Ordering::Equal);
            if largest {
                o.reverse()
            } else {
                o
            }
        }
    };
    by_value.then_with(|| a.key_cmp(b))
}
