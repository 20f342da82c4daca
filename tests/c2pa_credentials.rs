//! Content Credentials read from real signed images: JPEGs and PNGs signed
//! in the test with c2pa's Builder, certificates made with rcgen and an
//! in-process time-stamping authority (tests/common/c2pa.rs). Nothing is
//! fetched over the network.
//!
//! Each test checks values the reader must have taken from the image (the
//! state, codes, names, times, actions, ingredients), so a reader that
//! ignored the manifest, or trusted without anchors, fails.

mod common;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::c2pa::{
    base_image, base_jpeg, base_png, sign, tamper, ManifestSpec, SpecIngredient, TestSigner,
    DIGITAL_CAPTURE, TRAINED_ALGORITHMIC_MEDIA,
};
use photoclaim::domain::provenance::{CodeKind, ContentCredentials, CredentialState};
use photoclaim::imaging::credentials::CredentialReader;

/// The longest one read may take here (debug build, 2 cores, hostile input).
const READ_BUDGET: Duration = Duration::from_secs(20);

fn signer() -> &'static TestSigner {
    static SIGNER: OnceLock<TestSigner> = OnceLock::new();
    SIGNER.get_or_init(|| TestSigner::new("Photoclaim Test News"))
}

/// The base picture signed as a camera capture, per format.
fn captured(format: &str) -> &'static [u8] {
    static JPEG: OnceLock<Vec<u8>> = OnceLock::new();
    static PNG: OnceLock<Vec<u8>> = OnceLock::new();
    let cell = match format {
        "jpeg" => &JPEG,
        "png" => &PNG,
        other => panic!("{other}"),
    };
    cell.get_or_init(|| {
        sign(
            &base_image(format),
            format,
            signer(),
            ManifestSpec::captured(&format!("capture.{format}")),
        )
    })
}

fn read(reader: &CredentialReader, bytes: &[u8], format: &str) -> Option<ContentCredentials> {
    let started = Instant::now();
    let credentials = reader.read(bytes, format);
    let took = started.elapsed();
    assert!(took < READ_BUDGET, "one read took {took:?}");
    credentials
}

fn state(credentials: &ContentCredentials) -> CredentialState {
    CredentialState::try_from(credentials.state).unwrap_or(CredentialState::Unspecified)
}

fn codes(credentials: &ContentCredentials, kind: CodeKind) -> Vec<&str> {
    credentials
        .validation_codes
        .iter()
        .filter(|c| c.kind == kind as i32)
        .map(|c| c.code.as_str())
        .collect()
}

fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Invariants of every result: bounds, and codes ordered failures,
/// informational, successes.
fn assert_well_formed(credentials: &ContentCredentials) {
    assert!(credentials.validation_codes.len() <= 100);
    assert!(credentials.actions.len() <= 100);
    assert!(credentials.ingredients.len() <= 100);
    let kinds: Vec<i32> = credentials
        .validation_codes
        .iter()
        .map(|c| c.kind)
        .collect();
    let mut sorted = kinds.clone();
    sorted.sort_by(|a, b| b.cmp(a)); // Failure 3, Informational 2, Success 1
    assert_eq!(kinds, sorted, "codes out of order: {credentials:#?}");
    for c in &credentials.validation_codes {
        assert!(!c.code.is_empty());
        assert!(c.explanation.chars().count() <= 500);
    }
    for text in [
        &credentials.claim_generator,
        &credentials.title,
        &credentials.signer_subject,
        &credentials.signer_issuer,
        &credentials.manifest_label,
        &credentials.remote_manifest_url,
    ] {
        assert!(text.chars().count() <= 500);
    }
}

#[test]
fn images_without_credentials_read_as_none() {
    let reader = CredentialReader::new();
    assert_eq!(read(&reader, &base_jpeg(), "jpeg"), None);
    assert_eq!(read(&reader, &base_png(), "png"), None);
    // With anchors too: no store is no store.
    let trusting = CredentialReader::with_trust_anchors(&signer().ca_pem).unwrap();
    assert_eq!(read(&trusting, &base_jpeg(), "jpeg"), None);
}

