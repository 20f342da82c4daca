//! Online backup and restore with the real binary: a backup taken through
//! `AdminService.Backup` while writers keep writing restores to exactly the
//! snapshot it recorded; damaged or misdirected restores change nothing;
//! `compact` copies a stopped directory exactly.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use common::{
    all_events, all_responses, attach, cli, rate_false, register, sample_claim, sample_response,
    Process,
};
use photoclaim::pb;

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The number after `word` in `text` ("log position 17" -> 17).
fn number_after(text: &str, word: &str) -> u64 {
    let rest = &text[text
        .find(word)
        .unwrap_or_else(|| panic!("{word:?} in {text}"))
        + word.len()..];
    rest.split_whitespace()
        .next()
        .unwrap()
        .trim_end_matches(',')
        .parse()
        .unwrap()
}

/// Servers on the data directories `a` and `b` serve the same claims,
/// responses and events.
/// `photoclaim backup --server URL --out FILE`, off the runtime.
async fn backup_through(url: &str, file: &Path) -> (bool, String) {
    let (url, file) = (url.to_string(), file.to_path_buf());
    tokio::task::spawn_blocking(move || cli(&["backup", "--server", &url, "--out", s(&file)]))
        .await
        .unwrap()
}

async fn assert_served_alike(a: &Path, b: &Path) {
    let a = Process::spawn(a);
    let b = Process::spawn(b);
    let mut ca = common::connect(&a.addr).await;
    let mut cb = common::connect(&b.addr).await;
    assert_eq!(
        common::snapshot(&mut ca).await,
        common::snapshot(&mut cb).await
    );
}

