//! The sled engine's own tests under the core: layouts, migrations,
//! crash recovery, caches and the index, below the `Store` contract
//! (which `tests/conformance.rs` checks for every backend). About 900
//! lines of tests only: each builds its own directory, so they stay in one
//! file beside the engine they open.

use super::*;
use crate::domain::access::ApiKey;
use crate::domain::pdq::Pdq;
use crate::domain::{Claim, ClaimEvent, OfficialResponse};
use crate::store::core::{Core, CoreOptions};
use crate::store::schema::{claim_record, claim_view, sha_key};
use crate::store::MAX_SAME_IMAGE_CLAIMS;
use crate::store::{EventFilter, NewClaim, NewResponse, NewVerdict, Similar, SimilarQuery, Store};
use prost::Message;
use std::sync::atomic::{AtomicBool, Ordering};

/// The core over the sled engine: what these tests open.
type SledCore = Core<super::SledEngine>;

/// The core over the sled engine in `dir`, its index built.
fn open(dir: &Path) -> std::result::Result<SledCore, OpenError> {
    open_with(dir, DEFAULT_CACHE_BYTES, true)
}

/// Like [`open`], without the PDQ index.
fn open_without_index(dir: &Path, cache: u64) -> std::result::Result<SledCore, OpenError> {
    open_with(dir, cache, false)
}

fn open_with(
    dir: &Path,
    cache: u64,
    build_index: bool,
) -> std::result::Result<SledCore, OpenError> {
    let engine = super::SledEngine::open(dir, cache)?;
    let options = CoreOptions {
        build_index,
        durable_log: None,
    };
    Ok(Core::start(engine, options).expect("start the core"))
}

/// The sled tree of `table` under a core.
fn tree(store: &SledCore, table: Table) -> &sled::Tree {
    store.engine().tree(table)
}

#[tokio::test]
async fn a_directory_written_by_a_newer_format_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        let meta = db.open_tree(schema::META).unwrap();
        meta.insert(META_FORMAT_VERSION, &(DIR_FORMAT_VERSION + 1).to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let err = open(dir.path()).err().expect("must refuse");
    assert!(matches!(err, OpenError::TooNew { found, .. } if found == DIR_FORMAT_VERSION + 1));
    let text = err.to_string();
    assert!(text.contains(&dir.path().display().to_string()), "{text}");
    assert!(text.contains("newer"), "{text}");
}

#[tokio::test]
async fn a_new_directory_records_the_current_format_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    let meta = store.engine().db.open_tree(schema::META).unwrap();
    let v = meta
        .get(META_FORMAT_VERSION)
        .unwrap()
        .expect("version written");
    assert_eq!(v.as_ref(), DIR_FORMAT_VERSION.to_be_bytes());
}

fn on_image(sha: &str, text: &str) -> NewClaim {
    NewClaim {
        claim: Claim {
            claim_text: text.into(),
            language: "en".into(),
            image: Some(crate::domain::Image {
                sha256: sha.into(),
                ..Default::default()
            }),
            ..Default::default()
        },
        request_id: String::new(),
        actor: "test".into(),
        near_distance: 31,
        dihedral: false,
        variants: None,
    }
}

/// A dropped store lets go of its directory once its threads are joined.
async fn open_when_released(dir: &Path) -> sled::Db {
    for _ in 0..1000 {
        if let Ok(db) = sled::open(dir) {
            return db;
        }
        tokio::task::yield_now().await;
    }
    panic!("the dropped store still holds {}", dir.display());
}

/// Reopens the store once the dropped one has let go of the directory.
async fn reopen(dir: &Path) -> SledCore {
    for _ in 0..1000 {
        match open(dir) {
            Ok(store) => return store,
            Err(OpenError::Locked(_)) => tokio::task::yield_now().await,
            Err(other) => panic!("{other}"),
        }
    }
    panic!("the dropped store still holds {}", dir.display());
}

