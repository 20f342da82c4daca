//! Storage: the trait the server and commands use, [`Store`], written
//! once over any engine by the core, and the engines under it.
//!
//! - [`Core`] (`core/`) implements [`Store`] over an [`Engine`]: the rules,
//!   idempotency, etags, log positions, chain sealing, similarity and the
//!   derived state (caches, PDQ index) that follows every commit.
//! - [`Engine`] (`engine.rs`) is the storage interface: tables read by key
//!   or range ([`Table`], layouts in `schema.rs`) and one atomic, durable
//!   commit of a write.
//! - Engines: sled (`sled_store/`, a data directory), used through
//!   [`SledStore`], a handle that guards the disk and reopens the engine
//!   in-process after a failed write, with the offline tools on a
//!   directory: check, restore, compact); and memory
//!   ([`MemoryStore`], `memory.rs`), the reference backend.
//!
//! Every write method's changes are committed together atomically and it
//! returns only once the write is durable. A miss on a read is `Ok(None)`
//! (or `NotFound` where the operation names a parent that must exist).
//! `tests/conformance.rs` runs one suite against every backend.

mod core;
mod engine;
mod errors;
mod memory;
mod pg;
mod record_cache;
mod schema;
mod sled_store;
mod write_queue;

use std::future::Future;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use crate::domain::access::ApiKey;
use crate::domain::chain;
use crate::domain::external_review::ExternalReview;
use crate::domain::history::ClaimHistory;
use crate::domain::pdq::{Pdq, Transformation};
use crate::domain::{
    Claim, ClaimEvent, ClaimView, OfficialResponse, Page, Result, StatusView, Verdict,
    VerificationState,
};

pub use self::core::Core;
pub use engine::{After, Committed, Engine, Entry, KeyRange, Scan, TxError, WriteTx};
pub use errors::StorageError;
pub use memory::MemoryEngine;
pub use pg::{
    describe_url as pg_describe, migrate as pg_migrate, transfer as pg_transfer, PgEngine,
    PgOpenError, PgOptions, DEFAULT_POLL as DEFAULT_PG_POLL, DEFAULT_READERS as DEFAULT_PG_READERS,
};
pub use schema::{ReviewChange, Table};
pub use sled_store::{
    check_dir, check_dir_reporting, copy_trees, CheckProgress, CheckReport, Compacted, OpenError,
    Restored, Restorer, SledStore, DEFAULT_CACHE_BYTES, DEFAULT_MIN_FREE_DISK_BYTES,
    DIR_FORMAT_VERSION,
};

/// The status cache of a server (BENCHMARKS.md gives its size in claims).
pub const DEFAULT_STATUS_CACHE_BYTES: u64 = 256 * 1024 * 1024;
/// The claim cache of a server (BENCHMARKS.md gives its size in claims).
pub const DEFAULT_CLAIM_CACHE_BYTES: u64 = 256 * 1024 * 1024;

/// The reference backend: the core over [`MemoryEngine`] (`serve
/// --in-memory`, and the tests' fast backend). Nothing is kept on disk.
pub type MemoryStore = Core<MemoryEngine>;

impl MemoryStore {
    /// An empty store in memory, its PDQ index ready at once.
    pub fn in_memory() -> Result<Self> {
        let options = core::CoreOptions {
            build_index: true,
            durable_log: None,
        };
        Core::start(MemoryEngine::new()?, options)
    }
}

/// The shared backend: the core over [`PgEngine`], one PostgreSQL database
/// that any number of photoclaim processes serve (`serve --database-url`).
pub type PgStore = Core<PgEngine>;

impl PgStore {
    /// Connects to the database at `url` (migrating its schema), and
    /// starts the core over it; `build_index` for a server.
    pub fn connect(
        url: &str,
        options: &PgOptions,
        build_index: bool,
    ) -> std::result::Result<Self, PgOpenError> {
        let engine = PgEngine::open(pg::config(url)?, options)?;
        let options = core::CoreOptions {
            build_index,
            durable_log: None,
        };
        Core::start(engine, options).map_err(|e| PgOpenError::Other {
            cause: e.to_string(),
        })
    }
}

