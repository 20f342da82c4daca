//! Conformance suite for the storage trait [`photoclaim::store::Store`]: the
//! contract written on the trait (and on the domain types it returns),
//! checked the same way against every backend.
//!
//! Each test is a generic `async fn name<S: Store>(store: &Arc<S>)` in
//! [`suite`] that starts from an empty store (an `Arc`, so that the
//! concurrency tests can hand it to tasks). `conformance_suite!(backend,
//! open)` instantiates every one of them as a `#[tokio::test]` in a module
//! named after the backend, so the tests read `sled::registers_and_reads_back`
//! and run per backend with `cargo test --test conformance sled::`. `open` is
//! an async fn returning `Some((Arc<Backend>, guard))`, or `None` when the
//! backend's server is not available (PostgreSQL without
//! `PHOTOCLAIM_TEST_DATABASE_URL`: skipped); the guard (a temporary
//! directory, a test database, or `()`) is dropped after the store, when
//! the test is over.
//!
//! To add a backend: write its `open_<backend>()` below and add a
//! `conformance_suite!(<backend>, open_<backend>);` line. To add a test:
//! write it in [`suite`] and name it in the macro's list. What the tests
//! drive a store with (drafts, hashes at known distances, a pager that
//! checks the `Page` contract, unwrapping shorthands) is in
//! `conformance/support.rs`.
//!
//! Only the public API is used (`photoclaim::store`, `photoclaim::domain`):
//! nothing here knows how a backend lays out its data.

#[path = "common/pg.rs"]
mod pg;
#[path = "conformance/support.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use photoclaim::domain::access::{ApiKey, Role};
use photoclaim::domain::chain;
use photoclaim::domain::external_review::{ExternalReview, ReviewKind};
use photoclaim::domain::history::ClaimHistory;
use photoclaim::domain::pdq::Pdq;
use photoclaim::domain::{
    rules, Claim, ClaimEvent, ClaimEventType, ClaimRating, ClaimStatus, ClaimView, Error,
    EventDetails, OfficialResponse, Stance, VerificationState,
};
use photoclaim::store::*;
use prost::Message;

macro_rules! conformance_suite {
    ($backend:ident, $open:expr) => {
        conformance_suite!(@tests $backend, $open;
            registers_and_reads_back,
            responses_and_verdicts_read_back,
            writes_to_a_missing_claim_are_not_found_and_change_nothing,
            a_stale_etag_is_aborted_and_changes_nothing,
            a_registration_is_replayed_by_its_request_id,
            an_attachment_is_replayed_by_its_request_id,
            concurrent_registrations_with_one_request_id_make_one_claim,
            concurrent_attachments_with_one_request_id_attach_once,
            request_records_list_the_used_request_ids,
            concurrent_writes_keep_the_log_gapless_and_ordered,
            snapshots_replay_every_claim_as_of_a_position,
            log_heads_chain_the_event_hashes,
            pagination_returns_every_item_once_in_order,
            find_similar_by_sha256_and_pdq,
            same_image_lists_earlier_claims_on_the_image,
            api_keys_are_unique_listed_found_and_revoked,
            page_token_key_stats_and_writability,
            external_reviews_are_deduplicated_by_url_and_logged,
        );
    };
    (@tests $backend:ident, $open:expr; $($test:ident),* $(,)?) => {
        mod $backend {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    // The guard (a directory, a database) outlives the
                    // store; no guard: the backend is not here (skipped).
                    let Some((store, _guard)) = $open().await else {
                        return;
                    };
                    suite::$test(&store).await;
                    drop(store);
                }
            )*
        }
    };
}

async fn open_sled() -> Option<(Arc<SledStore>, tempfile::TempDir)> {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SledStore::open(dir.path()).expect("open sled store");
    Some((Arc::new(store), dir))
}

conformance_suite!(sled, open_sled);

async fn open_memory() -> Option<(Arc<MemoryStore>, ())> {
    let store = MemoryStore::in_memory().expect("start an in-memory store");
    Some((Arc::new(store), ()))
}

conformance_suite!(memory, open_memory);

/// A database of its own on the test server (skipped without one: see
/// `common/pg.rs`).
async fn open_postgres() -> Option<(Arc<PgStore>, pg::TestDatabase)> {
    let db = pg::fresh_database()?;
    let store =
        PgStore::connect(&db.url, &PgOptions::default(), true).expect("open PostgreSQL store");
    Some((Arc::new(store), db))
}

conformance_suite!(postgres, open_postgres);

mod suite {
    use super::*;
    use support::*;
    use ClaimEventType::{ClaimRegistered, OfficialResponseAttached, VerdictSet};
    use VerificationState::{Disputed, InReview, Resolved, Unverified};

