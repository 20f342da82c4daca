//! Corrupt data on disk (issue 21, item 7): a read that finds it answers
//! DATA_LOSS naming the record (never its content), logs it at error and
//! counts it; the other claims are served; `photoclaim check` names it and
//! exits 8; a backup over it is DATA_LOSS.

mod common;

use std::path::Path;

use common::{attach, cli_exit, health, new_claim, sample_response, Process};
use photoclaim::domain::Error;
use photoclaim::pb;
use photoclaim::store::{OpenError, SledStore, Store};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus::{NotServing, Serving};

/// Bytes that do not decode as a protobuf message: a field with wire type 7.
const GARBAGE: &[u8] = &[0xff, 0xff, 0xff, 0xff];

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn pair(a: u64, b: u64) -> Vec<u8> {
    [a.to_be_bytes(), b.to_be_bytes()].concat()
}

/// Three claims (a response on the second), written by the real server and
/// stopped; then the record of claims/2 and its first event are replaced by
/// bytes that do not decode, directly in sled.
async fn corrupt_dir(dir: &Path) {
    {
        let server = Process::spawn(dir);
        let mut client = common::connect(&server.addr).await;
        new_claim(&mut client, "first claim").await;
        let second = new_claim(&mut client, "SECRET-TEXT of the second claim").await;
        new_claim(&mut client, "third claim").await;
        attach(
            &mut client,
            &second.name,
            sample_response(pb::Stance::Refutes),
            "r1",
        )
        .await;
        let (exit, log) = server.terminate();
        assert!(exit.success(), "{log}");
    }
    let db = sled::open(dir).unwrap();
    db.open_tree("claims")
        .unwrap()
        .insert(2u64.to_be_bytes(), GARBAGE)
        .unwrap();
    db.open_tree("events")
        .unwrap()
        .insert(pair(2, 1), GARBAGE)
        .unwrap();
    db.flush().unwrap();
}

/// The CLI's error line: DATA_LOSS naming the corrupt event of claims/2.
fn data_loss_line(text: &str) -> bool {
    text.lines().any(|l| {
        l.starts_with("error: DATA_LOSS: ")
            && l.ends_with(": claims/2/events/1: stored data is corrupt; run `photoclaim check` and restore from a backup")
    })
}

#[tokio::test]
async fn corrupt_records_are_data_loss_naming_them_and_the_rest_is_served() {
    let dir = tempfile::tempdir().unwrap();
    corrupt_dir(dir.path()).await;

    let server = Process::spawn(dir.path());
    let mut client = common::connect(&server.addr).await;
    // Start-up does not read every record: the server serves until a read
    // finds the corruption; then health's integrity entry (and "") say so.
    let integrity = "photoclaim.storage.integrity";
    assert_eq!(health(&server.addr, integrity).await, Serving);
    let err = client
        .get_claim(pb::GetClaimRequest {
            name: "claims/2".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DataLoss, "{err:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while health(&server.addr, integrity).await == Serving {
        assert!(
            std::time::Instant::now() < deadline,
            "integrity still SERVING"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(health(&server.addr, "").await, NotServing);
    assert_eq!(
        health(&server.addr, "photoclaim.storage.writes").await,
        Serving,
        "writes are still taken"
    );
    assert!(err.message().starts_with("claims/2: "), "{err:?}");
    assert!(!err.message().contains("SECRET"), "{err:?}");
    let err = client
        .list_claim_events(pb::ListClaimEventsRequest {
            claim: "claims/2".into(),
            page_size: 100,
            page_token: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DataLoss, "{err:?}");
    assert!(err.message().starts_with("claims/2/events/1: "), "{err:?}");
    for name in ["claims/1", "claims/3"] {
        let claim = client
            .get_claim(pb::GetClaimRequest { name: name.into() })
            .await
            .expect("an intact claim is served")
            .into_inner();
        assert_eq!(claim.name, name);
        assert_eq!(common::all_events(&mut client, name).await.len(), 1);
    }
    // Through the server, a backup is DATA_LOSS too, and writes no file.
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("b.backup");
    let url = format!("http://{}", server.addr);
    let (code, text) = tokio::task::spawn_blocking(move || {
        cli_exit(&["backup", "--server", &url, "--out", s(&file)])
    })
    .await
    .unwrap();
    assert_ne!(code, 0, "{text}");
    assert!(data_loss_line(&text), "{text}");
    assert!(!out.path().join("b.backup").exists());
    let (exit, log) = server.terminate();
    assert!(exit.success(), "{log}");
    assert!(
        log.lines().any(|l| l.contains("ERROR")
            && l.contains("stored data is corrupt")
            && l.contains("claims/2")),
        "{log}"
    );
    assert!(!log.contains("SECRET"), "{log}");

    // Offline: check names the claim and exits 8; a backup is DATA_LOSS.
    let (code, text) = cli_exit(&["check", "--data-dir", s(dir.path())]);
    assert_eq!(code, 8, "{text}");
    assert!(
        text.contains("claims/2: claim record does not decode"),
        "{text}"
    );
    assert!(!text.contains("SECRET"), "{text}");
    let file = out.path().join("c.backup");
    let (code, text) = cli_exit(&["backup", "--data-dir", s(dir.path()), "--out", s(&file)]);
    assert_ne!(code, 0, "{text}");
    assert!(data_loss_line(&text), "{text}");
    assert!(!file.exists());
}

#[tokio::test]
async fn corrupt_reads_in_the_store_are_data_loss_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    corrupt_dir(dir.path()).await;
    // sled lets go of its lock a moment after the last handle is dropped.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let store = loop {
        match SledStore::open(dir.path()) {
            Ok(store) => break store,
            Err(OpenError::Locked(_)) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await
            }
            Err(e) => panic!("{e}"),
        }
    };
    let counted = || {
        let text = photoclaim::metrics::global().render(&Default::default());
        text.lines()
            .find_map(|l| l.strip_prefix("photoclaim_storage_corruption_total "))
            .map(|n| n.trim().parse::<u64>().unwrap())
            .expect(&text)
    };
    let before = counted();
    let data_loss = |e: Error, name: &str| match e {
        Error::DataLoss(m) => assert!(m.starts_with(&format!("{name}: ")), "{m}"),
        other => panic!("{other:?}"),
    };
    data_loss(store.get_claim(2).await.unwrap_err(), "claims/2");
    data_loss(store.get_status(2).await.unwrap_err(), "claims/2");
    data_loss(
        store.list_events(2, None, 10).await.unwrap_err(),
        "claims/2/events/1",
    );
    assert!(counted() >= before + 3, "counted");
    assert!(store.get_claim(1).await.unwrap().is_some());
    assert!(store.get_claim(3).await.unwrap().is_some());
}