fn texts(found: &[Similar]) -> Vec<&str> {
    found
        .iter()
        .map(|s| s.claim.view().claim.claim_text.as_str())
        .collect()
}

#[tokio::test]
async fn a_version_1_directory_is_migrated_and_keeps_its_same_image_links() {
    let sha = "ab".repeat(32);
    let dir = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    {
        let store = open(dir.path()).unwrap();
        for text in ["one", "two", "three"] {
            ids.push(
                store
                    .register_claim(on_image(&sha, text))
                    .await
                    .unwrap()
                    .claim
                    .claim
                    .id,
            );
        }
        store.close().await.unwrap();
    }
    // Rewrite the index and version as version 1 wrote them.
    {
        let db = open_when_released(dir.path()).await;
        let index = db.open_tree(schema::CLAIMS_BY_SHA256).unwrap();
        index.clear().unwrap();
        let packed: Vec<u8> = ids.iter().flat_map(|id| id.to_be_bytes()).collect();
        index.insert(sha_key(&sha).unwrap(), packed).unwrap();
        let meta = db.open_tree(schema::META).unwrap();
        meta.insert(META_FORMAT_VERSION, &1u32.to_be_bytes())
            .unwrap();
        meta.remove(META_LAST_CLAIM_ID).unwrap();
        db.flush().unwrap();
    }
    let store = open(dir.path()).unwrap();
    let version = store
        .engine()
        .db
        .open_tree(schema::META)
        .unwrap()
        .get(META_FORMAT_VERSION)
        .unwrap();
    assert_eq!(version.unwrap().as_ref(), DIR_FORMAT_VERSION.to_be_bytes());
    assert!(tree(&store, Table::ClaimsBySha256)
        .iter()
        .all(|e| e.unwrap().0.len() == 40));
    // Version 1 took ids from sled's generator; simulate its jump.
    let fourth = store.register_claim(on_image(&sha, "four")).await.unwrap();
    assert_eq!(texts(&fourth.same_image), ["three", "two", "one"]);
    assert_eq!(fourth.claim.claim.id, ids[2] + 1);
}

#[tokio::test]
async fn a_version_2_directory_gets_its_event_log_in_event_order() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path()).unwrap();
        for text in ["one", "two"] {
            store
                .register_claim(on_image(&"ef".repeat(32), text))
                .await
                .unwrap();
        }
        store.close().await.unwrap();
    }
    // Rewrite as version 2 wrote it: no log, no positions in events.
    let before: Vec<ClaimEvent> = {
        let db = open_when_released(dir.path()).await;
        db.drop_tree(schema::EVENT_LOG).unwrap();
        let events = db.open_tree(schema::EVENTS).unwrap();
        let mut stripped = Vec::new();
        for entry in events.iter() {
            let (key, value) = entry.unwrap();
            let mut event = ClaimEvent::decode(value.as_ref()).unwrap();
            event.log_position = 0;
            events.insert(key, event.encode_to_vec()).unwrap();
            stripped.push(event);
        }
        let meta = db.open_tree(schema::META).unwrap();
        meta.insert(META_FORMAT_VERSION, &2u32.to_be_bytes())
            .unwrap();
        meta.remove(META_LAST_LOG_POSITION).unwrap();
        db.flush().unwrap();
        stripped
    };
    assert_eq!(before.len(), 2);
    let store = open(dir.path()).unwrap();
    assert_eq!(*store.durable_log().borrow(), 2);
    let all = EventFilter::default();
    let batch = store.log_events(0, 2, &all, 10).await.unwrap();
    let positions: Vec<(u64, u64)> = batch
        .events
        .iter()
        .map(|e| (e.claim_id, e.log_position))
        .collect();
    assert_eq!(positions, [(1, 1), (2, 2)]);
    // New events continue the log.
    let third = store
        .register_claim(on_image(&"ef".repeat(32), "three"))
        .await
        .unwrap();
    let batch = store.log_events(2, 3, &all, 10).await.unwrap();
    assert_eq!(batch.events.len(), 1);
    assert_eq!(batch.events[0].claim_id, third.claim.claim.id);
    assert_eq!(batch.events[0].log_position, 3);
}

