//! The KV store as a [`Machine`]: what a put, a delete or a sweep decides against the state,
//! and how each KV entry applies (`format-spec/kv.md`).
//!
//! Decisions read the clock the engine passes (visibility, the delete's time, the sweep's time,
//! the tombstone retention of the day); applying reads nothing but the entry and the state.

use std::rc::Rc;

use super::{Cond, KvStore, Refused, Value};
use crate::kv::entry::{
    decode_any_delete, decode_put, decode_sweep, encode_delete_at, encode_put, encode_sweep, ENTRY_KV_DELETE,
    ENTRY_KV_DELETE_AT, ENTRY_KV_PUT, ENTRY_KV_SWEEP,
};
use crate::log::format::{stored_bytes, EntryRef};
use crate::log::Position;
use crate::machine::{At, Corrupt, DecideCtx, Decided, Error, Kind, Machine, Partition, RestoreCtx};
use crate::partition::Partitioner;
use crate::snapshot::codec::Dec;
use crate::snapshot::shard::Captured;

/// Records the sweep decisions of a shard look at, at most, per timer round (shared by its
/// partitions; the version before partitions visited as many).
const SWEEP_BUDGET: usize = 20_000;

/// A KV command that changes state.
#[derive(Debug)]
pub enum KvCommand {
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
    /// Remove these (key, version) records of `ns`, which cannot be seen any more (the timer's,
    /// from [`KvStore::sweepable`]).
    Sweep {
        ns: String,
        records: Vec<(String, u64)>,
    },
}

/// What a KV command answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvAnswer {
    Written {
        version: u64,
    },
    /// The condition failed, or the key is not there. `wait`: the entry behind that state, which
    /// must be committed before the refusal is answered (it reveals the state).
    Refused {
        why: Refused,
        wait: Option<u64>,
    },
    Swept,
}

/// What settling a KV entry needs.
pub enum KvPending {
    /// A put or delete: its record, found again by key and version. `names` is the namespace
    /// then the key (one allocation for both), `ns_len` where the key starts.
    Record {
        names: Box<str>,
        ns_len: usize,
        version: u64,
        bytes: u64,
    },
    /// An entry nothing reads once it is durable (a sweep): its bytes are dead at its place.
    Dead { bytes: u64 },
}

impl KvStore {
    fn refused(&self, ns: &str, key: &str, why: Refused) -> Decided<KvAnswer> {
        Decided::nothing(KvAnswer::Refused {
            why,
            wait: self.slot_pending_lsn(ns, key),
        })
    }
}

impl Machine for KvStore {
    const KIND: Kind = Kind::Kv;
    type Command = KvCommand;
    type Answer = KvAnswer;
    type Output = ();
    type Pending = KvPending;

    fn cell(p: &Partition) -> &std::cell::RefCell<Self> {
        &p.kv
    }

    fn partition_of(entry_type: u16, body: &[u8], partitioner: &Partitioner) -> Result<u32, Corrupt> {
        Ok(match entry_type {
            ENTRY_KV_PUT => {
                let p = decode_put(body)?;
                partitioner.partition(p.namespace, p.key)
            }
            ENTRY_KV_DELETE | ENTRY_KV_DELETE_AT => {
                let d = decode_any_delete(entry_type, body)?;
                partitioner.partition(d.namespace, d.key)
            }
            ENTRY_KV_SWEEP => {
                let s = decode_sweep(body)?;
                partitioner.partition(s.namespace, s.records[0].0)
            }
            t => {
                return Err(Corrupt(format!(
                    "KV entry type {t} is unknown (written by a newer flo?)"
                )))
            }
        })
    }

    fn decide(&self, cmd: KvCommand, ctx: &DecideCtx<'_>) -> Result<Decided<KvAnswer>, Error> {
        let now = ctx.now_ms;
        Ok(match cmd {
            KvCommand::Put {
                ns,
                key,
                value,
                expires_at_ms,
                cond,
            } => match self.plan_put(&ns, &key, cond, now) {
                Ok(version) => Decided::write(
                    ENTRY_KV_PUT,
                    encode_put(version, expires_at_ms, &ns, &key, &value),
                    KvAnswer::Written { version },
                ),
                Err(why) => self.refused(&ns, &key, why),
            },
            KvCommand::Delete { ns, key, cas } => match self.plan_delete(&ns, &key, cas, now) {
                Ok(version) => Decided::write(
                    ENTRY_KV_DELETE_AT,
                    encode_delete_at(version, now, &ns, &key),
                    KvAnswer::Written { version },
                ),
                Err(why) => self.refused(&ns, &key, why),
            },
            KvCommand::Sweep { ns, records } => {
                let named: Vec<(&str, u64)> = records.iter().map(|(k, v)| (k.as_str(), *v)).collect();
                Decided::write(ENTRY_KV_SWEEP, encode_sweep(now, &ns, &named), KvAnswer::Swept)
            }
        })
    }

