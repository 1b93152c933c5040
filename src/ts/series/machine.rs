//! The series store as a [`Machine`]: what each time-series command decides against the
//! partition's series, and how each time-series entry applies (`format-spec/ts.md`).
//!
//! A write's part carries the time the write arrived (the coordinator's clock, the same for every
//! part of one write): a head started by it ages from then. Cutting heads and retention are
//! decisions of the timer, against the clock and the settings of the day; the entries they write
//! say exactly what they take (a head's oldest points, the chunks before a cutoff), so applying
//! them reads neither.

use std::collections::HashMap;

use super::{decode_line_key, EntryAt, FullHeads, SeriesStore, HEAD_POINTS};
use crate::log::format::{stored_bytes, EntryRef};
use crate::log::Position;
use crate::machine::{At, Corrupt, DecideCtx, Decided, Error, Kind, Machine, Partition, RestoreCtx};
use crate::partition::Partitioner;
use crate::snapshot::codec::{Dec, Enc};
use crate::snapshot::shard::Captured;
use crate::ts::entry::*;
use crate::ts::part::Part;

/// A time-series command that changes a partition's state.
#[derive(Debug)]
pub enum TsCommand {
    /// The partition's share of a write (at most `MAX_PART_POINTS` points), one of `part_count`
    /// parts of batch `batch_id` (0 for a write of one part), arrived at `at_ms`.
    Points {
        ns: String,
        batch_id: u64,
        part_count: u16,
        at_ms: u64,
        part: std::rc::Rc<Part>,
    },
    /// The batch committed: its parts here join the heads (nothing if none is pending here).
    Commit { batch_id: u64 },
    /// The batch failed: its parts here are dropped (nothing if none is pending here).
    Abort { batch_id: u64 },
    /// Cut a series' head (`kind` 0) or late head (1) into a chunk.
    Cut { series: u32, kind: u8 },
    /// Drop a series' chunks wholly before `before_ts` (retention).
    Drop { series: u32, before_ts: i64 },
    Retention {
        ns: String,
        measurement: String,
        max_age_ms: u64,
    },
}

/// What a time-series command answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsAnswer {
    /// The entry that carries it was proposed.
    Proposed,
    /// Nothing to write (a batch with no part here, an empty head).
    Nothing,
}

/// An entry applied before it was durable: a `TS_POINTS` (`chunk` `None`) or a series' chunk.
pub struct TsPending {
    pub(in crate::ts::series) lsn: u64,
    pub(in crate::ts::series) chunk: Option<u32>,
}

/// A series a part defines: id, measurement, tags, field.
type OwnedSeries = (u32, String, Vec<(String, String)>, String);

impl SeriesStore {
    /// Builds the `TS_POINTS` body of a partition's part: resolves series ids, numbering new
    /// series from the store's next id.
    #[allow(clippy::too_many_arguments)]
    fn points_body(
        &self,
        ns: &str,
        partitioner: &Partitioner,
        partition: u32,
        batch_id: u64,
        part_count: u16,
        at_ms: u64,
        part: &Part,
    ) -> Result<Vec<u8>, Error> {
        let mut next = self.next_id();
        // Series this part defines, by line key.
        let mut fresh: HashMap<Vec<u8>, Vec<(String, u32)>> = HashMap::new();
        let mut new_series: Vec<OwnedSeries> = Vec::new();
        let mut points: Vec<(u32, i64, f64)> = Vec::with_capacity(part.points);
        let lines = self.lines_of(ns);
        let mut overflow = false;
        let mut bad_key = false;
        let mut elsewhere = false;
        let mut too_many_tags = false;
        part.lines(|line| {
            let known = lines.and_then(|m| m.get(line.key)).map_or(&[][..], Vec::as_slice);
            for (j, (field, v)) in line.fields.iter().enumerate() {
                // A line's fields come sorted, as they were when its series were defined: the
                // j-th field is most likely the j-th known one.
                let at_j = known.get(j).filter(|(f, _)| **f == **field);
                let found = at_j
                    .or_else(|| known.iter().find(|(f, _)| **f == **field))
                    .map(|(_, id)| *id)
                    .or_else(|| {
                        fresh
                            .get(line.key)
                            .and_then(|l| l.iter().find(|(f, _)| f == field).map(|(_, id)| *id))
                    });
                let id = match found {
                    Some(id) => id,
                    None => {
                        let Some((measurement, tags)) = decode_line_key(line.key) else {
                            bad_key = true;
                            continue;
                        };
                        // A series is defined in its line key's partition, as replay and
                        // snapshots require; its tags fit the entry's u16 count.
                        elsewhere |= super::line_key_partition(line.key, partitioner) != partition;
                        too_many_tags |= tags.len() > usize::from(u16::MAX);
                        let id = next;
                        match next.checked_add(1) {
                            Some(n) => next = n,
                            None => overflow = true,
                        }
                        fresh
                            .entry(line.key.to_vec())
                            .or_default()
                            .push((field.to_string(), id));
                        new_series.push((
                            id,
                            measurement.to_string(),
                            tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                            field.to_string(),
                        ));
                        id
                    }
                };
                points.push((id, line.ts_ms, *v));
            }
        })
        .map_err(Error::Corrupt)?;
        if bad_key {
            return Err(Error::Corrupt("a part holds a line key that does not decode".into()));
        }
        if elsewhere {
            return Err(Error::Corrupt(format!(
                "a part for partition {partition} holds a series of another partition"
            )));
        }
        if too_many_tags {
            return Err(Error::invalid(format!("a series has more than {} tags", u16::MAX)));
        }
        if overflow {
            return Err(Error::busy("this partition holds the most series it can number"));
        }
        let defs: Vec<NewSeries<'_>> = new_series
            .iter()
            .map(|(id, m, tags, f)| NewSeries {
                id: *id,
                measurement: m,
                tags: tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
                field: f,
            })
            .collect();
        Ok(encode_points(
            ns, partition, batch_id, part_count, at_ms, &defs, &points,
        ))
    }
}

