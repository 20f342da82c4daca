//! `photoclaim export`: writes every claim, with its official responses and
//! events, as JSON Lines (see [`crate::wire::archive`] for the format) to a
//! file, either straight from a data directory (while no server holds it)
//! or through a running server's `AdminService.ExportClaims`.
//!
//! The file appears only when the export is complete: lines go to a
//! temporary file beside it, which is synced and renamed over `--out` at the
//! end, and removed if anything fails.
//!
//! [`write_atomically`] is shared by `export`, `backup` and `claim review
//! --out`: the files it writes (partial and final) are private (mode 0600,
//! whatever the umask), a partial file left by a process that no longer
//! runs (`kill -9`) is removed by the next run writing the same file, and
//! [`interrupt`] removes the partial files of a run a signal ends.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::cli::Target;
use crate::cli::{self, Failure};
use crate::pb;
use crate::store::{SledStore, Store};
use crate::wire::archive;

/// Largest chunk accepted from a server. A chunk holds complete lines of
/// about 512 KiB, or one longer line: a claim with very many long
/// responses.
pub const MAX_CHUNK_BYTES: usize = 256 * 1024 * 1024;

/// sled's page cache while exporting from a data directory. The export
/// reads each page once, so a small cache suffices; with sled's default
/// (1 GiB) the process would keep every page it read (measured: about 1 KiB
/// per exported claim), with 4 MiB it still grew until ~7,000 claims.
pub const EXPORT_CACHE_BYTES: u64 = 1024 * 1024;

/// What an export wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Lines (claims) written.
    pub claims: u64,
    /// Bytes written, newlines included.
    pub bytes: u64,
}

/// Exports every claim from `source` into the file `out`, atomically; `-`
/// writes to standard output instead (a reader that goes away, `| head`,
/// ends the command quietly).
pub async fn export(source: &Target, out: &Path) -> Result<Summary, Failure> {
    let result = if out == Path::new("-") {
        let mut stdout = std::io::BufWriter::new(std::io::stdout());
        write_lines(source, &mut stdout, "standard output").await
    } else {
        write_atomically(out, |partial| async move {
            let file = open_partial(&partial)?;
            let mut writer = std::io::BufWriter::new(file);
            let summary = write_lines(source, &mut writer, &partial.display().to_string()).await?;
            let file = writer
                .into_inner()
                .map_err(|e| Failure::other(format!("cannot write {}: {e}", partial.display())))?;
            file.sync_all()
                .map_err(|e| Failure::other(format!("cannot sync {}: {e}", partial.display())))?;
            Ok(summary)
        })
        .await
    };
    tracing::debug!(peak_rss_kib = peak_rss_kib(), "export memory");
    result
}

/// Mode of the files [`write_atomically`] writes: backups, exports, review
/// documents and their partial files hold everything the desk recorded.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// Mode of the data directories `restore` and `compact` create (and of
/// their hidden temporary directories): sled's own files inside follow the
/// umask, the directory keeps other users out of them.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Runs `write` on a temporary file beside `out` (`.NAME.partial-PID`, PID
/// this process's id), then renames it over `out`; removes it if anything
/// fails or the returned future is dropped, so `out` appears only complete.
///
/// The partial file is created here, empty and with mode
/// [`PRIVATE_FILE_MODE`]: `write` opens it (without creating it, see
/// [`open_partial`]; truncating it keeps the mode), and `out` keeps that mode
/// after the rename. First, partial files of the same name left by
/// processes that no longer run are removed, with a warning.
pub async fn write_atomically<T, F, Fut>(out: &Path, write: F) -> Result<T, Failure>
where
    F: FnOnce(PathBuf) -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    let name = out
        .file_name()
        .ok_or_else(|| Failure::usage(format!("--out {} is not a file name", out.display())))?;
    remove_stale_partials(out, name);
    let partial = out.with_file_name(partial_name(name, std::process::id()));
    let guard = Partial::create(partial.clone())?;
    let summary = write(partial).await?;
    guard.rename_to(out)?;
    Ok(summary)
}

/// Opens the partial file [`write_atomically`] created, for writing from
/// its start. It does not create the file: one that [`interrupt`] removed
/// stays removed (the write fails instead).
pub fn open_partial(partial: &Path) -> Result<std::fs::File, Failure> {
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(partial)
        .map_err(|e| Failure::other(format!("cannot open {}: {e}", partial.display())))
}

/// `.NAME.partial-PID`.
fn partial_name(name: &OsStr, pid: u32) -> OsString {
    let mut partial = partial_prefix(name);
    partial.push(pid.to_string());
    partial
}

