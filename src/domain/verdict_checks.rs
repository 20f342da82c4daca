//! Provenance of a claim's image as dates ([`Sighting`], the earliest one
//! across the image's copies), and the checks run on a verdict before it
//! is published ([`check_verdict`]): what in the record a verdict
//! contradicts. Pure functions over records; the API gathers the inputs.
//!
//! The rules (also in docs/provenance.md), each with a stable code:
//!
//! | code | severity | when |
//! |---|---|---|
//! | `ORIGINAL_BUT_GENERATIVE_CREDENTIALS` | error | the image is rated ORIGINAL and its valid or trusted Content Credentials declare a generative-AI source |
//! | `ORIGINAL_BUT_EDITED_CREDENTIALS` | warning | the image is rated ORIGINAL and its valid or trusted credentials record editing actions |
//! | `ORIGINAL_BUT_INVALID_CREDENTIALS` | warning | the image is rated ORIGINAL and its credentials are invalid (tampered with or broken) |
//! | `DECONTEXTUALIZED_WITHOUT_ORIGINAL` | error | the image is rated DECONTEXTUALIZED but nothing links its original: no http(s) URL in the rationale, no image `source_url` (its first publication, unless it is one of the claim's appearance URLs), no `source_url` of a response that refutes or adds context |
//! | `FIRST_SEEN_BEFORE_IMAGE` | warning | the claim was first seen before its own image was taken or published |
//! | `IMAGE_OLDER_THAN_EVENT` | error (warning when the older copy is a near duplicate farther than 16) | the image's earliest sighting predates the event the claim says it shows (by more than a day), yet the claim is rated ACCURATE or PARTLY_ACCURATE, or the image ORIGINAL |
//! | `ACCURATE_WITH_UNANSWERED_REFUTATION` | error | the claim is rated ACCURATE while an official response refutes it and no response answers that one (a reply that refutes again does not count) |

use super::pdq::Transformation;
use super::provenance::ContentCredentials;
use super::{Claim, ClaimRating, MediaAuthenticity, OfficialResponse, Stance, Timestamp, Verdict};

/// Where a dated sighting comes from. Numbers match the API's
/// `SightingSource`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SightingSource {
    /// A claim's first-seen time.
    ClaimFirstSeen = 1,
    /// An image's published time.
    ImagePublished = 2,
    /// EXIF DateTimeOriginal, read as UTC.
    ExifCapture = 3,
    /// An image's capture time as registered.
    ImageCaptured = 4,
}

/// One dated sighting of an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sighting {
    /// When.
    pub time: Timestamp,
    /// From what.
    pub source: SightingSource,
    /// The claim it comes from (`None`: the query picture's own EXIF).
    pub claim_id: Option<u64>,
    /// The same image (SHA-256) as the one asked about.
    pub exact: bool,
    /// PDQ distance of a near duplicate (0 when exact).
    pub distance: u32,
    /// How the sighted copy relates to the image asked about.
    pub transformation: Transformation,
}

/// How one claim's image relates to the image asked about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyOf {
    /// Same SHA-256.
    pub exact: bool,
    /// PDQ distance.
    pub distance: u32,
    /// Rotation or reflection.
    pub transformation: Transformation,
}

/// The dated facts of one claim about its image.
pub fn sightings_of(claim: &Claim, copy: CopyOf) -> Vec<Sighting> {
    let mut out = Vec::new();
    let mut push = |time: Option<Timestamp>, source| {
        if let Some(time) = time {
            out.push(Sighting {
                time,
                source,
                claim_id: Some(claim.id),
                exact: copy.exact,
                distance: copy.distance,
                transformation: copy.transformation,
            });
        }
    };
    push(claim.first_seen_time, SightingSource::ClaimFirstSeen);
    if let Some(image) = &claim.image {
        push(image.published_time, SightingSource::ImagePublished);
        push(image.captured_time, SightingSource::ImageCaptured);
        let exif = image.exif.as_ref();
        push(
            exif.and_then(|e| parse_exif_time(&e.capture_time)),
            SightingSource::ExifCapture,
        );
    }
    out
}