    pub async fn registers_and_reads_back<S: Store>(store: &Arc<S>) {
        let pictured = on_image("with image", &sha(1), P, 90);
        let drafts = [draft("no image"), pictured, draft("third")];
        let mut registered = Vec::new();
        for (n, d) in drafts.iter().enumerate() {
            let r = store.reg(d.clone()).await;
            let c = &r.claim.claim;
            assert_eq!(c.id, n as u64 + 1, "ids are dense from 1");
            assert!(!r.replayed && r.same_image.is_empty());
            // The draft's fields are kept as given; the rest is the server's.
            let kept = Claim {
                claim_text: d.claim.claim_text.clone(),
                claimant: d.claim.claimant.clone(),
                language: d.claim.language.clone(),
                appearance_urls: d.claim.appearance_urls.clone(),
                first_seen_time: d.claim.first_seen_time,
                tags: d.claim.tags.clone(),
                image: d.claim.image.clone(),
                ..c.clone()
            };
            assert_eq!(c, &kept);
            assert_eq!((c.last_sequence, c.state()), (1, Unverified));
            assert_eq!(c.registered_by, ACTOR);
            assert!(c.create_time.is_some() && c.update_time.is_some());
            assert_eq!(c.evidence.clone().unwrap_or_default().total, 0);
            assert!(c.verdict.is_none() && r.claim.latest_response.is_none());
            assert_eq!(c.chain_head.len(), 32);
            assert_eq!(store.claim(c.id).await, r.claim);
            let status = store.get_status(c.id).await.unwrap().unwrap();
            assert_eq!(status.status, ClaimStatus::from(c));
            assert_eq!(status.latest_response, None);
            registered.push(r.claim.claim);
        }
        let newest = store.list_claims(None, None, 10).await.unwrap();
        assert_eq!(ids(&newest.items), [3, 2, 1]);
        assert_eq!(newest.next_cursor, None, "the page was not full");
        let oldest = store.list_claims_oldest_first(None, 10).await.unwrap();
        assert_eq!(ids(&oldest.items), [1, 2, 3]);
        assert_eq!(oldest.next_cursor, None);
        assert_eq!(store.ids(Some(Unverified)).await, [3, 2, 1]);
        assert!(store.ids(Some(Resolved)).await.is_empty());

        let events = store.events(2).await;
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!((e.claim_id, e.sequence, e.log_position), (2, 1, 2));
        assert_eq!((e.event_type(), e.state()), (ClaimRegistered, Unverified));
        assert_eq!(e.actor, ACTOR);
        let Some(EventDetails::Registered(details)) = &e.details else {
            panic!("{e:?}")
        };
        assert_eq!(details.claim_text, "with image");
        assert_eq!(details.image_sha256, sha(1));
        assert_eq!(e.record_sha256, chain::registered_digest(&registered[1]));

        // Misses: Ok(None) for a read, NotFound for a parent that must exist.
        for missing in [0, 4, u64::MAX] {
            assert_eq!(store.get_claim(missing).await.unwrap(), None);
            assert_eq!(store.get_status(missing).await.unwrap(), None);
            not_found(store.list_responses(missing, None, 10).await);
            not_found(store.list_events(missing, None, 10).await);
        }
        let none = store.list_claims_oldest_first(Some(3), 10).await.unwrap();
        assert!(none.items.is_empty() && none.next_cursor.is_none());
    }

    pub async fn responses_and_verdicts_read_back<S: Store>(store: &Arc<S>) {
        for text in ["disputed", "resolved", "untouched"] {
            store.reg(draft(text)).await;
        }
        let first = store.attach(1, Stance::Refutes, "no").await;
        let second = store.attach(1, Stance::Supports, "yes").await;
        let responder = response(1, Stance::Refutes, "").response.responder;
        for (id, text, a) in [(1, "no", &first), (2, "yes", &second)] {
            let r = &a.response;
            assert!(!a.replayed && r.create_time.is_some());
            assert_eq!((r.claim_id, r.id, &*r.text), (1, id, text));
            assert_eq!((&r.attached_by, &r.responder), (&ACTOR.into(), &responder));
        }
        let both = [first.response.clone(), second.response.clone()];
        assert_eq!(store.responses(1).await, both);
        let empty = store.list_responses(3, None, 10).await.unwrap();
        assert!(empty.items.is_empty() && empty.next_cursor.is_none());

        let disputed = store.claim(1).await;
        let latest = Some(&second.response);
        assert_eq!(disputed.latest_response.as_ref(), latest);
        let c = &disputed.claim;
        assert_eq!((c.last_sequence, c.state()), (3, Disputed));
        let ev = c.evidence.clone().unwrap();
        assert_eq!((ev.total, ev.supporting, ev.refuting), (2, 1, 1));
        let status = store.get_status(1).await.unwrap().unwrap();
        assert_eq!(status.status, ClaimStatus::from(c));
        assert_eq!(status.latest_response.as_ref(), latest);

        let set = store.decide(2, "first look").await;
        let v = set.claim.verdict.clone().expect("verdict set");
        assert_eq!((&*v.rationale, &*v.reviewed_by), ("first look", ACTOR));
        assert_eq!(v.claim_rating(), ClaimRating::Misleading);
        assert!(v.review_time.is_some());
        assert_eq!((set.claim.last_sequence, set.claim.state()), (2, Resolved));
        assert_eq!(store.claim(2).await, set);
        let replaced = store.decide(2, "second look").await;
        assert_eq!(replaced.claim.verdict.unwrap().rationale, "second look");
        let events = store.events(2).await;
        let Some(EventDetails::VerdictSet(details)) = &events[2].details else {
            panic!("{events:?}")
        };
        assert_eq!(details.previous.as_ref(), Some(&v), "the replaced verdict");

        // A verdict keeps the claim's latest response.
        let resolved = store.decide(1, "settled").await;
        assert_eq!(resolved.latest_response.as_ref(), latest);
        assert_eq!(store.claim(1).await, resolved);
        let events = store.events(1).await;
        let types: Vec<_> = events.iter().map(|e| e.event_type()).collect();
        let attached = OfficialResponseAttached;
        assert_eq!(types, [ClaimRegistered, attached, attached, VerdictSet]);
        assert_eq!(store.ids(Some(Resolved)).await, [2, 1]);
        assert_eq!(store.ids(Some(Unverified)).await, [3]);
        assert!(store.ids(Some(Disputed)).await.is_empty());
        assert!(store.ids(Some(InReview)).await.is_empty());
    }

