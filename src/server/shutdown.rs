//! The process phase (starting → healthy → stopping), shared by all shards, and the per-shard
//! stop signal that wakes every task waiting on it.
//!
//! `Phase` moves only forward. `StopSignal` lives on one shard's thread (not `Send`); the
//! shard triggers it when its inbox delivers the stop command, which wakes the accept loop and
//! every idle connection at once.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, Waker};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Listeners are up; recovery is running. `/health` answers 503 "starting".
    Starting = 0,
    Healthy = 1,
    /// SIGTERM/SIGINT received: no new connections, in-flight requests finish.
    Stopping = 2,
}

/// The process-wide phase.
#[derive(Debug, Default)]
pub struct PhaseCell(AtomicU8);

impl PhaseCell {
    pub fn get(&self) -> Phase {
        match self.0.load(Ordering::Acquire) {
            0 => Phase::Starting,
            1 => Phase::Healthy,
            _ => Phase::Stopping,
        }
    }

    /// Moves forward to `p`; never back.
    pub fn advance(&self, p: Phase) {
        self.0.fetch_max(p as u8, Ordering::AcqRel);
    }
}

/// A one-shot, shard-local stop signal. See the module doc.
#[derive(Default)]
pub struct StopSignal {
    set: Cell<bool>,
    slots: RefCell<Vec<Option<Waker>>>,
    free: RefCell<Vec<usize>>,
}

impl StopSignal {
    pub fn is_set(&self) -> bool {
        self.set.get()
    }

    /// Sets the signal and wakes every waiter.
    pub fn trigger(&self) {
        self.set.set(true);
        let wakers: Vec<Waker> = self.slots.borrow_mut().iter_mut().filter_map(Option::take).collect();
        for w in wakers {
            w.wake();
        }
    }

    /// Resolves once the signal is set.
    pub fn wait(&self) -> StopWait<'_> {
        StopWait {
            signal: self,
            slot: None,
        }
    }

    /// Waiters currently registered (for tests).
    #[cfg(test)]
    fn waiters(&self) -> usize {
        self.slots.borrow().iter().filter(|s| s.is_some()).count()
    }
}

/// The future of [`StopSignal::wait`]; unregisters itself when dropped.
pub struct StopWait<'a> {
    signal: &'a StopSignal,
    slot: Option<usize>,
}

impl Future for StopWait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.is_set() {
            return Poll::Ready(());
        }
        let mut slots = self.signal.slots.borrow_mut();
        match self.slot {
            Some(i) => slots[i] = Some(cx.waker().clone()),
            None => {
                let i = match self.signal.free.borrow_mut().pop() {
                    Some(i) => {
                        slots[i] = Some(cx.waker().clone());
                        i
                    }
                    None => {
                        slots.push(Some(cx.waker().clone()));
                        slots.len() - 1
                    }
                };
                drop(slots);
                self.slot = Some(i);
            }
        }
        Poll::Pending
    }
}

impl Drop for StopWait<'_> {
    fn drop(&mut self) {
        if let Some(i) = self.slot.take() {
            self.signal.slots.borrow_mut()[i] = None;
            self.signal.free.borrow_mut().push(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::task::Wake;

    struct Flag(std::sync::atomic::AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn phase_only_moves_forward() {
        let p = PhaseCell::default();
        assert_eq!(p.get(), Phase::Starting);
        p.advance(Phase::Stopping);
        p.advance(Phase::Healthy);
        assert_eq!(p.get(), Phase::Stopping);
    }

    #[test]
    fn waiters_are_woken_and_dropped_waiters_free_their_slot() {
        let s = StopSignal::default();
        let flag = Arc::new(Flag(false.into()));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        for _ in 0..100 {
            let mut w = Box::pin(s.wait());
            assert!(w.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(s.waiters(), 0, "dropped waits must not accumulate");
        let mut w = Box::pin(s.wait());
        assert!(w.as_mut().poll(&mut cx).is_pending());
        s.trigger();
        assert!(flag.0.load(Ordering::SeqCst));
        assert!(w.as_mut().poll(&mut cx).is_ready());
    }
}
