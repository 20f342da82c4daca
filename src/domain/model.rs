//! The domain's records.
//!
//! These structs are what the rules in [`super::rules`] work on, and they are
//! also the on-disk records: the store encodes them as protobuf (prost derives)
//! with a `format_version`. Field tags are therefore forever: add fields with
//! new tags, never renumber or reuse one. Enum numbers match the public API's
//! (`proto/photoclaim/v1/resources.proto`) so conversion is a range check.

/// Version of the record layout written by this binary. A store refuses to
/// open data written with a newer version.
pub const FORMAT_VERSION: u32 = 1;

/// A point in time, as seconds and nanoseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, prost::Message)]
pub struct Timestamp {
    /// Seconds since 1970-01-01T00:00:00Z; negative before it.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds within the second, 0..=999,999,999.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl Timestamp {
    /// The current time from the system clock.
    pub fn now() -> Self {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp {
            seconds: since.as_secs() as i64,
            nanos: since.subsec_nanos() as i32,
        }
    }
}

/// Where a claim stands in verification (see [`super::rules::derive_state`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum VerificationState {
    /// Only meaningful as "no filter".
    Unspecified = 0,
    /// Nothing gathered yet.
    Unverified = 1,
    /// Responses gathered, no verdict.
    InReview = 2,
    /// Responses both support and refute, no verdict.
    Disputed = 3,
    /// A verdict is set.
    Resolved = 4,
}

/// ClaimReview-style rating of a claim; the number is the rating value 1-5.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ClaimRating {
    /// Not rated.
    Unspecified = 0,
    /// Rating value 1.
    False = 1,
    /// Rating value 2.
    Misleading = 2,
    /// Rating value 3.
    Unproven = 3,
    /// Rating value 4.
    PartlyAccurate = 4,
    /// Rating value 5.
    Accurate = 5,
}

/// schema.org MediaReview's media authenticity categories.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum MediaAuthenticity {
    /// Not rated.
    Unspecified = 0,
    /// Authentic, original context.
    Original = 1,
    /// Authentic, misleading context.
    Decontextualized = 2,
    /// Edited or cropped to mislead.
    EditedOrCropped = 3,
    /// Manipulated or fabricated.
    Transformed = 4,
    /// Staged scene.
    Staged = 5,
    /// Satire or parody.
    SatireOrParody = 6,
}

/// A response's stance toward the claim it is attached to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Stance {
    /// Not given (rejected on input).
    Unspecified = 0,
    /// Supports the claim.
    Supports = 1,
    /// Refutes the claim.
    Refutes = 2,
    /// Adds context.
    AddsContext = 3,
    /// Takes no position.
    NoPosition = 4,
}

/// What kind of response a statement is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ResponseKind {
    /// Not given (rejected on input).
    Unspecified = 0,
    /// A statement.
    Statement = 1,
    /// An inquiry.
    Inquiry = 2,
    /// An expert's opinion.
    ExpertOpinion = 3,
    /// Declined to comment.
    NoComment = 4,
}

/// What kind of responder issued a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ResponderRole {
    /// Not given.
    Unspecified = 0,
    /// Government body.
    Government = 1,
    /// Intergovernmental organization.
    InternationalOrganization = 2,
    /// Independent expert.
    IndependentExpert = 3,
    /// Police, army, security force.
    SecurityForce = 4,
    /// Company.
    Company = 5,
    /// Non-governmental organization.
    Ngo = 6,
    /// News organization, photographer, agency.
    Media = 7,
    /// Anyone else.
    Other = 8,
}

/// What kind of change an event records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ClaimEventType {
    /// Never stored.
    Unspecified = 0,
    /// Registration.
    ClaimRegistered = 1,
    /// Response attached.
    OfficialResponseAttached = 2,
    /// Verdict set or replaced.
    VerdictSet = 3,
}

