//! The `photoclaim` binary: parses flags, sets up logging, calls the library.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use photoclaim::server::{self, Options};
use photoclaim::store::SledStore;

/// photoclaim: claims about images, official responses and verification status, over gRPC.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "PHOTOCLAIM_LOG_FORMAT", global = true)]
    log_format: LogFormat,
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

#[derive(Subcommand)]
enum Command {
    /// Run the gRPC server.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:50051", env = "PHOTOCLAIM_LISTEN")]
        listen: SocketAddr,
        /// Directory of the embedded sled database (created if missing).
        #[arg(long, default_value = "./photoclaim-data", env = "PHOTOCLAIM_DATA_DIR")]
        data_dir: PathBuf,
        /// Largest request message accepted, in bytes.
        #[arg(long, default_value_t = server::DEFAULT_MAX_MESSAGE_BYTES, env = "PHOTOCLAIM_MAX_MESSAGE_BYTES")]
        max_message_bytes: usize,
        /// Seconds in-flight calls get to finish after SIGINT/SIGTERM.
        #[arg(long, default_value_t = server::DEFAULT_SHUTDOWN_GRACE.as_secs(), env = "PHOTOCLAIM_SHUTDOWN_GRACE_SECONDS")]
        shutdown_grace_seconds: u64,
    },
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

/// Resolves on the first SIGINT or SIGTERM.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler cannot fail on Unix");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!(signal = "SIGINT", "signal received"),
        _ = term.recv() => tracing::info!(signal = "SIGTERM", "signal received"),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match cli.command {
        Command::Serve {
            listen,
            data_dir,
            max_message_bytes,
            shutdown_grace_seconds,
        } => {
            let store = match SledStore::open(&data_dir) {
                Ok(store) => Arc::new(store),
                Err(err) => {
                    tracing::error!(%err, "cannot start");
                    eprintln!("photoclaim: {err}");
                    return ExitCode::FAILURE;
                }
            };
            let listener = match tokio::net::TcpListener::bind(listen).await {
                Ok(listener) => listener,
                Err(err) => {
                    eprintln!("photoclaim: cannot listen on {listen}: {err}");
                    return ExitCode::FAILURE;
                }
            };
            let addr = listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            tracing::info!(%addr, data_dir = %data_dir.display(), "photoclaim listening");
            let options = Options {
                max_message_bytes,
                shutdown_grace: Duration::from_secs(shutdown_grace_seconds),
            };
            match server::run(listener, store, options, shutdown_signal()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    tracing::error!(%err, "server failed");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
