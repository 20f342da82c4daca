//! `photoclaim export`: writes every claim, with its official responses and
//! events, as JSON Lines (see [`crate::api::archive`] for the format) to a
//! file, either straight from a data directory (while no server holds it)
//! or through a running server's `AdminService.ExportClaims`.
//!
//! The file appears only when the export is complete: lines go to a
//! temporary file beside it, which is synced and renamed over `--out` at the
//! end, and removed if anything fails.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::api::archive;
use crate::keys::{self, ServerTarget};
use crate::pb;
use crate::store::{OpenError, SledStore, Store};

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

/// Exports every claim from `source` into the file `out`, atomically.
pub async fn export(source: &Source, out: &Path) -> Result<Summary, String> {
    let result = write_atomically(
        out,
        |partial| async move { write_to(source, &partial).await },
    )
    .await;
    tracing::debug!(peak_rss_kib = peak_rss_kib(), "export memory");
    result
}

/// Runs `write` on a temporary file beside `out` (a hidden name with the
/// process id), then renames it over `out`; removes it if anything fails,
/// so `out` appears only complete.
pub async fn write_atomically<T, F, Fut>(out: &Path, write: F) -> Result<T, String>
where
    F: FnOnce(PathBuf) -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let name = out
        .file_name()
        .ok_or_else(|| format!("--out {} is not a file name", out.display()))?;
    let mut partial_name = std::ffi::OsString::from(".");
    partial_name.push(name);
    partial_name.push(format!(".partial-{}", std::process::id()));
    let partial = out.with_file_name(partial_name);
    let result = write(partial.clone()).await.and_then(|summary| {
        std::fs::rename(&partial, out)
            .map_err(|e| format!("cannot rename the file to {}: {e}", out.display()))?;
        Ok(summary)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

async fn write_to(source: &Source, path: &Path) -> Result<Summary, String> {
    let file = std::fs::File::create(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let mut writer = std::io::BufWriter::new(file);
    let mut progress = Progress::new();
    let mut write = |lines: Vec<String>, summary: &mut Summary| -> Result<(), String> {
        for line in lines {
            writer
                .write_all(line.as_bytes())
                .and_then(|()| writer.write_all(b"\n"))
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            summary.claims += 1;
            summary.bytes += line.len() as u64 + 1;
        }
        progress.show(summary.claims);
        Ok(())
    };
    let mut summary = Summary {
        claims: 0,
        bytes: 0,
    };
    match source {
        Source::DataDir(dir) => {
            let store = Arc::new(open_existing(dir)?);
            tracing::debug!(
                opened_peak_rss_kib = peak_rss_kib(),
                "data directory opened"
            );
            let (tx, mut rx) = archive::channel();
            // Producer and writer run in this one task (not a spawned one):
            // lines are then allocated and freed on the same thread, so the
            // allocator does not grow one arena per thread with them.
            let consume = async {
                while let Some(chunk) = rx.recv().await {
                    let lines = chunk.map_err(|e| e.to_string())?;
                    write(lines, &mut summary)?;
                }
                Ok::<(), String>(())
            };
            let (_, outcome) = tokio::join!(archive::produce(store.clone(), tx), consume);
            store.close().await.map_err(|e| e.to_string())?;
            outcome?;
        }
        Source::Server(server) => {
            let mut client = keys::client(server)
                .await?
                .max_decoding_message_size(MAX_CHUNK_BYTES);
            let mut stream = client
                .export_claims(keys::request(server, pb::ExportClaimsRequest {})?)
                .await
                .map_err(keys::describe)?
                .into_inner();
            while let Some(chunk) = stream.message().await.map_err(keys::describe)? {
                write(chunk.lines, &mut summary)?;
            }
        }
    }
    progress.finish();
    let file = writer
        .into_inner()
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    file.sync_all()
        .map_err(|e| format!("cannot sync {}: {e}", path.display()))?;
    Ok(summary)
}

/// A mistyped path is an error, not a new, empty database.
pub fn open_existing(dir: &Path) -> Result<SledStore, String> {
    if !dir.is_dir() {
        return Err(format!(
            "no data directory at {} (give --data-dir, or --server for a running server)",
            dir.display()
        ));
    }
    SledStore::open_without_index(dir, EXPORT_CACHE_BYTES).map_err(|err| match err {
        OpenError::Locked(_) => format!(
            "{err}. While the server runs, work through it: add --server http://HOST:PORT \
             (and PHOTOCLAIM_TOKEN=<an admin key's token>)"
        ),
        other => other.to_string(),
    })
}

/// A claim counter on stderr, only when stderr is a terminal (logs and
/// pipes stay clean).
struct Progress {
    on: bool,
    shown: u64,
}

impl Progress {
    fn new() -> Self {
        Progress {
            on: std::io::stderr().is_terminal(),
            shown: 0,
        }
    }

    fn show(&mut self, claims: u64) {
        if self.on && claims >= self.shown + 1000 {
            eprint!("\rexported {claims} claims…");
            self.shown = claims;
        }
    }

    fn finish(&self) {
        if self.on && self.shown > 0 {
            eprint!("\r\x1b[K");
        }
    }
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
