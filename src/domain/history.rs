//! A claim's history (its record, responses and events) replayed with the
//! status rules to check that the record is exactly what its events make
//! of it and that every hash link holds ([`replay`], [`ClaimHistory::verify`]):
//! what `photoclaim check`, restore and backups run over the hash chains of
//! [`super::chain`].

use prost::Message;

use super::chain::{registered_content, sha256};
use super::model::{Claim, ClaimEvent, EventDetails, OfficialResponse, Timestamp};
use super::rules;

/// A claim with its responses and events: as stored, or as it was at a
/// log position (a backup holds these).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ClaimHistory {
    /// The claim record.
    #[prost(message, optional, tag = "1")]
    pub claim: Option<Claim>,
    /// Its responses, by id from 1.
    #[prost(message, repeated, tag = "2")]
    pub responses: Vec<OfficialResponse>,
    /// Its events, by sequence from 1.
    #[prost(message, repeated, tag = "3")]
    pub events: Vec<ClaimEvent>,
}

impl ClaimHistory {
    /// Checks that the claim record is exactly what its events make of it
    /// (see [`replay`]), and that no response is left over.
    pub fn verify(&self) -> Result<&Claim, Break> {
        let Some(claim) = &self.claim else {
            return Err(broken(0, "no claim record"));
        };
        let rebuilt = replay(claim, &self.events, &self.responses)?;
        let attached = rebuilt.evidence.as_ref().map_or(0, |e| e.total);
        if self.responses.len() as u64 != attached {
            return Err(broken(
                0,
                format!(
                    "{} responses but {attached} attachment events",
                    self.responses.len()
                ),
            ));
        }
        if &rebuilt != claim {
            return Err(broken(
                0,
                "the claim record does not match its events (state, counts, verdict or chain head)",
            ));
        }
        Ok(claim)
    }
}

/// A break found while replaying a claim's events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Break {
    /// Sequence of the first event that does not fit (0: the claim record itself).
    pub sequence: u64,
    /// What is wrong.
    pub problem: String,
}

impl std::fmt::Display for Break {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.sequence == 0 {
            write!(f, "{}", self.problem)
        } else {
            write!(f, "event {}: {}", self.sequence, self.problem)
        }
    }
}

fn broken(sequence: u64, problem: impl Into<String>) -> Break {
    Break {
        sequence,
        problem: problem.into(),
    }
}

/// Rebuilds a claim from its events by applying the status rules again,
/// starting from the registered content of `stored` (its current record),
/// and checks every event on the way: sequence, hash link, record digest,
/// and that the rules give exactly the stored event. `responses[i]` must be
/// response `i + 1`. With all of a claim's events, the result equals the
/// stored record; with the events up to a log position, it is the claim as
/// it was then.
pub fn replay(
    stored: &Claim,
    events: &[ClaimEvent],
    responses: &[OfficialResponse],
) -> Result<Claim, Break> {
    let mut claim = registered_content(stored);
    let mut responses_used = 0usize;
    for (index, event) in events.iter().enumerate() {
        let sequence = index as u64 + 1;
        if event.sequence != sequence {
            return Err(broken(
                sequence,
                format!("has sequence {} (gap or duplicate)", event.sequence),
            ));
        }
        if event.claim_id != stored.id {
            return Err(broken(
                sequence,
                format!("belongs to claim {}", event.claim_id),
            ));
        }
        if event.prev_hash != claim.chain_head {
            return Err(broken(
                sequence,
                format!(
                    "hash chain broken: prev_hash {} but the previous event hashes to {}",
                    hex::encode(&event.prev_hash),
                    hex::encode(&claim.chain_head)
                ),
            ));
        }
        let Some(time) = event.time else {
            return Err(broken(sequence, "has no time"));
        };
        let mut expected = apply(&mut claim, event, time, responses, &mut responses_used)
            .map_err(|problem| broken(sequence, problem))?;
        if expected.record_sha256 != event.record_sha256 {
            let what = if sequence == 1 {
                "the claim record's registered content"
            } else {
                "the response record"
            };
            return Err(broken(
                sequence,
                format!(
                    "record digest {} does not match {what} (digest {}): the record was changed",
                    hex::encode(&event.record_sha256),
                    hex::encode(&expected.record_sha256)
                ),
            ));
        }
        expected.log_position = event.log_position;
        expected.prev_hash = event.prev_hash.clone();
        if &expected != event {
            return Err(broken(
                sequence,
                format!(
                    "differs from what the rules give: stored {event:?}, expected {expected:?}"
                ),
            ));
        }
        claim.chain_head = sha256(&event.encode_to_vec()).to_vec();
    }
    Ok(claim)
}

