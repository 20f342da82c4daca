//! Batched commits: one thread runs every claim write, and runs all the
//! writes queued at once in a single sled transaction.
//!
//! Each sled transaction seals and writes sled's current log buffer twice
//! (a `pwrite` and a `sync_file_range` each, handed to sled's thread pool),
//! whatever it holds. One transaction per registration made that the
//! largest part of a write's CPU cost under load. Batching pays it once
//! per batch: under load many writes, alone one.
//!
//! A write is a closure over the batch's trees ([`Tx`]) that may run more
//! than once: sled reruns a transaction on a conflict, and a write that
//! fails (a domain error such as a stale etag) is answered with its error
//! and the batch rerun without it. So a failed write changes nothing, and
//! the others commit as if it had never been sent. Writes in one batch run
//! in arrival order and see each other's changes (ids, log positions and
//! request ids advance as if they had committed one by one).
//!
//! Durability is not the committer's business: a writer that got its
//! answer waits for [`super::group_commit`]'s shared flush.

use std::cell::RefCell;
use std::sync::mpsc;

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

/// One queued write: run it (perhaps several times), then answer once.
trait Job: Send {
    fn apply(&mut self, tx: &Tx<'_>) -> TxResult<()>;
    fn answer(self: Box<Self>, outcome: Result<()>);
}

struct Write<F, T> {
    apply: F,
    /// What the latest run returned; sent once the batch committed.
    out: Option<T>,
    reply: oneshot::Sender<Result<T>>,
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

    fn answer(self: Box<Self>, outcome: Result<()>) {
        let Write { out, reply, .. } = *self;
        let result = outcome.and_then(|()| {
            out.ok_or_else(|| Error::Internal("committed write left no result".into()))
        });
        // The writer may have gone (its RPC was cancelled): the write
        // stands, like any committed write whose reply was lost.
        let _ = reply.send(result);
    }
}

/// Handle to the committer thread; dropping it lets the queued writes
/// finish and joins the thread.
pub(super) struct Committer {
    queue: Option<mpsc::Sender<Box<dyn Job>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Committer {
    /// Starts the committer thread.
    pub(super) fn start(trees: WriteTrees) -> std::io::Result<Self> {
        let (queue, jobs) = mpsc::channel::<Box<dyn Job>>();
        let thread = std::thread::Builder::new()
            .name("photoclaim-commit".into())
            .spawn(move || {
                while let Ok(first) = jobs.recv() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match jobs.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    let size = batch.len();
                    // A panic (none is known) fails this batch's writes (their
                    // answers are dropped unsent) but not the ones after it.
                    let run = std::panic::AssertUnwindSafe(|| commit(&trees, batch));
                    if std::panic::catch_unwind(run).is_err() {
                        tracing::error!(
                            writes = size,
                            "a write batch panicked; none of it committed"
                        );
                    }
                }
            })?;
        Ok(Committer {
            queue: Some(queue),
            thread: Some(thread),
        })
    }

    /// Runs `apply` in the next batch's transaction and returns what it
    /// returned once the batch committed, or its error (nothing of it
    /// committed). `apply` may run more than once.
    pub(super) async fn write<T, F>(&self, apply: F) -> Result<T>
    where
        F: Fn(&Tx<'_>) -> TxResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Write {
            apply,
            out: None,
            reply,
        });
        let stopped = || Error::Internal("the write committer stopped".into());
        self.queue
            .as_ref()
            .ok_or_else(stopped)?
            .send(job)
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| {
            Error::Internal("the write's batch failed; nothing of it was committed".into())
        })?
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

/// Commits `batch` in one transaction, dropping (and answering) each write
/// that fails until the rest commit.
fn commit(trees: &WriteTrees, batch: Vec<Box<dyn Job>>) {
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
            Ok(()) => {
                for job in jobs.drain(..) {
                    job.answer(Ok(()));
                }
            }
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
    ) -> (Box<dyn Job>, oneshot::Receiver<Result<u64>>) {
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
        commit(&trees, batch);
        let mut got: Vec<_> = answers
            .into_iter()
            .map(|mut a| a.try_recv().expect("every write is answered"))
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
        let committer = std::sync::Arc::new(Committer::start(trees.clone()).unwrap());
        let names: Vec<&'static str> = (0..200)
            .map(|i| &*Box::leak(format!("w{i}").into_boxed_str()))
            .collect();
        let tasks: Vec<_> = names
            .into_iter()
            .map(|name| {
                let committer = committer.clone();
                let fail = name.ends_with('7');
                tokio::spawn(async move { committer.write(numbered(name, fail)).await })
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

        let lost = committer
            .write(|_tx| -> TxResult<u64> { panic!("a bug in a write") })
            .await
            .unwrap_err();
        assert!(
            lost.to_string().contains("nothing of it was committed"),
            "{lost}"
        );
        let after = committer.write(numbered("after", false)).await.unwrap();
        assert_eq!(after, 181);
    }
}
