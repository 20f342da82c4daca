//! What the conformance suite drives a store with: drafts of claims,
//! responses and verdicts, PDQ hashes at known distances, a pager that
//! checks the `Page` contract while it follows cursors, and [`Ext`],
//! unwrapping shorthands over [`Store`].

use std::future::Future;

use photoclaim::domain::pdq::Pdq;
use photoclaim::domain::{
    Claim, ClaimEvent, ClaimEventType, ClaimRating, ClaimView, Error, Image, MediaAuthenticity,
    OfficialResponse, Page, Responder, ResponderRole, ResponseKind, Result, Stance, Timestamp,
    Verdict, VerificationState,
};
use photoclaim::store::*;

pub(crate) const ACTOR: &str = "conformance";
/// A PDQ hash; see [`flipped`] for its neighbours.
pub(crate) const P: Pdq = Pdq([0x5a; 32]);

pub(crate) fn ts(seconds: i64) -> Timestamp {
    Timestamp { seconds, nanos: 7 }
}

pub(crate) fn draft(text: &str) -> NewClaim {
    let claim = Claim {
        claim_text: text.into(),
        claimant: "social media posts".into(),
        language: "en".into(),
        appearance_urls: vec!["https://example.org/post".into()],
        first_seen_time: Some(ts(1_641_600_000)),
        tags: vec!["conformance".into()],
        ..Default::default()
    };
    let (request_id, actor) = (String::new(), ACTOR.into());
    NewClaim {
        claim,
        request_id,
        actor,
        near_distance: 31,
        dihedral: false,
        variants: None,
    }
}

pub(crate) fn claim_rid(text: &str, request_id: &str) -> NewClaim {
    let mut cmd = draft(text);
    cmd.request_id = request_id.into();
    cmd
}

/// A claim on an image with this SHA-256 and PDQ hash of this quality.
pub(crate) fn on_image(text: &str, sha256: &str, pdq: Pdq, quality: i32) -> NewClaim {
    let mut cmd = draft(text);
    cmd.claim.image = Some(Image {
        source_url: "https://example.org/image.jpg".into(),
        sha256: sha256.into(),
        pdq: pdq.to_hex(),
        pdq_quality: quality,
        pdq_quality_known: true,
        caption: "as circulated".into(),
        ..Default::default()
    });
    cmd
}

pub(crate) fn response(claim_id: u64, stance: Stance, text: &str) -> NewResponse {
    let responder = Responder {
        organization: "Ministry of Defence".into(),
        person: String::new(),
        role: ResponderRole::Government as i32,
    };
    let response = OfficialResponse {
        responder: Some(responder),
        kind: ResponseKind::Statement as i32,
        stance: stance as i32,
        text: text.into(),
        language: "en".into(),
        ..Default::default()
    };
    let (request_id, actor) = (String::new(), ACTOR.into());
    NewResponse {
        claim_id,
        response,
        request_id,
        actor,
    }
}

pub(crate) fn response_rid(claim_id: u64, stance: Stance, request_id: &str) -> NewResponse {
    let mut cmd = response(claim_id, stance, "statement");
    cmd.request_id = request_id.into();
    cmd
}

pub(crate) fn verdict(claim_id: u64, rationale: &str, etag: Option<String>) -> NewVerdict {
    let verdict = Verdict {
        claim_rating: ClaimRating::Misleading as i32,
        media_authenticity: MediaAuthenticity::Decontextualized as i32,
        rationale: rationale.into(),
        ..Default::default()
    };
    let actor = ACTOR.into();
    NewVerdict {
        claim_id,
        verdict,
        etag,
        actor,
    }
}

pub(crate) fn reused(request_id: &str) -> Error {
    let request_id = request_id.into();
    Error::RequestIdReused { request_id }
}

pub(crate) fn filter(claim_id: Option<u64>, types: &[ClaimEventType]) -> EventFilter {
    let types = types.iter().map(|&t| t as i32).collect();
    EventFilter { claim_id, types }
}

