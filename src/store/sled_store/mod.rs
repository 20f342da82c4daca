//! The sled implementation of [`Store`]: the engine under
//! [`super::SledStore`]. This file keeps the engine's struct, its opening
//! and the transaction and record helpers its reads and writes share
//! (about 1,050 lines, one unit of private state); beside it are its
//! [`Store`] impl (`store_impl.rs`), the format migrations (`migrate.rs`),
//! the background index build and cache warm-up (`background.rs`) and its
//! tests (`tests.rs`).
//!
//! Trees and key layouts (all integers big-endian, so keys sort numerically):
//!
//! | tree               | key                                   | value                         |
//! |--------------------|---------------------------------------|-------------------------------|
//! | `meta`             | `b"format_version"`                   | u32 ([`DIR_FORMAT_VERSION`])  |
//! | `meta`             | `b"last_claim_id"`                    | u64                           |
//! | `meta`             | `b"last_log_position"`                | u64                           |
//! | `meta`             | `b"page_token_key"`                   | 32 random bytes: the key of [`Store::page_token_key`], made at the first open |
//! | `claims`           | claim_id (u64)                        | `domain::Claim` (protobuf) ‖ copy of the latest response (field 30, see [`claim_record`]) |
//! | `claims_by_state`  | state (u8) ‖ claim_id (u64)           | empty                         |
//! | `responses`        | claim_id (u64) ‖ response_id (u64)    | `domain::OfficialResponse`    |
//! | `events`           | claim_id (u64) ‖ sequence (u64)       | `domain::ClaimEvent`          |
//! | `event_log`        | log position (u64)                    | claim_id (u64) ‖ sequence (u64) ‖ type (u8) ‖ chain head (32 bytes) |
//! | `claims_by_sha256` | sha256 (32 bytes) ‖ claim_id (u64)    | empty                         |
//! | `claims_by_pdq`    | claim_id (u64)                        | pdq (32 bytes) ‖ quality (u8, 255: unknown) |
//! | `request_ids`      | operation (u8) ‖ request_id (bytes)   | `IdempotencyRecord`           |
//! | `api_keys`         | key id (u64)                          | `domain::access::ApiKey`      |
//! | `api_key_names`    | key name, lower-cased (ASCII)         | key id (u64)                  |
//!
//! `claims_by_pdq` is read once at start-up to build the in-memory Hamming
//! index ([`PdqIndex`]), which the committer updates as each registration
//! commits ([`super::batch_commit`]).
//!
//! Claim ids come from the `last_claim_id` counter, read and advanced *inside*
//! the write transaction (one committer thread runs them all), so they are dense (1, 2, 3,
//! … across restarts) and increase in commit order: "newest first" is
//! descending id, and "registered before" is a smaller id. Every event gets
//! its position in the service-wide `event_log` the same way, so the log is
//! in commit order with no holes; WatchClaimEvents reads it only up to the
//! newest *durable* position ([`Store::durable_log`]), so a position it has
//! shown is never reused after a crash.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use prost::Message;
use sha2::{Digest, Sha256};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;

use super::batch_commit::{After, Committed, Committer, Tx, WriteTrees};
use super::record_cache::{ClaimCache, StatusCache};
use super::schema;
pub(super) use super::sled_errors::{corrupt, storage};
use super::{
    Attached, ClaimHistory, EventFilter, LogBatch, NewClaim, NewResponse, NewVerdict, PageTokenKey,
    Registered, RequestRecord, SharedClaim, Similar, SimilarQuery, Store, StoreStats,
    MAX_SAME_IMAGE_CLAIMS, PAGE_TOKEN_KEY_LEN,
};
use crate::domain::access::ApiKey;
use crate::domain::pdq::{Pdq, PdqIndex};
use crate::domain::{
    chain, rules, Claim, ClaimEvent, ClaimStatus, ClaimView, Error, EventDetails, OfficialResponse,
    Page, Result, StatusView, Timestamp, VerificationState, FORMAT_VERSION,
};
use background::{Background, IndexBuild, PdqIndexes, Warmer};
use migrate::{build_event_log, copy_latest_responses, migrate_sha256_index, seal_chains};

pub(super) const META_FORMAT_VERSION: &[u8] = b"format_version";
/// sled's page cache for a server: sled's own default, 1 GiB.
pub const DEFAULT_CACHE_BYTES: u64 = 1024 * 1024 * 1024;
/// The status cache of a server (BENCHMARKS.md gives its size in claims).
pub const DEFAULT_STATUS_CACHE_BYTES: u64 = 256 * 1024 * 1024;
/// The claim cache of a server (BENCHMARKS.md gives its size in claims).
pub const DEFAULT_CLAIM_CACHE_BYTES: u64 = 256 * 1024 * 1024;
pub(super) const META_LAST_CLAIM_ID: &[u8] = b"last_claim_id";
pub(super) const META_LAST_LOG_POSITION: &[u8] = b"last_log_position";
/// The page-token key ([`Store::page_token_key`]). Not part of backups: a
/// restore makes a new directory, which makes its own key at the first open.
/// Compaction copies `meta` as it is, and so keeps it.
const META_PAGE_TOKEN_KEY: &[u8] = b"page_token_key";
/// Log entries examined per [`Store::log_events`] call at most.
const LOG_SCAN_LIMIT: usize = 4096;
/// Indexes of up to this many hashes are searched on the calling task: a
/// query takes tens of microseconds, less than handing it to a blocking
/// thread and waking that thread costs.
const INLINE_SEARCH_MAX_HASHES: usize = 65_536;

