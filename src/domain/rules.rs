//! The status rules and the effect of each operation on a claim. Pure
//! functions: the store calls them inside its transaction with the record it
//! read, and writes what they return.

use prost::Message;

use super::chain;
use super::error::{Error, EtagMismatch, Result};
use super::model::{
    Claim, ClaimEvent, ClaimEventType, ClaimRegistered, EventDetails, Evidence, OfficialResponse,
    ResponseAttached, Stance, Timestamp, Verdict, VerdictSet, VerificationState, FORMAT_VERSION,
};

/// The state follows from the evidence and the verdict:
/// RESOLVED once a verdict is set; else DISPUTED when responses both support
/// and refute; else IN_REVIEW once any response is attached; else UNVERIFIED.
pub fn derive_state(evidence: &Evidence, verdict: Option<&Verdict>) -> VerificationState {
    if verdict.is_some() {
        VerificationState::Resolved
    } else if evidence.supporting > 0 && evidence.refuting > 0 {
        VerificationState::Disputed
    } else if evidence.total > 0 {
        VerificationState::InReview
    } else {
        VerificationState::Unverified
    }
}

/// The claim's etag: changes with every event of the claim.
pub fn etag(claim: &Claim) -> String {
    etag_of(claim.id, claim.last_sequence)
}

/// The etag of the claim `id` after its event `last_sequence`.
pub fn etag_of(id: u64, last_sequence: u64) -> String {
    format!("{id}-{last_sequence}")
}

fn next_event(
    claim: &mut Claim,
    event_type: ClaimEventType,
    actor: &str,
    now: Timestamp,
) -> ClaimEvent {
    claim.last_sequence += 1;
    claim.update_time = Some(now);
    let state = derive_state(
        claim.evidence.as_ref().unwrap_or(&Evidence::default()),
        claim.verdict.as_ref(),
    );
    claim.set_state(state);
    ClaimEvent {
        format_version: FORMAT_VERSION,
        claim_id: claim.id,
        sequence: claim.last_sequence,
        event_type: event_type as i32,
        actor: actor.to_string(),
        time: Some(now),
        state: state as i32,
        details: None,
        log_position: 0,
        prev_hash: Vec::new(),
        record_sha256: Vec::new(),
    }
}

/// Turns a validated draft into a new claim with id `id`; returns its first event.
pub fn register(claim: &mut Claim, id: u64, actor: &str, now: Timestamp) -> ClaimEvent {
    claim.format_version = FORMAT_VERSION;
    claim.id = id;
    claim.create_time = Some(now);
    claim.last_sequence = 0;
    claim.evidence = Some(Evidence::default());
    claim.verdict = None;
    claim.registered_by = actor.to_string();
    let mut event = next_event(claim, ClaimEventType::ClaimRegistered, actor, now);
    event.details = Some(EventDetails::Registered(ClaimRegistered {
        claim_text: claim.claim_text.clone(),
        image_sha256: claim
            .image
            .as_ref()
            .map(|i| i.sha256.clone())
            .unwrap_or_default(),
        content_credentials: claim
            .image
            .as_ref()
            .and_then(|i| i.content_credentials.clone()),
    }));
    event.record_sha256 = chain::registered_digest(claim).to_vec();
    event
}

/// Attaches a validated response to `claim`: assigns the response its id,
/// updates the evidence and returns the event. `response.in_reply_to` must be
/// 0 or the id of an earlier response of the same claim.
pub fn attach(
    claim: &mut Claim,
    response: &mut OfficialResponse,
    actor: &str,
    now: Timestamp,
) -> Result<ClaimEvent> {
    let mut evidence = claim.evidence.clone().unwrap_or_default();
    if response.in_reply_to > evidence.total {
        return Err(Error::invalid(
            "official_response.in_reply_to",
            format!(
                "claims/{}/officialResponses/{} does not exist",
                claim.id, response.in_reply_to
            ),
        ));
    }
    evidence.total += 1;
    match response.stance() {
        Stance::Supports => evidence.supporting += 1,
        Stance::Refutes => evidence.refuting += 1,
        Stance::AddsContext => evidence.context += 1,
        Stance::NoPosition | Stance::Unspecified => {}
    }
    response.format_version = FORMAT_VERSION;
    response.claim_id = claim.id;
    response.id = evidence.total;
    response.create_time = Some(now);
    response.attached_by = actor.to_string();
    claim.evidence = Some(evidence);
    let mut event = next_event(claim, ClaimEventType::OfficialResponseAttached, actor, now);
    event.details = Some(EventDetails::ResponseAttached(ResponseAttached {
        response_id: response.id,
        organization: response
            .responder
            .as_ref()
            .map(|r| r.organization.clone())
            .unwrap_or_default(),
        stance: response.stance,
        kind: response.kind,
    }));
    event.record_sha256 = chain::sha256(&response.encode_to_vec()).to_vec();
    Ok(event)
}

