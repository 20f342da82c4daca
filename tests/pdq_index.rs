//! The PDQ index against the linear scan on the shared fixture hashes.

use photoclaim::domain::pdq::Pdq;
use photoclaim::imaging::pdq_index::PdqIndex;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/pdq/");

fn read_hashes(name: &str) -> Vec<Pdq> {
    let path = format!("{FIXTURES}{name}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| Pdq::from_hex(l).unwrap_or_else(|| panic!("{path}: bad hash {l:?}")))
        .collect()
}

#[test]
fn index_agrees_with_linear_scan_on_fixtures() {
    let haystack = read_hashes("haystack.txt");
    let needles = read_hashes("needles.txt");
    assert!(!haystack.is_empty() && !needles.is_empty());

    // Indexed by bulk build then compaction (the slot tables), and by
    // inserts alone (the unindexed tail): both must agree with the scan.
    let mut built = PdqIndex::from_entries((1..).zip(haystack.iter().copied()));
    built.compact();
    let mut inserted = PdqIndex::new();
    for (id, h) in (1..).zip(&haystack) {
        inserted.insert(id, *h);
    }
    assert_eq!(built.len(), haystack.len());

    let mut matches_at_31 = 0;
    let mut needles_with_match = 0;
    for needle in &needles {
        for radius in [0, 10, 31, 63] {
            let want = built.linear_scan(needle, radius);
            assert_eq!(built.query(needle, radius), want, "{needle} r={radius}");
            assert_eq!(inserted.query(needle, radius), want, "{needle} r={radius}");
            assert!(want
                .windows(2)
                .all(|w| (w[0].1, w[1].0) <= (w[1].1, w[0].0)));
            assert!(want.iter().all(|&(_, d)| d <= radius));
            if radius == 31 {
                matches_at_31 += want.len();
                needles_with_match += usize::from(!want.is_empty());
            }
        }
    }
    // Every haystack hash finds itself.
    for (id, h) in (1..).zip(&haystack) {
        assert!(built.query(h, 0).contains(&(id, 0)));
    }
    println!(
        "{} needles against {} haystack hashes: {matches_at_31} matches at radius 31 \
         ({needles_with_match} needles with at least one)",
        needles.len(),
        haystack.len()
    );
}