/// The image a claim is about.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Image {
    /// Absolute http(s) URL.
    #[prost(string, tag = "1")]
    pub source_url: String,
    /// 64 lowercase hex chars, or empty.
    #[prost(string, tag = "2")]
    pub sha256: String,
    /// Credit line.
    #[prost(string, tag = "3")]
    pub credit: String,
    /// Publisher.
    #[prost(string, tag = "4")]
    pub publisher: String,
    /// First publication time.
    #[prost(message, optional, tag = "5")]
    pub published_time: Option<Timestamp>,
    /// Capture time.
    #[prost(message, optional, tag = "6")]
    pub captured_time: Option<Timestamp>,
    /// Location as text.
    #[prost(string, tag = "7")]
    pub location: String,
    /// Caption as circulated.
    #[prost(string, tag = "8")]
    pub caption: String,
    /// PDQ hash, 64 lowercase hex chars, or empty.
    #[prost(string, tag = "9")]
    pub pdq: String,
    /// PDQ quality 0-100 (0 with a caller's hash: unknown).
    #[prost(int32, tag = "10")]
    pub pdq_quality: i32,
    /// Width in pixels (0: not decoded here).
    #[prost(int32, tag = "11")]
    pub width: i32,
    /// Height in pixels.
    #[prost(int32, tag = "12")]
    pub height: i32,
    /// Decoded format ("jpeg", "png", "webp", "gif").
    #[prost(string, tag = "13")]
    pub format: String,
    /// EXIF facts, when the image had any.
    #[prost(message, optional, tag = "14")]
    pub exif: Option<ImageExif>,
    /// `pdq_quality` was computed here (or given by the caller); false for
    /// a caller's hash without a quality, which is trusted.
    #[prost(bool, tag = "15")]
    pub pdq_quality_known: bool,
    /// Content Credentials (C2PA) read from the bytes; `None` when the
    /// image had none or was not sent.
    #[prost(message, optional, tag = "16")]
    pub content_credentials: Option<super::provenance::ContentCredentials>,
}

/// Facts from an image's EXIF metadata.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ImageExif {
    /// DateTimeOriginal as written ("2022:01:07 14:03:11").
    #[prost(string, tag = "1")]
    pub capture_time: String,
    /// Make.
    #[prost(string, tag = "2")]
    pub camera_make: String,
    /// Model.
    #[prost(string, tag = "3")]
    pub camera_model: String,
    /// Software.
    #[prost(string, tag = "4")]
    pub software: String,
    /// Orientation 1-8, 0 when absent.
    #[prost(int32, tag = "5")]
    pub orientation: i32,
    /// GPS coordinates present.
    #[prost(bool, tag = "6")]
    pub has_gps: bool,
    /// Latitude, decimal degrees.
    #[prost(double, tag = "7")]
    pub gps_latitude: f64,
    /// Longitude, decimal degrees.
    #[prost(double, tag = "8")]
    pub gps_longitude: f64,
}

/// The desk's verdict on a claim.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Verdict {
    /// Rating of the claim.
    #[prost(enumeration = "ClaimRating", tag = "1")]
    pub claim_rating: i32,
    /// Rating of the image.
    #[prost(enumeration = "MediaAuthenticity", tag = "2")]
    pub media_authenticity: i32,
    /// Why.
    #[prost(string, tag = "3")]
    pub rationale: String,
    /// Who set it (an authenticated identity, never a request field).
    #[prost(string, tag = "4")]
    pub reviewed_by: String,
    /// When it was set.
    #[prost(message, optional, tag = "5")]
    pub review_time: Option<Timestamp>,
}

/// Counts of attached responses, kept on the claim so that the status is a
/// single read.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Evidence {
    /// All attached responses; also the id of the latest one.
    #[prost(uint64, tag = "1")]
    pub total: u64,
    /// Responses with stance SUPPORTS.
    #[prost(uint64, tag = "2")]
    pub supporting: u64,
    /// Responses with stance REFUTES.
    #[prost(uint64, tag = "3")]
    pub refuting: u64,
    /// Responses with stance ADDS_CONTEXT.
    #[prost(uint64, tag = "4")]
    pub context: u64,
}

