//! Every flag of `photoclaim`: the clap types of the subcommands (the
//! desk's are in [`super::desk`]), parsed in `main.rs` and handed to
//! [`super::commands`].

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::domain::access::Role;
use crate::server;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// photoclaim: claims about images, official responses and verification status, over gRPC.
#[derive(Parser)]
#[command(version, about)]
pub struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "PHOTOCLAIM_LOG_FORMAT", global = true, help_heading = "Output")]
    pub log_format: LogFormat,
    /// More log lines on standard error: -v info, -vv debug (`serve` logs
    /// info by default, other commands warnings only; RUST_LOG wins).
    #[arg(short, long, action = clap::ArgAction::Count, global = true, help_heading = "Output")]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum RoleArg {
    /// Read claims, responses, statuses and events.
    Reader,
    /// Also register claims and attach official responses.
    Ingest,
    /// Also set verdicts.
    Desk,
    /// Also manage API keys.
    Admin,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Role {
        match role {
            RoleArg::Reader => Role::Reader,
            RoleArg::Ingest => Role::Ingest,
            RoleArg::Desk => Role::Desk,
            RoleArg::Admin => Role::Admin,
        }
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the gRPC server.
    Serve(Box<ServeArgs>),
    /// Manage API keys (on the data directory, or through a running server with --server).
    Keys {
        #[command(subcommand)]
        action: KeysAction,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Write every claim, with its official responses and events, as JSON Lines to a file
    /// (from the data directory, or through a running server with --server).
    Export {
        /// The file to write; it appears only once the export is complete.
        /// `-` writes to standard output.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Desk commands against a running server: register, show, list, status,
    /// respond, verdict, history, watch, similar, review.
    Claim(crate::cli::desk::ClaimArgs),
    /// Imported fact-checks on a running server: import ClaimReview /
    /// MediaReview JSON-LD files, show, list.
    Reviews(crate::cli::desk::ReviewsArgs),
    /// Rebuild the search index of a stopped data directory from scratch
    /// (a server also rebuilds it by itself when it is missing or of an
    /// older version).
    Reindex {
        /// The data directory (stop the server first).
        #[arg(long, default_value = "./photoclaim-data", env = "PHOTOCLAIM_DATA_DIR")]
        data_dir: PathBuf,
        /// The index directory, if not `search-index` in the data directory.
        #[arg(long, env = "PHOTOCLAIM_SEARCH_INDEX_DIR")]
        search_index_dir: Option<PathBuf>,
    },
    /// Write a consistent backup file (through a running server with --server,
    /// taken while it keeps writing; or from a stopped data directory).
    Backup {
        /// The file to write; it appears only once complete and verified.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Build a data directory from a backup file, verifying its checksum and
    /// every hash chain. The directory must be new or empty.
    Restore {
        /// The backup file.
        #[arg(long = "in")]
        input: PathBuf,
        /// The data directory to create.
        #[arg(
            long,
            env = "PHOTOCLAIM_DATA_DIR",
            required_unless_present = "database_url"
        )]
        data_dir: Option<PathBuf>,
        /// Restore into this PostgreSQL database instead, which must hold no
        /// claim yet (the backup is verified in a scratch directory first).
        #[arg(
            long,
            env = "PHOTOCLAIM_DATABASE_URL",
            hide_env_values = true,
            conflicts_with = "data_dir"
        )]
        database_url: Option<String>,
    },
    /// Copy a stopped data directory, key by key, into a new directory that
    /// takes less disk (sled keeps superseded page versions until it
    /// reclaims whole segments); the copy is checked before it appears. The
    /// source is only read.
    Compact {
        /// The data directory to compact (stop the server first).
        #[arg(long, env = "PHOTOCLAIM_DATA_DIR")]
        data_dir: PathBuf,
        /// The new data directory to write (absent or empty).
        #[arg(long)]
        out: PathBuf,
    },
    /// Add synthetic claims to a (stopped) data directory for scale tests:
    /// six languages, 1-5 responses each, verdicts on half, PDQ hashes in clusters.
    Generate {
        /// The data directory (created if missing).
        #[arg(long, env = "PHOTOCLAIM_DATA_DIR")]
        data_dir: PathBuf,
        /// How many claims to add.
        #[arg(long)]
        claims: u64,
        /// Seed: the same seed gives the same claims.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Load a running server: N connections x M requests in flight, the
    /// health-check baseline first, then an RPC mix; reports requests/s,
    /// latency percentiles and errors per RPC. It writes: use a scratch server.
    Bench(Box<BenchArgs>),
    /// PostgreSQL schema: `photoclaim db migrate` applies the migrations the
    /// database lacks (servers also do at start).
    Db {
        #[command(subcommand)]
        action: DbAction,
    },
    /// Verify a data directory offline (stop the server first): format
    /// version, every hash chain, every index. Exit code 8 if anything is wrong.
    Check {
        /// The data directory to check.
        #[arg(long, default_value = "./photoclaim-data", env = "PHOTOCLAIM_DATA_DIR")]
        data_dir: PathBuf,
        /// Check this PostgreSQL database instead: its tables are copied
        /// from one snapshot into a scratch directory (replicas may keep
        /// writing) and checked there.
        #[arg(long, env = "PHOTOCLAIM_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum DbAction {
    /// Apply the schema migrations the database lacks, under an advisory
    /// lock (safe while replicas start), and print the schema version.
    Migrate {
        /// The database: `postgres://USER[:PASSWORD]@HOST:PORT/DB`.
        #[arg(long, env = "PHOTOCLAIM_DATABASE_URL", hide_env_values = true)]
        database_url: String,
    },
    /// Copy a stopped data directory into an empty database, byte for byte
    /// (moving a sled deployment to PostgreSQL without a backup file; check
    /// the directory first with `photoclaim check`).
    Load {
        /// The data directory (no server may hold it).
        #[arg(long, env = "PHOTOCLAIM_DATA_DIR")]
        data_dir: PathBuf,
        /// The database, which must hold no claim, event, key or request record.
        #[arg(long, env = "PHOTOCLAIM_DATABASE_URL", hide_env_values = true)]
        database_url: String,
    },
}

#[derive(Args)]
pub struct BenchArgs {
    /// The server to load (HOST:PORT plaintext, http://HOST:PORT or https://HOST:PORT).
    #[arg(
        long,
        default_value = "127.0.0.1:50051",
        env = "PHOTOCLAIM_SERVER",
        help_heading = "Connection"
    )]
    pub server: String,
    /// HTTP/2 connections.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// Requests in flight on each connection.
    #[arg(long, default_value_t = 32)]
    pub in_flight: usize,
    /// Counted seconds of each phase.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Uncounted seconds before each phase's count starts.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// RPCs and weights: health, register, get, status, attach, verdict,
    /// similar; e.g. `status` or `register=1,status=8,similar=1`.
    #[arg(long, default_value = "status")]
    pub mix: String,
    /// Instead of a mix: register N claims one after another and report
    /// how long after each was acknowledged SearchClaims first found it
    /// (the search index's freshness: p50, p99, max).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub search_lag: Option<u64>,
    /// Skip the health-check baseline.
    #[arg(long)]
    pub no_baseline: bool,
    /// When the mix reads or changes claims, register claims first until the
    /// server holds at least this many.
    #[arg(long, default_value_t = 1000)]
    pub prepare: u64,
    /// Seed of the request choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Build every reply into its message type, as a client would. By
    /// default replies are only skimmed (checked to be well-formed, their
    /// fields skipped), which keeps the bench's own CPU off the figures.
    #[arg(long)]
    pub decode_replies: bool,
    /// Print the report as JSON instead of a table.
    #[arg(long, help_heading = "Output")]
    pub json: bool,
    /// Exit with status 1 when any reply was an error (for smoke runs).
    #[arg(long)]
    pub fail_on_errors: bool,
    /// Credentials (a key with the roles the mix needs: ingest to register
    /// and attach, desk for verdicts).
    #[command(flatten)]
    pub credentials: crate::cli::credentials::CredentialArgs,
}

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:50051", env = "PHOTOCLAIM_LISTEN")]
    pub listen: SocketAddr,
    /// Directory of the embedded sled database (created if missing).
    #[arg(long, default_value = "./photoclaim-data", env = "PHOTOCLAIM_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Keep everything in memory instead of a data directory: for demos and
    /// trials; nothing survives the process.
    #[arg(long, env = "PHOTOCLAIM_IN_MEMORY", conflicts_with = "data_dir")]
    pub in_memory: bool,
    /// Serve from a PostgreSQL database instead of a data directory, shared
    /// by any number of replicas: `postgres://USER[:PASSWORD]@HOST:PORT/DB`
    /// (or libpq's key=value form). The schema is migrated at start;
    /// docs/postgres.md.
    #[arg(long, env = "PHOTOCLAIM_DATABASE_URL", hide_env_values = true, conflicts_with_all = ["data_dir", "in_memory"], help_heading = "PostgreSQL")]
    pub database_url: Option<String>,
    /// Connections (and threads) for reads, per replica.
    #[arg(long, default_value_t = crate::store::DEFAULT_PG_READERS, env = "PHOTOCLAIM_DATABASE_READERS", value_parser = clap::value_parser!(u16).range(1..=256), help_heading = "PostgreSQL")]
    pub database_readers: u16,
    /// Wake on other replicas' writes with LISTEN/NOTIFY (set false on
    /// PostgreSQL-compatible engines that lack it: polling alone then).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, env = "PHOTOCLAIM_DATABASE_NOTIFY", help_heading = "PostgreSQL")]
    pub database_notify: bool,
    /// Milliseconds between looks at the shared log without a notification
    /// (how late watchers hear of other replicas' writes at worst).
    #[arg(long, default_value_t = crate::store::DEFAULT_PG_POLL.as_millis() as u64, env = "PHOTOCLAIM_DATABASE_POLL_MS", value_parser = clap::value_parser!(u64).range(10..=600_000), help_heading = "PostgreSQL")]
    pub database_poll_ms: u64,
    /// Turn full-text search off: no index is kept, SearchClaims answers
    /// FAILED_PRECONDITION and registrations list no "checked before?".
    #[arg(long, env = "PHOTOCLAIM_NO_SEARCH", help_heading = "Search")]
    pub no_search: bool,
    /// Directory of the search index. Default: `search-index` inside the
    /// data directory; in memory (rebuilt at every start) with
    /// --in-memory or --database-url.
    #[arg(
        long,
        env = "PHOTOCLAIM_SEARCH_INDEX_DIR",
        conflicts_with = "no_search",
        help_heading = "Search"
    )]
    pub search_index_dir: Option<PathBuf>,
    /// PEM file of the certificates whose Content Credentials (C2PA)
    /// signers count as TRUSTED. Without it no signer is trusted and the
    /// best state is VALID. Nothing is fetched over the network.
    #[arg(
        long,
        env = "PHOTOCLAIM_C2PA_TRUST_ANCHORS",
        help_heading = "Provenance"
    )]
    pub c2pa_trust_anchors: Option<PathBuf>,
    /// Do not read Content Credentials from uploaded images.
    #[arg(
        long,
        env = "PHOTOCLAIM_NO_CONTENT_CREDENTIALS",
        conflicts_with = "c2pa_trust_anchors",
        help_heading = "Provenance"
    )]
    pub no_content_credentials: bool,
    /// Largest request message accepted, in bytes (keep it above --max-image-bytes).
    #[arg(long, default_value_t = server::DEFAULT_MAX_MESSAGE_BYTES, env = "PHOTOCLAIM_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: usize,
    /// Largest image accepted in `image.content` / `content`, in bytes.
    #[arg(long, default_value_t = server::DEFAULT_MAX_IMAGE_BYTES, env = "PHOTOCLAIM_MAX_IMAGE_BYTES")]
    pub max_image_bytes: usize,
    /// PDQ Hamming distance (0-64) that counts as a near duplicate by default.
    #[arg(long, default_value_t = server::DEFAULT_SIMILARITY_DISTANCE, env = "PHOTOCLAIM_SIMILARITY_MAX_DISTANCE", value_parser = clap::value_parser!(u32).range(0..=64))]
    pub similarity_max_distance: u32,
    /// Seconds in-flight calls get to finish after SIGINT/SIGTERM.
    #[arg(long, default_value_t = server::DEFAULT_SHUTDOWN_GRACE.as_secs(), env = "PHOTOCLAIM_SHUTDOWN_GRACE_SECONDS")]
    pub shutdown_grace_seconds: u64,
    /// Serve callers without an API key on a non-loopback address while no key exists.
    #[arg(long, env = "PHOTOCLAIM_INSECURE_ALLOW_ANONYMOUS")]
    pub insecure_allow_anonymous: bool,
    /// PEM certificate chain: serve TLS (needs --tls-key).
    #[arg(long, env = "PHOTOCLAIM_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "PHOTOCLAIM_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates: require every client to present a certificate issued by one (mutual TLS).
    #[arg(long, env = "PHOTOCLAIM_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Role of callers identified only by a client certificate (no bearer token).
    #[arg(long, value_enum, default_value_t = RoleArg::Reader, env = "PHOTOCLAIM_CLIENT_CERT_ROLE")]
    pub client_cert_role: RoleArg,
    /// Calls in flight across all connections before new ones get RESOURCE_EXHAUSTED (0: no limit).
    #[arg(long, default_value_t = server::DEFAULT_MAX_IN_FLIGHT, env = "PHOTOCLAIM_MAX_IN_FLIGHT")]
    pub max_in_flight: usize,
    /// Calls in flight one caller may hold (an API key, a client
    /// certificate, or an anonymous caller's address); the last sixteenth
    /// of --max-in-flight is kept for admins.
    #[arg(long, default_value_t = server::DEFAULT_MAX_IN_FLIGHT_PER_CALLER, env = "PHOTOCLAIM_MAX_IN_FLIGHT_PER_CALLER", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub max_in_flight_per_caller: usize,
    /// Concurrent calls on one connection; more wait.
    #[arg(long, default_value_t = server::DEFAULT_MAX_CALLS_PER_CONNECTION, env = "PHOTOCLAIM_MAX_CALLS_PER_CONNECTION")]
    pub max_calls_per_connection: usize,
    /// Connections open at once; more are closed as they arrive (keep it
    /// below the process's descriptor limit, `ulimit -n`).
    #[arg(long, default_value_t = server::DEFAULT_MAX_CONNECTIONS, env = "PHOTOCLAIM_MAX_CONNECTIONS", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub max_connections: usize,
    /// Seconds a new connection may take to send its first bytes (the HTTP/2
    /// preface or a TLS ClientHello) before it is closed.
    #[arg(long, default_value_t = server::DEFAULT_FIRST_BYTES_TIMEOUT.as_secs(), env = "PHOTOCLAIM_FIRST_BYTES_TIMEOUT_SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub first_bytes_timeout_seconds: u64,
    /// MiB of request bodies all calls together may hold while they arrive;
    /// a body past it is refused with RESOURCE_EXHAUSTED. (Each method has
    /// its own message limit too: --max-message-bytes for the two that
    /// carry images, 1 MiB for responses and verdicts, 64 KiB for the rest.)
    #[arg(long, default_value_t = (crate::api::body_limits::DEFAULT_BODY_BYTES_IN_FLIGHT >> 20) as u64, env = "PHOTOCLAIM_MAX_BODY_MB_IN_FLIGHT", value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub max_body_mb_in_flight: u64,
    /// Seconds a request body may send nothing before it is complete; then
    /// the call ends with DEADLINE_EXCEEDED.
    #[arg(long, default_value_t = crate::api::body_limits::DEFAULT_BODY_TIMEOUT.as_secs(), env = "PHOTOCLAIM_BODY_TIMEOUT_SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub body_timeout_seconds: u64,
    /// Longest any call may run, in seconds (a shorter grpc-timeout from the client wins).
    #[arg(long, default_value_t = server::DEFAULT_REQUEST_TIMEOUT.as_secs(), env = "PHOTOCLAIM_REQUEST_TIMEOUT_SECONDS")]
    pub request_timeout_seconds: u64,
    /// Seconds between HTTP/2 keepalive pings.
    #[arg(long, default_value_t = server::DEFAULT_KEEPALIVE_INTERVAL.as_secs(), env = "PHOTOCLAIM_KEEPALIVE_SECONDS")]
    pub keepalive_seconds: u64,
    /// Browser origin allowed to call over gRPC-Web, e.g.
    /// `https://desk.example.org` (repeatable; env: comma-separated). None by
    /// default: browsers on other origins are refused.
    #[arg(long = "cors-allow-origin", env = "PHOTOCLAIM_CORS_ALLOW_ORIGINS", value_delimiter = ',', value_parser = parse_origin)]
    pub cors_allow_origins: Vec<String>,
    /// Events WatchClaimEvents holds for a consumer that is not reading.
    #[arg(long, default_value_t = 1024, env = "PHOTOCLAIM_WATCH_BUFFER", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub watch_buffer: u32,
    /// KiB a WatchClaimEvents stream holds for a consumer that is not
    /// reading (events at their encoded size plus 512 bytes; one event
    /// always fits).
    #[arg(long, default_value_t = (crate::api::watch::DEFAULT_STREAM_BUFFER_BYTES >> 10) as u64, env = "PHOTOCLAIM_WATCH_STREAM_BUFFER_KB", value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub watch_stream_buffer_kb: u64,
    /// MiB all WatchClaimEvents streams' buffers hold together; a stream
    /// that cannot buffer more waits, then stalls as if its own buffer
    /// were full.
    #[arg(long, default_value_t = (crate::api::watch::DEFAULT_TOTAL_BUFFER_BYTES >> 20) as u64, env = "PHOTOCLAIM_WATCH_BUFFER_MB", value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub watch_buffer_mb: u64,
    /// Seconds a watch stream's buffer may stay full before the stream ends
    /// with RESOURCE_EXHAUSTED and a cursor to resume from.
    #[arg(long, default_value_t = 10, env = "PHOTOCLAIM_WATCH_STALL_SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub watch_stall_seconds: u64,
    /// WatchClaimEvents streams open at once; more are refused with
    /// RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = 1024, env = "PHOTOCLAIM_WATCH_MAX_STREAMS", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub watch_max_streams: u32,
    /// WatchClaimEvents streams one caller may have open; the last
    /// sixteenth of --watch-max-streams is kept for admins.
    #[arg(long, default_value_t = crate::api::watch::DEFAULT_MAX_STREAMS_PER_CALLER as u32, env = "PHOTOCLAIM_WATCH_MAX_STREAMS_PER_CALLER", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub watch_max_streams_per_caller: u32,
    /// sled's page cache, in MiB. Reads that miss it go to the disk log:
    /// for fast reads over a large archive, size it to the data's logical
    /// size (the last line of `photoclaim check`). BENCHMARKS.md has figures.
    #[arg(long, default_value_t = crate::store::DEFAULT_CACHE_BYTES >> 20, env = "PHOTOCLAIM_CACHE_MB", value_parser = clap::value_parser!(u64).range(16..=1_048_576))]
    pub cache_mb: u64,
    /// Statuses kept in memory for GetVerificationStatus, in MiB (0: off).
    /// Every write updates its entry before it is acknowledged, so a cached
    /// status is never older than an acknowledged write. About 1.2 KB a
    /// claim: size it to hold the claims desks read. Filled at start-up with
    /// the newest claims, on a background thread.
    #[arg(long, default_value_t = crate::store::DEFAULT_STATUS_CACHE_BYTES >> 20, env = "PHOTOCLAIM_STATUS_CACHE_MB", value_parser = clap::value_parser!(u64).range(0..=1_048_576))]
    pub status_cache_mb: u64,
    /// Claims (with their latest response) kept in memory for GetClaim and
    /// the claims of FindSimilarClaims replies, in MiB (0: off). Kept up to
    /// date like the status cache. About 3.3 KB a claim of the generated
    /// archive: size it to the claims desks open. Filled at start-up with
    /// the newest claims, with the status cache.
    #[arg(long, default_value_t = crate::store::DEFAULT_CLAIM_CACHE_BYTES >> 20, env = "PHOTOCLAIM_CLAIM_CACHE_MB", value_parser = clap::value_parser!(u64).range(0..=1_048_576))]
    pub claim_cache_mb: u64,
    /// Free space, in MiB, that writes leave on the data directory's file
    /// system. Below it writes are refused with RESOURCE_EXHAUSTED (reads
    /// are served, health reports NOT_SERVING) and resume by themselves once
    /// space is freed. 0: only a failed disk write stops writes (the store
    /// is then reopened in-process once space is back).
    #[arg(long, default_value_t = crate::store::DEFAULT_MIN_FREE_DISK_BYTES >> 20, env = "PHOTOCLAIM_MIN_FREE_DISK_MB", value_parser = clap::value_parser!(u64).range(0..=1_048_576))]
    pub min_free_disk_mb: u64,
    /// Serve Prometheus metrics at http://ADDR/metrics (plain HTTP, no
    /// authentication: bind it to a private interface). Off by default.
    #[arg(long, env = "PHOTOCLAIM_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Name of the organization publishing reviews: the `author` of ExportClaimReview's JSON-LD.
    #[arg(long, default_value = "", env = "PHOTOCLAIM_PUBLISHER_NAME")]
    pub publisher_name: String,
    /// Home page (http or https) of the publishing organization.
    #[arg(long, default_value = "", env = "PHOTOCLAIM_PUBLISHER_URL")]
    pub publisher_url: String,
    /// URL of a claim's review page, `{id}` standing for the claim id
    /// (e.g. https://factcheck.example/claims/{id}); the reviews' `url`.
    #[arg(long, default_value = "", env = "PHOTOCLAIM_REVIEW_URL_TEMPLATE")]
    pub review_url_template: String,
}

