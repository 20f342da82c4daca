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
//! Errors go to standard error as `error: <CODE>: <message>` (a field the
//! server refused is named by the flag that set it), with `hint:` lines;
//! the exit code tells the class (see [`crate::cli::ExitClass`]).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use tonic::transport::Channel;
use tonic_types::StatusExt;

use crate::cli::keys::format_time;
use crate::cli::{code_name, Failure};
use crate::outln;
use crate::pb;
use crate::pb::claim_service_client::ClaimServiceClient;
use crate::remote::ServerTarget;

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
    /// Print replies as proto3 JSON (as grpcurl does, fields in proto
    /// order) instead of text.
    #[arg(long, global = true, help_heading = "Output")]
    json: bool,
    #[command(subcommand)]
    command: ClaimCommand,
}

/// How to reach the server; the same flags as `photoclaim keys --server`.
#[derive(Args)]
struct ConnectionArgs {
    /// Server to talk to: HOST:PORT (plaintext, as `grpcurl -plaintext`),
    /// http://HOST:PORT, or https://HOST:PORT (verified with --ca-cert, else
    /// the system's trust store).
    #[arg(
        long,
        env = "PHOTOCLAIM_SERVER",
        default_value = "127.0.0.1:50051",
        global = true,
        help_heading = "Connection"
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
    /// Follow events as they happen, one line each with its cursor (from
    /// now on; --after CURSOR resumes, --from-start replays everything first).
    Watch(WatchArgs),
    /// "Has this image been checked before?": the claims on the same image
    /// or a near duplicate, nearest first, with their state and verdict.
    Similar(SimilarArgs),
    /// A resolved claim's ClaimReview and MediaReview (schema.org JSON-LD),
    /// ready to publish.
    Review(ReviewArgs),
}

#[derive(Args)]
struct SimilarArgs {
    #[command(flatten)]
    image: SimilarImage,
    /// Largest PDQ Hamming distance that counts as similar, 0-64 (default:
    /// the server's, 31 unless configured).
    #[arg(long, value_parser = clap::value_parser!(i32).range(0..=64))]
    max_distance: Option<i32>,
    /// Also match featureless images (PDQ quality below 50), which collide easily.
    #[arg(long)]
    include_low_quality: bool,
    /// Most matches to show (the server allows up to 1,000).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i32).range(1..=1000))]
    limit: i32,
}

/// The image `claim similar` asks about: exactly one of these.
#[derive(Args)]
#[group(required = true, multiple = false)]
struct SimilarImage {
    /// The image file (JPEG, PNG, WebP or GIF); the server hashes it.
    #[arg(long)]
    image_file: Option<PathBuf>,
    /// The image's SHA-256 (64 hex characters).
    #[arg(long)]
    sha256: Option<String>,
    /// A PDQ hash (64 hex characters).
    #[arg(long)]
    pdq: Option<String>,
}

#[derive(Args)]
struct ReviewArgs {
    /// The claim: `claims/7` or `7`.
    #[arg(value_parser = claim_name)]
    claim: String,
    /// Write `claims-7.claim-review.jsonld` (and `claims-7.media-review.jsonld`
    /// when there is one) into this directory instead of printing them.
    #[arg(long)]
    out: Option<PathBuf>,
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
    /// Resume after this cursor (printed with every event).
    #[arg(long, conflicts_with = "from_start")]
    after: Option<String>,
    /// Replay every stored event first, then follow.
    #[arg(long)]
    from_start: bool,
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

type Outcome = Result<(), Failure>;

/// Runs `photoclaim claim ...`.
pub async fn run(args: ClaimArgs) -> Outcome {
    let c = &args.connection;
    let target = c
        .credentials
        .target(c.server.clone())
        .map_err(Failure::usage)?;
    let channel = target.connect().await?;
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
        ClaimCommand::Similar(a) => desk.similar(a).await,
        ClaimCommand::Review(a) => desk.review(a).await,
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
        self.target.request(body).map_err(Failure::usage)
    }

    fn print_json<M: prost::Message>(&self, message: &M, full_name: &str) {
        outln!("{}", pb::to_json_text(message, full_name, true));
    }