/// Layout of the data directory (trees and keys), recorded in `meta`.
/// Version 1 kept one packed list of claim ids per SHA-256 and took claim
/// ids from sled's id generator (which jumps ahead after a restart); version
/// 2 keys the index by `sha256 ‖ claim_id`, so that a registration never
/// rewrites a value that grows with the number of claims on one image, and
/// counts claim ids in `meta`. Opening a version-1 directory migrates it; a
/// version-1 binary refuses a version-2 directory (its id generator could
/// reuse ids). Version 3 adds the service-wide `event_log`; version 4 the
/// hash chains (`prev_hash`, `record_sha256` and `chain_head` in the records,
/// the chain head in every `event_log` value). Each step is a function run
/// by [`SledEngine::open`] when the directory is older, safe to repeat; the
/// version is written only after all steps. Version 5 appends a copy of the
/// claim's latest response to its record ([`claim_record`]), so that a
/// status read is one lookup. (Records carry their own [`FORMAT_VERSION`].)
pub const DIR_FORMAT_VERSION: u32 = 5;
pub(super) const OP_REGISTER: u8 = b'R';
pub(super) const OP_ATTACH: u8 = b'A';

/// What a `request_id` was used for, so a retry can be answered without redoing it.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct IdempotencyRecord {
    /// Record layout version.
    #[prost(uint32, tag = "1")]
    pub(super) format_version: u32,
    /// SHA-256 of the request's payload; a retry must match it.
    #[prost(bytes = "vec", tag = "2")]
    pub(super) fingerprint: Vec<u8>,
    /// The claim created or attached to.
    #[prost(uint64, tag = "3")]
    pub(super) claim_id: u64,
    /// The response created, for attachments.
    #[prost(uint64, tag = "4")]
    pub(super) response_id: u64,
}

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Another process holds the directory's lock.
    #[error("data directory {0} is in use by another photoclaim process (sled holds an exclusive lock); stop it or choose another --data-dir")]
    Locked(PathBuf),
    /// The data was written by a newer photoclaim.
    #[error("data directory {dir} has format version {found}, newer than this binary supports ({supported}); upgrade photoclaim")]
    TooNew {
        /// The directory.
        dir: PathBuf,
        /// Version found on disk.
        found: u32,
        /// Version this binary writes.
        supported: u32,
    },
    /// Any other storage failure.
    #[error("cannot open data directory {dir}: {cause}")]
    Other {
        /// The directory.
        dir: PathBuf,
        /// What sled said.
        cause: String,
    },
}

/// The page-token key in `meta`, made from the operating system's randomness
/// and stored the first time (the caller flushes).
fn page_token_key(dir: &Path, meta: &sled::Tree) -> std::result::Result<PageTokenKey, OpenError> {
    let other = |cause: String| OpenError::Other {
        dir: dir.to_path_buf(),
        cause,
    };
    if let Some(stored) = meta
        .get(META_PAGE_TOKEN_KEY)
        .map_err(|e| other(e.to_string()))?
    {
        return PageTokenKey::try_from(stored.as_ref())
            .map_err(|_| other("corrupt page_token_key entry".into()));
    }
    let mut key = [0; PAGE_TOKEN_KEY_LEN];
    getrandom::fill(&mut key)
        .map_err(|e| other(format!("no randomness for the page-token key: {e}")))?;
    meta.insert(META_PAGE_TOKEN_KEY, &key)
        .map_err(|e| other(e.to_string()))?;
    Ok(key)
}