/// Registers two claims, attaches two responses and sets a verdict.
async fn some_history(store: &SledCore) {
    for text in ["one", "two"] {
        store
            .register_claim(on_image(&"ab".repeat(32), text))
            .await
            .unwrap();
    }
    for stance in [
        crate::domain::Stance::Refutes,
        crate::domain::Stance::Supports,
    ] {
        store
            .attach_response(NewResponse {
                claim_id: 1,
                response: OfficialResponse {
                    stance: stance as i32,
                    text: "statement".into(),
                    ..Default::default()
                },
                request_id: format!("{stance:?}"),
                actor: "desk".into(),
            })
            .await
            .unwrap();
    }
    store.set_verdict(rated(1, "KAZBAT")).await.unwrap();
}

/// An editor's verdict on claim `id`, rating 2, without an etag.
fn rated(id: u64, rationale: &str) -> NewVerdict {
    NewVerdict {
        claim_id: id,
        verdict: crate::domain::Verdict {
            claim_rating: 2,
            rationale: rationale.into(),
            ..Default::default()
        },
        etag: None,
        actor: "editor".into(),
    }
}

/// A directory holding [`some_history`], its store closed.
async fn dir_with_history() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    some_history(&store).await;
    store.close().await.unwrap();
    dir
}

fn dump(db: &sled::Db, tree: &str) -> Vec<(sled::IVec, sled::IVec)> {
    db.open_tree(tree)
        .unwrap()
        .iter()
        .map(|e| e.unwrap())
        .collect()
}

#[tokio::test]
async fn a_version_3_directory_gets_the_same_hash_chains_as_live_writes() {
    let dir = dir_with_history().await;
    let db = open_when_released(dir.path()).await;
    let live: Vec<_> = ["claims", "events", "event_log"]
        .iter()
        .map(|t| dump(&db, t))
        .collect();
    // Rewrite as version 3 wrote it: no chain fields, 17-byte log entries.
    for (key, value) in dump(&db, "claims") {
        let mut claim = Claim::decode(value.as_ref()).unwrap();
        assert_eq!(claim.chain_head.len(), 32);
        claim.chain_head.clear();
        db.open_tree(schema::CLAIMS)
            .unwrap()
            .insert(key, claim.encode_to_vec())
            .unwrap();
    }
    for (key, value) in dump(&db, "events") {
        let mut event = ClaimEvent::decode(value.as_ref()).unwrap();
        event.prev_hash.clear();
        event.record_sha256.clear();
        db.open_tree(schema::EVENTS)
            .unwrap()
            .insert(key, event.encode_to_vec())
            .unwrap();
    }
    for (key, value) in dump(&db, "event_log") {
        db.open_tree(schema::EVENT_LOG)
            .unwrap()
            .insert(key, &value[..17])
            .unwrap();
    }
    db.open_tree(schema::META)
        .unwrap()
        .insert(META_FORMAT_VERSION, &3u32.to_be_bytes())
        .unwrap();
    db.flush().unwrap();
    drop(db);
    let report = crate::store::check_dir(dir.path()).unwrap();
    assert!(!report.is_ok(), "an old directory is reported");
    assert!(
        report.problems[0].contains("older"),
        "{:?}",
        report.problems
    );
    let store = reopen(dir.path()).await;
    let migrated: Vec<_> = ["claims", "events", "event_log"]
        .iter()
        .map(|t| dump(&store.engine().db, t))
        .collect();
    assert_eq!(
        migrated, live,
        "migration seals exactly what live writes sealed"
    );
    drop(store);
    let db = open_when_released(dir.path()).await;
    drop(db);
    let report = crate::store::check_dir(dir.path()).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(
        (report.claims, report.events, report.log_position),
        (2, 5, 5)
    );
}

