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
//! A write is a closure over the batch's trees ([`SledTx`]) that may run more
//! than once: sled reruns a transaction on a conflict, and a write that
//! fails (a domain error such as a stale etag) is answered with its error
//! at once and the batch rerun without it. So a failed write changes
//! nothing, and the others commit as if it had never been sent. Writes in
//! one batch run in arrival order and see each other's changes (ids, log
//! positions and request ids advance as if they had committed one by one).
//! What a write changes in memory (the core's derived state: caches, the PDQ index, the watchers'
//! durable position) is done by the committer too, in commit order, as
//! its batch commits and once it is durable ([`After`]): a caller that
//! stops waiting (a cancelled RPC, a deadline) cannot skip it, and two
//! writes to one claim cannot land in the caches out of order.
//! Every write goes through it, API keys included.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionalTree, UnabortableTransactionError,
};
use sled::Transactional;

use super::storage;
use crate::domain::Error;
use crate::store::engine::{TxError, WriteTx};
use crate::store::schema::Table;
use crate::store::write_queue::{Job, WriteQueue};

/// Most writes in one transaction: bounds its memory and the time a
/// failed write's rerun costs the others.
const MAX_BATCH: usize = 256;

/// Every table's tree, indexed by [`Table::index`].
pub(super) type Trees = Arc<[sled::Tree]>;

/// The trees inside a batch's transaction.
pub(super) struct SledTx<'a> {
    trees: &'a [TransactionalTree],
}

/// A sled failure inside a transaction, for the write.
fn tx_error(err: UnabortableTransactionError, table: Table) -> TxError {
    match err {
        UnabortableTransactionError::Conflict => TxError::Conflict,
        UnabortableTransactionError::Storage(err) => TxError::Storage(storage(err, table.name())),
    }
}

impl WriteTx for SledTx<'_> {
    fn get(&self, table: Table, key: &[u8]) -> std::result::Result<Option<Vec<u8>>, TxError> {
        let value = self.trees[table.index()].get(key);
        Ok(value.map_err(|e| tx_error(e, table))?.map(|v| v.to_vec()))
    }

    fn insert(&self, table: Table, key: &[u8], value: &[u8]) -> std::result::Result<(), TxError> {
        let tree = &self.trees[table.index()];
        tree.insert(key, value).map_err(|e| tx_error(e, table))?;
        Ok(())
    }

    fn remove(&self, table: Table, key: &[u8]) -> std::result::Result<(), TxError> {
        let tree = &self.trees[table.index()];
        tree.remove(key).map_err(|e| tx_error(e, table))?;
        Ok(())
    }
}

/// The committer: the write queue over sled's cycle.
pub(super) type Committer = WriteQueue;

/// Starts the committer thread. `db` is flushed after every batch.
pub(super) fn start(db: sled::Db, trees: Trees) -> std::io::Result<Committer> {
    WriteQueue::start(
        "photoclaim-commit",
        "the write committer",
        MAX_BATCH,
        Box::new(move |writes, flushes| cycle(&db, &trees, flushes, writes)),
    )
}

