//! The `photoclaim` binary: parses flags, sets up logging, calls the library.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use photoclaim::api::auth::AuthPolicy;
use photoclaim::api::{ImageOptions, WatchOptions};
use photoclaim::cli::Target;
use photoclaim::cli::{self, Failure, LogWriter};
use photoclaim::domain::access::Role;
use photoclaim::domain::review::Publisher;
use photoclaim::export;
use photoclaim::keys;
use photoclaim::server::{self, Options, TlsFiles};
use photoclaim::store::{SledStore, Store};
use photoclaim::{out, outln};

/// photoclaim: claims about images, official responses and verification status, over gRPC.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "PHOTOCLAIM_LOG_FORMAT", global = true, help_heading = "Output")]
    log_format: LogFormat,
    /// More log lines on standard error: -v info, -vv debug (`serve` logs
    /// info by default, other commands warnings only; RUST_LOG wins).
    #[arg(short, long, action = clap::ArgAction::Count, global = true, help_heading = "Output")]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
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
enum Command {
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
    Claim(photoclaim::desk::ClaimArgs),
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
        #[arg(long, env = "PHOTOCLAIM_DATA_DIR")]
        data_dir: PathBuf,
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
    /// Verify a data directory offline (stop the server first): format
    /// version, every hash chain, every index. Exit code 8 if anything is wrong.
    Check {
        /// The data directory to check.
        #[arg(long, default_value = "./photoclaim-data", env = "PHOTOCLAIM_DATA_DIR")]
        data_dir: PathBuf,
    },
}

