//! Per-point and per-series transforms: `rate`, `delta`, `where`, `math`, `abs ceil floor
//! round`. Each takes a series' points in ascending time order and leaves them so.

use crate::ts::floql::{Cmp, Expr, Op, MAX_EXPR_DEPTH};

use super::agg::window_start;
use super::QueryError;

/// The increase from `prev` to `cur` of a counter: a decrease is a reset, after which the
/// counter counted up from 0 to `cur`.
fn increase(prev: f64, cur: f64) -> f64 {
    if cur < prev {
        cur
    } else {
        cur - prev
    }
}

/// `rate()`: the per-second rate between consecutive points, stamped at the later one. Points
/// sharing a timestamp (possible in a group's union) give no rate.
pub(crate) fn rate_points(points: &[(i64, f64)]) -> Vec<(i64, f64)> {
    points
        .windows(2)
        .filter_map(|w| {
            let ((t0, v0), (t1, v1)) = (w[0], w[1]);
            let dt_ms = t1.checked_sub(t0).filter(|&d| d > 0)?;
            Some((t1, increase(v0, v1) / (dt_ms as f64 / 1000.0)))
        })
        .collect()
}

/// `rate(d)`: per window of `d` ms, the counter's increase divided by `d` in seconds. Each
/// consecutive pair's increase belongs to the window of its later point (so a window's first
/// point contributes its increase from the point before); windows with no pair are omitted.
pub(crate) fn rate_windows(points: &[(i64, f64)], d: u64) -> Vec<(i64, f64)> {
    let seconds = d as f64 / 1000.0;
    let mut out: Vec<(i64, f64)> = Vec::new();
    for w in points.windows(2) {
        let ((_, v0), (t1, v1)) = (w[0], w[1]);
        let start = window_start(t1, d);
        let inc = increase(v0, v1);
        match out.last_mut() {
            Some((s, sum)) if *s == start => *sum += inc,
            _ => out.push((start, inc)),
        }
    }
    for (_, v) in &mut out {
        *v /= seconds;
    }
    out
}

/// `delta()`: the difference of consecutive points, stamped at the later; the first is dropped.
pub(crate) fn delta(points: &[(i64, f64)]) -> Vec<(i64, f64)> {
    points.windows(2).map(|w| (w[1].0, w[1].1 - w[0].1)).collect()
}

/// Whether `where(value <cmp> n)` keeps `v`; NaN never passes.
pub(crate) fn holds(v: f64, cmp: Cmp, n: f64) -> bool {
    !v.is_nan()
        && match cmp {
            Cmp::Gt => v > n,
            Cmp::Ge => v >= n,
            Cmp::Lt => v < n,
            Cmp::Le => v <= n,
            Cmp::Eq => v == n,
            Cmp::Ne => v != n,
        }
}

/// One instruction of a compiled `math` expression, run on a stack.
#[derive(Clone, Copy, Debug)]
enum Ins {
    Value,
    Num(f64),
    Neg,
    Bin(Op),
}

/// A `math(...)` expression compiled to postfix, evaluated without recursion.
#[derive(Clone, Debug)]
pub(crate) struct Program {
    code: Vec<Ins>,
    /// The deepest the stack gets.
    depth: usize,
}

impl Program {
    /// Compiles `e`; a tree deeper than the parser allows is an error.
    pub(crate) fn compile(e: &Expr) -> Result<Program, QueryError> {
        let mut code = Vec::new();
        emit(e, 1, &mut code)?;
        let mut depth = 0usize;
        let mut max = 0usize;
        for ins in &code {
            match ins {
                Ins::Value | Ins::Num(_) => depth += 1,
                Ins::Neg => {}
                Ins::Bin(_) => depth = depth.saturating_sub(1),
            }
            max = max.max(depth);
        }
        Ok(Program { code, depth: max })
    }

    /// The expression's value for the point value `v`; `stack` is scratch space.
    pub(crate) fn eval(&self, v: f64, stack: &mut Vec<f64>) -> f64 {
        stack.clear();
        stack.reserve(self.depth);
        for ins in &self.code {
            match *ins {
                Ins::Value => stack.push(v),
                Ins::Num(n) => stack.push(n),
                Ins::Neg => {
                    if let Some(top) = stack.last_mut() {
                        *top = -*top;
                    }
                }
                Ins::Bin(op) => {
                    let b = stack.pop().unwrap_or(f64::NAN);
                    let a = stack.pop().unwrap_or(f64::NAN);
                    stack.push(match op {
                        Op::Add => a + b,
                        Op::Sub => a - b,
                        Op::Mul => a * b,
                        Op::Div => a / b,
                        Op::Rem => a % b,
                    });
                }
            }
        }
        stack.pop().unwrap_or(f64::NAN)
    }
}

fn emit(e: &Expr, depth: usize, code: &mut Vec<Ins>) -> Result<(), QueryError> {
    if depth > MAX_EXPR_DEPTH {
        return Err(QueryError::new(
            0,
            format!("math expression nests deeper than {MAX_EXPR_DEPTH}"),
        ));
    }
    match e {
        Expr::Value => code.push(Ins::Value),
        Expr::Num(n) => code.push(Ins::Num(*n)),
        Expr::Neg(inner) => {
            emit(inner, depth + 1, code)?;
            code.push(Ins::Neg);
        }
        Expr::Bin(l, op, r) => {
            emit(l, depth + 1, code)?;
            emit(r, depth + 1, code)?;
            code.push(Ins::Bin(*op));
        }
    }
    Ok(())
}

/// `round(n)`: `v` rounded to `n` decimal places, half away from zero, judged on the exact value
/// of `v` (so `round(2.675, 2)` is 2.67: the double 2.675 is a little below it); the result is
/// the double nearest the rounded decimal.
pub(crate) fn round_places(v: f64, n: u32) -> f64 {
    if !v.is_finite() {
        return v;
    }
    if n <= 22 {
        // 10^n is exact up to 10^22, so `y` is the product correctly rounded.
        let p = 10f64.powi(n as i32);
        let y = v * p;
        let frac = (y - y.trunc()).abs();
        if frac == 0.5 && v.mul_add(p, -y) == 0.0 {
            // An exact tie: away from zero.
            return (y.trunc() + y.signum()) / p;
        }
        if y.abs() < (1u64 << 40) as f64 && (frac - 0.5).abs() > 1e-3 {
            // Far from a tie: the product's rounding error cannot change the integer.
            return y.round() / p;
        }
    }
    // Near a tie, or many places: Rust formats the exact value, correctly rounded (exact ties,
    // the only case where it could round towards even, were handled above; beyond 22 places
    // none exist for a double).
    format!("{v:.prec$}", prec = n as usize).parse().unwrap_or(v)
}
