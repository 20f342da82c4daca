//! The cost per image of reading Content Credentials (C2PA), and what it
//! adds to the analysis every uploaded image gets (decode, SHA-256, the
//! eight PDQ hashes, EXIF): `cargo bench --bench credentials`.
//!
//! The signed image is made here with the tests' signer
//! (`tests/common/c2pa.rs`: rcgen certificates, an in-process time stamp).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use photoclaim::imaging::{analyze_with, credentials::CredentialReader};

#[allow(dead_code)]
#[path = "../tests/common/c2pa.rs"]
mod c2pa;

/// A 640×480 photo-like JPEG (blocks of colour with gradients).
fn photo() -> Vec<u8> {
    let picture = image::RgbImage::from_fn(640, 480, |x, y| {
        let block = (x / 16 * 7 + y / 16 * 13) % 251;
        image::Rgb([
            (block as u8) ^ (x as u8),
            (block * 3 % 256) as u8,
            (y as u8) ^ 0x55,
        ])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(picture)
        .write_to(&mut out, image::ImageFormat::Jpeg)
        .expect("encode");
    out.into_inner()
}

fn bench_credentials(c: &mut Criterion) {
    let mut group = c.benchmark_group("credentials");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let signer = c2pa::TestSigner::new("Bench Newsroom");
    let unsigned = photo();
    let signed = c2pa::sign(
        &unsigned,
        "jpeg",
        &signer,
        c2pa::ManifestSpec::captured("bench"),
    );
    let reader = CredentialReader::new();
    assert!(reader.read(&unsigned, "jpeg").is_none());
    assert!(reader.read(&signed, "jpeg").is_some());
    eprintln!(
        "640x480 JPEG: {} bytes unsigned, {} bytes signed",
        unsigned.len(),
        signed.len()
    );
    group.bench_function("read/unsigned", |b| {
        b.iter(|| black_box(reader.read(black_box(&unsigned), "jpeg")))
    });
    group.bench_function("read/signed", |b| {
        b.iter(|| black_box(reader.read(black_box(&signed), "jpeg")))
    });
    group.bench_function("analyze/unsigned/without_reading", |b| {
        b.iter(|| black_box(analyze_with(black_box(&unsigned), "content", None)))
    });
    group.bench_function("analyze/unsigned/with_reading", |b| {
        b.iter(|| black_box(analyze_with(black_box(&unsigned), "content", Some(&reader))))
    });
    group.bench_function("analyze/signed/with_reading", |b| {
        b.iter(|| black_box(analyze_with(black_box(&signed), "content", Some(&reader))))
    });
    group.finish();
}

criterion_group!(benches, bench_credentials);
criterion_main!(benches);
