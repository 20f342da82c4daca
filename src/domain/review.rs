//! schema.org JSON-LD for a resolved claim: a `ClaimReview` of the claim and,
//! when the claim has an image and its verdict rates the image, a
//! `MediaReview`. Pure functions of the claim record and the publisher's
//! settings: no tonic, no store.
//!
//! Rating map (ClaimReview `reviewRating`, `worstRating` 1, `bestRating` 5):
//!
//! | ClaimRating       | ratingValue | alternateName     |
//! |-------------------|-------------|-------------------|
//! | `FALSE`           | 1           | `False`           |
//! | `MISLEADING`      | 2           | `Misleading`      |
//! | `UNPROVEN`        | 3           | `Unproven`        |
//! | `PARTLY_ACCURATE` | 4           | `Partly accurate` |
//! | `ACCURATE`        | 5           | `Accurate`        |
//!
//! Media authenticity map (MediaReview `mediaAuthenticityCategory`, members
//! of schema.org's `MediaManipulationRatingEnumeration`): `ORIGINAL` →
//! `OriginalMediaContent`, `DECONTEXTUALIZED` → `DecontextualizedContent`,
//! `EDITED_OR_CROPPED` → `EditedOrCroppedContent`, `TRANSFORMED` →
//! `TransformedContent`, `STAGED` → `StagedContent`, `SATIRE_OR_PARODY` →
//! `SatireOrParodyContent`, each as its full `https://schema.org/…` URL.

use serde_json::{json, Map, Value};

use super::validate::check_url;
use super::{
    Claim, ClaimRating, Error, MediaAuthenticity, Precondition, Result, Timestamp,
    VerificationState,
};

/// The JSON-LD `@context` of every document.
pub const SCHEMA_ORG: &str = "https://schema.org";

/// The placeholder of [`Publisher::review_url_template`] replaced by the
/// claim's id.
pub const ID_PLACEHOLDER: &str = "{id}";

/// Who publishes the reviews: the `author` of every ClaimReview and
/// MediaReview, and where each review lives on the web.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Publisher {
    /// The organization's name; empty: reviews carry no `author`.
    pub name: String,
    /// The organization's home page (http or https); empty: none.
    pub url: String,
    /// The review page of a claim, with `{id}` standing for the claim id,
    /// e.g. `https://factcheck.example/claims/{id}`; empty: reviews carry no
    /// `url`.
    pub review_url_template: String,
}

