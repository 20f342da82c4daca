//! The reference engine: every table in a `BTreeMap` in memory, nothing
//! on disk. `serve --in-memory` runs on it (demos, trying the API) and it
//! is the tests' fast backend; it runs the same core and passes the same
//! conformance suite (`tests/conformance.rs`) as sled.
//!
//! Writes run one at a time under the tables' write lock, on a private
//! copy of what they change that is applied only if the write succeeds,
//! so a refused write changes nothing; a write is "durable" once applied
//! (it dies with the process, by design). Scans read in chunks under the
//! read lock, so a long scan never holds writers up for long.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};

use bytes::Bytes;

use super::engine::{After, Chunked, Committed, Engine, KeyRange, Scan, TxError, WriteTx};
use super::errors::StorageError;
use super::schema::Table;
use super::{PageTokenKey, PAGE_TOKEN_KEY_LEN};
use crate::domain::{Error, Result};

/// Entries a scan copies out per visit to the tables.
const SCAN_CHUNK: usize = 256;

type Tables = Vec<BTreeMap<Vec<u8>, Bytes>>;

/// The in-memory engine: see the module documentation.
pub struct MemoryEngine {
    tables: RwLock<Tables>,
    /// Bytes of every key and value held.
    bytes: AtomicU64,
    page_token_key: PageTokenKey,
}

