//! [`SledStore`]: the sled backend as servers and tools use it, the core
//! over one [`SledEngine`] behind a handle that guards the disk and can swap the
//! engine in-process.
//!
//! - **Disk space is checked before sled sees a write.** While the data
//!   directory's file system has less than `min_free_bytes` free, writes are
//!   refused with `ResourceExhausted` naming the full disk and reads are
//!   served; writes resume by themselves once space is freed. A filling disk
//!   thus normally never reaches sled.
//! - **A failed write to disk is recovered without a restart.** sled keeps
//!   the error of a failed disk write and refuses every later write until it
//!   is opened again. After a write fails, the handle asks the engine whether
//!   that happened (`SledEngine::failed_write`); if so, writes are refused
//!   (`ResourceExhausted` while the disk is full, `Unavailable` otherwise)
//!   while reads go on, and a background task waits for free space, lets the
//!   calls in flight finish, closes the engine and opens the directory
//!   again. sled's recovery keeps every acknowledged write (each was flushed
//!   before it was acknowledged) and drops the torn end of the log.
//!
//! [`Store::writability`] tells the server's health service and metrics.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{watch, RwLock};

use super::{OpenError, SledEngine};
use crate::domain::access::ApiKey;
use crate::domain::chain;
use crate::domain::external_review::ExternalReview;
use crate::domain::history::ClaimHistory;
use crate::domain::{
    ClaimEvent, ClaimView, Error, OfficialResponse, Page, Result, StatusView, VerificationState,
};
use crate::store::core::{Core, CoreOptions};
use crate::store::{
    Attached, EventFilter, ImportedReview, LogBatch, NewClaim, NewResponse, NewVerdict,
    PageTokenKey, Registered, RequestRecord, ReviewChange, Similar, SimilarQuery, Store,
    StoreStats, Writability,
};

/// Free space that writes leave on the data directory's file system by
/// default (`serve --min-free-disk-mb`).
pub const DEFAULT_MIN_FREE_DISK_BYTES: u64 = 64 << 20;

/// How long a call waits for a reopening engine before `Unavailable`.
const REOPEN_WAIT: Duration = Duration::from_secs(5);

/// How long a reopening waits for the calls in flight to let go of the
/// old engine before it tries again later.
const DRAIN_WAIT: Duration = Duration::from_secs(30);

/// How often a store that refuses writes looks at the disk again.
const RECOVERY_POLL: Duration = Duration::from_millis(500);

/// Free space a store stopped by a full disk waits for before it reopens
/// when writes keep no reserve (`min_free_bytes` 0).
const REOPEN_MIN_FREE_BYTES: u64 = 1 << 20;

/// The sled store: see the module documentation.
pub struct SledStore {
    shared: Arc<Shared>,
}

struct Shared {
    dir: PathBuf,
    /// How the engine was opened, to open it the same way again.
    settings: Mutex<Settings>,
    /// `None` only while a reopening found no engine it could open.
    engine: RwLock<Option<Arc<Core<SledEngine>>>>,
    /// Durable log positions, shared by every engine opened here, so that
    /// watchers stay subscribed across a reopening.
    durable_log: Arc<watch::Sender<u64>>,
    writability: watch::Sender<Writability>,
    /// The engine refuses writes until it is opened again.
    needs_reopen: AtomicBool,
    /// A recovery task runs.
    recovering: AtomicBool,
    page_token_key: PageTokenKey,
}

#[derive(Clone, Copy)]
struct Settings {
    cache_bytes: u64,
    build_index: bool,
    /// Set by [`SledStore::with_caches`].
    caches: Option<(u64, u64)>,
    min_free_bytes: u64,
}

impl SledStore {
    /// Opens (or creates) the store in `dir` and starts its write
    /// committer's thread.
    pub fn open(dir: &Path) -> std::result::Result<Self, OpenError> {
        Self::open_with_cache(dir, super::DEFAULT_CACHE_BYTES)
    }

    /// Like [`SledStore::open`], with sled's page cache bounded to
    /// `cache_bytes`: a one-pass reader (an export) that keeps the default
    /// cache would hold every page it has read, so that its memory would
    /// grow with the data.
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> std::result::Result<Self, OpenError> {
        Self::open_inner(dir, cache_bytes, true)
    }