/// A claim about an image, with everything needed to derive its status.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Claim {
    /// Record layout version ([`FORMAT_VERSION`] when written).
    #[prost(uint32, tag = "1")]
    pub format_version: u32,
    /// Server-assigned id; the resource name is `claims/{id}`.
    #[prost(uint64, tag = "2")]
    pub id: u64,
    /// What is claimed.
    #[prost(string, tag = "3")]
    pub claim_text: String,
    /// Who claims it.
    #[prost(string, tag = "4")]
    pub claimant: String,
    /// BCP-47 tag.
    #[prost(string, tag = "5")]
    pub language: String,
    /// Where the claim appeared.
    #[prost(string, repeated, tag = "6")]
    pub appearance_urls: Vec<String>,
    /// When the desk first saw it.
    #[prost(message, optional, tag = "7")]
    pub first_seen_time: Option<Timestamp>,
    /// Desk labels.
    #[prost(string, repeated, tag = "8")]
    pub tags: Vec<String>,
    /// The image.
    #[prost(message, optional, tag = "9")]
    pub image: Option<Image>,
    /// Registration time.
    #[prost(message, optional, tag = "10")]
    pub create_time: Option<Timestamp>,
    /// Time of the latest change.
    #[prost(message, optional, tag = "11")]
    pub update_time: Option<Timestamp>,
    /// Sequence number of the latest event; also the etag.
    #[prost(uint64, tag = "12")]
    pub last_sequence: u64,
    /// Response counts.
    #[prost(message, optional, tag = "13")]
    pub evidence: Option<Evidence>,
    /// The current verdict, if any.
    #[prost(message, optional, tag = "14")]
    pub verdict: Option<Verdict>,
    /// Derived state, stored so the state index can be kept in step.
    #[prost(enumeration = "VerificationState", tag = "15")]
    pub state: i32,
    /// Identity that registered the claim.
    #[prost(string, tag = "16")]
    pub registered_by: String,
    /// SHA-256 of the claim's latest event record: the head of its hash
    /// chain (see [`super::chain`]).
    #[prost(bytes = "vec", tag = "17")]
    pub chain_head: Vec<u8>,
    /// When the event the claim says the image shows took place.
    #[prost(message, optional, tag = "18")]
    pub event_time: Option<Timestamp>,
}

/// Who issued an official response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Responder {
    /// Organization.
    #[prost(string, tag = "1")]
    pub organization: String,
    /// Person, if named.
    #[prost(string, tag = "2")]
    pub person: String,
    /// Kind of responder.
    #[prost(enumeration = "ResponderRole", tag = "3")]
    pub role: i32,
}

/// A statement gathered about a claim. Append-only.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OfficialResponse {
    /// Record layout version.
    #[prost(uint32, tag = "1")]
    pub format_version: u32,
    /// The claim it is attached to.
    #[prost(uint64, tag = "2")]
    pub claim_id: u64,
    /// Per-claim id, 1, 2, ... in attachment order.
    #[prost(uint64, tag = "3")]
    pub id: u64,
    /// Who responded.
    #[prost(message, optional, tag = "4")]
    pub responder: Option<Responder>,
    /// Kind of response.
    #[prost(enumeration = "ResponseKind", tag = "5")]
    pub kind: i32,
    /// Stance toward the claim.
    #[prost(enumeration = "Stance", tag = "6")]
    pub stance: i32,
    /// The text.
    #[prost(string, tag = "7")]
    pub text: String,
    /// BCP-47 tag.
    #[prost(string, tag = "8")]
    pub language: String,
    /// Where it was published.
    #[prost(string, tag = "9")]
    pub source_url: String,
    /// When it was issued.
    #[prost(message, optional, tag = "10")]
    pub issue_time: Option<Timestamp>,
    /// Id of the earlier response of the same claim it answers; 0 for none.
    #[prost(uint64, tag = "11")]
    pub in_reply_to: u64,
    /// Attachment time.
    #[prost(message, optional, tag = "12")]
    pub create_time: Option<Timestamp>,
    /// Identity that attached it.
    #[prost(string, tag = "13")]
    pub attached_by: String,
}

