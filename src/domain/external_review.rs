//! Fact-checks published by other organizations, imported from schema.org
//! ClaimReview / MediaReview JSON-LD: the stored record
//! ([`ExternalReview`]) and the parser of the shapes newsrooms publish
//! ([`parse_items`]).
//!
//! The record is stored as protobuf like the other domain records: field
//! tags are forever.

use std::collections::HashMap;

use serde_json::Value;

use super::model::Timestamp;

/// Record layout version of [`ExternalReview`].
pub const EXTERNAL_REVIEW_FORMAT_VERSION: u32 = 1;

/// Which schema.org type an imported review was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ReviewKind {
    /// Never stored.
    Unspecified = 0,
    /// schema.org `ClaimReview`.
    ClaimReview = 1,
    /// schema.org `MediaReview`.
    MediaReview = 2,
}

/// A review's rating as published (`reviewRating`): kept as the publisher
/// wrote it, numbers as text, since scales differ between publishers.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PublishedRating {
    /// `ratingValue`.
    #[prost(string, tag = "1")]
    pub value: String,
    /// `bestRating`.
    #[prost(string, tag = "2")]
    pub best: String,
    /// `worstRating`.
    #[prost(string, tag = "3")]
    pub worst: String,
    /// `alternateName`: the rating in words ("False", "Missing context").
    #[prost(string, tag = "4")]
    pub alternate_name: String,
}

/// Where the reviewed claim or media appeared (`appearance`,
/// `firstAppearance`: a CreativeWork).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Appearance {
    /// `url`.
    #[prost(string, tag = "1")]
    pub url: String,
    /// `headline` or `name`.
    #[prost(string, tag = "2")]
    pub headline: String,
    /// `datePublished`.
    #[prost(message, optional, tag = "3")]
    pub date_published: Option<Timestamp>,
    /// `author.name`.
    #[prost(string, tag = "4")]
    pub author: String,
}

/// An imported fact-check (`externalReviews/{id}`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExternalReview {
    /// [`EXTERNAL_REVIEW_FORMAT_VERSION`].
    #[prost(uint32, tag = "1")]
    pub format_version: u32,
    /// Assigned by the store; 0 before.
    #[prost(uint64, tag = "2")]
    pub id: u64,
    /// ClaimReview or MediaReview.
    #[prost(enumeration = "ReviewKind", tag = "3")]
    pub kind: i32,
    /// The review's `url`, normalized ([`normalize_review_url`]): the key
    /// imports deduplicate by.
    #[prost(string, tag = "4")]
    pub review_url: String,
    /// `publisher.name` (or `author.name` when no publisher is given).
    #[prost(string, tag = "5")]
    pub publisher_name: String,
    /// `publisher.url`.
    #[prost(string, tag = "6")]
    pub publisher_url: String,
    /// `author.name`: who wrote the review.
    #[prost(string, tag = "7")]
    pub author_name: String,
    /// `claimReviewed` (MediaReview: `itemReviewed.name` / caption if any).
    #[prost(string, tag = "8")]
    pub claim_reviewed: String,
    /// `itemReviewed.author.name`: who made the claim.
    #[prost(string, tag = "9")]
    pub claimant: String,
    /// `reviewRating`, as published.
    #[prost(message, optional, tag = "10")]
    pub rating: Option<PublishedRating>,
    /// `datePublished` of the review.
    #[prost(message, optional, tag = "11")]
    pub date_published: Option<Timestamp>,
    /// `inLanguage` (BCP-47), empty when not given.
    #[prost(string, tag = "12")]
    pub language: String,
    /// `itemReviewed.appearance`.
    #[prost(message, repeated, tag = "13")]
    pub appearances: Vec<Appearance>,
    /// `itemReviewed.firstAppearance`.
    #[prost(message, optional, tag = "14")]
    pub first_appearance: Option<Appearance>,
    /// `itemReviewed.datePublished`: when the claim was made.
    #[prost(message, optional, tag = "15")]
    pub claim_date: Option<Timestamp>,
    /// MediaReview: the reviewed media's `contentUrl` (or `url`).
    #[prost(string, tag = "16")]
    pub media_url: String,
    /// MediaReview: the reviewed media's `sha256`, lower-case hex.
    #[prost(string, tag = "17")]
    pub media_sha256: String,
    /// MediaReview: `mediaAuthenticityCategory` as published
    /// (e.g. `DecontextualizedContent`).
    #[prost(string, tag = "18")]
    pub media_authenticity_category: String,
    /// `headline` or `name` of the review.
    #[prost(string, tag = "19")]
    pub headline: String,
    /// Set by the store: first import.
    #[prost(message, optional, tag = "20")]
    pub create_time: Option<Timestamp>,
    /// Set by the store: last import that changed it.
    #[prost(message, optional, tag = "21")]
    pub update_time: Option<Timestamp>,
    /// Set by the store: the caller of the last import that changed it.
    #[prost(string, tag = "22")]
    pub imported_by: String,
    /// Set by the store: 1 at the first import, +1 per change.
    #[prost(uint64, tag = "23")]
    pub revision: u64,
}

// ---------------------------------------------------------------------------
// Limits

/// Longest URL accepted anywhere in an imported review, in bytes.
pub const MAX_URL_BYTES: usize = 2048;
/// Longest `claimReviewed`, in characters.
pub const MAX_CLAIM_CHARS: usize = 10_000;
/// Longest name, headline, claimant, publisher or rating text, in characters.
pub const MAX_NAME_CHARS: usize = 500;
/// Most `appearance` (or `mediaItemAppearance`) entries one review may list.
pub const MAX_APPEARANCES: usize = 50;
/// Deepest nesting of containers (JSON arrays, `@graph`, `DataFeed`,
/// `DataFeedItem`) that [`parse_items`] flattens.
pub const MAX_NESTING: usize = 8;
/// Longest `inLanguage` tag, in bytes.
const MAX_LANGUAGE_BYTES: usize = 64;

const NOT_HTTP: &str = "must be an absolute http(s) URL";

// ---------------------------------------------------------------------------
// URLs

/// Normalizes a review URL into the form imports deduplicate by.
///
/// The URL is trimmed and must then be an absolute `http://` or `https://`
/// URL with a host, at most [`MAX_URL_BYTES`] long, without whitespace,
/// control characters or user credentials. The scheme and host are
/// lower-cased, a `#fragment` and a default port (`:80` for http, `:443` for
/// https) are dropped, and an empty path becomes `/`; the path and query are
/// otherwise kept exactly as given.
///
/// The error says what is wrong, phrased to follow the name of the field
/// (e.g. "must be an absolute http(s) URL").
pub fn normalize_review_url(url: &str) -> Result<String, String> {
    let url = url.trim();
    if url.is_empty() {
        return Err(format!("is empty; it {NOT_HTTP}"));
    }
    if url.len() > MAX_URL_BYTES {
        return Err(format!(
            "is {} bytes long; at most {MAX_URL_BYTES} are allowed",
            url.len()
        ));
    }
    if let Some(c) = url.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "contains {}; a URL may not contain whitespace or control characters",
            char_name(c)
        ));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(NOT_HTTP.to_string());
    };
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return Err(NOT_HTTP.to_string()),
    };
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let (authority, path_and_query) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    if authority.contains('@') {
        return Err("must not contain a user name or password".to_string());
    }
    let (host, port) = split_port(authority)?;
    check_host(host)?;

    let mut out = String::with_capacity(url.len() + 1);
    out.push_str(&scheme);
    out.push_str("://");
    out.push_str(&host.to_lowercase());
    if let Some(port) = port.filter(|&p| p != default_port) {
        out.push(':');
        out.push_str(&port.to_string());
    }
    if !path_and_query.starts_with('/') {
        out.push('/');
    }
    out.push_str(path_and_query);
    Ok(out)
}

/// Splits `host[:port]` (the host may be a bracketed IPv6 literal); an empty
/// port counts as none.
fn split_port(authority: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if authority.starts_with('[') {
        let Some(end) = authority.find(']') else {
            return Err("has an IPv6 host without its closing ']'".to_string());
        };
        let (host, after) = authority.split_at(end + 1);
        if after.is_empty() {
            (host, None)
        } else if let Some(port) = after.strip_prefix(':') {
            (host, Some(port))
        } else {
            return Err("has characters after its IPv6 host".to_string());
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None | Some("") => None,
        Some(digits) => {
            let number = digits
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| digits.parse::<u16>().ok())
                .flatten()
                .filter(|&p| p != 0);
            match number {
                Some(p) => Some(p),
                None => return Err(format!("has an invalid port {}", quote(digits))),
            }
        }
    };
    Ok((host, port))
}

fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() || host == "[]" {
        return Err(format!("has no host; it {NOT_HTTP}"));
    }
    let bad = if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').unwrap_or(inner);
        inner
            .chars()
            .find(|&c| !(c.is_ascii_hexdigit() || c == ':' || c == '.'))
    } else {
        host.chars()
            .find(|&c| !(c.is_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '%')))
    };
    match bad {
        Some(c) => Err(format!("has {} in its host", char_name(c))),
        None => Ok(()),
    }
}

fn is_http(text: &str) -> bool {
    let text = text.trim();
    let lower = text.get(..8).unwrap_or(text).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

fn char_name(c: char) -> String {
    if c == ' ' {
        "a space".to_string()
    } else {
        format!("the character U+{:04X}", u32::from(c))
    }
}

/// `text` in quotes, shortened to 60 characters, control characters escaped.
fn quote(text: &str) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(60).collect();
    if chars.next().is_some() {
        format!("{:?}…", head)
    } else {
        format!("{head:?}")
    }
}

// ---------------------------------------------------------------------------
// Dates