impl Default for MemoryStore {
    /// [`MemoryStore::in_memory`] for tests and demos; panics only if no
    /// thread or randomness is to be had.
    fn default() -> Self {
        Self::in_memory().expect("start an in-memory store")
    }
}

/// Bytes of the key that signs page tokens ([`Store::page_token_key`]).
pub const PAGE_TOKEN_KEY_LEN: usize = 32;

/// The key that signs page tokens (`wire::names`): random, made once per data
/// directory and kept in it.
pub type PageTokenKey = [u8; PAGE_TOKEN_KEY_LEN];

/// Most claims reported in `same_image_claims`.
pub const MAX_SAME_IMAGE_CLAIMS: usize = 50;

/// Register a validated claim draft.
#[derive(Clone, Debug)]
pub struct NewClaim {
    /// The draft; server-assigned fields are overwritten.
    pub claim: Claim,
    /// Idempotency key; empty for none.
    pub request_id: String,
    /// Authenticated identity making the change.
    pub actor: String,
    /// Largest PDQ distance reported as a near duplicate in `same_image`.
    pub near_distance: u32,
    /// `same_image` also reports rotated and mirrored copies.
    pub dihedral: bool,
    /// The exact hashes of the image's eight orientations when its bytes
    /// were hashed here (see [`SimilarQuery::variants`]).
    pub variants: Option<[Pdq; 8]>,
}

/// A claim as the claim cache holds it, shared with readers without a copy,
/// with room for one encoding of it that a reader may keep
/// ([`SharedClaim::encoding`]): the API keeps its wire encoding there, so a
/// claim that many similarity searches find is encoded once. A
/// `SharedClaim` never changes: a write to the claim puts a new one in the
/// cache, so a kept encoding always matches the version it was made from.
#[derive(Debug)]
pub struct SharedClaim {
    view: ClaimView,
    encoding: OnceLock<Bytes>,
}

impl From<ClaimView> for SharedClaim {
    /// A claim as read or written, with no encoding kept yet.
    fn from(view: ClaimView) -> SharedClaim {
        SharedClaim {
            view,
            encoding: OnceLock::new(),
        }
    }
}

impl SharedClaim {
    /// The claim and its latest response.
    pub fn view(&self) -> &ClaimView {
        &self.view
    }

    /// The claim and its latest response, copied only if still shared.
    pub fn into_view(shared: Arc<SharedClaim>) -> ClaimView {
        match Arc::try_unwrap(shared) {
            Ok(only) => only.view,
            Err(shared) => shared.view.clone(),
        }
    }

    /// The encoding kept with this claim, made by `encode` the first time.
    /// Every caller must pass the same encoding (there is one slot).
    pub fn encoding(&self, encode: impl FnOnce(&ClaimView) -> Bytes) -> Bytes {
        self.encoding.get_or_init(|| encode(&self.view)).clone()
    }
}

/// A claim found by its image.
#[derive(Clone, Debug)]
pub struct Similar {
    /// The claim, shared with the claim cache.
    pub claim: Arc<SharedClaim>,
    /// Same SHA-256 as the query.
    pub exact: bool,
    /// PDQ Hamming distance (0 for exact matches found without hashes).
    pub distance: u32,
    /// How the claim's image relates to the query's: Identity, or the
    /// rotation or reflection of the query picture that it matched.
    pub transformation: Transformation,
}

/// Whether a stored image's PDQ hash takes part in near-duplicate matching:
/// a known quality of at least 50, or a caller's hash of unknown quality
/// (the rule [`Store::find_similar`] applies to stored hashes).
pub fn image_hash_is_reliable(image: &crate::domain::Image) -> bool {
    schema::is_reliable(schema::stored_quality(image))
}

