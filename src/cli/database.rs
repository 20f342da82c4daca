//! The PostgreSQL side of the command line: connecting a server to the
//! database (retrying while it cannot be reached), `photoclaim db
//! migrate`, and `restore` and `check` on a database, which work on a
//! scratch data directory holding the same tables (`store::pg_transfer`).

use std::time::Duration;

use tonic::Code;

use crate::cli::Failure;
use crate::store::{pg_migrate, pg_transfer, PgOpenError, PgOptions, PgStore};

/// The first wait before connecting again; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl From<PgOpenError> for Failure {
    fn from(err: PgOpenError) -> Self {
        let code = match &err {
            PgOpenError::BadUrl(_) => Code::InvalidArgument,
            PgOpenError::Unreachable(_) => Code::Unavailable,
            PgOpenError::TooNew { .. } => Code::FailedPrecondition,
            PgOpenError::Other { .. } => Code::Unknown,
        };
        Failure::new(code, err.to_string())
    }
}

/// Connects a server's store to the database at `url`, trying again with
/// backoff while the database cannot be reached, until `stop` resolves.
pub async fn connect(
    url: &str,
    options: PgOptions,
    stop: impl std::future::Future<Output = ()>,
) -> Result<PgStore, Failure> {
    let target = crate::store::pg_describe(url);
    tokio::pin!(stop);
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1u32;
    loop {
        let (url, options) = (url.to_owned(), options.clone());
        let opened =
            tokio::task::spawn_blocking(move || PgStore::connect(&url, &options, true)).await;
        let err = match opened {
            Ok(Ok(store)) => {
                tracing::info!(database = %target, attempt, "connected to the database");
                return Ok(store);
            }
            Ok(Err(err)) if err.is_retryable() => err,
            Ok(Err(err)) => {
                tracing::error!(database = %target, error = %err, "cannot start");
                return Err(err.into());
            }
            Err(join) => return Err(Failure::other(format!("connecting failed: {join}"))),
        };
        tracing::warn!(
            database = %target,
            error = %err,
            attempt,
            retry_in_ms = backoff.as_millis() as u64,
            "cannot reach the database; retrying"
        );
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = &mut stop => {
                return Err(Failure::new(Code::Unavailable, format!("stopped before the database at {target} could be reached: {err}")));
            }
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
        attempt += 1;
    }
}

/// `photoclaim db migrate`: applies the schema migrations the database
/// lacks and says which.
pub async fn migrate(url: &str) -> Result<(), Failure> {
    let url = url.to_owned();
    let target = crate::store::pg_describe(&url);
    let applied = tokio::task::spawn_blocking(move || pg_migrate::run(&url))
        .await
        .map_err(|e| Failure::other(format!("migrating failed: {e}")))??;
    match applied.is_empty() {
        true => eprintln!(
            "{target}: schema is up to date (version {})",
            pg_migrate::latest()
        ),
        false => eprintln!(
            "{target}: applied migration(s) {:?}; schema is at version {}",
            applied,
            pg_migrate::latest()
        ),
    }
    Ok(())
}

/// A scratch directory for a copy of the tables, in the system's temporary
/// directory (`TMPDIR`): it takes as much disk as the tables.
fn scratch() -> Result<tempfile::TempDir, Failure> {
    tempfile::Builder::new()
        .prefix("photoclaim-scratch-")
        .tempdir()
        .map_err(|e| Failure::other(format!("cannot make a scratch directory: {e}")))
}

/// Runs blocking `work` off the async runtime.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Failure::other(format!("the copy failed: {e}")))?
}

/// `photoclaim restore --database-url`: restores the backup `input` into a
/// scratch directory (verifying its checksum and every chain), then copies
/// that into the database, which must hold no claim yet.
pub async fn restore(input: &std::path::Path, url: &str) -> Result<(), Failure> {
    let target = crate::store::pg_describe(url);
    let dir = scratch()?;
    let into = dir.path().join("data");
    super::local::restore(input, &into)
        .map_err(|f| f.context(format!("restore failed, nothing written to {target}")))?;
    load_dir(into, url)
        .await
        .map_err(|f| f.context(format!("restore failed, nothing written to {target}")))
}

/// Copies the data directory `dir` into the database at `url`.
async fn load_dir(dir: std::path::PathBuf, url: &str) -> Result<(), Failure> {
    let target = crate::store::pg_describe(url);
    let url = url.to_owned();
    let started = std::time::Instant::now();
    let copied =
        blocking(move || pg_transfer::load_from_dir(&dir, &url).map_err(Failure::other)).await?;
    crate::outln!(
        "loaded {copied} keys and values into {target} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `photoclaim db load`: copies a stopped data directory into an empty
/// database.
pub async fn load(dir: &std::path::Path, url: &str) -> Result<(), Failure> {
    crate::cli::require_data_dir(dir)?;
    let target = crate::store::pg_describe(url);
    load_dir(dir.to_path_buf(), url)
        .await
        .map_err(|f| f.context(format!("load failed, nothing written to {target}")))
}

/// `photoclaim check --database-url`: copies the tables from one snapshot
/// into a scratch directory and checks that.
pub async fn check(url: &str) -> Result<(), Failure> {
    let target = crate::store::pg_describe(url);
    let dir = scratch()?;
    let copy = dir.path().join("data");
    let (from, to) = (url.to_owned(), copy.clone());
    let copied = blocking(move || pg_transfer::dump_to_dir(&from, &to).map_err(Failure::other))
        .await
        .map_err(|f| f.context("check failed"))?;
    crate::outln!("{target}: copied {copied} keys and values from one snapshot; checking them");
    super::local::check(&copy)
}