#[test]
fn a_signed_image_without_anchors_is_valid_not_trusted() {
    let reader = CredentialReader::new();
    let signer = signer();
    for format in ["jpeg", "png"] {
        let credentials = read(&reader, captured(format), format)
            .unwrap_or_else(|| panic!("{format}: the signed image has credentials"));
        assert_well_formed(&credentials);
        assert_eq!(
            state(&credentials),
            CredentialState::Valid,
            "{format}: {credentials:#?}"
        );
        assert!(
            codes(&credentials, CodeKind::Failure).is_empty(),
            "{credentials:#?}"
        );
        let informational = codes(&credentials, CodeKind::Informational);
        assert!(
            informational.contains(&"signingCredential.untrusted"),
            "{format}: {informational:?}"
        );
        assert!(
            informational.contains(&"signingCredential.ocsp.skipped"),
            "{format}: {informational:?}"
        );
        let successes = codes(&credentials, CodeKind::Success);
        assert!(
            successes.contains(&"claimSignature.validated"),
            "{successes:?}"
        );
        assert!(
            successes
                .iter()
                .any(|c| c.starts_with("assertion.dataHash.match")
                    || c.starts_with("assertion.boxesHash.match")),
            "{format}: the hard binding was checked: {successes:?}"
        );
        assert!(!successes.contains(&"signingCredential.trusted"));

        assert_eq!(credentials.claim_generator, "PhotoclaimTestCam/1.0");
        assert_eq!(credentials.title, format!("capture.{format}"));
        assert!(
            credentials.manifest_label.starts_with("urn:c2pa:"),
            "{}",
            credentials.manifest_label
        );
        assert!(
            credentials
                .signer_subject
                .contains(&format!("CN={}", signer.common_name)),
            "{}",
            credentials.signer_subject
        );
        assert!(
            credentials
                .signer_subject
                .contains(&format!("O={}", signer.org)),
            "{}",
            credentials.signer_subject
        );
        assert!(
            credentials
                .signer_issuer
                .contains(&format!("CN={} Test Root CA", signer.org)),
            "{}",
            credentials.signer_issuer
        );
        let signed_at = credentials
            .signing_time
            .expect("the time-stamped signature has a signing time");
        let now = now_seconds();
        assert!(
            (now - 3_600..=now + 60).contains(&signed_at.seconds),
            "signed at {signed_at:?}, now {now}"
        );
        assert_eq!(credentials.actions.len(), 1, "{:?}", credentials.actions);
        assert_eq!(credentials.actions[0].action, "c2pa.created");
        assert_eq!(credentials.actions[0].digital_source_type, DIGITAL_CAPTURE);
        assert_eq!(credentials.generative_actions().count(), 0);
        assert!(credentials.ingredients.is_empty());
        assert!(credentials.remote_manifest_url.is_empty());
    }
}

#[test]
fn a_signer_chaining_to_a_configured_anchor_is_trusted() {
    let reader = CredentialReader::with_trust_anchors(&signer().ca_pem).unwrap();
    assert!(reader.has_trust_anchors());
    for format in ["jpeg", "png"] {
        let credentials = read(&reader, captured(format), format).unwrap();
        assert_well_formed(&credentials);
        assert_eq!(
            state(&credentials),
            CredentialState::Trusted,
            "{format}: {credentials:#?}"
        );
        assert!(codes(&credentials, CodeKind::Success).contains(&"signingCredential.trusted"));
        assert!(
            !codes(&credentials, CodeKind::Informational).contains(&"signingCredential.untrusted")
        );
        assert!(codes(&credentials, CodeKind::Failure).is_empty());
    }
    // Several anchors in one PEM: the signer's among others.
    let bundle = format!(
        "{}\n{}",
        TestSigner::new("Some Other Agency").ca_pem,
        signer().ca_pem
    );
    let reader = CredentialReader::with_trust_anchors(&bundle).unwrap();
    let credentials = read(&reader, captured("jpeg"), "jpeg").unwrap();
    assert_eq!(state(&credentials), CredentialState::Trusted);
}