/// Registers, attaches and sets verdicts on its own and existing claims
/// until `stop`, counting writes.
async fn writer(addr: String, w: u64, stop: Arc<AtomicBool>, writes: Arc<AtomicU64>) {
    let mut client = common::connect(&addr).await;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let mut claim = sample_claim(&format!("writer {w} claim {n}"));
        claim.image.as_mut().unwrap().sha256 = common::fake_sha256(w * 1_000_000 + n);
        let made = register(&mut client, claim, &format!("w{w}-{n}"))
            .await
            .claim
            .unwrap();
        attach(
            &mut client,
            &made.name,
            sample_response(pb::Stance::Refutes),
            &format!("w{w}-{n}-a"),
        )
        .await;
        // Also change an older claim, so claims change after the snapshot.
        let older = format!("claims/{}", 1 + (n * 7 + w) % 20);
        attach(
            &mut client,
            &older,
            sample_response(pb::Stance::Supports),
            "",
        )
        .await;
        if n.is_multiple_of(3) {
            rate_false(&mut client, &older, &format!("writer {w} round {n}")).await;
        }
        writes.fetch_add(3, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_during_concurrent_writes_restores_its_snapshot_exactly() {
    let source_dir = tempfile::tempdir().unwrap();
    let server = Process::spawn(source_dir.path());
    let url = format!("http://{}", server.addr);
    let mut client = common::connect(&server.addr).await;
    for i in 0..20 {
        let claim = register(
            &mut client,
            sample_claim(&format!("seed {i}")),
            &format!("seed-{i}"),
        )
        .await
        .claim
        .unwrap();
        attach(
            &mut client,
            &claim.name,
            sample_response(pb::Stance::AddsContext),
            "",
        )
        .await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..4)
        .map(|w| tokio::spawn(writer(server.addr.clone(), w, stop.clone(), writes.clone())))
        .collect();
    while writes.load(Ordering::Relaxed) < 60 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("photoclaim.backup");
    let (ok, text) = backup_through(&url, &file).await;
    assert!(ok, "{text}");
    let at_backup = writes.load(Ordering::Relaxed);
    // Writes go on after the backup: none of them may appear in it.
    while writes.load(Ordering::Relaxed) < at_backup + 30 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let position = number_after(&text, "log position");
    let backed_up = number_after(&text, "backed up");
    assert!(position > 40, "{text}");

    let restored_dir = out.path().join("restored");
    let (ok, restored_text) = cli(&["restore", "--in", s(&file), "--data-dir", s(&restored_dir)]);
    assert!(ok, "{restored_text}");
    assert!(
        restored_text.contains(&format!("restored {backed_up} claims")),
        "{restored_text}"
    );
    let (ok, checked) = cli(&["check", "--data-dir", s(&restored_dir)]);
    assert!(ok, "{checked}");
    assert_eq!(number_after(&checked, "log position"), position);

    let restored = Process::spawn(&restored_dir);
    let mut copy = common::connect(&restored.addr).await;
    let cursor = |e: &pb::ClaimEvent| e.cursor.parse::<u64>().unwrap();
    let last_source = common::all_claims(&mut client, pb::VerificationState::Unspecified).await;
    let mut present = 0;
    let mut changed_after = 0;
    for claim in &last_source {
        let events = all_events(&mut client, &claim.name).await;
        let before: Vec<_> = events
            .iter()
            .filter(|e| cursor(e) <= position)
            .cloned()
            .collect();
        let got = copy
            .get_claim(pb::GetClaimRequest {
                name: claim.name.clone(),
            })
            .await;
        if before.is_empty() {
            let err = got.expect_err("a claim registered after the snapshot must not be restored");
            assert_eq!(err.code(), tonic::Code::NotFound, "{}", claim.name);
            continue;
        }
        present += 1;
        let got = got.expect("restored claim").into_inner();
        assert_eq!(
            all_events(&mut copy, &claim.name).await,
            before,
            "{}",
            claim.name
        );
        let responses = all_responses(&mut client, &claim.name).await;
        let status = got.verification_status.clone().unwrap();
        let count = status.official_response_count as usize;
        assert_eq!(
            all_responses(&mut copy, &claim.name).await,
            responses[..count],
            "{}",
            claim.name
        );
        let last = before.last().unwrap();
        assert_eq!(status.chain_head, last.hash, "{}", claim.name);
        assert_eq!(status.state, last.state, "{}", claim.name);
        assert_eq!(
            got.etag,
            format!(
                "{}-{}",
                claim.name.trim_start_matches("claims/"),
                last.sequence
            )
        );
        if before.len() == events.len() {
            assert_eq!(&got, claim, "an unchanged claim is restored exactly");
        } else {
            changed_after += 1;
            assert_eq!(
                (&got.claim_text, &got.image, &got.create_time),
                (&claim.claim_text, &claim.image, &claim.create_time)
            );
        }
    }
    assert_eq!(present, backed_up);
    assert!(
        present < last_source.len() as u64,
        "claims registered after the snapshot exist"
    );
    assert!(
        changed_after > 0,
        "some restored claims changed after the snapshot"
    );

    // Retries keep their meaning: a request before the snapshot replays,
    // one after it is new on the restored server.
    let replay = register(&mut copy, sample_claim("seed 3"), "seed-3").await;
    assert!(
        replay.replayed,
        "a request_id from before the snapshot replays"
    );
    assert_eq!(replay.claim.unwrap().name, "claims/4");

    drop(restored);
    drop(server);
}

#[tokio::test]
async fn damaged_or_misdirected_restores_change_nothing() {
    let source = tempfile::tempdir().unwrap();
    {
        let server = Process::spawn(source.path());
        let mut client = common::connect(&server.addr).await;
        let claim = common::new_claim(&mut client, "UN peacekeepers in Kazakhstan").await;
        attach(
            &mut client,
            &claim.name,
            sample_response(pb::Stance::Refutes),
            "r",
        )
        .await;
        rate_false(&mut client, &claim.name, "KAZBAT").await;
        let (exit, log) = server.terminate();
        assert!(exit.success(), "{log}");
    }
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("b.backup");
    // From a stopped data directory, no server needed.
    let (ok, text) = cli(&["backup", "--data-dir", s(source.path()), "--out", s(&file)]);
    assert!(ok, "{text}");
    assert!(
        text.contains("backed up 1 claims, 1 responses, 3 events"),
        "{text}"
    );
    let bytes = std::fs::read(&file).unwrap();

    let target = out.path().join("target");
    let damaged: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated", bytes[..bytes.len() - 10].to_vec(), "truncated"),
        (
            "flipped",
            {
                let mut b = bytes.clone();
                let at = b.len() / 2;
                b[at] ^= 0x20;
                b
            },
            "",
        ),
        (
            "not a backup",
            b"hello world, not a backup".to_vec(),
            "not a photoclaim backup",
        ),
        ("appended", [&bytes[..], b"x"].concat(), "after the trailer"),
    ];
    for (what, content, expect) in damaged {
        let bad = out.path().join("bad.backup");
        std::fs::write(&bad, content).unwrap();
        let (ok, text) = cli(&["restore", "--in", s(&bad), "--data-dir", s(&target)]);
        assert!(!ok, "{what}: {text}");
        assert!(text.contains(expect), "{what}: {text}");
        assert!(!target.exists(), "{what}: nothing is left behind");
        let leftovers: Vec<_> = std::fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.contains("restoring"))
            .collect();
        assert!(leftovers.is_empty(), "{what}: {leftovers:?}");
    }
    // Never over existing data.
    let (ok, text) = cli(&["restore", "--in", s(&file), "--data-dir", s(source.path())]);
    assert!(!ok);
    assert!(text.contains("is not empty"), "{text}");
    // Into an empty directory: fine, and equal to the source.
    std::fs::create_dir(&target).unwrap();
    let (ok, text) = cli(&["restore", "--in", s(&file), "--data-dir", s(&target)]);
    assert!(ok, "{text}");
    assert_served_alike(source.path(), &target).await;
}