/// `.NAME.partial-`.
fn partial_prefix(name: &OsStr) -> OsString {
    let mut prefix = OsString::from(".");
    prefix.push(name);
    prefix.push(".partial-");
    prefix
}

/// The partial files this process is writing, and the signal that ended
/// its writes, if one did.
struct Partials {
    /// Registered by [`Partial::create`], unregistered once renamed or removed.
    paths: Vec<PathBuf>,
    /// Set by [`interrupt`]: no partial file is created or renamed after it.
    interrupted_by: Option<&'static str>,
}

static PARTIALS: Mutex<Partials> = Mutex::new(Partials {
    paths: Vec::new(),
    interrupted_by: None,
});

/// [`Partials::interrupted_by`] is set; read without the lock by long loops.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn partials() -> MutexGuard<'static, Partials> {
    PARTIALS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Ends this process's atomic writes after `signal` (e.g. "SIGTERM"):
/// removes every partial file being written and makes the writes still
/// running fail (CANCELLED) instead of renaming theirs into place. Returns
/// the files removed. Safe to call from any thread while the writes run.
pub fn interrupt(signal: &'static str) -> Vec<PathBuf> {
    let mut partials = partials();
    partials.interrupted_by.get_or_insert(signal);
    INTERRUPTED.store(true, Ordering::SeqCst);
    let removed = std::mem::take(&mut partials.paths);
    for path in &removed {
        match std::fs::remove_file(path) {
            Ok(()) => tracing::debug!(file = %path.display(), "removed the partial file"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot remove the partial file")
            }
        }
    }
    removed
}

/// The signal given to [`interrupt`], if it was called.
pub fn interrupted() -> Option<&'static str> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        partials().interrupted_by
    } else {
        None
    }
}

/// Whether [`interrupt`] was called: cheap, for long loops that do not
/// yield (e.g. verifying a written backup).
pub fn is_interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

fn interrupted_failure(signal: &str) -> Failure {
    Failure::new(tonic::Code::Cancelled, format!("interrupted by {signal}"))
}

/// A registered partial file; removed (and unregistered) when dropped
/// before [`Partial::rename_to`] succeeded.
struct Partial {
    path: PathBuf,
    done: bool,
}

impl Partial {
    /// Creates `path` empty, private, and registers it; refused once
    /// [`interrupt`] was called. A leftover of that name has this process's
    /// id, so it was left by a process that no longer runs: it is replaced.
    fn create(path: PathBuf) -> Result<Self, Failure> {
        let mut partials = partials();
        if let Some(signal) = partials.interrupted_by {
            return Err(interrupted_failure(signal));
        }
        let created = std::fs::remove_file(&path)
            .or_else(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Ok(()),
                _ => Err(e),
            })
            .and_then(|()| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(PRIVATE_FILE_MODE)
                    .open(&path)
            });
        if let Err(e) = created {
            return Err(Failure::other(format!(
                "cannot create {}: {e}",
                path.display()
            )));
        }
        partials.paths.push(path.clone());
        Ok(Partial { path, done: false })
    }

    /// Renames the file to `out`, with mode [`PRIVATE_FILE_MODE`] (set
    /// again in case the writer replaced the file); refused once
    /// [`interrupt`] was called.
    fn rename_to(mut self, out: &Path) -> Result<(), Failure> {
        let mut partials = partials();
        if let Some(signal) = partials.interrupted_by {
            return Err(interrupted_failure(signal));
        }
        std::fs::set_permissions(
            &self.path,
            std::fs::Permissions::from_mode(PRIVATE_FILE_MODE),
        )
        .and_then(|()| std::fs::rename(&self.path, out))
        .map_err(|e| Failure::other(format!("cannot rename the file to {}: {e}", out.display())))?;
        partials.paths.retain(|p| p != &self.path);
        self.done = true;
        Ok(())
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut partials = partials();
        partials.paths.retain(|p| p != &self.path);
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Removes the `.NAME.partial-PID` files beside `out` whose process no
/// longer runs (no `/proc/PID`), e.g. after `kill -9`, with a warning
/// naming each. Those of running processes are left alone, and all of them
/// where `/proc` cannot tell.
fn remove_stale_partials(out: &Path, name: &OsStr) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let prefix = partial_prefix(name);
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let registered = partials().paths.clone();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(digits) = file_name.as_bytes().strip_prefix(prefix.as_bytes()) else {
            continue;
        };
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            continue;
        }
        let Some(pid) = std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse::<u32>().ok())
        else {
            continue;
        };
        // Named as `out` is (no `./` for a bare file name).
        let path = out.with_file_name(&file_name);
        let own = pid == std::process::id();
        if registered.contains(&path) || (!own && process_runs(pid)) {
            continue;
        }
        if entry.file_type().map_or(true, |t| t.is_dir()) {
            continue;
        }
        let left_by = if own {
            "an earlier process with this process's id"
        } else {
            "a process that no longer runs"
        };
        match std::fs::remove_file(&path) {
            Ok(()) => tracing::warn!(
                file = %path.display(),
                "removed a partial file left by {left_by} (interrupted, e.g. by kill -9)"
            ),
            Err(e) => tracing::warn!(
                file = %path.display(),
                error = %e,
                "cannot remove a partial file left by {left_by}"
            ),
        }
    }
}