/// The earliest of `sightings`; on equal times the exact copy, then the
/// nearer, then the lower claim id.
pub fn earliest(sightings: impl IntoIterator<Item = Sighting>) -> Option<Sighting> {
    sightings.into_iter().min_by_key(|s| {
        (
            s.time,
            !s.exact,
            s.distance,
            s.claim_id.unwrap_or(0),
            s.source,
        )
    })
}

/// EXIF's "YYYY:MM:DD HH:MM:SS" (camera local time) read as UTC; `None`
/// when it is not a real date and time.
pub fn parse_exif_time(text: &str) -> Option<Timestamp> {
    let b = text.trim().as_bytes();
    if b.len() < 19
        || b[4] != b':'
        || b[7] != b':'
        || b[10] != b' '
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = std::str::from_utf8(&b[r]).ok()?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&mo)
        || d < 1
        || d > days_in[(mo - 1) as usize]
        || h > 23
        || mi > 59
        || s > 60
    {
        return None;
    }
    if y < 1826 {
        // Before the first photograph: a camera clock never set.
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(Timestamp {
        seconds: days * 86_400 + h * 3600 + mi * 60 + s.min(59),
        nanos: 0,
    })
}

/// How much a finding matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Blocks ExportClaimReview unless forced. Sorted first.
    Error = 2,
    /// Worth a look.
    Warning = 1,
}

/// One thing a verdict contradicts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Stable code (the table in the module docs).
    pub code: &'static str,
    /// Error or warning.
    pub severity: Severity,
    /// Plain words.
    pub message: String,
    /// The verdict's field it is about.
    pub field: &'static str,
}

/// What [`check_verdict`] looks at.
pub struct CheckInput<'a> {
    /// The claim as recorded.
    pub claim: &'a Claim,
    /// The verdict to check (not necessarily recorded yet).
    pub verdict: &'a Verdict,
    /// The claim's official responses.
    pub responses: &'a [OfficialResponse],
    /// The image's earliest sighting across its copies.
    pub earliest: Option<&'a Sighting>,
}

/// PDQ distance up to which an older copy is evidence enough for an error
/// (recompressions, resizes and light edits land well inside it; the
/// fixtures' edits are 0-14 apart); a farther one gives a warning.
pub const CLOSE_COPY_DISTANCE: u32 = 16;

/// A day: EXIF times are camera-local, so comparisons allow this much.
const DAY_SECONDS: i64 = 86_400;

