//! Where values, payloads and line protocol come from: an argument is the text itself,
//! `@path` reads the file, `-` or `@-` (or no argument, with stdin not a terminal) reads
//! stdin, and `@@text` is the literal `@text`. Bytes are passed on exactly (base64 is the
//! client's job), so binary files round-trip.

use std::io::{IsTerminal as _, Read as _};

use super::CliError;

/// The bytes an argument stands for; `what` names it in messages ("value", "payload").
pub fn bytes(arg: Option<&str>, what: &str) -> Result<Vec<u8>, CliError> {
    match arg {
        None => stdin(what),
        Some("-") | Some("@-") => stdin(what),
        Some(a) => match a.strip_prefix('@') {
            Some(rest) if rest.starts_with('@') => Ok(rest.as_bytes().to_vec()),
            Some(path) => file(path),
            None => Ok(a.as_bytes().to_vec()),
        },
    }
}

/// The whole of a file.
pub fn file(path: &str) -> Result<Vec<u8>, CliError> {
    if path.is_empty() {
        return Err(CliError::Usage("@ needs a file name (@path), or @- for stdin".into()));
    }
    std::fs::read(path).map_err(|e| CliError::Usage(format!("cannot read {path}: {e}")))
}

/// The whole of stdin; refused when stdin is a terminal (nothing was piped in).
pub fn stdin(what: &str) -> Result<Vec<u8>, CliError> {
    let mut input = std::io::stdin();
    if input.is_terminal() {
        return Err(CliError::Usage(format!(
            "no {what} given: pass it as an argument, as @file, or pipe it to stdin"
        )));
    }
    let mut out = Vec::new();
    input
        .read_to_end(&mut out)
        .map_err(|e| CliError::Usage(format!("cannot read stdin: {e}")))?;
    Ok(out)
}
