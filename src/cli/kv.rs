//! `flo kv get|set|delete|list`: the versioned key-value store
//! (`/api/v1/kv/:namespace[/:key]`).
//!
//! `get` prints the value (text, or base64 with a note when binary; `--raw` for the exact
//! bytes; `--meta` for key, version and TTL first) and exits 1 with a clear message when the
//! key does not exist. `set` takes the value as text, `@file` or stdin and prints the new
//! version. A failed `--cas`/`--if-not-exists` condition exits 1 with the server's
//! `conflict` message and the current version.

use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value as Json};

use super::http::{encode, with_query};
use super::output::{self, cell, cell_bytes, field_bytes};
use super::{input, CliError, ClientOpts, Ctx};

#[derive(Args, Debug)]
pub struct KvArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub cmd: KvCmd,
}

#[derive(Subcommand, Debug)]
pub enum KvCmd {
    /// Print a key's value.
    Get {
        key: String,
        /// Print key, version and TTL before the value.
        #[arg(long)]
        meta: bool,
        /// Write the exact bytes of the value, nothing else (for binary values).
        #[arg(long, conflicts_with = "meta")]
        raw: bool,
        /// If the key is missing, wait up to this long for it to appear (max 60000).
        #[arg(long, value_name = "MS")]
        wait_ms: Option<u64>,
        /// Wait until the key's version is greater than this (long-poll watch; waits
        /// --wait-ms, 30000 if not given, then prints the current state).
        #[arg(long, value_name = "VERSION")]
        watch: Option<u64>,
    },
    /// Write a value: text, @file, or stdin (- or no argument).
    Set {
        key: String,
        value: Option<String>,
        /// Expire after this many seconds (0 = never).
        #[arg(long, value_name = "SECONDS")]
        ttl: Option<u64>,
        /// Write only if the current version is this (0 = only if the key does not exist).
        #[arg(long, value_name = "VERSION")]
        cas: Option<u64>,
        /// Write only if the key does not exist.
        #[arg(long)]
        if_not_exists: bool,
    },
    /// Delete a key.
    Delete {
        key: String,
        /// Delete only if the current version is this.
        #[arg(long, value_name = "VERSION")]
        cas: Option<u64>,
    },
    /// List keys in byte order.
    List {
        /// Only keys starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Keys per request (1..=1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Start after this key.
        #[arg(long, value_name = "KEY")]
        after: Option<String>,
        /// Include values.
        #[arg(long)]
        values: bool,
        /// Follow pages until every matching key is listed.
        #[arg(long)]
        all: bool,
    },
}

/// Longest wait of a watch when `--wait-ms` is not given.
const WATCH_WAIT_MS_DEFAULT: u64 = 30_000;

pub fn run(ctx: &Ctx, cmd: KvCmd) -> Result<(), CliError> {
    match cmd {
        KvCmd::Get {
            key,
            meta,
            raw,
            wait_ms,
            watch,
        } => get(ctx, &key, meta, raw, wait_ms, watch),
        KvCmd::Set {
            key,
            value,
            ttl,
            cas,
            if_not_exists,
        } => {
            let bytes = input::bytes(value.as_deref(), "value")?;
            let mut body = Map::new();
            body.insert("value".into(), json!(output::base64(&bytes)));
            if let Some(t) = ttl {
                body.insert("ttl_seconds".into(), json!(t));
            }
            if let Some(v) = cas {
                body.insert("cas_version".into(), json!(v));
            }
            if if_not_exists {
                body.insert("if_not_exists".into(), json!(true));
            }
            let answer = ctx
                .client
                .send_json("PUT", &key_path(ctx, &key), &Json::Object(body), Duration::ZERO);
            let answer = answer.map_err(|e| conflict_hint(e, &key))?;
            if ctx.json() {
                output::print_json(&answer);
            } else {
                println!("{key}: version {}", cell(&answer["version"]));
            }
            Ok(())
        }
        KvCmd::Delete { key, cas } => {
            let target = with_query(&key_path(ctx, &key), &[("cas_version", cas.map(|c| c.to_string()))]);
            let answer = ctx
                .client
                .call("DELETE", &target, None, b"", Duration::ZERO)
                .map_err(|e| conflict_hint(not_found_hint(e, ctx, &key), &key))?;
            if ctx.json() {
                output::print_json(&answer);
            } else {
                println!("{key}: deleted (tombstone version {})", cell(&answer["version"]));
            }
            Ok(())
        }
        KvCmd::List {
            prefix,
            limit,
            after,
            values,
            all,
        } => list(ctx, &prefix, limit, after, values, all),
    }
}