#[tokio::test]
async fn a_backup_refuses_data_whose_audit_trail_is_broken() {
    let source = tempfile::tempdir().unwrap();
    {
        let server = Process::spawn(source.path());
        let mut client = common::connect(&server.addr).await;
        common::new_claim(&mut client, "UN peacekeepers in Kazakhstan").await;
        let (exit, log) = server.terminate();
        assert!(exit.success(), "{log}");
    }
    {
        use prost::Message;
        let db = sled::open(source.path()).unwrap();
        let claims = db.open_tree("claims").unwrap();
        let key = 1u64.to_be_bytes();
        let mut claim =
            photoclaim::domain::Claim::decode(claims.get(key).unwrap().unwrap().as_ref()).unwrap();
        claim.claim_text = "Russian troops".into();
        claims.insert(key, claim.encode_to_vec()).unwrap();
        db.flush().unwrap();
    }
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("b.backup");
    let server = Process::spawn(source.path());
    let (ok, text) = cli(&[
        "backup",
        "--server",
        &format!("http://{}", server.addr),
        "--out",
        s(&file),
    ]);
    assert!(!ok, "{text}");
    assert!(text.contains("claims/1: audit trail broken"), "{text}");
    assert!(!file.exists());
}

/// The part of a `check` line that describes the data, not the directory
/// or its size on disk: from "format version" to the logical size.
fn checked_content(line: &str) -> &str {
    let start = line.find("format version").expect(line);
    let end = line.find(" bytes of keys and values").expect(line);
    &line[start..end]
}

