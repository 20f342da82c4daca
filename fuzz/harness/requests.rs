//! Request fuzzing harness, shared by the cargo-fuzz target
//! `fuzz/fuzz_targets/requests.rs` and the stable smoke test
//! `tests/request_fuzz_smoke.rs` (both include this file with `#[path]`).
//!
//! An input is one request: its first byte selects the request type (modulo
//! [`Kind::ALL`]'s length), the rest is the protobuf encoding of that request
//! (input that does not decode is skipped, as tonic would refuse it before
//! any handler runs). The request goes to the real `ClaimService` /
//! `AdminService` handlers, called in-process, over a real sled store in a
//! temporary directory (created once per process, on tmpfs when there is
//! one, and seeded with two claims, responses, a verdict and an API key so
//! that names like `claims/1` reach the deeper paths).
//!
//! What must hold for every input:
//! - no panic (the handlers', or a task's they spawn: the fuzz target aborts
//!   on any panic, the smoke test installs a hook that records them);
//! - the code is never INTERNAL or UNKNOWN: bad input is refused with a code
//!   that says what is wrong with it;
//! - INVALID_ARGUMENT names a field of the request (the message starts with
//!   the field's path, whose first part is a field of that request type);
//! - a call that fails changes nothing: no event is appended to the log, no
//!   claim is registered, and for AdminService no API key is created or
//!   revoked.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use photoclaim::api::admin::AdminApi;
use photoclaim::api::{ClaimApi, ImageOptions, WatchOptions};
use photoclaim::pb;
use photoclaim::pb::admin_service_server::AdminService;
use photoclaim::pb::claim_service_server::ClaimService;
use photoclaim::store::{EventFilter, SledStore, Store};
use prost::Message;
use tonic::codegen::tokio_stream::{Stream, StreamExt};
use tonic::{Code, Request, Status};

/// The request types with a single (unary) request message: every RPC of
/// `photoclaim.v1.ClaimService` and `AdminService`, the two server-streaming
/// ones included (their request is one message too).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    RegisterClaim,
    GetClaim,
    ListClaims,
    AttachOfficialResponse,
    ListOfficialResponses,
    GetVerificationStatus,
    SetVerdict,
    ListClaimEvents,
    FindSimilarClaims,
    WatchClaimEvents,
    ExportClaimReview,
    CreateApiKey,
    ListApiKeys,
    RevokeApiKey,
    ExportClaims,
    Backup,
    CheckVerdict,
}

impl Kind {
    /// Every kind, in selector order: selector byte `b` is `ALL[b % len]`.
    pub const ALL: [Kind; 17] = [
        Kind::RegisterClaim,
        Kind::GetClaim,
        Kind::ListClaims,
        Kind::AttachOfficialResponse,
        Kind::ListOfficialResponses,
        Kind::GetVerificationStatus,
        Kind::SetVerdict,
        Kind::ListClaimEvents,
        Kind::FindSimilarClaims,
        Kind::WatchClaimEvents,
        Kind::ExportClaimReview,
        Kind::CreateApiKey,
        Kind::ListApiKeys,
        Kind::RevokeApiKey,
        Kind::ExportClaims,
        Kind::Backup,
        Kind::CheckVerdict,
    ];

    pub fn from_selector(selector: u8) -> Kind {
        Kind::ALL[selector as usize % Kind::ALL.len()]
    }

    /// The selector byte of this kind.
    pub fn selector(self) -> u8 {
        Kind::ALL.iter().position(|k| *k == self).expect("listed") as u8
    }

