//! Derived state: what the core keeps in memory beside the tables — the
//! PDQ Hamming indexes, the status and claim caches, and the newest
//! durable log position that watchers follow — and how it is kept.
//!
//! One mechanism for all of it: every committed write hands the core a
//! [`Change`] (the claim as committed, its latest response, its new PDQ
//! hash), and [`Derived::follow`] applies it to every piece of derived
//! state. The engine runs it in commit order (log order), whether or not
//! the write's caller still waits, so two writes to one claim cannot land
//! out of order and a cancelled call cannot skip it. At open, the indexes
//! are built from `claims_by_pdq` and the caches filled from the newest
//! claims, each on a [`Background`] thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use super::super::engine::{all, After, Engine};
use super::super::record_cache::{ClaimCache, StatusCache};
use super::super::schema::{be, claim_view, is_reliable, status_of, u64_at, Table};
use super::super::SharedClaim;
use crate::domain::pdq::Pdq;
use crate::domain::{Claim, ClaimStatus, ClaimView, Error, OfficialResponse, Result, StatusView};
use crate::imaging::pdq_index::PdqIndex;

/// A claim's entry in the PDQ index: id, hash, quality.
pub(super) type IndexEntry = (u64, Pdq, i32);

/// What one committed write changed, for the derived state.
pub(super) struct Change<'a> {
    /// The claim as committed.
    pub(super) claim: &'a Claim,
    /// Its latest response as committed.
    pub(super) latest_response: Option<OfficialResponse>,
    /// A registration's hash, new in the index.
    pub(super) new_hash: Option<IndexEntry>,
}

/// The derived state, shared with the engine's commit steps.
#[derive(Clone)]
pub(super) struct Derived {
    pub(super) status_cache: Arc<StatusCache>,
    pub(super) claim_cache: Arc<ClaimCache>,
    pub(super) pdq_index: Arc<RwLock<PdqIndexes>>,
    pub(super) durable_log: Arc<tokio::sync::watch::Sender<u64>>,
    /// Other processes write too (a shared database): the PDQ index then
    /// follows the tables (`super::follow`), not this process's commits,
    /// and the caches are off.
    pub(super) shared: bool,
}

impl Derived {
    /// Applies a committed write to every piece of derived state.
    ///
    /// Registrations wait for the index to be built before they write. An
    /// insert that rebuilds the index's tables (at 1M claims, one in about
    /// 15,600, a quarter of a second) holds up the writes queued behind it.
    /// A panic inside the lock (none is known) leaves the indexes usable:
    /// every change to them is a single insert, so the poisoned value is
    /// still consistent.
    pub(super) fn follow(&self, change: Change<'_>) {
        let Change {
            claim,
            latest_response,
            new_hash,
        } = change;
        self.status_cache.update(claim.id, || StatusView {
            status: ClaimStatus::from(claim),
            latest_response: latest_response.clone(),
        });
        self.claim_cache.update(claim.id, || {
            SharedClaim::from(ClaimView {
                claim: claim.clone(),
                latest_response,
            })
        });
        if self.shared {
            // The follower indexes every process's registrations in id
            // order; indexing ours here could skip another's below it.
            return;
        }
        if let Some((id, hash, quality)) = new_hash {
            let mut indexes = self
                .pdq_index
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            indexes.insert(id, hash, quality);
        }
    }

    /// The engine's after-steps for a claim write whose result is a `T`:
    /// `follow` applies what it changed (through [`Derived::follow`]) as it
    /// commits, and watchers learn its log position (`position`) once it
    /// is durable. Every claim write goes through this one pair.
    pub(super) fn after<T>(
        &self,
        follow: impl FnOnce(&Derived, &T) + Send + 'static,
        position: impl FnOnce(&T) -> u64 + Send + 'static,
    ) -> After<impl FnOnce(&T) + Send + 'static, impl FnOnce(&T) + Send + 'static> {
        let (committed, durable) = (self.clone(), self.clone());
        After {
            committed: move |out: &T| follow(&committed, out),
            durable: move |out: &T| durable.log_durable(position(out)),
        }
    }

    /// Tells watchers that the log is durable up to `position` (0: the
    /// write added no event): run once a write is durable. Positions
    /// increase in commit order and durability covers every earlier
    /// commit, so everything up to `position` is durable too.
    pub(super) fn log_durable(&self, position: u64) {
        self.durable_log.send_if_modified(|newest| {
            let advanced = position > *newest;
            *newest = (*newest).max(position);
            advanced
        });
    }
}

