//! Model-based test: random sequences of RegisterClaim,
//! AttachOfficialResponse, SetVerdict, GetVerificationStatus and
//! ListClaimEvents run against a real server (in-process, over a real sled
//! directory) and against a small model of the documented rules. After every
//! operation the gRPC code, the touched claim's status and its event list
//! must agree with the model; at the end of a case every claim of the case
//! is compared again.
//!
//! The model's rules: a verdict makes a claim RESOLVED; else supporting and
//! refuting responses make it DISPUTED; else any response makes it
//! IN_REVIEW; else it is UNVERIFIED. Each claim's events are numbered 1..n.
//! A retry with the same `request_id` and payload returns the first result
//! and adds no event; the same `request_id` with another payload is
//! ALREADY_EXISTS. A refused call changes nothing.
//!
//! One server serves all cases; each case registers its own claims and uses
//! its own request_ids. `PROPTEST_CASES` overrides the number of cases (32).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use common::*;
use photoclaim::api::REPLAYED_METADATA;
use photoclaim::pb;
use photoclaim::pb::claim_event::Details;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tonic::Code;

/// A claim that no case ever registers (ids are assigned from 1 upwards).
const MISSING_CLAIM: u64 = 9_000_000_000_000_000_000;

/// Which claim an operation names.
#[derive(Clone, Debug)]
enum ClaimRef {
    /// One of the case's claims (index modulo their number); a missing claim
    /// while the case has none.
    Existing(usize),
    /// A well-formed name of a claim that does not exist.
    Missing,
}

/// `official_response.in_reply_to` of an attachment.
#[derive(Clone, Debug)]
enum ReplyTo {
    None,
    /// An existing response of the same claim (index modulo their number);
    /// response 1, which does not exist yet, while the claim has none.
    Existing(usize),
    /// A response of the same claim past its last one.
    Missing(u8),
    /// A response of another claim: refused whatever that claim holds.
    OtherClaim,
}

/// The `etag` sent with SetVerdict.
#[derive(Clone, Debug)]
enum EtagChoice {
    None,
    Current,
    /// An etag the claim had before its latest change (garbage if none).
    Stale(usize),
    Garbage,
}

#[derive(Clone, Debug)]
enum Op {
    Register {
        request_id: Option<u8>,
        /// Claim text variant; 3 is blank (invalid).
        text: u8,
    },
    Attach {
        claim: ClaimRef,
        request_id: Option<u8>,
        /// `pb::Stance` value; 0 (UNSPECIFIED) is invalid.
        stance: i32,
        /// Response text variant.
        text: u8,
        reply_to: ReplyTo,
    },
    SetVerdict {
        claim: ClaimRef,
        /// `pb::ClaimRating` value; 0 and 6 are invalid.
        rating: i32,
        /// `pb::MediaAuthenticity` value; 0 and 7 are invalid.
        media: i32,
        etag: EtagChoice,
    },
    GetStatus {
        claim: ClaimRef,
    },
    ListEvents {
        claim: ClaimRef,
        /// -1 is invalid; 0 means the default.
        page_size: i32,
    },
}

fn claim_ref() -> impl Strategy<Value = ClaimRef> {
    prop_oneof![
        9 => (0usize..8).prop_map(ClaimRef::Existing),
        1 => Just(ClaimRef::Missing),
    ]
}

fn request_id() -> impl Strategy<Value = Option<u8>> {
    // A small pool, so that ids repeat often.
    prop_oneof![2 => Just(None), 3 => (0u8..4).prop_map(Some)]
}

