//! Aggregation state: the partial of one aggregation over one window ([`Partial`]), built from
//! points, merged with partials of other points in any order, and finished into the value. The
//! merge is exact — the result never depends on how the points were split or in which order the
//! parts arrive — which is what lets shards aggregate their own series of a group and the
//! coordinator merge them:
//! * sums are exact until the final rounding ([`ExactSum`], Shewchuk's algorithm as in Python's
//!   `math.fsum`), so `sum` and `avg` are the correctly rounded sum (mean: that sum / count);
//! * `min`/`max` skip NaN (only-NaN windows give NaN) and order -0 before +0;
//! * `first`/`last` break a tie of timestamps (a group's union) by the value's total order;
//! * `percentile` keeps every value and sorts at the end; NaN values are skipped.

use std::cmp::Ordering;

use crate::ts::floql::AggFunc;

/// An aggregation function, percentile included.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Func {
    Agg(AggFunc),
    /// A fraction in [0, 1].
    Percentile(f64),
}

/// The start of the window of `d` ms holding `ts`: the multiple of `d` at or below `ts`
/// (euclidean, so negative timestamps fall into the window below them). A window starting
/// before `i64::MIN` is stamped `i64::MIN`.
pub(crate) fn window_start(ts: i64, d: u64) -> i64 {
    match i64::try_from(d) {
        Ok(d) if d > 0 => ts.saturating_sub(ts.rem_euclid(d)),
        // A window wider than any i64: only the split at 0 remains.
        _ => {
            if ts >= 0 {
                0
            } else {
                i64::MIN
            }
        }
    }
}

/// A sum exact until read: non-overlapping partial sums (Shewchuk). Non-finite inputs are summed
/// apart (any NaN, or +inf with -inf, gives NaN); a sum beyond ±f64::MAX is ±inf.
#[derive(Clone, Debug, Default)]
pub(crate) struct ExactSum {
    /// Non-overlapping, increasing magnitude.
    partials: Vec<f64>,
    /// The sum of the non-finite inputs (and of overflowed partial sums), if any.
    special: Option<f64>,
}

impl ExactSum {
    pub(crate) fn add(&mut self, mut x: f64) {
        if !x.is_finite() {
            self.add_special(x);
            return;
        }
        let mut i = 0;
        for j in 0..self.partials.len() {
            let mut y = self.partials[j];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            let hi = x + y;
            if !hi.is_finite() {
                self.partials.clear();
                self.add_special(hi);
                return;
            }
            let lo = y - (hi - x);
            if lo != 0.0 {
                self.partials[i] = lo;
                i += 1;
            }
            x = hi;
        }
        self.partials.truncate(i);
        self.partials.push(x);
    }

    fn add_special(&mut self, x: f64) {
        self.special = Some(self.special.map_or(x, |s| s + x));
    }

    pub(crate) fn merge(&mut self, other: &ExactSum) {
        for &p in &other.partials {
            self.add(p);
        }
        if let Some(s) = other.special {
            self.add_special(s);
        }
    }

    /// The correctly rounded sum (round half to even).
    pub(crate) fn value(&self) -> f64 {
        if let Some(s) = self.special {
            return s;
        }
        let p = &self.partials;
        let Some(&top) = p.last() else {
            return 0.0;
        };
        let mut n = p.len() - 1;
        let mut hi = top;
        let mut lo = 0.0;
        while n > 0 {
            let x = hi;
            n -= 1;
            let y = p[n];
            hi = x + y;
            let yr = hi - x;
            lo = y - yr;
            if lo != 0.0 {
                break;
            }
        }
        // Half-way cases: the rest of the partials decide which way `lo` rounds.
        if n > 0 && ((lo < 0.0 && p[n - 1] < 0.0) || (lo > 0.0 && p[n - 1] > 0.0)) {
            let y = lo * 2.0;
            let x = hi + y;
            if y == x - hi {
                hi = x;
            }
        }
        hi
    }
}

/// The state of one aggregation over some of the points of one window.
#[derive(Clone, Debug)]
pub(crate) enum Partial {
    Sum(ExactSum, u64),
    Count(u64),
    Min(f64),
    Max(f64),
    First(i64, f64),
    Last(i64, f64),
    Values(Vec<f64>),
}

/// Whether `(t, v)` comes before `(ct, cv)`: earlier, or as early with a lower value.
fn before(t: i64, v: f64, ct: i64, cv: f64) -> bool {
    (t, v.total_cmp(&cv)) < (ct, Ordering::Equal)
}

/// Whether `v` is a better minimum than `cur` (NaN never is, unless `cur` is NaN; -0 beats +0).
fn lower(v: f64, cur: f64) -> bool {
    !v.is_nan() && (cur.is_nan() || v < cur || (v == cur && v.is_sign_negative()))
}

fn higher(v: f64, cur: f64) -> bool {
    !v.is_nan() && (cur.is_nan() || v > cur || (v == cur && cur.is_sign_negative()))
}