/// One cycle: commit `writes`, run their `committed` steps in commit
/// order, flush (when anything committed), answer all.
fn cycle(db: &sled::Db, trees: &Trees, flushes: &AtomicU64, writes: Vec<Box<dyn Job>>) {
    let mut committed = commit(trees, writes);
    for job in &mut committed {
        job.committed();
    }
    if committed.is_empty() {
        return;
    }
    let started = Instant::now();
    let flushed = db.flush().map(|_| ()).map_err(|e| e.to_string());
    flushes.fetch_add(1, Ordering::Relaxed);
    crate::metrics::global().flushed(started.elapsed());
    tracing::trace!(
        writes = committed.len(),
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
}

/// Commits `batch` in arrival order and returns the committed writes, to be
/// answered once they are durable; answers each write that fails. All of
/// it goes in one transaction unless a write fails: then the writes before
/// it commit on their own (they ran fine just before), it is answered with
/// its error, and the rest go on. So each write runs at most about twice,
/// however many fail.
fn commit(trees: &Trees, batch: Vec<Box<dyn Job>>) -> Vec<Box<dyn Job>> {
    let mut committed = Vec::new();
    // Runs of writes still to commit, in order.
    let mut runs = std::collections::VecDeque::from([batch]);
    while let Some(run) = runs.pop_front() {
        if run.is_empty() {
            continue;
        }
        match transact(trees, run) {
            Ok(run) => committed.extend(run),
            Err(Failed::Write(mut before, at, err)) => {
                let after = before.split_off(at + 1);
                if let Some(failed) = before.pop() {
                    failed.answer(Err(err));
                }
                runs.push_front(after);
                runs.push_front(before);
            }
            Err(Failed::Storage(run, err)) => {
                for job in run {
                    job.answer(Err(err.clone()));
                }
            }
        }
    }
    committed
}

/// Why [`transact`] committed nothing: the run comes back with it.
enum Failed {
    /// The write at this index failed.
    Write(Vec<Box<dyn Job>>, usize, Error),
    /// sled failed (its `Corruption` is DATA_LOSS, logged and counted once).
    Storage(Vec<Box<dyn Job>>, Error),
}

/// Runs every write of `run` in one transaction.
fn transact(
    trees: &Trees,
    run: Vec<Box<dyn Job>>,
) -> std::result::Result<Vec<Box<dyn Job>>, Failed> {
    let run = RefCell::new(run);
    let outcome = trees[..].transaction(|views: &Vec<TransactionalTree>| {
        let tx = SledTx { trees: views };
        for (at, job) in run.borrow_mut().iter_mut().enumerate() {
            job.apply(&tx).map_err(|e| match e {
                TxError::Abort(err) => ConflictableTransactionError::Abort((at, err, false)),
                TxError::Storage(err) => ConflictableTransactionError::Abort((at, err, true)),
                TxError::Conflict => ConflictableTransactionError::Conflict,
            })?;
        }
        Ok(())
    });
    let run = run.into_inner();
    match outcome {
        Ok(()) => Ok(run),
        Err(TransactionError::Abort((_, err, true))) => Err(Failed::Storage(run, err)),
        Err(TransactionError::Abort((at, err, false))) => Err(Failed::Write(run, at, err)),
        Err(TransactionError::Storage(err)) => {
            Err(Failed::Storage(run, storage(err, "a write's transaction")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Result;
    use crate::store::engine::After;
    use crate::store::write_queue::{TxResult, Write};
    use std::sync::atomic::AtomicUsize;
    use std::sync::Mutex;
    use tokio::sync::oneshot;

    fn trees(db: &sled::Db) -> Trees {
        Table::ALL
            .iter()
            .map(|t| db.open_tree(t.name()).unwrap())
            .collect()
    }

    /// A write that takes the next number from a counter in `meta` and
    /// records itself under it in `claims`; with `fail`, it does both and
    /// then fails. `runs` counts its runs.
    fn numbered(
        name: &'static str,
        fail: bool,
        runs: Arc<AtomicUsize>,
    ) -> impl Fn(&dyn WriteTx) -> TxResult<u64> + Send {
        move |tx| {
            runs.fetch_add(1, Ordering::Relaxed);
            let last = tx.get(Table::Meta, b"counter")?;
            let next = last.map_or(0, |v| v[0] as u64) + 1;
            tx.insert(Table::Meta, b"counter", &[next as u8])?;
            tx.insert(Table::Claims, name.as_bytes(), &[next as u8])?;
            if fail {
                return Err(TxError::Abort(Error::FailedPrecondition(
                    crate::domain::Precondition {
                        kind: "TEST".into(),
                        subject: name.into(),
                        description: format!("{name} refused"),
                    },
                )));
            }
            Ok(next)
        }
    }

    /// Steps that record the numbers they saw, in the order they ran.
    fn recording(
        committed: Arc<Mutex<Vec<u64>>>,
        durable: Arc<Mutex<Vec<u64>>>,
    ) -> After<impl FnOnce(&u64) + Send + 'static, impl FnOnce(&u64) + Send + 'static> {
        After {
            committed: move |n: &u64| committed.lock().unwrap().push(*n),
            durable: move |n: &u64| durable.lock().unwrap().push(*n),
        }
    }

    #[test]
    fn a_failed_write_is_answered_alone_and_the_others_commit_as_if_it_was_never_sent() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let trees = trees(&db);
        let (seen, durable) = (Arc::default(), Arc::default());
        let mut batch: Vec<Box<dyn Job>> = Vec::new();
        let mut answers = Vec::new();
        let mut runs = Vec::new();
        for (name, fail) in [
            ("a", false),
            ("b", true),
            ("c", false),
            ("d", true),
            ("e", false),
            ("f", false),
        ] {
            let (reply, answer) = oneshot::channel();
            let count = Arc::new(AtomicUsize::new(0));
            let after = recording(Arc::clone(&seen), Arc::clone(&durable));
            batch.push(Box::new(Write::new(
                numbered(name, fail, Arc::clone(&count)),
                after,
                reply,
            )));
            answers.push(answer);
            runs.push(count);
        }
        let mut committed = commit(&trees, batch);
        for job in &mut committed {
            job.committed();
        }
        for job in committed {
            job.answer(Ok(Ok(())));
        }
        let got: Vec<Result<u64>> = answers
            .into_iter()
            .map(|mut a| {
                let answer = a.try_recv().expect("every write is answered");
                answer.map(|c| {
                    c.durable.unwrap();
                    c.value
                })
            })
            .collect();
        // Numbered as if b and d had never been sent: no gaps.
        assert_eq!(got[0].as_ref().unwrap(), &1);
        let refused = got[1].as_ref().unwrap_err();
        assert!(
            matches!(refused, Error::FailedPrecondition(p) if p.description == "b refused"),
            "{refused:?}"
        );
        assert_eq!(got[2].as_ref().unwrap(), &2);
        assert!(got[3].is_err());
        assert_eq!(got[4].as_ref().unwrap(), &3);
        assert_eq!(got[5].as_ref().unwrap(), &4);
        let stored: Vec<_> = trees[Table::Claims.index()]
            .iter()
            .map(|e| {
                let (k, v) = e.unwrap();
                (String::from_utf8(k.to_vec()).unwrap(), v[0])
            })
            .collect();
        let expected = [("a", 1), ("c", 2), ("e", 3), ("f", 4)].map(|(k, v)| (k.to_string(), v));
        assert_eq!(stored, expected, "the failed writes left nothing behind");
        assert_eq!(
            trees[Table::Meta.index()].get(b"counter").unwrap().unwrap()[0],
            4
        );
        // Each write ran at most twice: a failure does not rerun the batch.
        let runs: Vec<usize> = runs.iter().map(|r| r.load(Ordering::Relaxed)).collect();
        assert!(runs.iter().all(|&r| (1..=2).contains(&r)), "{runs:?}");
        // The steps ran once per committed write, in commit order.
        assert_eq!(*seen.lock().unwrap(), [1, 2, 3, 4]);
        assert_eq!(*durable.lock().unwrap(), [1, 2, 3, 4]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_commit_once_each_in_order_and_a_panicking_batch_does_not_stop_the_committer(
    ) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let trees = trees(&db);
        let committer = Arc::new(start(db.clone(), trees.clone()).unwrap());
        let (seen, durable) = (Arc::<Mutex<Vec<u64>>>::default(), Arc::default());
        let names: Vec<&'static str> = (0..200)
            .map(|i| &*Box::leak(format!("w{i}").into_boxed_str()))
            .collect();
        let tasks: Vec<_> = names
            .into_iter()
            .map(|name| {
                let committer = committer.clone();
                let fail = name.ends_with('7');
                let after = recording(Arc::clone(&seen), Arc::clone(&durable));
                let runs = Arc::new(AtomicUsize::new(0));
                tokio::spawn(async move {
                    let committed = committer.write(numbered(name, fail, runs), after).await?;
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
        let all: Vec<u64> = (1..=180).collect();
        assert_eq!(numbers, all);
        assert_eq!(trees[Table::Claims.index()].len(), 180);
        assert_eq!(
            *seen.lock().unwrap(),
            all,
            "committed steps in commit order"
        );
        let mut told = durable.lock().unwrap().clone();
        told.sort_unstable();
        assert_eq!(told, all);
        let flushes = committer.flush_count();
        assert!((1..=180).contains(&flushes), "{flushes} flushes");

        let nothing = || After {
            committed: |_: &u64| {},
            durable: |_: &u64| {},
        };
        let lost = committer
            .write(
                |_tx: &dyn WriteTx| -> TxResult<u64> { panic!("a bug in a write") },
                nothing(),
            )
            .await
            .unwrap_err();
        assert!(lost.to_string().contains("outcome is unknown"), "{lost}");
        let runs = Arc::new(AtomicUsize::new(0));
        let after = committer
            .write(numbered("after", false, runs), nothing())
            .await
            .unwrap();
        assert_eq!(after.value, 181);
        after.durable.unwrap();
    }
}