fn op() -> impl Strategy<Value = Op> {
    let register = (request_id(), prop_oneof![9 => 0u8..3, 1 => Just(3u8)])
        .prop_map(|(request_id, text)| Op::Register { request_id, text });
    let reply_to = prop_oneof![
        6 => Just(ReplyTo::None),
        3 => (0usize..8).prop_map(ReplyTo::Existing),
        1 => (0u8..3).prop_map(ReplyTo::Missing),
        1 => Just(ReplyTo::OtherClaim),
    ];
    let attach = (
        claim_ref(),
        request_id(),
        prop_oneof![1 => Just(0), 12 => 1i32..=4],
        0u8..2,
        reply_to,
    )
        .prop_map(|(claim, request_id, stance, text, reply_to)| Op::Attach {
            claim,
            request_id,
            stance,
            text,
            reply_to,
        });
    let etag = prop_oneof![
        3 => Just(EtagChoice::None),
        3 => Just(EtagChoice::Current),
        2 => (0usize..8).prop_map(EtagChoice::Stale),
        1 => Just(EtagChoice::Garbage),
    ];
    let verdict = (
        claim_ref(),
        prop_oneof![1 => Just(0), 1 => Just(6), 10 => 1i32..=5],
        prop_oneof![1 => Just(7), 15 => 1i32..=6],
        etag,
    )
        .prop_map(|(claim, rating, media, etag)| Op::SetVerdict {
            claim,
            rating,
            media,
            etag,
        });
    prop_oneof![
        3 => register,
        4 => attach,
        3 => verdict,
        1 => claim_ref().prop_map(|claim| Op::GetStatus { claim }),
        1 => (claim_ref(), -1i32..=4).prop_map(|(claim, page_size)| Op::ListEvents { claim, page_size }),
    ]
}

/// What the model expects of one event (and what is read from the server).
#[derive(Clone, Debug, PartialEq, Eq)]
struct EventView {
    sequence: i64,
    kind: pb::ClaimEventType,
    state: pb::VerificationState,
    /// Registered: the claim text. Attached: response name and stance.
    /// Verdict: new and previous claim rating and media authenticity.
    details: String,
}

fn event_view(e: &pb::ClaimEvent) -> EventView {
    let details = match &e.details {
        Some(Details::ClaimRegistered(d)) => d.claim_text.clone(),
        Some(Details::OfficialResponseAttached(d)) => {
            format!("{} stance={}", d.official_response, d.stance)
        }
        Some(Details::VerdictSet(d)) => format!(
            "rating={} media={} previous={}/{}",
            d.claim_rating,
            d.media_authenticity,
            d.previous_claim_rating,
            d.previous_media_authenticity
        ),
        None => "no details".into(),
    };
    EventView {
        sequence: e.sequence,
        kind: e.r#type(),
        state: e.state(),
        details,
    }
}

/// The status fields the model predicts.
#[derive(Clone, Debug, PartialEq, Eq)]
struct StatusView {
    claim: String,
    state: pb::VerificationState,
    official_response_count: i32,
    supporting_count: i32,
    refuting_count: i32,
    context_count: i32,
    claim_rating: i32,
    media_authenticity: i32,
    latest_official_response: String,
}

fn status_view(s: &pb::VerificationStatus) -> StatusView {
    StatusView {
        claim: s.claim.clone(),
        state: s.state(),
        official_response_count: s.official_response_count,
        supporting_count: s.supporting_count,
        refuting_count: s.refuting_count,
        context_count: s.context_count,
        claim_rating: s.claim_rating,
        media_authenticity: s.media_authenticity,
        latest_official_response: s
            .latest_official_response
            .as_ref()
            .map(|r| r.name.clone())
            .unwrap_or_default(),
    }
}

#[derive(Clone, Debug)]
struct ModelClaim {
    name: String,
    /// Stances of the attached responses, in order (response id = index + 1).
    responses: Vec<i32>,
    /// (claim rating, media authenticity).
    verdict: Option<(i32, i32)>,
    events: Vec<EventView>,
    /// The etag the server reported at each sequence number (index + 1).
    etags: Vec<String>,
}

impl ModelClaim {
    fn count(&self, stance: pb::Stance) -> i32 {
        self.responses
            .iter()
            .filter(|s| **s == stance as i32)
            .count() as i32
    }

    fn state(&self) -> pb::VerificationState {
        if self.verdict.is_some() {
            pb::VerificationState::Resolved
        } else if self.count(pb::Stance::Supports) > 0 && self.count(pb::Stance::Refutes) > 0 {
            pb::VerificationState::Disputed
        } else if !self.responses.is_empty() {
            pb::VerificationState::InReview
        } else {
            pb::VerificationState::Unverified
        }
    }

    fn response_name(&self, id: usize) -> String {
        format!("{}/officialResponses/{id}", self.name)
    }