/// Details of a registration event.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ClaimRegistered {
    /// Claim text as registered.
    #[prost(string, tag = "1")]
    pub claim_text: String,
    /// Image SHA-256, if given.
    #[prost(string, tag = "2")]
    pub image_sha256: String,
    /// The image's Content Credentials as read at registration.
    #[prost(message, optional, tag = "3")]
    pub content_credentials: Option<super::provenance::ContentCredentials>,
}

/// Details of an attachment event.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResponseAttached {
    /// Per-claim response id.
    #[prost(uint64, tag = "1")]
    pub response_id: u64,
    /// Responding organization.
    #[prost(string, tag = "2")]
    pub organization: String,
    /// Stance.
    #[prost(enumeration = "Stance", tag = "3")]
    pub stance: i32,
    /// Kind.
    #[prost(enumeration = "ResponseKind", tag = "4")]
    pub kind: i32,
}

/// Details of a verdict event.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VerdictSet {
    /// The new verdict.
    #[prost(message, optional, tag = "1")]
    pub verdict: Option<Verdict>,
    /// The verdict it replaced, if any.
    #[prost(message, optional, tag = "2")]
    pub previous: Option<Verdict>,
}

/// What an event changed.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum EventDetails {
    /// Registration.
    #[prost(message, tag = "10")]
    Registered(ClaimRegistered),
    /// Attachment.
    #[prost(message, tag = "11")]
    ResponseAttached(ResponseAttached),
    /// Verdict.
    #[prost(message, tag = "12")]
    VerdictSet(VerdictSet),
}

/// One change to a claim: the audit trail.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ClaimEvent {
    /// Record layout version.
    #[prost(uint32, tag = "1")]
    pub format_version: u32,
    /// The claim.
    #[prost(uint64, tag = "2")]
    pub claim_id: u64,
    /// Per-claim sequence, gapless from 1.
    #[prost(uint64, tag = "3")]
    pub sequence: u64,
    /// Kind of change.
    #[prost(enumeration = "ClaimEventType", tag = "4")]
    pub event_type: i32,
    /// Who made it.
    #[prost(string, tag = "5")]
    pub actor: String,
    /// When.
    #[prost(message, optional, tag = "6")]
    pub time: Option<Timestamp>,
    /// State after the change.
    #[prost(enumeration = "VerificationState", tag = "7")]
    pub state: i32,
    /// What changed.
    #[prost(oneof = "EventDetails", tags = "10, 11, 12")]
    pub details: Option<EventDetails>,
    /// Position in the service-wide event log (from 1, in commit order):
    /// WatchClaimEvents' cursor. 0 only in records written before the log.
    #[prost(uint64, tag = "8")]
    pub log_position: u64,
    /// SHA-256 of the claim's previous event record (empty for the first):
    /// the link of the claim's hash chain.
    #[prost(bytes = "vec", tag = "9")]
    pub prev_hash: Vec<u8>,
    /// SHA-256 of the record the event made: for a registration, the claim
    /// as registered ([`super::chain::registered_digest`]); for an
    /// attachment, the response record. Empty for a verdict (the verdict is
    /// in the details).
    #[prost(bytes = "vec", tag = "13")]
    pub record_sha256: Vec<u8>,
}

/// A claim as read, with the latest attached response (for the status).
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimView {
    /// The claim record.
    pub claim: Claim,
    /// Its latest response, if any.
    pub latest_response: Option<OfficialResponse>,
}