/// Claims, responses and events in an embedded sled database.
pub(crate) struct SledEngine {
    /// Kept for the final flush; trees below share its storage.
    db: sled::Db,
    /// Format version and the claim id counter.
    meta: sled::Tree,
    /// Signs page tokens, loaded from `meta` at open.
    page_token_key: PageTokenKey,
    /// `claim_id -> Claim`.
    claims: sled::Tree,
    /// `state ‖ claim_id -> ()`, for ListClaims' state filter without a scan.
    by_state: sled::Tree,
    /// `claim_id ‖ response_id -> OfficialResponse`.
    responses: sled::Tree,
    /// `claim_id ‖ sequence -> ClaimEvent`.
    events: sled::Tree,
    /// `log position -> claim_id ‖ sequence ‖ type`: every event in commit order.
    event_log: sled::Tree,
    /// The newest log position known durable; watchers subscribe to it.
    durable_log: Arc<tokio::sync::watch::Sender<u64>>,
    /// `sha256 ‖ claim_id -> ()`, for same-image lookups by prefix.
    by_sha256: sled::Tree,
    /// Hamming indexes of the claims' PDQ hashes: reliable and low quality.
    /// Built on a background thread at open ([`IndexBuild`]): until it is
    /// ready, the operations that use it wait; all others are served.
    pdq_index: Arc<RwLock<PdqIndexes>>,
    /// The background build of `pdq_index`.
    index_build: IndexBuild,
    /// Statuses served without a sled read ([`super::record_cache`]).
    status_cache: Arc<StatusCache>,
    /// Claims with their latest response, likewise.
    claim_cache: Arc<ClaimCache>,
    /// Fills both caches at start-up ([`SledEngine::with_caches`]).
    warmer: Option<Background>,
    /// `op ‖ request_id -> IdempotencyRecord`.
    request_ids: sled::Tree,
    /// Searches of indexes up to this size run on the calling task
    /// ([`INLINE_SEARCH_MAX_HASHES`]; tests lower it).
    inline_search_max_hashes: usize,
    /// `key_id -> ApiKey`.
    keys: sled::Tree,
    /// Whether `keys` holds a key. Keys are never deleted (revocation
    /// rewrites them), so this only ever turns true: [`Store::has_keys`],
    /// asked on every call without credentials, answers without a sled read.
    keys_exist: AtomicBool,
    /// `lower-cased key name -> key_id`, so names are unique regardless of
    /// case (actors stay unambiguous) and revocation finds a key by name.
    key_names: sled::Tree,
    /// Runs claim writes, many to a transaction and a flush
    /// ([`super::batch_commit`]); flushes for the other writers too.
    committer: Committer,
}

/// Opens sled in `dir` (creating it if absent), telling a held lock apart.
pub(super) fn open_db(dir: &Path, cache_bytes: u64) -> std::result::Result<sled::Db, OpenError> {
    sled::Config::new()
        .path(dir)
        .cache_capacity(cache_bytes)
        .open()
        .map_err(|e| {
            let text = e.to_string();
            if text.contains("could not acquire lock") {
                OpenError::Locked(dir.to_path_buf())
            } else {
                OpenError::Other {
                    dir: dir.to_path_buf(),
                    cause: text,
                }
            }
        })
}

/// The format version recorded in `meta` (`None` for a new directory).
pub(super) fn read_format_version(
    dir: &Path,
    meta: &sled::Tree,
) -> std::result::Result<Option<u32>, OpenError> {
    let other = |cause: String| OpenError::Other {
        dir: dir.to_path_buf(),
        cause,
    };
    match meta
        .get(META_FORMAT_VERSION)
        .map_err(|e| other(e.to_string()))?
    {
        Some(v) if v.len() == 4 => Ok(Some(u32::from_be_bytes([v[0], v[1], v[2], v[3]]))),
        Some(_) => Err(other("corrupt format_version entry".into())),
        None => Ok(None),
    }
}

pub(super) fn be(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

pub(super) fn pair(a: u64, b: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&a.to_be_bytes());
    key[8..].copy_from_slice(&b.to_be_bytes());
    key
}

pub(super) fn state_key(state: i32, id: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = state as u8;
    key[1..].copy_from_slice(&id.to_be_bytes());
    key
}

pub(super) fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut buf = [0u8; 8];
    buf.copy_from_slice(&bytes[at..at + 8]);
    u64::from_be_bytes(buf)
}

pub(super) fn sha_key(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

pub(super) fn request_key(op: u8, request_id: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + request_id.len());
    key.push(op);
    key.extend_from_slice(request_id);
    key
}

fn internal(err: impl std::fmt::Display) -> Error {
    Error::Internal(err.to_string())
}

/// [`storage`] for a read of the claim record `claims/{id}`.
fn claim_storage(err: sled::Error, id: u64) -> Error {
    storage(err, &format!("claims/{id}"))
}

/// Decodes the record at `at` (its name, e.g. `claims/7`); one that does
/// not decode is [`corrupt`].
pub(super) fn decode<M: Message + Default>(bytes: &[u8], at: &str) -> Result<M> {
    M::decode(bytes).map_err(|e| corrupt(at, format_args!("record does not decode: {e}")))
}

fn fingerprint(parts: &[&[u8]]) -> Vec<u8> {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.finalize().to_vec()
}

type TxResult<T> = std::result::Result<T, ConflictableTransactionError<Error>>;

fn abort<T>(err: Error) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(err))
}

fn tx_decode<M: Message + Default>(bytes: &[u8], what: &str) -> TxResult<M> {
    decode(bytes, what).map_err(ConflictableTransactionError::Abort)
}

/// Looks up a request_id: `Ok(None)` if unused, the record if the payload
/// matches, `AlreadyExists` if it was used for something else.
fn check_request_id(
    tree: &TransactionalTree,
    key: Option<&[u8]>,
    fingerprint: &[u8],
) -> TxResult<Option<IdempotencyRecord>> {
    let Some(key) = key else {
        return Ok(None);
    };
    let Some(bytes) = tree.get(key)? else {
        return Ok(None);
    };
    let record: IdempotencyRecord = tx_decode(&bytes, "request_ids record")?;
    if record.fingerprint != fingerprint {
        return abort(Error::RequestIdReused {
            request_id: String::from_utf8_lossy(&key[1..]).into_owned(),
        });
    }
    Ok(Some(record))
}

