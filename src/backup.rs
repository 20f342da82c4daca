//! Backups: `photoclaim backup` (through a running server's
//! `AdminService.Backup`, or from a stopped data directory) and
//! `photoclaim restore`.
//!
//! # The backup file, format version 1
//!
//! ```text
//! "PCBACKUP" (8 bytes)
//! frame*            each: length (u32, big-endian) ‖ Frame (protobuf)
//! ```
//!
//! The frames come in this order: one `header`; one `claim` per claim in
//! ascending id; one `api_key` per key; one `request` per request_id
//! record; one `trailer`. The trailer holds the number of each kind and the
//! SHA-256 of every byte before the trailer frame (magic included). Claims,
//! responses and events are the storage records ([`crate::domain`]'s
//! protobuf messages, the same bytes the hash chains cover).
//!
//! # Consistency
//!
//! A backup is a snapshot at one log position P, taken while the server
//! goes on writing: the newest durable position when it starts. It holds
//! exactly the claims registered up to P, each as it was at P (rebuilt from
//! its events up to P with the status rules, which also verifies its hash
//! chain), with the responses and events up to P, and records P and the
//! service-wide chain head at P. Events up to a durable position never
//! change, so no lock is taken and writers never wait. API keys and
//! request_id records are read as they are when the backup reaches them;
//! restore keeps only the request records whose claim or response it
//! restored.

use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::Message;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use tonic::Code;

use crate::cli::{self, Failure};
use crate::domain::access::ApiKey;
use crate::domain::chain::{self, ClaimHistory};
use crate::domain::{Result, Timestamp};
use crate::export::{self, Source};
use crate::keys;
use crate::pb;
use crate::store::{check_dir, RequestRecord, Restorer, Store, DIR_FORMAT_VERSION};

/// First bytes of every backup file.
pub const MAGIC: &[u8; 8] = b"PCBACKUP";
/// Layout version of the backup file.
pub const BACKUP_FORMAT_VERSION: u32 = 1;
/// Largest frame a reader accepts: a claim with all its events and
/// responses (hundreds of thousands) fits.
pub const MAX_FRAME_BYTES: u32 = 256 * 1024 * 1024;
/// Bytes per chunk of `AdminService.Backup`'s stream (a larger frame goes
/// in one larger chunk).
pub const CHUNK_BYTES: usize = 256 * 1024;
/// Claims read per store page.
const CLAIMS_PER_PAGE: usize = 100;
/// request_id records read per store page.
const REQUESTS_PER_PAGE: usize = 1000;

/// What the backup is of.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Header {
    /// [`BACKUP_FORMAT_VERSION`] of the writer.
    #[prost(uint32, tag = "1")]
    pub format_version: u32,
    /// When the backup started.
    #[prost(message, optional, tag = "2")]
    pub create_time: Option<Timestamp>,
    /// Data directory format of the server that wrote it.
    #[prost(uint32, tag = "3")]
    pub data_format_version: u32,
    /// The snapshot's log position P.
    #[prost(uint64, tag = "4")]
    pub log_position: u64,
    /// Service-wide chain head at P.
    #[prost(bytes = "vec", tag = "5")]
    pub chain_head: Vec<u8>,
    /// The program that wrote it, e.g. "photoclaim 0.1.0".
    #[prost(string, tag = "6")]
    pub producer: String,
}

/// Counts and checksum, last in the file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Trailer {
    /// Claim frames.
    #[prost(uint64, tag = "1")]
    pub claims: u64,
    /// Responses in them.
    #[prost(uint64, tag = "2")]
    pub responses: u64,
    /// Events in them.
    #[prost(uint64, tag = "3")]
    pub events: u64,
    /// API key frames.
    #[prost(uint64, tag = "4")]
    pub api_keys: u64,
    /// Request frames.
    #[prost(uint64, tag = "5")]
    pub requests: u64,
    /// SHA-256 of every byte before the trailer frame.
    #[prost(bytes = "vec", tag = "6")]
    pub sha256: Vec<u8>,
}

