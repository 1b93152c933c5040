//! A sequence of KV operations — put, conditional puts, delete, get, scan, the tombstone sweep,
//! clean restarts, power losses between operations and in the middle of a write — run against
//! the real KV state machine on the real log over the simulated disk (`log/sim.rs`), and
//! compared with a `BTreeMap` model after every step.
//!
//! The operations are decoded from the input bytes by [`decode_ops`] (a few bytes each, so a
//! fuzzer's mutations stay meaningful and `cargo test` can replay a corpus file without the
//! fuzzing crates). The write path is the engine's (`machine/engine.rs`): plan, append, apply at
//! once, await the ticket, settle; every write is awaited before the next operation, on a log in
//! `sync` durability, so an acknowledged write must survive any power loss. The sweep removes
//! the records of deleted keys through `KV_SWEEP` entries, after which a key written again
//! starts over at version 1. Recovery is the server's: open the log and replay every KV entry
//! into a fresh store.
//!
//! Checked: a get and a scan show exactly the model (values read back through the log); a put's
//! version is above every acknowledged version of its key; a condition is refused exactly when
//! the model says so; after a restart or a crash the recovered store equals the model, except
//! that a write cut by the crash is either wholly there or wholly absent.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Durability;
use crate::kv::entry::{
    decode_put, encode_delete_at, encode_put, encode_sweep, ENTRY_KV_DELETE_AT, ENTRY_KV_PUT, ENTRY_KV_SWEEP,
};
use crate::kv::{Cond, KvStore, Refused, Value};
use crate::log::format::EntryRef;
use crate::log::metrics::LogMetrics;
use crate::log::sim::{CrashMode, SimFs};
use crate::log::{Log, LogOptions};
use crate::machine::{At, Machine};

const NS: &str = "fz";
/// Keys are `KEY_PREFIXES[i]` followed by a digit: scans by prefix see groups of them.
const KEY_PREFIXES: [&str; 4] = ["a", "ab", "b", "c"];
const KEYS_PER_PREFIX: u8 = 4;
/// Operations taken from one input at most (a run stays fast).
const MAX_OPS: usize = 96;

/// One step of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvOp {
    /// An unconditional put of `len` bytes.
    Put {
        key: u8,
        len: u16,
    },
    /// A put conditional on the visible version: the model's when `hit`, else `guess`.
    CasPut {
        key: u8,
        len: u16,
        hit: bool,
        guess: u8,
    },
    /// A put if the key is not visible.
    PutIfAbsent {
        key: u8,
        len: u16,
    },
    /// A delete, conditional on the visible version when `cas` is given (the model's when
    /// `Some(true)`, a wrong one when `Some(false)`).
    Delete {
        key: u8,
        cas: Option<bool>,
    },
    Get {
        key: u8,
    },
    /// A scan of the keys starting with `KEY_PREFIXES[prefix]` (or all, past the table), after
    /// the key `after` if given, at most `limit`.
    Scan {
        prefix: u8,
        after: Option<u8>,
        limit: u8,
    },
    /// The tombstone sweep, with this budget.
    Sweep {
        budget: u8,
    },
    /// A clean stop and a restart on the same disk.
    Restart,
    /// Power loss between operations: the disk as `mode` leaves it, chosen by `seed`.
    Crash {
        mode: u8,
        seed: u8,
    },
    /// A put whose process dies after `after_ops` more disk operations, then power loss.
    CrashDuringPut {
        key: u8,
        len: u16,
        after_ops: u8,
        mode: u8,
        seed: u8,
    },
}

