//! How many reviews run at once: at most `concurrency`. Reviews of large bodies run on tokio's
//! blocking threads, so a costly review never holds the async workers that accept connections,
//! finish TLS handshakes and answer the probes; the common small ones run where their body was
//! read (`webhook::INLINE_REVIEW_BYTES`). Requests beyond the running ones wait in a bounded
//! queue; when that is full the webhook answers 503 at once (the API server then applies the
//! webhook's failurePolicy) instead of letting memory and latency grow without bound.
//!
//! Request bodies are held against a byte budget shared by all connections, reserved by their
//! declared length before they are read and for at most the body timeout, so slow or stalled
//! senders cannot pin more memory than the budget.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub const DEFAULT_BODY_BYTES_IN_FLIGHT: usize = 32 * 1024 * 1024;
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct ReviewPool {
    permits: Arc<Semaphore>,
    queued: AtomicUsize,
    max_queued: usize,
    body_bytes: Arc<Semaphore>,
    /// A request body must arrive whole within this.
    pub body_timeout: Duration,
}

/// Counts one waiting request for as long as it waits, even when its connection goes away.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ReviewPool {
    pub fn new(concurrency: usize, max_queued: usize) -> Self {
        ReviewPool {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            queued: AtomicUsize::new(0),
            max_queued,
            body_bytes: Arc::new(Semaphore::new(DEFAULT_BODY_BYTES_IN_FLIGHT)),
            body_timeout: DEFAULT_BODY_TIMEOUT,
        }
    }

    pub fn with_body_limits(mut self, bytes_in_flight: usize, timeout: Duration) -> Self {
        self.body_bytes = Arc::new(Semaphore::new(bytes_in_flight.min(Semaphore::MAX_PERMITS)));
        self.body_timeout = timeout;
        self
    }

    /// Holds `length` bytes of the body budget; `None` when they are not free now.
    pub fn reserve_body(&self, length: usize) -> Option<OwnedSemaphorePermit> {
        let length = u32::try_from(length.max(1)).ok()?;
        self.body_bytes.clone().try_acquire_many_owned(length).ok()
    }

    /// A permit to run one review, after waiting in the queue if need be; `None` when the queue
    /// is full.
    pub async fn admit(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Some(permit);
        }
        if self.queued.fetch_add(1, Ordering::SeqCst) >= self.max_queued {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        let _waiting = Waiting(&self.queued);
        self.permits.clone().acquire_owned().await.ok()
    }

    /// Requests waiting for a permit now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn beyond_the_running_and_the_queued_requests_the_pool_refuses_at_once() {
        let pool = Arc::new(ReviewPool::new(1, 1));
        let running = pool.admit().await.expect("the first runs");
        let waiting = tokio::spawn({
            let pool = pool.clone();
            async move { pool.admit().await.is_some() }
        });
        while pool.queued() == 0 {
            tokio::task::yield_now().await;
        }
        assert!(pool.admit().await.is_none(), "the queue of one is full: refused without waiting");
        drop(running);
        assert!(waiting.await.unwrap(), "the queued request runs when the first ends");
        assert_eq!(pool.queued(), 0);
        // A waiter that gives up leaves the count as it found it.
        let held = pool.admit().await.unwrap();
        let abandoned = tokio::time::timeout(std::time::Duration::from_millis(10), pool.admit()).await;
        assert!(abandoned.is_err());
        assert_eq!(pool.queued(), 0);
        drop(held);
    }
}
