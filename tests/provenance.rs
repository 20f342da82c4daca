//! Provenance through the real gRPC API: rotated and mirrored copies of the
//! PDQ fixtures' original found with their transformation, the earliest
//! sighting of an image across its copies, Content Credentials read at
//! registration (signed in the test), and the pre-publication checks
//! (CheckVerdict, SetVerdict's warnings, ExportClaimReview's refusal).

mod common;

use std::io::Cursor;

use common::c2pa::{base_jpeg, sign, tamper, ManifestSpec, TestSigner};
use common::*;
use image::{DynamicImage, ImageFormat};
use photoclaim::imaging::credentials::CredentialReader;
use photoclaim::pb;
use photoclaim::server::Options;
use prost_types::Timestamp;
use tonic::Code;

fn jpeg(picture: &DynamicImage) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    picture
        .write_to(&mut out, ImageFormat::Jpeg)
        .expect("encode");
    out.into_inner()
}

/// The original turned each of the seven ways, with the transformation a
/// match on the original should report (the original's picture is the
/// query turned back).
fn turned(original: &DynamicImage) -> Vec<(&'static str, Vec<u8>, pb::ImageTransformation)> {
    use pb::ImageTransformation as T;
    vec![
        // Querying with the original rotated 90° clockwise: the stored
        // original is that query rotated 90° anticlockwise.
        ("rotate90", jpeg(&original.rotate90()), T::Rotated270),
        ("rotate180", jpeg(&original.rotate180()), T::Rotated180),
        ("rotate270", jpeg(&original.rotate270()), T::Rotated90),
        ("fliph", jpeg(&original.fliph()), T::MirroredHorizontally),
        ("flipv", jpeg(&original.flipv()), T::FlippedVertically),
        (
            "transpose",
            jpeg(&original.rotate90().fliph()),
            T::Transposed,
        ),
        (
            "transverse",
            jpeg(&original.rotate270().fliph()),
            T::Transversed,
        ),
    ]
}

fn ts(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 0 })
}

const JAN_2022: i64 = 1_641_513_600; // 2022-01-07
const MAY_2011: i64 = 1_304_467_200; // 2011-05-04

