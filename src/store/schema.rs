//! The layout every engine stores: tables by name, their keys and the
//! stored form of the records that are not plain protobuf messages. The
//! core ([`super::core`]) reads and writes through these; sled's trees,
//! the memory engine's maps and `check`, `restore` and `compact` all use
//! the names and codecs from here, so a layout is spelled once.
//!
//! Tables and key layouts (all integers big-endian, so keys sort numerically):
//!
//! | table              | key                                   | value                         |
//! |--------------------|---------------------------------------|-------------------------------|
//! | `meta`             | `b"format_version"`                   | u32 (the sled directory's format version) |
//! | `meta`             | `b"last_claim_id"`                    | u64                           |
//! | `meta`             | `b"last_log_position"`                | u64                           |
//! | `meta`             | `b"page_token_key"`                   | 32 random bytes: the key of `Store::page_token_key`, made at the first open |
//! | `claims`           | claim_id (u64)                        | `domain::Claim` (protobuf) ‖ copy of the latest response (field 30, see [`claim_record`]) |
//! | `claims_by_state`  | state (u8) ‖ claim_id (u64)           | empty                         |
//! | `responses`        | claim_id (u64) ‖ response_id (u64)    | `domain::OfficialResponse`    |
//! | `events`           | claim_id (u64) ‖ sequence (u64)       | `domain::ClaimEvent`          |
//! | `event_log`        | log position (u64)                    | claim_id (u64) ‖ sequence (u64) ‖ type (u8) ‖ chain head (32 bytes) |
//! | `claims_by_sha256` | sha256 (32 bytes) ‖ claim_id (u64)    | empty                         |
//! | `claims_by_pdq`    | claim_id (u64)                        | pdq (32 bytes) ‖ quality (u8, 255: unknown) |
//! | `request_ids`      | operation (u8) ‖ request_id (bytes)   | [`IdempotencyRecord`]         |
//! | `api_keys`         | key id (u64)                          | `domain::access::ApiKey`      |
//! | `api_key_names`    | key name, lower-cased (ASCII)         | key id (u64)                  |
//! | `external_reviews` | review id (u64)                       | `domain::external_review::ExternalReview` |
//! | `external_reviews_by_url` | normalized review URL (UTF-8)  | review id (u64)               |
//! | `review_log`       | review log position (u64)             | [`ReviewChange`]              |
//! | `meta`             | `b"last_review_id"`, `b"last_review_position"` | u64                  |
//!
//! The records are protobuf messages (`domain`): the hash chains hash
//! their encoding, so that encoding is part of the domain and every engine
//! stores it byte for byte.

use prost::Message;
use sha2::{Digest, Sha256};

use super::errors::corrupt;
use crate::domain::pdq::Pdq;
use crate::domain::{
    chain, Claim, ClaimEvent, ClaimView, Error, OfficialResponse, Result, StatusView,
};

/// Format version, counters and the page-token key.
pub(super) const META: &str = "meta";
/// `claim_id -> Claim`.
pub(super) const CLAIMS: &str = "claims";
/// `state ‖ claim_id -> ()`.
pub(super) const CLAIMS_BY_STATE: &str = "claims_by_state";
/// `claim_id ‖ response_id -> OfficialResponse`.
pub(super) const RESPONSES: &str = "responses";
/// `claim_id ‖ sequence -> ClaimEvent`.
pub(super) const EVENTS: &str = "events";
/// `log position -> claim_id ‖ sequence ‖ type ‖ chain head`.
pub(super) const EVENT_LOG: &str = "event_log";
/// `sha256 ‖ claim_id -> ()`.
pub(super) const CLAIMS_BY_SHA256: &str = "claims_by_sha256";
/// `claim_id -> pdq ‖ quality`.
pub(super) const CLAIMS_BY_PDQ: &str = "claims_by_pdq";
/// `operation ‖ request_id -> IdempotencyRecord`.
pub(super) const REQUEST_IDS: &str = "request_ids";
/// `key id -> ApiKey`.
pub(super) const API_KEYS: &str = "api_keys";
/// `lower-cased key name -> key id`.
pub(super) const API_KEY_NAMES: &str = "api_key_names";

/// `review id -> ExternalReview`.
pub(super) const EXTERNAL_REVIEWS: &str = "external_reviews";
/// `normalized review URL -> review id`.
pub(super) const EXTERNAL_REVIEWS_BY_URL: &str = "external_reviews_by_url";
/// `review log position -> ReviewChange`.
pub(super) const REVIEW_LOG: &str = "review_log";

/// The tables of the layout above.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// `meta`.
    Meta,
    /// `claims`.
    Claims,
    /// `claims_by_state`.
    ClaimsByState,
    /// `responses`.
    Responses,
    /// `events`.
    Events,
    /// `event_log`.
    EventLog,
    /// `claims_by_sha256`.
    ClaimsBySha256,
    /// `claims_by_pdq`.
    ClaimsByPdq,
    /// `request_ids`.
    RequestIds,
    /// `api_keys`.
    ApiKeys,
    /// `api_key_names`.
    ApiKeyNames,
    /// `external_reviews`.
    ExternalReviews,
    /// `external_reviews_by_url`.
    ExternalReviewsByUrl,
    /// `review_log`.
    ReviewLog,
}

