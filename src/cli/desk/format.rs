//! Plain-text output of the desk CLI: enum values spelled as the flags take
//! them (`partly-accurate`), labelled fields, one-line event details.

use crate::cli::keys::format_time;
use crate::pb;

/// `CLAIM_RATING_PARTLY_ACCURATE` -> `partly-accurate`: the spelling the flags take.
pub(super) fn word(proto_name: Option<&str>, prefix: &str, value: i32) -> String {
    match proto_name {
        Some(name) => name
            .strip_prefix(prefix)
            .unwrap_or(name)
            .to_ascii_lowercase()
            .replace('_', "-"),
        None => format!("({value})"),
    }
}

pub(super) fn state_word(v: i32) -> String {
    let name = pb::VerificationState::try_from(v).ok();
    word(name.map(|n| n.as_str_name()), "VERIFICATION_STATE_", v)
}

pub(super) fn rating_word(v: i32) -> String {
    let name = pb::ClaimRating::try_from(v).ok();
    word(name.map(|n| n.as_str_name()), "CLAIM_RATING_", v)
}

pub(super) fn media_word(v: i32) -> String {
    let name = pb::MediaAuthenticity::try_from(v).ok();
    word(name.map(|n| n.as_str_name()), "MEDIA_AUTHENTICITY_", v)
}

pub(super) fn stance_word(v: i32) -> String {
    let name = pb::Stance::try_from(v).ok();
    word(name.map(|n| n.as_str_name()), "STANCE_", v)
}

pub(super) fn kind_word(v: i32) -> String {
    let name = pb::ResponseKind::try_from(v).ok();
    word(name.map(|n| n.as_str_name()), "RESPONSE_KIND_", v)
}

pub(super) fn role_word(v: i32) -> String {
    let name = pb::ResponderRole::try_from(v).ok();
    word(name.map(|n| n.as_str_name()), "RESPONDER_ROLE_", v)
}

pub(super) fn event_type_word(v: i32) -> String {
    let name = pb::ClaimEventType::try_from(v).ok();
    word(name.map(|n| n.as_str_name()), "CLAIM_EVENT_TYPE_", v)
}

/// `false / decontextualized`, or `-` without a verdict.
pub(super) fn verdict_words(status: &pb::VerificationStatus) -> String {
    if status.claim_rating == 0 && status.media_authenticity == 0 {
        "-".into()
    } else {
        format!(
            "{} / {}",
            rating_word(status.claim_rating),
            media_word(status.media_authenticity)
        )
    }
}

