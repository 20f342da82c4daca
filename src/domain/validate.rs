//! Input validation: the limits a newsroom would accept, checked before
//! anything is stored. Every check names the offending field by its API path
//! and all violations of a request are reported together.

use super::error::{excerpt, Error, FieldViolation, Result};
use super::model::{
    Claim, ClaimRating, MediaAuthenticity, OfficialResponse, ResponderRole, ResponseKind, Stance,
    Timestamp, Verdict,
};

/// Longest claim text, in characters.
pub const MAX_CLAIM_TEXT_CHARS: usize = 10_000;
/// Longest response text, in characters.
pub const MAX_RESPONSE_TEXT_CHARS: usize = 50_000;
/// Longest rationale, in characters.
pub const MAX_RATIONALE_CHARS: usize = 10_000;
/// Longest caption, in characters.
pub const MAX_CAPTION_CHARS: usize = 10_000;
/// Longest short text field (claimant, credit, organization, ...), in characters.
pub const MAX_SHORT_TEXT_CHARS: usize = 500;
/// Most appearance URLs on one claim.
pub const MAX_APPEARANCE_URLS: usize = 50;
/// Most tags on one claim.
pub const MAX_TAGS: usize = 50;
/// Longest tag, in characters.
pub const MAX_TAG_CHARS: usize = 100;
/// Longest URL, in bytes.
pub const MAX_URL_BYTES: usize = 2_048;
/// Longest `request_id`.
pub const MAX_REQUEST_ID_BYTES: usize = 128;
/// How far in the future a supplied timestamp may lie (clock skew between desks).
pub const MAX_FUTURE_SKEW_SECONDS: i64 = 24 * 60 * 60;
/// 0001-01-01T00:00:00Z, the earliest time protobuf's Timestamp allows.
const MIN_SECONDS: i64 = -62_135_596_800;
/// 9999-12-31T23:59:59Z, the latest time protobuf's Timestamp allows.
const MAX_SECONDS: i64 = 253_402_300_799;

/// Collects violations so that a caller learns about every bad field at once.
struct Checker {
    now: Timestamp,
    violations: Vec<FieldViolation>,
}

impl Checker {
    fn new(now: Timestamp) -> Self {
        Checker {
            now,
            violations: Vec::new(),
        }
    }

    fn fail(&mut self, field: &str, description: impl Into<String>) {
        self.violations.push(FieldViolation {
            field: field.to_string(),
            description: description.into(),
        });
    }

    fn finish(self) -> Result<()> {
        if self.violations.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidArgument(self.violations))
        }
    }

    /// Text of `min..=max` characters; when `min > 0` it must not be blank.
    /// Control characters other than tab and newlines are refused: they break
    /// every display a desk uses and are a common vector for log injection.
    fn text(&mut self, field: &str, value: &str, min: usize, max: usize) {
        let chars = value.chars().count();
        if min > 0 && value.trim().is_empty() {
            self.fail(field, "is required and must not be blank");
        } else if chars > max {
            self.fail(
                field,
                format!("must be at most {max} characters, got {chars}"),
            );
        } else if chars < min {
            self.fail(field, format!("must be at least {min} characters"));
        } else if value
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            self.fail(field, "must not contain control characters");
        }
    }

    fn url(&mut self, field: &str, value: &str, required: bool) {
        if value.is_empty() {
            if required {
                self.fail(field, "is required");
            }
            return;
        }
        if let Err(why) = check_url(value) {
            self.fail(field, why);
        }
    }

    fn language(&mut self, field: &str, value: &str) {
        if value.is_empty() {
            self.fail(
                field,
                "is required: a BCP-47 language tag such as \"en\" or \"und\"",
            );
        } else if !is_bcp47(value) {
            self.fail(
                field,
                format!(
                    "{} is not a BCP-47 language tag (e.g. \"en\", \"pt-BR\", \"zh-Hant\")",
                    excerpt(value)
                ),
            );
        }
    }

    fn time(&mut self, field: &str, value: Option<&Timestamp>) {
        let Some(t) = value else { return };
        if !(0..1_000_000_000).contains(&t.nanos) {
            self.fail(field, "nanos must be between 0 and 999,999,999");
        } else if !(MIN_SECONDS..=MAX_SECONDS).contains(&t.seconds) {
            self.fail(field, "must lie between years 0001 and 9999");
        } else if t.seconds > self.now.seconds + MAX_FUTURE_SKEW_SECONDS {
            self.fail(field, "must not lie more than a day in the future");
        }
    }

    /// An enum value the API knows; `required` also refuses the zero value.
    fn enumeration<E>(&mut self, field: &str, value: i32, required: bool)
    where
        E: TryFrom<i32>,
    {
        if E::try_from(value).is_err() {
            self.fail(field, format!("{value} is not a known value"));
        } else if required && value == 0 {
            self.fail(field, "is required (UNSPECIFIED is not allowed)");
        }
    }
}

