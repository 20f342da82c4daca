//! `photoclaim bench`: a closed-loop load generator against a running server.
//!
//! (About 850 lines, kept whole on purpose: one load generator whose
//! workers, latency recorder, RPC mix and report share private state; its
//! unit tests are at the end.)
//!
//! `connections` HTTP/2 connections each carry `in_flight` workers; a worker
//! sends one request, waits for its reply, checks its gRPC status and sends
//! the next, until the phase ends. Every request uses its own keys: a fresh
//! `request_id`, SHA-256 and PDQ hash for registrations and attachments, a
//! random claim for reads and verdicts, a perturbed hash of a stored image
//! for similarity searches.
//!
//! A run has up to two phases with the same connections and concurrency:
//! first `grpc.health.v1.Health/Check` alone (the baseline: the cost of a
//! gRPC round trip through this server's stack on this machine), then the
//! RPC mix. Each phase warms up for `warmup`, then counts for `duration`:
//! only replies that arrive inside the counted window are counted, only OK
//! replies count as throughput and latency, and every other status is
//! counted as an error by code.
//!
//! Replies are skimmed, not built: the bench reads each reply as a message
//! with no fields, which checks that it is well-formed protobuf but
//! allocates nothing for its contents. A `FindSimilarClaims` reply holds
//! about 20 whole claims, and building them took a third of the machine's
//! CPU on the two cores the server shares with the bench.
//! `--decode-replies` builds every reply into its message type instead, as a
//! desk client would.
//!
//! The bench writes: registrations, attachments and verdicts change the
//! server's data. Point it at a scratch server, never at a desk's archive.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

use crate::cli::generate::Rng;
use crate::client::ServerTarget;
use crate::pb;
use crate::pb::claim_service_client::ClaimServiceClient;

/// The RPCs the bench can send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rpc {
    /// `grpc.health.v1.Health/Check`.
    Health,
    /// `RegisterClaim`, a new claim with a new image each time.
    Register,
    /// `GetClaim` of a random claim.
    Get,
    /// `GetVerificationStatus` of a random claim.
    Status,
    /// `AttachOfficialResponse` to a random claim.
    Attach,
    /// `SetVerdict` (unconditional) on a random claim.
    Verdict,
    /// `RegisterClaim` sending image bytes (one of 64 generated 640×480
    /// JPEGs): the server decodes, hashes and reads Content Credentials.
    RegisterImage,
    /// `FindSimilarClaims` by the PDQ hash of a stored image, a few bits
    /// changed: all eight orientations (the default).
    Similar,
    /// The same with `same_orientation_only`: the query's orientation alone.
    SimilarSameOrientation,
    /// `SearchClaims` for 1-3 words: place names (each in about an eighth
    /// of a generated archive) and claimant handles (a few hundred claims
    /// each at 1M), so queries range from broad to narrow.
    Search,
    /// `SearchClaims` for 1-3 words that together match few claims: a
    /// claim's number, a claimant handle with a place, a number with a
    /// place and a word of the claim texts.
    SearchNarrow,
}

impl Rpc {
    /// Every RPC, in report order.
    pub const ALL: [Rpc; 11] = [
        Rpc::Health,
        Rpc::Register,
        Rpc::RegisterImage,
        Rpc::Get,
        Rpc::Status,
        Rpc::Attach,
        Rpc::Verdict,
        Rpc::Similar,
        Rpc::SimilarSameOrientation,
        Rpc::Search,
        Rpc::SearchNarrow,
    ];

    /// The name used in `--mix` and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Rpc::Health => "health",
            Rpc::Register => "register",
            Rpc::RegisterImage => "register-image",
            Rpc::Get => "get",
            Rpc::Status => "status",
            Rpc::Attach => "attach",
            Rpc::Verdict => "verdict",
            Rpc::Similar => "similar",
            Rpc::SimilarSameOrientation => "similar-same-orientation",
            Rpc::Search => "search",
            Rpc::SearchNarrow => "search-narrow",
        }
    }

    /// Whether the RPC needs claims on the server to work on.
    fn needs_claims(self) -> bool {
        !matches!(self, Rpc::Health | Rpc::Register | Rpc::RegisterImage)
    }
}