fn finish_tx<T>(result: std::result::Result<T, TransactionError<Error>>) -> Result<T> {
    result.map_err(|e| match e {
        TransactionError::Abort(err) => err,
        TransactionError::Storage(err) => storage(err, "api_keys"),
    })
}

/// Records a request_id (if the write has one) with what its write made,
/// so that a retry replays it.
fn remember_request(
    tx: &Tx<'_>,
    key: Option<&[u8]>,
    fingerprint: &[u8],
    claim_id: u64,
    response_id: u64,
) -> TxResult<()> {
    if let Some(key) = key {
        let record = IdempotencyRecord {
            format_version: FORMAT_VERSION,
            fingerprint: fingerprint.to_vec(),
            claim_id,
            response_id,
        };
        tx.request_ids.insert(key, record.encode_to_vec())?;
    }
    Ok(())
}

/// Moves a claim's entry in the state index when its state changed.
fn reindex_state(by_state: &TransactionalTree, claim: &Claim, old_state: i32) -> TxResult<()> {
    if claim.state != old_state {
        by_state.remove(&state_key(old_state, claim.id))?;
        by_state.insert(&state_key(claim.state, claim.id), &[])?;
    }
    Ok(())
}

/// Stores `event` at the next position of the event log (read and advanced
/// inside the transaction, so positions are dense and in commit order),
/// links it to the claim's hash chain and the service-wide chain, writes the
/// claim record (whose chain head moved) with its copy of the latest
/// response (encoded; empty for none), and returns the position.
fn append_event(
    Tx {
        meta,
        claims,
        events,
        log,
        ..
    }: &Tx<'_>,
    claim: &mut Claim,
    latest_response: &[u8],
    mut event: ClaimEvent,
) -> TxResult<u64> {
    let last = meta.get(META_LAST_LOG_POSITION)?;
    let position = last.map(|v| u64_at(&v, 0)).unwrap_or(0) + 1;
    meta.insert(META_LAST_LOG_POSITION, &be(position))?;
    event.log_position = position;
    let (bytes, hash) = chain::seal(claim, &mut event);
    let previous = match position {
        1 => chain::GENESIS,
        _ => match log.get(be(position - 1))? {
            Some(entry) => log_head(&entry).map_err(ConflictableTransactionError::Abort)?,
            None => {
                return abort(Error::Internal(format!(
                    "event_log has no entry {}",
                    position - 1
                )))
            }
        },
    };
    events.insert(&pair(event.claim_id, event.sequence), bytes)?;
    log.insert(
        &be(position),
        &log_entry(&event, &chain::link(&previous, &hash))[..],
    )?;
    claims.insert(&be(claim.id), claim_record(claim, latest_response))?;
    Ok(position)
}

/// Length of an `event_log` value.
pub(super) const LOG_ENTRY_LEN: usize = 49;

/// `event_log` value: claim id, sequence, type and the service-wide chain
/// head after this event.
pub(super) fn log_entry(event: &ClaimEvent, head: &chain::Hash) -> [u8; LOG_ENTRY_LEN] {
    let mut value = [0u8; LOG_ENTRY_LEN];
    value[..16].copy_from_slice(&pair(event.claim_id, event.sequence));
    value[16] = u8::try_from(event.event_type).unwrap_or(0);
    value[17..].copy_from_slice(head);
    value
}

/// The chain head stored in an `event_log` value.
pub(super) fn log_head(entry: &[u8]) -> Result<chain::Hash> {
    entry
        .get(17..LOG_ENTRY_LEN)
        .filter(|_| entry.len() == LOG_ENTRY_LEN)
        .and_then(|head| head.try_into().ok())
        .ok_or_else(|| {
            Error::Internal(format!("malformed event_log entry ({} bytes)", entry.len()))
        })
}

/// Field number of the copy of the latest response in a claim record.
/// `domain::Claim` does not use it, so decoding a record as a `Claim` (or a
/// `ClaimStatus`) skips the copy.
const LATEST_RESPONSE_FIELD: u32 = 30;

/// The copy of the latest response in a claim record, as stored.
#[derive(Clone, PartialEq, Message)]
struct LatestCopy {
    #[prost(bytes = "vec", tag = "30")]
    response: Vec<u8>,
}

/// The copy of the latest response in a claim record, decoded. (An
/// embedded message and bytes share one wire format.)
#[derive(Clone, PartialEq, Message)]
struct LatestResponse {
    #[prost(message, optional, tag = "30")]
    response: Option<OfficialResponse>,
}

