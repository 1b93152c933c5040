//! The FloQL syntax tree and its canonical text (`Display`): what [`super::parse`] builds and
//! what prints back to a query that parses to an equal tree. Durations are milliseconds.

use std::fmt;

/// Milliseconds of the range a query without `[...]` covers: the last hour.
pub const DEFAULT_RANGE_MS: u64 = 3_600_000;

/// A whole query: `source | stage | stage ...`.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    pub source: Source,
    pub stages: Vec<Stage>,
}

/// `measurement{filters}[range]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Source {
    pub measurement: String,
    pub filters: Vec<TagFilter>,
    pub range: Range,
}

/// How a tag filter compares a series' tag value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagOp {
    /// `k=v`
    Eq,
    /// `k!=v`
    Ne,
    /// `k=~regex` (anchored: the whole value matches)
    Re,
    /// `k!~regex`
    NotRe,
}

impl TagOp {
    pub fn symbol(self) -> &'static str {
        match self {
            TagOp::Eq => "=",
            TagOp::Ne => "!=",
            TagOp::Re => "=~",
            TagOp::NotRe => "!~",
        }
    }
}

/// One tag filter. For `Re`/`NotRe`, `value` is the regex's source text, checked only for being
/// non-empty: the executor compiles it and reports a bad one at `position`.
#[derive(Clone, Debug)]
pub struct TagFilter {
    pub key: String,
    pub op: TagOp,
    pub value: String,
    /// Byte offset of the value (or regex) in the query text. Not part of the filter's identity:
    /// `==` ignores it, as the same filter can be written in different places.
    pub position: usize,
}

impl TagFilter {
    pub fn new(key: impl Into<String>, op: TagOp, value: impl Into<String>) -> TagFilter {
        TagFilter {
            key: key.into(),
            op,
            value: value.into(),
            position: 0,
        }
    }
}

impl PartialEq for TagFilter {
    fn eq(&self, other: &TagFilter) -> bool {
        self.key == other.key && self.op == other.op && self.value == other.value
    }
}

/// The time range of a query.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Range {
    /// No `[...]`: the last hour up to now ([`DEFAULT_RANGE_MS`]).
    #[default]
    Default,
    /// `[1h]`: the last `ms` up to now.
    Relative { ms: u64 },
    /// `[from..to]`: epoch milliseconds, both inclusive, `from_ms <= to_ms`.
    Absolute { from_ms: i64, to_ms: i64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggFunc {
    Avg,
    Sum,
    Count,
    Min,
    Max,
    First,
    Last,
}

impl AggFunc {
    pub const ALL: [AggFunc; 7] = [
        AggFunc::Avg,
        AggFunc::Sum,
        AggFunc::Count,
        AggFunc::Min,
        AggFunc::Max,
        AggFunc::First,
        AggFunc::Last,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AggFunc::Avg => "avg",
            AggFunc::Sum => "sum",
            AggFunc::Count => "count",
            AggFunc::Min => "min",
            AggFunc::Max => "max",
            AggFunc::First => "first",
            AggFunc::Last => "last",
        }
    }

    pub fn from_name(name: &str) -> Option<AggFunc> {
        AggFunc::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// The comparison of `where(value <cmp> number)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl Cmp {
    pub fn symbol(self) -> &'static str {
        match self {
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Eq => "==",
            Cmp::Ne => "!=",
        }
    }
}

/// A binary operator of `math(...)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

impl Op {
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Add => "+",
            Op::Sub => "-",
            Op::Mul => "*",
            Op::Div => "/",
            Op::Rem => "%",
        }
    }

    /// Binding strength: `* / %` bind tighter than `+ -`; all are left-associative.
    pub fn precedence(self) -> u8 {
        match self {
            Op::Add | Op::Sub => 1,
            Op::Mul | Op::Div | Op::Rem => 2,
        }
    }
}

/// The expression of `math(...)`. Literals are never negative: `-2` is `Neg(Num(2))`.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// `value`: the point's value.
    Value,
    Num(f64),
    Neg(Box<Expr>),
    Bin(Box<Expr>, Op, Box<Expr>),
}

