//! The server's life: persistence across a restart of the real binary, real
//! signals, the data-directory lock, health during shutdown, bounded drain.

mod common;

use std::time::Duration;

use common::*;
use photoclaim::pb;
use photoclaim::server::Options;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_every_claim_response_verdict_and_event() {
    let dir = tempfile::tempdir().unwrap();
    let server = Process::spawn(dir.path());
    let mut client = connect(&server.addr).await;
    let mut claim = sample_claim("persist me");
    claim.image.as_mut().unwrap().sha256 = fake_sha256(42);
    let first = register(&mut client, claim.clone(), "p-1")
        .await
        .claim
        .unwrap();
    let second = register(&mut client, sample_claim("second"), "p-2")
        .await
        .claim
        .unwrap();
    let inquiry = attach(
        &mut client,
        &first.name,
        sample_response(pb::Stance::Refutes),
        "p-3",
    )
    .await;
    let mut reply = sample_response(pb::Stance::Supports);
    reply.in_reply_to = inquiry.name.clone();
    attach(&mut client, &first.name, reply, "p-4").await;
    client
        .set_verdict(pb::SetVerdictRequest {
            claim: second.name.clone(),
            claim_rating: pb::ClaimRating::Accurate as i32,
            media_authenticity: pb::MediaAuthenticity::Original as i32,
            rationale: "confirmed".into(),
            etag: second.etag.clone(),
        })
        .await
        .unwrap();
    let before = snapshot(&mut client).await;
    assert_eq!(before.len(), 6);
    drop(client);

    let (exit, log) = server.terminate();
    assert!(
        exit.success(),
        "SIGTERM must end with exit code 0: {exit:?}\n{log}"
    );
    assert!(
        log.contains("SIGTERM"),
        "the log says which signal arrived:\n{log}"
    );
    assert!(
        log.contains("stopped"),
        "the log confirms the final flush:\n{log}"
    );

    let server = Process::spawn(dir.path());
    let mut client = connect(&server.addr).await;
    assert_eq!(snapshot(&mut client).await, before);
    // Indexes survived too: the request_id and sha256 indexes answer as before.
    let replay = register(&mut client, claim.clone(), "p-1").await;
    assert!(replay.replayed);
    assert_eq!(replay.claim.unwrap().name, first.name);
    let third = register(&mut client, claim, "p-5").await;
    assert_eq!(third.same_image_claims.len(), 1);
    assert_eq!(
        status(&mut client, &first.name).await.state(),
        pb::VerificationState::Disputed
    );
    let disputed = all_claims(&mut client, pb::VerificationState::Disputed).await;
    assert_eq!(disputed.len(), 1);
    drop(client);
    let (exit, _) = server.terminate();
    assert!(exit.success());
}

#[test]
fn sigint_shuts_down_cleanly_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Process::spawn(dir.path());
    let status = std::process::Command::new("kill")
        .args(["-INT", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = server.child.wait().unwrap();
    assert!(exit.success(), "SIGINT must end with exit code 0: {exit:?}");
}

#[test]
fn a_second_server_on_the_same_data_directory_exits_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Process::spawn(dir.path());
    let Err((status, log)) = Process::try_spawn(dir.path()) else {
        panic!("a second server on the same directory must not start");
    };
    let status = status.expect("the second server exits by itself");
    assert!(!status.success());
    assert!(
        log.contains("in use"),
        "message says the directory is in use:\n{log}"
    );
    let dir_text = dir.path().display().to_string();
    assert!(
        log.contains(&dir_text),
        "message names the directory:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_turns_not_serving_when_shutdown_begins_and_the_drain_is_bounded() {
    let server = InProcess::start_with(Options {
        shutdown_grace: Duration::from_millis(500),
        ..Options::default()
    })
    .await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let checked = health
        .check(HealthCheckRequest {
            service: "photoclaim.v1.ClaimService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(checked.status(), ServingStatus::Serving);

    // A watch stream stays open: it sees NOT_SERVING, and it cannot hold the
    // shutdown past the grace period.
    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);
    let stopping = tokio::spawn(server.stop());
    let next = watch.message().await.unwrap().unwrap();
    assert_eq!(next.status(), ServingStatus::NotServing);
    tokio::time::timeout(Duration::from_secs(30), stopping)
        .await
        .expect("shutdown finished despite an open stream")
        .unwrap();
}

#[tokio::test]
async fn json_logs_carry_one_line_per_rpc_with_method_claim_code_and_latency() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_photoclaim"))
        .args([
            "--log-format",
            "json",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let next_json = || -> serde_json::Value {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("a log line");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    };
    let addr = loop {
        let line = next_json();
        if line["fields"]["message"] == "photoclaim listening" {
            break line["fields"]["addr"].as_str().unwrap().to_string();
        }
    };
    let mut client = connect(&addr).await;
    // A write is logged at info; a successful read only at debug (the
    // default level is info), so the next line is the failed read's.
    let claim = new_claim(&mut client, "UN peacekeepers in Kazakhstan").await;
    client
        .get_claim(pb::GetClaimRequest {
            name: claim.name.clone(),
        })
        .await
        .unwrap();
    let err = client
        .get_claim(pb::GetClaimRequest {
            name: "claims/77".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    let mut rpc_lines = std::iter::from_fn(|| loop {
        let line = next_json();
        if line["fields"]["message"] == "rpc done" {
            return Some(line);
        }
    });
    let write = rpc_lines.next().unwrap();
    assert_eq!(write["span"]["method"], "RegisterClaim", "{write}");
    assert_eq!(write["fields"]["code"], "Ok");
    let rpc = rpc_lines.next().unwrap();
    assert_eq!(rpc["span"]["method"], "GetClaim");
    assert_eq!(rpc["span"]["claim"], "claims/77");
    assert_eq!(rpc["fields"]["code"], "NotFound");
    assert!(rpc["fields"]["latency_us"].is_u64(), "{rpc}");
    let _ = child.kill();
    let _ = child.wait();
}