/// Parses `YYYY-MM-DD` (midnight UTC), or an RFC 3339 date-time with `Z`, an
/// offset, or no zone at all (taken as UTC). Seconds and fractions are
/// optional; fractions beyond nanoseconds are cut.
fn parse_date(text: &str) -> Result<Timestamp, String> {
    let bad = || {
        format!(
            "is not a date or date-time ({}); expected YYYY-MM-DD or RFC 3339 such as 2022-01-10T12:00:00+06:00",
            quote(text)
        )
    };
    let b = text.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let digits = b.get(from..from + len)?;
        digits
            .iter()
            .all(u8::is_ascii_digit)
            .then(|| digits.iter().fold(0, |n, &d| n * 10 + i64::from(d - b'0')))
    };
    let (Some(year), Some(month), Some(day)) = (num(0, 4), num(5, 2), num(8, 2)) else {
        return Err(bad());
    };
    if b[4] != b'-' || b[7] != b'-' {
        return Err(bad());
    }
    if year == 0 || !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return Err(format!("is not a calendar date ({})", quote(text)));
    }
    let midnight = days_from_civil(year, month, day) * 86_400;
    if b.len() == 10 {
        return Ok(Timestamp {
            seconds: midnight,
            nanos: 0,
        });
    }
    if !matches!(b[10], b'T' | b't' | b' ') || b.get(13) != Some(&b':') {
        return Err(bad());
    }
    let (Some(hour), Some(minute)) = (num(11, 2), num(14, 2)) else {
        return Err(bad());
    };
    let mut at = 16;
    let mut second = 0;
    let mut nanos = 0i32;
    if b.get(at) == Some(&b':') {
        second = num(at + 1, 2).ok_or_else(bad)?;
        at += 3;
        if b.get(at) == Some(&b'.') {
            at += 1;
            let start = at;
            while b.get(at).is_some_and(u8::is_ascii_digit) {
                at += 1;
            }
            if at == start {
                return Err(bad());
            }
            let mut scale = 100_000_000;
            for &d in &b[start..at.min(start + 9)] {
                nanos += i32::from(d - b'0') * scale;
                scale /= 10;
            }
        }
    }
    // 60: a leap second, counted into the next minute.
    if hour > 23 || minute > 59 || second > 60 {
        return Err(format!("has a time of day out of range ({})", quote(text)));
    }
    let offset = match b.get(at) {
        None => 0,
        Some(b'Z' | b'z') => {
            at += 1;
            0
        }
        Some(&sign) if sign == b'+' || sign == b'-' => {
            let hours = num(at + 1, 2).ok_or_else(bad)?;
            let (minutes, len) = if b.get(at + 3) == Some(&b':') {
                (num(at + 4, 2).ok_or_else(bad)?, 6)
            } else {
                (num(at + 3, 2).ok_or_else(bad)?, 5)
            };
            if hours > 23 || minutes > 59 {
                return Err(format!("has a zone offset out of range ({})", quote(text)));
            }
            at += len;
            let offset = hours * 3600 + minutes * 60;
            if sign == b'-' {
                -offset
            } else {
                offset
            }
        }
        Some(_) => return Err(bad()),
    };
    if at != b.len() {
        return Err(bad());
    }
    Ok(Timestamp {
        seconds: midnight + hour * 3600 + minute * 60 + second - offset,
        nanos,
    })
}

fn is_leap_year(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given proleptic Gregorian date.
///
/// Counts in a calendar whose year starts on 1 March, so the leap day is the
/// last day of its year: whole 400-year cycles (146,097 days), then whole
/// years of the cycle (365 each plus leap days), then days of the year, whose
/// months from March have lengths that `(153 * m + 2) / 5` sums exactly.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let cycle = year.div_euclid(400);
    let year_of_cycle = year - cycle * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_cycle = year_of_cycle * 365 + year_of_cycle / 4 - year_of_cycle / 100 + day_of_year;
    // 719,468 days separate 0000-03-01 from 1970-01-01.
    cycle * 146_097 + day_of_cycle - 719_468
}

// ---------------------------------------------------------------------------
// Errors

/// Why one item of an import was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemError {
    /// 0-based position of the item in the input, in document order after
    /// flattening arrays, JSON Lines, `@graph` and `DataFeed`s (nodes skipped
    /// silently do not count).
    pub index: usize,
    /// JSON-LD path of the offending property, e.g. "url",
    /// "reviewRating.ratingValue", "@type", "itemReviewed.appearance[2].url";
    /// empty when the whole item is at fault (e.g. a JSON Lines line that is
    /// not JSON).
    pub field: String,
    /// Plain words, e.g. "@type is \"NewsArticle\"; expected ClaimReview or
    /// MediaReview".
    pub reason: String,
}

impl std::fmt::Display for ItemError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "item {}: {}", self.index, self.reason)
    }
}

impl std::error::Error for ItemError {}

/// An [`ItemError`] before its index is known.
#[derive(Debug)]
struct Fault {
    field: String,
    reason: String,
}

impl Fault {
    /// The property at `path` is at fault; `what` continues its name
    /// ("is missing").
    fn at(path: &str, what: impl std::fmt::Display) -> Self {
        Fault {
            field: path.to_string(),
            reason: format!("{path} {what}"),
        }
    }

    /// The whole item is at fault.
    fn whole(reason: impl Into<String>) -> Self {
        Fault {
            field: String::new(),
            reason: reason.into(),
        }
    }

    fn into_item_error(self, index: usize) -> ItemError {
        ItemError {
            index,
            field: self.field,
            reason: self.reason,
        }
    }
}

// ---------------------------------------------------------------------------
// Reading JSON-LD values

type Object = serde_json::Map<String, Value>;

/// A property's values: the array's elements, the one value, or none.
fn values(v: &Value) -> &[Value] {
    match v {
        Value::Array(items) => items,
        Value::Null => &[],
        one => std::slice::from_ref(one),
    }
}

