//! The Prometheus text exposition format 0.0.4: a writer that keeps its rules (one `# HELP`
//! and `# TYPE` per family, before its samples; samples of a family together; histogram
//! buckets cumulative and ending in `+Inf`, with `_sum` and `_count`; label values escaped),
//! and [`lint`], a checker of those rules for tests (the writer's, and the server's output in
//! the integration tests when `promtool` is not installed).

use std::collections::{HashMap, HashSet};
use std::fmt::{Display, Write};

/// A metric family's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Builds an exposition, family by family.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
    seen: HashSet<String>,
}

impl Exposition {
    pub fn new() -> Self {
        Exposition {
            out: String::with_capacity(16 * 1024),
            seen: HashSet::new(),
        }
    }

    /// Starts a family: its HELP and TYPE lines. Its samples must follow before the next family.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) {
        let fresh = self.seen.insert(name.to_string());
        debug_assert!(fresh, "metric family {name} written twice");
        debug_assert!(
            kind != Kind::Counter || name.ends_with("_total"),
            "counter {name} needs _total"
        );
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {}", kind.as_str());
    }

    /// One sample of the current family.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        write_labels(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {value}");
    }

    /// A family with one unlabelled sample.
    pub fn single(&mut self, name: &str, help: &str, kind: Kind, value: impl Display) {
        self.family(name, help, kind);
        self.sample(name, &[], value);
    }

    /// One histogram series of the current family: `cumulative[i]` observations were at most
    /// `bounds[i]`; `count` in all (the `+Inf` bucket), summing to `sum`.
    pub fn histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        bounds: &[f64],
        cumulative: &[u64],
        count: u64,
        sum: f64,
    ) {
        debug_assert_eq!(bounds.len(), cumulative.len());
        for (le, c) in bounds.iter().zip(cumulative) {
            let _ = write!(self.out, "{name}_bucket");
            write_labels(&mut self.out, labels, Some(&le.to_string()));
            let _ = writeln!(self.out, " {c}");
        }
        let _ = write!(self.out, "{name}_bucket");
        write_labels(&mut self.out, labels, Some("+Inf"));
        let _ = writeln!(self.out, " {count}");
        let _ = write!(self.out, "{name}_sum");
        write_labels(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {sum}");
        let _ = write!(self.out, "{name}_count");
        write_labels(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {count}");
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn write_labels(out: &mut String, labels: &[(&str, &str)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (k, v) in labels.iter().copied().chain(le.map(|le| ("le", le))) {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(k);
        out.push_str("=\"");
        for ch in v.chars() {
            match ch {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

/// A parsed sample line: name, labels in order, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, k: &str) -> Option<&str> {
        self.labels.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }
}

/// Parses the sample lines of an exposition (comments skipped).
pub fn samples(text: &str) -> Result<Vec<Sample>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .map(|(n, l)| parse_sample(l).map_err(|e| format!("line {}: {e}: {l}", n + 1)))
        .collect()
}

fn valid_name(s: &str, colon: bool) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_' || (colon && c == b':'))
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || (colon && c == b':'))
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..end];
    if !valid_name(name, true) {
        return Err(format!("bad metric name {name:?}"));
    }
    let rest = &line[end..];
    match rest.strip_prefix('{') {
        Some(r) => match r.strip_prefix('}') {
            Some(after) => finish_sample(name, Vec::new(), after),
            None => parse_labels_tail(name, Vec::new(), r),
        },
        None => finish_sample(name, Vec::new(), rest),
    }
}

/// Parses one `name="value"` label and what follows it: `,` and more labels, or `}` and the value.
fn parse_labels_tail(name: &str, mut labels: Vec<(String, String)>, r: &str) -> Result<Sample, String> {
    let eq = r.find('=').ok_or("label without =")?;
    let key = &r[..eq];
    if !valid_name(key, false) {
        return Err(format!("bad label name {key:?}"));
    }
    let body = r[eq + 1..].strip_prefix('"').ok_or("label value not quoted")?;
    let mut value = String::new();
    let mut chars = body.char_indices();
    let close = loop {
        match chars.next() {
            Some((_, '\\')) => match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, c @ ('\\' | '"'))) => value.push(c),
                _ => return Err("bad escape in label value".into()),
            },
            Some((i, '"')) => break i,
            Some((_, c)) => value.push(c),
            None => return Err("unterminated label value".into()),
        }
    };
    if labels.iter().any(|(k, _)| k == key) {
        return Err(format!("label {key} twice"));
    }
    labels.push((key.to_string(), value));
    let after = &body[close + 1..];
    if let Some(a) = after.strip_prefix(",}") {
        finish_sample(name, labels, a)
    } else if let Some(a) = after.strip_prefix(',') {
        parse_labels_tail(name, labels, a)
    } else if let Some(a) = after.strip_prefix('}') {
        finish_sample(name, labels, a)
    } else {
        Err("expected , or } after a label".into())
    }
}