    pub async fn writes_to_a_missing_claim_are_not_found_and_change_nothing<S: Store>(
        store: &Arc<S>,
    ) {
        store.reg(draft("only")).await;
        let before = store.whole_log().await;
        let lost = response_rid(2, Stance::Refutes, "lost");
        not_found(store.attach_response(lost).await);
        for id in [0, 2] {
            not_found(store.set_verdict(verdict(id, "nothing", None)).await);
        }
        assert_eq!(store.whole_log().await, before);
        assert_eq!(store.count().await, 1);
        assert_eq!(store.get_claim(2).await.unwrap(), None);
        let records = store.request_records(None, 10).await.unwrap();
        assert!(records.is_empty(), "no request_id kept: {records:?}");
        let cmd = response_rid(1, Stance::Refutes, "lost");
        let attached = store.attach_response(cmd).await.unwrap();
        assert!(!attached.replayed, "the refused request_id was not taken");
    }

    pub async fn a_stale_etag_is_aborted_and_changes_nothing<S: Store>(store: &Arc<S>) {
        let stale = rules::etag(&store.reg(draft("etag")).await.claim.claim);
        store.attach(1, Stance::Refutes, "moved on").await;
        let before = store.claim(1).await;
        let current = rules::etag(&before.claim);
        assert_ne!(stale, current, "the etag changes with every event");
        let log = store.whole_log().await;
        let cmd = verdict(1, "late", Some(stale.clone()));
        let err = store.set_verdict(cmd).await.unwrap_err();
        let Error::Aborted(mismatch) = err else {
            panic!("{err:?}")
        };
        assert_eq!(mismatch.claim, "claims/1");
        assert_eq!((mismatch.given, &mismatch.current_etag), (stale, &current));
        assert_eq!(store.claim(1).await, before);
        assert_eq!(store.events(1).await.len(), 2, "no event for it");
        assert_eq!(store.whole_log().await, log);

        let cmd = verdict(1, "on time", Some(current.clone()));
        let set = store.set_verdict(cmd).await.unwrap();
        assert_eq!(set.claim.last_sequence, 3);
        assert_eq!(set.claim.verdict.as_ref().unwrap().rationale, "on time");
        assert_eq!(store.claim(1).await, set);
        assert_eq!(store.position(), log.0 + 1);
        // The etag it was set with is stale now.
        let cmd = verdict(1, "again", Some(current));
        let err = store.set_verdict(cmd).await.unwrap_err();
        assert!(matches!(err, Error::Aborted(_)), "{err:?}");
    }

    pub async fn a_registration_is_replayed_by_its_request_id<S: Store>(store: &Arc<S>) {
        let cmd = claim_rid("retry me", "req-1");
        let first = store.reg(cmd.clone()).await;
        let again = store.reg(cmd.clone()).await;
        assert!(!first.replayed && again.replayed);
        assert_eq!(again.claim, first.claim);
        // A replay shows the claim as it is now.
        store.attach(1, Stance::Supports, "later").await;
        let now = store.reg(cmd.clone()).await;
        assert!(now.replayed);
        assert_eq!(now.claim, store.claim(1).await);

        let log = store.whole_log().await;
        let other = claim_rid("something else", "req-1");
        let err = store.register_claim(other).await.unwrap_err();
        assert_eq!(err, reused("req-1"));
        assert_eq!(store.whole_log().await, log);
        assert_eq!(store.count().await, 1);
        assert_eq!(store.claim(1).await.claim.claim_text, "retry me");
        // Without a request_id nothing is replayed.
        let a = store.reg(draft("twice")).await;
        let b = store.reg(draft("twice")).await;
        assert_eq!((a.claim.claim.id, b.claim.claim.id), (2, 3));
        assert!(!a.replayed && !b.replayed);
    }

