//! Keeping the index up to date: a task that follows the store's event
//! log (woken by each durable write, as watchers are; on a shared database
//! by the log follower) and polls the review log, re-indexes the claims
//! and reviews that changed, and commits with the log positions reached.
//! A full build (a new index, another version, `photoclaim reindex`)
//! reads every claim and review and then follows the logs from the
//! positions it started at.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use tantivy::{TantivyDocument, Term};

use super::document::Target;
use super::{payload, Indexed, SearchError, SearchIndex};
use crate::domain::Error;
use crate::store::{EventFilter, Store};

/// How often the review log is looked at when no write wakes the task.
const POLL: Duration = Duration::from_millis(250);
/// Least time between two commits of the index: writes in the meantime
/// are committed together. Each commit writes and syncs a segment and
/// feeds the merges, and shares the disk with the store's own syncs: at
/// 100 ms, durable registrations ran at half their rate under load.
const MIN_COMMIT_INTERVAL: Duration = Duration::from_millis(400);
/// Log entries read per call.
const LOG_BATCH: usize = 4096;
/// Claims or reviews read per page during a full build.
const BUILD_PAGE: usize = 500;
/// Wait after a failure before trying again.
const RETRY: Duration = Duration::from_secs(1);

impl From<Error> for SearchError {
    fn from(err: Error) -> Self {
        SearchError(err.to_string())
    }
}