/// Decodes a run from bytes: a tag byte per operation, then its arguments. Stops at the end of
/// the input or after `MAX_OPS` operations; missing argument bytes read as 0.
pub fn decode_ops(data: &[u8]) -> Vec<KvOp> {
    let mut r = Reader { data, pos: 0 };
    let mut ops = Vec::new();
    while r.pos < data.len() && ops.len() < MAX_OPS {
        let tag = r.u8();
        let op = match tag % 16 {
            0..=3 => KvOp::Put {
                key: r.u8(),
                len: r.len(),
            },
            4 => KvOp::CasPut {
                key: r.u8(),
                len: r.len(),
                hit: tag & 0x80 == 0,
                guess: r.u8(),
            },
            5 => KvOp::PutIfAbsent {
                key: r.u8(),
                len: r.len(),
            },
            6 | 7 => KvOp::Delete {
                key: r.u8(),
                cas: match tag >> 6 {
                    0 | 1 => None,
                    2 => Some(true),
                    _ => Some(false),
                },
            },
            8 | 9 => KvOp::Get { key: r.u8() },
            10 => KvOp::Scan {
                prefix: r.u8(),
                after: (tag & 0x80 != 0).then(|| r.u8()),
                limit: r.u8(),
            },
            11 => KvOp::Sweep { budget: r.u8() },
            12 => KvOp::Restart,
            13 => KvOp::Crash {
                mode: r.u8(),
                seed: r.u8(),
            },
            14 => KvOp::CrashDuringPut {
                key: r.u8(),
                len: r.len(),
                after_ops: r.u8(),
                mode: r.u8(),
                seed: r.u8(),
            },
            _ => KvOp::Get { key: r.u8() },
        };
        ops.push(op);
    }
    ops
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    /// A value length: small mostly, up to 63.75 KiB (so segments fill and seal).
    fn len(&mut self) -> u16 {
        let b = self.u8();
        if b < 0xc0 {
            u16::from(b)
        } else {
            u16::from(b - 0xc0) * 1024 + u16::from(self.u8())
        }
    }
}

fn key_name(k: u8) -> String {
    let prefixes = KEY_PREFIXES.len() as u8;
    let k = k % (prefixes * KEYS_PER_PREFIX);
    format!(
        "{}{}",
        KEY_PREFIXES[usize::from(k / KEYS_PER_PREFIX)],
        k % KEYS_PER_PREFIX
    )
}

fn all_keys() -> impl Iterator<Item = String> {
    (0..KEY_PREFIXES.len() as u8 * KEYS_PER_PREFIX).map(key_name)
}