impl MemoryEngine {
    /// Empty tables and a new random page-token key.
    pub fn new() -> Result<Self> {
        let mut key = [0; PAGE_TOKEN_KEY_LEN];
        getrandom::fill(&mut key)
            .map_err(|e| Error::Internal(format!("no randomness for the page-token key: {e}")))?;
        Ok(MemoryEngine {
            tables: RwLock::new(vec![BTreeMap::new(); Table::ALL.len()]),
            bytes: AtomicU64::new(0),
            page_token_key: key,
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Tables> {
        // Writes apply their changes only after they succeeded, with
        // nothing that can panic in between: a poisoned lock holds whole tables.
        self.tables.read().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A write's changes: a new value, or `None` for a removal.
type Changes = BTreeMap<(Table, Vec<u8>), Option<Vec<u8>>>;

/// A write's view: its own changes over the tables.
struct MemoryTx<'a> {
    tables: &'a Tables,
    changes: RefCell<Changes>,
}

impl WriteTx for MemoryTx<'_> {
    fn get(&self, table: Table, key: &[u8]) -> std::result::Result<Option<Vec<u8>>, TxError> {
        if let Some(change) = self.changes.borrow().get(&(table, key.to_vec())) {
            return Ok(change.clone());
        }
        Ok(self.tables[table.index()].get(key).map(|v| v.to_vec()))
    }

    fn insert(&self, table: Table, key: &[u8], value: &[u8]) -> std::result::Result<(), TxError> {
        let mut changes = self.changes.borrow_mut();
        changes.insert((table, key.to_vec()), Some(value.to_vec()));
        Ok(())
    }

    fn remove(&self, table: Table, key: &[u8]) -> std::result::Result<(), TxError> {
        self.changes
            .borrow_mut()
            .insert((table, key.to_vec()), None);
        Ok(())
    }
}

/// Whether `range` may hold a key: `BTreeMap::range` panics on a start
/// above the end (or equal to it with both bounds excluded), which a
/// caller's odd cursor must not turn into a panic.
fn nonempty(range: &KeyRange) -> bool {
    use Bound::{Excluded, Included, Unbounded};
    match range {
        (Unbounded, _) | (_, Unbounded) => true,
        (Included(start), Included(end)) => start <= end,
        (Included(start) | Excluded(start), Excluded(end) | Included(end)) => start < end,
    }
}

impl Engine for MemoryEngine {
    type Value = Bytes;

    fn get(&self, table: Table, key: &[u8]) -> std::result::Result<Option<Bytes>, StorageError> {
        Ok(self.read()[table.index()].get(key).cloned())
    }

    fn scan(&self, table: Table, range: KeyRange, reverse: bool) -> Scan<'_, Bytes> {
        let read = move |range: &KeyRange, reverse: bool, chunk: usize| {
            if !nonempty(range) {
                return Ok(Vec::new());
            }
            let tables = self.read();
            let range = tables[table.index()].range::<Vec<u8>, _>(range.clone());
            let take =
                |entry: (&Vec<u8>, &Bytes)| (Bytes::copy_from_slice(entry.0), entry.1.clone());
            Ok(match reverse {
                true => range.rev().take(chunk).map(take).collect(),
                false => range.take(chunk).map(take).collect(),
            })
        };
        Box::new(Chunked::new(range, reverse, SCAN_CHUNK, read))
    }

    async fn commit<T, F, C, D>(&self, write: F, after: After<C, D>) -> Result<Committed<T>>
    where
        F: Fn(&dyn WriteTx) -> std::result::Result<T, TxError> + Send + 'static,
        C: FnOnce(&T) + Send + 'static,
        D: FnOnce(&T) + Send + 'static,
        T: Send + 'static,
    {
        let value = {
            let mut tables = self.tables.write().unwrap_or_else(PoisonError::into_inner);
            let tx = MemoryTx {
                tables: &tables,
                changes: RefCell::default(),
            };
            let value = match write(&tx) {
                Ok(value) => value,
                Err(TxError::Abort(err) | TxError::Storage(err)) => return Err(err),
                // Writes run one at a time: nothing can conflict.
                Err(TxError::Conflict) => {
                    return Err(Error::Internal("a write conflicted in memory".into()))
                }
            };
            let changes = tx.changes.into_inner();
            for ((table, key), change) in changes {
                let map = &mut tables[table.index()];
                let added = change.as_ref().map_or(0, |v| key.len() + v.len());
                let old = match change {
                    Some(v) => map.insert(key.clone(), Bytes::from(v)),
                    None => map.remove(&key),
                };
                let removed = old.map_or(0, |v| key.len() + v.len());
                self.bytes.fetch_add(added as u64, Ordering::Relaxed);
                self.bytes.fetch_sub(removed as u64, Ordering::Relaxed);
            }
            // In commit order: the next write waits for the lock.
            (after.committed)(&value);
            value
        };
        (after.durable)(&value);
        Ok(Committed {
            value,
            durable: Ok(()),
        })
    }

    fn page_token_key(&self) -> PageTokenKey {
        self.page_token_key
    }

    fn size(&self) -> std::result::Result<u64, StorageError> {
        Ok(self.bytes.load(Ordering::Relaxed))
    }

    async fn close(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> Vec<u8> {
        vec![n]
    }

    #[tokio::test]
    async fn scans_read_in_chunks_both_ways_and_an_empty_or_inverted_range_is_empty() {
        let engine = MemoryEngine::new().unwrap();
        let nothing = After {
            committed: |_: &()| {},
            durable: |_: &()| {},
        };
        let count = 600u16;
        engine
            .commit(
                move |tx: &dyn WriteTx| {
                    for n in 0..count {
                        tx.insert(Table::Claims, &n.to_be_bytes(), b"v")?;
                    }
                    Ok(())
                },
                nothing,
            )
            .await
            .unwrap();
        let keys = |range: KeyRange, reverse: bool| -> Vec<u16> {
            engine
                .scan(Table::Claims, range, reverse)
                .map(|e| {
                    let (k, _) = e.unwrap();
                    u16::from_be_bytes([k[0], k[1]])
                })
                .collect()
        };
        let all = (Bound::Unbounded, Bound::Unbounded);
        assert_eq!(keys(all.clone(), false), (0..count).collect::<Vec<_>>());
        assert_eq!(keys(all, true), (0..count).rev().collect::<Vec<_>>());
        let inverted = (Bound::Included(key(9)), Bound::Excluded(key(1)));
        assert!(keys(inverted, false).is_empty());
        let empty = (Bound::Excluded(key(5)), Bound::Excluded(key(5)));
        assert!(keys(empty.clone(), true).is_empty());
        assert!(keys(empty, false).is_empty());
    }

    #[tokio::test]
    async fn a_refused_write_changes_nothing() {
        let engine = MemoryEngine::new().unwrap();
        let nothing = After {
            committed: |_: &()| {},
            durable: |_: &()| {},
        };
        let refused = engine
            .commit(
                |tx: &dyn WriteTx| {
                    tx.insert(Table::Meta, b"k", b"v")?;
                    Err(TxError::Abort(Error::NotFound("claims/1".into())))
                },
                nothing,
            )
            .await
            .unwrap_err();
        assert!(matches!(refused, Error::NotFound(_)), "{refused:?}");
        assert_eq!(engine.get(Table::Meta, b"k").unwrap(), None);
        assert_eq!(engine.size().unwrap(), 0);
    }
}