/// The stored form of a claim: the `Claim` message followed by field
/// [`LATEST_RESPONSE_FIELD`] holding `latest_response`, the encoded
/// `OfficialResponse` numbered `evidence.total` (nothing when there is
/// none). Reads of a claim or its status then need one lookup, not two;
/// `photoclaim check` verifies the copy against the response record.
pub(super) fn claim_record(claim: &Claim, latest_response: &[u8]) -> Vec<u8> {
    use prost::encoding::{encode_key, encode_varint, WireType};
    let mut bytes = claim.encode_to_vec();
    if !latest_response.is_empty() {
        encode_key(LATEST_RESPONSE_FIELD, WireType::LengthDelimited, &mut bytes);
        encode_varint(latest_response.len() as u64, &mut bytes);
        bytes.extend_from_slice(latest_response);
    }
    bytes
}

fn load_claim(claims: &TransactionalTree, id: u64) -> TxResult<(Claim, Vec<u8>)> {
    match claims.get(be(id))? {
        Some(bytes) => {
            let at = format!("claims/{id}");
            let copy: LatestCopy = tx_decode(&bytes, &at)?;
            Ok((tx_decode(&bytes, &at)?, copy.response))
        }
        None => abort(Error::NotFound(format!("claims/{id}"))),
    }
}

/// The in-memory state a committed claim write updates, shared with the
/// store: the committer's [`After`] steps run these, in commit order,
/// whether or not the write's caller still waits.
struct InMemory {
    status_cache: Arc<StatusCache>,
    claim_cache: Arc<ClaimCache>,
    pdq_index: Arc<RwLock<PdqIndexes>>,
    durable_log: Arc<tokio::sync::watch::Sender<u64>>,
}

impl InMemory {
    /// Puts what a committed write left in both caches.
    fn cache(&self, claim: &Claim, latest_response: Option<OfficialResponse>) {
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
    }

    /// Adds a new claim's hash to the PDQ index. Registrations wait for
    /// the index to be built before they write. An insert that rebuilds
    /// the index's tables (at 1M claims, one in about 15,600, a quarter
    /// of a second) holds up the writes queued behind it. A panic inside
    /// the lock (none is known) leaves the indexes usable: every change to
    /// them is a single insert, so the poisoned value is still consistent.
    fn index(&self, (id, hash, quality): IndexEntry) {
        let mut indexes = self
            .pdq_index
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        indexes.insert(id, hash, quality);
    }

    /// Tells watchers that the log is durable up to `position` (0: the
    /// write added no event): run once a claim write's flush succeeded.
    /// Positions increase in commit order and a flush covers every earlier
    /// commit, so everything up to `position` is durable too.
    fn log_durable(&self, position: u64) {
        self.durable_log.send_if_modified(|newest| {
            let advanced = position > *newest;
            *newest = (*newest).max(position);
            advanced
        });
    }
}

impl SledEngine {
    /// Opens (or creates) the store in `dir` for tests (the public
    /// constructors are [`super::SledStore`]'s).
    #[cfg(test)]
    pub fn open(dir: &Path) -> std::result::Result<Self, OpenError> {
        Self::open_shared(dir, DEFAULT_CACHE_BYTES, true, None)
    }

    /// Like [`SledEngine::open`], without the PDQ index.
    #[cfg(test)]
    pub fn open_without_index(
        dir: &Path,
        cache_bytes: u64,
    ) -> std::result::Result<Self, OpenError> {
        Self::open_shared(dir, cache_bytes, false, None)
    }