    fn due(&self, ctx: &DecideCtx<'_>) -> Vec<KvCommand> {
        // The shard's budget a round, shared by its partitions.
        let budget = (SWEEP_BUDGET / ctx.partitions_here.max(1)).max(1);
        self.sweepable(ctx.now_ms, ctx.config.kv.tombstone_retention_ms, budget)
            .into_iter()
            .map(|(ns, records)| KvCommand::Sweep { ns, records })
            .collect()
    }

    fn apply(&mut self, e: &EntryRef<'_>, at: At) -> Result<((), Option<KvPending>), Corrupt> {
        let bytes = stored_bytes(e.body.len()) as u64;
        match e.entry_type {
            ENTRY_KV_PUT => {
                let p = decode_put(e.body)?;
                let value = match at {
                    At::Pending(lsn) => Value::Pending {
                        lsn,
                        bytes: Rc::from(p.value),
                    },
                    At::Placed(pos) => Value::At {
                        segment: pos.segment,
                        offset: pos.offset,
                        len: p.value.len() as u32,
                    },
                };
                self.put_checked(p.namespace, p.key, p.version, p.expires_at_ms, value)?;
                Ok(((), pending(at, p.namespace, p.key, p.version, bytes)))
            }
            ENTRY_KV_DELETE | ENTRY_KV_DELETE_AT => {
                let d = decode_any_delete(e.entry_type, e.body)?;
                self.delete_checked(d.namespace, d.key, d.version, d.deleted_at_ms, at.lsn())?;
                if let At::Placed(pos) = at {
                    self.settle_entry(d.namespace, d.key, d.version, &pos, bytes);
                }
                Ok(((), pending(at, d.namespace, d.key, d.version, bytes)))
            }
            ENTRY_KV_SWEEP => {
                let s = decode_sweep(e.body)?;
                self.apply_sweep(s.namespace, s.at_ms, &s.records);
                match at {
                    At::Pending(lsn) => {
                        self.dead_from_the_start(lsn, bytes);
                        Ok(((), Some(KvPending::Dead { bytes })))
                    }
                    At::Placed(pos) => {
                        Machine::settle(self, KvPending::Dead { bytes }, &pos);
                        Ok(((), None))
                    }
                }
            }
            t => Err(Corrupt(format!(
                "KV entry type {t} is unknown (written by a newer flo?)"
            ))),
        }
    }

    fn settle(&mut self, pending: KvPending, pos: &Position) {
        match pending {
            KvPending::Record {
                names,
                ns_len,
                version,
                bytes,
            } => {
                let (ns, key) = names.split_at(ns_len);
                self.settle_entry(ns, key, version, pos, bytes)
            }
            KvPending::Dead { bytes } => self.settle_dead(pos, bytes),
        }
    }

    fn needs(&self, from: (u64, u64), entry_type: u16, body: &[u8]) -> bool {
        KvStore::needs(self, from, entry_type, body)
    }

    fn relocate(&mut self, from: (u64, u64), to: &Position, entry_type: u16, body: &[u8]) -> Result<bool, Corrupt> {
        Ok(KvStore::relocate(self, from, to, entry_type, body)?)
    }

    fn capture(&self) -> Captured {
        Captured::Kv(Box::new(self.freeze()))
    }

    fn restore(dec: &mut Dec<'_>, partition: u32, ctx: &RestoreCtx<'_>) -> Result<Self, Corrupt> {
        Ok(KvStore::decode(dec, Some((partition, ctx.partitioner)))?)
    }

    fn dead_bytes(&self) -> u64 {
        self.segments.dead.iter().sum()
    }
}

/// The settling a put or delete applied live needs (`None` in replay: it is placed already).
fn pending(at: At, ns: &str, key: &str, version: u64, bytes: u64) -> Option<KvPending> {
    matches!(at, At::Pending(_)).then(|| {
        let mut names = String::with_capacity(ns.len() + key.len());
        names.push_str(ns);
        names.push_str(key);
        KvPending::Record {
            names: names.into_boxed_str(),
            ns_len: ns.len(),
            version,
            bytes,
        }
    })
}
