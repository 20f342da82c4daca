//! Replicas over one PostgreSQL database: 2–3 real `photoclaim serve`
//! processes on 127.0.0.1:0 sharing a database of the test's own (see
//! `common/pg.rs`; skipped without `PHOTOCLAIM_TEST_DATABASE_URL`, a
//! failure with `PHOTOCLAIM_REQUIRE_POSTGRES=1` as in `.ci/run`).
//!
//! - A write acknowledged by one replica is read at once on the others:
//!   GetClaim, GetVerificationStatus, ListClaims, ListClaimEvents,
//!   FindSimilarClaims and a registration's same-image claims.
//! - WatchClaimEvents on any replica streams every event in log order,
//!   whichever replica wrote it, and a cursor from one resumes on another.
//! - Writes from several replicas at once keep ids and the log gapless.
//! - kill -9 of a replica loses no acknowledged write.
//! - The database down at start: the replica retries until it is up; the
//!   database restarted under load: calls answer UNAVAILABLE and health
//!   says NOT_SERVING meanwhile, every acknowledged write is kept, and the
//!   replicas reconnect alone (SERVING again).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::pg::{fresh_database, TestDatabase};
use common::*;
use photoclaim::pb;
use tokio_stream::StreamExt;
use tonic::Code;

/// `n` replicas over a new database, or `None` (skipped).
async fn replicas(n: usize) -> Option<(TestDatabase, Vec<Process>, Vec<Client>)> {
    replicas_with(n, &[]).await
}

/// Replicas that never hear of each other's writes in the background: no
/// notifications, and a look at the log every ten minutes. Whatever they
/// answer about another replica's write, they learned when asked.
const DEAF: [&str; 2] = ["--database-notify=false", "--database-poll-ms=600000"];

/// [`replicas`] with more `serve` flags.
async fn replicas_with(
    n: usize,
    flags: &[&str],
) -> Option<(TestDatabase, Vec<Process>, Vec<Client>)> {
    let db = fresh_database()?;
    let mut processes = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..n {
        let process = Process::spawn_on_database(&db.url, flags);
        clients.push(connect(&process.addr).await);
        processes.push(process);
    }
    Some((db, processes, clients))
}

fn pictured(text: &str, sha_seed: u64, pdq: &str) -> pb::Claim {
    let mut claim = sample_claim(text);
    let image = claim.image.as_mut().unwrap();
    image.sha256 = fake_sha256(sha_seed);
    image.pdq = pdq.into();
    claim
}

const PDQ_A: &str = "d8f8f0cee0f4a84f0637022a078f67f0b36e2ed596621e1d33e6339c4e9c9b22";
/// PDQ_A with its first 4 bits flipped: a near duplicate at distance 4.
const PDQ_A_NEAR: &str = "28f8f0cee0f4a84f0637022a078f67f0b36e2ed596621e1d33e6339c4e9c9b22";

async fn events_of(client: &mut Client, claim: &str) -> Vec<(String, i64)> {
    let events = all_events(client, claim).await;
    events.into_iter().map(|e| (e.claim, e.sequence)).collect()
}

async fn list_names(client: &mut Client) -> Vec<String> {
    let claims = all_claims(client, pb::VerificationState::Unspecified).await;
    claims.into_iter().map(|c| c.name).collect()
}