/// What to look for in [`Store::find_similar`].
#[derive(Clone, Debug, Default)]
pub struct SimilarQuery {
    /// Claims on exactly this image (lowercase hex SHA-256).
    pub sha256: Option<String>,
    /// Claims whose PDQ hash is within `max_distance` of this one. When
    /// absent but `sha256` finds a claim with a hash, that hash is used.
    pub pdq: Option<Pdq>,
    /// Largest Hamming distance that counts.
    pub max_distance: u32,
    /// Also match hashes below [`crate::domain::pdq::MIN_RELIABLE_QUALITY`].
    pub include_low_quality: bool,
    /// Only claims with smaller ids (registered earlier).
    pub before: Option<u64>,
    /// Most results.
    pub limit: usize,
    /// Also match rotated (90°, 180°, 270°) and mirrored copies: the
    /// PDQ hash's seven other variants are searched too.
    pub dihedral: bool,
    /// The exact variants of `pdq`, in [`Transformation::ALL`] order, when
    /// the query picture was hashed here; otherwise they are estimated from
    /// the hash's bits ([`Pdq::transformed`]).
    pub variants: Option<[Pdq; 8]>,
}

/// Result of a registration.
#[derive(Clone, Debug)]
pub struct Registered {
    /// The claim (for a replay: as it is now).
    pub claim: ClaimView,
    /// True when `request_id` matched an earlier registration.
    pub replayed: bool,
    /// Claims registered earlier on the same SHA-256 or a near-duplicate
    /// PDQ hash, nearest first, then newest.
    pub same_image: Vec<Similar>,
}

/// Attach a validated response draft to a claim.
#[derive(Clone, Debug)]
pub struct NewResponse {
    /// The claim to attach to.
    pub claim_id: u64,
    /// The draft; server-assigned fields are overwritten.
    pub response: OfficialResponse,
    /// Idempotency key; empty for none.
    pub request_id: String,
    /// Authenticated identity making the change.
    pub actor: String,
}

/// Result of an attachment.
#[derive(Clone, Debug)]
pub struct Attached {
    /// The stored response.
    pub response: OfficialResponse,
    /// True when `request_id` matched an earlier attachment.
    pub replayed: bool,
}

/// Set a validated verdict on a claim.
#[derive(Clone, Debug)]
pub struct NewVerdict {
    /// The claim.
    pub claim_id: u64,
    /// The verdict (ratings and rationale; reviewer and time are set by the rules).
    pub verdict: Verdict,
    /// When given, the change applies only if the claim's etag still matches.
    pub etag: Option<String>,
    /// Authenticated identity making the change.
    pub actor: String,
}

/// Which events of the log a watcher wants.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventFilter {
    /// Only this claim's events.
    pub claim_id: Option<u64>,
    /// Only events of these types (`ClaimEventType` values); empty: all.
    pub types: Vec<i32>,
}

impl EventFilter {
    /// Whether an event of claim `claim_id` and type `event_type` passes.
    pub fn accepts(&self, claim_id: u64, event_type: i32) -> bool {
        self.claim_id.is_none_or(|id| id == claim_id)
            && (self.types.is_empty() || self.types.contains(&event_type))
    }
}

/// One read of the event log.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogBatch {
    /// Matching events in log order.
    pub events: Vec<ClaimEvent>,
    /// The last log position examined: continue after it.
    pub examined_to: u64,
}

/// What a `request_id` was used for (backups carry these, so that a retry
/// after a restore is still answered without being redone).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RequestRecord {
    /// True for an attachment, false for a registration.
    #[prost(bool, tag = "1")]
    pub attach: bool,
    /// The request_id.
    #[prost(bytes = "vec", tag = "2")]
    pub request_id: Vec<u8>,
    /// SHA-256 of the request's payload.
    #[prost(bytes = "vec", tag = "3")]
    pub fingerprint: Vec<u8>,
    /// The claim registered or attached to.
    #[prost(uint64, tag = "4")]
    pub claim_id: u64,
    /// The response attached (0 for a registration).
    #[prost(uint64, tag = "5")]
    pub response_id: u64,
}

/// What an import did with one external review.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportOutcome {
    /// A new review.
    Created,
    /// A review with the same URL changed: a new revision.
    Updated,
    /// A review with the same URL, identical: nothing written.
    Unchanged,
}