    fn status(&self) -> StatusView {
        let (claim_rating, media_authenticity) = self.verdict.unwrap_or((0, 0));
        StatusView {
            claim: self.name.clone(),
            state: self.state(),
            official_response_count: self.responses.len() as i32,
            supporting_count: self.count(pb::Stance::Supports),
            refuting_count: self.count(pb::Stance::Refutes),
            context_count: self.count(pb::Stance::AddsContext),
            claim_rating,
            media_authenticity,
            latest_official_response: if self.responses.is_empty() {
                String::new()
            } else {
                self.response_name(self.responses.len())
            },
        }
    }

    fn push_event(&mut self, kind: pb::ClaimEventType, details: String) {
        let event = EventView {
            sequence: self.events.len() as i64 + 1,
            kind,
            state: self.state(),
            details,
        };
        self.events.push(event);
    }
}

/// What an attachment's `request_id` was first used for.
#[derive(Clone, Debug, PartialEq, Eq)]
struct AttachPayload {
    parent: String,
    stance: i32,
    text: u8,
    in_reply_to: String,
}

#[derive(Default)]
struct Model {
    claims: Vec<ModelClaim>,
    /// request_id -> (claim text variant, claim index).
    registrations: HashMap<u8, (u8, usize)>,
    /// request_id -> (payload, response name).
    attachments: HashMap<u8, (AttachPayload, String)>,
}

impl Model {
    /// The claim index and name an operation addresses.
    fn resolve(&self, claim: &ClaimRef) -> (Option<usize>, String) {
        match claim {
            ClaimRef::Existing(i) if !self.claims.is_empty() => {
                let i = i % self.claims.len();
                (Some(i), self.claims[i].name.clone())
            }
            _ => (None, format!("claims/{MISSING_CLAIM}")),
        }
    }
}

fn claim_text(variant: u8) -> String {
    if variant == 3 {
        "   ".into()
    } else {
        format!("state machine claim, variant {variant}")
    }
}

/// The outcome of one call: `Ok` with whatever is worth checking, or the code.
type Outcome<T> = Result<T, tonic::Status>;