impl Table {
    /// Every table, in the order of [`Table::index`].
    pub const ALL: [Table; 14] = [
        Table::Meta,
        Table::Claims,
        Table::ClaimsByState,
        Table::Responses,
        Table::Events,
        Table::EventLog,
        Table::ClaimsBySha256,
        Table::ClaimsByPdq,
        Table::RequestIds,
        Table::ApiKeys,
        Table::ApiKeyNames,
        Table::ExternalReviews,
        Table::ExternalReviewsByUrl,
        Table::ReviewLog,
    ];

    /// The table's name (sled's tree name).
    pub fn name(self) -> &'static str {
        match self {
            Table::Meta => META,
            Table::Claims => CLAIMS,
            Table::ClaimsByState => CLAIMS_BY_STATE,
            Table::Responses => RESPONSES,
            Table::Events => EVENTS,
            Table::EventLog => EVENT_LOG,
            Table::ClaimsBySha256 => CLAIMS_BY_SHA256,
            Table::ClaimsByPdq => CLAIMS_BY_PDQ,
            Table::RequestIds => REQUEST_IDS,
            Table::ApiKeys => API_KEYS,
            Table::ApiKeyNames => API_KEY_NAMES,
            Table::ExternalReviews => EXTERNAL_REVIEWS,
            Table::ExternalReviewsByUrl => EXTERNAL_REVIEWS_BY_URL,
            Table::ReviewLog => REVIEW_LOG,
        }
    }

    /// Position in [`Table::ALL`], for engines that keep an array.
    pub fn index(self) -> usize {
        self as usize
    }
}

pub(super) const META_FORMAT_VERSION: &[u8] = b"format_version";
pub(super) const META_LAST_CLAIM_ID: &[u8] = b"last_claim_id";
pub(super) const META_LAST_LOG_POSITION: &[u8] = b"last_log_position";
/// The page-token key. Not part of backups: a restore makes a new
/// directory, which makes its own key at the first open. Compaction copies
/// `meta` as it is, and so keeps it.
pub(super) const META_LAST_REVIEW_ID: &[u8] = b"last_review_id";
pub(super) const META_LAST_REVIEW_POSITION: &[u8] = b"last_review_position";
/// One change of an external review, in the review log: the review's
/// audit trail (who imported which revision when).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReviewChange {
    /// The review.
    #[prost(uint64, tag = "1")]
    pub review_id: u64,
    /// Its revision after the change (1: created).
    #[prost(uint64, tag = "2")]
    pub revision: u64,
    /// When.
    #[prost(message, optional, tag = "3")]
    pub time: Option<crate::domain::Timestamp>,
    /// Who imported it.
    #[prost(string, tag = "4")]
    pub actor: String,
}
pub(super) const META_PAGE_TOKEN_KEY: &[u8] = b"page_token_key";
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

pub(super) fn sha_index_key(sha: &[u8; 32], id: u64) -> [u8; 40] {
    let mut key = [0u8; 40];
    key[..32].copy_from_slice(sha);
    key[32..].copy_from_slice(&id.to_be_bytes());
    key
}

pub(super) fn request_key(op: u8, request_id: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + request_id.len());
    key.push(op);
    key.extend_from_slice(request_id);
    key
}

/// SHA-256 over length-prefixed parts: a request's payload, which a retry
/// with the same request_id must match.
pub(super) fn fingerprint(parts: &[&[u8]]) -> Vec<u8> {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.finalize().to_vec()
}

/// Decodes the record at `at` (its name, e.g. `claims/7`); one that does
/// not decode is [`corrupt`].
pub(super) fn decode<M: Message + Default>(bytes: &[u8], at: &str) -> Result<M> {
    M::decode(bytes).map_err(|e| corrupt(at, format_args!("record does not decode: {e}")))
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
pub(super) struct LatestCopy {
    #[prost(bytes = "vec", tag = "30")]
    pub(super) response: Vec<u8>,
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

/// A claim record's status fields and its copy of the latest response
/// (the claim's text, image and links are skipped, not decoded).
pub(super) fn status_of(record: &[u8], id: u64) -> Result<StatusView> {
    let at = format!("claims/{id}");
    let latest: LatestResponse = decode(record, &at)?;
    Ok(StatusView {
        status: decode(record, &at)?,
        latest_response: latest.response,
    })
}

/// A claim record decoded whole: the claim and its latest response.
pub(super) fn claim_view(record: &[u8], id: u64) -> Result<ClaimView> {
    let at = format!("claims/{id}");
    let latest: LatestResponse = decode(record, &at)?;
    Ok(ClaimView {
        claim: decode(record, &at)?,
        latest_response: latest.response,
    })
}

/// Quality byte of `claims_by_pdq` meaning "not known" (a caller's hash).
pub(super) const UNKNOWN_QUALITY: i32 = 255;

/// [`crate::domain::pdq::is_reliable`]; a caller's hash, of unknown
/// quality, is taken as it is.
pub(super) fn is_reliable(quality: i32) -> bool {
    quality == UNKNOWN_QUALITY || crate::domain::pdq::is_reliable(quality)
}

/// The quality stored for an image's hash.
pub(super) fn stored_quality(image: &crate::domain::Image) -> i32 {
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