/// Parses `--mix`: `status`, or weights such as `register=1,status=8`.
pub fn parse_mix(text: &str) -> Result<Vec<(Rpc, u32)>, String> {
    let mut mix: Vec<(Rpc, u32)> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, weight) = match part.split_once('=') {
            Some((name, weight)) => {
                let weight: u32 = weight.trim().parse().map_err(|_| {
                    format!("--mix: weight of {name:?} must be a whole number, got {weight:?}")
                })?;
                (name.trim(), weight)
            }
            None => (part, 1),
        };
        let rpc = Rpc::ALL
            .into_iter()
            .find(|r| r.name() == name)
            .ok_or_else(|| {
                format!(
                    "--mix: unknown RPC {name:?}; use {}",
                    Rpc::ALL.map(Rpc::name).join(", ")
                )
            })?;
        if mix.iter().any(|(r, _)| *r == rpc) {
            return Err(format!("--mix: {name:?} is given twice"));
        }
        if weight > 0 {
            mix.push((rpc, weight));
        }
    }
    if mix.is_empty() {
        return Err("--mix: name at least one RPC with a weight above 0".into());
    }
    Ok(mix)
}

/// How to load the server.
#[derive(Clone, Debug)]
pub struct Config {
    /// HTTP/2 connections.
    pub connections: usize,
    /// Requests in flight on each connection.
    pub in_flight: usize,
    /// Counted time of each phase.
    pub duration: Duration,
    /// Uncounted time before it.
    pub warmup: Duration,
    /// RPCs and their weights.
    pub mix: Vec<(Rpc, u32)>,
    /// Measure the health-check baseline first.
    pub baseline: bool,
    /// Register claims first until the server holds at least this many (when
    /// the mix reads or changes claims).
    pub prepare: u64,
    /// Seed of the request choices.
    pub seed: u64,
    /// Build every reply into its message type (default: skim it, see the
    /// module documentation).
    pub decode_replies: bool,
}

/// One RPC's figures in one phase.
#[derive(Clone, Debug, Default)]
pub struct RpcFigures {
    /// OK replies in the counted window.
    pub ok: u64,
    /// Other replies, by gRPC code name.
    pub errors: BTreeMap<String, u64>,
    /// OK replies per second.
    pub per_second: f64,
    /// Latency percentiles of OK replies, in milliseconds.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

impl RpcFigures {
    /// All errors.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// One phase's figures.
#[derive(Clone, Debug)]
pub struct Phase {
    /// Counted seconds.
    pub seconds: f64,
    /// Figures per RPC sent in the phase.
    pub rpcs: BTreeMap<Rpc, RpcFigures>,
}

/// What a run measured.
#[derive(Clone, Debug)]
pub struct Report {
    /// Claims the server held when the mix started (highest claim id).
    pub claims: u64,
    /// Claims the bench registered first (`prepare`).
    pub prepared: u64,
    /// The health-check phase.
    pub baseline: Option<Phase>,
    /// The mix phase.
    pub mix: Phase,
}

impl Report {
    /// `rpc`'s throughput in the mix as a fraction of the health-check
    /// throughput (None without a baseline).
    pub fn ratio(&self, rpc: Rpc) -> Option<f64> {
        let health = self.baseline.as_ref()?.rpcs.get(&Rpc::Health)?.per_second;
        let own = self.mix.rpcs.get(&rpc)?.per_second;
        (health > 0.0).then(|| own / health)
    }

    /// Error replies in all phases.
    pub fn error_count(&self) -> u64 {
        self.baseline
            .iter()
            .chain([&self.mix])
            .flat_map(|p| p.rpcs.values())
            .map(RpcFigures::error_count)
            .sum()
    }

    /// The report as JSON (for scripts and BENCHMARKS.md).
    pub fn to_json(&self, config: &Config) -> serde_json::Value {
        let phase = |p: &Phase| {
            let rpcs: serde_json::Map<String, serde_json::Value> = p
                .rpcs
                .iter()
                .map(|(rpc, f)| {
                    (
                        rpc.name().to_string(),
                        serde_json::json!({
                            "ok": f.ok,
                            "errors": f.errors,
                            "per_second": f.per_second,
                            "ratio_to_health": self.ratio(*rpc),
                            "p50_ms": f.p50_ms,
                            "p90_ms": f.p90_ms,
                            "p99_ms": f.p99_ms,
                            "max_ms": f.max_ms,
                        }),
                    )
                })
                .collect();
            serde_json::json!({ "seconds": p.seconds, "rpcs": rpcs })
        };
        serde_json::json!({
            "connections": config.connections,
            "in_flight_per_connection": config.in_flight,
            "replies_decoded": config.decode_replies,
            "claims": self.claims,
            "prepared": self.prepared,
            "baseline": self.baseline.as_ref().map(phase),
            "mix": phase(&self.mix),
        })
    }