#[derive(Args)]
struct BenchArgs {
    /// The server to load (HOST:PORT plaintext, http://HOST:PORT or https://HOST:PORT).
    #[arg(
        long,
        default_value = "127.0.0.1:50051",
        env = "PHOTOCLAIM_SERVER",
        help_heading = "Connection"
    )]
    server: String,
    /// HTTP/2 connections.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Requests in flight on each connection.
    #[arg(long, default_value_t = 32)]
    in_flight: usize,
    /// Counted seconds of each phase.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Uncounted seconds before each phase's count starts.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// RPCs and weights: health, register, get, status, attach, verdict,
    /// similar; e.g. `status` or `register=1,status=8,similar=1`.
    #[arg(long, default_value = "status")]
    mix: String,
    /// Skip the health-check baseline.
    #[arg(long)]
    no_baseline: bool,
    /// When the mix reads or changes claims, register claims first until the
    /// server holds at least this many.
    #[arg(long, default_value_t = 1000)]
    prepare: u64,
    /// Seed of the request choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Build every reply into its message type, as a client would. By
    /// default replies are only skimmed (checked to be well-formed, their
    /// fields skipped), which keeps the bench's own CPU off the figures.
    #[arg(long)]
    decode_replies: bool,
    /// Print the report as JSON instead of a table.
    #[arg(long, help_heading = "Output")]
    json: bool,
    /// Exit with status 1 when any reply was an error (for smoke runs).
    #[arg(long)]
    fail_on_errors: bool,
    /// Credentials (a key with the roles the mix needs: ingest to register
    /// and attach, desk for verdicts).
    #[command(flatten)]
    credentials: photoclaim::remote::CredentialArgs,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:50051", env = "PHOTOCLAIM_LISTEN")]
    listen: SocketAddr,
    /// Directory of the embedded sled database (created if missing).
    #[arg(long, default_value = "./photoclaim-data", env = "PHOTOCLAIM_DATA_DIR")]
    data_dir: PathBuf,
    /// Largest request message accepted, in bytes (keep it above --max-image-bytes).
    #[arg(long, default_value_t = server::DEFAULT_MAX_MESSAGE_BYTES, env = "PHOTOCLAIM_MAX_MESSAGE_BYTES")]
    max_message_bytes: usize,
    /// Largest image accepted in `image.content` / `content`, in bytes.
    #[arg(long, default_value_t = server::DEFAULT_MAX_IMAGE_BYTES, env = "PHOTOCLAIM_MAX_IMAGE_BYTES")]
    max_image_bytes: usize,
    /// PDQ Hamming distance (0-64) that counts as a near duplicate by default.
    #[arg(long, default_value_t = server::DEFAULT_SIMILARITY_DISTANCE, env = "PHOTOCLAIM_SIMILARITY_MAX_DISTANCE", value_parser = clap::value_parser!(u32).range(0..=64))]
    similarity_max_distance: u32,
    /// Seconds in-flight calls get to finish after SIGINT/SIGTERM.
    #[arg(long, default_value_t = server::DEFAULT_SHUTDOWN_GRACE.as_secs(), env = "PHOTOCLAIM_SHUTDOWN_GRACE_SECONDS")]
    shutdown_grace_seconds: u64,
    /// Serve callers without an API key on a non-loopback address while no key exists.
    #[arg(long, env = "PHOTOCLAIM_INSECURE_ALLOW_ANONYMOUS")]
    insecure_allow_anonymous: bool,
    /// PEM certificate chain: serve TLS (needs --tls-key).
    #[arg(long, env = "PHOTOCLAIM_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "PHOTOCLAIM_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// PEM CA certificates: require every client to present a certificate issued by one (mutual TLS).
    #[arg(long, env = "PHOTOCLAIM_TLS_CLIENT_CA", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Role of callers identified only by a client certificate (no bearer token).
    #[arg(long, value_enum, default_value_t = RoleArg::Reader, env = "PHOTOCLAIM_CLIENT_CERT_ROLE")]
    client_cert_role: RoleArg,
    /// Calls in flight across all connections before new ones get RESOURCE_EXHAUSTED (0: no limit).
    #[arg(long, default_value_t = server::DEFAULT_MAX_IN_FLIGHT, env = "PHOTOCLAIM_MAX_IN_FLIGHT")]
    max_in_flight: usize,
    /// Calls in flight one caller may hold (an API key, a client
    /// certificate, or an anonymous caller's address); the last sixteenth
    /// of --max-in-flight is kept for admins.
    #[arg(long, default_value_t = server::DEFAULT_MAX_IN_FLIGHT_PER_CALLER, env = "PHOTOCLAIM_MAX_IN_FLIGHT_PER_CALLER", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    max_in_flight_per_caller: usize,
    /// Concurrent calls on one connection; more wait.
    #[arg(long, default_value_t = server::DEFAULT_MAX_CALLS_PER_CONNECTION, env = "PHOTOCLAIM_MAX_CALLS_PER_CONNECTION")]
    max_calls_per_connection: usize,
    /// Connections open at once; more are closed as they arrive (keep it
    /// below the process's descriptor limit, `ulimit -n`).
    #[arg(long, default_value_t = server::DEFAULT_MAX_CONNECTIONS, env = "PHOTOCLAIM_MAX_CONNECTIONS", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    max_connections: usize,
    /// Seconds a new connection may take to send its first bytes (the HTTP/2
    /// preface or a TLS ClientHello) before it is closed.
    #[arg(long, default_value_t = server::DEFAULT_FIRST_BYTES_TIMEOUT.as_secs(), env = "PHOTOCLAIM_FIRST_BYTES_TIMEOUT_SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    first_bytes_timeout_seconds: u64,
    /// MiB of request bodies all calls together may hold while they arrive;
    /// a body past it is refused with RESOURCE_EXHAUSTED. (Each method has
    /// its own message limit too: --max-message-bytes for the two that
    /// carry images, 1 MiB for responses and verdicts, 64 KiB for the rest.)
    #[arg(long, default_value_t = (photoclaim::api::body_limits::DEFAULT_BODY_BYTES_IN_FLIGHT >> 20) as u64, env = "PHOTOCLAIM_MAX_BODY_MB_IN_FLIGHT", value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    max_body_mb_in_flight: u64,
    /// Seconds a request body may send nothing before it is complete; then
    /// the call ends with DEADLINE_EXCEEDED.
    #[arg(long, default_value_t = photoclaim::api::body_limits::DEFAULT_BODY_TIMEOUT.as_secs(), env = "PHOTOCLAIM_BODY_TIMEOUT_SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    body_timeout_seconds: u64,
    /// Longest any call may run, in seconds (a shorter grpc-timeout from the client wins).
    #[arg(long, default_value_t = server::DEFAULT_REQUEST_TIMEOUT.as_secs(), env = "PHOTOCLAIM_REQUEST_TIMEOUT_SECONDS")]
    request_timeout_seconds: u64,
    /// Seconds between HTTP/2 keepalive pings.
    #[arg(long, default_value_t = server::DEFAULT_KEEPALIVE_INTERVAL.as_secs(), env = "PHOTOCLAIM_KEEPALIVE_SECONDS")]
    keepalive_seconds: u64,
    /// Browser origin allowed to call over gRPC-Web, e.g.
    /// `https://desk.example.org` (repeatable; env: comma-separated). None by
    /// default: browsers on other origins are refused.
    #[arg(long = "cors-allow-origin", env = "PHOTOCLAIM_CORS_ALLOW_ORIGINS", value_delimiter = ',', value_parser = parse_origin)]
    cors_allow_origins: Vec<String>,
    /// Events WatchClaimEvents holds for a consumer that is not reading.
    #[arg(long, default_value_t = 1024, env = "PHOTOCLAIM_WATCH_BUFFER", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    watch_buffer: u32,
    /// KiB a WatchClaimEvents stream holds for a consumer that is not
    /// reading (events at their encoded size plus 512 bytes; one event
    /// always fits).
    #[arg(long, default_value_t = (photoclaim::api::watch::DEFAULT_STREAM_BUFFER_BYTES >> 10) as u64, env = "PHOTOCLAIM_WATCH_STREAM_BUFFER_KB", value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    watch_stream_buffer_kb: u64,
    /// MiB all WatchClaimEvents streams' buffers hold together; a stream
    /// that cannot buffer more waits, then stalls as if its own buffer
    /// were full.
    #[arg(long, default_value_t = (photoclaim::api::watch::DEFAULT_TOTAL_BUFFER_BYTES >> 20) as u64, env = "PHOTOCLAIM_WATCH_BUFFER_MB", value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    watch_buffer_mb: u64,
    /// Seconds a watch stream's buffer may stay full before the stream ends
    /// with RESOURCE_EXHAUSTED and a cursor to resume from.
    #[arg(long, default_value_t = 10, env = "PHOTOCLAIM_WATCH_STALL_SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    watch_stall_seconds: u64,
    /// WatchClaimEvents streams open at once; more are refused with
    /// RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = 1024, env = "PHOTOCLAIM_WATCH_MAX_STREAMS", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    watch_max_streams: u32,
    /// WatchClaimEvents streams one caller may have open; the last
    /// sixteenth of --watch-max-streams is kept for admins.
    #[arg(long, default_value_t = photoclaim::api::watch::DEFAULT_MAX_STREAMS_PER_CALLER as u32, env = "PHOTOCLAIM_WATCH_MAX_STREAMS_PER_CALLER", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    watch_max_streams_per_caller: u32,
    /// sled's page cache, in MiB. Reads that miss it go to the disk log:
    /// for fast reads over a large archive, size it to the data's logical
    /// size (the last line of `photoclaim check`). BENCHMARKS.md has figures.
    #[arg(long, default_value_t = photoclaim::store::DEFAULT_CACHE_BYTES >> 20, env = "PHOTOCLAIM_CACHE_MB", value_parser = clap::value_parser!(u64).range(16..=1_048_576))]
    cache_mb: u64,
    /// Statuses kept in memory for GetVerificationStatus, in MiB (0: off).
    /// Every write updates its entry before it is acknowledged, so a cached
    /// status is never older than an acknowledged write. About 1.2 KB a
    /// claim: size it to hold the claims desks read. Filled at start-up with
    /// the newest claims, on a background thread.
    #[arg(long, default_value_t = photoclaim::store::DEFAULT_STATUS_CACHE_BYTES >> 20, env = "PHOTOCLAIM_STATUS_CACHE_MB", value_parser = clap::value_parser!(u64).range(0..=1_048_576))]
    status_cache_mb: u64,
    /// Claims (with their latest response) kept in memory for GetClaim and
    /// the claims of FindSimilarClaims replies, in MiB (0: off). Kept up to
    /// date like the status cache. About 3.3 KB a claim of the generated
    /// archive: size it to the claims desks open. Filled at start-up with
    /// the newest claims, with the status cache.
    #[arg(long, default_value_t = photoclaim::store::DEFAULT_CLAIM_CACHE_BYTES >> 20, env = "PHOTOCLAIM_CLAIM_CACHE_MB", value_parser = clap::value_parser!(u64).range(0..=1_048_576))]
    claim_cache_mb: u64,
    /// Free space, in MiB, that writes leave on the data directory's file
    /// system. Below it writes are refused with RESOURCE_EXHAUSTED (reads
    /// are served, health reports NOT_SERVING) and resume by themselves once
    /// space is freed. 0: only a failed disk write stops writes (the store
    /// is then reopened in-process once space is back).
    #[arg(long, default_value_t = photoclaim::store::DEFAULT_MIN_FREE_DISK_BYTES >> 20, env = "PHOTOCLAIM_MIN_FREE_DISK_MB", value_parser = clap::value_parser!(u64).range(0..=1_048_576))]
    min_free_disk_mb: u64,
    /// Serve Prometheus metrics at http://ADDR/metrics (plain HTTP, no
    /// authentication: bind it to a private interface). Off by default.
    #[arg(long, env = "PHOTOCLAIM_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Name of the organization publishing reviews: the `author` of ExportClaimReview's JSON-LD.
    #[arg(long, default_value = "", env = "PHOTOCLAIM_PUBLISHER_NAME")]
    publisher_name: String,
    /// Home page (http or https) of the publishing organization.
    #[arg(long, default_value = "", env = "PHOTOCLAIM_PUBLISHER_URL")]
    publisher_url: String,
    /// URL of a claim's review page, `{id}` standing for the claim id
    /// (e.g. https://factcheck.example/claims/{id}); the reviews' `url`.
    #[arg(long, default_value = "", env = "PHOTOCLAIM_REVIEW_URL_TEMPLATE")]
    review_url_template: String,
}

