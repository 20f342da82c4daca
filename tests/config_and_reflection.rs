//! Configuration through environment variables and defaults, the message
//! size limit, and server reflection in both protocol versions.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use photoclaim::pb;
use photoclaim::server::Options;

/// Starts the binary with `envs` (and no flags but `serve`) in `cwd`; returns
/// the `photoclaim listening` log line.
fn listening_line(cwd: &std::path::Path, envs: &[(&str, &str)]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_photoclaim"))
        .arg("serve")
        .current_dir(cwd)
        .env_remove("PHOTOCLAIM_DATA_DIR")
        .env_remove("PHOTOCLAIM_LISTEN")
        .envs(envs.iter().copied())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn photoclaim");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("photoclaim listening") {
                let _ = tx.send(line);
            }
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(60));
    let _ = child.kill();
    let _ = child.wait();
    line.expect("the server logs where it listens")
}

#[test]
fn listen_address_and_data_dir_come_from_the_environment() {
    let cwd = tempfile::tempdir().unwrap();
    let data = cwd.path().join("from-env");
    let line = listening_line(
        cwd.path(),
        &[
            ("PHOTOCLAIM_LISTEN", "127.0.0.1:0"),
            ("PHOTOCLAIM_DATA_DIR", data.to_str().unwrap()),
        ],
    );
    assert!(line.contains("addr=127.0.0.1:"), "{line}");
    assert!(
        !line.contains("addr=127.0.0.1:0 "),
        "port 0 resolves to a real port: {line}"
    );
    assert!(
        line.contains(&format!("data_dir={}", data.display())),
        "{line}"
    );
    assert!(
        data.join("db").exists(),
        "sled created its database in {}",
        data.display()
    );
}

#[test]
fn in_memory_serves_without_a_data_directory_and_refuses_one_too() {
    let cwd = tempfile::tempdir().unwrap();
    let line = listening_line(
        cwd.path(),
        &[
            ("PHOTOCLAIM_LISTEN", "127.0.0.1:0"),
            ("PHOTOCLAIM_IN_MEMORY", "true"),
        ],
    );
    assert!(line.contains("data_dir=in memory"), "{line}");
    assert!(
        std::fs::read_dir(cwd.path()).unwrap().next().is_none(),
        "nothing written to the working directory"
    );
    let both = Command::new(env!("CARGO_BIN_EXE_photoclaim"))
        .args(["serve", "--in-memory", "--data-dir", "somewhere"])
        .current_dir(cwd.path())
        .output()
        .unwrap();
    assert_eq!(both.status.code(), Some(2), "a usage error");
    let stderr = String::from_utf8_lossy(&both.stderr);
    assert!(
        stderr.contains("--in-memory") && stderr.contains("--data-dir"),
        "{stderr}"
    );
    assert!(!cwd.path().join("somewhere").exists());
}

#[test]
fn the_default_data_dir_is_photoclaim_data_in_the_working_directory() {
    let cwd = tempfile::tempdir().unwrap();
    let line = listening_line(cwd.path(), &[("PHOTOCLAIM_LISTEN", "127.0.0.1:0")]);
    assert!(line.contains("data_dir=./photoclaim-data"), "{line}");
    assert!(cwd.path().join("photoclaim-data").join("db").exists());
}

#[test]
fn the_cache_sizes_come_from_the_flags_or_the_environment_and_are_bounded() {
    let cwd = tempfile::tempdir().unwrap();
    let line = listening_line(
        cwd.path(),
        &[
            ("PHOTOCLAIM_LISTEN", "127.0.0.1:0"),
            ("PHOTOCLAIM_CACHE_MB", "64"),
        ],
    );
    assert!(line.contains(" cache_mb=64"), "{line}");
    let line = listening_line(cwd.path(), &[("PHOTOCLAIM_LISTEN", "127.0.0.1:0")]);
    assert!(line.contains(" cache_mb=1024"), "the default: {line}");
    assert!(line.contains(" status_cache_mb=256"), "the default: {line}");
    assert!(line.contains(" claim_cache_mb=256"), "the default: {line}");
    let line = listening_line(
        cwd.path(),
        &[
            ("PHOTOCLAIM_LISTEN", "127.0.0.1:0"),
            ("PHOTOCLAIM_STATUS_CACHE_MB", "0"),
            ("PHOTOCLAIM_CLAIM_CACHE_MB", "0"),
        ],
    );
    assert!(line.contains(" status_cache_mb=0"), "off: {line}");
    assert!(line.contains(" claim_cache_mb=0"), "off: {line}");
    for (flag, bad) in [
        ("--cache-mb", "8"),
        ("--cache-mb", "0"),
        ("--cache-mb", "lots"),
        ("--status-cache-mb", "1.5"),
        ("--status-cache-mb", "2000000"),
        ("--status-cache-mb", "lots"),
        ("--claim-cache-mb", "lots"),
        ("--claim-cache-mb", "2000000"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_photoclaim"))
            .args(["serve", "--listen", "127.0.0.1:0", flag, bad])
            .current_dir(cwd.path())
            .output()
            .expect("run photoclaim");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag} {bad} is refused");
        assert!(stderr.contains(flag), "names the flag: {stderr}");
    }
}