    pub async fn an_attachment_is_replayed_by_its_request_id<S: Store>(store: &Arc<S>) {
        for text in ["one", "two"] {
            store.reg(draft(text)).await;
        }
        let cmd = response_rid(1, Stance::Refutes, "att-1");
        let first = store.attach_response(cmd.clone()).await.unwrap();
        let again = store.attach_response(cmd.clone()).await.unwrap();
        assert!(!first.replayed && again.replayed);
        assert_eq!(again.response, first.response);
        let log = store.whole_log().await;
        let other = response_rid(1, Stance::Supports, "att-1");
        // The payload includes the claim it is attached to.
        let elsewhere = response_rid(2, Stance::Refutes, "att-1");
        for refused in [other, elsewhere] {
            let err = store.attach_response(refused).await.unwrap_err();
            assert_eq!(err, reused("att-1"));
        }
        assert_eq!(store.whole_log().await, log);
        assert_eq!(store.responses(1).await, [first.response]);
        assert!(store.responses(2).await.is_empty());
        assert_eq!(store.claim(1).await.claim.last_sequence, 2);
    }

    pub async fn concurrent_registrations_with_one_request_id_make_one_claim<S: Store>(
        store: &Arc<S>,
    ) {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let (store, cmd) = (Arc::clone(store), claim_rid("raced", "race"));
            tasks.spawn(async move { store.register_claim(cmd).await.unwrap() });
        }
        let results = tasks.join_all().await;
        let made = results.iter().filter(|r| !r.replayed).count();
        assert_eq!(made, 1, "one registration, the rest replays");
        assert!(results.iter().all(|r| r.claim == results[0].claim));
        assert_eq!(results[0].claim.claim.id, 1);
        assert_eq!(store.count().await, 1);
        assert_eq!(store.ids(None).await, [1]);
        assert_eq!(store.whole_log().await.1.len(), 1);
    }

    pub async fn concurrent_attachments_with_one_request_id_attach_once<S: Store>(store: &Arc<S>) {
        store.reg(draft("target")).await;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let store = Arc::clone(store);
            let cmd = response_rid(1, Stance::Refutes, "race");
            tasks.spawn(async move { store.attach_response(cmd).await.unwrap() });
        }
        let results = tasks.join_all().await;
        assert_eq!(results.iter().filter(|r| !r.replayed).count(), 1);
        assert!(results.iter().all(|r| r.response == results[0].response));
        assert_eq!(results[0].response.id, 1);
        assert_eq!(store.responses(1).await.len(), 1);
        assert_eq!(store.claim(1).await.claim.last_sequence, 2);
        assert_eq!(store.position(), 2);
    }

    pub async fn request_records_list_the_used_request_ids<S: Store>(store: &Arc<S>) {
        assert!(store.request_records(None, 10).await.unwrap().is_empty());
        for (text, request_id) in [("a", "reg-a"), ("b", "same"), ("c", "")] {
            store.reg(claim_rid(text, request_id)).await;
        }
        // Registrations and attachments keep their request_ids apart.
        for (claim_id, request_id) in [(1, "same"), (3, "att-c")] {
            let cmd = response_rid(claim_id, Stance::AddsContext, request_id);
            assert!(!store.attach_response(cmd).await.unwrap().replayed);
        }
        let all = store.request_records(None, 100).await.unwrap();
        let what = |r: &RequestRecord| {
            let id = String::from_utf8(r.request_id.clone()).unwrap();
            (r.attach, id, r.claim_id, r.response_id)
        };
        let mut seen: Vec<_> = all.iter().map(what).collect();
        seen.sort();
        let expected = [
            (false, "reg-a", 1, 0),
            (false, "same", 2, 0),
            (true, "att-c", 3, 1),
            (true, "same", 1, 1),
        ];
        assert_eq!(seen, expected.map(|(a, id, c, r)| (a, id.into(), c, r)));
        assert!(all.iter().all(|r| r.fingerprint.len() == 32), "SHA-256");
        // One at a time after each: the same records in the same order.
        let mut paged: Vec<RequestRecord> = Vec::new();
        loop {
            let next = store.request_records(paged.last().cloned(), 1).await;
            match next.unwrap().pop() {
                Some(next) => paged.push(next),
                None => break,
            }
            assert!(paged.len() <= all.len(), "request_records never ends");
        }
        assert_eq!(paged, all);
    }

    pub async fn concurrent_writes_keep_the_log_gapless_and_ordered<S: Store>(store: &Arc<S>) {
        const SEEDED: u64 = 4;
        for n in 0..SEEDED {
            store.reg(draft(&format!("seed {n}"))).await;
        }
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..8u64 {
            let store = Arc::clone(store);
            // 25 mixed writes; returns how many made an event.
            tasks.spawn(async move {
                let mut written = 0u64;
                for w in 0..25u64 {
                    let (target, text) = ((t + w) % SEEDED + 1, format!("{t}/{w}"));
                    let outcome = match (t + w) % 3 {
                        0 => store.register_claim(draft(&text)).await.map(drop),
                        1 => {
                            let cmd = response(target, Stance::Refutes, &text);
                            store.attach_response(cmd).await.map(drop)
                        }
                        _ => {
                            // With the etag just read: others may get in between.
                            let seen = store.get_status(target).await.unwrap().unwrap();
                            let etag = rules::etag_of(target, seen.status.last_sequence);
                            let cmd = verdict(target, &text, Some(etag));
                            store.set_verdict(cmd).await.map(drop)
                        }
                    };
                    match outcome {
                        Ok(()) => written += 1,
                        Err(Error::Aborted(_)) => {}
                        Err(other) => panic!("{other:?}"),
                    }
                }
                written
            });
        }
        let n = SEEDED + tasks.join_all().await.into_iter().sum::<u64>();
        // Every write returned durable; a refused one left no event.
        assert_eq!(store.position(), n);
        let all = EventFilter::default();
        let log = store.log(0, n, &all, 10_000).await;
        let positions: Vec<u64> = log.iter().map(|e| e.log_position).collect();
        assert_eq!(positions, upto(n), "1..=N, no gap, no duplicate");
        assert_eq!(store.log(0, n, &all, 7).await, log, "in small batches");
        let second_half = &log[n as usize / 2..];
        assert_eq!(store.log(n / 2, n, &all, 10).await, second_half);

        let mut by_claim: BTreeMap<u64, Vec<ClaimEvent>> = BTreeMap::new();
        for e in &log {
            by_claim.entry(e.claim_id).or_default().push(e.clone());
        }
        let claims: Vec<u64> = by_claim.keys().copied().collect();
        assert_eq!(claims, upto(store.count().await));
        for (&id, events) in &by_claim {
            let sequences: Vec<u64> = events.iter().map(|e| e.sequence).collect();
            assert_eq!(sequences, upto(events.len() as u64), "claim {id}");
            assert_eq!(events[0].event_type(), ClaimRegistered);
            assert_eq!(&store.events(id).await, events, "claim {id}");
            let claim = store.claim(id).await.claim;
            assert_eq!(claim.last_sequence, events.len() as u64);
            assert_eq!(claim.state, events.last().unwrap().state);
            let one = store.log(0, n, &filter(Some(id), &[]), 5).await;
            assert_eq!(&one, events, "claim {id}");
        }
        let types = [&[VerdictSet][..], &[ClaimRegistered, VerdictSet]];
        for claim_id in [None, Some(1)] {
            for types in types {
                let filter = filter(claim_id, types);
                let passes = |e: &&ClaimEvent| filter.accepts(e.claim_id, e.event_type);
                let expected: Vec<ClaimEvent> = log.iter().filter(passes).cloned().collect();
                assert!(!expected.is_empty());
                let got = store.log(0, n, &filter, 6).await;
                assert_eq!(got, expected, "{filter:?}");
            }
        }
    }

    pub async fn snapshots_replay_every_claim_as_of_a_position<S: Store>(store: &Arc<S>) {
        for id in 1..=7u64 {
            store.reg(draft(&format!("claim {id}"))).await;
            if id % 2 == 0 {
                store.attach(id, Stance::Refutes, "no").await;
            }
            if id % 3 == 0 {
                store.decide(id, "done").await;
            }
        }
        let none = store.snapshot_claims(0, None, 10).await.unwrap();
        assert!(none.items.is_empty());
        let at = store.position();
        let mut then = Vec::new();
        for id in 1..=7 {
            let claim = store.claim(id).await.claim;
            let events = store.events(id).await;
            then.push((claim, store.responses(id).await, events));
        }
        // Later writes do not show in a snapshot up to `at`.
        store.attach(2, Stance::Supports, "yes").await;
        store.decide(1, "later").await;
        store.reg(draft("claim 8")).await;
        let id_of = |h: &ClaimHistory| h.claim.as_ref().unwrap().id;
        for limit in [1, 3, 7, 100] {
            let fetch = move |c| store.snapshot_claims(at, c, limit);
            let snapshot = pages(limit, id_of, fetch).await;
            assert_eq!(snapshot.iter().map(id_of).collect::<Vec<_>>(), upto(7));
            for (history, (claim, responses, events)) in snapshot.iter().zip(&then) {
                let replayed = history.verify().expect("the trail replays");
                assert_eq!(replayed, claim, "the claim as it was at {at}");
                assert_eq!(&history.responses, responses);
                assert_eq!(&history.events, events);
            }
        }
        let now = store.position();
        let fetch = move |c| store.snapshot_claims(now, c, 3);
        let snapshot = pages(3, id_of, fetch).await;
        assert_eq!(snapshot.len(), 8);
        for history in &snapshot {
            let claim = history.verify().expect("the trail replays");
            assert_eq!(claim, &store.claim(claim.id).await.claim);
        }
    }

    pub async fn log_heads_chain_the_event_hashes<S: Store>(store: &Arc<S>) {
        assert_eq!(store.log_head(0).await.unwrap(), chain::GENESIS);
        for text in ["a", "b", "c"] {
            store.reg(draft(text)).await;
        }
        store.attach(2, Stance::Refutes, "no").await;
        store.attach(1, Stance::Supports, "yes").await;
        store.decide(2, "done").await;
        let (n, log) = store.whole_log().await;
        assert_eq!(n, 6);
        let mut heads = vec![chain::GENESIS];
        for e in &log {
            let hash = chain::sha256(&e.encode_to_vec());
            let head = chain::link(heads.last().unwrap(), &hash);
            let stored = store.log_head(e.log_position).await.unwrap();
            assert_eq!(stored, head, "at {}", e.log_position);
            assert!(!heads.contains(&head));
            heads.push(head);
        }
        assert_eq!(store.log_head(n).await.unwrap(), heads[6], "stable");
        // Each claim's own chain: prev_hash links, the head is its last event's hash.
        for id in 1..=3 {
            let mut prev = Vec::new();
            for e in &store.events(id).await {
                assert_eq!(e.prev_hash, prev, "claim {id} event {}", e.sequence);
                prev = chain::sha256(&e.encode_to_vec()).to_vec();
            }
            assert_eq!(store.claim(id).await.claim.chain_head, prev);
        }
    }

    pub async fn pagination_returns_every_item_once_in_order<S: Store>(store: &Arc<S>) {
        for n in 1..=11u64 {
            store.reg(draft(&format!("claim {n}"))).await;
        }
        for n in 1..=7 {
            store.attach(5, Stance::AddsContext, &format!("r{n}")).await;
        }
        store.attach(3, Stance::Refutes, "r").await;
        for id in [4, 8] {
            store.decide(id, "done").await;
        }
        let states = [
            (None, vec![11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1]),
            (Some(Unverified), vec![11, 10, 9, 7, 6, 2, 1]),
            (Some(InReview), vec![5, 3]),
            (Some(Resolved), vec![8, 4]),
            (Some(Disputed), vec![]),
        ];
        let claim_id = |v: &ClaimView| v.claim.id;
        let response_id = |r: &OfficialResponse| r.id;
        let sequence = |e: &ClaimEvent| e.sequence;
        for limit in [1, 2, 3, 7, 8, 11, 12] {
            for (state, expected) in &states {
                let fetch = move |c| store.list_claims(*state, c, limit);
                let got = pages(limit, claim_id, fetch).await;
                assert_eq!(&ids(&got), expected, "{state:?} by {limit}");
            }
            let fetch = move |c| store.list_claims_oldest_first(c, limit);
            let got = pages(limit, claim_id, fetch).await;
            assert_eq!(ids(&got), upto(11), "oldest first by {limit}");
            let fetch = move |c| store.list_responses(5, c, limit);
            let got = pages(limit, response_id, fetch).await;
            assert_eq!(got.iter().map(response_id).collect::<Vec<_>>(), upto(7));
            assert_eq!(got, store.responses(5).await);
            let fetch = move |c| store.list_events(5, c, limit);
            let got = pages(limit, sequence, fetch).await;
            assert_eq!(got.iter().map(sequence).collect::<Vec<_>>(), upto(8));
        }
        // Cursors in the middle of the ids.
        let below_4 = store.list_claims(None, Some(4), 2).await.unwrap();
        assert_eq!(ids(&below_4.items), [3, 2]);
        let after_9 = store.list_claims_oldest_first(Some(9), 5).await.unwrap();
        assert_eq!(ids(&after_9.items), [10, 11]);
    }

    pub async fn find_similar_by_sha256_and_pdq<S: Store>(store: &Arc<S>) {
        let (near, far) = (flipped(P, 0..4), flipped(P, 100..140));
        let faint = flipped(P, 0..128);
        assert_eq!((P.distance(&near), P.distance(&far)), (4, 40));
        let claims = [
            on_image("base", &sha(1), P, 90),
            on_image("other", &sha(2), flipped(P, 0..256), 90),
            on_image("repost", &sha(1), P, 90),
            on_image("near", &sha(3), near, 90),
            on_image("far", &sha(4), far, 90),
            draft("no image"),
            on_image("faint", &sha(5), faint, 10),
        ];
        for cmd in claims {
            store.reg(cmd).await;
        }
        let find = |sha256: Option<String>, pdq: Option<Pdq>, max_distance, before, limit| {
            let mut query = SimilarQuery::default();
            (query.sha256, query.pdq, query.before) = (sha256, pdq, before);
            (query.max_distance, query.limit) = (max_distance, limit);
            async move { store.find_similar(query).await.unwrap() }
        };
        let exact = find(Some(sha(1)), None, 0, None, 10).await;
        assert_eq!(similar(&exact), [(3, true, 0), (1, true, 0)]);
        assert_eq!(exact[0].claim.view(), &store.claim(3).await);
        let with = |found: Vec<Similar>| similar(&found);
        // By SHA-256 alone, near duplicates of the found claim's hash too.
        let by_sha = with(find(Some(sha(1)), None, 8, None, 10).await);
        assert_eq!(by_sha, [(3, true, 0), (1, true, 0), (4, false, 4)]);
        let within = [(3, false, 0), (1, false, 0), (4, false, 4)];
        assert_eq!(with(find(None, Some(P), 39, None, 10).await), within);
        let edge = with(find(None, Some(P), 40, None, 10).await);
        assert_eq!(edge, [&within[..], &[(5, false, 40)]].concat());
        let before_4 = with(find(None, Some(P), 40, Some(4), 10).await);
        assert_eq!(before_4, within[..2]);
        let before_3 = with(find(Some(sha(1)), Some(P), 40, Some(3), 10).await);
        assert_eq!(before_3, [(1, true, 0)]);
        let two = with(find(None, Some(P), 40, None, 2).await);
        assert_eq!(two, within[..2]);
        assert!(find(Some(sha(9)), None, 256, None, 10).await.is_empty());
        assert!(find(None, None, 256, None, 10).await.is_empty());
        // Low-quality hashes match only when asked.
        assert!(find(None, Some(faint), 0, None, 10).await.is_empty());
        let mut query = SimilarQuery::default();
        (query.pdq, query.include_low_quality, query.limit) = (Some(faint), true, 10);
        let faint = store.find_similar(query).await.unwrap();
        assert_eq!(similar(&faint), [(7, false, 0)]);
    }

    pub async fn same_image_lists_earlier_claims_on_the_image<S: Store>(store: &Arc<S>) {
        // `other` is 4 from `P`, 8 from `near`; `far` 40 from `P`, 44 from `near`.
        let (near, other) = (flipped(P, 0..4), flipped(P, 200..204));
        let far = flipped(P, 100..140);
        let mut repost = on_image("repost", &sha(1), P, 90);
        repost.request_id = "repost".into();
        let mut strict = on_image("strict", &sha(6), other, 90);
        strict.near_distance = 3;
        let mut loose = on_image("loose", &sha(7), other, 90);
        loose.near_distance = 4;
        let cases = [
            (on_image("base", &sha(1), P, 90), vec![]),
            (repost.clone(), vec![(1, true, 0)]),
            (
                on_image("near", &sha(2), near, 90),
                vec![(2, false, 4), (1, false, 4)],
            ),
            (on_image("far", &sha(3), far, 90), vec![]),
            (on_image("far again", &sha(3), far, 90), vec![(4, true, 0)]),
            (strict, vec![]),
            (loose, vec![(6, false, 0), (2, false, 4), (1, false, 4)]),
            (draft("no image"), vec![]),
            (on_image("faint", &sha(8), P, 10), vec![]),
        ];
        for (n, (cmd, expected)) in cases.into_iter().enumerate() {
            let got = store.reg(cmd).await;
            assert_eq!(got.claim.claim.id, n as u64 + 1);
            assert_eq!(similar(&got.same_image), expected, "claim {}", n + 1);
        }
        let replay = store.reg(repost).await;
        assert!(replay.replayed);
        // Only claims registered before it.
        assert_eq!(similar(&replay.same_image), [(1, true, 0)]);
    }

    pub async fn api_keys_are_unique_listed_found_and_revoked<S: Store>(store: &Arc<S>) {
        assert!(!store.has_keys().await.unwrap());
        assert!(store.list_keys().await.unwrap().is_empty());
        let make = |name: &str, role, seconds| {
            let (key, _token) = ApiKey::create(name, role, "admin", ts(seconds)).unwrap();
            key
        };
        let ops = make("ops", Role::Admin, 1_700_000_000);
        assert_eq!(store.create_key(ops.clone()).await.unwrap(), ops);
        assert!(store.has_keys().await.unwrap(), "at once");
        let shouting = make("OPS", Role::Reader, 1_700_000_001);
        let err = store.create_key(shouting).await.unwrap_err();
        assert!(matches!(err, Error::AlreadyExists(_)), "{err:?}");
        let desk = make("desk-1", Role::Desk, 1_700_000_002);
        store.create_key(desk.clone()).await.unwrap();
        let both = [ops.clone(), desk.clone()];
        assert_eq!(store.list_keys().await.unwrap(), both, "creation order");
        for key in &both {
            assert_eq!(store.find_key(key.id).await.unwrap().as_ref(), Some(key));
        }
        let unknown = (1..).find(|id| ![ops.id, desk.id].contains(id)).unwrap();
        assert_eq!(store.find_key(unknown).await.unwrap(), None);

        let revoked = store.revoke_key("ops", "root").await.unwrap();
        assert!(revoked.revoke_time.is_some());
        let (revoke_time, revoked_by) = (revoked.revoke_time, "root".into());
        let expected = ApiKey {
            revoke_time,
            revoked_by,
            ..ops
        };
        assert_eq!(revoked, expected);
        let again = store.revoke_key("ops", "someone").await.unwrap();
        assert_eq!(again, revoked, "a revoked key is returned unchanged");
        let found = store.find_key(revoked.id).await.unwrap();
        assert_eq!(found.as_ref(), Some(&revoked));
        assert_eq!(store.list_keys().await.unwrap(), [revoked, desk]);
        not_found(store.revoke_key("nobody", "root").await);
        // A revoked key's name stays taken.
        let taken = make("ops", Role::Admin, 1_700_000_003);
        let err = store.create_key(taken).await.unwrap_err();
        assert!(matches!(err, Error::AlreadyExists(_)), "{err:?}");
        assert!(store.has_keys().await.unwrap(), "revoked keys still count");
    }

    fn review(url: &str, claim: &str) -> ExternalReview {
        ExternalReview {
            format_version: 1,
            kind: ReviewKind::ClaimReview as i32,
            review_url: url.to_string(),
            publisher_name: "Example Fact Check".into(),
            claim_reviewed: claim.to_string(),
            language: "en".into(),
            ..Default::default()
        }
    }

    pub async fn external_reviews_are_deduplicated_by_url_and_logged<S: Store>(store: &Arc<S>) {
        assert_eq!(store.review_log_head().await.unwrap(), 0);
        let first = vec![
            review("https://example.org/a", "UN peacekeepers in Kazakhstan"),
            review("https://example.org/b", "Blue helmets in Almaty"),
        ];
        let done = store
            .import_reviews(first.clone(), "desk-1".into())
            .await
            .unwrap();
        assert_eq!(
            done.iter().map(|d| d.outcome).collect::<Vec<_>>(),
            vec![ImportOutcome::Created, ImportOutcome::Created]
        );
        assert_ne!(done[0].id, done[1].id);
        // The same reviews again: nothing changes, nothing is logged.
        let again = store.import_reviews(first, "desk-2".into()).await.unwrap();
        assert!(again.iter().all(|d| d.outcome == ImportOutcome::Unchanged));
        assert_eq!(
            again.iter().map(|d| d.id).collect::<Vec<_>>(),
            done.iter().map(|d| d.id).collect::<Vec<_>>()
        );
        assert_eq!(store.review_log_head().await.unwrap(), 2);
        // A changed review keeps its id and gets a new revision.
        let changed = store
            .import_reviews(
                vec![review(
                    "https://example.org/a",
                    "UN peacekeepers sent to Kazakhstan",
                )],
                "desk-2".into(),
            )
            .await
            .unwrap();
        assert_eq!(changed[0].outcome, ImportOutcome::Updated);
        assert_eq!(changed[0].id, done[0].id);
        let stored = store.get_review(done[0].id).await.unwrap().unwrap();
        assert_eq!(stored.revision, 2);
        assert_eq!(stored.imported_by, "desk-2");
        assert_eq!(stored.claim_reviewed, "UN peacekeepers sent to Kazakhstan");
        assert!(stored.create_time.is_some() && stored.update_time >= stored.create_time);
        assert_eq!(store.get_review(999).await.unwrap(), None);
        // The review log lists every change in order.
        let log = store.review_log(0, 10).await.unwrap();
        assert_eq!(
            log.iter()
                .map(|(p, c)| (*p, c.review_id, c.revision))
                .collect::<Vec<_>>(),
            vec![(1, done[0].id, 1), (2, done[1].id, 1), (3, done[0].id, 2)]
        );
        assert_eq!(store.review_log(2, 10).await.unwrap().len(), 1);
        // Listed newest first, in pages.
        let page = store.list_reviews(None, 1).await.unwrap();
        assert_eq!(page.items[0].id, done[1].id);
        let rest = store.list_reviews(page.next_cursor, 10).await.unwrap();
        assert_eq!(rest.items.len(), 1);
        assert_eq!(rest.items[0].id, done[0].id);
        assert_eq!(rest.next_cursor, None);
    }

    pub async fn page_token_key_stats_and_writability<S: Store>(store: &Arc<S>) {
        let key = store.page_token_key();
        assert_ne!(key, [0; PAGE_TOKEN_KEY_LEN], "made at random");
        assert_eq!(store.count().await, 0);
        assert_eq!(*store.writability().borrow(), Writability::Writable);
        let cmd = claim_rid("counted", "counted");
        for c in [cmd.clone(), cmd, draft("b"), draft("c")] {
            store.reg(c).await;
        }
        let changed = claim_rid("changed", "counted");
        let refused = store.register_claim(changed).await.unwrap_err();
        assert_eq!(refused, reused("counted"));
        assert_eq!(store.count().await, 3, "replays and refusals add none");
        assert_eq!(store.page_token_key(), key, "stable");
        store.close().await.unwrap();
    }
}