#[tokio::test]
async fn compact_copies_a_stopped_directory_exactly_and_refuses_what_it_cannot_do() {
    let source = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("compacted");
    let leftovers = || -> Vec<String> {
        std::fs::read_dir(out.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.contains("compacting"))
            .collect()
    };
    let compact = || {
        let (from, to) = (s(source.path()), s(&target));
        cli(&["compact", "--data-dir", from, "--out", to])
    };
    let server = Process::spawn(source.path());
    let mut client = common::connect(&server.addr).await;
    for i in 0..12 {
        let claim = common::new_claim(&mut client, &format!("claim {i}")).await;
        let stance = pb::Stance::Refutes;
        attach(
            &mut client,
            &claim.name,
            sample_response(stance),
            &format!("r{i}"),
        )
        .await;
        if i % 2 == 0 {
            rate_false(&mut client, &claim.name, "KAZBAT").await;
        }
    }
    // While the server holds the directory: refused, nothing created.
    let (ok, text) = compact();
    assert!(!ok, "{text}");
    assert!(text.contains("in use"), "{text}");
    assert!(!target.exists() && leftovers().is_empty(), "{text}");
    let (exit, log) = server.terminate();
    assert!(exit.success(), "{log}");
    let (ok, before) = cli(&["check", "--data-dir", s(source.path())]);
    assert!(ok, "{before}");
    // Never over existing data, never from what is not a data directory.
    let (ok, text) = cli(&[
        "compact",
        "--data-dir",
        s(source.path()),
        "--out",
        s(source.path()),
    ]);
    assert!(!ok && text.contains("is not empty"), "{text}");
    let empty = out.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let (ok, text) = cli(&["compact", "--data-dir", s(&empty), "--out", s(&target)]);
    assert!(
        !ok && text.contains("not a photoclaim data directory"),
        "{text}"
    );
    assert!(!target.exists() && leftovers().is_empty(), "{text}");
    // The copy: checked, the same data, the source only read.
    let (ok, text) = compact();
    assert!(ok, "{text}");
    assert!(text.contains("check ok (12 claims"), "{text}");
    assert!(leftovers().is_empty(), "{text}");
    let (ok, after) = cli(&["check", "--data-dir", s(source.path())]);
    assert!(ok, "{after}");
    let (ok, copy) = cli(&["check", "--data-dir", s(&target)]);
    assert!(ok, "{copy}");
    assert_eq!(checked_content(&before), checked_content(&after));
    assert_eq!(checked_content(&before), checked_content(&copy));
    assert_eq!(
        number_after(&text, "values,"),
        number_after(&copy, "values,"),
        "reports the copy's size on disk: {text} / {copy}"
    );
    // Both serve the same claims, responses and events.
    assert_served_alike(source.path(), &target).await;
}

#[tokio::test]
async fn imported_fact_checks_survive_a_backup_and_restore_and_are_searchable() {
    let source_dir = tempfile::tempdir().unwrap();
    let server = Process::spawn(source_dir.path());
    let url = format!("http://{}", server.addr);
    let mut client = common::connect(&server.addr).await;
    let imported = client
        .import_claim_reviews(pb::ImportClaimReviewsRequest {
            document: include_str!("data/claimreview/datafeed.json").into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(imported.created, 2, "{imported:?}");
    let before: Vec<pb::ExternalReview> = client
        .list_external_reviews(pb::ListExternalReviewsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .external_reviews;
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("photoclaim.backup");
    let (ok, text) = backup_through(&url, &file).await;
    assert!(ok, "{text}");
    drop(server);
    let restored_dir = out.path().join("restored");
    let (ok, text) = cli(&["restore", "--in", s(&file), "--data-dir", s(&restored_dir)]);
    assert!(ok, "{text}");
    // The reviews, their URL index and the review log check clean.
    let (ok, text) = cli(&["check", "--data-dir", s(&restored_dir)]);
    assert!(ok && text.contains("ok "), "{text}");
    let restored = Process::spawn(&restored_dir);
    let mut client = common::connect(&restored.addr).await;
    let after = client
        .list_external_reviews(pb::ListExternalReviewsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .external_reviews;
    assert_eq!(after, before);
    // The restored directory has no index: it is built at start, reviews included.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let reply = client
            .search_claims(pb::SearchClaimsRequest {
                query: "peacekeepers".into(),
                ..Default::default()
            })
            .await;
        if let Ok(reply) = reply {
            if reply.get_ref().total_size > 0 {
                assert!(matches!(
                    reply.get_ref().results[0].result,
                    Some(pb::search_result::Result::ExternalReview(_))
                ));
                break;
            }
        }
        assert!(std::time::Instant::now() < deadline, "never searchable");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // A re-import into the restored directory changes nothing: the URL index came back.
    let again = client
        .import_claim_reviews(pb::ImportClaimReviewsRequest {
            document: include_str!("data/claimreview/datafeed.json").into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((again.created, again.unchanged), (0, 2), "{again:?}");
}