/// An origin as browsers send it: `scheme://host[:port]`, nothing after.
fn parse_origin(value: &str) -> Result<String, String> {
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
enum KeysAction {
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
struct TargetArgs {
    /// Data directory to work on (when no server is running on it); ignored
    /// when --server (or PHOTOCLAIM_SERVER) is set.
    #[arg(
        long,
        default_value = "./photoclaim-data",
        env = "PHOTOCLAIM_DATA_DIR",
        global = true
    )]
    data_dir: PathBuf,
    /// Work through this running server instead (HOST:PORT plaintext,
    /// http://HOST:PORT or https://HOST:PORT).
    #[arg(
        long,
        env = "PHOTOCLAIM_SERVER",
        global = true,
        help_heading = "Connection"
    )]
    server: Option<String>,
    /// Credentials for --server (an admin key's token).
    #[command(flatten)]
    credentials: photoclaim::remote::CredentialArgs,
}

/// Logs to standard error through [`LogWriter`] (which keeps progress
/// bars intact): at `default` unless `-v` raises it; RUST_LOG wins.
fn init_tracing(format: LogFormat, default: &str, verbose: u8) {
    let level = match verbose {
        0 => default,
        1 if default == "warn" => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(LogWriter);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

/// Resolves on the first SIGINT or SIGTERM.
/// Installs the SIGINT and SIGTERM handlers now (so a signal that arrives
/// as soon as the server says it listens is not lost to the default action)
/// and returns the future that resolves on the first of them.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int =
        signal(SignalKind::interrupt()).expect("installing a SIGINT handler cannot fail on Unix");
    let mut term =
        signal(SignalKind::terminate()).expect("installing a SIGTERM handler cannot fail on Unix");
    async move {
        tokio::select! {
            _ = int.recv() => tracing::info!(signal = "SIGINT", "signal received"),
            _ = term.recv() => tracing::info!(signal = "SIGTERM", "signal received"),
        }
    }
}

/// How long an export or backup interrupted by a signal may take to stop
/// at its next await (after its partial file was removed) before the
/// process exits anyway: a long synchronous step (sled opening a large
/// directory) does not hold it up. A second signal exits at once.
const INTERRUPT_GRACE: Duration = Duration::from_secs(2);

/// Set by the first of [`interruptible`] (its work ended or stopped) and
/// [`watch_interrupt`] (exiting after the grace): the one that set it
/// reports how the command ended, so the error is printed once.
static COMMAND_ENDED: AtomicBool = AtomicBool::new(false);

/// Runs `work`, the `what` ("export", "backup") that writes `out` through
/// [`export::write_atomically`]. SIGINT or SIGTERM ends it with
/// `CANCELLED: WHAT interrupted by SIGNAL, OUT not written` (exit code 6)
/// once its partial file is removed; any other failure says `WHAT failed,
/// OUT not written`. `--out -` (standard output) keeps the signals' default
/// action: there is no partial file.
async fn interruptible<T>(
    what: &'static str,
    out: &Path,
    work: impl std::future::Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    let failed = |f: Failure| f.context(format!("{what} failed, {} not written", out.display()));
    if out == Path::new("-") {
        return work.await.map_err(failed);
    }
    use tokio::signal::unix::{signal, SignalKind};
    let int =
        signal(SignalKind::interrupt()).expect("installing a SIGINT handler cannot fail on Unix");
    let term =
        signal(SignalKind::terminate()).expect("installing a SIGTERM handler cannot fail on Unix");
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    let watcher = tokio::spawn(watch_interrupt(int, term, tx, what, out.to_path_buf()));
    let result = tokio::select! {
        biased;
        Ok(signal) = &mut rx => Err(cancelled(what, out, signal)),
        result = work => result,
    };
    drop(rx);
    watcher.abort();
    if COMMAND_ENDED.swap(true, Ordering::SeqCst) {
        // The watcher is reporting the interruption and exiting.
        std::future::pending::<()>().await;
    }
    result.map_err(|f| match export::interrupted() {
        Some(signal) => cancelled(what, out, signal),
        None => failed(f),
    })
}

/// The failure of a `what` writing `out` that `signal` ended.
fn cancelled(what: &str, out: &Path, signal: &str) -> Failure {
    Failure::new(
        tonic::Code::Cancelled,
        format!(
            "{what} interrupted by {signal}, {} not written",
            out.display()
        ),
    )
}

/// Waits for SIGINT or SIGTERM, then removes the partial files at once
/// ([`export::interrupt`], from this task: the command's own task may be in
/// a synchronous step) and tells [`interruptible`] to stop; exits the
/// process after [`INTERRUPT_GRACE`] or a second signal if it has not.
async fn watch_interrupt(
    mut int: tokio::signal::unix::Signal,
    mut term: tokio::signal::unix::Signal,
    tx: tokio::sync::oneshot::Sender<&'static str>,
    what: &'static str,
    out: PathBuf,
) {
    let signal = tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    };
    let removed = export::interrupt(signal);
    tracing::info!(
        signal,
        partial_files_removed = removed.len(),
        "signal received"
    );
    if tx.send(signal).is_err() {
        return; // the command has ended
    }
    tokio::select! {
        _ = tokio::time::sleep(INTERRUPT_GRACE) => {}
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    if COMMAND_ENDED.swap(true, Ordering::SeqCst) {
        return; // [`interruptible`] reports how the command ended
    }
    let failure = cancelled(what, &out, signal);
    let _ = failure.report();
    std::process::exit(failure.exit as i32);
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, Failure> {
    std::fs::read(path)
        .map_err(|e| Failure::usage(format!("cannot read {what} {}: {e}", path.display())))
}

type Outcome = Result<(), Failure>;

/// A command line clap refused, in the one error format: `error:
/// INVALID_ARGUMENT: what is wrong`, then clap's usage line and tips as
/// `hint:` lines, exit code 2. `--help` and `--version` print as clap does.
fn usage_error(err: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        err.exit();
    }
    let rendered = err.render().to_string();
    let (message, rest) = rendered.split_once("\n\n").unwrap_or((&rendered, ""));
    let message = message
        .strip_prefix("error: ")
        .unwrap_or(message)
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ");
    let mut failure = Failure::usage(message);
    for line in rest.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let line = line.strip_prefix("tip: ").unwrap_or(line);
        let mut chars = line.chars();
        let first = chars.next().map(|c| c.to_lowercase().to_string());
        failure = failure.hint(first.unwrap_or_default() + chars.as_str());
    }
    failure.report()
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(&err),
    };
    let default_level = if matches!(cli.command, Command::Serve(_)) {
        "info"
    } else {
        "warn"
    };
    init_tracing(cli.log_format, default_level, cli.verbose);
    let outcome = match cli.command {
        Command::Serve(args) => serve(*args).await,
        Command::Keys { action, target } => manage_keys(action, target).await,
        Command::Export { out, target } => export(out, target).await,
        Command::Claim(args) => photoclaim::desk::run(args).await,
        Command::Check { data_dir } => check(&data_dir),
        Command::Generate {
            data_dir,
            claims,
            seed,
        } => generate(&data_dir, claims, seed).await,
        Command::Backup { out, target } => backup(out, target).await,
        Command::Bench(args) => bench(*args).await,
        Command::Restore { input, data_dir } => restore(&input, &data_dir),
        Command::Compact { data_dir, out } => compact(&data_dir, &out),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}

