//! The memory budget for request bodies: bytes of bodies being buffered across every
//! connection of the node, against `http.max_buffered_body_bytes`. A request whose body would
//! overdraw it is answered 429 (and its connection closed, the body unread) instead of letting
//! many large uploads at once exhaust memory.
//!
//! Bodies that fit in a connection's base read buffer are not counted. A connection's share
//! ([`Held`]) goes back to the budget when the request is done, whatever happened to it.

use std::sync::atomic::{AtomicU64, Ordering};

/// Bodies up to this size fit in the connection's base read buffer and are not counted.
pub const UNCOUNTED_BODY_BYTES: u64 = 16 * 1024;

/// The node-wide budget.
#[derive(Debug)]
pub struct BodyBudget {
    used: AtomicU64,
    limit: u64,
}

impl BodyBudget {
    pub fn new(limit: u64) -> Self {
        BodyBudget {
            used: AtomicU64::new(0),
            limit,
        }
    }

    /// Bytes currently held by requests.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    fn try_take(&self, n: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, n: u64) {
        let before = self.used.fetch_sub(n, Ordering::AcqRel);
        debug_assert!(before >= n, "budget returned more than it lent");
    }
}

/// One request's share of the budget; returned on drop.
#[derive(Debug)]
pub struct Held<'a> {
    budget: &'a BodyBudget,
    bytes: u64,
}

impl<'a> Held<'a> {
    pub fn new(budget: &'a BodyBudget) -> Self {
        Held { budget, bytes: 0 }
    }

    /// Makes this request's share at least `total` bytes; false if the budget cannot cover it
    /// (the share is then unchanged).
    pub fn grow_to(&mut self, total: u64) -> bool {
        if total <= self.bytes || total <= UNCOUNTED_BODY_BYTES {
            return true;
        }
        if self.budget.try_take(total - self.bytes) {
            self.bytes = total;
            true
        } else {
            false
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.budget.give_back(self.bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_limited_and_returned() {
        let b = BodyBudget::new(100_000);
        let mut a = Held::new(&b);
        assert!(a.grow_to(1000), "small bodies are not counted");
        assert_eq!(b.used(), 0);
        assert!(a.grow_to(60_000));
        assert_eq!(b.used(), 60_000);
        let mut c = Held::new(&b);
        assert!(!c.grow_to(60_000), "would overdraw");
        assert!(c.grow_to(40_000));
        assert!(a.grow_to(60_000), "no growth needed");
        drop(a);
        assert_eq!(b.used(), 40_000);
        assert!(c.grow_to(100_000));
        drop(c);
        assert_eq!(b.used(), 0);
    }
}
