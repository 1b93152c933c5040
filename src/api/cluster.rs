//! `/api/v1/cluster/status` and `/api/v1/cluster/partitions`: a single node reports itself,
//! honestly (replication factor 1), and the partition → shard table it routes by.

use serde_json::{json, Value};

use crate::http::Response;
use crate::server::shard::Shard;

pub fn status(shard: &Shard) -> Response {
    let node = &shard.node;
    let address = format!("{}:{}", node.bind, node.config.dashboard_port);
    Response::json(
        200,
        &json!({
            "nodes": [{ "id": node.config.node_id, "address": address, "status": "alive", "shards": node.shard_count() }],
            "partition_count": node.partitioner.partitions(),
            "replication_factor": 1,
        }),
    )
}

pub fn partitions(shard: &Shard) -> Response {
    let node = &shard.node;
    let p = &node.partitioner;
    let id = node.config.node_id;
    let rows: Vec<Value> = (0..p.partitions())
        .map(|part| json!({ "id": part, "node": id, "shard": p.shard_of_partition(part), "replicas": [id] }))
        .collect();
    Response::json(200, &json!({ "partition_count": p.partitions(), "partitions": rows }))
}
