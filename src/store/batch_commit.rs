//! The committer: one thread runs every claim write, many to a sled
//! transaction, and makes each batch durable with one flush before it
//! answers.
//!
//! Its cycle: take every write queued, run them all in one transaction,
//! flush, answer them all. Writes that arrive meanwhile wait in the queue
//! and make the next batch, so under load a cycle carries tens of writes
//! and alone it carries one. A write would wait for the next flush anyway;
//! committing it just before that flush instead of the moment it arrived
//! costs it nothing, and saves the per-transaction work: sled seals and
//! writes its log buffer twice per transaction (a `pwrite` and a
//! `sync_file_range` each, on its thread pool), whatever the transaction
//! holds. One transaction and one flush per write made that most of a
//! write's CPU cost under load (BENCHMARKS.md, change 15). No lock is held
//! while flushing: reads and key writes go on; claim writes queue.
//!
//! A write is a closure over the batch's trees ([`Tx`]) that may run more
//! than once: sled reruns a transaction on a conflict, and a write that
//! fails (a domain error such as a stale etag) is answered with its error
//! at once and the batch rerun without it. So a failed write changes
//! nothing, and the others commit as if it had never been sent. Writes in
//! one batch run in arrival order and see each other's changes (ids, log
//! positions and request ids advance as if they had committed one by one).
//! Other writers (API keys) commit their own transaction and then ask for
//! the next flush ([`Committer::durable`]).

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Instant;

use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;
use tokio::sync::oneshot;

use crate::domain::{Error, Result};

/// Most writes in one transaction: bounds its memory and the time a
/// failed write's rerun costs the others.
const MAX_BATCH: usize = 256;

type TxResult<T> = std::result::Result<T, ConflictableTransactionError<Error>>;

/// The trees a claim write may touch.
#[derive(Clone)]
pub(super) struct WriteTrees {
    pub(super) meta: sled::Tree,
    pub(super) claims: sled::Tree,
    pub(super) by_state: sled::Tree,
    pub(super) responses: sled::Tree,
    pub(super) events: sled::Tree,
    pub(super) event_log: sled::Tree,
    pub(super) by_sha256: sled::Tree,
    pub(super) by_pdq: sled::Tree,
    pub(super) request_ids: sled::Tree,
}

/// The same trees inside a batch's transaction.
pub(super) struct Tx<'a> {
    pub(super) meta: &'a TransactionalTree,
    pub(super) claims: &'a TransactionalTree,
    pub(super) by_state: &'a TransactionalTree,
    pub(super) responses: &'a TransactionalTree,
    pub(super) events: &'a TransactionalTree,
    pub(super) log: &'a TransactionalTree,
    pub(super) by_sha256: &'a TransactionalTree,
    pub(super) by_pdq: &'a TransactionalTree,
    pub(super) request_ids: &'a TransactionalTree,
}

/// A committed write: what it returned, and whether the flush after its
/// batch succeeded (if not, it must not be acknowledged).
#[derive(Debug)]
pub(super) struct Committed<T> {
    pub(super) value: T,
    pub(super) durable: Result<()>,
}