    async fn register(&mut self, a: RegisterArgs) -> Outcome {
        let content = match &a.image_file {
            Some(path) => read_image_file(path)?,
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
            .await
            .map_err(|s| in_flag_words(s, REGISTER_FLAGS))?
            .into_inner();
        if self.json {
            self.print_json(&reply, "photoclaim.v1.RegisterClaimResponse");
            return Ok(());
        }
        let claim = reply.claim.unwrap_or_default();
        outln!("{}", claim.name);
        if reply.replayed {
            outln!("  (already registered with request id {request_id}: nothing new was written)");
        } else {
            outln!("  registered; request id {request_id} (repeat it with --request-id to retry safely)");
        }
        print_claim_body(&claim);
        if reply.same_image_claims.is_empty() {
            outln!("same image: no other claim on this image or a near duplicate");
        } else {
            outln!("same image ({}):", reply.same_image_claims.len());
            for m in &reply.same_image_claims {
                let other = m.claim.clone().unwrap_or_default();
                let status = other.verification_status.clone().unwrap_or_default();
                let how = if m.exact {
                    "exact".to_string()
                } else {
                    format!("distance {}", m.distance)
                };
                outln!(
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
            outln!("{}", claim.name);
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
        outln!(
            "{:<12} {:<12} {:<34} {:<20} CLAIM",
            "NAME",
            "STATE",
            "VERDICT",
            "UPDATED"
        );
        for claim in &claims {
            let status = claim.verification_status.clone().unwrap_or_default();
            outln!(
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
            outln!("{}", status.claim);
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
            .await
            .map_err(|s| in_flag_words(s, RESPOND_FLAGS))?;
        let replayed = reply
            .metadata()
            .get("photoclaim-replayed")
            .is_some_and(|v| v == "true");
        let response = reply.into_inner();
        if self.json {
            self.print_json(&response, "photoclaim.v1.OfficialResponse");
            return Ok(());
        }
        outln!("{}", response.name);
        if replayed {
            outln!("  (already attached with request id {request_id}: nothing new was written)");
        } else {
            outln!(
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
                return Err(Failure::from(s).hint(format!(
                    "the verdict was NOT set: {} changed after etag {etag} was read (a response \
                     or another verdict arrived). Check `photoclaim claim status {}` and try again.",
                    a.claim, a.claim
                )));
            }
            Err(s) => return Err(in_flag_words(s, VERDICT_FLAGS)),
        };
        if self.json {
            self.print_json(&status, "photoclaim.v1.VerificationStatus");
        } else {
            outln!("{}", status.claim);
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
        outln!(
            "{:>4} {:<20} {:<26} {:<16} {:<10} DETAILS",
            "SEQ",
            "TIME",
            "EVENT",
            "ACTOR",
            "STATE"
        );
        for event in &events {
            outln!(
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
                // From now on, unless asked to replay or resuming.
                start_at_end: !a.from_start && cursor.is_empty(),
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
                return Err(Failure::from(interrupted)
                    .hint("this server does not offer WatchClaimEvents yet"));
            }
            let resume = resume_cursor(&interrupted, &cursor);
            if let Some(resume) = &resume {
                cursor.clone_from(resume);
            }
            if a.no_resume || resume.is_none() || retries >= MAX_RETRIES {
                let mut failure = Failure::from(interrupted);
                if !cursor.is_empty() {
                    failure = failure.hint(format!("resume with --after {cursor}"));
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

    async fn similar(&mut self, a: SimilarArgs) -> Outcome {
        let content = match &a.image.image_file {
            Some(path) => read_image_file(path)?,
            None => Vec::new(),
        };
        let reply = self
            .client
            .find_similar_claims(self.request(pb::FindSimilarClaimsRequest {
                content,
                sha256: a.image.sha256.unwrap_or_default(),
                pdq: a.image.pdq.unwrap_or_default(),
                max_distance: a.max_distance,
                include_low_quality: a.include_low_quality,
                page_size: a.limit,
            })?)
            .await
            .map_err(|s| in_flag_words(s, SIMILAR_FLAGS))?
            .into_inner();
        if self.json {
            self.print_json(&reply, "photoclaim.v1.FindSimilarClaimsResponse");
            return Ok(());
        }
        if !reply.query_pdq.is_empty() {
            eprintln!(
                "query pdq {}{}",
                reply.query_pdq,
                match reply.query_pdq_quality {
                    0 => String::new(),
                    q => format!(" (quality {q} of 100)"),
                }
            );
        }
        if reply.query_low_quality {
            eprintln!(
                "the image is too featureless (PDQ quality below 50) for near-duplicate \
                 matching: only exact copies are listed (--include-low-quality to match anyway)"
            );
        }
        if reply.matches.is_empty() {
            eprintln!("no claim on this image or a near duplicate");
            return Ok(());
        }
        outln!(
            "{:<12} {:>8} {:<5} {:<12} {:<34} CLAIM",
            "NAME",
            "DISTANCE",
            "EXACT",
            "STATE",
            "RATING"
        );
        for m in &reply.matches {
            let claim = m.claim.clone().unwrap_or_default();
            let status = claim.verification_status.clone().unwrap_or_default();
            outln!(
                "{:<12} {:>8} {:<5} {:<12} {:<34} {}",
                claim.name,
                m.distance,
                if m.exact { "yes" } else { "no" },
                state_word(status.state),
                verdict_words(&status),
                excerpt(&claim.claim_text, 60)
            );
        }
        Ok(())
    }

    async fn review(&mut self, a: ReviewArgs) -> Outcome {
        let reply = self
            .client
            .export_claim_review(self.request(pb::ExportClaimReviewRequest {
                claim: a.claim.clone(),
            })?)
            .await
            .map_err(|s| {
                let unresolved = s.code() == tonic::Code::FailedPrecondition;
                let failure = Failure::from(s);
                if unresolved {
                    failure.hint(format!(
                        "set a verdict first: photoclaim claim verdict {} --rating ... --media ... \
                         --rationale ...",
                        a.claim
                    ))
                } else {
                    failure
                }
            })?
            .into_inner();
        let documents = [
            ("claim-review", reply.claim_review),
            ("media-review", reply.media_review),
        ];
        match &a.out {
            None if self.json => self.print_json(
                &pb::ExportClaimReviewResponse {
                    claim_review: documents[0].1.clone(),
                    media_review: documents[1].1.clone(),
                },
                "photoclaim.v1.ExportClaimReviewResponse",
            ),
            None => {
                for (_, document) in documents.iter().filter(|(_, d)| !d.is_empty()) {
                    outln!("{}", pretty_json(document));
                }
            }
            Some(dir) => {
                let stem = a.claim.replace('/', "-");
                for (kind, document) in documents.iter().filter(|(_, d)| !d.is_empty()) {
                    let path = dir.join(format!("{stem}.{kind}.jsonld"));
                    let text = pretty_json(document) + "\n";
                    crate::cli::export::write_atomically(&path, |partial| async move {
                        std::fs::write(&partial, text).map_err(|e| {
                            Failure::other(format!("cannot write {}: {e}", partial.display()))
                        })
                    })
                    .await?;
                    outln!("{}", path.display());
                }
            }
        }
        Ok(())
    }

    fn print_event(&self, event: &pb::ClaimEvent) {
        if self.json {
            outln!(
                "{}",
                pb::to_json_text(event, "photoclaim.v1.ClaimEvent", false)
            );
        } else {
            outln!(
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

/// A JSON-LD document indented for people; as sent if it does not parse.
fn pretty_json(document: &str) -> String {
    serde_json::from_str::<serde_json::Value>(document)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| document.to_string())
}

/// The bytes of `--image-file`; a missing file is NOT_FOUND, naming the flag.
fn read_image_file(path: &std::path::Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| {
        let code = if e.kind() == std::io::ErrorKind::NotFound {
            tonic::Code::NotFound
        } else {
            tonic::Code::InvalidArgument
        };
        Failure::new(code, format!("--image-file {}: {e}", path.display()))
    })
}

/// Request fields of RegisterClaim and the flags that set them. A field
/// matches its entry or anything below it (`claim.tags[2]`); the longest
/// entry wins.
const REGISTER_FLAGS: &[(&str, &str)] = &[
    ("request_id", "--request-id"),
    ("claim.claim_text", "--text"),
    ("claim.claimant", "--claimant"),
    ("claim.language", "--language"),
    ("claim.appearance_urls", "--appearance-url"),
    ("claim.first_seen_time", "--first-seen"),
    ("claim.tags", "--tag"),
    ("claim.image", "--image-url, --image-sha256 or --image-file"),
    ("claim.image.source_url", "--image-url"),
    ("claim.image.sha256", "--image-sha256"),
    ("claim.image.content", "--image-file"),
    ("claim.image.pdq", "--image-file"),
    ("claim.image.credit", "--credit"),
    ("claim.image.publisher", "--publisher"),
    ("claim.image.published_time", "--published"),
    ("claim.image.captured_time", "--captured"),
    ("claim.image.location", "--location"),
    ("claim.image.caption", "--caption"),
];

/// Request fields of AttachOfficialResponse and their flags.
const RESPOND_FLAGS: &[(&str, &str)] = &[
    ("parent", "CLAIM"),
    ("request_id", "--request-id"),
    ("official_response.responder", "--organization"),
    ("official_response.responder.organization", "--organization"),
    ("official_response.responder.person", "--person"),
    ("official_response.responder.role", "--role"),
    ("official_response.kind", "--kind"),
    ("official_response.stance", "--stance"),
    ("official_response.text", "--text"),
    ("official_response.language", "--language"),
    ("official_response.source_url", "--source-url"),
    ("official_response.issue_time", "--issued"),
    ("official_response.in_reply_to", "--in-reply-to"),
];

/// Request fields of SetVerdict and their flags.
const VERDICT_FLAGS: &[(&str, &str)] = &[
    ("claim", "CLAIM"),
    ("claim_rating", "--rating"),
    ("media_authenticity", "--media"),
    ("rationale", "--rationale"),
    ("etag", "--etag"),
];

/// Request fields of FindSimilarClaims and their flags.
const SIMILAR_FLAGS: &[(&str, &str)] = &[
    ("content", "--image-file"),
    ("sha256", "--sha256"),
    ("pdq", "--pdq"),
    ("max_distance", "--max-distance"),
    ("page_size", "--limit"),
];

/// The flag-level wording of a few server descriptions that name API
/// fields themselves.
fn in_flag_terms(flag: &str, description: &str) -> String {
    if flag.starts_with("--image-url, ") && description.starts_with("give at least one of") {
        return "give at least one of an image URL, its SHA-256 or the file".into();
    }
    description.to_string()
}

/// A server's refusal with each `BadRequest` field violation named by the
/// flag that set the field (`--language: is required`); other statuses as
/// they are.
fn in_flag_words(status: tonic::Status, flags: &[(&str, &str)]) -> Failure {
    let violations = status
        .get_details_bad_request()
        .map(|b| b.field_violations)
        .unwrap_or_default();
    if status.code() != tonic::Code::InvalidArgument || violations.is_empty() {
        return Failure::from(status);
    }
    let parts: Vec<String> = violations
        .iter()
        .map(|v| {
            let (field, index) = split_index(&v.field);
            let flag = flags
                .iter()
                .filter(|(f, _)| field == *f || field.starts_with(&format!("{f}.")))
                .max_by_key(|(f, _)| f.len())
                .map(|(_, flag)| *flag);
            match flag {
                Some(flag) => {
                    let which =
                        index.map_or(String::new(), |i| format!(" (the {})", ordinal(i + 1)));
                    format!("{flag}{which}: {}", in_flag_terms(flag, &v.description))
                }
                None => format!("{}: {}", v.field, v.description),
            }
        })
        .collect();
    Failure::new(tonic::Code::InvalidArgument, parts.join("; "))
}

/// `("claim.tags", Some(2))` for `claim.tags[2]`; fields below an index
/// (`a[1].b`) keep only the part before it.
fn split_index(field: &str) -> (&str, Option<usize>) {
    match field.split_once('[') {
        Some((name, rest)) => (name, rest.split_once(']').and_then(|(i, _)| i.parse().ok())),
        None => (field, None),
    }
}

/// `1st`, `2nd`, `3rd`, `4th`, ... `11th`, `21st`.
fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
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
    fn refused_fields_are_named_by_the_flags_that_set_them() {
        let mut details = tonic_types::ErrorDetails::new();
        details.add_bad_request_violation("claim.language", "is required");
        details.add_bad_request_violation(
            "claim.image",
            "give at least one of source_url, sha256 or content",
        );
        details.add_bad_request_violation("claim.appearance_urls[1]", "is not a URL");
        details.add_bad_request_violation("claim.somewhere_new", "is wrong");
        let status = tonic::Status::with_error_details(
            tonic::Code::InvalidArgument,
            "claim.language: is required; ...",
            details,
        );
        let failure = in_flag_words(status, REGISTER_FLAGS);
        assert_eq!(failure.code, tonic::Code::InvalidArgument);
        assert_eq!(
            failure.message,
            "--language: is required; \
             --image-url, --image-sha256 or --image-file: give at least one of an image URL, \
             its SHA-256 or the file; \
             --appearance-url (the 2nd): is not a URL; \
             claim.somewhere_new: is wrong"
        );
        let plain = in_flag_words(
            tonic::Status::not_found("claims/9 not found"),
            REGISTER_FLAGS,
        );
        assert_eq!(plain.message, "claims/9 not found");
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
