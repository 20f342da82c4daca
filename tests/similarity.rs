//! Image bytes in, PDQ fingerprints and near-duplicate search, through the
//! real gRPC API: the bridge edits find the original's claim, unrelated
//! images find nothing, hostile images are refused and change nothing.

mod common;

use common::*;
use photoclaim::pb;
use photoclaim::server::Options;
use tonic::Code;

fn by_content(content: Vec<u8>) -> pb::FindSimilarClaimsRequest {
    pb::FindSimilarClaimsRequest {
        content,
        ..Default::default()
    }
}

const EDITS: [&str; 11] = [
    "blur-a-little.jpg",
    "blur-a-lot.jpg",
    "high-contrast.jpg",
    "high-saturation.jpg",
    "sharpen-a-little.jpg",
    "sharpen-a-lot.jpg",
    "shrink-a-little.jpg",
    "shrink-a-lot.jpg",
    "square-128x128.jpg",
    "square-256x256.jpg",
    "square-512x512.jpg",
];

#[tokio::test]
async fn edits_of_a_checked_photo_find_its_claim_and_unrelated_images_find_nothing() {
    let server = InProcess::in_memory().await;
    let mut client = server.client.clone();
    let original = register(
        &mut client,
        claim_with_content("the bridge", pdq_fixture("bridge-mods/aaa-orig.jpg")),
        "",
    )
    .await
    .claim
    .unwrap();
    let image = original.image.clone().unwrap();
    assert!(image.content.is_empty(), "bytes are not echoed back");
    assert_eq!(image.format, "jpeg");
    assert!(image.width > 0 && image.height > 0);
    assert_eq!(image.sha256.len(), 64);
    assert_eq!(image.pdq.len(), 64);
    assert!(image.pdq_quality >= 50, "quality {}", image.pdq_quality);
    // The desk rates it; later matches carry the verdict.
    rate_false(&mut client, &original.name, "old photo, new caption").await;

    for edit in EDITS {
        let reply = find_similar(
            &mut client,
            by_content(pdq_fixture(&format!("bridge-mods/{edit}"))),
        )
        .await;
        let hit = reply
            .matches
            .iter()
            .find(|m| m.claim.as_ref().unwrap().name == original.name)
            .unwrap_or_else(|| panic!("{edit} did not find the original: {reply:?}"));
        println!("{edit}: distance {}", hit.distance);
        assert!(hit.distance <= 31 && !hit.exact, "{edit}: {hit:?}");
        let status = hit
            .claim
            .as_ref()
            .unwrap()
            .verification_status
            .as_ref()
            .unwrap();
        assert_eq!(status.claim_rating, pb::ClaimRating::False as i32);
    }
    for unrelated in ["misc/c.png", "misc/small.jpg", "misc/wee.jpg"] {
        let reply = find_similar(
            &mut client,
            pb::FindSimilarClaimsRequest {
                content: pdq_fixture(unrelated),
                include_low_quality: true,
                ..Default::default()
            },
        )
        .await;
        assert!(
            reply.matches.is_empty(),
            "{unrelated} matched {:?}",
            reply.matches
        );
    }

    // The exact image by SHA-256 and by its hash.
    let reply = find_similar(
        &mut client,
        pb::FindSimilarClaimsRequest {
            sha256: image.sha256.clone(),
            ..Default::default()
        },
    )
    .await;
    assert!(
        reply.matches[0].exact && reply.matches[0].distance == 0,
        "{reply:?}"
    );
    let reply = find_similar(
        &mut client,
        pb::FindSimilarClaimsRequest {
            pdq: image.pdq.to_uppercase(),
            max_distance: Some(0),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(reply.matches.len(), 1);
    assert_eq!(reply.matches[0].claim.as_ref().unwrap().name, original.name);

    // Registering an edit reports the original as a near duplicate, rated.
    let edit = register(
        &mut client,
        claim_with_content(
            "the bridge again",
            pdq_fixture("bridge-mods/blur-a-lot.jpg"),
        ),
        "",
    )
    .await;
    let near = &edit.same_image_claims;
    assert_eq!(near.len(), 1, "{near:?}");
    assert!(!near[0].exact && near[0].distance <= 31);
    assert_eq!(near[0].claim.as_ref().unwrap().name, original.name);
    assert_eq!(
        near[0]
            .claim
            .as_ref()
            .unwrap()
            .verification_status
            .as_ref()
            .unwrap()
            .state,
        pb::VerificationState::Resolved as i32
    );

    // A caller that cannot send bytes sends the hash instead.
    let mut by_hash = sample_claim("hash only");
    by_hash.image = Some(pb::Image {
        pdq: image.pdq.clone(),
        ..Default::default()
    });
    let reply = register(&mut client, by_hash, "").await;
    assert_eq!(
        reply.same_image_claims.len(),
        2,
        "{:?}",
        reply.same_image_claims
    );
    assert_eq!(reply.same_image_claims[0].distance, 0);
    server.stop().await;
}

/// A match carries the claim as it is now: each change to it (a response,
/// a verdict) shows in the next search, exactly as `GetClaim` returns it,
/// though the server keeps each claim's encoding between searches.
#[tokio::test]
async fn a_match_is_the_claim_as_get_claim_returns_it_after_every_change() {
    let server = InProcess::in_memory().await;
    let mut client = server.client.clone();
    let pdq = "f0".repeat(32);
    let mut draft = sample_claim("soldiers in blue helmets");
    draft.image.as_mut().unwrap().pdq = pdq.clone();
    draft.image.as_mut().unwrap().pdq_quality = 90;
    let name = register(&mut client, draft, "").await.claim.unwrap().name;
    let search = pb::FindSimilarClaimsRequest {
        pdq: pdq.clone(),
        ..Default::default()
    };
    let mut etags = Vec::new();
    for step in 0..4 {
        match step {
            1 => {
                attach(&mut client, &name, sample_response(pb::Stance::Refutes), "").await;
            }
            2 => rate_false(&mut client, &name, "KAZBAT, not the UN").await,
            _ => {}
        }
        // Twice: the second reply comes from the kept encoding.
        for _ in 0..2 {
            let reply = find_similar(&mut client, search.clone()).await;
            assert_eq!(reply.matches.len(), 1, "step {step}: {reply:?}");
            let now = client
                .get_claim(pb::GetClaimRequest { name: name.clone() })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(reply.matches[0].claim.as_ref(), Some(&now), "step {step}");
            assert_eq!(reply.matches[0].distance, 0);
            etags.push(now.etag);
        }
    }
    let changes = |e: &[String]| e.windows(2).filter(|w| w[0] != w[1]).count();
    assert_eq!(changes(&etags), 2, "two changes, two new etags: {etags:?}");
    let last = find_similar(&mut client, search)
        .await
        .matches
        .remove(0)
        .claim
        .unwrap();
    let last = last.verification_status.unwrap();
    assert_eq!(
        (
            last.official_response_count,
            last.refuting_count,
            last.claim_rating
        ),
        (1, 1, pb::ClaimRating::False as i32)
    );
}

#[tokio::test]
async fn hostile_and_wrong_images_are_refused_and_change_nothing() {
    let server = InProcess::in_memory_with(Options {
        images: photoclaim::api::ImageOptions {
            max_image_bytes: 2 * 1024 * 1024,
            default_max_distance: 31,
        },
        ..Options::default()
    })
    .await;
    let mut client = server.client.clone();
    let jpeg = pdq_fixture("bridge-mods/aaa-orig.jpg");
    let mut bomb = png_declaring(50_000, 50_000);
    let mut wrong_sha = claim_with_content("wrong sha", jpeg.clone());
    wrong_sha.image.as_mut().unwrap().sha256 = "0".repeat(64);
    let cases: Vec<(&str, pb::Claim, &str)> = vec![
        (
            "non-image bytes",
            claim_with_content("x", b"definitely not an image".to_vec()),
            "claim.image.content",
        ),
        (
            "truncated JPEG",
            claim_with_content("x", jpeg[..jpeg.len() / 3].to_vec()),
            "claim.image.content",
        ),
        (
            "decompression bomb",
            claim_with_content("x", std::mem::take(&mut bomb)),
            "claim.image.content",
        ),
        (
            "too large",
            claim_with_content("x", vec![0xff; 2 * 1024 * 1024 + 1]),
            "claim.image.content",
        ),
        (
            "absurd EXIF",
            claim_with_content("x", jpeg_with_absurd_exif()),
            "claim.image.content",
        ),
        ("supplied sha256 differs", wrong_sha, "claim.image.sha256"),
        (
            "malformed pdq",
            {
                let mut c = sample_claim("x");
                c.image.as_mut().unwrap().pdq = "xyz".into();
                c
            },
            "claim.image.pdq",
        ),
    ];
    for (what, claim, field) in cases {
        let err = client
            .register_claim(pb::RegisterClaimRequest {
                request_id: String::new(),
                claim: Some(claim),
                ..Default::default()
            })
            .await
            .expect_err(what);
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
        assert!(err.message().contains(field), "{what}: {}", err.message());
    }
    // Zero-length content with nothing else is no image at all.
    let err = client
        .find_similar_claims(by_content(Vec::new()))
        .await
        .expect_err("nothing to search for");
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = client
        .find_similar_claims(pb::FindSimilarClaimsRequest {
            pdq: "ab".repeat(32),
            max_distance: Some(65),
            ..Default::default()
        })
        .await
        .expect_err("distance too large");
    assert!(err.message().contains("max_distance"), "{}", err.message());
    let err = client
        .find_similar_claims(by_content(b"GIF89a garbage".to_vec()))
        .await
        .expect_err("bad gif");
    assert!(err.message().contains("content"), "{}", err.message());
    assert!(all_claims(&mut client, pb::VerificationState::Unspecified)
        .await
        .is_empty());
    server.stop().await;
}

#[tokio::test]
async fn featureless_images_are_flagged_and_not_matched_unless_asked() {
    let server = InProcess::in_memory().await;
    let mut client = server.client.clone();
    let first = register(
        &mut client,
        claim_with_content("grey", solid_png(200, 150, 128)),
        "",
    )
    .await;
    let image = first.claim.as_ref().unwrap().image.clone().unwrap();
    assert!(
        image.pdq_quality < 50,
        "a solid colour has quality {}",
        image.pdq_quality
    );

    // Its hash matches nothing unless the caller asks for low-quality hashes.
    let by_hash = |include_low_quality| pb::FindSimilarClaimsRequest {
        pdq: image.pdq.clone(),
        include_low_quality,
        ..Default::default()
    };
    let reply = find_similar(&mut client, by_hash(false)).await;
    assert!(reply.matches.is_empty(), "{:?}", reply.matches);
    let reply = find_similar(&mut client, by_hash(true)).await;
    assert_eq!(reply.matches.len(), 1, "{reply:?}");
    assert_eq!(reply.matches[0].distance, 0);

    // Another featureless image is flagged as a low-quality query.
    let reply = find_similar(&mut client, by_content(solid_png(120, 90, 30))).await;
    assert!(reply.query_low_quality, "{reply:?}");
    assert!(reply.matches.is_empty(), "{:?}", reply.matches);

    // A caller's all-zero hash (what flat images give) is low quality too:
    // stored as such, and as a query it matches only when asked.
    let zeros = "0".repeat(64);
    let mut claim = claim_with_content("zeros", Vec::new());
    let image = claim.image.get_or_insert_with(Default::default);
    image.content.clear();
    image.pdq = zeros.clone();
    let second = register(&mut client, claim, "").await;
    let stored = second.claim.as_ref().unwrap().image.clone().unwrap();
    assert_eq!(stored.pdq_quality, 0, "{stored:?}");
    assert!(second.same_image_claims.is_empty(), "{second:?}");
    let by_zeros = |include_low_quality| pb::FindSimilarClaimsRequest {
        pdq: zeros.clone(),
        include_low_quality,
        ..Default::default()
    };
    let reply = find_similar(&mut client, by_zeros(false)).await;
    assert!(reply.query_low_quality, "{reply:?}");
    assert!(reply.matches.is_empty(), "{:?}", reply.matches);
    let reply = find_similar(&mut client, by_zeros(true)).await;
    assert!(!reply.matches.is_empty(), "{reply:?}");
    server.stop().await;
}

fn solid_png(width: u32, height: u32, grey: u8) -> Vec<u8> {
    let image = image::GrayImage::from_pixel(width, height, image::Luma([grey]));
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A valid 1x1 PNG whose header then claims `width` x `height` pixels.
fn png_declaring(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = solid_png(1, 1, 0);
    bytes[16..20].copy_from_slice(&width.to_be_bytes());
    bytes[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    bytes
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A small JPEG with an APP1 Exif segment whose IFD claims 65,535 entries
/// at an offset far past its end.
fn jpeg_with_absurd_exif() -> Vec<u8> {
    let image = image::GrayImage::from_fn(32, 32, |x, y| image::Luma([((x * y) % 256) as u8]));
    let mut jpeg = std::io::Cursor::new(Vec::new());
    image.write_to(&mut jpeg, image::ImageFormat::Jpeg).unwrap();
    let jpeg = jpeg.into_inner();
    let mut tiff = b"MM\x00\x2a".to_vec();
    tiff.extend_from_slice(&8u32.to_be_bytes());
    tiff.extend_from_slice(&0xffffu16.to_be_bytes());
    tiff.extend_from_slice(&[
        0x01, 0x0f, 0x00, 0x02, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xf0,
    ]);
    let mut app1 = b"Exif\x00\x00".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xff, 0xe1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}