/// One frame's content. (Frames are handled one at a time, so the size of
/// the largest variant does not matter.)
#[allow(clippy::large_enum_variant)]
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Item {
    /// First.
    #[prost(message, tag = "1")]
    Header(Header),
    /// A claim with its responses and events.
    #[prost(message, tag = "2")]
    Claim(ClaimHistory),
    /// An API key.
    #[prost(message, tag = "3")]
    ApiKey(ApiKey),
    /// A request_id record.
    #[prost(message, tag = "4")]
    Request(RequestRecord),
    /// Last.
    #[prost(message, tag = "5")]
    Trailer(Trailer),
}

/// A frame of the backup file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Frame {
    /// What it holds.
    #[prost(oneof = "Item", tags = "1, 2, 3, 4, 5")]
    pub item: Option<Item>,
}

/// Encodes frames, keeping the checksum and the counts.
struct Writer {
    hasher: Sha256,
    counts: Trailer,
}

impl Writer {
    /// A writer and the file's first bytes.
    fn start(header: Header) -> (Self, Vec<u8>) {
        let mut writer = Writer {
            hasher: Sha256::new(),
            counts: Trailer::default(),
        };
        let mut bytes = MAGIC.to_vec();
        writer.hasher.update(MAGIC);
        bytes.extend(writer.frame(Item::Header(header)));
        (writer, bytes)
    }

    fn frame(&mut self, item: Item) -> Vec<u8> {
        count(&mut self.counts, &item);
        let body = Frame { item: Some(item) }.encode_to_vec();
        let mut bytes = Vec::with_capacity(4 + body.len());
        bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&body);
        self.hasher.update(&bytes);
        bytes
    }

    fn finish(mut self) -> Vec<u8> {
        let mut trailer = std::mem::take(&mut self.counts);
        trailer.sha256 = self.hasher.finalize().to_vec();
        let body = Frame {
            item: Some(Item::Trailer(trailer)),
        }
        .encode_to_vec();
        [&(body.len() as u32).to_be_bytes()[..], &body].concat()
    }
}

fn count(counts: &mut Trailer, item: &Item) {
    match item {
        Item::Claim(h) => {
            counts.claims += 1;
            counts.responses += h.responses.len() as u64;
            counts.events += h.events.len() as u64;
        }
        Item::ApiKey(_) => counts.api_keys += 1,
        Item::Request(_) => counts.requests += 1,
        Item::Header(_) | Item::Trailer(_) => {}
    }
}

/// A chunk of the backup stream, or the error that ended it.
pub type Chunk = Result<Vec<u8>>;

/// A bounded channel for [`produce`].
pub fn channel() -> (mpsc::Sender<Chunk>, mpsc::Receiver<Chunk>) {
    mpsc::channel(4)
}

/// Gathers frames into chunks of about [`CHUNK_BYTES`].
struct Chunker {
    tx: mpsc::Sender<Chunk>,
    buffer: Vec<u8>,
}

impl Chunker {
    /// False once the receiver is gone (the client went away).
    async fn push(&mut self, bytes: Vec<u8>) -> bool {
        self.buffer.extend(bytes);
        if self.buffer.len() < CHUNK_BYTES {
            return true;
        }
        self.tx
            .send(Ok(std::mem::take(&mut self.buffer)))
            .await
            .is_ok()
    }
}

/// Writes a backup of `store` to `tx` in chunks (see the module docs).
/// Stops early when the receiver is dropped; an error ends the stream.
pub async fn produce<S: Store>(store: Arc<S>, tx: mpsc::Sender<Chunk>) {
    let error_tx = tx.clone();
    if let Err(err) = write_backup(&*store, tx).await {
        tracing::error!(error = %err, "backup failed");
        let _ = error_tx.send(Err(err)).await;
    }
}