    /// Opens the store; `build_index` starts the PDQ index build. With
    /// `durable_log`, the engine reports durable positions to that sender
    /// (kept by [`super::SledStore`] across reopenings, so that watchers
    /// stay subscribed) instead of a new one.
    pub(super) fn open_shared(
        dir: &Path,
        cache_bytes: u64,
        build_index: bool,
        durable_log: Option<Arc<tokio::sync::watch::Sender<u64>>>,
    ) -> std::result::Result<Self, OpenError> {
        let other = |cause: sled::Error| OpenError::Other {
            dir: dir.to_path_buf(),
            cause: cause.to_string(),
        };
        let started = std::time::Instant::now();
        let db = open_db(dir, cache_bytes)?;
        let sled_open = started.elapsed();
        let meta = db.open_tree(schema::META).map_err(other)?;
        let by_sha256 = db.open_tree(schema::CLAIMS_BY_SHA256).map_err(other)?;
        let found = read_format_version(dir, &meta)?.unwrap_or(DIR_FORMAT_VERSION);
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
        let page_token_key = page_token_key(dir, &meta)?;
        db.flush().map_err(other)?;
        let tree = |name: &str| db.open_tree(name).map_err(other);
        let by_pdq = tree(schema::CLAIMS_BY_PDQ)?;
        let pdq_index = Arc::new(RwLock::new(PdqIndexes::default()));
        let index_build = if build_index {
            IndexBuild::start(by_pdq.clone(), Arc::clone(&pdq_index)).map_err(|e| {
                OpenError::Other {
                    dir: dir.to_path_buf(),
                    cause: format!("cannot start the PDQ index build: {e}"),
                }
            })?
        } else {
            IndexBuild::skipped()
        };
        tracing::info!(
            sled_open_ms = sled_open.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            pdq_index = if build_index {
                "building in the background"
            } else {
                "not built (offline tool)"
            },
            "data directory opened"
        );
        let last_log = event_log.last().map_err(other)?;
        let durable = last_log.map(|(key, _)| u64_at(&key, 0)).unwrap_or(0);
        let claims = tree(schema::CLAIMS)?;
        let by_state = tree(schema::CLAIMS_BY_STATE)?;
        let responses = tree(schema::RESPONSES)?;
        let request_ids = tree(schema::REQUEST_IDS)?;
        let committer = Committer::start(
            db.clone(),
            WriteTrees {
                meta: meta.clone(),
                claims: claims.clone(),
                by_state: by_state.clone(),
                responses: responses.clone(),
                events: events.clone(),
                event_log: event_log.clone(),
                by_sha256: by_sha256.clone(),
                by_pdq,
                request_ids: request_ids.clone(),
            },
        )
        .map_err(|e| OpenError::Other {
            dir: dir.to_path_buf(),
            cause: format!("cannot start the write committer: {e}"),
        })?;
        let keys = tree(schema::API_KEYS)?;
        Ok(SledEngine {
            keys_exist: AtomicBool::new(!keys.is_empty()),
            inline_search_max_hashes: INLINE_SEARCH_MAX_HASHES,
            durable_log: match durable_log {
                Some(sender) => {
                    sender.send_if_modified(|newest| {
                        let newer = durable > *newest;
                        *newest = (*newest).max(durable);
                        newer
                    });
                    sender
                }
                None => Arc::new(tokio::sync::watch::Sender::new(durable)),
            },
            event_log,
            pdq_index,
            index_build,
            status_cache: Arc::new(StatusCache::new(DEFAULT_STATUS_CACHE_BYTES)),
            claim_cache: Arc::new(ClaimCache::new(DEFAULT_CLAIM_CACHE_BYTES)),
            warmer: None,
            meta,
            page_token_key,
            claims,
            by_state,
            responses,
            events,
            by_sha256,
            request_ids,
            keys,
            key_names: tree(schema::API_KEY_NAMES)?,
            committer,
            db,
        })
    }

    /// Bounds the in-process status and claim caches to `status_bytes` and
    /// `claim_bytes` (0 turns one off; [`DEFAULT_STATUS_CACHE_BYTES`] and
    /// [`DEFAULT_CLAIM_CACHE_BYTES`] otherwise), and fills them on a
    /// background thread with the newest claims until they are nearly full
    /// (a server: random reads over a large archive would take minutes to
    /// fill them).
    pub fn with_caches(mut self, status_bytes: u64, claim_bytes: u64) -> Self {
        self.warmer = None; // stops and joins a running one first
        self.status_cache = Arc::new(StatusCache::new(status_bytes));
        self.claim_cache = Arc::new(ClaimCache::new(claim_bytes));
        if status_bytes > 0 || claim_bytes > 0 {
            let caches = (
                Arc::clone(&self.status_cache),
                Arc::clone(&self.claim_cache),
            );
            self.warmer = Warmer::start(self.claims.clone(), caches)
                .map_err(|e| tracing::warn!(error = %e, "cannot start filling the caches"))
                .ok();
        }
        self
    }

    /// Whether the caches' warm-up is over (tests).
    #[cfg(test)]
    fn caches_warmed(&self) -> bool {
        self.warmer.as_ref().is_none_or(Background::finished)
    }

    /// Flushes performed by the committer so far (diagnostics and tests).
    pub fn flush_count(&self) -> u64 {
        self.committer.flush_count()
    }

    /// Waits until the PDQ index built at open is ready. Every use of the
    /// index waits for it by itself; this is for callers that want to know
    /// (start-up benches, tests). Fails if the build failed.
    pub async fn pdq_index_ready(&self) -> Result<()> {
        self.index_build.ready().await
    }

    /// The sender of durable log positions ([`Store::durable_log`]).
    pub(super) fn durable_log_sender(&self) -> Arc<tokio::sync::watch::Sender<u64>> {
        Arc::clone(&self.durable_log)
    }

