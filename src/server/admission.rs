//! Admission of writes on one shard: how many writes this shard's connections have in
//! progress (routed, not yet answered), against `http.max_writes_in_flight`.
//!
//! A write waits for its log entry to be durable; under overload such writes pile up behind the
//! log and every one of them waits longer. Past the limit a write is refused at once (429 with
//! `Retry-After`), right after routing and before its body is decoded or anything is forwarded,
//! so turning the excess away costs little and is fast. Reads, long polls and the probes are not
//! counted: they do not wait on the log (long polls have their own limit).
//!
//! Invariant: the count equals the number of live [`WriteSlot`]s; a slot gives its place back
//! when dropped, whatever happened to the request (answered, failed, or its connection gone).

use std::cell::Cell;

/// The writes one shard's connections have in progress. Only the shard's thread touches it.
#[derive(Debug)]
pub struct WriteGate {
    in_flight: Cell<usize>,
    limit: usize,
}

/// One admitted write's place; returned on drop.
#[derive(Debug)]
pub struct WriteSlot<'a> {
    gate: &'a WriteGate,
}

impl WriteGate {
    pub fn new(limit: usize) -> WriteGate {
        WriteGate {
            in_flight: Cell::new(0),
            limit: limit.max(1),
        }
    }

    /// A place for one more write, or `None` when the shard has `limit` in progress.
    pub fn admit(&self) -> Option<WriteSlot<'_>> {
        let n = self.in_flight.get();
        if n >= self.limit {
            return None;
        }
        self.in_flight.set(n + 1);
        Some(WriteSlot { gate: self })
    }

    /// Writes in progress.
    pub fn in_flight(&self) -> usize {
        self.in_flight.get()
    }
}

impl Drop for WriteSlot<'_> {
    fn drop(&mut self) {
        self.gate.in_flight.set(self.gate.in_flight.get() - 1);
    }
}

/// Whether a routed request is a write that waits on the log (and so is admitted by the gate).
pub fn is_gated_write(endpoint: &crate::api::router::Endpoint, method: &str) -> bool {
    use crate::api::router::Endpoint;
    match endpoint {
        Endpoint::KvKey => matches!(method, "PUT" | "DELETE"),
        Endpoint::Queue(op) => matches!(*op, "enqueue" | "ack" | "nack" | "touch"),
        Endpoint::Stream(op) => *op == "append",
        Endpoint::Ts(op) => matches!(*op, "write" | "influx"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::router::Endpoint;

    #[test]
    fn the_gate_admits_up_to_its_limit_and_slots_give_their_place_back() {
        let gate = WriteGate::new(2);
        let a = gate.admit().expect("first");
        let b = gate.admit().expect("second");
        assert!(gate.admit().is_none(), "a third is refused");
        assert_eq!(gate.in_flight(), 2);
        drop(a);
        assert_eq!(gate.in_flight(), 1);
        let c = gate.admit().expect("room again");
        assert!(gate.admit().is_none());
        drop((b, c));
        assert_eq!(gate.in_flight(), 0);
        assert!(WriteGate::new(0).admit().is_some(), "a limit of 0 is taken as 1");
    }

    #[test]
    fn only_writes_that_wait_on_the_log_are_gated() {
        assert!(is_gated_write(&Endpoint::KvKey, "PUT"));
        assert!(is_gated_write(&Endpoint::KvKey, "DELETE"));
        assert!(!is_gated_write(&Endpoint::KvKey, "GET"));
        assert!(is_gated_write(&Endpoint::Queue("enqueue"), "POST"));
        assert!(is_gated_write(&Endpoint::Queue("ack"), "POST"));
        assert!(
            !is_gated_write(&Endpoint::Queue("dequeue"), "POST"),
            "long polls are not gated"
        );
        assert!(is_gated_write(&Endpoint::Stream("append"), "POST"));
        assert!(!is_gated_write(&Endpoint::Stream("group/read"), "GET"));
        assert!(is_gated_write(&Endpoint::Ts("write"), "POST"));
        assert!(!is_gated_write(&Endpoint::Ts("query"), "POST"));
        assert!(!is_gated_write(&Endpoint::Health, "GET"));
    }
}