/// The findings for a verdict: errors first, then warnings, each in rule
/// order. Empty when nothing contradicts the record.
pub fn check_verdict(input: &CheckInput<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    let v = input.verdict;
    let media = MediaAuthenticity::try_from(v.media_authenticity).ok();
    let rating = ClaimRating::try_from(v.claim_rating).ok();
    let image = input.claim.image.as_ref();
    let credentials: Option<&ContentCredentials> =
        image.and_then(|i| i.content_credentials.as_ref());

    if media == Some(MediaAuthenticity::Original) {
        if let Some(c) = credentials {
            if c.is_sound() {
                if let Some(a) = c.generative_actions().next() {
                    out.push(Finding {
                        code: "ORIGINAL_BUT_GENERATIVE_CREDENTIALS",
                        severity: Severity::Error,
                        message: format!(
                            "the image is rated ORIGINAL, but its Content Credentials ({}) record the action {} with the digital source type {}: made or changed by a generative model",
                            state_word(c),
                            a.action,
                            a.digital_source_type
                        ),
                        field: "media_authenticity",
                    });
                }
                if let Some(a) = c.editing_actions().next() {
                    out.push(Finding {
                        code: "ORIGINAL_BUT_EDITED_CREDENTIALS",
                        severity: Severity::Warning,
                        message: format!(
                            "the image is rated ORIGINAL, but its Content Credentials ({}) record editing ({}); check that the edits do not change what it shows",
                            state_word(c),
                            a.action
                        ),
                        field: "media_authenticity",
                    });
                }
            } else {
                out.push(Finding {
                    code: "ORIGINAL_BUT_INVALID_CREDENTIALS",
                    severity: Severity::Warning,
                    message: format!(
                        "the image is rated ORIGINAL, but its Content Credentials are invalid ({}): what they say cannot be relied on, and the file may have been changed after signing",
                        c.validation_codes
                            .iter()
                            .find(|v| v.kind == super::provenance::CodeKind::Failure as i32)
                            .map_or("no failure code given", |v| v.code.as_str())
                    ),
                    field: "media_authenticity",
                });
            }
        }
    }

    // The original: a link in the rationale, the image's first
    // publication (its source_url, unless that is only where the claim
    // circulated), or the source of a response that refutes or adds context.
    let first_publication = image.is_some_and(|i| {
        !i.source_url.is_empty() && !input.claim.appearance_urls.contains(&i.source_url)
    });
    let sourced_context = input.responses.iter().any(|r| {
        !r.source_url.is_empty()
            && (r.stance == Stance::Refutes as i32 || r.stance == Stance::AddsContext as i32)
    });
    let original_linked = has_link(&v.rationale) || first_publication || sourced_context;
    if media == Some(MediaAuthenticity::Decontextualized) && !original_linked {
        out.push(Finding {
            code: "DECONTEXTUALIZED_WITHOUT_ORIGINAL",
            severity: Severity::Error,
            message: "the image is rated DECONTEXTUALIZED, but nothing links its original context: give the original publication's http(s) URL in the rationale (or as the image's source_url, or an official response's source_url), and say where and when it was taken".into(),
            field: "rationale",
        });
    }

    if let (Some(first_seen), Some(image)) = (input.claim.first_seen_time, image) {
        let own = [
            (image.captured_time, "taken (capture time)"),
            (image.published_time, "published"),
            (
                image
                    .exif
                    .as_ref()
                    .and_then(|e| parse_exif_time(&e.capture_time)),
                "taken (EXIF)",
            ),
        ];
        if let Some((time, what)) = own
            .iter()
            .filter_map(|(t, what)| t.map(|t| (t, *what)))
            .filter(|(t, _)| first_seen.seconds + DAY_SECONDS < t.seconds)
            .min_by_key(|(t, _)| *t)
        {
            out.push(Finding {
                code: "FIRST_SEEN_BEFORE_IMAGE",
                severity: Severity::Warning,
                message: format!(
                    "the claim was first seen {} but its image was {what} {}: one of the dates is wrong",
                    date(&first_seen),
                    date(&time)
                ),
                field: "claim",
            });
        }
    }

    if let (Some(event), Some(earliest)) = (input.claim.event_time, input.earliest) {
        let favourable = matches!(
            rating,
            Some(ClaimRating::Accurate | ClaimRating::PartlyAccurate)
        ) || media == Some(MediaAuthenticity::Original);
        if earliest.time.seconds + DAY_SECONDS < event.seconds && favourable {
            // A loose near duplicate may be another picture: a warning.
            let close = earliest.exact || earliest.distance <= CLOSE_COPY_DISTANCE;
            out.push(Finding {
                code: "IMAGE_OLDER_THAN_EVENT",
                severity: if close {
                    Severity::Error
                } else {
                    Severity::Warning
                },
                message: format!(
                    "the image was seen {} ({}{}{}), before the event the claim says it shows ({}), yet the verdict rates it as genuine",
                    date(&earliest.time),
                    source_words(earliest),
                    earliest
                        .claim_id
                        .map(|id| format!(" of claims/{id}"))
                        .unwrap_or_default(),
                    if close {
                        String::new()
                    } else {
                        format!(
                            ", a near duplicate at distance {}: check it is the same picture",
                            earliest.distance
                        )
                    },
                    date(&event)
                ),
                field: if media == Some(MediaAuthenticity::Original) {
                    "media_authenticity"
                } else {
                    "claim_rating"
                },
            });
        }
    }

    if rating == Some(ClaimRating::Accurate) {
        let unanswered: Vec<u64> = input
            .responses
            .iter()
            .filter(|r| r.stance == Stance::Refutes as i32)
            // Answered: a reply that does not simply refute again.
            .filter(|r| {
                !input
                    .responses
                    .iter()
                    .any(|o| o.in_reply_to == r.id && o.stance != Stance::Refutes as i32)
            })
            .map(|r| r.id)
            .collect();
        if let Some(first) = unanswered.first() {
            out.push(Finding {
                code: "ACCURATE_WITH_UNANSWERED_REFUTATION",
                severity: Severity::Error,
                message: format!(
                    "the claim is rated ACCURATE, but {} official response{} refute{} it with no answer on record (first: claims/{}/officialResponses/{first})",
                    unanswered.len(),
                    if unanswered.len() == 1 { "" } else { "s" },
                    if unanswered.len() == 1 { "s" } else { "" },
                    input.claim.id
                ),
                field: "claim_rating",
            });
        }
    }

    out.sort_by_key(|f| std::cmp::Reverse(f.severity));
    out
}

