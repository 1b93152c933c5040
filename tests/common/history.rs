//! Operation histories of concurrent clients and the checkers that judge them.
//!
//! Every client operation is recorded as an [`Entry`]: when it was invoked, when its answer
//! arrived, what it asked and what became of it — `Ok` with the observed result, `Fail` when it
//! certainly had no effect (refused before anything was applied), or `Unknown` when the answer was
//! lost (the server was killed, or the request timed out). An unknown operation may have taken
//! effect once, at any moment between its invoke and its `complete_ns` — [`NEVER`] when nothing
//! bounds it; a crash test bounds it by the moment the server process was killed and reaped
//! ([`bound_unknown`]), after which nothing that process was doing can take effect.
//!
//! The checkers:
//! * [`check_kv`]: per-key linearizability of gets, puts, CAS puts, deletes and CAS deletes
//!   against the API's versioned-register model, by a Wing–Gong search with memoisation of
//!   (linearized set, state) pairs in the style of porcupine. Keys are independent objects, so
//!   each key's sub-history is searched on its own.
//! * [`check_queues`]: set algebra over enqueues, deliveries and acks — lost, unexpected,
//!   duplicated and premature deliveries.
//! * [`check_streams`]: unique offsets for acknowledged appends, a contiguous final stream
//!   holding each acknowledged append's payloads at its offsets, nothing nobody appended, unknown
//!   appends whole or absent, and every record a read returned still there.
//!
//! Times: `*_ns` are from [`now_ns`], one monotonic clock for every thread of the test process;
//! `*_ms` are Unix milliseconds (wall clock), compared with the server's own lease times.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::OnceLock;
use std::time::Instant;

/// Nanoseconds since the first call in this process: one monotonic clock for all threads.
pub fn now_ns() -> u64 {
    static T0: OnceLock<Instant> = OnceLock::new();
    T0.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// `complete_ns` of an unknown operation that nothing bounds.
pub const NEVER: u64 = u64::MAX;

/// What became of an operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome<R> {
    /// Answered; `R` is what the answer said.
    Ok(R),
    /// Certainly without effect (e.g. refused as overloaded before it was applied).
    Fail,
    /// The answer was lost: applied once or not at all, before `complete_ns`.
    Unknown,
}

/// One operation of one client.
#[derive(Clone, Debug)]
pub struct Entry<O, R> {
    pub client: usize,
    pub invoke_ns: u64,
    /// When the answer arrived; for an unknown outcome, the last moment it could take effect.
    pub complete_ns: u64,
    pub op: O,
    pub outcome: Outcome<R>,
}

/// The operations of one client thread, in its order.
pub struct Recorder<O, R> {
    pub client: usize,
    pub entries: Vec<Entry<O, R>>,
}

impl<O, R> Recorder<O, R> {
    pub fn new(client: usize) -> Self {
        Recorder {
            client,
            entries: Vec::new(),
        }
    }

    /// Runs `f` as one operation, timing it; returns the outcome it recorded.
    pub fn run(&mut self, op: O, f: impl FnOnce(&O) -> Outcome<R>) -> &Outcome<R> {
        let invoke_ns = now_ns();
        let outcome = f(&op);
        let complete_ns = match outcome {
            Outcome::Unknown => NEVER,
            _ => now_ns(),
        };
        self.entries.push(Entry {
            client: self.client,
            invoke_ns,
            complete_ns,
            op,
            outcome,
        });
        &self.entries.last().expect("just pushed").outcome
    }
}

/// After the server was killed and reaped at `kill_ns`, no unknown operation of `entries`
/// can take effect later: bounds them by it.
pub fn bound_unknown<O, R>(entries: &mut [Entry<O, R>], kill_ns: u64) {
    for e in entries {
        if matches!(e.outcome, Outcome::Unknown) && e.complete_ns == NEVER {
            e.complete_ns = kill_ns;
        }
    }
}

impl<O, R> Entry<O, R> {
    fn times(&self) -> String {
        let ms = |ns: u64| ns as f64 / 1e6;
        if self.complete_ns == NEVER {
            format!("[client {} {:.3}..never ms]", self.client, ms(self.invoke_ns))
        } else {
            format!(
                "[client {} {:.3}..{:.3} ms]",
                self.client,
                ms(self.invoke_ns),
                ms(self.complete_ns)
            )
        }
    }
}

// ---------------------------------------------------------------------------------------------
// KV: per-key linearizability.
// ---------------------------------------------------------------------------------------------

