//! The backup file, and the snapshot that fills it: what
//! `AdminService.Backup` streams ([`produce`]) and `photoclaim backup` /
//! `restore` ([`crate::cli::backup`]) write and read ([`Reader`]).
//!
//! # The backup file, format version 1
//!
//! ```text
//! "PCBACKUP" (8 bytes)
//! frame*            each: length (u32, big-endian) ‖ Frame (protobuf)
//! ```
//!
//! The frames come in this order: one `header`; one `claim` per claim in
//! ascending id; one `api_key` per key; one `external_review` per imported
//! fact-check; one `request` per request_id record; one `trailer`. The trailer holds the number of each kind and the
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

use std::io::Read;
use std::sync::Arc;

use prost::Message;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::domain::access::ApiKey;
use crate::domain::history::ClaimHistory;
use crate::domain::{Result, Timestamp};
use crate::store::{RequestRecord, Store, DIR_FORMAT_VERSION};

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
    /// External review frames.
    #[prost(uint64, tag = "7")]
    pub external_reviews: u64,
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
    /// An imported fact-check as it is when the backup reads it (like API
    /// keys, not as of the snapshot's position).
    #[prost(message, tag = "6")]
    ExternalReview(crate::domain::external_review::ExternalReview),
}

/// A frame of the backup file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Frame {
    /// What it holds.
    #[prost(oneof = "Item", tags = "1, 2, 3, 4, 5, 6")]
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
        Item::ExternalReview(_) => counts.external_reviews += 1,
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
    let mut before = None;
    loop {
        let page = store.list_reviews(before, REQUESTS_PER_PAGE).await?;
        for review in page.items {
            if !out.push(writer.frame(Item::ExternalReview(review))).await {
                return Ok(());
            }
        }
        before = page.next_cursor;
        if before.is_none() {
            break;
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
                        hex::encode(&trailer.sha256),
                        hex::encode(&digest)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::chain;

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
