//! Watches on keys: a reader waiting for a key to appear or change registers here, and the
//! write of that key (once durable) wakes it — no polling. The number of waiters per shard is
//! bounded; a waiter that gives up (timeout, closed connection) unregisters when dropped.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
struct Slot {
    fired: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

type KeyId = (Box<str>, Box<str>);

/// One shard's watchers.
pub struct Watchers {
    by_key: RefCell<HashMap<KeyId, Vec<Rc<Slot>>>>,
    count: Cell<usize>,
    max: usize,
}

impl Watchers {
    pub fn new(max: usize) -> Self {
        Watchers {
            by_key: RefCell::new(HashMap::new()),
            count: Cell::new(0),
            max,
        }
    }

    /// Waiters registered now.
    pub fn len(&self) -> usize {
        self.count.get()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A future that resolves when `key` of `ns` is next written; `None` when the shard already
    /// has its maximum of waiters.
    pub fn changed(&self, ns: &str, key: &str) -> Option<Change<'_>> {
        if self.count.get() >= self.max {
            return None;
        }
        let slot = Rc::new(Slot::default());
        self.by_key
            .borrow_mut()
            .entry((ns.into(), key.into()))
            .or_default()
            .push(slot.clone());
        self.count.set(self.count.get() + 1);
        Some(Change {
            watchers: self,
            id: (ns.into(), key.into()),
            slot,
        })
    }

    /// `key` of `ns` was written (durably): wake everyone waiting for it.
    pub fn wake(&self, ns: &str, key: &str) {
        if self.count.get() == 0 {
            return;
        }
        let id: KeyId = (ns.into(), key.into());
        let slots = self.by_key.borrow_mut().remove(&id);
        for s in slots.into_iter().flatten() {
            s.fired.set(true);
            self.count.set(self.count.get() - 1);
            if let Some(w) = s.waker.borrow_mut().take() {
                w.wake();
            }
        }
    }
}

/// See [`Watchers::changed`].
pub struct Change<'a> {
    watchers: &'a Watchers,
    id: KeyId,
    slot: Rc<Slot>,
}

impl Future for Change<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.slot.fired.get() {
            return Poll::Ready(());
        }
        *self.slot.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Change<'_> {
    fn drop(&mut self) {
        if self.slot.fired.get() {
            return; // `wake` already removed it and counted it out.
        }
        let mut map = self.watchers.by_key.borrow_mut();
        if let Some(v) = map.get_mut(&self.id) {
            v.retain(|s| !Rc::ptr_eq(s, &self.slot));
            if v.is_empty() {
                map.remove(&self.id);
            }
        }
        self.watchers.count.set(self.watchers.count.get() - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Flag(AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn writes_wake_their_key_only_and_dropped_waiters_leave() {
        let w = Watchers::new(3);
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        let mut a = Box::pin(w.changed("ns", "a").unwrap());
        let mut b = Box::pin(w.changed("ns", "b").unwrap());
        assert!(a.as_mut().poll(&mut cx).is_pending());
        assert!(b.as_mut().poll(&mut cx).is_pending());
        assert_eq!(w.len(), 2);
        w.wake("ns", "a");
        assert!(flag.0.load(Ordering::SeqCst));
        assert!(a.as_mut().poll(&mut cx).is_ready());
        assert!(b.as_mut().poll(&mut cx).is_pending());
        assert_eq!(w.len(), 1);
        drop(a);
        drop(b);
        assert_eq!(w.len(), 0, "a dropped waiter unregisters");
        let _x = w.changed("ns", "x").unwrap();
        let _y = w.changed("ns", "y").unwrap();
        let _z = w.changed("ns", "z").unwrap();
        assert!(w.changed("ns", "q").is_none(), "bounded");
    }
}
