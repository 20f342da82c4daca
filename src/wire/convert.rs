//! Conversions between the protobuf API (`crate::pb`) and domain records.
//!
//! Inbound conversions copy input fields only (output-only fields are
//! ignored, per AIP-203) and do not validate: that is the domain's job.

use prost::Message;

use crate::domain::{self, chain, rules, ClaimStatus, ClaimView, EventDetails};
use crate::pb;

use super::names::{claim_name, response_name};

/// Protobuf timestamp to domain timestamp.
pub fn time_in(t: Option<prost_types::Timestamp>) -> Option<domain::Timestamp> {
    t.map(|t| domain::Timestamp {
        seconds: t.seconds,
        nanos: t.nanos,
    })
}

/// Domain timestamp to protobuf timestamp.
pub fn time_out(t: Option<domain::Timestamp>) -> Option<prost_types::Timestamp> {
    t.map(|t| prost_types::Timestamp {
        seconds: t.seconds,
        nanos: t.nanos,
    })
}

/// The input fields of a claim to register.
/// Returns the draft and the image bytes (`image.content`), which are
/// analysed, not stored.
pub fn claim_draft(mut claim: pb::Claim) -> (domain::Claim, Vec<u8>) {
    let content = claim
        .image
        .as_mut()
        .map(|i| std::mem::take(&mut i.content))
        .unwrap_or_default();
    let draft = domain::Claim {
        claim_text: claim.claim_text,
        claimant: claim.claimant,
        language: claim.language,
        appearance_urls: claim.appearance_urls,
        first_seen_time: time_in(claim.first_seen_time),
        event_time: time_in(claim.event_time),
        tags: claim.tags,
        image: claim.image.map(|i| domain::Image {
            source_url: i.source_url,
            sha256: i.sha256,
            credit: i.credit,
            publisher: i.publisher,
            published_time: time_in(i.published_time),
            captured_time: time_in(i.captured_time),
            location: i.location,
            caption: i.caption,
            pdq: i.pdq,
            pdq_quality: i.pdq_quality,
            ..Default::default()
        }),
        ..Default::default()
    };
    (draft, content)
}

/// The input fields of a response to attach; `in_reply_to` is resolved by the
/// caller because it is a resource name.
pub fn response_draft(
    response: pb::OfficialResponse,
    in_reply_to: u64,
) -> domain::OfficialResponse {
    domain::OfficialResponse {
        responder: response.responder.map(|r| domain::Responder {
            organization: r.organization,
            person: r.person,
            role: r.role,
        }),
        kind: response.kind,
        stance: response.stance,
        text: response.text,
        language: response.language,
        source_url: response.source_url,
        issue_time: time_in(response.issue_time),
        in_reply_to,
        ..Default::default()
    }
}

/// A claim with its status, as the API returns it.
pub fn claim_out(view: &ClaimView) -> pb::Claim {
    claim_into(view.clone())
}

/// [`claim_out`] for an owned view: its strings are moved, not copied.
pub fn claim_into(view: ClaimView) -> pb::Claim {
    let ClaimView {
        claim: c,
        latest_response,
    } = view;
    let verification_status = Some(status_out(ClaimStatus::from(&c), latest_response.as_ref()));
    let etag = rules::etag(&c);
    pb::Claim {
        name: claim_name(c.id),
        claim_text: c.claim_text,
        claimant: c.claimant,
        language: c.language,
        appearance_urls: c.appearance_urls,
        first_seen_time: time_out(c.first_seen_time),
        event_time: time_out(c.event_time),
        tags: c.tags,
        image: c.image.map(|i| pb::Image {
            source_url: i.source_url,
            sha256: i.sha256,
            credit: i.credit,
            publisher: i.publisher,
            published_time: time_out(i.published_time),
            captured_time: time_out(i.captured_time),
            location: i.location,
            caption: i.caption,
            content: Vec::new(),
            pdq: i.pdq,
            pdq_quality: i.pdq_quality,
            width: i.width,
            height: i.height,
            format: i.format,
            content_credentials: i.content_credentials.as_ref().map(credentials_out),
            exif: i.exif.map(|e| pb::ImageExif {
                capture_time: e.capture_time,
                camera_make: e.camera_make,
                camera_model: e.camera_model,
                software: e.software,
                orientation: e.orientation,
                has_gps: e.has_gps,
                gps_latitude: e.gps_latitude,
                gps_longitude: e.gps_longitude,
            }),
        }),
        create_time: time_out(c.create_time),
        update_time: time_out(c.update_time),
        etag,
        verification_status,
    }
}

