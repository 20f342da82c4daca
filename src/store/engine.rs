//! The storage interface under the core: what an engine (sled, memory,
//! later PostgreSQL) provides, and nothing of photoclaim's rules.
//!
//! - **Tables read by key or range.** An engine keeps the tables of
//!   [`super::schema`] as ordered maps from byte keys to byte values
//!   (keys compare bytewise, as sled, a `BTreeMap` and SQL's `bytea` do).
//! - **One atomic commit of a write.** [`Engine::commit`] runs a write
//!   (a closure over a [`WriteTx`]) so that all of it or none of it is
//!   stored, isolated from every other write (serializable), and answers
//!   once it is durable. The write reads what it depends on inside the
//!   transaction (the request id unused, the claim's version, the log's
//!   last position) and fails with a domain error to change nothing: its
//!   reads are its preconditions. An engine may run a write more than once
//!   (a conflict, a batch rerun); the write must then do the same.
//! - **Steps after the commit.** [`After`]: `committed` runs once per
//!   committed write *in commit order* (it feeds derived state: caches,
//!   the PDQ index), `durable` once the write is durable (it tells
//!   watchers). An engine runs both whether or not the caller still waits.
//!
//! Reads outside a write see only committed writes. Engines answer reads
//! on the calling thread: sled and memory from local data; an engine over
//! a network runs them on its own blocking pool.

use std::future::Future;
use std::ops::Bound;

use super::errors::StorageError;
use super::schema::Table;
use super::PageTokenKey;
use crate::domain::{Error, Result};

/// A key range of a scan.
pub type KeyRange = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// One `(key, value)` entry as an engine hands it out.
pub type Entry<V> = (V, V);

/// An engine's scan: `(key, value)` pairs in key order (or reversed).
pub type Scan<'a, V> =
    Box<dyn Iterator<Item = std::result::Result<(V, V), StorageError>> + Send + 'a>;

/// Why a write stopped.
#[derive(Debug)]
pub enum TxError {
    /// A rule or precondition refused it (the caller gets this error).
    Abort(Error),
    /// The engine must run it again (a conflict with another transaction).
    Conflict,
    /// The engine failed to read or write; named by the write.
    Storage(Error),
}

impl From<Error> for TxError {
    fn from(err: Error) -> TxError {
        TxError::Abort(err)
    }
}

/// The tables inside one write's transaction.
pub trait WriteTx {
    /// The value at `key`, including this transaction's own changes.
    fn get(&self, table: Table, key: &[u8]) -> std::result::Result<Option<Vec<u8>>, TxError>;
    /// Sets `key` to `value`.
    fn insert(&self, table: Table, key: &[u8], value: &[u8]) -> std::result::Result<(), TxError>;
    /// Removes `key` (absent: nothing happens).
    fn remove(&self, table: Table, key: &[u8]) -> std::result::Result<(), TxError>;
}

/// What a write does besides its transaction (see the module docs).
pub struct After<C, D> {
    /// Run right after the write committed, in commit order.
    pub committed: C,
    /// Run once the write is durable.
    pub durable: D,
}

/// A committed write: what it returned, and whether it became durable
/// (if not, it must not be acknowledged).
#[derive(Debug)]
pub struct Committed<T> {
    /// What the write returned.
    pub value: T,
    /// Whether it is durable.
    pub durable: Result<()>,
}

