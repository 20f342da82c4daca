//! The desk CLI's flags: the clap types of `photoclaim claim ...`.

use super::*;

/// `photoclaim claim ...`: its connection flags and the command.
#[derive(Args)]
pub struct ClaimArgs {
    #[command(flatten)]
    pub(super) connection: ConnectionArgs,
    /// Print replies as proto3 JSON (as grpcurl does, fields in proto
    /// order) instead of text.
    #[arg(long, global = true, help_heading = "Output")]
    pub(super) json: bool,
    #[command(subcommand)]
    pub(super) command: ClaimCommand,
}

/// How to reach the server; the same flags as `photoclaim keys --server`.
#[derive(Args)]
pub(super) struct ConnectionArgs {
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
    pub(super) server: String,
    #[command(flatten)]
    pub(super) credentials: crate::cli::credentials::CredentialArgs,
}

#[derive(Subcommand)]
pub(super) enum ClaimCommand {
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
    /// ready to publish. Refused when the pre-publication checks find an
    /// error (--force exports anyway).
    Review(ReviewArgs),
    /// Check a verdict against the record before publishing it: content
    /// credentials, the original context, the image's earliest sighting,
    /// unanswered refutations. Without --rating/--media/--rationale, the
    /// claim's current verdict. Exit status 1 when an error is found.
    Check(Box<CheckArgs>),
    /// "Has this been checked before?" by text: search claims and imported
    /// fact-checks (words match their inflected forms; "quoted phrases";
    /// -word excludes), with filters; prints a table with the matched
    /// passages.
    Search(Box<SearchArgs>),
}

#[derive(Args)]
pub(super) struct SearchArgs {
    /// The query: words, "quoted phrases", -excluded words. May be empty
    /// when a filter is given.
    #[arg(default_value = "")]
    pub(super) query: String,
    /// BCP-47 language of the query (default: every language's analysis).
    #[arg(long)]
    pub(super) language: Option<String>,
    /// Only claims in this state (repeatable).
    #[arg(long, value_enum)]
    pub(super) state: Vec<StateArg>,
    /// Only claims with this claim rating (repeatable).
    #[arg(long, value_enum)]
    pub(super) rating: Vec<RatingArg>,
    /// Only claims with this media authenticity (repeatable).
    #[arg(long, value_enum)]
    pub(super) media: Vec<MediaArg>,
    /// Only records in this language, e.g. `ru` (repeatable).
    #[arg(long = "in-language")]
    pub(super) languages: Vec<String>,
    /// Only claims with this tag (repeatable).
    #[arg(long)]
    pub(super) tag: Vec<String>,
    /// Only records whose claimant contains these words.
    #[arg(long)]
    pub(super) claimant: Option<String>,
    /// Only claims with a response from an organization whose name contains these words.
    #[arg(long)]
    pub(super) organization: Option<String>,
    /// Only records first seen at or after this time (RFC 3339).
    #[arg(long, value_parser = timestamp)]
    pub(super) first_seen_after: Option<prost_types::Timestamp>,
    /// Only records first seen before this time (RFC 3339).
    #[arg(long, value_parser = timestamp)]
    pub(super) first_seen_before: Option<prost_types::Timestamp>,
    /// Only records updated at or after this time (RFC 3339).
    #[arg(long, value_parser = timestamp)]
    pub(super) updated_after: Option<prost_types::Timestamp>,
    /// Only records updated before this time (RFC 3339).
    #[arg(long, value_parser = timestamp)]
    pub(super) updated_before: Option<prost_types::Timestamp>,
    /// Newest first instead of best match first.
    #[arg(long)]
    pub(super) newest: bool,
    /// Only our claims, or only imported fact-checks.
    #[arg(long, value_enum)]
    pub(super) source: Option<SourceArg>,
    /// Most results (1-100).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i32).range(1..=100))]
    pub(super) limit: i32,
    /// Continue a search: the page token printed by the previous page.
    #[arg(long)]
    pub(super) page_token: Option<String>,
}

/// Which records `claim search` looks at.
#[derive(Clone, Copy, ValueEnum)]
pub(super) enum SourceArg {
    /// Our claims only.
    Claims,
    /// Imported fact-checks only.
    Reviews,
}

/// `photoclaim reviews ...`: imported fact-checks on a running server.
#[derive(Args)]
pub struct ReviewsArgs {
    #[command(flatten)]
    pub(super) connection: ConnectionArgs,
    /// Print replies as proto3 JSON instead of text.
    #[arg(long, global = true, help_heading = "Output")]
    pub(super) json: bool,
    #[command(subcommand)]
    pub(super) command: ReviewsCommand,
}