fn count(n: u64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// A claim's verification status, as the API returns it, from the claim's
/// status fields (moved into the reply) and its latest response.
pub fn status_out(
    status: ClaimStatus,
    latest: Option<&domain::OfficialResponse>,
) -> pb::VerificationStatus {
    let evidence = status.evidence.unwrap_or_default();
    let verdict = status.verdict.unwrap_or_default();
    pb::VerificationStatus {
        claim: claim_name(status.id),
        state: status.state,
        claim_rating: verdict.claim_rating,
        media_authenticity: verdict.media_authenticity,
        rationale: verdict.rationale,
        reviewed_by: verdict.reviewed_by,
        review_time: time_out(verdict.review_time),
        official_response_count: count(evidence.total),
        supporting_count: count(evidence.supporting),
        refuting_count: count(evidence.refuting),
        context_count: count(evidence.context),
        latest_official_response: latest.map(response_out),
        update_time: time_out(status.update_time),
        etag: rules::etag_of(status.id, status.last_sequence),
        chain_head: hex::encode(&status.chain_head),
        ..Default::default()
    }
}

/// A stored response, as the API returns it.
pub fn response_out(r: &domain::OfficialResponse) -> pb::OfficialResponse {
    pb::OfficialResponse {
        name: response_name(r.claim_id, r.id),
        responder: r.responder.as_ref().map(|p| pb::Responder {
            organization: p.organization.clone(),
            person: p.person.clone(),
            role: p.role,
        }),
        kind: r.kind,
        stance: r.stance,
        text: r.text.clone(),
        language: r.language.clone(),
        source_url: r.source_url.clone(),
        issue_time: time_out(r.issue_time),
        in_reply_to: if r.in_reply_to == 0 {
            String::new()
        } else {
            response_name(r.claim_id, r.in_reply_to)
        },
        create_time: time_out(r.create_time),
        attached_by: r.attached_by.clone(),
    }
}

/// A stored event, as the API returns it.
pub fn event_out(e: &domain::ClaimEvent) -> pb::ClaimEvent {
    use pb::claim_event::Details;
    let details = e.details.as_ref().map(|d| match d {
        EventDetails::Registered(r) => Details::ClaimRegistered(pb::ClaimRegistered {
            claim_text: r.claim_text.clone(),
            image_sha256: r.image_sha256.clone(),
            content_credentials: r.content_credentials.as_ref().map(credentials_out),
        }),
        EventDetails::ResponseAttached(a) => {
            Details::OfficialResponseAttached(pb::OfficialResponseAttached {
                official_response: response_name(e.claim_id, a.response_id),
                organization: a.organization.clone(),
                stance: a.stance,
                kind: a.kind,
            })
        }
        EventDetails::VerdictSet(v) => {
            let new = v.verdict.clone().unwrap_or_default();
            let old = v.previous.clone().unwrap_or_default();
            Details::VerdictSet(pb::VerdictSet {
                claim_rating: new.claim_rating,
                media_authenticity: new.media_authenticity,
                rationale: new.rationale,
                previous_claim_rating: old.claim_rating,
                previous_media_authenticity: old.media_authenticity,
            })
        }
    });
    pb::ClaimEvent {
        claim: claim_name(e.claim_id),
        sequence: i64::try_from(e.sequence).unwrap_or(i64::MAX),
        r#type: e.event_type,
        actor: e.actor.clone(),
        time: time_out(e.time),
        state: e.state,
        cursor: if e.log_position == 0 {
            String::new()
        } else {
            e.log_position.to_string()
        },
        prev_hash: hex::encode(&e.prev_hash),
        hash: hex::encode(chain::sha256(&e.encode_to_vec())),
        details,
    }
}

/// An API key as the admin API shows it (never its secret hash).
pub fn key_out(key: &domain::access::ApiKey) -> pb::ApiKey {
    pb::ApiKey {
        name: key.name.clone(),
        role: key.role,
        create_time: time_out(key.create_time),
        created_by: key.created_by.clone(),
        revoke_time: time_out(key.revoke_time),
        revoked_by: key.revoked_by.clone(),
        token_prefix: key.token_prefix(),
    }
}

/// An external review as the API shows it.
pub fn review_out(r: &crate::domain::external_review::ExternalReview) -> pb::ExternalReview {
    use crate::domain::external_review::Appearance;
    let appearance = |a: &Appearance| pb::ReviewAppearance {
        url: a.url.clone(),
        headline: a.headline.clone(),
        date_published: time_out(a.date_published),
        author: a.author.clone(),
    };
    pb::ExternalReview {
        name: crate::wire::names::external_review_name(r.id),
        kind: r.kind,
        review_url: r.review_url.clone(),
        publisher_name: r.publisher_name.clone(),
        publisher_url: r.publisher_url.clone(),
        author_name: r.author_name.clone(),
        claim_reviewed: r.claim_reviewed.clone(),
        claimant: r.claimant.clone(),
        rating: r.rating.as_ref().map(|x| pb::PublishedRating {
            value: x.value.clone(),
            best: x.best.clone(),
            worst: x.worst.clone(),
            alternate_name: x.alternate_name.clone(),
        }),
        date_published: time_out(r.date_published),
        language: r.language.clone(),
        appearances: r.appearances.iter().map(appearance).collect(),
        first_appearance: r.first_appearance.as_ref().map(appearance),
        claim_date: time_out(r.claim_date),
        media_url: r.media_url.clone(),
        media_sha256: r.media_sha256.clone(),
        media_authenticity_category: r.media_authenticity_category.clone(),
        headline: r.headline.clone(),
        create_time: time_out(r.create_time),
        update_time: time_out(r.update_time),
        imported_by: r.imported_by.clone(),
        revision: r.revision as i64,
    }
}

/// Content Credentials for the API. The record's message has the API's
/// field numbers and enum values (`domain::provenance`), so the bytes of
/// one are the other.
pub fn credentials_out(
    c: &crate::domain::provenance::ContentCredentials,
) -> pb::ContentCredentials {
    pb::ContentCredentials::decode(c.encode_to_vec().as_slice()).unwrap_or_default()
}