    /// The request message's top-level fields: an INVALID_ARGUMENT must name
    /// one of them (or a path below one).
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            Kind::RegisterClaim => &["request_id", "claim"],
            Kind::GetClaim => &["name"],
            Kind::ListClaims => &["page_size", "page_token", "state"],
            Kind::AttachOfficialResponse => &["parent", "request_id", "official_response"],
            Kind::ListOfficialResponses => &["parent", "page_size", "page_token"],
            Kind::ListClaimEvents => &["claim", "page_size", "page_token"],
            Kind::GetVerificationStatus => &["claim"],
            Kind::ExportClaimReview => &["claim", "force"],
            Kind::CheckVerdict => &["claim", "claim_rating", "media_authenticity", "rationale"],
            Kind::SetVerdict => &[
                "claim",
                "claim_rating",
                "media_authenticity",
                "rationale",
                "etag",
            ],
            Kind::FindSimilarClaims => &[
                "content",
                "sha256",
                "pdq",
                "max_distance",
                "include_low_quality",
                "page_size",
                "same_orientation_only",
            ],
            Kind::WatchClaimEvents => &["claim", "event_types", "after_cursor", "start_at_end"],
            Kind::CreateApiKey => &["name", "role"],
            Kind::RevokeApiKey => &["name"],
            Kind::ListApiKeys | Kind::ExportClaims | Kind::Backup => &[],
        }
    }

    fn is_admin(self) -> bool {
        matches!(
            self,
            Kind::CreateApiKey
                | Kind::ListApiKeys
                | Kind::RevokeApiKey
                | Kind::ExportClaims
                | Kind::Backup
        )
    }
}

/// A fuzz input for `request` of `kind`.
pub fn input(kind: Kind, request: &impl Message) -> Vec<u8> {
    let mut bytes = vec![kind.selector()];
    request.encode(&mut bytes).expect("a Vec grows");
    bytes
}

/// What one input did: its kind, and the code it got (`None`: it did not
/// decode and was skipped).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub kind: Kind,
    pub code: Option<Code>,
}

/// Runs one input, panicking when a property does not hold. Empty input
/// does nothing (`None`).
pub fn run(data: &[u8]) -> Option<Outcome> {
    let (&selector, body) = data.split_first()?;
    let kind = Kind::from_selector(selector);
    let harness = harness();
    let code = harness.runtime.block_on(harness.call(kind, body));
    Some(Outcome { kind, code })
}

/// The service and its store, made once per process.
pub struct Harness {
    runtime: tokio::runtime::Runtime,
    store: Arc<SledStore>,
    claims: ClaimApi<SledStore>,
    admin: AdminApi<SledStore>,
    /// Kept so that watch streams see a live shutdown signal that never fires.
    _stopping: tokio::sync::watch::Sender<bool>,
    dir: PathBuf,
    /// Log position up to which every event has been seen.
    seen_log: AtomicU64,
}

static HARNESS: OnceLock<Harness> = OnceLock::new();

/// The process's harness, made on first use.
pub fn harness() -> &'static Harness {
    HARNESS.get_or_init(Harness::new)
}

/// What a failing call must leave as it was.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    newest_claim: Option<u64>,
    /// Debug rendering of every API key (only for AdminService calls).
    keys: Option<String>,
}

const DIR_PREFIX: &str = "photoclaim-fuzz-requests-";