/// A KV operation on one key. Values are strings, unique per write in the tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvOp {
    Get,
    Put {
        value: String,
    },
    /// `expect` 0: the key must not exist.
    CasPut {
        value: String,
        expect: u64,
    },
    Delete,
    CasDelete {
        expect: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvCall {
    pub key: String,
    pub op: KvOp,
}

/// What a KV answer said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvRes {
    Found {
        value: String,
        version: u64,
    },
    /// 404: the key is not there (get, delete).
    NotFound,
    /// A put's new version or a delete's tombstone version.
    Written {
        version: u64,
    },
    /// 409 with the key's current version (0 when it does not exist).
    Conflict {
        current: u64,
    },
}

pub type KvEntry = Entry<KvCall, KvRes>;

/// The model's state of one key. A re-created key's version is only bounded below: the API
/// promises it continues after the tombstone, and the server may skip ahead (a swept tombstone
/// leaves a per-namespace floor), so versions are checked to increase, not to step by one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum KvState {
    /// Not there; the next creation gets a version above `floor`.
    Absent { floor: u64 },
    /// There with this value; `exact`: the version is known, else it is at least `version`.
    Present { value: u32, version: u64, exact: bool },
}

/// A KV operation with its value interned, for the search.
#[derive(Clone, Debug)]
enum MOp {
    Get,
    Put(u32),
    CasPut(u32, u64),
    Delete,
    CasDelete(u64),
}

/// The value id of a value no client wrote: never equal to a written one.
const FOREIGN: u32 = u32::MAX;

/// The states `op` may lead to from `s` given its observed result (`None`: unknown outcome,
/// so not taking effect is one of them). Empty: the result is impossible in `s`.
fn kv_step(s: KvState, op: &MOp, res: Option<&KvRes>, value_of: &dyn Fn(&str) -> u32) -> Vec<KvState> {
    use KvState::*;
    // The version of the current state, and whether it is exactly known.
    let (vis, exact) = match s {
        Absent { .. } => (0, true),
        Present { version, exact, .. } => (version, exact),
    };
    // Whether `v` can be the visible version; pins it if so.
    let can_be = |v: u64| if exact { v == vis } else { v >= vis };
    let pinned = |v: u64| match s {
        Present { value, .. } => Present {
            value,
            version: v,
            exact: true,
        },
        other => other,
    };
    // The version a write creates: one above the present version, or above the floor.
    let (next_min, next_exact) = match s {
        Absent { floor } => (floor + 1, false),
        Present { version, exact, .. } => (version + 1, exact),
    };
    let next_ok = |v: u64| if next_exact { v == next_min } else { v >= next_min };
    match op {
        MOp::Get => match res {
            None => vec![s],
            Some(KvRes::Found { value, version }) => match s {
                Present { value: have, .. } if have == value_of(value) && have != FOREIGN && can_be(*version) => {
                    vec![pinned(*version)]
                }
                _ => vec![],
            },
            Some(KvRes::NotFound) => match s {
                Absent { .. } => vec![s],
                _ => vec![],
            },
            Some(_) => vec![],
        },
        MOp::Put(w) => {
            let written = |v: u64, exact: bool| Present {
                value: *w,
                version: v,
                exact,
            };
            match res {
                None => vec![written(next_min, next_exact), s],
                Some(KvRes::Written { version }) if next_ok(*version) => vec![written(*version, true)],
                Some(_) => vec![],
            }
        }
        MOp::CasPut(w, e) => {
            let written = |v: u64, exact: bool| Present {
                value: *w,
                version: v,
                exact,
            };
            // The state in which the condition holds, and the version the write then gets.
            let holds: Option<(u64, bool)> = match s {
                Absent { .. } if *e == 0 => Some((next_min, false)),
                Present { .. } if *e != 0 && can_be(*e) => Some((*e + 1, true)),
                _ => None,
            };
            match res {
                None => holds
                    .map(|(v, x)| written(v, x))
                    .into_iter()
                    .chain(std::iter::once(s))
                    .collect(),
                Some(KvRes::Written { version }) => match holds {
                    Some((v, true)) if *version == v => vec![written(v, true)],
                    Some((v, false)) if *version >= v => vec![written(*version, true)],
                    _ => vec![],
                },
                Some(KvRes::Conflict { current }) => match s {
                    Absent { .. } if *e != 0 && *current == 0 => vec![s],
                    Present { .. } if *current != 0 && *current != *e && can_be(*current) => vec![pinned(*current)],
                    _ => vec![],
                },
                Some(_) => vec![],
            }
        }
        MOp::Delete => match (s, res) {
            (Absent { .. }, None | Some(KvRes::NotFound)) => vec![s],
            (Present { .. }, None) => vec![Absent { floor: next_min }, s],
            (Present { .. }, Some(KvRes::Written { version })) if next_ok(*version) => {
                vec![Absent { floor: *version }]
            }
            _ => vec![],
        },
        MOp::CasDelete(e) => match (s, res) {
            // Absent: the condition is checked first (409 with 0 unless it expected 0), then
            // the key is missing (404).
            (Absent { .. }, None) => vec![s],
            (Absent { .. }, Some(KvRes::NotFound)) if *e == 0 => vec![s],
            (Absent { .. }, Some(KvRes::Conflict { current: 0 })) if *e != 0 => vec![s],
            (Present { .. }, None) if *e != 0 && can_be(*e) => vec![Absent { floor: *e + 1 }, s],
            (Present { .. }, None) => vec![s],
            (Present { .. }, Some(KvRes::Written { version })) if *e != 0 && can_be(*e) && *version == *e + 1 => {
                vec![Absent { floor: *version }]
            }
            (Present { .. }, Some(KvRes::Conflict { current })) if *current != *e && can_be(*current) => {
                vec![pinned(*current)]
            }
            _ => vec![],
        },
    }
}

