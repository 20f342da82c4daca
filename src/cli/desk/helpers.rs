//! The desk CLI's small helpers: parsing names and times from flags,
//! reading image files, naming refused fields by their flags, resuming a
//! watch.

use super::*;

/// Where to reconnect after a watch stream ended with `status`, if it may be
/// resumed: only UNAVAILABLE (the server restarts or drains) and
/// RESOURCE_EXHAUSTED (shed load, or a subscriber fell behind) are worth a
/// retry. The server's `photoclaim-resume-cursor` trailer wins; without one,
/// the cursor of the last event printed (`last`, possibly empty: the request
/// as first made).
pub(super) fn resume_cursor(status: &tonic::Status, last: &str) -> Option<String> {
    if !matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::ResourceExhausted
    ) {
        return None;
    }
    let trailer = status
        .metadata()
        .get("photoclaim-resume-cursor")
        .and_then(|v| v.to_str().ok());
    Some(trailer.unwrap_or(last).to_string())
}

/// `claims/7` for `claims/7` or `7`; anything else is refused before a call.
pub(super) fn claim_name(s: &str) -> Result<String, String> {
    let id = s.strip_prefix("claims/").unwrap_or(s);
    let valid = !id.is_empty()
        && !id.starts_with('0')
        && id.bytes().all(|b| b.is_ascii_digit())
        && id.parse::<u64>().is_ok();
    if valid {
        Ok(format!("claims/{id}"))
    } else {
        Err("expected a claim name such as claims/7, or its number 7".into())
    }
}

pub(super) fn timestamp(s: &str) -> Result<prost_types::Timestamp, String> {
    s.parse()
        .map_err(|_| "expected an RFC 3339 time such as 2022-01-08T00:00:00Z".into())
}

/// A JSON-LD document indented for people; as sent if it does not parse.
pub(super) fn pretty_json(document: &str) -> String {
    serde_json::from_str::<serde_json::Value>(document)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| document.to_string())
}

/// The bytes of `--image-file`; a missing file is NOT_FOUND, naming the flag.
pub(super) fn read_image_file(path: &std::path::Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| {
        let code = if e.kind() == std::io::ErrorKind::NotFound {
            tonic::Code::NotFound
        } else {
            tonic::Code::InvalidArgument
        };
        Failure::new(code, format!("--image-file {}: {e}", path.display()))
    })
}

/// Request fields of RegisterClaim and the flags that set them. A field
/// matches its entry or anything below it (`claim.tags[2]`); the longest
/// entry wins.
pub(super) const REGISTER_FLAGS: &[(&str, &str)] = &[
    ("request_id", "--request-id"),
    ("claim.claim_text", "--text"),
    ("claim.claimant", "--claimant"),
    ("claim.language", "--language"),
    ("claim.appearance_urls", "--appearance-url"),
    ("claim.first_seen_time", "--first-seen"),
    ("claim.tags", "--tag"),
    ("claim.image", "--image-url, --image-sha256 or --image-file"),
    ("claim.image.source_url", "--image-url"),
    ("claim.image.sha256", "--image-sha256"),
    ("claim.image.content", "--image-file"),
    ("claim.image.pdq", "--image-file"),
    ("claim.image.credit", "--credit"),
    ("claim.image.publisher", "--publisher"),
    ("claim.image.published_time", "--published"),
    ("claim.image.captured_time", "--captured"),
    ("claim.image.location", "--location"),
    ("claim.image.caption", "--caption"),
];

/// Request fields of AttachOfficialResponse and their flags.
pub(super) const RESPOND_FLAGS: &[(&str, &str)] = &[
    ("parent", "CLAIM"),
    ("request_id", "--request-id"),
    ("official_response.responder", "--organization"),
    ("official_response.responder.organization", "--organization"),
    ("official_response.responder.person", "--person"),
    ("official_response.responder.role", "--role"),
    ("official_response.kind", "--kind"),
    ("official_response.stance", "--stance"),
    ("official_response.text", "--text"),
    ("official_response.language", "--language"),
    ("official_response.source_url", "--source-url"),
    ("official_response.issue_time", "--issued"),
    ("official_response.in_reply_to", "--in-reply-to"),
];

/// Request fields of SetVerdict and their flags.
pub(super) const VERDICT_FLAGS: &[(&str, &str)] = &[
    ("claim", "CLAIM"),
    ("claim_rating", "--rating"),
    ("media_authenticity", "--media"),
    ("rationale", "--rationale"),
    ("etag", "--etag"),
];

/// Request fields of FindSimilarClaims and their flags.
pub(super) const SIMILAR_FLAGS: &[(&str, &str)] = &[
    ("content", "--image-file"),
    ("sha256", "--sha256"),
    ("pdq", "--pdq"),
    ("max_distance", "--max-distance"),
    ("page_size", "--limit"),
];

/// The flag-level wording of a few server descriptions that name API
/// fields themselves.
pub(super) fn in_flag_terms(flag: &str, description: &str) -> String {
    if flag.starts_with("--image-url, ") && description.starts_with("give at least one of") {
        return "give at least one of an image URL, its SHA-256 or the file".into();
    }
    description.to_string()
}

/// A server's refusal with each `BadRequest` field violation named by the
/// flag that set the field (`--language: is required`); other statuses as
/// they are.
pub(super) fn in_flag_words(status: tonic::Status, flags: &[(&str, &str)]) -> Failure {
    let violations = status
        .get_details_bad_request()
        .map(|b| b.field_violations)
        .unwrap_or_default();
    if status.code() != tonic::Code::InvalidArgument || violations.is_empty() {
        return Failure::from(status);
    }
    let parts: Vec<String> = violations
        .iter()
        .map(|v| {
            let (field, index) = split_index(&v.field);
            let flag = flags
                .iter()
                .filter(|(f, _)| field == *f || field.starts_with(&format!("{f}.")))
                .max_by_key(|(f, _)| f.len())
                .map(|(_, flag)| *flag);
            match flag {
                Some(flag) => {
                    let which =
                        index.map_or(String::new(), |i| format!(" (the {})", ordinal(i + 1)));
                    format!("{flag}{which}: {}", in_flag_terms(flag, &v.description))
                }
                None => format!("{}: {}", v.field, v.description),
            }
        })
        .collect();
    Failure::new(tonic::Code::InvalidArgument, parts.join("; "))
}

/// `("claim.tags", Some(2))` for `claim.tags[2]`; fields below an index
/// (`a[1].b`) keep only the part before it.
pub(super) fn split_index(field: &str) -> (&str, Option<usize>) {
    match field.split_once('[') {
        Some((name, rest)) => (name, rest.split_once(']').and_then(|(i, _)| i.parse().ok())),
        None => (field, None),
    }
}

/// `1st`, `2nd`, `3rd`, `4th`, ... `11th`, `21st`.
pub(super) fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// `cli-` and 128 random bits in hex.
pub(super) fn fresh_request_id() -> String {
    let mut random = [0u8; 16];
    getrandom::fill(&mut random).expect("the operating system provides randomness");
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    format!("cli-{hex}")
}
