//! The FloQL parser: recursive descent straight over the query's bytes (what a token is depends
//! on where it stands — `web-01` is a tag value, `5m` a duration — so there is no separate lexer).
//! Every error is a value carrying the byte offset of the offending token; nothing here panics
//! on any input, and recursion is bounded by [`MAX_EXPR_DEPTH`].

use std::collections::HashSet;
use std::fmt;

use super::ast::{
    is_name_byte, is_regex_byte, is_value_byte, AggFunc, Cmp, Expr, Op, Query, Range, Source, Stage, TagFilter, TagOp,
};

/// Longest query text, in bytes.
pub const MAX_QUERY_BYTES: usize = 16 * 1024;
/// Most stages after the source.
pub const MAX_STAGES: usize = 64;
/// Deepest `math(...)` expression tree (a lone `value` is 1), and deepest nesting of
/// parentheses and unary minus while parsing one.
pub const MAX_EXPR_DEPTH: usize = 64;
/// Most decimal places of `round(n)` (beyond f64's decimal exponent range they mean nothing).
pub const MAX_ROUND_DIGITS: u32 = 308;
/// Longest duration, in ms: it fits an `i64` count of epoch milliseconds.
pub const MAX_DURATION_MS: u64 = i64::MAX as u64;

/// Every stage name.
pub const STAGE_NAMES: [&str; 22] = [
    "window",
    "avg",
    "sum",
    "count",
    "min",
    "max",
    "first",
    "last",
    "percentile",
    "rate",
    "delta",
    "where",
    "math",
    "abs",
    "ceil",
    "floor",
    "round",
    "field",
    "alias",
    "group_by",
    "topk",
    "bottomk",
];

/// A query that does not parse: where (byte offset in the query text) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub position: usize,
    pub message: String,
}

impl ParseError {
    fn new(position: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            position,
            message: message.into(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.message, self.position)
    }
}

impl std::error::Error for ParseError {}

type Result<T> = std::result::Result<T, ParseError>;

/// Parses FloQL text into a [`Query`].
pub fn parse(query: &str) -> Result<Query> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(ParseError::new(
            MAX_QUERY_BYTES,
            format!(
                "query is {} bytes long; at most {MAX_QUERY_BYTES} are allowed",
                query.len()
            ),
        ));
    }
    let mut p = Parser { src: query, pos: 0 };
    p.skip_ws();
    if p.at_end() {
        return Err(p.error_here("empty query: expected a measurement name"));
    }
    let source = p.source()?;
    let mut stages = Vec::new();
    loop {
        p.skip_ws();
        match p.peek() {
            None => break,
            Some(b'|') => {
                p.pos += 1;
                p.skip_ws();
                if stages.len() == MAX_STAGES {
                    return Err(p.error_here(format!("too many stages: at most {MAX_STAGES}")));
                }
                stages.push(p.stage()?);
            }
            Some(_) => return Err(p.expected("'|' or the end of the query")),
        }
    }
    Ok(Query { source, stages })
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

fn is_digit(c: u8) -> bool {
    c.is_ascii_digit()
}

