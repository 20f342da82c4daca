//! PDQ hashes against Meta's reference implementation: every image in
//! `tests/data/pdq/expected.csv` is decoded, hashed with
//! `photoclaim::imaging::pdq_hash`, and compared with the reference's hash.
//!
//! Following the ThreatExchange PDQ README's criterion, images whose quality
//! is at least 80 must be within Hamming distance 10 of the reference. The
//! `bridge-mods/` edits must all match `aaa-orig.jpg` (distance ≤ 31, Meta's
//! suggested threshold) and the unrelated `misc/` images must not.

use std::path::{Path, PathBuf};

use photoclaim::imaging::pdq_hash::{pdq_hash, PdqHash};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/pdq");

/// Meta's suggested match threshold.
const MATCH_DISTANCE: u32 = 31;

/// The README's "correct implementation" bound for quality ≥ 80.
const REFERENCE_DISTANCE: u32 = 10;
const REFERENCE_MIN_QUALITY: u8 = 80;

fn parse_hex(hex: &str) -> [u8; 32] {
    assert_eq!(hex.len(), 64, "bad reference hash {hex:?}");
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            .unwrap_or_else(|e| panic!("bad reference hash {hex:?}: {e}"));
    }
    out
}

struct Row {
    file: String,
    reference: PdqHash,
    ours: PdqHash,
}

fn hash_file(path: &Path) -> PdqHash {
    let image = image::ImageReader::open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
        .with_guessed_format()
        .unwrap_or_else(|e| panic!("sniff {}: {e}", path.display()))
        .decode()
        .unwrap_or_else(|e| panic!("decode {}: {e}", path.display()));
    pdq_hash(&image)
}

fn rows() -> Vec<Row> {
    let dir = PathBuf::from(FIXTURES);
    let csv = std::fs::read_to_string(dir.join("expected.csv"))
        .unwrap_or_else(|e| panic!("read {}/expected.csv: {e}", dir.display()));
    let mut rows = Vec::new();
    for line in csv.lines().skip(1) {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (file, hex) = line
            .split_once(',')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        rows.push(Row {
            file: file.to_owned(),
            reference: PdqHash {
                hash: photoclaim::domain::pdq::Pdq(parse_hex(hex.trim())),
                quality: 0,
            },
            ours: hash_file(&dir.join(file)),
        });
    }
    assert!(!rows.is_empty(), "expected.csv has no rows");
    rows
}

#[test]
fn hashes_match_the_reference() {
    let rows = rows();

    println!(
        "{:<32} {:<64} {:>4} {:>7}",
        "file", "our hash", "dist", "quality"
    );
    for row in &rows {
        println!(
            "{:<32} {} {:>4} {:>7}",
            row.file,
            row.ours.to_hex(),
            row.ours.distance(&row.reference),
            row.ours.quality
        );
    }

    let mut failures = Vec::new();
    for row in &rows {
        let distance = row.ours.distance(&row.reference);
        if row.ours.quality >= REFERENCE_MIN_QUALITY && distance > REFERENCE_DISTANCE {
            failures.push(format!(
                "{}: distance {distance} > {REFERENCE_DISTANCE} at quality {}",
                row.file, row.ours.quality
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");

    // The reference's own hashes must relate the same way ours do below.
    let original = rows
        .iter()
        .find(|r| r.file == "bridge-mods/aaa-orig.jpg")
        .expect("aaa-orig.jpg in expected.csv");
    for row in &rows {
        let d = row.reference.distance(&original.reference);
        if row.file.starts_with("bridge-mods/") {
            assert!(d <= MATCH_DISTANCE, "reference {}: {d}", row.file);
        } else if row.file.starts_with("misc/") {
            assert!(d > MATCH_DISTANCE, "reference {}: {d}", row.file);
        }
    }
}

#[test]
fn edits_match_the_original_and_other_images_do_not() {
    let rows = rows();
    let original = rows
        .iter()
        .find(|r| r.file == "bridge-mods/aaa-orig.jpg")
        .expect("aaa-orig.jpg in expected.csv");

    let mut edits = 0;
    let mut others = 0;
    for row in &rows {
        let d = row.ours.distance(&original.ours);
        println!("{:<32} distance to aaa-orig.jpg: {d:>3}", row.file);
        if row.file.starts_with("bridge-mods/") {
            edits += 1;
            assert!(
                d <= MATCH_DISTANCE,
                "{} should match aaa-orig.jpg: distance {d}",
                row.file
            );
        } else if row.file.starts_with("misc/") {
            others += 1;
            assert!(
                d > MATCH_DISTANCE,
                "{} should not match aaa-orig.jpg: distance {d}",
                row.file
            );
        }
    }
    assert!(edits >= 2 && others >= 1, "fixtures missing");
}
