//! Shared helpers for the integration tests: a real server in-process on
//! 127.0.0.1:0 with a real sled directory or in memory, the real binary as a child
//! process (for signals and kill -9), and the reference case.

#![allow(dead_code)]

pub mod c2pa;
pub mod cli;
pub mod pg;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use photoclaim::pb;
use photoclaim::pb::claim_service_client::ClaimServiceClient;
use photoclaim::server::{self, Options};
use photoclaim::store::{MemoryStore, SledStore, Store};
use tokio::sync::oneshot;
use tonic::transport::Channel;

pub type Client = ClaimServiceClient<Channel>;

/// A server running inside the test process, over a sled directory
/// ([`InProcess::start`]) or in memory ([`InProcess::in_memory`]).
pub struct InProcess<S: Store = SledStore> {
    pub addr: SocketAddr,
    pub client: Client,
    pub store: Arc<S>,
    /// The sled directory (an empty scratch directory in memory).
    pub dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<Result<(), server::ServeError>>,
}

impl InProcess<SledStore> {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SledStore::open(dir.path()).expect("open store");
        Self::serve(store, dir, options).await
    }
}

impl InProcess<MemoryStore> {
    /// A server over the in-memory backend (`serve --in-memory`).
    pub async fn in_memory() -> Self {
        Self::in_memory_with(Options::default()).await
    }

    pub async fn in_memory_with(options: Options) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = MemoryStore::in_memory().expect("start an in-memory store");
        Self::serve(store, dir, options).await
    }
}

impl<S: Store> InProcess<S> {
    async fn serve(store: S, dir: tempfile::TempDir, options: Options) -> Self {
        let store = Arc::new(store);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(server::run(listener, store.clone(), options, async {
            let _ = rx.await;
        }));
        let client = connect(&addr.to_string()).await;
        InProcess {
            addr,
            client,
            store,
            dir,
            shutdown: Some(tx),
            handle,
        }
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        (&mut self.handle)
            .await
            .expect("server task")
            .expect("server ran cleanly");
    }
}

/// Connects a client, retrying while the server comes up.
pub async fn connect(addr: &str) -> Client {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match ClaimServiceClient::connect(format!("http://{addr}")).await {
            Ok(client) => return client,
            Err(err) if Instant::now() > deadline => panic!("cannot connect to {addr}: {err}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// The real `photoclaim` binary, serving on an ephemeral port.
pub struct Process {
    pub child: Child,
    pub addr: String,
    /// Everything the server logged (stderr), for assertions.
    pub log: Arc<Mutex<String>>,
}

impl Process {
    /// Starts `photoclaim serve` on `data_dir` and waits until it listens.
    pub fn spawn(data_dir: &Path) -> Self {
        Self::try_spawn(data_dir).unwrap_or_else(|(status, log)| {
            panic!("server exited ({status:?}) before listening:\n{log}")
        })
    }

    /// Like [`Process::spawn`], with more `serve` flags.
    pub fn spawn_with(data_dir: &Path, flags: &[&str]) -> Self {
        Self::try_spawn_with(data_dir, flags).unwrap_or_else(|(status, log)| {
            panic!("server exited ({status:?}) before listening:\n{log}")
        })
    }

    /// Like [`Process::spawn`], but returns the exit status and log if the
    /// server exits before it listens.
    pub fn try_spawn(data_dir: &Path) -> Result<Self, (Option<ExitStatus>, String)> {
        Self::try_spawn_with(data_dir, &[])
    }

    /// [`Process::try_spawn`] with more `serve` flags.
    pub fn try_spawn_with(
        data_dir: &Path,
        flags: &[&str],
    ) -> Result<Self, (Option<ExitStatus>, String)> {
        let storage = [std::ffi::OsStr::new("--data-dir"), data_dir.as_os_str()];
        Self::try_spawn_on(&storage, flags)
    }

    /// `photoclaim serve` on the PostgreSQL database at `url` (a replica),
    /// with more `serve` flags.
    pub fn spawn_on_database(url: &str, flags: &[&str]) -> Self {
        let storage = [
            std::ffi::OsStr::new("--database-url"),
            std::ffi::OsStr::new(url),
        ];
        Self::try_spawn_on(&storage, flags).unwrap_or_else(|(status, log)| {
            panic!("server exited ({status:?}) before listening:\n{log}")
        })
    }

    /// `photoclaim serve` with `storage` (its storage flags) and `flags`.
    pub fn try_spawn_on(
        storage: &[&std::ffi::OsStr],
        flags: &[&str],
    ) -> Result<Self, (Option<ExitStatus>, String)> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_photoclaim"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(storage)
            .args(flags)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn photoclaim");
        let log = Arc::new(Mutex::new(String::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel::<Option<String>>();
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push_str(&line);
                sink.lock().unwrap().push('\n');
                if !sent && line.contains("photoclaim listening") {
                    let addr = line
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("addr="))
                        .map(str::to_string);
                    let _ = addr_tx.send(addr);
                    sent = true;
                }
            }
            if !sent {
                let _ = addr_tx.send(None);
            }
        });
        match addr_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Some(addr)) => Ok(Process { child, addr, log }),
            _ => {
                let status = child.wait().ok();
                // Give the reader thread a moment to collect the last lines.
                std::thread::sleep(Duration::from_millis(100));
                let text = log.lock().unwrap().clone();
                Err((status, text))
            }
        }
    }

    /// Sends a real SIGTERM and waits for the exit.
    pub fn terminate(mut self) -> (ExitStatus, String) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let exit = self.child.wait().expect("wait for server");
        std::thread::sleep(Duration::from_millis(50));
        let log = self.log.lock().unwrap().clone();
        (exit, log)
    }

    /// kill -9: no chance to flush or clean up.
    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the `photoclaim` binary with `args`: (success, stdout + stderr).
