//! `flo ns list|create`, `flo cluster status|partitions` and `flo status`: namespaces
//! (`/api/v1/namespaces`), the cluster view (`/api/v1/cluster/...`) and the server's status
//! (`/api/v1/status`).

use clap::{Args, Subcommand};
use serde_json::json;

use super::output::{self, cell, time_cell};
use super::{CliError, ClientOpts, Ctx};

#[derive(Args, Debug)]
pub struct NsArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub cmd: NsCmd,
}

#[derive(Subcommand, Debug)]
pub enum NsCmd {
    /// Namespaces with their object counts.
    List,
    /// Create a namespace (namespaces are also created by their first write).
    Create { name: String },
}

#[derive(Args, Debug)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub cmd: ClusterCmd,
}

#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    /// Nodes, partitions and replication.
    Status,
    /// Which node and shard own each partition.
    Partitions,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
}

pub fn ns(ctx: &Ctx, cmd: NsCmd) -> Result<(), CliError> {
    match cmd {
        NsCmd::List => {
            let answer = ctx.client.get("/api/v1/namespaces")?;
            if ctx.json() {
                output::print_json(&answer);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = answer["namespaces"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|n| {
                    vec![
                        cell(&n["name"]),
                        time_cell(&n["created_at_ms"]),
                        cell(&n["kv_keys"]),
                        cell(&n["queues"]),
                        cell(&n["streams"]),
                        cell(&n["measurements"]),
                    ]
                })
                .collect();
            output::print_table(
                &["NAMESPACE", "CREATED", "KV_KEYS", "QUEUES", "STREAMS", "MEASUREMENTS"],
                &rows,
            );
            Ok(())
        }
        NsCmd::Create { name } => {
            let answer = ctx.client.post("/api/v1/namespaces", &json!({ "name": name }))?;
            if ctx.json() {
                output::print_json(&answer);
            } else {
                println!("namespace {} created", cell(&answer["name"]));
            }
            Ok(())
        }
    }
}

pub fn cluster(ctx: &Ctx, cmd: ClusterCmd) -> Result<(), CliError> {
    match cmd {
        ClusterCmd::Status => {
            let answer = ctx.client.get("/api/v1/cluster/status")?;
            if ctx.json() {
                output::print_json(&answer);
                return Ok(());
            }
            println!("partitions: {}", cell(&answer["partition_count"]));
            println!("replication factor: {}", cell(&answer["replication_factor"]));
            let rows: Vec<Vec<String>> = answer["nodes"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|n| {
                    ["id", "address", "status", "shards"]
                        .iter()
                        .map(|f| cell(&n[*f]))
                        .collect()
                })
                .collect();
            output::print_table(&["NODE", "ADDRESS", "STATUS", "SHARDS"], &rows);
            Ok(())
        }
        ClusterCmd::Partitions => {
            let answer = ctx.client.get("/api/v1/cluster/partitions")?;
            if ctx.json() {
                output::print_json(&answer);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = answer["partitions"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|p| {
                    ["id", "node", "shard", "replicas"]
                        .iter()
                        .map(|f| cell(&p[*f]))
                        .collect()
                })
                .collect();
            output::print_table(&["PARTITION", "NODE", "SHARD", "REPLICAS"], &rows);
            Ok(())
        }
    }
}

pub fn status(ctx: &Ctx) -> Result<(), CliError> {
    let answer = ctx.client.get("/api/v1/status")?;
    if ctx.json() {
        output::print_json(&answer);
    } else {
        output::print_fields(&answer);
    }
    Ok(())
}
