//! Fuzzes the path every uploaded image takes: format sniffing, decoding
//! under limits, the truncation check, EXIF reading, SHA-256 and PDQ. Any
//! input must give facts or an INVALID_ARGUMENT error, never a panic, an
//! abort or an allocation past the decoder limits.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(facts) = photoclaim::imaging::analyze(data, "content") {
        assert_eq!(facts.pdq.len(), 64);
        assert!((0..=100).contains(&facts.pdq_quality));
    }
});