fn code_of<T>(outcome: &Outcome<T>) -> Code {
    match outcome {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

macro_rules! ensure_eq {
    ($left:expr, $right:expr, $($fmt:tt)+) => {{
        let (left, right) = (&$left, &$right);
        if left != right {
            return Err(format!(
                "{}\n  server: {:?}\n  model:  {:?}",
                format!($($fmt)+),
                left,
                right
            ));
        }
    }};
}

/// Compares the code of a call with the model's and counts the outcome.
fn check_code(op: &'static str, actual: Code, expected: Code, claim: &str) -> Result<(), String> {
    tally(op, actual);
    ensure_eq!(actual, expected, "code of {op}({claim})");
    Ok(())
}

/// One case: a fresh namespace of request_ids, fresh claims.
struct Case {
    client: Client,
    model: Model,
    /// Prefix of this case's request_ids.
    prefix: String,
}

static CASES: AtomicU64 = AtomicU64::new(0);

/// How often each (operation, code) pair came up, printed at the end: a
/// check that the generator reaches every outcome the model knows.
static OUTCOMES: Mutex<BTreeMap<(&'static str, String), usize>> = Mutex::new(BTreeMap::new());

fn tally(op: &'static str, code: Code) {
    *OUTCOMES
        .lock()
        .unwrap()
        .entry((op, format!("{code:?}")))
        .or_default() += 1;
}

impl Case {
    fn new(client: Client) -> Self {
        let n = CASES.fetch_add(1, Ordering::Relaxed);
        Case {
            client,
            model: Model::default(),
            prefix: format!("sm-{}-{n}", std::process::id()),
        }
    }

    fn request_id(&self, kind: &str, id: Option<u8>) -> String {
        id.map(|id| format!("{}-{kind}-{id}", self.prefix))
            .unwrap_or_default()
    }

    /// Reads the claim's status and events from the server and compares them
    /// with the model; records the etag of its current sequence number.
    async fn compare(&mut self, index: usize) -> Result<(), String> {
        let name = self.model.claims[index].name.clone();
        let status = self
            .client
            .get_verification_status(pb::GetVerificationStatusRequest {
                claim: name.clone(),
                ..Default::default()
            })
            .await
            .map_err(|s| format!("GetVerificationStatus({name}): {s}"))?
            .into_inner();
        let events = self.events(&name, 100).await?;
        let claim = &mut self.model.claims[index];
        ensure_eq!(status_view(&status), claim.status(), "status of {name}");
        let views: Vec<EventView> = events.iter().map(event_view).collect();
        ensure_eq!(views, claim.events, "events of {name}");
        self.observe_etag(index, &status.etag)
    }

    /// Checks that the etag is the one seen at this sequence number before,
    /// or, at a new sequence number, one never seen before.
    fn observe_etag(&mut self, index: usize, etag: &str) -> Result<(), String> {
        let claim = &mut self.model.claims[index];
        let sequence = claim.events.len();
        ensure!(!etag.is_empty(), "{} has an empty etag", claim.name);
        if let Some(known) = claim.etags.get(sequence - 1) {
            ensure_eq!(
                etag.to_string(),
                *known,
                "etag of {} at sequence {sequence} changed without an event",
                claim.name
            );
        } else {
            ensure!(
                !claim.etags.iter().any(|e| e == etag),
                "etag {etag:?} of {} at sequence {sequence} repeats an earlier one",
                claim.name
            );
            // Sequences are only ever observed in order, one at a time.
            ensure_eq!(
                claim.etags.len(),
                sequence - 1,
                "etag history of {} has a gap",
                claim.name
            );
            claim.etags.push(etag.to_string());
        }
        Ok(())
    }

    /// Every event of `name`, `page_size` at a time.
    async fn events(&mut self, name: &str, page_size: i32) -> Result<Vec<pb::ClaimEvent>, String> {
        let mut events = Vec::new();
        let mut token = String::new();
        for _ in 0..1_000 {
            let page = self
                .client
                .list_claim_events(pb::ListClaimEventsRequest {
                    claim: name.to_string(),
                    page_size,
                    page_token: token,
                })
                .await
                .map_err(|s| format!("ListClaimEvents({name}): {s}"))?
                .into_inner();
            events.extend(page.events);
            if page.next_page_token.is_empty() {
                return Ok(events);
            }
            token = page.next_page_token;
        }
        Err(format!("ListClaimEvents({name}) never ends"))
    }

    async fn apply(&mut self, op: &Op) -> Result<(), String> {
        match op {
            Op::Register { request_id, text } => self.register(*request_id, *text).await,
            Op::Attach {
                claim,
                request_id,
                stance,
                text,
                reply_to,
            } => {
                self.attach(claim, *request_id, *stance, *text, reply_to)
                    .await
            }
            Op::SetVerdict {
                claim,
                rating,
                media,
                etag,
            } => self.set_verdict(claim, *rating, *media, etag).await,
            Op::GetStatus { claim } => {
                let (index, name) = self.model.resolve(claim);
                let outcome = self
                    .client
                    .get_verification_status(pb::GetVerificationStatusRequest {
                        claim: name.clone(),
                        ..Default::default()
                    })
                    .await
                    .map(|r| r.into_inner());
                let expected = if index.is_some() {
                    Code::Ok
                } else {
                    Code::NotFound
                };
                check_code("GetVerificationStatus", code_of(&outcome), expected, &name)?;
                if let (Some(index), Ok(status)) = (index, outcome) {
                    let model = &self.model.claims[index];
                    ensure_eq!(status_view(&status), model.status(), "status of {name}");
                    self.compare(index).await?;
                }
                Ok(())
            }
            Op::ListEvents { claim, page_size } => {
                let (index, name) = self.model.resolve(claim);
                let expected = match (*page_size < 0, index) {
                    (true, _) => Code::InvalidArgument,
                    (false, None) => Code::NotFound,
                    (false, Some(_)) => Code::Ok,
                };
                if expected != Code::Ok {
                    let outcome = self
                        .client
                        .list_claim_events(pb::ListClaimEventsRequest {
                            claim: name.clone(),
                            page_size: *page_size,
                            page_token: String::new(),
                        })
                        .await;
                    check_code("ListClaimEvents", code_of(&outcome), expected, &name)?;
                    return Ok(());
                }
                let index = index.expect("existing claim");
                let events = self.events(&name, *page_size).await?;
                tally("ListClaimEvents", Code::Ok);
                let views: Vec<EventView> = events.iter().map(event_view).collect();
                ensure_eq!(
                    views,
                    self.model.claims[index].events,
                    "events of {name}, page size {page_size}"
                );
                Ok(())
            }
        }
    }

    async fn register(&mut self, request_id: Option<u8>, text: u8) -> Result<(), String> {
        let outcome = self
            .client
            .register_claim(pb::RegisterClaimRequest {
                request_id: self.request_id("register", request_id),
                claim: Some(sample_claim(&claim_text(text))),
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner());
        let earlier = request_id.and_then(|id| self.model.registrations.get(&id).copied());
        let expected = if text == 3 {
            Code::InvalidArgument
        } else {
            match earlier {
                Some((first_text, _)) if first_text != text => Code::AlreadyExists,
                _ => Code::Ok,
            }
        };
        check_code("RegisterClaim", code_of(&outcome), expected, "")?;
        let Ok(reply) = outcome else { return Ok(()) };
        let claim = reply.claim.ok_or("RegisterClaim returned no claim")?;
        let status = claim
            .verification_status
            .clone()
            .ok_or("registered claim without a status")?;
        let index = match earlier {
            Some((_, index)) => {
                ensure!(reply.replayed, "a retry of RegisterClaim is not replayed");
                let model = &self.model.claims[index];
                ensure_eq!(claim.name, model.name, "a replay names the first claim");
                ensure_eq!(status_view(&status), model.status(), "status of a replay");
                index
            }
            None => {
                ensure!(!reply.replayed, "a first RegisterClaim is replayed");
                ensure!(
                    !self.model.claims.iter().any(|c| c.name == claim.name),
                    "{} registered twice",
                    claim.name
                );
                let mut model = ModelClaim {
                    name: claim.name.clone(),
                    responses: Vec::new(),
                    verdict: None,
                    events: Vec::new(),
                    etags: Vec::new(),
                };
                model.push_event(pb::ClaimEventType::ClaimRegistered, claim_text(text));
                ensure_eq!(
                    status_view(&status),
                    model.status(),
                    "status of a new claim"
                );
                self.model.claims.push(model);
                let index = self.model.claims.len() - 1;
                if let Some(id) = request_id {
                    self.model.registrations.insert(id, (text, index));
                }
                index
            }
        };
        self.observe_etag(index, &claim.etag)?;
        self.compare(index).await
    }

    async fn attach(
        &mut self,
        claim: &ClaimRef,
        request_id: Option<u8>,
        stance: i32,
        text: u8,
        reply_to: &ReplyTo,
    ) -> Result<(), String> {
        let (index, parent) = self.model.resolve(claim);
        let existing = index.map_or(0, |i| self.model.claims[i].responses.len());
        let (in_reply_to, reply_id) = match reply_to {
            ReplyTo::None => (String::new(), None),
            ReplyTo::Existing(k) => {
                let id = if existing == 0 { 1 } else { k % existing + 1 };
                (format!("{parent}/officialResponses/{id}"), Some(id))
            }
            ReplyTo::Missing(m) => {
                let id = existing + 1 + *m as usize;
                (format!("{parent}/officialResponses/{id}"), Some(id))
            }
            ReplyTo::OtherClaim => (
                format!("claims/{}/officialResponses/1", MISSING_CLAIM + 1),
                None,
            ),
        };
        let mut response = sample_response(pb::Stance::Supports);
        response.stance = stance;
        response.text = format!("statement variant {text}");
        response.in_reply_to = in_reply_to.clone();
        let outcome = self
            .client
            .attach_official_response(pb::AttachOfficialResponseRequest {
                parent: parent.clone(),
                request_id: self.request_id("attach", request_id),
                official_response: Some(response),
            })
            .await;
        let payload = AttachPayload {
            parent: parent.clone(),
            stance,
            text,
            in_reply_to,
        };
        let earlier = request_id.and_then(|id| self.model.attachments.get(&id).cloned());
        let expected = if stance == 0 || matches!(reply_to, ReplyTo::OtherClaim) {
            Code::InvalidArgument
        } else if let Some((first, _)) = &earlier {
            if *first == payload {
                Code::Ok
            } else {
                Code::AlreadyExists
            }
        } else if index.is_none() {
            Code::NotFound
        } else if reply_id.is_some_and(|id| id > existing) {
            Code::InvalidArgument
        } else {
            Code::Ok
        };
        check_code(
            "AttachOfficialResponse",
            code_of(&outcome),
            expected,
            &parent,
        )?;
        if let Ok(reply) = outcome {
            let replayed = reply
                .metadata()
                .get(REPLAYED_METADATA)
                .is_some_and(|v| v == "true");
            let body = reply.into_inner();
            ensure_eq!(body.stance, stance, "stance of the attached response");
            if let Some((_, name)) = &earlier {
                ensure!(
                    replayed,
                    "a retry of AttachOfficialResponse is not replayed"
                );
                ensure_eq!(body.name, *name, "a replay names the first response");
            } else {
                ensure!(!replayed, "a first AttachOfficialResponse is replayed");
                let index = index.expect("attached to an existing claim");
                let model = &mut self.model.claims[index];
                model.responses.push(stance);
                let name = model.response_name(model.responses.len());
                ensure_eq!(body.name, name, "name of the new response");
                model.push_event(
                    pb::ClaimEventType::OfficialResponseAttached,
                    format!("{name} stance={stance}"),
                );
                if let Some(id) = request_id {
                    self.model.attachments.insert(id, (payload, name));
                }
            }
        }
        match index {
            Some(index) => self.compare(index).await,
            None => Ok(()),
        }
    }

    async fn set_verdict(
        &mut self,
        claim: &ClaimRef,
        rating: i32,
        media: i32,
        etag: &EtagChoice,
    ) -> Result<(), String> {
        let (index, name) = self.model.resolve(claim);
        let garbage = "W/\"not-an-etag-of-this-claim\"".to_string();
        let (etag, fresh) = match (etag, index) {
            (EtagChoice::None, _) => (String::new(), true),
            (EtagChoice::Current, Some(i)) => {
                (self.model.claims[i].etags.last().cloned().unwrap(), true)
            }
            (EtagChoice::Stale(k), Some(i)) if self.model.claims[i].etags.len() > 1 => {
                let etags = &self.model.claims[i].etags;
                (etags[k % (etags.len() - 1)].clone(), false)
            }
            _ => (garbage, false),
        };
        let outcome = self
            .client
            .set_verdict(pb::SetVerdictRequest {
                claim: name.clone(),
                claim_rating: rating,
                media_authenticity: media,
                rationale: "the model says so".into(),
                etag,
            })
            .await
            .map(|r| r.into_inner());
        let expected = if !(1..=5).contains(&rating) || !(1..=6).contains(&media) {
            Code::InvalidArgument
        } else if index.is_none() {
            Code::NotFound
        } else if !fresh {
            Code::Aborted
        } else {
            Code::Ok
        };
        check_code("SetVerdict", code_of(&outcome), expected, &name)?;
        let Some(index) = index else { return Ok(()) };
        if let Ok(status) = outcome {
            let model = &mut self.model.claims[index];
            let (previous_rating, previous_media) = model.verdict.unwrap_or((0, 0));
            model.verdict = Some((rating, media));
            model.push_event(
                pb::ClaimEventType::VerdictSet,
                format!(
                    "rating={rating} media={media} previous={previous_rating}/{previous_media}"
                ),
            );
            ensure_eq!(
                status_view(&status),
                model.status(),
                "status after SetVerdict"
            );
            self.observe_etag(index, &status.etag)?;
        }
        self.compare(index).await
    }
}

async fn run_case(client: Client, ops: &[Op]) -> Result<(), String> {
    let mut case = Case::new(client);
    for (i, op) in ops.iter().enumerate() {
        case.apply(op)
            .await
            .map_err(|e| format!("op {i} ({op:?}): {e}"))?;
    }
    for index in 0..case.model.claims.len() {
        case.compare(index)
            .await
            .map_err(|e| format!("after the last op: {e}"))?;
    }
    Ok(())
}

fn config() -> Config {
    let mut config = Config {
        // Shrinking replays whole cases against the server: keep it bounded.
        max_shrink_iters: 512,
        failure_persistence: None,
        ..Config::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 32;
    }
    config
}

#[test]
fn the_service_behaves_like_the_model() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let server = runtime.block_on(InProcess::in_memory());
    let client = server.client.clone();
    let mut runner = TestRunner::new(config());
    let result = runner.run(&proptest::collection::vec(op(), 1..40), |ops| {
        runtime
            .block_on(run_case(client.clone(), &ops))
            .map_err(TestCaseError::fail)
    });
    runtime.block_on(server.stop());
    for ((op, code), n) in OUTCOMES.lock().unwrap().iter() {
        eprintln!("{op:>24} {code:<16} {n:>5}");
    }
    if let Err(err) = result {
        panic!("{err}");
    }
}