#[tokio::test]
async fn a_version_4_directory_gets_copies_of_the_latest_responses_in_its_claim_records() {
    let dir = dir_with_history().await;
    let db = open_when_released(dir.path()).await;
    let live = dump(&db, "claims");
    let latest = db
        .open_tree(schema::RESPONSES)
        .unwrap()
        .get(pair(1, 2))
        .unwrap();
    let first = Claim::decode(live[0].1.as_ref()).unwrap();
    assert_eq!(
        live[0].1.as_ref(),
        claim_record(&first, &latest.unwrap()),
        "after the verdict, claim 1 still ends with a copy of response 2"
    );
    // Rewrite as version 4 wrote it: the bare claim.
    for (key, value) in &live {
        let claim = Claim::decode(value.as_ref()).unwrap();
        let claims = db.open_tree(schema::CLAIMS).unwrap();
        claims.insert(key, claim.encode_to_vec()).unwrap();
    }
    assert_ne!(dump(&db, "claims"), live);
    db.open_tree(schema::META)
        .unwrap()
        .insert(META_FORMAT_VERSION, &4u32.to_be_bytes())
        .unwrap();
    db.flush().unwrap();
    drop(db);
    let store = reopen(dir.path()).await;
    assert_eq!(
        dump(&store.engine().db, "claims"),
        live,
        "the same records as live writes"
    );
    let status = store.get_status(1).await.unwrap().unwrap();
    let latest = status.latest_response.expect("claim 1 has responses");
    assert_eq!(
        (latest.id, latest.stance),
        (2, crate::domain::Stance::Supports as i32)
    );
    assert_eq!(status.status.verdict.unwrap().rationale, "KAZBAT");
    let view = store.get_claim(1).await.unwrap().unwrap();
    assert_eq!(view.latest_response.map(|r| r.id), Some(2));
    assert_eq!(view.claim.claim_text, "one");
    let second = store.get_status(2).await.unwrap().unwrap();
    assert_eq!(second.latest_response, None);
    drop(store);
    let db = open_when_released(dir.path()).await;
    drop(db);
    let report = crate::store::check_dir(dir.path()).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

#[tokio::test]
async fn a_store_opened_without_the_index_reads_but_refuses_searches_and_registrations() {
    let dir = dir_with_history().await;
    let store = loop {
        match open_without_index(dir.path(), 16 << 20) {
            Ok(store) => break store,
            Err(OpenError::Locked(_)) => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await
            }
            Err(e) => panic!("{e}"),
        }
    };
    let view = store.get_claim(1).await.unwrap().unwrap();
    assert_eq!(view.latest_response.map(|r| r.id), Some(2));
    let refused = |e: Error| matches!(&e, Error::Internal(m) if m.contains("without it"));
    let search = store
        .find_similar(SimilarQuery {
            sha256: None,
            pdq: Some(Pdq([0; 32])),
            max_distance: 31,
            include_low_quality: false,
            before: None,
            limit: 10,
            ..Default::default()
        })
        .await;
    assert!(refused(search.expect_err("no index to search")));
    let register = store
        .register_claim(on_image(&"ab".repeat(32), "three"))
        .await;
    assert!(refused(register.expect_err("no index to update")));
    assert!(
        store.get_claim(3).await.unwrap().is_none(),
        "nothing written"
    );
    assert_eq!(store.stats().await.unwrap().claims, 2);
}

