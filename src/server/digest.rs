//! `flo server digest`: what a data directory recovers to, per partition, without serving it.
//!
//! Each shard opens its log exactly as a start does (its newest usable snapshot, then the log
//! after it), and nothing more: no timer runs, no pending multi-part write is settled, nothing
//! is proposed. Each partition's state is then encoded as its snapshot section and hashed
//! (SHA-256): the partition's digest.
//!
//! Invariant: applying an entry depends only on the state and the entry, so two nodes that
//! applied the same entries have the same sections, byte for byte, whatever their clocks, their
//! `queue.*`/`ts.*` settings, or the snapshots they started from — the property the replica
//! determinism tests check, and what replicas of a partition compare.

use std::rc::Rc;
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use super::shard::{recover, Shard};
use super::{check_topology, lock_data_dir, Node, StartError};
use crate::config::{Config, Resolved};

/// One partition's digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionDigest {
    pub shard: usize,
    pub partition: u32,
    /// Bytes of its snapshot section.
    pub bytes: usize,
    /// SHA-256 of the section, lowercase hex.
    pub sha256: String,
}

impl PartitionDigest {
    /// One JSON line: `{"shard":0,"partition":5,"bytes":123,"sha256":"…"}`.
    pub fn json_line(&self) -> String {
        serde_json::json!({
            "shard": self.shard,
            "partition": self.partition,
            "bytes": self.bytes,
            "sha256": self.sha256,
        })
        .to_string()
    }
}

/// Hashes a partition's section.
pub fn digest(shard: usize, partition: u32, section: &[u8]) -> PartitionDigest {
    let sum: [u8; 32] = Sha256::digest(section).into();
    PartitionDigest {
        shard,
        partition,
        bytes: section.len(),
        sha256: sum.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// Recovers every shard of the data directory `config` names and returns its partitions'
/// digests, in shard then partition order. The directory is locked as a running server locks
/// it; its log may be repaired as a start repairs it (a torn tail cut).
pub fn run(config: Config, resolved: Resolved) -> Result<Vec<PartitionDigest>, StartError> {
    let clock = crate::clock::Clock::system().map_err(StartError)?;
    if !config.data_dir.join(crate::log::topology::FILE_NAME).is_file() {
        return Err(StartError(format!(
            "{} is not a flo data directory (no {})",
            config.data_dir.display(),
            crate::log::topology::FILE_NAME
        )));
    }
    let _lock = lock_data_dir(&config.data_dir)?;
    let topology = check_topology(&config)?;
    let shards = config.shards;
    let (mut node, _inboxes) = Node::with_clock(config, resolved, clock);
    node.created_at_ms = topology.created_at_ms;
    let node = Arc::new(node);
    let mut out = Vec::new();
    for id in 0..shards {
        let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build()
            .map_err(|e| StartError(format!("cannot create an io_uring instance ({e}); flo needs io_uring")))?;
        let node = node.clone();
        let sections = rt.block_on(async move {
            let shard = Rc::new(Shard::new(id, node));
            let log = recover(&shard).await.map_err(|e| format!("shard {id}: {e}"))?;
            shard.engine.set_log(log);
            crate::snapshot::shard::sections(&shard.engine)
                .await
                .map_err(|e| format!("shard {id}: {e}"))
        });
        for (partition, section) in sections.map_err(StartError)? {
            out.push(digest(id, partition, &section));
        }
    }
    Ok(out)
}