#[tokio::test]
async fn a_lower_message_limit_refuses_larger_requests_before_anything_is_stored() {
    let server = InProcess::in_memory_with(Options {
        max_message_bytes: 16 * 1024,
        ..Options::default()
    })
    .await;
    let mut client = server.client.clone();
    let mut claim = sample_claim("big caption");
    claim.image.as_mut().unwrap().caption = "c".repeat(9_000);
    claim.appearance_urls = vec![format!("https://example.org/{}", "p".repeat(1_000)); 10];
    let err = client
        .register_claim(pb::RegisterClaimRequest {
            request_id: String::new(),
            claim: Some(claim),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err:?}");
    assert!(all_claims(&mut client, pb::VerificationState::Unspecified)
        .await
        .is_empty());
    // A request under the limit still works.
    register(&mut client, sample_claim("small"), "").await;
    server.stop().await;
}

/// Lists services through reflection protocol `$version` (`v1` or `v1alpha`,
/// which differ only in their package).
macro_rules! list_services {
    ($version:ident, $addr:expr) => {{
        use tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;
        use tonic_reflection::pb::$version::ServerReflectionRequest;
        let channel = tonic::transport::Channel::from_shared(format!("http://{}", $addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = ServerReflectionClient::new(channel);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = client
            .server_reflection_info(tokio_stream::iter(vec![request]))
            .await
            .unwrap()
            .into_inner();
        match stream.message().await.unwrap().unwrap().message_response {
            Some(MessageResponse::ListServicesResponse(list)) => list
                .service
                .into_iter()
                .map(|s| s.name)
                .collect::<Vec<String>>(),
            other => panic!("unexpected reflection answer {other:?}"),
        }
    }};
}

#[tokio::test]
async fn reflection_answers_in_v1_and_v1alpha() {
    let server = InProcess::in_memory().await;
    let addr = server.addr.to_string();
    for services in [list_services!(v1, addr), list_services!(v1alpha, addr)] {
        for expected in ["photoclaim.v1.ClaimService", "grpc.health.v1.Health"] {
            assert!(
                services.iter().any(|s| s == expected),
                "{expected} missing from {services:?}"
            );
        }
    }
    server.stop().await;
}

/// `--c2pa-trust-anchors` must name a readable PEM file holding at least
/// one certificate: anything else stops `serve` at start, naming the flag.
#[test]
fn bad_trust_anchors_are_refused_at_start_naming_the_flag() {
    let cwd = tempfile::tempdir().unwrap();
    let no_cert = cwd.path().join("empty.pem");
    std::fs::write(&no_cert, "not a certificate\n").unwrap();
    let broken = cwd.path().join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let missing = cwd.path().join("missing.pem");
    for file in [&no_cert, &broken, &missing] {
        let out = Command::new(env!("CARGO_BIN_EXE_photoclaim"))
            .args(["serve", "--in-memory", "--listen", "127.0.0.1:0"])
            .arg("--c2pa-trust-anchors")
            .arg(file)
            .current_dir(cwd.path())
            .output()
            .expect("run photoclaim");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {stderr}", file.display());
        assert!(stderr.contains("--c2pa-trust-anchors"), "{stderr}");
    }
    // Reading turned off and anchors given: a contradiction clap refuses.
    let out = Command::new(env!("CARGO_BIN_EXE_photoclaim"))
        .args([
            "serve",
            "--in-memory",
            "--no-content-credentials",
            "--c2pa-trust-anchors",
        ])
        .arg(&no_cert)
        .current_dir(cwd.path())
        .output()
        .expect("run photoclaim");
    assert_eq!(out.status.code(), Some(2));
}
