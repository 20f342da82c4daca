//! Crash safety of the real binary: several concurrent writers, `kill -9`
//! mid-stream, restart on the same data directory, and check that every
//! acknowledged write is present exactly once.
//!
//! Each cycle starts `photoclaim serve` on one data directory (shared by all
//! cycles), lets 8 writers register claims, attach official responses and set
//! verdicts, and SIGKILLs the server at a pseudo-random moment: mostly
//! 150-700 ms after the writers start; in one cycle in ten (the 10th, 20th,
//! ...) a server is first killed 0-40 ms after it was started (while it opens
//! the store and builds its index, before it listens), then a fresh one is
//! killed within 20 ms of listening. After every kill, `photoclaim check`
//! must pass on the directory (hash chains, event log, indexes), and the
//! store must open again. After the
//! restart every write whose call failed (the ambiguous ones) is retried with
//! the same `request_id` and payload (registrations and attachments are
//! idempotent and must now succeed exactly once; SetVerdict is not idempotent,
//! so its VERDICT_SET count is only bounded), and the whole store is checked
//! against the ledger of acknowledged writes before the next cycle starts.
//! The last server is stopped with SIGTERM and must exit 0.
//!
//! Environment:
//! - `PHOTOCLAIM_CRASH_CYCLES`: number of kill/restart cycles (default 20;
//!   the README's long run uses 1,000).
//! - `PHOTOCLAIM_CRASH_SEED`: seed of the PRNG that picks kill moments and
//!   writer choices; printed at the start of every run so a failure can be
//!   replayed (thread scheduling still varies, so a replay is close, not exact).

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use photoclaim::api::REPLAYED_METADATA;
use photoclaim::pb;

const WRITERS: usize = 8;
/// Connections the verification reads are spread over.
const VERIFY_CONNECTIONS: usize = 64;
const DEFAULT_CYCLES: usize = 20;
/// Bound on any single call, so a hung server fails the test instead of hanging it.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// xorshift64: small, seedable, good enough to pick kill moments.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        // splitmix64 scrambles the seed so that nearby seeds give unrelated streams.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A registration as sent: the payload is `claim_payload(text)`.
#[derive(Clone, Debug)]
struct RegWrite {
    request_id: String,
    text: String,
}

/// An attachment as sent: the payload is `response_payload(text, stance)`.
#[derive(Clone, Debug)]
struct AttWrite {
    request_id: String,
    parent: String,
    text: String,
    stance: pb::Stance,
}

/// A write whose call returned an error: it may or may not have committed.
#[derive(Clone, Debug)]
enum Ambiguous {
    Register(RegWrite, String),
    Attach(AttWrite, String),
    Verdict { claim: String, error: String },
}

impl Ambiguous {
    /// What the failed call returned.
    fn error(&self) -> &str {
        match self {
            Ambiguous::Register(_, error) | Ambiguous::Attach(_, error) => error,
            Ambiguous::Verdict { error, .. } => error,
        }
    }
}

/// Everything the writers were told succeeded, and everything that is in doubt.
#[derive(Clone, Default)]
struct Ledger {
    /// request_id -> (write, claim name), acknowledged registrations.
    regs: BTreeMap<String, (RegWrite, String)>,
    /// request_id -> (write, response name), acknowledged attachments.
    atts: BTreeMap<String, (AttWrite, String)>,
    /// claim name -> acknowledged SetVerdict calls.
    verdicts: HashMap<String, u32>,
    /// claim name -> SetVerdict calls that failed (each may or may not have committed).
    maybe_verdicts: HashMap<String, u32>,
    /// Failed writes of the current cycle, to retry after the restart.
    ambiguous: Vec<Ambiguous>,
    /// Errors seen while the server was certainly alive, or wrong answers.
    unexpected: Vec<String>,
}

fn claim_payload(text: &str) -> pb::Claim {
    sample_claim(text)
}

fn response_payload(text: &str, stance: pb::Stance) -> pb::OfficialResponse {
    let mut response = sample_response(stance);
    response.text = text.to_string();
    response
}

