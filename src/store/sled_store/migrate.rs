//! The data-directory migrations run at open, one step per format
//! version ([`super::DIR_FORMAT_VERSION`]); each is safe to repeat, so a
//! crash in the middle is recovered by the next open.

use super::schema::{claim_record, log_entry, sha_index_key, LOG_ENTRY_LEN};
use super::*;
use crate::domain::{chain, Claim, ClaimEvent, EventDetails};
use prost::Message;

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

/// Brings the directory in `db` to [`DIR_FORMAT_VERSION`], one step per
/// version it is behind, and records the version (the caller flushes).
pub(super) fn migrate(
    dir: &Path,
    db: &sled::Db,
    meta: &sled::Tree,
) -> std::result::Result<(), OpenError> {
    let other = |cause: sled::Error| OpenError::Other {
        dir: dir.to_path_buf(),
        cause: cause.to_string(),
    };
    let by_sha256 = db.open_tree(schema::CLAIMS_BY_SHA256).map_err(other)?;
    let found = read_format_version(dir, meta)?.unwrap_or(DIR_FORMAT_VERSION);
    if found > DIR_FORMAT_VERSION {
        return Err(OpenError::TooNew {
            dir: dir.to_path_buf(),
            found,
            supported: DIR_FORMAT_VERSION,
        });
    }
    if found < 2 {
        migrate_sha256_index(&by_sha256).map_err(other)?;
        let claims = db.open_tree(schema::CLAIMS).map_err(other)?;
        let last = claims.last().map_err(other)?;
        let last_id = last.map(|(key, _)| u64_at(&key, 0)).unwrap_or(0);
        meta.insert(META_LAST_CLAIM_ID, &be(last_id))
            .map_err(other)?;
    }
    let events = db.open_tree(schema::EVENTS).map_err(other)?;
    let event_log = db.open_tree(schema::EVENT_LOG).map_err(other)?;
    if found < 3 {
        let last = build_event_log(&events, &event_log).map_err(other)?;
        meta.insert(META_LAST_LOG_POSITION, &be(last))
            .map_err(other)?;
    }
    if found < 4 {
        let claims = db.open_tree(schema::CLAIMS).map_err(other)?;
        let responses = db.open_tree(schema::RESPONSES).map_err(other)?;
        seal_chains(&claims, &events, &responses, &event_log).map_err(other)?;
    }
    if found < 5 {
        let claims = db.open_tree(schema::CLAIMS).map_err(other)?;
        let responses = db.open_tree(schema::RESPONSES).map_err(other)?;
        copy_latest_responses(&claims, &responses).map_err(other)?;
    }
    if found < DIR_FORMAT_VERSION {
        tracing::info!(
            from = found,
            to = DIR_FORMAT_VERSION,
            "migrated data directory"
        );
    }
    meta.insert(META_FORMAT_VERSION, &DIR_FORMAT_VERSION.to_be_bytes())
        .map_err(other)?;
    Ok(())
}
