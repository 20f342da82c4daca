//! Writes a backup's records into a new data directory (`photoclaim
//! restore`): claims, responses and events as they were, the indexes and
//! the event log built from them, the service-wide chain recomputed and
//! compared with the head the backup recorded.

use std::path::Path;

use prost::Message;

use super::open_db;
use super::DIR_FORMAT_VERSION;
use crate::domain::access::ApiKey;
use crate::domain::chain;
use crate::domain::external_review::ExternalReview;
use crate::domain::history::ClaimHistory;
use crate::domain::FORMAT_VERSION;
use crate::store::schema::{
    self, be, claim_record, log_entry, pair, pdq_entry, request_key, sha_index_key, sha_key,
    state_key, u64_at, IdempotencyRecord, LOG_ENTRY_LEN, META_FORMAT_VERSION, META_LAST_CLAIM_ID,
    META_LAST_LOG_POSITION, META_LAST_REVIEW_ID, META_LAST_REVIEW_POSITION, OP_ATTACH, OP_REGISTER,
};
use crate::store::RequestRecord;
use crate::store::ReviewChange;

/// Claims (or request records, or log entries) written per batch.
const BATCH_CLAIMS: usize = 1000;
/// sled's page cache while restoring: the restore writes each record once
/// and reads back only what it just wrote, so a small cache suffices (with
/// sled's default of 1 GiB a 100,000-claim restore grew past 3 GiB).
const RESTORE_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// What a restore wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// Claims.
    pub claims: u64,
    /// Responses.
    pub responses: u64,
    /// Events.
    pub events: u64,
    /// API keys.
    pub api_keys: u64,
    /// request_id records.
    pub requests: u64,
    /// Imported fact-checks.
    pub external_reviews: u64,
}

/// Builds a data directory from backup records, in the order a backup
/// holds them: claims (ascending id), then API keys and request records,
/// then [`Restorer::finish`].
pub struct Restorer {
    db: sled::Db,
    batches: Vec<(sled::Tree, sled::Batch)>,
    pending: usize,
    /// Every event's log position and the first 17 bytes of its log entry
    /// (claim id, sequence, type), 32 bytes an event: `finish` writes the
    /// log from it in position order. Claims come in id order, so their
    /// events' positions are scattered; writing the log as they came grew
    /// sled's memory to 12.5 GB for a million claims (BENCHMARKS.md,
    /// change 16).
    log: Vec<(u64, [u8; 17])>,
    /// Claims are all written (request records come after them).
    claims_applied: bool,
    last_id: u64,
    restored: Restored,
}

pub(super) fn storage(err: sled::Error) -> String {
    format!("storage error: {err}")
}

/// Indexes into [`Restorer::batches`].
const CLAIMS: usize = 0;
const BY_STATE: usize = 1;
const RESPONSES: usize = 2;
const EVENTS: usize = 3;
const EVENT_LOG: usize = 4;
const BY_SHA256: usize = 5;
const BY_PDQ: usize = 6;
const REQUEST_IDS: usize = 7;
const TREES: [&str; 8] = [
    "claims",
    "claims_by_state",
    "responses",
    "events",
    "event_log",
    "claims_by_sha256",
    "claims_by_pdq",
    "request_ids",
];

impl Restorer {
    /// Starts a restore into `dir`, which must not hold a database.
    pub fn create(dir: &Path) -> Result<Self, String> {
        if dir.join("conf").exists() {
            return Err(format!("{} already holds a database", dir.display()));
        }
        let db = open_db(dir, RESTORE_CACHE_BYTES).map_err(|e| e.to_string())?;
        let batches = TREES
            .iter()
            .map(|name| Ok((db.open_tree(name)?, sled::Batch::default())))
            .collect::<sled::Result<_>>()
            .map_err(storage)?;
        Ok(Restorer {
            db,
            batches,
            pending: 0,
            log: Vec::new(),
            claims_applied: false,
            last_id: 0,
            restored: Restored::default(),
        })
    }

    fn put(&mut self, tree: usize, key: &[u8], value: impl Into<sled::IVec>) {
        self.batches[tree].1.insert(key, value);
    }

    fn apply(&mut self) -> Result<(), String> {
        for (tree, batch) in &mut self.batches {
            tree.apply_batch(std::mem::take(batch)).map_err(storage)?;
        }
        self.pending = 0;
        Ok(())
    }