async fn write_backup<S: Store>(store: &S, tx: mpsc::Sender<Chunk>) -> Result<()> {
    let position = *store.durable_log().borrow();
    let head = store.log_head(position).await?;
    let (mut writer, start) = Writer::start(Header {
        format_version: BACKUP_FORMAT_VERSION,
        create_time: Some(Timestamp::now()),
        data_format_version: DIR_FORMAT_VERSION,
        log_position: position,
        chain_head: head.to_vec(),
        producer: format!("photoclaim {}", env!("CARGO_PKG_VERSION")),
    });
    let mut out = Chunker { tx, buffer: start };
    let mut after = None;
    loop {
        let page = store
            .snapshot_claims(position, after, CLAIMS_PER_PAGE)
            .await?;
        for history in page.items {
            if !out.push(writer.frame(Item::Claim(history))).await {
                return Ok(());
            }
        }
        after = page.next_cursor;
        if after.is_none() {
            break;
        }
    }
    for key in store.list_keys().await? {
        if !out.push(writer.frame(Item::ApiKey(key))).await {
            return Ok(());
        }
    }
    let mut after = None;
    loop {
        let records = store.request_records(after, REQUESTS_PER_PAGE).await?;
        let full = records.len() == REQUESTS_PER_PAGE;
        after = records.last().cloned();
        for record in records {
            if !out.push(writer.frame(Item::Request(record))).await {
                return Ok(());
            }
        }
        if !full {
            break;
        }
    }
    let claims = writer.counts.claims;
    out.buffer.extend(writer.finish());
    let last = std::mem::take(&mut out.buffer);
    if out.tx.send(Ok(last)).await.is_ok() {
        tracing::info!(claims, log_position = position, "backup sent");
    }
    Ok(())
}

/// Reads and verifies a backup file frame by frame.
pub struct Reader<R> {
    input: R,
    hasher: Sha256,
    counts: Trailer,
    header: Header,
    finished: bool,
}

fn read_error(e: std::io::Error) -> String {
    format!("cannot read the backup: {e}")
}

impl<R: Read> Reader<R> {
    /// Reads the magic and the header.
    pub fn open(mut input: R) -> std::result::Result<Self, String> {
        let mut magic = [0u8; 8];
        input.read_exact(&mut magic).map_err(read_error)?;
        if &magic != MAGIC {
            return Err("not a photoclaim backup (wrong magic bytes)".into());
        }
        let mut reader = Reader {
            input,
            hasher: Sha256::new(),
            counts: Trailer::default(),
            header: Header::default(),
            finished: false,
        };
        reader.hasher.update(magic);
        match reader.frame()? {
            Some(Item::Header(header)) => {
                if header.format_version > BACKUP_FORMAT_VERSION {
                    return Err(format!(
                        "backup format version {} is newer than this binary reads ({BACKUP_FORMAT_VERSION}); upgrade photoclaim",
                        header.format_version
                    ));
                }
                if header.data_format_version > DIR_FORMAT_VERSION {
                    return Err(format!(
                        "the backup comes from data format version {}, newer than this binary's {DIR_FORMAT_VERSION}; upgrade photoclaim",
                        header.data_format_version
                    ));
                }
                if header.chain_head.len() != 32 {
                    return Err("the backup header has no chain head".into());
                }
                reader.header = header;
                Ok(reader)
            }
            _ => Err("the backup does not start with a header".into()),
        }
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    fn frame(&mut self) -> std::result::Result<Option<Item>, String> {
        let mut length = [0u8; 4];
        match self.input.read_exact(&mut length) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err("the backup is truncated: it ends before its trailer".into())
            }
            Err(e) => return Err(read_error(e)),
        }
        let length_value = u32::from_be_bytes(length);
        if length_value > MAX_FRAME_BYTES {
            return Err(format!(
                "a frame claims {length_value} bytes, over the {MAX_FRAME_BYTES} limit: the file is damaged"
            ));
        }
        let mut body = vec![0u8; length_value as usize];
        self.input.read_exact(&mut body).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                "the backup is truncated inside a frame".to_string()
            } else {
                read_error(e)
            }
        })?;
        let frame = Frame::decode(body.as_slice())
            .map_err(|e| format!("a frame does not decode: {e}: the file is damaged"))?;
        if !matches!(frame.item, Some(Item::Trailer(_))) {
            self.hasher.update(length);
            self.hasher.update(&body);
        }
        Ok(frame.item)
    }

    /// The next claim, key or request record; `None` after the trailer,
    /// once the checksum and counts are verified.
    pub fn next_item(&mut self) -> std::result::Result<Option<Item>, String> {
        if self.finished {
            return Ok(None);
        }
        match self.frame()? {
            Some(Item::Trailer(trailer)) => {
                let digest = std::mem::take(&mut self.hasher).finalize().to_vec();
                if trailer.sha256 != digest {
                    return Err(format!(
                        "checksum mismatch: the trailer says {} but the content hashes to {}: the file is damaged",
                        chain::to_hex(&trailer.sha256),
                        chain::to_hex(&digest)
                    ));
                }
                let mut counted = self.counts.clone();
                counted.sha256 = trailer.sha256.clone();
                if counted != trailer {
                    return Err(format!(
                        "the trailer's counts {trailer:?} differ from the frames read {counted:?}"
                    ));
                }
                let mut rest = [0u8; 1];
                if self.input.read(&mut rest).map_err(read_error)? != 0 {
                    return Err("data after the trailer: the file is damaged".into());
                }
                self.finished = true;
                Ok(None)
            }
            Some(Item::Header(_)) => Err("a second header: the file is damaged".into()),
            Some(item) => {
                count(&mut self.counts, &item);
                Ok(Some(item))
            }
            None => Err("an empty frame: the file is damaged".into()),
        }
    }

    /// The trailer's counts (after [`Reader::next_item`] returned `None`).
    pub fn counts(&self) -> &Trailer {
        &self.counts
    }
}

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
        chain_head: chain::to_hex(&reader.header().chain_head),
    })
}