/// The first usable literal: a non-blank string, a number as written, or
/// either inside `{"@value": ...}`.
fn literal(v: &Value) -> Option<String> {
    values(v).iter().find_map(|one| {
        let one = match one {
            Value::Object(m) => m.get("@value")?,
            other => other,
        };
        match one {
            Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    })
}

/// The first usable URL-valued value: a string, or `@id` / `@value` of an
/// object.
fn reference(v: &Value) -> Option<String> {
    values(v).iter().find_map(|one| {
        let text = match one {
            Value::String(s) => s.as_str(),
            Value::Object(m) => m
                .get("@id")
                .or_else(|| m.get("@value"))
                .and_then(Value::as_str)?,
            _ => return None,
        };
        (!text.trim().is_empty()).then(|| text.to_string())
    })
}

/// Trims `raw`, turns CR LF into LF and checks it: no control characters
/// but tab and newline, at most `max_chars` characters.
fn clean(path: &str, raw: &str, max_chars: usize) -> Result<String, Fault> {
    let text = raw.trim().replace("\r\n", "\n");
    if let Some(c) = text
        .chars()
        .find(|&c| c.is_control() && c != '\t' && c != '\n')
    {
        return Err(Fault::at(
            path,
            format!("contains a control character (U+{:04X})", u32::from(c)),
        ));
    }
    let chars = text.chars().count();
    if chars > max_chars {
        return Err(Fault::at(
            path,
            format!("is {chars} characters long; at most {max_chars} are allowed"),
        ));
    }
    Ok(text)
}

/// `m[key]` as checked text; empty when absent.
fn text_field(m: &Object, key: &str, path: &str, max_chars: usize) -> Result<String, Fault> {
    match m.get(key).and_then(literal) {
        Some(raw) => clean(path, &raw, max_chars),
        None => Ok(String::new()),
    }
}

/// The first of `keys` that `m` has as text; `prefix` + key is its path.
fn text_of_first(
    m: &Object,
    keys: &[&str],
    prefix: &str,
    max_chars: usize,
) -> Result<String, Fault> {
    for key in keys {
        let text = text_field(m, key, &join(prefix, key), max_chars)?;
        if !text.is_empty() {
            return Ok(text);
        }
    }
    Ok(String::new())
}

/// `m[key]` as a date; `None` when absent.
fn date_field(m: &Object, key: &str, path: &str) -> Result<Option<Timestamp>, Fault> {
    match m.get(key).and_then(literal) {
        Some(raw) => parse_date(raw.trim())
            .map(Some)
            .map_err(|what| Fault::at(path, what)),
        None => Ok(None),
    }
}

/// A URL other than the review's own: checked like one, kept as given
/// (trimmed).
fn checked_url(path: &str, raw: &str) -> Result<String, Fault> {
    normalize_review_url(raw).map_err(|what| Fault::at(path, what))?;
    Ok(raw.trim().to_string())
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Path of entry `i` of a property: indexed only when the property is an
/// array.
fn entry_path(path: &str, property: &Value, i: usize) -> String {
    if property.is_array() {
        format!("{path}[{i}]")
    } else {
        path.to_string()
    }
}

/// Raw `@type` strings of a node.
fn raw_types(m: &Object) -> Vec<&str> {
    match m.get("@type") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// A schema.org type name without its `schema:` / `sdo:` prefix or
/// `http(s)://(www.)schema.org/` IRI base.
fn local_type(raw: &str) -> &str {
    const PREFIXES: [&str; 6] = [
        "https://schema.org/",
        "http://schema.org/",
        "https://www.schema.org/",
        "http://www.schema.org/",
        "schema:",
        "sdo:",
    ];
    let raw = raw.trim();
    PREFIXES
        .iter()
        .find_map(|p| raw.strip_prefix(p))
        .unwrap_or(raw)
}

fn has_type(m: &Object, name: &str) -> bool {
    raw_types(m).into_iter().any(|t| local_type(t) == name)
}

/// Node types that sites publish in the same `@graph` as their reviews,
/// skipped silently there.
const SITE_TYPES: [&str; 7] = [
    "WebPage",
    "WebSite",
    "Organization",
    "Person",
    "BreadcrumbList",
    "ImageObject",
    "SiteNavigationElement",
];

fn is_site_node(v: &Value) -> bool {
    let Value::Object(m) = v else {
        return false;
    };
    let types: Vec<&str> = raw_types(m).into_iter().map(local_type).collect();
    let wanted = ["ClaimReview", "MediaReview", "DataFeed", "DataFeedItem"];
    !types.iter().any(|t| wanted.contains(t)) && types.iter().any(|t| SITE_TYPES.contains(t))
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

// ---------------------------------------------------------------------------
// Flattening the input into items

/// One item of the input, in document order.
enum Entry<'a> {
    /// A node to parse as a review, with the `@graph` (index into
    /// [`Flattener::graphs`]) it came from, if any.
    Node {
        node: &'a Value,
        graph: Option<usize>,
    },
    /// An item refused before parsing.
    Broken(Fault),
}

/// The nodes of one `@graph`, by `@id`.
type GraphIndex<'a> = HashMap<&'a str, &'a Value>;

#[derive(Default)]
struct Flattener<'a> {
    entries: Vec<Entry<'a>>,
    graphs: Vec<GraphIndex<'a>>,
}

impl<'a> Flattener<'a> {
    /// Adds the items of `v`, which `depth` containers enclose.
    fn walk(&mut self, v: &'a Value, depth: usize, graph: Option<usize>) {
        let container = match v {
            Value::Array(_) => true,
            Value::Object(m) => {
                m.contains_key("@graph") || has_type(m, "DataFeed") || has_type(m, "DataFeedItem")
            }
            _ => false,
        };
        if container && depth >= MAX_NESTING {
            self.entries.push(Entry::Broken(Fault::whole(format!(
                "containers (arrays, @graph, DataFeed) nest more than {MAX_NESTING} levels deep"
            ))));
            return;
        }
        match v {
            Value::Array(items) => {
                for item in items {
                    self.walk(item, depth + 1, graph);
                }
            }
            Value::Object(m) => {
                if let Some(nodes) = m.get("@graph") {
                    self.walk_graph(nodes, depth + 1);
                } else if has_type(m, "DataFeed") {
                    for element in m.get("dataFeedElement").map_or(&[][..], values) {
                        self.walk(element, depth + 1, graph);
                    }
                } else if has_type(m, "DataFeedItem") {
                    match m.get("item").map(values) {
                        Some(items) if !items.is_empty() => {
                            for item in items {
                                self.walk(item, depth + 1, graph);
                            }
                        }
                        _ => self.entries.push(Entry::Broken(Fault::at(
                            "item",
                            "is missing; a DataFeedItem must carry the reviewed item",
                        ))),
                    }
                } else if self.is_known_reference(m, graph) {
                    // A reference to a node of the same @graph, which is an
                    // item (or skipped) on its own.
                } else {
                    self.entries.push(Entry::Node { node: v, graph });
                }
            }
            other => self.entries.push(Entry::Broken(Fault::whole(format!(
                "is {}, not a JSON object",
                json_kind(other)
            )))),
        }
    }

    /// Adds the nodes of a `@graph`, which `depth` containers enclose.
    fn walk_graph(&mut self, nodes: &'a Value, depth: usize) {
        if !matches!(nodes, Value::Array(_) | Value::Object(_)) {
            self.entries.push(Entry::Broken(Fault::at(
                "@graph",
                "is not an array of nodes",
            )));
            return;
        }
        let nodes = values(nodes);
        let index = nodes
            .iter()
            .filter_map(|n| Some((n.get("@id")?.as_str()?, n)))
            .collect();
        self.graphs.push(index);
        let graph = Some(self.graphs.len() - 1);
        for node in nodes.iter().filter(|n| !is_site_node(n)) {
            self.walk(node, depth, graph);
        }
    }

    fn is_known_reference(&self, m: &Object, graph: Option<usize>) -> bool {
        let id = match (m.len(), m.get("@id")) {
            (1, Some(Value::String(id))) => id.as_str(),
            _ => return false,
        };
        graph
            .and_then(|g| self.graphs.get(g))
            .is_some_and(|index| index.contains_key(id))
    }
}

// ---------------------------------------------------------------------------
// Parsing

/// Parses ClaimReview / MediaReview JSON-LD as newsrooms publish it.
///
/// Accepts one object, a JSON array of objects, JSON Lines (one object a
/// line, blank lines skipped; used when the whole input is not one JSON value
/// but its first non-blank line is), an object with `@graph`, and `DataFeed`s
/// of `DataFeedItem`s, nested in one another up to [`MAX_NESTING`] levels.
/// In a `@graph`, site furniture (`WebPage`, `WebSite`, `Organization`,
/// `Person`, `BreadcrumbList`, `ImageObject`, `SiteNavigationElement`) is
/// skipped silently, and `{"@id": ...}` references to its nodes are
/// followed.
///
/// Each item becomes a record (store-set fields left default) or an
/// [`ItemError`] naming the item's first problem.
///
/// Err only when the input as a whole is unusable (empty, or neither JSON
/// nor JSON Lines); the message says why and where (line/column).
pub fn parse_items(input: &str) -> Result<Vec<Result<ExternalReview, ItemError>>, String> {
    let input = input.strip_prefix('\u{feff}').unwrap_or(input);
    if input.trim().is_empty() {
        return Err("input is empty".to_string());
    }
    let documents: Vec<Result<Value, String>> = match serde_json::from_str::<Value>(input) {
        Ok(value) => vec![Ok(value)],
        Err(whole) => {
            let first = input.lines().find(|line| !line.trim().is_empty());
            if first.is_none_or(|line| serde_json::from_str::<Value>(line).is_err()) {
                return Err(format!(
                    "input is neither JSON nor JSON Lines: {} at line {} column {}",
                    json_error_words(&whole),
                    whole.line(),
                    whole.column()
                ));
            }
            input
                .lines()
                .enumerate()
                .filter(|(_, line)| !line.trim().is_empty())
                .map(|(n, line)| {
                    serde_json::from_str(line).map_err(|e| {
                        format!(
                            "line {} is not valid JSON: {} at column {}",
                            n + 1,
                            json_error_words(&e),
                            e.column()
                        )
                    })
                })
                .collect()
        }
    };

    let mut flat = Flattener::default();
    for document in &documents {
        match document {
            Ok(value) => flat.walk(value, 0, None),
            Err(reason) => flat
                .entries
                .push(Entry::Broken(Fault::whole(reason.clone()))),
        }
    }
    let Flattener { entries, graphs } = flat;
    let items = entries
        .into_iter()
        .enumerate()
        .map(|(index, entry)| {
            let parsed = match entry {
                Entry::Node { node, graph } => {
                    let ctx = Ctx {
                        graph: graph.and_then(|g| graphs.get(g)),
                    };
                    ctx.review(node)
                }
                Entry::Broken(fault) => Err(fault),
            };
            parsed.map_err(|fault| fault.into_item_error(index))
        })
        .collect();
    Ok(items)
}

/// serde_json's description of an error without its "at line L column C".
fn json_error_words(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rsplit_once(" at line ") {
        Some((words, _)) => words.to_string(),
        None => text,
    }
}

/// A person or organization (`author`, `publisher`).
#[derive(Default)]
struct Entity<'a> {
    name: String,
    /// `url`, unchecked.
    url: Option<String>,
    node: Option<&'a Object>,
}

/// Where the parts of one item are looked up.
struct Ctx<'a> {
    /// The `@graph` the item came from, to follow `{"@id": ...}` references.
    graph: Option<&'a GraphIndex<'a>>,
}

