//! Backups: `photoclaim backup` (through a running server's
//! `AdminService.Backup`, or from a stopped data directory), `photoclaim
//! restore` and `photoclaim compact`. The file format and the snapshot are
//! [`crate::wire::backup`]'s.

use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tonic::Code;

use crate::cli::export;
use crate::cli::Target;
use crate::cli::{self, Failure};
use crate::domain::chain;
use crate::pb;
use crate::store::{check_dir, Restorer, Store};
use crate::wire::backup::{channel, produce, Item, Reader, MAX_FRAME_BYTES};

/// What a backup or restore covered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Claims.
    pub claims: u64,
    /// Responses.
    pub responses: u64,
    /// Events.
    pub events: u64,
    /// API keys.
    pub api_keys: u64,
    /// request_id records (for a restore: those kept).
    pub requests: u64,
    /// The snapshot's log position.
    pub log_position: u64,
    /// The service-wide chain head at it (hex).
    pub chain_head: String,
}

/// Reads a whole backup, verifying every claim's history, and returns what
/// it holds.
pub fn verify_file(path: &Path) -> std::result::Result<Summary, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut reader = Reader::open(BufReader::new(file))?;
    while let Some(item) = reader.next_item()? {
        // A signal ends `backup` here too: this loop does not yield.
        if export::is_interrupted() {
            return Err("interrupted".into());
        }
        if let Item::Claim(history) = &item {
            history.verify().map_err(|b| {
                let id = history.claim.as_ref().map_or(0, |c| c.id);
                format!("claims/{id}: {b}")
            })?;
        }
    }
    let counts = reader.counts();
    Ok(Summary {
        claims: counts.claims,
        responses: counts.responses,
        events: counts.events,
        api_keys: counts.api_keys,
        requests: counts.requests,
        log_position: reader.header().log_position,
        chain_head: hex::encode(&reader.header().chain_head),
    })
}

/// `photoclaim backup`: writes a backup of `source` to `out` (atomically:
/// the file appears only once complete and verified; private, see
/// [`export::write_atomically`]).
pub async fn backup(source: &Target, out: &Path) -> std::result::Result<Summary, Failure> {
    export::write_atomically(out, |partial| async move {
        write_to(source, &partial).await?;
        verify_file(&partial).map_err(|e| {
            Failure::new(
                Code::DataLoss,
                format!("the written backup fails verification: {e}"),
            )
        })
    })
    .await
}

async fn write_to(source: &Target, path: &Path) -> std::result::Result<(), Failure> {
    let file = export::open_partial(path)?;
    let mut writer = std::io::BufWriter::new(file);
    let mut write = |bytes: &[u8]| {
        writer
            .write_all(bytes)
            .map_err(|e| Failure::other(format!("cannot write {}: {e}", path.display())))
    };
    let progress = cli::progress(None, "bytes");
    match source {
        Target::DataDir(dir) => {
            let store = Arc::new(cli::open_existing(dir, export::EXPORT_CACHE_BYTES)?);
            let (tx, mut rx) = channel();
            let consume = async {
                while let Some(chunk) = rx.recv().await {
                    let chunk = chunk?;
                    write(&chunk)?;
                    progress.add(chunk.len() as u64);
                }
                Ok::<(), Failure>(())
            };
            let (_, outcome) = tokio::join!(produce(store.clone(), tx), consume);
            store.close().await?;
            outcome?;
        }
        Target::Server(server) => {
            let mut client = server
                .admin_client()
                .await?
                .max_decoding_message_size(MAX_FRAME_BYTES as usize + 1024);
            let mut stream = client
                .backup(cli::admin_request(server, pb::BackupRequest {})?)
                .await?
                .into_inner();
            while let Some(chunk) = stream.message().await? {
                write(&chunk.data)?;
                progress.add(chunk.data.len() as u64);
            }
        }
    }
    progress.finish();
    let file = writer
        .into_inner()
        .map_err(|e| Failure::other(format!("cannot write {}: {e}", path.display())))?;
    file.sync_all()
        .map_err(|e| Failure::other(format!("cannot sync {}: {e}", path.display())))
}

/// `photoclaim restore`: builds the data directory `dir` (absent or empty)
/// from the backup `input`, verifying the checksum, every claim's hash
/// chain and history, the service-wide chain head, and finally running
/// `check` on the result. The directory appears only when all of that
/// passed.
pub fn restore(input: &Path, dir: &Path) -> std::result::Result<Summary, Failure> {
    let file = std::fs::File::open(input).map_err(|e| {
        let code = if e.kind() == std::io::ErrorKind::NotFound {
            Code::NotFound
        } else {
            Code::Unknown
        };
        Failure::new(code, format!("cannot open {}: {e}", input.display()))
    })?;
    into_new_dir(dir, "restoring", |temp| restore_into(file, temp))
}