    /// Like [`SledStore::open_with_cache`], for offline tools that never
    /// search by similarity (export, backup, key management): the PDQ index
    /// is not built, so a million-claim directory costs them no index build.
    /// Registrations and similarity searches on such a store fail with
    /// [`Error::Internal`].
    pub fn open_without_index(
        dir: &Path,
        cache_bytes: u64,
    ) -> std::result::Result<Self, OpenError> {
        Self::open_inner(dir, cache_bytes, false)
    }

    fn open_inner(
        dir: &Path,
        cache_bytes: u64,
        build_index: bool,
    ) -> std::result::Result<Self, OpenError> {
        let engine = open_core(dir, cache_bytes, build_index, None)?;
        let durable_log = engine.durable_log_sender();
        let page_token_key = engine.page_token_key();
        Ok(SledStore {
            shared: Arc::new(Shared {
                dir: dir.to_path_buf(),
                settings: Mutex::new(Settings {
                    cache_bytes,
                    build_index,
                    caches: None,
                    min_free_bytes: DEFAULT_MIN_FREE_DISK_BYTES,
                }),
                engine: RwLock::new(Some(Arc::new(engine))),
                durable_log,
                writability: watch::Sender::new(Writability::Writable),
                needs_reopen: AtomicBool::new(false),
                recovering: AtomicBool::new(false),
                page_token_key,
            }),
        })
    }

    /// Bounds the in-process status and claim caches to `status_bytes` and
    /// `claim_bytes` (0 turns one off) and fills them on a background
    /// thread with the newest claims (see [`Core::with_caches`]); a
    /// reopened engine gets the same.
    pub fn with_caches(self, status_bytes: u64, claim_bytes: u64) -> Self {
        self.settings().caches = Some((status_bytes, claim_bytes));
        let mut slot = self.shared.engine.try_write().expect("not shared yet");
        if let Some(engine) = slot.take() {
            let engine = Arc::try_unwrap(engine)
                .unwrap_or_else(|_| unreachable!("a new store's engine is not shared"));
            *slot = Some(Arc::new(engine.with_caches(status_bytes, claim_bytes)));
        }
        drop(slot);
        self
    }

    /// Writes leave at least `bytes` free on the data directory's file
    /// system (0: sled's own failure on a full disk is the only limit).
    pub fn with_min_free_disk(self, bytes: u64) -> Self {
        self.settings().min_free_bytes = bytes;
        self
    }

    /// Flushes performed by the committer so far (diagnostics and tests).
    pub fn flush_count(&self) -> u64 {
        self.shared
            .engine
            .try_read()
            .ok()
            .and_then(|slot| slot.as_ref().map(|engine| engine.flush_count()))
            .unwrap_or(0)
    }

    /// Waits until the PDQ index built at open is ready (see
    /// [`Core::pdq_index_ready`]).
    pub async fn pdq_index_ready(&self) -> Result<()> {
        self.shared.engine().await?.pdq_index_ready().await
    }

    fn settings(&self) -> std::sync::MutexGuard<'_, Settings> {
        self.shared.settings()
    }

    /// Runs the write `op` on the engine: refused up front while the disk
    /// is full or the engine must be reopened; a failure that sled keeps
    /// (a failed disk write) starts the recovery.
    async fn write<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: FnOnce(Arc<Core<SledEngine>>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.shared.admit_write()?;
        let engine = self.shared.engine().await?;
        let result = op(Arc::clone(&engine)).await;
        if let Err(Error::Internal(cause)) = &result {
            if let Some(kept) = engine.engine().failed_write().await {
                tracing::error!(
                    error = %kept,
                    cause = %cause,
                    "a write to disk failed; writes are refused until the store is reopened"
                );
                return Err(self.shared.write_failed(&kept));
            }
        }
        result
    }

    /// Runs the read `op` on the engine.
    async fn read<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: FnOnce(Arc<Core<SledEngine>>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        op(self.shared.engine().await?).await
    }
}

