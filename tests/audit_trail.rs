//! The tamper-evident audit trail: hash links in the API, `photoclaim check`
//! on a real data directory, and edits made directly in sled caught by it.

mod common;

use std::path::Path;

use common::{all_events, attach, new_claim, sample_response, status, Process};
use photoclaim::domain::{self, chain, ClaimEvent, EventDetails};
use photoclaim::pb;
use prost::Message;
use sha2::{Digest, Sha256};

/// Runs `photoclaim check` on `dir`: (success, stdout).
fn check(dir: &Path) -> (bool, String) {
    common::cli(&["check".as_ref(), "--data-dir".as_ref(), dir.as_os_str()])
}

/// A data directory with the reference-like history: two claims, two
/// responses and a verdict on the first. Returns the first claim's events
/// and status as served.
async fn history(dir: &Path) -> (Vec<pb::ClaimEvent>, pb::VerificationStatus) {
    let server = Process::spawn(dir);
    let mut client = common::connect(&server.addr).await;
    let claim = new_claim(&mut client, "UN peacekeepers in Kazakhstan").await;
    new_claim(&mut client, "A second claim").await;
    attach(
        &mut client,
        &claim.name,
        sample_response(pb::Stance::Refutes),
        "r1",
    )
    .await;
    attach(
        &mut client,
        &claim.name,
        sample_response(pb::Stance::AddsContext),
        "r2",
    )
    .await;
    client
        .set_verdict(pb::SetVerdictRequest {
            claim: claim.name.clone(),
            claim_rating: pb::ClaimRating::False as i32,
            media_authenticity: pb::MediaAuthenticity::Decontextualized as i32,
            rationale: "KAZBAT in UN helmets".into(),
            etag: String::new(),
        })
        .await
        .expect("verdict");
    let events = all_events(&mut client, &claim.name).await;
    let status = status(&mut client, &claim.name).await;
    let (exit, log) = server.terminate();
    assert!(exit.success(), "{log}");
    (events, status)
}

#[tokio::test]
async fn events_link_into_a_chain_whose_head_the_status_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (events, status) = history(dir.path()).await;
    assert_eq!(events.len(), 4);
    assert_eq!(events[0].prev_hash, "", "the registration starts the chain");
    for pair in events.windows(2) {
        assert_eq!(
            pair[1].prev_hash, pair[0].hash,
            "event {}",
            pair[1].sequence
        );
    }
    let hashes: std::collections::HashSet<_> = events.iter().map(|e| &e.hash).collect();
    assert_eq!(hashes.len(), 4);
    assert!(events.iter().all(|e| e.hash.len() == 64));
    assert_eq!(status.chain_head, events[3].hash);

    let (ok, out) = check(dir.path());
    assert!(ok, "{out}");
    assert!(out.starts_with("ok "), "{out}");
    assert!(
        out.contains("2 claims, 5 events, 2 responses, log position 5"),
        "{out}"
    );
}

/// Applies `edit` to one record in `tree` of the stopped directory, runs
/// check (which must fail and print `expect`), then puts the record back
/// and checks again (which must pass).
/// A missing record is edited from empty bytes (and removed again after).
fn tamper(
    dir: &Path,
    tree: &str,
    key: &[u8],
    edit: impl FnOnce(&[u8]) -> Option<Vec<u8>>,
    expect: &str,
) {
    let original = {
        let db = sled::open(dir).unwrap();
        let t = db.open_tree(tree).unwrap();
        let original = t.get(key).unwrap();
        match edit(original.as_deref().unwrap_or_default()) {
            Some(bytes) => t.insert(key, bytes).unwrap(),
            None => t.remove(key).unwrap(),
        };
        db.flush().unwrap();
        original
    };
    let (ok, out) = check(dir);
    assert!(!ok, "check must catch an edit of {tree}: {out}");
    assert!(out.contains(expect), "expected {expect:?} in:\n{out}");
    assert!(out.contains("FAILED"), "{out}");
    {
        let db = sled::open(dir).unwrap();
        let t = db.open_tree(tree).unwrap();
        match original {
            Some(bytes) => t.insert(key, bytes).unwrap(),
            None => t.remove(key).unwrap(),
        };
        db.flush().unwrap();
    }
    let (ok, out) = check(dir);
    assert!(ok, "after undoing the edit of {tree}: {out}");
}

fn key(claim: u64, item: u64) -> Vec<u8> {
    [claim.to_be_bytes(), item.to_be_bytes()].concat()
}

fn reencoded<M: Message + Default>(bytes: &[u8], change: impl FnOnce(&mut M)) -> Option<Vec<u8>> {
    let mut record = M::decode(bytes).unwrap();
    change(&mut record);
    Some(record.encode_to_vec())
}

/// A stored claim record: the claim, and the copy of its latest response
/// (field 30) that the record must end with.
fn split_record(bytes: &[u8]) -> (domain::Claim, domain::OfficialResponse) {
    let claim = domain::Claim::decode(bytes).unwrap();
    let head = claim.encode_to_vec();
    assert_eq!(&bytes[..head.len()], &head[..], "the claim comes first");
    let mut tail = &bytes[head.len()..];
    assert_eq!(tail[..2], [0xf2, 0x01], "field 30, length-delimited");
    tail = &tail[2..];
    let len = prost::encoding::decode_varint(&mut tail).unwrap() as usize;
    assert_eq!(tail.len(), len, "the copy ends the record");
    (claim, domain::OfficialResponse::decode(tail).unwrap())
}