impl Machine for SeriesStore {
    const KIND: Kind = Kind::Ts;
    type Command = TsCommand;
    type Answer = TsAnswer;
    /// The series whose head is full after a write or a commit (to be cut).
    type Output = FullHeads;
    type Pending = TsPending;

    fn cell(p: &Partition) -> &std::cell::RefCell<Self> {
        &p.ts
    }

    fn partition_of(entry_type: u16, body: &[u8], partitioner: &Partitioner) -> Result<u32, Corrupt> {
        SeriesStore::partition_of_any(entry_type, body, partitioner)?
            .ok_or_else(|| Corrupt("a time-series entry written before partitions had state of their own".into()))
    }

    fn decide(&self, cmd: TsCommand, ctx: &DecideCtx<'_>) -> Result<Decided<TsAnswer>, Error> {
        let p = ctx.partition;
        Ok(match cmd {
            TsCommand::Points {
                ns,
                batch_id,
                part_count,
                at_ms,
                part,
            } => {
                let body = self.points_body(&ns, ctx.partitioner, p, batch_id, part_count, at_ms, &part)?;
                Decided::write(ENTRY_TS_POINTS, body, TsAnswer::Proposed)
            }
            TsCommand::Commit { batch_id } => match self.pending.get(&batch_id) {
                Some(part) => Decided::write(
                    ENTRY_TS_COMMIT,
                    encode_abort(&part.namespace, p, batch_id),
                    TsAnswer::Proposed,
                ),
                None => Decided::nothing(TsAnswer::Nothing),
            },
            TsCommand::Abort { batch_id } => match self.pending.get(&batch_id) {
                Some(part) => Decided::write(
                    ENTRY_TS_ABORT,
                    encode_abort(&part.namespace, p, batch_id),
                    TsAnswer::Proposed,
                ),
                None => Decided::nothing(TsAnswer::Nothing),
            },
            TsCommand::Cut { series, kind } => match (self.get(series), self.cut(series, kind)) {
                (Some(s), Some(chunk)) => Decided::write(
                    ENTRY_TS_CHUNK,
                    encode_chunk(&s.namespace, p, series, kind, &chunk),
                    TsAnswer::Proposed,
                ),
                _ => Decided::nothing(TsAnswer::Nothing),
            },
            TsCommand::Drop { series, before_ts } => match self.get(series) {
                Some(s) => Decided::write(
                    ENTRY_TS_DROP,
                    encode_drop(&s.namespace, p, series, before_ts),
                    TsAnswer::Proposed,
                ),
                None => Decided::nothing(TsAnswer::Nothing),
            },
            TsCommand::Retention {
                ns,
                measurement,
                max_age_ms,
            } => Decided::write(
                ENTRY_TS_RETENTION,
                encode_retention(&ns, p, &measurement, max_age_ms),
                TsAnswer::Proposed,
            ),
        })
    }

    fn due(&self, ctx: &DecideCtx<'_>) -> Vec<TsCommand> {
        let mut heads = self.aged(ctx.now_ms, ctx.config.ts.head_age_ms);
        heads.extend(self.full(HEAD_POINTS));
        heads.sort_unstable();
        heads.dedup();
        let mut out: Vec<TsCommand> = heads
            .into_iter()
            .map(|(series, kind)| TsCommand::Cut { series, kind })
            .collect();
        out.extend(
            self.expired(ctx.now_ms)
                .into_iter()
                .map(|(series, before_ts)| TsCommand::Drop { series, before_ts }),
        );
        out
    }

