//! KV commands as they travel between shards, and their execution on the key's owner shard:
//! check the condition, append the entry, apply it at once (so the next write's condition sees
//! it), answer when it is durable. Reads wait for the entry they would show to be durable.

use std::rc::Rc;

use super::entry::{decode_put, encode_delete, encode_put, ENTRY_KV_DELETE, ENTRY_KV_PUT};
use super::store::{Cond, Refused, Slot, Value};
use crate::api::error::ApiError;
use crate::server::shard::{log_error, Shard};

/// A KV request for the owner shard of its key (or, for scans, for every shard).
#[derive(Debug)]
pub enum KvCmd {
    Get {
        ns: String,
        key: String,
        wait: Option<Wait>,
    },
    Put {
        ns: String,
        key: String,
        value: Vec<u8>,
        expires_at_ms: u64,
        cond: Cond,
    },
    Delete {
        ns: String,
        key: String,
        cas: Option<u64>,
    },
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
pub async fn execute(shard: &Shard, cmd: KvCmd) -> Result<KvReply, ApiError> {
    let now = crate::metrics::now_ms();
    match cmd {
        KvCmd::Get { ns, key, wait } => {
            let slot = match wait {
                None => settled_slot(shard, &ns, &key, now).await?,
                Some(w) => wait_for(shard, &ns, &key, w).await?,
            };
            let Some(slot) = slot else {
                return Ok(KvReply::NotFound);
            };
            let value = read_value(shard, &ns, &key, &slot)?;
            Ok(KvReply::Found(KeyState {
                key,
                version: slot.version,
                expires_at_ms: slot.expires_at_ms,
                size: value.len() as u64,
                value: Some(value),
            }))
        }
        KvCmd::Put {
            ns,
            key,
            value,
            expires_at_ms,
            cond,
        } => {
            shard.ensure_namespace(&ns).await?;
            let log = shard.log()?;
            let planned = shard.kv.borrow().plan_put(&ns, &key, cond, now);
            let version = match planned {
                Ok(v) => v,
                Err(r) => return refused(shard, &ns, &key, r).await,
            };
            let body = encode_put(version, expires_at_ms, &ns, &key, &value);
            let ticket = log.append(ENTRY_KV_PUT, &body).map_err(log_error)?;
            let len = value.len() as u32;
            let pending = Value::Pending {
                lsn: ticket.lsn,
                bytes: Rc::from(value),
            };
            shard
                .kv
                .borrow_mut()
                .apply_put(&ns, &key, version, expires_at_ms, pending);
            let pos = ticket.await.map_err(log_error)?;
            shard.kv.borrow_mut().settle(&ns, &key, version, &pos, len);
            shard.kv_watch.wake(&ns, &key);
            Ok(KvReply::Written { version })
        }
        KvCmd::Delete { ns, key, cas } => {
            let log = shard.log()?;
            let planned = shard.kv.borrow().plan_delete(&ns, &key, cas, now);
            let version = match planned {
                Ok(v) => v,
                Err(r) => return refused(shard, &ns, &key, r).await,
            };
            let ticket = log
                .append(ENTRY_KV_DELETE, &encode_delete(version, &ns, &key))
                .map_err(log_error)?;
            shard.kv.borrow_mut().apply_delete(&ns, &key, version, ticket.lsn);
            let pos = ticket.await.map_err(log_error)?;
            shard.kv.borrow_mut().settle_delete(&ns, &key, version, &pos);
            shard.kv_watch.wake(&ns, &key);
            Ok(KvReply::Written { version })
        }
        KvCmd::Scan {
            ns,
            prefix,
            after,
            limit,
            values,
        } => {
            let (slots, has_more, pending) = shard.kv.borrow().scan(&ns, &prefix, after.as_deref(), limit, now);
            // Nothing not yet durable is shown: wait for the newest pending entry passed.
            if let Some(lsn) = pending {
                shard.log()?.wait_durable(lsn).await.map_err(log_error)?;
            }
            let mut keys = Vec::with_capacity(slots.len());
            for (key, slot) in slots {
                let value = if values {
                    Some(read_value(shard, &ns, &key, &slot)?)
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

/// Waits (woken by the key's next durable write, not by polling) until the key exists, or its
/// version passes `after_version`, or the deadline; then returns the visible slot.
async fn wait_for(shard: &Shard, ns: &str, key: &str, w: Wait) -> Result<Option<Slot>, ApiError> {
    let done = |shard: &Shard| -> bool {
        let kv = shard.kv.borrow();
        match w.after_version {
            None => kv.get(ns, key, crate::metrics::now_ms()).is_some(),
            Some(v) => kv.latest_version(ns, key) > v,
        }
    };
    loop {
        let now = crate::metrics::now_ms();
        if done(shard) || now >= w.deadline_ms {
            return settled_slot(shard, ns, key, now).await;
        }
        shard.wait_change(&shard.kv_watch, ns, key, w.deadline_ms).await?;
    }
}

/// A refusal reveals the key's state (its version, or that it is missing): answer it only once
/// the entry behind that state is durable.
async fn refused(shard: &Shard, ns: &str, key: &str, r: Refused) -> Result<KvReply, ApiError> {
    let pending = shard.kv.borrow().slot_pending_lsn(ns, key);
    if let Some(lsn) = pending {
        shard.log()?.wait_durable(lsn).await.map_err(log_error)?;
    }
    Ok(KvReply::Refused(r))
}

/// The visible slot of a key once the entry that made its state (a put or a delete) is durable.
async fn settled_slot(shard: &Shard, ns: &str, key: &str, now: u64) -> Result<Option<Slot>, ApiError> {
    let (visible, pending) = {
        let kv = shard.kv.borrow();
        (kv.get(ns, key, now), kv.slot_pending_lsn(ns, key))
    };
    if let Some(lsn) = pending {
        // Every entry up to `lsn` is durable afterwards, so the state seen above is too.
        shard.log()?.wait_durable(lsn).await.map_err(log_error)?;
    }
    Ok(visible)
}

/// The bytes of a slot's value: held in memory while pending, else from the mapped segment,
/// whose entry must be this key's put of this version.
fn read_value(shard: &Shard, ns: &str, key: &str, slot: &Slot) -> Result<Vec<u8>, ApiError> {
    match &slot.value {
        Value::Tombstone { .. } => Ok(Vec::new()),
        Value::Pending { bytes, .. } => Ok(bytes.to_vec()),
        Value::At { segment, offset, .. } => {
            let e = shard.log()?.read_entry(*segment, *offset).map_err(log_error)?;
            match decode_put(e.body()) {
                Ok(p)
                    if e.entry_type == ENTRY_KV_PUT
                        && p.version == slot.version
                        && p.namespace == ns
                        && p.key == key =>
                {
                    Ok(p.value.to_vec())
                }
                other => Err(ApiError::Internal(format!(
                    "the entry at segment {segment} offset {offset} is not {key:?} version {}: {other:?}",
                    slot.version
                ))),
            }
        }
    }
}
