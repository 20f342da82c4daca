//! An in-memory Hamming-space index over PDQ hashes ([`crate::domain::pdq::Pdq`]).
//!
//! (About 840 lines, kept whole on purpose: one data structure, about 650
//! lines of code whose invariants the comments below explain, and the tests
//! that compare it with a linear scan.)
//!
//! [`PdqIndex`] answers "which stored hashes lie within Hamming distance `r`
//! of this one" exactly, with multi-index hashing (MIH, Norouzi, Punjani and
//! Fleet, "Fast Search in Hamming Space with Multi-Index Hashing", CVPR 2012):
//! the 256 bits are cut into 16 chunks of 16 bits, and each chunk has a slot
//! table mapping a 16-bit value to the entries whose chunk has that value.
//!
//! # Why probing the slot tables finds every match
//!
//! Write `r = 16·s + a` with `0 ≤ a < 16`. If two hashes differ in at most
//! `r` bits, then either one of any `a + 1` chosen chunks differs in at most
//! `s` bits, or one of the other `15 − a` chunks differs in at most `s − 1`
//! bits: otherwise the distance would be at least
//! `(a + 1)(s + 1) + (15 − a)·s = r + 1`. So the query probes, in `a + 1`
//! chunks, every 16-bit value within `s` bits of the query's chunk, and in the
//! other chunks every value within `s − 1` bits (none when `s = 0`), and
//! verifies the full 256-bit distance of each candidate. For `r ≤ 15` that is
//! one exact lookup in each of `r + 1` chunks; for `16 ≤ r ≤ 31` up to 17
//! lookups per chunk (272 in all at `r = 31`); for `32 ≤ r ≤ 47` up to 137
//! per chunk. Which chunks get the larger sub-radius is chosen per query: the
//! ones where it adds the fewest candidates.
//!
//! # When the index falls back to a linear scan
//!
//! From `r ≥ 48` (sub-radius 3: 697 probes per chunk, and on random data a
//! candidate list approaching the whole set) the index scans linearly. It
//! also scans when the probes of a query would gather more candidates than an
//! eighth of the indexed entries (clustered data around the query, or a small
//! index), because verifying a candidate is a random memory access while the
//! scan reads memory in order. Both paths return the same, exact answer.
//!
//! # Memory layout
//!
//! Every hash is stored once. Per entry:
//!
//! - `ids`: the id, 8 bytes; `words`: the hash as four `u64`, 32 bytes; both
//!   indexed by an entry's *position*;
//! - 16 slot tables, each in compressed-sparse-row form: the positions of the
//!   indexed entries grouped by chunk value (`u32`, 16 × 4 = 64 bytes per
//!   entry) plus a fixed table of 65 537 `u32` bucket offsets per slot (4 MiB
//!   for the 16 slots, about 4 bytes per entry at 1M entries);
//! - one live bit.
//!
//! That is about 108 bytes per entry at 1M entries after a bulk build, plus
//! the usual `Vec` growth slack while entries are appended. No id-to-position
//! map is kept: the indexed entries are sorted by id, so [`PdqIndex::remove`]
//! finds one by binary search.
//!
//! # Updates
//!
//! The slot tables are immutable arrays. [`PdqIndex::insert`] appends to an
//! unindexed *tail* that every query scans linearly; [`PdqIndex::remove`]
//! clears the live bit of an indexed entry (or drops a tail entry outright).
//! When the tail grows past `max(8192, indexed / 64)` entries, or removed
//! entries exceed a quarter of the indexed ones, the next update rebuilds the
//! tables (about 0.25 s at 1M entries, so some 15 µs per update
//! amortised). [`PdqIndex::compact`] rebuilds on demand.

use std::cmp::Reverse;
use std::fmt;

use crate::domain::pdq::{hamming, Pdq, Words};

