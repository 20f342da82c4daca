//! A table of bad inputs: each gets the right gRPC code, a message (and for
//! INVALID_ARGUMENT a `google.rpc.BadRequest` detail) naming the field, and
//! leaves the store exactly as it was.

mod common;

use std::future::Future;
use std::pin::Pin;

use common::*;
use photoclaim::pb;
use tonic::Code;
use tonic_types::StatusExt;

type Call = Pin<Box<dyn Future<Output = Result<(), tonic::Status>> + Send>>;

fn long(n: usize) -> String {
    "x".repeat(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_get_the_right_code_name_the_field_and_change_nothing() {
    let server = InProcess::in_memory().await;
    let mut client = server.client.clone();
    let claim = register(&mut client, sample_claim("existing"), "seed-claim")
        .await
        .claim
        .unwrap();
    let name = claim.name.clone();
    attach(
        &mut client,
        &name,
        sample_response(pb::Stance::Refutes),
        "seed-response",
    )
    .await;
    let other = new_claim(&mut client, "other").await;

    let c = client.clone();
    let register_with = move |request_id: &str, edit: fn(&mut pb::Claim)| -> Call {
        let mut client = c.clone();
        let mut claim = sample_claim("a claim");
        edit(&mut claim);
        let request = pb::RegisterClaimRequest {
            request_id: request_id.into(),
            claim: Some(claim),
            ..Default::default()
        };
        Box::pin(async move { client.register_claim(request).await.map(|_| ()) })
    };
    let c = client.clone();
    let n = name.clone();
    let attach_with = move |edit: fn(&mut pb::AttachOfficialResponseRequest)| -> Call {
        let mut client = c.clone();
        let mut request = pb::AttachOfficialResponseRequest {
            parent: n.clone(),
            request_id: String::new(),
            official_response: Some(sample_response(pb::Stance::Supports)),
        };
        edit(&mut request);
        Box::pin(async move { client.attach_official_response(request).await.map(|_| ()) })
    };
    let c = client.clone();
    let n = name.clone();
    let verdict_with = move |edit: fn(&mut pb::SetVerdictRequest)| -> Call {
        let mut client = c.clone();
        let mut request = pb::SetVerdictRequest {
            claim: n.clone(),
            claim_rating: pb::ClaimRating::False as i32,
            media_authenticity: pb::MediaAuthenticity::Original as i32,
            rationale: "because".into(),
            etag: String::new(),
        };
        edit(&mut request);
        Box::pin(async move { client.set_verdict(request).await.map(|_| ()) })
    };
    let c = client.clone();
    let get = move |claim_name: &str| -> Call {
        let mut client = c.clone();
        let request = pb::GetClaimRequest {
            name: claim_name.into(),
        };
        Box::pin(async move { client.get_claim(request).await.map(|_| ()) })
    };
    let c = client.clone();
    let status_of = move |claim_name: &str| -> Call {
        let mut client = c.clone();
        let request = pb::GetVerificationStatusRequest {
            claim: claim_name.into(),
            ..Default::default()
        };
        Box::pin(async move { client.get_verification_status(request).await.map(|_| ()) })
    };
    let c = client.clone();
    let list_claims = move |request: pb::ListClaimsRequest| -> Call {
        let mut client = c.clone();
        Box::pin(async move { client.list_claims(request).await.map(|_| ()) })
    };
    let c = client.clone();
    let list_responses = move |request: pb::ListOfficialResponsesRequest| -> Call {
        let mut client = c.clone();
        Box::pin(async move { client.list_official_responses(request).await.map(|_| ()) })
    };
    let c = client.clone();
    let list_events = move |request: pb::ListClaimEventsRequest| -> Call {
        let mut client = c.clone();
        Box::pin(async move { client.list_claim_events(request).await.map(|_| ()) })
    };
    // A page token of another claim's event listing.
    let foreign_token = {
        for _ in 0..2 {
            attach(
                &mut client,
                &other.name,
                sample_response(pb::Stance::Refutes),
                "",
            )
            .await;
        }
        let page = client
            .list_claim_events(pb::ListClaimEventsRequest {
                claim: other.name.clone(),
                page_size: 1,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!page.next_page_token.is_empty());
        page.next_page_token
    };
    let before = snapshot(&mut client).await;
    let missing = "claims/999999";

    let cases: Vec<(&str, Call, Code, &str)> = vec![
        // RegisterClaim
        (
            "no claim",
            {
                let mut client = client.clone();
                Box::pin(async move {
                    client
                        .register_claim(pb::RegisterClaimRequest::default())
                        .await
                        .map(|_| ())
                })
            },
            Code::InvalidArgument,
            "claim",
        ),
        (
            "empty text",
            register_with("", |c| c.claim_text.clear()),
            Code::InvalidArgument,
            "claim.claim_text",
        ),
        (
            "blank text",
            register_with("", |c| c.claim_text = "   ".into()),
            Code::InvalidArgument,
            "claim.claim_text",
        ),
        (
            "text too long",
            register_with("", |c| c.claim_text = long(10_001)),
            Code::InvalidArgument,
            "claim.claim_text",
        ),
        (
            "control char in text",
            register_with("", |c| c.claim_text = "a\u{0}b".into()),
            Code::InvalidArgument,
            "claim.claim_text",
        ),
        (
            "claimant too long",
            register_with("", |c| c.claimant = long(501)),
            Code::InvalidArgument,
            "claim.claimant",
        ),
        (
            "no language",
            register_with("", |c| c.language.clear()),
            Code::InvalidArgument,
            "claim.language",
        ),
        (
            "bad language",
            register_with("", |c| c.language = "en_US".into()),
            Code::InvalidArgument,
            "claim.language",
        ),
        (
            "51 urls",
            register_with("", |c| {
                c.appearance_urls = vec!["https://e.org/".into(); 51]
            }),
            Code::InvalidArgument,
            "claim.appearance_urls",
        ),
        (
            "ftp url",
            register_with("", |c| c.appearance_urls = vec!["ftp://e.org/x".into()]),
            Code::InvalidArgument,
            "claim.appearance_urls[0]",
        ),
        (
            "relative url",
            register_with("", |c| {
                c.appearance_urls = vec!["https://e.org/".into(), "/x".into()]
            }),
            Code::InvalidArgument,
            "claim.appearance_urls[1]",
        ),
        (
            "51 tags",
            register_with("", |c| c.tags = vec!["t".into(); 51]),
            Code::InvalidArgument,
            "claim.tags",
        ),
        (
            "empty tag",
            register_with("", |c| c.tags = vec!["".into()]),
            Code::InvalidArgument,
            "claim.tags[0]",
        ),
        (
            "tag too long",
            register_with("", |c| c.tags = vec![long(101)]),
            Code::InvalidArgument,
            "claim.tags[0]",
        ),
        (
            "no image",
            register_with("", |c| c.image = None),
            Code::InvalidArgument,
            "claim.image",
        ),
        (
            "image without url or sha",
            register_with("", |c| c.image = Some(pb::Image::default())),
            Code::InvalidArgument,
            "claim.image",
        ),
        (
            "uppercase sha",
            register_with("", |c| c.image.as_mut().unwrap().sha256 = "A".repeat(64)),
            Code::InvalidArgument,
            "claim.image.sha256",
        ),
        (
            "short sha",
            register_with("", |c| c.image.as_mut().unwrap().sha256 = "ab".into()),
            Code::InvalidArgument,
            "claim.image.sha256",
        ),
        (
            "bad image url",
            register_with("", |c| {
                c.image.as_mut().unwrap().source_url = "not a url".into()
            }),
            Code::InvalidArgument,
            "claim.image.source_url",
        ),
        (
            "caption too long",
            register_with("", |c| c.image.as_mut().unwrap().caption = long(10_001)),
            Code::InvalidArgument,
            "claim.image.caption",
        ),
        (
            "bad nanos",
            register_with("", |c| {
                c.first_seen_time = Some(prost_types::Timestamp {
                    seconds: 0,
                    nanos: 2_000_000_000,
                })
            }),
            Code::InvalidArgument,
            "claim.first_seen_time",
        ),
        (
            "far future",
            register_with("", |c| {
                c.image.as_mut().unwrap().published_time = Some(prost_types::Timestamp {
                    seconds: 200_000_000_000,
                    nanos: 0,
                })
            }),
            Code::InvalidArgument,
            "claim.image.published_time",
        ),
        (
            "request_id with space",
            register_with("a b", |_| {}),
            Code::InvalidArgument,
            "request_id",
        ),
        (
            "request_id too long",
            register_with(&long(129), |_| {}),
            Code::InvalidArgument,
            "request_id",
        ),
        (
            "request_id reused",
            register_with("seed-claim", |c| c.claim_text = "different".into()),
            Code::AlreadyExists,
            "request_id",
        ),
        // GetClaim / GetVerificationStatus
        ("empty name", get(""), Code::InvalidArgument, "name"),
        (
            "malformed name",
            get("claims/abc"),
            Code::InvalidArgument,
            "name",
        ),
        ("zero id", get("claims/0"), Code::InvalidArgument, "name"),
        (
            "leading zero",
            get("claims/01"),
            Code::InvalidArgument,
            "name",
        ),
        (
            "wrong collection",
            get("photos/1"),
            Code::InvalidArgument,
            "name",
        ),
        ("unknown claim", get(missing), Code::NotFound, missing),
        (
            "status malformed",
            status_of("claims/"),
            Code::InvalidArgument,
            "claim",
        ),
        (
            "status unknown",
            status_of(missing),
            Code::NotFound,
            missing,
        ),
        // ListClaims
        (
            "negative page size",
            list_claims(pb::ListClaimsRequest {
                page_size: -1,
                ..Default::default()
            }),
            Code::InvalidArgument,
            "page_size",
        ),
        (
            "garbage token",
            list_claims(pb::ListClaimsRequest {
                page_token: "garbage".into(),
                ..Default::default()
            }),
            Code::InvalidArgument,
            "page_token",
        ),
        (
            "foreign token",
            list_claims(pb::ListClaimsRequest {
                page_token: foreign_token.clone(),
                ..Default::default()
            }),
            Code::InvalidArgument,
            "page_token",
        ),
        (
            "unknown state",
            list_claims(pb::ListClaimsRequest {
                state: 99,
                ..Default::default()
            }),
            Code::InvalidArgument,
            "state",
        ),
        // AttachOfficialResponse
        (
            "malformed parent",
            attach_with(|r| r.parent = "claims/x".into()),
            Code::InvalidArgument,
            "parent",
        ),
        (
            "unknown parent",
            attach_with(|r| r.parent = "claims/999999".into()),
            Code::NotFound,
            "claims/999999",
        ),
        (
            "no response",
            attach_with(|r| r.official_response = None),
            Code::InvalidArgument,
            "official_response",
        ),
        (
            "no responder",
            attach_with(|r| r.official_response.as_mut().unwrap().responder = None),
            Code::InvalidArgument,
            "official_response.responder",
        ),
        (
            "empty organization",
            attach_with(|r| {
                r.official_response
                    .as_mut()
                    .unwrap()
                    .responder
                    .as_mut()
                    .unwrap()
                    .organization
                    .clear()
            }),
            Code::InvalidArgument,
            "official_response.responder.organization",
        ),
        (
            "unknown role",
            attach_with(|r| {
                r.official_response
                    .as_mut()
                    .unwrap()
                    .responder
                    .as_mut()
                    .unwrap()
                    .role = 42
            }),
            Code::InvalidArgument,
            "official_response.responder.role",
        ),
        (
            "unspecified stance",
            attach_with(|r| r.official_response.as_mut().unwrap().stance = 0),
            Code::InvalidArgument,
            "official_response.stance",
        ),
        (
            "unknown stance",
            attach_with(|r| r.official_response.as_mut().unwrap().stance = 99),
            Code::InvalidArgument,
            "official_response.stance",
        ),
        (
            "unspecified kind",
            attach_with(|r| r.official_response.as_mut().unwrap().kind = 0),
            Code::InvalidArgument,
            "official_response.kind",
        ),
        (
            "empty text",
            attach_with(|r| r.official_response.as_mut().unwrap().text.clear()),
            Code::InvalidArgument,
            "official_response.text",
        ),
        (
            "text too long",
            attach_with(|r| r.official_response.as_mut().unwrap().text = long(50_001)),
            Code::InvalidArgument,
            "official_response.text",
        ),
        (
            "bad response language",
            attach_with(|r| {
                r.official_response.as_mut().unwrap().language = "english language".into()
            }),
            Code::InvalidArgument,
            "official_response.language",
        ),
        (
            "bad source url",
            attach_with(|r| {
                r.official_response.as_mut().unwrap().source_url = "mailto:un@un.org".into()
            }),
            Code::InvalidArgument,
            "official_response.source_url",
        ),
        (
            "malformed in_reply_to",
            attach_with(|r| {
                r.official_response.as_mut().unwrap().in_reply_to = "claims/1/responses/1".into()
            }),
            Code::InvalidArgument,
            "official_response.in_reply_to",
        ),
        (
            "in_reply_to another claim",
            attach_with(|r| {
                r.official_response.as_mut().unwrap().in_reply_to =
                    "claims/999999/officialResponses/1".into()
            }),
            Code::InvalidArgument,
            "official_response.in_reply_to",
        ),
        (
            "in_reply_to unknown response",
            attach_with(|r| {
                r.official_response.as_mut().unwrap().in_reply_to =
                    "claims/1/officialResponses/9".into()
            }),
            Code::InvalidArgument,
            "official_response.in_reply_to",
        ),
        (
            "attach request_id reused",
            attach_with(|r| r.request_id = "seed-response".into()),
            Code::AlreadyExists,
            "request_id",
        ),
        // ListOfficialResponses / ListClaimEvents
        (
            "responses malformed parent",
            list_responses(pb::ListOfficialResponsesRequest {
                parent: "claims".into(),
                ..Default::default()
            }),
            Code::InvalidArgument,
            "parent",
        ),
        (
            "responses unknown parent",
            list_responses(pb::ListOfficialResponsesRequest {
                parent: missing.into(),
                ..Default::default()
            }),
            Code::NotFound,
            missing,
        ),
        (
            "responses negative page",
            list_responses(pb::ListOfficialResponsesRequest {
                parent: name.clone(),
                page_size: -5,
                ..Default::default()
            }),
            Code::InvalidArgument,
            "page_size",
        ),
        (
            "events malformed claim",
            list_events(pb::ListClaimEventsRequest {
                claim: "claims/1/x".into(),
                ..Default::default()
            }),
            Code::InvalidArgument,
            "claim",
        ),
        (
            "events unknown claim",
            list_events(pb::ListClaimEventsRequest {
                claim: missing.into(),
                ..Default::default()
            }),
            Code::NotFound,
            missing,
        ),
        (
            "events token of another claim",
            list_events(pb::ListClaimEventsRequest {
                claim: name.clone(),
                page_token: foreign_token.clone(),
                ..Default::default()
            }),
            Code::InvalidArgument,
            "page_token",
        ),
        // SetVerdict
        (
            "verdict malformed claim",
            verdict_with(|r| r.claim = "claims/-1".into()),
            Code::InvalidArgument,
            "claim",
        ),
        (
            "verdict unknown claim",
            verdict_with(|r| r.claim = "claims/999999".into()),
            Code::NotFound,
            "claims/999999",
        ),
        (
            "unspecified rating",
            verdict_with(|r| r.claim_rating = 0),
            Code::InvalidArgument,
            "claim_rating",
        ),
        (
            "unknown rating",
            verdict_with(|r| r.claim_rating = 9),
            Code::InvalidArgument,
            "claim_rating",
        ),
        (
            "unspecified authenticity",
            verdict_with(|r| r.media_authenticity = 0),
            Code::InvalidArgument,
            "media_authenticity",
        ),
        (
            "no rationale",
            verdict_with(|r| r.rationale.clear()),
            Code::InvalidArgument,
            "rationale",
        ),
        (
            "rationale too long",
            verdict_with(|r| r.rationale = long(10_001)),
            Code::InvalidArgument,
            "rationale",
        ),
        (
            "stale etag",
            verdict_with(|r| r.etag = "1-1".into()),
            Code::Aborted,
            "etag",
        ),
        (
            "made-up etag",
            verdict_with(|r| r.etag = "nonsense".into()),
            Code::Aborted,
            "etag",
        ),
        // Over the message size limit: refused by the transport before any handler runs.
        (
            "oversized message",
            register_with("", |c| {
                c.claim_text = long(photoclaim::server::DEFAULT_MAX_MESSAGE_BYTES + 1)
            }),
            Code::OutOfRange,
            "length too large",
        ),
    ];

    let mut failures = Vec::new();
    for (label, call, code, field) in cases {
        match call.await {
            Ok(()) => failures.push(format!("{label}: succeeded, expected {code:?}")),
            Err(status) => {
                if status.code() != code {
                    failures.push(format!(
                        "{label}: got {:?} ({}), expected {code:?}",
                        status.code(),
                        status.message()
                    ));
                } else if !status.message().contains(field) {
                    failures.push(format!(
                        "{label}: message {:?} does not name {field}",
                        status.message()
                    ));
                } else if code == Code::InvalidArgument {
                    let named = status
                        .get_details_bad_request()
                        .map(|b| b.field_violations.iter().any(|v| v.field == field))
                        .unwrap_or(false);
                    if !named {
                        failures.push(format!("{label}: no BadRequest violation for {field}"));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "bad inputs mishandled:\n{}",
        failures.join("\n")
    );
    assert_eq!(
        snapshot(&mut client).await,
        before,
        "a refused request changed the store"
    );
    server.stop().await;
}
