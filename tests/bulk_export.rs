//! Bulk export for archives (`photoclaim export`, AdminService.ExportClaims):
//! 10,000 claims exported by the real binary from a data directory and
//! through a running server, every line checked; memory that does not grow
//! with the number of claims; admin only; no half-written file on failure.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use photoclaim::domain::access::{ApiKey, Role};
use photoclaim::domain::{Claim, Image, OfficialResponse, Responder, Timestamp};
use photoclaim::pb;
use photoclaim::pb::admin_service_client::AdminServiceClient;
use photoclaim::server::{self, Options};
use photoclaim::store::{NewClaim, NewResponse, SledStore, Store};
use serde_json::Value;
use tokio::sync::oneshot;

/// Writes `claims` claims, each with one official response, and one key per
/// role straight through the store, in a runtime of its own that is gone
/// (and with it sled's lock) when this returns. Returns the tokens by role.
fn generate(dir: &Path, claims: u64) -> HashMap<Role, String> {
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let tokens = runtime.block_on(async {
            let store = Arc::new(SledStore::open(&dir).expect("open store"));
            // Concurrent writers share transactions and flushes, which makes
            // 10,000 durable registrations quick.
            const WRITERS: u64 = 64;
            let mut tasks = tokio::task::JoinSet::new();
            for writer in 0..WRITERS {
                let store = store.clone();
                tasks.spawn(async move {
                    let mut i = writer;
                    while i < claims {
                        let registered = store
                            .register_claim(NewClaim {
                                claim: Claim {
                                    claim_text: format!("Claim number {i} about a photo"),
                                    claimant: "social media posts".into(),
                                    language: "en".into(),
                                    image: Some(Image {
                                        source_url: format!("https://example.org/{i}.jpg"),
                                        ..Default::default()
                                    }),
                                    ..Default::default()
                                },
                                request_id: String::new(),
                                actor: "generator".into(),
                                near_distance: 31,
                                dihedral: false,
                                variants: None,
                            })
                            .await
                            .expect("register");
                        store
                            .attach_response(NewResponse {
                                claim_id: registered.claim.claim.id,
                                response: OfficialResponse {
                                    responder: Some(Responder {
                                        organization: "Ministry of Examples".into(),
                                        role: 1,
                                        ..Default::default()
                                    }),
                                    kind: 1,
                                    stance: 2,
                                    text: format!("Statement on claim {i}."),
                                    language: "en".into(),
                                    ..Default::default()
                                },
                                request_id: String::new(),
                                actor: "generator".into(),
                            })
                            .await
                            .expect("attach");
                        i += WRITERS;
                    }
                });
            }
            while let Some(done) = tasks.join_next().await {
                done.expect("writer");
            }
            let mut tokens = HashMap::new();
            for (name, role) in [
                ("archivist", Role::Admin),
                ("reader", Role::Reader),
                ("ingest", Role::Ingest),
                ("desk", Role::Desk),
            ] {
                let (key, token) = ApiKey::create(name, role, "cli", Timestamp::now()).unwrap();
                store.create_key(key).await.expect("create key");
                tokens.insert(role, token);
            }
            store.close().await.expect("close");
            tokens
        });
        drop(runtime);
        tokens
    })
    .join()
    .expect("generator thread")
}