    /// After a write failed: the error sled keeps once a write to disk
    /// failed, if it does. sled then refuses every later write until it is
    /// opened again ([`super::SledStore`] reopens it); asking costs a flush,
    /// which writes nothing when nothing is dirty.
    pub(super) async fn failed_write(&self) -> Option<sled::Error> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush().err())
            .await
            .unwrap_or(None)
    }

    /// Returns once everything committed before the call is durable.
    async fn durable(&self) -> Result<()> {
        self.committer.durable().await
    }

    /// What the committer updates in memory after a claim write.
    fn in_memory(&self) -> InMemory {
        InMemory {
            status_cache: Arc::clone(&self.status_cache),
            claim_cache: Arc::clone(&self.claim_cache),
            pdq_index: Arc::clone(&self.pdq_index),
            durable_log: Arc::clone(&self.durable_log),
        }
    }

    /// A claim and its copy of the latest response: one lookup.
    fn read_claim(&self, id: u64) -> Result<Option<ClaimView>> {
        match self.claims.get(be(id)).map_err(|e| claim_storage(e, id))? {
            Some(bytes) => claim_view(&bytes, id).map(Some),
            None => Ok(None),
        }
    }

    /// [`Self::read_claim`] through the claim cache.
    fn cached_claim(&self, id: u64) -> Result<Option<Arc<SharedClaim>>> {
        self.claim_cache
            .get_or_read(id, || Ok(self.read_claim(id)?.map(SharedClaim::from)))
    }

    /// The status fields of a claim record and its latest response: the
    /// claim's text, image and links are skipped, not decoded.
    fn read_status(&self, id: u64) -> Result<Option<StatusView>> {
        match self.claims.get(be(id)).map_err(|e| claim_storage(e, id))? {
            Some(bytes) => status_of(&bytes, id).map(Some),
            None => Ok(None),
        }
    }

    fn require_claim(&self, id: u64) -> Result<()> {
        if self
            .claims
            .contains_key(be(id))
            .map_err(|e| claim_storage(e, id))?
        {
            Ok(())
        } else {
            Err(Error::NotFound(format!("claims/{id}")))
        }
    }

    /// Ids of the claims on the image with this SHA-256 below `before`,
    /// newest first, at most `limit`: a reverse range read over the index
    /// prefix, which reads only the entries it returns.
    fn exact_ids(&self, sha: &[u8; 32], before: u64, limit: usize) -> Result<Vec<u64>> {
        let entries = self
            .by_sha256
            .range(sha_index_key(sha, 0)..sha_index_key(sha, before))
            .rev()
            .take(limit);
        entries
            .map(|entry| {
                let (key, _) = entry.map_err(|e| storage(e, "claims_by_sha256"))?;
                Ok(u64_at(&key, 32))
            })
            .collect()
    }

    /// Claims registered before `claim` on the same image or a near
    /// duplicate of it (reliable hashes only), nearest first, then newest.
    async fn same_image(&self, claim: &Claim, near_distance: u32) -> Result<Vec<Similar>> {
        let Some(image) = &claim.image else {
            return Ok(Vec::new());
        };
        let reliable = is_reliable(stored_quality(image));
        self.similar(&SimilarQuery {
            sha256: (!image.sha256.is_empty()).then(|| image.sha256.clone()),
            pdq: Pdq::from_hex(&image.pdq).filter(|_| reliable),
            max_distance: near_distance,
            include_low_quality: false,
            before: Some(claim.id),
            limit: MAX_SAME_IMAGE_CLAIMS,
        })
        .await
    }

    /// Runs `f` on the PDQ indexes: off the async runtime (a query over a
    /// million hashes takes a fraction of a millisecond; readers run side
    /// by side), or right here when the indexes are small
    /// ([`INLINE_SEARCH_MAX_HASHES`]) and no writer holds them, so the
    /// task never waits for the lock.
    async fn read_indexes<T: Send + 'static>(
        &self,
        f: impl FnOnce(&PdqIndexes) -> T + Send + 'static,
    ) -> Result<T> {
        self.pdq_index_ready().await?;
        if let Ok(guard) = self.pdq_index.try_read() {
            if guard.len() <= self.inline_search_max_hashes {
                return Ok(f(&guard));
            }
        }
        let indexes = Arc::clone(&self.pdq_index);
        tokio::task::spawn_blocking(move || {
            let guard = indexes.read().unwrap_or_else(PoisonError::into_inner);
            f(&guard)
        })
        .await
        .map_err(|e| Error::Internal(format!("PDQ index task failed: {e}")))
    }

    /// Claims matching `query`; `insert` (see [`Self::same_image`]) is
    /// added to the index first, under the same lock.
    async fn similar(&self, query: &SimilarQuery) -> Result<Vec<Similar>> {
        let before = query.before.unwrap_or(u64::MAX);
        let sha = query.sha256.as_deref().and_then(sha_key);
        // id -> distance; exact matches first at distance 0.
        let mut found: std::collections::HashMap<u64, u32> = std::collections::HashMap::new();
        let mut exact_views = Vec::new();
        if let Some(sha) = &sha {
            for id in self.exact_ids(sha, before, query.limit)? {
                found.insert(id, 0);
                if let Some(view) = self.cached_claim(id)? {
                    exact_views.push(view);
                }
            }
        }
        // Searching by SHA-256 alone: near duplicates of that image's hash.
        let pdq = query.pdq.or_else(|| {
            exact_views.iter().find_map(|v| {
                let image = v.view().claim.image.as_ref()?;
                let usable = query.include_low_quality || is_reliable(stored_quality(image));
                Pdq::from_hex(&image.pdq).filter(|_| usable)
            })
        });
        let (radius, low_quality) = (query.max_distance, query.include_low_quality);
        let search = move |indexes: &PdqIndexes| {
            let Some(pdq) = pdq else {
                return Vec::new();
            };
            let mut hits = indexes.reliable.query(&pdq, radius);
            if low_quality {
                hits.extend(indexes.low_quality.query(&pdq, radius));
            }
            hits
        };
        let hits = match pdq {
            Some(_) => self.read_indexes(search).await?,
            None => Vec::new(),
        };
        {
            for (id, distance) in hits {
                if id < before {
                    let entry = found.entry(id).or_insert(distance);
                    *entry = (*entry).min(distance);
                }
            }
        }
        let rank = |&(id, distance): &(u64, u32)| (distance, std::cmp::Reverse(id));
        let mut ranked: Vec<(u64, u32)> = found.into_iter().collect();
        if ranked.len() > query.limit && query.limit > 0 {
            // Only the best `limit` are read: partition, then sort those.
            ranked.select_nth_unstable_by_key(query.limit - 1, rank);
            ranked.truncate(query.limit);
        }
        ranked.sort_by_key(rank);
        let mut out = Vec::new();
        for (id, distance) in ranked.into_iter().take(query.limit) {
            if let Some(claim) = self.cached_claim(id)? {
                let exact = query.sha256.as_deref().is_some_and(|s| {
                    let image = claim.view().claim.image.as_ref();
                    image.is_some_and(|i| i.sha256 == s)
                });
                out.push(Similar {
                    claim,
                    exact,
                    distance,
                });
            }
        }
        Ok(out)
    }

    /// Reads up to `limit` records from `iter`, decoding with `f`; the cursor
    /// is taken from each key by `cursor_of` and returned if more may follow.
    /// A sled error while reading `what` is named by the last cursor read.
    fn page<T>(
        iter: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
        limit: usize,
        what: &str,
        mut f: impl FnMut(&[u8], &[u8]) -> Result<(u64, T)>,
    ) -> Result<Page<T>> {
        let mut items = Vec::new();
        let mut next_cursor = None;
        let mut last = None;
        for entry in iter {
            let (key, value) = entry.map_err(|e| match last {
                Some(cursor) => storage(e, &format!("{what} (the entry after {cursor})")),
                None => storage(e, what),
            })?;
            if items.len() == limit {
                next_cursor = last;
                break;
            }
            let (cursor, item) = f(&key, &value)?;
            last = Some(cursor);
            items.push(item);
        }
        Ok(Page { items, next_cursor })
    }

    fn list_children<T: Message + Default>(
        &self,
        tree: &sled::Tree,
        claim_id: u64,
        after: Option<u64>,
        limit: usize,
        what: &str,
    ) -> Result<Page<T>> {
        self.require_claim(claim_id)?;
        let start = pair(claim_id, after.unwrap_or(0).saturating_add(1));
        let end = pair(claim_id, u64::MAX);
        let at = format!("claims/{claim_id}/{what}");
        Self::page(tree.range(start..=end), limit, &at, |key, value| {
            let child = u64_at(key, 8);
            Ok((child, decode(value, &format!("{at}/{child}"))?))
        })
    }
}