impl Harness {
    fn new() -> Harness {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let base = Path::new("/dev/shm");
        let base = if base.is_dir() {
            base.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        remove_stale_dirs(&base);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = base.join(format!("{DIR_PREFIX}{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the store's directory");
        let store = {
            let _entered = runtime.enter();
            Arc::new(SledStore::open_with_cache(&dir, 64 << 20).expect("open the store"))
        };
        let (stopping, stopping_rx) = tokio::sync::watch::channel(false);
        let claims = ClaimApi::with_images(
            store.clone(),
            ImageOptions {
                max_image_bytes: 1 << 20,
                default_max_distance: 31,
            },
        )
        .with_watch(
            WatchOptions {
                buffer: 16,
                stall_timeout: Duration::from_secs(1),
                max_streams: 64,
                ..WatchOptions::default()
            },
            stopping_rx,
        );
        let admin = AdminApi::new(store.clone());
        let harness = Harness {
            runtime,
            store,
            claims,
            admin,
            _stopping: stopping,
            dir,
            seen_log: AtomicU64::new(0),
        };
        harness.runtime.block_on(harness.seed());
        harness
    }

    /// The store's directory (the smoke test removes it when done).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// claims/1: an image with a SHA-256 and a PDQ hash, two responses (the
    /// second answering the first), a verdict. claims/2: unverified, same
    /// image. An API key named `fuzz-seed`.
    async fn seed(&self) {
        let claim = |text: &str| pb::Claim {
            claim_text: text.into(),
            claimant: "social media posts".into(),
            language: "en".into(),
            appearance_urls: vec!["https://example.org/post/1".into()],
            tags: vec!["seed".into()],
            image: Some(pb::Image {
                source_url: "https://example.org/photo.jpg".into(),
                sha256: format!("{:064x}", 7),
                pdq: format!("{:064x}", 0x1234_5678_9abc_def0_u64),
                ..Default::default()
            }),
            ..Default::default()
        };
        for (i, text) in ["seeded claim one", "seeded claim two"].iter().enumerate() {
            let request = pb::RegisterClaimRequest {
                request_id: format!("seed-claim-{i}"),
                claim: Some(claim(text)),
                same_orientation_only: false,
            };
            self.claims
                .register_claim(Request::new(request))
                .await
                .expect("seed a claim");
        }
        let response = |stance: pb::Stance, in_reply_to: &str| pb::OfficialResponse {
            responder: Some(pb::Responder {
                organization: "Ministry of Examples".into(),
                role: pb::ResponderRole::Government as i32,
                ..Default::default()
            }),
            kind: pb::ResponseKind::Statement as i32,
            stance: stance as i32,
            text: "A statement.".into(),
            language: "en".into(),
            in_reply_to: in_reply_to.into(),
            ..Default::default()
        };
        for (i, (stance, in_reply_to)) in [
            (pb::Stance::Refutes, ""),
            (pb::Stance::Supports, "claims/1/officialResponses/1"),
        ]
        .into_iter()
        .enumerate()
        {
            let request = pb::AttachOfficialResponseRequest {
                parent: "claims/1".into(),
                request_id: format!("seed-response-{i}"),
                official_response: Some(response(stance, in_reply_to)),
            };
            self.claims
                .attach_official_response(Request::new(request))
                .await
                .expect("seed a response");
        }
        let verdict = pb::SetVerdictRequest {
            claim: "claims/1".into(),
            claim_rating: pb::ClaimRating::False as i32,
            media_authenticity: pb::MediaAuthenticity::Decontextualized as i32,
            rationale: "seeded".into(),
            etag: String::new(),
        };
        self.claims
            .set_verdict(Request::new(verdict))
            .await
            .expect("seed a verdict");
        let key = pb::CreateApiKeyRequest {
            name: "fuzz-seed".into(),
            role: pb::Role::Reader as i32,
        };
        self.admin
            .create_api_key(Request::new(key))
            .await
            .expect("seed an API key");
    }

    /// Events appended to the log after everything seen so far.
    async fn new_events(&self) -> Vec<u64> {
        let after = self.seen_log.load(Ordering::Relaxed);
        let batch = self
            .store
            .log_events(after, u64::MAX, &EventFilter::default(), 10_000)
            .await
            .expect("read the event log");
        batch.events.iter().map(|e| e.log_position).collect()
    }

    async fn snapshot(&self, kind: Kind) -> Snapshot {
        let newest = self
            .store
            .list_claims(None, None, 1)
            .await
            .expect("list claims");
        let keys = if kind.is_admin() {
            Some(format!(
                "{:?}",
                self.store.list_keys().await.expect("list keys")
            ))
        } else {
            None
        };
        Snapshot {
            newest_claim: newest.items.first().map(|v| v.claim.id),
            keys,
        }
    }

    /// Decodes and runs one request; checks the properties; returns the code.
    async fn call(&self, kind: Kind, body: &[u8]) -> Option<Code> {
        // Whatever earlier (successful) calls appended counts as seen.
        if let Some(&last) = self.new_events().await.last() {
            self.seen_log.store(last, Ordering::Relaxed);
        }
        let before = self.snapshot(kind).await;
        let result = self.dispatch(kind, body).await?;
        let (code, message) = match &result {
            Ok(()) => (Code::Ok, String::new()),
            Err(status) => (status.code(), status.message().to_string()),
        };
        assert!(
            !matches!(code, Code::Internal | Code::Unknown),
            "{kind:?} answered {code:?}: {message}"
        );
        if code == Code::InvalidArgument {
            check_names_a_field(kind, &message);
        }
        if code != Code::Ok {
            let appended = self.new_events().await;
            assert!(
                appended.is_empty(),
                "{kind:?} failed with {code:?} ({message}) but appended events at log positions {appended:?}"
            );
            let after = self.snapshot(kind).await;
            assert_eq!(
                before, after,
                "{kind:?} failed with {code:?} ({message}) but changed the store"
            );
        }
        Some(code)
    }

    /// The handler's answer; `None` if the body does not decode.
    async fn dispatch(&self, kind: Kind, body: &[u8]) -> Option<Result<(), Status>> {
        fn decode<M: Message + Default>(body: &[u8]) -> Option<Request<M>> {
            M::decode(body).ok().map(Request::new)
        }
        let claims = &self.claims;
        let admin = &self.admin;
        let result = match kind {
            Kind::RegisterClaim => claims.register_claim(decode(body)?).await.map(drop),
            Kind::GetClaim => claims.get_claim(decode(body)?).await.map(drop),
            Kind::ListClaims => claims.list_claims(decode(body)?).await.map(drop),
            Kind::AttachOfficialResponse => claims
                .attach_official_response(decode(body)?)
                .await
                .map(drop),
            Kind::ListOfficialResponses => claims
                .list_official_responses(decode(body)?)
                .await
                .map(drop),
            Kind::GetVerificationStatus => claims
                .get_verification_status(decode(body)?)
                .await
                .map(drop),
            Kind::SetVerdict => claims.set_verdict(decode(body)?).await.map(drop),
            Kind::ListClaimEvents => claims.list_claim_events(decode(body)?).await.map(drop),
            Kind::FindSimilarClaims => claims.find_similar_claims(decode(body)?).await.map(drop),
            Kind::WatchClaimEvents => match claims.watch_claim_events(decode(body)?).await {
                Ok(stream) => drain(stream.into_inner()).await,
                Err(status) => Err(status),
            },
            Kind::ExportClaimReview => claims.export_claim_review(decode(body)?).await.map(drop),
            Kind::CheckVerdict => claims.check_verdict(decode(body)?).await.map(drop),
            Kind::CreateApiKey => admin.create_api_key(decode(body)?).await.map(drop),
            Kind::ListApiKeys => admin.list_api_keys(decode(body)?).await.map(drop),
            Kind::RevokeApiKey => admin.revoke_api_key(decode(body)?).await.map(drop),
            Kind::ExportClaims => match admin.export_claims(decode(body)?).await {
                Ok(stream) => drain(stream.into_inner()).await,
                Err(status) => Err(status),
            },
            Kind::Backup => match admin.backup(decode(body)?).await {
                Ok(stream) => drain(stream.into_inner()).await,
                Err(status) => Err(status),
            },
        };
        Some(result)
    }
}

/// Reads the first few items of a stream, as far as they are ready once the
/// tasks behind it have had a turn (a watch stream waits for live events
/// forever); an item that is an error counts as the call's status.
async fn drain<T>(stream: impl Stream<Item = Result<T, Status>>) -> Result<(), Status> {
    let mut stream = std::pin::pin!(stream);
    for _ in 0..4 {
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
        match tokio::time::timeout(Duration::ZERO, stream.next()).await {
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(status))) => return Err(status),
            Ok(None) | Err(_) => break,
        }
    }
    Ok(())
}

/// INVALID_ARGUMENT's message is `field.path: description[; ...]`; the
/// path must start with a field of the request.
fn check_names_a_field(kind: Kind, message: &str) {
    let path = message.split(": ").next().unwrap_or_default();
    let well_formed = !path.is_empty()
        && path
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.[]".contains(&b));
    let top = path.split(['.', '[']).next().unwrap_or_default();
    assert!(
        well_formed && kind.fields().contains(&top),
        "{kind:?}: INVALID_ARGUMENT does not name a field of the request: {message:?}"
    );
}

/// Removes store directories left by earlier processes that have exited
/// (libFuzzer ends the process without running destructors).
fn remove_stale_dirs(base: &Path) {
    if !Path::new("/proc/self").exists() {
        return; // No way to tell whether a process is alive.
    }
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(DIR_PREFIX)) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or_default();
        let alive = Path::new("/proc").join(pid).exists();
        if !alive && !pid.is_empty() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
