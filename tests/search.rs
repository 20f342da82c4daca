//! Full-text search of claims and import of published fact-checks, end to
//! end through real servers (in-process on 127.0.0.1:0, and the real
//! binary for crashes and `photoclaim reindex`), no mocks:
//!
//! - SearchClaims over the reference case in English and Russian: language
//!   analysis (inflections, diacritics), phrases, exclusions, highlights
//!   (field, HTML, UTF-8 byte ranges), every filter including and
//!   excluding, facets and totals over all matches, newest-first order,
//!   page sizes and page tokens;
//! - ImportClaimReviews of every JSON-LD shape in `tests/data/claimreview/`
//!   (one object, array, JSON Lines with broken items, `@graph`, DataFeed
//!   with a refused NewsArticle), GetExternalReview's fields against the
//!   files, ListExternalReviews paging, idempotent re-import, updates as
//!   new revisions, imported reviews found by SearchClaims;
//! - bad input: query syntax errors naming the position, unknown enum
//!   values, bad language tags, empty time ranges, bad page tokens, bad
//!   documents (empty, not JSON, too many items) changing nothing;
//! - RegisterClaim's `checked_before` (text match, unrelated text not
//!   listed, MediaReview of the same image) and FindSimilarClaims'
//!   `external_reviews`;
//! - the index after `kill -9` of the real binary and after
//!   `photoclaim reindex`;
//! - roles: a reader may search but not import.
//!
//! The index follows the log asynchronously, so every expectation about a
//! write is polled ([`search_until`]) with a generous deadline; once the
//! last write of a test is visible, every earlier one is, and the other
//! searches of the test are single calls.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use photoclaim::pb;
use photoclaim::pb::search_result::Result as Found;
use tonic::{Code, Status};
use tonic_types::StatusExt;

const SINGLE: &str = include_str!("data/claimreview/single.json");
const ARRAY: &str = include_str!("data/claimreview/array.json");
const FEED: &str = include_str!("data/claimreview/feed.jsonl");
const GRAPH: &str = include_str!("data/claimreview/graph.json");
const DATAFEED: &str = include_str!("data/claimreview/datafeed.json");

/// The image of the MediaReview in `datafeed.json`.
const MEDIA_SHA: &str = "1e5ee7cb7d0f3a8b6e0c6f5b1c1d3b8a0e6f7a1b2c3d4e5f60718293a4b5c6d7";
const MEDIA_URL: &str = "https://media.example.org/kazakhstan/2022-01-08-almaty-blue-helmets.jpg";
/// The review URL shared by single.json, feed.jsonl (line 1), graph.json
/// and datafeed.json (item 0).
const NO_UN_URL: &str = "https://factcheck.example.org/2022/01/no-un-peacekeepers-in-kazakhstan";

/// 2022-01-08T00:00:00Z.
const JAN_8: i64 = 1_641_600_000;
const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;

/// How long a write may take to become searchable in these tests.
const DEADLINE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn ts(seconds: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos: 0 })
}

/// A search for `query` with room for every result of these tests.
fn query(q: &str) -> pb::SearchClaimsRequest {
    pb::SearchClaimsRequest {
        query: q.into(),
        page_size: 100,
        ..Default::default()
    }
}

/// A search of our claims only (a filter, so the query may be empty).
fn claims_query(q: &str) -> pb::SearchClaimsRequest {
    pb::SearchClaimsRequest {
        source: pb::SearchSource::Claims as i32,
        ..query(q)
    }
}

/// A search of imported reviews only.
fn reviews_query(q: &str) -> pb::SearchClaimsRequest {
    pb::SearchClaimsRequest {
        source: pb::SearchSource::ExternalReviews as i32,
        ..query(q)
    }
}

/// The resource name of a result.
fn result_name(r: &pb::SearchResult) -> String {
    match r.result.as_ref().expect("a result has a record") {
        Found::Claim(c) => c.name.clone(),
        Found::ExternalReview(r) => r.name.clone(),
    }
}

/// The names of a page's results, in order.
fn names(reply: &pb::SearchClaimsResponse) -> Vec<String> {
    reply.results.iter().map(result_name).collect()
}

fn name_set(reply: &pb::SearchClaimsResponse) -> BTreeSet<String> {
    names(reply).into_iter().collect()
}