/// The first `max` characters of `text` on one line, with `…` if cut.
pub(super) fn excerpt(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        flat
    } else {
        let cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// Prints `label: value` if the value is not empty.
pub(super) fn field(label: &str, value: &str) {
    if !value.is_empty() {
        crate::outln!("  {:<16} {value}", format!("{label}:"));
    }
}

pub(super) fn time_field(label: &str, t: Option<&prost_types::Timestamp>) {
    if t.is_some() {
        field(label, &format_time(t));
    }
}

pub(super) fn print_claim_body(claim: &pb::Claim) {
    field("claim", &claim.claim_text);
    field("claimant", &claim.claimant);
    field("language", &claim.language);
    for url in &claim.appearance_urls {
        field("appeared at", url);
    }
    time_field("first seen", claim.first_seen_time.as_ref());
    time_field("event", claim.event_time.as_ref());
    field("tags", &claim.tags.join(", "));
    if let Some(image) = &claim.image {
        field("image", &image.source_url);
        field("image sha256", &image.sha256);
        field("image pdq", &image.pdq);
        if !image.pdq.is_empty() && image.pdq_quality > 0 {
            let note = if !crate::domain::pdq::is_reliable(image.pdq_quality) {
                " (too featureless to match near duplicates)"
            } else {
                ""
            };
            field(
                "pdq quality",
                &format!("{} of 100{note}", image.pdq_quality),
            );
        }
        if image.width > 0 && image.height > 0 {
            field(
                "image size",
                &format!("{} x {} pixels", image.width, image.height),
            );
        }
        field("image format", &image.format);
        field("credit", &image.credit);
        field("publisher", &image.publisher);
        time_field("published", image.published_time.as_ref());
        time_field("captured", image.captured_time.as_ref());
        field("location", &image.location);
        field("caption", &image.caption);
        if let Some(c) = &image.content_credentials {
            print_credentials(c);
        }
    }
    time_field("registered", claim.create_time.as_ref());
    time_field("updated", claim.update_time.as_ref());
}

pub(super) fn print_status_body(status: &pb::VerificationStatus) {
    field("state", &state_word(status.state));
    if status.claim_rating != 0 {
        field("claim rating", &rating_word(status.claim_rating));
    }
    if status.media_authenticity != 0 {
        field("media", &media_word(status.media_authenticity));
    }
    field("rationale", &status.rationale);
    field("reviewed by", &status.reviewed_by);
    time_field("reviewed", status.review_time.as_ref());
    field(
        "responses",
        &format!(
            "{} ({} supporting, {} refuting, {} adding context)",
            status.official_response_count,
            status.supporting_count,
            status.refuting_count,
            status.context_count
        ),
    );
    if let Some(latest) = &status.latest_official_response {
        let organization = latest
            .responder
            .as_ref()
            .map(|r| r.organization.as_str())
            .unwrap_or_default();
        field(
            "latest response",
            &format!("{} ({organization})", latest.name),
        );
    }
    if let Some(s) = &status.earliest_sighting {
        field("earliest seen", &sighting_words(s));
    }
    field("etag", &status.etag);
    print_findings(&status.verdict_findings);
}

/// `valid`, `trusted`, `invalid`.
pub(super) fn credential_state_word(v: i32) -> String {
    let name = pb::CredentialState::try_from(v).ok();
    word(name.map(|n| n.as_str_name()), "CREDENTIAL_STATE_", v)
}

/// `rotated-90`, `mirrored-horizontally`, `identity`.
pub(super) fn transformation_word(v: i32) -> String {
    let name = pb::ImageTransformation::try_from(v).ok();
    word(name.map(|n| n.as_str_name()), "IMAGE_TRANSFORMATION_", v)
}

/// A sighting on one line: when, from what, of which copy.
pub(super) fn sighting_words(s: &pb::Sighting) -> String {
    let source = pb::SightingSource::try_from(s.source).ok();
    let source = word(
        source.map(|n| n.as_str_name()),
        "SIGHTING_SOURCE_",
        s.source,
    );
    let copy = if s.claim.is_empty() {
        "this image".to_string()
    } else if s.exact {
        format!("{}, same image", s.claim)
    } else {
        format!(
            "{}, near duplicate at distance {}{}",
            s.claim,
            s.distance,
            match s.transformation {
                0 | 1 => String::new(),
                t => format!(", {}", transformation_word(t)),
            }
        )
    };
    format!("{} ({source}; {copy})", format_time(s.time.as_ref()))
}

/// Content Credentials as labelled fields.
pub(super) fn print_credentials(c: &pb::ContentCredentials) {
    for line in credentials_lines(c) {
        crate::outln!("{line}");
    }
}

/// [`print_credentials`]' lines.
pub(super) fn credentials_lines(c: &pb::ContentCredentials) -> Vec<String> {
    let mut lines = Vec::new();
    let mut field = |label: &str, value: &str| {
        if !value.is_empty() {
            lines.push(format!("  {:<16} {value}", format!("{label}:")));
        }
    };
    let trust = match pb::CredentialState::try_from(c.state) {
        Ok(pb::CredentialState::Trusted) => " (signer chains to a configured trust anchor)",
        Ok(pb::CredentialState::Valid) => " (signed; signer not on the trust list)",
        Ok(pb::CredentialState::Invalid) => " (do not rely on its statements)",
        _ => "",
    };
    field(
        "credentials",
        &format!("{}{trust}", credential_state_word(c.state)),
    );
    field("  generator", &c.claim_generator);
    field("  signer", &c.signer_subject);
    field("  issuer", &c.signer_issuer);
    if c.signing_time.is_some() {
        field("  signed", &format_time(c.signing_time.as_ref()));
    }
    for a in &c.actions {
        let source = a.digital_source_type.rsplit('/').next().unwrap_or_default();
        field(
            "  action",
            &if source.is_empty() {
                a.action.clone()
            } else {
                format!("{} ({source})", a.action)
            },
        );
    }
    for i in &c.ingredients {
        field("  ingredient", &format!("{} ({})", i.title, i.relationship));
    }
    for code in c
        .validation_codes
        .iter()
        .filter(|v| v.kind != pb::ValidationCodeKind::Success as i32)
    {
        field(
            "  note",
            &format!("{} {}", code.code, excerpt(&code.explanation, 80)),
        );
    }
    lines
}

/// Findings of the pre-publication checks, one a line, errors first.
pub(super) fn print_findings(findings: &[pb::VerdictFinding]) {
    for f in findings {
        let severity = if f.severity == pb::FindingSeverity::Error as i32 {
            "ERROR"
        } else {
            "warning"
        };
        crate::outln!("  {severity} {}: {}", f.code, f.message);
    }
}

pub(super) fn print_response_body(response: &pb::OfficialResponse) {
    if let Some(responder) = &response.responder {
        field("organization", &responder.organization);
        field("person", &responder.person);
        if responder.role != 0 {
            field("role", &role_word(responder.role));
        }
    }
    field("kind", &kind_word(response.kind));
    field("stance", &stance_word(response.stance));
    field("in reply to", &response.in_reply_to);
    field("text", &response.text);
    field("language", &response.language);
    field("source", &response.source_url);
    time_field("issued", response.issue_time.as_ref());
    field("attached by", &response.attached_by);
}

pub(super) fn event_details(event: &pb::ClaimEvent) -> String {
    use pb::claim_event::Details;
    match &event.details {
        Some(Details::ClaimRegistered(r)) => format!("\"{}\"", excerpt(&r.claim_text, 60)),
        Some(Details::OfficialResponseAttached(r)) => format!(
            "{} {} {} from {}",
            r.official_response,
            kind_word(r.kind),
            stance_word(r.stance),
            r.organization
        ),
        Some(Details::VerdictSet(v)) => {
            let mut text = format!(
                "{} / {}",
                rating_word(v.claim_rating),
                media_word(v.media_authenticity)
            );
            if v.previous_claim_rating != 0 {
                text.push_str(&format!(
                    " (was {} / {})",
                    rating_word(v.previous_claim_rating),
                    media_word(v.previous_media_authenticity)
                ));
            }
            text
        }
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_values_print_as_the_flags_spell_them() {
        assert_eq!(
            rating_word(pb::ClaimRating::PartlyAccurate as i32),
            "partly-accurate"
        );
        assert_eq!(
            role_word(pb::ResponderRole::InternationalOrganization as i32),
            "international-organization"
        );
        assert_eq!(state_word(99), "(99)");
    }

    #[test]
    fn excerpts_stay_on_one_line_and_say_when_cut() {
        assert_eq!(excerpt("short", 10), "short");
        assert_eq!(excerpt("a\nb", 10), "a b");
        assert_eq!(excerpt("Kazakhstan", 5), "Kaza…");
    }
}