#[test]
fn an_unrelated_anchor_leaves_the_image_valid_but_not_trusted() {
    let stranger = TestSigner::new("Unrelated Agency");
    let reader = CredentialReader::with_trust_anchors(&stranger.ca_pem).unwrap();
    let credentials = read(&reader, captured("jpeg"), "jpeg").unwrap();
    assert_well_formed(&credentials);
    assert_eq!(
        state(&credentials),
        CredentialState::Valid,
        "{credentials:#?}"
    );
    assert!(codes(&credentials, CodeKind::Informational).contains(&"signingCredential.untrusted"));
    assert!(!codes(&credentials, CodeKind::Success).contains(&"signingCredential.trusted"));
    assert!(codes(&credentials, CodeKind::Failure).is_empty());
}

#[test]
fn changed_pixels_make_the_credentials_invalid() {
    let trusting = CredentialReader::with_trust_anchors(&signer().ca_pem).unwrap();
    for format in ["jpeg", "png"] {
        let signed = captured(format);
        let tampered = tamper(signed);
        assert_ne!(tampered, signed);
        assert!(image::load_from_memory(&tampered).is_ok());
        for reader in [CredentialReader::new(), trusting.clone()] {
            let credentials = read(&reader, &tampered, format).expect("still has credentials");
            assert_well_formed(&credentials);
            assert_eq!(
                state(&credentials),
                CredentialState::Invalid,
                "{format}: {credentials:#?}"
            );
            let failures = codes(&credentials, CodeKind::Failure);
            assert!(
                failures.contains(&"assertion.dataHash.mismatch"),
                "{format}: {failures:?}"
            );
            // What was signed is still reported, for the desk to see.
            assert_eq!(credentials.title, format!("capture.{format}"));
        }
    }
}

#[test]
fn a_generative_model_source_is_recognised() {
    let bytes = sign(
        &base_jpeg(),
        "jpeg",
        signer(),
        ManifestSpec::generated("generated.jpg"),
    );
    let credentials = read(&CredentialReader::new(), &bytes, "jpeg").unwrap();
    assert_well_formed(&credentials);
    assert_eq!(
        state(&credentials),
        CredentialState::Valid,
        "{credentials:#?}"
    );
    assert_eq!(credentials.generative_actions().count(), 1);
    let action = credentials.generative_actions().next().unwrap();
    assert_eq!(action.action, "c2pa.created");
    assert_eq!(action.digital_source_type, TRAINED_ALGORITHMIC_MEDIA);
    assert_eq!(credentials.editing_actions().count(), 0);
    assert_eq!(credentials.claim_generator, "PhotoclaimTestGenerator/2.5");
}

