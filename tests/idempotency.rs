//! Idempotent retries (AIP-155), etags (AIP-154) and concurrent writers.

mod common;

use common::*;
use photoclaim::api::REPLAYED_METADATA;
use photoclaim::pb;
use tonic::Code;

#[tokio::test]
async fn register_retry_replays_the_first_result_and_stores_one_claim() {
    let server = InProcess::start().await;
    let mut client = server.client.clone();
    let first = register(&mut client, sample_claim("retry me"), "req-1").await;
    let again = register(&mut client, sample_claim("retry me"), "req-1").await;
    assert!(!first.replayed);
    assert!(again.replayed);
    assert_eq!(again.claim.unwrap().name, first.claim.unwrap().name);
    let claims = all_claims(&mut client, pb::VerificationState::Unspecified).await;
    assert_eq!(claims.len(), 1, "a retry must not create a second claim");
    server.stop().await;
}

#[tokio::test]
async fn request_id_reused_with_a_different_payload_is_already_exists_and_changes_nothing() {
    let server = InProcess::start().await;
    let mut client = server.client.clone();
    let first = register(&mut client, sample_claim("original"), "req-x").await;
    let name = first.claim.unwrap().name;
    let err = client
        .register_claim(pb::RegisterClaimRequest {
            request_id: "req-x".into(),
            claim: Some(sample_claim("something else")),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    assert!(err.message().contains("request_id"), "{}", err.message());
    assert_request_id_reused(&err, "req-x");
    let claims = all_claims(&mut client, pb::VerificationState::Unspecified).await;
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].claim_text, "original");

    // The same for attachments; the payload includes the parent claim.
    attach(
        &mut client,
        &name,
        sample_response(pb::Stance::Refutes),
        "att-1",
    )
    .await;
    let err = client
        .attach_official_response(pb::AttachOfficialResponseRequest {
            parent: name.clone(),
            request_id: "att-1".into(),
            official_response: Some(sample_response(pb::Stance::Supports)),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert_request_id_reused(&err, "att-1");
    let st = status(&mut client, &name).await;
    assert_eq!((st.official_response_count, st.supporting_count), (1, 0));
    server.stop().await;
}

/// The `google.rpc.ErrorInfo` of a reused request id: reason, domain, and
/// the id itself, so that a client can tell this conflict from others.
fn assert_request_id_reused(err: &tonic::Status, request_id: &str) {
    use tonic_types::StatusExt;
    let info = err.get_details_error_info().expect("ErrorInfo details");
    assert_eq!(
        (info.reason.as_str(), info.domain.as_str()),
        ("REQUEST_ID_REUSED", "photoclaim")
    );
    assert_eq!(
        info.metadata.get("request_id").map(String::as_str),
        Some(request_id)
    );
}

#[tokio::test]
async fn attach_retry_returns_the_same_response_flagged_as_replayed() {
    let server = InProcess::start().await;
    let mut client = server.client.clone();
    let claim = new_claim(&mut client, "c").await;
    let request = pb::AttachOfficialResponseRequest {
        parent: claim.name.clone(),
        request_id: "attach-once".into(),
        official_response: Some(sample_response(pb::Stance::Refutes)),
    };
    let first = client
        .attach_official_response(request.clone())
        .await
        .unwrap();
    assert!(first.metadata().get(REPLAYED_METADATA).is_none());
    let again = client.attach_official_response(request).await.unwrap();
    assert_eq!(
        again
            .metadata()
            .get(REPLAYED_METADATA)
            .map(|v| v.to_str().unwrap()),
        Some("true")
    );
    assert_eq!(again.into_inner(), first.into_inner());
    let st = status(&mut client, &claim.name).await;
    assert_eq!(st.official_response_count, 1);
    assert_eq!(all_events(&mut client, &claim.name).await.len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn stale_etag_is_aborted_and_changes_nothing_while_no_etag_applies() {
    let server = InProcess::start().await;
    let mut client = server.client.clone();
    let claim = new_claim(&mut client, "c").await;
    let stale = claim.etag.clone();
    attach(
        &mut client,
        &claim.name,
        sample_response(pb::Stance::Refutes),
        "",
    )
    .await;
    let before = status(&mut client, &claim.name).await;
    let verdict = |etag: &str| pb::SetVerdictRequest {
        claim: claim.name.clone(),
        claim_rating: pb::ClaimRating::False as i32,
        media_authenticity: pb::MediaAuthenticity::Original as i32,
        rationale: "checked".into(),
        etag: etag.into(),
    };
    let err = client.set_verdict(verdict(&stale)).await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    assert!(err.message().contains("etag"), "{}", err.message());
    assert_eq!(status(&mut client, &claim.name).await, before);

    let resolved = client.set_verdict(verdict("")).await.unwrap().into_inner();
    assert_eq!(resolved.state(), pb::VerificationState::Resolved);
    // A new verdict replaces the old one; history keeps both.
    let mut second = verdict(&resolved.etag);
    second.claim_rating = pb::ClaimRating::Misleading as i32;
    let replaced = client.set_verdict(second).await.unwrap().into_inner();
    assert_eq!(replaced.claim_rating(), pb::ClaimRating::Misleading);
    let events = all_events(&mut client, &claim.name).await;
    let verdicts: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.details {
            Some(pb::claim_event::Details::VerdictSet(v)) => {
                Some((v.previous_claim_rating(), v.claim_rating()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        verdicts,
        [
            (pb::ClaimRating::Unspecified, pb::ClaimRating::False),
            (pb::ClaimRating::False, pb::ClaimRating::Misleading)
        ]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_attachments_are_all_stored_with_gapless_events_and_shared_flushes() {
    let server = InProcess::start().await;
    let mut client = server.client.clone();
    let claim = new_claim(&mut client, "busy").await;
    let flushes_before = server.store.flush_count();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let mut client = server.client.clone();
        let parent = claim.name.clone();
        tasks.push(tokio::spawn(async move {
            let stance = if i % 2 == 0 {
                pb::Stance::Supports
            } else {
                pb::Stance::Refutes
            };
            attach(
                &mut client,
                &parent,
                sample_response(stance),
                &format!("con-{i}"),
            )
            .await
        }));
    }
    let mut names = Vec::new();
    for task in tasks {
        names.push(task.await.unwrap().name);
    }
    let flushes = server.store.flush_count() - flushes_before;
    println!("50 concurrent durable attachments shared {flushes} flushes");
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 50, "every attachment got its own response");

    let st = status(&mut client, &claim.name).await;
    assert_eq!(
        (
            st.official_response_count,
            st.supporting_count,
            st.refuting_count
        ),
        (50, 25, 25)
    );
    assert_eq!(st.state(), pb::VerificationState::Disputed);
    let events = all_events(&mut client, &claim.name).await;
    assert_eq!(events.len(), 51);
    assert_gapless(&events);
    let listed = client
        .list_official_responses(pb::ListOfficialResponsesRequest {
            parent: claim.name.clone(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut listed: Vec<_> = listed
        .official_responses
        .into_iter()
        .map(|r| r.name)
        .collect();
    listed.sort();
    assert_eq!(listed, names);
    assert!(
        flushes < 50,
        "50 concurrent durable writes should share flushes (one per committer batch), took {flushes}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_verdicts_with_one_etag_exactly_one_wins() {
    let server = InProcess::start().await;
    let mut client = server.client.clone();
    let claim = new_claim(&mut client, "contested").await;
    let mut tasks = Vec::new();
    for i in 0..10 {
        let mut client = server.client.clone();
        let request = pb::SetVerdictRequest {
            claim: claim.name.clone(),
            claim_rating: pb::ClaimRating::Unproven as i32,
            media_authenticity: pb::MediaAuthenticity::Original as i32,
            rationale: format!("editor {i}"),
            etag: claim.etag.clone(),
        };
        tasks.push(tokio::spawn(
            async move { client.set_verdict(request).await },
        ));
    }
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => won += 1,
            Err(status) => assert_eq!(status.code(), Code::Aborted),
        }
    }
    assert_eq!(won, 1, "exactly one writer with the etag may win");
    let events = all_events(&mut client, &claim.name).await;
    assert_eq!(events.len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn list_claims_pages_newest_first_and_filters_by_state() {
    let server = InProcess::start().await;
    let mut client = server.client.clone();
    let mut names = Vec::new();
    for i in 0..7 {
        let claim = register(&mut client, sample_claim(&format!("claim {i}")), "").await;
        names.push(claim.claim.unwrap().name);
    }
    attach(
        &mut client,
        &names[2],
        sample_response(pb::Stance::Refutes),
        "",
    )
    .await;
    attach(
        &mut client,
        &names[5],
        sample_response(pb::Stance::Refutes),
        "",
    )
    .await;

    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .list_claims(pb::ListClaimsRequest {
                page_size: 3,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.claims.len() <= 3);
        pages += 1;
        seen.extend(page.claims.into_iter().map(|c| c.name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let newest_first: Vec<_> = names.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);
    assert_eq!(pages, 3);

    let in_review = all_claims(&mut client, pb::VerificationState::InReview).await;
    let in_review: Vec<_> = in_review.into_iter().map(|c| c.name).collect();
    assert_eq!(in_review, [names[5].clone(), names[2].clone()]);
    let unverified = all_claims(&mut client, pb::VerificationState::Unverified).await;
    assert_eq!(unverified.len(), 5);

    // A token is bound to its filter.
    let page = client
        .list_claims(pb::ListClaimsRequest {
            page_size: 1,
            state: pb::VerificationState::Unverified as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let err = client
        .list_claims(pb::ListClaimsRequest {
            page_size: 1,
            page_token: page.next_page_token,
            state: pb::VerificationState::InReview as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("page_token"));
    server.stop().await;
}

#[tokio::test]
async fn same_image_claims_lists_earlier_claims_on_the_same_sha256_newest_first() {
    let server = InProcess::start().await;
    let mut client = server.client.clone();
    let with_sha = |text: &str, sha: &str| {
        let mut claim = sample_claim(text);
        claim.image.as_mut().unwrap().sha256 = sha.to_string();
        claim
    };
    let a = register(&mut client, with_sha("a", &fake_sha256(1)), "").await;
    register(&mut client, with_sha("other image", &fake_sha256(2)), "").await;
    let b = register(&mut client, with_sha("b", &fake_sha256(1)), "").await;
    let c = register(&mut client, with_sha("c", &fake_sha256(1)), "rc").await;
    let names = |r: &pb::RegisterClaimResponse| -> Vec<String> {
        r.same_image_claims
            .iter()
            .map(|m| m.claim.as_ref().unwrap().name.clone())
            .collect()
    };
    assert!(a.same_image_claims.is_empty());
    assert_eq!(names(&b), [a.claim.clone().unwrap().name]);
    assert_eq!(
        names(&c),
        [b.claim.clone().unwrap().name, a.claim.clone().unwrap().name]
    );
    // A replay reports the same earlier claims, not itself.
    let replay = register(&mut client, with_sha("c", &fake_sha256(1)), "rc").await;
    assert!(replay.replayed);
    assert_eq!(names(&replay), names(&c));
    server.stop().await;
}