    /// Adds one claim after verifying it: its record must be exactly what
    /// its events make of it, every hash link and record digest must hold.
    pub fn claim(&mut self, history: ClaimHistory) -> Result<(), String> {
        let claim = history.verify().map_err(|b| {
            let id = history.claim.as_ref().map_or(0, |c| c.id);
            format!("claims/{id}: {b}")
        })?;
        let id = claim.id;
        if id <= self.last_id {
            return Err(format!("claims/{id} comes after claims/{}", self.last_id));
        }
        self.last_id = id;
        let total = claim.evidence.as_ref().map_or(0, |e| e.total);
        let latest = history
            .responses
            .iter()
            .find(|r| total > 0 && r.id == total);
        let latest = latest.map(Message::encode_to_vec).unwrap_or_default();
        self.put(CLAIMS, &be(id), claim_record(claim, &latest));
        self.put(BY_STATE, &state_key(claim.state, id), &[][..]);
        if let Some(sha) = claim.image.as_ref().and_then(|i| sha_key(&i.sha256)) {
            self.put(BY_SHA256, &sha_index_key(&sha, id), &[][..]);
        }
        if let Some((_, _, value)) = pdq_entry(claim) {
            self.put(BY_PDQ, &be(id), &value[..]);
        }
        for response in &history.responses {
            self.put(RESPONSES, &pair(id, response.id), response.encode_to_vec());
        }
        for event in &history.events {
            if event.log_position == 0 {
                return Err(format!(
                    "claims/{id}/events/{}: no log position",
                    event.sequence
                ));
            }
            self.put(EVENTS, &pair(id, event.sequence), event.encode_to_vec());
            // Written by `finish`, in log order, with the chain's head.
            let mut prefix = [0u8; 17];
            prefix.copy_from_slice(&log_entry(event, &chain::GENESIS)[..17]);
            self.log.push((event.log_position, prefix));
        }
        self.restored.claims += 1;
        self.restored.responses += history.responses.len() as u64;
        self.restored.events += history.events.len() as u64;
        self.pending += 1;
        if self.pending == BATCH_CLAIMS {
            self.apply()?;
        }
        Ok(())
    }

    /// Adds an API key.
    pub fn key(&mut self, key: ApiKey) -> Result<(), String> {
        let result = (|| {
            let keys = self.db.open_tree(schema::API_KEYS)?;
            let names = self.db.open_tree(schema::API_KEY_NAMES)?;
            keys.insert(be(key.id), key.encode_to_vec())?;
            names.insert(key.name.to_ascii_lowercase().as_bytes(), &be(key.id))?;
            Ok(())
        })();
        self.restored.api_keys += 1;
        result.map_err(storage)
    }

    /// Adds an imported fact-check, with its URL index entry and one review
    /// log entry (its current revision: the log's history of earlier
    /// revisions is not in backups).
    pub fn review(&mut self, review: ExternalReview) -> Result<(), String> {
        let result = (|| {
            let reviews = self.db.open_tree(schema::EXTERNAL_REVIEWS)?;
            let by_url = self.db.open_tree(schema::EXTERNAL_REVIEWS_BY_URL)?;
            let log = self.db.open_tree(schema::REVIEW_LOG)?;
            let meta = self.db.open_tree(schema::META)?;
            reviews.insert(be(review.id), review.encode_to_vec())?;
            by_url.insert(review.review_url.as_bytes(), &be(review.id))?;
            let position = self.restored.external_reviews + 1;
            let change = ReviewChange {
                review_id: review.id,
                revision: review.revision,
                time: review.update_time,
                actor: review.imported_by.clone(),
            };
            log.insert(be(position), change.encode_to_vec())?;
            let last = meta.get(META_LAST_REVIEW_ID)?.map_or(0, |v| u64_at(&v, 0));
            meta.insert(META_LAST_REVIEW_ID, &be(last.max(review.id)))?;
            meta.insert(META_LAST_REVIEW_POSITION, &be(position))?;
            Ok(())
        })();
        self.restored.external_reviews += 1;
        result.map_err(storage)
    }

    /// Adds a request record if what it names was restored (a backup reads
    /// them after its snapshot point, so it may hold newer ones); returns
    /// whether it was kept.
    pub fn request(&mut self, record: RequestRecord) -> Result<bool, String> {
        if !self.claims_applied {
            self.apply()?;
            self.claims_applied = true;
        }
        let claims = &self.batches[CLAIMS].0;
        let responses = &self.batches[RESPONSES].0;
        let exists = if record.attach {
            responses.contains_key(pair(record.claim_id, record.response_id))
        } else {
            claims.contains_key(be(record.claim_id))
        }
        .map_err(storage)?;
        if !exists {
            return Ok(false);
        }
        let op = if record.attach {
            OP_ATTACH
        } else {
            OP_REGISTER
        };
        let value = IdempotencyRecord {
            format_version: FORMAT_VERSION,
            fingerprint: record.fingerprint,
            claim_id: record.claim_id,
            response_id: record.response_id,
        };
        self.put(
            REQUEST_IDS,
            &request_key(op, &record.request_id),
            value.encode_to_vec(),
        );
        self.restored.requests += 1;
        self.pending += 1;
        if self.pending >= BATCH_CLAIMS {
            self.apply()?;
        }
        Ok(true)
    }

