//! In-process caches of what the hot reads return, in front of sled, each
//! bounded in bytes: statuses (`GetVerificationStatus`, `serve
//! --status-cache-mb`) and claims with their latest response (`GetClaim`
//! and each claim of a `FindSimilarClaims` reply, `serve --claim-cache-mb`).
//!
//! A cache never serves a value older than an acknowledged write:
//!
//! - every committed write puts its new value in ([`RecordCache::update`])
//!   before the write is acknowledged, replacing any older one;
//! - a reader that missed fills the cache with what it read from sled
//!   ([`RecordCache::fill`]) only if no write to that shard happened since
//!   it looked ([`RecordCache::epoch`]): otherwise what it read may predate
//!   a write whose own entry has since been evicted.
//!
//! Both run under the shard's lock, and a value is only ever replaced by a
//! newer one (higher `last_sequence`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use prost::Message;

use super::SharedClaim;
use crate::domain::StatusView;

const SHARDS: usize = 64;
/// Bookkeeping counted per entry (map slot, `Arc` header, allocator) on top
/// of the value's own size and [`Cached::heap_bytes`].
const ENTRY_OVERHEAD: usize = 128;

/// A value a [`RecordCache`] holds.
pub(super) trait Cached {
    /// The claim's `last_sequence` it reflects: a newer one replaces it.
    fn sequence(&self) -> u64;
    /// An estimate of the heap bytes its strings and vectors hold.
    fn heap_bytes(&self) -> usize;
}

/// Decoded, strings and vectors take about twice their encoded size
/// (allocator headers and rounding; checked against resident memory on the
/// 1M archive, BENCHMARKS.md).
fn heap_estimate(encoded: usize) -> usize {
    2 * encoded
}

impl Cached for StatusView {
    fn sequence(&self) -> u64 {
        self.status.last_sequence
    }

    fn heap_bytes(&self) -> usize {
        let latest = self.latest_response.as_ref().map_or(0, |r| r.encoded_len());
        heap_estimate(self.status.encoded_len() + latest)
    }
}

impl Cached for SharedClaim {
    fn sequence(&self) -> u64 {
        self.view().claim.last_sequence
    }

    /// The decoded claim, and room for its wire encoding
    /// ([`SharedClaim::encoding`], about the size of the record), counted
    /// whether or not a reader keeps one.
    fn heap_bytes(&self) -> usize {
        let view = self.view();
        let latest = view.latest_response.as_ref().map_or(0, |r| r.encoded_len());
        let encoded = view.claim.encoded_len() + latest;
        heap_estimate(encoded) + encoded
    }
}

/// The statuses' cache.
pub(super) type StatusCache = RecordCache<StatusView>;
/// The claims' cache.
pub(super) type ClaimCache = RecordCache<SharedClaim>;

pub(super) struct RecordCache<V> {
    shards: Box<[Mutex<Shard<V>>]>,
    /// Bytes per shard; 0 turns the cache off.
    shard_budget: usize,
}

struct Shard<V> {
    entries: HashMap<u64, (Arc<V>, usize)>,
    bytes: usize,
    /// Writes seen by this shard, for [`RecordCache::fill`].
    writes: u64,
}

impl<V> Default for Shard<V> {
    fn default() -> Self {
        Shard {
            entries: HashMap::new(),
            bytes: 0,
            writes: 0,
        }
    }
}

impl<V: Cached> Shard<V> {
    /// Puts `value` in unless a newer one is there; whether it did.
    fn put(&mut self, id: u64, value: Arc<V>, budget: usize) -> bool {
        if let Some((old, _)) = self.entries.get(&id) {
            if old.sequence() >= value.sequence() {
                return false;
            }
        }
        let size = ENTRY_OVERHEAD + std::mem::size_of::<V>() + value.heap_bytes();
        if let Some((_, old_size)) = self.entries.insert(id, (value, size)) {
            self.bytes -= old_size;
        }
        self.bytes += size;
        if self.bytes > budget {
            // Down to seven eighths of the budget, in the map's (arbitrary)
            // order: random eviction, without bookkeeping on reads.
            let target = budget - budget / 8;
            let mut bytes = self.bytes;
            let mut victims = Vec::new();
            for (&key, &(_, size)) in &self.entries {
                if bytes <= target {
                    break;
                }
                if key != id {
                    victims.push(key);
                    bytes -= size;
                }
            }
            for key in victims {
                self.entries.remove(&key);
            }
            self.bytes = bytes;
        }
        true
    }
}

/// The shards' write epochs, taken together ([`RecordCache::epochs`]).
pub(super) struct Epochs(Vec<u64>);

impl Epochs {
    /// The epoch of `id`'s shard.
    pub(super) fn of(&self, id: u64) -> u64 {
        self.0[(id % SHARDS as u64) as usize]
    }
}

impl<V: Cached> RecordCache<V> {
    pub(super) fn new(bytes: u64) -> Self {
        RecordCache {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            shard_budget: usize::try_from(bytes).unwrap_or(usize::MAX) / SHARDS,
        }
    }

    fn shard(&self, id: u64) -> std::sync::MutexGuard<'_, Shard<V>> {
        self.shards[(id % SHARDS as u64) as usize]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn get(&self, id: u64) -> Option<Arc<V>> {
        if self.shard_budget == 0 {
            return None;
        }
        self.shard(id).entries.get(&id).map(|(v, _)| Arc::clone(v))
    }