/// `photoclaim backup`: writes a backup of `source` to `out` (atomically:
/// the file appears only once complete and verified; private, see
/// [`export::write_atomically`]).
pub async fn backup(source: &Source, out: &Path) -> std::result::Result<Summary, Failure> {
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

async fn write_to(source: &Source, path: &Path) -> std::result::Result<(), Failure> {
    let file = export::open_partial(path)?;
    let mut writer = std::io::BufWriter::new(file);
    let mut write = |bytes: &[u8]| {
        writer
            .write_all(bytes)
            .map_err(|e| Failure::other(format!("cannot write {}: {e}", path.display())))
    };
    let progress = cli::progress(None, "bytes");
    match source {
        Source::DataDir(dir) => {
            let store = Arc::new(export::open_existing(dir)?);
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
        Source::Server(server) => {
            let mut client = keys::client(server)
                .await?
                .max_decoding_message_size(MAX_FRAME_BYTES as usize + 1024);
            let mut stream = client
                .backup(keys::request(server, pb::BackupRequest {})?)
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
    export::require_data_dir(from)?;
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
        chain_head: chain::to_hex(&head),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(format_version: u32, data_format_version: u32) -> Header {
        Header {
            format_version,
            data_format_version,
            log_position: 0,
            chain_head: chain::GENESIS.to_vec(),
            ..Default::default()
        }
    }

    fn file(header: Header, items: Vec<Item>) -> Vec<u8> {
        let (mut writer, mut bytes) = Writer::start(header);
        for item in items {
            bytes.extend(writer.frame(item));
        }
        bytes.extend(writer.finish());
        bytes
    }

    #[test]
    fn frames_round_trip_with_counts_and_checksum() {
        let key = ApiKey {
            name: "desk".into(),
            ..Default::default()
        };
        let bytes = file(
            header(BACKUP_FORMAT_VERSION, DIR_FORMAT_VERSION),
            vec![Item::ApiKey(key.clone())],
        );
        let mut reader = Reader::open(bytes.as_slice()).unwrap();
        assert_eq!(reader.next_item().unwrap(), Some(Item::ApiKey(key)));
        assert_eq!(reader.next_item().unwrap(), None);
        assert_eq!(reader.counts().api_keys, 1);
    }

    #[test]
    fn a_backup_from_a_newer_photoclaim_is_refused() {
        let newer = file(
            header(BACKUP_FORMAT_VERSION + 1, DIR_FORMAT_VERSION),
            vec![],
        );
        let err = Reader::open(newer.as_slice()).err().unwrap();
        assert!(err.contains("backup format version 2 is newer"), "{err}");
        let newer_data = file(
            header(BACKUP_FORMAT_VERSION, DIR_FORMAT_VERSION + 1),
            vec![],
        );
        let err = Reader::open(newer_data.as_slice()).err().unwrap();
        assert!(err.contains("newer than this binary's"), "{err}");
    }

    #[test]
    fn a_frame_length_past_the_limit_is_refused_before_allocating() {
        let mut bytes = MAGIC.to_vec();
        bytes.extend((MAX_FRAME_BYTES + 1).to_be_bytes());
        let err = Reader::open(bytes.as_slice()).err().unwrap();
        assert!(err.contains("over the"), "{err}");
    }
}