fn describe(summary: &photoclaim::backup::Summary) -> String {
    format!(
        "{} claims, {} responses, {} events, {} API keys, {} request ids at log position {}, chain head {}",
        summary.claims,
        summary.responses,
        summary.events,
        summary.api_keys,
        summary.requests,
        summary.log_position,
        summary.chain_head
    )
}

async fn backup(out: PathBuf, args: TargetArgs) -> Outcome {
    let source = target(args)?;
    let summary = interruptible("backup", &out, photoclaim::backup::backup(&source, &out)).await?;
    outln!("backed up {} to {}", describe(&summary), out.display());
    Ok(())
}

fn restore(input: &Path, dir: &Path) -> Outcome {
    let summary = photoclaim::backup::restore(input, dir)
        .map_err(|f| f.context(format!("restore failed, {} not created", dir.display())))?;
    outln!("restored {} into {}", describe(&summary), dir.display());
    Ok(())
}

fn compact(from: &Path, to: &Path) -> Outcome {
    let (copied, report) = photoclaim::backup::compact(from, to)
        .map_err(|f| f.context(format!("compact failed, {} not created", to.display())))?;
    outln!(
        "compacted {} ({} bytes on disk) into {}: {} keys in {} trees, {} bytes of keys and values, {} bytes on disk; check ok ({} claims, log position {})",
        from.display(),
        copied.source_disk_bytes,
        to.display(),
        copied.entries,
        copied.trees,
        copied.logical_bytes,
        report.disk_bytes,
        report.claims,
        report.log_position
    );
    Ok(())
}