    fn apply(&mut self, e: &EntryRef<'_>, at: At) -> Result<(FullHeads, Option<TsPending>), Corrupt> {
        let stored = stored_bytes(e.body.len()) as u64;
        let lsn = at.lsn();
        let (entry_at, pending) = match at {
            At::Pending(_) => (EntryAt::Pending, true),
            At::Placed(pos) => (EntryAt::Placed(pos), false),
        };
        let legacy = || Corrupt(format!("time-series entry {lsn} has no partition (form 0)"));
        let mut full = Vec::new();
        let mut settle = None;
        match e.entry_type {
            ENTRY_TS_POINTS => {
                let p = decode_points(e.body)?;
                p.partition.ok_or_else(legacy)?;
                full = self.apply_points(&p, lsn, entry_at, stored)?;
                settle = Some(TsPending { lsn, chunk: None });
            }
            ENTRY_TS_ABORT => {
                let (h, batch) = decode_abort(e.body)?;
                h.partition.ok_or_else(legacy)?;
                self.abort(batch);
            }
            ENTRY_TS_COMMIT => {
                let (h, batch) = decode_abort(e.body)?;
                h.partition.ok_or_else(legacy)?;
                full = self.commit(h.namespace, batch)?;
            }
            ENTRY_TS_CHUNK => {
                let c = decode_chunk(e.body)?;
                c.partition.ok_or_else(legacy)?;
                self.apply_chunk(&c, lsn, entry_at, stored)?;
                settle = Some(TsPending {
                    lsn,
                    chunk: Some(c.series),
                });
            }
            ENTRY_TS_RETENTION => {
                let (h, m, age) = decode_retention(e.body)?;
                h.partition.ok_or_else(legacy)?;
                self.set_retention(h.namespace, m, age);
            }
            ENTRY_TS_DROP => {
                let (h, series, what) = decode_drop(e.body)?;
                h.partition.ok_or_else(legacy)?;
                self.drop_chunks(h.namespace, series, &what)?;
            }
            t => {
                return Err(Corrupt(format!(
                    "time-series entry type {t} is unknown (written by a newer flo?)"
                )))
            }
        }
        Ok((full, if pending { settle } else { None }))
    }

    fn settle(&mut self, p: TsPending, pos: &Position) {
        self.settle_entry(p.lsn, p.chunk, pos);
    }

    fn needs(&self, from: (u64, u64), entry_type: u16, body: &[u8]) -> bool {
        SeriesStore::needs(self, from, entry_type, body)
    }

    fn relocate(&mut self, from: (u64, u64), to: &Position, entry_type: u16, body: &[u8]) -> Result<bool, Corrupt> {
        Ok(SeriesStore::relocate(self, from, to, entry_type, body)?)
    }

    fn capture(&self) -> Captured {
        let mut e = Enc::new();
        self.snapshot(&mut e);
        Captured::Encoded(e)
    }

    fn restore(dec: &mut Dec<'_>, partition: u32, ctx: &RestoreCtx<'_>) -> Result<Self, Corrupt> {
        Ok(SeriesStore::decode(dec, Some((partition, ctx.partitioner)))?)
    }

    fn dead_bytes(&self) -> u64 {
        SeriesStore::dead_bytes(self)
    }
}

impl SeriesStore {
    /// The partition of a time-series entry: `None` for one of form 0 (written before
    /// partitions had state of their own), which names none.
    pub fn partition_of_any(_entry_type: u16, body: &[u8], partitioner: &Partitioner) -> Result<Option<u32>, Corrupt> {
        let h = decode_head(body)?;
        match h.partition {
            Some(p) if p < partitioner.partitions() => Ok(Some(p)),
            Some(p) => Err(Corrupt(format!(
                "a time-series entry of partition {p}, which does not exist"
            ))),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;
    use crate::clock::Clock;
    use crate::server::shard::Shard;
    use crate::ts::line::Precision;
    use crate::ts::split::{parse, Reading};

    /// A part decided for a partition other than its series' is refused and writes nothing:
    /// its series would be defined where replay and snapshots never look for them.
    #[test]
    fn a_part_is_decided_only_in_its_series_partition() {
        crate::crash_tally::runtime().block_on(async {
            let sh = Shard::on_sim_disk(Clock::manual(1_000)).await;
            let engine = &sh.engine;
            let reading = Reading {
                first_line: 1,
                precision: Precision::Ms,
                now_ns: 0,
                partial: false,
            };
            let mut parsed = parse(&engine.partitioner, b"cpu,host=a v=1 5\n", reading).expect("a line");
            let (home, part) = parsed.parts.pop().expect("one part");
            let part = Rc::new(part);
            let cmd = |part: &Rc<Part>| TsCommand::Points {
                ns: "app".into(),
                batch_id: 0,
                part_count: 1,
                at_ms: 1_000,
                part: part.clone(),
            };
            let other = (home + 1) % engine.partitioner.partitions();
            let next_lsn = engine.log().expect("open").next_lsn();
            let refused = engine.decide::<SeriesStore>(other, cmd(&part));
            assert!(
                matches!(&refused, Err(Error::Corrupt(m)) if m.contains("another partition")),
                "{:?}",
                refused.err()
            );
            assert_eq!(engine.log().expect("open").next_lsn(), next_lsn, "nothing written");
            assert!(engine.part(other).ts.borrow().is_empty());
            let (_, proposed) = engine
                .decide::<SeriesStore>(home, cmd(&part))
                .expect("its own partition");
            assert!(proposed.is_some());
            assert_eq!(engine.part(home).ts.borrow().len(), 1);
        });
    }
}
