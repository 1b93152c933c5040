//! The JSON answer of a query: `{"series":[{"measurement","field","tags":{..},"points":[[ts,v],..]}]}`.

use std::io::Write;

use crate::ts::floql::format_number;

use super::SeriesData;

/// Renders the answer of the query endpoint into `out`. A non-finite value renders as `null`
/// (JSON has no NaN or infinity); a finite one in the shortest form that reads back exactly.
pub fn render(series: &[SeriesData], out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"series\":[");
    for (i, s) in series.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"measurement\":");
        write_str(out, &s.measurement);
        out.extend_from_slice(b",\"field\":");
        write_str(out, &s.field);
        out.extend_from_slice(b",\"tags\":{");
        for (j, (k, v)) in s.tags.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            write_str(out, k);
            out.push(b':');
            write_str(out, v);
        }
        out.extend_from_slice(b"},\"points\":[");
        for (j, &(t, v)) in s.points.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            // Writing into a Vec cannot fail.
            let _ = write!(out, "[{t},");
            if v.is_finite() {
                out.extend_from_slice(format_number(v).as_bytes());
            } else {
                out.extend_from_slice(b"null");
            }
            out.push(b']');
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(b"]}");
}

/// A JSON string: `"` and `\` escaped, control characters as `\uXXXX` (or their short forms).
fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => {
                let _ = write!(out, "\\u{b:04x}");
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}
