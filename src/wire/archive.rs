//! The archive format of `AdminService.ExportClaims` and `photoclaim
//! export`: JSON Lines, one object per claim, oldest claim first:
//!
//! ```text
//! {"claim": <Claim>, "officialResponses": [<OfficialResponse>, ...], "events": [<ClaimEvent>, ...]}
//! ```
//!
//! Each part is the API's own message in the canonical proto3 JSON mapping
//! (what grpcurl prints, via [`crate::pb::to_json`]): the claim with its
//! `verificationStatus`, its responses in attachment order and its events in
//! sequence order. A line is consistent with its claim record: it holds the
//! responses and events up to the ones the claim had when it was read, even
//! if more arrive during the export. The export covers the claims that
//! existed when it began.
//!
//! Memory stays constant in the number of claims: claims are read a page at
//! a time, lines go out in chunks of about [`CHUNK_BYTES`] through a bounded
//! channel, and the producer waits while the consumer (a gRPC client's flow
//! control, or a file writer) is behind.

use std::sync::Arc;

use serde_json::json;
use tokio::sync::mpsc;

use crate::domain::{ClaimView, Error, Result};
use crate::pb;
use crate::store::Store;

use super::convert;

/// A chunk is sent once its lines add up to this many bytes (a single
/// longer line goes alone).
pub const CHUNK_BYTES: usize = 512 * 1024;
/// Chunks waiting in the channel before the producer waits.
pub const CHANNEL_CHUNKS: usize = 4;
/// Claims read per store page.
const CLAIMS_PER_PAGE: usize = 100;
/// Responses or events read per store page.
const CHILDREN_PER_PAGE: usize = 500;

/// A chunk of complete lines (without newlines), or the error that ended the export.
pub type Chunk = Result<Vec<String>>;

/// A bounded channel for [`produce`].
pub fn channel() -> (mpsc::Sender<Chunk>, mpsc::Receiver<Chunk>) {
    mpsc::channel(CHANNEL_CHUNKS)
}

/// The line of one claim.
pub async fn claim_line<S: Store>(store: &S, view: &ClaimView) -> Result<String> {
    let claim = &view.claim;
    let response_count = claim.evidence.as_ref().map_or(0, |e| e.total);
    let mut responses = Vec::new();
    let mut after = None;
    let mut more = response_count > 0;
    while more {
        let page = store
            .list_responses(claim.id, after, CHILDREN_PER_PAGE)
            .await?;
        for r in page.items.iter().filter(|r| r.id <= response_count) {
            let out = convert::response_out(r);
            responses.push(pb::to_json(&out, "photoclaim.v1.OfficialResponse"));
        }
        match page.next_cursor {
            Some(next) if next < response_count => after = Some(next),
            _ => more = false,
        }
    }
    let mut events = Vec::new();
    let mut after = None;
    let mut more = claim.last_sequence > 0;
    while more {
        let page = store
            .list_events(claim.id, after, CHILDREN_PER_PAGE)
            .await?;
        for e in page
            .items
            .iter()
            .filter(|e| e.sequence <= claim.last_sequence)
        {
            events.push(pb::to_json(
                &convert::event_out(e),
                "photoclaim.v1.ClaimEvent",
            ));
        }
        match page.next_cursor {
            Some(next) if next < claim.last_sequence => after = Some(next),
            _ => more = false,
        }
    }
    let line = json!({
        "claim": pb::to_json(&convert::claim_out(view), "photoclaim.v1.Claim"),
        "officialResponses": responses,
        "events": events,
    });
    Ok(line.to_string())
}

/// Sends every claim's line, oldest first, in chunks into `tx`; an error is
/// sent as the last item. Stops early (quietly) when the receiver is gone,
/// e.g. when the gRPC client went away. Returns the number of claims sent.
pub async fn produce<S: Store>(store: Arc<S>, tx: mpsc::Sender<Chunk>) -> u64 {
    match produce_lines(&*store, &tx).await {
        Ok(sent) => {
            tracing::info!(claims = sent, "export finished");
            sent
        }
        Err((sent, err)) => {
            tracing::warn!(claims = sent, %err, "export failed");
            let _ = tx.send(Err(err)).await;
            sent
        }
    }
}

async fn produce_lines<S: Store>(
    store: &S,
    tx: &mpsc::Sender<Chunk>,
) -> std::result::Result<u64, (u64, Error)> {
    let mut sent = 0u64;
    // The newest claim when the export began: claims registered during the
    // export are left for the next one, so the export always ends.
    let newest = store
        .list_claims(None, None, 1)
        .await
        .map_err(|e| (0, e))?
        .items
        .first()
        .map_or(0, |v| v.claim.id);
    let mut after = None;
    let mut chunk = Vec::new();
    let mut chunk_bytes = 0;
    'pages: loop {
        let page = store
            .list_claims_oldest_first(after, CLAIMS_PER_PAGE)
            .await
            .map_err(|e| (sent, e))?;
        for view in &page.items {
            if view.claim.id > newest {
                break 'pages;
            }
            let line = claim_line(store, view).await.map_err(|e| (sent, e))?;
            chunk_bytes += line.len();
            chunk.push(line);
            if chunk_bytes >= CHUNK_BYTES {
                let lines = std::mem::take(&mut chunk);
                let count = lines.len() as u64;
                if tx.send(Ok(lines)).await.is_err() {
                    tracing::info!(claims = sent, "export stopped: the receiver went away");
                    return Ok(sent);
                }
                sent += count;
                chunk_bytes = 0;
            }
        }
        match page.next_cursor {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    if !chunk.is_empty() {
        let count = chunk.len() as u64;
        if tx.send(Ok(chunk)).await.is_err() {
            return Ok(sent);
        }
        sent += count;
    }
    Ok(sent)
}