#[test]
fn an_edit_names_its_parent_ingredient() {
    let original = captured("jpeg").to_vec();
    let bytes = sign(
        &base_png(),
        "png",
        signer(),
        ManifestSpec::edited(
            "edited.png",
            SpecIngredient {
                title: "original.jpg".into(),
                format: "jpeg".into(),
                bytes: original.clone(),
            },
        ),
    );
    let reader = CredentialReader::new();
    let credentials = read(&reader, &bytes, "png").unwrap();
    assert_well_formed(&credentials);
    assert_eq!(
        state(&credentials),
        CredentialState::Valid,
        "{credentials:#?}"
    );
    let actions: Vec<&str> = credentials
        .actions
        .iter()
        .map(|a| a.action.as_str())
        .collect();
    assert!(actions.contains(&"c2pa.opened"), "{actions:?}");
    assert!(actions.contains(&"c2pa.edited"), "{actions:?}");
    assert_eq!(credentials.editing_actions().count(), 1);
    assert_eq!(credentials.generative_actions().count(), 0);
    assert_eq!(credentials.claim_generator, "PhotoclaimTestEditor/3.1");

    assert_eq!(
        credentials.ingredients.len(),
        1,
        "{:#?}",
        credentials.ingredients
    );
    let parent = &credentials.ingredients[0];
    assert_eq!(parent.title, "original.jpg");
    assert_eq!(parent.relationship, "parentOf");
    assert_eq!(parent.format, "image/jpeg");
    // The parent's own manifest is recorded (and is the original's).
    let original_label = read(&reader, &original, "jpeg").unwrap().manifest_label;
    assert!(
        parent
            .hashes
            .contains(&format!("manifest:{original_label}")),
        "{:?} lacks manifest:{original_label}",
        parent.hashes
    );
    assert!(parent.hashes.iter().all(|h| !h.is_empty()));
    assert_eq!(parent.state, CredentialState::Valid as i32, "{parent:#?}");
    assert_ne!(credentials.manifest_label, original_label);
    // With the anchor, the edit and its parent (same signer) are trusted.
    let trusting = CredentialReader::with_trust_anchors(&signer().ca_pem).unwrap();
    let credentials = read(&trusting, &bytes, "png").unwrap();
    assert_eq!(
        state(&credentials),
        CredentialState::Trusted,
        "{credentials:#?}"
    );
    let parent = &credentials.ingredients[0];
    assert_eq!(parent.state, CredentialState::Trusted as i32, "{parent:#?}");
    // An unrelated anchor trusts neither.
    let stranger =
        CredentialReader::with_trust_anchors(&TestSigner::new("Elsewhere").ca_pem).unwrap();
    let credentials = read(&stranger, &bytes, "png").unwrap();
    assert_eq!(
        state(&credentials),
        CredentialState::Valid,
        "{credentials:#?}"
    );
    assert_eq!(
        credentials.ingredients[0].state,
        CredentialState::Valid as i32
    );

    // An ingredient without credentials: identified, no state of its own.
    let bytes = sign(
        &base_jpeg(),
        "jpeg",
        signer(),
        ManifestSpec::edited(
            "edited.jpg",
            SpecIngredient {
                title: "sketch.png".into(),
                format: "png".into(),
                bytes: base_png(),
            },
        ),
    );
    let credentials = read(&reader, &bytes, "jpeg").unwrap();
    assert_eq!(
        state(&credentials),
        CredentialState::Valid,
        "{credentials:#?}"
    );
    let parent = &credentials.ingredients[0];
    assert_eq!(parent.title, "sketch.png");
    assert_eq!(parent.format, "image/png");
    assert!(!parent.hashes.is_empty());
    assert!(parent.hashes.iter().all(|h| !h.starts_with("manifest:")));
    assert_eq!(parent.state, CredentialState::Unspecified as i32);
}

#[test]
fn a_remote_manifest_is_reported_not_fetched() {
    // An address nothing listens on: a fetch attempt would fail or hang,
    // and the result would then not carry the URL as "not fetched".
    let url = "http://127.0.0.1:9/manifests/remote.c2pa";
    for format in ["jpeg", "png"] {
        let mut spec = ManifestSpec::captured("remote");
        spec.remote_url = Some(url.into());
        let bytes = sign(&base_image(format), format, signer(), spec);
        let credentials = read(&CredentialReader::new(), &bytes, format)
            .unwrap_or_else(|| panic!("{format}: the remote reference is reported"));
        assert_well_formed(&credentials);
        assert_eq!(credentials.remote_manifest_url, url);
        assert_eq!(state(&credentials), CredentialState::Invalid);
        assert!(
            codes(&credentials, CodeKind::Informational)
                .contains(&"photoclaim.remoteManifest.notFetched"),
            "{credentials:#?}"
        );
        assert!(credentials.manifest_label.is_empty());
    }
}

/// Where the manifest store sits in a signed JPEG: the APP11 segments'
/// (start of the segment, end of the segment, start of its JUMBF payload).
fn app11_segments(jpeg: &[u8]) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    let mut at = 2;
    while at + 4 <= jpeg.len() && jpeg[at] == 0xff && jpeg[at + 1] != 0xda {
        let length = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
        if jpeg[at + 1] == 0xeb {
            // Marker, length, CI "JP", En, Z; then the box.
            out.push((at, at + 2 + length, at + 4 + 8));
        }
        at += 2 + length;
    }
    out
}