/// The verdict on one key that could not be linearized.
#[derive(Debug)]
pub struct KvViolation {
    pub key: String,
    pub explanation: String,
}

/// What [`check_kv`] found.
#[derive(Debug, Default)]
pub struct KvReport {
    pub keys: usize,
    /// Operations the search considered (unknown gets and failed operations are left out).
    pub ops: usize,
    pub unknown: usize,
    pub non_linearizable: Vec<KvViolation>,
    /// Gets that returned a value no client wrote.
    pub phantom: Vec<String>,
    /// Keys whose last read shows an older version than an acknowledged write made.
    pub lost: Vec<String>,
}

/// Upper bound on search steps per key; beyond it the key is reported as undecided (a
/// violation: the test must not pass on a history it could not judge).
const SEARCH_STEPS_MAX: u64 = 20_000_000;

/// Checks every key's sub-history for linearizability. `written` values that no client wrote
/// but a get returned are also reported as phantoms.
pub fn check_kv(history: &[KvEntry]) -> KvReport {
    let mut report = KvReport::default();
    let mut by_key: BTreeMap<&str, Vec<&KvEntry>> = BTreeMap::new();
    for e in history {
        by_key.entry(e.op.key.as_str()).or_default().push(e);
    }
    let mut written: HashSet<&str> = HashSet::new();
    for e in history {
        if let KvOp::Put { value } | KvOp::CasPut { value, .. } = &e.op.op {
            written.insert(value);
        }
    }
    report.keys = by_key.len();
    for (key, entries) in by_key {
        for e in &entries {
            if let Outcome::Ok(KvRes::Found { value, version }) = &e.outcome {
                if !written.contains(value.as_str()) {
                    report.phantom.push(format!(
                        "{key}: get {} returned value {value:?} (version {version}), which no client wrote",
                        e.times()
                    ));
                }
            }
        }
        // The last read (by invoke time) against the newest acknowledged write.
        let newest_acked = entries
            .iter()
            .filter_map(|e| match e.outcome {
                Outcome::Ok(KvRes::Written { version }) => Some((version, *e)),
                _ => None,
            })
            .max_by_key(|(v, _)| *v);
        let last_read = entries
            .iter()
            .filter(|e| e.op.op == KvOp::Get && matches!(e.outcome, Outcome::Ok(_)))
            .max_by_key(|e| e.invoke_ns);
        if let (Some((acked, w)), Some(r)) = (newest_acked, last_read) {
            if let Outcome::Ok(KvRes::Found { version, .. }) = &r.outcome {
                if *version < acked && r.invoke_ns > w.complete_ns {
                    report.lost.push(format!(
                        "{key}: the last read {} shows version {version}, but {} {:?} was acknowledged with \
                         version {acked}",
                        r.times(),
                        w.times(),
                        w.op.op
                    ));
                }
            }
        }
        let (ops, unknown, verdict) = linearize_key(&entries);
        report.ops += ops;
        report.unknown += unknown;
        if let Err(explanation) = verdict {
            report.non_linearizable.push(KvViolation {
                key: key.to_string(),
                explanation,
            });
        }
    }
    report
}

/// One operation as the search sees it.
struct SOp<'a> {
    entry: &'a KvEntry,
    op: MOp,
    res: Option<&'a KvRes>,
}

/// A node of the search's doubly linked event list (index 0 is the head sentinel).
#[derive(Clone, Copy)]
struct Node {
    op: usize,
    call: bool,
    prev: usize,
    next: usize,
}