/// Runs one call with a timeout; any failure is returned as text.
async fn call_full<T>(
    fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<tonic::Response<T>, String> {
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
        Err(_) => Err(format!("no answer within {CALL_TIMEOUT:?}")),
    }
}

/// [`call_full`], keeping only the message.
async fn call<T>(
    fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, String> {
    call_full(fut).await.map(tonic::Response::into_inner)
}

/// AttachOfficialResponse; also returns whether the server flagged it as a
/// replay (response metadata `photoclaim-replayed: true`).
async fn attach_call(
    client: &mut Client,
    request: pb::AttachOfficialResponseRequest,
) -> Result<(pb::OfficialResponse, bool), String> {
    let response = call_full(client.attach_official_response(request)).await?;
    let replayed = response
        .metadata()
        .get(REPLAYED_METADATA)
        .is_some_and(|v| v == "true");
    Ok((response.into_inner(), replayed))
}

struct WriterCtx {
    w: usize,
    cycle: usize,
    client: Client,
    rng: Rng,
    ledger: Arc<Mutex<Ledger>>,
    killed: Arc<AtomicBool>,
}

impl WriterCtx {
    /// Records a failed call; stops the writer (the caller returns).
    fn failed(&self, what: String, ambiguous: Ambiguous) {
        let mut ledger = self.ledger.lock().unwrap();
        if !self.killed.load(Ordering::SeqCst) {
            ledger.unexpected.push(format!(
                "cycle {} writer {}: {what} failed before the server was killed: {}",
                self.cycle,
                self.w,
                ambiguous.error()
            ));
        }
        if let Ambiguous::Verdict { claim, .. } = &ambiguous {
            *ledger.maybe_verdicts.entry(claim.clone()).or_default() += 1;
        }
        ledger.ambiguous.push(ambiguous);
    }

    fn wrong(&self, what: String) {
        self.ledger
            .lock()
            .unwrap()
            .unexpected
            .push(format!("cycle {} writer {}: {what}", self.cycle, self.w));
    }

    /// Writes until the first error (the server died under it).
    async fn run(mut self) {
        let (w, cycle) = (self.w, self.cycle);
        let mut own: Vec<String> = Vec::new();
        for i in 0u64.. {
            // Register a new claim.
            let reg = RegWrite {
                request_id: format!("crash-reg-c{cycle}-w{w}-n{i}"),
                text: format!("crash w{w} c{cycle} n{i}"),
            };
            let result = call(self.client.register_claim(pb::RegisterClaimRequest {
                request_id: reg.request_id.clone(),
                claim: Some(claim_payload(&reg.text)),
                ..Default::default()
            }))
            .await;
            match result {
                Ok(resp) => {
                    let claim = resp.claim.unwrap_or_default();
                    if resp.replayed || claim.claim_text != reg.text || claim.name.is_empty() {
                        self.wrong(format!(
                            "first RegisterClaim {} answered replayed={} name={:?} text={:?}",
                            reg.request_id, resp.replayed, claim.name, claim.claim_text
                        ));
                    }
                    own.push(claim.name.clone());
                    self.ledger
                        .lock()
                        .unwrap()
                        .regs
                        .insert(reg.request_id.clone(), (reg, claim.name));
                }
                Err(error) => {
                    let what = format!("RegisterClaim {}", reg.request_id);
                    return self.failed(what, Ambiguous::Register(reg, error));
                }
            }

            // Attach a response to one of this writer's claims.
            let stance = [
                pb::Stance::Supports,
                pb::Stance::Refutes,
                pb::Stance::AddsContext,
            ][self.rng.below(3) as usize];
            let att = AttWrite {
                request_id: format!("crash-att-c{cycle}-w{w}-n{i}"),
                parent: own[self.rng.below(own.len() as u64) as usize].clone(),
                text: format!("crash response w{w} c{cycle} n{i}"),
                stance,
            };
            let request = pb::AttachOfficialResponseRequest {
                parent: att.parent.clone(),
                request_id: att.request_id.clone(),
                official_response: Some(response_payload(&att.text, att.stance)),
            };
            match attach_call(&mut self.client, request).await {
                Ok((resp, replayed)) => {
                    if replayed
                        || !resp
                            .name
                            .starts_with(&format!("{}/officialResponses/", att.parent))
                        || resp.text != att.text
                    {
                        self.wrong(format!(
                            "first AttachOfficialResponse {} to {} answered replayed={replayed} \
                             name={:?} text={:?}",
                            att.request_id, att.parent, resp.name, resp.text
                        ));
                    }
                    self.ledger
                        .lock()
                        .unwrap()
                        .atts
                        .insert(att.request_id.clone(), (att, resp.name));
                }
                Err(error) => {
                    let what = format!("AttachOfficialResponse {}", att.request_id);
                    return self.failed(what, Ambiguous::Attach(att, error));
                }
            }

            // Every third round, set a verdict (no etag) on one of this writer's claims.
            if i % 3 == 2 {
                let claim = own[self.rng.below(own.len() as u64) as usize].clone();
                let result = call(self.client.set_verdict(pb::SetVerdictRequest {
                    claim: claim.clone(),
                    claim_rating: pb::ClaimRating::False as i32,
                    media_authenticity: pb::MediaAuthenticity::Original as i32,
                    rationale: format!("crash verdict w{w} c{cycle} n{i}"),
                    etag: String::new(),
                }))
                .await;
                match result {
                    Ok(status) => {
                        if status.state() != pb::VerificationState::Resolved {
                            self.wrong(format!(
                                "SetVerdict on {claim} answered state {:?}",
                                status.state()
                            ));
                        }
                        *self
                            .ledger
                            .lock()
                            .unwrap()
                            .verdicts
                            .entry(claim)
                            .or_default() += 1;
                    }
                    Err(error) => {
                        let what = format!("SetVerdict on {claim}");
                        return self.failed(what, Ambiguous::Verdict { claim, error });
                    }
                }
            }
        }
    }
}

/// Per-cycle tallies for the report.
#[derive(Default)]
struct RetryStats {
    retried: usize,
    had_committed: usize,
    verdicts_in_doubt: usize,
}

/// Retries every ambiguous registration and attachment with its exact
/// request; each must now succeed, exactly once. The results join the ledger.
async fn retry_ambiguous(client: &mut Client, ledger: &Mutex<Ledger>, ctx: &str) -> RetryStats {
    let mut pending = std::mem::take(&mut ledger.lock().unwrap().ambiguous);
    // Registrations first: an attachment's parent is always an acknowledged
    // claim, but keep the order obvious.
    pending.sort_by_key(|a| match a {
        Ambiguous::Register(..) => 0,
        Ambiguous::Attach(..) => 1,
        Ambiguous::Verdict { .. } => 2,
    });
    let mut stats = RetryStats::default();
    for amb in pending {
        match amb {
            Ambiguous::Register(reg, error) => {
                let request = pb::RegisterClaimRequest {
                    request_id: reg.request_id.clone(),
                    claim: Some(claim_payload(&reg.text)),
                    ..Default::default()
                };
                let first = call(client.register_claim(request.clone()))
                    .await
                    .unwrap_or_else(|e| {
                        panic!(
                            "{ctx}: retry of ambiguous RegisterClaim {} (first attempt: {error}) \
                             failed after restart: {e}",
                            reg.request_id
                        )
                    });
                let claim = first.claim.unwrap_or_default();
                assert_eq!(
                    claim.claim_text, reg.text,
                    "{ctx}: retry of RegisterClaim {} returned another claim",
                    reg.request_id
                );
                let again = call(client.register_claim(request))
                    .await
                    .unwrap_or_else(|e| {
                        panic!(
                            "{ctx}: second retry of RegisterClaim {}: {e}",
                            reg.request_id
                        )
                    });
                assert!(
                    again.replayed,
                    "{ctx}: second retry of RegisterClaim {} was not a replay: a request_id wrote twice",
                    reg.request_id
                );
                assert_eq!(
                    again.claim.unwrap_or_default().name,
                    claim.name,
                    "{ctx}: retries of RegisterClaim {} named different claims",
                    reg.request_id
                );
                stats.retried += 1;
                stats.had_committed += first.replayed as usize;
                ledger
                    .lock()
                    .unwrap()
                    .regs
                    .insert(reg.request_id.clone(), (reg, claim.name));
            }
            Ambiguous::Attach(att, error) => {
                let before = all_responses(client, &att.parent).await;
                let request = pb::AttachOfficialResponseRequest {
                    parent: att.parent.clone(),
                    request_id: att.request_id.clone(),
                    official_response: Some(response_payload(&att.text, att.stance)),
                };
                let (first, first_replayed) = attach_call(client, request.clone())
                    .await
                    .unwrap_or_else(|e| {
                        panic!(
                            "{ctx}: retry of ambiguous AttachOfficialResponse {} to {} \
                             (first attempt: {error}) failed after restart: {e}",
                            att.request_id, att.parent
                        )
                    });
                assert_eq!(
                    first.text, att.text,
                    "{ctx}: retry of AttachOfficialResponse {} returned another response",
                    att.request_id
                );
                let committed_before = before.iter().any(|r| r.name == first.name);
                assert_eq!(
                    first_replayed,
                    committed_before,
                    "{ctx}: retry of AttachOfficialResponse {}: the {REPLAYED_METADATA} flag \
                     says replayed={first_replayed}, but {} was {}listed before the retry",
                    att.request_id,
                    first.name,
                    if committed_before { "" } else { "not " }
                );
                let after = all_responses(client, &att.parent).await;
                assert_eq!(
                    after.len(),
                    before.len() + usize::from(!committed_before),
                    "{ctx}: retry of AttachOfficialResponse {} ({}) changed {}'s response count \
                     from {} to {}",
                    att.request_id,
                    if committed_before {
                        "had committed: must be a pure replay"
                    } else {
                        "had not committed: must add exactly one"
                    },
                    att.parent,
                    before.len(),
                    after.len()
                );
                let (again, again_replayed) =
                    attach_call(client, request).await.unwrap_or_else(|e| {
                        panic!(
                            "{ctx}: second retry of AttachOfficialResponse {}: {e}",
                            att.request_id
                        )
                    });
                assert!(
                    again_replayed && again.name == first.name,
                    "{ctx}: second retry of AttachOfficialResponse {} answered replayed={} \
                     name={:?}; expected a replay of {:?}",
                    att.request_id,
                    again_replayed,
                    again.name,
                    first.name
                );
                stats.retried += 1;
                stats.had_committed += committed_before as usize;
                ledger
                    .lock()
                    .unwrap()
                    .atts
                    .insert(att.request_id.clone(), (att, first.name));
            }
            Ambiguous::Verdict { .. } => stats.verdicts_in_doubt += 1,
        }
    }
    stats
}

/// Every claim's events and responses, read over all `clients` at once
/// (sequential reads would make the check dominate the test's run time).
async fn fetch_details(
    clients: &[Client],
    claims: &[pb::Claim],
) -> Vec<(Vec<pb::ClaimEvent>, Vec<pb::OfficialResponse>)> {
    let names: Arc<Vec<String>> = Arc::new(claims.iter().map(|c| c.name.clone()).collect());
    let lanes = clients.len();
    let tasks: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(lane, client)| {
            let (mut client, names) = (client.clone(), names.clone());
            tokio::spawn(async move {
                let mut out = Vec::new();
                for i in (lane..names.len()).step_by(lanes) {
                    let events = all_events(&mut client, &names[i]).await;
                    let responses = all_responses(&mut client, &names[i]).await;
                    out.push((i, events, responses));
                }
                out
            })
        })
        .collect();
    let mut details = vec![Default::default(); names.len()];
    for task in tasks {
        for (i, events, responses) in task.await.expect("reading claims") {
            details[i] = (events, responses);
        }
    }
    details
}

