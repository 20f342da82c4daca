//! What each subcommand does once its flags are parsed: opening the
//! store and wiring the server (`serve`), running the offline and remote
//! commands, their logging and interruption by a signal.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::args::*;
use crate::api::auth::AuthPolicy;
use crate::api::{ImageOptions, WatchOptions};
use crate::cli::export;
use crate::cli::keys;
use crate::cli::Target;
use crate::cli::{self, Failure, LogWriter};
use crate::domain::review::Publisher;
use crate::server::{self, Options, TlsFiles};
use crate::store::{MemoryStore, PgOptions, SledStore, Store};
use crate::{out, outln};
use clap::Parser;

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

/// Parses the command line, sets up logging and runs the subcommand:
/// all that `main.rs` does.
pub async fn run() -> ExitCode {
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
        Command::Claim(args) => crate::cli::desk::run(args).await,
        Command::Reviews(args) => crate::cli::desk::run_reviews(args).await,
        Command::Reindex {
            data_dir,
            search_index_dir,
        } => reindex(&data_dir, search_index_dir).await,
        Command::Check {
            database_url: Some(url),
            ..
        } => crate::cli::database::check(&url).await,
        Command::Check { data_dir, .. } => crate::cli::local::check(&data_dir),
        Command::Db {
            action: DbAction::Migrate { database_url },
        } => crate::cli::database::migrate(&database_url).await,
        Command::Db {
            action:
                DbAction::Load {
                    data_dir,
                    database_url,
                },
        } => crate::cli::database::load(&data_dir, &database_url).await,
        Command::Generate {
            data_dir,
            claims,
            seed,
        } => generate(&data_dir, claims, seed).await,
        Command::Backup { out, target } => backup(out, target).await,
        Command::Bench(args) => bench(*args).await,
        Command::Restore {
            input,
            database_url: Some(url),
            ..
        } => crate::cli::database::restore(&input, &url).await,
        Command::Restore {
            input,
            data_dir: Some(dir),
            ..
        } => crate::cli::local::restore(&input, &dir),
        Command::Restore { .. } => {
            Err(Failure::usage("restore: give --data-dir or --database-url"))
        }
        Command::Compact { data_dir, out } => compact(&data_dir, &out),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}

async fn backup(out: PathBuf, args: TargetArgs) -> Outcome {
    let source = target(args)?;
    let summary = interruptible("backup", &out, crate::cli::backup::backup(&source, &out)).await?;
    outln!(
        "backed up {} to {}",
        crate::cli::local::describe(&summary),
        out.display()
    );
    Ok(())
}

