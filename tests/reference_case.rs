//! The reference case (tests/data/kazbat-2022.json) end to end through a
//! real server and the generated client, checking each step of its
//! `expected_flow`.

mod common;

use std::collections::HashMap;

use common::*;
use photoclaim::pb;
use serde_json::Value;

fn s(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn time(v: &Value, key: &str) -> Option<prost_types::Timestamp> {
    let text = v.get(key)?.as_str()?;
    // The case only has midnight UTC dates: "YYYY-MM-DDT00:00:00Z".
    let (y, rest) = text.split_once('-')?;
    let (m, rest) = rest.split_once('-')?;
    let d = &rest[..2];
    let (y, m, d): (i64, i64, i64) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    // Days from civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(prost_types::Timestamp {
        seconds: days * 86_400,
        nanos: 0,
    })
}

fn enum_value<E: TryFrom<i32> + Copy>(name: &str, from_str: fn(&str) -> Option<E>) -> E {
    from_str(name).unwrap_or_else(|| panic!("unknown enum value {name}"))
}

#[tokio::test]
async fn kazbat_reference_case_follows_its_expected_flow() {
    let case = kazbat();
    let server = InProcess::in_memory().await;
    let mut client = server.client.clone();
    // The case's image has no sha256; the desk computed one from the AP photo's bytes.
    let sha = fake_sha256(0x2022_0108);

    let image = &case["image"];
    let image = pb::Image {
        source_url: s(image, "source_url"),
        sha256: sha.clone(),
        credit: s(image, "credit"),
        publisher: s(image, "publisher"),
        published_time: time(image, "published_time"),
        location: s(image, "location"),
        caption: s(image, "caption"),
        ..Default::default()
    };

    // Step 1: register both claims; the second reports the first as a claim on the same image.
    let mut names: HashMap<String, String> = HashMap::new();
    let mut first_name = String::new();
    for (i, claim) in case["claims"].as_array().unwrap().iter().enumerate() {
        let registered = register(
            &mut client,
            pb::Claim {
                claim_text: s(claim, "claim_text"),
                claimant: s(claim, "claimant"),
                language: s(claim, "language"),
                image: Some(image.clone()),
                tags: vec!["kazakhstan".into(), "un".into()],
                ..Default::default()
            },
            &format!("kazbat-register-{i}"),
        )
        .await;
        let created = registered.claim.unwrap();
        assert!(!registered.replayed);
        assert_eq!(
            created.verification_status.as_ref().unwrap().state(),
            pb::VerificationState::Unverified
        );
        if i == 0 {
            assert!(registered.same_image_claims.is_empty());
            first_name = created.name.clone();
        } else {
            let same: Vec<_> = registered
                .same_image_claims
                .iter()
                .map(|m| (m.claim.as_ref().unwrap().name.clone(), m.exact))
                .collect();
            assert_eq!(same, vec![(first_name.clone(), true)]);
        }
        names.insert(s(claim, "key"), created.name);
    }

    // Steps 2-4: attach each response to each claim it applies to, in order.
    let mut response_names: HashMap<(String, String), String> = HashMap::new();
    let un = names["un-deployment"].clone();
    for response in case["official_responses"].as_array().unwrap() {
        let key = s(response, "key");
        for applies in response["applies_to"].as_array().unwrap() {
            let claim_key = applies.as_str().unwrap().to_string();
            let parent = names[&claim_key].clone();
            let stance = enum_value(
                response["stance"][&claim_key].as_str().unwrap(),
                pb::Stance::from_str_name,
            );
            let responder = &response["responder"];
            let in_reply_to = response
                .get("in_reply_to")
                .and_then(Value::as_str)
                .map(|r| response_names[&(r.to_string(), claim_key.clone())].clone())
                .unwrap_or_default();
            let attached = attach(
                &mut client,
                &parent,
                pb::OfficialResponse {
                    responder: Some(pb::Responder {
                        organization: s(responder, "organization"),
                        person: s(responder, "person"),
                        role: enum_value(&s(responder, "role"), pb::ResponderRole::from_str_name)
                            as i32,
                    }),
                    kind: enum_value(&s(response, "kind"), pb::ResponseKind::from_str_name) as i32,
                    stance: stance as i32,
                    text: s(response, "text"),
                    language: s(response, "language"),
                    issue_time: time(response, "issue_time"),
                    in_reply_to: in_reply_to.clone(),
                    ..Default::default()
                },
                &format!("kazbat-{key}-{claim_key}"),
            )
            .await;
            assert!(attached
                .name
                .starts_with(&format!("{parent}/officialResponses/")));
            assert_eq!(attached.in_reply_to, in_reply_to);
            assert_eq!(attached.attached_by, "anonymous");
            response_names.insert((key.clone(), claim_key.clone()), attached.name);

            if claim_key == "un-deployment" {
                let st = status(&mut client, &un).await;
                match key.as_str() {
                    "un-inquiry" => {
                        assert_eq!(st.state(), pb::VerificationState::InReview);
                        assert_eq!((st.official_response_count, st.refuting_count), (1, 1));
                    }
                    "kazakh-mission-statement" => {
                        assert_eq!(st.state(), pb::VerificationState::InReview);
                        assert_eq!((st.official_response_count, st.refuting_count), (2, 2));
                        let latest = st.latest_official_response.unwrap();
                        assert_eq!(
                            latest.in_reply_to,
                            response_names[&("un-inquiry".to_string(), claim_key.clone())]
                        );
                    }
                    "expert-opinion" => {
                        assert_eq!(st.official_response_count, 3);
                        assert_eq!(
                            (st.refuting_count, st.context_count, st.supporting_count),
                            (2, 1, 0)
                        );
                    }
                    other => panic!("unexpected response {other}"),
                }
            }
        }
    }

    // Step 5: set each verdict with the current etag.
    for claim in case["claims"].as_array().unwrap() {
        let name = names[&s(claim, "key")].clone();
        let expected = &claim["expected_verdict"];
        let before = status(&mut client, &name).await;
        let rating = enum_value(&s(expected, "claim_rating"), pb::ClaimRating::from_str_name);
        let authenticity = enum_value(
            &s(expected, "media_authenticity"),
            pb::MediaAuthenticity::from_str_name,
        );
        let after = client
            .set_verdict(pb::SetVerdictRequest {
                claim: name.clone(),
                claim_rating: rating as i32,
                media_authenticity: authenticity as i32,
                rationale: s(expected, "rationale"),
                etag: before.etag.clone(),
            })
            .await
            .expect("set verdict")
            .into_inner();
        assert_eq!(after.state(), pb::VerificationState::Resolved);
        assert_eq!(after.claim_rating(), rating);
        assert_eq!(after.media_authenticity(), authenticity);
        assert_eq!(after.rationale, s(expected, "rationale"));
        assert_eq!(after.reviewed_by, "anonymous");
        assert!(after.review_time.is_some());
        assert_ne!(after.etag, before.etag);
    }

    // Step 6: the history lists registration, three attachments and the verdict, in order.
    let events = all_events(&mut client, &un).await;
    assert_gapless(&events);
    let types: Vec<_> = events.iter().map(|e| e.r#type()).collect();
    use pb::ClaimEventType as T;
    assert_eq!(
        types,
        [
            T::ClaimRegistered,
            T::OfficialResponseAttached,
            T::OfficialResponseAttached,
            T::OfficialResponseAttached,
            T::VerdictSet
        ]
    );
    for pair in events.windows(2) {
        let at = |e: &pb::ClaimEvent| e.time.map(|t| (t.seconds, t.nanos));
        assert!(at(&pair[0]) <= at(&pair[1]), "events are in time order");
    }
    for event in &events {
        assert_eq!(event.actor, "anonymous");
        assert!(event.time.is_some());
        assert!(event.details.is_some(), "every event says what changed");
    }
    assert_eq!(
        events.last().unwrap().state(),
        pb::VerificationState::Resolved
    );

    // The stored responses list in attachment order with their replies.
    let responses = client
        .list_official_responses(pb::ListOfficialResponsesRequest {
            parent: un.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let orgs: Vec<_> = responses
        .official_responses
        .iter()
        .map(|r| r.responder.as_ref().unwrap().organization.clone())
        .collect();
    assert_eq!(
        orgs,
        [
            "United Nations, Office of the Spokesperson",
            "Permanent Mission of the Republic of Kazakhstan to the United Nations",
            "Free University of Brussels"
        ]
    );
    server.stop().await;
}
