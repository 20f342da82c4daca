//! Fuzzes request validation: the first byte picks one of the request types
//! of ClaimService and AdminService, the rest is decoded as that request
//! and handed to the real handlers over a real sled store. No input may
//! panic, get INTERNAL or UNKNOWN, get an INVALID_ARGUMENT that names no
//! field of the request, or change the store when it fails. The harness is
//! shared with `tests/request_fuzz_smoke.rs`; see `fuzz/harness/requests.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../harness/requests.rs"]
mod harness;

fuzz_target!(|data: &[u8]| {
    harness::run(data);
});
