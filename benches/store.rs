//! The store's operations on a real sled directory holding 20,000 generated
//! claims (`photoclaim generate`'s data: 1-5 responses each, verdicts on
//! half, PDQ clusters of about 20): reads, durable writes one at a time and
//! 64 at a time (flushes shared), and similarity search through the store.
//!
//! `cargo bench --bench store`. Durable writes wait for sled's flush (an
//! fsync), so their figures depend on the disk more than on the CPU.

use std::sync::Arc;
use std::time::Duration;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use photoclaim::domain::pdq::Pdq;
use photoclaim::domain::{
    Claim, Image, OfficialResponse, Responder, ResponderRole, ResponseKind, Stance, Verdict,
};
use photoclaim::store::{
    MemoryStore, NewClaim, NewResponse, NewVerdict, SimilarQuery, SledStore, Store,
};

const CLAIMS: u64 = 20_000;

/// xorshift64: deterministic choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn id(&mut self) -> u64 {
        1 + self.next() % CLAIMS
    }

    fn hash(&mut self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for chunk in out.chunks_mut(8) {
            chunk.copy_from_slice(&self.next().to_le_bytes());
        }
        out
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn new_claim(rng: &mut Rng, n: u64) -> NewClaim {
    NewClaim {
        claim: Claim {
            claim_text: format!("Bench claim {n}: these photos show peacekeepers in Almaty"),
            language: "en".into(),
            image: Some(Image {
                source_url: format!("https://bench.example/{n}.jpg"),
                sha256: hex(&rng.hash()),
                pdq: Pdq(rng.hash()).to_hex(),
                pdq_quality: 90,
                pdq_quality_known: true,
                ..Default::default()
            }),
            ..Default::default()
        },
        request_id: format!("bench-{n}"),
        actor: "bench".into(),
        near_distance: 31,
        dihedral: false,
        variants: None,
    }
}

fn new_response(claim_id: u64, n: u64) -> NewResponse {
    NewResponse {
        claim_id,
        response: OfficialResponse {
            responder: Some(Responder {
                organization: "United Nations".into(),
                person: String::new(),
                role: ResponderRole::InternationalOrganization as i32,
            }),
            kind: ResponseKind::Statement as i32,
            stance: Stance::Refutes as i32,
            text: format!("Statement {n}: the unit is not deployed under a UN mandate."),
            language: "en".into(),
            ..Default::default()
        },
        request_id: format!("bench-response-{n}"),
        actor: "bench".into(),
    }
}

fn next(n: &mut u64) -> u64 {
    *n += 1;
    *n
}

/// Runs `op` on every command of `batch` at once, on `rt`, and waits for all.
fn all_at_once<S: Store, T, F, Fut>(
    store: &Arc<S>,
    rt: &tokio::runtime::Runtime,
    batch: Vec<T>,
    op: F,
) where
    T: Send + 'static,
    F: Fn(Arc<S>, T) -> Fut,
    Fut: std::future::Future<Output = photoclaim::domain::Result<()>> + Send + 'static,
{
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for cmd in batch {
            tasks.spawn(op(store.clone(), cmd));
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap().unwrap();
        }
    })
}

fn bench_store(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // The store starts its flusher task on the current runtime.
    let _runtime = rt.enter();
    let dir = tempfile::tempdir().unwrap();
    let sled = Arc::new(SledStore::open(dir.path()).unwrap());
    bench_backend(c, &rt, sled, ("store/read", "store/durable_write"));
    // The same core over the memory engine: what the core itself costs.
    let memory = Arc::new(MemoryStore::in_memory().unwrap());
    bench_backend(c, &rt, memory, ("memory/read", "memory/write"));
}

/// Fills `store` with the generated archive, then times reads and writes
/// in the groups named `groups`.
fn bench_backend<S: Store>(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    store: Arc<S>,
    groups: (&str, &str),
) {
    let generated = rt
        .block_on(photoclaim::cli::generate::generate(
            store.clone(),
            CLAIMS,
            1,
            |_| {},
        ))
        .unwrap();
    eprintln!(
        "store: {} claims, {} responses generated in {:.1} s",
        generated.claims, generated.responses, generated.seconds
    );
    let mut rng = Rng(0x5eed_cafe);
    // Stored hashes, to search near them (a cluster of about 20 each).
    let pdqs: Vec<Pdq> = (0..256)
        .map(|_| {
            let view = rt.block_on(store.get_claim(rng.id())).unwrap().unwrap();
            Pdq::from_hex(&view.claim.image.unwrap().pdq).unwrap()
        })
        .collect();

    let mut reads = c.benchmark_group(groups.0);
    reads
        .sample_size(30)
        .measurement_time(Duration::from_secs(3));
    reads.bench_function("get_claim", |b| {
        b.iter(|| rt.block_on(store.get_claim(black_box(rng.id()))).unwrap())
    });
    reads.bench_function("list_events(50)", |b| {
        b.iter(|| {
            rt.block_on(store.list_events(black_box(rng.id()), None, 50))
                .unwrap()
        })
    });
    reads.bench_function("list_claims(50)", |b| {
        b.iter(|| rt.block_on(store.list_claims(None, None, 50)).unwrap())
    });
    let mut i = 0;
    reads.bench_function("find_similar(pdq, r31)", |b| {
        b.iter(|| {
            i = (i + 1) % pdqs.len();
            rt.block_on(store.find_similar(SimilarQuery {
                pdq: Some(pdqs[i]),
                max_distance: 31,
                limit: 50,
                ..Default::default()
            }))
            .unwrap()
        })
    });
    reads.finish();

    let mut writes = c.benchmark_group(groups.1);
    writes
        .sample_size(10)
        .measurement_time(Duration::from_secs(4));
    let mut n = 0u64;
    writes.bench_function("register_claim x1", |b| {
        b.iter(|| {
            n += 1;
            rt.block_on(store.register_claim(new_claim(&mut rng, n)))
                .unwrap()
        })
    });
    writes.bench_function("attach_response x1", |b| {
        b.iter(|| {
            n += 1;
            rt.block_on(store.attach_response(new_response(rng.id(), n)))
                .unwrap()
        })
    });
    writes.bench_function("set_verdict x1", |b| {
        b.iter(|| {
            rt.block_on(store.set_verdict(NewVerdict {
                claim_id: rng.id(),
                verdict: Verdict {
                    claim_rating: 2,
                    media_authenticity: 1,
                    rationale: "The unit's own statement.".into(),
                    ..Default::default()
                },
                etag: None,
                actor: "bench".into(),
            }))
            .unwrap()
        })
    });
    writes.throughput(Throughput::Elements(64));
    writes.bench_function("register_claim x64 concurrent", |b| {
        b.iter_batched(
            || (0..64).map(|_| new_claim(&mut rng, next(&mut n))).collect(),
            |batch: Vec<NewClaim>| {
                all_at_once(&store, rt, batch, |store, cmd| async move {
                    store.register_claim(cmd).await.map(drop)
                })
            },
            BatchSize::SmallInput,
        )
    });
    writes.bench_function("attach_response x64 concurrent", |b| {
        b.iter_batched(
            || {
                (0..64)
                    .map(|_| new_response(rng.id(), next(&mut n)))
                    .collect()
            },
            |batch: Vec<NewResponse>| {
                all_at_once(&store, rt, batch, |store, cmd| async move {
                    store.attach_response(cmd).await.map(drop)
                })
            },
            BatchSize::SmallInput,
        )
    });
    writes.finish();
    rt.block_on(store.close()).unwrap();
}

criterion_group!(benches, bench_store);
criterion_main!(benches);
