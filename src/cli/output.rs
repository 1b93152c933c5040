//! Printing answers: JSON (pretty, with base64 values decoded alongside), aligned text
//! tables, `name: value` field lists, bytes shown as text when they are UTF-8 (base64 with a
//! `base64:` prefix or a note when not), and epoch milliseconds as RFC 3339 UTC.

use std::io::Write as _;

use serde_json::{Map, Value as Json};

use super::CliError;

/// Prints JSON, pretty, on stdout.
pub fn print_json(v: &Json) {
    let text = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    println!("{text}");
}

/// Decodes standard padded base64.
pub fn unbase64(s: &str) -> Result<Vec<u8>, CliError> {
    let mut out = Vec::new();
    flo::b64::decode_append(s.as_bytes(), &mut out)
        .map_err(|e| CliError::Protocol(format!("the server sent bad base64: {e}")))?;
    Ok(out)
}

/// Encodes standard padded base64.
pub fn base64(bytes: &[u8]) -> String {
    let mut out = String::new();
    flo::b64::encode_append(bytes, &mut out);
    out
}

/// The bytes of a base64 field of `v` (empty when absent).
pub fn field_bytes(v: &Json, name: &str) -> Result<Vec<u8>, CliError> {
    match v.get(name).and_then(Json::as_str) {
        Some(s) => unbase64(s),
        None => Ok(Vec::new()),
    }
}

/// Adds `value_text` / `payload_text` next to every base64 `value` / `payload` (at any
/// depth) whose bytes are UTF-8 text; other fields are untouched.
pub fn add_text_fields(v: &mut Json) {
    match v {
        Json::Object(map) => {
            let mut added = Map::new();
            for (name, field) in map.iter_mut() {
                if let ("value" | "payload", Json::String(s)) = (name.as_str(), &*field) {
                    let mut bytes = Vec::new();
                    if flo::b64::decode_append(s.as_bytes(), &mut bytes).is_ok() {
                        if let Ok(text) = String::from_utf8(bytes) {
                            added.insert(format!("{name}_text"), Json::String(text));
                        }
                    }
                } else {
                    add_text_fields(field);
                }
            }
            map.extend(added);
        }
        Json::Array(items) => items.iter_mut().for_each(add_text_fields),
        _ => {}
    }
}

/// Prints the answer as JSON with text fields added.
pub fn print_decoded(mut v: Json) {
    add_text_fields(&mut v);
    print_json(&v);
}

/// Bytes for a table cell: the text with control characters escaped when UTF-8, else
/// `base64:<b64>`.
pub fn cell_bytes(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text
            .chars()
            .flat_map(|c| {
                if c.is_control() {
                    c.escape_default().collect::<Vec<_>>()
                } else {
                    vec![c]
                }
            })
            .collect(),
        Err(_) => format!("base64:{}", base64(bytes)),
    }
}

/// Writes a value on stdout: its text and a newline when it is UTF-8; otherwise its base64
/// and a newline, with a note on stderr. `raw` writes the exact bytes and nothing else.
pub fn write_value(bytes: &[u8], raw: bool) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    let io = |e: std::io::Error| CliError::Protocol(format!("cannot write to stdout: {e}"));
    if raw {
        out.write_all(bytes).map_err(io)?;
    } else if let Ok(text) = std::str::from_utf8(bytes) {
        out.write_all(text.as_bytes()).map_err(io)?;
        if !text.ends_with('\n') {
            out.write_all(b"\n").map_err(io)?;
        }
    } else {
        eprintln!(
            "note: the value is binary ({} bytes), shown as base64; --raw writes the bytes",
            bytes.len()
        );
        writeln!(out, "{}", base64(bytes)).map_err(io)?;
    }
    out.flush().map_err(io)
}

/// A JSON scalar as a table cell (`-` for null).
pub fn cell(v: &Json) -> String {
    match v {
        Json::Null => "-".to_string(),
        Json::Array(items) if items.is_empty() => "-".to_string(),
        Json::String(s) => s.clone(),
        Json::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
            items.iter().map(cell).collect::<Vec<_>>().join(",")
        }
        other => other.to_string(),
    }
}

/// Prints rows under a header, columns padded to their widest cell (the last unpadded).
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, c) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            s.push_str(c);
            if i < last {
                let pad = widths.get(i).copied().unwrap_or(0).saturating_sub(c.chars().count());
                s.push_str(&" ".repeat(pad + 2));
            }
        }
        s
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line(header.to_vec()));
    for row in rows {
        let _ = writeln!(out, "{}", line(row.iter().map(String::as_str).collect()));
    }
}

/// Prints an object's fields as aligned `name: value` lines (nested values as compact JSON).
pub fn print_fields(v: &Json) {
    let Some(map) = v.as_object() else {
        print_json(v);
        return;
    };
    let width = map.keys().map(|k| k.len()).max().unwrap_or(0);
    for (k, v) in map {
        println!("{k:<width$}  {}", cell(v));
    }
}

/// Epoch milliseconds as RFC 3339 UTC with milliseconds (`2023-11-14T22:13:20.000Z`).
pub fn rfc3339_ms(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    )
}

/// A JSON time in ms as RFC 3339 (or the raw cell when it is not an integer).
pub fn time_cell(v: &Json) -> String {
    v.as_i64().map_or_else(|| cell(v), rfc3339_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dates() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_700_000_000_000), "2023-11-14T22:13:20.000Z");
        assert_eq!(rfc3339_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn text_fields_only_for_utf8() {
        let mut v = json!({"value": "aGk=", "records": [{"payload": "/w=="}, {"payload": "eA=="}]});
        add_text_fields(&mut v);
        assert_eq!(v["value_text"], "hi");
        assert!(v["records"][0].get("payload_text").is_none());
        assert_eq!(v["records"][1]["payload_text"], "x");
    }

    #[test]
    fn cells() {
        assert_eq!(cell_bytes(b"a\nb"), "a\\nb");
        assert_eq!(cell_bytes(&[0xff]), "base64:/w==");
    }
}