fn set<const N: usize>(names: [&str; N]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// A reply in a few lines, for failure messages.
fn summary(reply: &pb::SearchClaimsResponse) -> String {
    format!(
        "total_size {}, results {:?}, next_page_token {:?}, states {:?}, ratings {:?}, \
         languages {:?}, sources {:?}, indexed_log_position {}",
        reply.total_size,
        names(reply),
        reply.next_page_token,
        facet(&reply.state_counts),
        facet(&reply.claim_rating_counts),
        facet(&reply.language_counts),
        facet(&reply.source_counts),
        reply.indexed_log_position
    )
}

fn facet(counts: &[pb::FacetCount]) -> BTreeMap<String, i64> {
    counts.iter().map(|c| (c.value.clone(), c.count)).collect()
}

fn counts<const N: usize>(pairs: [(&str, i64); N]) -> BTreeMap<String, i64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// Polls SearchClaims every 50 ms until `pred` holds of the reply
/// (UNAVAILABLE while the index is being built counts as "not yet");
/// panics with the last reply after [`DEADLINE`].
async fn search_until(
    client: &mut Client,
    req: pb::SearchClaimsRequest,
    pred: impl Fn(&pb::SearchClaimsResponse) -> bool,
) -> pb::SearchClaimsResponse {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let last = match client.search_claims(req.clone()).await {
            Ok(reply) => {
                let reply = reply.into_inner();
                if pred(&reply) {
                    return reply;
                }
                summary(&reply)
            }
            Err(status) if index_not_ready(&status) => format!("{status:?}"),
            Err(status) => panic!("SearchClaims {req:?} failed: {status:?}"),
        };
        if Instant::now() > deadline {
            panic!("SearchClaims {req:?}: no expected reply within {DEADLINE:?}; last: {last}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// UNAVAILABLE from the server while its index is being built (not a
/// transport error).
fn index_not_ready(status: &Status) -> bool {
    status.code() == Code::Unavailable && status.message().contains("index")
}

/// One SearchClaims call that must succeed (retried only while the index
/// is not ready).
async fn search(client: &mut Client, req: pb::SearchClaimsRequest) -> pb::SearchClaimsResponse {
    search_until(client, req, |_| true).await
}

/// The names found by `req`, in order.
async fn found(client: &mut Client, req: pb::SearchClaimsRequest) -> Vec<String> {
    names(&search(client, req).await)
}

async fn found_set(client: &mut Client, req: pb::SearchClaimsRequest) -> BTreeSet<String> {
    found(client, req).await.into_iter().collect()
}

/// One SearchClaims call that must fail (retried only while the index is
/// not ready).
async fn search_error(client: &mut Client, req: pb::SearchClaimsRequest) -> Status {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match client.search_claims(req.clone()).await {
            Ok(reply) => panic!(
                "SearchClaims {req:?} succeeded: {}",
                summary(&reply.into_inner())
            ),
            Err(s) if index_not_ready(&s) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(s) => return s,
        }
    }
}

/// The `BadRequest` field violations of a status: (field, description).
fn violations(status: &Status) -> Vec<(String, String)> {
    status
        .get_details_bad_request()
        .map(|b| {
            b.field_violations
                .iter()
                .map(|v| (v.field.clone(), v.description.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts INVALID_ARGUMENT with a violation of `field` (one of `fields`)
/// whose description (or the message) contains `words`.
fn assert_invalid(status: &Status, fields: &[&str], words: &str, what: &str) {
    assert_eq!(
        status.code(),
        Code::InvalidArgument,
        "{what}: expected INVALID_ARGUMENT, got {status:?}"
    );
    let found = violations(status);
    assert!(
        found.iter().any(|(f, d)| fields.contains(&f.as_str())
            && (d.contains(words) || status.message().contains(words))),
        "{what}: expected a violation of {fields:?} mentioning {words:?}; got {found:?} ({:?})",
        status.message()
    );
}

async fn import(client: &mut Client, document: &str) -> pb::ImportClaimReviewsResponse {
    client
        .import_claim_reviews(pb::ImportClaimReviewsRequest {
            document: document.into(),
        })
        .await
        .unwrap_or_else(|s| panic!("ImportClaimReviews: {s:?}"))
        .into_inner()
}

async fn import_error(client: &mut Client, document: String) -> Status {
    match client
        .import_claim_reviews(pb::ImportClaimReviewsRequest { document })
        .await
    {
        Ok(reply) => panic!("the import succeeded: {:?}", reply.into_inner()),
        Err(status) => status,
    }
}

async fn get_review(client: &mut Client, name: &str) -> pb::ExternalReview {
    client
        .get_external_review(pb::GetExternalReviewRequest { name: name.into() })
        .await
        .unwrap_or_else(|s| panic!("GetExternalReview {name}: {s:?}"))
        .into_inner()
}

/// Every external review, following page tokens with pages of `page_size`.
async fn all_reviews(client: &mut Client, page_size: i32) -> Vec<pb::ExternalReview> {
    let mut out = Vec::new();
    let mut token = String::new();
    for _ in 0..10_000 {
        let page = client
            .list_external_reviews(pb::ListExternalReviewsRequest {
                page_size,
                page_token: token,
            })
            .await
            .expect("ListExternalReviews")
            .into_inner();
        let most = match page_size {
            0 => 50,
            n => n.min(1_000) as usize,
        };
        assert!(
            page.external_reviews.len() <= most,
            "a page of {} with page_size {page_size}",
            page.external_reviews.len()
        );
        out.extend(page.external_reviews);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
    panic!("ListExternalReviews never ends");
}

/// (index, name, outcome) of each imported item.
fn outcomes(reply: &pb::ImportClaimReviewsResponse) -> Vec<(i32, String, pb::ImportOutcome)> {
    reply
        .imported
        .iter()
        .map(|i| (i.index, i.name.clone(), i.outcome()))
        .collect()
}

/// (index, field) of each refused item.
fn refused(reply: &pb::ImportClaimReviewsResponse) -> Vec<(i32, String)> {
    reply
        .errors
        .iter()
        .map(|e| (e.index, e.field.clone()))
        .collect()
}

/// Waits until the next second of the wall clock has begun, so that the
/// next write has a later (whole-second) time than the previous ones.
async fn next_second() {
    let now = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    let start = now();
    while now() == start {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn get_claim(client: &mut Client, name: &str) -> pb::Claim {
    client
        .get_claim(pb::GetClaimRequest { name: name.into() })
        .await
        .expect("GetClaim")
        .into_inner()
}

/// The names listed in a RegisterClaim's `checked_before`.
fn checked(reply: &pb::RegisterClaimResponse) -> BTreeSet<String> {
    reply.checked_before.iter().map(result_name).collect()
}

// ---------------------------------------------------------------------------
// The reference case, in English and Russian
// ---------------------------------------------------------------------------

/// A server with three claims, registered in three different seconds:
/// `en` the reference case (with the UN's inquiry, the Kazakh mission's
/// statement and a FALSE verdict, attached in a fourth second), `ru` the
/// same claim in Russian (unverified), `other` an unrelated English claim
/// about a café (unverified).
struct Kazbat {
    _server: InProcess<photoclaim::store::MemoryStore>,
    client: Client,
    en: String,
    ru: String,
    other: String,
    /// `en`'s last update (its verdict).
    en_updated: prost_types::Timestamp,
}

const EN_TEXT: &str = "These AP photos show UN peacekeepers deployed in Kazakhstan";
const RU_TEXT: &str = "Фото показывают миротворцев ООН в Казахстане";
const OTHER_TEXT: &str = "Photo of a cat sleeping in the \"Café <Lyon>\" & bakery";
const UN_ORG: &str = "United Nations, Office of the Spokesperson";
const MISSION_ORG: &str = "Permanent Mission of the Republic of Kazakhstan to the United Nations";

async fn kazbat_world() -> Kazbat {
    let case = kazbat();
    let server = InProcess::in_memory().await;
    let mut client = server.client.clone();
    let text = |v: &serde_json::Value| v.as_str().unwrap().to_string();

    let en = register(
        &mut client,
        pb::Claim {
            claim_text: EN_TEXT.into(),
            claimant: "social media posts".into(),
            language: "en".into(),
            first_seen_time: ts(JAN_8 + 12 * HOUR),
            tags: vec!["kazakhstan".into(), "un".into()],
            image: Some(pb::Image {
                source_url: text(&case["image"]["source_url"]),
                sha256: fake_sha256(0x2022_0108),
                caption: text(&case["image"]["caption"]),
                ..Default::default()
            }),
            ..Default::default()
        },
        "search-en",
    )
    .await
    .claim
    .unwrap()
    .name;

    next_second().await;
    let ru = register(
        &mut client,
        pb::Claim {
            claim_text: RU_TEXT.into(),
            claimant: "Telegram-каналы".into(),
            language: "ru".into(),
            first_seen_time: ts(JAN_8 + DAY + 12 * HOUR),
            tags: vec!["Kazakhstan".into()],
            image: Some(pb::Image {
                source_url: "https://t.example.org/channel/4521".into(),
                ..Default::default()
            }),
            ..Default::default()
        },
        "search-ru",
    )
    .await
    .claim
    .unwrap()
    .name;

    next_second().await;
    let other = register(
        &mut client,
        pb::Claim {
            claim_text: OTHER_TEXT.into(),
            claimant: "a food blog".into(),
            language: "en".into(),
            // 2023-05-01T00:00:00Z
            first_seen_time: ts(1_682_899_200),
            tags: vec!["animals".into()],
            image: Some(pb::Image {
                source_url: "https://blog.example.org/cat.jpg".into(),
                ..Default::default()
            }),
            ..Default::default()
        },
        "search-other",
    )
    .await
    .claim
    .unwrap()
    .name;

    next_second().await;
    let responses = case["official_responses"].as_array().unwrap();
    let inquiry = &responses[0];
    let statement = &responses[1];
    let asked = attach(
        &mut client,
        &en,
        pb::OfficialResponse {
            responder: Some(pb::Responder {
                organization: UN_ORG.into(),
                role: pb::ResponderRole::InternationalOrganization as i32,
                ..Default::default()
            }),
            kind: pb::ResponseKind::Inquiry as i32,
            stance: pb::Stance::Refutes as i32,
            text: text(&inquiry["text"]),
            language: "en".into(),
            issue_time: ts(JAN_8 + 2 * DAY),
            ..Default::default()
        },
        "search-inquiry",
    )
    .await;
    attach(
        &mut client,
        &en,
        pb::OfficialResponse {
            responder: Some(pb::Responder {
                organization: MISSION_ORG.into(),
                role: pb::ResponderRole::Government as i32,
                ..Default::default()
            }),
            kind: pb::ResponseKind::Statement as i32,
            stance: pb::Stance::Refutes as i32,
            text: text(&statement["text"]),
            language: "en".into(),
            in_reply_to: asked.name,
            ..Default::default()
        },
        "search-statement",
    )
    .await;
    let rationale = text(&case["claims"][0]["expected_verdict"]["rationale"]);
    rate_false(&mut client, &en, &rationale).await;
    let en_updated = get_claim(&mut client, &en)
        .await
        .update_time
        .expect("update_time");

    // The verdict is the last write: once it is searchable, everything is.
    let resolved = pb::SearchClaimsRequest {
        states: vec![pb::VerificationState::Resolved as i32],
        ..query("")
    };
    search_until(&mut client, resolved, |r| {
        names(r) == std::slice::from_ref(&en)
    })
    .await;
    Kazbat {
        _server: server,
        client,
        en,
        ru,
        other,
        en_updated,
    }
}

#[tokio::test]
async fn words_match_their_inflections_in_english_and_russian() {
    let Kazbat {
        mut client,
        en,
        ru,
        other,
        _server,
        ..
    } = kazbat_world().await;
    let c = &mut client;

    // Russian, in another grammatical case than the claim's "миротворцев".
    assert_eq!(
        found(c, query("миротворцы")).await,
        std::slice::from_ref(&ru),
        "миротворцы"
    );
    let ru_query = pb::SearchClaimsRequest {
        language: "ru".into(),
        ..query("миротворцы")
    };
    assert_eq!(
        found(c, ru_query).await,
        std::slice::from_ref(&ru),
        "миротворцы, language ru"
    );
    assert_eq!(
        found(c, query("МИРОТВОРЦЫ оон")).await,
        std::slice::from_ref(&ru),
        "case"
    );
    // Analysed as English (and as plain words), the Russian word's
    // nominative form is not the claim's genitive.
    let en_query = pb::SearchClaimsRequest {
        language: "en".into(),
        ..query("миротворцы")
    };
    assert_eq!(
        found(c, en_query).await,
        Vec::<String>::new(),
        "миротворцы, language en"
    );

    // English: "deploying" only occurs as "deployed" (in the claim text).
    assert_eq!(
        found(c, query("deploying")).await,
        std::slice::from_ref(&en),
        "deploying"
    );
    let en_query = pb::SearchClaimsRequest {
        language: "en".into(),
        ..query("Deploying peacekeeper")
    };
    assert_eq!(
        found(c, en_query).await,
        std::slice::from_ref(&en),
        "language en"
    );
    assert_eq!(
        found(c, query("peacekeeping")).await,
        std::slice::from_ref(&en),
        "peacekeeping"
    );

    // Diacritics and case.
    assert_eq!(
        found(c, query("cafe")).await,
        std::slice::from_ref(&other),
        "cafe"
    );
    assert_eq!(
        found(c, query("CAFÉ")).await,
        std::slice::from_ref(&other),
        "CAFÉ"
    );

    // Every word must match.
    assert_eq!(
        found_set(c, query("photo")).await,
        set([&en, &other]),
        "photo"
    );
    assert_eq!(
        found(c, query("photo cat")).await,
        std::slice::from_ref(&other),
        "photo cat"
    );
    assert_eq!(
        found(c, query("cat Kazakhstan")).await,
        Vec::<String>::new()
    );

    // Phrases.
    assert_eq!(
        found(c, query("\"UN peacekeepers deployed\"")).await,
        std::slice::from_ref(&en),
        "phrase in order"
    );
    assert_eq!(
        found(c, query("\"deployed peacekeepers\"")).await,
        Vec::<String>::new(),
        "phrase out of order"
    );
    assert_eq!(
        found(c, query("\"миротворцы ООН\"")).await,
        std::slice::from_ref(&ru),
        "Russian phrase, inflected"
    );

    // Exclusions.
    assert_eq!(
        found(c, query("photo -cat")).await,
        std::slice::from_ref(&en),
        "photo -cat"
    );
    assert_eq!(
        found(c, query("photo -\"cat sleeping\"")).await,
        std::slice::from_ref(&en),
        "photo -\"cat sleeping\""
    );
    assert_eq!(
        found(c, query("photo -\"sleeping cat\"")).await.len(),
        2,
        "an excluded phrase out of order excludes nothing"
    );
    assert_eq!(
        found(c, query("photo -kazbat")).await,
        std::slice::from_ref(&other),
        "an exclusion matching the verdict's rationale"
    );
}

/// The highlight of `field` in `result`, if any.
fn highlight<'a>(result: &'a pb::SearchResult, field: &str) -> Option<&'a pb::Highlight> {
    result.highlights.iter().find(|h| h.field == field)
}

/// The words `h.matches` point at in `h.text`.
fn matched_words(h: &pb::Highlight) -> Vec<String> {
    h.matches
        .iter()
        .map(|r| {
            h.text
                .get(r.start as usize..r.end as usize)
                .unwrap_or_else(|| panic!("range {r:?} is not a char range of {:?}", h.text))
                .to_string()
        })
        .collect()
}

/// The only result of `q`, which must be `name`.
async fn only(c: &mut Client, q: &str, name: &str) -> pb::SearchResult {
    let reply = search(c, query(q)).await;
    assert_eq!(
        names(&reply),
        [name.to_string()],
        "{q}: {}",
        summary(&reply)
    );
    reply.results.into_iter().next().unwrap()
}

#[tokio::test]
async fn highlights_name_the_matched_field_with_html_and_byte_ranges() {
    let Kazbat {
        mut client,
        en,
        ru,
        other,
        _server,
        ..
    } = kazbat_world().await;
    let c = &mut client;

    // The Kazakh mission's statement.
    let hit = only(c, "strategic infrastructure", &en).await;
    let h = highlight(&hit, "official_responses.text")
        .unwrap_or_else(|| panic!("no official_responses.text highlight: {:?}", hit.highlights));
    assert!(h.text.contains("strategic infrastructure"), "{h:?}");
    assert_eq!(matched_words(h), ["strategic", "infrastructure"], "{h:?}");
    assert!(
        h.html.contains("<b>strategic</b>") && h.html.contains("<b>infrastructure</b>"),
        "{h:?}"
    );
    assert!(
        h.html.contains("city&#x27;s")
            || h.html.contains("city&#39;s")
            || h.html.contains("city's"),
        "{h:?}"
    );
    assert!(
        highlight(&hit, "claim_text").is_none(),
        "the claim text does not match: {:?}",
        hit.highlights
    );
    assert!(hit.score > 0.0, "relevance order has a score: {hit:?}");

    // A word of the verdict's rationale only.
    let hit = only(c, "authentic", &en).await;
    let h = highlight(&hit, "verdict.rationale")
        .unwrap_or_else(|| panic!("no verdict.rationale highlight: {:?}", hit.highlights));
    assert_eq!(matched_words(h), ["authentic"], "{h:?}");
    assert_eq!(hit.highlights.len(), 1, "{:?}", hit.highlights);

    // The responder's organization.
    let hit = only(c, "Republic", &en).await;
    let h = highlight(&hit, "official_responses.responder")
        .unwrap_or_else(|| panic!("no responder highlight: {:?}", hit.highlights));
    assert_eq!(matched_words(h), ["Republic"], "{h:?}");

    // The claim text, an inflected form, and the caption.
    let hit = only(c, "deploying", &en).await;
    assert_eq!(
        matched_words(highlight(&hit, "claim_text").expect("claim_text")),
        ["deployed"]
    );
    let hit = only(c, "guard street", &en).await;
    assert_eq!(
        matched_words(highlight(&hit, "image.caption").expect("image.caption")),
        ["guard", "street"]
    );
    let hit = only(c, "blog", &other).await;
    assert_eq!(
        matched_words(highlight(&hit, "claimant").expect("claimant")),
        ["blog"]
    );

    // Byte ranges over Cyrillic and accented text; HTML escaped.
    let hit = only(c, "миротворцы", &ru).await;
    let h = highlight(&hit, "claim_text").expect("Russian claim_text");
    assert_eq!(h.text, RU_TEXT);
    assert_eq!(matched_words(h), ["миротворцев"], "{h:?}");
    assert!(h.html.contains("<b>миротворцев</b>"), "{h:?}");
    let hit = only(c, "cafe", &other).await;
    let h = highlight(&hit, "claim_text").expect("café claim_text");
    assert_eq!(matched_words(h), ["Café"], "{h:?}");
    assert!(h.html.contains("<b>Café</b>"), "{h:?}");
    assert!(
        h.html.contains("&lt;Lyon&gt;") && h.html.contains("&amp;") && !h.html.contains("<Lyon>"),
        "the passage is escaped: {h:?}"
    );
}

#[tokio::test]
async fn every_filter_includes_and_excludes() {
    let Kazbat {
        mut client,
        en,
        ru,
        other,
        en_updated,
        _server,
        ..
    } = kazbat_world().await;
    let c = &mut client;
    let all = set([&en, &ru, &other]);
    let filtered = |f: fn(&mut pb::SearchClaimsRequest)| {
        let mut r = query("");
        f(&mut r);
        r
    };

    // States.
    let r = filtered(|r| r.states = vec![pb::VerificationState::Resolved as i32]);
    assert_eq!(found_set(c, r).await, set([&en]), "RESOLVED");
    let r = filtered(|r| r.states = vec![pb::VerificationState::Unverified as i32]);
    assert_eq!(found_set(c, r).await, set([&ru, &other]), "UNVERIFIED");
    let r = filtered(|r| {
        r.states = vec![
            pb::VerificationState::InReview as i32,
            pb::VerificationState::Disputed as i32,
        ]
    });
    assert!(found(c, r).await.is_empty(), "IN_REVIEW, DISPUTED");
    let r = pb::SearchClaimsRequest {
        states: vec![pb::VerificationState::Unverified as i32],
        ..query("photo")
    };
    assert_eq!(found_set(c, r).await, set([&other]), "photo, UNVERIFIED");

    // Ratings.
    let r = filtered(|r| r.claim_ratings = vec![pb::ClaimRating::False as i32]);
    assert_eq!(found_set(c, r).await, set([&en]), "FALSE");
    let r = filtered(|r| r.claim_ratings = vec![pb::ClaimRating::Accurate as i32]);
    assert!(found(c, r).await.is_empty(), "ACCURATE");
    let r =
        filtered(|r| r.media_authenticities = vec![pb::MediaAuthenticity::Decontextualized as i32]);
    assert_eq!(found_set(c, r).await, set([&en]), "DECONTEXTUALIZED");
    let r = filtered(|r| r.media_authenticities = vec![pb::MediaAuthenticity::Staged as i32]);
    assert!(found(c, r).await.is_empty(), "STAGED");

    // Languages, by primary subtag.
    let r = filtered(|r| r.languages = vec!["ru".into()]);
    assert_eq!(found_set(c, r).await, set([&ru]), "ru");
    let r = filtered(|r| r.languages = vec!["ru-KZ".into()]);
    assert_eq!(found_set(c, r).await, set([&ru]), "ru-KZ");
    let r = filtered(|r| r.languages = vec!["EN".into()]);
    assert_eq!(found_set(c, r).await, set([&en, &other]), "EN");
    let r = filtered(|r| r.languages = vec!["de".into()]);
    assert!(found(c, r).await.is_empty(), "de");
    let r = pb::SearchClaimsRequest {
        languages: vec!["en".into()],
        ..query("photo")
    };
    assert_eq!(found_set(c, r).await, set([&en, &other]), "photo, en");

    // Tags, exact and case-insensitive.
    let r = filtered(|r| r.tags = vec!["KAZAKHSTAN".into()]);
    assert_eq!(found_set(c, r).await, set([&en, &ru]), "KAZAKHSTAN");
    let r = filtered(|r| r.tags = vec!["un".into()]);
    assert_eq!(found_set(c, r).await, set([&en]), "un");
    let r = filtered(|r| r.tags = vec!["animals".into(), "un".into()]);
    assert_eq!(found_set(c, r).await, set([&en, &other]), "animals or un");
    let r = filtered(|r| r.tags = vec!["kazakh".into()]);
    assert!(
        found(c, r).await.is_empty(),
        "a tag's prefix is not the tag"
    );

    // Claimant and responding organization, by their words.
    let r = filtered(|r| r.claimant = "telegram".into());
    assert_eq!(found_set(c, r).await, set([&ru]), "claimant telegram");
    let r = filtered(|r| r.claimant = "Social Media".into());
    assert_eq!(found_set(c, r).await, set([&en]), "claimant Social Media");
    let r = filtered(|r| r.claimant = "media blog".into());
    assert!(
        found(c, r).await.is_empty(),
        "claimant: all words must match"
    );
    let r = filtered(|r| r.responder_organization = "permanent mission".into());
    assert_eq!(found_set(c, r).await, set([&en]), "organization");
    let r = filtered(|r| r.responder_organization = "Ministry".into());
    assert!(found(c, r).await.is_empty(), "organization Ministry");
    // "Kazakhstan" is in the claim text, not in the claimant.
    let r = pb::SearchClaimsRequest {
        claimant: "Kazakhstan".into(),
        ..query("")
    };
    assert!(found(c, r).await.is_empty(), "claimant Kazakhstan");

    // First seen: en 2022-01-08 12:00, ru 2022-01-09 12:00, other 2023-05-01.
    let r = filtered(|r| r.first_seen_after = ts(JAN_8 + DAY));
    assert_eq!(
        found_set(c, r).await,
        set([&ru, &other]),
        "first seen after Jan 9"
    );
    let r = filtered(|r| r.first_seen_before = ts(JAN_8 + DAY));
    assert_eq!(found_set(c, r).await, set([&en]), "first seen before Jan 9");
    let r = filtered(|r| {
        r.first_seen_after = ts(JAN_8);
        r.first_seen_before = ts(JAN_8 + 365 * DAY);
    });
    assert_eq!(found_set(c, r).await, set([&en, &ru]), "first seen in 2022");
    let r = filtered(|r| r.first_seen_after = ts(JAN_8 + 12 * HOUR));
    assert_eq!(
        found_set(c, r).await,
        all,
        "first seen at or after: inclusive"
    );
    let r = filtered(|r| r.first_seen_before = ts(JAN_8 + 12 * HOUR));
    assert!(found(c, r).await.is_empty(), "first seen before: exclusive");

    // Updated: en was updated (its verdict) in a later second than the
    // others were registered.
    let second = prost_types::Timestamp {
        seconds: en_updated.seconds,
        nanos: 0,
    };
    let r = pb::SearchClaimsRequest {
        update_after: Some(second),
        ..query("")
    };
    assert_eq!(
        found_set(c, r).await,
        set([&en]),
        "updated after {second:?}"
    );
    let r = pb::SearchClaimsRequest {
        update_before: Some(second),
        ..query("")
    };
    assert_eq!(
        found_set(c, r).await,
        set([&ru, &other]),
        "updated before {second:?}"
    );
    let r = pb::SearchClaimsRequest {
        update_after: ts(en_updated.seconds - 3_600),
        update_before: ts(en_updated.seconds + 3_600),
        ..query("")
    };
    assert_eq!(found_set(c, r).await, all, "updated within the hour");
    let r = pb::SearchClaimsRequest {
        update_after: ts(en_updated.seconds + 3_600),
        ..query("")
    };
    assert!(found(c, r).await.is_empty(), "updated in the future");

    // Source.
    let r = filtered(|r| r.source = pb::SearchSource::Claims as i32);
    assert_eq!(found_set(c, r).await, all, "source claims");
    let r = filtered(|r| r.source = pb::SearchSource::ExternalReviews as i32);
    assert!(
        found(c, r).await.is_empty(),
        "source reviews (none imported)"
    );
}

/// `updated` and `first seen` bounds are instants: a record updated at T
/// is "at or after T" and not "before T", whatever T's nanoseconds.
#[tokio::test]
async fn time_filters_are_exact_at_their_bounds() {
    let Kazbat {
        mut client,
        en,
        en_updated,
        _server,
        ..
    } = kazbat_world().await;
    let c = &mut client;
    let at = |delta_nanos: i64| {
        let total = en_updated.seconds as i128 * 1_000_000_000
            + en_updated.nanos as i128
            + delta_nanos as i128;
        Some(prost_types::Timestamp {
            seconds: total.div_euclid(1_000_000_000) as i64,
            nanos: total.rem_euclid(1_000_000_000) as i32,
        })
    };
    let updated = |after, before| pb::SearchClaimsRequest {
        update_after: after,
        update_before: before,
        ..query("")
    };
    // (update_after, update_before) as offsets in nanoseconds from its
    // update time, and whether it is in range.
    let cases: [(Option<i64>, Option<i64>, bool); 7] = [
        (Some(0), None, true),
        (Some(-1), None, true),
        (Some(1), None, false),
        (None, Some(1), true),
        (None, Some(0), false),
        (None, Some(-1), false),
        (Some(-1), Some(1), true),
    ];
    let mut wrong = Vec::new();
    for (after, before, expected) in cases {
        let req = updated(after.and_then(at), before.and_then(at));
        let got = found(c, req.clone()).await.contains(&en);
        if got != expected {
            wrong.push(format!(
                "update_after {:?}, update_before {:?}: {} (expected {})",
                req.update_after,
                req.update_before,
                if got { "listed" } else { "not listed" },
                if expected { "listed" } else { "not listed" },
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "a claim updated at {en_updated:?}:\n{}",
        wrong.join("\n")
    );
}

#[tokio::test]
async fn facets_and_totals_count_every_match_not_just_the_page() {
    let Kazbat {
        mut client,
        en,
        ru,
        other,
        _server,
        ..
    } = kazbat_world().await;
    let c = &mut client;

    let one_page = pb::SearchClaimsRequest {
        source: pb::SearchSource::Claims as i32,
        page_size: 1,
        ..query("")
    };
    let reply = search(c, one_page).await;
    assert_eq!(reply.results.len(), 1, "{}", summary(&reply));
    assert_eq!(reply.total_size, 3, "{}", summary(&reply));
    assert_eq!(
        facet(&reply.state_counts),
        counts([
            ("VERIFICATION_STATE_RESOLVED", 1),
            ("VERIFICATION_STATE_UNVERIFIED", 2)
        ]),
        "{}",
        summary(&reply)
    );
    let mut ratings = facet(&reply.claim_rating_counts);
    ratings.remove(""); // unrated claims may or may not be counted as ""
    assert_eq!(
        ratings,
        counts([("CLAIM_RATING_FALSE", 1)]),
        "{}",
        summary(&reply)
    );
    assert_eq!(
        facet(&reply.language_counts),
        counts([("en", 2), ("ru", 1)]),
        "{}",
        summary(&reply)
    );
    assert_eq!(
        facet(&reply.source_counts),
        counts([("claim", 3)]),
        "{}",
        summary(&reply)
    );
    assert!(!reply.next_page_token.is_empty(), "{}", summary(&reply));
    assert!(reply.indexed_log_position > 0, "{}", summary(&reply));

    // A query's facets.
    let tagged = pb::SearchClaimsRequest {
        tags: vec!["kazakhstan".into()],
        page_size: 1,
        ..query("")
    };
    let reply = search(c, tagged).await;
    assert_eq!(reply.total_size, 2, "{}", summary(&reply));
    assert_eq!(
        facet(&reply.language_counts),
        counts([("en", 1), ("ru", 1)]),
        "{}",
        summary(&reply)
    );
    assert_eq!(
        facet(&reply.state_counts),
        counts([
            ("VERIFICATION_STATE_RESOLVED", 1),
            ("VERIFICATION_STATE_UNVERIFIED", 1)
        ]),
        "{}",
        summary(&reply)
    );
    let reply = search(c, query("photo")).await;
    assert_eq!(reply.total_size, 2, "{}", summary(&reply));
    assert_eq!(name_set(&reply), set([&en, &other]));
    assert_eq!(facet(&reply.language_counts), counts([("en", 2)]));
    let reply = search(c, query("миротворцы")).await;
    assert_eq!(reply.total_size, 1);
    assert_eq!(names(&reply), std::slice::from_ref(&ru));
    assert_eq!(facet(&reply.language_counts), counts([("ru", 1)]));
    assert_eq!(
        facet(&reply.state_counts),
        counts([("VERIFICATION_STATE_UNVERIFIED", 1)])
    );
    let reply = search(c, query("zeppelin")).await;
    assert_eq!(reply.total_size, 0);
    assert!(reply.results.is_empty() && reply.next_page_token.is_empty());
    assert!(facet(&reply.source_counts).values().all(|n| *n == 0));
}

/// Walks every page of `req` with `page_size`: the names in order.
async fn walk(c: &mut Client, req: pb::SearchClaimsRequest, page_size: i32) -> Vec<String> {
    let mut out = Vec::new();
    let mut token = String::new();
    for _ in 0..1_000 {
        let reply = search(
            c,
            pb::SearchClaimsRequest {
                page_size,
                page_token: token,
                ..req.clone()
            },
        )
        .await;
        let most = match page_size {
            0 => 20,
            n => n.min(100) as usize,
        };
        assert!(reply.results.len() <= most, "{}", summary(&reply));
        out.extend(names(&reply));
        if reply.next_page_token.is_empty() {
            return out;
        }
        token = reply.next_page_token;
    }
    panic!("the pages never end: {out:?}");
}

#[tokio::test]
async fn newest_first_and_pages_walk_every_result_once() {
    let Kazbat {
        mut client,
        en,
        ru,
        other,
        _server,
        ..
    } = kazbat_world().await;
    let c = &mut client;

    // Registered en, ru, other, one second apart; en updated last.
    let newest = pb::SearchClaimsRequest {
        order_by: pb::SearchOrder::Newest as i32,
        ..claims_query("")
    };
    let reply = search(c, newest.clone()).await;
    assert_eq!(
        names(&reply),
        [other.clone(), ru.clone(), en.clone()],
        "{}",
        summary(&reply)
    );
    assert!(reply.results.iter().all(|r| r.score == 0.0), "{reply:?}");
    assert_eq!(
        walk(c, newest, 1).await,
        [other.clone(), ru.clone(), en.clone()],
        "newest first, a page at a time"
    );
    let newest_photo = pb::SearchClaimsRequest {
        order_by: pb::SearchOrder::Newest as i32,
        ..query("photo")
    };
    assert_eq!(found(c, newest_photo).await, [other.clone(), en.clone()]);

    // Relevance: best first.
    let reply = search(c, query("UN")).await;
    assert_eq!(name_set(&reply), set([&en]), "{}", summary(&reply));
    let reply = search(c, query("photo kazakhstan peacekeepers cat")).await;
    assert!(reply.results.is_empty(), "{}", summary(&reply));
    let reply = search(c, query("photo")).await;
    let scores: Vec<f32> = reply.results.iter().map(|r| r.score).collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]) && scores.iter().all(|s| *s > 0.0),
        "{scores:?}"
    );

    // Relevance, a page at a time: every result once.
    let pages = walk(c, claims_query(""), 1).await;
    assert_eq!(pages.len(), 3, "{pages:?}");
    assert_eq!(pages.iter().collect::<BTreeSet<_>>().len(), 3, "{pages:?}");
    let pages = walk(c, query("photo"), 1).await;
    assert_eq!(pages.len(), 2, "{pages:?}");
    assert_eq!(
        pages.into_iter().collect::<BTreeSet<_>>(),
        set([&en, &other])
    );
    let pages = walk(c, claims_query(""), 2).await;
    assert_eq!(
        pages.into_iter().collect::<BTreeSet<_>>(),
        set([&en, &ru, &other])
    );
}

/// "Newest first" is by registration time, also for claims registered
/// within the same second.
#[tokio::test]
async fn newest_first_orders_claims_registered_in_the_same_second() {
    let server = InProcess::in_memory().await;
    let mut client = server.client.clone();
    let c = &mut client;
    next_second().await;
    let mut registered = Vec::new();
    for i in 0..5 {
        let claim = new_claim(c, &format!("Photo of the tulip festival, picture {i}")).await;
        registered.push(claim);
    }
    let same_second = registered
        .iter()
        .all(|r| r.create_time.unwrap().seconds == registered[0].create_time.unwrap().seconds);
    let mut expected: Vec<String> = registered.iter().map(|c| c.name.clone()).collect();
    expected.reverse();
    let newest = pb::SearchClaimsRequest {
        order_by: pb::SearchOrder::Newest as i32,
        ..query("tulip")
    };
    let reply = search_until(c, newest, |r| r.total_size == 5).await;
    assert_eq!(
        names(&reply),
        expected,
        "newest first (registered within one second: {same_second}): {:?}",
        registered
            .iter()
            .map(|c| (&c.name, c.create_time))
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn page_sizes_default_to_20_and_stop_at_100() {
    let server = InProcess::in_memory().await;
    let mut client = server.client.clone();
    let c = &mut client;
    let mut all = BTreeSet::new();
    for i in 0..105 {
        all.insert(
            new_claim(c, &format!("Flooded street number {i} in the old town"))
                .await
                .name,
        );
    }
    let flooded = |page_size| pb::SearchClaimsRequest {
        page_size,
        ..query("flooded")
    };
    let reply = search_until(c, flooded(0), |r| r.total_size == 105).await;
    assert_eq!(reply.results.len(), 20, "page_size 0: {}", summary(&reply));
    assert!(!reply.next_page_token.is_empty());
    let reply = search(c, flooded(1_000)).await;
    assert_eq!(
        reply.results.len(),
        100,
        "page_size 1000: {}",
        summary(&reply)
    );
    assert!(!reply.next_page_token.is_empty());
    let reply = search(c, flooded(7)).await;
    assert_eq!(reply.results.len(), 7);

    // Every result once, whatever the page size.
    for page_size in [0, 30, 100, 1_000] {
        let pages = walk(c, flooded(page_size), page_size).await;
        assert_eq!(pages.len(), 105, "page_size {page_size}");
        assert_eq!(
            pages.into_iter().collect::<BTreeSet<_>>(),
            all,
            "page_size {page_size}"
        );
    }
}

// ---------------------------------------------------------------------------
// Imports
// ---------------------------------------------------------------------------

/// A fresh server with nothing in it.
async fn fresh() -> (InProcess<photoclaim::store::MemoryStore>, Client) {
    let server = InProcess::in_memory().await;
    let client = server.client.clone();
    (server, client)
}

fn appearance_urls(r: &pb::ExternalReview) -> Vec<&str> {
    r.appearances.iter().map(|a| a.url.as_str()).collect()
}

fn seconds(t: &Option<prost_types::Timestamp>) -> Option<i64> {
    t.as_ref().map(|t| t.seconds)
}

#[tokio::test]
async fn a_single_claim_review_is_imported_with_every_field() {
    let (_server, mut client) = fresh().await;
    let c = &mut client;
    let reply = import(c, SINGLE).await;
    assert!(reply.errors.is_empty(), "{reply:?}");
    assert_eq!((reply.created, reply.updated, reply.unchanged), (1, 0, 0));
    let got = outcomes(&reply);
    let [(0, name, pb::ImportOutcome::Created)] = got.as_slice() else {
        panic!("{reply:?}");
    };
    let name = name.clone();
    assert!(name.starts_with("externalReviews/"), "{name}");

    let r = get_review(c, &name).await;
    assert_eq!(r.name, name);
    assert_eq!(r.kind(), pb::ExternalReviewKind::ClaimReview);
    assert_eq!(r.review_url, NO_UN_URL);
    assert_eq!(r.publisher_name, "Example Fact Check");
    assert_eq!(r.publisher_url, "https://factcheck.example.org/");
    assert_eq!(r.author_name, "A. Example");
    assert_eq!(
        r.claim_reviewed,
        "Photos show UN peacekeepers deployed to Kazakhstan to put down the protests"
    );
    assert_eq!(r.claimant, "Social media posts");
    let rating = r.rating.clone().expect("rating");
    assert_eq!(
        (
            rating.value.as_str(),
            rating.best.as_str(),
            rating.worst.as_str(),
            rating.alternate_name.as_str()
        ),
        ("1", "5", "1", "False")
    );
    // 2022-01-12T09:30:00Z
    assert_eq!(
        seconds(&r.date_published),
        Some(JAN_8 + 4 * DAY + 9 * HOUR + 1_800)
    );
    assert_eq!(r.language, "en");
    assert_eq!(
        appearance_urls(&r),
        [
            "https://social.example.org/posts/1001",
            "https://video.example.org/watch?v=blue-helmets-almaty"
        ]
    );
    // 2022-01-08T14:20:00+06:00 = 08:20Z
    assert_eq!(
        seconds(&r.appearances[0].date_published),
        Some(JAN_8 + 8 * HOUR + 1_200)
    );
    assert_eq!(r.appearances[1].author, "Channel Example");
    let first = r.first_appearance.clone().expect("first appearance");
    assert_eq!(first.url, "https://social.example.org/posts/1001");
    assert_eq!(first.headline, "UN peacekeepers are in Almaty now");
    assert_eq!(seconds(&r.claim_date), Some(JAN_8));
    assert!(
        r.headline
            .starts_with("No, the UN did not send peacekeepers"),
        "{r:?}"
    );
    assert!(r.media_url.is_empty() && r.media_sha256.is_empty(), "{r:?}");
    assert_eq!(r.revision, 1);
    assert!(r.create_time.is_some() && r.update_time.is_some(), "{r:?}");
    assert!(!r.imported_by.is_empty(), "{r:?}");

    // Searchable, next to claims and on its own, with its highlights.
    let reply = search_until(c, reviews_query("Kazakh troops"), |r| !r.results.is_empty()).await;
    assert_eq!(
        names(&reply),
        std::slice::from_ref(&name),
        "{}",
        summary(&reply)
    );
    assert_eq!(
        facet(&reply.source_counts),
        counts([("external_review", 1)])
    );
    let hit = &reply.results[0];
    let Some(Found::ExternalReview(shown)) = &hit.result else {
        panic!("{hit:?}")
    };
    assert_eq!(
        shown, &r,
        "the result is the review as GetExternalReview shows it"
    );
    let h = highlight(hit, "headline").unwrap_or_else(|| panic!("{:?}", hit.highlights));
    assert_eq!(matched_words(h), ["Kazakh", "troops"]);
    let hit = &search(c, query("deploying protest")).await.results;
    assert_eq!(hit.len(), 1, "{hit:?}");
    assert!(highlight(&hit[0], "claim_reviewed").is_some(), "{hit:?}");
    assert_eq!(
        found_set(c, query("\"Example Fact Check\"")).await,
        set([&name])
    );
    assert!(found(c, claims_query("Kazakh troops")).await.is_empty());
    // A state filter leaves reviews out.
    let resolved = pb::SearchClaimsRequest {
        states: vec![pb::VerificationState::Resolved as i32],
        ..query("Kazakh troops")
    };
    assert!(found(c, resolved).await.is_empty());
    let rated = pb::SearchClaimsRequest {
        claim_ratings: vec![pb::ClaimRating::False as i32],
        ..query("Kazakh troops")
    };
    assert!(found(c, rated).await.is_empty());
    // A language filter does not.
    let en = pb::SearchClaimsRequest {
        languages: vec!["en".into()],
        ..query("Kazakh troops")
    };
    assert_eq!(found(c, en).await, std::slice::from_ref(&name));
    // First seen is the reviewed claim's date (2022-01-08).
    let seen = |after, before| pb::SearchClaimsRequest {
        first_seen_after: after,
        first_seen_before: before,
        ..reviews_query("")
    };
    assert_eq!(
        found(c, seen(ts(JAN_8), ts(JAN_8 + DAY))).await,
        std::slice::from_ref(&name)
    );
    assert!(found(c, seen(ts(JAN_8 + DAY), None)).await.is_empty());
    let claimant = pb::SearchClaimsRequest {
        claimant: "social media".into(),
        ..query("")
    };
    assert_eq!(found(c, claimant).await, std::slice::from_ref(&name));
}

#[tokio::test]
async fn an_array_with_a_russian_review_is_imported_and_found_in_russian() {
    let (_server, mut client) = fresh().await;
    let c = &mut client;
    let reply = import(c, ARRAY).await;
    assert!(reply.errors.is_empty(), "{reply:?}");
    let got = outcomes(&reply);
    assert_eq!(
        got.iter().map(|(i, _, o)| (*i, *o)).collect::<Vec<_>>(),
        [
            (0, pb::ImportOutcome::Created),
            (1, pb::ImportOutcome::Created)
        ],
        "{reply:?}"
    );
    assert_eq!(reply.created, 2);
    let (en, ru) = (got[0].1.clone(), got[1].1.clone());
    assert_ne!(en, ru);

    let r = get_review(c, &en).await;
    assert_eq!(
        r.review_url,
        "https://factcheck.example.org/2022/01/blue-helmets-almaty-photo"
    );
    let rating = r.rating.clone().unwrap();
    assert_eq!(
        (
            rating.value,
            rating.best,
            rating.worst,
            rating.alternate_name
        ),
        (
            "2".into(),
            "6".into(),
            "1".into(),
            "Missing context".to_string()
        )
    );
    assert_eq!(r.claimant, "Social media users");
    assert_eq!(
        appearance_urls(&r),
        ["https://social.example.org/posts/1002"]
    );

    let r = get_review(c, &ru).await;
    assert_eq!(r.language, "ru", "inLanguage as a Language object");
    assert_eq!(r.publisher_name, "Пример: проверка фактов");
    assert_eq!(r.publisher_url, "https://proverka.example.org/");
    assert_eq!(r.author_name, "Редакция проверки фактов");
    assert_eq!(r.claimant, "Telegram-каналы");
    assert_eq!(r.headline, "Нет, ООН не направляла миротворцев в Казахстан");
    let rating = r.rating.clone().unwrap();
    assert_eq!(
        (
            rating.value,
            rating.best,
            rating.worst,
            rating.alternate_name
        ),
        ("1".into(), "5".into(), "1".into(), "Ложь".to_string())
    );
    // 2022-01-13T10:00:00+06:00 = 04:00Z
    assert_eq!(seconds(&r.date_published), Some(JAN_8 + 5 * DAY + 4 * HOUR));
    assert_eq!(appearance_urls(&r), ["https://t.example.org/channel/4521"]);

    // "миротворцы" (claimReviewed) and "миротворцев" (headline) meet.
    let reply = search_until(c, query("миротворцами"), |r| {
        !r.results.is_empty()
    })
    .await;
    assert_eq!(
        names(&reply),
        std::slice::from_ref(&ru),
        "{}",
        summary(&reply)
    );
    assert_eq!(facet(&reply.language_counts), counts([("ru", 1)]));
    let fields: BTreeSet<&str> = reply.results[0]
        .highlights
        .iter()
        .map(|h| h.field.as_str())
        .collect();
    assert!(
        fields.contains("claim_reviewed") && fields.contains("headline"),
        "{:?}",
        reply.results[0].highlights
    );
    let ru_only = pb::SearchClaimsRequest {
        languages: vec!["ru".into()],
        ..reviews_query("")
    };
    assert_eq!(found(c, ru_only).await, std::slice::from_ref(&ru));
    let reply = search(c, query("ложь")).await;
    assert_eq!(
        names(&reply),
        std::slice::from_ref(&ru),
        "the rating's words"
    );
    let h = highlight(&reply.results[0], "rating")
        .unwrap_or_else(|| panic!("{:?}", reply.results[0].highlights));
    assert_eq!(matched_words(h), ["Ложь"], "{h:?}");
    assert_eq!(
        found(c, query("\"missing context\"")).await,
        std::slice::from_ref(&en)
    );
    // Newest first: reviews by their publication date.
    let newest = pb::SearchClaimsRequest {
        order_by: pb::SearchOrder::Newest as i32,
        ..reviews_query("")
    };
    assert_eq!(found(c, newest).await, [ru.clone(), en.clone()]);
}

#[tokio::test]
async fn json_lines_import_the_valid_lines_and_report_the_others() {
    let (_server, mut client) = fresh().await;
    let c = &mut client;
    let reply = import(c, FEED).await;
    let got = outcomes(&reply);
    assert_eq!(got.len(), 1, "{reply:?}");
    assert_eq!((got[0].0, got[0].2), (0, pb::ImportOutcome::Created));
    assert_eq!((reply.created, reply.updated, reply.unchanged), (1, 0, 0));
    assert_eq!(
        refused(&reply),
        [(1, String::new()), (2, "url".to_string())],
        "{reply:?}"
    );
    assert!(
        reply.errors[0].reason.contains("line 2") && reply.errors[0].reason.contains("JSON"),
        "{:?}",
        reply.errors[0]
    );
    assert!(
        reply.errors[1].reason.contains("url"),
        "{:?}",
        reply.errors[1]
    );

    let reviews = all_reviews(c, 50).await;
    assert_eq!(reviews.len(), 1, "{reviews:?}");
    assert_eq!(reviews[0].name, got[0].1);
    assert_eq!(reviews[0].review_url, NO_UN_URL);
    let reply = search_until(c, reviews_query("peacekeepers"), |r| r.total_size > 0).await;
    assert_eq!(names(&reply), [got[0].1.clone()], "{}", summary(&reply));
    // Neither refused item is searchable.
    assert!(found(c, query("authorized protesters")).await.is_empty());
    assert!(found(c, query("unrest")).await.is_empty());
}

#[tokio::test]
async fn a_graph_imports_its_claim_review_and_follows_references() {
    let (_server, mut client) = fresh().await;
    let c = &mut client;
    let reply = import(c, GRAPH).await;
    assert!(reply.errors.is_empty(), "{reply:?}");
    let got = outcomes(&reply);
    assert_eq!(
        got.len(),
        1,
        "the WebPage and Organization are skipped: {reply:?}"
    );
    assert_eq!(got[0].2, pb::ImportOutcome::Created);
    let r = get_review(c, &got[0].1).await;
    assert_eq!(r.publisher_name, "Example Fact Check");
    assert_eq!(r.publisher_url, "https://factcheck.example.org/");
    assert_eq!(r.review_url, NO_UN_URL);
    assert_eq!(r.language, "en-US");
    assert_eq!(
        r.headline,
        "No, the UN did not send peacekeepers to Kazakhstan"
    );
    assert_eq!(
        appearance_urls(&r),
        ["https://social.example.org/posts/1003"]
    );
    assert_eq!(r.rating.unwrap().alternate_name, "False");
    let en = pb::SearchClaimsRequest {
        languages: vec!["en".into()],
        ..query("blue helmets")
    };
    let reply = search_until(c, en, |r| r.total_size > 0).await;
    assert_eq!(names(&reply), [got[0].1.clone()]);
    assert_eq!(facet(&reply.language_counts), counts([("en", 1)]));
}

#[tokio::test]
async fn a_data_feed_imports_claim_and_media_reviews_and_refuses_a_news_article() {
    let (_server, mut client) = fresh().await;
    let c = &mut client;
    let reply = import(c, DATAFEED).await;
    let got = outcomes(&reply);
    assert_eq!(
        got.iter().map(|(i, _, o)| (*i, *o)).collect::<Vec<_>>(),
        [
            (0, pb::ImportOutcome::Created),
            (1, pb::ImportOutcome::Created)
        ],
        "{reply:?}"
    );
    assert_eq!(refused(&reply), [(2, "@type".to_string())], "{reply:?}");
    assert!(
        reply.errors[0].reason.contains("NewsArticle"),
        "{:?}",
        reply.errors
    );

    let claim_review = get_review(c, &got[0].1).await;
    assert_eq!(claim_review.kind(), pb::ExternalReviewKind::ClaimReview);
    assert_eq!(claim_review.review_url, NO_UN_URL);
    let media = get_review(c, &got[1].1).await;
    assert_eq!(media.kind(), pb::ExternalReviewKind::MediaReview);
    assert_eq!(
        media.review_url,
        "https://factcheck.example.org/2022/01/almaty-blue-helmets-photo"
    );
    assert_eq!(media.media_sha256, MEDIA_SHA);
    assert_eq!(media.media_url, MEDIA_URL);
    assert_eq!(media.media_authenticity_category, "DecontextualizedContent");
    assert_eq!(media.publisher_name, "Example Fact Check");
    assert_eq!(media.language, "en");
    assert_eq!(media.claimant, "Social media posts");
    assert_eq!(seconds(&media.claim_date), Some(JAN_8));
    assert_eq!(
        media.claim_reviewed,
        "Soldiers in blue UN helmets in Almaty, shared as proof of a UN deployment"
    );
    assert_eq!(
        appearance_urls(&media),
        ["https://social.example.org/posts/1001"]
    );

    let reply = search_until(c, reviews_query("helmets Almaty"), |r| r.total_size > 0).await;
    assert_eq!(
        names(&reply),
        std::slice::from_ref(&media.name),
        "{}",
        summary(&reply)
    );
    assert_eq!(reply.total_size, 1);
    // The news article was not imported.
    assert!(found(c, query("asks why")).await.is_empty());
    assert_eq!(all_reviews(c, 10).await.len(), 2);
}

#[tokio::test]
async fn reimports_are_idempotent_and_changes_are_new_revisions() {
    let (_server, mut client) = fresh().await;
    let c = &mut client;
    let first = import(c, ARRAY).await;
    let second = import(c, DATAFEED).await;
    assert_eq!((first.created, second.created), (2, 2));
    let names_of = |r: &pb::ImportClaimReviewsResponse| -> Vec<String> {
        r.imported.iter().map(|i| i.name.clone()).collect()
    };
    let (array_names, feed_names) = (names_of(&first), names_of(&second));

    // Paging, newest import first.
    let listed: Vec<String> = all_reviews(c, 1)
        .await
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(listed.len(), 4, "{listed:?}");
    assert_eq!(
        listed.iter().collect::<BTreeSet<_>>().len(),
        4,
        "no duplicates across pages: {listed:?}"
    );
    assert_eq!(
        listed[..2].iter().cloned().collect::<BTreeSet<_>>(),
        feed_names.iter().cloned().collect::<BTreeSet<_>>(),
        "the later import first: {listed:?}"
    );
    assert_eq!(
        listed[2..].iter().cloned().collect::<BTreeSet<_>>(),
        array_names.iter().cloned().collect::<BTreeSet<_>>(),
        "{listed:?}"
    );
    assert_eq!(
        all_reviews(c, 3)
            .await
            .into_iter()
            .map(|r| r.name)
            .collect::<Vec<_>>(),
        listed,
        "pages of 3"
    );
    let before = all_reviews(c, 0).await;

    // The same document again: nothing written.
    let again = import(c, ARRAY).await;
    assert_eq!(
        outcomes(&again),
        array_names
            .iter()
            .enumerate()
            .map(|(i, n)| (i as i32, n.clone(), pb::ImportOutcome::Unchanged))
            .collect::<Vec<_>>(),
        "{again:?}"
    );
    assert_eq!((again.created, again.updated, again.unchanged), (0, 0, 2));
    assert_eq!(
        all_reviews(c, 0).await,
        before,
        "an identical re-import changes nothing"
    );

    // The same review under a differently written URL (host case, default
    // port, fragment) is the same review.
    let renamed = ARRAY.replace(
        "https://factcheck.example.org/2022/01/blue-helmets-almaty-photo",
        "https://FactCheck.Example.org:443/2022/01/blue-helmets-almaty-photo#top",
    );
    assert_ne!(renamed, ARRAY);
    let again = import(c, &renamed).await;
    assert_eq!(
        (again.created, again.updated, again.unchanged),
        (0, 0, 2),
        "{again:?}"
    );
    assert_eq!(names_of(&again), array_names);

    // A changed headline: a new revision of the same review.
    let old_ru = get_review(c, &array_names[1]).await;
    let changed = ARRAY.replace(
        "Нет, ООН не направляла миротворцев в Казахстан",
        "Нет, ООН не направляла миротворцев в Казахстан: обновлено, ксилофон",
    );
    assert_ne!(changed, ARRAY);
    let updated = import(c, &changed).await;
    assert_eq!(
        outcomes(&updated),
        [
            (0, array_names[0].clone(), pb::ImportOutcome::Unchanged),
            (1, array_names[1].clone(), pb::ImportOutcome::Updated)
        ],
        "{updated:?}"
    );
    assert_eq!(
        (updated.created, updated.updated, updated.unchanged),
        (0, 1, 1)
    );
    let new_ru = get_review(c, &array_names[1]).await;
    assert_eq!(new_ru.revision, 2, "{new_ru:?}");
    assert_eq!(new_ru.name, old_ru.name);
    assert!(new_ru.headline.ends_with("ксилофон"), "{new_ru:?}");
    assert_eq!(new_ru.create_time, old_ru.create_time);
    assert!(
        seconds(&new_ru.update_time) >= seconds(&old_ru.update_time),
        "{new_ru:?}"
    );
    assert_eq!(get_review(c, &array_names[0]).await.revision, 1);
    assert_eq!(all_reviews(c, 0).await.len(), 4, "an update adds no review");
    // The index follows the update: the new word is found, once.
    let reply = search_until(c, query("ксилофон"), |r| r.total_size > 0).await;
    assert_eq!(
        names(&reply),
        [array_names[1].clone()],
        "{}",
        summary(&reply)
    );
    let reply = search(c, reviews_query("")).await;
    assert_eq!(reply.total_size, 4, "no stale copy: {}", summary(&reply));

    // The changed document again: unchanged.
    let again = import(c, &changed).await;
    assert_eq!(
        (again.created, again.updated, again.unchanged),
        (0, 0, 2),
        "{again:?}"
    );
    assert_eq!(get_review(c, &array_names[1]).await.revision, 2);

    // Another shape of an imported review (single.json has the URL of the
    // data feed's ClaimReview, with more fields): an update.
    let single = import(c, SINGLE).await;
    assert_eq!(
        outcomes(&single),
        [(0, feed_names[0].clone(), pb::ImportOutcome::Updated)],
        "{single:?}"
    );
    assert_eq!(get_review(c, &feed_names[0]).await.revision, 2);
    assert_eq!(all_reviews(c, 0).await.len(), 4);
}

// ---------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------

#[tokio::test]
async fn bad_searches_are_invalid_arguments_naming_the_field() {
    let (_server, mut client) = fresh().await;
    let c = &mut client;
    new_claim(c, "Photo of a parade in the capital").await;
    search_until(c, query("parade"), |r| r.total_size == 1).await;

    let cases: Vec<(&str, pb::SearchClaimsRequest, &[&str], &str)> = vec![
        ("empty query, no filter", query(""), &["query"], ""),
        ("blank query, no filter", query("   "), &["query"], ""),
        (
            "unclosed quote",
            query("UN \"blue helmets"),
            &["query"],
            "position 4",
        ),
        (
            "unclosed quote after Cyrillic",
            query("миротворцы \"ООН"),
            &["query"],
            "position 12",
        ),
        ("a lone -", query("UN - helmets"), &["query"], "position 4"),
        ("a trailing -", query("UN -"), &["query"], "position 4"),
        (
            "an empty phrase",
            query("a \"\" b"),
            &["query"],
            "position 3",
        ),
        ("too long", query(&"word ".repeat(201)), &["query"], "1000"),
        (
            "negative page_size",
            pb::SearchClaimsRequest {
                page_size: -1,
                ..query("parade")
            },
            &["page_size"],
            "",
        ),
        (
            "unknown state",
            pb::SearchClaimsRequest {
                states: vec![99],
                ..query("parade")
            },
            &["states[0]", "states"],
            "99",
        ),
        (
            "UNSPECIFIED state",
            pb::SearchClaimsRequest {
                states: vec![pb::VerificationState::Resolved as i32, 0],
                ..query("parade")
            },
            &["states[1]", "states"],
            "",
        ),
        (
            "unknown rating",
            pb::SearchClaimsRequest {
                claim_ratings: vec![42],
                ..query("parade")
            },
            &["claim_ratings[0]", "claim_ratings"],
            "42",
        ),
        (
            "unknown authenticity",
            pb::SearchClaimsRequest {
                media_authenticities: vec![-3],
                ..query("parade")
            },
            &["media_authenticities[0]", "media_authenticities"],
            "",
        ),
        (
            "unknown order",
            pb::SearchClaimsRequest {
                order_by: 7,
                ..query("parade")
            },
            &["order_by"],
            "7",
        ),
        (
            "unknown source",
            pb::SearchClaimsRequest {
                source: 9,
                ..query("parade")
            },
            &["source"],
            "9",
        ),
        (
            "query language not BCP-47",
            pb::SearchClaimsRequest {
                language: "english please".into(),
                ..query("parade")
            },
            &["language"],
            "",
        ),
        (
            "filter language not BCP-47",
            pb::SearchClaimsRequest {
                languages: vec!["en".into(), "12".into()],
                ..query("parade")
            },
            &["languages[1]", "languages"],
            "",
        ),
        (
            "empty tag",
            pb::SearchClaimsRequest {
                tags: vec!["".into()],
                ..query("parade")
            },
            &["tags[0]", "tags"],
            "",
        ),
        (
            "first_seen_after = first_seen_before",
            pb::SearchClaimsRequest {
                first_seen_after: ts(JAN_8),
                first_seen_before: ts(JAN_8),
                ..query("parade")
            },
            &["first_seen_before", "first_seen_after"],
            "",
        ),
        (
            "first_seen_after > first_seen_before",
            pb::SearchClaimsRequest {
                first_seen_after: ts(JAN_8 + DAY),
                first_seen_before: ts(JAN_8),
                ..query("parade")
            },
            &["first_seen_before", "first_seen_after"],
            "",
        ),
        (
            "update_after > update_before",
            pb::SearchClaimsRequest {
                update_after: ts(JAN_8 + DAY),
                update_before: ts(JAN_8),
                ..query("parade")
            },
            &["update_before", "update_after"],
            "",
        ),
        (
            "a made-up page token",
            pb::SearchClaimsRequest {
                page_token: "not-a-token".into(),
                ..query("parade")
            },
            &["page_token"],
            "",
        ),
    ];
    for (what, req, fields, words) in cases {
        let status = search_error(c, req).await;
        assert_invalid(&status, fields, words, what);
    }

    // A page token continues only the search it came from.
    for i in 0..3 {
        new_claim(c, &format!("Photo {i} of a parade in the capital")).await;
    }
    let first = search_until(
        c,
        pb::SearchClaimsRequest {
            page_size: 1,
            ..query("parade")
        },
        |r| r.total_size == 4,
    )
    .await;
    let token = first.next_page_token.clone();
    assert!(!token.is_empty(), "{}", summary(&first));
    let elsewhere = [
        query("capital"),
        pb::SearchClaimsRequest {
            languages: vec!["en".into()],
            ..query("parade")
        },
        pb::SearchClaimsRequest {
            order_by: pb::SearchOrder::Newest as i32,
            ..query("parade")
        },
    ];
    for req in elsewhere {
        let req = pb::SearchClaimsRequest {
            page_token: token.clone(),
            page_size: 1,
            ..req
        };
        let status = search_error(c, req.clone()).await;
        assert_invalid(
            &status,
            &["page_token"],
            "",
            &format!("token reused with {req:?}"),
        );
    }
    // The same search with another page size may continue.
    let next = search(
        c,
        pb::SearchClaimsRequest {
            page_token: token,
            page_size: 10,
            ..query("parade")
        },
    )
    .await;
    assert_eq!(next.results.len(), 3, "{}", summary(&next));
    assert!(!names(&next).contains(&names(&first)[0]));
}

#[tokio::test]
async fn bad_documents_are_refused_and_change_nothing() {
    let (_server, mut client) = fresh().await;
    let c = &mut client;
    import(c, SINGLE).await;
    let before = all_reviews(c, 0).await;
    assert_eq!(before.len(), 1);

    let status = import_error(c, String::new()).await;
    assert_invalid(&status, &["document"], "", "empty document");
    let status = import_error(c, " \n\t ".into()).await;
    assert_invalid(&status, &["document"], "", "blank document");
    let status = import_error(c, "ClaimReview: the UN sent peacekeepers (false)".into()).await;
    assert_invalid(&status, &["document"], "", "not JSON");
    let status = import_error(c, "{\"@type\": \"ClaimReview\", \"url\": ".into()).await;
    assert_invalid(&status, &["document"], "", "truncated JSON");

    // 10,001 minimal ClaimReviews.
    let items: Vec<String> = (0..10_001)
        .map(|i| {
            format!(
                r#"{{"@type":"ClaimReview","url":"https://bulk.example.org/review/{i}","claimReviewed":"Bulk claim number {i}","reviewRating":{{"@type":"Rating","alternateName":"False"}}}}"#
            )
        })
        .collect();
    let document = format!("[{}]", items.join(","));
    let status = import_error(c, document).await;
    assert_eq!(
        status.code(),
        Code::ResourceExhausted,
        "10,001 items: {status:?}"
    );
    assert!(
        status.message().contains("10000") || status.message().contains("10,000"),
        "{status:?}"
    );

    // Only refused items: a reply with the errors, nothing imported.
    let reply = import(
        c,
        r#"[{"@type": "NewsArticle", "url": "https://news.example.org/a"},
            {"@type": "ClaimReview", "claimReviewed": "No URL"}]"#,
    )
    .await;
    assert!(reply.imported.is_empty(), "{reply:?}");
    assert_eq!(
        refused(&reply),
        [(0, "@type".to_string()), (1, "url".to_string())],
        "{reply:?}"
    );
    assert_eq!((reply.created, reply.updated, reply.unchanged), (0, 0, 0));

    assert_eq!(
        all_reviews(c, 0).await,
        before,
        "the refused imports changed nothing"
    );
    // Nothing refused is searchable either (bulk claims, the news article).
    search_until(c, reviews_query(""), |r| r.total_size == 1).await;
    assert!(found(c, query("bulk")).await.is_empty());

    // Reading reviews with bad names.
    let status = client_get_review_error(c, "claims/1").await;
    assert_invalid(&status, &["name"], "", "a claim's name");
    let status = client_get_review_error(c, "").await;
    assert_invalid(&status, &["name"], "", "no name");
    let status = client_get_review_error(c, "externalReviews/987654").await;
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let status = c
        .list_external_reviews(pb::ListExternalReviewsRequest {
            page_size: -1,
            page_token: String::new(),
        })
        .await
        .expect_err("negative page size");
    assert_invalid(
        &status,
        &["page_size"],
        "",
        "ListExternalReviews page_size -1",
    );
}

async fn client_get_review_error(c: &mut Client, name: &str) -> Status {
    c.get_external_review(pb::GetExternalReviewRequest { name: name.into() })
        .await
        .expect_err("GetExternalReview must fail")
}

// ---------------------------------------------------------------------------
// "Checked before?"
// ---------------------------------------------------------------------------

#[tokio::test]
async fn registration_lists_the_claims_and_reviews_checked_before() {
    let (_server, mut client) = fresh().await;
    let c = &mut client;

    let first = new_claim(
        c,
        "Photos show UN peacekeepers deployed to Kazakhstan to put down the protests",
    )
    .await
    .name;
    search_until(c, claims_query("peacekeepers"), |r| {
        names(r) == std::slice::from_ref(&first)
    })
    .await;

    // The same words in another order and form.
    let second = register(
        c,
        sample_claim(
            "UN peacekeepers were deployed in Kazakhstan to put down protests, photos show",
        ),
        "",
    )
    .await;
    let second_name = second.claim.clone().unwrap().name;
    assert_eq!(
        checked(&second),
        set([&first]),
        "{:?}",
        second.checked_before
    );
    let Some(Found::Claim(listed)) = &second.checked_before[0].result else {
        panic!("{:?}", second.checked_before)
    };
    assert!(
        listed.verification_status.is_some(),
        "with its status: {listed:?}"
    );

    // Unrelated, and partly related (2 words of 9 shared): not listed.
    let unrelated = register(
        c,
        sample_claim("A cat was elected mayor of a small Alaskan town"),
        "",
    )
    .await;
    assert!(
        unrelated.checked_before.is_empty(),
        "unrelated: {:?}",
        unrelated.checked_before
    );
    let partly = register(
        c,
        sample_claim(
            "Protests in Kazakhstan turned violent in Almaty after fuel prices doubled overnight",
        ),
        "",
    )
    .await;
    assert!(
        partly.checked_before.is_empty(),
        "partly related: {:?}",
        partly.checked_before
    );

    // An imported ClaimReview of the same claim.
    let review = import(c, SINGLE).await.imported[0].name.clone();
    search_until(c, reviews_query("peacekeepers"), |r| {
        names(r) == std::slice::from_ref(&review)
    })
    .await;
    search_until(c, claims_query("peacekeepers"), |r| r.total_size == 2).await;
    let third = register(
        c,
        sample_claim("Photos: UN peacekeepers deployed to put down the protests in Kazakhstan"),
        "",
    )
    .await;
    let third_name = third.claim.clone().unwrap().name;
    let listed = checked(&third);
    assert_eq!(
        listed,
        set([&first, &second_name, &review]),
        "{:?}",
        third.checked_before
    );
    assert!(!listed.contains(&third_name), "never the new claim itself");
    assert!(third
        .checked_before
        .iter()
        .any(|r| matches!(&r.result, Some(Found::ExternalReview(x)) if x.review_url == NO_UN_URL)));

    // The same claim in Russian, against the Russian review.
    let ru_review = import(c, ARRAY).await.imported[1].name.clone();
    search_until(c, reviews_query("миротворцы"), |r| {
        names(r) == std::slice::from_ref(&ru_review)
    })
    .await;
    let ru = register(
        c,
        pb::Claim {
            language: "ru".into(),
            ..sample_claim("Миротворцев ООН ввели в Казахстан для подавления протестов")
        },
        "",
    )
    .await;
    assert_eq!(checked(&ru), set([&ru_review]), "{:?}", ru.checked_before);
}

#[tokio::test]
async fn a_media_review_of_the_same_image_is_checked_before_and_similar() {
    let (_server, mut client) = fresh().await;
    let c = &mut client;
    let imported = import(c, DATAFEED).await;
    let media = imported.imported[1].name.clone();
    search_until(c, reviews_query("Almaty"), |r| name_set(r).contains(&media)).await;

    // Unrelated text on the same image (SHA-256).
    let same_sha = register(
        c,
        pb::Claim {
            image: Some(pb::Image {
                sha256: MEDIA_SHA.into(),
                ..Default::default()
            }),
            ..sample_claim("Picture of a military parade rehearsal")
        },
        "",
    )
    .await;
    assert_eq!(
        checked(&same_sha),
        set([&media]),
        "{:?}",
        same_sha.checked_before
    );
    let Some(Found::ExternalReview(r)) = &same_sha.checked_before[0].result else {
        panic!("{:?}", same_sha.checked_before)
    };
    assert_eq!(r.media_sha256, MEDIA_SHA);

    // The same image by its URL.
    let same_url = register(
        c,
        pb::Claim {
            image: Some(pb::Image {
                source_url: MEDIA_URL.into(),
                ..Default::default()
            }),
            ..sample_claim("Another picture of a military parade rehearsal")
        },
        "",
    )
    .await;
    assert!(
        checked(&same_url).contains(&media),
        "{:?}",
        same_url.checked_before
    );

    // Another image, unrelated text: nothing.
    let other = register(
        c,
        pb::Claim {
            image: Some(pb::Image {
                sha256: fake_sha256(77),
                ..Default::default()
            }),
            ..sample_claim("Tulips in bloom at the botanical garden")
        },
        "",
    )
    .await;
    assert!(
        other.checked_before.is_empty(),
        "{:?}",
        other.checked_before
    );

    // FindSimilarClaims of the image: the claim on it and the review.
    let similar = c
        .find_similar_claims(pb::FindSimilarClaimsRequest {
            sha256: MEDIA_SHA.into(),
            ..Default::default()
        })
        .await
        .expect("FindSimilarClaims")
        .into_inner();
    let reviews: Vec<&str> = similar
        .external_reviews
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(reviews, [media.as_str()], "{similar:?}");
    assert_eq!(
        similar.external_reviews[0].kind(),
        pb::ExternalReviewKind::MediaReview
    );
    assert_eq!(
        similar
            .matches
            .iter()
            .map(|m| m.claim.as_ref().unwrap().name.clone())
            .collect::<Vec<_>>(),
        [same_sha.claim.unwrap().name]
    );
    let unrelated = c
        .find_similar_claims(pb::FindSimilarClaimsRequest {
            sha256: fake_sha256(77),
            ..Default::default()
        })
        .await
        .expect("FindSimilarClaims")
        .into_inner();
    assert!(unrelated.external_reviews.is_empty(), "{unrelated:?}");
    assert_eq!(unrelated.matches.len(), 1);
}

// ---------------------------------------------------------------------------
// The real binary: kill -9, restart, reindex
// ---------------------------------------------------------------------------

/// Registers `n` claims numbered from `from`, each with its own word
/// (`kwNNNN`): their names.
async fn register_numbered(c: &mut Client, from: usize, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for i in from..from + n {
        let text = format!("Restart check photo kw{i:04} of a flooded bridge");
        out.push(
            register(c, sample_claim(&text), &format!("restart-{i}"))
                .await
                .claim
                .unwrap()
                .name,
        );
    }
    out
}

/// Waits until every one of `names` is found by "flooded bridge", and
/// each by its own word.
async fn all_searchable(c: &mut Client, names: &[String]) {
    let expected: BTreeSet<String> = names.iter().cloned().collect();
    let reply = search_until(c, claims_query("flooded bridge"), |r| {
        r.total_size == names.len() as i64 && name_set(r) == expected
    })
    .await;
    assert_eq!(reply.total_size, names.len() as i64);
    for (i, name) in names.iter().enumerate() {
        assert_eq!(
            found(c, query(&format!("kw{i:04}"))).await,
            std::slice::from_ref(name),
            "kw{i:04}"
        );
    }
}

#[tokio::test]
async fn every_acknowledged_claim_is_searchable_after_kill_9() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Process::spawn(dir.path());
    let mut client = connect(&server.addr).await;
    let c = &mut client;
    // Some claims certainly indexed (committed), then more killed at once.
    let mut names = register_numbered(c, 0, 10).await;
    all_searchable(c, &names).await;
    let review = import(c, SINGLE).await.imported[0].name.clone();
    names.extend(register_numbered(c, 10, 30).await);
    tokio::task::spawn_blocking(move || server.kill9())
        .await
        .unwrap();
    assert!(
        dir.path().join(photoclaim::search::INDEX_DIR_NAME).is_dir(),
        "the index is kept in the data directory"
    );

    let server = Process::spawn(dir.path());
    let mut client = connect(&server.addr).await;
    let c = &mut client;
    all_searchable(c, &names).await;
    search_until(c, reviews_query("peacekeepers"), |r| {
        names_eq(r, &[&review])
    })
    .await;
    // And the index keeps following.
    let more = register_numbered(c, 40, 1).await;
    names.extend(more);
    all_searchable(c, &names).await;
    let (status, log) = server.terminate();
    assert!(status.success(), "{status:?}\n{log}");
}

fn names_eq(reply: &pb::SearchClaimsResponse, expected: &[&str]) -> bool {
    names(reply) == expected.iter().map(|s| s.to_string()).collect::<Vec<_>>()
}

#[tokio::test]
async fn reindex_rebuilds_the_index_of_a_stopped_data_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let index_dir = dir.path().join(photoclaim::search::INDEX_DIR_NAME);
    let server = Process::spawn(dir.path());
    let mut client = connect(&server.addr).await;
    let c = &mut client;
    let names = register_numbered(c, 0, 12).await;
    let review = import(c, SINGLE).await.imported[0].name.clone();
    all_searchable(c, &names).await;
    search_until(c, reviews_query("peacekeepers"), |r| {
        names_eq(r, &[&review])
    })
    .await;

    // Not while a server runs on the directory: refused, the index kept.
    let data_dir = dir.path().to_str().unwrap().to_string();
    let (ok, out) = cli(&["reindex", "--data-dir", &data_dir]);
    assert!(!ok, "reindex of a directory in use must fail:\n{out}");
    assert!(
        index_dir.join("meta.json").is_file(),
        "the index survives a refused reindex"
    );
    all_searchable(c, &names).await;

    let (status, log) = server.terminate();
    assert!(status.success(), "{status:?}\n{log}");

    // A stray file in the old index: a rebuild from scratch removes it.
    let stray = index_dir.join("stray-marker");
    std::fs::write(&stray, b"left by the test").unwrap();
    let (ok, out) = cli(&["reindex", "--data-dir", &data_dir]);
    assert!(ok, "reindex failed:\n{out}");
    assert!(
        !stray.exists(),
        "the index directory was rebuilt from scratch:\n{out}"
    );
    assert!(index_dir.join("meta.json").is_file(), "a new index:\n{out}");

    // Not a data directory: a usage error, nothing created.
    let empty = tempfile::tempdir().unwrap();
    let (code, out) = cli_exit(&["reindex", "--data-dir", empty.path().to_str().unwrap()]);
    assert_ne!(code, 0, "{out}");
    assert!(
        !empty
            .path()
            .join(photoclaim::search::INDEX_DIR_NAME)
            .exists(),
        "no index made in a directory that is not a data directory"
    );

    let server = Process::spawn(dir.path());
    let mut client = connect(&server.addr).await;
    let c = &mut client;
    all_searchable(c, &names).await;
    search_until(c, reviews_query("peacekeepers"), |r| {
        names_eq(r, &[&review])
    })
    .await;
    let more = register_numbered(c, 12, 1).await;
    let mut all = names.clone();
    all.extend(more);
    all_searchable(c, &all).await;

    // An index deleted while stopped is rebuilt at start.
    let (status, log) = server.terminate();
    assert!(status.success(), "{status:?}\n{log}");
    std::fs::remove_dir_all(&index_dir).unwrap();
    let server = Process::spawn(dir.path());
    let mut client = connect(&server.addr).await;
    all_searchable(&mut client, &all).await;
    let (status, log) = server.terminate();
    assert!(status.success(), "{status:?}\n{log}");
}

// ---------------------------------------------------------------------------
// Roles
// ---------------------------------------------------------------------------

#[derive(Clone)]
struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

type AuthedClaims = pb::claim_service_client::ClaimServiceClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>,
>;
type AuthedAdmin = pb::admin_service_client::AdminServiceClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>,
>;

fn bearer(token: &str) -> Bearer {
    Bearer(format!("Bearer {token}").parse().unwrap())
}

async fn create_key(admin: &mut AuthedAdmin, name: &str, role: pb::Role) -> String {
    admin
        .create_api_key(pb::CreateApiKeyRequest {
            name: name.into(),
            role: role as i32,
        })
        .await
        .unwrap_or_else(|s| panic!("create key {name}: {s:?}"))
        .into_inner()
        .token
}

#[tokio::test]
async fn a_reader_may_search_but_not_import() {
    let server = InProcess::start().await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    // The first key is made anonymously while the server is open.
    let admin_token = pb::admin_service_client::AdminServiceClient::new(channel.clone())
        .create_api_key(pb::CreateApiKeyRequest {
            name: "ops".into(),
            role: pb::Role::Admin as i32,
        })
        .await
        .expect("the first key")
        .into_inner()
        .token;
    let mut admin: AuthedAdmin = pb::admin_service_client::AdminServiceClient::with_interceptor(
        channel.clone(),
        bearer(&admin_token),
    );
    let reader_token = create_key(&mut admin, "reader", pb::Role::Reader).await;
    let desk_token = create_key(&mut admin, "desk", pb::Role::Desk).await;
    let as_role = |token: &str| -> AuthedClaims {
        pb::claim_service_client::ClaimServiceClient::with_interceptor(
            channel.clone(),
            bearer(token),
        )
    };
    let (mut reader, mut desk) = (as_role(&reader_token), as_role(&desk_token));

    let denied = reader
        .import_claim_reviews(pb::ImportClaimReviewsRequest {
            document: SINGLE.into(),
        })
        .await
        .expect_err("a reader may not import");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let imported = desk
        .import_claim_reviews(pb::ImportClaimReviewsRequest {
            document: SINGLE.into(),
        })
        .await
        .expect("a desk key imports")
        .into_inner();
    assert_eq!(imported.created, 1, "{imported:?}");
    let name = imported.imported[0].name.clone();
    let review = reader
        .get_external_review(pb::GetExternalReviewRequest { name: name.clone() })
        .await
        .expect("a reader reads reviews")
        .into_inner();
    assert_eq!(
        review.imported_by, "desk",
        "the importing key is recorded: {review:?}"
    );
    let listed = reader
        .list_external_reviews(pb::ListExternalReviewsRequest::default())
        .await
        .expect("a reader lists reviews")
        .into_inner();
    assert_eq!(
        listed.external_reviews.len(),
        1,
        "only the desk's import: {listed:?}"
    );

    let deadline = Instant::now() + DEADLINE;
    loop {
        match reader.search_claims(reviews_query("peacekeepers")).await {
            Ok(reply) if names_eq(reply.get_ref(), &[&name]) => break,
            Ok(_) => {}
            Err(s) if index_not_ready(&s) => {}
            Err(s) => panic!("a reader searches: {s:?}"),
        }
        assert!(
            Instant::now() < deadline,
            "the import never became searchable"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await;
}