impl<'a> Ctx<'a> {
    /// `v`, or the graph node it references when it is only `{"@id": ...}`.
    fn resolve(&self, v: &'a Value) -> &'a Value {
        if let (Some(graph), Value::Object(m)) = (self.graph, v) {
            if let (1, Some(Value::String(id))) = (m.len(), m.get("@id")) {
                if let Some(&node) = graph.get(id.as_str()) {
                    return node;
                }
            }
        }
        v
    }

    /// The first object among the values of `v`, with its position.
    fn first_object(&self, v: &'a Value) -> Option<(usize, &'a Object)> {
        values(v)
            .iter()
            .enumerate()
            .find_map(|(i, one)| self.resolve(one).as_object().map(|m| (i, m)))
    }

    /// The first usable person or organization of `v` (a name string, or an
    /// object with `name` or `url`).
    fn entity(&self, v: Option<&'a Value>, path: &str) -> Result<Entity<'a>, Fault> {
        for one in v.map_or(&[][..], values) {
            match self.resolve(one) {
                Value::String(s) if !s.trim().is_empty() => {
                    return Ok(Entity {
                        name: clean(path, s, MAX_NAME_CHARS)?,
                        ..Entity::default()
                    });
                }
                Value::Object(m) => {
                    let url = m.get("url").and_then(reference);
                    if !m.contains_key("name") && url.is_none() {
                        continue;
                    }
                    return Ok(Entity {
                        name: text_field(m, "name", &join(path, "name"), MAX_NAME_CHARS)?,
                        url,
                        node: Some(m),
                    });
                }
                _ => {}
            }
        }
        Ok(Entity::default())
    }

    /// The organization a person works for (`affiliation`, `worksFor`).
    fn organization(&self, person: &'a Object, path: &str) -> Result<String, Fault> {
        for key in ["affiliation", "worksFor"] {
            let org = self.entity(person.get(key), &join(path, key))?;
            if !org.name.is_empty() {
                return Ok(org.name);
            }
        }
        Ok(String::new())
    }

    fn review(&self, node: &'a Value) -> Result<ExternalReview, Fault> {
        let Value::Object(m) = node else {
            return Err(Fault::whole(format!(
                "is {}, not a JSON object",
                json_kind(node)
            )));
        };
        let kind = review_kind(m)?;
        let mut review = ExternalReview {
            format_version: EXTERNAL_REVIEW_FORMAT_VERSION,
            kind: kind as i32,
            review_url: review_url(m)?,
            claim_reviewed: text_field(m, "claimReviewed", "claimReviewed", MAX_CLAIM_CHARS)?,
            ..ExternalReview::default()
        };
        if kind == ReviewKind::ClaimReview && review.claim_reviewed.is_empty() {
            return Err(Fault::at(
                "claimReviewed",
                "is missing or blank; a ClaimReview must state the claim it reviews",
            ));
        }
        review.date_published = date_field(m, "datePublished", "datePublished")?;
        review.language = language(m)?;
        review.headline = text_of_first(m, &["headline", "name"], "", MAX_NAME_CHARS)?;

        let author = self.entity(m.get("author"), "author")?;
        let publisher = self.entity(m.get("publisher"), "publisher")?;
        review.author_name = author.name.clone();
        if publisher.name.is_empty() && publisher.url.is_none() {
            review.publisher_name = match author.node {
                Some(person) => {
                    let org = self.organization(person, "author")?;
                    if org.is_empty() {
                        author.name
                    } else {
                        org
                    }
                }
                None => author.name,
            };
        } else {
            review.publisher_name = publisher.name;
            if let Some(url) = publisher.url {
                review.publisher_url = checked_url("publisher.url", &url)?;
            }
        }
        review.rating = self.rating(m)?;

        match kind {
            ReviewKind::MediaReview => self.media_part(m, &mut review)?,
            _ => self.claim_part(m, &mut review)?,
        }
        Ok(review)
    }

    /// ClaimReview: the reviewed Claim (`itemReviewed`).
    fn claim_part(&self, m: &'a Object, review: &mut ExternalReview) -> Result<(), Fault> {
        let Some((_, item)) = m.get("itemReviewed").and_then(|v| self.first_object(v)) else {
            return Ok(());
        };
        review.claimant = self.entity(item.get("author"), "itemReviewed.author")?.name;
        review.claim_date = date_field(item, "datePublished", "itemReviewed.datePublished")?;
        review.appearances = self.appearances(item, "appearance", "itemReviewed")?;
        review.first_appearance = self.first_appearance(item, "itemReviewed")?;
        Ok(())
    }

    /// MediaReview: the reviewed media (`itemReviewed`, a MediaObject, or a
    /// MediaReviewItem whose `mediaItemAppearance` holds MediaObjects).
    fn media_part(&self, m: &'a Object, review: &mut ExternalReview) -> Result<(), Fault> {
        if let Some(item) = m
            .get("itemReviewed")
            .and_then(|v| self.first_object(v))
            .map(|(_, o)| o)
        {
            let wrapped =
                has_type(item, "MediaReviewItem") || item.contains_key("mediaItemAppearance");
            let (media, media_path) = if wrapped {
                let appearances = item.get("mediaItemAppearance").unwrap_or(&Value::Null);
                review.appearances =
                    self.appearances(item, "mediaItemAppearance", "itemReviewed")?;
                match self.first_object(appearances) {
                    Some((i, media)) => (
                        Some(media),
                        entry_path("itemReviewed.mediaItemAppearance", appearances, i),
                    ),
                    None => (None, String::new()),
                }
            } else {
                review.appearances = self.appearances(item, "appearance", "itemReviewed")?;
                review.first_appearance = self.first_appearance(item, "itemReviewed")?;
                (Some(item), "itemReviewed".to_string())
            };

            if let Some(media) = media {
                let (key, raw) = match media.get("contentUrl").and_then(reference) {
                    Some(raw) => ("contentUrl", Some(raw)),
                    None => ("url", media.get("url").and_then(reference)),
                };
                if let Some(raw) = raw {
                    review.media_url = checked_url(&join(&media_path, key), &raw)?;
                }
                if let Some(raw) = media.get("sha256").and_then(literal) {
                    review.media_sha256 = sha256(&join(&media_path, "sha256"), &raw)?;
                }
                review.claimant = self
                    .entity(media.get("author"), &join(&media_path, "author"))?
                    .name;
                review.claim_date =
                    date_field(media, "datePublished", &join(&media_path, "datePublished"))?;
                if review.claim_date.is_none() {
                    review.claim_date =
                        date_field(media, "uploadDate", &join(&media_path, "uploadDate"))?;
                }
            }
            if review.claim_reviewed.is_empty() {
                review.claim_reviewed =
                    text_of_first(item, &["name", "caption"], "itemReviewed", MAX_CLAIM_CHARS)?;
            }
            if let (true, Some(media)) = (review.claim_reviewed.is_empty(), media) {
                review.claim_reviewed =
                    text_of_first(media, &["name", "caption"], &media_path, MAX_CLAIM_CHARS)?;
            }
            if wrapped {
                if review.claimant.is_empty() {
                    review.claimant = self.entity(item.get("author"), "itemReviewed.author")?.name;
                }
                if review.claim_date.is_none() {
                    review.claim_date =
                        date_field(item, "datePublished", "itemReviewed.datePublished")?;
                }
            }
        }
        if review.claim_reviewed.is_empty() {
            review.claim_reviewed = text_field(m, "name", "name", MAX_CLAIM_CHARS)?;
        }
        if let Some(raw) = m
            .get("mediaAuthenticityCategory")
            .and_then(|v| literal(v).or_else(|| reference(v)))
        {
            review.media_authenticity_category = clean(
                "mediaAuthenticityCategory",
                local_type(&raw),
                MAX_NAME_CHARS,
            )?;
        }
        Ok(())
    }

    /// `item[key]` as appearances; `base` is the path of `item`.
    fn appearances(
        &self,
        item: &'a Object,
        key: &str,
        base: &str,
    ) -> Result<Vec<Appearance>, Fault> {
        let path = join(base, key);
        let Some(property) = item.get(key) else {
            return Ok(Vec::new());
        };
        let entries = values(property);
        if entries.len() > MAX_APPEARANCES {
            return Err(Fault::at(
                &path,
                format!(
                    "has {} entries; at most {MAX_APPEARANCES} are allowed",
                    entries.len()
                ),
            ));
        }
        entries
            .iter()
            .enumerate()
            .map(|(i, entry)| self.appearance(entry, &entry_path(&path, property, i)))
            .collect()
    }

    fn first_appearance(&self, item: &'a Object, base: &str) -> Result<Option<Appearance>, Fault> {
        let path = join(base, "firstAppearance");
        match item.get("firstAppearance").and_then(|v| values(v).first()) {
            Some(entry) => self.appearance(entry, &path).map(Some),
            None => Ok(None),
        }
    }

    /// One CreativeWork (or MediaObject) where the claim or media appeared,
    /// or just its URL.
    fn appearance(&self, entry: &'a Value, path: &str) -> Result<Appearance, Fault> {
        let m = match self.resolve(entry) {
            Value::String(url) => {
                return Ok(Appearance {
                    url: checked_url(path, url)?,
                    ..Appearance::default()
                });
            }
            Value::Object(m) => m,
            other => {
                return Err(Fault::at(
                    path,
                    format!("is {}; expected a URL or a CreativeWork", json_kind(other)),
                ))
            }
        };
        let (key, raw) = match m.get("url").and_then(reference) {
            Some(raw) => ("url", Some(raw)),
            None => match m.get("contentUrl").and_then(reference) {
                Some(raw) => ("contentUrl", Some(raw)),
                None => (
                    "@id",
                    m.get("@id")
                        .and_then(Value::as_str)
                        .filter(|id| is_http(id))
                        .map(str::to_string),
                ),
            },
        };
        let Some(raw) = raw else {
            return Err(Fault::at(
                &join(path, "url"),
                "is missing; each appearance needs the http(s) URL where it appeared",
            ));
        };
        let mut date_published = date_field(m, "datePublished", &join(path, "datePublished"))?;
        if date_published.is_none() {
            date_published = date_field(m, "uploadDate", &join(path, "uploadDate"))?;
        }
        Ok(Appearance {
            url: checked_url(&join(path, key), &raw)?,
            headline: text_of_first(m, &["headline", "name", "caption"], path, MAX_NAME_CHARS)?,
            date_published,
            author: self.entity(m.get("author"), &join(path, "author"))?.name,
        })
    }

    /// `reviewRating`: a Rating object, or just its words.
    fn rating(&self, m: &'a Object) -> Result<Option<PublishedRating>, Fault> {
        let Some(property) = m.get("reviewRating") else {
            return Ok(None);
        };
        for one in values(property) {
            match self.resolve(one) {
                Value::String(words) if !words.trim().is_empty() => {
                    return Ok(Some(PublishedRating {
                        alternate_name: clean("reviewRating", words, MAX_NAME_CHARS)?,
                        ..PublishedRating::default()
                    }));
                }
                Value::Object(r) => {
                    let path = "reviewRating";
                    let rating = PublishedRating {
                        value: text_field(
                            r,
                            "ratingValue",
                            "reviewRating.ratingValue",
                            MAX_NAME_CHARS,
                        )?,
                        best: text_field(
                            r,
                            "bestRating",
                            "reviewRating.bestRating",
                            MAX_NAME_CHARS,
                        )?,
                        worst: text_field(
                            r,
                            "worstRating",
                            "reviewRating.worstRating",
                            MAX_NAME_CHARS,
                        )?,
                        alternate_name: text_of_first(
                            r,
                            &["alternateName", "name"],
                            path,
                            MAX_NAME_CHARS,
                        )?,
                    };
                    if rating.value.is_empty() && rating.alternate_name.is_empty() {
                        return Err(Fault::at(
                            path,
                            "has neither ratingValue nor alternateName/name",
                        ));
                    }
                    return Ok(Some(rating));
                }
                _ => {}
            }
        }
        if values(property).is_empty() {
            Ok(None)
        } else {
            Err(Fault::at("reviewRating", "is not a Rating object"))
        }
    }
}

fn review_kind(m: &Object) -> Result<ReviewKind, Fault> {
    const EXPECTED: &str = "expected ClaimReview or MediaReview";
    let raw = raw_types(m);
    if raw.is_empty() {
        let what = if m.contains_key("@type") {
            "is not a type name"
        } else {
            "is missing"
        };
        return Err(Fault::at("@type", format!("{what}; {EXPECTED}")));
    }
    let claim = raw.iter().any(|t| local_type(t) == "ClaimReview");
    let media = raw.iter().any(|t| local_type(t) == "MediaReview");
    match (claim, media) {
        (true, false) => Ok(ReviewKind::ClaimReview),
        (false, true) => Ok(ReviewKind::MediaReview),
        (true, true) => Err(Fault::at(
            "@type",
            "names both ClaimReview and MediaReview; expected one of them",
        )),
        (false, false) => {
            let found = match raw.as_slice() {
                [one] => quote(one),
                many => format!(
                    "[{}]",
                    many.iter().map(|t| quote(t)).collect::<Vec<_>>().join(", ")
                ),
            };
            Err(Fault::at("@type", format!("is {found}; {EXPECTED}")))
        }
    }
}

/// The review's own `url` (or an http(s) `@id` when there is no `url`),
/// normalized.
fn review_url(m: &Object) -> Result<String, Fault> {
    let raw = match m.get("url").and_then(reference) {
        Some(raw) => raw,
        None => match m.get("@id").and_then(Value::as_str) {
            Some(id) if is_http(id) => id.to_string(),
            _ => {
                return Err(Fault::at(
                    "url",
                    "is missing; a review needs the http(s) URL where it is published",
                ))
            }
        },
    };
    normalize_review_url(&raw).map_err(|what| Fault::at("url", what))
}

/// `inLanguage`: a tag, or a Language object's `alternateName` / `name`;
/// checked as a BCP 47 tag, primary subtag lower-cased.
fn language(m: &Object) -> Result<String, Fault> {
    let Some(property) = m.get("inLanguage") else {
        return Ok(String::new());
    };
    let raw = values(property).iter().find_map(|one| match one {
        Value::Object(o) if !o.contains_key("@value") => o
            .get("alternateName")
            .and_then(literal)
            .or_else(|| o.get("name").and_then(literal)),
        other => literal(other),
    });
    let Some(raw) = raw else {
        return Ok(String::new());
    };
    let tag = raw.trim();
    let mut subtags = tag.split('-');
    let primary = subtags.next().unwrap_or_default();
    let valid = tag.len() <= MAX_LANGUAGE_BYTES
        && (1..=8).contains(&primary.len())
        && primary.bytes().all(|b| b.is_ascii_alphabetic())
        && subtags
            .all(|s| (1..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric()));
    if !valid {
        return Err(Fault::at(
            "inLanguage",
            format!(
                "is not a language tag ({}); expected a BCP 47 tag such as \"en\" or \"ru-KZ\"",
                quote(tag)
            ),
        ));
    }
    Ok(format!(
        "{}{}",
        primary.to_ascii_lowercase(),
        &tag[primary.len()..]
    ))
}

/// A SHA-256 in hex, lower-cased.
fn sha256(path: &str, raw: &str) -> Result<String, Fault> {
    let hex = raw.trim();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Fault::at(
            path,
            format!("is not a SHA-256 (64 hexadecimal digits): {}", quote(hex)),
        ));
    }
    Ok(hex.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2022-01-08T00:00:00Z.
    const JAN_8: i64 = 1_641_600_000;
    const DAY: i64 = 86_400;
    const SHA: &str = "1e5ee7cb7d0f3a8b6e0c6f5b1c1d3b8a0e6f7a1b2c3d4e5f60718293a4b5c6d7";

    const SINGLE: &str = include_str!("../../tests/data/claimreview/single.json");
    const ARRAY: &str = include_str!("../../tests/data/claimreview/array.json");
    const FEED: &str = include_str!("../../tests/data/claimreview/feed.jsonl");
    const GRAPH: &str = include_str!("../../tests/data/claimreview/graph.json");
    const DATAFEED: &str = include_str!("../../tests/data/claimreview/datafeed.json");

    fn ts(seconds: i64) -> Option<Timestamp> {
        Some(Timestamp { seconds, nanos: 0 })
    }

    /// A minimal valid ClaimReview about the reference case.
    fn claim_review() -> Value {
        serde_json::json!({
            "@context": "https://schema.org",
            "@type": "ClaimReview",
            "url": "https://factcheck.example.org/2022/01/un-helmets",
            "claimReviewed": "UN peacekeepers were deployed to Kazakhstan",
            "reviewRating": {"@type": "Rating", "alternateName": "False"}
        })
    }

    fn with(mut node: Value, key: &str, value: Value) -> Value {
        if let Some(m) = node.as_object_mut() {
            m.insert(key.to_string(), value);
        }
        node
    }

    fn without(mut node: Value, key: &str) -> Value {
        if let Some(m) = node.as_object_mut() {
            m.remove(key);
        }
        node
    }

    fn parse_all(input: &str) -> Vec<Result<ExternalReview, ItemError>> {
        match parse_items(input) {
            Ok(items) => items,
            Err(e) => panic!("input refused: {e}"),
        }
    }

    fn one_ok(node: Value) -> ExternalReview {
        let items = parse_all(&node.to_string());
        assert_eq!(items.len(), 1, "{items:?}");
        match items.into_iter().next() {
            Some(Ok(review)) => review,
            other => panic!("expected a review, got {other:?}"),
        }
    }

    fn one_err(node: Value) -> ItemError {
        let items = parse_all(&node.to_string());
        assert_eq!(items.len(), 1, "{items:?}");
        match items.into_iter().next() {
            Some(Err(e)) => e,
            other => panic!("expected an item error, got {other:?}"),
        }
    }

    // --- normalize_review_url ---------------------------------------------

    #[test]
    fn url_lowercases_scheme_and_host_and_keeps_path_and_query() {
        assert_eq!(
            normalize_review_url("  HTTPS://FactCheck.Example.ORG/Claims/KAZBAT?Lang=EN&x=1  "),
            Ok("https://factcheck.example.org/Claims/KAZBAT?Lang=EN&x=1".to_string())
        );
    }

    #[test]
    fn url_drops_fragment_and_default_ports_only() {
        let cases = [
            ("https://a.example.org:443/x#top", "https://a.example.org/x"),
            ("http://a.example.org:80/x", "http://a.example.org/x"),
            ("http://a.example.org:443/x", "http://a.example.org:443/x"),
            (
                "https://a.example.org:8443/x",
                "https://a.example.org:8443/x",
            ),
            ("https://a.example.org:/x", "https://a.example.org/x"),
            ("https://a.example.org", "https://a.example.org/"),
            ("https://a.example.org?q=1", "https://a.example.org/?q=1"),
            ("https://a.example.org#frag", "https://a.example.org/"),
            ("https://[2001:DB8::1]:443/x", "https://[2001:db8::1]/x"),
            ("https://[2001:db8::1]:8080", "https://[2001:db8::1]:8080/"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                normalize_review_url(input).as_deref(),
                Ok(expected),
                "{input}"
            );
        }
    }

    #[test]
    fn url_refusals_say_what_is_wrong() {
        let cases = [
            ("", "is empty"),
            ("   ", "is empty"),
            ("factcheck.example.org/claims/1", NOT_HTTP),
            ("/claims/1", NOT_HTTP),
            ("ftp://example.org/x", NOT_HTTP),
            ("javascript:alert('http://x')", NOT_HTTP),
            ("https:/example.org/x", NOT_HTTP),
            ("https:///x", "has no host"),
            ("https://?q=1", "has no host"),
            ("https://example.org/a b", "a space"),
            ("https://example.org/a\tb", "U+0009"),
            ("https://example.org/\u{7}", "U+0007"),
            ("https://user:pw@example.org/", "user name or password"),
            ("https://example.org:99999/", "invalid port"),
            ("https://example.org:0/", "invalid port"),
            ("https://example.org:8o/", "invalid port"),
            ("https://exa<mple.org/", "in its host"),
            ("https://[::1/", "closing ']'"),
            ("https://[::1]x/", "after its IPv6 host"),
        ];
        for (input, expected) in cases {
            match normalize_review_url(input) {
                Err(e) => assert!(e.contains(expected), "{input:?}: {e}"),
                Ok(url) => panic!("{input:?} accepted as {url}"),
            }
        }
    }

    #[test]
    fn url_length_limit_is_in_bytes() {
        let base = "https://example.org/";
        let at_limit = format!("{base}{}", "a".repeat(MAX_URL_BYTES - base.len()));
        assert!(normalize_review_url(&at_limit).is_ok());
        let over = format!("{at_limit}a");
        assert!(normalize_review_url(&over).is_err_and(|e| e.contains("2049 bytes")));
    }

    #[test]
    fn url_with_unicode_host_and_path_is_kept() {
        assert_eq!(
            normalize_review_url("https://Пример.example.org/проверка"),
            Ok("https://пример.example.org/проверка".to_string())
        );
    }

    // --- dates ------------------------------------------------------------

    #[test]
    fn days_from_civil_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2022, 1, 8) * DAY, JAN_8);
        assert_eq!(
            days_from_civil(2024, 2, 29) + 1,
            days_from_civil(2024, 3, 1)
        );
        assert_eq!(
            days_from_civil(1900, 3, 1) - days_from_civil(1900, 2, 28),
            1
        );
        assert_eq!(days_from_civil(1, 1, 1), -719_162);
    }

    #[test]
    fn dates_of_each_form() {
        let noon = JAN_8 + 2 * DAY + 12 * 3600; // 2022-01-10T12:00:00Z
        let cases = [
            ("2022-01-08", JAN_8, 0),
            ("2022-01-10T12:00:00Z", noon, 0),
            ("2022-01-10t12:00:00z", noon, 0),
            ("2022-01-10T12:00:00+06:00", noon - 6 * 3600, 0),
            ("2022-01-10T12:00:00-0530", noon + 5 * 3600 + 1800, 0),
            ("2022-01-10T12:00:00", noon, 0),
            ("2022-01-10 12:00:00", noon, 0),
            ("2022-01-10T12:00", noon, 0),
            ("2022-01-10T12:00+01:00", noon - 3600, 0),
            ("2022-01-10T12:00:00.5Z", noon, 500_000_000),
            ("2022-01-10T12:00:00.123456789123Z", noon, 123_456_789),
            ("2016-12-31T23:59:60Z", days_from_civil(2017, 1, 1) * DAY, 0),
        ];
        for (text, seconds, nanos) in cases {
            assert_eq!(parse_date(text), Ok(Timestamp { seconds, nanos }), "{text}");
        }
    }

    #[test]
    fn bad_dates_are_refused() {
        for text in [
            "",
            "2022",
            "2022-1-8",
            "08.01.2022",
            "January 8, 2022",
            "2022-01-08T",
            "2022-01-08T12",
            "2022-01-08T12:00:00+6",
            "2022-01-08T12:00:00.Z",
            "2022-01-08T12:00:00Zjunk",
            "2022-02-30",
            "2021-02-29",
            "2022-13-01",
            "0000-01-01",
            "2022-01-08T24:00:00Z",
            "2022-01-08T12:60:00Z",
            "2022-01-08T12:00:00+24:00",
            "２０２２-01-08",
        ] {
            assert!(parse_date(text).is_err(), "{text:?} accepted");
        }
    }

    #[test]
    fn review_dates_map_and_bad_ones_name_their_field() {
        let node = with(
            claim_review(),
            "datePublished",
            "2022-01-12T09:30:00+06:00".into(),
        );
        let node = with(
            node,
            "itemReviewed",
            serde_json::json!({"@type": "Claim", "datePublished": "2022-01-08"}),
        );
        let review = one_ok(node.clone());
        assert_eq!(
            review.date_published,
            ts(JAN_8 + 4 * DAY + 9 * 3600 + 1800 - 6 * 3600)
        );
        assert_eq!(review.claim_date, ts(JAN_8));

        let e = one_err(with(
            node.clone(),
            "datePublished",
            "12 January 2022".into(),
        ));
        assert_eq!(e.field, "datePublished");
        assert!(e.reason.contains("\"12 January 2022\""), "{}", e.reason);

        let e = one_err(with(
            node,
            "itemReviewed",
            serde_json::json!({"datePublished": "2022-02-30"}),
        ));
        assert_eq!(e.field, "itemReviewed.datePublished");
    }

    // --- input shapes -----------------------------------------------------

    #[test]
    fn single_object_maps_every_field() {
        let items = parse_all(SINGLE);
        assert_eq!(items.len(), 1);
        let Some(Ok(r)) = items.first() else {
            panic!("{items:?}");
        };
        assert_eq!(r.format_version, EXTERNAL_REVIEW_FORMAT_VERSION);
        assert_eq!(r.id, 0);
        assert_eq!(r.kind, ReviewKind::ClaimReview as i32);
        assert_eq!(
            r.review_url,
            "https://factcheck.example.org/2022/01/no-un-peacekeepers-in-kazakhstan"
        );
        assert_eq!(r.publisher_name, "Example Fact Check");
        assert_eq!(r.publisher_url, "https://factcheck.example.org/");
        assert_eq!(r.author_name, "A. Example");
        assert_eq!(
            r.claim_reviewed,
            "Photos show UN peacekeepers deployed to Kazakhstan to put down the protests"
        );
        assert_eq!(r.claimant, "Social media posts");
        assert_eq!(r.claim_date, ts(JAN_8));
        assert_eq!(r.date_published, ts(JAN_8 + 4 * DAY + 9 * 3600 + 1800));
        assert_eq!(r.language, "en");
        assert!(r
            .headline
            .starts_with("No, the UN did not send peacekeepers"));
        assert_eq!(
            r.rating,
            Some(PublishedRating {
                value: "1".into(),
                best: "5".into(),
                worst: "1".into(),
                alternate_name: "False".into(),
            })
        );
        assert_eq!(r.appearances.len(), 2);
        assert_eq!(
            r.appearances[0].url,
            "https://social.example.org/posts/1001"
        );
        assert_eq!(
            r.appearances[0].date_published,
            ts(JAN_8 + 14 * 3600 + 1200 - 6 * 3600)
        );
        assert_eq!(r.appearances[1].author, "Channel Example");
        assert_eq!(
            r.appearances[1].url,
            "https://video.example.org/watch?v=blue-helmets-almaty"
        );
        let first = r.first_appearance.as_ref().map(|a| a.headline.as_str());
        assert_eq!(first, Some("UN peacekeepers are in Almaty now"));
        assert!(r.media_url.is_empty() && r.media_sha256.is_empty());
        assert_eq!(r.create_time, None);
        assert_eq!(r.revision, 0);
        assert!(r.imported_by.is_empty());
    }

    #[test]
    fn array_with_a_russian_review() {
        let items = parse_all(ARRAY);
        assert_eq!(items.len(), 2);
        let Some(Ok(en)) = items.first() else {
            panic!("{items:?}");
        };
        assert_eq!(en.rating.as_ref().map(|r| r.best.as_str()), Some("6"));
        assert_eq!(en.appearances.len(), 1, "a single appearance object");
        assert_eq!(en.publisher_name, "Example Fact Check");
        let Some(Ok(ru)) = items.get(1) else {
            panic!("{items:?}");
        };
        assert_eq!(ru.language, "ru");
        assert_eq!(
            ru.claim_reviewed,
            "На фотографиях — миротворцы ООН, введённые в Казахстан для подавления протестов"
        );
        assert_eq!(
            ru.headline,
            "Нет, ООН не направляла миротворцев в Казахстан"
        );
        assert_eq!(ru.publisher_name, "Пример: проверка фактов");
        assert_eq!(ru.claimant, "Telegram-каналы");
        assert_eq!(
            ru.rating.as_ref().map(|r| r.alternate_name.as_str()),
            Some("Ложь")
        );
        assert_eq!(ru.date_published, ts(JAN_8 + 5 * DAY + 4 * 3600));
    }

    #[test]
    fn json_lines_with_a_broken_line() {
        let items = parse_all(FEED);
        assert_eq!(items.len(), 3);
        assert!(items[0]
            .as_ref()
            .is_ok_and(|r| r.claimant == "Social media posts"));
        let Err(broken) = &items[1] else {
            panic!("{items:?}");
        };
        assert_eq!(broken.index, 1);
        assert_eq!(broken.field, "");
        assert!(
            broken.reason.starts_with("line 2 is not valid JSON: "),
            "{}",
            broken.reason
        );
        let Err(no_url) = &items[2] else {
            panic!("{items:?}");
        };
        assert_eq!((no_url.index, no_url.field.as_str()), (2, "url"));
        assert!(
            no_url.reason.starts_with("url is missing"),
            "{}",
            no_url.reason
        );
    }

    #[test]
    fn json_lines_skip_blank_lines_and_count_lines_in_the_input() {
        let good = claim_review().to_string();
        let input = format!("\n{good}\r\n\n   \n{{\"@type\": \n{good}\n");
        let items = parse_all(&input);
        assert_eq!(items.len(), 3);
        assert!(items[0].is_ok() && items[2].is_ok());
        let Err(e) = &items[1] else {
            panic!("{items:?}");
        };
        assert!(e.reason.starts_with("line 5 "), "{}", e.reason);
        assert!(e.reason.contains("column"), "{}", e.reason);
    }

    #[test]
    fn graph_skips_site_nodes_follows_references_and_refuses_others() {
        let items = parse_all(GRAPH);
        assert_eq!(
            items.len(),
            1,
            "WebPage and Organization skipped: {items:?}"
        );
        let Some(Ok(r)) = items.first() else {
            panic!("{items:?}");
        };
        assert_eq!(r.publisher_name, "Example Fact Check");
        assert_eq!(r.publisher_url, "https://factcheck.example.org/");
        assert_eq!(r.author_name, "Example Fact Check");
        assert_eq!(r.language, "en-US");
        assert_eq!(
            r.headline,
            "No, the UN did not send peacekeepers to Kazakhstan"
        );

        let graph = serde_json::json!({
            "@context": "https://schema.org",
            "@graph": [
                {"@type": "WebPage", "url": "https://factcheck.example.org/x"},
                {"@type": "NewsArticle", "headline": "UN asks Kazakhstan about helmets"},
                {"@type": ["schema:BreadcrumbList"]},
                claim_review(),
            ]
        });
        let items = parse_all(&graph.to_string());
        assert_eq!(items.len(), 2);
        let Err(e) = &items[0] else {
            panic!("{items:?}");
        };
        assert_eq!(e.index, 0);
        assert_eq!(e.field, "@type");
        assert_eq!(
            e.reason,
            "@type is \"NewsArticle\"; expected ClaimReview or MediaReview"
        );
        assert!(items[1].is_ok());
    }

    #[test]
    fn datafeed_items_as_object_and_array() {
        let items = parse_all(DATAFEED);
        assert_eq!(items.len(), 3);
        let Some(Ok(claim)) = items.first() else {
            panic!("{items:?}");
        };
        assert_eq!(claim.kind, ReviewKind::ClaimReview as i32);
        let Some(Ok(media)) = items.get(1) else {
            panic!("{items:?}");
        };
        assert_eq!(media.kind, ReviewKind::MediaReview as i32);
        assert_eq!(media.media_sha256, SHA);
        assert_eq!(
            media.media_url,
            "https://media.example.org/kazakhstan/2022-01-08-almaty-blue-helmets.jpg"
        );
        assert_eq!(media.media_authenticity_category, "DecontextualizedContent");
        assert_eq!(
            media.claim_reviewed,
            "Soldiers in blue UN helmets in Almaty, shared as proof of a UN deployment"
        );
        assert_eq!(media.claimant, "Social media posts");
        assert_eq!(media.claim_date, ts(JAN_8));
        assert_eq!(media.appearances.len(), 1);
        assert_eq!(media.rating, None);
        let Some(Err(e)) = items.get(2) else {
            panic!("{items:?}");
        };
        assert_eq!((e.index, e.field.as_str()), (2, "@type"));
        assert!(e.reason.contains("\"NewsArticle\""), "{}", e.reason);
    }

    #[test]
    fn datafeed_item_with_an_array_and_direct_elements() {
        let second = with(
            claim_review(),
            "url",
            "https://factcheck.example.org/2".into(),
        );
        let feed = serde_json::json!({
            "@type": "schema:DataFeed",
            "dataFeedElement": [
                {"@type": "DataFeedItem", "item": [claim_review(), second]},
                with(claim_review(), "url", "https://factcheck.example.org/3".into()),
                {"@type": "DataFeedItem"},
            ]
        });
        let items = parse_all(&feed.to_string());
        assert_eq!(items.len(), 4);
        let urls: Vec<_> = items
            .iter()
            .filter_map(|i| i.as_ref().ok().map(|r| r.review_url.as_str()))
            .collect();
        assert_eq!(
            urls,
            [
                "https://factcheck.example.org/2022/01/un-helmets",
                "https://factcheck.example.org/2",
                "https://factcheck.example.org/3",
            ]
        );
        let Some(Err(e)) = items.get(3) else {
            panic!("{items:?}");
        };
        assert_eq!((e.index, e.field.as_str()), (3, "item"));
    }

    #[test]
    fn containers_nest_and_flatten_in_document_order() {
        let n = |i: u32| {
            with(
                claim_review(),
                "url",
                format!("https://f.example.org/{i}").into(),
            )
        };
        let input = serde_json::json!([
            n(0),
            {"@type": "DataFeed", "dataFeedElement": [
                {"@type": "DataFeedItem", "item": {"@graph": [n(1), {"@type": "WebSite"}, n(2)]}},
            ]},
            [[n(3)], n(4)],
            {"@type": "DataFeed"},
        ]);
        let urls: Vec<String> = parse_all(&input.to_string())
            .into_iter()
            .map(|i| i.map(|r| r.review_url).unwrap_or_default())
            .collect();
        let expected: Vec<String> = (0..5)
            .map(|i| format!("https://f.example.org/{i}"))
            .collect();
        assert_eq!(urls, expected);
    }

    #[test]
    fn nesting_limit() {
        let nest = |levels: usize| {
            let mut v = claim_review();
            for _ in 0..levels {
                v = Value::Array(vec![v]);
            }
            v.to_string()
        };
        let items = parse_all(&nest(MAX_NESTING));
        assert!(matches!(items.as_slice(), [Ok(_)]), "{items:?}");
        let items = parse_all(&nest(MAX_NESTING + 1));
        let [Err(e)] = items.as_slice() else {
            panic!("{items:?}");
        };
        assert_eq!(e.field, "");
        assert!(e.reason.contains("nest more than 8 levels"), "{}", e.reason);
        // Deep input serde_json itself refuses is unusable as a whole.
        assert!(parse_items(&nest(1000)).is_err());
        // DataFeeds count as levels too.
        let mut feed = claim_review();
        for _ in 0..MAX_NESTING {
            feed = serde_json::json!({"@type": "DataFeed", "dataFeedElement": [feed]});
        }
        assert!(matches!(parse_all(&feed.to_string()).as_slice(), [Ok(_)]));
        let feed = serde_json::json!([feed]);
        assert!(matches!(parse_all(&feed.to_string()).as_slice(), [Err(_)]));
    }

    #[test]
    fn unusable_inputs() {
        assert_eq!(parse_items(""), Err("input is empty".to_string()));
        assert_eq!(parse_items(" \n\t\n"), Err("input is empty".to_string()));
        let e = parse_items("{\n  \"@type\": \"ClaimReview\",\n  \"url\": }\n").unwrap_err();
        assert!(e.starts_with("input is neither JSON nor JSON Lines"), "{e}");
        assert!(e.contains("line 3 column"), "{e}");
        assert!(parse_items("<html>ClaimReview</html>").is_err());
        assert_eq!(parse_items("[]"), Ok(Vec::new()));
        // Byte order mark.
        assert_eq!(
            parse_items(&format!("\u{feff}{}", claim_review())).map(|i| i.len()),
            Ok(1)
        );
    }

    #[test]
    fn items_that_are_not_objects() {
        let items = parse_all("[1, \"x\", null, {}]");
        let reasons: Vec<_> = items
            .iter()
            .map(|i| {
                i.as_ref()
                    .err()
                    .map(|e| (e.field.as_str(), e.reason.as_str()))
            })
            .collect();
        assert_eq!(
            reasons,
            [
                Some(("", "is a number, not a JSON object")),
                Some(("", "is a string, not a JSON object")),
                Some(("", "is null, not a JSON object")),
                Some((
                    "@type",
                    "@type is missing; expected ClaimReview or MediaReview"
                )),
            ]
        );
    }

    // --- @type --------------------------------------------------------------

    #[test]
    fn type_as_array_prefix_and_iri() {
        for t in [
            serde_json::json!(["ClaimReview"]),
            serde_json::json!(["CreativeWork", "http://schema.org/ClaimReview"]),
            serde_json::json!("https://schema.org/ClaimReview"),
            serde_json::json!("schema:ClaimReview"),
        ] {
            let r = one_ok(with(claim_review(), "@type", t.clone()));
            assert_eq!(r.kind, ReviewKind::ClaimReview as i32, "{t}");
        }
        let r = one_ok(with(
            claim_review(),
            "@type",
            "https://schema.org/MediaReview".into(),
        ));
        assert_eq!(r.kind, ReviewKind::MediaReview as i32);
    }

    #[test]
    fn wrong_types_are_named() {
        let cases = [
            (
                serde_json::json!("claimreview"),
                "@type is \"claimreview\";",
            ),
            (
                serde_json::json!(["Article", "schema:NewsArticle"]),
                "@type is [\"Article\", \"schema:NewsArticle\"];",
            ),
            (serde_json::json!(42), "@type is not a type name;"),
            (
                serde_json::json!(["ClaimReview", "MediaReview"]),
                "names both ClaimReview and MediaReview",
            ),
        ];
        for (t, expected) in cases {
            let e = one_err(with(claim_review(), "@type", t));
            assert_eq!(e.field, "@type");
            assert!(e.reason.contains(expected), "{}", e.reason);
        }
        let e = one_err(without(claim_review(), "@type"));
        assert_eq!(
            e.reason,
            "@type is missing; expected ClaimReview or MediaReview"
        );
    }

    // --- fields ---------------------------------------------------------------

    #[test]
    fn bad_or_missing_url() {
        let e = one_err(with(
            claim_review(),
            "url",
            "factcheck.example.org/x".into(),
        ));
        assert_eq!(e.field, "url");
        assert_eq!(e.reason, "url must be an absolute http(s) URL");

        let e = one_err(without(claim_review(), "url"));
        assert_eq!(e.field, "url");

        // @id stands in for a missing url when it is an http(s) URL.
        let node = with(
            without(claim_review(), "url"),
            "@id",
            "HTTPS://FactCheck.example.org/x#claimreview".into(),
        );
        assert_eq!(one_ok(node).review_url, "https://factcheck.example.org/x");
        let node = with(without(claim_review(), "url"), "@id", "_:b0".into());
        assert_eq!(one_err(node).field, "url");

        // url as an object or array.
        let node = with(
            claim_review(),
            "url",
            serde_json::json!([{"@id": "https://factcheck.example.org/y"}]),
        );
        assert_eq!(one_ok(node).review_url, "https://factcheck.example.org/y");
    }

    #[test]
    fn claim_reviewed_is_required_for_claim_reviews() {
        let e = one_err(without(claim_review(), "claimReviewed"));
        assert_eq!(e.field, "claimReviewed");
        assert!(
            e.reason.starts_with("claimReviewed is missing or blank"),
            "{}",
            e.reason
        );
        let e = one_err(with(claim_review(), "claimReviewed", " \n ".into()));
        assert_eq!(e.field, "claimReviewed");

        // A MediaReview without one falls back to the review's name.
        let node = with(
            without(claim_review(), "claimReviewed"),
            "@type",
            "MediaReview".into(),
        );
        let node = with(node, "name", "Soldiers in UN helmets in Almaty".into());
        assert_eq!(
            one_ok(node).claim_reviewed,
            "Soldiers in UN helmets in Almaty"
        );
    }

    #[test]
    fn text_limits_and_control_characters() {
        let long = "x".repeat(MAX_CLAIM_CHARS);
        assert!(
            one_ok(with(claim_review(), "claimReviewed", long.clone().into()))
                .claim_reviewed
                .len()
                == MAX_CLAIM_CHARS
        );
        let e = one_err(with(
            claim_review(),
            "claimReviewed",
            format!("{long}я").into(),
        ));
        assert_eq!(e.field, "claimReviewed");
        assert!(e.reason.contains("10001 characters"), "{}", e.reason);

        let e = one_err(with(claim_review(), "headline", "x".repeat(501).into()));
        assert_eq!(e.field, "headline");

        let e = one_err(with(
            claim_review(),
            "claimReviewed",
            "UN\u{0}troops".into(),
        ));
        assert_eq!(e.field, "claimReviewed");
        assert!(e.reason.contains("U+0000"), "{}", e.reason);

        let e = one_err(with(
            claim_review(),
            "publisher",
            serde_json::json!({"name": "Example\u{1b}[31m"}),
        ));
        assert_eq!(e.field, "publisher.name");

        let r = one_ok(with(
            claim_review(),
            "claimReviewed",
            "  Line one\r\n\tline two  ".into(),
        ));
        assert_eq!(r.claim_reviewed, "Line one\n\tline two");
    }

    #[test]
    fn publisher_author_and_claimant_shapes() {
        let node = with(claim_review(), "publisher", "Example Fact Check".into());
        let node = with(
            node,
            "author",
            serde_json::json!(["", {"name": "A. Example"}]),
        );
        let r = one_ok(node);
        assert_eq!(
            (r.publisher_name.as_str(), r.author_name.as_str()),
            ("Example Fact Check", "A. Example")
        );
        assert_eq!(r.publisher_url, "");

        // No publisher: the author's organization, else the author.
        let node = with(
            claim_review(),
            "author",
            serde_json::json!({"@type": "Person", "name": "A. Example", "worksFor": {"name": "Example Fact Check"}}),
        );
        let r = one_ok(node);
        assert_eq!(
            (r.publisher_name.as_str(), r.author_name.as_str()),
            ("Example Fact Check", "A. Example")
        );
        let node = with(
            claim_review(),
            "author",
            serde_json::json!({"@type": "Organization", "name": "Example Fact Check"}),
        );
        assert_eq!(one_ok(node).publisher_name, "Example Fact Check");

        let e = one_err(with(
            claim_review(),
            "publisher",
            serde_json::json!({"name": "X", "url": "www.x.org"}),
        ));
        assert_eq!(e.field, "publisher.url");

        let node = with(
            claim_review(),
            "itemReviewed",
            serde_json::json!([{"@type": "Claim", "author": "Social media posts"}]),
        );
        assert_eq!(one_ok(node).claimant, "Social media posts");
    }

    #[test]
    fn value_objects_and_numbers_as_written() {
        let node = with(
            claim_review(),
            "reviewRating",
            serde_json::json!({"ratingValue": 4.5, "bestRating": {"@value": 5}, "worstRating": [null, 1], "name": {"@value": "Mostly false", "@language": "en"}}),
        );
        let node = with(
            node,
            "claimReviewed",
            serde_json::json!({"@value": "UN troops in Almaty"}),
        );
        let r = one_ok(node);
        assert_eq!(
            r.rating,
            Some(PublishedRating {
                value: "4.5".into(),
                best: "5".into(),
                worst: "1".into(),
                alternate_name: "Mostly false".into(),
            })
        );
        assert_eq!(r.claim_reviewed, "UN troops in Almaty");
    }

    #[test]
    fn rating_shapes() {
        let r = one_ok(with(claim_review(), "reviewRating", "False".into()));
        assert_eq!(
            r.rating.map(|r| r.alternate_name),
            Some("False".to_string())
        );
        let r = one_ok(without(claim_review(), "reviewRating"));
        assert_eq!(r.rating, None);
        let e = one_err(with(
            claim_review(),
            "reviewRating",
            serde_json::json!({"bestRating": 5}),
        ));
        assert_eq!(e.field, "reviewRating");
        assert!(
            e.reason.contains("neither ratingValue nor alternateName"),
            "{}",
            e.reason
        );
        let e = one_err(with(claim_review(), "reviewRating", serde_json::json!(3)));
        assert_eq!(e.field, "reviewRating");
    }

    #[test]
    fn language_tags() {
        let cases = [
            (serde_json::json!("ru"), "ru"),
            (serde_json::json!("EN-us"), "en-us"),
            (serde_json::json!("sr-Latn-RS"), "sr-Latn-RS"),
            (
                serde_json::json!({"@type": "Language", "name": "Russian", "alternateName": "ru"}),
                "ru",
            ),
            (serde_json::json!([{"@value": "kk"}]), "kk"),
        ];
        for (value, expected) in cases {
            assert_eq!(
                one_ok(with(claim_review(), "inLanguage", value)).language,
                expected
            );
        }
        for bad in [
            "en_US",
            "русский",
            "en-",
            "123",
            "toolongtag",
            "en-toolongsub",
            "en us",
        ] {
            let e = one_err(with(claim_review(), "inLanguage", bad.into()));
            assert_eq!(e.field, "inLanguage", "{bad}");
            assert!(e.reason.contains("is not a language tag"), "{}", e.reason);
        }
    }

    #[test]
    fn appearances_are_checked_and_limited() {
        let item = |appearance: Value| {
            with(
                claim_review(),
                "itemReviewed",
                serde_json::json!({"@type": "Claim", "appearance": appearance}),
            )
        };
        let e = one_err(item(serde_json::json!([
            {"url": "https://social.example.org/1"},
            "https://social.example.org/2",
            {"url": "social.example.org/3"},
        ])));
        assert_eq!(e.field, "itemReviewed.appearance[2].url");
        assert_eq!(
            e.reason,
            "itemReviewed.appearance[2].url must be an absolute http(s) URL"
        );

        let e = one_err(item(serde_json::json!({"headline": "no url"})));
        assert_eq!(e.field, "itemReviewed.appearance.url");
        assert!(e.reason.contains("is missing"), "{}", e.reason);

        let e = one_err(item(serde_json::json!([7])));
        assert_eq!(e.field, "itemReviewed.appearance[0]");

        let many: Vec<Value> = (0..=MAX_APPEARANCES)
            .map(|i| Value::String(format!("https://social.example.org/{i}")))
            .collect();
        let e = one_err(item(Value::Array(many[..MAX_APPEARANCES + 1].to_vec())));
        assert_eq!(e.field, "itemReviewed.appearance");
        assert!(e.reason.contains("51 entries"), "{}", e.reason);
        let r = one_ok(item(Value::Array(many[..MAX_APPEARANCES].to_vec())));
        assert_eq!(r.appearances.len(), MAX_APPEARANCES);

        // Kept as given, fragment included; headline from name; date from the entry.
        let r = one_ok(item(
            serde_json::json!({"url": " https://Social.example.org/p#c12 ", "name": "post", "datePublished": "2022-01-08", "author": "someone"}),
        ));
        assert_eq!(
            r.appearances,
            [Appearance {
                url: "https://Social.example.org/p#c12".into(),
                headline: "post".into(),
                date_published: ts(JAN_8),
                author: "someone".into(),
            }]
        );
    }

    // --- MediaReview --------------------------------------------------------

    fn media_review(item: Value) -> Value {
        serde_json::json!({
            "@type": "MediaReview",
            "url": "https://factcheck.example.org/2022/01/almaty-photo",
            "mediaAuthenticityCategory": "https://schema.org/DecontextualizedContent",
            "itemReviewed": item,
        })
    }

    #[test]
    fn media_review_with_sha256_and_content_url() {
        let r = one_ok(media_review(serde_json::json!({
            "@type": "ImageObject",
            "contentUrl": "https://media.example.org/almaty.jpg",
            "url": "https://media.example.org/page",
            "sha256": SHA.to_uppercase(),
            "caption": "Soldiers in UN helmets",
            "uploadDate": "2022-01-08T10:00:00Z",
            "author": {"name": "Social media posts"},
            "appearance": ["https://social.example.org/1"],
        })));
        assert_eq!(r.kind, ReviewKind::MediaReview as i32);
        assert_eq!(r.media_url, "https://media.example.org/almaty.jpg");
        assert_eq!(r.media_sha256, SHA);
        assert_eq!(r.media_authenticity_category, "DecontextualizedContent");
        assert_eq!(r.claim_reviewed, "Soldiers in UN helmets");
        assert_eq!(r.claimant, "Social media posts");
        assert_eq!(r.claim_date, ts(JAN_8 + 10 * 3600));
        assert_eq!(r.appearances.len(), 1);

        // url when there is no contentUrl; category as an object.
        let node = with(
            media_review(
                serde_json::json!({"@type": "VideoObject", "url": "https://media.example.org/v"}),
            ),
            "mediaAuthenticityCategory",
            serde_json::json!({"@id": "schema:OriginalMediaContent"}),
        );
        let r = one_ok(node);
        assert_eq!(r.media_url, "https://media.example.org/v");
        assert_eq!(r.media_authenticity_category, "OriginalMediaContent");
    }

    #[test]
    fn media_review_item_with_media_item_appearances() {
        let r = one_ok(media_review(serde_json::json!({
            "@type": "MediaReviewItem",
            "name": "Photos of soldiers in UN helmets",
            "author": "Social media posts",
            "mediaItemAppearance": [
                {"@type": "ImageObject", "contentUrl": "https://media.example.org/a.jpg", "sha256": SHA, "url": "https://social.example.org/1", "datePublished": "2022-01-08", "caption": "Almaty, 8 January"},
                {"@type": "ImageObject", "contentUrl": "https://media.example.org/b.jpg"},
            ],
        })));
        assert_eq!(r.media_url, "https://media.example.org/a.jpg");
        assert_eq!(r.media_sha256, SHA);
        assert_eq!(r.claimant, "Social media posts");
        assert_eq!(
            r.claim_reviewed, "Photos of soldiers in UN helmets",
            "the item's name first"
        );
        assert_eq!(r.claim_date, ts(JAN_8));
        let urls: Vec<_> = r.appearances.iter().map(|a| a.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "https://social.example.org/1",
                "https://media.example.org/b.jpg"
            ]
        );

        let e = one_err(media_review(serde_json::json!({
            "@type": "MediaReviewItem",
            "mediaItemAppearance": [{"contentUrl": "https://media.example.org/a.jpg", "sha256": "abc"}],
        })));
        assert_eq!(e.field, "itemReviewed.mediaItemAppearance[0].sha256");
    }

    #[test]
    fn bad_sha256_and_media_url() {
        for bad in ["1e5ee7cb", &SHA.replace('e', "g"), &format!("{SHA}00")] {
            let e = one_err(media_review(serde_json::json!({
                "@type": "ImageObject",
                "contentUrl": "https://media.example.org/a.jpg",
                "sha256": bad,
            })));
            assert_eq!(e.field, "itemReviewed.sha256");
            assert!(e.reason.contains("64 hexadecimal digits"), "{}", e.reason);
        }
        let e = one_err(media_review(
            serde_json::json!({"contentUrl": "data:image/png;base64,AAAA"}),
        ));
        assert_eq!(e.field, "itemReviewed.contentUrl");
    }

    #[test]
    fn item_error_display() {
        let e = ItemError {
            index: 2,
            field: "url".into(),
            reason: "url is missing".into(),
        };
        assert_eq!(e.to_string(), "item 2: url is missing");
    }
}
