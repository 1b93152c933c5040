//! `flo queue enqueue|dequeue|ack|nack|touch|peek|stats|list|purge|dlq`: priority work
//! queues (`/api/v1/queue/:namespace/:queue/...`).
//!
//! Messages are addressed by their `seq` (what `enqueue` prints and `dequeue` lists); a
//! dequeue leases them for `--lease-ms` (the API's `visibility_timeout_ms`), and `ack` /
//! `nack` / `touch` take the seqs of leased messages. Seqs the server did not find are
//! reported on stderr (the command still succeeds, as the API does).

use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value as Json};

use super::http::{encode, with_query};
use super::output::{self, cell, cell_bytes, field_bytes, time_cell};
use super::{input, CliError, ClientOpts, Ctx};

#[derive(Args, Debug)]
pub struct QueueArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub cmd: QueueCmd,
}

#[derive(Subcommand, Debug)]
pub enum QueueCmd {
    /// Add a message: text, @file, or stdin (- or no argument).
    Enqueue {
        queue: String,
        payload: Option<String>,
        /// 0 (most urgent, the default) to 255.
        #[arg(long, short)]
        priority: Option<u8>,
        /// Not deliverable before this many milliseconds.
        #[arg(long, value_name = "MS")]
        delay_ms: Option<u64>,
        /// Ignore this message if one with the same key was enqueued within the dedup window.
        #[arg(long, value_name = "KEY")]
        dedup_key: Option<String>,
    },
    /// Lease ready messages.
    Dequeue {
        queue: String,
        /// Messages at most (1..=1000).
        #[arg(long, short, default_value_t = 1)]
        count: u32,
        /// Lease length (visibility timeout), 1..=43200000.
        #[arg(long, value_name = "MS", alias = "visibility-timeout-ms")]
        lease_ms: Option<u64>,
        /// Wait up to this long for a message when none is ready (max 60000).
        #[arg(long, value_name = "MS", alias = "block-ms")]
        wait_ms: Option<u64>,
        /// Print only the payloads (one per line).
        #[arg(long)]
        payload_only: bool,
    },
    /// Acknowledge (remove) leased messages.
    Ack {
        queue: String,
        #[arg(required = true, value_name = "SEQ")]
        seqs: Vec<u64>,
    },
    /// Give leased messages back (ready again, after --delay-ms, or to the dead-letter queue).
    Nack {
        queue: String,
        #[arg(required = true, value_name = "SEQ")]
        seqs: Vec<u64>,
        /// Ready again only after this many milliseconds.
        #[arg(long, value_name = "MS")]
        delay_ms: Option<u64>,
        /// Move to the dead-letter queue instead.
        #[arg(long)]
        to_dlq: bool,
    },
    /// Extend leases.
    Touch {
        queue: String,
        #[arg(required = true, value_name = "SEQ")]
        seqs: Vec<u64>,
        /// New lease length from now.
        #[arg(long, value_name = "MS", alias = "visibility-timeout-ms")]
        lease_ms: Option<u64>,
    },
    /// Show ready messages in delivery order without leasing them.
    Peek {
        queue: String,
        #[arg(long, short, default_value_t = 10)]
        count: u32,
    },
    /// Counts of a queue.
    Stats { queue: String },
    /// Every queue of the namespace with its counts.
    List,
    /// Drop ready and delayed messages.
    Purge { queue: String },
    /// The dead-letter queue.
    #[command(subcommand)]
    Dlq(DlqCmd),
}