/// One stage of the pipeline.
#[derive(Clone, Debug, PartialEq)]
pub enum Stage {
    /// `window(d)`: the following aggregations work per window of `d` ms.
    Window(u64),
    /// `avg() sum() count() min() max() first() last()`, each with an optional window (`avg(5m)` is
    /// `window(5m) | avg()`, kept as written) and an optional field (`avg("usage")`).
    Agg {
        func: AggFunc,
        window: Option<u64>,
        field: Option<String>,
    },
    /// `percentile(q)`, `q` as a fraction in [0, 1] (a percent in (1, 100] is divided by 100 when
    /// parsed); window and field as for the other aggregations.
    Percentile {
        q: f64,
        window: Option<u64>,
        field: Option<String>,
    },
    /// `rate(d)`: per-second rate over windows of `d` ms; `rate()`: per-second rate between
    /// consecutive points. Counter resets are the executor's to handle.
    Rate(Option<u64>),
    /// `delta()`
    Delta,
    /// `where(value > 90)`: keeps the points for which the comparison holds.
    Where(Cmp, f64),
    /// `math(value * 1.8 + 32)`
    Math(Expr),
    Abs,
    Ceil,
    Floor,
    /// `round(n)`: to `n` decimal places; `round()` is `round(0)`.
    Round(u32),
    /// `field(name)`: keeps only the series of this field.
    Field(String),
    /// `alias(name)`: renames the series' field in the answer.
    Alias(String),
    /// `group_by(tag, ...)`: at least one tag, no repeats.
    GroupBy(Vec<String>),
    /// `topk(k)`, `k >= 1`: the `k` series with the largest last value.
    TopK(usize),
    /// `bottomk(k)`, `k >= 1`: the `k` series with the smallest last value.
    BottomK(usize),
}

impl Stage {
    /// The stage's name as written in a query.
    pub fn name(&self) -> &'static str {
        match self {
            Stage::Window(_) => "window",
            Stage::Agg { func, .. } => func.name(),
            Stage::Percentile { .. } => "percentile",
            Stage::Rate(_) => "rate",
            Stage::Delta => "delta",
            Stage::Where(..) => "where",
            Stage::Math(_) => "math",
            Stage::Abs => "abs",
            Stage::Ceil => "ceil",
            Stage::Floor => "floor",
            Stage::Round(_) => "round",
            Stage::Field(_) => "field",
            Stage::Alias(_) => "alias",
            Stage::GroupBy(_) => "group_by",
            Stage::TopK(_) => "topk",
            Stage::BottomK(_) => "bottomk",
        }
    }
}

// ---- Canonical text ----
//
// One space either side of `|` and of binary operators, `, ` between arguments, none inside
// `{...}`; names bare when the grammar allows, else double-quoted; durations in the largest unit
// that divides them; numbers plain unless long (see `format_number`), always exact.

/// Whether a measurement, tag key, field or alias can be written without quotes.
pub(crate) fn is_bare_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty() && (b[0].is_ascii_alphabetic() || b[0] == b'_') && b.iter().all(|&c| is_name_byte(c))
}

pub(crate) fn is_name_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b':' | b'-')
}

/// Whether a tag value can be written without quotes (`web-01`, `10.0.0.1`, `/var/log`).
pub(crate) fn is_bare_value(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_value_byte)
}

pub(crate) fn is_value_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b':' | b'/' | b'-')
}

/// Whether a regex can be written without quotes: anything but whitespace, `,`, `{`, `}`, `"`.
pub(crate) fn is_bare_regex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_regex_byte)
}

pub(crate) fn is_regex_byte(c: u8) -> bool {
    !matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b',' | b'{' | b'}' | b'"')
}

fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    let mut rest = s;
    while let Some(i) = rest.find(['"', '\\']) {
        f.write_str(&rest[..i])?;
        f.write_str("\\")?;
        f.write_str(&rest[i..i + 1])?;
        rest = &rest[i + 1..];
    }
    f.write_str(rest)?;
    f.write_str("\"")
}

fn write_name(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    if is_bare_name(s) {
        f.write_str(s)
    } else {
        write_quoted(f, s)
    }
}

