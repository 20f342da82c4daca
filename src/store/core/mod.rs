//! The core: photoclaim's storage use cases written once, over any
//! [`Engine`]. [`Core`] implements [`Store`]: registration, attachment and
//! verdicts with their idempotency records, etags and hash-chain sealing
//! (`store_impl`), log positions and the event log, similarity over the
//! PDQ index (`similar`), and the derived state that follows every commit
//! (`derived`: caches, the index, the durable log position). Engines only
//! store tables and commit writes atomically ([`super::engine`]).

mod derived;
mod follow;
mod reviews;
mod similar;
mod store_impl;

use std::ops::Bound;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};

use prost::Message;

use super::engine::{span_inclusive, Engine, Scan};
use super::errors::StorageError;
use super::record_cache::{ClaimCache, StatusCache};
use super::schema::{be, claim_view, decode, pair, status_of, u64_at, Table};
use super::{SharedClaim, DEFAULT_CLAIM_CACHE_BYTES, DEFAULT_STATUS_CACHE_BYTES};
use crate::domain::{ClaimView, Error, Page, Result, StatusView};
use derived::{Background, Derived, IndexBuild, PdqIndexes, Warmer};

/// Indexes of up to this many hashes are searched on the calling task: a
/// query takes tens of microseconds, less than handing it to a blocking
/// thread and waking that thread costs.
const INLINE_SEARCH_MAX_HASHES: usize = 65_536;

/// Log entries examined per [`super::Store::log_events`] call at most.
const LOG_SCAN_LIMIT: usize = 4096;

/// The store over an engine: see the module documentation.
pub struct Core<E: Engine> {
    engine: Arc<E>,
    /// Caches, the PDQ index and the durable log position.
    derived: Derived,
    /// The background build of the PDQ index. Until it is ready, the
    /// operations that use the index wait; all others are served.
    index_build: IndexBuild,
    /// Fills both caches at start-up ([`Core::with_caches`]).
    warmer: Option<Background>,
    /// Follows the other processes' writes on a shared engine (`follow`);
    /// stopped and joined when the core is dropped.
    _follower: Option<Background>,
    /// Whether writes can be taken: on a shared engine the follower turns
    /// it `Failed` while the database cannot be reached (health shows
    /// NOT_SERVING) and back once it can; otherwise always writable.
    writability: Arc<tokio::sync::watch::Sender<super::Writability>>,
    /// Whether `api_keys` holds a key. Keys are never deleted (revocation
    /// rewrites them), so this only ever turns true: `has_keys`, asked on
    /// every call without credentials, answers without a read.
    keys_exist: AtomicBool,
    /// Searches of indexes up to this size run on the calling task
    /// ([`INLINE_SEARCH_MAX_HASHES`]; tests lower it).
    inline_search_max_hashes: usize,
    page_token_key: super::PageTokenKey,
}

/// How a [`Core`] starts.
pub(crate) struct CoreOptions {
    /// Build the PDQ index (servers); offline tools skip it.
    pub(crate) build_index: bool,
    /// Report durable positions to this sender (kept across reopenings of
    /// an engine, so that watchers stay subscribed) instead of a new one.
    pub(crate) durable_log: Option<Arc<tokio::sync::watch::Sender<u64>>>,
}