/// `photoclaim compact`: copies the stopped data directory `from` into the
/// new directory `to` key by key ([`crate::store::copy_trees`]), runs
/// `check` on the copy, and puts it in place only when that passed. `from`
/// is only read.
pub fn compact(
    from: &Path,
    to: &Path,
) -> std::result::Result<(crate::store::Compacted, crate::store::CheckReport), Failure> {
    cli::require_data_dir(from)?;
    into_new_dir(to, "compacting", |temp| {
        let progress = cli::progress(None, "keys copied");
        let copied =
            crate::store::copy_trees(from, temp, &|n| progress.set(n)).map_err(Failure::other)?;
        progress.finish();
        let report = check_released(temp, "copy")?;
        Ok((copied, report))
    })
}

/// Builds the data directory `dir`, which must be absent or empty, with
/// `build` in a hidden directory beside it (`.NAME.WHAT-PID`, created with
/// mode [`export::PRIVATE_DIR_MODE`], which `dir` keeps): renamed into
/// place only when `build` succeeded, removed otherwise, so that a failed
/// run leaves nothing behind.
fn into_new_dir<T>(
    dir: &Path,
    what: &str,
    build: impl FnOnce(&Path) -> std::result::Result<T, Failure>,
) -> std::result::Result<T, Failure> {
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir)
            .map_err(|e| Failure::other(format!("cannot read {}: {e}", dir.display())))?;
        if entries.next().is_some() {
            return Err(Failure::new(
                Code::AlreadyExists,
                format!(
                    "{} is not empty: write only into a new or empty directory",
                    dir.display()
                ),
            ));
        }
    }
    let name = dir
        .file_name()
        .ok_or_else(|| Failure::usage(format!("{} is not a directory name", dir.display())))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".{what}-{}", std::process::id()));
    let temp: PathBuf = dir.with_file_name(temp_name);
    if std::fs::symlink_metadata(&temp).is_ok() {
        // It has this process's id: left by one that no longer runs.
        tracing::warn!(
            dir = %temp.display(),
            "removing a directory left by an earlier process with this process's id"
        );
        std::fs::remove_dir_all(&temp)
            .or_else(|_| std::fs::remove_file(&temp))
            .map_err(|e| Failure::other(format!("cannot remove {}: {e}", temp.display())))?;
    }
    export::create_private_dir(&temp)?;
    let result = build(&temp).and_then(|built| {
        if dir.exists() {
            std::fs::remove_dir(dir).map_err(|e| {
                Failure::other(format!("cannot replace the empty {}: {e}", dir.display()))
            })?;
        }
        std::fs::rename(&temp, dir).map_err(|e| {
            Failure::other(format!(
                "cannot move the new data to {}: {e}",
                dir.display()
            ))
        })?;
        // The rename itself is durable once the parent directory is synced.
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(|e| Failure::other(format!("cannot sync {}: {e}", parent.display())))?;
        Ok(built)
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&temp);
    }
    result
}

/// Checks the new data directory `dir` once its writer's database has let
/// go of it (sled's background thread may hold its lock for a moment after
/// the drop); a problem is an error naming `what` was checked.
fn check_released(
    dir: &Path,
    what: &str,
) -> std::result::Result<crate::store::CheckReport, Failure> {
    let mut attempts = 0;
    let report = loop {
        match check_dir(dir) {
            Err(crate::store::OpenError::Locked(_)) if attempts < 100 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => break other?,
        }
    };
    if !report.is_ok() {
        return Err(Failure::new(
            Code::DataLoss,
            format!(
                "the {what} fails check ({} problems), first: {}",
                report.problem_count,
                report.problems.first().cloned().unwrap_or_default()
            ),
        ));
    }
    Ok(report)
}

/// Restores the backup read from `file` into `temp`. A damaged or
/// inconsistent backup is DATA_LOSS.
fn restore_into(file: std::fs::File, temp: &Path) -> std::result::Result<Summary, Failure> {
    let damaged = |e: String| Failure::new(Code::DataLoss, e);
    let mut reader = Reader::open(BufReader::new(file)).map_err(damaged)?;
    let mut restorer = Restorer::create(temp).map_err(Failure::other)?;
    let progress = cli::progress(None, "claims");
    while let Some(item) = reader.next_item().map_err(damaged)? {
        match item {
            Item::Claim(history) => {
                restorer.claim(history).map_err(damaged)?;
                progress.add(1);
            }
            Item::ApiKey(key) => restorer.key(key).map_err(damaged)?,
            Item::ExternalReview(review) => restorer.review(review).map_err(damaged)?,
            Item::Request(record) => {
                restorer.request(record).map_err(damaged)?;
            }
            Item::Header(_) | Item::Trailer(_) => {}
        }
    }
    progress.finish();
    let header = reader.header().clone();
    let head: chain::Hash = header
        .chain_head
        .as_slice()
        .try_into()
        .map_err(|_| damaged("the backup header has no chain head".to_string()))?;
    let restored = restorer
        .finish(header.log_position, &head)
        .map_err(damaged)?;
    check_released(temp, "restored data")?;
    Ok(Summary {
        claims: restored.claims,
        responses: restored.responses,
        events: restored.events,
        api_keys: restored.api_keys,
        requests: restored.requests,
        log_position: header.log_position,
        chain_head: hex::encode(head),
    })
}
