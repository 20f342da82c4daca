//! The sled backend: the tables of [`crate::store::schema`] as sled trees
//! in one data directory, writes run by the committer (`committer.rs`:
//! many to a transaction, one flush per batch), the format migrations of
//! older directories (`migrate.rs`), [`SledStore`], the core over the
//! engine behind a handle that guards the disk and reopens the engine
//! in-process (`handle.rs`), the offline tools on a directory —
//! `photoclaim check` (`check.rs`), restore's writer (`restore.rs`),
//! compaction's copy (`compact.rs`) — and the engine's own tests
//! (`tests.rs`). The engine knows nothing of claims: the core
//! ([`crate::store::core`]) runs the rules over it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::engine::{After, Committed, Engine, KeyRange, Scan, TxError, WriteTx};
use super::errors::StorageError;
use super::schema::{
    self, be, pair, u64_at, Table, META_FORMAT_VERSION, META_LAST_CLAIM_ID, META_LAST_LOG_POSITION,
    META_PAGE_TOKEN_KEY,
};
use super::{PageTokenKey, PAGE_TOKEN_KEY_LEN};
use crate::domain::{Error, Result};
use committer::{Committer, Trees};

pub use check::{check_dir, check_dir_reporting, CheckProgress, CheckReport};
pub use compact::{copy_trees, Compacted};
pub use handle::{SledStore, DEFAULT_MIN_FREE_DISK_BYTES};
pub use restore::{Restored, Restorer};

mod check;
mod committer;
mod compact;
mod handle;
mod migrate;
mod restore;
#[cfg(test)]
mod tests;

/// sled's page cache for a server: sled's own default, 1 GiB.
pub const DEFAULT_CACHE_BYTES: u64 = 1024 * 1024 * 1024;

/// Layout of the data directory (trees and keys), recorded in `meta`.
/// Version 1 kept one packed list of claim ids per SHA-256 and took claim
/// ids from sled's id generator (which jumps ahead after a restart); version
/// 2 keys the index by `sha256 ‖ claim_id`, so that a registration never
/// rewrites a value that grows with the number of claims on one image, and
/// counts claim ids in `meta`. Opening a version-1 directory migrates it; a
/// version-1 binary refuses a version-2 directory (its id generator could
/// reuse ids). Version 3 adds the service-wide `event_log`; version 4 the
/// hash chains (`prev_hash`, `record_sha256` and `chain_head` in the records,
/// the chain head in every `event_log` value). Each step is a function run
/// by `SledEngine::open` when the directory is older, safe to repeat; the
/// version is written only after all steps. Version 5 appends a copy of the
/// claim's latest response to its record (`schema::claim_record`), so that a
/// status read is one lookup. (Records carry their own `domain::FORMAT_VERSION`.)
pub const DIR_FORMAT_VERSION: u32 = 5;

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Another process holds the directory's lock.
    #[error("data directory {0} is in use by another photoclaim process (sled holds an exclusive lock); stop it or choose another --data-dir")]
    Locked(PathBuf),
    /// The data was written by a newer photoclaim.
    #[error("data directory {dir} has format version {found}, newer than this binary supports ({supported}); upgrade photoclaim")]
    TooNew {
        /// The directory.
        dir: PathBuf,
        /// Version found on disk.
        found: u32,
        /// Version this binary writes.
        supported: u32,
    },
    /// Any other storage failure.
    #[error("cannot open data directory {dir}: {cause}")]
    Other {
        /// The directory.
        dir: PathBuf,
        /// What sled said.
        cause: String,
    },
}

/// The page-token key in `meta`, made from the operating system's randomness
/// and stored the first time (the caller flushes).
fn page_token_key(dir: &Path, meta: &sled::Tree) -> std::result::Result<PageTokenKey, OpenError> {
    let other = |cause: String| OpenError::Other {
        dir: dir.to_path_buf(),
        cause,
    };
    if let Some(stored) = meta
        .get(META_PAGE_TOKEN_KEY)
        .map_err(|e| other(e.to_string()))?
    {
        return PageTokenKey::try_from(stored.as_ref())
            .map_err(|_| other("corrupt page_token_key entry".into()));
    }
    let mut key = [0; PAGE_TOKEN_KEY_LEN];
    getrandom::fill(&mut key)
        .map_err(|e| other(format!("no randomness for the page-token key: {e}")))?;
    meta.insert(META_PAGE_TOKEN_KEY, &key)
        .map_err(|e| other(e.to_string()))?;
    Ok(key)
}

/// The tables in an embedded sled database.
pub(crate) struct SledEngine {
    /// Kept for flushes; the trees share its storage.
    db: sled::Db,
    /// Every table's tree, by [`Table::index`].
    trees: Trees,
    /// Signs page tokens, loaded from `meta` at open.
    page_token_key: PageTokenKey,
    /// Runs every write, many to a transaction and a flush.
    committer: Committer,
}