impl Publisher {
    /// Checks the settings once, at start-up: URLs must be absolute http(s)
    /// with a host, and the template must contain `{id}` (otherwise every
    /// claim would get the same page). `field` names come from the CLI flags.
    pub fn validate(&self) -> Result<()> {
        let mut problems = Vec::new();
        if self.name.chars().any(char::is_control) || self.name.chars().count() > 500 {
            problems.push((
                "publisher-name",
                "must be at most 500 characters, without control characters".to_string(),
            ));
        }
        if !self.url.is_empty() {
            if let Err(why) = check_url(&self.url) {
                problems.push(("publisher-url", why));
            }
        }
        if !self.review_url_template.is_empty() {
            if !self.review_url_template.contains(ID_PLACEHOLDER) {
                problems.push((
                    "review-url-template",
                    format!("must contain {ID_PLACEHOLDER}, which stands for the claim id"),
                ));
            } else if let Err(why) =
                check_url(&self.review_url_template.replace(ID_PLACEHOLDER, "1"))
            {
                problems.push(("review-url-template", why));
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        Err(Error::InvalidArgument(
            problems
                .into_iter()
                .map(|(field, description)| super::FieldViolation {
                    field: field.to_string(),
                    description,
                })
                .collect(),
        ))
    }

    /// The review page of claim `id`, if a template is configured.
    pub fn review_url(&self, id: u64) -> Option<String> {
        (!self.review_url_template.is_empty()).then(|| {
            self.review_url_template
                .replace(ID_PLACEHOLDER, &id.to_string())
        })
    }

    fn author(&self) -> Option<Value> {
        if self.name.is_empty() {
            return None;
        }
        let mut author = json!({"@type": "Organization", "name": self.name});
        if !self.url.is_empty() {
            author["url"] = json!(self.url);
        }
        Some(author)
    }
}

/// The JSON-LD documents of one claim.
#[derive(Clone, Debug, PartialEq)]
pub struct Reviews {
    /// The ClaimReview.
    pub claim_review: Value,
    /// The MediaReview; `None` when the claim has no image or the verdict
    /// does not rate it.
    pub media_review: Option<Value>,
}

/// `ratingValue` and `alternateName` of a claim rating; `None` for values
/// that are not a rating.
pub fn claim_rating(value: i32) -> Option<(i32, &'static str)> {
    match ClaimRating::try_from(value).ok()? {
        ClaimRating::Unspecified => None,
        ClaimRating::False => Some((1, "False")),
        ClaimRating::Misleading => Some((2, "Misleading")),
        ClaimRating::Unproven => Some((3, "Unproven")),
        ClaimRating::PartlyAccurate => Some((4, "Partly accurate")),
        ClaimRating::Accurate => Some((5, "Accurate")),
    }
}

/// The schema.org `MediaManipulationRatingEnumeration` member of a media
/// authenticity rating, as a full URL; `None` for values that are not one.
pub fn media_category(value: i32) -> Option<&'static str> {
    Some(match MediaAuthenticity::try_from(value).ok()? {
        MediaAuthenticity::Unspecified => return None,
        MediaAuthenticity::Original => "https://schema.org/OriginalMediaContent",
        MediaAuthenticity::Decontextualized => "https://schema.org/DecontextualizedContent",
        MediaAuthenticity::EditedOrCropped => "https://schema.org/EditedOrCroppedContent",
        MediaAuthenticity::Transformed => "https://schema.org/TransformedContent",
        MediaAuthenticity::Staged => "https://schema.org/StagedContent",
        MediaAuthenticity::SatireOrParody => "https://schema.org/SatireOrParodyContent",
    })
}

/// `YYYY-MM-DD` (UTC) of a timestamp.
fn date(t: Timestamp) -> String {
    let text = prost_types::Timestamp {
        seconds: t.seconds,
        nanos: 0,
    }
    .to_string();
    text.get(..10).unwrap_or(&text).to_string()
}

fn state_name(state: i32) -> &'static str {
    match VerificationState::try_from(state) {
        Ok(VerificationState::Unverified) => "UNVERIFIED",
        Ok(VerificationState::InReview) => "IN_REVIEW",
        Ok(VerificationState::Disputed) => "DISPUTED",
        Ok(VerificationState::Resolved) => "RESOLVED",
        _ => "UNSPECIFIED",
    }
}

/// Sets `key` only when there is a value, so that absent facts are left out
/// rather than published as empty strings.
fn put(object: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(value) = value {
        object.insert(key.to_string(), value);
    }
}

fn text(value: &str) -> Option<Value> {
    (!value.is_empty()).then(|| json!(value))
}