/// Number of chunks (and slot tables) the 256 bits are cut into.
const CHUNKS: usize = 16;
/// Number of distinct values of a 16-bit chunk.
const BUCKETS: usize = 1 << 16;
/// Largest per-chunk sub-radius the index probes; beyond it, a linear scan.
const MAX_SUB_RADIUS: u32 = 2;
/// A query scans linearly when its probes would gather more than
/// `indexed / SCAN_FRACTION` candidates.
const SCAN_FRACTION: usize = 8;
/// The tail may hold this many entries before a rebuild whatever the size.
const MIN_TAIL: usize = 8192;
/// Otherwise the tail may hold `indexed / TAIL_FRACTION` entries.
const TAIL_FRACTION: usize = 64;
/// How many candidates ahead the probe asks for a candidate's hash.
const PREFETCH_AHEAD: usize = 16;
/// Asks the CPU to bring `item` into its caches (x86-64 only; a hint with
/// no other effect).
#[inline(always)]
fn prefetch<T>(item: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: SSE, which has the instruction, is part of every x86-64
        // CPU, and a prefetch of a valid address has no effect beyond the
        // caches.
        unsafe { _mm_prefetch::<_MM_HINT_T0>((item as *const T).cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = item;
}

/// Chunk `i` (0..16) of a hash: bits `16·i .. 16·i + 16`.
#[inline(always)]
fn chunk(w: &Words, i: usize) -> u16 {
    (w[i >> 2] >> ((i & 3) * 16)) as u16
}

/// Calls `f` with every 16-bit value within `rho` bits of `v` (none when
/// `rho < 0`).
#[inline]
fn for_each_probe(v: u16, rho: i32, mut f: impl FnMut(u16)) {
    match rho {
        i32::MIN..=-1 => {}
        0..=2 => {
            f(v);
            if rho >= 1 {
                for b in 0..16 {
                    let vb = v ^ (1 << b);
                    f(vb);
                    if rho >= 2 {
                        for c in b + 1..16 {
                            f(vb ^ (1 << c));
                        }
                    }
                }
            }
        }
        _ => {
            for mask in 0..=u16::MAX {
                if mask.count_ones() as i32 <= rho {
                    f(v ^ mask);
                }
            }
        }
    }
}

/// One slot table: the indexed positions grouped by the value of one chunk.
/// The positions with chunk value `v` are
/// `positions[offsets[v] .. offsets[v + 1]]`, in increasing order.
struct Slot {
    offsets: Box<[u32]>,
    positions: Box<[u32]>,
}

impl Slot {
    fn build(words: &[Words], i: usize) -> Slot {
        let mut offsets = vec![0u32; BUCKETS + 1];
        for w in words {
            offsets[usize::from(chunk(w, i)) + 1] += 1;
        }
        for b in 0..BUCKETS {
            offsets[b + 1] += offsets[b];
        }
        let mut cursor = offsets[..BUCKETS].to_vec();
        let mut positions = vec![0u32; words.len()];
        for (p, w) in words.iter().enumerate() {
            let c = &mut cursor[usize::from(chunk(w, i))];
            positions[*c as usize] = p as u32;
            *c += 1;
        }
        Slot {
            offsets: offsets.into_boxed_slice(),
            positions: positions.into_boxed_slice(),
        }
    }

    #[inline(always)]
    fn bucket(&self, v: u16) -> &[u32] {
        let v = usize::from(v);
        &self.positions[self.offsets[v] as usize..self.offsets[v + 1] as usize]
    }

    #[inline(always)]
    fn bucket_len(&self, v: u16) -> usize {
        let v = usize::from(v);
        (self.offsets[v + 1] - self.offsets[v]) as usize
    }
}

/// An exact in-memory index of `(id, PDQ hash)` entries answering Hamming
/// radius queries, by multi-index hashing over 16 chunks of 16 bits.
///
/// Ids are unique: inserting an existing id replaces its hash. See the
/// [module documentation](self) for the algorithm, the memory layout (about
/// 108 bytes per entry at 1M entries) and when it scans linearly instead.
/// At most `u32::MAX` entries.
pub struct PdqIndex {
    /// Entry ids by position. `ids[..indexed]` is sorted and strictly
    /// increasing; the tail `ids[indexed..]` is in insertion order.
    ids: Vec<u64>,
    /// Entry hashes by position.
    words: Vec<Words>,
    /// Number of leading positions covered by the slot tables.
    indexed: usize,
    /// Live bits of the indexed positions (tail entries are always live).
    live: Vec<u64>,
    /// Number of indexed positions whose live bit is clear.
    dead: usize,
    /// The 16 slot tables, or none while nothing is indexed.
    slots: Vec<Slot>,
    /// No entry has a larger id (ids only ever grow in the store, so an
    /// insert above it skips the search of the tail for an old entry).
    max_id: Option<u64>,
}

impl Default for PdqIndex {
    fn default() -> Self {
        PdqIndex::new()
    }
}

impl fmt::Debug for PdqIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PdqIndex")
            .field("len", &self.len())
            .field("indexed", &self.indexed)
            .field("dead", &self.dead)
            .field("tail", &(self.ids.len() - self.indexed))
            .finish()
    }
}