/// One review of an import, in the order given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImportedReview {
    /// The review's id.
    pub id: u64,
    /// What happened.
    pub outcome: ImportOutcome,
}

/// Figures for operators (metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Claims stored.
    pub claims: u64,
    /// Size of the data on disk, in bytes.
    pub bytes_on_disk: u64,
    /// Free space of the file system that holds the data, in bytes, where
    /// the store can tell.
    pub disk_free_bytes: Option<u64>,
}

/// Whether a store takes writes now. Reads are served in every state but
/// the short reopening after a failed write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Writability {
    /// Writes are taken.
    Writable,
    /// The disk is (nearly) full: writes are refused with
    /// `ResourceExhausted` until `free_bytes` is back to `min_free_bytes`.
    DiskFull {
        /// Free space when last looked at.
        free_bytes: u64,
        /// The reserve that writes leave free.
        min_free_bytes: u64,
    },
    /// A write to disk failed for another reason (named here): writes are
    /// refused with `Unavailable` while the store reopens.
    Failed(String),
}

/// The operations photoclaim needs from storage.
///
/// The contract, beyond each method's own documentation (checked for every
/// backend by `tests/conformance.rs`):
///
/// - A write that fails changes nothing and does not use up its
///   `request_id`. A write to a claim that does not exist is `NotFound`.
/// - Registrations and attachments keep their request ids apart (one id
///   may serve one of each); an attachment's payload includes its claim, so
///   the same response sent to another claim with the same id is
///   `RequestIdReused`.
/// - When a write method returns, [`Store::durable_log`] has reached the
///   write's log position.
/// - [`Store::log_events`] always makes progress: when `after < up_to`,
///   `examined_to` is greater than `after`.
pub trait Store: Send + Sync + 'static {
    /// Registers a claim (or replays an earlier registration with the same request_id).
    fn register_claim(&self, cmd: NewClaim) -> impl Future<Output = Result<Registered>> + Send;

    /// Reads one claim.
    fn get_claim(&self, id: u64) -> impl Future<Output = Result<Option<ClaimView>>> + Send;

    /// Reads one claim's status: what [`Store::get_claim`] gives, without
    /// the claim's text, image and links.
    fn get_status(&self, id: u64) -> impl Future<Output = Result<Option<StatusView>>> + Send;

    /// Lists claims newest first, only those in `state` if given, starting
    /// below the cursor `before`.
    fn list_claims(
        &self,
        state: Option<VerificationState>,
        before: Option<u64>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<ClaimView>>> + Send;

    /// Lists claims oldest first (ascending id), starting above the cursor
    /// `after`: archives page through every claim with it.
    fn list_claims_oldest_first(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<ClaimView>>> + Send;

    /// Attaches a response (or replays an earlier attachment with the same request_id).
    fn attach_response(&self, cmd: NewResponse) -> impl Future<Output = Result<Attached>> + Send;

    /// Lists a claim's responses in attachment order after the cursor `after`.
    /// `NotFound` if the claim does not exist.
    fn list_responses(
        &self,
        claim_id: u64,
        after: Option<u64>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<OfficialResponse>>> + Send;

    /// Sets or replaces a claim's verdict.
    fn set_verdict(&self, cmd: NewVerdict) -> impl Future<Output = Result<ClaimView>> + Send;

    /// Lists a claim's events in sequence order after the cursor `after`.
    /// `NotFound` if the claim does not exist.
    fn list_events(
        &self,
        claim_id: u64,
        after: Option<u64>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<ClaimEvent>>> + Send;

    /// Claims whose image is the same or a near duplicate, nearest first,
    /// then newest. Never scans the claims: SHA-256 by its index, PDQ by the
    /// in-memory Hamming index.
    fn find_similar(
        &self,
        query: SimilarQuery,
    ) -> impl Future<Output = Result<Vec<Similar>>> + Send;

    /// Events from the service-wide log with positions in `(after, up_to]`,
    /// in log order, that match `filter`: at most `limit`, examining a
    /// bounded number of log entries per call. `up_to` must not pass
    /// [`Store::durable_log`]'s value, so no event is ever shown that a
    /// crash could still take back.
    fn log_events(
        &self,
        after: u64,
        up_to: u64,
        filter: &EventFilter,
        limit: usize,
    ) -> impl Future<Output = Result<LogBatch>> + Send;

    /// The newest durable log position, updated as writes become durable.
    fn durable_log(&self) -> tokio::sync::watch::Receiver<u64>;

    /// Claims registered at or before log position `up_to`, as they were
    /// then (replayed from their events up to it, which also verifies their
    /// hash chains), with their responses and events up to it: ascending
    /// id after the cursor `after`. Events up to a durable position never
    /// change, so pages read while writes go on form one consistent
    /// snapshot. `DataLoss` if a claim's audit trail is broken.
    fn snapshot_claims(
        &self,
        up_to: u64,
        after: Option<u64>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<ClaimHistory>>> + Send;

    /// The service-wide chain head after log position `position`
    /// ([`chain::GENESIS`] for 0).
    fn log_head(&self, position: u64) -> impl Future<Output = Result<chain::Hash>> + Send;

    /// request_id records in key order after `after`, at most `limit`.
    fn request_records(
        &self,
        after: Option<RequestRecord>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RequestRecord>>> + Send;

    /// Stores a new API key. `AlreadyExists` if its name is taken (also by
    /// a revoked key).
    fn create_key(&self, key: ApiKey) -> impl Future<Output = Result<ApiKey>> + Send;

    /// All API keys, active and revoked, in creation order.
    fn list_keys(&self) -> impl Future<Output = Result<Vec<ApiKey>>> + Send;

    /// Revokes the key named `name` (a revoked key is returned unchanged).
    /// `NotFound` if there is none.
    fn revoke_key(&self, name: &str, actor: &str) -> impl Future<Output = Result<ApiKey>> + Send;

    /// The key with this id, if any (revoked or not). Called on every
    /// authenticated request, so it must be a point lookup.
    fn find_key(&self, id: u64) -> impl Future<Output = Result<Option<ApiKey>>> + Send;

    /// Whether any key was ever created. Once one was, the service never
    /// serves anonymous callers again, even if all keys are revoked.
    fn has_keys(&self) -> impl Future<Output = Result<bool>> + Send;

    /// The key that signs this store's page tokens: made at random when the
    /// store is created, kept with the data and loaded at open, so tokens
    /// survive a restart but not a move to another store (a restore into a
    /// new data directory gets a new key). A secret: never sent or logged.
    fn page_token_key(&self) -> PageTokenKey;

    /// Claims stored and bytes on disk; cheap (no scan), read at every
    /// metrics scrape.
    fn stats(&self) -> impl Future<Output = Result<StoreStats>> + Send;

    /// Whether writes are taken now, updated as that changes: the server's
    /// health status and metrics follow it.
    fn writability(&self) -> tokio::sync::watch::Receiver<Writability>;

    /// Imports external reviews (validated, URLs normalized) in one atomic
    /// write: a review whose URL is stored already is updated (a new
    /// revision) or, when identical, left unchanged; every change is
    /// appended to the review log. Answers in the order given.
    fn import_reviews(
        &self,
        reviews: Vec<ExternalReview>,
        actor: String,
    ) -> impl Future<Output = Result<Vec<ImportedReview>>> + Send;

    /// One external review.
    fn get_review(&self, id: u64) -> impl Future<Output = Result<Option<ExternalReview>>> + Send;

    /// External reviews newest first, below the cursor `before`.
    fn list_reviews(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> impl Future<Output = Result<Page<ExternalReview>>> + Send;

    /// Review log entries (position, change) after position `after`, in
    /// log order, at most `limit`.
    fn review_log(
        &self,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<(u64, ReviewChange)>>> + Send;

    /// The newest review log position (0: none).
    fn review_log_head(&self) -> impl Future<Output = Result<u64>> + Send;

    /// Makes everything written so far durable; called once at shutdown.
    fn close(&self) -> impl Future<Output = Result<()>> + Send;
}