impl Shared {
    fn settings(&self) -> std::sync::MutexGuard<'_, Settings> {
        // The settings are plain values: a panic elsewhere leaves them whole.
        self.settings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The engine, waiting for a reopening in progress (at most
    /// [`REOPEN_WAIT`]).
    async fn engine(&self) -> Result<Arc<Core<SledEngine>>> {
        let slot = tokio::time::timeout(REOPEN_WAIT, self.engine.read()).await;
        slot.ok().and_then(|slot| slot.clone()).ok_or_else(|| {
            Error::Unavailable(
                "the store is being reopened after a failed write to disk; retry shortly".into(),
            )
        })
    }

    /// Free space of the data directory's file system, also reported in
    /// metrics; `None` if the system cannot tell (writes are then taken).
    fn disk_free(&self) -> Option<u64> {
        match fs2::available_space(&self.dir) {
            Ok(free) => {
                crate::metrics::global().disk_free(free);
                Some(free)
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the data directory's free space");
                None
            }
        }
    }

    /// Refuses a write while the store refuses writes, or when the disk is
    /// below its reserve now.
    fn admit_write(self: &Arc<Self>) -> Result<()> {
        let min_free_bytes = self.settings().min_free_bytes;
        if self.needs_reopen.load(Ordering::Acquire) {
            return Err(refusal(&self.writability.borrow(), UNCHANGED));
        }
        if min_free_bytes == 0 {
            return Ok(());
        }
        match self.disk_free() {
            Some(free_bytes) if free_bytes < min_free_bytes => {
                let state = Writability::DiskFull {
                    free_bytes,
                    min_free_bytes,
                };
                let err = refusal(&state, UNCHANGED);
                self.set_writability(state);
                self.start_recovery();
                Err(err)
            }
            _ => {
                if *self.writability.borrow() != Writability::Writable {
                    self.set_writability(Writability::Writable);
                }
                Ok(())
            }
        }
    }

    /// The engine keeps the failure `kept` of a disk write: writes are
    /// refused until it is reopened. The error for the write that failed.
    fn write_failed(self: &Arc<Self>, kept: &sled::Error) -> Error {
        self.needs_reopen.store(true, Ordering::Release);
        let state = if is_disk_full(kept) {
            Writability::DiskFull {
                free_bytes: self.disk_free().unwrap_or(0),
                min_free_bytes: self.settings().min_free_bytes,
            }
        } else {
            Writability::Failed(kept.to_string())
        };
        let err = refusal(&state, MAYBE_SAVED);
        self.set_writability(state);
        self.start_recovery();
        err
    }

    fn set_writability(&self, state: Writability) {
        let writable = state == Writability::Writable;
        let changed = self.writability.send_if_modified(|now| {
            let changed = *now != state;
            *now = state.clone();
            changed
        });
        crate::metrics::global().storage_writable(writable);
        if changed {
            match &state {
                Writability::Writable => tracing::info!("writes are taken again"),
                Writability::DiskFull {
                    free_bytes,
                    min_free_bytes,
                } => tracing::error!(
                    free_bytes,
                    min_free_bytes,
                    dir = %self.dir.display(),
                    "the data directory's disk is full: writes are refused, reads are served"
                ),
                Writability::Failed(cause) => tracing::error!(
                    %cause,
                    "a write to disk failed: writes are refused while the store reopens"
                ),
            }
        }
    }

    /// Starts the task that brings writes back, unless one runs.
    fn start_recovery(self: &Arc<Self>) {
        if self.recovering.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(self);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(recover(weak));
            }
            // Offline tools run writes on a runtime; without one, the next
            // write looks at the disk again.
            Err(_) => self.recovering.store(false, Ordering::Release),
        }
    }

    /// Closes the engine once the calls in flight let go of it and opens
    /// the directory again. New calls wait meanwhile.
    async fn reopen(&self) -> std::result::Result<(), String> {
        let mut slot = self.engine.write().await;
        if let Some(old) = slot.take() {
            let mut old = old;
            let deadline = tokio::time::Instant::now() + DRAIN_WAIT;
            let engine = loop {
                match Arc::try_unwrap(old) {
                    Ok(engine) => break engine,
                    Err(shared) if tokio::time::Instant::now() >= deadline => {
                        *slot = Some(shared);
                        return Err("calls in flight still use the store".into());
                    }
                    Err(shared) => {
                        old = shared;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            };
            // Dropping joins the engine's threads and closes sled.
            tokio::task::spawn_blocking(move || drop(engine))
                .await
                .map_err(|e| format!("closing the store failed: {e}"))?;
        }
        let settings = *self.settings();
        let dir = self.dir.clone();
        let durable_log = Arc::clone(&self.durable_log);
        let opened = tokio::task::spawn_blocking(move || {
            open_core(
                &dir,
                settings.cache_bytes,
                settings.build_index,
                Some(durable_log),
            )
        })
        .await
        .map_err(|e| format!("opening the store failed: {e}"))?
        .map_err(|e| e.to_string())?;
        let engine = match settings.caches {
            Some((status, claim)) => opened.with_caches(status, claim),
            None => opened,
        };
        *slot = Some(Arc::new(engine));
        Ok(())
    }
}

/// Opens the engine in `dir` and starts the core over it (see
/// [`CoreOptions`]).
fn open_core(
    dir: &Path,
    cache_bytes: u64,
    build_index: bool,
    durable_log: Option<Arc<watch::Sender<u64>>>,
) -> std::result::Result<Core<SledEngine>, OpenError> {
    let engine = SledEngine::open(dir, cache_bytes)?;
    let options = CoreOptions {
        build_index,
        durable_log,
    };
    Core::start(engine, options).map_err(|e| OpenError::Other {
        dir: dir.to_path_buf(),
        cause: e.to_string(),
    })
}

/// Waits until writes can be taken again: for free space, and for a
/// reopening of the engine where it needs one (retried with backoff).
async fn recover(weak: Weak<Shared>) {
    let mut backoff = RECOVERY_POLL;
    loop {
        tokio::time::sleep(backoff).await;
        let Some(shared) = weak.upgrade() else { return };
        let min_free_bytes = shared.settings().min_free_bytes;
        let free = shared.disk_free();
        let disk_full = matches!(*shared.writability.borrow(), Writability::DiskFull { .. });
        if let Some(free_bytes) =
            free.filter(|free| *free < min_free_bytes.max(REOPEN_MIN_FREE_BYTES))
        {
            if disk_full {
                shared.set_writability(Writability::DiskFull {
                    free_bytes,
                    min_free_bytes,
                });
                continue;
            }
        }
        if shared.needs_reopen.load(Ordering::Acquire) {
            let started = std::time::Instant::now();
            match shared.reopen().await {
                Ok(()) => {
                    shared.needs_reopen.store(false, Ordering::Release);
                    crate::metrics::global().storage_reopened();
                    tracing::info!(
                        reopen_ms = started.elapsed().as_millis() as u64,
                        "store reopened after a failed write to disk"
                    );
                }
                Err(cause) => {
                    tracing::warn!(%cause, retry_in_ms = backoff.as_millis() as u64, "cannot reopen the store yet");
                    backoff = (backoff * 2).min(Duration::from_secs(8));
                    continue;
                }
            }
        }
        shared.recovering.store(false, Ordering::Release);
        shared.set_writability(Writability::Writable);
        return;
    }
}

/// Whether sled's error is a full disk (or quota).
fn is_disk_full(err: &sled::Error) -> bool {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    match err {
        sled::Error::Io(io) => {
            io.kind() == std::io::ErrorKind::StorageFull
                || io.kind() == std::io::ErrorKind::QuotaExceeded
                || matches!(io.raw_os_error(), Some(ENOSPC | EDQUOT))
        }
        _ => false,
    }
}

/// What a refused write was told about itself: refused up front, or
/// failed on the disk.
const UNCHANGED: &str = "this write changed nothing";
const MAYBE_SAVED: &str = "this write may not have been saved: retry it with the same request_id";

/// The error for a write refused in `state` (`Writable` only in the moment
/// before a failed write's state is published), with `note` on what became
/// of the write; counted in `photoclaim_storage_writes_refused_total`.
fn refusal(state: &Writability, note: &str) -> Error {
    let metrics = crate::metrics::global();
    match state {
        Writability::DiskFull {
            free_bytes,
            min_free_bytes,
        } => {
            metrics.write_refused("disk_full");
            let reserve = if *min_free_bytes == 0 {
                String::new()
            } else {
                format!(
                    ", below the {} that writes leave free (--min-free-disk-mb)",
                    mib(*min_free_bytes)
                )
            };
            Error::ResourceExhausted(format!(
                "disk full: the data directory's file system has {} free{reserve}. Reads are \
                 served, and writes resume by themselves once space is freed; {note}",
                mib(*free_bytes),
            ))
        }
        Writability::Failed(cause) => reopening(cause, note),
        Writability::Writable => reopening("a write to disk failed", note),
    }
}

fn reopening(cause: &str, note: &str) -> Error {
    crate::metrics::global().write_refused("reopening");
    Error::Unavailable(format!(
        "writes are refused while the store reopens after a failed write to disk ({cause}); \
         retry shortly; {note}"
    ))
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

impl Store for SledStore {
    async fn register_claim(&self, cmd: NewClaim) -> Result<Registered> {
        self.write(|e| async move { e.register_claim(cmd).await })
            .await
    }

    async fn get_claim(&self, id: u64) -> Result<Option<ClaimView>> {
        self.read(|e| async move { e.get_claim(id).await }).await
    }

    async fn get_status(&self, id: u64) -> Result<Option<StatusView>> {
        self.read(|e| async move { e.get_status(id).await }).await
    }

    async fn list_claims(
        &self,
        state: Option<VerificationState>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Page<ClaimView>> {
        self.read(|e| async move { e.list_claims(state, before, limit).await })
            .await
    }

    async fn list_claims_oldest_first(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Page<ClaimView>> {
        self.read(|e| async move { e.list_claims_oldest_first(after, limit).await })
            .await
    }

    async fn attach_response(&self, cmd: NewResponse) -> Result<Attached> {
        self.write(|e| async move { e.attach_response(cmd).await })
            .await
    }

    async fn list_responses(
        &self,
        claim_id: u64,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Page<OfficialResponse>> {
        self.read(|e| async move { e.list_responses(claim_id, after, limit).await })
            .await
    }

    async fn set_verdict(&self, cmd: NewVerdict) -> Result<ClaimView> {
        self.write(|e| async move { e.set_verdict(cmd).await })
            .await
    }

    async fn list_events(
        &self,
        claim_id: u64,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Page<ClaimEvent>> {
        self.read(|e| async move { e.list_events(claim_id, after, limit).await })
            .await
    }

    async fn find_similar(&self, query: SimilarQuery) -> Result<Vec<Similar>> {
        self.read(|e| async move { e.find_similar(query).await })
            .await
    }

    async fn log_events(
        &self,
        after: u64,
        up_to: u64,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<LogBatch> {
        self.read(|e| async move { e.log_events(after, up_to, filter, limit).await })
            .await
    }

    fn durable_log(&self) -> watch::Receiver<u64> {
        self.shared.durable_log.subscribe()
    }

    async fn snapshot_claims(
        &self,
        up_to: u64,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Page<ClaimHistory>> {
        self.read(|e| async move { e.snapshot_claims(up_to, after, limit).await })
            .await
    }

    async fn log_head(&self, position: u64) -> Result<chain::Hash> {
        self.read(|e| async move { e.log_head(position).await })
            .await
    }

    async fn request_records(
        &self,
        after: Option<RequestRecord>,
        limit: usize,
    ) -> Result<Vec<RequestRecord>> {
        self.read(|e| async move { e.request_records(after, limit).await })
            .await
    }

    async fn create_key(&self, key: ApiKey) -> Result<ApiKey> {
        self.write(|e| async move { e.create_key(key).await }).await
    }

    async fn list_keys(&self) -> Result<Vec<ApiKey>> {
        self.read(|e| async move { e.list_keys().await }).await
    }

    async fn revoke_key(&self, name: &str, actor: &str) -> Result<ApiKey> {
        self.write(|e| async move { e.revoke_key(name, actor).await })
            .await
    }

    async fn find_key(&self, id: u64) -> Result<Option<ApiKey>> {
        self.read(|e| async move { e.find_key(id).await }).await
    }

    async fn has_keys(&self) -> Result<bool> {
        self.read(|e| async move { e.has_keys().await }).await
    }

    fn page_token_key(&self) -> PageTokenKey {
        self.shared.page_token_key
    }

    async fn import_reviews(
        &self,
        reviews: Vec<ExternalReview>,
        actor: String,
    ) -> Result<Vec<ImportedReview>> {
        self.write(|e| async move { e.import_reviews(reviews, actor).await })
            .await
    }

    async fn get_review(&self, id: u64) -> Result<Option<ExternalReview>> {
        self.read(|e| async move { e.get_review(id).await }).await
    }

    async fn list_reviews(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Page<ExternalReview>> {
        self.read(|e| async move { e.list_reviews(before, limit).await })
            .await
    }

    async fn review_log(&self, after: u64, limit: usize) -> Result<Vec<(u64, ReviewChange)>> {
        self.read(|e| async move { e.review_log(after, limit).await })
            .await
    }

    async fn review_log_head(&self) -> Result<u64> {
        self.read(|e| async move { e.review_log_head().await })
            .await
    }

    async fn stats(&self) -> Result<StoreStats> {
        let mut stats = self.read(|e| async move { e.stats().await }).await?;
        stats.disk_free_bytes = self.shared.disk_free();
        Ok(stats)
    }

    fn writability(&self) -> watch::Receiver<Writability> {
        self.shared.writability.subscribe()
    }

    async fn close(&self) -> Result<()> {
        self.read(|e| async move { e.close().await }).await
    }
}