/// Checks an absolute http(s) URL: scheme, a well-formed host (a DNS name,
/// which may be internationalized, an IPv4 address or a bracketed IPv6
/// address), an optional numeric port, no credentials, no whitespace or
/// control characters, bounded length. Non-ASCII paths (IRIs) are accepted
/// because desks paste them from browsers. The value itself is never echoed
/// back: URLs often carry session tokens.
pub fn check_url(value: &str) -> std::result::Result<(), String> {
    if value.len() > MAX_URL_BYTES {
        return Err(format!("must be at most {MAX_URL_BYTES} bytes"));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace or control characters".into());
    }
    let lower = value.to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &value[8..]
    } else if lower.starts_with("http://") {
        &value[7..]
    } else {
        return Err("is not an absolute URL starting with http:// or https://".into());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err("must not contain credentials (user:password@)".into());
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((inside, after)) = bracketed.split_once(']') else {
            return Err("has an unclosed '[' in its host".into());
        };
        if inside.is_empty()
            || !inside
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err("has a malformed IPv6 host".into());
        }
        match after {
            "" => (inside, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (inside, Some(port)),
                None => return Err("has characters after its IPv6 host".into()),
            },
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("has no host".into());
    }
    let dns_char = |c: char| c.is_alphanumeric() || c == '-' || c == '.' || c == '_';
    if !authority.starts_with('[')
        && (!host.chars().all(dns_char) || host.starts_with(['.', '-']) || host.contains(".."))
    {
        return Err("has a malformed host name".into());
    }
    if let Some(port) = port {
        let valid = !port.is_empty()
            && port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u32>().is_ok_and(|p| p <= 65_535);
        if !valid {
            return Err("has a port that is not a number from 0 to 65535".into());
        }
    }
    Ok(())
}

/// Well-formedness per RFC 5646's syntax (not the registry): a primary
/// language subtag of 2-8 letters (or `x`/`i` for private use and
/// grandfathered tags) followed by subtags of 1-8 letters or digits; a
/// single-character subtag (an extension or private-use singleton) must be
/// followed by at least one more subtag.
pub fn is_bcp47(tag: &str) -> bool {
    if tag.len() > 64 {
        return false;
    }
    let subtags: Vec<&str> = tag.split('-').collect();
    let primary = subtags[0];
    let primary_ok = (primary.len() >= 2
        && primary.len() <= 8
        && primary.bytes().all(|b| b.is_ascii_alphabetic()))
        || primary.eq_ignore_ascii_case("x")
        || primary.eq_ignore_ascii_case("i");
    let rest_ok = subtags[1..]
        .iter()
        .all(|s| (1..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric()));
    // A singleton, including a primary `x`/`i`, needs a subtag after it;
    // after the private-use `x`, one-character subtags are allowed.
    let private_use = subtags[..subtags.len() - 1]
        .iter()
        .any(|s| s.eq_ignore_ascii_case("x"));
    let dangling_singleton = !private_use && subtags.last().is_some_and(|s| s.len() == 1);
    primary_ok && rest_ok && !dangling_singleton
}

/// Checks a SHA-256 given in `field`: 64 lowercase hex characters.
pub fn validate_sha256(value: &str, field: &str) -> Result<()> {
    if is_sha256_hex(value) {
        Ok(())
    } else {
        Err(Error::invalid(field, "must be 64 lowercase hex characters"))
    }
}

