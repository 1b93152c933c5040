//! KV commands as they travel between shards, and their execution on the shard that owns the
//! key's partition: a write is decided against the partition's state and proposed (append,
//! apply at once, so the next write's condition sees it), and answered once committed. Reads
//! wait for the entry they would show to be committed. A scan covers every partition of the
//! shard and merges them in key order.

use super::entry::{decode_put, ENTRY_KV_PUT};
use super::store::{KvAnswer, KvCommand, KvStore, Refused, Slot, Value};
use crate::machine::{Engine, Error};

/// A KV request for the owner shard of its key (or, for scans, for every shard).
#[derive(Debug)]
pub enum KvCmd {
    Get {
        ns: String,
        key: String,
        wait: Option<Wait>,
    },
    /// A put or a delete (a sweep is the timer's).
    Write(KvCommand),
    Scan {
        ns: String,
        prefix: String,
        after: Option<String>,
        limit: usize,
        values: bool,
    },
}

/// How long a read may wait, and for what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    /// Wait until the key's version is above this (a watch); `None`: until the key exists.
    pub after_version: Option<u64>,
    /// Unix ms after which the read answers with what there is.
    pub deadline_ms: u64,
}

/// One key as an answer carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyState {
    pub key: String,
    pub version: u64,
    pub expires_at_ms: u64,
    pub size: u64,
    pub value: Option<Vec<u8>>,
}

/// The owner shard's answer.
#[derive(Debug, PartialEq)]
pub enum KvReply {
    Found(KeyState),
    NotFound,
    Written { version: u64 },
    Refused(Refused),
    Scanned { keys: Vec<KeyState>, has_more: bool },
}

/// Executes a KV command on this shard.
pub async fn execute(engine: &Engine, cmd: KvCmd) -> Result<KvReply, Error> {
    match cmd {
        KvCmd::Get { ns, key, wait } => {
            let p = engine.partition_of(&ns, &key);
            let slot = match wait {
                None => settled_slot(engine, p, &ns, &key).await?,
                Some(w) => wait_for(engine, p, &ns, &key, w).await?,
            };
            let Some(slot) = slot else {
                return Ok(KvReply::NotFound);
            };
            let value = read_value(engine, &ns, &key, &slot)?;
            Ok(KvReply::Found(KeyState {
                key,
                version: slot.version,
                expires_at_ms: slot.expires_at_ms,
                size: value.len() as u64,
                value: Some(value),
            }))
        }
        KvCmd::Write(cmd) => {
            let (ns, key) = match &cmd {
                KvCommand::Put { ns, key, .. } | KvCommand::Delete { ns, key, .. } => (ns.clone(), key.clone()),
                KvCommand::Sweep { .. } => {
                    return Err(Error::invalid("a sweep is the timer's to decide"));
                }
            };
            let p = engine.partition_of(&ns, &key);
            write(engine, p, cmd, (ns, key)).await
        }
        KvCmd::Scan {
            ns,
            prefix,
            after,
            limit,
            values,
        } => {
            let now = engine.now_ms();
            // Every partition of the shard at one instant, merged in key order.
            let mut slots: Vec<(String, Slot)> = Vec::new();
            let mut has_more = false;
            let mut pending: Option<u64> = None;
            for part in engine.parts() {
                let (s, more, wait) = part.kv.borrow().scan(&ns, &prefix, after.as_deref(), limit, now);
                slots.extend(s);
                has_more |= more;
                pending = pending.max(wait);
            }
            slots.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            if slots.len() > limit {
                slots.truncate(limit);
                has_more = true;
            }
            // Nothing not yet committed is shown: wait for the newest pending entry passed.
            if let Some(lsn) = pending {
                let p = engine.parts()[0].id;
                engine.committed(p, lsn).await?;
            }
            let mut keys = Vec::with_capacity(slots.len());
            for (key, slot) in slots {
                let value = if values {
                    Some(read_value(engine, &ns, &key, &slot)?)
                } else {
                    None
                };
                keys.push(KeyState {
                    key,
                    version: slot.version,
                    expires_at_ms: slot.expires_at_ms,
                    size: slot.value_len(),
                    value,
                });
            }
            Ok(KvReply::Scanned { keys, has_more })
        }
    }
}

/// Decides and proposes a put or delete; answers once it is committed (a refusal once the
/// state it reveals is).
async fn write(engine: &Engine, p: u32, cmd: KvCommand, wake: (String, String)) -> Result<KvReply, Error> {
    let (answer, proposed) = engine.decide::<KvStore>(p, cmd)?;
    match answer {
        KvAnswer::Written { version } => {
            if let Some(proposed) = proposed {
                engine.commit(&proposed).await?;
            }
            engine.kv_watch.wake(&wake.0, &wake.1);
            Ok(KvReply::Written { version })
        }
        KvAnswer::Refused { why, wait } => {
            if let Some(lsn) = wait {
                engine.committed(p, lsn).await?;
            }
            Ok(KvReply::Refused(why))
        }
        KvAnswer::Swept => Err(Error::Corrupt("a client write was decided as a sweep".into())),
    }
}

/// Waits (woken by the key's next committed write, not by polling) until the key exists, or
/// its version passes `after_version`, or the deadline; then returns the visible slot.
async fn wait_for(engine: &Engine, p: u32, ns: &str, key: &str, w: Wait) -> Result<Option<Slot>, Error> {
    let done = || -> bool {
        let kv = engine.part(p).kv.borrow();
        match w.after_version {
            None => kv.get(ns, key, engine.now_ms()).is_some(),
            Some(v) => kv.latest_version(ns, key) > v,
        }
    };
    loop {
        if done() || engine.now_ms() >= w.deadline_ms {
            return settled_slot(engine, p, ns, key).await;
        }
        engine.wait_change(&engine.kv_watch, ns, key, w.deadline_ms).await?;
    }
}

/// The visible slot of a key once the entry that made its state (a put or a delete) is
/// committed.
async fn settled_slot(engine: &Engine, p: u32, ns: &str, key: &str) -> Result<Option<Slot>, Error> {
    let (visible, pending) = {
        let kv = engine.part(p).kv.borrow();
        (kv.get(ns, key, engine.now_ms()), kv.slot_pending_lsn(ns, key))
    };
    if let Some(lsn) = pending {
        // Every entry up to `lsn` is committed afterwards, so the state seen above is too.
        engine.committed(p, lsn).await?;
    }
    Ok(visible)
}

/// The bytes of a slot's value: held in memory while pending, else from the mapped segment,
/// whose entry must be this key's put of this version.
fn read_value(engine: &Engine, ns: &str, key: &str, slot: &Slot) -> Result<Vec<u8>, Error> {
    match &slot.value {
        Value::Tombstone { .. } => Ok(Vec::new()),
        Value::Pending { bytes, .. } => Ok(bytes.to_vec()),
        Value::At { segment, offset, .. } => {
            let e = engine.log()?.read_entry(*segment, *offset)?;
            match decode_put(e.body()) {
                Ok(p)
                    if e.entry_type == ENTRY_KV_PUT
                        && p.version == slot.version
                        && p.namespace == ns
                        && p.key == key =>
                {
                    Ok(p.value.to_vec())
                }
                other => Err(Error::Corrupt(format!(
                    "the entry at segment {segment} offset {offset} is not {key:?} version {}: {other:?}",
                    slot.version
                ))),
            }
        }
    }
}
