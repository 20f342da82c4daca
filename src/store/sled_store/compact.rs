//! `photoclaim compact`: every tree of a stopped data directory copied, key
//! by key in order, into a new directory.
//!
//! sled keeps superseded page versions in its log until a whole segment is
//! at most half live, so a directory written live for a long time takes
//! about 3.3 × its keys and values on disk; copied once, tree by tree in
//! key order, the same data takes about 1.8 × (BENCHMARKS.md, budget 8). The copy is byte
//! for byte (the same trees, keys and values, `meta` included), in batches,
//! with small page caches: its memory does not grow with the archive.

use std::path::Path;

use super::restore::storage;
use super::{open_db, read_format_version};
use super::{OpenError, DIR_FORMAT_VERSION};
use crate::store::schema;

/// Entries written per batch.
const BATCH_ENTRIES: usize = 10_000;
/// sled's page cache for each side of the copy: each record is read once
/// and written once.
const COPY_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// What a compaction copied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Compacted {
    /// Trees copied (sled's default tree included).
    pub trees: u64,
    /// Keys copied.
    pub entries: u64,
    /// Bytes of keys and values copied.
    pub logical_bytes: u64,
    /// The source directory's size on disk, as sled counts it.
    pub source_disk_bytes: u64,
}

/// Copies every tree of the data directory `from` into `to`, which must not
/// hold a database yet. `from` must be of this binary's format version: an
/// older one is migrated by starting the server on it first. `copied` is
/// told the number of entries copied so far, every batch.
pub fn copy_trees(from: &Path, to: &Path, copied: &dyn Fn(u64)) -> Result<Compacted, String> {
    if !from.join("conf").is_file() {
        return Err(format!(
            "{} is not a photoclaim data directory (no sled database in it)",
            from.display()
        ));
    }
    if to.join("conf").exists() {
        return Err(format!("{} already holds a database", to.display()));
    }
    let source = open_db(from, COPY_CACHE_BYTES).map_err(|e| e.to_string())?;
    let meta = source.open_tree(schema::META).map_err(storage)?;
    match read_format_version(from, &meta).map_err(|e| e.to_string())? {
        Some(DIR_FORMAT_VERSION) => {}
        Some(found) if found > DIR_FORMAT_VERSION => {
            return Err(OpenError::TooNew {
                dir: from.to_path_buf(),
                found,
                supported: DIR_FORMAT_VERSION,
            }
            .to_string())
        }
        Some(found) => {
            return Err(format!(
                "{} has format version {found}, older than this binary's {DIR_FORMAT_VERSION}: start `photoclaim serve` on it once to migrate it, then compact it",
                from.display()
            ))
        }
        None => {
            return Err(format!(
                "{} has no format version: not a photoclaim data directory",
                from.display()
            ))
        }
    }
    let mut done = Compacted {
        source_disk_bytes: source.size_on_disk().map_err(storage)?,
        ..Compacted::default()
    };
    let target = open_db(to, COPY_CACHE_BYTES).map_err(|e| e.to_string())?;
    for name in source.tree_names() {
        let (src, dst) = (
            source.open_tree(&name).map_err(storage)?,
            target.open_tree(&name).map_err(storage)?,
        );
        let mut batch = sled::Batch::default();
        let mut pending = 0;
        for entry in src.iter() {
            let (key, value) = entry.map_err(storage)?;
            done.entries += 1;
            done.logical_bytes += (key.len() + value.len()) as u64;
            batch.insert(key, value);
            pending += 1;
            if pending == BATCH_ENTRIES {
                dst.apply_batch(std::mem::take(&mut batch))
                    .map_err(storage)?;
                pending = 0;
                copied(done.entries);
            }
        }
        dst.apply_batch(batch).map_err(storage)?;
        done.trees += 1;
    }
    target.flush().map_err(storage)?;
    Ok(done)
}