impl PdqIndex {
    /// An empty index.
    pub fn new() -> PdqIndex {
        PdqIndex {
            ids: Vec::new(),
            words: Vec::new(),
            indexed: 0,
            live: Vec::new(),
            dead: 0,
            slots: Vec::new(),
            max_id: None,
        }
    }

    /// Builds an index from `entries` in one go (sorting by id, then building
    /// each slot table with a counting pass and a fill pass). When an id
    /// occurs more than once, its last hash wins. Input already sorted by id,
    /// as read from the store, skips the sort.
    pub fn from_entries<I: IntoIterator<Item = (u64, Pdq)>>(entries: I) -> PdqIndex {
        let entries: Vec<(u64, Words)> = entries
            .into_iter()
            .map(|(id, hash)| (id, hash.words()))
            .collect();
        let index_it = entries.len() >= MIN_TAIL;
        Self::build(entries, index_it)
    }

    /// Rebuilds the slot tables now: folds the unindexed tail in and drops
    /// removed entries. Updates do this by themselves when needed; this is
    /// for callers that want it at a time of their choosing.
    pub fn compact(&mut self) {
        let entries: Vec<(u64, Words)> = (0..self.ids.len())
            .filter(|&p| self.is_live(p))
            .map(|p| (self.ids[p], self.words[p]))
            .collect();
        *self = Self::build(entries, true);
    }

    fn build(mut entries: Vec<(u64, Words)>, index_it: bool) -> PdqIndex {
        assert!(
            entries.len() <= u32::MAX as usize,
            "PdqIndex holds at most u32::MAX entries"
        );
        if !entries.is_sorted_by(|a, b| a.0 < b.0) {
            // Stable, so among equal ids the last one inserted comes last.
            entries.sort_by_key(|e| e.0);
            // `dedup_by` keeps the earlier element of a run: give it the
            // later hash, so the last insert wins.
            entries.dedup_by(|later, earlier| {
                if later.0 == earlier.0 {
                    earlier.1 = later.1;
                    true
                } else {
                    false
                }
            });
        }
        let ids: Vec<u64> = entries.iter().map(|e| e.0).collect();
        let words: Vec<Words> = entries.iter().map(|e| e.1).collect();
        drop(entries);
        let mut index = PdqIndex {
            max_id: ids.last().copied(),
            ids,
            words,
            ..PdqIndex::new()
        };
        if index_it && !index.words.is_empty() {
            let n = index.words.len();
            index.indexed = n;
            index.live = vec![u64::MAX; n.div_ceil(64)];
            index.slots = build_slots(&index.words);
        }
        index
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.ids.len() - self.dead
    }

    /// Whether the index has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The hash stored under `id`, if any.
    pub fn get(&self, id: u64) -> Option<Pdq> {
        self.find(id).map(|p| Pdq::from_words(&self.words[p]))
    }

    /// Adds an entry, or replaces the hash of an existing `id`.
    pub fn insert(&mut self, id: u64, hash: Pdq) {
        let w = hash.words();
        let existing = match self.max_id {
            Some(max) if id <= max => self.find(id),
            _ => None,
        };
        self.max_id = Some(self.max_id.map_or(id, |max| max.max(id)));
        match existing {
            Some(p) if p >= self.indexed => {
                self.words[p] = w;
                return;
            }
            Some(p) => self.kill(p),
            None => {}
        }
        self.ids.push(id);
        self.words.push(w);
        self.maybe_compact();
    }

    /// Removes the entry `id`, returning its hash, or `None` if there was none.
    pub fn remove(&mut self, id: u64) -> Option<Pdq> {
        let p = self.find(id)?;
        let hash = Pdq::from_words(&self.words[p]);
        if p >= self.indexed {
            self.ids.swap_remove(p);
            self.words.swap_remove(p);
        } else {
            self.kill(p);
            self.maybe_compact();
        }
        Some(hash)
    }

    /// Every entry within Hamming distance `radius` of `query` (`radius` of
    /// 256 or more matches everything), as `(id, distance)`, sorted by
    /// distance and then by id descending (newest first). Exact: the same
    /// answer as [`PdqIndex::linear_scan`].
    pub fn query(&self, query: &Pdq, radius: u32) -> Vec<(u64, u32)> {
        self.query_inner(query, radius, false)
    }

    /// The reference answer to [`PdqIndex::query`], by computing the distance
    /// of every entry (four `u64` popcounts each). Same output contract.
    pub fn linear_scan(&self, query: &Pdq, radius: u32) -> Vec<(u64, u32)> {
        self.search(query, radius, Plan::Scan)
    }

