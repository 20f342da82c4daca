//! Group commit: writers that committed a transaction wait for one shared
//! `flush_async`, so N concurrent writes cost far fewer than N fsyncs.
//!
//! A single flusher task owns the flushing. A writer queues a waiter *after*
//! its transaction committed; the flusher takes every queued waiter, then
//! starts a flush, so each flush covers every write of the waiters it answers.
//! Writers that arrive during a flush are served by the next one. No lock is
//! held while flushing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

type Waiter = oneshot::Sender<Result<(), String>>;

/// Handle to the flusher task; cheap to share behind the store's `Arc`.
pub(crate) struct GroupCommit {
    /// Queue of writers waiting for durability. Unbounded because each entry
    /// is one in-flight RPC, which the server's concurrency limits bound.
    queue: mpsc::UnboundedSender<Waiter>,
    /// Number of flushes performed, for tests and diagnostics.
    flushes: Arc<AtomicU64>,
}

impl GroupCommit {
    /// Starts the flusher task on the current tokio runtime.
    pub(crate) fn start(db: sled::Db) -> Self {
        let (queue, mut rx) = mpsc::unbounded_channel::<Waiter>();
        let flushes = Arc::new(AtomicU64::new(0));
        let counter = flushes.clone();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                // Let writers that are ready to commit run first, so that
                // this flush covers them too (fewer, fuller flushes under
                // load; no wait when nothing else is runnable).
                tokio::task::yield_now().await;
                let mut waiters = vec![first];
                while let Ok(more) = rx.try_recv() {
                    waiters.push(more);
                }
                let started = std::time::Instant::now();
                let result = db
                    .flush_async()
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string());
                counter.fetch_add(1, Ordering::Relaxed);
                crate::metrics::global().flushed(started.elapsed());
                tracing::trace!(
                    writers = waiters.len(),
                    micros = started.elapsed().as_micros() as u64,
                    "group flush"
                );
                if let Err(cause) = &result {
                    tracing::error!(%cause, "flush failed; writes not acknowledged");
                }
                for waiter in waiters {
                    let _ = waiter.send(result.clone());
                }
            }
        });
        GroupCommit { queue, flushes }
    }

    /// Returns once everything committed before this call is durable.
    pub(crate) async fn durable(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.queue
            .send(tx)
            .map_err(|_| "flusher stopped".to_string())?;
        rx.await.map_err(|_| "flusher stopped".to_string())?
    }

    /// Flushes performed so far.
    pub(crate) fn flush_count(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }
}
