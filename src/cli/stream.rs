//! `flo stream append|read|info|list|group ...`: append-only streams
//! (`/api/v1/stream/:namespace/:stream[/...]`) and their consumer groups.
//!
//! `append` takes one payload (text, `@file`, stdin) or, with `--lines`, one record per line
//! of the input in a single all-or-nothing batch. `read` prints records from `--offset`
//! (`--limit` of them) and the offset to continue from on stderr.

use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value as Json};

use super::http::{encode, with_query};
use super::output::{self, cell, cell_bytes, field_bytes, time_cell};
use super::{input, CliError, ClientOpts, Ctx};

#[derive(Args, Debug)]
pub struct StreamArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub cmd: StreamCmd,
}

#[derive(Subcommand, Debug)]
pub enum StreamCmd {
    /// Append a record: text, @file, or stdin (- or no argument).
    Append {
        stream: String,
        payload: Option<String>,
        /// One record per line of the input, appended as one batch.
        #[arg(long)]
        lines: bool,
    },
    /// Read records.
    Read {
        stream: String,
        /// First offset (default: the first retained).
        #[arg(long)]
        offset: Option<u64>,
        /// Records at most (1..=1000).
        #[arg(long, alias = "count", default_value_t = 100)]
        limit: u32,
        /// Wait up to this long for a record when there is none yet (max 60000).
        #[arg(long, value_name = "MS", alias = "block-ms")]
        wait_ms: Option<u64>,
        /// Print only the payloads (one per line).
        #[arg(long)]
        payload_only: bool,
    },
    /// Offsets, size and consumer groups of a stream.
    Info { stream: String },
    /// Every stream of the namespace.
    List,
    /// Consumer groups.
    #[command(subcommand)]
    Group(GroupCmd),
}

#[derive(Subcommand, Debug)]
pub enum GroupCmd {
    /// Create a consumer group.
    Create {
        stream: String,
        group: String,
        /// Where the group starts: earliest, latest or an offset.
        #[arg(long, default_value = "earliest")]
        start: String,
        /// Redeliver records not acked within this long.
        #[arg(long, value_name = "MS")]
        ack_timeout_ms: Option<u64>,
        /// Deliveries before a record is given up on.
        #[arg(long)]
        max_deliveries: Option<u64>,
    },
    /// Read records for one consumer of the group (each record goes to one consumer).
    Read {
        stream: String,
        group: String,
        /// The consumer's name.
        #[arg(long, short = 'c')]
        consumer: String,
        #[arg(long, alias = "limit", default_value_t = 10)]
        count: u32,
        /// Wait up to this long for a record (max 60000).
        #[arg(long, value_name = "MS", alias = "block-ms")]
        wait_ms: Option<u64>,
    },
    /// Acknowledge records (by offset).
    Ack {
        stream: String,
        group: String,
        #[arg(required = true, value_name = "OFFSET")]
        offsets: Vec<u64>,
    },
    /// Cursor, pending records, consumers and lag of a group.
    Info { stream: String, group: String },
    /// Delete a group.
    Delete { stream: String, group: String },
}