/// Runs `photoclaim export ARGS` with debug logs (which carry the peak RSS).
fn export_cmd(args: &[&str], token: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_photoclaim"));
    cmd.arg("export")
        .args(args)
        .env("RUST_LOG", "photoclaim=debug")
        .env_remove("PHOTOCLAIM_TOKEN")
        .env_remove("PHOTOCLAIM_SERVER")
        .env_remove("PHOTOCLAIM_DATA_DIR");
    if let Some(token) = token {
        cmd.env("PHOTOCLAIM_TOKEN", token);
    }
    cmd.output().expect("run photoclaim export")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The peak resident set size the export logged, in KiB.
fn peak_rss_kib(out: &Output) -> u64 {
    let log = stderr(out);
    log.split_whitespace()
        .find_map(|w| w.strip_prefix("peak_rss_kib="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no peak_rss_kib in the log:\n{log}"))
}

/// Checks every line of an export of `claims` generated claims.
fn check_archive(path: &Path, claims: u64) {
    let text = std::fs::read_to_string(path).expect("read export");
    assert!(text.ends_with('\n'), "every line ends with a newline");
    let mut count = 0u64;
    for (i, line) in text.lines().enumerate() {
        let record: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("line {} is not JSON ({e}): {line}", i + 1));
        let claim = &record["claim"];
        // Oldest first: claims/1, claims/2, ...
        assert_eq!(claim["name"], format!("claims/{}", i + 1), "order");
        assert!(
            claim["claimText"]
                .as_str()
                .unwrap()
                .starts_with("Claim number "),
            "{line}"
        );
        assert_eq!(
            claim["verificationStatus"]["state"], "VERIFICATION_STATE_IN_REVIEW",
            "{line}"
        );
        let responses = record["officialResponses"].as_array().expect("responses");
        assert_eq!(responses.len(), 1, "{line}");
        assert_eq!(
            responses[0]["name"],
            format!("claims/{}/officialResponses/1", i + 1)
        );
        assert_eq!(responses[0]["stance"], "STANCE_REFUTES");
        let events = record["events"].as_array().expect("events");
        let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            [
                "CLAIM_EVENT_TYPE_CLAIM_REGISTERED",
                "CLAIM_EVENT_TYPE_OFFICIAL_RESPONSE_ATTACHED"
            ],
            "{line}"
        );
        count += 1;
    }
    assert_eq!(count, claims, "one line per claim");
}

/// A server on `dir` in this process; returns its address and a stopper.
async fn serve(dir: &Path) -> (String, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let store = Arc::new(SledStore::open(dir).expect("open store for the server"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        server::run(listener, store, Options::default(), async {
            let _ = rx.await;
        })
        .await
        .expect("server ran cleanly");
    });
    (addr, tx, handle)
}

fn leftovers(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_claims_export_from_the_data_dir_and_through_the_server_in_constant_memory() {
    let small = tempfile::tempdir().unwrap();
    let large = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    generate(small.path(), 1_000);
    let tokens = generate(large.path(), 10_000);

    // From the data directory.
    let small_file = out.path().join("small.jsonl");
    let large_file = out.path().join("large.jsonl");
    let run = |data: &Path, file: &Path| {
        export_cmd(
            &[
                "--data-dir",
                data.to_str().unwrap(),
                "--out",
                file.to_str().unwrap(),
            ],
            None,
        )
    };
    let small_run = run(small.path(), &small_file);
    assert!(small_run.status.success(), "{}", stderr(&small_run));
    let large_run = run(large.path(), &large_file);
    assert!(large_run.status.success(), "{}", stderr(&large_run));
    assert!(
        stderr(&large_run).contains("exported 10000 claims"),
        "one-line summary: {}",
        stderr(&large_run)
    );
    assert!(
        !stderr(&large_run).contains('\r'),
        "no progress output when stderr is not a terminal"
    );
    check_archive(&small_file, 1_000);
    check_archive(&large_file, 10_000);

    // Ten times the claims, (almost) the same memory: the export streams.
    let (small_peak, large_peak) = (peak_rss_kib(&small_run), peak_rss_kib(&large_run));
    eprintln!(
        "data dir export peak RSS: 1,000 claims {small_peak} KiB, 10,000 claims {large_peak} KiB"
    );
    assert!(
        large_peak < small_peak + 8 * 1024,
        "peak RSS grew from {small_peak} KiB (1,000 claims) to {large_peak} KiB (10,000 claims)"
    );

    // Through a running server, with an admin key: the same archive.
    let (addr, stop, handle) = serve(large.path()).await;
    let server_file = out.path().join("server.jsonl");
    let url = format!("http://{addr}");
    let args = [
        "--server".to_string(),
        url.clone(),
        "--out".to_string(),
        server_file.to_str().unwrap().to_string(),
    ];
    let admin = tokens[&Role::Admin].clone();
    let server_run = {
        let args = args.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            export_cmd(&args, Some(&admin))
        })
        .await
        .unwrap()
    };
    assert!(server_run.status.success(), "{}", stderr(&server_run));
    check_archive(&server_file, 10_000);
    assert_eq!(
        std::fs::read(&server_file).unwrap(),
        std::fs::read(&large_file).unwrap(),
        "the server's export and the data directory's are the same archive"
    );
    let client_peak = peak_rss_kib(&server_run);
    eprintln!("--server export peak RSS (10,000 claims): {client_peak} KiB");
    assert!(
        client_peak < small_peak + 8 * 1024,
        "the client holds no more than a chunk: {client_peak} KiB"
    );

    // Reader, ingest and desk keys may not export; nothing is written.
    for role in [Role::Reader, Role::Ingest, Role::Desk] {
        let denied_file = out.path().join(format!("denied-{}.jsonl", role.as_str()));
        let token = tokens[&role].clone();
        let args = [
            "--server".to_string(),
            url.clone(),
            "--out".to_string(),
            denied_file.to_str().unwrap().to_string(),
        ];
        let denied = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            export_cmd(&args, Some(&token))
        })
        .await
        .unwrap();
        assert_eq!(denied.status.code(), Some(5), "{role:?} exported");
        assert!(
            stderr(&denied).contains("error: PERMISSION_DENIED: "),
            "{role:?}: {}",
            stderr(&denied)
        );
        assert!(!denied_file.exists(), "{role:?}: no file on failure");

        let channel = tonic::transport::Channel::from_shared(url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let bearer: tonic::metadata::MetadataValue<_> =
            format!("Bearer {}", tokens[&role]).parse().unwrap();
        let mut admin_client =
            AdminServiceClient::with_interceptor(channel, move |mut r: tonic::Request<()>| {
                r.metadata_mut().insert("authorization", bearer.clone());
                Ok(r)
            });
        let status = admin_client
            .export_claims(pb::ExportClaimsRequest {})
            .await
            .expect_err("only admins export");
        assert_eq!(status.code(), tonic::Code::PermissionDenied, "{role:?}");
    }

    // While the server holds the data directory, a direct export fails
    // clearly and leaves the earlier archive as it was, with no partial file.
    let before = std::fs::read(&large_file).unwrap();
    let locked = {
        let data = large.path().to_path_buf();
        let file = large_file.clone();
        tokio::task::spawn_blocking(move || run(&data, &file))
            .await
            .unwrap()
    };
    assert!(!locked.status.success());
    assert!(stderr(&locked).contains("--server"), "{}", stderr(&locked));
    assert_eq!(std::fs::read(&large_file).unwrap(), before);
    let mut files: Vec<String> = leftovers(out.path())
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["large.jsonl", "server.jsonl", "small.jsonl"]);

    let _ = stop.send(());
    handle.await.unwrap();
}

