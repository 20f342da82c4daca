//! Start-up with 1M image hashes: `SledStore::open` on a data directory
//! whose `claims_by_pdq` tree holds 1,000,000 entries. `open` returns (and
//! the server serves) while a background thread reads the tree and builds
//! the in-memory PDQ index; `open_and_index_ready` also waits for that.
//!
//! `cargo bench --bench startup`. The directory is written once, directly in
//! the store's documented layout (meta format 2, `claim_id -> pdq ‖
//! quality`), so the bench measures opening, not a million registrations.

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use photoclaim::store::{OpenError, SledStore};

const ENTRIES: u64 = 1_000_000;

fn write_directory(dir: &Path) {
    let db = sled::open(dir).expect("sled");
    let meta = db.open_tree("meta").unwrap();
    meta.insert(b"format_version", &2u32.to_be_bytes()).unwrap();
    meta.insert(b"last_claim_id", &ENTRIES.to_be_bytes())
        .unwrap();
    let tree = db.open_tree("claims_by_pdq").unwrap();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut batch = sled::Batch::default();
    for id in 1..=ENTRIES {
        let mut value = [0u8; 33];
        for chunk in value[..32].chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes());
        }
        value[32] = 90;
        batch.insert(&id.to_be_bytes(), &value[..]);
        if id % 100_000 == 0 {
            tree.apply_batch(std::mem::take(&mut batch)).unwrap();
        }
    }
    db.flush().unwrap();
}

/// Opens the store once the previous one has released the directory (its
/// flusher task holds it briefly after a drop), timing only the open, and
/// the index build too when `index` is set.
fn open_once(runtime: &tokio::runtime::Runtime, dir: &Path, index: bool) -> Duration {
    runtime.block_on(async {
        loop {
            let started = Instant::now();
            match SledStore::open(dir) {
                Ok(store) => {
                    if index {
                        store.pdq_index_ready().await.expect("index build");
                    }
                    let took = started.elapsed();
                    drop(store);
                    return took;
                }
                Err(OpenError::Locked(_)) => tokio::time::sleep(Duration::from_millis(10)).await,
                Err(other) => panic!("{other}"),
            }
        }
    })
}

fn startup(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    write_directory(dir.path());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group("startup");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    for (name, index) in [("open", false), ("open_and_index_ready", true)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                (0..iterations)
                    .map(|_| open_once(&runtime, dir.path(), index))
                    .sum()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, startup);
criterion_main!(benches);