    /// The cached value of `id`, else what `read` finds in sled, which is
    /// put in unless a write reached the shard meanwhile ([`Self::fill`]).
    pub(super) fn get_or_read<E>(
        &self,
        id: u64,
        read: impl FnOnce() -> Result<Option<V>, E>,
    ) -> Result<Option<Arc<V>>, E> {
        if !self.is_on() {
            return Ok(read()?.map(Arc::new));
        }
        if let Some(value) = self.get(id) {
            return Ok(Some(value));
        }
        let epoch = self.epoch(id);
        let Some(found) = read()?.map(Arc::new) else {
            return Ok(None);
        };
        self.fill(id, epoch, Arc::clone(&found));
        Ok(Some(found))
    }

    /// To pass to [`Self::fill`]: taken before reading sled.
    pub(super) fn epoch(&self, id: u64) -> u64 {
        self.shard(id).writes
    }

    /// Every shard's epoch at once, for a batch of [`Self::fill`]s.
    pub(super) fn epochs(&self) -> Epochs {
        Epochs(
            self.shards
                .iter()
                .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).writes)
                .collect(),
        )
    }

    /// Whether the entries take seven eighths of the budget or more (always,
    /// for a cache that is off).
    pub(super) fn nearly_full(&self) -> bool {
        let held: usize = self
            .shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).bytes)
            .sum();
        held >= (self.shard_budget - self.shard_budget / 8) * SHARDS
    }

    /// A value read from sled after [`Self::epoch`] returned `epoch`;
    /// whether it was put in.
    pub(super) fn fill(&self, id: u64, epoch: u64, value: impl Into<Arc<V>>) -> bool {
        if self.shard_budget == 0 {
            return false;
        }
        let mut shard = self.shard(id);
        shard.writes == epoch && shard.put(id, value.into(), self.shard_budget)
    }

    /// The value a committed write left, built by `value` only when the
    /// cache is on: call before acknowledging the write.
    pub(super) fn update(&self, id: u64, value: impl FnOnce() -> V) {
        let mut shard = self.shard(id);
        shard.writes += 1;
        if self.shard_budget > 0 {
            shard.put(id, Arc::new(value()), self.shard_budget);
        }
    }

    /// Whether the cache holds anything at all (0 bytes: off).
    pub(super) fn is_on(&self) -> bool {
        self.shard_budget > 0
    }

    /// Entries held (tests).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entries
                    .len()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ClaimStatus;

    fn view(id: u64, seq: u64) -> StatusView {
        StatusView {
            status: ClaimStatus {
                id,
                last_sequence: seq,
                ..Default::default()
            },
            latest_response: None,
        }
    }

    fn seq(cache: &StatusCache, id: u64) -> Option<u64> {
        cache.get(id).map(|v| v.status.last_sequence)
    }

    #[test]
    fn a_read_that_raced_a_write_never_puts_back_the_older_status() {
        let cache = StatusCache::new(1 << 20);
        // The reader looks, reads sequence 1 from sled; meanwhile a write
        // commits sequence 2 and its entry is gone again (evicted).
        let epoch = cache.epoch(7);
        cache.update(7, || view(7, 2));
        cache.shard(7).entries.clear();
        cache.fill(7, epoch, view(7, 1));
        assert_eq!(seq(&cache, 7), None, "the stale read is not cached");
        // Without a write in between, a read fills the cache.
        let epoch = cache.epoch(7);
        cache.fill(7, epoch, view(7, 2));
        assert_eq!(seq(&cache, 7), Some(2));
        // An older status never replaces a newer one.
        cache.update(7, || view(7, 1));
        assert_eq!(seq(&cache, 7), Some(2));
        cache.update(7, || view(7, 3));
        assert_eq!(seq(&cache, 7), Some(3));
    }

    #[test]
    fn get_or_read_keeps_a_read_only_when_no_write_raced_it() {
        let cache = StatusCache::new(1 << 20);
        // A write commits sequence 2 (and its entry is evicted) while the
        // read of sequence 1 is under way: the read is returned, not kept.
        let got = cache.get_or_read(7, || -> Result<_, ()> {
            cache.update(7, || view(7, 2));
            cache.shard(7).entries.clear();
            Ok(Some(view(7, 1)))
        });
        assert_eq!(got.unwrap().map(|v| v.status.last_sequence), Some(1));
        assert_eq!(seq(&cache, 7), None);
        let got = cache.get_or_read(7, || -> Result<_, ()> { Ok(Some(view(7, 2))) });
        assert_eq!(got.unwrap().map(|v| v.status.last_sequence), Some(2));
        assert_eq!(seq(&cache, 7), Some(2), "kept");
        let got = cache.get_or_read(7, || -> Result<_, ()> { panic!("served from memory") });
        assert_eq!(got.unwrap().map(|v| v.status.last_sequence), Some(2));
        let missing = cache.get_or_read(8, || -> Result<_, ()> { Ok(None) });
        assert_eq!(missing, Ok(None));
        let off = StatusCache::new(0);
        let got = off.get_or_read(7, || -> Result<_, ()> { Ok(Some(view(7, 2))) });
        assert_eq!(got.unwrap().map(|v| v.status.last_sequence), Some(2));
        assert_eq!(off.len(), 0);
    }

    #[test]
    fn it_stays_within_its_budget_and_a_zero_budget_holds_nothing() {
        let cache = StatusCache::new(64 * 1024);
        for id in 0..10_000 {
            cache.update(id, || view(id, 1));
        }
        let held = cache.len();
        assert!(held > 20 && held < 64 * 1024 / ENTRY_OVERHEAD, "{held}");
        let bytes: usize = cache.shards.iter().map(|s| s.lock().unwrap().bytes).sum();
        assert!(bytes <= 64 * 1024, "{bytes}");
        assert_eq!(seq(&cache, 9_999), Some(1), "the newest write is kept");
        let off = StatusCache::new(0);
        off.update(1, || view(1, 1));
        off.fill(1, off.epoch(1), view(1, 1));
        assert_eq!(off.len(), 0);
    }
}