/// The running indexer: stops when dropped.
pub struct Indexer {
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Indexer {
    /// Stops the task and waits for it.
    pub async fn stop(mut self) {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Indexer {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// Starts keeping `index` up to date with `store` (on the current tokio
/// runtime).
pub fn start<S: Store>(index: Arc<SearchIndex>, store: Arc<S>) -> Indexer {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(run(index, store, stopped));
    Indexer {
        stop,
        task: Some(task),
    }
}

async fn run<S: Store>(
    index: Arc<SearchIndex>,
    store: Arc<S>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        match follow(&index, &*store, &mut stop).await {
            Ok(()) => return,
            Err(err) => {
                tracing::warn!(error = %err, "the search index cannot follow the store; retrying");
                let _ = rollback(&index).await;
                tokio::select! {
                    _ = tokio::time::sleep(RETRY) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }
}

async fn follow<S: Store>(
    index: &Arc<SearchIndex>,
    store: &S,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<(), SearchError> {
    let mut durable = store.durable_log();
    let committed = *index.indexed.borrow();
    let log_head = *durable.borrow();
    let review_head = store.review_log_head().await?;
    if committed.claims > log_head || committed.reviews > review_head {
        tracing::warn!(
            indexed = committed.claims,
            log = log_head,
            "the search index is ahead of the store's log (a restored or replaced data directory); rebuilding it"
        );
        index.rebuild.store(true, Ordering::SeqCst);
    }
    if index.rebuild.load(Ordering::SeqCst) {
        build(index, store).await?;
    }
    let mut woken = true;
    loop {
        let started = Instant::now();
        let target = *durable.borrow_and_update();
        catch_up(index, store, target).await?;
        if !index.indexed.borrow().ready {
            index.indexed.send_modify(|i| i.ready = true);
            tracing::info!(position = target, "the search index is ready");
        }
        if *stop.borrow() {
            return Ok(());
        }
        let spent = started.elapsed();
        if spent < MIN_COMMIT_INTERVAL {
            tokio::select! {
                _ = tokio::time::sleep(MIN_COMMIT_INTERVAL - spent) => {}
                _ = stop.changed() => return Ok(()),
            }
        }
        tokio::select! {
            changed = durable.changed(), if woken => woken = changed.is_ok(),
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.changed() => return Ok(()),
        }
    }
}

/// Indexes what changed up to event log position `target` and the review
/// log's end, and commits.
async fn catch_up<S: Store>(
    index: &Arc<SearchIndex>,
    store: &S,
    target: u64,
) -> Result<(), SearchError> {
    let from = *index.indexed.borrow();
    let mut claims = BTreeSet::new();
    let mut position = from.claims;
    let all = EventFilter::default();
    while position < target {
        let batch = store.log_events(position, target, &all, LOG_BATCH).await?;
        claims.extend(batch.events.iter().map(|e| e.claim_id));
        position = batch.examined_to.max(position + 1).min(target);
    }
    let mut reviews = BTreeSet::new();
    let mut review_position = from.reviews;
    loop {
        let changes = store.review_log(review_position, LOG_BATCH).await?;
        let Some((last, _)) = changes.last() else {
            break;
        };
        review_position = *last;
        reviews.extend(changes.iter().map(|(_, c)| c.review_id));
    }
    if position == from.claims && review_position == from.reviews {
        return Ok(());
    }
    let mut docs = Vec::with_capacity(claims.len() + reviews.len());
    for id in claims {
        if let Some(doc) = claim_document(index, store, id).await? {
            docs.push((Target::Claim(id), doc));
        }
    }
    for id in reviews {
        if let Some(review) = store.get_review(id).await? {
            docs.push((Target::Review(id), index.fields.review(&review)));
        }
    }
    let reached = Indexed {
        claims: position,
        reviews: review_position,
        ready: from.ready,
    };
    write(index, docs, Some(reached)).await
}

/// A claim's document, read from the store (`None`: no such claim).
async fn claim_document<S: Store>(
    index: &SearchIndex,
    store: &S,
    id: u64,
) -> Result<Option<TantivyDocument>, SearchError> {
    let Some(view) = store.get_claim(id).await? else {
        return Ok(None);
    };
    let mut responses = Vec::new();
    if view.latest_response.is_some() {
        let mut after = None;
        loop {
            let page = store.list_responses(id, after, 1000).await?;
            responses.extend(page.items);
            match page.next_cursor {
                Some(cursor) => after = Some(cursor),
                None => break,
            }
        }
    }
    Ok(Some(index.fields.claim(&view, &responses)))
}

/// Replaces the documents of `docs`' targets; with `commit`, commits with
/// those positions and makes the result searchable.
async fn write(
    index: &Arc<SearchIndex>,
    docs: Vec<(Target, TantivyDocument)>,
    commit: Option<Indexed>,
) -> Result<(), SearchError> {
    let index = Arc::clone(index);
    tokio::task::spawn_blocking(move || {
        let mut writer = index.writer.lock().unwrap_or_else(PoisonError::into_inner);
        for (target, doc) in docs {
            writer.delete_term(Term::from_field_u64(index.fields.uid, target.uid()));
            writer.add_document(doc)?;
        }
        if let Some(reached) = commit {
            let mut prepared = writer.prepare_commit()?;
            prepared.set_payload(&payload(reached));
            prepared.commit()?;
            drop(writer);
            index.reader.reload()?;
            index.indexed.send_replace(reached);
        }
        Ok(())
    })
    .await
    .map_err(|e| SearchError(format!("the index writer failed: {e}")))?
}

async fn rollback(index: &Arc<SearchIndex>) -> Result<(), SearchError> {
    let index = Arc::clone(index);
    tokio::task::spawn_blocking(move || {
        let mut writer = index.writer.lock().unwrap_or_else(PoisonError::into_inner);
        writer.rollback()?;
        Ok(())
    })
    .await
    .map_err(|e| SearchError(format!("the index writer failed: {e}")))?
}

/// Builds the index from scratch: every claim and review as they are now,
/// committed at the log positions read first (what changed since is
/// caught up after).
pub async fn build<S: Store>(index: &Arc<SearchIndex>, store: &S) -> Result<Indexed, SearchError> {
    let started = Instant::now();
    tracing::info!("building the search index");
    let claims_at = *store.durable_log().borrow();
    let reviews_at = store.review_log_head().await?;
    {
        let index = Arc::clone(index);
        tokio::task::spawn_blocking(move || -> Result<(), SearchError> {
            let writer = index.writer.lock().unwrap_or_else(PoisonError::into_inner);
            writer.delete_all_documents()?;
            Ok(())
        })
        .await
        .map_err(|e| SearchError(format!("the index writer failed: {e}")))??;
    }
    let mut claims = 0u64;
    let mut after = None;
    loop {
        let page = store.list_claims_oldest_first(after, BUILD_PAGE).await?;
        let mut docs = Vec::with_capacity(page.items.len());
        for view in &page.items {
            let id = view.claim.id;
            let doc = match view.latest_response.is_some() {
                true => claim_document(index, store, id).await?,
                false => Some(index.fields.claim(view, &[])),
            };
            docs.extend(doc.map(|d| (Target::Claim(id), d)));
        }
        claims += docs.len() as u64;
        write(index, docs, None).await?;
        if claims % 100_000 < BUILD_PAGE as u64 && claims >= 100_000 {
            tracing::info!(claims, "building the search index");
        }
        match page.next_cursor {
            Some(cursor) => after = Some(cursor),
            None => break,
        }
    }
    let mut reviews = 0u64;
    let mut before = None;
    loop {
        let page = store.list_reviews(before, BUILD_PAGE).await?;
        let docs: Vec<_> = page
            .items
            .iter()
            .map(|r| (Target::Review(r.id), index.fields.review(r)))
            .collect();
        reviews += docs.len() as u64;
        write(index, docs, None).await?;
        match page.next_cursor {
            Some(cursor) => before = Some(cursor),
            None => break,
        }
    }
    let reached = Indexed {
        claims: claims_at,
        reviews: reviews_at,
        ready: false,
    };
    write(index, Vec::new(), Some(reached)).await?;
    index.rebuild.store(false, Ordering::SeqCst);
    tracing::info!(
        claims,
        reviews,
        seconds = started.elapsed().as_secs_f64(),
        "built the search index"
    );
    Ok(reached)
}

impl SearchIndex {
    /// Builds the index from scratch from `store` now (`photoclaim
    /// reindex`), then catches up with the logs once.
    pub async fn rebuild_from<S: Store>(
        self: &Arc<Self>,
        store: &S,
    ) -> Result<Indexed, SearchError> {
        build(self, store).await?;
        let target = *store.durable_log().borrow();
        catch_up(self, store, target).await?;
        Ok(*self.indexed.borrow())
    }
}