#[derive(Subcommand, Debug)]
pub enum DlqCmd {
    /// Dead messages.
    List {
        queue: String,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Make dead messages ready again (delivery count reset).
    Requeue {
        queue: String,
        #[arg(required = true, value_name = "SEQ")]
        seqs: Vec<u64>,
    },
}

pub fn run(ctx: &Ctx, cmd: QueueCmd) -> Result<(), CliError> {
    match cmd {
        QueueCmd::Enqueue {
            queue,
            payload,
            priority,
            delay_ms,
            dedup_key,
        } => {
            let bytes = input::bytes(payload.as_deref(), "payload")?;
            let mut body = Map::new();
            body.insert("payload".into(), json!(output::base64(&bytes)));
            if let Some(p) = priority {
                body.insert("priority".into(), json!(p));
            }
            if let Some(d) = delay_ms {
                body.insert("delay_ms".into(), json!(d));
            }
            if let Some(k) = dedup_key {
                body.insert("dedup_key".into(), json!(k));
            }
            let answer = ctx.client.post(&op_path(ctx, &queue, "enqueue"), &Json::Object(body))?;
            if ctx.json() {
                output::print_json(&answer);
            } else if answer["deduplicated"].as_bool() == Some(true) {
                println!("seq {} (deduplicated: already enqueued)", cell(&answer["seq"]));
            } else {
                println!("seq {}", cell(&answer["seq"]));
            }
            Ok(())
        }
        QueueCmd::Dequeue {
            queue,
            count,
            lease_ms,
            wait_ms,
            payload_only,
        } => {
            let mut body = Map::new();
            body.insert("count".into(), json!(count));
            if let Some(l) = lease_ms {
                body.insert("visibility_timeout_ms".into(), json!(l));
            }
            if let Some(w) = wait_ms {
                body.insert("block_ms".into(), json!(w));
            }
            let answer = ctx.client.send_json(
                "POST",
                &op_path(ctx, &queue, "dequeue"),
                &Json::Object(body),
                Duration::from_millis(wait_ms.unwrap_or(0)),
            )?;
            if payload_only && !ctx.json() {
                for m in messages(&answer) {
                    output::write_value(&field_bytes(m, "payload")?, false)?;
                }
                return Ok(());
            }
            print_messages(ctx, answer, "LEASE_EXPIRES", "lease_expires_at_ms")
        }
        QueueCmd::Ack { queue, seqs } => {
            let answer = ctx
                .client
                .post(&op_path(ctx, &queue, "ack"), &json!({ "sequences": seqs }))?;
            report_done(ctx, &answer, "acked")
        }
        QueueCmd::Nack {
            queue,
            seqs,
            delay_ms,
            to_dlq,
        } => {
            let mut body = Map::new();
            body.insert("sequences".into(), json!(seqs));
            if let Some(d) = delay_ms {
                body.insert("delay_ms".into(), json!(d));
            }
            if to_dlq {
                body.insert("to_dlq".into(), json!(true));
            }
            let answer = ctx.client.post(&op_path(ctx, &queue, "nack"), &Json::Object(body))?;
            report_done(ctx, &answer, "nacked")
        }
        QueueCmd::Touch { queue, seqs, lease_ms } => {
            let mut body = Map::new();
            body.insert("sequences".into(), json!(seqs));
            if let Some(l) = lease_ms {
                body.insert("visibility_timeout_ms".into(), json!(l));
            }
            let answer = ctx.client.post(&op_path(ctx, &queue, "touch"), &Json::Object(body))?;
            report_done(ctx, &answer, "touched")
        }
        QueueCmd::Peek { queue, count } => {
            let target = with_query(&op_path(ctx, &queue, "peek"), &[("count", Some(count.to_string()))]);
            let answer = ctx.client.get(&target)?;
            print_messages(ctx, answer, "ENQUEUED", "enqueued_at_ms")
        }
        QueueCmd::Stats { queue } => {
            let answer = ctx.client.get(&op_path(ctx, &queue, "stats"))?;
            if ctx.json() {
                output::print_json(&answer);
            } else {
                output::print_fields(&answer);
            }
            Ok(())
        }
        QueueCmd::List => {
            let answer = ctx.client.get(&format!("/api/v1/queue/{}", ctx.ns()))?;
            if ctx.json() {
                output::print_json(&answer);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = answer["queues"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|q| {
                    [
                        "name",
                        "ready_count",
                        "leased_count",
                        "delayed_count",
                        "dlq_count",
                        "total_enqueued",
                        "total_acked",
                    ]
                    .iter()
                    .map(|f| cell(&q[*f]))
                    .collect()
                })
                .collect();
            output::print_table(
                &["QUEUE", "READY", "LEASED", "DELAYED", "DLQ", "ENQUEUED", "ACKED"],
                &rows,
            );
            Ok(())
        }
        QueueCmd::Purge { queue } => {
            let answer = ctx.client.post(&op_path(ctx, &queue, "purge"), &json!({}))?;
            if ctx.json() {
                output::print_json(&answer);
            } else {
                println!("purged {}", cell(&answer["purged"]));
            }
            Ok(())
        }
        QueueCmd::Dlq(DlqCmd::List { queue, limit }) => {
            let target = with_query(&op_path(ctx, &queue, "dlq"), &[("limit", Some(limit.to_string()))]);
            let answer = ctx.client.get(&target)?;
            print_messages(ctx, answer, "DEAD_AT", "dead_at_ms")
        }
        QueueCmd::Dlq(DlqCmd::Requeue { queue, seqs }) => {
            let answer = ctx
                .client
                .post(&op_path(ctx, &queue, "dlq/requeue"), &json!({ "sequences": seqs }))?;
            report_done(ctx, &answer, "requeued")
        }
    }
}

fn op_path(ctx: &Ctx, queue: &str, op: &str) -> String {
    format!("/api/v1/queue/{}/{}/{op}", ctx.ns(), encode(queue))
}

fn messages(answer: &Json) -> &[Json] {
    answer["messages"].as_array().map(Vec::as_slice).unwrap_or_default()
}

/// A table of messages (or the decoded JSON); `time_field` is the column that differs
/// between dequeue, peek and the DLQ.
fn print_messages(ctx: &Ctx, answer: Json, time_header: &str, time_field: &str) -> Result<(), CliError> {
    if ctx.json() {
        output::print_decoded(answer);
        return Ok(());
    }
    let list = messages(&answer);
    if list.is_empty() {
        eprintln!("no messages");
        return Ok(());
    }
    let mut rows = Vec::with_capacity(list.len());
    for m in list {
        rows.push(vec![
            cell(&m["seq"]),
            cell(&m["priority"]),
            cell(&m["delivery_count"]),
            time_cell(&m[time_field]),
            cell_bytes(&field_bytes(m, "payload")?),
        ]);
    }
    output::print_table(&["SEQ", "PRIORITY", "DELIVERIES", time_header, "PAYLOAD"], &rows);
    Ok(())
}

/// `acked 2` (and the seqs not found, on stderr).
fn report_done(ctx: &Ctx, answer: &Json, verb: &str) -> Result<(), CliError> {
    if ctx.json() {
        output::print_json(answer);
        return Ok(());
    }
    println!("{verb} {}", cell(&answer[verb]));
    if let Some(missing) = answer["not_found"].as_array().filter(|m| !m.is_empty()) {
        eprintln!(
            "not found (not leased, or unknown): {}",
            missing.iter().map(cell).collect::<Vec<_>>().join(" ")
        );
    }
    Ok(())
}