/// The value of the `step`-th operation: distinct per step, `len` bytes.
fn value_of(step: usize, len: u16) -> Rc<[u8]> {
    let mut x = (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn crash_mode(m: u8) -> CrashMode {
    match m % 3 {
        0 => CrashMode::KeepAll,
        1 => CrashMode::DropAll,
        _ => CrashMode::Random,
    }
}

fn dir() -> PathBuf {
    PathBuf::from("/data/shard-000")
}

fn opts() -> LogOptions {
    LogOptions {
        shard_id: 0,
        segment_bytes: crate::log::format::MIN_SEGMENT_BYTES,
        batch_max_bytes: 256 * 1024,
        durability: Durability::Sync,
        flush_interval: Duration::from_millis(5),
        commit_wait: Duration::ZERO,
        repair: false,
    }
}

/// The model: each key's visible value and version (deleted keys are absent), and the newest
/// acknowledged version of every key ever written (deletes included).
#[derive(Default)]
struct Model {
    visible: BTreeMap<String, (u64, Rc<[u8]>)>,
    acked_version: BTreeMap<String, u64>,
}

impl Model {
    fn visible_version(&self, key: &str) -> u64 {
        self.visible.get(key).map_or(0, |(v, _)| *v)
    }

    /// The sweep removed the records of these keys: their versions start over.
    fn forget(&mut self, keys: impl Iterator<Item = String>) {
        for k in keys {
            assert!(!self.visible.contains_key(&k), "{k}: swept while visible");
            self.acked_version.remove(&k);
        }
    }

    fn ack(&mut self, key: &str, version: u64, value: Option<Rc<[u8]>>) {
        let last = self.acked_version.entry(key.to_string()).or_default();
        assert!(
            version > *last,
            "{key}: version {version} after acknowledged version {last}"
        );
        *last = version;
        match value {
            Some(v) => self.visible.insert(key.to_string(), (version, v)),
            None => self.visible.remove(key),
        };
    }
}

/// One life of the process: the disk, the log and its flusher, the store.
struct Life {
    fs: SimFs,
    log: Rc<Log<SimFs>>,
    flusher: monoio::task::JoinHandle<()>,
    kv: RefCell<KvStore>,
}

impl Life {
    /// Opens (recovers) the log on `fs` and replays it into a fresh store.
    async fn open(fs: SimFs) -> Life {
        let mut kv = KvStore::default();
        let (log, _) = crate::log::open(
            fs.clone(),
            dir(),
            opts(),
            Arc::new(LogMetrics::default()),
            0,
            |e, at| kv.apply(e, At::Placed(at)).map(drop).map_err(|c| c.0),
        )
        .await
        .unwrap_or_else(|e| panic!("the log does not recover: {e}"));
        let log = Rc::new(log);
        let flusher = monoio::spawn(log.clone().run_flusher());
        Life {
            fs,
            log,
            flusher,
            kv: RefCell::new(kv),
        }
    }

    async fn stop(self) {
        self.log.stop();
        self.flusher.await;
    }

    /// Appends an entry, applies it at once, waits for it to be durable and settles it, as the
    /// engine's `propose` and `commit` do; `Err`: the log failed (the write's fate is unknown).
    async fn write(&self, entry_type: u16, body: &[u8]) -> Result<(), String> {
        self.log.room(body.len() + 64).await;
        let ticket = self.log.append(entry_type, body).map_err(|e| e.to_string())?;
        let e = EntryRef {
            lsn: ticket.lsn,
            entry_type,
            flags: 0,
            body,
        };
        let (_, pending) = self
            .kv
            .borrow_mut()
            .apply(&e, At::Pending(ticket.lsn))
            .unwrap_or_else(|c| panic!("a decided entry does not apply: {c}"));
        let pos = ticket.await.map_err(|e| e.to_string())?;
        if let Some(p) = pending {
            Machine::settle(&mut *self.kv.borrow_mut(), p, &pos);
        }
        Ok(())
    }

    /// Put as the KV store decides it; `Ok(Err)`: refused by its condition.
    async fn put(&self, key: &str, cond: Cond, value: &Rc<[u8]>) -> Result<Result<u64, Refused>, String> {
        let version = match self.kv.borrow().plan_put(NS, key, cond, 0) {
            Ok(v) => v,
            Err(r) => return Ok(Err(r)),
        };
        self.write(ENTRY_KV_PUT, &encode_put(version, 0, NS, key, value))
            .await?;
        Ok(Ok(version))
    }

    async fn delete(&self, key: &str, cas: Option<u64>) -> Result<Result<u64, Refused>, String> {
        let version = match self.kv.borrow().plan_delete(NS, key, cas, 0) {
            Ok(v) => v,
            Err(r) => return Ok(Err(r)),
        };
        self.write(ENTRY_KV_DELETE_AT, &encode_delete_at(version, 0, NS, key))
            .await?;
        Ok(Ok(version))
    }

    /// The sweep, visiting at most `budget` records: returns the keys whose records it removed.
    async fn sweep(&self, budget: usize) -> Vec<String> {
        let groups = self.kv.borrow().sweepable(0, 0, budget);
        let mut removed = Vec::new();
        for (ns, records) in groups {
            let named: Vec<(&str, u64)> = records.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            self.write(ENTRY_KV_SWEEP, &encode_sweep(0, &ns, &named))
                .await
                .expect("the disk is healthy");
            removed.extend(records.into_iter().map(|(k, _)| k));
        }
        removed
    }

    /// A visible key's version and value, the value read through the log.
    fn read(&self, key: &str) -> Option<(u64, Vec<u8>)> {
        let slot = self.kv.borrow().get(NS, key, 0)?;
        let bytes = match slot.value {
            Value::At { segment, offset, len } => {
                let e = self
                    .log
                    .read_entry(segment, offset)
                    .unwrap_or_else(|e| panic!("{key}: cannot read {segment}/{offset}: {e}"));
                let p =
                    decode_put(e.body()).unwrap_or_else(|e| panic!("{key}: a bad entry at {segment}/{offset}: {e}"));
                assert_eq!(
                    (e.entry_type, p.namespace, p.key, p.version),
                    (ENTRY_KV_PUT, NS, key, slot.version)
                );
                assert_eq!(p.value.len(), len as usize);
                p.value.to_vec()
            }
            other => panic!("{key}: not settled after its write was awaited: {other:?}"),
        };
        Some((slot.version, bytes))
    }

    /// Every key as the model has it.
    fn check_all(&self, model: &Model, when: &str) {
        for key in all_keys() {
            let got = self.read(&key);
            let want = model.visible.get(&key).map(|(v, b)| (*v, b.to_vec()));
            assert_eq!(got, want, "{key} {when}");
        }
    }
}

thread_local! {
    static RUNTIME: RefCell<monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>>> = RefCell::new(
        monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build()
            .expect("io_uring runtime"),
    );
}

/// Checks one input; panics on a violation.
pub fn check(data: &[u8]) {
    let ops = decode_ops(data);
    RUNTIME.with(|rt| rt.borrow_mut().block_on(run(ops)));
}

async fn run(ops: Vec<KvOp>) {
    let mut model = Model::default();
    let mut life = Life::open(SimFs::new()).await;
    for (step, op) in ops.into_iter().enumerate() {
        let when = format!("after step {step} ({op:?})");
        match op {
            KvOp::Put { key, len } => {
                let key = key_name(key);
                let value = value_of(step, len);
                let v = life.put(&key, Cond::Always, &value).await.expect("the disk is healthy");
                model.ack(&key, v.expect("an unconditional put is never refused"), Some(value));
            }
            KvOp::CasPut { key, len, hit, guess } => {
                let key = key_name(key);
                let visible = model.visible_version(&key);
                let expected = if hit { visible } else { u64::from(guess) };
                let value = value_of(step, len);
                let r = life
                    .put(&key, Cond::Version(expected), &value)
                    .await
                    .expect("the disk is healthy");
                match r {
                    Ok(v) => {
                        assert_eq!(expected, visible, "{key}: a put on version {expected} succeeded {when}");
                        model.ack(&key, v, Some(value));
                    }
                    Err(refused) => assert!(
                        expected != visible
                            && refused
                                == Refused::Conflict {
                                    current_version: visible
                                },
                        "{key}: {refused:?} for version {expected}, visible {visible}, {when}"
                    ),
                }
            }
            KvOp::PutIfAbsent { key, len } => {
                let key = key_name(key);
                let visible = model.visible_version(&key);
                let value = value_of(step, len);
                match life
                    .put(&key, Cond::IfNotExists, &value)
                    .await
                    .expect("the disk is healthy")
                {
                    Ok(v) => {
                        assert_eq!(visible, 0, "{key}: put-if-absent over version {visible} {when}");
                        model.ack(&key, v, Some(value));
                    }
                    Err(refused) => assert_eq!(
                        refused,
                        Refused::Conflict {
                            current_version: visible
                        },
                        "{when}"
                    ),
                }
            }
            KvOp::Delete { key, cas } => {
                let key = key_name(key);
                let visible = model.visible_version(&key);
                let cas_version = cas.map(|hit| if hit { visible } else { visible + 1 });
                match life.delete(&key, cas_version).await.expect("the disk is healthy") {
                    Ok(v) => {
                        assert!(visible > 0 && cas_version.is_none_or(|c| c == visible), "{key} {when}");
                        model.ack(&key, v, None);
                    }
                    Err(Refused::NotFound) => {
                        assert!(visible == 0 && cas_version.is_none_or(|c| c == 0), "{key} {when}")
                    }
                    Err(Refused::Conflict { current_version }) => {
                        assert_eq!(current_version, visible, "{key} {when}");
                        assert!(cas_version.is_some_and(|c| c != visible), "{key} {when}");
                    }
                }
            }
            KvOp::Get { key } => {
                let key = key_name(key);
                let want = model.visible.get(&key).map(|(v, b)| (*v, b.to_vec()));
                assert_eq!(life.read(&key), want, "{key} {when}");
            }
            KvOp::Scan { prefix, after, limit } => {
                let prefix = KEY_PREFIXES.get(usize::from(prefix)).copied().unwrap_or("");
                let after = after.map(key_name);
                let limit = usize::from(limit % 8);
                let (got, more, pending) = life.kv.borrow().scan(NS, prefix, after.as_deref(), limit, 0);
                assert_eq!(pending, None, "nothing is pending between operations");
                let mut want = model
                    .visible
                    .iter()
                    .filter(|(k, _)| {
                        k.starts_with(prefix) && after.as_deref().is_none_or(|a| k.as_str() > a || a < prefix)
                    })
                    .map(|(k, (v, _))| (k.clone(), *v));
                let first: Vec<(String, u64)> = want.by_ref().take(limit).collect();
                let got_keys: Vec<(String, u64)> = got.iter().map(|(k, s)| (k.clone(), s.version)).collect();
                assert_eq!(got_keys, first, "scan {prefix:?} after {after:?} limit {limit} {when}");
                assert_eq!(more, want.next().is_some(), "scan's `more` {when}");
            }
            KvOp::Sweep { budget } => {
                let removed = life.sweep(usize::from(budget)).await;
                for k in &removed {
                    assert_eq!(life.kv.borrow().latest_version(NS, k), 0, "{k}: swept {when}");
                }
                model.forget(removed.into_iter());
                life.check_all(&model, &when);
            }
            KvOp::Restart => {
                let fs = life.fs.clone();
                life.stop().await;
                life = Life::open(fs).await;
                life.check_all(&model, &when);
            }
            KvOp::Crash { mode, seed } => {
                let image = life.fs.crash(u64::from(seed), crash_mode(mode));
                life.fs.crash_after(0);
                life.stop().await;
                life = Life::open(image).await;
                life.check_all(&model, &when);
            }
            KvOp::CrashDuringPut {
                key,
                len,
                after_ops,
                mode,
                seed,
            } => {
                let key = key_name(key);
                let value = value_of(step, len);
                life.fs.crash_after(u64::from(after_ops % 16));
                let r = life.put(&key, Cond::Always, &value).await;
                let image = life.fs.crash(u64::from(seed), crash_mode(mode));
                life.fs.crash_after(0);
                life.stop().await;
                let acked = match r {
                    Ok(v) => Some(v.expect("an unconditional put is never refused")),
                    Err(_) => None,
                };
                life = Life::open(image).await;
                match acked {
                    Some(v) => model.ack(&key, v, Some(value)),
                    None => {
                        // Cut by the crash: all there or not at all.
                        if let Some((v, bytes)) = life.read(&key) {
                            if bytes[..] == value[..] && model.visible_version(&key) != v {
                                model.ack(&key, v, Some(value));
                            }
                        }
                    }
                }
                life.check_all(&model, &when);
            }
        }
    }
    life.stop().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_operation() {
        let ops = decode_ops(&[
            0, 1, 5, 0x84, 2, 0xc1, 7, 9, 0x86, 3, 8, 4, 0x8a, 1, 2, 3, 11, 9, 12, 13, 2, 7, 14, 1, 2, 3, 2, 5,
        ]);
        assert_eq!(
            ops,
            vec![
                KvOp::Put { key: 1, len: 5 },
                KvOp::CasPut {
                    key: 2,
                    len: 1024 + 7,
                    hit: false,
                    guess: 9
                },
                KvOp::Delete {
                    key: 3,
                    cas: Some(true)
                },
                KvOp::Get { key: 4 },
                KvOp::Scan {
                    prefix: 1,
                    after: Some(2),
                    limit: 3
                },
                KvOp::Sweep { budget: 9 },
                KvOp::Restart,
                KvOp::Crash { mode: 2, seed: 7 },
                KvOp::CrashDuringPut {
                    key: 1,
                    len: 2,
                    after_ops: 3,
                    mode: 2,
                    seed: 5
                },
            ]
        );
    }

    /// Writes, a restart, writes, a crash in the middle of a put and power loss: the model holds.
    #[test]
    fn a_run_with_restarts_and_crashes_matches_the_model() {
        check(&[
            0, 1, 40, 1, 2, 0xc3, 0, 6, 1, 12, 4, 2, 9, 10, 0, 3, 13, 1, 0, 14, 2, 50, 4, 2, 1, 8, 2, 11, 20, 13, 2, 9,
        ]);
    }

    /// The checked-in corpus and named regressions (`fuzz/corpus/kv_ops`,
    /// `fuzz/regressions/kv_ops`), replayed as `tests/fuzz_corpus.rs` does for the other targets.
    #[test]
    fn replays_the_corpus() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut files = Vec::new();
        for dir in ["corpus", "regressions"] {
            if let Ok(entries) = std::fs::read_dir(root.join(dir).join("kv_ops")) {
                files.extend(entries.map(|e| e.unwrap().path()));
            }
        }
        files.sort();
        assert!(!files.is_empty(), "no corpus for kv_ops");
        for f in &files {
            let data = std::fs::read(f).unwrap();
            if std::panic::catch_unwind(|| check(&data)).is_err() {
                panic!("kv_ops: {} fails", f.display());
            }
        }
    }
}