impl Partial {
    /// The state of `func` over the single point `(t, v)`.
    pub(crate) fn of(func: Func, t: i64, v: f64) -> Partial {
        match func {
            Func::Agg(AggFunc::Avg | AggFunc::Sum) => {
                let mut s = ExactSum::default();
                s.add(v);
                Partial::Sum(s, 1)
            }
            Func::Agg(AggFunc::Count) => Partial::Count(1),
            Func::Agg(AggFunc::Min) => Partial::Min(v),
            Func::Agg(AggFunc::Max) => Partial::Max(v),
            Func::Agg(AggFunc::First) => Partial::First(t, v),
            Func::Agg(AggFunc::Last) => Partial::Last(t, v),
            Func::Percentile(_) => Partial::Values(if v.is_nan() { Vec::new() } else { vec![v] }),
        }
    }

    /// Adds the point `(t, v)`.
    pub(crate) fn add(&mut self, t: i64, v: f64) {
        match self {
            Partial::Sum(s, n) => {
                s.add(v);
                *n += 1;
            }
            Partial::Count(n) => *n += 1,
            Partial::Min(cur) => {
                if lower(v, *cur) {
                    *cur = v;
                }
            }
            Partial::Max(cur) => {
                if higher(v, *cur) {
                    *cur = v;
                }
            }
            Partial::First(ct, cv) => {
                if before(t, v, *ct, *cv) {
                    (*ct, *cv) = (t, v);
                }
            }
            Partial::Last(ct, cv) => {
                if before(*ct, *cv, t, v) {
                    (*ct, *cv) = (t, v);
                }
            }
            Partial::Values(vs) => {
                if !v.is_nan() {
                    vs.push(v);
                }
            }
        }
    }

    /// Merges another partial of the same function.
    pub(crate) fn merge(&mut self, other: Partial) {
        match (self, other) {
            (Partial::Sum(s, n), Partial::Sum(os, on)) => {
                s.merge(&os);
                *n += on;
            }
            (Partial::Count(n), Partial::Count(on)) => *n += on,
            (Partial::Min(cur), Partial::Min(v)) => {
                if lower(v, *cur) {
                    *cur = v;
                }
            }
            (Partial::Max(cur), Partial::Max(v)) => {
                if higher(v, *cur) {
                    *cur = v;
                }
            }
            (me @ Partial::First(..), Partial::First(t, v)) => me.add(t, v),
            (me @ Partial::Last(..), Partial::Last(t, v)) => me.add(t, v),
            (Partial::Values(vs), Partial::Values(ov)) => vs.extend(ov),
            (me, other) => debug_assert!(false, "merging partials of different functions: {me:?} and {other:?}"),
        }
    }

    /// The aggregate's value.
    pub(crate) fn finish(self, func: Func) -> f64 {
        match (self, func) {
            (Partial::Sum(s, n), Func::Agg(AggFunc::Avg)) => s.value() / n as f64,
            (Partial::Sum(s, _), _) => s.value(),
            (Partial::Count(n), _) => n as f64,
            (Partial::Min(v) | Partial::Max(v) | Partial::First(_, v) | Partial::Last(_, v), _) => v,
            (Partial::Values(mut vs), Func::Percentile(q)) => {
                vs.sort_by(f64::total_cmp);
                percentile_sorted(&vs, q)
            }
            (Partial::Values(_), Func::Agg(_)) => f64::NAN,
        }
    }
}

/// The `q` quantile of ascending `vs` (no NaN), interpolating linearly between the closest
/// ranks: rank `q * (n - 1)`; `q = 0` is the minimum, `q = 1` the maximum. NaN when empty.
pub(crate) fn percentile_sorted(vs: &[f64], q: f64) -> f64 {
    let Some(last) = vs.len().checked_sub(1) else {
        return f64::NAN;
    };
    let rank = q.clamp(0.0, 1.0) * last as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    match (vs.get(lo), vs.get(hi)) {
        (Some(&a), Some(&b)) if lo != hi => {
            let frac = rank - lo as f64;
            if a == b {
                a
            } else {
                a + (b - a) * frac
            }
        }
        (Some(&a), _) => a,
        _ => f64::NAN,
    }
}

/// Aggregates ascending-by-time `points` of one series into per-window partials (`window`
/// `None`: one partial stamped `whole_start`), in ascending window order, empty windows omitted.
pub(crate) fn partials(
    points: &[(i64, f64)],
    func: Func,
    window: Option<u64>,
    whole_start: i64,
) -> Vec<(i64, Partial)> {
    let mut out: Vec<(i64, Partial)> = Vec::new();
    for &(t, v) in points {
        let w = window.map_or(whole_start, |d| window_start(t, d));
        match out.last_mut() {
            Some((lw, p)) if *lw == w => p.add(t, v),
            _ => out.push((w, Partial::of(func, t, v))),
        }
    }
    out
}