    /// Computes the service-wide chain over the restored log, checks that
    /// the log holds exactly positions 1..=`log_position` and ends at
    /// `chain_head`, writes the counters and the format version, and
    /// flushes.
    pub fn finish(
        mut self,
        log_position: u64,
        chain_head: &chain::Hash,
    ) -> Result<Restored, String> {
        self.apply()?;
        let events = self.batches[EVENTS].0.clone();
        let mut log = std::mem::take(&mut self.log);
        log.sort_unstable_by_key(|(position, _)| *position);
        let mut head = chain::GENESIS;
        let mut expected = 1;
        for (position, prefix) in log {
            if position < expected {
                return Err(format!(
                    "two of the backup's events have log position {position}"
                ));
            }
            if position != expected {
                return Err(format!(
                    "the backup's events skip log position {expected}: events are missing"
                ));
            }
            expected += 1;
            let bytes = events
                .get(&prefix[..16])
                .map_err(storage)?
                .ok_or_else(|| format!("event_log/{position} names a missing event"))?;
            head = chain::link(&head, &chain::sha256(&bytes));
            let mut entry = [0u8; LOG_ENTRY_LEN];
            entry[..17].copy_from_slice(&prefix);
            entry[17..].copy_from_slice(&head);
            self.put(EVENT_LOG, &be(position), &entry[..]);
            if position.is_multiple_of(16 * BATCH_CLAIMS as u64) {
                self.apply()?;
            }
        }
        if expected - 1 != log_position {
            return Err(format!(
                "the backup's events end at log position {} but it was taken at {log_position}",
                expected - 1
            ));
        }
        if &head != chain_head {
            return Err(format!(
                "the service-wide chain of the restored events ends at {} but the backup recorded {}",
                hex::encode(head),
                hex::encode(chain_head)
            ));
        }
        self.apply()?;
        let meta = self.db.open_tree(schema::META).map_err(storage)?;
        meta.insert(META_LAST_CLAIM_ID, &be(self.last_id))
            .and_then(|_| meta.insert(META_LAST_LOG_POSITION, &be(log_position)))
            .and_then(|_| meta.insert(META_FORMAT_VERSION, &DIR_FORMAT_VERSION.to_be_bytes()))
            .map_err(storage)?;
        self.db.flush().map_err(storage)?;
        Ok(self.restored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Claim, OfficialResponse};
    use crate::store::{NewClaim, NewResponse, SledStore, Store};

    /// Two claims and a response to claim `attach_to`: log positions 1 and 2
    /// for the registrations, 3 for the response. Returns the histories and
    /// the chain head after position 3.
    async fn histories(dir: &Path, attach_to: u64) -> (Vec<ClaimHistory>, chain::Hash) {
        let store = SledStore::open(dir).unwrap();
        for text in ["one", "two"] {
            let claim = Claim {
                claim_text: text.into(),
                language: "en".into(),
                ..Default::default()
            };
            store
                .register_claim(NewClaim {
                    claim,
                    request_id: String::new(),
                    actor: "test".into(),
                    near_distance: 0,
                    dihedral: false,
                    variants: None,
                })
                .await
                .unwrap();
        }
        store
            .attach_response(NewResponse {
                claim_id: attach_to,
                response: OfficialResponse::default(),
                request_id: String::new(),
                actor: "test".into(),
            })
            .await
            .unwrap();
        let page = store.snapshot_claims(3, None, 10).await.unwrap();
        (page.items, store.log_head(3).await.unwrap())
    }

    fn restore(into: &Path, claims: Vec<ClaimHistory>, head: &chain::Hash) -> Result<(), String> {
        let mut restorer = Restorer::create(into)?;
        for history in claims {
            restorer.claim(history)?;
        }
        restorer.finish(3, head).map(|_| ())
    }

    #[tokio::test]
    async fn the_log_is_rebuilt_in_position_order_and_a_repeated_or_missing_position_is_refused() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        // a: claim 1 holds positions 1 and 3, claim 2 position 2.
        let (from_a, head_a) = histories(a.path(), 1).await;
        // b: claim 1 holds position 1, claim 2 positions 2 and 3.
        let (from_b, head_b) = histories(b.path(), 2).await;

        let whole = tempfile::tempdir().unwrap();
        let into = whole.path().join("data");
        restore(&into, from_a.clone(), &head_a).unwrap();
        let db = sled::open(&into).unwrap();
        let log: Vec<_> = db
            .open_tree(schema::EVENT_LOG)
            .unwrap()
            .iter()
            .map(|e| e.unwrap())
            .collect();
        assert_eq!(log.len(), 3);
        let claims_of: Vec<u64> = log.iter().map(|(_, v)| u64_of(&v[..8])).collect();
        assert_eq!(claims_of, [1, 2, 1], "position order, not claim order");
        assert_eq!(log[2].1[17..], head_a[..], "the last entry holds the head");
        drop(db);

        let twice = tempfile::tempdir().unwrap();
        let claims = vec![from_a[0].clone(), from_b[1].clone()];
        let err = restore(&twice.path().join("data"), claims, &head_a).unwrap_err();
        assert_eq!(err, "two of the backup's events have log position 3");

        let gap = tempfile::tempdir().unwrap();
        let err = restore(&gap.path().join("data"), vec![from_a[0].clone()], &head_b).unwrap_err();
        assert_eq!(
            err,
            "the backup's events skip log position 2: events are missing"
        );
    }

    fn u64_of(bytes: &[u8]) -> u64 {
        u64::from_be_bytes(bytes.try_into().unwrap())
    }
}