fn starts_word(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

impl<'a> Parser<'a> {
    // ---- Cursor ----

    fn bytes(&self) -> &'a [u8] {
        self.src.as_bytes()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.src.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.bytes().get(self.pos + ahead).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// Consumes `token` if the input continues with it.
    fn eat(&mut self, token: &str) -> bool {
        let rest = self.bytes().get(self.pos..).unwrap_or(&[]);
        if rest.starts_with(token.as_bytes()) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    /// Consumes the longest run of bytes matching `pred` and returns it. `pred` accepts only ASCII
    /// bytes, or rejects only ASCII bytes, so the run ends on a char boundary.
    fn take_while(&mut self, pred: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&pred) {
            self.pos += 1;
        }
        self.src.get(start..self.pos).unwrap_or("")
    }

    // ---- Errors ----

    fn error_here(&self, message: impl Into<String>) -> ParseError {
        ParseError::new(self.pos, message)
    }

    /// What stands at the cursor, for messages: a word, one character, or the end.
    fn found(&self) -> String {
        let rest = self.src.get(self.pos..).unwrap_or("");
        match rest.chars().next() {
            None => "the end of the query".to_string(),
            Some(c) if c.is_ascii_alphanumeric() || c == '_' => {
                let word: String = rest
                    .chars()
                    .take_while(|&c| c.is_ascii() && is_name_byte(c as u8))
                    .take(40)
                    .collect();
                format!("'{word}'")
            }
            Some(c) => format!("'{}'", c.escape_debug()),
        }
    }

    fn expected(&self, what: &str) -> ParseError {
        self.error_here(format!("expected {what}, found {}", self.found()))
    }

    /// Consumes the `)` that closes the `(` at `open`.
    fn close_paren(&mut self, open: usize, stage: &str) -> Result<()> {
        self.skip_ws();
        match self.peek() {
            Some(b')') => {
                self.pos += 1;
                Ok(())
            }
            None => Err(self.error_here(format!(
                "expected ')' to close the '(' of '{stage}' at byte {open}, found the end of the query"
            ))),
            Some(_) => Err(self.expected(&format!("')' to close '{stage}('"))),
        }
    }

    // ---- Names and strings ----

    /// A double-quoted string, at the `"`; the only escapes are `\"` and `\\`.
    fn quoted(&mut self) -> Result<String> {
        let open = self.pos;
        self.pos += 1;
        let mut out = String::new();
        let mut seg = self.pos;
        loop {
            match self.peek() {
                None => return Err(ParseError::new(open, "unterminated quoted string")),
                Some(b'"') => {
                    out.push_str(self.src.get(seg..self.pos).unwrap_or(""));
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    out.push_str(self.src.get(seg..self.pos).unwrap_or(""));
                    match self.peek_at(1) {
                        Some(c @ (b'"' | b'\\')) => out.push(char::from(c)),
                        None => return Err(ParseError::new(open, "unterminated quoted string")),
                        Some(_) => {
                            return Err(self
                                .error_here("unknown escape in a quoted string: the only escapes are \\\" and \\\\"))
                        }
                    }
                    self.pos += 2;
                    seg = self.pos;
                }
                Some(_) => self.pos += 1,
            }
        }
    }

    /// A measurement, tag key, field or alias: bare `[A-Za-z_][A-Za-z0-9_.:-]*` or double-quoted;
    /// never empty.
    fn name(&mut self, what: &str) -> Result<String> {
        let at = self.pos;
        match self.peek() {
            Some(b'"') => {
                let name = self.quoted()?;
                if name.is_empty() {
                    return Err(ParseError::new(at, format!("expected {what}, found an empty string")));
                }
                Ok(name)
            }
            Some(c) if starts_word(c) => Ok(self.take_while(is_name_byte).to_string()),
            Some(c) if is_digit(c) => Err(self.error_here(format!(
                "expected {what}, found {}; a name that starts with a digit must be double-quoted",
                self.found()
            ))),
            _ => Err(self.expected(what)),
        }
    }

    /// A word of the language itself (a stage name, `value`); empty if none stands here.
    fn keyword(&mut self) -> &'a str {
        match self.peek() {
            Some(c) if starts_word(c) => self.take_while(|c| c.is_ascii_alphanumeric() || c == b'_'),
            _ => "",
        }
    }

    // ---- Numbers ----

    /// A run of ASCII digits as a u64, `None` on overflow (the run is consumed either way).
    fn digits(&mut self) -> Option<u64> {
        let run = self.take_while(is_digit);
        run.bytes()
            .try_fold(0u64, |n, d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
    }

    /// A positive integer, such as the `k` of `topk(k)`.
    fn positive_integer(&mut self, what: &str) -> Result<u64> {
        let at = self.pos;
        if !self.peek().is_some_and(is_digit) {
            return Err(self.expected(&format!("{what} (a positive integer)")));
        }
        match self.digits() {
            None => Err(ParseError::new(at, format!("{what} is too large"))),
            Some(0) => Err(ParseError::new(at, format!("{what} must be at least 1"))),
            Some(n) => Ok(n),
        }
    }

    /// An epoch-ms timestamp: optional `-`, digits.
    fn timestamp(&mut self) -> Result<i64> {
        let at = self.pos;
        let negative = self.eat("-");
        if !self.peek().is_some_and(is_digit) {
            return Err(self.expected("an epoch timestamp in milliseconds"));
        }
        let magnitude = self.digits().map(i128::from);
        if self.peek() == Some(b'.') && self.peek_at(1).is_some_and(is_digit) {
            return Err(ParseError::new(
                at,
                "an epoch timestamp is a whole number of milliseconds",
            ));
        }
        magnitude
            .map(|m| if negative { -m } else { m })
            .and_then(|v| i64::try_from(v).ok())
            .ok_or_else(|| ParseError::new(at, "timestamp out of range (64-bit epoch milliseconds)"))
    }

    /// A duration: digits and a unit `ms s m h d w`; positive, at most [`MAX_DURATION_MS`].
    fn duration(&mut self) -> Result<u64> {
        let at = self.pos;
        if !self.peek().is_some_and(is_digit) {
            return Err(self.expected("a duration (e.g. 5m; units ms s m h d w)"));
        }
        let n = self.digits();
        if self.peek() == Some(b'.') && self.peek_at(1).is_some_and(is_digit) {
            return Err(ParseError::new(
                at,
                "a duration is a whole number of its unit (write 90m, not 1.5h)",
            ));
        }
        let unit_at = self.pos;
        let unit = self.take_while(|c| c.is_ascii_alphabetic());
        let size: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "" => return Err(ParseError::new(at, "a duration needs a unit: ms s m h d w (e.g. 5m)")),
            other => {
                return Err(ParseError::new(
                    unit_at,
                    format!("unknown duration unit '{other}': the units are ms s m h d w"),
                ))
            }
        };
        if self.peek().is_some_and(is_digit) {
            return Err(self.error_here("compound durations are not supported (write 90m, not 1h30m)"));
        }
        match n.and_then(|n| n.checked_mul(size)) {
            Some(0) => Err(ParseError::new(at, "a duration must be greater than zero")),
            Some(ms) if ms <= MAX_DURATION_MS => Ok(ms),
            _ => Err(ParseError::new(at, "duration too long")),
        }
    }

    /// A finite decimal number `digits[.digits][(e|E)[+-]digits]`, with a leading `-` if `signed`.
    fn number(&mut self, signed: bool, what: &str) -> Result<f64> {
        let at = self.pos;
        let negative = signed && self.eat("-");
        if !self.peek().is_some_and(is_digit) {
            if negative {
                return Err(self.expected("a digit after '-'"));
            }
            return Err(self.expected(what));
        }
        self.take_while(is_digit);
        if self.peek() == Some(b'.') && self.peek_at(1).is_some_and(is_digit) {
            self.pos += 1;
            self.take_while(is_digit);
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            let e_at = self.pos;
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !self.peek().is_some_and(is_digit) {
                return Err(ParseError::new(e_at, "expected the digits of an exponent after 'e'"));
            }
            self.take_while(is_digit);
        }
        let text = self.src.get(at..self.pos).unwrap_or("");
        match text.parse::<f64>() {
            Ok(n) if n.is_finite() => Ok(n),
            _ => Err(ParseError::new(at, "number out of range")),
        }
    }

    // ---- Source ----

    fn source(&mut self) -> Result<Source> {
        let measurement = self.name("a measurement name")?;
        self.skip_ws();
        let mut filters = Vec::new();
        if self.peek() == Some(b'{') {
            filters = self.filters()?;
            self.skip_ws();
        }
        let range = if self.peek() == Some(b'[') {
            self.range()?
        } else {
            Range::Default
        };
        Ok(Source {
            measurement,
            filters,
            range,
        })
    }

    /// `{k=v,k!=v,k=~re,k!~re}`, at the `{`.
    fn filters(&mut self) -> Result<Vec<TagFilter>> {
        let open = self.pos;
        self.pos += 1;
        let mut filters = Vec::new();
        self.skip_ws();
        if self.eat("}") {
            return Ok(filters);
        }
        loop {
            self.skip_ws();
            let key = self.name("a tag key")?;
            self.skip_ws();
            let op = if self.eat("!=") {
                TagOp::Ne
            } else if self.eat("!~") {
                TagOp::NotRe
            } else if self.eat("=~") {
                TagOp::Re
            } else if self.eat("=") {
                TagOp::Eq
            } else {
                return Err(self.expected("'=', '!=', '=~' or '!~' after the tag key"));
            };
            self.skip_ws();
            let position = self.pos;
            let value = match op {
                TagOp::Eq | TagOp::Ne => self.tag_value()?,
                TagOp::Re | TagOp::NotRe => self.regex()?,
            };
            filters.push(TagFilter {
                key,
                op,
                value,
                position,
            });
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(filters);
                }
                None => {
                    return Err(self.error_here(format!(
                        "expected '}}' to close the '{{' at byte {open}, found the end of the query"
                    )))
                }
                Some(_) => return Err(self.expected("',' or '}' after a tag filter")),
            }
        }
    }

    /// A tag value: bare `[A-Za-z0-9_.:/-]+`, or double-quoted (then it may be empty).
    fn tag_value(&mut self) -> Result<String> {
        if self.peek() == Some(b'"') {
            return self.quoted();
        }
        let value = self.take_while(is_value_byte);
        if value.is_empty() {
            return Err(self.expected("a tag value (bare letters, digits and _ . : / -, or double-quoted)"));
        }
        Ok(value.to_string())
    }

    /// A regex: bare (up to whitespace, `,`, `{`, `}` or `"`) or double-quoted; never empty.
    fn regex(&mut self) -> Result<String> {
        let at = self.pos;
        if self.peek() == Some(b'"') {
            let pattern = self.quoted()?;
            if pattern.is_empty() {
                return Err(ParseError::new(at, "expected a regex, found an empty string"));
            }
            return Ok(pattern);
        }
        let pattern = self.take_while(is_regex_byte);
        if pattern.is_empty() {
            return Err(self.expected("a regex"));
        }
        Ok(pattern.to_string())
    }

    /// Whether the number at the cursor (after an optional `-`) is a duration's: a letter
    /// follows its digits (or its digits and a fraction, which `duration` reports).
    fn is_duration_ahead(&self) -> bool {
        let b = self.bytes();
        let mut i = self.pos;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        while b.get(i).is_some_and(|&c| is_digit(c)) {
            i += 1;
        }
        if b.get(i) == Some(&b'.') && b.get(i + 1).is_some_and(|&c| is_digit(c)) {
            i += 1;
            while b.get(i).is_some_and(|&c| is_digit(c)) {
                i += 1;
            }
        }
        b.get(i).is_some_and(|c| c.is_ascii_alphabetic())
    }

    /// `[1h]` or `[from..to]`, at the `[`.
    fn range(&mut self) -> Result<Range> {
        let open = self.pos;
        self.pos += 1;
        self.skip_ws();
        let at = self.pos;
        let negative = self.peek() == Some(b'-');
        if !self.peek_at(usize::from(negative)).is_some_and(is_digit) {
            return Err(self.expected("a duration (e.g. [1h]) or an absolute range [from_ms..to_ms]"));
        }
        let range = if self.is_duration_ahead() {
            if negative {
                return Err(ParseError::new(at, "the duration of a range cannot be negative"));
            }
            Range::Relative { ms: self.duration()? }
        } else {
            let from_ms = self.timestamp()?;
            self.skip_ws();
            if !self.eat("..") {
                return Err(self.expected("a unit (ms s m h d w) or '..' and the end of an absolute range"));
            }
            self.skip_ws();
            let to_ms = self.timestamp()?;
            if from_ms > to_ms {
                return Err(ParseError::new(at, "the range starts after it ends"));
            }
            Range::Absolute { from_ms, to_ms }
        };
        self.skip_ws();
        match self.peek() {
            Some(b']') => {
                self.pos += 1;
                Ok(range)
            }
            None => Err(self.error_here(format!(
                "expected ']' to close the '[' at byte {open}, found the end of the query"
            ))),
            Some(_) => Err(self.expected("']' after the range")),
        }
    }

    // ---- Stages ----

    /// One stage, at its name.
    fn stage(&mut self) -> Result<Stage> {
        let at = self.pos;
        let name = self.keyword();
        if name.is_empty() {
            return Err(match self.peek() {
                Some(b'|') => self.error_here("empty stage: expected a stage name before this '|'"),
                None => self.error_here("expected a stage after '|', found the end of the query"),
                Some(_) => self.expected("a stage name"),
            });
        }
        if !STAGE_NAMES.contains(&name) {
            return Err(unknown_stage(at, name));
        }
        self.skip_ws();
        let open = self.pos;
        if !self.eat("(") {
            return Err(self.expected(&format!("'(' after '{name}'")));
        }
        self.skip_ws();
        let stage = if let Some(func) = AggFunc::from_name(name) {
            let (window, field) = self.agg_args(name, false)?;
            Stage::Agg { func, window, field }
        } else {
            match name {
                "window" => Stage::Window(self.duration()?),
                "percentile" => self.percentile()?,
                "rate" => Stage::Rate(if self.peek() == Some(b')') {
                    None
                } else {
                    Some(self.duration()?)
                }),
                "delta" | "abs" | "ceil" | "floor" => {
                    if self.peek().is_some_and(|c| c != b')') {
                        return Err(self.error_here(format!("'{name}' takes no arguments: write {name}()")));
                    }
                    match name {
                        "delta" => Stage::Delta,
                        "abs" => Stage::Abs,
                        "ceil" => Stage::Ceil,
                        _ => Stage::Floor,
                    }
                }
                "where" => self.where_args()?,
                "math" => Stage::Math(self.expr(0)?.0),
                "round" => Stage::Round(self.round_digits()?),
                "field" => Stage::Field(self.name("a field name")?),
                "alias" => Stage::Alias(self.name("an alias (a name)")?),
                "group_by" => self.group_by()?,
                "topk" | "bottomk" => {
                    let k_at = self.pos;
                    let k = usize::try_from(self.positive_integer("k")?)
                        .map_err(|_| ParseError::new(k_at, "k is too large"))?;
                    if name == "topk" {
                        Stage::TopK(k)
                    } else {
                        Stage::BottomK(k)
                    }
                }
                _ => return Err(unknown_stage(at, name)),
            }
        };
        self.close_paren(open, name)?;
        Ok(stage)
    }

    /// The optional window and field of an aggregation, in either order, up to the `)`. With
    /// `required`, at least one must stand here (after `percentile(q,`).
    fn agg_args(&mut self, stage: &str, required: bool) -> Result<(Option<u64>, Option<String>)> {
        let (mut window, mut field) = (None, None);
        if !required && self.peek() == Some(b')') {
            return Ok((window, field));
        }
        loop {
            self.skip_ws();
            let at = self.pos;
            match self.peek() {
                Some(c) if is_digit(c) => {
                    if window.replace(self.duration()?).is_some() {
                        return Err(ParseError::new(at, format!("'{stage}' takes at most one window")));
                    }
                }
                Some(c) if c == b'"' || starts_word(c) => {
                    if field.replace(self.name("a field name")?).is_some() {
                        return Err(ParseError::new(at, format!("'{stage}' takes at most one field")));
                    }
                }
                _ => return Err(self.expected("a window (e.g. 5m) or a field name")),
            }
            self.skip_ws();
            if !self.eat(",") {
                return Ok((window, field));
            }
        }
    }

    /// `percentile(q[, window][, field])`, after the `(`.
    fn percentile(&mut self) -> Result<Stage> {
        let at = self.pos;
        let q = self.number(true, "a quantile: a fraction in [0, 1] or a percent in (1, 100]")?;
        let q = if (0.0..=1.0).contains(&q) {
            q
        } else if q > 1.0 && q <= 100.0 {
            q / 100.0
        } else {
            return Err(ParseError::new(
                at,
                "a quantile is a fraction in [0, 1] (0.99) or a percent in (1, 100] (99)",
            ));
        };
        self.skip_ws();
        let (window, field) = if self.eat(",") {
            self.skip_ws();
            self.agg_args("percentile", true)?
        } else {
            (None, None)
        };
        Ok(Stage::Percentile { q, window, field })
    }

    /// `where(value <cmp> number)`, after the `(`.
    fn where_args(&mut self) -> Result<Stage> {
        let at = self.pos;
        if self.keyword() != "value" {
            self.pos = at;
            return Err(self.expected("'value' (as in where(value > 90))"));
        }
        self.skip_ws();
        let cmp = if self.eat(">=") {
            Cmp::Ge
        } else if self.eat("<=") {
            Cmp::Le
        } else if self.eat("==") {
            Cmp::Eq
        } else if self.eat("!=") {
            Cmp::Ne
        } else if self.eat(">") {
            Cmp::Gt
        } else if self.eat("<") {
            Cmp::Lt
        } else if self.peek() == Some(b'=') {
            return Err(self.error_here("expected a comparison: write '==' for equality"));
        } else {
            return Err(self.expected("a comparison: > >= < <= == !="));
        };
        self.skip_ws();
        let n = self.number(true, "a number")?;
        Ok(Stage::Where(cmp, n))
    }

    /// The `n` of `round(n)`, after the `(`; none is 0.
    fn round_digits(&mut self) -> Result<u32> {
        if self.peek() == Some(b')') {
            return Ok(0);
        }
        let at = self.pos;
        if !self.peek().is_some_and(is_digit) {
            return Err(self.expected("a number of decimal places"));
        }
        match self.digits() {
            Some(n) if n <= u64::from(MAX_ROUND_DIGITS) => Ok(n as u32),
            _ => Err(ParseError::new(
                at,
                format!("round() takes at most {MAX_ROUND_DIGITS} decimal places"),
            )),
        }
    }

    /// `group_by(tag, ...)`, after the `(`: tags, none twice; no tag merges every series of a
    /// field (`group_by()`).
    fn group_by(&mut self) -> Result<Stage> {
        let mut tags = Vec::new();
        let mut seen = HashSet::new();
        self.skip_ws();
        if self.peek() == Some(b')') {
            return Ok(Stage::GroupBy(tags));
        }
        loop {
            self.skip_ws();
            let at = self.pos;
            let tag = self.name("a tag name (group_by needs at least one)")?;
            if !seen.insert(tag.clone()) {
                return Err(ParseError::new(at, format!("tag '{tag}' listed twice in group_by")));
            }
            tags.push(tag);
            self.skip_ws();
            if !self.eat(",") {
                return Ok(Stage::GroupBy(tags));
            }
        }
    }

    // ---- math(...) ----
    //
    // expr  := term (('+' | '-') term)*
    // term  := unary (('*' | '/' | '%') unary)*
    // unary := '-' unary | '(' expr ')' | number | 'value'
    //
    // Each function returns the tree and its depth; `nest` counts the parentheses and unary
    // minuses being parsed, which bounds the recursion.

    fn expr(&mut self, nest: usize) -> Result<(Expr, usize)> {
        let (mut left, mut depth) = self.term(nest)?;
        loop {
            self.skip_ws();
            let at = self.pos;
            let op = match self.peek() {
                Some(b'+') => Op::Add,
                Some(b'-') => Op::Sub,
                _ => return Ok((left, depth)),
            };
            self.pos += 1;
            let right = self.term(nest)?;
            (left, depth) = binary(at, (left, depth), op, right)?;
        }
    }

    fn term(&mut self, nest: usize) -> Result<(Expr, usize)> {
        let (mut left, mut depth) = self.unary(nest)?;
        loop {
            self.skip_ws();
            let at = self.pos;
            let op = match self.peek() {
                Some(b'*') => Op::Mul,
                Some(b'/') => Op::Div,
                Some(b'%') => Op::Rem,
                _ => return Ok((left, depth)),
            };
            self.pos += 1;
            let right = self.unary(nest)?;
            (left, depth) = binary(at, (left, depth), op, right)?;
        }
    }

    fn unary(&mut self, nest: usize) -> Result<(Expr, usize)> {
        self.skip_ws();
        let at = self.pos;
        match self.peek() {
            Some(b'-') => {
                if nest >= MAX_EXPR_DEPTH {
                    return Err(too_deep(at));
                }
                self.pos += 1;
                let (e, depth) = self.unary(nest + 1)?;
                if depth >= MAX_EXPR_DEPTH {
                    return Err(too_deep(at));
                }
                Ok((Expr::Neg(Box::new(e)), depth + 1))
            }
            Some(b'(') => {
                if nest >= MAX_EXPR_DEPTH {
                    return Err(too_deep(at));
                }
                self.pos += 1;
                let inner = self.expr(nest + 1)?;
                self.skip_ws();
                match self.peek() {
                    Some(b')') => {
                        self.pos += 1;
                        Ok(inner)
                    }
                    None => Err(self.error_here(format!(
                        "expected ')' to close the '(' at byte {at}, found the end of the query"
                    ))),
                    Some(_) => Err(self.expected("an operator or ')'")),
                }
            }
            Some(c) if is_digit(c) => Ok((Expr::Num(self.number(false, "a number")?), 1)),
            Some(c) if starts_word(c) => {
                let word = self.keyword();
                if word == "value" {
                    Ok((Expr::Value, 1))
                } else {
                    Err(ParseError::new(
                        at,
                        format!("unknown name '{word}' in math(): the only variable is 'value'"),
                    ))
                }
            }
            _ => Err(self.expected("a number, 'value' or '('")),
        }
    }
}

fn binary(at: usize, (l, ld): (Expr, usize), op: Op, (r, rd): (Expr, usize)) -> Result<(Expr, usize)> {
    let depth = 1 + ld.max(rd);
    if depth > MAX_EXPR_DEPTH {
        return Err(too_deep(at));
    }
    Ok((Expr::Bin(Box::new(l), op, Box::new(r)), depth))
}

fn too_deep(at: usize) -> ParseError {
    ParseError::new(
        at,
        format!("expression nested too deeply: at most {MAX_EXPR_DEPTH} levels"),
    )
}

fn unknown_stage(at: usize, name: &str) -> ParseError {
    let lower = name.to_ascii_lowercase();
    let hint = if STAGE_NAMES.contains(&lower.as_str()) {
        format!(" (stage names are lower case: '{lower}')")
    } else {
        format!("; the stages are {}", STAGE_NAMES.join(", "))
    };
    ParseError::new(at, format!("unknown stage '{name}'{hint}"))
}