impl<E: Engine> Core<E> {
    /// The core over `engine`: reads what derived state needs and starts
    /// building the PDQ index in the background.
    pub(crate) fn start(engine: E, options: CoreOptions) -> Result<Self> {
        let engine = Arc::new(engine);
        let durable = follow::log_position(&*engine)?;
        let shared = engine.shared();
        let durable_log = match options.durable_log {
            Some(sender) => {
                sender.send_if_modified(|newest| {
                    let newer = durable > *newest;
                    *newest = (*newest).max(durable);
                    newer
                });
                sender
            }
            None => Arc::new(tokio::sync::watch::Sender::new(durable)),
        };
        let pdq_index = Arc::new(RwLock::new(PdqIndexes::default()));
        let index_build = match options.build_index {
            true => IndexBuild::start(Arc::clone(&engine), Arc::clone(&pdq_index))
                .map_err(|e| Error::Internal(format!("cannot start the PDQ index build: {e}")))?,
            false => IndexBuild::skipped(),
        };
        let keys_exist = engine
            .first(Table::ApiKeys, super::engine::all(), false)
            .map_err(|e| e.at("api_keys"))?
            .is_some();
        // A shared engine's caches are off (`follow`).
        let cache_bytes = |bytes| if shared { 0 } else { bytes };
        let derived = Derived {
            status_cache: Arc::new(StatusCache::new(cache_bytes(DEFAULT_STATUS_CACHE_BYTES))),
            claim_cache: Arc::new(ClaimCache::new(cache_bytes(DEFAULT_CLAIM_CACHE_BYTES))),
            pdq_index,
            durable_log,
            shared,
        };
        let writability = Arc::new(tokio::sync::watch::Sender::new(
            super::Writability::Writable,
        ));
        let follower = match shared && options.build_index {
            true => Some(
                follow::start(
                    Arc::clone(&engine),
                    derived.clone(),
                    index_build.watch(),
                    Arc::clone(&writability),
                )
                .map_err(|e| Error::Internal(format!("cannot start the log follower: {e}")))?,
            ),
            false => None,
        };
        Ok(Core {
            page_token_key: engine.page_token_key(),
            engine,
            derived,
            index_build,
            warmer: None,
            _follower: follower,
            writability,
            keys_exist: AtomicBool::new(keys_exist),
            inline_search_max_hashes: INLINE_SEARCH_MAX_HASHES,
        })
    }

    /// Bounds the in-process status and claim caches to `status_bytes` and
    /// `claim_bytes` (0 turns one off; [`DEFAULT_STATUS_CACHE_BYTES`] and
    /// [`DEFAULT_CLAIM_CACHE_BYTES`] otherwise), and fills them on a
    /// background thread with the newest claims until they are nearly full
    /// (a server: random reads over a large archive would take minutes to
    /// fill them).
    pub fn with_caches(mut self, status_bytes: u64, claim_bytes: u64) -> Self {
        if self.derived.shared {
            tracing::info!("the status and claim caches are off on a shared database: every read sees every replica's writes");
            return self;
        }
        self.warmer = None; // stops and joins a running one first
        self.derived.status_cache = Arc::new(StatusCache::new(status_bytes));
        self.derived.claim_cache = Arc::new(ClaimCache::new(claim_bytes));
        if status_bytes > 0 || claim_bytes > 0 {
            let caches = (
                Arc::clone(&self.derived.status_cache),
                Arc::clone(&self.derived.claim_cache),
            );
            self.warmer = Warmer::start(Arc::clone(&self.engine), caches)
                .map_err(|e| tracing::warn!(error = %e, "cannot start filling the caches"))
                .ok();
        }
        self
    }

    /// The engine under this core.
    pub(crate) fn engine(&self) -> &E {
        &self.engine
    }

    /// Durability flushes so far (diagnostics and tests).
    pub fn flush_count(&self) -> u64 {
        self.engine.flush_count()
    }

    /// Waits until the PDQ index built at open is ready. Every use of the
    /// index waits for it by itself; this is for callers that want to know
    /// (start-up benches, tests). Fails if the build failed.
    pub async fn pdq_index_ready(&self) -> Result<()> {
        self.index_build.ready().await
    }

    /// The sender of durable log positions.
    pub(crate) fn durable_log_sender(&self) -> Arc<tokio::sync::watch::Sender<u64>> {
        Arc::clone(&self.derived.durable_log)
    }

    /// Whether the caches' warm-up is over (tests).
    #[cfg(test)]
    pub(crate) fn caches_warmed(&self) -> bool {
        self.warmer.as_ref().is_none_or(Background::finished)
    }

    /// The value at `key`, a failure named `at()`.
    fn get(&self, table: Table, key: &[u8], at: impl Fn() -> String) -> Result<Option<E::Value>> {
        self.engine.get(table, key).map_err(|e| e.at(&at()))
    }

    /// A claim and its copy of the latest response: one lookup.
    pub(crate) fn read_claim(&self, id: u64) -> Result<Option<ClaimView>> {
        match self.get(Table::Claims, &be(id), || format!("claims/{id}"))? {
            Some(bytes) => claim_view(bytes.as_ref(), id).map(Some),
            None => Ok(None),
        }
    }

    /// [`Self::read_claim`] through the claim cache.
    fn cached_claim(&self, id: u64) -> Result<Option<Arc<SharedClaim>>> {
        self.derived
            .claim_cache
            .get_or_read(id, || Ok(self.read_claim(id)?.map(SharedClaim::from)))
    }