async fn bench(args: BenchArgs) -> Outcome {
    use photoclaim::bench;
    let mix = bench::parse_mix(&args.mix).map_err(|e| Failure::usage(format!("--mix: {e}")))?;
    let seconds = |value: f64, flag: &str| {
        Duration::try_from_secs_f64(value)
            .map_err(|_| Failure::usage(format!("{flag} must be a number of seconds, 0 or more")))
    };
    let duration = seconds(args.duration, "--duration")?;
    let warmup = seconds(args.warmup, "--warmup")?;
    let config = bench::Config {
        connections: args.connections,
        in_flight: args.in_flight,
        duration,
        warmup,
        mix,
        baseline: !args.no_baseline,
        prepare: args.prepare,
        seed: args.seed,
        decode_replies: args.decode_replies,
    };
    let target = args
        .credentials
        .target(args.server.clone())
        .map_err(Failure::usage)?;
    eprintln!(
        "bench: {}, {} connections x {} in flight ({} in all), {:.1} s warm-up + {:.1} s counted per phase, replies {}",
        target.url,
        config.connections,
        config.in_flight,
        config.connections * config.in_flight,
        warmup.as_secs_f64(),
        duration.as_secs_f64(),
        if config.decode_replies { "decoded" } else { "skimmed" }
    );
    let report = bench::run(target, &config, |what| eprintln!("bench: {what}…"))
        .await
        .map_err(|err| Failure::new(tonic::Code::Unavailable, format!("bench failed: {err}")))?;
    if args.json {
        outln!("{}", report.to_json(&config));
    } else {
        eprintln!(
            "bench: {} claims on the server ({} registered first)",
            report.claims, report.prepared
        );
        out!("{}", report.to_table());
    }
    let errors = report.error_count();
    if args.fail_on_errors && errors > 0 {
        return Err(Failure::other(format!(
            "bench: {errors} replies were errors"
        )));
    }
    Ok(())
}

