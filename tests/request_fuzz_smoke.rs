//! The request fuzzing harness (`fuzz/harness/requests.rs`, also the body of
//! the cargo-fuzz target `requests`) over a fixed set of inputs, so that
//! `cargo test` checks it on the stable toolchain in seconds:
//!
//! - a well-formed request of every type, then the same with each field in
//!   turn set to an odd value (empty, huge, malformed names, unknown enum
//!   values, out-of-range timestamps and page sizes, control characters and
//!   other unusual Unicode, forged page tokens, broken images);
//! - byte-level mutations of those encodings (flips, insertions, deletions,
//!   truncations) from a fixed seed;
//! - random byte strings from a fixed seed.
//!
//! Every input must satisfy the harness's properties (no panic, never
//! INTERNAL or UNKNOWN, INVALID_ARGUMENT names a field, a failed call
//! changes nothing). With `PHOTOCLAIM_FUZZ_SEEDS=DIR` the field variations
//! are also written to DIR, one file each: a seed corpus for
//! `cargo +nightly fuzz run requests DIR`.

#[path = "../fuzz/harness/requests.rs"]
mod harness;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, Once};

use harness::{input, Kind};
use photoclaim::pb;
use prost::Message;
use prost_types::Timestamp;

/// Random byte strings tried.
const RANDOM_INPUTS: usize = 3_000;
/// Byte-level mutations tried per well-formed request.
const MUTATIONS_PER_REQUEST: usize = 60;

/// The harness's store is shared: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Set by the panic hook when any thread panics (a task the handlers spawn
/// could panic without the call failing).
static PANICKED: AtomicBool = AtomicBool::new(false);

fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICKED.store(true, Ordering::SeqCst);
            previous(info);
        }));
    });
}

/// Tests of this file that have finished: the last one removes the store's
/// directory (a later run removes it too, if a test failed).
static FINISHED: AtomicUsize = AtomicUsize::new(0);
const TESTS: usize = 2;