/// Wing–Gong search over one key's operations: returns (operations, unknown ones, verdict).
fn linearize_key(entries: &[&KvEntry]) -> (usize, usize, Result<(), String>) {
    // Intern the written values; anything else read is FOREIGN.
    let mut ids: HashMap<&str, u32> = HashMap::new();
    for e in entries {
        if let KvOp::Put { value } | KvOp::CasPut { value, .. } = &e.op.op {
            let n = ids.len() as u32;
            ids.entry(value.as_str()).or_insert(n);
        }
    }
    let value_of = |v: &str| ids.get(v).copied().unwrap_or(FOREIGN);
    let mut ops: Vec<SOp> = Vec::new();
    for e in entries {
        let res = match &e.outcome {
            Outcome::Ok(r) => Some(r),
            Outcome::Fail => continue,
            Outcome::Unknown => {
                // A read without an answer says nothing; an op bounded before its own start
                // (invoked after the kill) cannot have happened.
                if e.op.op == KvOp::Get || e.complete_ns < e.invoke_ns {
                    continue;
                }
                None
            }
        };
        let op = match &e.op.op {
            KvOp::Get => MOp::Get,
            KvOp::Put { value } => MOp::Put(value_of(value)),
            KvOp::CasPut { value, expect } => MOp::CasPut(value_of(value), *expect),
            KvOp::Delete => MOp::Delete,
            KvOp::CasDelete { expect } => MOp::CasDelete(*expect),
        };
        ops.push(SOp { entry: e, op, res });
    }
    let n = ops.len();
    let unknown = ops.iter().filter(|o| o.res.is_none()).count();

    // Events by time; a call before a return at the same instant (overlapping is the lenient
    // reading of a tie).
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, o) in ops.iter().enumerate() {
        events.push((o.entry.invoke_ns, true, i));
        events.push((o.entry.complete_ns, false, i));
    }
    events.sort_by_key(|&(t, call, i)| (t, !call, i));
    let mut nodes = vec![Node {
        op: usize::MAX,
        call: false,
        prev: 0,
        next: 0,
    }];
    let mut call_node = vec![0; n];
    let mut ret_node = vec![0; n];
    for (k, &(_, call, i)) in events.iter().enumerate() {
        let idx = k + 1;
        nodes.push(Node {
            op: i,
            call,
            prev: idx - 1,
            next: if k + 1 < events.len() { idx + 1 } else { 0 },
        });
        if call {
            call_node[i] = idx;
        } else {
            ret_node[i] = idx;
        }
    }
    nodes[0].next = if events.is_empty() { 0 } else { 1 };
    nodes[0].prev = events.len();

    fn unlink(nodes: &mut [Node], x: usize) {
        let (p, nx) = (nodes[x].prev, nodes[x].next);
        nodes[p].next = nx;
        nodes[nx].prev = p;
    }
    fn relink(nodes: &mut [Node], x: usize) {
        let (p, nx) = (nodes[x].prev, nodes[x].next);
        nodes[p].next = x;
        nodes[nx].prev = x;
    }

    let words = n.div_ceil(64);
    let mut done = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, KvState)> = HashSet::new();
    let mut state = KvState::Absent { floor: 0 };
    // (op, state before it, which of its possible next states was taken)
    let mut stack: Vec<(usize, KvState, usize)> = Vec::new();
    // The longest prefix seen: (its operations with the state after each, the operation whose
    // return ended it).
    let mut deepest: (Vec<(usize, KvState)>, usize) = (Vec::new(), usize::MAX);
    let mut cur = nodes[0].next;
    let mut steps = 0u64;

    // The first of `op`'s next states from `choice` on that leads somewhere new.
    let try_from =
        |i: usize, s: KvState, choice: usize, done: &mut Vec<u64>, cache: &mut HashSet<(Vec<u64>, KvState)>| {
            let nexts = kv_step(s, &ops[i].op, ops[i].res, &value_of);
            done[i / 64] |= 1 << (i % 64);
            for (c, t) in nexts.into_iter().enumerate().skip(choice) {
                if cache.insert((done.clone(), t)) {
                    return Some((c, t));
                }
            }
            done[i / 64] &= !(1 << (i % 64));
            None
        };

    while nodes[0].next != 0 {
        steps += 1;
        if steps > SEARCH_STEPS_MAX {
            return (
                n,
                unknown,
                Err(format!(
                    "undecided: the search gave up after {SEARCH_STEPS_MAX} steps ({n} operations)"
                )),
            );
        }
        let node = nodes[cur];
        if node.call {
            let i = node.op;
            if let Some((c, t)) = try_from(i, state, 0, &mut done, &mut cache) {
                stack.push((i, state, c));
                state = t;
                unlink(&mut nodes, call_node[i]);
                unlink(&mut nodes, ret_node[i]);
                cur = nodes[0].next;
            } else {
                cur = node.next;
            }
            continue;
        }
        // A return: its operation must be linearized by now and is not. Back up.
        if stack.len() >= deepest.0.len() {
            let after = |k: usize| stack.get(k + 1).map_or(state, |f| f.1);
            deepest = (
                stack.iter().enumerate().map(|(k, f)| (f.0, after(k))).collect(),
                node.op,
            );
        }
        let Some((i, before, choice)) = stack.pop() else {
            return (n, unknown, Err(explain(&ops, &deepest)));
        };
        state = before;
        done[i / 64] &= !(1 << (i % 64));
        relink(&mut nodes, ret_node[i]);
        relink(&mut nodes, call_node[i]);
        if let Some((c, t)) = try_from(i, state, choice + 1, &mut done, &mut cache) {
            stack.push((i, state, c));
            state = t;
            unlink(&mut nodes, call_node[i]);
            unlink(&mut nodes, ret_node[i]);
            cur = nodes[0].next;
        } else {
            cur = nodes[call_node[i]].next;
        }
    }
    (n, unknown, Ok(()))
}