#[tokio::test]
async fn cached_statuses_and_claims_are_what_sled_holds_after_every_kind_of_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    let same = |store: &SledCore, id: u64| {
        let cached = store.caches().0.get(id).expect("written through");
        assert_eq!(Some((*cached).clone()), store.read_status(id).unwrap());
        let cached = store.caches().1.get(id).expect("written through");
        assert_eq!(Some(cached.view().clone()), store.read_claim(id).unwrap());
    };
    store
        .register_claim(on_image(&"ab".repeat(32), "one"))
        .await
        .unwrap();
    same(&store, 1);
    some_history(&store).await; // registers 2 and 3, attaches two to 1, a verdict on 1
    for id in 1..=3 {
        same(&store, id);
    }
    let status = store.get_status(1).await.unwrap().unwrap();
    assert_eq!(status.latest_response.map(|r| r.id), Some(2));
    assert!(status.status.verdict.is_some());
    let view = store.get_claim(1).await.unwrap().unwrap();
    assert_eq!(view.latest_response.map(|r| r.id), Some(2));
    assert!(view.claim.verdict.is_some());
    // A store with the caches off reads sled and holds nothing.
    drop(store);
    let store = reopen(dir.path()).await.with_caches(0, 0);
    assert_eq!(
        store.get_status(1).await.unwrap(),
        store.read_status(1).unwrap()
    );
    assert_eq!(
        store.get_claim(1).await.unwrap(),
        store.read_claim(1).unwrap()
    );
    assert_eq!(store.caches().0.len(), 0);
    assert_eq!(store.caches().1.len(), 0);
    // Turned on, they are filled in the background, then every write
    // replaces its entries.
    let store = store.with_caches(1 << 20, 1 << 20);
    while !store.caches_warmed() {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(store.caches().0.len(), 3);
    assert_eq!(store.caches().1.len(), 3);
    for id in 1..=3 {
        same(&store, id);
    }
    store
        .attach_response(NewResponse {
            claim_id: 2,
            response: OfficialResponse::default(),
            request_id: String::new(),
            actor: "desk".into(),
        })
        .await
        .unwrap();
    same(&store, 2);
    assert_eq!(
        store
            .get_status(2)
            .await
            .unwrap()
            .unwrap()
            .status
            .last_sequence,
        2
    );
}

#[tokio::test]
async fn a_verdict_on_a_damaged_copy_of_the_latest_response_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    store
        .register_claim(on_image(&"ef".repeat(32), "damaged"))
        .await
        .unwrap();
    store
        .attach_response(NewResponse {
            claim_id: 1,
            response: OfficialResponse::default(),
            request_id: String::new(),
            actor: "desk".into(),
        })
        .await
        .unwrap();
    let record = tree(&store, Table::Claims).get(be(1)).unwrap().unwrap();
    let claim = claim_view(&record, 1).unwrap().claim;
    let damaged = claim_record(&claim, &[0xff, 0xff, 0xff]);
    tree(&store, Table::Claims)
        .insert(be(1), damaged.clone())
        .unwrap();
    let events_before = store.list_events(1, None, 100).await.unwrap().items.len();
    let err = store.set_verdict(rated(1, "checked")).await.unwrap_err();
    assert!(
        matches!(&err, Error::DataLoss(m) if m.starts_with("claims/1 ") && m.contains("official response")),
        "{err:?}"
    );
    assert_eq!(
        tree(&store, Table::Claims).get(be(1)).unwrap().unwrap(),
        damaged
    );
    let events_after = store.list_events(1, None, 100).await.unwrap().items.len();
    assert_eq!(events_after, events_before, "no event was added");
}