pub(crate) fn sha(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

/// `base` with the bits in `bits` flipped: at distance `bits.len()`.
pub(crate) fn flipped(base: Pdq, bits: std::ops::Range<usize>) -> Pdq {
    let mut out = base;
    for bit in bits {
        out.0[bit / 8] ^= 1 << (bit % 8);
    }
    out
}

pub(crate) fn upto(n: u64) -> Vec<u64> {
    (1..=n).collect()
}

pub(crate) fn ids(views: &[ClaimView]) -> Vec<u64> {
    views.iter().map(|v| v.claim.id).collect()
}

pub(crate) fn similar(found: &[Similar]) -> Vec<(u64, bool, u32)> {
    let id = |s: &Similar| s.claim.view().claim.id;
    found.iter().map(|s| (id(s), s.exact, s.distance)).collect()
}

pub(crate) fn not_found<T: std::fmt::Debug>(result: Result<T>) {
    assert!(matches!(result, Err(Error::NotFound(_))), "{result:?}");
}

/// Every page of a listing with `limit`, following `next_cursor`;
/// checks that a cursor comes only after a full page and names its last item.
pub(crate) async fn pages<T, Fut>(
    limit: usize,
    cursor_of: impl Fn(&T) -> u64,
    mut fetch: impl FnMut(Option<u64>) -> Fut,
) -> Vec<T>
where
    Fut: Future<Output = Result<Page<T>>>,
{
    let (mut cursor, mut all) = (None, Vec::new());
    for _ in 0..1000 {
        let page = fetch(cursor).await.expect("listing");
        assert!(page.items.len() <= limit, "a page holds at most `limit`");
        if let Some(next) = page.next_cursor {
            assert_eq!(page.items.len(), limit, "a cursor only after a full page");
            let last = page.items.last().map(&cursor_of);
            assert_eq!(Some(next), last, "the cursor is the last item's");
        }
        all.extend(page.items);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return all,
        }
    }
    panic!("the listing never ended");
}

/// Shorthands over the trait; each unwraps, so a failing call fails the test.
pub(crate) trait Ext: Store {
    async fn reg(&self, cmd: NewClaim) -> Registered {
        self.register_claim(cmd).await.unwrap()
    }
    async fn attach(&self, id: u64, stance: Stance, text: &str) -> Attached {
        let cmd = response(id, stance, text);
        self.attach_response(cmd).await.unwrap()
    }
    async fn decide(&self, id: u64, rationale: &str) -> ClaimView {
        let cmd = verdict(id, rationale, None);
        self.set_verdict(cmd).await.unwrap()
    }
    async fn claim(&self, id: u64) -> ClaimView {
        self.get_claim(id).await.unwrap().expect("the claim exists")
    }
    async fn ids(&self, state: Option<VerificationState>) -> Vec<u64> {
        ids(&self.list_claims(state, None, 10_000).await.unwrap().items)
    }
    async fn events(&self, id: u64) -> Vec<ClaimEvent> {
        self.list_events(id, None, 10_000).await.unwrap().items
    }
    async fn responses(&self, id: u64) -> Vec<OfficialResponse> {
        self.list_responses(id, None, 10_000).await.unwrap().items
    }
    async fn count(&self) -> u64 {
        self.stats().await.unwrap().claims
    }
    fn position(&self) -> u64 {
        *self.durable_log().borrow()
    }
    /// The log's events in `(after, end]` that `f` passes, read with
    /// `log_events` in batches of at most `n`, following `examined_to`.
    async fn log(&self, after: u64, end: u64, f: &EventFilter, n: usize) -> Vec<ClaimEvent> {
        let (mut at, mut out) = (after, Vec::new());
        while at < end {
            let batch = self.log_events(at, end, f, n).await.unwrap();
            let to = batch.examined_to;
            assert!(batch.events.len() <= n, "at most `limit` events");
            assert!(to > at && to <= end, "examined_to {to} after {at}");
            for e in &batch.events {
                assert!(e.log_position > at && e.log_position <= to, "{e:?}");
                assert!(f.accepts(e.claim_id, e.event_type), "{e:?}");
            }
            out.extend(batch.events);
            at = to;
        }
        out
    }
    /// The durable position and every event up to it.
    async fn whole_log(&self) -> (u64, Vec<ClaimEvent>) {
        let at = self.position();
        (at, self.log(0, at, &EventFilter::default(), 10_000).await)
    }
}

impl<S: Store> Ext for S {}
