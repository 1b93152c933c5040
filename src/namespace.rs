//! Namespace records, as a state machine per partition: a namespace's record lives in the
//! partition of `(name, "")` (`Partitioner::namespace_shard` names its shard), so creating one is
//! a single-partition operation and listing is a fan-out.
//!
//! Durable through the log: a `NAMESPACE_CREATE` entry (`format-spec/log.md`) is proposed and
//! applied at once (no second one is decided from then on; one decided anyway, before the first
//! applied, changes nothing); listings show a record once its entry is committed. Replay
//! applies the same entries.
//!
//! Invariant: `default` always exists and is in no partition's state: it is never created by an
//! entry, so a replay of any log reproduces every record there is.

use std::collections::BTreeMap;

use crate::log::format::EntryRef;
use crate::log::Position;
use crate::machine::{At, Corrupt, DecideCtx, Decided, Error, Kind, Machine, Partition, RestoreCtx};
use crate::partition::Partitioner;
use crate::snapshot::codec::{Dec, Enc};
use crate::snapshot::shard::Captured;

/// The name that always exists.
pub const DEFAULT_NAMESPACE: &str = "default";

/// A namespace as listings show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceRecord {
    pub name: String,
    pub created_at_ms: u64,
}

/// One partition's namespace records: name → (creation time, the LSN of its entry while that is
/// not durable yet).
#[derive(Debug, Default)]
pub struct NamespaceRegistry {
    by_name: BTreeMap<String, (u64, Option<u64>)>,
}

/// Creating a namespace.
#[derive(Debug)]
pub struct Create {
    pub name: String,
    pub created_at_ms: u64,
}

/// The answer to a creation: whether this one created it, and the index to wait for before
/// answering (the entry that created it, this one's or an earlier one still in flight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Created {
    pub created: bool,
    pub wait: Option<u64>,
}

impl NamespaceRegistry {
    /// Whether `name` exists (its creation may still be in flight).
    pub fn contains(&self, name: &str) -> bool {
        name == DEFAULT_NAMESPACE || self.by_name.contains_key(name)
    }

    /// Every record (`default` is not among them), by name, and the newest index still in
    /// flight among them (what a listing waits for).
    pub fn list(&self) -> (Vec<NamespaceRecord>, Option<u64>) {
        let pending = self.by_name.values().filter_map(|(_, p)| *p).max();
        let records = self
            .by_name
            .iter()
            .map(|(name, &(created_at_ms, _))| NamespaceRecord {
                name: name.clone(),
                created_at_ms,
            })
            .collect();
        (records, pending)
    }
}

/// Version of the namespace section's layout in snapshots.
const SECTION_VERSION: u32 = 1;

impl NamespaceRegistry {
    /// Writes the records for a snapshot (`format-spec/snapshot.md`, "Namespace section"): those
    /// whose entry is still in flight too, since a snapshot stands for every entry applied
    /// before it.
    pub fn snapshot(&self, enc: &mut Enc) {
        enc.u32(SECTION_VERSION);
        enc.count(self.by_name.len());
        for (name, (created_at_ms, _)) in &self.by_name {
            enc.str(name);
            enc.u64(*created_at_ms);
        }
    }

    /// Reads records written by [`NamespaceRegistry::snapshot`]; each must belong to partition
    /// `partition` (`None`: a whole shard's, from a snapshot older than per-partition state —
    /// then the caller splits them). `default`, which snapshots before that held, is passed over.
    pub fn decode(dec: &mut Dec<'_>, partition: Option<(u32, &Partitioner)>) -> Result<NamespaceRegistry, String> {
        let version = dec.u32("namespace section version")?;
        if version != SECTION_VERSION {
            return Err(format!("namespace section version {version} is not supported"));
        }
        let mut r = NamespaceRegistry::default();
        let mut last: Option<&str> = None;
        for _ in 0..dec.count("namespace count", 12)? {
            let name = dec.str("namespace name")?;
            if !crate::names::is_valid_name(name) {
                return Err(format!("invalid namespace name {name:?}"));
            }
            if last.is_some_and(|l| l >= name) {
                return Err(format!("namespace {name:?} out of order, or twice"));
            }
            last = Some(name);
            let created_at_ms = dec.u64("namespace creation time")?;
            if name == DEFAULT_NAMESPACE {
                continue;
            }
            if let Some((p, partitioner)) = partition {
                let home = partitioner.partition(name, "");
                if home != p {
                    return Err(format!(
                        "namespace {name:?} of partition {home} in partition {p}'s section"
                    ));
                }
            }
            if r.by_name.insert(name.to_string(), (created_at_ms, None)).is_some() {
                return Err(format!("namespace {name:?} appears twice"));
            }
        }
        Ok(r)
    }

