//! The engine's background threads: the PDQ indexes' build at open
//! ([`IndexBuild`]) and the caches' warm-up ([`Warmer`]), each on a
//! [`Background`] thread that is stopped and joined with the engine.

use super::*;

/// The two Hamming indexes over the claims' PDQ hashes.
#[derive(Default)]
pub(super) struct PdqIndexes {
    /// Hashes of unknown quality (given by a caller) or at least
    /// [`crate::domain::pdq::MIN_RELIABLE_QUALITY`].
    pub(super) reliable: PdqIndex,
    /// Hashes below [`crate::domain::pdq::MIN_RELIABLE_QUALITY`]: searched only when asked.
    pub(super) low_quality: PdqIndex,
}

impl PdqIndexes {
    /// Hashes in both indexes.
    pub(super) fn len(&self) -> usize {
        self.reliable.len() + self.low_quality.len()
    }

    /// Builds both indexes from `claims_by_pdq` (start-up). `None` when
    /// `stop` was set before the end.
    pub(super) fn build(tree: &sled::Tree, stop: &AtomicBool) -> sled::Result<Option<Self>> {
        let mut reliable = Vec::new();
        let mut low_quality = Vec::new();
        for (n, entry) in tree.iter().enumerate() {
            if n % 4096 == 0 && stop.load(Ordering::Relaxed) {
                return Ok(None);
            }
            let (key, value) = entry?;
            if key.len() != 8 || value.len() != 33 {
                tracing::error!(
                    key_len = key.len(),
                    value_len = value.len(),
                    "skipping a malformed claims_by_pdq entry: its claim cannot be found by similarity"
                );
                continue;
            }
            let hash = Pdq(value[..32].try_into().expect("32 bytes"));
            let target = if is_reliable(i32::from(value[32])) {
                &mut reliable
            } else {
                &mut low_quality
            };
            target.push((u64_at(&key, 0), hash));
        }
        Ok(Some(PdqIndexes {
            reliable: PdqIndex::from_entries(reliable),
            low_quality: PdqIndex::from_entries(low_quality),
        }))
    }

    pub(super) fn insert(&mut self, id: u64, hash: Pdq, quality: i32) {
        if is_reliable(quality) {
            self.reliable.insert(id, hash);
        } else {
            self.low_quality.insert(id, hash);
        }
    }
}

/// Where the background build of the PDQ indexes stands.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum IndexState {
    Building,
    Ready,
    Failed(String),
}

/// The PDQ indexes are built from `claims_by_pdq` on their own thread, so
/// that a large archive serves reads before its million hashes are indexed
/// (reading the tree is most of a start-up: BENCHMARKS.md). Everything that
/// uses the index waits for [`IndexBuild::ready`] first, so no registration
/// can insert into the index before the build has put it in place.
pub(super) struct IndexBuild {
    state: tokio::sync::watch::Receiver<IndexState>,
    /// Stopped early when the store is dropped.
    _worker: Background,
}

/// A named thread that is asked to stop and joined when dropped, so that
/// the data directory is released (the thread holds trees) with the store.
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
    pub(super) fn none() -> Self {
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
    pub(super) fn start(
        tree: sled::Tree,
        target: Arc<RwLock<PdqIndexes>>,
    ) -> std::io::Result<Self> {
        let (send, state) = tokio::sync::watch::channel(IndexState::Building);
        let worker = Background::spawn("pdq-index-build", move |stopping| {
            let started = std::time::Instant::now();
            let outcome = match PdqIndexes::build(&tree, stopping) {
                Ok(Some(built)) => {
                    let entries = built.reliable.len() + built.low_quality.len();
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

/// Fills the status and claim caches from the claims tree, newest first,
/// on its own thread, until both are nearly full or every claim is in.
pub(super) struct Warmer;

/// Claims read per batch by [`Warmer`].
pub(super) const WARM_BATCH: usize = 1024;

impl Warmer {
    pub(super) fn start(
        claims: sled::Tree,
        caches: (Arc<StatusCache>, Arc<ClaimCache>),
    ) -> std::io::Result<Background> {
        Background::spawn("cache-fill", move |stopping| {
            let started = std::time::Instant::now();
            match Self::fill(&claims, (&caches.0, &caches.1), stopping) {
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

    /// Each batch is read by an iterator made after the shards' write
    /// epochs were taken, so a value that a write has since replaced is
    /// never put in (see [`RecordCache::fill`](super::record_cache::RecordCache::fill)).
    /// Returns how many statuses and claims it put in.
    pub(super) fn fill(
        claims: &sled::Tree,
        (statuses, views): (&StatusCache, &ClaimCache),
        stop: &AtomicBool,
    ) -> Result<(u64, u64)> {
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
            for entry in claims.range(..be(before)).rev().take(WARM_BATCH) {
                let (key, value) = entry.map_err(|e| match before {
                    u64::MAX => storage(e, "claims"),
                    _ => storage(e, &format!("claims (the entry before claims/{before})")),
                })?;
                let id = u64_at(&key, 0);
                if fill_statuses {
                    let status = status_of(&value, id)?;
                    filled.0 += u64::from(statuses.fill(id, epochs.0.of(id), status));
                }
                if fill_claims {
                    let claim = SharedClaim::from(claim_view(&value, id)?);
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