/// A duration in its canonical form: `3600000` → `1h`, `90000` → `90s`, `1500` → `1500ms`.
pub fn format_duration(ms: u64) -> String {
    const UNITS: [(&str, u64); 5] = [
        ("w", 604_800_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ];
    for (unit, size) in UNITS {
        if ms != 0 && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// A number as Rust prints it (`0.5`, `1000`), or in exponent notation (`1e300`) when that is
/// shorter than a plain form over 16 characters; both are the shortest digits that read back
/// to the same `f64`.
pub fn format_number(n: f64) -> String {
    let plain = format!("{n}");
    if plain.len() <= 16 {
        return plain;
    }
    let exp = format!("{n:e}");
    if exp.len() < plain.len() {
        exp
    } else {
        plain
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.source)?;
        for stage in &self.stages {
            write!(f, " | {stage}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_name(f, &self.measurement)?;
        if !self.filters.is_empty() {
            f.write_str("{")?;
            for (i, filter) in self.filters.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{filter}")?;
            }
            f.write_str("}")?;
        }
        write!(f, "{}", self.range)
    }
}

impl fmt::Display for TagFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_name(f, &self.key)?;
        f.write_str(self.op.symbol())?;
        let bare = match self.op {
            TagOp::Eq | TagOp::Ne => is_bare_value(&self.value),
            TagOp::Re | TagOp::NotRe => is_bare_regex(&self.value),
        };
        if bare {
            f.write_str(&self.value)
        } else {
            write_quoted(f, &self.value)
        }
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Range::Default => Ok(()),
            Range::Relative { ms } => write!(f, "[{}]", format_duration(*ms)),
            Range::Absolute { from_ms, to_ms } => write!(f, "[{from_ms}..{to_ms}]"),
        }
    }
}

/// `(window, field)` arguments of an aggregation, after any leading arguments.
fn write_agg_args(
    f: &mut fmt::Formatter<'_>,
    mut first: bool,
    window: Option<u64>,
    field: &Option<String>,
) -> fmt::Result {
    if let Some(ms) = window {
        if !first {
            f.write_str(", ")?;
        }
        f.write_str(&format_duration(ms))?;
        first = false;
    }
    if let Some(name) = field {
        if !first {
            f.write_str(", ")?;
        }
        write_name(f, name)?;
    }
    Ok(())
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        f.write_str("(")?;
        match self {
            Stage::Window(ms) => f.write_str(&format_duration(*ms))?,
            Stage::Agg { window, field, .. } => write_agg_args(f, true, *window, field)?,
            Stage::Percentile { q, window, field } => {
                f.write_str(&format_number(*q))?;
                write_agg_args(f, false, *window, field)?;
            }
            Stage::Rate(window) => {
                if let Some(ms) = window {
                    f.write_str(&format_duration(*ms))?;
                }
            }
            Stage::Delta | Stage::Abs | Stage::Ceil | Stage::Floor => {}
            Stage::Where(cmp, n) => write!(f, "value {} {}", cmp.symbol(), format_number(*n))?,
            Stage::Math(e) => write!(f, "{e}")?,
            Stage::Round(digits) => write!(f, "{digits}")?,
            Stage::Field(name) | Stage::Alias(name) => write_name(f, name)?,
            Stage::GroupBy(tags) => {
                for (i, tag) in tags.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write_name(f, tag)?;
                }
            }
            Stage::TopK(k) | Stage::BottomK(k) => write!(f, "{k}")?,
        }
        f.write_str(")")
    }
}

impl fmt::Display for Expr {
    /// With only the parentheses the tree needs, so the text never nests deeper than the tree.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Value => f.write_str("value"),
            Expr::Num(n) => f.write_str(&format_number(*n)),
            Expr::Neg(e) => match **e {
                Expr::Bin(..) => write!(f, "-({e})"),
                _ => write!(f, "-{e}"),
            },
            Expr::Bin(l, op, r) => {
                let p = op.precedence();
                match **l {
                    Expr::Bin(_, lop, _) if lop.precedence() < p => write!(f, "({l})")?,
                    _ => write!(f, "{l}")?,
                }
                write!(f, " {} ", op.symbol())?;
                match **r {
                    Expr::Bin(_, rop, _) if rop.precedence() <= p => write!(f, "({r})"),
                    _ => write!(f, "{r}"),
                }
            }
        }
    }
}