fn finish_sample(name: &str, labels: Vec<(String, String)>, rest: &str) -> Result<Sample, String> {
    let mut parts = rest.split_ascii_whitespace();
    let value = parts.next().ok_or("no value")?;
    let value = parse_value(value).ok_or_else(|| format!("bad value {value:?}"))?;
    if let Some(ts) = parts.next() {
        ts.parse::<i64>().map_err(|_| format!("bad timestamp {ts:?}"))?;
    }
    if parts.next().is_some() {
        return Err("trailing text".into());
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// Checks an exposition against the format's rules and our naming conventions; says what is
/// wrong and where.
pub fn lint(text: &str) -> Result<(), String> {
    #[derive(Default)]
    struct Family {
        help: bool,
        kind: Option<String>,
        has_samples: bool,
    }
    #[derive(Default)]
    struct Hist {
        last_le: Option<f64>,
        last_count: f64,
        inf: Option<f64>,
        sum: bool,
        count: Option<f64>,
    }
    let mut families: HashMap<String, Family> = HashMap::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut series: HashSet<(String, Vec<(String, String)>)> = HashSet::new();
    let mut hists: HashMap<(String, Vec<(String, String)>), Hist> = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ").or_else(|| line.strip_prefix("# TYPE ")) {
            let is_help = line.starts_with("# HELP");
            let mut parts = rest.splitn(2, ' ');
            let name = parts.next().unwrap_or("");
            if !valid_name(name, true) {
                return Err(at(format!("bad family name {name:?}")));
            }
            if finished.contains(name) {
                return Err(at(format!("{name} reopened after other families")));
            }
            let f = families.entry(name.to_string()).or_default();
            if f.has_samples {
                return Err(at(format!("HELP/TYPE of {name} after its samples")));
            }
            if is_help {
                if f.help {
                    return Err(at(format!("second HELP for {name}")));
                }
                f.help = true;
            } else {
                if f.kind.is_some() {
                    return Err(at(format!("second TYPE for {name}")));
                }
                let kind = parts.next().unwrap_or("").trim();
                if !matches!(kind, "counter" | "gauge" | "histogram" | "summary" | "untyped") {
                    return Err(at(format!("unknown type {kind:?}")));
                }
                if kind == "counter" && !name.ends_with("_total") {
                    return Err(at(format!("counter {name} should end in _total")));
                }
                f.kind = Some(kind.to_string());
            }
            if current.as_deref() != Some(name) {
                if let Some(c) = current.take() {
                    finished.insert(c);
                }
                current = Some(name.to_string());
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let s = parse_sample(line).map_err(at)?;
        let (family, suffix) = match families.get(&s.name) {
            Some(_) => (s.name.clone(), ""),
            None => ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suf| {
                    let base = s.name.strip_suffix(suf)?;
                    let f = families.get(base)?;
                    (f.kind.as_deref() == Some("histogram")).then(|| (base.to_string(), *suf))
                })
                .ok_or_else(|| at("sample without a TYPE line".into()))?,
        };
        if current.as_deref() != Some(family.as_str()) {
            return Err(at(format!("sample of {family} outside its family's block")));
        }
        let f = families.get_mut(&family).ok_or_else(|| at("unknown family".into()))?;
        if !f.help || f.kind.is_none() {
            return Err(at(format!("{family} lacks HELP or TYPE")));
        }
        f.has_samples = true;
        let is_hist = f.kind.as_deref() == Some("histogram");
        if is_hist && suffix.is_empty() {
            return Err(at("histogram sample without _bucket/_sum/_count".into()));
        }
        if !series.insert((s.name.clone(), s.labels.clone())) {
            return Err(at("duplicate series".into()));
        }
        if f.kind.as_deref() == Some("counter") && (s.value.is_nan() || s.value < 0.0) {
            return Err(at("negative or NaN counter".into()));
        }
        if is_hist {
            let key_labels: Vec<_> = s.labels.iter().filter(|(k, _)| k != "le").cloned().collect();
            let h = hists.entry((family.clone(), key_labels)).or_default();
            match suffix {
                "_bucket" => {
                    let le = s.label("le").ok_or_else(|| at("bucket without le".into()))?;
                    let le = parse_value(le).ok_or_else(|| at(format!("bad le {le:?}")))?;
                    if h.inf.is_some() {
                        return Err(at("bucket after +Inf".into()));
                    }
                    if h.last_le.is_some_and(|l| le <= l) {
                        return Err(at("bucket bounds not increasing".into()));
                    }
                    if s.value < h.last_count {
                        return Err(at("bucket counts not cumulative".into()));
                    }
                    h.last_le = Some(le);
                    h.last_count = s.value;
                    if le == f64::INFINITY {
                        h.inf = Some(s.value);
                    }
                }
                "_sum" => h.sum = true,
                _ => h.count = Some(s.value),
            }
        }
    }
    for ((name, labels), h) in &hists {
        let Some(inf) = h.inf else {
            return Err(format!("{name}{labels:?}: no +Inf bucket"));
        };
        if h.count != Some(inf) {
            return Err(format!(
                "{name}{labels:?}: _count {:?} differs from +Inf {inf}",
                h.count
            ));
        }
        if !h.sum {
            return Err(format!("{name}{labels:?}: no _sum"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_output_passes_lint() {
        let mut e = Exposition::new();
        e.single("flo_up", "1 while healthy.", Kind::Gauge, 1);
        e.family("flo_things_total", "Things, with a \\ and\na newline.", Kind::Counter);
        e.sample("flo_things_total", &[("shard", "0")], 3);
        e.sample("flo_things_total", &[("shard", "1"), ("odd", "a\"b\\c\nd")], 4);
        e.family("flo_wait_seconds", "Waits.", Kind::Histogram);
        e.histogram("flo_wait_seconds", &[("route", "kv_get")], &[0.1, 1.0], &[1, 2], 3, 7.5);
        let text = e.finish();
        lint(&text).expect("lint");
        assert_eq!(text.matches("# TYPE flo_things_total counter").count(), 1);
        assert!(text.contains("# HELP flo_things_total Things, with a \\\\ and\\na newline.\n"));
        assert!(text.contains("flo_wait_seconds_bucket{route=\"kv_get\",le=\"0.1\"} 1\n"));
        assert!(text.contains("flo_wait_seconds_bucket{route=\"kv_get\",le=\"+Inf\"} 3\n"));
        assert!(text.contains("flo_wait_seconds_sum{route=\"kv_get\"} 7.5\n"));
        assert!(text.contains("flo_wait_seconds_count{route=\"kv_get\"} 3\n"));
        let all = samples(&text).expect("parse");
        let odd = all.iter().find(|s| s.label("odd").is_some()).expect("odd");
        assert_eq!(odd.label("odd"), Some("a\"b\\c\nd"), "escapes round-trip");
        assert_eq!(odd.value, 4.0);
    }

    #[test]
    fn lint_catches_each_broken_rule() {
        let ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 1\n";
        lint(ok).expect("valid");
        let bad = [
            ("# HELP a_total A.\n# TYPE a_total counter\n# TYPE a_total counter\na_total 1\n", "second TYPE"),
            ("# HELP a_total A.\n# HELP a_total A.\n# TYPE a_total counter\na_total 1\n", "second HELP"),
            ("a_total 1\n", "without a TYPE"),
            ("# HELP a A.\n# TYPE a counter\na 1\n", "_total"),
            ("# HELP a_total A.\n# TYPE a_total counter\na_total 1\na_total 2\n", "duplicate"),
            (
                "# HELP a A.\n# TYPE a gauge\na 1\n# HELP b B.\n# TYPE b gauge\nb 1\na{x=\"1\"} 2\n",
                "outside",
            ),
            (
                "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"2\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 2\n",
                "cumulative",
            ),
            ("# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_sum 1\nh_count 2\n", "+Inf"),
            (
                "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
                "differs",
            ),
            ("# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 2\n", "_sum"),
            ("# HELP a A.\n# TYPE a gauge\na{x=1} 1\n", "quoted"),
            ("# HELP a A.\n# TYPE a gauge\na one\n", "bad value"),
            ("# HELP a A.\n# TYPE a gauge\na 1\n# TYPE a gauge\n", "after its samples"),
            (
                "# HELP a A.\n# TYPE a gauge\na 1\n# HELP b B.\n# TYPE b gauge\nb 1\n# HELP a A.\n",
                "reopened",
            ),
        ];
        for (text, want) in bad {
            let err = lint(text).expect_err(text);
            assert!(err.contains(want), "{text:?}: {err} (wanted {want:?})");
        }
    }

    #[test]
    fn parses_label_forms() {
        let s = samples("m{a=\"1\",b=\"x,y}\",} 2 1700000000000\nm{} 3\nm 4\n").expect("parse");
        assert_eq!(s[0].labels, vec![("a".into(), "1".into()), ("b".into(), "x,y}".into())]);
        assert_eq!(s[0].value, 2.0);
        assert!(s[1].labels.is_empty());
        assert_eq!(s[1].value, 3.0);
        assert_eq!(s[2].value, 4.0);
    }
}
