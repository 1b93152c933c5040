//! FloQL, the time-series query language: owns its grammar, the parser from query text to a
//! [`Query`] tree ([`parse`], every error a [`ParseError`] with the byte offset that the API
//! answers as `details.position`), and the canonical text of a tree (`Display`), for which
//! `parse(&q.to_string()) == Ok(q)`. Running a query (selecting series, compiling regexes,
//! windows, aggregation) is the executor's.
//!
//! ```text
//! query    := source ('|' stage)*                       at most 64 stages, 16 KiB of text
//! source   := name ('{' [filter (',' filter)*] '}')? ('[' range ']')?
//! filter   := name ('=' | '!=') value | name ('=~' | '!~') regex
//! range    := duration | int '..' int                   epoch ms, both inclusive, from <= to
//! duration := digits ('ms' | 's' | 'm' | 'h' | 'd' | 'w')  > 0, fits i64 ms
//! name     := [A-Za-z_][A-Za-z0-9_.:-]* | quoted         never empty
//! value    := [A-Za-z0-9_.:/-]+ | quoted                 quoted may be empty
//! regex    := [^ \t\r\n,{}"]+ | quoted                   never empty
//! quoted   := '"' (any char but '"' and '\' | '\"' | '\\')* '"'
//! stage    := window(duration)
//!           | (avg|sum|count|min|max|first|last)([arg [, arg]])   arg := duration | name
//!           | percentile(q [, arg [, arg]])
//!           | rate([duration]) | delta() | abs() | ceil() | floor() | round([digits])
//!           | where(value (>|>=|<|<=|==|!=) number)
//!           | math(expr)                               + - * / %, parentheses, unary minus
//!           | field(name) | alias(name) | group_by([name, ...]) | topk(k) | bottomk(k)
//! ```
//! Whitespace (space, tab, CR, LF) may stand between any two tokens, not inside one.
//!
//! Where API.md leaves room, this parser decides:
//! * An aggregation takes an optional window and an optional field, each at most once, in
//!   either order: `avg()`, `avg(5m)`, `avg("usage")` (or bare `avg(usage)`: a bare name starts
//!   with a letter, a duration with a digit), `avg(5m, usage)`. `avg(5m)` stays one
//!   [`Stage::Agg`] with `window: Some(..)`; treating it as `window(5m) | avg()` is the
//!   executor's job. `percentile` takes the same after its `q`.
//! * `percentile(q)`: `q` in [0, 1] is a fraction, `q` in (1, 100] a percent (divided by 100);
//!   so `percentile(1)` is the maximum and `percentile(99)` is `percentile(0.99)`. Anything else
//!   is an error. The tree holds the fraction.
//! * `rate(d)` is the per-second rate over windows of `d`; `rate()` (no window) is the
//!   per-second rate between consecutive points: [`Stage::Rate`] holds an `Option`.
//! * `round()` is `round(0)`; at most [`MAX_ROUND_DIGITS`] places, no negative places.
//! * `abs() ceil() floor() delta()` need their (empty) parentheses; stage names are lower case.
//! * `where` compares `value` (on the left) with a number: sign, fraction and exponent allowed;
//!   `=` alone is an error that suggests `==`.
//! * In `math`, `-2` is `Neg(Num(2))` (unary minus binds tightest; literals are never negative);
//!   operators are left-associative; the tree may be at most [`MAX_EXPR_DEPTH`] deep.
//! * Regexes are kept as text, only checked to be non-empty (the crate has no regex engine);
//!   [`TagFilter::position`] lets the executor report a bad one at the right byte.
//! * Quoted strings know only the escapes `\"` and `\\`; any other backslash is an error (a
//!   regex's `\d` is written bare, `k=~\d+`, or quoted as `"\\d+"`).
//! * A quoted tag value may be empty (`k=""`); names and regexes may not.
//! * `group_by` rejects a repeated tag; `group_by()` (no tag) merges every series of a field; `topk`/`bottomk` need k ≥ 1.
//! * Durations are one number and one unit (`90m`, not `1h30m`, not `1.5h`); the largest is
//!   `i64::MAX` ms. `[1h]` stays [`Range::Relative`], distinct from no range ([`Range::Default`]).
//! * Errors at the end of the text (an unclosed `(`, `{`, `[`) point at the end and name the
//!   byte of the opener; an unterminated string points at its opening quote.

mod ast;
mod parse;

pub use ast::{
    format_duration, format_number, AggFunc, Cmp, Expr, Op, Query, Range, Source, Stage, TagFilter, TagOp,
    DEFAULT_RANGE_MS,
};
pub use parse::{
    parse, ParseError, MAX_DURATION_MS, MAX_EXPR_DEPTH, MAX_QUERY_BYTES, MAX_ROUND_DIGITS, MAX_STAGES, STAGE_NAMES,
};

#[cfg(test)]
mod tests;