async fn generate(dir: &Path, claims: u64, seed: u64) -> Outcome {
    let store = std::sync::Arc::new(photoclaim::store::SledStore::open(dir)?);
    let progress = cli::progress(Some(claims), "claims");
    let result =
        photoclaim::generate::generate(store.clone(), claims, seed, |done| progress.set(done))
            .await;
    progress.finish();
    let closed = store.close().await;
    let g = result
        .and_then(|g| closed.map(|()| g))
        .map_err(|e| Failure::from(e).context("generate failed"))?;
    outln!(
        "generated {} claims, {} responses, {} verdicts in {:.1} s ({:.0} claims/s) into {}",
        g.claims,
        g.responses,
        g.verdicts,
        g.seconds,
        g.claims as f64 / g.seconds.max(1e-9),
        dir.display()
    );
    Ok(())
}

fn check(dir: &Path) -> Outcome {
    photoclaim::cli::require_data_dir(dir)?;
    let progress = cli::progress(None, "claims");
    let report = photoclaim::store::check_dir_reporting(dir, &|at| {
        if at.claims_done == 0 {
            progress.set_total(at.claims_total);
        }
        progress.message(at.phase);
        progress.set(at.claims_done);
    });
    progress.finish();
    let report = report.map_err(|e| Failure::from(e).context("check failed"))?;
    for problem in &report.problems {
        outln!("PROBLEM {problem}");
    }
    if report.problem_count > report.problems.len() as u64 {
        outln!(
            "... and {} more problems",
            report.problem_count - report.problems.len() as u64
        );
    }
    let summary = format!(
        "{}: format version {}, {} claims, {} events, {} responses, log position {}, chain head {}; {} bytes of keys and values, {} bytes on disk",
        dir.display(),
        report.format_version,
        report.claims,
        report.events,
        report.responses,
        report.log_position,
        hex::encode(report.chain_head),
        report.logical_bytes,
        report.disk_bytes
    );
    if report.is_ok() {
        outln!("ok {summary}");
        Ok(())
    } else {
        outln!("FAILED {} problems in {summary}", report.problem_count);
        Err(Failure::problems(format!(
            "{} problems in {}",
            report.problem_count,
            dir.display()
        ))
        .hint("restore from a backup (`photoclaim restore`); docs/operations.md says how"))
    }
}

