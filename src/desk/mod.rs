//! `photoclaim claim ...`: the desk CLI. Talks to a running server over gRPC
//! (the same connection flags as `photoclaim keys --server`, see
//! [`crate::remote`]) so that people can record and read claims without
//! writing grpcurl JSON.
//!
//! Output is plain text by default; `--json` prints the reply in the
//! canonical proto3 JSON mapping ([`crate::pb::to_json`], what grpcurl
//! prints). Commands that create something print its name alone on the first
//! line, so scripts can capture it with `head -n 1`.
//!
//! Errors go to standard error as `error: <CODE>: <message>`; the exit code
//! tells the class (see [`ExitClass`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use tonic::transport::Channel;

use crate::keys::format_time;
use crate::pb;
use crate::pb::claim_service_client::ClaimServiceClient;
use crate::remote::{ConnectError, ServerTarget};

mod format;
use format::{
    event_details, event_type_word, excerpt, print_claim_body, print_response_body,
    print_status_body, state_word, verdict_words,
};

/// `photoclaim claim ...`: its connection flags and the command.
#[derive(Args)]
pub struct ClaimArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    /// Print replies as proto3 JSON (as grpcurl does) instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: ClaimCommand,
}

/// How to reach the server; the same flags as `photoclaim keys --server`.
#[derive(Args)]
struct ConnectionArgs {
    /// Server to talk to (http://HOST:PORT, or https://HOST:PORT with --ca-cert).
    #[arg(
        long,
        env = "PHOTOCLAIM_SERVER",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    server: String,
    #[command(flatten)]
    credentials: crate::remote::CredentialArgs,
}