/// Sets (or replaces) the verdict. With `expected_etag`, refuses with
/// `Aborted` if the claim changed since the caller read it.
pub fn set_verdict(
    claim: &mut Claim,
    mut verdict: Verdict,
    expected_etag: Option<&str>,
    actor: &str,
    now: Timestamp,
) -> Result<ClaimEvent> {
    if let Some(expected) = expected_etag {
        let current = etag(claim);
        if expected != current {
            return Err(Error::Aborted(EtagMismatch {
                claim: format!("claims/{}", claim.id),
                given: expected.to_string(),
                current_etag: current,
            }));
        }
    }
    verdict.reviewed_by = actor.to_string();
    verdict.review_time = Some(now);
    let previous = claim.verdict.replace(verdict.clone());
    let mut event = next_event(claim, ClaimEventType::VerdictSet, actor, now);
    event.details = Some(EventDetails::VerdictSet(VerdictSet {
        verdict: Some(verdict),
        previous,
    }));
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::model::{ClaimRating, MediaAuthenticity};

    fn response(stance: Stance) -> OfficialResponse {
        OfficialResponse {
            stance: stance as i32,
            ..Default::default()
        }
    }

    fn verdict() -> Verdict {
        Verdict {
            claim_rating: ClaimRating::False as i32,
            media_authenticity: MediaAuthenticity::Decontextualized as i32,
            rationale: "because".into(),
            ..Default::default()
        }
    }

    #[test]
    fn state_moves_unverified_in_review_disputed_resolved() {
        let now = Timestamp::now();
        let mut claim = Claim::default();
        let e = register(&mut claim, 7, "desk", now);
        assert_eq!(
            (e.sequence, claim.state()),
            (1, VerificationState::Unverified)
        );
        attach(&mut claim, &mut response(Stance::Refutes), "desk", now).unwrap();
        assert_eq!(claim.state(), VerificationState::InReview);
        attach(&mut claim, &mut response(Stance::AddsContext), "desk", now).unwrap();
        assert_eq!(claim.state(), VerificationState::InReview);
        let e = attach(&mut claim, &mut response(Stance::Supports), "desk", now).unwrap();
        assert_eq!(claim.state(), VerificationState::Disputed);
        assert_eq!(e.state(), VerificationState::Disputed);
        let e = set_verdict(&mut claim, verdict(), None, "editor", now).unwrap();
        assert_eq!(claim.state(), VerificationState::Resolved);
        assert_eq!(e.sequence, 5);
        let ev = claim.evidence.unwrap();
        assert_eq!(
            (ev.total, ev.supporting, ev.refuting, ev.context),
            (3, 1, 1, 1)
        );
    }

    #[test]
    fn in_reply_to_must_name_an_earlier_response() {
        let now = Timestamp::now();
        let mut claim = Claim::default();
        register(&mut claim, 1, "a", now);
        let mut r = response(Stance::Refutes);
        r.in_reply_to = 1;
        assert!(matches!(
            attach(&mut claim, &mut r, "a", now),
            Err(Error::InvalidArgument(_))
        ));
        assert_eq!(claim.last_sequence, 1, "a refused attach changes nothing");
        attach(&mut claim, &mut response(Stance::Refutes), "a", now).unwrap();
        let mut r = response(Stance::Supports);
        r.in_reply_to = 1;
        attach(&mut claim, &mut r, "a", now).unwrap();
        assert_eq!(r.id, 2);
    }

    #[test]
    fn stale_etag_is_aborted_and_replacing_a_verdict_keeps_the_previous() {
        let now = Timestamp::now();
        let mut claim = Claim::default();
        register(&mut claim, 3, "a", now);
        let stale = etag(&claim);
        attach(&mut claim, &mut response(Stance::Refutes), "a", now).unwrap();
        let before = claim.clone();
        assert!(matches!(
            set_verdict(&mut claim, verdict(), Some(&stale), "a", now),
            Err(Error::Aborted(_))
        ));
        assert_eq!(claim, before);
        let current = etag(&claim);
        set_verdict(&mut claim, verdict(), Some(&current), "a", now).unwrap();
        let mut second = verdict();
        second.claim_rating = ClaimRating::Misleading as i32;
        let e = set_verdict(&mut claim, second, None, "b", now).unwrap();
        let Some(EventDetails::VerdictSet(details)) = e.details else {
            panic!("verdict event without details")
        };
        assert_eq!(
            details.previous.unwrap().claim_rating,
            ClaimRating::False as i32
        );
        assert_eq!(claim.verdict.unwrap().reviewed_by, "b");
    }
}