#[tokio::test]
async fn a_write_whose_caller_gave_up_still_reaches_the_caches_the_index_and_watchers() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    store.pdq_index_ready().await.unwrap();
    let pdq = "5a".repeat(32);
    let mut draft = on_image(&"cd".repeat(32), "abandoned");
    if let Some(image) = draft.claim.image.as_mut() {
        image.pdq = pdq.clone();
        image.pdq_quality = 90;
    }
    // Polled once (the write is queued), then dropped: a deadline that
    // passed, or a client that went away. The committer adds the claim
    // to the PDQ index before it answers, so holding the index keeps the
    // write unanswered until the caller has given up (without it, a fast
    // committer could answer within the first poll).
    let held = store.pdq_index().write().unwrap();
    let mut write = Box::pin(store.register_claim(draft));
    let waker = std::task::Waker::noop();
    let polled =
        std::future::Future::poll(write.as_mut(), &mut std::task::Context::from_waker(waker));
    drop(write);
    drop(held);
    assert!(polled.is_pending(), "the caller must have stopped waiting");
    // Durable, and so committed and followed by the derived state.
    let mut durable = store.durable_log();
    durable.wait_for(|position| *position >= 1).await.unwrap();
    let claim = store.read_claim(1).unwrap().expect("the write committed");
    assert_eq!(claim.claim.claim_text, "abandoned");
    assert_eq!(
        Some((*store.caches().0.get(1).expect("cached")).clone()),
        store.read_status(1).unwrap()
    );
    assert_eq!(
        Some(store.caches().1.get(1).expect("cached").view().clone()),
        Some(claim)
    );
    let found = store
        .find_similar(SimilarQuery {
            sha256: None,
            pdq: Pdq::from_hex(&pdq),
            max_distance: 0,
            include_low_quality: false,
            before: None,
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "indexed");
    assert_eq!(*store.durable_log().borrow(), 1, "watchers told");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_read_after_an_acknowledged_write_shows_it_under_eviction_and_races() {
    let dir = tempfile::tempdir().unwrap();
    // 128 bytes a shard, less than one entry: each shard keeps only its
    // newest entry, so evictions happen all the time.
    let store = Arc::new(open(dir.path()).unwrap().with_caches(8 << 10, 8 << 10));
    for i in 0..40 {
        let claim = NewClaim {
            claim: Claim {
                claim_text: format!("claim {i}"),
                language: "en".into(),
                ..Default::default()
            },
            request_id: String::new(),
            actor: "test".into(),
            near_distance: 0,
            dihedral: false,
            variants: None,
        };
        store.register_claim(claim).await.unwrap();
    }
    let done = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for r in 0..3u64 {
        let (store, done) = (Arc::clone(&store), Arc::clone(&done));
        readers.push(tokio::spawn(async move {
            let mut reads = 0u64;
            while !done.load(Ordering::Relaxed) {
                let id = (reads * 7 + r) % 40 + 1;
                store.get_status(id).await.unwrap().expect("registered");
                store.get_claim(id).await.unwrap().expect("registered");
                reads += 1;
                tokio::task::yield_now().await;
            }
            reads
        }));
    }
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let store = Arc::clone(&store);
        writers.push(tokio::spawn(async move {
            for i in 0..40u64 {
                let id = (w * 13 + i * 3) % 40 + 1;
                let attached = store
                    .attach_response(NewResponse {
                        claim_id: id,
                        response: OfficialResponse::default(),
                        request_id: String::new(),
                        actor: "desk".into(),
                    })
                    .await
                    .unwrap();
                let status = store.get_status(id).await.unwrap().unwrap();
                let total = status.status.evidence.map_or(0, |e| e.total);
                assert!(
                    total >= attached.response.id,
                    "claims/{id}: acknowledged response {} but the status counts {total}",
                    attached.response.id
                );
                assert!(status.latest_response.unwrap().id >= attached.response.id);
                let view = store.get_claim(id).await.unwrap().unwrap();
                let total = view.claim.evidence.map_or(0, |e| e.total);
                assert!(total >= attached.response.id, "claims/{id}: {total}");
                assert!(view.latest_response.unwrap().id >= attached.response.id);
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    done.store(true, Ordering::Relaxed);
    for reader in readers {
        assert!(reader.await.unwrap() > 0);
    }
    for id in 1..=40 {
        assert_eq!(
            store.get_status(id).await.unwrap(),
            store.read_status(id).unwrap()
        );
        assert_eq!(
            store.get_claim(id).await.unwrap(),
            store.read_claim(id).unwrap()
        );
    }
}

#[tokio::test]
async fn claim_ids_are_dense_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let sha = "cd".repeat(32);
    {
        let store = open(dir.path()).unwrap();
        for (n, text) in ["a", "b"].into_iter().enumerate() {
            let got = store.register_claim(on_image(&sha, text)).await.unwrap();
            assert_eq!(got.claim.claim.id, n as u64 + 1);
        }
        store.close().await.unwrap();
    }
    let store = reopen(dir.path()).await;
    let third = store.register_claim(on_image(&sha, "c")).await.unwrap();
    assert_eq!(third.claim.claim.id, 3);
}

#[tokio::test]
async fn same_image_lists_only_earlier_claims_on_that_image_newest_first_capped() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    let (a, b) = ("0a".repeat(32), "0b".repeat(32));
    let first = store.register_claim(on_image(&a, "a0")).await.unwrap();
    assert!(first.same_image.is_empty());
    store.register_claim(on_image(&b, "b0")).await.unwrap();
    for i in 1..=MAX_SAME_IMAGE_CLAIMS + 2 {
        store
            .register_claim(on_image(&a, &format!("a{i}")))
            .await
            .unwrap();
    }
    let last = store.register_claim(on_image(&a, "last")).await.unwrap();
    assert_eq!(last.same_image.len(), MAX_SAME_IMAGE_CLAIMS);
    let newest = format!("a{}", MAX_SAME_IMAGE_CLAIMS + 2);
    assert_eq!(texts(&last.same_image)[0], newest);
    assert!(texts(&last.same_image).iter().all(|t| t.starts_with('a')));
    // Looking from an older claim sees only what came before it.
    let again = store
        .same_image(&first.claim.claim, 31, true, None)
        .await
        .unwrap();
    assert!(again.is_empty());
}

/// Adds `n` far-away hashes (ids above any claim) to `claims_by_pdq`, so
/// that the background index build takes a while after open.
async fn pad_pdq_tree(dir: &Path, n: u64) {
    let db = open_when_released(dir).await;
    let tree = db.open_tree(schema::CLAIMS_BY_PDQ).unwrap();
    let mut rng = crate::cli::generate::Rng::new(7, 0);
    let mut batch = sled::Batch::default();
    for id in 1_000_000..1_000_000 + n {
        let mut value = [90u8; 33];
        for chunk in value[..32].chunks_mut(8) {
            chunk.copy_from_slice(&rng.next().to_le_bytes());
        }
        batch.insert(&be(id), &value[..]);
    }
    tree.apply_batch(batch).unwrap();
    db.flush().unwrap();
}

#[tokio::test]
async fn searches_and_registrations_right_after_open_wait_for_the_background_index() {
    let dir = tempfile::tempdir().unwrap();
    let base = "f0".repeat(32);
    let near = format!("f1{}", "f0".repeat(31));
    let with_pdq = |text: &str, pdq: &str| {
        let mut cmd = on_image("", text);
        let image = cmd.claim.image.as_mut().unwrap();
        image.pdq = pdq.to_string();
        image.pdq_quality = 90;
        image.pdq_quality_known = true;
        cmd
    };
    {
        let store = open(dir.path()).unwrap();
        store.register_claim(with_pdq("base", &base)).await.unwrap();
        store.close().await.unwrap();
    }
    pad_pdq_tree(dir.path(), 60_000).await;
    let query = SimilarQuery {
        pdq: Pdq::from_hex(&near),
        max_distance: 31,
        limit: 10,
        ..Default::default()
    };
    // Dropped while its build runs: the directory is released.
    drop(reopen(dir.path()).await);
    let store = reopen(dir.path()).await;
    // Reads that need no index are served while the build runs.
    assert!(store.get_claim(1).await.unwrap().is_some());
    let found = store.find_similar(query.clone()).await.unwrap();
    assert_eq!(texts(&found), ["base"], "the search waited for the build");
    drop(store);
    let store = reopen(dir.path()).await;
    // A registration right after open: its hash is inserted after the
    // build, not into an index the build then replaces.
    let second = store
        .register_claim(with_pdq("second", &base))
        .await
        .unwrap();
    assert_eq!(texts(&second.same_image), ["base"]);
    store.pdq_index_ready().await.unwrap();
    let found = store.find_similar(query).await.unwrap();
    assert_eq!(
        texts(&found),
        ["second", "base"],
        "same distance: newest first"
    );
}

#[tokio::test]
async fn the_pdq_index_is_rebuilt_from_disk_and_matches_near_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let base = "f0".repeat(32);
    // One bit away from `base`, and a low-quality hash far from both.
    let near = format!("f1{}", "f0".repeat(31));
    let with_pdq = |text: &str, pdq: &str, quality: i32| {
        let mut cmd = on_image("", text);
        let image = cmd.claim.image.as_mut().unwrap();
        image.pdq = pdq.to_string();
        image.pdq_quality = quality;
        image.pdq_quality_known = true;
        cmd
    };
    {
        let store = open(dir.path()).unwrap();
        store
            .register_claim(with_pdq("base", &base, 90))
            .await
            .unwrap();
        store
            .register_claim(with_pdq("junk", &"00".repeat(32), 10))
            .await
            .unwrap();
        store.close().await.unwrap();
    }
    let store = reopen(dir.path()).await;
    let query = |pdq: &str, include_low_quality| SimilarQuery {
        pdq: Pdq::from_hex(pdq),
        max_distance: 31,
        include_low_quality,
        limit: 10,
        ..Default::default()
    };
    let found = store.find_similar(query(&near, false)).await.unwrap();
    assert_eq!(texts(&found), ["base"]);
    assert_eq!(found[0].distance, 1);
    let junk = store
        .find_similar(query(&"00".repeat(32), false))
        .await
        .unwrap();
    assert!(
        junk.is_empty(),
        "low quality hashes are not matched unless asked"
    );
    let junk = store
        .find_similar(query(&"00".repeat(32), true))
        .await
        .unwrap();
    assert_eq!(texts(&junk), ["junk"]);
    // A registration after the restart sees the rebuilt index.
    let again = store
        .register_claim(with_pdq("again", &near, 80))
        .await
        .unwrap();
    assert_eq!(texts(&again.same_image), ["base"]);
    // The same answers from the blocking pool, where large indexes are
    // searched (small ones are searched on the calling task).
    let mut store = store;
    store.search_off_task();
    let found = store.find_similar(query(&base, false)).await.unwrap();
    assert_eq!(texts(&found), ["base", "again"]);
    assert_eq!((found[0].distance, found[1].distance), (0, 1));
    let junk = store
        .find_similar(query(&"00".repeat(32), true))
        .await
        .unwrap();
    assert_eq!(texts(&junk), ["junk"]);
}

#[tokio::test]
async fn has_keys_turns_true_at_the_first_key_and_stays_so() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    assert!(!store.has_keys().await.unwrap(), "a new directory has none");
    let key = |id: u64, name: &str| ApiKey {
        id,
        name: name.into(),
        role: crate::domain::access::Role::Admin as i32,
        ..Default::default()
    };
    store.create_key(key(1, "ops")).await.unwrap();
    assert!(
        store.has_keys().await.unwrap(),
        "at once, without a restart"
    );
    let refused = store.create_key(key(2, "OPS")).await.unwrap_err();
    assert!(matches!(refused, Error::AlreadyExists(_)), "{refused:?}");
    store.revoke_key("ops", "test").await.unwrap();
    assert!(store.has_keys().await.unwrap(), "revoked keys still count");
    drop(store);
    let store = reopen(dir.path()).await;
    assert!(
        store.has_keys().await.unwrap(),
        "read from the tree at open"
    );
}

#[tokio::test]
async fn page_token_key_is_made_once_per_directory_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).unwrap();
    let key = store.page_token_key();
    assert_ne!(key, [0; PAGE_TOKEN_KEY_LEN]);
    drop(store);
    let store = reopen(dir.path()).await;
    assert_eq!(store.page_token_key(), key, "loaded at open");
    let other = tempfile::tempdir().unwrap();
    let other = open(other.path()).unwrap();
    assert_ne!(
        other.page_token_key(),
        key,
        "another directory, another key"
    );
}