#[derive(Subcommand)]
enum ClaimCommand {
    /// Register a claim about an image; prints its name and the claims already
    /// recorded on the same image or a near duplicate.
    Register(Box<RegisterArgs>),
    /// Show a claim with its verification status.
    Show {
        /// The claim: `claims/7` or `7`.
        #[arg(value_parser = claim_name)]
        claim: String,
    },
    /// List claims, newest first (all of them unless --limit).
    List {
        /// Only claims in this state.
        #[arg(long, value_enum)]
        state: Option<StateArg>,
        /// At most this many claims.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Show a claim's verification status (state, ratings, counts, etag).
    Status {
        /// The claim: `claims/7` or `7`.
        #[arg(value_parser = claim_name)]
        claim: String,
    },
    /// Attach an official response to a claim (append-only).
    Respond(Box<RespondArgs>),
    /// Set or replace a claim's verdict, guarded by its etag.
    Verdict(Box<VerdictArgs>),
    /// A claim's audit trail: every event, oldest first.
    History {
        /// The claim: `claims/7` or `7`.
        #[arg(value_parser = claim_name)]
        claim: String,
    },
    /// Follow events as they happen, one line each with its cursor.
    Watch(WatchArgs),
}

#[derive(Args)]
struct RegisterArgs {
    /// What is claimed about the image.
    #[arg(long)]
    text: String,
    /// Who made the claim (e.g. "social media posts").
    #[arg(long)]
    claimant: Option<String>,
    /// BCP-47 language of the claim text, e.g. `en` (`und` when unknown).
    #[arg(long)]
    language: String,
    /// Where the claim appeared (repeatable).
    #[arg(long = "appearance-url")]
    appearance_urls: Vec<String>,
    /// When the desk first saw the claim (RFC 3339, e.g. 2022-01-08T00:00:00Z).
    #[arg(long, value_parser = timestamp)]
    first_seen: Option<prost_types::Timestamp>,
    /// A tag (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Where the image was published.
    #[arg(long)]
    image_url: Option<String>,
    /// SHA-256 of the image bytes (64 lower-case hex characters).
    #[arg(long)]
    image_sha256: Option<String>,
    /// Send this image file; the server hashes it (SHA-256, PDQ) and finds near duplicates.
    #[arg(long)]
    image_file: Option<PathBuf>,
    /// Image credit (e.g. "AP Photo").
    #[arg(long)]
    credit: Option<String>,
    /// Who published the image.
    #[arg(long)]
    publisher: Option<String>,
    /// When the image was published (RFC 3339).
    #[arg(long, value_parser = timestamp)]
    published: Option<prost_types::Timestamp>,
    /// When the image was captured (RFC 3339).
    #[arg(long, value_parser = timestamp)]
    captured: Option<prost_types::Timestamp>,
    /// Where the image was taken.
    #[arg(long)]
    location: Option<String>,
    /// The caption as circulated.
    #[arg(long)]
    caption: Option<String>,
    /// Makes a retry safe: the same id returns the first result. Default: a fresh id.
    #[arg(long)]
    request_id: Option<String>,
}

#[derive(Args)]
struct RespondArgs {
    /// The claim: `claims/7` or `7`.
    #[arg(value_parser = claim_name)]
    claim: String,
    /// The responding organization.
    #[arg(long)]
    organization: String,
    /// The person speaking for it, if named.
    #[arg(long)]
    person: Option<String>,
    /// What kind of responder it is.
    #[arg(long, value_enum)]
    role: Option<RoleArg>,
    /// What kind of response it is.
    #[arg(long, value_enum)]
    kind: KindArg,
    /// Its stance toward this claim.
    #[arg(long, value_enum)]
    stance: StanceArg,
    /// The response, verbatim.
    #[arg(long)]
    text: String,
    /// BCP-47 language of the text, e.g. `en` (`und` when unknown).
    #[arg(long)]
    language: String,
    /// Where the response was published.
    #[arg(long)]
    source_url: Option<String>,
    /// When it was issued (RFC 3339).
    #[arg(long, value_parser = timestamp)]
    issued: Option<prost_types::Timestamp>,
    /// The earlier response of this claim it answers: its name or its number.
    #[arg(long)]
    in_reply_to: Option<String>,
    /// Makes a retry safe: the same id returns the first result. Default: a fresh id.
    #[arg(long)]
    request_id: Option<String>,
}

#[derive(Args)]
struct VerdictArgs {
    /// The claim: `claims/7` or `7`.
    #[arg(value_parser = claim_name)]
    claim: String,
    /// How true the claim is.
    #[arg(long, value_enum)]
    rating: RatingArg,
    /// How authentic the media is, in the context the claim puts it in.
    #[arg(long, value_enum)]
    media: MediaArg,
    /// Why: shown with the verdict.
    #[arg(long)]
    rationale: String,
    /// The etag the decision was based on (default: the current one, read first).
    #[arg(long)]
    etag: Option<String>,
}

#[derive(Args)]
struct WatchArgs {
    /// Only this claim's events (`claims/7` or `7`); default: every claim's.
    #[arg(value_parser = claim_name)]
    claim: Option<String>,
    /// Only events of this type (repeatable).
    #[arg(long = "type", value_enum)]
    types: Vec<EventTypeArg>,
    /// Start after this cursor (printed with every event).
    #[arg(long)]
    after: Option<String>,
    /// Exit after this many events.
    #[arg(long)]
    count: Option<u64>,
    /// Do not reconnect when the server interrupts the stream.
    #[arg(long)]
    no_resume: bool,
}

/// Declares a friendly flag enum and its mapping to a protobuf enum.
macro_rules! flag_enum {
    ($(#[$doc:meta])* $name:ident => $pb:ty { $($(#[$vdoc:meta])* $variant:ident => $pbv:ident,)* }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, ValueEnum)]
        enum $name { $($(#[$vdoc])* $variant,)* }
        impl From<$name> for $pb {
            fn from(value: $name) -> $pb {
                match value { $($name::$variant => <$pb>::$pbv,)* }
            }
        }
    };
}

flag_enum!(StateArg => pb::VerificationState {
    /// Nothing gathered yet.
    Unverified => Unverified,
    /// Responses gathered, no verdict.
    InReview => InReview,
    /// Responses both support and refute, no verdict.
    Disputed => Disputed,
    /// A verdict is set.
    Resolved => Resolved,
});

flag_enum!(RatingArg => pb::ClaimRating {
    False => False,
    Misleading => Misleading,
    Unproven => Unproven,
    PartlyAccurate => PartlyAccurate,
    Accurate => Accurate,
});

flag_enum!(MediaArg => pb::MediaAuthenticity {
    /// Authentic and shown in its original context.
    Original => Original,
    /// Authentic, but shown in a false context.
    Decontextualized => Decontextualized,
    EditedOrCropped => EditedOrCropped,
    Transformed => Transformed,
    Staged => Staged,
    SatireOrParody => SatireOrParody,
});

flag_enum!(StanceArg => pb::Stance {
    Supports => Supports,
    Refutes => Refutes,
    AddsContext => AddsContext,
    NoPosition => NoPosition,
});

flag_enum!(KindArg => pb::ResponseKind {
    Statement => Statement,
    Inquiry => Inquiry,
    ExpertOpinion => ExpertOpinion,
    NoComment => NoComment,
});

flag_enum!(RoleArg => pb::ResponderRole {
    Government => Government,
    InternationalOrganization => InternationalOrganization,
    IndependentExpert => IndependentExpert,
    SecurityForce => SecurityForce,
    Company => Company,
    Ngo => Ngo,
    Media => Media,
    Other => Other,
});

flag_enum!(EventTypeArg => pb::ClaimEventType {
    /// A claim was registered.
    ClaimRegistered => ClaimRegistered,
    /// An official response was attached.
    #[value(alias = "response-attached")]
    OfficialResponseAttached => OfficialResponseAttached,
    /// A verdict was set.
    VerdictSet => VerdictSet,
});

/// Exit codes of `photoclaim claim ...`, one per class of failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitClass {
    /// 1: anything else (INTERNAL, UNKNOWN, DATA_LOSS, ...).
    Other = 1,
    /// 2: the request is wrong: bad flags (clap), INVALID_ARGUMENT, OUT_OF_RANGE.
    Usage = 2,
    /// 3: NOT_FOUND.
    NotFound = 3,
    /// 4: a conflict: ABORTED (stale etag), FAILED_PRECONDITION, ALREADY_EXISTS.
    Conflict = 4,
    /// 5: UNAUTHENTICATED or PERMISSION_DENIED.
    Access = 5,
    /// 6: the server cannot be reached or is overloaded: UNAVAILABLE,
    /// RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, CANCELLED.
    Unavailable = 6,
    /// 7: UNIMPLEMENTED (the server does not offer this call yet).
    Unimplemented = 7,
}

impl ExitClass {
    fn of(code: tonic::Code) -> Self {
        use tonic::Code::*;
        match code {
            InvalidArgument | OutOfRange => Self::Usage,
            NotFound => Self::NotFound,
            Aborted | FailedPrecondition | AlreadyExists => Self::Conflict,
            Unauthenticated | PermissionDenied => Self::Access,
            Unavailable | ResourceExhausted | DeadlineExceeded | Cancelled => Self::Unavailable,
            Unimplemented => Self::Unimplemented,
            _ => Self::Other,
        }
    }
}

/// A failed command: what to print and how to exit.
struct Failure {
    class: ExitClass,
    message: String,
}

impl Failure {
    fn local(class: ExitClass, message: impl Into<String>) -> Self {
        Failure {
            class,
            message: message.into(),
        }
    }

    fn status(status: &tonic::Status) -> Self {
        Failure {
            class: ExitClass::of(status.code()),
            message: format!("{}: {}", code_name(status.code()), status.message()),
        }
    }

    fn with_hint(mut self, hint: &str) -> Self {
        self.message.push('\n');
        self.message.push_str(hint);
        self
    }
}

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Self {
        Failure::status(&status)
    }
}

/// `NOT_FOUND` for `Code::NotFound`: the spelling of the gRPC spec and grpcurl.
fn code_name(code: tonic::Code) -> String {
    let mut out = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

type Outcome = Result<(), Failure>;

/// Runs `photoclaim claim ...`.
pub async fn run(args: ClaimArgs) -> ExitCode {
    match execute(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.class as u8)
        }
    }
}

async fn execute(args: ClaimArgs) -> Outcome {
    let c = &args.connection;
    let target = c
        .credentials
        .target(c.server.clone())
        .map_err(|e| Failure::local(ExitClass::Usage, e))?;
    let channel = target.connect().await.map_err(|err| match err {
        ConnectError::Settings(why) => Failure::local(ExitClass::Usage, why),
        ConnectError::Unreachable(why) => Failure::local(ExitClass::Unavailable, why),
    })?;
    let mut desk = Desk {
        client: ClaimServiceClient::new(channel),
        target,
        json: args.json,
    };
    match args.command {
        ClaimCommand::Register(a) => desk.register(*a).await,
        ClaimCommand::Show { claim } => desk.show(claim).await,
        ClaimCommand::List { state, limit } => desk.list(state, limit).await,
        ClaimCommand::Status { claim } => desk.status(claim).await,
        ClaimCommand::Respond(a) => desk.respond(*a).await,
        ClaimCommand::Verdict(a) => desk.verdict(*a).await,
        ClaimCommand::History { claim } => desk.history(claim).await,
        ClaimCommand::Watch(a) => desk.watch(a).await,
    }
}

/// A connected client and how to print.
struct Desk {
    /// The ClaimService client over one channel (tonic reconnects it).
    client: ClaimServiceClient<Channel>,
    /// Token and URL, to authorize each request.
    target: ServerTarget,
    /// `--json`.
    json: bool,
}

impl Desk {
    fn request<T>(&self, body: T) -> Result<tonic::Request<T>, Failure> {
        self.target
            .request(body)
            .map_err(|e| Failure::local(ExitClass::Usage, e))
    }

    fn print_json<M: prost::Message>(&self, message: &M, full_name: &str) {
        let json = pb::to_json(message, full_name);
        println!(
            "{}",
            serde_json::to_string_pretty(&json).expect("JSON values serialize")
        );
    }

    async fn register(&mut self, a: RegisterArgs) -> Outcome {
        let content = match &a.image_file {
            Some(path) => std::fs::read(path).map_err(|e| {
                Failure::local(
                    ExitClass::Usage,
                    format!("cannot read --image-file {}: {e}", path.display()),
                )
            })?,
            None => Vec::new(),
        };
        let request_id = a.request_id.unwrap_or_else(fresh_request_id);
        let claim = pb::Claim {
            claim_text: a.text,
            claimant: a.claimant.unwrap_or_default(),
            language: a.language,
            appearance_urls: a.appearance_urls,
            first_seen_time: a.first_seen,
            tags: a.tags,
            image: Some(pb::Image {
                source_url: a.image_url.unwrap_or_default(),
                sha256: a.image_sha256.unwrap_or_default(),
                credit: a.credit.unwrap_or_default(),
                publisher: a.publisher.unwrap_or_default(),
                published_time: a.published,
                captured_time: a.captured,
                location: a.location.unwrap_or_default(),
                caption: a.caption.unwrap_or_default(),
                content,
                ..Default::default()
            }),
            ..Default::default()
        };
        let reply = self
            .client
            .register_claim(self.request(pb::RegisterClaimRequest {
                request_id: request_id.clone(),
                claim: Some(claim),
            })?)
            .await?
            .into_inner();
        if self.json {
            self.print_json(&reply, "photoclaim.v1.RegisterClaimResponse");
            return Ok(());
        }
        let claim = reply.claim.unwrap_or_default();
        println!("{}", claim.name);
        if reply.replayed {
            println!(
                "  (already registered with request id {request_id}: nothing new was written)"
            );
        } else {
            println!("  registered; request id {request_id} (repeat it with --request-id to retry safely)");
        }
        print_claim_body(&claim);
        if reply.same_image_claims.is_empty() {
            println!("same image: no other claim on this image or a near duplicate");
        } else {
            println!("same image ({}):", reply.same_image_claims.len());
            for m in &reply.same_image_claims {
                let other = m.claim.clone().unwrap_or_default();
                let status = other.verification_status.clone().unwrap_or_default();
                let how = if m.exact {
                    "exact".to_string()
                } else {
                    format!("distance {}", m.distance)
                };
                println!(
                    "  {:<12} {:<12} {:<12} {}  {}",
                    other.name,
                    how,
                    state_word(status.state),
                    verdict_words(&status),
                    excerpt(&other.claim_text, 60)
                );
            }
        }
        Ok(())
    }

    async fn get_claim(&mut self, name: String) -> Result<pb::Claim, Failure> {
        Ok(self
            .client
            .get_claim(self.request(pb::GetClaimRequest { name })?)
            .await?
            .into_inner())
    }

    async fn show(&mut self, name: String) -> Outcome {
        let claim = self.get_claim(name).await?;
        if self.json {
            self.print_json(&claim, "photoclaim.v1.Claim");
        } else {
            println!("{}", claim.name);
            print_claim_body(&claim);
            if let Some(status) = &claim.verification_status {
                print_status_body(status);
            }
        }
        Ok(())
    }

    async fn list(&mut self, state: Option<StateArg>, limit: Option<usize>) -> Outcome {
        let state = state.map_or(pb::VerificationState::Unspecified, Into::into);
        let limit = limit.unwrap_or(usize::MAX);
        let mut claims = Vec::new();
        let mut page_token = String::new();
        let mut more = false;
        while claims.len() < limit {
            let page = self
                .client
                .list_claims(self.request(pb::ListClaimsRequest {
                    page_size: (limit - claims.len()).min(1000) as i32,
                    page_token,
                    state: state as i32,
                })?)
                .await?
                .into_inner();
            claims.extend(page.claims);
            page_token = page.next_page_token;
            if page_token.is_empty() {
                break;
            }
            more = claims.len() >= limit;
        }
        claims.truncate(limit);
        if self.json {
            let reply = pb::ListClaimsResponse {
                claims,
                next_page_token: String::new(),
            };
            self.print_json(&reply, "photoclaim.v1.ListClaimsResponse");
            return Ok(());
        }
        println!(
            "{:<12} {:<12} {:<34} {:<20} CLAIM",
            "NAME", "STATE", "VERDICT", "UPDATED"
        );
        for claim in &claims {
            let status = claim.verification_status.clone().unwrap_or_default();
            println!(
                "{:<12} {:<12} {:<34} {:<20} {}",
                claim.name,
                state_word(status.state),
                verdict_words(&status),
                format_time(claim.update_time.as_ref()),
                excerpt(&claim.claim_text, 60)
            );
        }
        if more {
            eprintln!("(more claims exist; raise --limit to see them)");
        }
        Ok(())
    }

    async fn get_status(&mut self, claim: String) -> Result<pb::VerificationStatus, Failure> {
        Ok(self
            .client
            .get_verification_status(self.request(pb::GetVerificationStatusRequest { claim })?)
            .await?
            .into_inner())
    }

    async fn status(&mut self, claim: String) -> Outcome {
        let status = self.get_status(claim).await?;
        if self.json {
            self.print_json(&status, "photoclaim.v1.VerificationStatus");
        } else {
            println!("{}", status.claim);
            print_status_body(&status);
        }
        Ok(())
    }

    async fn respond(&mut self, a: RespondArgs) -> Outcome {
        let in_reply_to = match a.in_reply_to {
            None => String::new(),
            Some(r) if r.bytes().all(|b| b.is_ascii_digit()) && !r.is_empty() => {
                format!("{}/officialResponses/{r}", a.claim)
            }
            Some(r) => r,
        };
        let request_id = a.request_id.unwrap_or_else(fresh_request_id);
        let response = pb::OfficialResponse {
            responder: Some(pb::Responder {
                organization: a.organization,
                person: a.person.unwrap_or_default(),
                role: a.role.map_or(pb::ResponderRole::Unspecified, Into::into) as i32,
            }),
            kind: pb::ResponseKind::from(a.kind) as i32,
            stance: pb::Stance::from(a.stance) as i32,
            text: a.text,
            language: a.language,
            source_url: a.source_url.unwrap_or_default(),
            issue_time: a.issued,
            in_reply_to,
            ..Default::default()
        };
        let reply = self
            .client
            .attach_official_response(self.request(pb::AttachOfficialResponseRequest {
                parent: a.claim,
                request_id: request_id.clone(),
                official_response: Some(response),
            })?)
            .await?;
        let replayed = reply
            .metadata()
            .get("photoclaim-replayed")
            .is_some_and(|v| v == "true");
        let response = reply.into_inner();
        if self.json {
            self.print_json(&response, "photoclaim.v1.OfficialResponse");
            return Ok(());
        }
        println!("{}", response.name);
        if replayed {
            println!("  (already attached with request id {request_id}: nothing new was written)");
        } else {
            println!(
                "  attached; request id {request_id} (repeat it with --request-id to retry safely)"
            );
        }
        print_response_body(&response);
        Ok(())
    }

    async fn verdict(&mut self, a: VerdictArgs) -> Outcome {
        let etag = match a.etag {
            Some(etag) => etag,
            None => self.get_status(a.claim.clone()).await?.etag,
        };
        let result = self
            .client
            .set_verdict(self.request(pb::SetVerdictRequest {
                claim: a.claim.clone(),
                claim_rating: pb::ClaimRating::from(a.rating) as i32,
                media_authenticity: pb::MediaAuthenticity::from(a.media) as i32,
                rationale: a.rationale,
                etag: etag.clone(),
            })?)
            .await;
        let status = match result {
            Ok(reply) => reply.into_inner(),
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::Aborted | tonic::Code::FailedPrecondition
                ) =>
            {
                return Err(Failure::status(&s).with_hint(&format!(
                    "the verdict was NOT set: {} changed after etag {etag} was read (a response \
                     or another verdict arrived). Check `photoclaim claim status {}` and try again.",
                    a.claim, a.claim
                )));
            }
            Err(s) => return Err(s.into()),
        };
        if self.json {
            self.print_json(&status, "photoclaim.v1.VerificationStatus");
        } else {
            println!("{}", status.claim);
            print_status_body(&status);
        }
        Ok(())
    }

    async fn history(&mut self, claim: String) -> Outcome {
        let mut events = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .client
                .list_claim_events(self.request(pb::ListClaimEventsRequest {
                    claim: claim.clone(),
                    page_size: 1000,
                    page_token,
                })?)
                .await?
                .into_inner();
            events.extend(page.events);
            page_token = page.next_page_token;
            if page_token.is_empty() {
                break;
            }
        }
        if self.json {
            let reply = pb::ListClaimEventsResponse {
                events,
                next_page_token: String::new(),
            };
            self.print_json(&reply, "photoclaim.v1.ListClaimEventsResponse");
            return Ok(());
        }
        println!(
            "{:>4} {:<20} {:<26} {:<16} {:<10} DETAILS",
            "SEQ", "TIME", "EVENT", "ACTOR", "STATE"
        );
        for event in &events {
            println!(
                "{:>4} {:<20} {:<26} {:<16} {:<10} {}",
                event.sequence,
                format_time(event.time.as_ref()),
                event_type_word(event.r#type),
                event.actor,
                state_word(event.state),
                event_details(event)
            );
        }
        Ok(())
    }

    async fn watch(&mut self, a: WatchArgs) -> Outcome {
        const MAX_BACKOFF: Duration = Duration::from_secs(5);
        /// Consecutive interruptions without a new event before giving up.
        const MAX_RETRIES: u32 = 10;
        let event_types: Vec<i32> = a
            .types
            .iter()
            .map(|t| pb::ClaimEventType::from(*t) as i32)
            .collect();
        let mut cursor = a.after.unwrap_or_default();
        let mut seen: u64 = 0;
        let mut retries = 0;
        let mut backoff = Duration::from_millis(250);
        if a.count == Some(0) {
            return Ok(());
        }
        loop {
            let request = self.request(pb::WatchClaimEventsRequest {
                claim: a.claim.clone().unwrap_or_default(),
                event_types: event_types.clone(),
                after_cursor: cursor.clone(),
                start_at_end: false,
            })?;
            let interrupted = match self.client.watch_claim_events(request).await {
                Err(status) => status,
                Ok(reply) => {
                    let mut stream = reply.into_inner();
                    loop {
                        match stream.message().await {
                            Ok(Some(event)) => {
                                self.print_event(&event);
                                cursor.clone_from(&event.cursor);
                                seen += 1;
                                retries = 0;
                                backoff = Duration::from_millis(250);
                                if a.count.is_some_and(|n| seen >= n) {
                                    return Ok(());
                                }
                            }
                            Ok(None) => return Ok(()),
                            Err(status) => break status,
                        }
                    }
                }
            };
            if interrupted.code() == tonic::Code::Unimplemented {
                return Err(Failure::status(&interrupted)
                    .with_hint("this server does not offer WatchClaimEvents yet"));
            }
            let resume = resume_cursor(&interrupted, &cursor);
            if let Some(resume) = &resume {
                cursor.clone_from(resume);
            }
            if a.no_resume || resume.is_none() || retries >= MAX_RETRIES {
                let mut failure = Failure::status(&interrupted);
                if !cursor.is_empty() {
                    failure = failure.with_hint(&format!("resume with --after {cursor}"));
                }
                return Err(failure);
            }
            retries += 1;
            eprintln!(
                "stream interrupted ({}: {}); reconnecting in {} ms{}",
                code_name(interrupted.code()),
                interrupted.message(),
                backoff.as_millis(),
                if cursor.is_empty() {
                    String::new()
                } else {
                    format!(" from cursor {cursor}")
                }
            );
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn print_event(&self, event: &pb::ClaimEvent) {
        if self.json {
            let json = pb::to_json(event, "photoclaim.v1.ClaimEvent");
            println!("{json}");
        } else {
            println!(
                "{}  {} #{} {} {} by {} -> {}  {}",
                event.cursor,
                event.claim,
                event.sequence,
                format_time(event.time.as_ref()),
                event_type_word(event.r#type),
                event.actor,
                state_word(event.state),
                event_details(event)
            );
        }
    }
}

/// Where to reconnect after a watch stream ended with `status`, if it may be
/// resumed: only UNAVAILABLE (the server restarts or drains) and
/// RESOURCE_EXHAUSTED (shed load, or a subscriber fell behind) are worth a
/// retry. The server's `photoclaim-resume-cursor` trailer wins; without one,
/// the cursor of the last event printed (`last`, possibly empty: the request
/// as first made).
fn resume_cursor(status: &tonic::Status, last: &str) -> Option<String> {
    if !matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::ResourceExhausted
    ) {
        return None;
    }
    let trailer = status
        .metadata()
        .get("photoclaim-resume-cursor")
        .and_then(|v| v.to_str().ok());
    Some(trailer.unwrap_or(last).to_string())
}

/// `claims/7` for `claims/7` or `7`; anything else is refused before a call.
fn claim_name(s: &str) -> Result<String, String> {
    let id = s.strip_prefix("claims/").unwrap_or(s);
    let valid = !id.is_empty()
        && !id.starts_with('0')
        && id.bytes().all(|b| b.is_ascii_digit())
        && id.parse::<u64>().is_ok();
    if valid {
        Ok(format!("claims/{id}"))
    } else {
        Err("expected a claim name such as claims/7, or its number 7".into())
    }
}

fn timestamp(s: &str) -> Result<prost_types::Timestamp, String> {
    s.parse()
        .map_err(|_| "expected an RFC 3339 time such as 2022-01-08T00:00:00Z".into())
}

/// `cli-` and 128 random bits in hex.
fn fresh_request_id() -> String {
    let mut random = [0u8; 16];
    getrandom::fill(&mut random).expect("the operating system provides randomness");
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    format!("cli-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_names_are_accepted_with_or_without_the_collection() {
        assert_eq!(claim_name("7").unwrap(), "claims/7");
        assert_eq!(claim_name("claims/12").unwrap(), "claims/12");
        for bad in [
            "",
            "claims/",
            "07",
            "claims/x",
            "-1",
            "claims/7/x",
            "claim/7",
        ] {
            assert!(claim_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn codes_print_as_the_grpc_spec_spells_them() {
        assert_eq!(code_name(tonic::Code::NotFound), "NOT_FOUND");
        assert_eq!(code_name(tonic::Code::Ok), "OK");
        assert_eq!(code_name(tonic::Code::InvalidArgument), "INVALID_ARGUMENT");
        assert_eq!(code_name(tonic::Code::Unimplemented), "UNIMPLEMENTED");
    }

    #[test]
    fn a_watch_resumes_only_when_the_server_may_recover_and_where_it_says() {
        let with_trailer = |code, cursor: &str| {
            let mut metadata = tonic::metadata::MetadataMap::new();
            metadata.insert("photoclaim-resume-cursor", cursor.parse().unwrap());
            tonic::Status::with_metadata(code, "interrupted", metadata)
        };
        let unavailable = with_trailer(tonic::Code::Unavailable, "c-42");
        assert_eq!(resume_cursor(&unavailable, "c-40").as_deref(), Some("c-42"));
        let lagging = with_trailer(tonic::Code::ResourceExhausted, "c-7");
        assert_eq!(resume_cursor(&lagging, "").as_deref(), Some("c-7"));
        let bare = tonic::Status::unavailable("restarting");
        assert_eq!(resume_cursor(&bare, "c-40").as_deref(), Some("c-40"));
        for code in [
            tonic::Code::Unauthenticated,
            tonic::Code::InvalidArgument,
            tonic::Code::Internal,
        ] {
            assert_eq!(resume_cursor(&with_trailer(code, "c-1"), "c-0"), None);
        }
    }

    #[test]
    fn request_ids_are_fresh() {
        assert_ne!(fresh_request_id(), fresh_request_id());
    }
}