    /// Moves each record into the partition its name belongs to (a whole shard's registry from
    /// a snapshot older than per-partition state).
    pub fn split(self, partitioner: &Partitioner, into: &mut BTreeMap<u32, NamespaceRegistry>) {
        for (name, v) in self.by_name {
            into.entry(partitioner.partition(&name, ""))
                .or_default()
                .by_name
                .insert(name, v);
        }
    }
}

impl Machine for NamespaceRegistry {
    const KIND: Kind = Kind::Namespace;
    type Command = Create;
    type Answer = Created;
    type Output = ();
    type Pending = String;

    fn cell(p: &Partition) -> &std::cell::RefCell<Self> {
        &p.namespaces
    }

    fn partition_of(entry_type: u16, body: &[u8], partitioner: &Partitioner) -> Result<u32, Corrupt> {
        debug_assert_eq!(entry_type, ENTRY_NAMESPACE_CREATE);
        let (name, _) = decode_create(body)?;
        Ok(partitioner.partition(&name, ""))
    }

    fn decide(&self, cmd: Create, _ctx: &DecideCtx<'_>) -> Result<Decided<Created>, Error> {
        if cmd.name == DEFAULT_NAMESPACE {
            return Ok(Decided::nothing(Created {
                created: false,
                wait: None,
            }));
        }
        if let Some((_, pending)) = self.by_name.get(&cmd.name) {
            return Ok(Decided::nothing(Created {
                created: false,
                wait: *pending,
            }));
        }
        Ok(Decided::write(
            ENTRY_NAMESPACE_CREATE,
            encode_create(&cmd.name, cmd.created_at_ms),
            Created {
                created: true,
                wait: None,
            },
        ))
    }

    fn due(&self, _ctx: &DecideCtx<'_>) -> Vec<Create> {
        Vec::new()
    }

    fn apply(&mut self, e: &EntryRef<'_>, at: At) -> Result<((), Option<String>), Corrupt> {
        if e.entry_type != ENTRY_NAMESPACE_CREATE {
            return Err(Corrupt(format!("entry type {} is not a namespace entry", e.entry_type)));
        }
        let (name, created_at_ms) = decode_create(e.body)?;
        if name == DEFAULT_NAMESPACE {
            // Never written; a log that has it is not ours.
            return Err(Corrupt("a NAMESPACE_CREATE of \"default\", which always exists".into()));
        }
        let pending = match at {
            At::Pending(lsn) => Some(lsn),
            At::Placed(_) => None,
        };
        // A second creation of a name (two decided before either applied) changes nothing: the
        // first one's record stands, on every replica alike.
        if self.by_name.contains_key(&name) {
            return Ok(((), None));
        }
        self.by_name.insert(name.clone(), (created_at_ms, pending));
        Ok(((), pending.map(|_| name)))
    }

    fn settle(&mut self, name: String, _pos: &Position) {
        if let Some((_, pending)) = self.by_name.get_mut(&name) {
            *pending = None;
        }
    }

    fn needs(&self, _from: (u64, u64), _entry_type: u16, _body: &[u8]) -> bool {
        false
    }

    fn relocate(&mut self, _from: (u64, u64), _to: &Position, entry_type: u16, _body: &[u8]) -> Result<bool, Corrupt> {
        Err(Corrupt(format!(
            "a copy of a namespace entry (type {entry_type}), which is never copied"
        )))
    }

    fn capture(&self) -> Captured {
        let mut e = Enc::new();
        self.snapshot(&mut e);
        Captured::Encoded(e)
    }

    fn restore(dec: &mut Dec<'_>, partition: u32, ctx: &RestoreCtx<'_>) -> Result<Self, Corrupt> {
        Ok(NamespaceRegistry::decode(dec, Some((partition, ctx.partitioner)))?)
    }

    fn dead_bytes(&self) -> u64 {
        0
    }
}

/// Log entry type of a namespace creation.
pub const ENTRY_NAMESPACE_CREATE: u16 = 1;