pub fn cli<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (bool, String) {
    let (code, text) = cli_exit(args);
    (code == 0, text)
}

/// Runs the `photoclaim` binary with `args`: (exit code, -1 for a signal;
/// stdout + stderr).
pub fn cli_exit<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_photoclaim"))
        .args(args)
        .output()
        .expect("run photoclaim");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// `GET /metrics` of a metrics endpoint at `addr` over plain HTTP/1.1:
/// (status line, body).
pub async fn scrape_metrics(addr: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: photoclaim\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .expect("scrape in time")
    .expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response");
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}

/// A raw HTTP/2 client of the server at `addr`, its connection driven on
/// a task: for tests that control frames and flow control themselves.
pub async fn h2_client(addr: &str) -> h2::client::SendRequest<bytes::Bytes> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client.ready().await.unwrap()
}

/// The headers of a gRPC call of `ClaimService.{method}` on `addr`, with
/// the `extra` headers.
pub fn grpc_request(addr: &str, method: &str, extra: &[(&str, &str)]) -> http::Request<()> {
    let mut request =
        http::Request::post(format!("http://{addr}/photoclaim.v1.ClaimService/{method}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    request.body(()).unwrap()
}

/// `message` in a gRPC frame: no compression, its length, its bytes.
pub fn grpc_frame(message: &[u8]) -> Vec<u8> {
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    frame
}

/// `grpc.health.v1.Health/Check` of `service` on the server at `addr`.
pub async fn health(
    addr: &str,
    service: &str,
) -> tonic_health::pb::health_check_response::ServingStatus {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.into(),
        })
        .await
        .expect("health check")
        .into_inner()
        .status()
}

/// The reference case, `tests/data/kazbat-2022.json` (origin in
/// `tests/data/README.md`).
pub fn kazbat() -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/kazbat-2022.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).expect("reference case is JSON")
}

/// A memory figure of a running process (`VmHWM:` or `VmRSS:` of
/// `/proc/PID/status`), in KiB: for tests where memory is the point.
pub fn memory_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} for process {pid}"))
}

/// A SHA-256-shaped hex string derived from `seed` (tests need not hash real bytes).
pub fn fake_sha256(seed: u64) -> String {
    format!("{seed:064x}")
}