#[test]
fn a_missing_data_dir_or_unwritable_out_fails_without_a_file() {
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("archive.jsonl");
    let missing = export_cmd(
        &[
            "--data-dir",
            out.path().join("nope").to_str().unwrap(),
            "--out",
            file.to_str().unwrap(),
        ],
        None,
    );
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("no data directory"),
        "{}",
        stderr(&missing)
    );
    assert!(leftovers(out.path()).is_empty(), "nothing written");

    let data = tempfile::tempdir().unwrap();
    generate(data.path(), 3);
    let unwritable = export_cmd(
        &[
            "--data-dir",
            data.path().to_str().unwrap(),
            "--out",
            out.path().join("no/such/dir/a.jsonl").to_str().unwrap(),
        ],
        None,
    );
    assert!(!unwritable.status.success());
    assert!(
        stderr(&unwritable).contains("cannot create"),
        "{}",
        stderr(&unwritable)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_with_more_responses_than_a_page_exports_them_all_in_order() {
    let server = common::InProcess::start().await;
    let mut client = server.client.clone();
    let claim = common::new_claim(&mut client, "A much-discussed photo").await;
    let id: u64 = claim.name.strip_prefix("claims/").unwrap().parse().unwrap();
    // More than one store page (500) of responses and events.
    const RESPONSES: u64 = 620;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..RESPONSES {
        let store = server.store.clone();
        tasks.spawn(async move {
            store
                .attach_response(NewResponse {
                    claim_id: id,
                    response: OfficialResponse {
                        responder: Some(Responder {
                            organization: format!("Organization {i}"),
                            role: 1,
                            ..Default::default()
                        }),
                        kind: 1,
                        stance: 3,
                        text: "Context.".into(),
                        language: "en".into(),
                        ..Default::default()
                    },
                    request_id: String::new(),
                    actor: "test".into(),
                })
                .await
                .expect("attach")
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut stream = AdminServiceClient::new(channel)
        .export_claims(pb::ExportClaimsRequest {})
        .await
        .expect("export")
        .into_inner();
    let mut lines = Vec::new();
    while let Some(chunk) = stream.message().await.expect("chunk") {
        lines.extend(chunk.lines);
    }
    assert_eq!(lines.len(), 1);
    let record: Value = serde_json::from_str(&lines[0]).unwrap();
    let names: Vec<String> = record["officialResponses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> = (1..=RESPONSES)
        .map(|n| format!("{}/officialResponses/{n}", claim.name))
        .collect();
    assert_eq!(names, expected);
    let sequences: Vec<String> = record["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["sequence"].as_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> = (1..=RESPONSES + 1).map(|n| n.to_string()).collect();
    assert_eq!(sequences, expected, "events 1..=621 in order");
    assert_eq!(
        record["claim"]["verificationStatus"]["officialResponseCount"],
        RESPONSES
    );
    server.stop().await;
}