/// Whether process `pid` runs (or is a zombie not yet reaped): `/proc/PID`.
fn process_runs(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Creates the directory `dir` with mode [`PRIVATE_DIR_MODE`] (its parent
/// as `create_dir_all` would), exactly that mode whatever the umask.
pub fn create_private_dir(dir: &Path) -> Result<(), Failure> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| Failure::other(format!("cannot create {}: {e}", parent.display())))?;
    }
    std::fs::DirBuilder::new()
        .mode(PRIVATE_DIR_MODE)
        .create(dir)
        .and_then(|()| {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(PRIVATE_DIR_MODE))
        })
        .map_err(|e| Failure::other(format!("cannot create {}: {e}", dir.display())))
}

/// Writes every claim's line to `writer` (named `label` in errors), with a
/// progress bar on a terminal.
async fn write_lines(
    source: &Target,
    writer: &mut dyn Write,
    label: &str,
) -> Result<Summary, Failure> {
    let mut out = Lines {
        writer,
        label,
        summary: Summary {
            claims: 0,
            bytes: 0,
        },
    };
    match source {
        Target::DataDir(dir) => {
            let store = Arc::new(open_existing(dir)?);
            tracing::debug!(
                opened_peak_rss_kib = peak_rss_kib(),
                "data directory opened"
            );
            let total = store.stats().await.map(|s| s.claims).ok();
            let progress = cli::progress(total, "claims");
            let (tx, mut rx) = archive::channel();
            // Producer and writer run in this one task (not a spawned one):
            // lines are then allocated and freed on the same thread, so the
            // allocator does not grow one arena per thread with them.
            let consume = async {
                while let Some(chunk) = rx.recv().await {
                    out.write(chunk?)?;
                    progress.set(out.summary.claims);
                }
                Ok::<(), Failure>(())
            };
            let (_, outcome) = tokio::join!(archive::produce(store.clone(), tx), consume);
            store.close().await?;
            outcome?;
            progress.finish();
        }
        Target::Server(server) => {
            let mut client = server
                .admin_client()
                .await?
                .max_decoding_message_size(MAX_CHUNK_BYTES);
            let mut stream = client
                .export_claims(cli::admin_request(server, pb::ExportClaimsRequest {})?)
                .await?
                .into_inner();
            let progress = cli::progress(None, "claims");
            while let Some(chunk) = stream.message().await? {
                out.write(chunk.lines)?;
                progress.set(out.summary.claims);
            }
            progress.finish();
        }
    }
    if let Err(e) = out.writer.flush() {
        return Err(out.failed(e));
    }
    Ok(out.summary)
}

/// Where [`write_lines`] writes, and what it wrote.
struct Lines<'a> {
    /// The file or standard output.
    writer: &'a mut dyn Write,
    /// Its name in errors; "standard output" for `--out -`.
    label: &'a str,
    /// Lines and bytes so far.
    summary: Summary,
}

impl Lines<'_> {
    fn write(&mut self, lines: Vec<String>) -> Result<(), Failure> {
        for line in lines {
            if let Err(e) = self
                .writer
                .write_all(line.as_bytes())
                .and_then(|()| self.writer.write_all(b"\n"))
            {
                return Err(self.failed(e));
            }
            self.summary.claims += 1;
            self.summary.bytes += line.len() as u64 + 1;
        }
        Ok(())
    }

    /// A write error; standard output's reader going away ends the process
    /// quietly.
    fn failed(&self, err: std::io::Error) -> Failure {
        if self.label == "standard output" {
            cli::stdout_failed(err);
        }
        Failure::other(format!("cannot write {}: {err}", self.label))
    }
}

/// A mistyped path is an error, not a new, empty database.
fn open_existing(dir: &Path) -> Result<SledStore, Failure> {
    cli::open_existing(dir, EXPORT_CACHE_BYTES)
}

/// The process's peak resident set size (VmHWM) in KiB, 0 where
/// `/proc/self/status` cannot tell; logged at debug level so that memory
/// use can be checked from outside.
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
