//! ExportClaimReview: the reference case published as schema.org JSON-LD
//! (ClaimReview and MediaReview), checked field by field against the
//! vocabulary, through a real in-process server; and its refusals.

mod common;

use std::collections::HashMap;

use common::*;
use photoclaim::domain::review::Publisher;
use photoclaim::pb;
use photoclaim::server::Options;
use photoclaim::store::{NewClaim, Store};
use serde_json::Value;
use tonic::Code;

const SHA: &str = "280271fd5317ad5113b83dae4a9ac54b3905e2bf6247a65f522957ce7085efbf";
/// Where the un-deployment claim was seen (the case records none; a desk
/// would paste the posts' URLs).
const POST_URLS: [&str; 2] = [
    "https://social.example/posts/1",
    "https://social.example/posts/2",
];
/// 2022-01-08T00:00:00Z.
const JAN_8: i64 = 1_641_600_000;

fn s(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

async fn publishing_server() -> InProcess {
    InProcess::start_with(Options {
        publisher: Publisher {
            name: "Example Fact Check".into(),
            url: "https://factcheck.example".into(),
            review_url_template: "https://factcheck.example/claims/{id}".into(),
        },
        ..Options::default()
    })
    .await
}

/// Registers both claims of the reference case, attaches its responses and
/// sets its expected verdicts; returns the claim names by case key.
async fn record_reference_case(client: &mut Client) -> HashMap<String, String> {
    let case = kazbat();
    let image = &case["image"];
    let mut names = HashMap::new();
    for claim in case["claims"].as_array().unwrap() {
        let key = s(claim, "key");
        let deployment = key == "un-deployment";
        let registered = register(
            client,
            pb::Claim {
                claim_text: s(claim, "claim_text"),
                claimant: s(claim, "claimant"),
                language: s(claim, "language"),
                appearance_urls: if deployment {
                    POST_URLS.iter().map(|u| u.to_string()).collect()
                } else {
                    Vec::new()
                },
                first_seen_time: deployment.then_some(prost_types::Timestamp {
                    seconds: JAN_8,
                    nanos: 0,
                }),
                image: Some(pb::Image {
                    source_url: s(image, "source_url"),
                    sha256: SHA.into(),
                    credit: s(image, "credit"),
                    publisher: s(image, "publisher"),
                    published_time: Some(prost_types::Timestamp {
                        seconds: JAN_8,
                        nanos: 0,
                    }),
                    location: s(image, "location"),
                    caption: s(image, "caption"),
                    ..Default::default()
                }),
                ..Default::default()
            },
            &format!("review-{key}"),
        )
        .await;
        names.insert(key, registered.claim.unwrap().name);
    }
    for response in case["official_responses"].as_array().unwrap() {
        for applies in response["applies_to"].as_array().unwrap() {
            let claim_key = applies.as_str().unwrap();
            let responder = &response["responder"];
            attach(
                client,
                &names[claim_key],
                pb::OfficialResponse {
                    responder: Some(pb::Responder {
                        organization: s(responder, "organization"),
                        person: s(responder, "person"),
                        role: pb::ResponderRole::from_str_name(&s(responder, "role")).unwrap()
                            as i32,
                    }),
                    kind: pb::ResponseKind::from_str_name(&s(response, "kind")).unwrap() as i32,
                    stance: pb::Stance::from_str_name(
                        response["stance"][claim_key].as_str().unwrap(),
                    )
                    .unwrap() as i32,
                    text: s(response, "text"),
                    language: s(response, "language"),
                    ..Default::default()
                },
                "",
            )
            .await;
        }
    }
    for claim in case["claims"].as_array().unwrap() {
        let expected = &claim["expected_verdict"];
        client
            .set_verdict(pb::SetVerdictRequest {
                claim: names[&s(claim, "key")].clone(),
                claim_rating: pb::ClaimRating::from_str_name(&s(expected, "claim_rating")).unwrap()
                    as i32,
                media_authenticity: pb::MediaAuthenticity::from_str_name(&s(
                    expected,
                    "media_authenticity",
                ))
                .unwrap() as i32,
                rationale: s(expected, "rationale"),
                etag: String::new(),
            })
            .await
            .expect("set verdict");
    }
    names
}

async fn export(client: &mut Client, claim: &str) -> Result<(Value, Option<Value>), tonic::Status> {
    let reply = client
        .export_claim_review(pb::ExportClaimReviewRequest {
            claim: claim.into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let claim_review: Value =
        serde_json::from_str(&reply.claim_review).expect("claim_review is JSON");
    let media_review = (!reply.media_review.is_empty())
        .then(|| serde_json::from_str(&reply.media_review).expect("media_review is JSON"));
    Ok((claim_review, media_review))
}

fn id_of(name: &str) -> &str {
    name.strip_prefix("claims/").unwrap()
}

#[tokio::test]
async fn the_reference_case_publishes_as_schema_org_claim_review_and_media_review() {
    let server = publishing_server().await;
    let mut client = server.client.clone();
    let names = record_reference_case(&mut client).await;
    let case = kazbat();
    let today = {
        let st = status(&mut client, &names["un-deployment"]).await;
        let t = st.review_time.unwrap();
        prost_types::Timestamp { nanos: 0, ..t }.to_string()[..10].to_string()
    };
    let author = serde_json::json!({
        "@type": "Organization",
        "name": "Example Fact Check",
        "url": "https://factcheck.example",
    });

    // The deployment claim: FALSE, and the photo DECONTEXTUALIZED.
    let un = &names["un-deployment"];
    let (review, media) = export(&mut client, un).await.expect("export un-deployment");
    let claim_case = &case["claims"][0];
    assert_eq!(review["@context"], "https://schema.org");
    assert_eq!(review["@type"], "ClaimReview");
    assert_eq!(review["claimReviewed"], s(claim_case, "claim_text"));
    assert_eq!(
        review["url"],
        format!("https://factcheck.example/claims/{}", id_of(un))
    );
    assert_eq!(review["author"], author);
    assert_eq!(review["datePublished"], today);
    let rating = &review["reviewRating"];
    assert_eq!(rating["@type"], "Rating");
    assert_eq!(rating["ratingValue"], 1);
    assert_eq!(rating["bestRating"], 5);
    assert_eq!(rating["worstRating"], 1);
    assert_eq!(rating["alternateName"], "False");
    let item = &review["itemReviewed"];
    assert_eq!(item["@type"], "Claim");
    assert_eq!(
        item["author"],
        serde_json::json!({"@type": "Organization", "name": "social media posts"})
    );
    assert_eq!(item["datePublished"], "2022-01-08");
    let appearances = item["appearance"].as_array().expect("appearance list");
    assert_eq!(appearances.len(), 2);
    for (appearance, url) in appearances.iter().zip(POST_URLS) {
        assert_eq!(appearance["@type"], "CreativeWork");
        assert_eq!(appearance["url"], url);
    }
    assert_eq!(item["firstAppearance"]["@type"], "CreativeWork");
    assert_eq!(item["firstAppearance"]["url"], POST_URLS[0]);
    assert_eq!(item["firstAppearance"]["datePublished"], "2022-01-08");

    let media = media.expect("a claim with an image and a media verdict has a MediaReview");
    assert_eq!(media["@context"], "https://schema.org");
    assert_eq!(media["@type"], "MediaReview");
    assert_eq!(
        media["mediaAuthenticityCategory"],
        "https://schema.org/DecontextualizedContent"
    );
    assert_eq!(media["originalMediaLink"], s(&case["image"], "source_url"));
    assert_eq!(
        media["originalMediaContextDescription"],
        s(&claim_case["expected_verdict"], "rationale")
    );
    assert_eq!(media["author"], author);
    assert_eq!(media["datePublished"], today);
    assert_eq!(media["url"], review["url"]);
    let media_item = &media["itemReviewed"];
    assert_eq!(media_item["@type"], "MediaReviewItem");
    let objects = media_item["mediaItemAppearance"].as_array().unwrap();
    assert_eq!(objects.len(), 1);
    let image = &objects[0];
    assert_eq!(image["@type"], "ImageObject");
    assert_eq!(image["contentUrl"], s(&case["image"], "source_url"));
    assert_eq!(image["sha256"], SHA);
    assert_eq!(image["caption"], s(&case["image"], "caption"));
    assert_eq!(image["creditText"], "AP Photo");
    assert_eq!(image["datePublished"], "2022-01-08");
    assert_eq!(image["publisher"]["name"], "Associated Press");
    assert_eq!(image["contentLocation"]["name"], "Almaty, Kazakhstan");

    // The helmets claim: ACCURATE, and the photo ORIGINAL; no appearances known.
    let helmets = &names["kazakh-troops-wore-helmets"];
    let (review, media) = export(&mut client, helmets).await.expect("export helmets");
    assert_eq!(review["@type"], "ClaimReview");
    assert_eq!(review["claimReviewed"], s(&case["claims"][1], "claim_text"));
    assert_eq!(review["reviewRating"]["ratingValue"], 5);
    assert_eq!(review["reviewRating"]["alternateName"], "Accurate");
    assert!(review["itemReviewed"].get("appearance").is_none());
    assert!(review["itemReviewed"].get("datePublished").is_none());
    assert_eq!(
        media.unwrap()["mediaAuthenticityCategory"],
        "https://schema.org/OriginalMediaContent"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_unresolved_claim_is_not_published() {
    let server = publishing_server().await;
    let mut client = server.client.clone();
    let claim = new_claim(&mut client, "Not yet reviewed").await;
    let err = export(&mut client, &claim.name).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("UNVERIFIED"), "{}", err.message());

    attach(
        &mut client,
        &claim.name,
        sample_response(pb::Stance::Refutes),
        "",
    )
    .await;
    let err = export(&mut client, &claim.name).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("IN_REVIEW"), "{}", err.message());
    server.stop().await;
}

#[tokio::test]
async fn a_claim_without_an_image_has_no_media_review() {
    let server = publishing_server().await;
    let mut client = server.client.clone();
    // RegisterClaim requires an image today, so the record is written
    // through the store, as a claim kept without one (e.g. from an import)
    // would be.
    let registered = server
        .store
        .register_claim(NewClaim {
            claim: photoclaim::domain::Claim {
                claim_text: "A quote with no picture".into(),
                claimant: "a politician".into(),
                language: "en".into(),
                ..Default::default()
            },
            request_id: String::new(),
            actor: "test".into(),
            near_distance: 31,
            dihedral: false,
            variants: None,
        })
        .await
        .expect("register without image");
    let claim = pb::Claim {
        name: format!("claims/{}", registered.claim.claim.id),
        ..Default::default()
    };
    client
        .set_verdict(pb::SetVerdictRequest {
            claim: claim.name.clone(),
            claim_rating: pb::ClaimRating::Misleading as i32,
            media_authenticity: pb::MediaAuthenticity::Original as i32,
            rationale: "Out of context.".into(),
            etag: String::new(),
        })
        .await
        .expect("set verdict");
    let reply = client
        .export_claim_review(pb::ExportClaimReviewRequest {
            claim: claim.name.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.media_review, "");
    let review: Value = serde_json::from_str(&reply.claim_review).unwrap();
    assert_eq!(review["reviewRating"]["ratingValue"], 2);
    assert_eq!(review["reviewRating"]["alternateName"], "Misleading");
    server.stop().await;
}

#[tokio::test]
async fn bad_or_unknown_claim_names_are_refused_naming_the_field() {
    let server = publishing_server().await;
    let mut client = server.client.clone();
    let err = export(&mut client, "claims/abc").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("claim"), "{}", err.message());
    let err = export(&mut client, "").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = export(&mut client, "claims/999").await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("claims/999"), "{}", err.message());
    server.stop().await;
}

#[test]
fn serve_refuses_publisher_settings_that_are_not_http_urls() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_photoclaim"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(["--publisher-url", "ftp://factcheck.example"])
        .args(["--review-url-template", "https://factcheck.example/claims"])
        .output()
        .expect("run photoclaim");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("publisher-url"), "{stderr}");
    assert!(stderr.contains("review-url-template"), "{stderr}");
}