    /// Every entry within `radius` of any of `queries` (at most 8: a
    /// picture's rotations and reflections), as `(id, distance, query)`
    /// with the nearest query for each entry (the first on ties), sorted
    /// like [`PdqIndex::query`]. Exact: the same answer as a linear scan
    /// against each query. The indexed entries are probed once per query;
    /// the unindexed tail is read once for all of them.
    pub fn query_variants(&self, queries: &[Pdq], radius: u32) -> Vec<(u64, u32, usize)> {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("popcnt") {
            // SAFETY: the CPU supports POPCNT, checked on the line above.
            return unsafe { self.variants_popcnt(queries, radius, false) };
        }
        self.variants_inline(queries, radius, false)
    }

    /// The reference answer to [`PdqIndex::query_variants`] by linear scans.
    pub fn linear_scan_variants(&self, queries: &[Pdq], radius: u32) -> Vec<(u64, u32, usize)> {
        self.variants_inline(queries, radius, true)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "popcnt")]
    fn variants_popcnt(&self, queries: &[Pdq], radius: u32, scan: bool) -> Vec<(u64, u32, usize)> {
        self.variants_inline(queries, radius, scan)
    }

    #[inline(always)]
    fn variants_inline(&self, queries: &[Pdq], radius: u32, scan: bool) -> Vec<(u64, u32, usize)> {
        let qs: Vec<Words> = queries.iter().map(Pdq::words).collect();
        let mut hits: Vec<(u64, u32, usize)> = Vec::new();
        let mut one = Vec::new();
        // Queries the slot tables would not serve cheaply are scanned with
        // the tail: one pass over the entries for all of them.
        let mut scanned: Vec<usize> = Vec::new();
        for (v, q) in qs.iter().enumerate() {
            one.clear();
            if scan || !self.probe(q, radius, false, &mut one) {
                scanned.push(v);
            }
            hits.extend(one.iter().map(|&(id, d)| (id, d, v)));
        }
        let all: Vec<usize> = (0..qs.len()).collect();
        let start = if scanned.is_empty() { self.indexed } else { 0 };
        for (k, w) in self.words[start..].iter().enumerate() {
            let p = start + k;
            let of = if p < self.indexed { &scanned } else { &all };
            for &v in of {
                let d = hamming(w, &qs[v]);
                if d <= radius && self.is_live(p) {
                    hits.push((self.ids[p], d, v));
                }
            }
        }
        // The nearest query per entry, the first on ties.
        hits.sort_unstable_by_key(|&(id, d, v)| (id, d, v));
        hits.dedup_by_key(|h| h.0);
        hits.sort_unstable_by_key(|&(id, d, _)| (d, Reverse(id)));
        hits
    }

    /// Approximate heap bytes held by the index (capacities of its arrays).
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        self.ids.capacity() * size_of::<u64>()
            + self.words.capacity() * size_of::<Words>()
            + self.live.capacity() * size_of::<u64>()
            + self.slots.capacity() * size_of::<Slot>()
            + self
                .slots
                .iter()
                .map(|s| (s.offsets.len() + s.positions.len()) * size_of::<u32>())
                .sum::<usize>()
    }

    /// `force_index` probes the slot tables whatever the cost (for tests of
    /// the probing itself).
    fn query_inner(&self, query: &Pdq, radius: u32, force_index: bool) -> Vec<(u64, u32)> {
        let plan = match force_index {
            true => Plan::ForceIndex,
            false => Plan::Index,
        };
        self.search(query, radius, plan)
    }

    /// Runs [`Self::search_inline`], compiled with the `POPCNT` instruction
    /// when the CPU has it.
    ///
    /// The default x86-64 target predates `POPCNT`, so `count_ones` there is
    /// a dozen shifts and masks per word. The CPU is asked at run time (`std`
    /// caches the answer), so one binary runs everywhere and uses the
    /// instruction where it exists.
    fn search(&self, query: &Pdq, radius: u32, plan: Plan) -> Vec<(u64, u32)> {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("popcnt") {
            // SAFETY: the CPU supports POPCNT, checked on the line above.
            return unsafe { self.search_popcnt(query, radius, plan) };
        }
        self.search_inline(query, radius, plan)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "popcnt")]
    fn search_popcnt(&self, query: &Pdq, radius: u32, plan: Plan) -> Vec<(u64, u32)> {
        self.search_inline(query, radius, plan)
    }

    /// The search itself; always inlined, so that it (with [`Self::probe`]
    /// and [`Self::scan`], also always inlined) is compiled once for each
    /// caller in [`Self::search`].
    #[inline(always)]
    fn search_inline(&self, query: &Pdq, radius: u32, plan: Plan) -> Vec<(u64, u32)> {
        let q = query.words();
        let mut hits = Vec::new();
        let tail = match plan {
            Plan::Scan => 0,
            Plan::Index | Plan::ForceIndex => {
                let force = matches!(plan, Plan::ForceIndex);
                if !self.probe(&q, radius, force, &mut hits) {
                    self.scan(&q, radius, 0..self.indexed, &mut hits);
                }
                self.indexed
            }
        };
        self.scan(&q, radius, tail..self.ids.len(), &mut hits);
        finish(hits)
    }

    /// Probes the slot tables for the indexed entries within `radius` of `q`,
    /// pushing them (possibly more than once) to `hits`. Returns `false`,
    /// having pushed nothing, when a linear scan would be cheaper.
    #[inline(always)] // into `search_inline`
    fn probe(&self, q: &Words, radius: u32, force: bool, hits: &mut Vec<(u64, u32)>) -> bool {
        if self.indexed == 0 {
            return true;
        }
        let radius = radius.min(256);
        let s = radius / CHUNKS as u32;
        let a = (radius % CHUNKS as u32) as usize;
        if !force && s > MAX_SUB_RADIUS {
            return false;
        }
        let s = s as i32;
        let qc: [u16; CHUNKS] = std::array::from_fn(|i| chunk(q, i));
        // Candidates each chunk would contribute at sub-radius s and s - 1.
        let mut cost_hi = [0usize; CHUNKS];
        let mut cost_lo = [0usize; CHUNKS];
        for i in 0..CHUNKS {
            let slot = &self.slots[i];
            for_each_probe(qc[i], s, |v| cost_hi[i] += slot.bucket_len(v));
            for_each_probe(qc[i], s - 1, |v| cost_lo[i] += slot.bucket_len(v));
        }
        // Give sub-radius s to the a + 1 chunks where it costs least extra.
        let mut order: [usize; CHUNKS] = std::array::from_fn(|i| i);
        order.sort_by_key(|&i| cost_hi[i] - cost_lo[i]);
        let mut rho = [s - 1; CHUNKS];
        for &i in &order[..=a] {
            rho[i] = s;
        }
        let total: usize = (0..CHUNKS)
            .map(|i| if rho[i] == s { cost_hi[i] } else { cost_lo[i] })
            .sum();
        if !force && total > self.indexed / SCAN_FRACTION {
            return false;
        }
        // Gather the candidates first, then measure them in one tight loop:
        // each is a cache miss into `words`, and a loop without the
        // buckets' short inner loops lets the CPU overlap many of them.
        // Each bucket is a cache miss of its own too: all are asked for
        // before the first is copied, and each hash a few candidates ahead
        // of the one measured.
        let mut buckets: Vec<&[u32]> = Vec::with_capacity(CHUNKS * 17);
        for (i, slot) in self.slots.iter().enumerate() {
            for_each_probe(qc[i], rho[i], |v| {
                let bucket = slot.bucket(v);
                if let Some(first) = bucket.first() {
                    prefetch(first);
                }
                buckets.push(bucket);
            });
        }
        let mut candidates = Vec::with_capacity(total);
        for bucket in buckets {
            candidates.extend_from_slice(bucket);
        }
        hits.reserve(total.min(1024));
        for (k, &p) in candidates.iter().enumerate() {
            if let Some(&ahead) = candidates.get(k + PREFETCH_AHEAD) {
                prefetch(&self.words[ahead as usize]);
            }
            let p = p as usize;
            let d = hamming(&self.words[p], q);
            if d <= radius && self.is_live(p) {
                hits.push((self.ids[p], d));
            }
        }
        true
    }

    /// Pushes the live entries of `range` within `radius` of `q` to `hits`.
    #[inline(always)] // into `search_inline`
    fn scan(
        &self,
        q: &Words,
        radius: u32,
        range: std::ops::Range<usize>,
        hits: &mut Vec<(u64, u32)>,
    ) {
        let start = range.start;
        for (k, w) in self.words[range].iter().enumerate() {
            let d = hamming(w, q);
            if d <= radius {
                let p = start + k;
                if self.is_live(p) {
                    hits.push((self.ids[p], d));
                }
            }
        }
    }

    /// The position of the live entry `id`.
    fn find(&self, id: u64) -> Option<usize> {
        if let Ok(p) = self.ids[..self.indexed].binary_search(&id) {
            if self.is_live(p) {
                return Some(p);
            }
        }
        self.ids[self.indexed..]
            .iter()
            .position(|&x| x == id)
            .map(|k| self.indexed + k)
    }

    #[inline(always)]
    fn is_live(&self, p: usize) -> bool {
        p >= self.indexed || self.live[p / 64] & (1 << (p % 64)) != 0
    }

    /// Marks the indexed position `p` removed.
    fn kill(&mut self, p: usize) {
        debug_assert!(p < self.indexed && self.is_live(p));
        self.live[p / 64] &= !(1 << (p % 64));
        self.dead += 1;
    }

    fn maybe_compact(&mut self) {
        let tail = self.ids.len() - self.indexed;
        if tail > MIN_TAIL.max(self.indexed / TAIL_FRACTION) || self.dead > self.indexed / 4 {
            self.compact();
        }
    }
}