/// A storage engine: see the module documentation.
pub trait Engine: Send + Sync + 'static {
    /// A value (or key) as the engine hands it out.
    type Value: AsRef<[u8]> + Send + Sync + 'static;

    /// The value at `key` in `table`.
    fn get(
        &self,
        table: Table,
        key: &[u8],
    ) -> std::result::Result<Option<Self::Value>, StorageError>;

    /// The entries of `table` within `range`, in key order or reversed.
    fn scan(&self, table: Table, range: KeyRange, reverse: bool) -> Scan<'_, Self::Value>;

    /// Runs `write` atomically and returns what it returned once durable,
    /// or its error, and then nothing of it was stored. See [`After`].
    fn commit<T, F, C, D>(
        &self,
        write: F,
        after: After<C, D>,
    ) -> impl Future<Output = Result<Committed<T>>> + Send
    where
        F: Fn(&dyn WriteTx) -> std::result::Result<T, TxError> + Send + 'static,
        C: FnOnce(&T) + Send + 'static,
        D: FnOnce(&T) + Send + 'static,
        T: Send + 'static;

    /// The key that signs page tokens, made at random when the storage was
    /// created and kept with it.
    fn page_token_key(&self) -> PageTokenKey;

    /// Bytes the data takes (on disk, or in memory).
    fn size(&self) -> std::result::Result<u64, StorageError>;

    /// Makes everything committed so far durable (shutdown).
    fn close(&self) -> impl Future<Output = Result<()>> + Send;

    /// Durability flushes done so far (diagnostics and tests; 0 if none).
    fn flush_count(&self) -> u64 {
        0
    }

    /// Whether other processes write to the same tables (PostgreSQL's
    /// replicas): the core then learns of their writes by following the
    /// tables (`core::follow`) instead of only from its own commits.
    fn shared(&self) -> bool {
        false
    }

    /// Blocks until another process may have committed a write (a
    /// notification), for the engine's polling interval at most, or until
    /// `stop` is set (checked at least every 200 ms). Engines that cannot
    /// be told just wait: the caller then polls.
    fn await_commits(&self, stop: &std::sync::atomic::AtomicBool) {
        let _ = stop;
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    /// The values at `keys` in `table`, in the order of `keys`. Engines
    /// over a network answer in one round trip; others read one by one.
    fn get_many(
        &self,
        table: Table,
        keys: &[Vec<u8>],
    ) -> std::result::Result<Vec<Option<Self::Value>>, StorageError> {
        keys.iter().map(|key| self.get(table, key)).collect()
    }

    /// The first entry of `table` within `range` in the given order.
    fn first(
        &self,
        table: Table,
        range: KeyRange,
        reverse: bool,
    ) -> std::result::Result<Option<Entry<Self::Value>>, StorageError> {
        self.scan(table, range, reverse).next().transpose()
    }
}

/// A range over `[start, end)`.
pub fn span(start: &[u8], end: &[u8]) -> KeyRange {
    (
        Bound::Included(start.to_vec()),
        Bound::Excluded(end.to_vec()),
    )
}

/// A range over `[start, end]`.
pub fn span_inclusive(start: &[u8], end: &[u8]) -> KeyRange {
    (
        Bound::Included(start.to_vec()),
        Bound::Included(end.to_vec()),
    )
}

/// Every key.
pub fn all() -> KeyRange {
    (Bound::Unbounded, Bound::Unbounded)
}

/// A scan that reads up to `chunk` entries at a time with `read`, each
/// read starting after the last key handed out, so that no lock or
/// connection is held between chunks (the memory and PostgreSQL engines).
pub(crate) struct Chunked<V, F> {
    read: F,
    /// What is still to be read.
    range: KeyRange,
    reverse: bool,
    chunk: usize,
    buffer: std::collections::VecDeque<(V, V)>,
    done: bool,
}

impl<V, F> Chunked<V, F>
where
    V: AsRef<[u8]>,
    F: FnMut(&KeyRange, bool, usize) -> std::result::Result<Vec<(V, V)>, StorageError>,
{
    /// The entries within `range`, read `chunk` at a time by
    /// `read(range, reverse, chunk)`, which returns at most `chunk` of them
    /// in order.
    pub(crate) fn new(range: KeyRange, reverse: bool, chunk: usize, read: F) -> Self {
        Chunked {
            read,
            range,
            reverse,
            chunk,
            buffer: std::collections::VecDeque::new(),
            done: false,
        }
    }
}

impl<V, F> Iterator for Chunked<V, F>
where
    V: AsRef<[u8]>,
    F: FnMut(&KeyRange, bool, usize) -> std::result::Result<Vec<(V, V)>, StorageError>,
{
    type Item = std::result::Result<(V, V), StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buffer.is_empty() && !self.done {
            let entries = match (self.read)(&self.range, self.reverse, self.chunk) {
                Ok(entries) => entries,
                Err(err) => {
                    self.done = true;
                    return Some(Err(err));
                }
            };
            self.done = entries.len() < self.chunk;
            if let Some((last, _)) = entries.last() {
                let after = Bound::Excluded(last.as_ref().to_vec());
                match self.reverse {
                    true => self.range.1 = after,
                    false => self.range.0 = after,
                }
            }
            self.buffer = entries.into();
        }
        self.buffer.pop_front().map(Ok)
    }
}