fn with_copy(claim: &domain::Claim, latest: &domain::OfficialResponse) -> Vec<u8> {
    let copy = latest.encode_to_vec();
    let mut bytes = claim.encode_to_vec();
    bytes.extend_from_slice(&[0xf2, 0x01]);
    prost::encoding::encode_varint(copy.len() as u64, &mut bytes);
    bytes.extend_from_slice(&copy);
    bytes
}

#[tokio::test]
async fn check_catches_records_edited_directly_in_sled() {
    let dir = tempfile::tempdir().unwrap();
    history(dir.path()).await;
    let dir = dir.path();

    // Who set the verdict: the most tempting rewrite.
    tamper(
        dir,
        "events",
        &key(1, 4),
        |b| {
            reencoded::<ClaimEvent>(b, |e| {
                if let Some(EventDetails::VerdictSet(v)) = &mut e.details {
                    v.verdict.as_mut().unwrap().rationale = "UN troops after all".into();
                }
            })
        },
        "claims/1: the record does not match its events",
    );
    // An earlier event's actor: its own content disagrees with the response.
    tamper(
        dir,
        "events",
        &key(1, 2),
        |b| reencoded::<ClaimEvent>(b, |e| e.actor = "someone-else".into()),
        "claims/1: event 2",
    );
    // A field the rules do not derive: the next link breaks.
    tamper(
        dir,
        "events",
        &key(1, 2),
        |b| reencoded::<ClaimEvent>(b, |e| e.log_position += 100),
        "event 3: hash chain broken",
    );
    // The response text, kept out of the event itself.
    tamper(
        dir,
        "responses",
        &key(1, 1),
        |b| reencoded::<domain::OfficialResponse>(b, |r| r.text = "We confirm.".into()),
        "event 2: record digest",
    );
    // The claim text.
    tamper(
        dir,
        "claims",
        &1u64.to_be_bytes(),
        |b| reencoded::<domain::Claim>(b, |c| c.claim_text = "Russian troops".into()),
        "claims/1: event 1: record digest",
    );
    // The state, without touching the events.
    tamper(
        dir,
        "claims",
        &1u64.to_be_bytes(),
        |b| reencoded::<domain::Claim>(b, |c| c.state = 1),
        "claims/1: the record does not match its events",
    );
    // The copy of the latest response that status reads are served from:
    // edited, and dropped.
    const COPY: &str = "claims/1: record is not in canonical encoding, or its copy of the latest official response differs";
    tamper(
        dir,
        "claims",
        &1u64.to_be_bytes(),
        |b| {
            let (claim, mut latest) = split_record(b);
            assert_eq!(latest.id, 2, "the copy is of the latest response");
            latest.text = "We confirm.".into();
            Some(with_copy(&claim, &latest))
        },
        COPY,
    );
    tamper(
        dir,
        "claims",
        &1u64.to_be_bytes(),
        |b| Some(split_record(b).0.encode_to_vec()),
        COPY,
    );
    // A deleted event.
    tamper(dir, "events", &key(1, 3), |_| None, "claims/1: event 3");
    // Bytes appended to a record (an unknown field).
    tamper(
        dir,
        "events",
        &key(2, 1),
        |b| Some([b, &[0x78, 0x01][..]].concat()),
        "claims/2/events/1: event record is not in canonical encoding",
    );
    // A hole in the service-wide log.
    tamper(
        dir,
        "event_log",
        &3u64.to_be_bytes(),
        |_| None,
        "event_log/4: positions jump",
    );
    // A rewritten service-wide head.
    tamper(
        dir,
        "event_log",
        &5u64.to_be_bytes(),
        |b| {
            let mut b = b.to_vec();
            b[20] ^= 1;
            Some(b)
        },
        "event_log/5: service-wide chain broken",
    );
    // An index entry pointing nowhere.
    tamper(
        dir,
        "claims_by_state",
        &[[1u8].as_slice(), &1u64.to_be_bytes()].concat(),
        |_| Some(Vec::new()),
        "claims_by_state: entry (state 1, claims/1)",
    );
}

#[tokio::test]
async fn check_refuses_what_it_cannot_read() {
    let empty = tempfile::tempdir().unwrap();
    let (ok, out) = check(empty.path());
    assert!(!ok);
    assert!(out.contains("not a photoclaim data directory"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    history(dir.path()).await;
    {
        let db = sled::open(dir.path()).unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert("format_version", &99u32.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let (ok, out) = check(dir.path());
    assert!(!ok);
    assert!(
        out.contains("format version 99, newer than this binary supports"),
        "{out}"
    );
    let refused = Process::try_spawn(dir.path())
        .err()
        .expect("serve must refuse");
    assert!(
        refused.1.contains("newer than this binary supports"),
        "{}",
        refused.1
    );

    // A running server holds the directory: check says so.
    let live = tempfile::tempdir().unwrap();
    let server = Process::spawn(live.path());
    let (ok, out) = check(live.path());
    assert!(!ok);
    assert!(
        out.contains("in use by another photoclaim process"),
        "{out}"
    );
    drop(server);
}

#[test]
fn the_event_hash_is_the_sha256_of_the_stored_record() {
    let event = ClaimEvent {
        claim_id: 1,
        sequence: 1,
        ..Default::default()
    };
    let bytes = event.encode_to_vec();
    assert_eq!(
        chain::sha256(&bytes).to_vec(),
        Sha256::digest(&bytes).to_vec()
    );
}