async fn serve(args: ServeArgs) -> Outcome {
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let files = (|| -> Result<TlsFiles, Failure> {
                Ok(TlsFiles {
                    cert_pem: read(cert, "--tls-cert")?,
                    key_pem: read(key, "--tls-key")?,
                    client_ca_pem: match &args.tls_client_ca {
                        Some(ca) => Some(read(ca, "--tls-client-ca")?),
                        None => None,
                    },
                })
            })();
            Some(files?)
        }
        _ => None,
    };
    let publisher = Publisher {
        name: args.publisher_name.clone(),
        url: args.publisher_url.clone(),
        review_url_template: args.review_url_template.clone(),
    };
    if let Err(err) = publisher.validate() {
        return Err(Failure::usage(format!("invalid publisher settings: {err}")));
    }
    if publisher.name.is_empty() || publisher.review_url_template.is_empty() {
        tracing::warn!(
            "no --publisher-name or --review-url-template: ExportClaimReview's JSON-LD will lack `author` or `url`, which fact-check aggregators require"
        );
    }
    let store = match SledStore::open_with_cache(&args.data_dir, args.cache_mb << 20) {
        Ok(store) => Arc::new(
            store
                .with_caches(args.status_cache_mb << 20, args.claim_cache_mb << 20)
                .with_min_free_disk(args.min_free_disk_mb << 20),
        ),
        Err(err) => {
            tracing::error!(%err, "cannot start");
            // The message says what to do; the offline commands' hint (work
            // through --server) does not apply to a server.
            let mut failure = Failure::from(err);
            failure.hints.clear();
            return Err(failure);
        }
    };
    let keys_exist = store.has_keys().await?;
    let mutual_tls = tls.as_ref().is_some_and(|t| t.client_ca_pem.is_some());
    let allow_anonymous = match server::anonymous_access(
        args.listen,
        keys_exist,
        mutual_tls,
        args.insecure_allow_anonymous,
    ) {
        Ok(allow) => allow,
        Err(why) => {
            tracing::error!(listen = %args.listen, "{why}");
            return Err(Failure::new(tonic::Code::FailedPrecondition, why));
        }
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|err| Failure::other(format!("cannot listen on {}: {err}", args.listen)))?;
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    if allow_anonymous {
        tracing::warn!(
            %addr,
            "OPEN ACCESS: no API keys exist, so ANY caller that reaches {addr} may read, write, set verdicts and create keys, recorded as \"anonymous\". Create a key (photoclaim keys create --name NAME --role admin) to require keys from every caller."
        );
    }
    if let Some(metrics_addr) = args.metrics_listen {
        let metrics_listener =
            tokio::net::TcpListener::bind(metrics_addr)
                .await
                .map_err(|err| {
                    Failure::other(format!(
                        "cannot listen on {metrics_addr} for metrics: {err}"
                    ))
                })?;
        let bound = metrics_listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        tracing::info!(addr = %bound, "metrics listening");
        // Ends with the process, after the gRPC server has drained.
        tokio::spawn(photoclaim::server::serve_metrics(
            metrics_listener,
            store.clone(),
        ));
    }
    let shutdown = shutdown_signal();
    tracing::info!(
        %addr,
        data_dir = %args.data_dir.display(),
        cache_mb = args.cache_mb,
        status_cache_mb = args.status_cache_mb,
        claim_cache_mb = args.claim_cache_mb,
        tls = tls.is_some(),
        mutual_tls,
        api_keys = keys_exist,
        "photoclaim listening"
    );
    let options = Options {
        max_message_bytes: args.max_message_bytes,
        shutdown_grace: Duration::from_secs(args.shutdown_grace_seconds),
        images: ImageOptions {
            max_image_bytes: args.max_image_bytes,
            default_max_distance: args.similarity_max_distance,
        },
        auth: AuthPolicy {
            allow_anonymous,
            client_cert_role: args.client_cert_role.into(),
        },
        tls,
        max_in_flight: args.max_in_flight,
        max_in_flight_per_caller: args.max_in_flight_per_caller,
        max_calls_per_connection: args.max_calls_per_connection.max(1),
        max_connections: args.max_connections,
        first_bytes_timeout: Duration::from_secs(args.first_bytes_timeout_seconds),
        max_body_bytes_in_flight: (args.max_body_mb_in_flight << 20) as usize,
        body_timeout: Duration::from_secs(args.body_timeout_seconds),
        request_timeout: Duration::from_secs(args.request_timeout_seconds.max(1)),
        keepalive_interval: Duration::from_secs(args.keepalive_seconds.max(1)),
        watch: WatchOptions {
            buffer: args.watch_buffer as usize,
            stream_buffer_bytes: (args.watch_stream_buffer_kb << 10) as usize,
            total_buffer_bytes: (args.watch_buffer_mb << 20) as usize,
            stall_timeout: Duration::from_secs(args.watch_stall_seconds),
            max_streams: args.watch_max_streams as usize,
            max_streams_per_caller: args.watch_max_streams_per_caller as usize,
        },
        cors_allow_origins: args.cors_allow_origins.clone(),
        publisher,
    };
    server::run(listener, store, options, shutdown)
        .await
        .map_err(|err| {
            tracing::error!(%err, "server failed");
            Failure::other(format!("server failed: {err}"))
        })
}

