//! The bounded queue between connection tasks (async producers of jobs) and
//! a shard's owner thread (a blocking consumer). Capacity is a semaphore so
//! a producer waits asynchronously when the shard falls behind; the owner
//! waits on a condition variable with a timeout so it can also run its
//! timers (flush interval, retention).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug)]
struct Inner<T> {
    items: VecDeque<(T, OwnedSemaphorePermit)>,
    closed: bool,
}

#[derive(Debug)]
pub struct JobQueue<T> {
    inner: Mutex<Inner<T>>,
    ready: Condvar,
    slots: Arc<Semaphore>,
    depth: usize,
}

/// The queue no longer accepts jobs (the shard was closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl<T> JobQueue<T> {
    pub fn new(depth: usize) -> JobQueue<T> {
        assert!(depth > 0, "a queue needs room for one job");
        JobQueue {
            inner: Mutex::new(Inner {
                items: VecDeque::with_capacity(depth.min(4096)),
                closed: false,
            }),
            ready: Condvar::new(),
            slots: Arc::new(Semaphore::new(depth)),
            depth,
        }
    }

    /// Enqueues `item`, waiting for a free slot.
    pub async fn push(&self, item: T) -> Result<(), Closed> {
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Closed)?;
        let mut inner = self.inner.lock();
        if inner.closed {
            return Err(Closed);
        }
        inner.items.push_back((item, permit));
        drop(inner);
        self.ready.notify_one();
        Ok(())
    }

    /// Enqueues even when the queue is full or closed to producers: for the
    /// control messages (close) that must always get through.
    pub fn push_control(&self, item: T) {
        let permit = Arc::new(Semaphore::new(1))
            .try_acquire_owned()
            .expect("a fresh semaphore has a permit");
        self.inner.lock().items.push_back((item, permit));
        self.ready.notify_one();
    }

    /// Jobs holding a slot now (queued, not yet taken), read without the
    /// lock.
    pub fn queued(&self) -> usize {
        self.depth.saturating_sub(self.slots.available_permits())
    }

    /// Stops accepting new jobs; jobs already queued are still taken.
    pub fn close(&self) {
        self.inner.lock().closed = true;
        self.slots.close();
    }

    /// Waits up to `timeout` for jobs, then takes every queued job whose
    /// running weight stays within `max_weight` (at least one).
    pub fn take(
        &self,
        timeout: Duration,
        max_weight: usize,
        weight: impl Fn(&T) -> usize,
    ) -> Vec<T> {
        let mut inner = self.inner.lock();
        if inner.items.is_empty() {
            self.ready.wait_for(&mut inner, timeout);
        }
        let mut taken = Vec::new();
        let mut total = 0usize;
        while let Some((item, _)) = inner.items.front() {
            let item_weight = weight(item);
            if !taken.is_empty() && total + item_weight > max_weight {
                break;
            }
            total += item_weight;
            let (item, permit) = inner.items.pop_front().expect("front exists");
            drop(permit);
            taken.push(item);
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn take_respects_weight_but_always_takes_one() {
        let queue = JobQueue::new(8);
        for weight in [5usize, 5, 5] {
            queue.push(weight).await.unwrap();
        }
        let first = queue.take(Duration::from_millis(1), 3, |w| *w);
        assert_eq!(first, vec![5]);
        assert_eq!(queue.queued(), 2);
        let rest = queue.take(Duration::from_millis(1), 10, |w| *w);
        assert_eq!(rest, vec![5, 5]);
        assert_eq!(queue.queued(), 0);
        assert!(queue.take(Duration::from_millis(1), 10, |w| *w).is_empty());
    }

    #[tokio::test]
    async fn full_queue_makes_producers_wait_until_taken() {
        let queue = Arc::new(JobQueue::new(1));
        queue.push(1usize).await.unwrap();
        let waiting = {
            let queue = queue.clone();
            tokio::spawn(async move { queue.push(2).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "second push must wait for a slot");
        assert_eq!(queue.take(Duration::ZERO, 100, |_| 1), vec![1]);
        waiting.await.unwrap().unwrap();
        assert_eq!(queue.take(Duration::ZERO, 100, |_| 1), vec![2]);
    }

    #[tokio::test]
    async fn closed_queue_refuses_jobs_but_accepts_control() {
        let queue = JobQueue::new(4);
        queue.close();
        assert_eq!(queue.push(1usize).await, Err(Closed));
        queue.push_control(9);
        assert_eq!(queue.take(Duration::ZERO, 100, |_| 1), vec![9]);
    }
}