#[derive(Subcommand)]
pub(super) enum ReviewsCommand {
    /// Import ClaimReview / MediaReview JSON-LD files (one object, an array,
    /// JSON Lines, @graph, or a DataFeed), in batches with a progress bar;
    /// lists every refused item with its file, position, field and reason.
    Import {
        /// The files (`-` reads standard input).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Items sent per call (1-10,000).
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        batch: u32,
    },
    /// Show one imported fact-check: `externalReviews/3` or `3`.
    Show {
        /// The review.
        name: String,
    },
    /// List imported fact-checks, newest first.
    List {
        /// At most this many.
        #[arg(long)]
        limit: Option<u64>,
    },
}

#[derive(Args)]
pub(super) struct SimilarArgs {
    #[command(flatten)]
    pub(super) image: SimilarImage,
    /// Largest PDQ Hamming distance that counts as similar, 0-64 (default:
    /// the server's, 31 unless configured).
    #[arg(long, value_parser = clap::value_parser!(i32).range(0..=64))]
    pub(super) max_distance: Option<i32>,
    /// Also match featureless images (PDQ quality below 50), which collide easily.
    #[arg(long)]
    pub(super) include_low_quality: bool,
    /// Most matches to show (the server allows up to 1,000).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub(super) limit: i32,
    /// Only copies in the same orientation (default: rotated and mirrored
    /// copies too).
    #[arg(long)]
    pub(super) same_orientation_only: bool,
}

#[derive(Args)]
pub(super) struct CheckArgs {
    /// The claim: `claims/7` or `7`.
    #[arg(value_parser = claim_name)]
    pub(super) claim: String,
    /// The claim rating to check (with --media and --rationale).
    #[arg(long, value_enum, requires_all = ["media", "rationale"])]
    pub(super) rating: Option<RatingArg>,
    /// The media authenticity to check.
    #[arg(long, value_enum, requires_all = ["rating", "rationale"])]
    pub(super) media: Option<MediaArg>,
    /// The rationale to check.
    #[arg(long, requires_all = ["rating", "media"])]
    pub(super) rationale: Option<String>,
}

/// The image `claim similar` asks about: exactly one of these.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub(super) struct SimilarImage {
    /// The image file (JPEG, PNG, WebP or GIF); the server hashes it.
    #[arg(long)]
    pub(super) image_file: Option<PathBuf>,
    /// The image's SHA-256 (64 hex characters).
    #[arg(long)]
    pub(super) sha256: Option<String>,
    /// A PDQ hash (64 hex characters).
    #[arg(long)]
    pub(super) pdq: Option<String>,
}

#[derive(Args)]
pub(super) struct ReviewArgs {
    /// The claim: `claims/7` or `7`.
    #[arg(value_parser = claim_name)]
    pub(super) claim: String,
    /// Write `claims-7.claim-review.jsonld` (and `claims-7.media-review.jsonld`
    /// when there is one) into this directory instead of printing them.
    #[arg(long)]
    pub(super) out: Option<PathBuf>,
    /// Export even when the pre-publication checks find an error.
    #[arg(long)]
    pub(super) force: bool,
}

#[derive(Args)]
pub(super) struct RegisterArgs {
    /// What is claimed about the image.
    #[arg(long)]
    pub(super) text: String,
    /// Who made the claim (e.g. "social media posts").
    #[arg(long)]
    pub(super) claimant: Option<String>,
    /// BCP-47 language of the claim text, e.g. `en` (`und` when unknown).
    #[arg(long)]
    pub(super) language: String,
    /// Where the claim appeared (repeatable).
    #[arg(long = "appearance-url")]
    pub(super) appearance_urls: Vec<String>,
    /// When the desk first saw the claim (RFC 3339, e.g. 2022-01-08T00:00:00Z).
    #[arg(long, value_parser = timestamp)]
    pub(super) first_seen: Option<prost_types::Timestamp>,
    /// When the event the claim says the image shows took place (RFC 3339);
    /// the pre-publication checks compare it with the image's earliest sighting.
    #[arg(long, value_parser = timestamp)]
    pub(super) event: Option<prost_types::Timestamp>,
    /// A tag (repeatable).
    #[arg(long = "tag")]
    pub(super) tags: Vec<String>,
    /// Where the image was published.
    #[arg(long)]
    pub(super) image_url: Option<String>,
    /// SHA-256 of the image bytes (64 lower-case hex characters).
    #[arg(long)]
    pub(super) image_sha256: Option<String>,
    /// Send this image file; the server hashes it (SHA-256, PDQ) and finds near duplicates.
    #[arg(long)]
    pub(super) image_file: Option<PathBuf>,
    /// Image credit (e.g. "AP Photo").
    #[arg(long)]
    pub(super) credit: Option<String>,
    /// Who published the image.
    #[arg(long)]
    pub(super) publisher: Option<String>,
    /// When the image was published (RFC 3339).
    #[arg(long, value_parser = timestamp)]
    pub(super) published: Option<prost_types::Timestamp>,
    /// When the image was captured (RFC 3339).
    #[arg(long, value_parser = timestamp)]
    pub(super) captured: Option<prost_types::Timestamp>,
    /// Where the image was taken.
    #[arg(long)]
    pub(super) location: Option<String>,
    /// The caption as circulated.
    #[arg(long)]
    pub(super) caption: Option<String>,
    /// Makes a retry safe: the same id returns the first result. Default: a fresh id.
    #[arg(long)]
    pub(super) request_id: Option<String>,
}