pub fn run(ctx: &Ctx, cmd: StreamCmd) -> Result<(), CliError> {
    match cmd {
        StreamCmd::Append { stream, payload, lines } => {
            let bytes = input::bytes(payload.as_deref(), "payload")?;
            let body = if lines {
                let records: Vec<Json> = bytes
                    .split(|b| *b == b'\n')
                    .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
                    .filter(|l| !l.is_empty())
                    .map(|l| json!({ "payload": output::base64(l) }))
                    .collect();
                if records.is_empty() {
                    return Err(CliError::Usage("--lines: the input has no lines".into()));
                }
                json!({ "records": records })
            } else {
                json!({ "payload": output::base64(&bytes) })
            };
            let answer = ctx.client.post(&op_path(ctx, &stream, "append"), &body)?;
            if ctx.json() {
                output::print_json(&answer);
            } else if lines {
                println!(
                    "offsets {}..={}",
                    cell(&answer["first_offset"]),
                    cell(&answer["last_offset"])
                );
            } else {
                println!("offset {}", cell(&answer["offset"]));
            }
            Ok(())
        }
        StreamCmd::Read {
            stream,
            offset,
            limit,
            wait_ms,
            payload_only,
        } => {
            let target = with_query(
                &stream_path(ctx, &stream),
                &[
                    ("offset", offset.map(|o| o.to_string())),
                    ("count", Some(limit.to_string())),
                    ("block_ms", wait_ms.map(|w| w.to_string())),
                ],
            );
            let answer = ctx
                .client
                .get_waiting(&target, Duration::from_millis(wait_ms.unwrap_or(0)))?;
            if ctx.json() {
                output::print_decoded(answer);
                return Ok(());
            }
            if payload_only {
                for r in records(&answer) {
                    output::write_value(&field_bytes(r, "payload")?, false)?;
                }
            } else {
                print_records(&answer, false)?;
            }
            eprintln!("next offset: {}", cell(&answer["next_offset"]));
            Ok(())
        }
        StreamCmd::Info { stream } => {
            let answer = ctx.client.get(&op_path(ctx, &stream, "info"))?;
            if ctx.json() {
                output::print_json(&answer);
            } else {
                output::print_fields(&answer);
            }
            Ok(())
        }
        StreamCmd::List => {
            let answer = ctx.client.get(&format!("/api/v1/stream/{}", ctx.ns()))?;
            if ctx.json() {
                output::print_json(&answer);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = answer["streams"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|s| {
                    [
                        "name",
                        "first_offset",
                        "last_offset",
                        "record_count",
                        "bytes",
                        "consumer_groups",
                    ]
                    .iter()
                    .map(|f| cell(&s[*f]))
                    .collect()
                })
                .collect();
            output::print_table(&["STREAM", "FIRST", "LAST", "RECORDS", "BYTES", "GROUPS"], &rows);
            Ok(())
        }
        StreamCmd::Group(g) => group(ctx, g),
    }
}

fn group(ctx: &Ctx, cmd: GroupCmd) -> Result<(), CliError> {
    match cmd {
        GroupCmd::Create {
            stream,
            group,
            start,
            ack_timeout_ms,
            max_deliveries,
        } => {
            let mut body = Map::new();
            let start = match start.parse::<u64>() {
                Ok(offset) => json!(offset),
                Err(_) => json!(start),
            };
            body.insert("start".into(), start);
            if let Some(t) = ack_timeout_ms {
                body.insert("ack_timeout_ms".into(), json!(t));
            }
            if let Some(m) = max_deliveries {
                body.insert("max_deliveries".into(), json!(m));
            }
            let answer = ctx
                .client
                .post(&group_path(ctx, &stream, &group), &Json::Object(body))?;
            if ctx.json() {
                output::print_json(&answer);
            } else {
                println!("group {group} created on {stream} (cursor {})", cell(&answer["cursor"]));
            }
            Ok(())
        }
        GroupCmd::Read {
            stream,
            group,
            consumer,
            count,
            wait_ms,
        } => {
            let mut body = Map::new();
            body.insert("consumer".into(), json!(consumer));
            body.insert("count".into(), json!(count));
            if let Some(w) = wait_ms {
                body.insert("block_ms".into(), json!(w));
            }
            let answer = ctx.client.send_json(
                "POST",
                &format!("{}/read", group_path(ctx, &stream, &group)),
                &Json::Object(body),
                Duration::from_millis(wait_ms.unwrap_or(0)),
            )?;
            if ctx.json() {
                output::print_decoded(answer);
                return Ok(());
            }
            print_records(&answer, true)
        }
        GroupCmd::Ack { stream, group, offsets } => {
            let answer = ctx.client.post(
                &format!("{}/ack", group_path(ctx, &stream, &group)),
                &json!({ "offsets": offsets }),
            )?;
            if ctx.json() {
                output::print_json(&answer);
            } else {
                println!("acked {}", cell(&answer["acked"]));
            }
            Ok(())
        }
        GroupCmd::Info { stream, group } => {
            let answer = ctx.client.get(&group_path(ctx, &stream, &group))?;
            if ctx.json() {
                output::print_json(&answer);
            } else {
                output::print_fields(&answer);
            }
            Ok(())
        }
        GroupCmd::Delete { stream, group } => {
            let answer = ctx
                .client
                .call("DELETE", &group_path(ctx, &stream, &group), None, b"", Duration::ZERO)?;
            if ctx.json() {
                output::print_json(&answer);
            } else {
                println!("group {group} deleted");
            }
            Ok(())
        }
    }
}

fn stream_path(ctx: &Ctx, stream: &str) -> String {
    format!("/api/v1/stream/{}/{}", ctx.ns(), encode(stream))
}

fn op_path(ctx: &Ctx, stream: &str, op: &str) -> String {
    format!("{}/{op}", stream_path(ctx, stream))
}

fn group_path(ctx: &Ctx, stream: &str, group: &str) -> String {
    format!("{}/groups/{}", stream_path(ctx, stream), encode(group))
}

fn records(answer: &Json) -> &[Json] {
    answer["records"].as_array().map(Vec::as_slice).unwrap_or_default()
}

fn print_records(answer: &Json, deliveries: bool) -> Result<(), CliError> {
    let list = records(answer);
    if list.is_empty() {
        eprintln!("no records");
        return Ok(());
    }
    let mut rows = Vec::with_capacity(list.len());
    for r in list {
        let mut row = vec![cell(&r["offset"]), time_cell(&r["timestamp_ms"])];
        if deliveries {
            row.push(cell(&r["delivery_count"]));
        }
        row.push(cell_bytes(&field_bytes(r, "payload")?));
        rows.push(row);
    }
    let header: &[&str] = if deliveries {
        &["OFFSET", "TIME", "DELIVERIES", "PAYLOAD"]
    } else {
        &["OFFSET", "TIME", "PAYLOAD"]
    };
    output::print_table(header, &rows);
    Ok(())
}