/// The caBX chunk of a signed PNG: (start of the chunk, its data, its end).
fn cabx_chunk(png: &[u8]) -> (usize, usize, usize) {
    let mut at = 8;
    while at + 8 <= png.len() {
        let length = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
        if &png[at + 4..at + 8] == b"caBX" {
            return (at, at + 8, at + 8 + length);
        }
        at += 12 + length;
    }
    panic!("no caBX chunk");
}

/// Where the signature box's label is, after `from`.
fn signature_box(bytes: &[u8], from: usize) -> usize {
    from + bytes[from..]
        .windows(14)
        .position(|w| w == b"c2pa.signature")
        .expect("a signature box")
}

/// A small deterministic generator (xorshift64).
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// For changes outside what the signature covers (an outer box length that
/// c2pa does not rely on): no panic, no hang, and either rejected as above
/// or read exactly as the unchanged image.
fn assert_rejected_or_unchanged(
    reader: &CredentialReader,
    bytes: &[u8],
    unchanged: &[u8],
    format: &str,
    what: &str,
) -> bool {
    let expected = read(reader, unchanged, format).unwrap();
    match read(reader, bytes, format) {
        Some(credentials) if credentials.state != CredentialState::Invalid as i32 => {
            println!("{what}: read as the unchanged image");
            assert_eq!(credentials.state, expected.state, "{what}");
            assert_eq!(
                credentials.manifest_label, expected.manifest_label,
                "{what}"
            );
            assert_eq!(credentials.signing_time, expected.signing_time, "{what}");
            false
        }
        _ => assert_rejected(reader, bytes, format, what),
    }
}

fn assert_rejected(reader: &CredentialReader, bytes: &[u8], format: &str, what: &str) -> bool {
    match read(reader, bytes, format) {
        None => {
            println!("{what}: no credentials");
            false
        }
        Some(credentials) => {
            assert_well_formed(&credentials);
            assert_eq!(
                state(&credentials),
                CredentialState::Invalid,
                "{what}: {credentials:#?}"
            );
            assert!(
                !codes(&credentials, CodeKind::Failure).is_empty()
                    || !credentials.remote_manifest_url.is_empty(),
                "{what}: invalid without a failure code: {credentials:#?}"
            );
            println!(
                "{what}: invalid, {:?}",
                codes(&credentials, CodeKind::Failure)
            );
            true
        }
    }
}

