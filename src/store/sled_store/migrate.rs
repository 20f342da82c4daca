//! The data-directory migrations run at open, one step per format
//! version ([`super::DIR_FORMAT_VERSION`]); each is safe to repeat, so a
//! crash in the middle is recovered by the next open.

use super::*;

/// Version 3: gives every stored event a log position, in the order the
/// events were made (by time; a claim's own events keep their sequence order
/// even if the clock went back), and writes `event_log`. Safe to repeat: it
/// starts from an empty log each time. Returns the last position.
pub(super) fn build_event_log(events: &sled::Tree, log: &sled::Tree) -> sled::Result<u64> {
    log.clear()?;
    // (effective time, claim, sequence): about 40 bytes per event.
    let mut order = Vec::new();
    let mut previous: Option<(u64, (i64, i32))> = None;
    for entry in events.iter() {
        let (key, value) = entry?;
        let Ok(event) = ClaimEvent::decode(value.as_ref()) else {
            tracing::error!(key = ?key, "skipping an undecodable event while building the event log");
            continue;
        };
        let time = event.time.map(|t| (t.seconds, t.nanos)).unwrap_or_default();
        let time = match previous {
            Some((claim, before)) if claim == event.claim_id => time.max(before),
            _ => time,
        };
        previous = Some((event.claim_id, time));
        order.push((time, event.claim_id, event.sequence));
    }
    order.sort_unstable();
    let mut log_batch = sled::Batch::default();
    let mut event_batch = sled::Batch::default();
    for (index, &(_, claim_id, sequence)) in order.iter().enumerate() {
        let position = index as u64 + 1;
        let key = pair(claim_id, sequence);
        let Some(bytes) = events.get(key)? else {
            continue;
        };
        let Ok(mut event) = ClaimEvent::decode(bytes.as_ref()) else {
            continue;
        };
        event.log_position = position;
        // Chain heads are filled in by the version 4 migration.
        log_batch.insert(&be(position), &log_entry(&event, &chain::GENESIS)[..]);
        event_batch.insert(&key, event.encode_to_vec());
    }
    events.apply_batch(event_batch)?;
    log.apply_batch(log_batch)?;
    Ok(order.len() as u64)
}

/// Claims per batch of the version 4 migration.
const MIGRATION_BATCH_CLAIMS: usize = 10_000;

/// Version 4: links every stored event into its claim's hash chain (setting
/// `record_sha256` from the records as they are now and `prev_hash`), sets
/// each claim's `chain_head`, then writes the service-wide chain heads into
/// `event_log`. Safe to repeat: every value is computed again from the
/// records, so an interrupted run is finished by the next start.
pub(super) fn seal_chains(
    claims: &sled::Tree,
    events: &sled::Tree,
    responses: &sled::Tree,
    log: &sled::Tree,
) -> sled::Result<()> {
    let mut claim_batch = sled::Batch::default();
    let mut event_batch = sled::Batch::default();
    let mut pending = 0;
    for entry in claims.iter() {
        let (key, value) = entry?;
        let Ok(mut claim) = Claim::decode(value.as_ref()) else {
            tracing::error!(key = ?key, "skipping an undecodable claim while sealing hash chains");
            continue;
        };
        claim.chain_head = Vec::new();
        let id = claim.id;
        for entry in events.range(pair(id, 0)..=pair(id, u64::MAX)) {
            let (event_key, bytes) = entry?;
            let Ok(mut event) = ClaimEvent::decode(bytes.as_ref()) else {
                tracing::error!(
                    claim = id,
                    "skipping an undecodable event while sealing hash chains"
                );
                continue;
            };
            event.record_sha256 = match &event.details {
                Some(EventDetails::Registered(_)) => chain::registered_digest(&claim).to_vec(),
                Some(EventDetails::ResponseAttached(a)) => responses
                    .get(pair(id, a.response_id))?
                    .map(|r| chain::sha256(&r[..]).to_vec())
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            let (bytes, _) = chain::seal(&mut claim, &mut event);
            event_batch.insert(event_key, bytes);
        }
        claim_batch.insert(key, claim.encode_to_vec());
        pending += 1;
        if pending == MIGRATION_BATCH_CLAIMS {
            events.apply_batch(std::mem::take(&mut event_batch))?;
            claims.apply_batch(std::mem::take(&mut claim_batch))?;
            pending = 0;
        }
    }
    events.apply_batch(event_batch)?;
    claims.apply_batch(claim_batch)?;
    let mut head = chain::GENESIS;
    let mut log_batch = sled::Batch::default();
    for (done, entry) in log.iter().enumerate() {
        let (position, value) = entry?;
        if value.len() < 17 {
            continue;
        }
        let Some(bytes) = events.get(&value[..16])? else {
            continue;
        };
        head = chain::link(&head, &chain::sha256(&bytes));
        let mut entry = [0u8; LOG_ENTRY_LEN];
        entry[..17].copy_from_slice(&value[..17]);
        entry[17..].copy_from_slice(&head);
        log_batch.insert(position, &entry[..]);
        if done % (4 * MIGRATION_BATCH_CLAIMS) == 0 {
            log.apply_batch(std::mem::take(&mut log_batch))?;
        }
    }
    log.apply_batch(log_batch)
}

/// Migration to version 5: rewrites every claim record as
/// [`claim_record`], with the copy of its latest response. Records that
/// already have it are left alone, so the step is safe to repeat.
pub(super) fn copy_latest_responses(
    claims: &sled::Tree,
    responses: &sled::Tree,
) -> sled::Result<()> {
    let mut batch = sled::Batch::default();
    let mut pending = 0;
    for entry in claims.iter() {
        let (key, value) = entry?;
        let Ok(claim) = Claim::decode(value.as_ref()) else {
            tracing::error!(key = ?key, "skipping an undecodable claim while copying latest responses");
            continue;
        };
        let total = claim.evidence.as_ref().map_or(0, |e| e.total);
        let latest = match total {
            0 => None,
            n => responses.get(pair(claim.id, n))?,
        };
        let record = claim_record(&claim, latest.as_deref().unwrap_or_default());
        if record != value.as_ref() {
            batch.insert(key, record);
            pending += 1;
        }
        if pending == MIGRATION_BATCH_CLAIMS {
            claims.apply_batch(std::mem::take(&mut batch))?;
            pending = 0;
        }
    }
    claims.apply_batch(batch)
}

/// A claim record and the encoded copy of its latest response.
/// Rewrites version 1's packed `sha256 -> [claim_id]` entries as
/// `sha256 ‖ claim_id` keys, in one atomic batch. Safe to repeat: a
/// directory already migrated has no 32-byte keys.
pub(super) fn migrate_sha256_index(tree: &sled::Tree) -> sled::Result<()> {
    let mut batch = sled::Batch::default();
    for entry in tree.iter() {
        let (key, ids) = entry?;
        let Ok(sha) = <[u8; 32]>::try_from(key.as_ref()) else {
            continue;
        };
        batch.remove(key);
        for chunk in ids.chunks_exact(8) {
            batch.insert(&sha_index_key(&sha, u64_at(chunk, 0))[..], &[]);
        }
    }
    tree.apply_batch(batch)
}
