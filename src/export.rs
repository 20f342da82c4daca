//! `photoclaim export`: writes every claim, with its official responses and
//! events, as JSON Lines (see [`crate::api::archive`] for the format) to a
//! file, either straight from a data directory (while no server holds it)
//! or through a running server's `AdminService.ExportClaims`.
//!
//! The file appears only when the export is complete: lines go to a
//! temporary file beside it, which is synced and renamed over `--out` at the
//! end, and removed if anything fails.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::api::archive;
use crate::cli::{self, Failure};
use crate::keys::{self, ServerTarget};
use crate::pb;
use crate::store::{SledStore, Store};

/// Largest chunk accepted from a server. A chunk holds complete lines of
/// about 512 KiB, or one longer line: a claim with very many long
/// responses.
pub const MAX_CHUNK_BYTES: usize = 256 * 1024 * 1024;

/// sled's page cache while exporting from a data directory. The export
/// reads each page once, so a small cache suffices; with sled's default
/// (1 GiB) the process would keep every page it read (measured: about 1 KiB
/// per exported claim), with 4 MiB it still grew until ~7,000 claims.
pub const EXPORT_CACHE_BYTES: u64 = 1024 * 1024;

/// Where the claims come from.
pub enum Source {
    /// The data directory itself; fails if a server holds it.
    DataDir(PathBuf),
    /// A running server's AdminService (admin key).
    Server(ServerTarget),
}

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
pub async fn export(source: &Source, out: &Path) -> Result<Summary, Failure> {
    let result = if out == Path::new("-") {
        let mut stdout = std::io::BufWriter::new(std::io::stdout());
        write_lines(source, &mut stdout, "standard output").await
    } else {
        write_atomically(out, |partial| async move {
            let file = std::fs::File::create(&partial)
                .map_err(|e| Failure::other(format!("cannot create {}: {e}", partial.display())))?;
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

/// Runs `write` on a temporary file beside `out` (a hidden name with the
/// process id), then renames it over `out`; removes it if anything fails,
/// so `out` appears only complete.
pub async fn write_atomically<T, F, Fut>(out: &Path, write: F) -> Result<T, Failure>
where
    F: FnOnce(PathBuf) -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    let name = out
        .file_name()
        .ok_or_else(|| Failure::usage(format!("--out {} is not a file name", out.display())))?;
    let mut partial_name = std::ffi::OsString::from(".");
    partial_name.push(name);
    partial_name.push(format!(".partial-{}", std::process::id()));
    let partial = out.with_file_name(partial_name);
    let result = write(partial.clone()).await.and_then(|summary| {
        std::fs::rename(&partial, out).map_err(|e| {
            Failure::other(format!("cannot rename the file to {}: {e}", out.display()))
        })?;
        Ok(summary)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

/// Writes every claim's line to `writer` (named `label` in errors), with a
/// progress bar on a terminal.
async fn write_lines(
    source: &Source,
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
        Source::DataDir(dir) => {
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
        Source::Server(server) => {
            let mut client = keys::client(server)
                .await?
                .max_decoding_message_size(MAX_CHUNK_BYTES);
            let mut stream = client
                .export_claims(keys::request(server, pb::ExportClaimsRequest {})?)
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

/// A data directory given to a command that reads one must exist: a
/// mistyped path is NOT_FOUND, not a new, empty database.
pub fn require_data_dir(dir: &Path) -> Result<(), Failure> {
    if dir.is_dir() {
        Ok(())
    } else {
        Err(Failure::new(
            tonic::Code::NotFound,
            format!("no data directory at {}", dir.display()),
        )
        .hint("give --data-dir, or --server for a running server"))
    }
}

/// A mistyped path is an error, not a new, empty database.
pub fn open_existing(dir: &Path) -> Result<SledStore, Failure> {
    require_data_dir(dir)?;
    Ok(SledStore::open_without_index(dir, EXPORT_CACHE_BYTES)?)
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
