//! Connections to PostgreSQL: a [`Session`] owns one connection (made
//! when first needed, made again after it broke) with its prepared
//! statements; the [`Readers`] are threads that each own a session and run
//! the engine's reads, so a read is a blocking call from any thread or
//! runtime, like a read of sled.
//!
//! The synchronous `postgres` client fits the storage interface: a write is
//! a closure that reads and writes in sequence inside one transaction,
//! and reads are synchronous calls (`super::super::engine`).

use std::collections::HashMap;
use std::sync::{mpsc, Arc, Mutex, PoisonError};

use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, Row, Statement};

use super::Connector;

use crate::store::errors::StorageError;

/// A statement's parameters.
pub(super) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// One connection and its prepared statements.
pub(super) struct Conn {
    pub(super) client: Client,
    statements: HashMap<String, Statement>,
}

impl Conn {
    /// The prepared statement for `sql` (prepared once per connection).
    fn statement(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    /// The rows `sql` returns.
    pub(super) fn query(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Vec<Row>, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client.query(&statement, params)
    }

    /// The row `sql` returns, if any.
    pub(super) fn query_opt(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<Row>, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client.query_opt(&statement, params)
    }

    /// Runs `sql`, returning the rows it changed.
    pub(super) fn execute(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<u64, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client.execute(&statement, params)
    }
}

/// How a failed call is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fault {
    /// A serialization failure or deadlock: run the transaction again.
    Retry,
    /// The database cannot be reached or went away: UNAVAILABLE, and the
    /// connection is made again.
    Unreachable,
    /// The database reports its own data corrupt.
    Corrupt,
    /// Anything else (a bug, a full disk, a permission).
    Other,
}

/// How to treat `err`.
pub(super) fn fault(err: &postgres::Error) -> Fault {
    let Some(code) = err.code() else {
        // No SQLSTATE: the connection failed (I/O, closed, timed out).
        return Fault::Unreachable;
    };
    if *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED {
        return Fault::Retry;
    }
    let class = &code.code()[..2];
    match class {
        // connection_exception, operator_intervention (admin shutdown,
        // cannot connect now), insufficient resources (too many connections).
        "08" | "57" | "53" => Fault::Unreachable,
        "XX" if *code != SqlState::INTERNAL_ERROR => Fault::Corrupt,
        _ => Fault::Other,
    }
}

/// `err` as the core reports a storage failure.
pub(super) fn storage_error(err: &postgres::Error) -> StorageError {
    let kind = fault(err);
    StorageError {
        corrupt: kind == Fault::Corrupt,
        unavailable: kind == Fault::Unreachable,
        cause: describe(err),
    }
}

/// What the database said, with its detail (the `Display` of a database
/// error is only "db error").
pub(super) fn describe(err: &postgres::Error) -> String {
    if let Some(db) = err.as_db_error() {
        return format!("PostgreSQL: {} ({})", db.message(), db.code().code());
    }
    // The cause of a connection failure (refused, a TLS certificate that
    // does not verify) is in the error's sources.
    let mut text = format!("PostgreSQL: {err}");
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// A connection to the database, made when needed.
pub(super) struct Session {
    config: Arc<Connector>,
    conn: Option<Conn>,
}

impl Session {
    pub(super) fn new(config: Arc<Connector>) -> Self {
        Session { config, conn: None }
    }

    /// The connection, made now if there is none or it was closed.
    pub(super) fn conn(&mut self) -> Result<&mut Conn, postgres::Error> {
        if self.conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            self.conn = None;
        }
        if self.conn.is_none() {
            let client = self.config.connect()?;
            self.conn = Some(Conn {
                client,
                statements: HashMap::new(),
            });
        }
        Ok(self.conn.as_mut().expect("connected just above"))
    }

    /// Forgets the connection if `err` says it is gone.
    pub(super) fn failed(&mut self, err: &postgres::Error) {
        if fault(err) == Fault::Unreachable {
            self.conn = None;
        }
    }

    /// Runs `work` on the connection; a failure that broke it makes the
    /// next call connect again.
    pub(super) fn run<R>(
        &mut self,
        work: impl FnOnce(&mut Conn) -> Result<R, postgres::Error>,
    ) -> Result<R, StorageError> {
        let outcome = self.conn().and_then(work);
        outcome.map_err(|err| {
            self.failed(&err);
            storage_error(&err)
        })
    }
}

type ReadJob = Box<dyn FnOnce(&mut Session) + Send>;

/// Threads that run reads, each on a connection of its own.
pub(super) struct Readers {
    jobs: Mutex<Option<mpsc::Sender<ReadJob>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Readers {
    /// `count` reader threads over `config`.
    pub(super) fn start(config: &Arc<Connector>, count: usize) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<ReadJob>();
        let queue = Arc::new(Mutex::new(queue));
        let mut threads = Vec::new();
        for n in 0..count.max(1) {
            let queue = Arc::clone(&queue);
            let mut session = Session::new(Arc::clone(config));
            threads.push(
                std::thread::Builder::new()
                    .name(format!("photoclaim-pg-read-{n}"))
                    .spawn(move || loop {
                        let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
                        match job {
                            Ok(job) => job(&mut session),
                            Err(_) => return,
                        }
                    })?,
            );
        }
        Ok(Readers {
            jobs: Mutex::new(Some(jobs)),
            threads,
        })
    }

    /// Runs `work` on a reader's connection and waits for its answer.
    pub(super) fn call<R: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Conn) -> Result<R, postgres::Error> + Send + 'static,
    ) -> Result<R, StorageError> {
        let (answer, answered) = mpsc::sync_channel(1);
        let job: ReadJob = Box::new(move |session| {
            let _ = answer.send(session.run(work));
        });
        let stopped = || StorageError {
            corrupt: false,
            unavailable: true,
            cause: "the PostgreSQL readers stopped".into(),
        };
        let sent = match &*self.jobs.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(jobs) => jobs.send(job).is_ok(),
            None => false,
        };
        if !sent {
            return Err(stopped());
        }
        // On a worker of a multi-threaded runtime, let the runtime move its
        // other tasks to another thread while this one waits for the
        // database: reads then overlap up to the number of readers instead
        // of the number of workers.
        let wait = || answered.recv();
        let answer = match tokio::runtime::Handle::try_current() {
            Ok(runtime)
                if runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread =>
            {
                tokio::task::block_in_place(wait)
            }
            _ => wait(),
        };
        answer.map_err(|_| stopped())?
    }
}

impl Drop for Readers {
    fn drop(&mut self) {
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