/// Applies one stored event to `claim` with the rules, returning the event
/// the rules make.
fn apply(
    claim: &mut Claim,
    event: &ClaimEvent,
    time: Timestamp,
    responses: &[OfficialResponse],
    responses_used: &mut usize,
) -> Result<ClaimEvent, String> {
    match (&event.details, event.sequence) {
        (Some(EventDetails::Registered(_)), 1) => {
            Ok(rules::register(claim, claim.id, &event.actor, time))
        }
        (_, 1) => Err("the first event is not a registration".into()),
        (Some(EventDetails::Registered(_)), _) => Err("a second registration".into()),
        (Some(EventDetails::ResponseAttached(attached)), _) => {
            let Some(stored) = responses.get(*responses_used) else {
                return Err(format!(
                    "names response {} which is missing",
                    attached.response_id
                ));
            };
            *responses_used += 1;
            let mut response = stored.clone();
            let made = rules::attach(claim, &mut response, &event.actor, time)
                .map_err(|e| format!("the rules refuse it: {e}"))?;
            if &response != stored {
                return Err(format!(
                    "response {} differs from what the rules give",
                    stored.id
                ));
            }
            Ok(made)
        }
        (Some(EventDetails::VerdictSet(set)), _) => {
            let verdict = set.verdict.clone().unwrap_or_default();
            rules::set_verdict(claim, verdict, None, &event.actor, time)
                .map_err(|e| format!("the rules refuse it: {e}"))
        }
        (None, _) => Err("has no details".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::chain::seal;
    use crate::domain::model::{Stance, Verdict};

    fn history() -> (Claim, Vec<ClaimEvent>, Vec<OfficialResponse>) {
        let now = Timestamp::now();
        let mut claim = Claim {
            claim_text: "UN peacekeepers in Kazakhstan".into(),
            ..Default::default()
        };
        let mut events = Vec::new();
        let mut responses = Vec::new();
        let mut push = |claim: &mut Claim, mut event: ClaimEvent| {
            seal(claim, &mut event);
            events.push(event);
        };
        let e = rules::register(&mut claim, 7, "desk", now);
        push(&mut claim, e);
        for stance in [Stance::Refutes, Stance::Supports] {
            let mut r = OfficialResponse {
                stance: stance as i32,
                ..Default::default()
            };
            let e = rules::attach(&mut claim, &mut r, "desk", now).unwrap();
            responses.push(r);
            push(&mut claim, e);
        }
        let verdict = Verdict {
            claim_rating: 2,
            rationale: "KAZBAT".into(),
            ..Default::default()
        };
        let e = rules::set_verdict(&mut claim, verdict, None, "editor", now).unwrap();
        push(&mut claim, e);
        (claim, events, responses)
    }

    #[test]
    fn replay_rebuilds_the_stored_claim() {
        let (claim, events, responses) = history();
        assert_eq!(replay(&claim, &events, &responses), Ok(claim.clone()));
        let at_two = replay(&claim, &events[..2], &responses[..1]).unwrap();
        assert_eq!(at_two.last_sequence, 2);
        assert_eq!(at_two.evidence.unwrap().refuting, 1);
        assert_eq!(at_two.chain_head, sha256(&events[1].encode_to_vec()));
    }

    #[test]
    fn every_kind_of_change_is_caught() {
        let (claim, events, responses) = history();
        let mut text = claim.clone();
        text.claim_text = "Russian troops".into();
        assert_eq!(replay(&text, &events, &responses).unwrap_err().sequence, 1);

        let mut response = responses.clone();
        response[1].text = "edited".into();
        assert_eq!(replay(&claim, &events, &response).unwrap_err().sequence, 3);

        let mut edited = events.clone();
        edited[1].actor = "someone-else".into();
        let err = replay(&claim, &edited, &responses).unwrap_err();
        assert_eq!(err.sequence, 2, "{err}");
        assert!(err.problem.contains("response 1 differs"), "{err}");

        // A field the rules do not derive: only the next link shows it.
        let mut moved = events.clone();
        moved[1].log_position += 1;
        let err = replay(&claim, &moved, &responses).unwrap_err();
        assert_eq!(err.sequence, 3, "{err}");
        assert!(err.problem.contains("hash chain broken"), "{err}");

        let mut last = events.clone();
        if let Some(EventDetails::VerdictSet(v)) = &mut last[3].details {
            v.verdict.as_mut().unwrap().rationale = "changed".into();
        }
        let rebuilt = replay(&claim, &last, &responses).unwrap();
        assert_ne!(rebuilt, claim, "the head no longer matches the record");

        let gap = [events[0].clone(), events[2].clone()];
        assert_eq!(replay(&claim, &gap, &responses).unwrap_err().sequence, 2);
    }
}