fn key_path(ctx: &Ctx, key: &str) -> String {
    format!("/api/v1/kv/{}/{}", ctx.ns(), encode(key))
}

/// A 404 on a key names the key and the namespace.
fn not_found_hint(e: CliError, ctx: &Ctx, key: &str) -> CliError {
    match e {
        CliError::Server {
            status: 404,
            code,
            body,
            ..
        } if body.get("key").is_some() => CliError::Server {
            status: 404,
            code,
            message: format!("key {key:?} not found in namespace {:?}", ctx.namespace),
            body,
        },
        other => other,
    }
}

/// A 409 names the key (the server's message gives the current version).
fn conflict_hint(e: CliError, key: &str) -> CliError {
    match e {
        CliError::Server {
            status: 409,
            code,
            message,
            body,
        } => {
            let missing = if body.get("current_version").and_then(Json::as_u64) == Some(0) {
                " (the key does not exist)"
            } else {
                ""
            };
            CliError::Server {
                status: 409,
                code,
                message: format!("{key:?}: {message}{missing}"),
                body,
            }
        }
        other => other,
    }
}

fn get(ctx: &Ctx, key: &str, meta: bool, raw: bool, wait_ms: Option<u64>, watch: Option<u64>) -> Result<(), CliError> {
    let wait_ms = match (wait_ms, watch) {
        (None, Some(_)) => Some(WATCH_WAIT_MS_DEFAULT),
        (w, _) => w,
    };
    let target = with_query(
        &key_path(ctx, key),
        &[
            ("wait_ms", wait_ms.map(|w| w.to_string())),
            ("watch_version", watch.map(|w| w.to_string())),
        ],
    );
    let answer = ctx
        .client
        .get_waiting(&target, Duration::from_millis(wait_ms.unwrap_or(0)))
        .map_err(|e| not_found_hint(e, ctx, key))?;
    if ctx.json() {
        output::print_decoded(answer);
        return Ok(());
    }
    let value = field_bytes(&answer, "value")?;
    if meta {
        println!("key: {key}");
        println!("version: {}", cell(&answer["version"]));
        match answer["ttl_remaining"].as_u64() {
            Some(s) => println!("ttl_remaining: {s}s"),
            None => println!("ttl_remaining: none"),
        }
        print!("value: ");
    }
    output::write_value(&value, raw)
}

fn list(
    ctx: &Ctx,
    prefix: &str,
    limit: u32,
    mut after: Option<String>,
    values: bool,
    all: bool,
) -> Result<(), CliError> {
    let path = format!("/api/v1/kv/{}", ctx.ns());
    let mut keys: Vec<Json> = Vec::new();
    let mut last_page;
    loop {
        let target = with_query(
            &path,
            &[
                ("prefix", (!prefix.is_empty()).then(|| prefix.to_string())),
                ("limit", Some(limit.to_string())),
                ("after", after.clone()),
                ("values", values.then(|| "true".to_string())),
            ],
        );
        last_page = ctx.client.get(&target)?;
        if let Some(page) = last_page["keys"].as_array() {
            keys.extend(page.iter().cloned());
        }
        let next = last_page["next_after"].as_str().map(str::to_string);
        match next {
            Some(n) if all && last_page["has_more"].as_bool() == Some(true) => after = Some(n),
            _ => break,
        }
    }
    if ctx.json() {
        let mut answer = last_page;
        answer["count"] = json!(keys.len());
        answer["keys"] = Json::Array(keys);
        output::print_decoded(answer);
        return Ok(());
    }
    let mut rows = Vec::with_capacity(keys.len());
    for k in &keys {
        let mut row = vec![
            cell(&k["key"]),
            cell(&k["version"]),
            cell(&k["size"]),
            k["ttl_remaining"]
                .as_u64()
                .map_or_else(|| "-".to_string(), |s| format!("{s}s")),
        ];
        if values {
            row.push(cell_bytes(&field_bytes(k, "value")?));
        }
        rows.push(row);
    }
    let header: &[&str] = if values {
        &["KEY", "VERSION", "SIZE", "TTL", "VALUE"]
    } else {
        &["KEY", "VERSION", "SIZE", "TTL"]
    };
    output::print_table(header, &rows);
    if last_page["has_more"].as_bool() == Some(true) {
        eprintln!(
            "more keys follow: --after {} (or --all)",
            last_page["next_after"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}
