//! Cooperative scheduling on a shard's runtime: a yield that really lets the other ready tasks
//! run.
//!
//! monoio puts a task that wakes itself while it is being polled back at the *front* of its run
//! queue, so the usual "wake yourself and return `Pending`" runs the same task again at once and
//! yields to nobody. [`yield_now`] instead has a freshly spawned task (queued at the back) wake
//! the caller, which is then queued behind every task that was ready when it yielded.

use std::future::poll_fn;
use std::task::Poll;

/// Lets every task that is ready now run before the caller goes on.
pub async fn yield_now() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        let waker = cx.waker().clone();
        monoio::spawn(async move { waker.wake() });
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    #[test]
    fn other_ready_tasks_run_before_the_caller_goes_on() {
        let mut rt = crate::crash_tally::runtime();
        rt.block_on(async {
            let order = Rc::new(RefCell::new(Vec::new()));
            let o = order.clone();
            let other = monoio::spawn(async move { o.borrow_mut().push("other") });
            super::yield_now().await;
            order.borrow_mut().push("caller");
            other.await;
            assert_eq!(*order.borrow(), ["other", "caller"]);
        });
    }
}