#[test]
fn hostile_manifests_are_invalid_or_absent_and_never_hang_or_panic() {
    let reader = CredentialReader::with_trust_anchors(&signer().ca_pem).unwrap();
    let jpeg = captured("jpeg");
    let segments = app11_segments(jpeg);
    assert!(!segments.is_empty(), "the signed JPEG has APP11 segments");
    let (store_start, store_end) = (segments[0].0, segments.last().unwrap().1);
    let payload = segments[0].2;
    let mut invalid = 0;

    // Cut at points inside the manifest store.
    for i in 0..12 {
        let cut = store_start + 2 + (store_end - store_start - 2) * i / 12;
        invalid +=
            assert_rejected(&reader, &jpeg[..cut], "jpeg", &format!("cut at {cut}")) as usize;
    }

    // Random bytes written over the signed part of the store: the claim and
    // its assertions, which come before the signature box. (The signature
    // box ends in padding that nothing covers, by design of C2PA: bytes
    // changed there leave the manifest valid.) Segment lengths are kept, so
    // the container stays walkable.
    let signature = signature_box(jpeg, store_start);
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    for round in 0..16 {
        let mut bytes = jpeg.to_vec();
        let at = payload + 64 + noise.below(signature - payload - 128);
        if segments
            .iter()
            .any(|&(s, _, p)| (s..p).contains(&at) || (s..p).contains(&(at + 64)))
        {
            continue; // keep APP11 headers intact
        }
        for b in bytes[at..at + 64].iter_mut() {
            *b = noise.next() as u8;
        }
        invalid += assert_rejected(
            &reader,
            &bytes,
            "jpeg",
            &format!("noise round {round} at {at}"),
        ) as usize;
    }

    // Huge declared lengths: the store superbox, then every inner box.
    let mut bytes = jpeg.to_vec();
    bytes[payload..payload + 4].copy_from_slice(&0xffff_fff0u32.to_be_bytes());
    invalid += assert_rejected_or_unchanged(&reader, &bytes, jpeg, "jpeg", "huge superbox length")
        as usize;
    let mut bytes = jpeg.to_vec();
    bytes[payload..payload + 4].copy_from_slice(&1u32.to_be_bytes()); // XLBox follows
    invalid +=
        assert_rejected_or_unchanged(&reader, &bytes, jpeg, "jpeg", "XLBox over the next header")
            as usize;
    let (_, first_end, _) = segments[0];
    let inner: Vec<usize> = (payload + 8..first_end - 4)
        .filter(|&i| &jpeg[i..i + 4] == b"jumb" || &jpeg[i..i + 4] == b"jumd")
        .collect();
    assert!(!inner.is_empty());
    for (n, &at) in inner.iter().enumerate().take(8) {
        let mut bytes = jpeg.to_vec();
        bytes[at - 4..at].copy_from_slice(&0x7fff_ffffu32.to_be_bytes());
        invalid += assert_rejected_or_unchanged(
            &reader,
            &bytes,
            jpeg,
            "jpeg",
            &format!("inner box {n} at {at}"),
        ) as usize;
    }

    // The same in a PNG's caBX chunk, with and without a fixed CRC.
    let png = captured("png");
    let (chunk, data, end) = cabx_chunk(png);
    for i in 1..8 {
        let cut = data + (end - data) * i / 8;
        invalid +=
            assert_rejected(&reader, &png[..cut], "png", &format!("png cut at {cut}")) as usize;
    }
    let signature = signature_box(png, data);
    for round in 0..8 {
        let mut bytes = png.to_vec();
        let at = data + 64 + noise.below(signature - data - 128);
        for b in bytes[at..at + 64].iter_mut() {
            *b = noise.next() as u8;
        }
        invalid += assert_rejected(&reader, &bytes, "png", &format!("png noise {round}")) as usize;
        let crc = common::c2pa::crc32(&bytes[chunk + 4..end]);
        bytes[end..end + 4].copy_from_slice(&crc.to_be_bytes());
        invalid += assert_rejected(
            &reader,
            &bytes,
            "png",
            &format!("png noise {round}, CRC fixed"),
        ) as usize;
    }
    let mut bytes = png.to_vec();
    bytes[data..data + 4].copy_from_slice(&0xffff_fff0u32.to_be_bytes());
    let crc = common::c2pa::crc32(&bytes[chunk + 4..end]);
    bytes[end..end + 4].copy_from_slice(&crc.to_be_bytes());
    invalid += assert_rejected_or_unchanged(&reader, &bytes, png, "png", "png huge superbox length")
        as usize;

    // Most of these damage a store that is still there: they must be
    // reported (not silently dropped).
    println!("{invalid} hostile images reported invalid, the rest absent or unchanged");
    assert!(
        invalid >= 20,
        "only {invalid} hostile images were reported invalid"
    );
}

#[test]
fn cost_per_read() {
    let reader = CredentialReader::new();
    let signed = captured("jpeg");
    let unsigned = base_jpeg();
    let rounds = 200;
    for (name, bytes) in [("a signed", signed), ("an unsigned", &unsigned[..])] {
        let started = Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(reader.read(bytes, "jpeg"));
        }
        let each = started.elapsed() / rounds;
        println!(
            "read of {name} 256x256 JPEG ({} bytes): {each:?} each (debug build)",
            bytes.len()
        );
        assert!(each < Duration::from_secs(1), "{name}: {each:?} a read");
    }
}