    /// [`Self::cached_claim`] of each of `ids`, in order. With the caches
    /// off on a shared engine, in one read of the engine (one round trip
    /// to the database) instead of one per claim.
    pub(super) fn cached_claims(&self, ids: &[u64]) -> Result<Vec<Option<Arc<SharedClaim>>>> {
        if !self.derived.shared {
            return ids.iter().map(|&id| self.cached_claim(id)).collect();
        }
        let keys: Vec<Vec<u8>> = ids.iter().map(|&id| be(id).to_vec()).collect();
        let values = self
            .engine
            .get_many(Table::Claims, &keys)
            .map_err(|e| e.at("claims"))?;
        ids.iter()
            .zip(values)
            .map(|(&id, value)| match value {
                Some(bytes) => Ok(Some(Arc::new(SharedClaim::from(claim_view(
                    bytes.as_ref(),
                    id,
                )?)))),
                None => Ok(None),
            })
            .collect()
    }

    /// The status fields of a claim record and its latest response.
    pub(crate) fn read_status(&self, id: u64) -> Result<Option<StatusView>> {
        match self.get(Table::Claims, &be(id), || format!("claims/{id}"))? {
            Some(bytes) => status_of(bytes.as_ref(), id).map(Some),
            None => Ok(None),
        }
    }

    fn require_claim(&self, id: u64) -> Result<()> {
        match self.get(Table::Claims, &be(id), || format!("claims/{id}"))? {
            Some(_) => Ok(()),
            None => Err(Error::NotFound(format!("claims/{id}"))),
        }
    }

    /// Reads up to `limit` records from `scan`, decoding with `f`; the
    /// cursor is taken from each key by `f` and returned if more may
    /// follow. A failed read of `what` is named by the last cursor read.
    fn page<T>(
        scan: Scan<'_, E::Value>,
        limit: usize,
        what: &str,
        mut f: impl FnMut(&[u8], &[u8]) -> Result<(u64, T)>,
    ) -> Result<Page<T>> {
        let mut items = Vec::new();
        let mut next_cursor = None;
        let mut last = None;
        for entry in scan {
            let (key, value) = entry.map_err(|e: StorageError| match last {
                Some(cursor) => e.at(&format!("{what} (the entry after {cursor})")),
                None => e.at(what),
            })?;
            if items.len() == limit {
                next_cursor = last;
                break;
            }
            let (cursor, item) = f(key.as_ref(), value.as_ref())?;
            last = Some(cursor);
            items.push(item);
        }
        Ok(Page { items, next_cursor })
    }

    /// A claim's responses or events after `after` (`NotFound` without the claim).
    fn list_children<T: Message + Default>(
        &self,
        table: Table,
        claim_id: u64,
        after: Option<u64>,
        limit: usize,
        what: &str,
    ) -> Result<Page<T>> {
        self.require_claim(claim_id)?;
        let start = pair(claim_id, after.unwrap_or(0).saturating_add(1));
        let end = pair(claim_id, u64::MAX);
        let at = format!("claims/{claim_id}/{what}");
        let scan = self.engine.scan(table, span_inclusive(&start, &end), false);
        Self::page(scan, limit, &at, |key, value| {
            let child = u64_at(key, 8);
            Ok((child, decode(value, &format!("{at}/{child}"))?))
        })
    }

    /// Claims newest first below `before`, from `table` whose keys end in
    /// the claim id after `prefix` bytes.
    fn claims_desc(
        &self,
        table: Table,
        range: (Bound<Vec<u8>>, Bound<Vec<u8>>),
        prefix: usize,
        limit: usize,
    ) -> Result<Page<ClaimView>> {
        let scan = self.engine.scan(table, range, true);
        Self::page(scan, limit, table.name(), |key, _| {
            let id = u64_at(key, prefix);
            let view = self
                .read_claim(id)?
                .ok_or_else(|| Error::Internal(format!("index names missing claim {id}")))?;
            Ok((id, view))
        })
    }
}

#[cfg(test)]
impl<E: Engine> Core<E> {
    /// The caches (tests).
    pub(in crate::store) fn caches(&self) -> (&StatusCache, &ClaimCache) {
        (&self.derived.status_cache, &self.derived.claim_cache)
    }

    /// The PDQ indexes (tests).
    pub(crate) fn pdq_index(&self) -> &RwLock<PdqIndexes> {
        &self.derived.pdq_index
    }

    /// Searches every index size off the calling task (tests).
    pub(crate) fn search_off_task(&mut self) {
        self.inline_search_max_hashes = 0;
    }
}