/// The two Hamming indexes over the claims' PDQ hashes.
#[derive(Default)]
pub(crate) struct PdqIndexes {
    /// Hashes of unknown quality (given by a caller) or at least
    /// [`crate::domain::pdq::MIN_RELIABLE_QUALITY`].
    pub(super) reliable: PdqIndex,
    /// Hashes below [`crate::domain::pdq::MIN_RELIABLE_QUALITY`]: searched only when asked.
    pub(super) low_quality: PdqIndex,
    /// The highest claim id indexed: claim ids are given out in commit
    /// order, so every `claims_by_pdq` entry above it is new to the index.
    pub(super) through: u64,
}

impl PdqIndexes {
    /// Hashes in both indexes.
    pub(super) fn len(&self) -> usize {
        self.reliable.len() + self.low_quality.len()
    }

    /// Builds both indexes from `claims_by_pdq` (start-up). `None` when
    /// `stop` was set before the end.
    pub(super) fn build<E: Engine>(engine: &E, stop: &AtomicBool) -> Result<Option<Self>> {
        let mut reliable = Vec::new();
        let mut low_quality = Vec::new();
        let mut through = 0;
        for (n, entry) in engine.scan(Table::ClaimsByPdq, all(), false).enumerate() {
            if n % 4096 == 0 && stop.load(Ordering::Relaxed) {
                return Ok(None);
            }
            let (key, value) = entry.map_err(|e| e.at("claims_by_pdq"))?;
            let Some((id, hash, quality)) = pdq_row(key.as_ref(), value.as_ref()) else {
                continue;
            };
            let target = if is_reliable(quality) {
                &mut reliable
            } else {
                &mut low_quality
            };
            through = through.max(id);
            target.push((id, hash));
        }
        Ok(Some(PdqIndexes {
            reliable: PdqIndex::from_entries(reliable),
            low_quality: PdqIndex::from_entries(low_quality),
            through,
        }))
    }

    pub(super) fn insert(&mut self, id: u64, hash: Pdq, quality: i32) {
        self.through = self.through.max(id);
        if is_reliable(quality) {
            self.reliable.insert(id, hash);
        } else {
            self.low_quality.insert(id, hash);
        }
    }
}

/// A `claims_by_pdq` entry: claim id, hash, stored quality; `None` (logged)
/// for a malformed one, whose claim cannot be found by similarity.
pub(super) fn pdq_row(key: &[u8], value: &[u8]) -> Option<IndexEntry> {
    if key.len() != 8 || value.len() != 33 {
        tracing::error!(
            key_len = key.len(),
            value_len = value.len(),
            "skipping a malformed claims_by_pdq entry: its claim cannot be found by similarity"
        );
        return None;
    }
    let hash = Pdq(value[..32].try_into().expect("32 bytes"));
    Some((u64_at(key, 0), hash, i32::from(value[32])))
}

/// Where the background build of the PDQ indexes stands.
#[derive(Clone, Debug, PartialEq)]
enum IndexState {
    Building,
    Ready,
    Failed(String),
}

/// The PDQ indexes are built from `claims_by_pdq` on their own thread, so
/// that a large archive serves reads before its million hashes are indexed
/// (reading the table is most of a start-up: BENCHMARKS.md). Everything that
/// uses the index waits for [`IndexBuild::ready`] first, so no registration
/// can insert into the index before the build has put it in place.
pub(super) struct IndexBuild {
    state: tokio::sync::watch::Receiver<IndexState>,
    /// Stopped early when the store is dropped.
    _worker: Background,
}

/// A named thread that is asked to stop and joined when dropped, so that
/// the storage is released (the thread holds the engine) with the store.
pub(super) struct Background {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    /// Runs `work`, which should return soon after its flag is set.
    pub(super) fn spawn(
        name: &str,
        work: impl FnOnce(&AtomicBool) + Send + 'static,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || work(&stopping))?;
        Ok(Background {
            stop,
            thread: Some(thread),
        })
    }

    /// No thread.
    fn none() -> Self {
        Background {
            stop: Arc::new(AtomicBool::new(true)),
            thread: None,
        }
    }