#[tokio::test]
async fn rotated_and_mirrored_copies_are_found_with_their_transformation() {
    let server = InProcess::in_memory().await;
    let mut client = server.client.clone();
    let original_bytes = pdq_fixture("bridge-mods/aaa-orig.jpg");
    let original = image::load_from_memory(&original_bytes).unwrap();
    let stored = register(
        &mut client,
        claim_with_content("the original", original_bytes),
        "",
    )
    .await
    .claim
    .unwrap();
    let copies = turned(&original);
    let mut found_by_content = 0;
    for (what, bytes, want) in &copies {
        let reply = find_similar(
            &mut client,
            pb::FindSimilarClaimsRequest {
                content: bytes.clone(),
                ..Default::default()
            },
        )
        .await;
        let m = reply
            .matches
            .iter()
            .find(|m| m.claim.as_ref().unwrap().name == stored.name)
            .unwrap_or_else(|| panic!("{what}: the original is not found"));
        assert!(!m.exact, "{what}");
        assert!(m.distance <= 31, "{what}: distance {}", m.distance);
        assert_eq!(m.transformation, *want as i32, "{what}");
        found_by_content += 1;

        // The same by the rotated copy's hash (variants estimated from bits).
        let by_hash = find_similar(
            &mut client,
            pb::FindSimilarClaimsRequest {
                pdq: reply.query_pdq.clone(),
                ..Default::default()
            },
        )
        .await;
        let m = by_hash
            .matches
            .iter()
            .find(|m| m.claim.as_ref().unwrap().name == stored.name);
        assert_eq!(
            m.map(|m| m.transformation),
            Some(*want as i32),
            "{what} by hash"
        );

        // The flag turns it off: the turned copy is far from the original.
        let same = find_similar(
            &mut client,
            pb::FindSimilarClaimsRequest {
                content: bytes.clone(),
                same_orientation_only: true,
                ..Default::default()
            },
        )
        .await;
        assert!(same.matches.is_empty(), "{what}: {:?}", same.matches.len());
    }
    assert_eq!(found_by_content, 7, "7 of 7 rotated and mirrored copies");

    // The original itself matches as itself.
    let reply = find_similar(
        &mut client,
        pb::FindSimilarClaimsRequest {
            pdq: stored.image.as_ref().unwrap().pdq.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        reply.matches[0].transformation,
        pb::ImageTransformation::Identity as i32
    );
    server.stop().await;
}

#[tokio::test]
async fn registration_lists_rotated_copies_unless_asked_not_to() {
    let server = InProcess::start().await;
    let mut client = server.client.clone();
    let original_bytes = pdq_fixture("bridge-mods/aaa-orig.jpg");
    let original = image::load_from_memory(&original_bytes).unwrap();
    let first = register(
        &mut client,
        claim_with_content("the original", original_bytes),
        "",
    )
    .await
    .claim
    .unwrap();
    let mirrored = jpeg(&original.fliph());
    let reply = register(
        &mut client,
        claim_with_content("a mirrored repost", mirrored.clone()),
        "",
    )
    .await;
    assert_eq!(reply.same_image_claims.len(), 1);
    let m = &reply.same_image_claims[0];
    assert_eq!(m.claim.as_ref().unwrap().name, first.name);
    assert_eq!(
        m.transformation,
        pb::ImageTransformation::MirroredHorizontally as i32
    );

    let reply = client
        .register_claim(pb::RegisterClaimRequest {
            claim: Some(claim_with_content("another mirrored repost", mirrored)),
            same_orientation_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // Only the earlier mirrored repost, which is in the same orientation.
    let names: Vec<_> = reply
        .same_image_claims
        .iter()
        .map(|m| m.claim.as_ref().unwrap().name.clone())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert_ne!(names[0], first.name);
    assert_eq!(
        reply.same_image_claims[0].transformation,
        pb::ImageTransformation::Identity as i32
    );
    server.stop().await;
}

/// Two claims: an old publication of the original, and a new claim on a
/// mirrored copy that says it shows a 2022 event.
async fn old_photo_new_claim(client: &mut Client) -> (pb::Claim, pb::Claim) {
    let original_bytes = pdq_fixture("bridge-mods/aaa-orig.jpg");
    let original = image::load_from_memory(&original_bytes).unwrap();
    let mut old = claim_with_content("a bridge, 2011", original_bytes);
    old.image.as_mut().unwrap().published_time = ts(MAY_2011);
    old.first_seen_time = ts(MAY_2011 + 86_400 * 30);
    let old = register(client, old, "").await.claim.unwrap();
    let mut new = claim_with_content("the bridge attacked this week", jpeg(&original.fliph()));
    new.first_seen_time = ts(JAN_2022 + 86_400);
    new.event_time = ts(JAN_2022);
    let new = register(client, new, "").await.claim.unwrap();
    (old, new)
}

#[tokio::test]
async fn the_earliest_sighting_spans_the_copies_and_says_where_it_comes_from() {
    let server = InProcess::start().await;
    let mut client = server.client.clone();
    let (old, new) = old_photo_new_claim(&mut client).await;
    // Only when asked: status polling stays cheap.
    assert_eq!(status(&mut client, &new.name).await.earliest_sighting, None);
    let s = status_with_sighting(&mut client, &new.name).await;
    let e = s.earliest_sighting.expect("an earliest sighting");
    assert_eq!(e.time, ts(MAY_2011));
    assert_eq!(e.source, pb::SightingSource::ImagePublished as i32);
    assert_eq!(e.claim, old.name);
    assert!(!e.exact);
    assert_eq!(
        e.transformation,
        pb::ImageTransformation::MirroredHorizontally as i32
    );
    // The old claim's own earliest is its publication too.
    let e = status_with_sighting(&mut client, &old.name)
        .await
        .earliest_sighting
        .unwrap();
    assert_eq!((e.claim.as_str(), e.exact), (old.name.as_str(), true));

    // FindSimilarClaims says the same, for any page size.
    let reply = find_similar(
        &mut client,
        pb::FindSimilarClaimsRequest {
            pdq: new.image.as_ref().unwrap().pdq.clone(),
            page_size: 1,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(reply.matches.len(), 1);
    assert_eq!(reply.earliest_sighting.unwrap().time, ts(MAY_2011));

    // A claim without dates on an image nobody else has: none.
    let lone = new_claim(&mut client, "no image bytes, no dates").await;
    assert_eq!(
        status_with_sighting(&mut client, &lone.name)
            .await
            .earliest_sighting,
        None
    );
    server.stop().await;
}

async fn check(
    client: &mut Client,
    claim: &str,
    rating: pb::ClaimRating,
    media: pb::MediaAuthenticity,
    rationale: &str,
) -> Vec<String> {
    client
        .check_verdict(pb::CheckVerdictRequest {
            claim: claim.into(),
            claim_rating: rating as i32,
            media_authenticity: media as i32,
            rationale: rationale.into(),
        })
        .await
        .expect("CheckVerdict")
        .into_inner()
        .findings
        .into_iter()
        .map(|f| f.code)
        .collect()
}

async fn set_verdict(
    client: &mut Client,
    claim: &str,
    rating: pb::ClaimRating,
    media: pb::MediaAuthenticity,
    rationale: &str,
) -> pb::VerificationStatus {
    client
        .set_verdict(pb::SetVerdictRequest {
            claim: claim.into(),
            claim_rating: rating as i32,
            media_authenticity: media as i32,
            rationale: rationale.into(),
            etag: String::new(),
        })
        .await
        .expect("SetVerdict")
        .into_inner()
}

async fn export(
    client: &mut Client,
    claim: &str,
    force: bool,
) -> Result<pb::ExportClaimReviewResponse, tonic::Status> {
    client
        .export_claim_review(pb::ExportClaimReviewRequest {
            claim: claim.into(),
            force,
        })
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn verdicts_that_contradict_the_record_are_flagged_and_block_the_export() {
    use pb::ClaimRating as R;
    use pb::MediaAuthenticity as M;
    let server = InProcess::start().await;
    let mut client = server.client.clone();
    let (_, new) = old_photo_new_claim(&mut client).await;

    // The photo predates the event: "accurate" contradicts it.
    assert_eq!(
        check(
            &mut client,
            &new.name,
            R::Accurate,
            M::Original,
            "looks right"
        )
        .await,
        ["IMAGE_OLDER_THAN_EVENT"]
    );
    // Decontextualized without the original: say where it comes from.
    assert_eq!(
        check(
            &mut client,
            &new.name,
            R::False,
            M::Decontextualized,
            "an old photo"
        )
        .await,
        ["DECONTEXTUALIZED_WITHOUT_ORIGINAL"]
    );
    assert!(check(
        &mut client,
        &new.name,
        R::False,
        M::Decontextualized,
        "published in May 2011: https://example.org/bridge-2011"
    )
    .await
    .is_empty());

    // SetVerdict records the verdict and warns in its reply.
    let s = set_verdict(
        &mut client,
        &new.name,
        R::Accurate,
        M::Original,
        "looks right",
    )
    .await;
    assert_eq!(s.claim_rating, R::Accurate as i32, "recorded all the same");
    let codes: Vec<_> = s.verdict_findings.iter().map(|f| f.code.as_str()).collect();
    assert_eq!(codes, ["IMAGE_OLDER_THAN_EVENT"]);
    assert_eq!(
        s.verdict_findings[0].severity,
        pb::FindingSeverity::Error as i32
    );
    assert!(
        s.verdict_findings[0].message.contains("2011-05-04"),
        "{}",
        s.verdict_findings[0].message
    );
    assert!(s.earliest_sighting.is_some());
    // GetVerificationStatus does not repeat the findings.
    assert!(status(&mut client, &new.name)
        .await
        .verdict_findings
        .is_empty());

    // CheckVerdict without a verdict checks the recorded one.
    let recorded = client
        .check_verdict(pb::CheckVerdictRequest {
            claim: new.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(recorded.findings.len(), 1);

    // The export is refused, naming the rule, unless forced.
    let refused = export(&mut client, &new.name, false)
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("IMAGE_OLDER_THAN_EVENT"),
        "{}",
        refused.message()
    );
    let forced = export(&mut client, &new.name, true).await.expect("forced");
    assert!(!forced.claim_review.is_empty());
    assert_eq!(forced.findings.len(), 1);

    // A corrected verdict exports without findings.
    set_verdict(
        &mut client,
        &new.name,
        R::False,
        M::Decontextualized,
        "Published in May 2011: https://example.org/bridge-2011",
    )
    .await;
    let ok = export(&mut client, &new.name, false).await.expect("export");
    assert!(ok.findings.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn accurate_with_an_unanswered_refutation_is_an_error_until_answered() {
    use pb::ClaimRating as R;
    use pb::MediaAuthenticity as M;
    let server = InProcess::in_memory().await;
    let mut client = server.client.clone();
    let claim = new_claim(&mut client, "the soldiers are UN peacekeepers").await;
    let refutation = attach(
        &mut client,
        &claim.name,
        sample_response(pb::Stance::Refutes),
        "",
    )
    .await;
    assert_eq!(
        check(
            &mut client,
            &claim.name,
            R::Accurate,
            M::Original,
            "the UN said so"
        )
        .await,
        ["ACCURATE_WITH_UNANSWERED_REFUTATION"]
    );
    let mut answer = sample_response(pb::Stance::Supports);
    answer.in_reply_to = refutation.name.clone();
    attach(&mut client, &claim.name, answer, "").await;
    assert!(check(
        &mut client,
        &claim.name,
        R::Accurate,
        M::Original,
        "the UN said so"
    )
    .await
    .is_empty());
    server.stop().await;
}

#[tokio::test]
async fn check_verdict_refuses_bad_input_and_changes_nothing() {
    let server = InProcess::in_memory().await;
    let mut client = server.client.clone();
    let claim = new_claim(&mut client, "unrated").await;
    let before = status(&mut client, &claim.name).await;
    let call = |claim: &str, rating: i32, media: i32, rationale: &str| pb::CheckVerdictRequest {
        claim: claim.into(),
        claim_rating: rating,
        media_authenticity: media,
        rationale: rationale.into(),
    };
    for (request, code, field) in [
        (call("claims/x", 0, 0, ""), Code::InvalidArgument, "claim"),
        (call("claims/999", 5, 1, "x"), Code::NotFound, ""),
        // No verdict recorded, none given.
        (
            call(&claim.name, 0, 0, ""),
            Code::InvalidArgument,
            "claim_rating",
        ),
        // Half a verdict.
        (
            call(&claim.name, 5, 0, "x"),
            Code::InvalidArgument,
            "media_authenticity",
        ),
        (
            call(&claim.name, 5, 1, ""),
            Code::InvalidArgument,
            "rationale",
        ),
        (
            call(&claim.name, 99, 1, "x"),
            Code::InvalidArgument,
            "claim_rating",
        ),
    ] {
        let err = client
            .check_verdict(request.clone())
            .await
            .expect_err("refused");
        assert_eq!(err.code(), code, "{request:?}: {}", err.message());
        assert!(
            err.message().contains(field),
            "{request:?}: {}",
            err.message()
        );
    }
    let after = status(&mut client, &claim.name).await;
    assert_eq!(before.etag, after.etag, "nothing changed");
    server.stop().await;
}

fn signed_claim(text: &str, bytes: Vec<u8>) -> pb::Claim {
    claim_with_content(text, bytes)
}

#[tokio::test]
async fn content_credentials_are_read_at_registration_in_three_states() {
    let signer = TestSigner::new("Example Newsroom");
    let base = base_jpeg();
    let signed = sign(&base, "jpeg", &signer, ManifestSpec::captured("a photo"));
    let anchors = CredentialReader::with_trust_anchors(&signer.ca_pem).expect("anchors");
    let trusting = InProcess::in_memory_with(Options {
        credentials: Some(anchors),
        ..Options::default()
    })
    .await;
    let plain = InProcess::in_memory().await;
    for (server, want) in [
        (&plain, pb::CredentialState::Valid),
        (&trusting, pb::CredentialState::Trusted),
    ] {
        let mut client = server.client.clone();
        let claim = register(&mut client, signed_claim("signed", signed.clone()), "")
            .await
            .claim
            .unwrap();
        let got = client
            .get_claim(pb::GetClaimRequest {
                name: claim.name.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        let c = got.image.unwrap().content_credentials.expect("credentials");
        assert_eq!(c.state, want as i32);
        assert!(
            c.signer_subject.contains("Example Newsroom"),
            "{}",
            c.signer_subject
        );
        // The audit trail's registration event carries them too.
        let events = all_events(&mut client, &claim.name).await;
        let registered = format!("{:?}", events[0]);
        assert!(registered.contains("Example Newsroom"), "{registered}");
    }
    let mut client = plain.client.clone();
    let tampered = register(&mut client, signed_claim("tampered", tamper(&signed)), "")
        .await
        .claim
        .unwrap();
    let c = tampered
        .image
        .unwrap()
        .content_credentials
        .expect("credentials");
    assert_eq!(c.state, pb::CredentialState::Invalid as i32);
    assert!(c
        .validation_codes
        .iter()
        .any(|v| v.kind == pb::ValidationCodeKind::Failure as i32));
    let none = register(&mut client, signed_claim("unsigned", base), "")
        .await
        .claim
        .unwrap();
    assert_eq!(none.image.unwrap().content_credentials, None);
    // FindSimilarClaims with content reports the query's credentials.
    let reply = find_similar(
        &mut client,
        pb::FindSimilarClaimsRequest {
            content: signed.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        reply.query_content_credentials.map(|c| c.state),
        Some(pb::CredentialState::Valid as i32)
    );
    plain.stop().await;
    trusting.stop().await;
}

#[tokio::test]
async fn original_against_generative_credentials_is_an_error() {
    use pb::ClaimRating as R;
    use pb::MediaAuthenticity as M;
    let signer = TestSigner::new("Example Generator");
    let generated = sign(
        &base_jpeg(),
        "jpeg",
        &signer,
        ManifestSpec::generated("a scene"),
    );
    let server = InProcess::in_memory().await;
    let mut client = server.client.clone();
    let claim = register(&mut client, signed_claim("a real photo", generated), "")
        .await
        .claim
        .unwrap();
    assert_eq!(
        check(
            &mut client,
            &claim.name,
            R::Accurate,
            M::Original,
            "seems fine"
        )
        .await,
        ["ORIGINAL_BUT_GENERATIVE_CREDENTIALS"]
    );
    assert!(check(
        &mut client,
        &claim.name,
        R::False,
        M::Transformed,
        "made by a model"
    )
    .await
    .is_empty());
    server.stop().await;
}

async fn status_with_sighting(client: &mut Client, claim: &str) -> pb::VerificationStatus {
    client
        .get_verification_status(pb::GetVerificationStatusRequest {
            claim: claim.into(),
            include_earliest_sighting: true,
        })
        .await
        .expect("status")
        .into_inner()
}