/// An origin as browsers send it: `scheme://host[:port]`, nothing after.
pub fn parse_origin(value: &str) -> Result<String, String> {
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
        .ok_or(
            "must start with https:// or http:// (an origin such as https://desk.example.org)",
        )?;
    let valid = !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if valid {
        Ok(value.to_string())
    } else {
        Err("must be an origin: scheme://host[:port], with no path or trailing slash".into())
    }
}

#[derive(Subcommand)]
pub enum KeysAction {
    /// Create a key and print its token (shown only this once) on standard output.
    Create {
        /// The key's name; recorded as the actor of everything done with it.
        #[arg(long)]
        name: String,
        /// What the key may do.
        #[arg(long, value_enum)]
        role: RoleArg,
    },
    /// List all keys, active and revoked (never their tokens).
    List,
    /// Revoke a key; calls with its token fail from then on.
    Revoke {
        /// The key's name.
        name: String,
    },
}

#[derive(Args)]
pub struct TargetArgs {
    /// Data directory to work on (when no server is running on it); ignored
    /// when --server (or PHOTOCLAIM_SERVER) is set.
    #[arg(
        long,
        default_value = "./photoclaim-data",
        env = "PHOTOCLAIM_DATA_DIR",
        global = true
    )]
    pub data_dir: PathBuf,
    /// Work through this running server instead (HOST:PORT plaintext,
    /// http://HOST:PORT or https://HOST:PORT).
    #[arg(
        long,
        env = "PHOTOCLAIM_SERVER",
        global = true,
        help_heading = "Connection"
    )]
    pub server: Option<String>,
    /// Credentials for --server (an admin key's token).
    #[command(flatten)]
    pub credentials: crate::cli::credentials::CredentialArgs,
}
