//! The writer: one thread per process runs every write (the shared
//! [`WriteQueue`]), many to a PostgreSQL transaction.
//!
//! A batch's transaction first takes a transaction-scoped advisory lock
//! that every photoclaim writer on the database takes: writes from all
//! replicas commit one transaction at a time, so the counters a write reads
//! and advances in `meta` (claim ids, log positions) are given out gapless
//! **in commit order**: a log tailer that has read position `n` can never
//! later see a transaction commit a position below `n`. Under the lock
//! every statement of READ COMMITTED sees every transaction committed
//! before, so the writes' reads are their preconditions.
//!
//! Writes run in arrival order; each sees its own changes and those of the
//! writes before it in the batch (kept in memory, written at the end of
//! the batch with one statement per table). A refused write's changes are
//! dropped and it is answered at once; the others commit as if it had
//! never been sent. A serialization failure or deadlock (impossible under
//! the lock, but a database may report one) reruns the batch; a lost
//! connection answers the batch UNAVAILABLE and the next batch connects
//! again. COMMIT returns once PostgreSQL made the batch durable (with
//! `synchronous_commit` on, its default), so a batch is durable when it
//! has committed.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::conn::{fault, storage_error, Conn, Fault, Session};
use super::sql;
use crate::domain::Error;
use crate::store::engine::{TxError, WriteTx};
use crate::store::schema::Table;
use crate::store::write_queue::{Job, WriteQueue};

/// Most writes in one transaction.
const MAX_BATCH: usize = 256;

/// Runs of a batch after a serialization failure or deadlock, at most.
const MAX_RERUNS: u32 = 20;

/// The advisory lock every photoclaim writer takes in its transaction
/// (`pg_advisory_xact_lock`): "photocla" in ASCII.
pub(super) const WRITE_LOCK: i64 = 0x7068_6f74_6f63_6c61;

/// The channel every commit notifies (LISTEN/NOTIFY).
pub(super) const COMMITS_CHANNEL: &str = "photoclaim_commits";

/// Changes of a batch: a new value, or `None` for a removal.
type Changes = BTreeMap<(Table, Vec<u8>), Option<Vec<u8>>>;

/// A write's view inside the batch's transaction: its own changes over
/// the batch's over the database.
struct PgTx<'a> {
    conn: RefCell<&'a mut Conn>,
    batch: &'a Changes,
    own: RefCell<Changes>,
    /// The first database failure, which fails the whole batch.
    fault: RefCell<Option<postgres::Error>>,
}

impl WriteTx for PgTx<'_> {
    fn get(&self, table: Table, key: &[u8]) -> std::result::Result<Option<Vec<u8>>, TxError> {
        let at = (table, key.to_vec());
        if let Some(change) = self.own.borrow().get(&at).or_else(|| self.batch.get(&at)) {
            return Ok(change.clone());
        }
        let read = self.conn.borrow_mut().query_opt(&sql::get(table), &[&key]);
        match read {
            Ok(row) => Ok(row.map(|row| row.get::<_, Vec<u8>>(0))),
            Err(err) => {
                let error = storage_error(&err).at(table.name());
                self.fault.borrow_mut().get_or_insert(err);
                Err(TxError::Storage(error))
            }
        }
    }

    fn insert(&self, table: Table, key: &[u8], value: &[u8]) -> std::result::Result<(), TxError> {
        let mut own = self.own.borrow_mut();
        own.insert((table, key.to_vec()), Some(value.to_vec()));
        Ok(())
    }

    fn remove(&self, table: Table, key: &[u8]) -> std::result::Result<(), TxError> {
        self.own.borrow_mut().insert((table, key.to_vec()), None);
        Ok(())
    }
}

/// The writer: the write queue over PostgreSQL's cycle.
pub(super) fn start(config: Arc<super::Connector>) -> std::io::Result<WriteQueue> {
    let mut session = Session::new(config);
    WriteQueue::start(
        "photoclaim-pg-write",
        "the PostgreSQL writer",
        MAX_BATCH,
        Box::new(move |writes, commits| cycle(&mut session, writes, commits)),
    )
}

/// Why a batch's transaction committed nothing.
enum Failed {
    /// Run it again (a serialization failure or deadlock).
    Rerun,
    /// Answer every write with this.
    Answer(Error),
}

fn failed(session: &mut Session, err: postgres::Error, what: &str) -> Failed {
    session.failed(&err);
    match fault(&err) {
        Fault::Retry => Failed::Rerun,
        _ => Failed::Answer(storage_error(&err).at(what)),
    }
}

