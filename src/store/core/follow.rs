//! Following the other processes' writes on a shared engine (PostgreSQL
//! replicas over one database).
//!
//! Every process commits under the engine's write order (PostgreSQL: one
//! advisory lock), so claim ids and log positions are given out in commit
//! order, and a reader that sees id or position `n` has seen everything
//! below it. Derived state follows the tables from there:
//!
//! - **The PDQ index** indexes the `claims_by_pdq` entries above the
//!   highest claim id it holds. Every search (FindSimilarClaims, a
//!   registration's same-image claims) first catches up this way, so it
//!   sees every registration acknowledged before it began, by any process;
//!   the background follower keeps the index close to the tables between
//!   searches. The process's own commits do not index directly (that could
//!   skip another process's claim below its own).
//! - **Watchers** learn the log's newest position from the background
//!   follower, woken by the engine when another process commits
//!   (PostgreSQL's LISTEN/NOTIFY) and polling at the engine's interval
//!   otherwise; their own process's writes wake them at once, as on any
//!   engine.
//! - **Health**: while the follower cannot read the log (the database is
//!   down or unreachable), the store reports itself not writable, so
//!   health says NOT_SERVING; it says SERVING again once a read succeeds.
//! - **The status and claim caches** are off: they could not be told of
//!   another process's write before serving a stale value without a read
//!   of the database, which is what they would save. Every read goes to the
//!   database and sees every acknowledged write.

use std::ops::Bound;
use std::sync::{Arc, PoisonError, RwLock};

use super::derived::{pdq_row, Background, Derived, IndexBuildState, PdqIndexes};
use crate::domain::Result;
use crate::store::engine::{all, Engine};
use crate::store::schema::{be, u64_at, Table};
use crate::store::Writability;

/// Indexes the `claims_by_pdq` entries above the index's highest claim id.
pub(super) fn catch_up_index<E: Engine>(engine: &E, indexes: &RwLock<PdqIndexes>) -> Result<()> {
    let through = indexes
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .through;
    let range = (Bound::Excluded(be(through).to_vec()), Bound::Unbounded);
    let mut new = Vec::new();
    for entry in engine.scan(Table::ClaimsByPdq, range, false) {
        let (key, value) = entry.map_err(|e| e.at("claims_by_pdq"))?;
        new.extend(pdq_row(key.as_ref(), value.as_ref()));
    }
    if new.is_empty() {
        return Ok(());
    }
    let mut indexes = indexes.write().unwrap_or_else(PoisonError::into_inner);
    for (id, hash, quality) in new {
        // Another catch-up may have indexed it meanwhile.
        if id > indexes.through {
            indexes.insert(id, hash, quality);
        }
    }
    Ok(())
}

/// The newest position in the event log (0: none).
pub(super) fn log_position<E: Engine>(engine: &E) -> Result<u64> {
    let last = engine
        .first(Table::EventLog, all(), true)
        .map_err(|e| e.at("event_log"))?;
    Ok(last.map_or(0, |(key, _)| u64_at(key.as_ref(), 0)))
}

/// Starts the background follower of a shared engine. While it cannot
/// read the log, `writability` says so (health: NOT_SERVING).
pub(super) fn start<E: Engine>(
    engine: Arc<E>,
    derived: Derived,
    index: IndexBuildState,
    writability: Arc<tokio::sync::watch::Sender<Writability>>,
) -> std::io::Result<Background> {
    Background::spawn("log-follower", move |stopping| {
        let mut failing = false;
        while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
            engine.await_commits(stopping);
            let followed = log_position(&*engine).and_then(|position| {
                if index.is_ready() {
                    catch_up_index(&*engine, &derived.pdq_index)?;
                }
                derived.log_durable(position);
                Ok(())
            });
            match (followed, failing) {
                (Ok(()), true) => {
                    tracing::info!("following the shared log again");
                    writability.send_replace(Writability::Writable);
                    failing = false;
                }
                (Err(err), false) => {
                    tracing::warn!(error = %err, "cannot follow the shared log; retrying");
                    writability.send_replace(Writability::Failed(format!(
                        "the shared database cannot be read: {err}"
                    )));
                    failing = true;
                }
                _ => {}
            }
        }
    })
}