#[derive(Args)]
pub(super) struct RespondArgs {
    /// The claim: `claims/7` or `7`.
    #[arg(value_parser = claim_name)]
    pub(super) claim: String,
    /// The responding organization.
    #[arg(long)]
    pub(super) organization: String,
    /// The person speaking for it, if named.
    #[arg(long)]
    pub(super) person: Option<String>,
    /// What kind of responder it is.
    #[arg(long, value_enum)]
    pub(super) role: Option<RoleArg>,
    /// What kind of response it is.
    #[arg(long, value_enum)]
    pub(super) kind: KindArg,
    /// Its stance toward this claim.
    #[arg(long, value_enum)]
    pub(super) stance: StanceArg,
    /// The response, verbatim.
    #[arg(long)]
    pub(super) text: String,
    /// BCP-47 language of the text, e.g. `en` (`und` when unknown).
    #[arg(long)]
    pub(super) language: String,
    /// Where the response was published.
    #[arg(long)]
    pub(super) source_url: Option<String>,
    /// When it was issued (RFC 3339).
    #[arg(long, value_parser = timestamp)]
    pub(super) issued: Option<prost_types::Timestamp>,
    /// The earlier response of this claim it answers: its name or its number.
    #[arg(long)]
    pub(super) in_reply_to: Option<String>,
    /// Makes a retry safe: the same id returns the first result. Default: a fresh id.
    #[arg(long)]
    pub(super) request_id: Option<String>,
}

#[derive(Args)]
pub(super) struct VerdictArgs {
    /// The claim: `claims/7` or `7`.
    #[arg(value_parser = claim_name)]
    pub(super) claim: String,
    /// How true the claim is.
    #[arg(long, value_enum)]
    pub(super) rating: RatingArg,
    /// How authentic the media is, in the context the claim puts it in.
    #[arg(long, value_enum)]
    pub(super) media: MediaArg,
    /// Why: shown with the verdict.
    #[arg(long)]
    pub(super) rationale: String,
    /// The etag the decision was based on (default: the current one, read first).
    #[arg(long)]
    pub(super) etag: Option<String>,
}

#[derive(Args)]
pub(super) struct WatchArgs {
    /// Only this claim's events (`claims/7` or `7`); default: every claim's.
    #[arg(value_parser = claim_name)]
    pub(super) claim: Option<String>,
    /// Only events of this type (repeatable).
    #[arg(long = "type", value_enum)]
    pub(super) types: Vec<EventTypeArg>,
    /// Resume after this cursor (printed with every event).
    #[arg(long, conflicts_with = "from_start")]
    pub(super) after: Option<String>,
    /// Replay every stored event first, then follow.
    #[arg(long)]
    pub(super) from_start: bool,
    /// Exit after this many events.
    #[arg(long)]
    pub(super) count: Option<u64>,
    /// Do not reconnect when the server interrupts the stream.
    #[arg(long)]
    pub(super) no_resume: bool,
}

/// Declares a friendly flag enum and its mapping to a protobuf enum.
macro_rules! flag_enum {
    ($(#[$doc:meta])* $name:ident => $pb:ty { $($(#[$vdoc:meta])* $variant:ident => $pbv:ident,)* }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, ValueEnum)]
        pub(super) enum $name { $($(#[$vdoc])* $variant,)* }
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