/// Checks the whole store against the ledger.
/// `clients` are separate connections; the per-claim reads are spread over them.
async fn verify(clients: &[Client], ledger: &Ledger, ctx: &str) {
    let mut client = clients[0].clone();
    let claims = all_claims(&mut client, pb::VerificationState::Unspecified).await;

    // Registrations: each acknowledged text exactly once, under its name; nothing else.
    let mut by_text: HashMap<&str, Vec<&str>> = HashMap::new();
    for claim in &claims {
        by_text
            .entry(claim.claim_text.as_str())
            .or_default()
            .push(claim.name.as_str());
    }
    for (text, names) in &by_text {
        assert_eq!(
            names.len(),
            1,
            "{ctx}: claim_text {text:?} is stored {} times: {names:?}",
            names.len()
        );
    }
    for (request_id, (reg, name)) in &ledger.regs {
        let stored = by_text.get(reg.text.as_str());
        assert_eq!(
            stored,
            Some(&vec![name.as_str()]),
            "{ctx}: acknowledged registration {request_id} ({:?} as {name}) is missing or \
             stored under another name",
            reg.text
        );
    }
    let acknowledged: HashSet<&str> = ledger.regs.values().map(|(_, n)| n.as_str()).collect();
    let unknown: Vec<_> = claims
        .iter()
        .filter(|c| !acknowledged.contains(c.name.as_str()))
        .map(|c| (&c.name, &c.claim_text))
        .collect();
    assert!(
        unknown.is_empty(),
        "{ctx}: claims stored that were neither acknowledged nor retried: {unknown:?}"
    );

    // Per claim: gapless events matching its responses and verdicts.
    let mut stored_responses: HashMap<String, Vec<pb::OfficialResponse>> = HashMap::new();
    let mut verdict_events: HashMap<String, u32> = HashMap::new();
    let details = fetch_details(clients, &claims).await;
    for (claim, (events, responses)) in claims.iter().zip(details) {
        let name = &claim.name;
        assert!(!events.is_empty(), "{ctx}: {name} has no events");
        assert_gapless(&events);
        use pb::ClaimEventType as T;
        let count = |t: T| events.iter().filter(|e| e.r#type() == t).count();
        assert_eq!(
            events[0].r#type(),
            T::ClaimRegistered,
            "{ctx}: {name}'s first event is not its registration"
        );
        assert_eq!(
            count(T::ClaimRegistered),
            1,
            "{ctx}: {name} registered more than once"
        );
        let verdicts = count(T::VerdictSet);
        assert_eq!(
            events.len(),
            1 + responses.len() + verdicts,
            "{ctx}: {name} has {} events but 1 registration + {} responses + {verdicts} verdicts",
            events.len(),
            responses.len()
        );
        let attached: Vec<String> = events
            .iter()
            .filter_map(|e| match &e.details {
                Some(pb::claim_event::Details::OfficialResponseAttached(d)) => {
                    Some(d.official_response.clone())
                }
                _ => None,
            })
            .collect();
        let listed: Vec<String> = responses.iter().map(|r| r.name.clone()).collect();
        assert_eq!(
            attached, listed,
            "{ctx}: {name}'s attachment events and its listed responses disagree"
        );
        let st = claim.verification_status.clone().unwrap_or_default();
        let stance = |s: pb::Stance| responses.iter().filter(|r| r.stance() == s).count() as i32;
        assert_eq!(
            (
                st.official_response_count,
                st.supporting_count,
                st.refuting_count,
                st.context_count
            ),
            (
                responses.len() as i32,
                stance(pb::Stance::Supports),
                stance(pb::Stance::Refutes),
                stance(pb::Stance::AddsContext)
            ),
            "{ctx}: {name}'s status counts disagree with its stored responses"
        );
        assert_eq!(
            st.state() == pb::VerificationState::Resolved,
            verdicts > 0,
            "{ctx}: {name} is {:?} with {verdicts} verdict events",
            st.state()
        );
        assert_eq!(
            Some(st.state()),
            events.last().map(|e| e.state()),
            "{ctx}: {name}'s state differs from its last event's"
        );
        verdict_events.insert(name.clone(), verdicts as u32);
        stored_responses.insert(name.clone(), responses);
    }

    // Attachments: each acknowledged response exactly once under its parent; nothing else.
    for (request_id, (att, response_name)) in &ledger.atts {
        let responses = stored_responses
            .get(&att.parent)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let found: Vec<_> = responses
            .iter()
            .filter(|r| &r.name == response_name)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{ctx}: acknowledged attachment {request_id} ({response_name}) is stored {} times \
             under {}",
            found.len(),
            att.parent
        );
        assert_eq!(
            (found[0].text.as_str(), found[0].stance()),
            (att.text.as_str(), att.stance),
            "{ctx}: {response_name} does not hold acknowledged attachment {request_id}"
        );
    }
    let total_responses: usize = stored_responses.values().map(Vec::len).sum();
    assert_eq!(
        total_responses,
        ledger.atts.len(),
        "{ctx}: {total_responses} responses stored, but {} attachments were acknowledged or retried",
        ledger.atts.len()
    );

    // Verdicts: acknowledged <= stored <= acknowledged + in doubt.
    for (name, &stored) in &verdict_events {
        let acked = ledger.verdicts.get(name).copied().unwrap_or(0);
        let doubt = ledger.maybe_verdicts.get(name).copied().unwrap_or(0);
        assert!(
            acked <= stored && stored <= acked + doubt,
            "{ctx}: {name} has {stored} VERDICT_SET events, expected between {acked} \
             (acknowledged) and {} (+ failed calls)",
            acked + doubt
        );
    }

    // The state index agrees with the claims' states.
    for state in [
        pb::VerificationState::Unverified,
        pb::VerificationState::InReview,
        pb::VerificationState::Disputed,
        pb::VerificationState::Resolved,
    ] {
        let listed: Vec<String> = all_claims(&mut client, state)
            .await
            .into_iter()
            .map(|c| c.name)
            .collect();
        let expected: Vec<String> = claims
            .iter()
            .filter(|c| c.verification_status.clone().unwrap_or_default().state() == state)
            .map(|c| c.name.clone())
            .collect();
        assert_eq!(
            listed, expected,
            "{ctx}: ListClaims filtered by {state:?} disagrees with the claims' states"
        );
    }
}

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a non-negative integer")),
    )
}