fn is_sha256_hex(value: &str) -> bool {
    value.len() == 64
        && value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Validates a claim to be registered. Output-only fields are not looked at.
pub fn validate_new_claim(claim: &Claim, now: Timestamp) -> Result<()> {
    let mut c = Checker::new(now);
    c.text(
        "claim.claim_text",
        &claim.claim_text,
        1,
        MAX_CLAIM_TEXT_CHARS,
    );
    c.text("claim.claimant", &claim.claimant, 0, MAX_SHORT_TEXT_CHARS);
    c.language("claim.language", &claim.language);
    if claim.appearance_urls.len() > MAX_APPEARANCE_URLS {
        c.fail(
            "claim.appearance_urls",
            format!(
                "at most {MAX_APPEARANCE_URLS} URLs, got {}",
                claim.appearance_urls.len()
            ),
        );
    } else {
        for (i, url) in claim.appearance_urls.iter().enumerate() {
            c.url(&format!("claim.appearance_urls[{i}]"), url, true);
        }
    }
    c.time("claim.first_seen_time", claim.first_seen_time.as_ref());
    c.time("claim.event_time", claim.event_time.as_ref());
    if claim.tags.len() > MAX_TAGS {
        c.fail(
            "claim.tags",
            format!("at most {MAX_TAGS} tags, got {}", claim.tags.len()),
        );
    } else {
        for (i, tag) in claim.tags.iter().enumerate() {
            c.text(&format!("claim.tags[{i}]"), tag, 1, MAX_TAG_CHARS);
        }
    }
    match &claim.image {
        None => c.fail("claim.image", "is required"),
        Some(image) => {
            if image.source_url.is_empty() && image.sha256.is_empty() && image.pdq.is_empty() {
                c.fail(
                    "claim.image",
                    "give at least one of source_url, sha256, content or pdq",
                );
            }
            if !image.pdq.is_empty() && crate::domain::pdq::Pdq::from_hex(&image.pdq).is_none() {
                c.fail(
                    "claim.image.pdq",
                    "must be 64 hex characters (a 256-bit PDQ hash)",
                );
            }
            if !(0..=100).contains(&image.pdq_quality) {
                c.fail("claim.image.pdq_quality", "must be between 0 and 100");
            }
            c.url("claim.image.source_url", &image.source_url, false);
            if !image.sha256.is_empty() && !is_sha256_hex(&image.sha256) {
                c.fail("claim.image.sha256", "must be 64 lowercase hex characters");
            }
            c.text("claim.image.credit", &image.credit, 0, MAX_SHORT_TEXT_CHARS);
            c.text(
                "claim.image.publisher",
                &image.publisher,
                0,
                MAX_SHORT_TEXT_CHARS,
            );
            c.time("claim.image.published_time", image.published_time.as_ref());
            c.time("claim.image.captured_time", image.captured_time.as_ref());
            c.text(
                "claim.image.location",
                &image.location,
                0,
                MAX_SHORT_TEXT_CHARS,
            );
            c.text("claim.image.caption", &image.caption, 0, MAX_CAPTION_CHARS);
        }
    }
    c.finish()
}

/// Validates a response to be attached. `in_reply_to` is resolved by the
/// caller (it is a resource name) and checked by [`super::rules::attach`].
pub fn validate_new_response(response: &OfficialResponse, now: Timestamp) -> Result<()> {
    let mut c = Checker::new(now);
    match &response.responder {
        None => c.fail("official_response.responder", "is required"),
        Some(r) => {
            c.text(
                "official_response.responder.organization",
                &r.organization,
                1,
                MAX_SHORT_TEXT_CHARS,
            );
            c.text(
                "official_response.responder.person",
                &r.person,
                0,
                MAX_SHORT_TEXT_CHARS,
            );
            c.enumeration::<ResponderRole>("official_response.responder.role", r.role, false);
        }
    }
    c.enumeration::<ResponseKind>("official_response.kind", response.kind, true);
    c.enumeration::<Stance>("official_response.stance", response.stance, true);
    c.text(
        "official_response.text",
        &response.text,
        1,
        MAX_RESPONSE_TEXT_CHARS,
    );
    c.language("official_response.language", &response.language);
    c.url("official_response.source_url", &response.source_url, false);
    c.time("official_response.issue_time", response.issue_time.as_ref());
    c.finish()
}

/// Validates a verdict: both ratings set and a rationale.
pub fn validate_verdict(verdict: &Verdict) -> Result<()> {
    let mut c = Checker::new(Timestamp::default());
    c.enumeration::<ClaimRating>("claim_rating", verdict.claim_rating, true);
    c.enumeration::<MediaAuthenticity>("media_authenticity", verdict.media_authenticity, true);
    c.text("rationale", &verdict.rationale, 1, MAX_RATIONALE_CHARS);
    c.finish()
}

/// Validates an optional `request_id`: empty, or 1-128 printable ASCII characters.
pub fn validate_request_id(request_id: &str) -> Result<()> {
    if request_id.len() > MAX_REQUEST_ID_BYTES {
        return Err(Error::invalid(
            "request_id",
            format!("must be at most {MAX_REQUEST_ID_BYTES} characters"),
        ));
    }
    if !request_id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::invalid(
            "request_id",
            "must be printable ASCII without spaces (e.g. a UUID)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcp47_accepts_common_tags_and_refuses_junk() {
        for ok in [
            "en",
            "und",
            "pt-BR",
            "zh-Hant-TW",
            "sr-Latn",
            "kk",
            "x-desk",
            "es-419",
            "en-x-a",
            "x-a",
            "de-u-co-phonebk",
        ] {
            assert!(is_bcp47(ok), "{ok} should be accepted");
        }
        for bad in [
            "",
            "e",
            "english language",
            "en_US",
            "en-",
            "-en",
            "x",
            "en-toolongsubtag",
            "1a",
            "en-x",
            "en-a",
            "de-u-",
        ] {
            assert!(!is_bcp47(bad), "{bad} should be refused");
        }
    }

    #[test]
    fn urls_need_http_scheme_and_host() {
        assert!(check_url("https://apnews.com/hub/kazakhstan").is_ok());
        assert!(check_url("http://example.org:8080/a?b#c").is_ok());
        assert!(check_url("https://ru.wikipedia.org/wiki/Казахстан").is_ok());
        assert!(check_url("ftp://example.org/x").is_err());
        assert!(check_url("https:///path").is_err());
        assert!(check_url("/relative/path").is_err());
        assert!(check_url("https://exa mple.org").is_err());
        assert!(check_url(&format!("https://e.org/{}", "a".repeat(MAX_URL_BYTES))).is_err());
        for ok in [
            "https://[2001:db8::1]/photo.jpg",
            "http://[::1]:8080/",
            "https://192.0.2.7:443/a",
            "https://xn--80ao21a.xn--p1ai/",
            "https://пример.рф/фото",
            "HTTPS://EXAMPLE.ORG",
        ] {
            assert!(check_url(ok).is_ok(), "{ok} should be accepted");
        }
        for bad in [
            "https://<script>alert(1)</script>",
            "https://[",
            "https://[::1",
            "https://[zz]/",
            "https://[::1]x/",
            "https://example.org:port/",
            "https://example.org:99999/",
            "https://example.org:/",
            "https://user:secret@example.org/",
            "https://.example.org/",
            "https://-example.org/",
            "https://a..b/",
            "https://ex\"ample.org/",
        ] {
            assert!(check_url(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn all_violations_are_reported_together() {
        let claim = Claim {
            claim_text: " ".into(),
            language: "english".into(),
            ..Default::default()
        };
        let Err(Error::InvalidArgument(v)) = validate_new_claim(&claim, Timestamp::now()) else {
            panic!("expected InvalidArgument");
        };
        let fields: Vec<_> = v.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["claim.claim_text", "claim.image"]);
    }

    #[test]
    fn refused_values_are_quoted_short_and_urls_not_at_all() {
        let token_url = format!("https://user:tok3n@example.org/{}", "p".repeat(100));
        let claim = Claim {
            claim_text: "text".into(),
            language: "l".repeat(5_000),
            appearance_urls: vec![token_url, "ftp://tok3n.example/x".into()],
            ..Default::default()
        };
        let err = validate_new_claim(&claim, Timestamp::now()).unwrap_err();
        let message = err.to_string();
        assert!(!message.contains("tok3n"), "{message}");
        assert!(message.len() < 1_000, "{} bytes: {message}", message.len());
        assert!(message.contains("claim.language"), "{message}");
    }

    #[test]
    fn request_id_limits() {
        assert!(validate_request_id("").is_ok());
        assert!(validate_request_id("6f1c2a3e-9b7d-4c1e-8f00-1234567890ab").is_ok());
        assert!(validate_request_id("has space").is_err());
        assert!(validate_request_id(&"a".repeat(129)).is_err());
    }
}