/// A claim record's status fields and its copy of the latest response.
fn status_of(record: &[u8], id: u64) -> Result<StatusView> {
    let at = format!("claims/{id}");
    let latest: LatestResponse = decode(record, &at)?;
    Ok(StatusView {
        status: decode(record, &at)?,
        latest_response: latest.response,
    })
}

/// A claim record decoded whole: the claim and its latest response.
fn claim_view(record: &[u8], id: u64) -> Result<ClaimView> {
    let at = format!("claims/{id}");
    let latest: LatestResponse = decode(record, &at)?;
    Ok(ClaimView {
        claim: decode(record, &at)?,
        latest_response: latest.response,
    })
}

/// A claim's entry in the PDQ index: id, hash, quality.
type IndexEntry = (u64, Pdq, i32);

/// Quality byte of `claims_by_pdq` meaning "not known" (a caller's hash).
const UNKNOWN_QUALITY: i32 = 255;

/// [`crate::domain::pdq::is_reliable`]; a caller's hash, of unknown
/// quality, is taken as it is.
fn is_reliable(quality: i32) -> bool {
    quality == UNKNOWN_QUALITY || crate::domain::pdq::is_reliable(quality)
}

fn stored_quality(image: &crate::domain::Image) -> i32 {
    if image.pdq_quality_known {
        image.pdq_quality.clamp(0, 100)
    } else {
        UNKNOWN_QUALITY
    }
}

/// `claims_by_pdq` value: the hash and its quality, when the claim has one.
pub(super) fn pdq_entry(claim: &Claim) -> Option<(Pdq, i32, [u8; 33])> {
    let image = claim.image.as_ref()?;
    let hash = Pdq::from_hex(&image.pdq)?;
    let quality = stored_quality(image);
    let mut value = [0u8; 33];
    value[..32].copy_from_slice(&hash.0);
    value[32] = quality as u8;
    Some((hash, quality, value))
}

pub(super) fn sha_index_key(sha: &[u8; 32], id: u64) -> [u8; 40] {
    let mut key = [0u8; 40];
    key[..32].copy_from_slice(sha);
    key[32..].copy_from_slice(&id.to_be_bytes());
    key
}

mod background;
mod migrate;
mod store_impl;
#[cfg(test)]
mod tests;