/// Opens sled in `dir` (creating it if absent), telling a held lock apart.
pub(super) fn open_db(dir: &Path, cache_bytes: u64) -> std::result::Result<sled::Db, OpenError> {
    sled::Config::new()
        .path(dir)
        .cache_capacity(cache_bytes)
        .open()
        .map_err(|e| {
            let text = e.to_string();
            if text.contains("could not acquire lock") {
                OpenError::Locked(dir.to_path_buf())
            } else {
                OpenError::Other {
                    dir: dir.to_path_buf(),
                    cause: text,
                }
            }
        })
}

/// The format version recorded in `meta` (`None` for a new directory).
pub(super) fn read_format_version(
    dir: &Path,
    meta: &sled::Tree,
) -> std::result::Result<Option<u32>, OpenError> {
    let other = |cause: String| OpenError::Other {
        dir: dir.to_path_buf(),
        cause,
    };
    match meta
        .get(META_FORMAT_VERSION)
        .map_err(|e| other(e.to_string()))?
    {
        Some(v) if v.len() == 4 => Ok(Some(u32::from_be_bytes([v[0], v[1], v[2], v[3]]))),
        Some(_) => Err(other("corrupt format_version entry".into())),
        None => Ok(None),
    }
}

/// A failed sled read or write of `at`: sled's `Corruption` is
/// [`super::errors::corrupt`] (`DataLoss`), anything else `Internal`.
pub(super) fn storage(err: sled::Error, at: &str) -> Error {
    StorageError::from(err).at(at)
}

impl From<sled::Error> for StorageError {
    fn from(err: sled::Error) -> StorageError {
        StorageError {
            corrupt: matches!(err, sled::Error::Corruption { .. }),
            unavailable: false,
            cause: err.to_string(),
        }
    }
}

impl SledEngine {
    /// Opens (or creates) the data directory `dir`, migrating an older
    /// format, and starts the committer.
    pub(super) fn open(dir: &Path, cache_bytes: u64) -> std::result::Result<Self, OpenError> {
        let other = |cause: sled::Error| OpenError::Other {
            dir: dir.to_path_buf(),
            cause: cause.to_string(),
        };
        let started = std::time::Instant::now();
        let db = open_db(dir, cache_bytes)?;
        let sled_open = started.elapsed();
        let meta = db.open_tree(schema::META).map_err(other)?;
        migrate::migrate(dir, &db, &meta)?;
        let page_token_key = page_token_key(dir, &meta)?;
        db.flush().map_err(other)?;
        let trees: Trees = Table::ALL
            .iter()
            .map(|table| db.open_tree(table.name()))
            .collect::<sled::Result<_>>()
            .map_err(other)?;
        let committer =
            committer::start(db.clone(), Arc::clone(&trees)).map_err(|e| OpenError::Other {
                dir: dir.to_path_buf(),
                cause: format!("cannot start the write committer: {e}"),
            })?;
        tracing::info!(
            sled_open_ms = sled_open.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "data directory opened"
        );
        Ok(SledEngine {
            db,
            trees,
            page_token_key,
            committer,
        })
    }

    fn tree(&self, table: Table) -> &sled::Tree {
        &self.trees[table.index()]
    }

    /// After a write failed: the error sled keeps once a write to disk
    /// failed, if it does. sled then refuses every later write until it is
    /// opened again ([`super::SledStore`] reopens it); asking costs a flush,
    /// which writes nothing when nothing is dirty.
    pub(super) async fn failed_write(&self) -> Option<sled::Error> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush().err())
            .await
            .unwrap_or(None)
    }
}

impl Engine for SledEngine {
    type Value = sled::IVec;

    fn get(
        &self,
        table: Table,
        key: &[u8],
    ) -> std::result::Result<Option<sled::IVec>, StorageError> {
        Ok(self.tree(table).get(key)?)
    }

    fn scan(&self, table: Table, range: KeyRange, reverse: bool) -> Scan<'_, sled::IVec> {
        let iter = self.tree(table).range::<Vec<u8>, _>(range);
        let map = |entry: sled::Result<(sled::IVec, sled::IVec)>| entry.map_err(StorageError::from);
        match reverse {
            true => Box::new(iter.rev().map(map)),
            false => Box::new(iter.map(map)),
        }
    }

    async fn commit<T, F, C, D>(&self, write: F, after: After<C, D>) -> Result<Committed<T>>
    where
        F: Fn(&dyn WriteTx) -> std::result::Result<T, TxError> + Send + 'static,
        C: FnOnce(&T) + Send + 'static,
        D: FnOnce(&T) + Send + 'static,
        T: Send + 'static,
    {
        self.committer.write(write, after).await
    }

    fn page_token_key(&self) -> PageTokenKey {
        self.page_token_key
    }

    fn size(&self) -> std::result::Result<u64, StorageError> {
        Ok(self.db.size_on_disk()?)
    }

    async fn close(&self) -> Result<()> {
        let flushed = self.db.flush_async().await;
        flushed
            .map(|_| ())
            .map_err(|e| Error::Internal(e.to_string()))
    }

    fn flush_count(&self) -> u64 {
        self.committer.flush_count()
    }
}