async fn export(out: PathBuf, args: TargetArgs) -> Outcome {
    let source = target(args)?;
    let summary = interruptible("export", &out, export::export(&source, &out)).await?;
    eprintln!(
        "exported {} claims ({} bytes) to {}",
        summary.claims,
        summary.bytes,
        if out == Path::new("-") {
            "standard output".to_string()
        } else {
            out.display().to_string()
        }
    );
    Ok(())
}

/// Where `keys`, `export` and `backup` work: the data directory, or a server.
fn target(args: TargetArgs) -> Result<Target, Failure> {
    Ok(match args.server {
        None => Target::DataDir(args.data_dir),
        Some(url) => Target::Server(args.credentials.target(url).map_err(Failure::usage)?),
    })
}

async fn manage_keys(action: KeysAction, args: TargetArgs) -> Outcome {
    let target = target(args)?;
    match action {
        KeysAction::Create { name, role } => {
            let (key, token) = keys::create(&target, &name, role.into()).await?;
            eprintln!(
                "created API key {:?} with role {}; its token follows and is shown only now:",
                key.name,
                keys::role_name(key.role)
            );
            outln!("{token}");
        }
        KeysAction::List => {
            let list = keys::list(&target).await?;
            outln!(
                "{:<24} {:<8} {:<8} {:<21} {:<16} TOKEN PREFIX",
                "NAME",
                "ROLE",
                "STATUS",
                "CREATED",
                "CREATED BY"
            );
            for key in list {
                let status = if key.revoke_time.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                outln!(
                    "{:<24} {:<8} {:<8} {:<21} {:<16} {}",
                    key.name,
                    keys::role_name(key.role),
                    status,
                    keys::format_time(key.create_time.as_ref()),
                    key.created_by,
                    key.token_prefix
                );
            }
        }
        KeysAction::Revoke { name } => {
            let key = keys::revoke(&target, &name).await?;
            eprintln!(
                "revoked API key {:?} at {}",
                key.name,
                keys::format_time(key.revoke_time.as_ref())
            );
        }
    }
    Ok(())
}
