//! Full-text search over claims and imported fact-checks (SearchClaims,
//! RegisterClaim's "checked before?").
//!
//! The index is derived state, like the PDQ index: a tantivy index in the
//! data directory (`search-index/`; in memory for `--in-memory`, and for a
//! replica on a shared database unless `--search-index-dir` names a
//! directory), built from the store and following the event log and the
//! review log (`indexer`). Each commit of the index records the log
//! positions it reflects, so after a crash it replays from there: nothing
//! acknowledged is ever missing for longer than a catch-up. A missing
//! index, one of an older [`INDEX_VERSION`], or one ahead of the log (a
//! restored data directory) is rebuilt from scratch; so does `photoclaim
//! reindex`.
//!
//! - `analysis`: how text becomes terms, per language.
//! - `query`: the query language.
//! - `document`: the documents and fields.
//! - `engine`: compiling requests to tantivy queries, searching, facets
//!   and highlights.

pub mod analysis;
mod document;
mod engine;
mod indexer;
pub mod query;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tantivy::directory::MmapDirectory;
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument};

pub use document::{nanos, Target};
pub use engine::{
    CheckedBefore, Facets, Highlight, Highlighter, Hit, SearchRequest, SearchResults, Source,
};
pub use indexer::{start, Indexer};

/// Version of the index layout (fields, analyzers). An index of another
/// version is rebuilt at start.
pub const INDEX_VERSION: u32 = 2;

/// Name of the index's directory inside a data directory.
pub const INDEX_DIR_NAME: &str = "search-index";

/// Memory the index writer may buffer before it writes a segment.
const WRITER_BYTES: usize = 64 * 1024 * 1024;

/// How far the index has got.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Indexed {
    /// Event log position reflected.
    pub claims: u64,
    /// Review log position reflected.
    pub reviews: u64,
    /// Whether the index is ready to answer (built, and caught up once).
    pub ready: bool,
}

/// Where the index lives.
#[derive(Clone, Debug)]
pub enum Location {
    /// In a directory (kept across restarts).
    Dir(PathBuf),
    /// In memory (rebuilt at every start).
    Memory,
}

/// An error of the index (opening, writing, searching): the index is
/// derived, so these are internal failures, never the caller's.
#[derive(Debug, thiserror::Error)]
#[error("search index: {0}")]
pub struct SearchError(pub String);

impl From<tantivy::TantivyError> for SearchError {
    fn from(err: tantivy::TantivyError) -> Self {
        SearchError(err.to_string())
    }
}

/// The search index: see the module documentation.
pub struct SearchIndex {
    reader: IndexReader,
    fields: document::Fields,
    writer: Mutex<IndexWriter<TantivyDocument>>,
    indexed: tokio::sync::watch::Sender<Indexed>,
    /// Whether the index must be rebuilt before it is used (new, of another
    /// version, or asked for).
    rebuild: std::sync::atomic::AtomicBool,
}

/// The commit payload: `photoclaim-search v{version} claims={n} reviews={m}`.
fn payload(indexed: Indexed) -> String {
    format!(
        "photoclaim-search v{INDEX_VERSION} claims={} reviews={}",
        indexed.claims, indexed.reviews
    )
}

/// Parses [`payload`]; `None` for another version or layout.
fn parse_payload(text: &str) -> Option<Indexed> {
    let mut words = text.split(' ');
    if words.next()? != "photoclaim-search" || words.next()? != format!("v{INDEX_VERSION}") {
        return None;
    }
    let claims = words.next()?.strip_prefix("claims=")?.parse().ok()?;
    let reviews = words.next()?.strip_prefix("reviews=")?.parse().ok()?;
    Some(Indexed {
        claims,
        reviews,
        ready: false,
    })
}

impl SearchIndex {
    /// Opens the index at `location`, or makes a new one (to be built) when
    /// there is none, it cannot be opened, or it is of another version.
    pub fn open(location: Location) -> Result<Arc<SearchIndex>, SearchError> {
        let (schema, fields) = document::Fields::schema();
        let (index, committed) = match &location {
            Location::Memory => (Index::create_in_ram(schema), None),
            Location::Dir(dir) => open_dir(dir, schema)?,
        };
        for (name, analyzer) in analysis::analyzers() {
            index.tokenizers().register(name, analyzer);
        }
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        // One indexing thread: one segment per commit (the index follows
        // writes a few hundred documents at a time; a rebuild is bounded by
        // reading the store, not by indexing).
        let writer = index.writer_with_num_threads(1, WRITER_BYTES)?;
        let rebuild = committed.is_none();
        Ok(Arc::new(SearchIndex {
            reader,
            fields,
            writer: Mutex::new(writer),
            indexed: tokio::sync::watch::Sender::new(committed.unwrap_or_default()),
            rebuild: std::sync::atomic::AtomicBool::new(rebuild),
        }))
    }

    /// Whether the index is ready to answer (built, and caught up once).
    pub fn is_ready(&self) -> bool {
        self.indexed.borrow().ready
    }

    /// Bytes of text indexed by this process so far (each text once).
    pub fn text_bytes(&self) -> u64 {
        self.fields
            .text_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Bytes of the files in `dir` (an index directory).
pub fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Opens the index in `dir`; an index that cannot be used is removed and
/// a new one made.
fn open_dir(
    dir: &Path,
    schema: tantivy::schema::Schema,
) -> Result<(Index, Option<Indexed>), SearchError> {
    let io = |e: std::io::Error| SearchError(format!("{}: {e}", dir.display()));
    if dir.join("meta.json").is_file() {
        let opened = Index::open_in_dir(dir)
            .map_err(SearchError::from)
            .and_then(|index| {
                let metas = index.load_metas()?;
                let committed = metas.payload.as_deref().and_then(parse_payload);
                Ok((index, committed))
            });
        match opened {
            Ok((index, Some(committed))) if index.schema() == schema => {
                return Ok((index, Some(committed)));
            }
            Ok(_) => {
                tracing::info!(dir = %dir.display(), "the search index is of another version; rebuilding it")
            }
            Err(err) => {
                tracing::warn!(dir = %dir.display(), error = %err, "the search index cannot be opened; rebuilding it")
            }
        }
        std::fs::remove_dir_all(dir).map_err(io)?;
    }
    std::fs::create_dir_all(dir).map_err(io)?;
    let directory = MmapDirectory::open(dir).map_err(|e| SearchError(e.to_string()))?;
    Ok((Index::create(directory, schema, Default::default())?, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_other_versions_are_refused() {
        let indexed = Indexed {
            claims: 12,
            reviews: 3,
            ready: false,
        };
        assert_eq!(parse_payload(&payload(indexed)), Some(indexed));
        assert_eq!(
            parse_payload("photoclaim-search v0 claims=1 reviews=2"),
            None
        );
        assert_eq!(parse_payload(""), None);
    }
}
