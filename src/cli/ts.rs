//! `flo ts write|query|list|series`: time series (`/api/v1/ts/:namespace/...`).
//!
//! `write` sends InfluxDB line protocol — one line as the argument, or a file (`--file F`,
//! `@F`) or stdin — as one atomic batch. The CLI's default `--precision` is `ns`, as in
//! InfluxDB's tools and line protocol examples (`cpu value=1 1700000000000000000`); the HTTP
//! API's own default is `ms`, so `--precision ms` is needed for millisecond timestamps.
//! `query` runs FloQL and prints one row per point: series, field, time (RFC 3339 UTC) and
//! value.

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value as Json};

use super::http::{encode, with_query};
use super::output::{self, cell, time_cell};
use super::{input, CliError, ClientOpts, Ctx};

#[derive(Args, Debug)]
pub struct TsArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub cmd: TsCmd,
}

/// Unit of the timestamps in line protocol.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Precision {
    Ns,
    Us,
    Ms,
    S,
}

impl Precision {
    fn as_str(self) -> &'static str {
        match self {
            Precision::Ns => "ns",
            Precision::Us => "us",
            Precision::Ms => "ms",
            Precision::S => "s",
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum TsCmd {
    /// Write points in line protocol: one line as the argument, @file, --file, or stdin.
    Write {
        /// Line protocol (e.g. 'cpu,host=a usage=82.5 1700000000000000000').
        #[arg(conflicts_with = "file")]
        lines: Option<String>,
        /// Read line protocol from this file (- for stdin).
        #[arg(long, short = 'f', value_name = "PATH")]
        file: Option<String>,
        /// Unit of the timestamps.
        #[arg(long, value_enum, default_value_t = Precision::Ns)]
        precision: Precision,
    },
    /// Run a FloQL query, e.g. 'cpu{host=web-01}[1h] | avg(5m)'.
    Query { query: String },
    /// Measurements of the namespace.
    List,
    /// The series of a measurement.
    Series { measurement: String },
}

pub fn run(ctx: &Ctx, cmd: TsCmd) -> Result<(), CliError> {
    match cmd {
        TsCmd::Write { lines, file, precision } => {
            let body = match (lines, file) {
                (_, Some(f)) if f == "-" => input::stdin("line protocol")?,
                (_, Some(f)) => input::file(&f)?,
                (lines, None) => input::bytes(lines.as_deref(), "line protocol")?,
            };
            let target = with_query(
                &format!("/api/v1/ts/{}/write", ctx.ns()),
                &[("precision", Some(precision.as_str().to_string()))],
            );
            let answer = ctx
                .client
                .call("POST", &target, Some("text/plain"), &body, Duration::ZERO)
                .map_err(line_hint)?;
            if ctx.json() {
                output::print_json(&answer);
            } else {
                print!("points written: {}", cell(&answer["points_written"]));
                match answer["fields_dropped"].as_u64() {
                    Some(d) if d > 0 => println!(" (string fields dropped: {d})"),
                    _ => println!(),
                }
            }
            Ok(())
        }
        TsCmd::Query { query } => {
            let answer = ctx
                .client
                .post(&format!("/api/v1/ts/{}/query", ctx.ns()), &json!({ "query": query }))
                .map_err(|e| position_hint(e, &query))?;
            if ctx.json() {
                output::print_json(&answer);
                return Ok(());
            }
            let mut rows = Vec::new();
            for s in answer["series"].as_array().map(Vec::as_slice).unwrap_or_default() {
                let name = series_name(s);
                let field = cell(&s["field"]);
                for p in s["points"].as_array().map(Vec::as_slice).unwrap_or_default() {
                    rows.push(vec![name.clone(), field.clone(), time_cell(&p[0]), cell(&p[1])]);
                }
            }
            if rows.is_empty() {
                eprintln!("no points");
                return Ok(());
            }
            output::print_table(&["SERIES", "FIELD", "TIME", "VALUE"], &rows);
            Ok(())
        }
        TsCmd::List => {
            let answer = ctx.client.get(&format!("/api/v1/ts/{}", ctx.ns()))?;
            if ctx.json() {
                output::print_json(&answer);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = answer["measurements"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|m| {
                    ["name", "series_count", "fields", "samples", "bytes"]
                        .iter()
                        .map(|f| cell(&m[*f]))
                        .collect()
                })
                .collect();
            output::print_table(&["MEASUREMENT", "SERIES", "FIELDS", "SAMPLES", "BYTES"], &rows);
            Ok(())
        }
        TsCmd::Series { measurement } => {
            let answer = ctx
                .client
                .get(&format!("/api/v1/ts/{}/{}/series", ctx.ns(), encode(&measurement)))?;
            if ctx.json() {
                output::print_json(&answer);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = answer["series"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|s| vec![series_name(s), cell(&s["field"]), cell(&s["points"])])
                .collect();
            output::print_table(&["SERIES", "FIELD", "POINTS"], &rows);
            Ok(())
        }
    }
}

/// `cpu{host=a,region=eu}` (tags in the server's order; `cpu` when there are none).
fn series_name(s: &Json) -> String {
    let measurement = s["measurement"].as_str().unwrap_or_default();
    let tags: Vec<String> = s["tags"]
        .as_object()
        .map(|t| t.iter().map(|(k, v)| format!("{k}={}", cell(v))).collect())
        .unwrap_or_default();
    if tags.is_empty() {
        measurement.to_string()
    } else {
        format!("{measurement}{{{}}}", tags.join(","))
    }
}

/// A rejected write names the line and the reason.
fn line_hint(e: CliError) -> CliError {
    match e {
        CliError::Server {
            status,
            code,
            message,
            body,
        } => {
            let details = &body["details"];
            let message = match (details["line"].as_u64(), details["reason"].as_str()) {
                (Some(line), Some(reason)) if !message.contains(reason) => {
                    format!("{message} (line {line}: {reason})")
                }
                _ => message,
            };
            CliError::Server {
                status,
                code,
                message,
                body,
            }
        }
        other => other,
    }
}

/// A FloQL error points at its byte in the query.
fn position_hint(e: CliError, query: &str) -> CliError {
    match e {
        CliError::Server {
            status,
            code,
            message,
            body,
        } => {
            let message = match body["details"]["position"]
                .as_u64()
                .and_then(|p| usize::try_from(p).ok())
            {
                Some(p) if p <= query.len() => {
                    let caret = " ".repeat(query.char_indices().take_while(|(i, _)| *i < p).count());
                    format!("{message}\n  {query}\n  {caret}^")
                }
                _ => message,
            };
            CliError::Server {
                status,
                code,
                message,
                body,
            }
        }
        other => other,
    }
}