/// The fields of a stored [`Claim`] its verification status is made of.
/// It decodes a `Claim` record (same tags): the fields it does not name —
/// the text, the image, the links — are skipped without being copied, so a
/// status read costs less than reading the claim.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ClaimStatus {
    /// See [`Claim::id`].
    #[prost(uint64, tag = "2")]
    pub id: u64,
    /// See [`Claim::update_time`].
    #[prost(message, optional, tag = "11")]
    pub update_time: Option<Timestamp>,
    /// See [`Claim::last_sequence`].
    #[prost(uint64, tag = "12")]
    pub last_sequence: u64,
    /// See [`Claim::evidence`].
    #[prost(message, optional, tag = "13")]
    pub evidence: Option<Evidence>,
    /// See [`Claim::verdict`].
    #[prost(message, optional, tag = "14")]
    pub verdict: Option<Verdict>,
    /// See [`Claim::state`].
    #[prost(enumeration = "VerificationState", tag = "15")]
    pub state: i32,
    /// See [`Claim::chain_head`].
    #[prost(bytes = "vec", tag = "17")]
    pub chain_head: Vec<u8>,
}

impl From<&Claim> for ClaimStatus {
    fn from(c: &Claim) -> Self {
        ClaimStatus {
            id: c.id,
            update_time: c.update_time,
            last_sequence: c.last_sequence,
            evidence: c.evidence.clone(),
            verdict: c.verdict.clone(),
            state: c.state,
            chain_head: c.chain_head.clone(),
        }
    }
}

/// A claim's status as read, with the latest attached response.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusView {
    /// The status fields of the claim record.
    pub status: ClaimStatus,
    /// Its latest response, if any.
    pub latest_response: Option<OfficialResponse>,
}

/// One page of a listing: the items and the cursor to continue after, if more may follow.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<T> {
    /// Items of this page.
    pub items: Vec<T>,
    /// Cursor of the last item when more items may follow, else `None`.
    /// Only a full page carries one; a listing that reads one item ahead
    /// leaves it `None` on an exactly full last page, one that does not
    /// may give a cursor whose next page is empty.
    pub next_cursor: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn a_claim_record_decodes_as_its_status_fields_and_nothing_else() {
        let at = |seconds| Some(Timestamp { seconds, nanos: 7 });
        let claim = Claim {
            format_version: FORMAT_VERSION,
            id: 42,
            claim_text: "UN peacekeepers in Kazakhstan".into(),
            claimant: "social media posts".into(),
            language: "en".into(),
            appearance_urls: vec!["https://example.org/post".into()],
            first_seen_time: at(1),
            event_time: at(8),
            tags: vec!["kazakhstan".into()],
            image: Some(Image {
                sha256: "ab".repeat(32),
                ..Default::default()
            }),
            create_time: at(2),
            update_time: at(3),
            last_sequence: 5,
            evidence: Some(Evidence {
                total: 3,
                supporting: 1,
                refuting: 1,
                context: 1,
            }),
            verdict: Some(Verdict {
                claim_rating: 2,
                media_authenticity: 3,
                rationale: "KAZBAT in UN helmets".into(),
                reviewed_by: "desk".into(),
                review_time: at(4),
            }),
            state: VerificationState::Resolved as i32,
            registered_by: "ingest".into(),
            chain_head: vec![9; 32],
        };
        let bytes = claim.encode_to_vec();
        let status = ClaimStatus::decode(bytes.as_slice()).unwrap();
        assert_eq!(status, ClaimStatus::from(&claim));
        assert_eq!(status.id, 42);
        assert_eq!(status.last_sequence, 5);
        assert_eq!(status.evidence.as_ref().unwrap().refuting, 1);
        assert_eq!(
            status.verdict.as_ref().unwrap().rationale,
            "KAZBAT in UN helmets"
        );
        assert_eq!(status.state, VerificationState::Resolved as i32);
        assert_eq!(status.chain_head, vec![9; 32]);
        assert_eq!(status.update_time, at(3));
        // Only the status's fields are kept: re-encoded, it is smaller.
        assert!(status.encode_to_vec().len() < bytes.len() / 2);
    }
}