    /// Whether the work is over (or there was none).
    #[cfg(test)]
    pub(super) fn finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl IndexBuild {
    pub(super) fn start<E: Engine>(
        engine: Arc<E>,
        target: Arc<RwLock<PdqIndexes>>,
    ) -> std::io::Result<Self> {
        let (send, state) = tokio::sync::watch::channel(IndexState::Building);
        let worker = Background::spawn("pdq-index-build", move |stopping| {
            let started = std::time::Instant::now();
            let outcome = match PdqIndexes::build(&*engine, stopping) {
                Ok(Some(built)) => {
                    let entries = built.len();
                    *target.write().unwrap_or_else(PoisonError::into_inner) = built;
                    tracing::info!(
                        entries,
                        build_ms = started.elapsed().as_millis() as u64,
                        "PDQ index ready"
                    );
                    IndexState::Ready
                }
                Ok(None) => IndexState::Failed("the store was closed".into()),
                Err(err) => {
                    tracing::error!(error = %err, "cannot build the PDQ index: similarity searches and registrations will fail");
                    IndexState::Failed(err.to_string())
                }
            };
            send.send_replace(outcome);
        })?;
        Ok(IndexBuild {
            state,
            _worker: worker,
        })
    }

    /// No index at all: everything that needs it fails.
    pub(super) fn skipped() -> Self {
        let (_, state) = tokio::sync::watch::channel(IndexState::Failed(
            "this store was opened without it (an offline tool)".into(),
        ));
        IndexBuild {
            state,
            _worker: Background::none(),
        }
    }

    /// A handle on the build's state, for another thread.
    pub(super) fn watch(&self) -> IndexBuildState {
        IndexBuildState(self.state.clone())
    }

    pub(super) async fn ready(&self) -> Result<()> {
        if *self.state.borrow() == IndexState::Ready {
            return Ok(());
        }
        let mut state = self.state.clone();
        let outcome = state
            .wait_for(|s| *s != IndexState::Building)
            .await
            .map(|s| s.clone())
            .unwrap_or_else(|_| IndexState::Failed("the build thread ended".into()));
        match outcome {
            IndexState::Failed(cause) => Err(Error::Internal(format!(
                "the PDQ index could not be built: {cause}"
            ))),
            _ => Ok(()),
        }
    }
}

/// The state of an index build, seen from another thread.
pub(super) struct IndexBuildState(tokio::sync::watch::Receiver<IndexState>);

impl IndexBuildState {
    /// Whether the index is built.
    pub(super) fn is_ready(&self) -> bool {
        *self.0.borrow() == IndexState::Ready
    }
}

/// Fills the status and claim caches from the claims table, newest first,
/// on its own thread, until both are nearly full or every claim is in.
pub(super) struct Warmer;

/// Claims read per batch by [`Warmer`].
pub(super) const WARM_BATCH: usize = 1024;

impl Warmer {
    pub(super) fn start<E: Engine>(
        engine: Arc<E>,
        caches: (Arc<StatusCache>, Arc<ClaimCache>),
    ) -> std::io::Result<Background> {
        Background::spawn("cache-fill", move |stopping| {
            let started = std::time::Instant::now();
            match Self::fill(&*engine, (&caches.0, &caches.1), stopping) {
                Ok((statuses, claims)) => tracing::info!(
                    statuses,
                    claims,
                    fill_ms = started.elapsed().as_millis() as u64,
                    "caches filled"
                ),
                Err(err) => {
                    tracing::warn!(error = %err, "filling the caches stopped; reads fill them instead")
                }
            }
        })
    }

    /// Each batch is read by a scan made after the shards' write epochs
    /// were taken, so a value that a write has since replaced is never put
    /// in (see [`RecordCache::fill`](super::super::record_cache::RecordCache::fill)).
    /// Returns how many statuses and claims it put in.
    pub(super) fn fill<E: Engine>(
        engine: &E,
        (statuses, views): (&StatusCache, &ClaimCache),
        stop: &AtomicBool,
    ) -> Result<(u64, u64)> {
        use std::ops::Bound;
        let mut before = u64::MAX;
        let mut filled = (0, 0);
        loop {
            let fill_statuses = !statuses.nearly_full();
            let fill_claims = !views.nearly_full();
            if stop.load(Ordering::Relaxed) || !(fill_statuses || fill_claims) {
                return Ok(filled);
            }
            let epochs = (statuses.epochs(), views.epochs());
            let mut read = 0;
            let range = (Bound::Unbounded, Bound::Excluded(be(before).to_vec()));
            for entry in engine.scan(Table::Claims, range, true).take(WARM_BATCH) {
                let (key, value) = entry.map_err(|e| match before {
                    u64::MAX => e.at("claims"),
                    _ => e.at(&format!("claims (the entry before claims/{before})")),
                })?;
                let id = u64_at(key.as_ref(), 0);
                if fill_statuses {
                    let status = status_of(value.as_ref(), id)?;
                    filled.0 += u64::from(statuses.fill(id, epochs.0.of(id), status));
                }
                if fill_claims {
                    let claim = SharedClaim::from(claim_view(value.as_ref(), id)?);
                    filled.1 += u64::from(views.fill(id, epochs.1.of(id), claim));
                }
                before = id;
                read += 1;
            }
            if read < WARM_BATCH {
                return Ok(filled);
            }
        }
    }
}