fn finish() {
    if FINISHED.fetch_add(1, Ordering::SeqCst) + 1 == TESTS {
        let _ = std::fs::remove_dir_all(harness::harness().dir());
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs every input; returns how often each (kind, code) came up.
fn run_all(inputs: &[Vec<u8>]) -> BTreeMap<(Kind, String), usize> {
    install_panic_hook();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut outcomes = BTreeMap::new();
    for data in inputs {
        PANICKED.store(false, Ordering::SeqCst);
        let outcome = std::panic::catch_unwind(|| harness::run(data));
        let outcome = match outcome {
            Ok(outcome) if !PANICKED.load(Ordering::SeqCst) => outcome,
            _ => panic!(
                "input {} failed (see the panic above); to reproduce: \
                 echo HEX | xxd -r -p > crash && cargo +nightly fuzz run requests crash",
                hex(data)
            ),
        };
        if let Some(outcome) = outcome {
            let code = outcome
                .code
                .map_or_else(|| "undecodable".to_string(), |c| format!("{c:?}"));
            *outcomes.entry((outcome.kind, code)).or_insert(0) += 1;
        }
    }
    outcomes
}

fn print(title: &str, outcomes: &BTreeMap<(Kind, String), usize>) {
    eprintln!("{title}:");
    for ((kind, code), n) in outcomes {
        eprintln!("  {:<24} {code:<20} {n:>5}", format!("{kind:?}"));
    }
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Odd values for any string field.
fn odd_strings() -> Vec<String> {
    vec![
        String::new(),
        " ".into(),
        "\t\n".into(),
        "x".repeat(129),
        "x".repeat(501),
        "y".repeat(2_049),
        "z".repeat(10_001),
        "w".repeat(50_001),
        "\u{0}".into(),
        "nul\u{0}inside".into(),
        "bell\u{7}".into(),
        "esc\u{1b}[31mred".into(),
        "del\u{7f}".into(),
        "c1\u{85}\u{9b}".into(),
        "rtl\u{202e}txt.gpj".into(),
        "\u{feff}bom".into(),
        "zero\u{200b}width".into(),
        "\u{fffd}\u{fffd}".into(),
        "e\u{301}\u{301}\u{301}".into(),
        "\u{10ffff}".into(),
        "🧪📷".into(),
        "Казахстан".into(),
        "%00%ff".into(),
        "../../etc/passwd".into(),
        "\\x00".into(),
        "'; DROP TABLE claims; --".into(),
        "claims/1".into(),
        "https://example.org/".into(),
    ]
}

/// Odd values for a resource-name field, plus the odd strings.
fn odd_names() -> Vec<String> {
    let mut names: Vec<String> = [
        "claims/1",
        "claims/2",
        "claims/3",
        "claims/999999",
        "claims/18446744073709551615",
        "claims/18446744073709551616",
        "claims/99999999999999999999",
        "claims/0",
        "claims/01",
        "claims/-1",
        "claims/+1",
        "claims/1/",
        "claims//1",
        "/claims/1",
        "CLAIMS/1",
        "claim/1",
        "claims/",
        "claims",
        "claims/1 ",
        "claims/1\u{0}",
        "claims/１",
        "claims/1/officialResponses/1",
        "claims/1/officialResponses/2",
        "claims/1/officialResponses/3",
        "claims/1/officialResponses/0",
        "claims/1/officialResponses/",
        "claims/2/officialResponses/1",
        "claims/1/officialResponses/1/x",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    names.extend(odd_strings());
    names
}

/// Odd values for an enum field.
fn odd_enums() -> Vec<i32> {
    vec![-1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 99, i32::MIN, i32::MAX]
}

/// Odd values for a page size or distance.
fn odd_sizes() -> Vec<i32> {
    vec![-1, 0, 1, 2, 64, 65, 1_000, 1_001, i32::MAX, i32::MIN]
}

/// Odd timestamps: before year 1, after 9999, far future, bad nanos.
fn odd_times() -> Vec<Option<Timestamp>> {
    let t = |seconds, nanos| Some(Timestamp { seconds, nanos });
    vec![
        None,
        t(0, 0),
        t(1_641_600_000, 0),
        t(-62_135_596_800, 0),
        t(-62_135_596_801, 0),
        t(253_402_300_799, 999_999_999),
        t(253_402_300_800, 0),
        t(4_000_000_000, 0),
        t(i64::MIN, 0),
        t(i64::MAX, 0),
        t(0, -1),
        t(0, 1_000_000_000),
        t(0, i32::MIN),
        t(0, i32::MAX),
    ]
}

/// Page tokens: garbage, and tokens in the layout of the first format
/// (hex, unsigned) for every listing, which the signed tokens of today must
/// refuse like any other forgery.
fn odd_tokens() -> Vec<String> {
    let token = |listing: u8, scope: u64, cursor: u64| {
        let mut bytes = vec![1, listing];
        bytes.extend_from_slice(&scope.to_be_bytes());
        bytes.extend_from_slice(&cursor.to_be_bytes());
        hex(&bytes)
    };
    let mut tokens = vec![
        token(1, 0, 1),
        token(1, 0, u64::MAX),
        token(2, 1, 1),
        token(2, 1, 0),
        token(3, 1, 1),
        token(3, 1, u64::MAX),
        token(3, 2, 1),
        token(9, 1, 1),
        "0".repeat(36),
        "zz".repeat(18),
        format!("{}é", "0".repeat(34)),
        "é".repeat(18),
        format!("{}\u{0}", "0".repeat(35)),
    ];
    tokens.extend(odd_strings());
    tokens
}

/// Image bytes: a real PNG, broken ones, and one over the harness's limit.
fn odd_images() -> Vec<Vec<u8>> {
    let png = {
        let image = image::RgbImage::from_fn(32, 24, |x, y| {
            image::Rgb([(x * 7) as u8, (y * 11) as u8, ((x * y) % 251) as u8])
        });
        let mut out = std::io::Cursor::new(Vec::new());
        image
            .write_to(&mut out, image::ImageFormat::Png)
            .expect("encode a PNG");
        out.into_inner()
    };
    let mut corrupt = png.clone();
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 0xff;
    vec![
        png.clone(),
        png[..png.len() / 2].to_vec(),
        corrupt,
        b"\x89PNG\r\n\x1a\n".to_vec(),
        b"\xff\xd8\xff\xe0\x00\x10JFIF\x00".to_vec(),
        b"\xff\xd8\xff\xe1\xff\xffExif\x00\x00MM\x00*".to_vec(),
        b"GIF89a\xff\xff\xff\xff".to_vec(),
        b"RIFF\xff\xff\xff\xffWEBPVP8 ".to_vec(),
        b"not an image".to_vec(),
        vec![0; (1 << 20) + 1],
    ]
}

fn valid_claim() -> pb::Claim {
    pb::Claim {
        claim_text: "Photos show peacekeepers".into(),
        claimant: "social media posts".into(),
        language: "en".into(),
        appearance_urls: vec!["https://example.org/post/2".into()],
        first_seen_time: Some(Timestamp {
            seconds: 1_641_600_000,
            nanos: 0,
        }),
        tags: vec!["smoke".into()],
        image: Some(pb::Image {
            source_url: "https://example.org/photo.jpg".into(),
            sha256: format!("{:064x}", 7),
            credit: "AP Photo".into(),
            publisher: "Associated Press".into(),
            location: "Almaty".into(),
            caption: "A caption".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn valid_response() -> pb::OfficialResponse {
    pb::OfficialResponse {
        responder: Some(pb::Responder {
            organization: "United Nations".into(),
            person: "A spokesperson".into(),
            role: pb::ResponderRole::InternationalOrganization as i32,
        }),
        kind: pb::ResponseKind::Statement as i32,
        stance: pb::Stance::Refutes as i32,
        text: "No mission was authorized.".into(),
        language: "en".into(),
        source_url: "https://example.org/statement".into(),
        issue_time: Some(Timestamp {
            seconds: 1_641_700_000,
            nanos: 0,
        }),
        ..Default::default()
    }
}

/// Collects inputs: the request, then one copy per value of `values` with
/// `set` applied.
struct Inputs(Vec<Vec<u8>>);

impl Inputs {
    fn vary<R: Message + Clone, V: Clone>(
        &mut self,
        kind: Kind,
        base: &R,
        values: &[V],
        set: impl Fn(&mut R, V),
    ) {
        for value in values {
            let mut request = base.clone();
            set(&mut request, value.clone());
            self.0.push(input(kind, &request));
        }
    }
}

/// A well-formed request of every kind (the first input of each kind) and
/// its field-by-field variations.
fn field_mutations() -> Vec<Vec<u8>> {
    let mut inputs = Inputs(Vec::new());
    let strings = odd_strings();
    let names = odd_names();
    let enums = odd_enums();
    let sizes = odd_sizes();
    let times = odd_times();
    let tokens = odd_tokens();

    // RegisterClaim.
    let base = pb::RegisterClaimRequest {
        request_id: String::new(),
        claim: Some(valid_claim()),
        ..Default::default()
    };
    let k = Kind::RegisterClaim;
    inputs.vary(k, &base, &[()], |_, ()| {});
    inputs.vary(k, &base, &strings, |r, v| r.request_id = v);
    inputs.vary(k, &base, &[None], |r, v| r.claim = v);
    type C = pb::Claim;
    let claim_text: [fn(&mut C, String); 4] = [
        |c, v| c.claim_text = v,
        |c, v| c.claimant = v,
        |c, v| c.language = v,
        |c, v| c.name = v, // output only: ignored
    ];
    for set in claim_text {
        inputs.vary(k, &base, &strings, |r, v| set(r.claim.as_mut().unwrap(), v));
    }
    for lang in ["und", "x", "en-", "pt-BR", "zh-Hant-TW", "en-x-a", "de-u-"] {
        inputs.vary(k, &base, &[lang.to_string()], |r, v| {
            r.claim.as_mut().unwrap().language = v
        });
    }
    inputs.vary(k, &base, &strings, |r, v| {
        r.claim.as_mut().unwrap().appearance_urls = vec![v]
    });
    inputs.vary(k, &base, &strings, |r, v| {
        r.claim.as_mut().unwrap().tags = vec![v]
    });
    inputs.vary(k, &base, &[51usize, 1_000], |r, n| {
        let claim = r.claim.as_mut().unwrap();
        claim.tags = (0..n).map(|i| format!("t{i}")).collect();
        claim.appearance_urls = (0..n).map(|i| format!("https://e.org/{i}")).collect();
    });
    inputs.vary(k, &base, &times, |r, v| {
        r.claim.as_mut().unwrap().first_seen_time = v
    });
    type I = pb::Image;
    let image_text: [fn(&mut I, String); 8] = [
        |i, v| i.source_url = v,
        |i, v| i.sha256 = v,
        |i, v| i.credit = v,
        |i, v| i.publisher = v,
        |i, v| i.location = v,
        |i, v| i.caption = v,
        |i, v| i.pdq = v,
        |i, v| i.format = v,
    ];
    fn image(r: &mut pb::RegisterClaimRequest) -> &mut pb::Image {
        r.claim.as_mut().unwrap().image.as_mut().unwrap()
    }
    for set in image_text {
        inputs.vary(k, &base, &strings, |r, v| set(image(r), v));
    }
    let urls: Vec<String> = [
        "ftp://example.org/x",
        "https://user:pw@example.org/",
        "https://[::1]/",
        "https://[",
        "https://a..b/",
        "https://example.org:99999/",
        "HTTPS://EXAMPLE.ORG",
        "https://пример.рф/фото",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    inputs.vary(k, &base, &urls, |r, v| image(r).source_url = v);
    let hashes: Vec<String> = vec![
        format!("{:064x}", 8),
        format!("{:064X}", 0xabc),
        "0".repeat(64),
        "g".repeat(64),
        "0".repeat(63),
        "é".repeat(32),
    ];
    inputs.vary(k, &base, &hashes, |r, v| image(r).sha256 = v);
    inputs.vary(k, &base, &hashes, |r, v| image(r).pdq = v);
    inputs.vary(k, &base, &[-1, 0, 49, 50, 100, 101, i32::MAX], |r, v| {
        let image = image(r);
        image.pdq = format!("{:064x}", 0x5555);
        image.pdq_quality = v;
    });
    inputs.vary(k, &base, &times, |r, v| image(r).published_time = v);
    inputs.vary(k, &base, &times, |r, v| image(r).captured_time = v);
    inputs.vary(k, &base, &odd_images(), |r, v| {
        let image = image(r);
        image.sha256.clear();
        image.content = v;
    });
    inputs.vary(k, &base, &odd_images(), |r, v| image(r).content = v);
    inputs.vary(k, &base, &[pb::Image::default()], |r, v| {
        r.claim.as_mut().unwrap().image = Some(v)
    });

    // AttachOfficialResponse.
    let base = pb::AttachOfficialResponseRequest {
        parent: "claims/2".into(),
        request_id: String::new(),
        official_response: Some(valid_response()),
    };
    let k = Kind::AttachOfficialResponse;
    inputs.vary(k, &base, &[()], |_, ()| {});
    inputs.vary(k, &base, &names, |r, v| r.parent = v);
    inputs.vary(k, &base, &strings, |r, v| r.request_id = v);
    inputs.vary(k, &base, &[None], |r, v| r.official_response = v);
    fn response(r: &mut pb::AttachOfficialResponseRequest) -> &mut pb::OfficialResponse {
        r.official_response.as_mut().unwrap()
    }
    type R = pb::OfficialResponse;
    let response_text: [fn(&mut R, String); 5] = [
        |o, v| o.text = v,
        |o, v| o.language = v,
        |o, v| o.source_url = v,
        |o, v| o.name = v,
        |o, v| o.attached_by = v,
    ];
    for set in response_text {
        inputs.vary(k, &base, &strings, |r, v| set(response(r), v));
    }
    inputs.vary(k, &base, &names, |r, v| response(r).in_reply_to = v);
    inputs.vary(k, &base, &strings, |r, v| {
        response(r).responder.as_mut().unwrap().organization = v
    });
    inputs.vary(k, &base, &strings, |r, v| {
        response(r).responder.as_mut().unwrap().person = v
    });
    inputs.vary(k, &base, &enums, |r, v| {
        response(r).responder.as_mut().unwrap().role = v
    });
    inputs.vary(k, &base, &[None], |r, v| response(r).responder = v);
    inputs.vary(k, &base, &enums, |r, v| response(r).kind = v);
    inputs.vary(k, &base, &enums, |r, v| response(r).stance = v);
    inputs.vary(k, &base, &times, |r, v| response(r).issue_time = v);
    inputs.vary(k, &base, &times, |r, v| response(r).create_time = v);

    // SetVerdict.
    let base = pb::SetVerdictRequest {
        claim: "claims/2".into(),
        claim_rating: pb::ClaimRating::Misleading as i32,
        media_authenticity: pb::MediaAuthenticity::Original as i32,
        rationale: "Because.".into(),
        etag: String::new(),
    };
    let k = Kind::SetVerdict;
    inputs.vary(k, &base, &[()], |_, ()| {});
    inputs.vary(k, &base, &names, |r, v| r.claim = v);
    inputs.vary(k, &base, &enums, |r, v| r.claim_rating = v);
    inputs.vary(k, &base, &enums, |r, v| r.media_authenticity = v);
    inputs.vary(k, &base, &strings, |r, v| r.rationale = v);
    inputs.vary(k, &base, &strings, |r, v| r.etag = v);
    inputs.vary(k, &base, &["2-1".to_string(), "1-5".into()], |r, v| {
        r.etag = v
    });

    // Reads of one claim.
    let k = Kind::GetClaim;
    let base = pb::GetClaimRequest {
        name: "claims/1".into(),
    };
    inputs.vary(k, &base, &[()], |_, ()| {});
    inputs.vary(k, &base, &names, |r, v| r.name = v);
    let k = Kind::GetVerificationStatus;
    let base = pb::GetVerificationStatusRequest {
        claim: "claims/1".into(),
        ..Default::default()
    };
    inputs.vary(k, &base, &[()], |_, ()| {});
    inputs.vary(k, &base, &names, |r, v| r.claim = v);
    let k = Kind::ExportClaimReview;
    let base = pb::ExportClaimReviewRequest {
        claim: "claims/1".into(),
        ..Default::default()
    };
    inputs.vary(k, &base, &[()], |_, ()| {});
    inputs.vary(k, &base, &names, |r, v| r.claim = v);
    inputs.vary(k, &base, &[true], |r, v| r.force = v);
    let k = Kind::CheckVerdict;
    let base = pb::CheckVerdictRequest {
        claim: "claims/1".into(),
        claim_rating: pb::ClaimRating::Misleading as i32,
        media_authenticity: pb::MediaAuthenticity::Original as i32,
        rationale: "Because.".into(),
    };
    inputs.vary(k, &base, &[()], |_, ()| {});
    inputs.vary(k, &base, &names, |r, v| r.claim = v);
    inputs.vary(k, &base, &enums, |r, v| r.claim_rating = v);
    inputs.vary(k, &base, &enums, |r, v| r.media_authenticity = v);
    inputs.vary(k, &base, &strings, |r, v| r.rationale = v);

    // Listings.
    let k = Kind::ListClaims;
    let base = pb::ListClaimsRequest::default();
    inputs.vary(k, &base, &[()], |_, ()| {});
    inputs.vary(k, &base, &sizes, |r, v| r.page_size = v);
    inputs.vary(k, &base, &tokens, |r, v| r.page_token = v);
    inputs.vary(k, &base, &enums, |r, v| r.state = v);
    let k = Kind::ListOfficialResponses;
    let base = pb::ListOfficialResponsesRequest {
        parent: "claims/1".into(),
        page_size: 1,
        page_token: String::new(),
    };
    inputs.vary(k, &base, &[()], |_, ()| {});
    inputs.vary(k, &base, &names, |r, v| r.parent = v);
    inputs.vary(k, &base, &sizes, |r, v| r.page_size = v);
    inputs.vary(k, &base, &tokens, |r, v| r.page_token = v);
    let k = Kind::ListClaimEvents;
    let base = pb::ListClaimEventsRequest {
        claim: "claims/1".into(),
        page_size: 1,
        page_token: String::new(),
    };
    inputs.vary(k, &base, &[()], |_, ()| {});
    inputs.vary(k, &base, &names, |r, v| r.claim = v);
    inputs.vary(k, &base, &sizes, |r, v| r.page_size = v);
    inputs.vary(k, &base, &tokens, |r, v| r.page_token = v);

    // FindSimilarClaims.
    let k = Kind::FindSimilarClaims;
    let base = pb::FindSimilarClaimsRequest {
        sha256: format!("{:064x}", 7),
        ..Default::default()
    };
    inputs.vary(k, &base, &[()], |_, ()| {});
    inputs.vary(k, &base, &strings, |r, v| r.sha256 = v);
    inputs.vary(k, &base, &hashes, |r, v| r.sha256 = v);
    inputs.vary(k, &base, &hashes, |r, v| {
        r.sha256.clear();
        r.pdq = v;
    });
    inputs.vary(k, &base, &strings, |r, v| {
        r.sha256.clear();
        r.pdq = v;
    });
    inputs.vary(k, &base, &odd_images(), |r, v| {
        r.sha256.clear();
        r.content = v;
    });
    inputs.vary(k, &base, &odd_images(), |r, v| r.content = v);
    inputs.vary(k, &base, &sizes, |r, v| r.max_distance = Some(v));
    inputs.vary(k, &base, &sizes, |r, v| r.page_size = v);
    inputs.vary(k, &base, &[true], |r, v| {
        r.sha256.clear();
        r.pdq = "0".repeat(64);
        r.include_low_quality = v;
    });
    inputs.vary(
        k,
        &base,
        &[pb::FindSimilarClaimsRequest::default()],
        |r, v| *r = v,
    );

    // WatchClaimEvents.
    let k = Kind::WatchClaimEvents;
    let base = pb::WatchClaimEventsRequest {
        claim: "claims/1".into(),
        ..Default::default()
    };
    inputs.vary(k, &base, &[()], |_, ()| {});
    inputs.vary(k, &base, &names, |r, v| r.claim = v);
    inputs.vary(k, &base, &enums, |r, v| r.event_types = vec![v]);
    inputs.vary(k, &base, &[true], |r, v| r.start_at_end = v);
    let cursors: Vec<String> = [
        "0",
        "1",
        "3",
        "-1",
        "18446744073709551615",
        "1e3",
        " 1",
        "+1",
    ]
    .into_iter()
    .map(String::from)
    .chain(strings.iter().cloned())
    .collect();
    inputs.vary(k, &base, &cursors, |r, v| r.after_cursor = v);
    inputs.vary(k, &base, &cursors, |r, v| {
        r.after_cursor = v;
        r.start_at_end = true;
    });

    // AdminService.
    let k = Kind::CreateApiKey;
    let base = pb::CreateApiKeyRequest {
        name: "smoke-key".into(),
        role: pb::Role::Desk as i32,
    };
    inputs.vary(k, &base, &[()], |_, ()| {});
    inputs.vary(k, &base, &strings, |r, v| r.name = v);
    let key_names: Vec<String> = [
        "fuzz-seed",
        "FUZZ-SEED",
        "anonymous",
        "CLI",
        "-dash",
        ".dot",
        "a",
        "k.e_y-1",
    ]
    .into_iter()
    .map(String::from)
    .chain(std::iter::once("k".repeat(65)))
    .collect();
    inputs.vary(k, &base, &key_names, |r, v| r.name = v);
    inputs.vary(k, &base, &enums, |r, v| {
        r.name = format!("smoke-role-{v}");
        r.role = v;
    });
    let k = Kind::RevokeApiKey;
    let base = pb::RevokeApiKeyRequest {
        name: "smoke-key".into(),
    };
    inputs.vary(k, &base, &[()], |_, ()| {});
    inputs.vary(k, &base, &strings, |r, v| r.name = v);
    inputs.vary(k, &base, &key_names, |r, v| r.name = v);
    inputs
        .0
        .push(input(Kind::ListApiKeys, &pb::ListApiKeysRequest {}));
    inputs
        .0
        .push(input(Kind::ExportClaims, &pb::ExportClaimsRequest {}));
    inputs.0.push(input(Kind::Backup, &pb::BackupRequest {}));
    inputs.0
}

#[test]
fn well_formed_requests_with_each_field_made_odd() {
    let inputs = field_mutations();
    // A seed corpus for the fuzz target:
    // PHOTOCLAIM_FUZZ_SEEDS=DIR cargo test --test request_fuzz_smoke
    if let Some(dir) = std::env::var_os("PHOTOCLAIM_FUZZ_SEEDS") {
        std::fs::create_dir_all(&dir).expect("create the seed directory");
        for (i, data) in inputs.iter().enumerate() {
            let path = std::path::Path::new(&dir).join(format!("seed-{i:04}"));
            std::fs::write(path, data).expect("write a seed");
        }
    }
    let started = std::time::Instant::now();
    let outcomes = run_all(&inputs);
    print(
        &format!(
            "{} field variations in {:?}",
            inputs.len(),
            started.elapsed()
        ),
        &outcomes,
    );
    // The well-formed requests are accepted, and every kind with fields
    // refuses some of its variations: the inputs reach the handlers.
    for kind in Kind::ALL {
        let count = |code: &str| outcomes.get(&(kind, code.to_string())).copied();
        assert!(count("Ok").is_some(), "no {kind:?} request succeeded");
        if !kind.fields().is_empty() {
            assert!(
                count("InvalidArgument").is_some(),
                "no {kind:?} request was refused as invalid"
            );
        }
    }
    finish();
}

#[test]
fn mutated_and_random_bytes() {
    let mut rng = Rng(0x5eed_cafe_f00d_d00d);
    let seeds = field_mutations();
    let mut inputs = Vec::new();
    // Byte-level mutations of every 7th field variation.
    for seed in seeds.iter().step_by(7) {
        for _ in 0..MUTATIONS_PER_REQUEST / 6 {
            let mut data = seed.clone();
            for _ in 0..1 + rng.below(4) {
                if data.len() < 2 {
                    break;
                }
                let at = 1 + rng.below(data.len() - 1);
                match rng.below(5) {
                    0 => data[at] ^= 1 << rng.below(8),
                    1 => data[at] = rng.next() as u8,
                    2 => data.insert(at, rng.next() as u8),
                    3 => {
                        data.remove(at);
                    }
                    _ => data.truncate(at),
                }
            }
            inputs.push(data);
        }
    }
    for _ in 0..RANDOM_INPUTS {
        let len = rng.below(64);
        inputs.push(rng.bytes(len));
    }
    let started = std::time::Instant::now();
    let outcomes = run_all(&inputs);
    print(
        &format!(
            "{} mutated and random inputs in {:?}",
            inputs.len(),
            started.elapsed()
        ),
        &outcomes,
    );
    finish();
}