/// How [`PdqIndex::search`] finds the indexed entries.
#[derive(Clone, Copy)]
enum Plan {
    /// Measure every entry (the reference answer).
    Scan,
    /// Probe the slot tables, or scan when that is cheaper.
    Index,
    /// Probe the slot tables whatever the cost (tests of the probing).
    ForceIndex,
}

/// Builds the 16 slot tables, on two threads.
fn build_slots(words: &[Words]) -> Vec<Slot> {
    std::thread::scope(|scope| {
        let second = scope.spawn(|| {
            (CHUNKS / 2..CHUNKS)
                .map(|i| Slot::build(words, i))
                .collect::<Vec<_>>()
        });
        let mut slots: Vec<Slot> = (0..CHUNKS / 2).map(|i| Slot::build(words, i)).collect();
        match second.join() {
            Ok(rest) => slots.extend(rest),
            Err(panic) => std::panic::resume_unwind(panic),
        }
        slots
    })
}

/// Sorts hits by distance, then id descending, and drops duplicates (an
/// entry found through several chunks).
fn finish(mut hits: Vec<(u64, u32)>) -> Vec<(u64, u32)> {
    hits.sort_unstable_by_key(|&(id, d)| (d, Reverse(id)));
    hits.dedup();
    hits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::pdq::tests::Rng;
    use std::collections::BTreeMap;

    const RADII: [u32; 10] = [0, 1, 10, 31, 32, 47, 48, 64, 128, 256];

    fn reference(model: &BTreeMap<u64, Pdq>, q: &Pdq, r: u32) -> Vec<(u64, u32)> {
        let mut v: Vec<(u64, u32)> = model
            .iter()
            .map(|(&id, h)| (id, h.distance(q)))
            .filter(|&(_, d)| d <= r)
            .collect();
        v.sort_by_key(|&(id, d)| (d, Reverse(id)));
        v
    }

    /// Checks query (forced through the slot tables and not), and
    /// linear_scan against a brute-force model, for every radius.
    fn check(index: &PdqIndex, model: &BTreeMap<u64, Pdq>, queries: &[Pdq]) {
        assert_eq!(index.len(), model.len());
        for q in queries {
            for r in RADII {
                let want = reference(model, q, r);
                assert_eq!(index.linear_scan(q, r), want, "linear_scan r={r}");
                assert_eq!(index.query(q, r), want, "query r={r}");
                // Forcing the probe at r = 128 or 256 enumerates (nearly)
                // all 65 536 values per chunk: fine, but skip it at r = 256
                // on every query but the first to keep the debug build quick.
                if r <= 128 || std::ptr::eq(q, &queries[0]) {
                    assert_eq!(index.query_inner(q, r, true), want, "forced r={r}");
                }
            }
        }
    }

    fn random_data(rng: &mut Rng, n: u64) -> BTreeMap<u64, Pdq> {
        (0..n).map(|id| (id * 3 + 1, rng.pdq())).collect()
    }

    fn clustered_data(rng: &mut Rng, centres: usize, n: u64) -> (Vec<Pdq>, BTreeMap<u64, Pdq>) {
        let centres: Vec<Pdq> = (0..centres).map(|_| rng.pdq()).collect();
        let model = (0..n)
            .map(|id| {
                let c = &centres[rng.below(centres.len() as u64) as usize];
                let k = rng.below(41) as u32;
                (id * 3 + 1, rng.flip(c, k))
            })
            .collect();
        (centres, model)
    }

    /// Queries: some fresh random hashes, some near existing entries, some
    /// centres and their near neighbours.
    fn queries(rng: &mut Rng, model: &BTreeMap<u64, Pdq>, centres: &[Pdq]) -> Vec<Pdq> {
        let hashes: Vec<Pdq> = model.values().copied().collect();
        let mut qs = vec![rng.pdq(), rng.pdq()];
        for k in [0, 5, 20, 35] {
            let h = hashes[rng.below(hashes.len() as u64) as usize];
            qs.push(rng.flip(&h, k));
        }
        for k in [0, 12, 30] {
            if !centres.is_empty() {
                let c = centres[rng.below(centres.len() as u64) as usize];
                qs.push(rng.flip(&c, k));
            }
        }
        qs
    }

    /// Runs the index through: a bulk build, compaction, appended tail
    /// entries, removals from both parts, replacements.
    fn exercise(rng: &mut Rng, mut model: BTreeMap<u64, Pdq>, centres: &[Pdq]) {
        let mut index = PdqIndex::from_entries(model.iter().map(|(&id, &h)| (id, h)));
        index.compact();
        assert_eq!(index.ids.len(), index.indexed);
        let qs = queries(rng, &model, centres);
        check(&index, &model, &qs);

        // Tail entries: new ids, near existing hashes.
        let hashes: Vec<Pdq> = model.values().copied().collect();
        let next_id = model.keys().next_back().copied().unwrap_or(0) + 1;
        for id in next_id..next_id + 300 {
            let h = hashes[rng.below(hashes.len() as u64) as usize];
            let k = rng.below(20) as u32;
            let h = rng.flip(&h, k);
            index.insert(id, h);
            model.insert(id, h);
        }
        assert!(index.ids.len() > index.indexed);
        // Removals from the indexed part and from the tail.
        let ids: Vec<u64> = model.keys().copied().collect();
        for _ in 0..200 {
            let id = ids[rng.below(ids.len() as u64) as usize];
            assert_eq!(index.remove(id), model.remove(&id));
        }
        assert_eq!(index.remove(0), None, "id 0 never exists");
        // Replacements, in both parts, including re-inserting removed ids.
        for _ in 0..200 {
            let id = ids[rng.below(ids.len() as u64) as usize];
            let base = hashes[rng.below(hashes.len() as u64) as usize];
            let h = rng.flip(&base, 3);
            index.insert(id, h);
            model.insert(id, h);
            assert_eq!(index.get(id), Some(h));
        }
        assert!(index.dead > 0, "some indexed entries are tombstones");
        let mut qs = queries(rng, &model, centres);
        qs.push(model.values().next().copied().unwrap());
        check(&index, &model, &qs);

        index.compact();
        assert_eq!(index.dead, 0);
        check(&index, &model, &qs[..3]);
    }

    #[test]
    fn empty_index() {
        let mut index = PdqIndex::new();
        assert!(index.is_empty());
        assert_eq!(index.query(&Pdq([0; 32]), 256), vec![]);
        index.compact();
        assert_eq!(index.query(&Pdq([0; 32]), 256), vec![]);
        assert_eq!(index.remove(1), None);
        let index = PdqIndex::from_entries(Vec::new());
        assert_eq!(index.linear_scan(&Pdq([0; 32]), 256), vec![]);
    }

    #[test]
    fn ordering_and_replacement() {
        let h = Pdq([0; 32]);
        let mut near = h;
        near.0[0] = 1;
        let mut index = PdqIndex::from_entries([(5, h), (9, near), (7, h), (5, near)]);
        // The last hash given for id 5 wins.
        assert_eq!(index.get(5), Some(near));
        assert_eq!(index.query(&h, 1), vec![(7, 0), (9, 1), (5, 1)]);
        index.compact();
        index.insert(11, h);
        index.insert(7, near);
        assert_eq!(index.len(), 4);
        assert_eq!(index.query(&h, 0), vec![(11, 0)]);
        assert_eq!(index.query(&h, 1), vec![(11, 0), (9, 1), (7, 1), (5, 1)]);
        assert_eq!(index.remove(9), Some(near));
        assert_eq!(index.remove(9), None);
        assert_eq!(
            index.query_inner(&h, 1, true),
            vec![(11, 0), (7, 1), (5, 1)]
        );
    }

    #[test]
    fn variant_queries_match_linear_scans_of_all_eight_hashes() {
        let mut rng = Rng(0x5eed_0008);
        let (centres, model) = clustered_data(&mut rng, 40, MIN_TAIL as u64 + 3000);
        let mut index = PdqIndex::from_entries(model.iter().map(|(&k, &v)| (k, v)));
        // Rotated copies of some centres, some in the tail.
        let first_copy = model.keys().max().unwrap() + 1;
        for (n, c) in centres.iter().take(10).enumerate() {
            let t = crate::domain::pdq::Transformation::ALL[n % 8];
            index.insert(first_copy + n as u64, rng.flip(&c.transformed(t), 5));
        }
        let _ = index.remove(*model.keys().next().unwrap());
        for (n, q) in centres.iter().take(12).enumerate() {
            let variants = q.variants();
            for r in [0, 10, 31, 40] {
                let got = index.query_variants(&variants, r);
                let want = index.linear_scan_variants(&variants, r);
                assert_eq!(got, want, "radius {r}");
                // Each entry once, with its nearest variant's distance.
                for &(id, d, v) in &got {
                    let h = index.get(id).unwrap();
                    let best = variants.iter().map(|x| x.distance(&h)).min().unwrap();
                    assert_eq!(d, best);
                    assert_eq!(variants[v].distance(&h), d);
                    assert!(variants[..v].iter().all(|x| x.distance(&h) > d));
                }
                // The identity's own answer is contained in it.
                let plain = index.query(q, r);
                assert!(plain.iter().all(|p| got.iter().any(|g| g.0 == p.0)));
            }
            // The rotated copy is found, with its transformation.
            if n < 10 {
                let got = index.query_variants(&variants, 31);
                let copy = got.iter().find(|g| g.0 == first_copy + n as u64);
                assert_eq!(copy.map(|g| (g.1, g.2)), Some((5, n % 8)));
            }
        }
    }

    #[test]
    fn index_matches_scan_on_random_hashes() {
        let mut rng = Rng(0x5eed_0001);
        let model = random_data(&mut rng, 3000);
        exercise(&mut rng, model, &[]);
    }

    #[test]
    fn index_matches_scan_on_clustered_hashes() {
        let mut rng = Rng(0x5eed_0002);
        let (centres, model) = clustered_data(&mut rng, 50, 3000);
        exercise(&mut rng, model, &centres);
    }

    #[test]
    fn the_copy_for_cpus_without_popcnt_gives_the_same_answers() {
        // `search` picks the POPCNT copy on this machine; the portable one
        // is the same code compiled without it: call it directly.
        let mut rng = Rng(0x5eed_0004);
        let (centres, model) = clustered_data(&mut rng, 50, MIN_TAIL as u64 + 500);
        let mut index = PdqIndex::from_entries(model.iter().map(|(&id, &h)| (id, h)));
        let next = model.keys().next_back().copied().unwrap() + 1;
        let mut model = model;
        for id in next..next + 100 {
            let h = rng.pdq();
            index.insert(id, h);
            model.insert(id, h);
        }
        assert!(index.indexed > 0 && index.ids.len() > index.indexed);
        for q in &queries(&mut rng, &model, &centres) {
            for r in [0, 10, 31, 47, 64] {
                let expected = reference(&model, q, r);
                let forced = (r < 48).then_some(Plan::ForceIndex);
                for plan in [Plan::Index, Plan::Scan].into_iter().chain(forced) {
                    assert_eq!(index.search_inline(q, r, plan), expected, "r={r}");
                }
            }
        }
    }

    #[test]
    fn automatic_compaction_keeps_answers_exact() {
        let mut rng = Rng(0x5eed_0003);
        let (centres, mut model) = clustered_data(&mut rng, 50, MIN_TAIL as u64 + 500);
        let mut index = PdqIndex::new();
        for (&id, &h) in &model {
            index.insert(id, h);
        }
        // The tail passed MIN_TAIL once, so the tables were built.
        assert!(index.indexed > MIN_TAIL);
        let ids: Vec<u64> = model.keys().copied().collect();
        for &id in ids.iter().step_by(3) {
            assert_eq!(index.remove(id), model.remove(&id));
        }
        // A third removed: more than a quarter, so a rebuild dropped them.
        assert!(index.dead < index.indexed / 4);
        let qs = queries(&mut rng, &model, &centres);
        for q in &qs {
            for r in [0, 10, 31, 47] {
                assert_eq!(index.query(q, r), reference(&model, q, r));
                assert_eq!(index.query_inner(q, r, true), reference(&model, q, r));
            }
        }
    }
}