/// The body of a `NAMESPACE_CREATE` entry: u64 created_at_ms, u16 name length, name.
pub fn encode_create(name: &str, created_at_ms: u64) -> Vec<u8> {
    let len = u16::try_from(name.len()).expect("namespace names are at most 128 bytes");
    let mut b = Vec::with_capacity(10 + name.len());
    b.extend_from_slice(&created_at_ms.to_le_bytes());
    b.extend_from_slice(&len.to_le_bytes());
    b.extend_from_slice(name.as_bytes());
    b
}

/// Decodes a `NAMESPACE_CREATE` body.
pub fn decode_create(body: &[u8]) -> Result<(String, u64), String> {
    if body.len() < 10 {
        return Err("namespace entry too short".into());
    }
    let mut t = [0u8; 8];
    t.copy_from_slice(&body[..8]);
    let created_at_ms = u64::from_le_bytes(t);
    let len = u16::from_le_bytes([body[8], body[9]]) as usize;
    if body.len() != 10 + len {
        return Err("namespace entry length mismatch".into());
    }
    let name = std::str::from_utf8(&body[10..]).map_err(|_| "namespace name is not UTF-8".to_string())?;
    if !crate::names::is_valid_name(name) {
        return Err(format!("invalid namespace name {name:?} in the log"));
    }
    Ok((name.to_string(), created_at_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(r: &mut NamespaceRegistry, name: &str, at: u64, lsn: u64, pending: bool) -> Result<(), Corrupt> {
        let body = encode_create(name, at);
        let e = EntryRef {
            lsn,
            entry_type: ENTRY_NAMESPACE_CREATE,
            flags: 0,
            body: &body,
        };
        let at = if pending {
            At::Pending(lsn)
        } else {
            At::Placed(Position {
                lsn,
                segment: 1,
                offset: 64,
            })
        };
        r.apply(&e, at).map(|_| ())
    }

    #[test]
    fn entry_round_trip() {
        let b = encode_create("myapp", 42);
        assert_eq!(decode_create(&b), Ok(("myapp".to_string(), 42)));
        assert!(decode_create(&b[..b.len() - 1]).is_err());
        assert!(decode_create(&encode_create("a/b", 1)).is_err());
    }

    #[test]
    fn create_is_once_and_listed_with_what_to_wait_for() {
        let mut r = NamespaceRegistry::default();
        create(&mut r, "a", 5, 1, false).unwrap();
        create(&mut r, "a", 6, 2, false).unwrap();
        assert!(
            r.contains("a"),
            "a second creation changes nothing: the first one stands"
        );
        create(&mut r, "b", 7, 3, true).unwrap();
        let (records, pending) = r.list();
        assert_eq!(
            records,
            vec![
                NamespaceRecord {
                    name: "a".into(),
                    created_at_ms: 5
                },
                NamespaceRecord {
                    name: "b".into(),
                    created_at_ms: 7
                }
            ]
        );
        assert_eq!(pending, Some(3));
        r.settle("b".into(), &Position::default());
        assert_eq!(r.list().1, None);
        assert!(r.contains("b") && r.contains(DEFAULT_NAMESPACE) && !r.contains("c"));
        assert!(create(&mut r, DEFAULT_NAMESPACE, 1, 4, false).is_err());
    }

    #[test]
    fn snapshot_holds_names_in_flight_too_and_checks_their_partition() {
        let p = Partitioner::new(64, 2);
        let mut r = NamespaceRegistry::default();
        let (a, b) = (
            "a",
            (0..)
                .map(|i| format!("n{i}"))
                .find(|n| p.partition(n, "") == p.partition("a", ""))
                .unwrap(),
        );
        create(&mut r, a, 5, 1, false).unwrap();
        create(&mut r, &b, 9, 2, true).unwrap();
        let mut e = Enc::new();
        r.snapshot(&mut e);
        let (buf, _, _) = e.finish();
        let home = p.partition("a", "");
        let back = NamespaceRegistry::decode(&mut Dec::new(&buf), Some((home, &p))).unwrap();
        assert_eq!(back.list().0.len(), 2);
        assert!(back.contains(&b));
        assert!(NamespaceRegistry::decode(&mut Dec::new(&buf[..buf.len() - 1]), None).is_err());
        let elsewhere = (home + 1) % 64;
        assert!(NamespaceRegistry::decode(&mut Dec::new(&buf), Some((elsewhere, &p))).is_err());
    }
}
