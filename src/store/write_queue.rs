//! The write queue shared by the engines that commit on a thread of their
//! own (sled's committer, PostgreSQL's writer): writes are queued as
//! [`Job`]s, one thread takes every write queued at once as a batch and
//! hands it to the engine's cycle, which runs them in one transaction,
//! runs their `committed` steps in commit order and answers each.
//!
//! A caller that stops waiting (a cancelled RPC, a deadline) cannot skip a
//! write's steps: the thread runs them, so derived state follows every
//! committed write in commit order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use tokio::sync::oneshot;

use crate::domain::{Error, Result};
use crate::store::engine::{After, Committed, TxError, WriteTx};

pub(crate) type TxResult<T> = std::result::Result<T, TxError>;

/// One queued write: run it (perhaps several times); if its batch
/// committed, its `committed` step; then answer once: `Err` if it failed
/// (nothing of it committed), else the outcome of making it durable.
pub(crate) trait Job: Send {
    /// Runs the write over `tx`, keeping what it returned.
    fn apply(&mut self, tx: &dyn WriteTx) -> TxResult<()>;
    /// Its `committed` step (once; nothing if it never ran to the end).
    fn committed(&mut self);
    /// Answers the caller, running the `durable` step first if durable.
    fn answer(self: Box<Self>, outcome: Result<Result<()>>);
}

/// A write and its steps, as queued.
pub(crate) struct Write<F, C, D, T> {
    apply: F,
    on_commit: Option<C>,
    on_durable: Option<D>,
    /// What the latest run returned; sent once the batch committed.
    out: Option<T>,
    reply: oneshot::Sender<Result<Committed<T>>>,
}

impl<F, C, D, T> Write<F, C, D, T> {
    /// `apply` with its steps, answering on `reply`.
    pub(crate) fn new(
        apply: F,
        after: After<C, D>,
        reply: oneshot::Sender<Result<Committed<T>>>,
    ) -> Self {
        Write {
            apply,
            on_commit: Some(after.committed),
            on_durable: Some(after.durable),
            out: None,
            reply,
        }
    }
}

impl<F, C, D, T> Job for Write<F, C, D, T>
where
    F: Fn(&dyn WriteTx) -> TxResult<T> + Send,
    C: FnOnce(&T) + Send,
    D: FnOnce(&T) + Send,
    T: Send,
{
    fn apply(&mut self, tx: &dyn WriteTx) -> TxResult<()> {
        self.out = Some((self.apply)(tx)?);
        Ok(())
    }

    fn committed(&mut self) {
        if let (Some(value), Some(step)) = (&self.out, self.on_commit.take()) {
            step(value);
        }
    }

    fn answer(self: Box<Self>, outcome: Result<Result<()>>) {
        let Write {
            out,
            on_durable,
            reply,
            ..
        } = *self;
        let result = outcome.and_then(|durable| match out {
            Some(value) => {
                if let (Ok(()), Some(step)) = (&durable, on_durable) {
                    step(&value);
                }
                Ok(Committed { value, durable })
            }
            None => Err(Error::Internal("committed write left no result".into())),
        });
        // The writer may have gone (its RPC was cancelled): the write
        // stands, like any committed write whose reply was lost.
        let _ = reply.send(result);
    }
}

/// A batch's cycle: commits the writes and answers every one of them;
/// counts what it made durable in the counter it is given.
pub(crate) type Cycle = Box<dyn FnMut(Vec<Box<dyn Job>>, &AtomicU64) + Send>;

/// Handle to the queue's thread; dropping it lets the queued writes
/// finish and joins the thread.
pub(crate) struct WriteQueue {
    queue: Option<mpsc::Sender<Box<dyn Job>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Durability flushes (or commits) performed, for tests and diagnostics.
    flushes: Arc<AtomicU64>,
    /// Named in errors ("the write committer").
    name: &'static str,
}

impl WriteQueue {
    /// Starts the thread `thread`, which hands up to `max_batch` queued
    /// writes at a time to `cycle`. `name` names it in errors.
    pub(crate) fn start(
        thread: &str,
        name: &'static str,
        max_batch: usize,
        mut cycle: Cycle,
    ) -> std::io::Result<Self> {
        let (queue, items) = mpsc::channel::<Box<dyn Job>>();
        let flushes = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&flushes);
        let thread = std::thread::Builder::new()
            .name(thread.into())
            .spawn(move || {
                while let Ok(first) = items.recv() {
                    let mut writes = Vec::new();
                    let mut next = Some(first);
                    while let Some(item) = next {
                        writes.push(item);
                        next = match writes.len() < max_batch {
                            true => items.try_recv().ok(),
                            false => None,
                        };
                    }
                    let size = writes.len();
                    // A panic (none is known) drops this batch's answers
                    // unsent, which tells its writers that their outcome is
                    // unknown; the batches after it go on.
                    let run = std::panic::AssertUnwindSafe(|| cycle(writes, &counter));
                    if std::panic::catch_unwind(run).is_err() {
                        tracing::error!(
                            writes = size,
                            "a write batch panicked; its outcome is unknown"
                        );
                    }
                }
            })?;
        Ok(WriteQueue {
            queue: Some(queue),
            thread: Some(thread),
            flushes,
            name,
        })
    }

    /// Runs `apply` in a coming batch's transaction and returns what it
    /// returned once the batch was made durable, with that outcome; or its
    /// error, and then nothing of it was committed. `apply` may run more
    /// than once; `after`'s steps run once each, on the queue's thread.
    pub(crate) async fn write<T, F, C, D>(
        &self,
        apply: F,
        after: After<C, D>,
    ) -> Result<Committed<T>>
    where
        F: Fn(&dyn WriteTx) -> TxResult<T> + Send + 'static,
        C: FnOnce(&T) + Send + 'static,
        D: FnOnce(&T) + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.send(Box::new(Write::new(apply, after, reply)))?;
        answer.await.map_err(|_| {
            Error::Internal(
                "the write's batch failed and its outcome is unknown; see the server log".into(),
            )
        })?
    }

    /// Flushes performed so far.
    pub(crate) fn flush_count(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    fn send(&self, item: Box<dyn Job>) -> Result<()> {
        self.queue
            .as_ref()
            .ok_or_else(|| self.stopped())?
            .send(item)
            .map_err(|_| self.stopped())
    }

    fn stopped(&self) -> Error {
        Error::Internal(format!("{} stopped", self.name))
    }
}

impl Drop for WriteQueue {
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