    /// The report as a table.
    pub fn to_table(&self) -> String {
        let mut out = format!(
            "{:<9} {:>9} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8}  errors\n",
            "rpc", "ok", "req/s", "x health", "p50 ms", "p90 ms", "p99 ms", "max ms"
        );
        let mut row = |phase: &str, rpc: Rpc, f: &RpcFigures, ratio: Option<f64>| {
            let errors = if f.errors.is_empty() {
                "0".to_string()
            } else {
                f.errors
                    .iter()
                    .map(|(code, n)| format!("{code}={n}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            out.push_str(&format!(
                "{:<9} {:>9} {:>10.0} {:>8} {:>8.2} {:>8.2} {:>8.2} {:>8.2}  {errors}{phase}\n",
                rpc.name(),
                f.ok,
                f.per_second,
                ratio.map_or("-".into(), |r| format!("{r:.2}")),
                f.p50_ms,
                f.p90_ms,
                f.p99_ms,
                f.max_ms,
            ));
        };
        if let Some(baseline) = &self.baseline {
            for (rpc, f) in &baseline.rpcs {
                row(" (baseline)", *rpc, f, Some(1.0));
            }
        }
        for (rpc, f) in &self.mix.rpcs {
            row("", *rpc, f, self.ratio(*rpc));
        }
        out
    }
}

/// A bench failure before or between phases.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Bad settings.
    #[error("{0}")]
    Settings(String),
    /// The server could not be reached or refused the preparation.
    #[error("{0}")]
    Server(String),
}

/// What the workers share: where to send and what exists.
struct Shared {
    target: ServerTarget,
    /// Claims `claims/1..=max_id` exist.
    max_id: u64,
    /// PDQ hashes of stored images, for similarity queries.
    pdqs: Vec<[u8; 32]>,
    /// Distinguishes this run's request ids from other runs'.
    run: String,
    /// Images `register-image` sends.
    images: Vec<Vec<u8>>,
}

/// One worker's client, on its connection.
struct Clients {
    grpc: tonic::client::Grpc<Channel>,
    /// `--decode-replies`.
    decode: bool,
}

/// A reply read without being built: a message that declares no fields, so
/// decoding reads each field's tag and length, checks them and skips the
/// field.
#[derive(Clone, PartialEq, prost::Message)]
struct Skimmed {}

impl Clients {
    /// Calls the unary method at `path` and waits for its status; the reply
    /// is decoded into `R` with `--decode-replies`, else as [`Skimmed`].
    async fn call<Q, R>(
        &mut self,
        path: &'static str,
        request: tonic::Request<Q>,
    ) -> Result<(), tonic::Status>
    where
        Q: prost::Message + Send + Sync + 'static,
        R: prost::Message + Default + Send + Sync + 'static,
    {
        self.grpc
            .ready()
            .await
            .map_err(|e| tonic::Status::unknown(format!("connection not ready: {e}")))?;
        let path = http::uri::PathAndQuery::from_static(path);
        let codec = tonic_prost::ProstCodec::<Q, R>::default();
        if self.decode {
            self.grpc.unary(request, path, codec).await?;
        } else {
            let codec = tonic_prost::ProstCodec::<Q, Skimmed>::default();
            self.grpc.unary(request, path, codec).await?;
        }
        Ok(())
    }
}

/// A worker's record of one phase: latencies (µs) of OK replies and error
/// codes, per RPC.
#[derive(Default)]
struct Tally {
    latencies: BTreeMap<Rpc, Vec<u32>>,
    errors: BTreeMap<Rpc, BTreeMap<String, u64>>,
}

/// A 640×480 JPEG of blocks of noise, distinct for each seed.
fn bench_jpeg(seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed, 0x1a6e);
    let blocks: Vec<[u8; 3]> = (0..(40 * 30))
        .map(|_| {
            let b = rng.bytes();
            [b[0], b[1], b[2]]
        })
        .collect();
    let picture = image::RgbImage::from_fn(640, 480, |x, y| {
        let [r, g, b] = blocks[(y / 16 * 40 + x / 16) as usize];
        image::Rgb([r ^ (x as u8), g, b ^ (y as u8)])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    // Encoding an in-memory picture cannot fail.
    let _ = image::DynamicImage::ImageRgb8(picture).write_to(&mut out, image::ImageFormat::Jpeg);
    out.into_inner()
}

fn new_claim(rng: &mut Rng, run: &str, n: u64) -> pb::Claim {
    pb::Claim {
        // Words from a large vocabulary, so that claims rarely match each
        // other's text (RegisterClaim's "checked before?" list stays short,
        // as for most real registrations).
        claim_text: format!(
            "Bench {run}-{n}: w{} w{} w{} w{} w{}",
            rng.below(20_000),
            rng.below(20_000),
            rng.below(20_000),
            rng.below(20_000),
            rng.below(20_000)
        ),
        claimant: "bench".into(),
        language: "en".into(),
        tags: vec!["bench".into()],
        image: Some(pb::Image {
            source_url: format!("https://bench.example/{run}/{n}.jpg"),
            sha256: hex::encode(rng.bytes()),
            pdq: hex::encode(rng.bytes()),
            pdq_quality: 90,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn new_response(rng: &mut Rng) -> pb::OfficialResponse {
    pb::OfficialResponse {
        responder: Some(pb::Responder {
            organization: "United Nations, Office of the Spokesperson".into(),
            role: pb::ResponderRole::InternationalOrganization as i32,
            ..Default::default()
        }),
        kind: pb::ResponseKind::Statement as i32,
        stance: if rng.below(2) == 0 {
            pb::Stance::Refutes
        } else {
            pb::Stance::AddsContext
        } as i32,
        text: "The soldiers in the photos are not deployed under a UN mandate.".into(),
        language: "en".into(),
        ..Default::default()
    }
}

/// A uniformly random existing claim's name.
fn random_claim(shared: &Shared, rng: &mut Rng) -> String {
    format!("claims/{}", 1 + rng.below(shared.max_id))
}

/// Sends one `rpc`; Err carries the gRPC code's name.
async fn send(
    rpc: Rpc,
    clients: &mut Clients,
    shared: &Shared,
    rng: &mut Rng,
    worker: usize,
    n: u64,
) -> Result<(), String> {
    let target = &shared.target;
    let code = |s: tonic::Status| format!("{:?}", s.code());
    let request_id = || format!("bench-{}-{worker}-{n}", shared.run);
    match rpc {
        Rpc::Health => {
            let request = target.request(HealthCheckRequest {
                service: String::new(),
            })?;
            clients
                .call::<_, HealthCheckResponse>("/grpc.health.v1.Health/Check", request)
                .await
                .map_err(code)?;
        }
        Rpc::Register | Rpc::RegisterImage => {
            let mut claim = new_claim(rng, &shared.run, n * 4096 + worker as u64);
            if let (Rpc::RegisterImage, Some(image)) = (rpc, claim.image.as_mut()) {
                // The bytes instead of the hashes: the server computes them.
                image.sha256.clear();
                image.pdq.clear();
                image.pdq_quality = 0;
                let k = rng.below(shared.images.len() as u64) as usize;
                image.content.clone_from(&shared.images[k]);
            }
            let request = target.request(pb::RegisterClaimRequest {
                request_id: request_id(),
                claim: Some(claim),
                same_orientation_only: false,
            })?;
            clients
                .call::<_, pb::RegisterClaimResponse>(
                    "/photoclaim.v1.ClaimService/RegisterClaim",
                    request,
                )
                .await
                .map_err(code)?;
        }
        Rpc::Get => {
            let name = random_claim(shared, rng);
            let request = target.request(pb::GetClaimRequest { name })?;
            clients
                .call::<_, pb::Claim>("/photoclaim.v1.ClaimService/GetClaim", request)
                .await
                .map_err(code)?;
        }
        Rpc::Status => {
            let claim = random_claim(shared, rng);
            let request = target.request(pb::GetVerificationStatusRequest {
                claim,
                ..Default::default()
            })?;
            clients
                .call::<_, pb::VerificationStatus>(
                    "/photoclaim.v1.ClaimService/GetVerificationStatus",
                    request,
                )
                .await
                .map_err(code)?;
        }
        Rpc::Attach => {
            let parent = random_claim(shared, rng);
            let request = target.request(pb::AttachOfficialResponseRequest {
                parent,
                request_id: request_id(),
                official_response: Some(new_response(rng)),
            })?;
            clients
                .call::<_, pb::OfficialResponse>(
                    "/photoclaim.v1.ClaimService/AttachOfficialResponse",
                    request,
                )
                .await
                .map_err(code)?;
        }
        Rpc::Verdict => {
            let claim = random_claim(shared, rng);
            let (claim_rating, media) = if rng.below(2) == 0 {
                (
                    pb::ClaimRating::False,
                    pb::MediaAuthenticity::Decontextualized,
                )
            } else {
                (pb::ClaimRating::Misleading, pb::MediaAuthenticity::Original)
            };
            let request = target.request(pb::SetVerdictRequest {
                claim,
                claim_rating: claim_rating as i32,
                media_authenticity: media as i32,
                rationale: format!("Bench verdict {n}: the unit's own statement."),
                etag: String::new(),
            })?;
            clients
                .call::<_, pb::VerificationStatus>(
                    "/photoclaim.v1.ClaimService/SetVerdict",
                    request,
                )
                .await
                .map_err(code)?;
        }
        Rpc::Similar | Rpc::SimilarSameOrientation => {
            let mut pdq = shared.pdqs[rng.below(shared.pdqs.len() as u64) as usize];
            for _ in 0..rng.below(9) {
                let bit = rng.below(256) as usize;
                pdq[bit / 8] ^= 1 << (bit % 8);
            }
            let request = target.request(pb::FindSimilarClaimsRequest {
                pdq: hex::encode(pdq),
                same_orientation_only: rpc == Rpc::SimilarSameOrientation,
                ..Default::default()
            })?;
            clients
                .call::<_, pb::FindSimilarClaimsResponse>(
                    "/photoclaim.v1.ClaimService/FindSimilarClaims",
                    request,
                )
                .await
                .map_err(code)?;
        }
        Rpc::Search | Rpc::SearchNarrow => {
            const PLACES: [&str; 8] = [
                "Almaty", "Bamako", "Goma", "Juba", "Kabul", "Mariupol", "Naqoura", "Tbilisi",
            ];
            let place = PLACES[rng.below(8) as usize];
            let handle = format!("account-{}", rng.below(5000));
            let number = rng.below(shared.max_id.max(1));
            let words: Vec<String> = match (rpc, rng.below(3)) {
                (Rpc::Search, n) => (0..=n)
                    .map(|_| match rng.below(2) {
                        0 => PLACES[rng.below(8) as usize].to_string(),
                        _ => format!("account-{}", rng.below(5000)),
                    })
                    .collect(),
                (_, 0) => vec![number.to_string()],
                (_, 1) => vec![handle, place.to_string()],
                (_, _) => vec![number.to_string(), place.to_string(), "photos".into()],
            };
            let request = target.request(pb::SearchClaimsRequest {
                query: words.join(" "),
                ..Default::default()
            })?;
            clients
                .call::<_, pb::SearchClaimsResponse>(
                    "/photoclaim.v1.ClaimService/SearchClaims",
                    request,
                )
                .await
                .map_err(code)?;
        }
    }
    Ok(())
}

/// Picks an RPC by weight.
fn pick(mix: &[(Rpc, u32)], total: u64, rng: &mut Rng) -> Rpc {
    let mut r = rng.below(total);
    for (rpc, weight) in mix {
        if r < u64::from(*weight) {
            return *rpc;
        }
        r -= u64::from(*weight);
    }
    mix[0].0
}

async fn connect(shared: &Shared, connections: usize) -> Result<Vec<Channel>, BenchError> {
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        // A Channel per connect() is its own HTTP/2 connection.
        channels.push(
            shared
                .target
                .connect()
                .await
                .map_err(|e| BenchError::Server(e.to_string()))?,
        );
    }
    Ok(channels)
}

/// Runs one phase: the mix on every worker for warm-up plus duration.
async fn phase(
    shared: Arc<Shared>,
    channels: &[Channel],
    config: &Config,
    mix: Vec<(Rpc, u32)>,
    salt: u64,
) -> Phase {
    let start = Instant::now();
    let counted_from = start + config.warmup;
    let end = counted_from + config.duration;
    let total: u64 = mix.iter().map(|(_, w)| u64::from(*w)).sum();
    let mix = Arc::new(mix);
    let mut tasks = tokio::task::JoinSet::new();
    for (c, channel) in channels.iter().enumerate() {
        for slot in 0..config.in_flight {
            let worker = c * config.in_flight + slot;
            let shared = shared.clone();
            let mix = mix.clone();
            let mut clients = Clients {
                grpc: tonic::client::Grpc::new(channel.clone()),
                decode: config.decode_replies,
            };
            let mut rng = Rng::new(
                config.seed ^ salt ^ (worker as u64).wrapping_mul(0xA24B_AED4_963E_E407),
                0,
            );
            tasks.spawn(async move {
                let mut tally = Tally::default();
                let mut n = salt << 32;
                while Instant::now() < end {
                    n += 1;
                    let rpc = pick(&mix, total, &mut rng);
                    let sent = Instant::now();
                    let outcome = send(rpc, &mut clients, &shared, &mut rng, worker, n).await;
                    let done = Instant::now();
                    if sent < counted_from || done > end {
                        continue;
                    }
                    match outcome {
                        Ok(()) => tally
                            .latencies
                            .entry(rpc)
                            .or_default()
                            .push(u32::try_from((done - sent).as_micros()).unwrap_or(u32::MAX)),
                        Err(code) => {
                            *tally
                                .errors
                                .entry(rpc)
                                .or_default()
                                .entry(code)
                                .or_default() += 1
                        }
                    }
                }
                tally
            });
        }
    }
    let mut latencies: BTreeMap<Rpc, Vec<u32>> = BTreeMap::new();
    let mut errors: BTreeMap<Rpc, BTreeMap<String, u64>> = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let Ok(tally) = joined else { continue };
        for (rpc, mut l) in tally.latencies {
            latencies.entry(rpc).or_default().append(&mut l);
        }
        for (rpc, codes) in tally.errors {
            for (code, n) in codes {
                *errors.entry(rpc).or_default().entry(code).or_default() += n;
            }
        }
    }
    let seconds = config.duration.as_secs_f64();
    let mut rpcs = BTreeMap::new();
    for (rpc, _) in mix.iter() {
        let mut l = latencies.remove(rpc).unwrap_or_default();
        l.sort_unstable();
        let at = |q: f64| -> f64 {
            if l.is_empty() {
                return 0.0;
            }
            let rank = ((q * l.len() as f64).ceil() as usize).clamp(1, l.len());
            f64::from(l[rank - 1]) / 1000.0
        };
        rpcs.insert(
            *rpc,
            RpcFigures {
                ok: l.len() as u64,
                errors: errors.remove(rpc).unwrap_or_default(),
                per_second: l.len() as f64 / seconds,
                p50_ms: at(0.50),
                p90_ms: at(0.90),
                p99_ms: at(0.99),
                max_ms: at(1.0),
            },
        );
    }
    Phase { seconds, rpcs }
}

/// The highest claim id on the server (0 when it holds none).
async fn highest_claim_id(
    target: &ServerTarget,
    client: &mut ClaimServiceClient<Channel>,
) -> Result<u64, BenchError> {
    let request = target
        .request(pb::ListClaimsRequest {
            page_size: 1,
            ..Default::default()
        })
        .map_err(BenchError::Settings)?;
    let reply = client
        .list_claims(request)
        .await
        .map_err(|s| BenchError::Server(format!("ListClaims: {:?}: {}", s.code(), s.message())))?
        .into_inner();
    Ok(match reply.claims.first() {
        Some(claim) => claim
            .name
            .strip_prefix("claims/")
            .and_then(|id| id.parse().ok())
            .ok_or_else(|| BenchError::Server(format!("unexpected claim name {:?}", claim.name)))?,
        None => 0,
    })
}

/// Registers claims until the server's highest id reaches `want`, 64 at a time.
async fn prepare(
    target: &ServerTarget,
    channel: &Channel,
    have: u64,
    want: u64,
    run: &str,
    seed: u64,
) -> Result<u64, BenchError> {
    let missing = want.saturating_sub(have);
    let mut tasks = tokio::task::JoinSet::new();
    let per_task = missing.div_ceil(64);
    for t in 0..64u64 {
        let count = per_task.min(missing.saturating_sub(t * per_task));
        if count == 0 {
            break;
        }
        let mut client = ClaimServiceClient::new(channel.clone());
        let target_request = |body| target.request(body);
        let mut rng = Rng::new(seed ^ 0x5EED ^ t.wrapping_mul(0x9E37_79B9), 0);
        let requests: Result<Vec<_>, String> = (0..count)
            .map(|i| {
                target_request(pb::RegisterClaimRequest {
                    request_id: format!("bench-{run}-prepare-{t}-{i}"),
                    claim: Some(new_claim(&mut rng, run, (t << 40) | i)),
                    ..Default::default()
                })
            })
            .collect();
        let requests = requests.map_err(BenchError::Settings)?;
        tasks.spawn(async move {
            for request in requests {
                client.register_claim(request).await.map_err(|s| {
                    BenchError::Server(format!(
                        "preparing claims: RegisterClaim: {:?}: {}",
                        s.code(),
                        s.message()
                    ))
                })?;
            }
            Ok::<_, BenchError>(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.map_err(|e| BenchError::Server(format!("preparing claims: {e}")))??;
    }
    Ok(missing)
}

/// PDQ hashes of up to 256 random stored claims.
async fn sample_pdqs(
    shared: &Shared,
    client: &mut ClaimServiceClient<Channel>,
    seed: u64,
) -> Result<Vec<[u8; 32]>, BenchError> {
    let mut rng = Rng::new(seed ^ 0x0DD5, 0);
    let mut pdqs = Vec::new();
    for _ in 0..256 {
        let name = random_claim(shared, &mut rng);
        let request = shared
            .target
            .request(pb::GetClaimRequest { name })
            .map_err(BenchError::Settings)?;
        let Ok(reply) = client.get_claim(request).await else {
            continue;
        };
        let pdq = reply.into_inner().image.map(|i| i.pdq).unwrap_or_default();
        if let Some(bytes) = crate::domain::pdq::Pdq::from_hex(&pdq).map(|p| p.0) {
            pdqs.push(bytes);
        }
    }
    if pdqs.is_empty() {
        // No stored image has a hash: search with random ones.
        pdqs.extend((0..256).map(|_| rng.bytes()));
    }
    Ok(pdqs)
}

/// How long after RegisterClaim answered a claim was first found by
/// SearchClaims, for `probes` claims registered one after another (each
/// with a word no other claim has, searched for every 2 ms): the search
/// index's freshness.
pub async fn search_lag(target: ServerTarget, probes: usize) -> Result<Vec<Duration>, BenchError> {
    let channel = target
        .connect()
        .await
        .map_err(|e| BenchError::Server(e.to_string()))?;
    let mut client = ClaimServiceClient::new(channel);
    let server = |s: tonic::Status| BenchError::Server(format!("{}: {}", s.code(), s.message()));
    let run = format!("{:x}", rand_u64());
    let mut lags = Vec::with_capacity(probes);
    for i in 0..probes {
        let word = format!("lagprobe{run}x{i}");
        let claim = pb::Claim {
            claim_text: format!("Search freshness probe {word}"),
            language: "en".into(),
            image: Some(pb::Image {
                source_url: format!("https://photos.example/lag/{word}.jpg"),
                ..Default::default()
            }),
            ..Default::default()
        };
        let request = target
            .request(pb::RegisterClaimRequest {
                request_id: word.clone(),
                claim: Some(claim),
                ..Default::default()
            })
            .map_err(BenchError::Settings)?;
        client.register_claim(request).await.map_err(server)?;
        let acknowledged = Instant::now();
        loop {
            let request = target
                .request(pb::SearchClaimsRequest {
                    query: word.clone(),
                    ..Default::default()
                })
                .map_err(BenchError::Settings)?;
            let found = match client.search_claims(request).await {
                Ok(reply) => reply.into_inner().total_size > 0,
                Err(s) if s.code() == tonic::Code::Unavailable => false,
                Err(s) => return Err(server(s)),
            };
            if found {
                lags.push(acknowledged.elapsed());
                break;
            }
            if acknowledged.elapsed() > Duration::from_secs(30) {
                return Err(BenchError::Server(format!(
                    "claim {word} was not searchable 30 s after it was acknowledged"
                )));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    lags.sort();
    Ok(lags)
}

fn rand_u64() -> u64 {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

/// Runs the bench against `target`; `progress` hears what it is doing.
pub async fn run(
    target: ServerTarget,
    config: &Config,
    progress: impl Fn(&str),
) -> Result<Report, BenchError> {
    if config.connections == 0 || config.in_flight == 0 {
        return Err(BenchError::Settings(
            "--connections and --in-flight must be at least 1".into(),
        ));
    }
    if config.duration.is_zero() {
        return Err(BenchError::Settings("--duration must be above 0".into()));
    }
    // A token that cannot be a header value is a setting to fix, not an
    // error to count on every request.
    target.request(()).map_err(BenchError::Settings)?;
    let run_id = {
        let mut bytes = [0u8; 6];
        getrandom::fill(&mut bytes)
            .map_err(|e| BenchError::Settings(format!("no randomness: {e}")))?;
        hex::encode(bytes)
    };
    let first = target
        .connect()
        .await
        .map_err(|e| BenchError::Server(e.to_string()))?;
    let mut client = ClaimServiceClient::new(first.clone());
    let needs_claims = config.mix.iter().any(|(rpc, _)| rpc.needs_claims());
    let mut max_id = if needs_claims {
        highest_claim_id(&target, &mut client).await?
    } else {
        0
    };
    let mut prepared = 0;
    if needs_claims && max_id < config.prepare.max(1) {
        progress(&format!(
            "registering {} claims first (the server holds {max_id})",
            config.prepare.max(1) - max_id
        ));
        prepared = prepare(
            &target,
            &first,
            max_id,
            config.prepare.max(1),
            &run_id,
            config.seed,
        )
        .await?;
        max_id = highest_claim_id(&target, &mut client).await?;
    }
    let mut shared = Shared {
        target,
        max_id,
        pdqs: Vec::new(),
        run: run_id,
        images: Vec::new(),
    };
    if config.mix.iter().any(|(rpc, _)| *rpc == Rpc::RegisterImage) {
        shared.images = (0..64).map(|i| bench_jpeg(config.seed ^ i)).collect();
    }
    if config
        .mix
        .iter()
        .any(|(rpc, _)| matches!(rpc, Rpc::Similar | Rpc::SimilarSameOrientation))
    {
        shared.pdqs = sample_pdqs(&shared, &mut client, config.seed).await?;
    }
    let shared = Arc::new(shared);
    let channels = connect(&shared, config.connections).await?;
    let baseline = if config.baseline {
        progress("baseline: grpc.health.v1.Health/Check");
        Some(phase(shared.clone(), &channels, config, vec![(Rpc::Health, 1)], 1).await)
    } else {
        None
    };
    progress("mix");
    let mix = phase(shared.clone(), &channels, config, config.mix.clone(), 2).await;
    Ok(Report {
        claims: max_id,
        prepared,
        baseline,
        mix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_parses_names_and_weights() {
        assert_eq!(parse_mix("status").unwrap(), vec![(Rpc::Status, 1)]);
        assert_eq!(
            parse_mix("register=1, status=8,similar=0").unwrap(),
            vec![(Rpc::Register, 1), (Rpc::Status, 8)]
        );
        assert!(parse_mix("status,status=2").unwrap_err().contains("twice"));
        assert!(parse_mix("stats").unwrap_err().contains("unknown RPC"));
        assert!(parse_mix("get=x").unwrap_err().contains("whole number"));
        assert!(parse_mix("get=0").unwrap_err().contains("at least one"));
    }

    #[test]
    fn picks_follow_the_weights() {
        let mix = vec![(Rpc::Register, 1), (Rpc::Status, 3)];
        let mut rng = Rng::new(7, 0);
        let status = (0..40_000)
            .filter(|_| pick(&mix, 4, &mut rng) == Rpc::Status)
            .count();
        assert!((29_000..31_000).contains(&status), "{status}");
    }
}