async fn similar(client: &mut Client, pdq: &str) -> Vec<String> {
    client
        .find_similar_claims(pb::FindSimilarClaimsRequest {
            pdq: pdq.into(),
            max_distance: Some(8),
            ..Default::default()
        })
        .await
        .expect("FindSimilarClaims")
        .into_inner()
        .matches
        .into_iter()
        .filter_map(|m| m.claim.map(|c| c.name))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_one_replica_is_read_at_once_on_the_others() {
    let Some((_db, _processes, mut clients)) = replicas_with(3, &DEAF).await else {
        return;
    };
    for round in 0..5u64 {
        let (a, b, c) = (
            round as usize % 3,
            (round as usize + 1) % 3,
            (round as usize + 2) % 3,
        );
        // Registered through A ...
        let pdq = if round % 2 == 0 { PDQ_A } else { PDQ_A_NEAR };
        let registered = register(
            &mut clients[a],
            pictured(&format!("round {round}"), 100 + round, pdq),
            "",
        )
        .await;
        let claim = registered.claim.unwrap();
        // ... lists the earlier rounds' claims (through other replicas) as same image ...
        assert_eq!(
            registered.same_image_claims.len() as u64,
            round,
            "round {round}: every earlier claim on a near-identical image, from any replica"
        );
        // ... and is at once visible through B and C.
        let got = clients[b]
            .get_claim(pb::GetClaimRequest {
                name: claim.name.clone(),
            })
            .await
            .expect("GetClaim on another replica")
            .into_inner();
        assert_eq!(got.claim_text, claim.claim_text);
        assert!(list_names(&mut clients[c]).await.contains(&claim.name));
        assert_eq!(events_of(&mut clients[c], &claim.name).await.len(), 1);
        let found = similar(&mut clients[c], pdq).await;
        assert_eq!(
            found.len() as u64,
            round + 1,
            "FindSimilarClaims on another replica: {found:?}"
        );
        assert!(found.contains(&claim.name));
        // A response through B, a verdict through C: read back through A.
        attach(
            &mut clients[b],
            &claim.name,
            sample_response(pb::Stance::Refutes),
            "",
        )
        .await;
        let seen = status(&mut clients[a], &claim.name).await;
        assert_eq!(
            seen.official_response_count, 1,
            "the response attached through another replica"
        );
        rate_false(&mut clients[c], &claim.name, "staged").await;
        let seen = status(&mut clients[a], &claim.name).await;
        assert_eq!(seen.state, pb::VerificationState::Resolved as i32);
        assert_eq!(seen.claim_rating, pb::ClaimRating::False as i32);
        let events = events_of(&mut clients[b], &claim.name).await;
        assert_eq!(
            events.iter().map(|e| e.1).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
    }
}

type Events = tonic::Streaming<pb::ClaimEvent>;

async fn watch_from(client: &mut Client, cursor: &str) -> Events {
    client
        .watch_claim_events(pb::WatchClaimEventsRequest {
            after_cursor: cursor.into(),
            ..Default::default()
        })
        .await
        .expect("watch accepted")
        .into_inner()
}

async fn take(stream: &mut Events, n: usize) -> Vec<pb::ClaimEvent> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(30), stream.next()).await {
            Ok(Some(Ok(event))) => out.push(event),
            other => panic!("after {} of {n} events: {other:?}", out.len()),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_on_any_replica_see_every_event_in_log_order_and_cursors_move_between_replicas() {
    let Some((_db, _processes, clients)) = replicas(3).await else {
        return;
    };
    watchers_follow_every_replica(clients).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_notifications_watchers_follow_by_polling() {
    let flags = ["--database-notify=false", "--database-poll-ms=100"];
    let Some((_db, _processes, clients)) = replicas_with(3, &flags).await else {
        return;
    };
    watchers_follow_every_replica(clients).await;
}

async fn watchers_follow_every_replica(mut clients: Vec<Client>) {
    let first = new_claim(&mut clients[0], "before the watch").await;
    // From the start, on B; the writes go through A and C.
    let mut on_b = watch_from(&mut clients[1], "").await;
    let mut written = vec![(first.name.clone(), 1)];
    for n in 0..12 {
        let writer = if n % 2 == 0 { 0 } else { 2 };
        let claim = new_claim(&mut clients[writer], &format!("claim {n}")).await;
        written.push((claim.name.clone(), 1));
        if n % 3 == 0 {
            attach(
                &mut clients[2 - writer],
                &claim.name,
                sample_response(pb::Stance::Supports),
                "",
            )
            .await;
            written.push((claim.name, 2));
        }
    }
    let seen = take(&mut on_b, written.len()).await;
    let order: Vec<(String, i64)> = seen.iter().map(|e| (e.claim.clone(), e.sequence)).collect();
    assert_eq!(
        order, written,
        "every event, in the order the writes were acknowledged"
    );
    // A cursor from B resumes on C, and on A, with the events after it.
    let cursor = &seen[5].cursor;
    for other in [2, 0] {
        let mut resumed = watch_from(&mut clients[other], cursor).await;
        let rest = take(&mut resumed, written.len() - 6).await;
        let rest: Vec<(String, i64)> = rest.iter().map(|e| (e.claim.clone(), e.sequence)).collect();
        assert_eq!(rest, written[6..].to_vec());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_through_every_replica_keep_ids_and_the_log_gapless() {
    let Some((_db, _processes, clients)) = replicas(3).await else {
        return;
    };
    let mut tasks = Vec::new();
    for (r, client) in clients.iter().enumerate() {
        for t in 0..4 {
            let mut client = client.clone();
            tasks.push(tokio::spawn(async move {
                let mut names = Vec::new();
                for n in 0..10 {
                    let claim = new_claim(&mut client, &format!("r{r} t{t} n{n}")).await;
                    attach(
                        &mut client,
                        &claim.name,
                        sample_response(pb::Stance::Supports),
                        "",
                    )
                    .await;
                    names.push(claim.name);
                }
                names
            }));
        }
    }
    let mut names = BTreeSet::new();
    for task in tasks {
        names.extend(task.await.unwrap());
    }
    let ids: BTreeSet<u64> = names
        .iter()
        .map(|n| n.trim_start_matches("claims/").parse().unwrap())
        .collect();
    assert_eq!(
        ids,
        (1..=120).collect::<BTreeSet<u64>>(),
        "claim ids dense from 1"
    );
    // The log replayed on one replica: 240 events, each claim's two in order.
    let mut client = clients[1].clone();
    let mut log = watch_from(&mut client, "").await;
    let events = take(&mut log, 240).await;
    let mut seen = BTreeSet::new();
    for event in &events {
        let first = (event.claim.clone(), 1);
        match event.sequence {
            1 => assert!(seen.insert(first), "{} registered twice", event.claim),
            2 => assert!(
                seen.contains(&first),
                "{}'s response before its registration",
                event.claim
            ),
            other => panic!("unexpected sequence {other}"),
        }
    }
    assert_eq!(seen.len(), 120);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_with_kill_9_loses_no_acknowledged_write() {
    let Some((_db, mut processes, mut clients)) = replicas(2).await else {
        return;
    };
    let victim = processes.remove(0);
    let mut writer = clients[0].clone();
    let load = tokio::spawn(async move {
        let mut acknowledged = Vec::new();
        for n in 0..10_000 {
            match writer
                .register_claim(pb::RegisterClaimRequest {
                    request_id: format!("kill9-{n}"),
                    claim: Some(sample_claim(&format!("under load {n}"))),
                    ..Default::default()
                })
                .await
            {
                Ok(reply) => acknowledged.push(reply.into_inner().claim.unwrap().name),
                Err(_) => break,
            }
        }
        acknowledged
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    victim.kill9();
    let acknowledged = load.await.unwrap();
    assert!(
        acknowledged.len() > 5,
        "the load ran before the kill: {}",
        acknowledged.len()
    );
    let listed = list_all(&mut clients[1]).await;
    for name in &acknowledged {
        assert!(
            listed.contains_key(name),
            "{name} was acknowledged, then lost"
        );
    }
}

/// Every claim's name and text.
async fn list_all(client: &mut Client) -> std::collections::BTreeMap<String, String> {
    all_claims(client, pb::VerificationState::Unspecified)
        .await
        .into_iter()
        .map(|c| (c.name, c.claim_text))
        .collect()
}

/// Whether the health of the replica at `addr` (service "") turns `status`
/// within 15 s.
async fn health_becomes(
    addr: &str,
    status: tonic_health::pb::health_check_response::ServingStatus,
) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if common::health(addr, "").await == status {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A PostgreSQL cluster of the test's own (`.ci/postgres.sh`), which it
/// may stop and start again.
struct Cluster {
    dir: tempfile::TempDir,
    url: String,
}

impl Cluster {
    fn script(&self, action: &str) {
        let status = Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/postgres.sh"))
            .args([action, &self.dir.path().join("pg").display().to_string()])
            .status()
            .expect("run .ci/postgres.sh");
        assert!(status.success(), ".ci/postgres.sh {action} failed");
    }

    fn start() -> Self {
        Self::start_with(&[])
    }

    /// With `envs` for `.ci/postgres.sh start` (`PG_TLS=1`: TLS on).
    fn start_with(envs: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // The cluster's owner (postgres, when the tests run as root) must
        // reach its directory.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let out = Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/postgres.sh"))
            .args(["start", &dir.path().join("pg").display().to_string()])
            .envs(envs.iter().copied())
            .output()
            .expect("run .ci/postgres.sh");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let url = text
            .lines()
            .find_map(|l| l.strip_prefix("export PHOTOCLAIM_TEST_DATABASE_URL="))
            .map(str::to_string)
            .expect("the cluster's URL");
        Cluster { dir, url }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.script("stop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_wait_for_the_database_and_ride_out_its_restart_under_load() {
    if common::pg::server().is_none() {
        return;
    }
    let cluster = Cluster::start();
    cluster.script("pause");
    // Down at start: the replica keeps trying, and serves once it is up.
    let url = cluster.url.clone();
    let starting = std::thread::spawn(move || Process::spawn_on_database(&url, &[]));
    std::thread::sleep(Duration::from_secs(2));
    cluster.script("resume");
    let replica = starting
        .join()
        .expect("the replica started once the database was up");
    assert!(
        replica
            .log
            .lock()
            .unwrap()
            .contains("cannot reach the database; retrying"),
        "the replica said it was waiting"
    );
    let second = Process::spawn_on_database(&cluster.url, &[]);
    let mut clients = [connect(&replica.addr).await, connect(&second.addr).await];
    // Writes through both replicas, with request ids, retried on UNAVAILABLE.
    let mut tasks = Vec::new();
    for (r, client) in clients.iter().enumerate() {
        let mut client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let mut unavailable = 0;
            let deadline = Instant::now() + Duration::from_secs(8);
            let mut n = 0;
            while Instant::now() < deadline {
                let request = pb::RegisterClaimRequest {
                    request_id: format!("restart-{r}-{n}"),
                    claim: Some(sample_claim(&format!("replica {r} write {n}"))),
                    ..Default::default()
                };
                match client.register_claim(request).await {
                    Ok(reply) => {
                        acknowledged.push(reply.into_inner().claim.unwrap().name);
                        n += 1;
                    }
                    Err(status) => {
                        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                        unavailable += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            (acknowledged, unavailable)
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.script("pause");
    use tonic_health::pb::health_check_response::ServingStatus;
    assert!(
        health_becomes(&replica.addr, ServingStatus::NotServing).await,
        "health says NOT_SERVING while the database is down"
    );
    cluster.script("resume");
    assert!(
        health_becomes(&replica.addr, ServingStatus::Serving).await,
        "health says SERVING again once the database is back"
    );
    let mut acknowledged = Vec::new();
    let mut unavailable = 0;
    for task in tasks {
        let (names, refused) = task.await.unwrap();
        acknowledged.extend(names);
        unavailable += refused;
    }
    assert!(
        unavailable > 0,
        "calls while the database was down answered UNAVAILABLE"
    );
    // Every acknowledged write is there, through either replica, and a
    // retried request id never made a second claim.
    let listed = list_all(&mut clients[1]).await;
    for name in &acknowledged {
        assert!(listed.contains_key(name), "{name} acknowledged, then lost");
    }
    let texts: BTreeSet<&String> = listed.values().collect();
    assert_eq!(
        texts.len(),
        listed.len(),
        "a retried request id made a second claim"
    );
    let fresh = new_claim(&mut clients[0], "after the restart").await;
    assert!(list_names(&mut clients[1]).await.contains(&fresh.name));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_reach_the_database_over_tls_verified_as_sslmode_says() {
    if common::pg::server().is_none() {
        return;
    }
    let cluster = Cluster::start_with(&[("PG_TLS", "1")]);
    let ca = cluster.dir.path().join("pg/tls/ca.pem");
    let verified = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        cluster.url,
        ca.display()
    );
    let replica = Process::spawn_on_database(&verified, &[]);
    let mut client = connect(&replica.addr).await;
    let claim = new_claim(&mut client, "over TLS").await;
    assert!(list_names(&mut client).await.contains(&claim.name));
    // The replica's connections are encrypted (seen from the server).
    let admin = cluster.url.clone();
    let encrypted: i64 = std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
        c.query_one(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE s.ssl AND a.application_name = 'photoclaim'",
            &[],
        )
        .unwrap()
        .get(0)
    })
    .join()
    .unwrap();
    assert!(
        encrypted >= 2,
        "the replica's connections use TLS: {encrypted}"
    );
    // verify-full against the system's trust store: the test CA is not in
    // it, so the replica never connects, and says why.
    let unverified = format!("{}?sslmode=verify-full", cluster.url);
    let mut child = Command::new(env!("CARGO_BIN_EXE_photoclaim"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &unverified,
        ])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    // Still trying, not listening: stop it and read why.
    assert!(child.try_wait().unwrap().is_none(), "it keeps trying");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!log.contains("photoclaim listening"), "{log}");
    assert!(log.contains("cannot reach the database; retrying"), "{log}");
    assert!(log.to_lowercase().contains("certificate"), "{log}");
}

/// SearchClaims on `client` until `word` finds `expected` records, or 20 s.
async fn searched(client: &mut Client, word: &str, expected: i64) -> pb::SearchClaimsResponse {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = client
            .search_claims(pb::SearchClaimsRequest {
                query: word.into(),
                ..Default::default()
            })
            .await;
        match reply {
            Ok(reply) if reply.get_ref().total_size == expected => return reply.into_inner(),
            other => assert!(
                Instant::now() < deadline,
                "{word}: never {expected} results: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_searches_every_replicas_claims_and_imported_reviews() {
    let Some((_db, processes, mut clients)) = replicas(2).await else {
        return;
    };
    // A claim written through replica 0 is searchable on replica 1, and
    // an import through replica 1 on replica 0: each keeps its own index,
    // following the shared logs.
    let claim = register(
        &mut clients[0],
        sample_claim("Blauhelme zogen durch Almaty"),
        "s1",
    )
    .await
    .claim
    .unwrap();
    let found = searched(&mut clients[1], "Blauhelme", 1).await;
    assert!(matches!(
        &found.results[0].result,
        Some(pb::search_result::Result::Claim(c)) if c.name == claim.name
    ));
    let imported = clients[1]
        .import_claim_reviews(pb::ImportClaimReviewsRequest {
            document: include_str!("data/claimreview/single.json").into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(imported.created, 1, "{imported:?}");
    let found = searched(&mut clients[0], "protests", 1).await;
    assert!(matches!(
        &found.results[0].result,
        Some(pb::search_result::Result::ExternalReview(r)) if r.name == imported.imported[0].name
    ));
    drop(processes);
}