/// A small valid claim whose text is `text`.
pub fn sample_claim(text: &str) -> pb::Claim {
    pb::Claim {
        claim_text: text.to_string(),
        claimant: "social media posts".into(),
        language: "en".into(),
        image: Some(pb::Image {
            source_url: "https://example.org/photo.jpg".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A small valid response with `stance`.
pub fn sample_response(stance: pb::Stance) -> pb::OfficialResponse {
    pb::OfficialResponse {
        responder: Some(pb::Responder {
            organization: "Ministry of Examples".into(),
            role: pb::ResponderRole::Government as i32,
            ..Default::default()
        }),
        kind: pb::ResponseKind::Statement as i32,
        stance: stance as i32,
        text: "A statement.".into(),
        language: "en".into(),
        ..Default::default()
    }
}

pub async fn register(
    client: &mut Client,
    claim: pb::Claim,
    request_id: &str,
) -> pb::RegisterClaimResponse {
    client
        .register_claim(pb::RegisterClaimRequest {
            request_id: request_id.into(),
            claim: Some(claim),
            ..Default::default()
        })
        .await
        .expect("register")
        .into_inner()
}

/// Registers `sample_claim(text)` without a request_id and returns the claim.
pub async fn new_claim(client: &mut Client, text: &str) -> pb::Claim {
    register(client, sample_claim(text), "")
        .await
        .claim
        .expect("registered claim")
}

pub async fn attach(
    client: &mut Client,
    parent: &str,
    response: pb::OfficialResponse,
    request_id: &str,
) -> pb::OfficialResponse {
    client
        .attach_official_response(pb::AttachOfficialResponseRequest {
            parent: parent.into(),
            request_id: request_id.into(),
            official_response: Some(response),
        })
        .await
        .expect("attach")
        .into_inner()
}

/// The desk's verdict, without an etag: a false claim on a
/// decontextualized photo.
pub async fn rate_false(client: &mut Client, claim: &str, rationale: &str) {
    client
        .set_verdict(pb::SetVerdictRequest {
            claim: claim.to_string(),
            claim_rating: pb::ClaimRating::False as i32,
            media_authenticity: pb::MediaAuthenticity::Decontextualized as i32,
            rationale: rationale.into(),
            etag: String::new(),
        })
        .await
        .expect("SetVerdict");
}

pub async fn status(client: &mut Client, claim: &str) -> pb::VerificationStatus {
    client
        .get_verification_status(pb::GetVerificationStatusRequest {
            claim: claim.into(),
            ..Default::default()
        })
        .await
        .expect("status")
        .into_inner()
}

/// Every event of a claim, following page tokens.
pub async fn all_events(client: &mut Client, claim: &str) -> Vec<pb::ClaimEvent> {
    let mut events = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_claim_events(pb::ListClaimEventsRequest {
                claim: claim.into(),
                page_size: 100,
                page_token: token,
            })
            .await
            .expect("list events")
            .into_inner();
        events.extend(page.events);
        if page.next_page_token.is_empty() {
            return events;
        }
        token = page.next_page_token;
    }
}

/// Every official response of a claim, following page tokens.
pub async fn all_responses(client: &mut Client, parent: &str) -> Vec<pb::OfficialResponse> {
    let mut responses = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_official_responses(pb::ListOfficialResponsesRequest {
                parent: parent.into(),
                page_size: 100,
                page_token: token,
            })
            .await
            .unwrap_or_else(|s| panic!("list responses of {parent}: {s}"))
            .into_inner();
        responses.extend(page.official_responses);
        if page.next_page_token.is_empty() {
            return responses;
        }
        token = page.next_page_token;
    }
}

/// Everything a client can read: every claim with its responses and events,
/// rendered for comparison (before/after a restart or a refused request).
pub async fn snapshot(client: &mut Client) -> Vec<String> {
    let mut out = Vec::new();
    for claim in all_claims(client, pb::VerificationState::Unspecified).await {
        out.push(format!("{:?}", all_responses(client, &claim.name).await));
        out.push(format!("{:?}", all_events(client, &claim.name).await));
        out.push(format!("{claim:?}"));
    }
    out
}

/// Every claim, newest first, following page tokens.
pub async fn all_claims(client: &mut Client, state: pb::VerificationState) -> Vec<pb::Claim> {
    let mut claims = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_claims(pb::ListClaimsRequest {
                page_size: 1000,
                page_token: token,
                state: state as i32,
            })
            .await
            .expect("list claims")
            .into_inner();
        claims.extend(page.claims);
        if page.next_page_token.is_empty() {
            return claims;
        }
        token = page.next_page_token;
    }
}

/// Asserts a claim's events are numbered 1..=n with no gap.
pub fn assert_gapless(events: &[pb::ClaimEvent]) {
    let sequences: Vec<i64> = events.iter().map(|e| e.sequence).collect();
    let expected: Vec<i64> = (1..=events.len() as i64).collect();
    assert_eq!(
        sequences, expected,
        "event sequences must be gapless from 1"
    );
}

/// A file of the PDQ fixtures (tests/data/pdq), e.g. `bridge-mods/aaa-orig.jpg`.
pub fn pdq_fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/pdq")).join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `sample_claim(text)` about the image `content` (bytes only).
pub fn claim_with_content(text: &str, content: Vec<u8>) -> pb::Claim {
    let mut claim = sample_claim(text);
    claim.image = Some(pb::Image {
        content,
        ..Default::default()
    });
    claim
}

/// FindSimilarClaims, expected to succeed.
pub async fn find_similar(
    client: &mut Client,
    request: pb::FindSimilarClaimsRequest,
) -> pb::FindSimilarClaimsResponse {
    client
        .find_similar_claims(request)
        .await
        .expect("FindSimilarClaims")
        .into_inner()
}