/// Starts `photoclaim serve` and SIGKILLs it after `delay`, whatever it is
/// doing then (opening sled, migrating, building the PDQ index).
async fn kill_during_startup(dir: PathBuf, delay: Duration) {
    tokio::task::spawn_blocking(move || {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_photoclaim"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn photoclaim");
        std::thread::sleep(delay);
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    })
    .await
    .expect("start-up kill");
}

/// `photoclaim check` on the (unlocked) data directory must pass.
async fn check_passes(dir: PathBuf, ctx: String) -> Duration {
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_photoclaim"))
            .args(["check", "--data-dir"])
            .arg(&dir)
            .output()
            .expect("run photoclaim check")
    })
    .await
    .expect("check");
    assert!(
        out.status.success(),
        "{ctx}: photoclaim check failed after kill -9:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed()
}

async fn spawn_server(dir: PathBuf, ctx: String) -> Process {
    tokio::task::spawn_blocking(move || {
        Process::try_spawn(&dir).unwrap_or_else(|(status, log)| {
            panic!("{ctx}: server did not come up on the data directory (exit {status:?}):\n{log}")
        })
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_kill_9_exactly_once() {
    let cycles = env_number("PHOTOCLAIM_CRASH_CYCLES").unwrap_or(DEFAULT_CYCLES as u64) as usize;
    assert!(cycles >= 1, "PHOTOCLAIM_CRASH_CYCLES must be at least 1");
    let seed = env_number("PHOTOCLAIM_CRASH_SEED").unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos() as u64
    });
    println!(
        "crash_safety: seed {seed} (PHOTOCLAIM_CRASH_SEED={seed} replays it), {cycles} cycles"
    );
    let mut rng = Rng::new(seed);
    let started = Instant::now();

    let dir = tempfile::tempdir().expect("temp dir");
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut server = spawn_server(dir.path().into(), format!("seed {seed}, first start")).await;
    let mut listening_since = Instant::now();
    let (mut total_retried, mut total_committed, mut total_doubt) = (0, 0, 0);

    for cycle in 0..cycles {
        let ctx = format!("seed {seed}, cycle {cycle}");

        let at_startup = cycle % 10 == 9;
        let delay = if at_startup {
            Duration::from_millis(rng.below(20))
        } else {
            Duration::from_millis(150 + rng.below(551))
        };
        if at_startup {
            // The idle server goes down hard (nothing is in flight), one is
            // killed while it starts, and a fresh one serves, so that the
            // next kill lands right after it starts listening.
            let idle = server;
            tokio::task::spawn_blocking(move || idle.kill9())
                .await
                .expect("kill -9");
            let early = Duration::from_millis(rng.below(41));
            kill_during_startup(dir.path().into(), early).await;
            check_passes(
                dir.path().into(),
                format!("{ctx}, killed {early:?} into start-up"),
            )
            .await;
            server = spawn_server(dir.path().into(), format!("{ctx}, start-up cycle")).await;
            listening_since = Instant::now();
        }

        // Connect the writers while the server certainly lives.
        let killed = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for w in 0..WRITERS {
            writers.push(WriterCtx {
                w,
                cycle,
                client: connect(&server.addr).await,
                rng: Rng::new(seed ^ ((cycle as u64) << 32 | w as u64)),
                ledger: ledger.clone(),
                killed: killed.clone(),
            });
        }
        let before = {
            let l = ledger.lock().unwrap();
            (l.regs.len(), l.atts.len(), l.verdicts.values().sum::<u32>())
        };

        let writers_started = Instant::now();
        let tasks: Vec<_> = writers
            .into_iter()
            .map(|writer| tokio::spawn(writer.run()))
            .collect();
        tokio::time::sleep(delay).await;
        killed.store(true, Ordering::SeqCst);
        let victim = server;
        tokio::task::spawn_blocking(move || victim.kill9())
            .await
            .expect("kill -9");
        let killed_after = writers_started.elapsed();
        let up_for = listening_since.elapsed();
        for task in tasks {
            task.await.expect("writer task panicked");
        }
        {
            let l = ledger.lock().unwrap();
            assert!(
                l.unexpected.is_empty(),
                "{ctx}: wrong answers or errors while the server was alive:\n{}",
                l.unexpected.join("\n")
            );
        }

        let check_took = check_passes(dir.path().into(), ctx.clone()).await;
        // Restart on the same directory: the store must reopen.
        server = spawn_server(dir.path().into(), format!("{ctx}, restart after kill -9")).await;
        listening_since = Instant::now();
        let mut clients = Vec::new();
        for _ in 0..VERIFY_CONNECTIONS {
            clients.push(connect(&server.addr).await);
        }
        let mut client = clients[0].clone();
        let stats = retry_ambiguous(&mut client, &ledger, &ctx).await;
        let snapshot = ledger.lock().unwrap().clone();
        let verify_started = Instant::now();
        verify(&clients, &snapshot, &ctx).await;
        let verify_took = verify_started.elapsed();

        // An acknowledged registration replays with the same name.
        if !snapshot.regs.is_empty() {
            let pick = rng.below(snapshot.regs.len() as u64) as usize;
            let (request_id, (reg, name)) = snapshot.regs.iter().nth(pick).unwrap();
            let replay = call(client.register_claim(pb::RegisterClaimRequest {
                request_id: request_id.clone(),
                claim: Some(claim_payload(&reg.text)),
                ..Default::default()
            }))
            .await
            .unwrap_or_else(|e| panic!("{ctx}: replaying {request_id}: {e}"));
            assert!(
                replay.replayed,
                "{ctx}: retrying acknowledged registration {request_id} was not a replay"
            );
            assert_eq!(
                &replay.claim.unwrap_or_default().name,
                name,
                "{ctx}: retrying acknowledged registration {request_id} named another claim"
            );
        }

        let acked = (
            snapshot.regs.len() - before.0,
            snapshot.atts.len() - before.1,
            snapshot.verdicts.values().sum::<u32>() - before.2,
        );
        println!(
            "cycle {cycle}: killed {} {killed_after:?} after the writers started \
             ({up_for:?} after the server listened); new writes (incl. retried): \
             {} registrations, {} attachments, {} verdicts; ambiguous retried {} \
             ({} had committed), verdicts in doubt {}; check {check_took:?}; {} claims verified in {verify_took:?}",
            if at_startup {
                "at start-up"
            } else {
                "mid-stream"
            },
            acked.0,
            acked.1,
            acked.2,
            stats.retried,
            stats.had_committed,
            stats.verdicts_in_doubt,
            snapshot.regs.len()
        );
        total_retried += stats.retried;
        total_committed += stats.had_committed;
        total_doubt += stats.verdicts_in_doubt;
    }

    // After every crash, the service-wide event log (WatchClaimEvents) holds
    // each stored event exactly once, at contiguous positions from 1.
    let mut clients = Vec::new();
    for _ in 0..VERIFY_CONNECTIONS {
        clients.push(connect(&server.addr).await);
    }
    let mut client = clients[0].clone();
    let claims = all_claims(&mut client, pb::VerificationState::Unspecified).await;
    let mut stored: Vec<(String, i64)> = fetch_details(&clients, &claims)
        .await
        .into_iter()
        .flat_map(|(events, _)| events.into_iter().map(|e| (e.claim, e.sequence)))
        .collect();
    stored.sort();
    let mut stream = client
        .watch_claim_events(pb::WatchClaimEventsRequest::default())
        .await
        .expect("watch the log")
        .into_inner();
    let mut logged = Vec::with_capacity(stored.len());
    while logged.len() < stored.len() {
        let event = tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .unwrap_or_else(|_| {
                panic!("seed {seed}: the log stalled after {} events", logged.len())
            })
            .unwrap_or_else(|e| panic!("seed {seed}: watching the log: {e:?}"))
            .unwrap_or_else(|| panic!("seed {seed}: the log ended after {} events", logged.len()));
        assert_eq!(
            event.cursor,
            (logged.len() + 1).to_string(),
            "seed {seed}: event log positions must be contiguous"
        );
        logged.push((event.claim, event.sequence));
    }
    logged.sort();
    assert_eq!(
        logged, stored,
        "seed {seed}: the event log and the stored events differ"
    );
    drop(stream);

    let (exit, log) = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .expect("terminate");
    assert!(
        exit.success(),
        "seed {seed}: server did not exit cleanly on SIGTERM ({exit:?}):\n{log}"
    );
    check_passes(dir.path().into(), format!("seed {seed}, after SIGTERM")).await;

    let l = ledger.lock().unwrap();
    let verdicts: u32 = l.verdicts.values().sum();
    let total = l.regs.len() + l.atts.len() + verdicts as usize;
    println!(
        "crash_safety: seed {seed}, {cycles} cycles in {:?}: {total} acknowledged writes \
         ({} registrations, {} attachments, {verdicts} verdicts); {total_retried} ambiguous \
         writes retried ({total_committed} had committed), {total_doubt} verdicts in doubt",
        started.elapsed(),
        l.regs.len(),
        l.atts.len()
    );
    assert!(
        total > 20,
        "seed {seed}: only {total} writes were acknowledged in {cycles} cycles; the test proved nothing"
    );
    assert!(
        total_retried + total_doubt > 0,
        "seed {seed}: no write was in flight at any kill; the retry path was never exercised"
    );
}