fn state_word(c: &ContentCredentials) -> &'static str {
    match c.state() {
        super::provenance::CredentialState::Trusted => "trusted",
        _ => "valid, signer not on the trust list",
    }
}

fn source_words(s: &Sighting) -> &'static str {
    match s.source {
        SightingSource::ClaimFirstSeen => "first seen",
        SightingSource::ImagePublished => "published",
        SightingSource::ExifCapture => "EXIF capture time",
        SightingSource::ImageCaptured => "capture time",
    }
}

/// "2022-01-07" of a timestamp.
fn date(t: &Timestamp) -> String {
    let days = t.seconds.div_euclid(DAY_SECONDS);
    // Civil date from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn has_link(text: &str) -> bool {
    text.split_whitespace().any(|w| {
        let w = w.trim_start_matches(['(', '<', '[', '"']);
        (w.starts_with("https://") || w.starts_with("http://")) && w.len() > 10
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::provenance::{CredentialAction, CredentialState};
    use crate::domain::{Image, ImageExif};

    fn ts(seconds: i64) -> Timestamp {
        Timestamp { seconds, nanos: 0 }
    }

    const JAN_2022: i64 = 1_641_513_600; // 2022-01-07T00:00:00Z

    #[test]
    fn exif_times_parse_as_utc_and_bad_ones_are_refused() {
        assert_eq!(parse_exif_time("2022:01:07 00:00:00"), Some(ts(JAN_2022)));
        assert_eq!(parse_exif_time("1970:01:01 00:00:01"), Some(ts(1)));
        assert_eq!(
            parse_exif_time("2020:02:29 12:00:00").map(|t| date(&t)),
            Some("2020-02-29".into())
        );
        for bad in [
            "",
            "2021:02:29 12:00:00",
            "0000:00:00 00:00:00",
            "2022-01-07 00:00:00",
            "2022:13:01 00:00:00",
            "1800:01:01 00:00:00",
            "2022:01:07 24:00:00",
            "2022:01:0x 00:00:00",
        ] {
            assert_eq!(parse_exif_time(bad), None, "{bad}");
        }
        assert_eq!(date(&ts(JAN_2022)), "2022-01-07");
        assert_eq!(date(&ts(-1)), "1969-12-31");
    }

    fn claim_with(image: Image) -> Claim {
        Claim {
            id: 7,
            image: Some(image),
            ..Default::default()
        }
    }

    fn copy(exact: bool, distance: u32) -> CopyOf {
        CopyOf {
            exact,
            distance,
            transformation: Transformation::Identity,
        }
    }

    #[test]
    fn the_earliest_sighting_is_labelled_with_its_source() {
        let mut a = claim_with(Image {
            published_time: Some(ts(JAN_2022)),
            exif: Some(ImageExif {
                capture_time: "2011:05:04 10:00:00".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        a.first_seen_time = Some(ts(JAN_2022 + 5));
        let mut b = claim_with(Image {
            captured_time: Some(ts(JAN_2022 - 10)),
            ..Default::default()
        });
        b.id = 9;
        let all: Vec<Sighting> = sightings_of(&a, copy(true, 0))
            .into_iter()
            .chain(sightings_of(&b, copy(false, 12)))
            .collect();
        assert_eq!(all.len(), 4);
        let e = earliest(all.clone()).unwrap();
        assert_eq!(e.source, SightingSource::ExifCapture);
        assert_eq!(e.claim_id, Some(7));
        assert_eq!(date(&e.time), "2011-05-04");
        // Without the EXIF: the near duplicate's capture time.
        let rest = all
            .into_iter()
            .filter(|s| s.source != SightingSource::ExifCapture);
        let e = earliest(rest).unwrap();
        assert_eq!(
            (e.source, e.claim_id, e.exact, e.distance),
            (SightingSource::ImageCaptured, Some(9), false, 12)
        );
        assert_eq!(earliest(Vec::new()), None);
    }

    fn verdict(rating: ClaimRating, media: MediaAuthenticity, rationale: &str) -> Verdict {
        Verdict {
            claim_rating: rating as i32,
            media_authenticity: media as i32,
            rationale: rationale.into(),
            ..Default::default()
        }
    }

    fn codes(
        claim: &Claim,
        v: &Verdict,
        responses: &[OfficialResponse],
        earliest: Option<&Sighting>,
    ) -> Vec<&'static str> {
        check_verdict(&CheckInput {
            claim,
            verdict: v,
            responses,
            earliest,
        })
        .into_iter()
        .map(|f| f.code)
        .collect()
    }

    fn credentials(state: CredentialState, actions: &[(&str, &str)]) -> ContentCredentials {
        ContentCredentials {
            state: state as i32,
            actions: actions
                .iter()
                .map(|(a, s)| CredentialAction {
                    action: (*a).into(),
                    digital_source_type: (*s).into(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    const GENAI: &str = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia";

    #[test]
    fn original_against_credentials() {
        let original = verdict(ClaimRating::Accurate, MediaAuthenticity::Original, "fine");
        let transformed = verdict(
            ClaimRating::False,
            MediaAuthenticity::Transformed,
            "made by a model",
        );
        for (state, actions, want) in [
            (
                CredentialState::Valid,
                vec![("c2pa.created", GENAI)],
                vec!["ORIGINAL_BUT_GENERATIVE_CREDENTIALS"],
            ),
            (
                CredentialState::Trusted,
                vec![("c2pa.created", GENAI), ("c2pa.edited", "")],
                vec![
                    "ORIGINAL_BUT_GENERATIVE_CREDENTIALS",
                    "ORIGINAL_BUT_EDITED_CREDENTIALS",
                ],
            ),
            (
                CredentialState::Trusted,
                vec![("c2pa.edited", "")],
                vec!["ORIGINAL_BUT_EDITED_CREDENTIALS"],
            ),
            (
                CredentialState::Invalid,
                vec![("c2pa.created", GENAI)],
                vec!["ORIGINAL_BUT_INVALID_CREDENTIALS"],
            ),
            (
                CredentialState::Trusted,
                vec![(
                    "c2pa.created",
                    "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture",
                )],
                vec![],
            ),
        ] {
            let claim = claim_with(Image {
                content_credentials: Some(credentials(state, &actions)),
                ..Default::default()
            });
            assert_eq!(
                codes(&claim, &original, &[], None),
                want,
                "{state:?} {actions:?}"
            );
            assert_eq!(codes(&claim, &transformed, &[], None), Vec::<&str>::new());
        }
        let errors = check_verdict(&CheckInput {
            claim: &claim_with(Image {
                content_credentials: Some(credentials(
                    CredentialState::Valid,
                    &[("c2pa.edited", ""), ("c2pa.created", GENAI)],
                )),
                ..Default::default()
            }),
            verdict: &original,
            responses: &[],
            earliest: None,
        });
        assert_eq!(errors[0].severity, Severity::Error, "errors first");
        assert!(
            errors[0].message.contains("generative"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn decontextualized_needs_a_link_to_the_original() {
        let claim = claim_with(Image::default());
        let no_link = verdict(
            ClaimRating::False,
            MediaAuthenticity::Decontextualized,
            "old photo",
        );
        let link = verdict(
            ClaimRating::False,
            MediaAuthenticity::Decontextualized,
            "taken in 2011 (https://example.org/original)",
        );
        assert_eq!(
            codes(&claim, &no_link, &[], None),
            ["DECONTEXTUALIZED_WITHOUT_ORIGINAL"]
        );
        assert!(codes(&claim, &link, &[], None).is_empty());
        // The image's first publication, or a response's source, links it too.
        let published = claim_with(Image {
            source_url: "https://apnews.com/hub/kazakhstan".into(),
            ..Default::default()
        });
        assert!(codes(&published, &no_link, &[], None).is_empty());
        let sourced = OfficialResponse {
            source_url: "https://example.org/statement".into(),
            stance: Stance::AddsContext as i32,
            ..Default::default()
        };
        assert!(codes(&claim, &no_link, std::slice::from_ref(&sourced), None).is_empty());
        let supporting = OfficialResponse {
            stance: Stance::Supports as i32,
            ..sourced
        };
        assert_eq!(
            codes(&claim, &no_link, &[supporting], None),
            ["DECONTEXTUALIZED_WITHOUT_ORIGINAL"]
        );
        // The image's URL only where the claim circulated is not the original.
        let mut circulating = published.clone();
        circulating.appearance_urls = vec!["https://apnews.com/hub/kazakhstan".into()];
        assert_eq!(
            codes(&circulating, &no_link, &[], None),
            ["DECONTEXTUALIZED_WITHOUT_ORIGINAL"]
        );
    }

    #[test]
    fn dates_against_each_other() {
        let mut claim = claim_with(Image {
            captured_time: Some(ts(JAN_2022 + 10 * DAY_SECONDS)),
            ..Default::default()
        });
        claim.first_seen_time = Some(ts(JAN_2022));
        let any = verdict(ClaimRating::Unproven, MediaAuthenticity::Staged, "unclear");
        assert_eq!(codes(&claim, &any, &[], None), ["FIRST_SEEN_BEFORE_IMAGE"]);
        claim.first_seen_time = Some(ts(JAN_2022 + 10 * DAY_SECONDS - 3600));
        assert!(codes(&claim, &any, &[], None).is_empty(), "within a day");

        // An image seen in 2011 claimed to show a 2022 event.
        claim.event_time = Some(ts(JAN_2022));
        let old = Sighting {
            time: ts(JAN_2022 - 3000 * DAY_SECONDS),
            source: SightingSource::ImagePublished,
            claim_id: Some(3),
            exact: false,
            distance: 8,
            transformation: Transformation::MirroredHorizontally,
        };
        let genuine = verdict(ClaimRating::Accurate, MediaAuthenticity::Staged, "x");
        let f = check_verdict(&CheckInput {
            claim: &claim,
            verdict: &genuine,
            responses: &[],
            earliest: Some(&old),
        });
        assert_eq!(
            f.iter().map(|f| f.code).collect::<Vec<_>>(),
            ["IMAGE_OLDER_THAN_EVENT"]
        );
        assert!(f[0].message.contains("claims/3"), "{}", f[0].message);
        let debunked = verdict(
            ClaimRating::False,
            MediaAuthenticity::Decontextualized,
            "from 2013: https://example.org/a",
        );
        assert!(codes(&claim, &debunked, &[], Some(&old)).is_empty());
        // A loose near duplicate: a warning only.
        let loose = Sighting {
            distance: 28,
            ..old
        };
        let f = check_verdict(&CheckInput {
            claim: &claim,
            verdict: &genuine,
            responses: &[],
            earliest: Some(&loose),
        });
        assert_eq!(
            (f[0].code, f[0].severity),
            ("IMAGE_OLDER_THAN_EVENT", Severity::Warning)
        );
        assert!(f[0].message.contains("distance 28"), "{}", f[0].message);
        let recent = Sighting {
            time: ts(JAN_2022 + 60),
            ..old
        };
        assert!(codes(&claim, &genuine, &[], Some(&recent)).is_empty());
    }

    #[test]
    fn accurate_with_an_unanswered_refutation() {
        let claim = claim_with(Image::default());
        let refutes = OfficialResponse {
            id: 1,
            stance: Stance::Refutes as i32,
            ..Default::default()
        };
        let answer = OfficialResponse {
            id: 2,
            stance: Stance::Supports as i32,
            in_reply_to: 1,
            ..Default::default()
        };
        let accurate = verdict(ClaimRating::Accurate, MediaAuthenticity::Original, "ok");
        assert_eq!(
            codes(&claim, &accurate, std::slice::from_ref(&refutes), None),
            ["ACCURATE_WITH_UNANSWERED_REFUTATION"]
        );
        assert!(codes(&claim, &accurate, &[refutes.clone(), answer.clone()], None).is_empty());
        // Refuting again is not an answer.
        let again = OfficialResponse {
            stance: Stance::Refutes as i32,
            id: 3,
            ..answer
        };
        assert_eq!(
            codes(&claim, &accurate, &[refutes.clone(), again], None),
            ["ACCURATE_WITH_UNANSWERED_REFUTATION"]
        );
        let misleading = verdict(ClaimRating::Misleading, MediaAuthenticity::Original, "ok");
        assert!(codes(&claim, &misleading, &[refutes], None).is_empty());
    }
}