fn describe(o: &SOp) -> String {
    let res = match o.res {
        Some(r) => format!("{r:?}"),
        None => "unknown".to_string(),
    };
    format!("{} {:?} -> {res}", o.entry.times(), o.entry.op.op)
}

/// The key, the longest order the search found, and the operation it could not place next
/// together with the operations overlapping it.
fn explain(ops: &[SOp], deepest: &(Vec<(usize, KvState)>, usize)) -> String {
    let (order, stuck) = deepest;
    let key = ops.first().map_or("", |o| o.entry.op.key.as_str());
    let mut out = format!(
        "key {key:?}: no linearization of its {} operations; the longest prefix found has {}.\n",
        ops.len(),
        order.len()
    );
    // Value ids back to the values, for the states shown.
    let mut values: HashMap<u32, &str> = HashMap::new();
    for o in ops {
        if let (MOp::Put(id) | MOp::CasPut(id, _), KvOp::Put { value } | KvOp::CasPut { value, .. }) =
            (&o.op, &o.entry.op.op)
        {
            values.insert(*id, value);
        }
    }
    let show = |s: &KvState| match s {
        KvState::Absent { floor } => format!("absent (next version above {floor})"),
        KvState::Present { value, version, exact } => format!(
            "{:?} at version {}{version}",
            values.get(value).copied().unwrap_or("?"),
            if *exact { "" } else { ">= " }
        ),
    };
    out.push_str("  the last operations of that prefix, with the state after each:\n");
    for (i, state) in &order[order.len().saturating_sub(8)..] {
        out.push_str(&format!("    {}  => {}\n", describe(&ops[*i]), show(state)));
    }
    if let Some(s) = ops.get(*stuck) {
        out.push_str(&format!("  then no order places this one:\n    {}\n", describe(s)));
        out.push_str("  operations overlapping it:\n");
        for (i, o) in ops.iter().enumerate() {
            if i != *stuck
                && !order.iter().any(|(k, _)| *k == i)
                && o.entry.invoke_ns <= s.entry.complete_ns
                && o.entry.complete_ns >= s.entry.invoke_ns
            {
                out.push_str(&format!("    {}\n", describe(o)));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Queues: set algebra.
// ---------------------------------------------------------------------------------------------

/// A message as a dequeue (or the final drain) received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub queue: usize,
    pub seq: u64,
    pub payload: String,
    pub delivery_count: u64,
    /// By the server's clock.
    pub lease_expires_at_ms: u64,
    /// The visibility timeout the dequeue asked for.
    pub visibility_ms: u64,
    /// Client wall clock when the answer arrived.
    pub received_ms: u64,
}

impl Delivery {
    /// When the server leased it, by its own clock.
    pub fn leased_at_ms(&self) -> u64 {
        self.lease_expires_at_ms.saturating_sub(self.visibility_ms)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueOp {
    Enqueue {
        queue: usize,
        payloads: Vec<String>,
    },
    Dequeue {
        queue: usize,
        count: u64,
        visibility_ms: u64,
    },
    Ack {
        queue: usize,
        seqs: Vec<u64>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueRes {
    Enqueued {
        seqs: Vec<u64>,
    },
    Delivered(Vec<Delivery>),
    /// The seqs acked (asked minus not_found), and when the answer arrived (wall clock).
    Acked {
        acked: Vec<u64>,
        not_found: Vec<u64>,
        answered_ms: u64,
    },
}

pub type QueueEntry = Entry<QueueOp, QueueRes>;

/// What [`check_queues`] found; each list holds one line per violation.
#[derive(Debug, Default)]
pub struct QueueReport {
    pub enqueued: usize,
    pub deliveries: usize,
    pub acked: usize,
    /// Acknowledged enqueues neither acked, nor in the final drain, nor dead-lettered.
    pub lost: Vec<String>,
    /// Deliveries of payloads nobody enqueued (or under another seq than their enqueue's).
    pub unexpected: Vec<String>,
    /// Messages delivered again after an acknowledged ack, or acked twice.
    pub duplicated: Vec<String>,
    /// Deliveries while an earlier lease on the message was live.
    pub premature: Vec<String>,
    /// Anything else that breaks the contract (answers that do not add up).
    pub other: Vec<String>,
}

impl QueueReport {
    pub fn violations(&self) -> impl Iterator<Item = &String> {
        self.lost
            .iter()
            .chain(&self.unexpected)
            .chain(&self.duplicated)
            .chain(&self.premature)
            .chain(&self.other)
    }
}

/// Checks queue histories. `drain` is the final drain (after the load stopped, until every
/// queue was empty); `dead` the dead-lettered messages as (queue, seq, payload);
/// `tolerance_ms` how far apart the client's and the server's clocks may read.
pub fn check_queues(
    history: &[QueueEntry],
    drain: &[Delivery],
    dead: &[(usize, u64, String)],
    tolerance_ms: u64,
) -> QueueReport {
    let mut r = QueueReport::default();
    // (queue, payload) → seq of an acknowledged enqueue; payloads of unknown enqueues.
    let mut enqueued: HashMap<(usize, &str), u64> = HashMap::new();
    let mut seq_payload: HashMap<(usize, u64), &str> = HashMap::new();
    let mut maybe_enqueued: HashSet<(usize, &str)> = HashSet::new();
    let mut acked: HashMap<(usize, u64), Vec<u64>> = HashMap::new();
    let mut maybe_acked: HashSet<(usize, u64)> = HashSet::new();
    let mut deliveries: BTreeMap<(usize, u64), Vec<&Delivery>> = BTreeMap::new();
    for e in history {
        match (&e.op, &e.outcome) {
            (QueueOp::Enqueue { queue, payloads }, Outcome::Ok(QueueRes::Enqueued { seqs })) => {
                if seqs.len() != payloads.len() {
                    r.other
                        .push(format!("enqueue of {} payloads answered {seqs:?}", payloads.len()));
                }
                for (p, s) in payloads.iter().zip(seqs) {
                    enqueued.insert((*queue, p), *s);
                    if let Some(old) = seq_payload.insert((*queue, *s), p) {
                        r.other.push(format!(
                            "queue {queue} seq {s} answered to two enqueues ({old:?} and {p:?})"
                        ));
                    }
                }
            }
            (QueueOp::Enqueue { queue, payloads }, Outcome::Unknown) => {
                maybe_enqueued.extend(payloads.iter().map(|p| (*queue, p.as_str())));
            }
            (QueueOp::Dequeue { .. }, Outcome::Ok(QueueRes::Delivered(ds))) => {
                for d in ds {
                    deliveries.entry((d.queue, d.seq)).or_default().push(d);
                }
            }
            (
                QueueOp::Ack { queue, seqs },
                Outcome::Ok(QueueRes::Acked {
                    acked: done,
                    not_found,
                    answered_ms,
                }),
            ) => {
                if done.len() + not_found.len() != seqs.len() || done.iter().chain(not_found).any(|s| !seqs.contains(s))
                {
                    r.other.push(format!(
                        "ack of {seqs:?} on queue {queue} answered acked {done:?}, not_found {not_found:?}"
                    ));
                }
                for s in done {
                    acked.entry((*queue, *s)).or_default().push(*answered_ms);
                }
            }
            (QueueOp::Ack { queue, seqs }, Outcome::Unknown) => {
                maybe_acked.extend(seqs.iter().map(|s| (*queue, *s)));
            }
            (_, Outcome::Fail | Outcome::Unknown) => {}
            (op, Outcome::Ok(res)) => r.other.push(format!("{op:?} answered {res:?}")),
        }
    }
    for d in drain {
        deliveries.entry((d.queue, d.seq)).or_default().push(d);
    }
    r.enqueued = enqueued.len();
    r.deliveries = deliveries.values().map(Vec::len).sum();
    r.acked = acked.len();

    // Unexpected: a payload nobody enqueued, or under a seq its enqueue was not answered with.
    for ((q, seq), ds) in &deliveries {
        for d in ds {
            let p = d.payload.as_str();
            let known = enqueued.contains_key(&(*q, p)) || maybe_enqueued.contains(&(*q, p));
            if !known {
                r.unexpected.push(format!(
                    "queue {q} seq {seq} delivered payload {p:?}, which nobody enqueued"
                ));
            } else if let Some(want) = seq_payload.get(&(*q, *seq)).filter(|w| **w != p) {
                r.unexpected.push(format!(
                    "queue {q} seq {seq} delivered payload {p:?}, but its enqueue sent {want:?}"
                ));
            } else if let Some(s) = enqueued.get(&(*q, p)).filter(|s| **s != *seq) {
                r.unexpected.push(format!(
                    "queue {q} payload {p:?} delivered as seq {seq}, but enqueued as seq {s}"
                ));
            }
        }
    }

    // Duplicated: acked twice, or delivered (leased) after an acknowledged ack.
    for ((q, seq), times) in &acked {
        if times.len() > 1 {
            r.duplicated.push(format!(
                "queue {q} seq {seq} acked {} times (answers at {times:?})",
                times.len()
            ));
        }
        let first = times.iter().copied().min().unwrap_or(0);
        for d in deliveries.get(&(*q, *seq)).into_iter().flatten() {
            if d.leased_at_ms() > first + tolerance_ms {
                r.duplicated.push(format!(
                    "queue {q} seq {seq} acked (answer at {first}) and delivered again: delivery {} leased at {}",
                    d.delivery_count,
                    d.leased_at_ms()
                ));
            }
        }
    }

    // Premature: a lease granted while the previous one on the message was live.
    for ((q, seq), ds) in deliveries.iter_mut() {
        ds.sort_by_key(|d| (d.leased_at_ms(), d.delivery_count));
        for pair in ds.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if b.leased_at_ms() < a.lease_expires_at_ms || b.received_ms + tolerance_ms < a.lease_expires_at_ms {
                r.premature.push(format!(
                    "queue {q} seq {seq}: delivery {} (lease until {}) then delivery {} leased at {} (received at {})",
                    a.delivery_count,
                    a.lease_expires_at_ms,
                    b.delivery_count,
                    b.leased_at_ms(),
                    b.received_ms
                ));
            }
            if b.delivery_count <= a.delivery_count {
                r.other.push(format!(
                    "queue {q} seq {seq}: delivery_count went from {} to {}",
                    a.delivery_count, b.delivery_count
                ));
            }
        }
    }

    // Lost: an acknowledged enqueue that ended nowhere.
    let drained: HashSet<(usize, u64)> = drain.iter().map(|d| (d.queue, d.seq)).collect();
    let dead: HashSet<(usize, u64)> = dead.iter().map(|(q, s, _)| (*q, *s)).collect();
    let mut lost: Vec<(usize, u64, &str)> = enqueued
        .iter()
        .filter(|((q, _), s)| {
            let k = (*q, **s);
            !acked.contains_key(&k) && !maybe_acked.contains(&k) && !drained.contains(&k) && !dead.contains(&k)
        })
        .map(|((q, p), s)| (*q, *s, *p))
        .collect();
    lost.sort();
    for (q, s, p) in lost {
        r.lost.push(format!(
            "queue {q} seq {s} ({p:?}) was enqueued (acknowledged) but is neither acked, nor drained, nor dead-lettered; \
             {} deliveries",
            deliveries.get(&(q, s)).map_or(0, Vec::len)
        ));
    }
    r
}

// ---------------------------------------------------------------------------------------------
// Streams.
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamOp {
    Append { stream: usize, payloads: Vec<String> },
    Read { stream: usize, offset: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamRes {
    /// The append's first offset (its payloads follow contiguously).
    Appended { first: u64 },
    /// (offset, payload) in the order returned.
    Records(Vec<(u64, String)>),
}

pub type StreamEntry = Entry<StreamOp, StreamRes>;

/// What [`check_streams`] found; each list holds one line per violation.
#[derive(Debug, Default)]
pub struct StreamReport {
    pub appended: usize,
    pub records: usize,
    /// Acknowledged payloads missing from their offsets, or records a read saw that vanished.
    pub lost: Vec<String>,
    /// Records nobody appended.
    pub phantom: Vec<String>,
    /// Offsets given twice, holes, skips, records out of place.
    pub gaps: Vec<String>,
    pub other: Vec<String>,
}

impl StreamReport {
    pub fn violations(&self) -> impl Iterator<Item = &String> {
        self.lost
            .iter()
            .chain(&self.phantom)
            .chain(&self.gaps)
            .chain(&self.other)
    }
}

/// Checks stream histories against `finals`: every stream's full content after the load, read
/// from its first offset (never trimmed here, so offsets start at 0).
pub fn check_streams(history: &[StreamEntry], finals: &BTreeMap<usize, Vec<(u64, String)>>) -> StreamReport {
    let mut r = StreamReport::default();
    let empty = Vec::new();
    // Every stream anyone touched or that exists.
    let mut streams: Vec<usize> = history
        .iter()
        .map(|e| match &e.op {
            StreamOp::Append { stream, .. } | StreamOp::Read { stream, .. } => *stream,
        })
        .chain(finals.keys().copied())
        .collect();
    streams.sort();
    streams.dedup();
    for st in streams {
        let fin = finals.get(&st).unwrap_or(&empty);
        r.records += fin.len();
        // Contiguous from 0.
        for (i, (off, _)) in fin.iter().enumerate() {
            if *off != i as u64 {
                r.gaps.push(format!(
                    "stream {st}: record {i} of the final read has offset {off} (a gap or a skip)"
                ));
                break;
            }
        }
        let at: HashMap<u64, &str> = fin.iter().map(|(o, p)| (*o, p.as_str())).collect();
        let mut where_is: HashMap<&str, u64> = HashMap::new();
        for (o, p) in fin {
            if let Some(other) = where_is.insert(p, *o) {
                r.gaps
                    .push(format!("stream {st}: payload {p:?} at offsets {other} and {o}"));
            }
        }
        let mut owner: HashMap<u64, usize> = HashMap::new();
        let mut appended: HashSet<&str> = HashSet::new();
        for (k, e) in history.iter().enumerate() {
            let StreamOp::Append { stream, payloads } = &e.op else {
                continue;
            };
            if *stream != st {
                continue;
            }
            appended.extend(payloads.iter().map(String::as_str));
            match &e.outcome {
                Outcome::Ok(StreamRes::Appended { first }) => {
                    r.appended += 1;
                    for (i, p) in payloads.iter().enumerate() {
                        let o = first + i as u64;
                        if let Some(other) = owner.insert(o, k) {
                            r.gaps.push(format!(
                                "stream {st}: offset {o} answered to two appends ({:?} and {p:?})",
                                history[other].op
                            ));
                        }
                        match at.get(&o) {
                            Some(got) if *got == p => {}
                            Some(got) => r.lost.push(format!(
                                "stream {st}: acknowledged {p:?} at offset {o}, but the stream holds {got:?} there"
                            )),
                            None => r.lost.push(format!(
                                "stream {st}: acknowledged {p:?} at offset {o}, which the stream does not hold"
                            )),
                        }
                    }
                }
                Outcome::Unknown => {
                    // All or nothing, contiguous and in order.
                    let found: Vec<Option<u64>> = payloads.iter().map(|p| where_is.get(p.as_str()).copied()).collect();
                    let all = found.iter().all(Option::is_some);
                    let none = found.iter().all(Option::is_none);
                    let contiguous = found.windows(2).all(|w| matches!(w, [Some(a), Some(b)] if *b == a + 1));
                    if !(none || (all && contiguous)) {
                        r.gaps.push(format!(
                            "stream {st}: an append with a lost answer is there in part or out of order: {:?} at {found:?}",
                            payloads
                        ));
                    }
                }
                Outcome::Ok(other) => r.other.push(format!("append answered {other:?}")),
                Outcome::Fail => {}
            }
        }
        for (o, p) in fin {
            if !appended.contains(p.as_str()) {
                r.phantom
                    .push(format!("stream {st}: offset {o} holds {p:?}, which nobody appended"));
            }
        }
        // Every read answered contiguous records that are still there, unchanged.
        for e in history {
            let (StreamOp::Read { stream, offset }, Outcome::Ok(StreamRes::Records(recs))) = (&e.op, &e.outcome) else {
                continue;
            };
            if *stream != st {
                continue;
            }
            for (i, (o, p)) in recs.iter().enumerate() {
                if *o != offset + i as u64 {
                    r.gaps.push(format!(
                        "stream {st}: a read at {offset} returned offset {o} as its record {i} {}",
                        e.times()
                    ));
                    break;
                }
                match at.get(o) {
                    Some(got) if got == p => {}
                    got => r.lost.push(format!(
                        "stream {st}: a read {} saw {p:?} at offset {o}; the stream now holds {got:?}",
                        e.times()
                    )),
                }
            }
        }
    }
    r
}

impl fmt::Display for KvViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.explanation)
    }
}