/// One queued write: run it (perhaps several times), then answer once:
/// `Err` if it failed (nothing of it committed), else the flush's outcome.
trait Job: Send {
    fn apply(&mut self, tx: &Tx<'_>) -> TxResult<()>;
    fn answer(self: Box<Self>, outcome: Result<Result<()>>);
}

struct Write<F, T> {
    apply: F,
    /// What the latest run returned; sent once the batch committed.
    out: Option<T>,
    reply: oneshot::Sender<Result<Committed<T>>>,
}

impl<F, T> Job for Write<F, T>
where
    F: Fn(&Tx<'_>) -> TxResult<T> + Send,
    T: Send,
{
    fn apply(&mut self, tx: &Tx<'_>) -> TxResult<()> {
        self.out = Some((self.apply)(tx)?);
        Ok(())
    }

    fn answer(self: Box<Self>, outcome: Result<Result<()>>) {
        let Write { out, reply, .. } = *self;
        let result = outcome.and_then(|durable| match out {
            Some(value) => Ok(Committed { value, durable }),
            None => Err(Error::Internal("committed write left no result".into())),
        });
        // The writer may have gone (its RPC was cancelled): the write
        // stands, like any committed write whose reply was lost.
        let _ = reply.send(result);
    }
}

/// What the committer's queue holds.
enum Queued {
    /// A claim write.
    Write(Box<dyn Job>),
    /// A writer that committed on its own and waits for the next flush.
    Flush(oneshot::Sender<Result<()>>),
}

/// Handle to the committer thread; dropping it lets the queued writes
/// finish and joins the thread.
pub(super) struct Committer {
    queue: Option<mpsc::Sender<Queued>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Flushes performed, for tests and diagnostics.
    flushes: Arc<AtomicU64>,
}

impl Committer {
    /// Starts the committer thread. `db` is flushed after every batch.
    pub(super) fn start(db: sled::Db, trees: WriteTrees) -> std::io::Result<Self> {
        let (queue, items) = mpsc::channel::<Queued>();
        let flushes = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&flushes);
        let thread = std::thread::Builder::new()
            .name("photoclaim-commit".into())
            .spawn(move || {
                while let Ok(first) = items.recv() {
                    let mut writes = Vec::new();
                    let mut waiters = Vec::new();
                    let mut next = Some(first);
                    while let Some(item) = next {
                        match item {
                            Queued::Write(job) => writes.push(job),
                            Queued::Flush(waiter) => waiters.push(waiter),
                        }
                        next = match writes.len() < MAX_BATCH {
                            true => items.try_recv().ok(),
                            false => None,
                        };
                    }
                    let size = writes.len();
                    // A panic (none is known) fails this batch's writes (their
                    // answers are dropped unsent) but not the ones after it.
                    let run = std::panic::AssertUnwindSafe(|| commit(&trees, writes));
                    let committed = std::panic::catch_unwind(run).unwrap_or_else(|_| {
                        tracing::error!(
                            writes = size,
                            "a write batch panicked; none of it committed"
                        );
                        Vec::new()
                    });
                    if committed.is_empty() && waiters.is_empty() {
                        continue;
                    }
                    let started = Instant::now();
                    let flushed = db.flush().map(|_| ()).map_err(|e| e.to_string());
                    counter.fetch_add(1, Ordering::Relaxed);
                    crate::metrics::global().flushed(started.elapsed());
                    tracing::trace!(
                        writes = committed.len(),
                        waiters = waiters.len(),
                        micros = started.elapsed().as_micros() as u64,
                        "batch flushed"
                    );
                    if let Err(cause) = &flushed {
                        tracing::error!(%cause, "flush failed; writes not acknowledged");
                    }
                    let outcome = || flushed.clone().map_err(Error::Internal);
                    for job in committed {
                        job.answer(Ok(outcome()));
                    }
                    for waiter in waiters {
                        let _ = waiter.send(outcome());
                    }
                }
            })?;
        Ok(Committer {
            queue: Some(queue),
            thread: Some(thread),
            flushes,
        })
    }

    /// Runs `apply` in the next batch's transaction and returns what it
    /// returned once the batch was flushed, with the flush's outcome; or
    /// its error, and then nothing of it was committed. `apply` may run
    /// more than once.
    pub(super) async fn write<T, F>(&self, apply: F) -> Result<Committed<T>>
    where
        F: Fn(&Tx<'_>) -> TxResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.send(Queued::Write(Box::new(Write {
            apply,
            out: None,
            reply,
        })))?;
        answer.await.map_err(|_| {
            Error::Internal("the write's batch failed; nothing of it was committed".into())
        })?
    }

    /// Returns once everything committed before this call is durable.
    pub(super) async fn durable(&self) -> Result<()> {
        let (waiter, flushed) = oneshot::channel();
        self.send(Queued::Flush(waiter))?;
        flushed.await.map_err(|_| self.stopped())?
    }

    /// Flushes performed so far.
    pub(super) fn flush_count(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    fn send(&self, item: Queued) -> Result<()> {
        self.queue
            .as_ref()
            .ok_or_else(|| self.stopped())?
            .send(item)
            .map_err(|_| self.stopped())
    }

    fn stopped(&self) -> Error {
        Error::Internal("the write committer stopped".into())
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Commits `batch` in one transaction, answering each write that fails
/// (and rerunning the rest without it) until the rest commit; returns the
/// committed writes, to be answered once they are durable.
fn commit(trees: &WriteTrees, batch: Vec<Box<dyn Job>>) -> Vec<Box<dyn Job>> {
    let batch = RefCell::new(batch);
    let all = (
        &trees.meta,
        &trees.claims,
        &trees.by_state,
        &trees.responses,
        &trees.events,
        &trees.event_log,
        &trees.by_sha256,
        &trees.by_pdq,
        &trees.request_ids,
    );
    while !batch.borrow().is_empty() {
        let outcome = all.transaction(
            |(meta, claims, by_state, responses, events, log, by_sha256, by_pdq, request_ids)| {
                let tx = Tx {
                    meta,
                    claims,
                    by_state,
                    responses,
                    events,
                    log,
                    by_sha256,
                    by_pdq,
                    request_ids,
                };
                for (at, job) in batch.borrow_mut().iter_mut().enumerate() {
                    job.apply(&tx).map_err(|e| match e {
                        ConflictableTransactionError::Abort(err) => {
                            ConflictableTransactionError::Abort((at, err))
                        }
                        ConflictableTransactionError::Conflict => {
                            ConflictableTransactionError::Conflict
                        }
                        ConflictableTransactionError::Storage(err) => {
                            ConflictableTransactionError::Storage(err)
                        }
                    })?;
                }
                Ok(())
            },
        );
        let mut jobs = batch.borrow_mut();
        match outcome {
            Ok(()) => return std::mem::take(&mut *jobs),
            Err(TransactionError::Abort((at, err))) => {
                jobs.remove(at).answer(Err(err));
            }
            Err(TransactionError::Storage(err)) => {
                for job in jobs.drain(..) {
                    job.answer(Err(Error::Internal(err.to_string())));
                }
            }
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trees(db: &sled::Db) -> WriteTrees {
        let tree = |name: &str| db.open_tree(name).unwrap();
        WriteTrees {
            meta: tree("meta"),
            claims: tree("claims"),
            by_state: tree("claims_by_state"),
            responses: tree("responses"),
            events: tree("events"),
            event_log: tree("event_log"),
            by_sha256: tree("claims_by_sha256"),
            by_pdq: tree("claims_by_pdq"),
            request_ids: tree("request_ids"),
        }
    }

    /// A write that takes the next number from a counter in `meta` and
    /// records itself under it in `claims`; with `fail`, it does both and
    /// then fails.
    fn numbered(name: &'static str, fail: bool) -> impl Fn(&Tx<'_>) -> TxResult<u64> + Send {
        move |tx| {
            let last = tx.meta.get(b"counter")?;
            let next = last.map_or(0, |v| v[0] as u64) + 1;
            tx.meta.insert(b"counter", &[next as u8])?;
            tx.claims.insert(name.as_bytes(), &[next as u8])?;
            if fail {
                return Err(ConflictableTransactionError::Abort(
                    Error::FailedPrecondition(format!("{name} refused")),
                ));
            }
            Ok(next)
        }
    }

    fn queued(
        apply: impl Fn(&Tx<'_>) -> TxResult<u64> + Send + 'static,
    ) -> (Box<dyn Job>, oneshot::Receiver<Result<Committed<u64>>>) {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Write {
            apply,
            out: None,
            reply,
        });
        (job, answer)
    }

    #[test]
    fn a_failed_write_is_answered_alone_and_the_others_commit_as_if_it_was_never_sent() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let trees = trees(&db);
        let mut batch = Vec::new();
        let mut answers = Vec::new();
        for (name, fail) in [
            ("a", false),
            ("b", true),
            ("c", false),
            ("d", true),
            ("e", false),
        ] {
            let (job, answer) = queued(numbered(name, fail));
            batch.push(job);
            answers.push(answer);
        }
        for job in commit(&trees, batch) {
            job.answer(Ok(Ok(())));
        }
        let mut got: Vec<_> = answers
            .into_iter()
            .map(|mut a| {
                let answer = a.try_recv().expect("every write is answered");
                answer.map(|c| {
                    c.durable.unwrap();
                    c.value
                })
            })
            .collect();
        assert_eq!(got.remove(0).unwrap(), 1);
        let refused = got.remove(0).unwrap_err();
        assert!(
            matches!(&refused, Error::FailedPrecondition(m) if m == "b refused"),
            "{refused:?}"
        );
        // Numbered as if b had never been sent: no gap.
        assert_eq!(got.remove(0).unwrap(), 2);
        assert!(got.remove(0).is_err());
        assert_eq!(got.remove(0).unwrap(), 3);
        let stored: Vec<_> = trees
            .claims
            .iter()
            .map(|e| {
                let (k, v) = e.unwrap();
                (String::from_utf8(k.to_vec()).unwrap(), v[0])
            })
            .collect();
        let expected = [("a", 1), ("c", 2), ("e", 3)].map(|(k, v)| (k.to_string(), v));
        assert_eq!(stored, expected, "the failed writes left nothing behind");
        assert_eq!(trees.meta.get(b"counter").unwrap().unwrap()[0], 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_commit_once_each_and_a_panicking_batch_does_not_stop_the_committer()
    {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let trees = trees(&db);
        let committer = Arc::new(Committer::start(db.clone(), trees.clone()).unwrap());
        let names: Vec<&'static str> = (0..200)
            .map(|i| &*Box::leak(format!("w{i}").into_boxed_str()))
            .collect();
        let tasks: Vec<_> = names
            .into_iter()
            .map(|name| {
                let committer = committer.clone();
                let fail = name.ends_with('7');
                tokio::spawn(async move {
                    let committed = committer.write(numbered(name, fail)).await?;
                    committed.durable.map(|()| committed.value)
                })
            })
            .collect();
        let mut numbers = Vec::new();
        for task in tasks {
            if let Ok(n) = task.await.unwrap() {
                numbers.push(n);
            }
        }
        numbers.sort_unstable();
        // 20 of the 200 names end in 7.
        assert_eq!(numbers, (1..=180).collect::<Vec<u64>>());
        assert_eq!(trees.claims.len(), 180);
        let flushes = committer.flush_count();
        assert!((1..=180).contains(&flushes), "{flushes} flushes");
        committer.durable().await.unwrap();
        assert_eq!(committer.flush_count(), flushes + 1);

        let lost = committer
            .write(|_tx| -> TxResult<u64> { panic!("a bug in a write") })
            .await
            .unwrap_err();
        assert!(
            lost.to_string().contains("nothing of it was committed"),
            "{lost}"
        );
        let after = committer.write(numbered("after", false)).await.unwrap();
        assert_eq!(after.value, 181);
        after.durable.unwrap();
    }
}