/// Builds the reviews of `claim`. `FailedPrecondition` (naming the state)
/// unless the claim is resolved.
pub fn reviews(claim: &Claim, publisher: &Publisher) -> Result<Reviews> {
    let verdict = match (&claim.verdict, claim.state == VerificationState::Resolved as i32) {
        (Some(verdict), true) => verdict,
        _ => {
            return Err(Error::FailedPrecondition(Precondition {
                kind: "NOT_RESOLVED".into(),
                subject: format!("claims/{}", claim.id),
                description: format!(
                    "claims/{} is {}, not RESOLVED: only a claim with a verdict can be published (SetVerdict first)",
                    claim.id,
                    state_name(claim.state)
                ),
            }))
        }
    };
    let Some((rating_value, rating_name)) = claim_rating(verdict.claim_rating) else {
        return Err(Error::Internal(format!(
            "claims/{} is resolved with claim rating {}",
            claim.id, verdict.claim_rating
        )));
    };
    let author = publisher.author();
    let review_date = verdict.review_time.map(|t| json!(date(t)));
    let review_url = publisher.review_url(claim.id).map(Value::from);

    let mut item = Map::new();
    item.insert("@type".into(), json!("Claim"));
    if !claim.appearance_urls.is_empty() {
        let appearances: Vec<Value> = claim
            .appearance_urls
            .iter()
            .map(|url| json!({"@type": "CreativeWork", "url": url}))
            .collect();
        let mut first = appearances[0].clone();
        if let Some(seen) = claim.first_seen_time {
            first["datePublished"] = json!(date(seen));
        }
        item.insert("appearance".into(), Value::Array(appearances));
        item.insert("firstAppearance".into(), first);
    }
    put(
        &mut item,
        "author",
        (!claim.claimant.is_empty())
            .then(|| json!({"@type": "Organization", "name": claim.claimant})),
    );
    put(
        &mut item,
        "datePublished",
        claim.first_seen_time.map(|t| json!(date(t))),
    );
    put(&mut item, "inLanguage", text(&claim.language));

    let mut review = Map::new();
    review.insert("@context".into(), json!(SCHEMA_ORG));
    review.insert("@type".into(), json!("ClaimReview"));
    put(&mut review, "url", review_url.clone());
    review.insert("claimReviewed".into(), json!(claim.claim_text));
    review.insert("itemReviewed".into(), Value::Object(item));
    put(&mut review, "author", author.clone());
    put(&mut review, "datePublished", review_date.clone());
    review.insert(
        "reviewRating".into(),
        json!({
            "@type": "Rating",
            "ratingValue": rating_value,
            "bestRating": 5,
            "worstRating": 1,
            "alternateName": rating_name,
        }),
    );
    put(&mut review, "reviewBody", text(&verdict.rationale));

    let media_review = match (&claim.image, media_category(verdict.media_authenticity)) {
        (Some(image), Some(category)) => {
            let mut object = Map::new();
            object.insert("@type".into(), json!("ImageObject"));
            put(&mut object, "contentUrl", text(&image.source_url));
            put(&mut object, "sha256", text(&image.sha256));
            put(&mut object, "caption", text(&image.caption));
            put(&mut object, "creditText", text(&image.credit));
            put(
                &mut object,
                "publisher",
                (!image.publisher.is_empty())
                    .then(|| json!({"@type": "Organization", "name": image.publisher})),
            );
            put(
                &mut object,
                "datePublished",
                image.published_time.map(|t| json!(date(t))),
            );
            put(
                &mut object,
                "contentLocation",
                (!image.location.is_empty())
                    .then(|| json!({"@type": "Place", "name": image.location})),
            );
            if image.width > 0 && image.height > 0 {
                object.insert("width".into(), json!(image.width));
                object.insert("height".into(), json!(image.height));
            }
            let mut media = Map::new();
            media.insert("@context".into(), json!(SCHEMA_ORG));
            media.insert("@type".into(), json!("MediaReview"));
            put(&mut media, "url", review_url);
            media.insert("mediaAuthenticityCategory".into(), json!(category));
            put(&mut media, "originalMediaLink", text(&image.source_url));
            put(
                &mut media,
                "originalMediaContextDescription",
                text(&verdict.rationale),
            );
            media.insert(
                "itemReviewed".into(),
                json!({
                    "@type": "MediaReviewItem",
                    "mediaItemAppearance": [Value::Object(object)],
                }),
            );
            put(&mut media, "author", author);
            put(&mut media, "datePublished", review_date);
            Some(Value::Object(media))
        }
        _ => None,
    };
    Ok(Reviews {
        claim_review: Value::Object(review),
        media_review,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Image, Verdict};

    fn publisher() -> Publisher {
        Publisher {
            name: "Example Fact Check".into(),
            url: "https://factcheck.example".into(),
            review_url_template: "https://factcheck.example/claims/{id}".into(),
        }
    }

    fn resolved(rating: ClaimRating, media: MediaAuthenticity) -> Claim {
        Claim {
            id: 7,
            claim_text: "UN peacekeepers in Kazakhstan".into(),
            claimant: "social media posts".into(),
            state: VerificationState::Resolved as i32,
            image: Some(Image {
                source_url: "https://apnews.com/hub/kazakhstan".into(),
                ..Default::default()
            }),
            verdict: Some(Verdict {
                claim_rating: rating as i32,
                media_authenticity: media as i32,
                rationale: "Kazakh troops.".into(),
                reviewed_by: "desk".into(),
                review_time: Some(Timestamp {
                    seconds: 1_642_291_200,
                    nanos: 5,
                }),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn every_claim_rating_maps_to_one_value_from_1_to_5() {
        let all = [
            (ClaimRating::False, 1, "False"),
            (ClaimRating::Misleading, 2, "Misleading"),
            (ClaimRating::Unproven, 3, "Unproven"),
            (ClaimRating::PartlyAccurate, 4, "Partly accurate"),
            (ClaimRating::Accurate, 5, "Accurate"),
        ];
        for (rating, value, name) in all {
            let claim = resolved(rating, MediaAuthenticity::Original);
            let r = reviews(&claim, &publisher()).unwrap().claim_review;
            assert_eq!(r["reviewRating"]["ratingValue"], value, "{rating:?}");
            assert_eq!(r["reviewRating"]["alternateName"], name, "{rating:?}");
        }
        assert_eq!(claim_rating(0), None);
        assert_eq!(claim_rating(6), None);
    }

    #[test]
    fn every_media_authenticity_maps_to_a_schema_org_member() {
        let names: Vec<&str> = (1..=6).filter_map(media_category).collect();
        assert_eq!(
            names,
            [
                "https://schema.org/OriginalMediaContent",
                "https://schema.org/DecontextualizedContent",
                "https://schema.org/EditedOrCroppedContent",
                "https://schema.org/TransformedContent",
                "https://schema.org/StagedContent",
                "https://schema.org/SatireOrParodyContent",
            ]
        );
        assert_eq!(media_category(0), None);
        assert_eq!(media_category(7), None);
    }

    #[test]
    fn an_unresolved_claim_is_a_failed_precondition_naming_its_state() {
        let mut claim = resolved(ClaimRating::False, MediaAuthenticity::Original);
        claim.state = VerificationState::Disputed as i32;
        match reviews(&claim, &publisher()) {
            Err(Error::FailedPrecondition(p)) => {
                assert_eq!(
                    (p.kind.as_str(), p.subject.as_str()),
                    ("NOT_RESOLVED", "claims/7")
                );
                assert!(p.description.contains("DISPUTED"), "{p:?}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn without_a_publisher_reviews_have_no_author_and_no_url() {
        let claim = resolved(ClaimRating::False, MediaAuthenticity::Decontextualized);
        let r = reviews(&claim, &Publisher::default()).unwrap();
        assert!(r.claim_review.get("author").is_none());
        assert!(r.claim_review.get("url").is_none());
        assert_eq!(r.claim_review["datePublished"], "2022-01-16");
        assert!(r.media_review.unwrap().get("author").is_none());
    }

    #[test]
    fn the_review_url_template_puts_in_the_claim_id() {
        assert_eq!(
            publisher().review_url(42).as_deref(),
            Some("https://factcheck.example/claims/42")
        );
    }

    #[test]
    fn publisher_settings_are_checked() {
        assert!(publisher().validate().is_ok());
        assert!(Publisher::default().validate().is_ok());
        let bad = Publisher {
            name: "ok".into(),
            url: "ftp://factcheck.example".into(),
            review_url_template: "https://factcheck.example/claims/".into(),
        };
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("publisher-url"), "{err}");
        assert!(err.contains("review-url-template"), "{err}");
        assert!(err.contains("{id}"), "{err}");
        let bad_template = Publisher {
            review_url_template: "javascript:{id}".into(),
            ..Default::default()
        };
        assert!(bad_template.validate().is_err());
    }
}
