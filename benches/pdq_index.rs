//! PDQ index: radius-31 queries through the slot tables against the linear
//! popcount scan, at 100k and 1M hashes, on random and clustered data; and
//! a registration's insert-then-query at 20k and 1M; and the bulk build of
//! 1M entries (what the server does at start-up).
//!
//! `cargo bench --bench pdq_index` (a few minutes on 2 cores).
//!
//! Data, from a seeded splitmix64:
//! - random: uniformly random hashes;
//! - clustered: n/20 random centres, each entry a random centre with 0–40
//!   random bit flips (near-duplicates: about 20 variants per image);
//! - hot: 50 centres only (20 000 variants each at 1M), the worst case for
//!   the index, where a query's answer is itself thousands of entries.
//!
//! Queries: 256 per data set, each a random stored hash with 0–30 random bit
//! flips; for random data half are fresh random hashes (no match). One query
//! per iteration, in rotation.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use photoclaim::domain::pdq::Pdq;
use photoclaim::imaging::pdq_index::PdqIndex;

const RADIUS: u32 = 31;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pdq(&mut self) -> Pdq {
        let mut b = [0u8; 32];
        for c in b.chunks_exact_mut(8) {
            c.copy_from_slice(&self.next().to_le_bytes());
        }
        Pdq(b)
    }

    /// `h` with up to `k` random bits toggled (repeats cancel).
    fn flip(&mut self, h: &Pdq, k: u64) -> Pdq {
        let mut out = *h;
        for _ in 0..k {
            let bit = self.below(256) as usize;
            out.0[bit / 8] ^= 1 << (bit % 8);
        }
        out
    }
}

fn random(rng: &mut Rng, n: usize) -> Vec<Pdq> {
    (0..n).map(|_| rng.pdq()).collect()
}

fn clustered(rng: &mut Rng, n: usize, centres: usize) -> Vec<Pdq> {
    let centres = random(rng, centres);
    (0..n)
        .map(|_| {
            let c = centres[rng.below(centres.len() as u64) as usize];
            let k = rng.below(41);
            rng.flip(&c, k)
        })
        .collect()
}

fn queries(rng: &mut Rng, hashes: &[Pdq], fresh: bool) -> Vec<Pdq> {
    (0..256)
        .map(|i| {
            if fresh && i % 2 == 1 {
                rng.pdq()
            } else {
                let h = hashes[rng.below(hashes.len() as u64) as usize];
                let k = rng.below(31);
                rng.flip(&h, k)
            }
        })
        .collect()
}

fn build(hashes: &[Pdq]) -> PdqIndex {
    PdqIndex::from_entries((1..).zip(hashes.iter().copied()))
}

fn bench_queries(c: &mut Criterion) {
    let mut group = c.benchmark_group("query_r31");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let mut rng = Rng(0x0bad_5eed);
    for n in [100_000, 1_000_000] {
        let label = if n == 1_000_000 { "1M" } else { "100k" };
        let mut sets = vec![
            ("random", random(&mut rng, n), true),
            ("clustered", clustered(&mut rng, n, n / 20), false),
        ];
        if n == 1_000_000 {
            sets.push(("hot50", clustered(&mut rng, n, 50), false));
        }
        for (kind, hashes, fresh) in sets {
            let index = build(&hashes);
            let qs = queries(&mut rng, &hashes, fresh);
            let matches: usize = qs.iter().map(|q| index.query(q, RADIUS).len()).sum();
            eprintln!(
                "{kind}/{label}: {:.1} bytes/entry, {:.1} matches/query at r={RADIUS}",
                index.heap_bytes() as f64 / n as f64,
                matches as f64 / qs.len() as f64
            );
            let id = format!("{kind}/{label}");
            let mut i = 0;
            group.bench_function(BenchmarkId::new("index", &id), |b| {
                b.iter(|| {
                    i = (i + 1) % qs.len();
                    black_box(index.query(black_box(&qs[i]), RADIUS))
                })
            });
            // All eight orientations (FindSimilarClaims' default).
            let variants: Vec<[Pdq; 8]> = qs.iter().map(Pdq::variants).collect();
            let mut i = 0;
            group.bench_function(BenchmarkId::new("dihedral", &id), |b| {
                b.iter(|| {
                    i = (i + 1) % variants.len();
                    black_box(index.query_variants(black_box(&variants[i]), RADIUS))
                })
            });
            let mut i = 0;
            group.bench_function(BenchmarkId::new("scan", &id), |b| {
                b.iter(|| {
                    i = (i + 1) % qs.len();
                    black_box(index.linear_scan(black_box(&qs[i]), RADIUS))
                })
            });
        }
    }
    group.finish();
}

/// What a registration does to the index: one insert under a new id, then a
/// same-image query for a fresh hash (no match), from 20k and 1M entries.
/// The index keeps growing, so each figure includes the tail scan and the
/// rebuilds at their steady-state rate.
fn bench_register(c: &mut Criterion) {
    let mut group = c.benchmark_group("register_r31");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let mut rng = Rng(0x5eed_f1ee);
    for (label, n) in [("20k", 20_000), ("1M", 1_000_000)] {
        let mut index = build(&random(&mut rng, n));
        let mut id = n as u64;
        group.bench_function(BenchmarkId::new("insert_query", label), |b| {
            b.iter(|| {
                id += 1;
                index.insert(id, rng.pdq());
                black_box(index.query(black_box(&rng.pdq()), RADIUS))
            })
        });
    }
    group.finish();
}

fn bench_build(c: &mut Criterion) {
    let mut group = c.benchmark_group("build");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let hashes = random(&mut Rng(0x00b0_11d0), 1_000_000);
    group.bench_function("from_entries/1M", |b| {
        b.iter(|| black_box(build(black_box(&hashes))))
    });
    group.finish();
}

criterion_group!(benches, bench_queries, bench_register, bench_build);
criterion_main!(benches);