/// One cycle: commit `writes` (rerunning on a serialization failure),
/// run their `committed` steps in commit order, answer all.
fn cycle(session: &mut Session, mut writes: Vec<Box<dyn Job>>, commits: &AtomicU64) {
    let started = Instant::now();
    let mut runs = 0;
    let outcome = loop {
        runs += 1;
        match transact(session, &mut writes) {
            Ok(()) => break Ok(()),
            Err(Failed::Rerun) if runs < MAX_RERUNS => {
                tracing::debug!(runs, "write batch conflicted; running it again");
                std::thread::sleep(Duration::from_millis(u64::from(runs)));
            }
            Err(Failed::Rerun) => {
                break Err(Error::Unavailable(format!(
                    "the write conflicted {runs} times in a row; retry with the same request_id"
                )))
            }
            Err(Failed::Answer(err)) => break Err(err),
        }
    };
    match outcome {
        Ok(()) => {
            for job in &mut writes {
                job.committed();
            }
            commits.fetch_add(1, Ordering::Relaxed);
            crate::metrics::global().flushed(started.elapsed());
            for job in writes {
                job.answer(Ok(Ok(())));
            }
        }
        Err(err) => {
            tracing::warn!(error = %err, writes = writes.len(), "write batch failed");
            for job in writes {
                job.answer(Err(err.clone()));
            }
        }
    }
}

/// Runs `writes` in one transaction and commits it; answers (and drops)
/// each write that refuses. On a failure nothing was committed and the
/// transaction is rolled back.
fn transact(session: &mut Session, writes: &mut Vec<Box<dyn Job>>) -> Result<(), Failed> {
    let conn = match session.conn() {
        Ok(conn) => conn,
        Err(err) => return Err(failed(session, err, "the database")),
    };
    let begin =
        format!("BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock({WRITE_LOCK})");
    if let Err(err) = conn.client.batch_execute(&begin) {
        return Err(failed(session, err, "the database"));
    }
    let outcome = run(conn, writes);
    let conn = match session.conn() {
        Ok(conn) => conn,
        Err(err) => return Err(failed(session, err, "the database")),
    };
    let ended = match outcome {
        // Wakes the other processes' followers as it commits.
        Ok(()) => conn
            .client
            .batch_execute(&format!("NOTIFY {COMMITS_CHANNEL}; COMMIT")),
        Err(fail) => {
            let rolled_back = conn.client.batch_execute("ROLLBACK");
            if let Err(err) = rolled_back {
                session.failed(&err);
            }
            return Err(match fail {
                RunFailed::Database(err) => failed(session, err, "a write's transaction"),
                RunFailed::Conflict => Failed::Rerun,
                RunFailed::Write(err) => Failed::Answer(err),
            });
        }
    };
    // A COMMIT whose answer was lost may have committed: the writers are
    // told UNAVAILABLE, and their request ids make a retry safe.
    ended.map_err(|err| failed(session, err, "a write's commit"))
}

/// Why a batch's writes could not all run.
enum RunFailed {
    Database(postgres::Error),
    Conflict,
    Write(Error),
}

/// Runs every write of `writes` inside the open transaction and writes
/// their changes.
fn run(conn: &mut Conn, writes: &mut Vec<Box<dyn Job>>) -> Result<(), RunFailed> {
    let mut batch = Changes::new();
    let mut at = 0;
    while at < writes.len() {
        let tx = PgTx {
            conn: RefCell::new(&mut *conn),
            batch: &batch,
            own: RefCell::default(),
            fault: RefCell::default(),
        };
        let outcome = writes[at].apply(&tx);
        let (own, fault) = (tx.own.into_inner(), tx.fault.into_inner());
        if let Some(err) = fault {
            return Err(RunFailed::Database(err));
        }
        match outcome {
            Ok(()) => {
                batch.extend(own);
                at += 1;
            }
            Err(TxError::Abort(err)) => writes.remove(at).answer(Err(err)),
            Err(TxError::Conflict) => return Err(RunFailed::Conflict),
            Err(TxError::Storage(err)) => return Err(RunFailed::Write(err)),
        }
    }
    write_changes(conn, batch).map_err(RunFailed::Database)
}

/// A table's changes: keys and new values, and removed keys.
type TableChanges = (Vec<Vec<u8>>, Vec<Vec<u8>>, Vec<Vec<u8>>);

/// Writes `changes`: per table, one upsert of every new value and one
/// delete of every removed key.
fn write_changes(conn: &mut Conn, changes: Changes) -> Result<(), postgres::Error> {
    let mut tables: BTreeMap<Table, TableChanges> = BTreeMap::new();
    for ((table, key), change) in changes {
        let (keys, values, removed) = tables.entry(table).or_default();
        match change {
            Some(value) => {
                keys.push(key);
                values.push(value);
            }
            None => removed.push(key),
        }
    }
    for (table, (keys, values, removed)) in tables {
        if !keys.is_empty() {
            conn.execute(&sql::upsert(table), &[&keys, &values])?;
        }
        if !removed.is_empty() {
            conn.execute(&sql::delete(table), &[&removed])?;
        }
    }
    Ok(())
}