fn compact(from: &Path, to: &Path) -> Outcome {
    let (copied, report) = crate::cli::backup::compact(from, to)
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
    use crate::cli::bench;
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
    if let Some(probes) = args.search_lag {
        let lags = bench::search_lag(target, probes as usize)
            .await
            .map_err(|err| {
                Failure::new(tonic::Code::Unavailable, format!("bench failed: {err}"))
            })?;
        let at = |q: f64| lags[((lags.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
        outln!(
            "search lag over {} claims: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            lags.len(),
            at(0.5),
            at(0.99),
            at(1.0)
        );
        return Ok(());
    }
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
    let store = std::sync::Arc::new(crate::store::SledStore::open(dir)?);
    let progress = cli::progress(Some(claims), "claims");
    let result =
        crate::cli::generate::generate(store.clone(), claims, seed, |done| progress.set(done))
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
    let (status_bytes, claim_bytes) = (args.status_cache_mb << 20, args.claim_cache_mb << 20);
    if let Some(url) = &args.database_url {
        let options = PgOptions {
            readers: usize::from(args.database_readers),
            listen: args.database_notify,
            poll: Duration::from_millis(args.database_poll_ms),
        };
        let store = crate::cli::database::connect(url, options, shutdown_signal()).await?;
        return run_server(args, Arc::new(store), tls, publisher).await;
    }
    if args.in_memory {
        tracing::warn!(
            "IN MEMORY: nothing is written to disk; every claim is lost when the process ends"
        );
        let store = MemoryStore::in_memory()?.with_caches(status_bytes, claim_bytes);
        return run_server(args, Arc::new(store), tls, publisher).await;
    }
    let store = match SledStore::open_with_cache(&args.data_dir, args.cache_mb << 20) {
        Ok(store) => store
            .with_caches(status_bytes, claim_bytes)
            .with_min_free_disk(args.min_free_disk_mb << 20),
        Err(err) => {
            tracing::error!(%err, "cannot start");
            // The message says what to do; the offline commands' hint (work
            // through --server) does not apply to a server.
            let mut failure = Failure::from(err);
            failure.hints.clear();
            return Err(failure);
        }
    };
    run_server(args, Arc::new(store), tls, publisher).await
}

/// Serves `store` until a shutdown signal.
async fn run_server<S: Store>(
    args: ServeArgs,
    store: Arc<S>,
    tls: Option<TlsFiles>,
    publisher: Publisher,
) -> Outcome {
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
        tokio::spawn(crate::server::serve_metrics(
            metrics_listener,
            store.clone(),
        ));
    }
    let shutdown = shutdown_signal();
    tracing::info!(
        %addr,
        data_dir = %match (&args.database_url, args.in_memory) {
            (Some(_), _) => "none (PostgreSQL)".to_string(),
            (None, true) => "in memory".to_string(),
            (None, false) => args.data_dir.display().to_string(),
        },
        database = %args.database_url.as_deref().map_or("none".into(), crate::store::pg_describe),
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
        search: search_location(&args),
        credentials: credential_reader(&args)?,
    };
    server::run(listener, store, options, shutdown)
        .await
        .map_err(|err| {
            tracing::error!(%err, "server failed");
            Failure::other(format!("server failed: {err}"))
        })
}

/// `photoclaim reindex`: rebuilds a stopped data directory's search index.
async fn reindex(data_dir: &Path, index_dir: Option<PathBuf>) -> Outcome {
    use crate::search::{Location, SearchIndex, INDEX_DIR_NAME};
    if !data_dir.join("conf").is_file() {
        return Err(Failure::usage(format!(
            "{} is not a photoclaim data directory (no database in it)",
            data_dir.display()
        )));
    }
    let store = SledStore::open(data_dir)?;
    let dir = index_dir.unwrap_or_else(|| data_dir.join(INDEX_DIR_NAME));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| {
            Failure::other(format!(
                "cannot remove the old index {}: {e}",
                dir.display()
            ))
        })?;
    }
    let started = std::time::Instant::now();
    let index =
        SearchIndex::open(Location::Dir(dir.clone())).map_err(|e| Failure::other(e.to_string()))?;
    let indexed = index
        .rebuild_from(&store)
        .await
        .map_err(|e| Failure::other(e.to_string()))?;
    let text = index.text_bytes();
    drop(index);
    store.close().await?;
    let size = crate::search::dir_size(&dir);
    eprintln!(
        "rebuilt the search index {} in {:.1} s: log position {}, review log position {}; {} bytes of text indexed, index {} bytes ({:.2} x the text)",
        dir.display(),
        started.elapsed().as_secs_f64(),
        indexed.claims,
        indexed.reviews,
        text,
        size,
        size as f64 / text.max(1) as f64
    );
    Ok(())
}

/// The Content Credentials reader `serve` uses (`None`: reading is off).
fn credential_reader(
    args: &ServeArgs,
) -> Result<Option<crate::imaging::credentials::CredentialReader>, Failure> {
    use crate::imaging::credentials::CredentialReader;
    if args.no_content_credentials {
        return Ok(None);
    }
    let Some(path) = &args.c2pa_trust_anchors else {
        return Ok(Some(CredentialReader::new()));
    };
    let pem = read(path, "--c2pa-trust-anchors")?;
    let pem = String::from_utf8(pem).map_err(|_| {
        Failure::usage(format!(
            "--c2pa-trust-anchors {} is not a PEM text file",
            path.display()
        ))
    })?;
    let reader = CredentialReader::with_trust_anchors(&pem)
        .map_err(|why| Failure::usage(format!("--c2pa-trust-anchors {}: {why}", path.display())))?;
    tracing::info!(anchors = %path.display(), "Content Credentials trust anchors loaded");
    Ok(Some(reader))
}

/// Where `serve` keeps its search index (`None`: search is off).
fn search_location(args: &ServeArgs) -> Option<crate::search::Location> {
    use crate::search::{Location, INDEX_DIR_NAME};
    if args.no_search {
        return None;
    }
    Some(
        match (&args.search_index_dir, &args.database_url, args.in_memory) {
            (Some(dir), _, _) => Location::Dir(dir.clone()),
            (None, Some(_), _) | (None, None, true) => Location::Memory,
            (None, None, false) => Location::Dir(args.data_dir.join(INDEX_DIR_NAME)),
        },
    )
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
