//! SearchClaims, ImportClaimReviews, GetExternalReview,
//! ListExternalReviews, and RegisterClaim's "checked before?" list: the
//! requests checked and turned into searches of [`crate::search`], the
//! results read from the store and shown.

use std::sync::Arc;

use prost::Message;
use sha2::{Digest, Sha256};

use super::ClaimApi;
use crate::domain::external_review::parse_items;
use crate::domain::validate::{is_bcp47, MAX_SHORT_TEXT_CHARS, MAX_TAG_CHARS};
use crate::domain::{ClaimView, Error, Result};
use crate::pb;
use crate::search::{query, CheckedBefore, Hit, SearchIndex, SearchRequest, Source, Target};
use crate::store::{ImportOutcome, Store};
use crate::wire::convert;
use crate::wire::names::{
    decode_page_token, encode_page_token, parse_external_review_name, Listing,
};

/// SearchClaims' page size when none is asked for.
pub const DEFAULT_SEARCH_PAGE: usize = 20;
/// SearchClaims' largest page.
pub const MAX_SEARCH_PAGE: usize = 100;
/// How deep SearchClaims pages: results past this rank are not served
/// (narrow the query instead).
pub const MAX_SEARCH_DEPTH: usize = 10_000;
/// Most items of one ImportClaimReviews call.
pub const MAX_IMPORT_ITEMS: usize = 10_000;
/// Responses of a found claim examined for highlights.
const HIGHLIGHTED_RESPONSES: usize = 100;
/// Most filter values of one kind (states, tags, languages...).
const MAX_FILTER_VALUES: usize = 50;

/// A message's enum values, each known and not UNSPECIFIED.
fn enum_values(values: &[i32], field: &str, known: impl Fn(i32) -> bool) -> Result<Vec<i32>> {
    if values.len() > MAX_FILTER_VALUES {
        return Err(Error::invalid(
            field,
            format!("has more than {MAX_FILTER_VALUES} values"),
        ));
    }
    for (i, v) in values.iter().enumerate() {
        if *v == 0 || !known(*v) {
            return Err(Error::invalid(
                format!("{field}[{i}]"),
                format!("{v} is not a known value (UNSPECIFIED is not a filter)"),
            ));
        }
    }
    Ok(values.to_vec())
}

/// A time range `[after, before)` as the index's nanoseconds.
fn nanos_range(
    after: Option<prost_types::Timestamp>,
    before: Option<prost_types::Timestamp>,
    after_field: &str,
    before_field: &str,
) -> Result<(Option<i64>, Option<i64>)> {
    let nanos = |t: prost_types::Timestamp, field: &str| {
        if !(0..1_000_000_000).contains(&t.nanos) {
            return Err(Error::invalid(field, "nanos must be 0-999,999,999"));
        }
        Ok(crate::search::nanos(crate::domain::Timestamp {
            seconds: t.seconds,
            nanos: t.nanos,
        }))
    };
    let from = after.map(|t| nanos(t, after_field)).transpose()?;
    let to = before.map(|t| nanos(t, before_field)).transpose()?;
    if let (Some(a), Some(b)) = (from, to) {
        if a >= b {
            return Err(Error::invalid(
                before_field,
                format!("must be later than {after_field}"),
            ));
        }
    }
    Ok((from, to))
}

/// The scope of a search's page tokens: the request without its page
/// fields, hashed, so a token only continues the same search.
fn search_scope(req: &pb::SearchClaimsRequest) -> u64 {
    let mut scoped = req.clone();
    scoped.page_size = 0;
    scoped.page_token.clear();
    let digest = Sha256::digest(scoped.encode_to_vec());
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// Checks a SearchClaims request and makes the search of it.
fn search_request(req: &pb::SearchClaimsRequest) -> Result<SearchRequest> {
    let limit = match req.page_size {
        n if n < 0 => return Err(Error::invalid("page_size", "must not be negative")),
        0 => DEFAULT_SEARCH_PAGE,
        n => (n as usize).min(MAX_SEARCH_PAGE),
    };
    let clauses = query::parse(&req.query, "query")?;
    let language = match req.language.trim() {
        "" => None,
        tag if is_bcp47(tag) => Some(tag.to_string()),
        _ => {
            return Err(Error::invalid(
                "language",
                format!("{:?} is not a BCP-47 language tag", req.language),
            ))
        }
    };
    let states = enum_values(&req.states, "states", |v| {
        pb::VerificationState::try_from(v).is_ok()
    })?;
    let ratings = enum_values(&req.claim_ratings, "claim_ratings", |v| {
        pb::ClaimRating::try_from(v).is_ok()
    })?;
    let media = enum_values(&req.media_authenticities, "media_authenticities", |v| {
        pb::MediaAuthenticity::try_from(v).is_ok()
    })?;
    for (field, values) in [("languages", &req.languages), ("tags", &req.tags)] {
        if values.len() > MAX_FILTER_VALUES {
            return Err(Error::invalid(
                field,
                format!("has more than {MAX_FILTER_VALUES} values"),
            ));
        }
    }
    for (i, tag) in req.languages.iter().enumerate() {
        if !is_bcp47(tag) {
            return Err(Error::invalid(
                format!("languages[{i}]"),
                format!("{tag:?} is not a BCP-47 language tag"),
            ));
        }
    }
    for (i, tag) in req.tags.iter().enumerate() {
        let chars = tag.chars().count();
        if tag.trim().is_empty() || chars > MAX_TAG_CHARS {
            return Err(Error::invalid(
                format!("tags[{i}]"),
                format!("must be 1-{MAX_TAG_CHARS} characters"),
            ));
        }
    }
    for (field, value) in [
        ("claimant", &req.claimant),
        ("responder_organization", &req.responder_organization),
    ] {
        if value.chars().count() > MAX_SHORT_TEXT_CHARS {
            return Err(Error::invalid(
                field,
                format!("must be at most {MAX_SHORT_TEXT_CHARS} characters"),
            ));
        }
    }
    let first_seen = nanos_range(
        req.first_seen_after,
        req.first_seen_before,
        "first_seen_after",
        "first_seen_before",
    )?;
    let updated = nanos_range(
        req.update_after,
        req.update_before,
        "update_after",
        "update_before",
    )?;
    let newest = match pb::SearchOrder::try_from(req.order_by) {
        Ok(pb::SearchOrder::Newest) => true,
        Ok(_) => false,
        Err(_) => {
            return Err(Error::invalid(
                "order_by",
                format!("{} is not a known value", req.order_by),
            ))
        }
    };
    let source = match pb::SearchSource::try_from(req.source) {
        Ok(pb::SearchSource::Unspecified) => Source::All,
        Ok(pb::SearchSource::Claims) => Source::Claims,
        Ok(pb::SearchSource::ExternalReviews) => Source::Reviews,
        Err(_) => {
            return Err(Error::invalid(
                "source",
                format!("{} is not a known value", req.source),
            ))
        }
    };
    let request = SearchRequest {
        clauses,
        language,
        states,
        ratings,
        media,
        languages: req.languages.clone(),
        tags: req.tags.clone(),
        claimant: req.claimant.clone(),
        organization: req.responder_organization.clone(),
        first_seen,
        updated,
        newest,
        source,
        offset: 0,
        limit,
    };
    if request.clauses.iter().all(|c| c.excluded) && !request.has_filter() {
        return Err(Error::invalid(
            "query",
            "is required unless a filter is given (states, claim_ratings, languages, tags, claimant, ...)",
        ));
    }
    Ok(request)
}

fn highlight_out(field: &str, h: crate::search::Highlight) -> pb::Highlight {
    pb::Highlight {
        field: field.to_string(),
        text: h.text,
        html: h.html,
        matches: h
            .matches
            .into_iter()
            .map(|(start, end)| pb::TextRange {
                start: start as i32,
                end: end as i32,
            })
            .collect(),
    }
}

fn counts<K>(
    values: impl IntoIterator<Item = (K, u64)>,
    name: impl Fn(K) -> String,
) -> Vec<pb::FacetCount> {
    let mut out: Vec<pb::FacetCount> = values
        .into_iter()
        .map(|(k, count)| pb::FacetCount {
            value: name(k),
            count: count as i64,
        })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.value.cmp(&b.value)));
    out
}

impl<S: Store> ClaimApi<S> {
    /// The search index when the server keeps one and it is ready: what
    /// the optional lists (checked before, reviews of an image) use, empty
    /// otherwise.
    fn index_if_ready(&self) -> Option<&Arc<SearchIndex>> {
        self.search.as_ref().filter(|index| index.is_ready())
    }

    /// The search index, if the server keeps one and it is ready.
    fn ready_index(&self) -> Result<&Arc<SearchIndex>> {
        let Some(index) = &self.search else {
            return Err(Error::FailedPrecondition(crate::domain::Precondition {
                kind: "SEARCH_OFF".into(),
                subject: "photoclaim.v1.ClaimService/SearchClaims".into(),
                description: "search is turned off on this server (serve --no-search)".into(),
            }));
        };
        if !index.is_ready() {
            return Err(Error::Unavailable(
                "the search index is being built; try again shortly".into(),
            ));
        }
        Ok(index)
    }

    pub(super) async fn search_claims_now(
        &self,
        req: pb::SearchClaimsRequest,
    ) -> Result<pb::SearchClaimsResponse> {
        let mut request = search_request(&req)?;
        let key = self.store.page_token_key();
        let scope = search_scope(&req);
        let offset = decode_page_token(&key, &req.page_token, Listing::Search, scope)?;
        request.offset = offset.unwrap_or(0) as usize;
        let index = Arc::clone(self.ready_index()?);
        let searching = request.clone();
        let found = tokio::task::spawn_blocking(move || index.search(&searching))
            .await
            .map_err(|e| Error::Internal(format!("search failed: {e}")))?
            .map_err(|e| Error::Internal(e.to_string()))?;
        let Some(mut found) = found else {
            return Err(Error::invalid(
                "query",
                "has no searchable words (only stop words or punctuation) and no filter is given",
            ));
        };
        let mut results = Vec::with_capacity(found.hits.len());
        for hit in &found.hits {
            if let Some(result) = self.result(hit, &mut found.highlighter).await? {
                results.push(result);
            }
        }
        let end = request.offset + found.hits.len();
        let more = (end as u64) < found.total && end < MAX_SEARCH_DEPTH && !found.hits.is_empty();
        let facets = found.facets;
        Ok(pb::SearchClaimsResponse {
            results: super::fitting(results.into_iter(), super::MAX_PAGE_BYTES, true),
            next_page_token: encode_page_token(
                &key,
                Listing::Search,
                scope,
                more.then_some(end as u64),
            ),
            total_size: found.total as i64,
            state_counts: counts(facets.states, |v| {
                pb::VerificationState::try_from(v)
                    .map_or_else(|_| v.to_string(), |s| s.as_str_name().to_string())
            }),
            claim_rating_counts: counts(facets.ratings, |v| {
                pb::ClaimRating::try_from(v)
                    .map_or_else(|_| v.to_string(), |s| s.as_str_name().to_string())
            }),
            language_counts: counts(facets.languages, |v| v),
            source_counts: counts(
                [
                    ("claim".to_string(), facets.claims),
                    ("external_review".to_string(), facets.reviews),
                ]
                .into_iter()
                .filter(|(_, n)| *n > 0),
                |v| v,
            ),
            indexed_log_position: found.indexed.claims,
        })
    }

    /// A hit as a result with its highlights; `None` if the record is gone.
    async fn result(
        &self,
        hit: &Hit,
        highlighter: &mut crate::search::Highlighter,
    ) -> Result<Option<pb::SearchResult>> {
        let mut highlights = Vec::new();
        let mut add = |field: &str, text: &str, language: &str| -> bool {
            let found = highlighter.highlight(text, language);
            let matched = found.is_some();
            highlights.extend(found.map(|h| highlight_out(field, h)));
            matched
        };
        let result = match hit.target {
            Target::Claim(id) => {
                let Some(view) = self.store.get_claim(id).await? else {
                    return Ok(None);
                };
                let claim = &view.claim;
                let language = claim.language.as_str();
                let mut own = add("claim_text", &claim.claim_text, language);
                if let Some(image) = &claim.image {
                    own |= add("image.caption", &image.caption, language);
                }
                own |= add("claimant", &claim.claimant, language);
                if let Some(verdict) = &claim.verdict {
                    own |= add("verdict.rationale", &verdict.rationale, language);
                }
                // Responses are read and highlighted only when the claim's
                // own fields show no match: most results then cost one
                // read, and a claim found through what was said about it
                // still shows where.
                if view.latest_response.is_some() && !own {
                    let page = self
                        .store
                        .list_responses(id, None, HIGHLIGHTED_RESPONSES)
                        .await?;
                    for response in &page.items {
                        let language = match response.language.is_empty() {
                            true => language,
                            false => response.language.as_str(),
                        };
                        add("official_responses.text", &response.text, language);
                        if let Some(r) = &response.responder {
                            let who = format!("{} {}", r.organization, r.person);
                            add("official_responses.responder", who.trim(), language);
                        }
                    }
                }
                pb::search_result::Result::Claim(convert::claim_into(view))
            }
            Target::Review(id) => {
                let Some(review) = self.store.get_review(id).await? else {
                    return Ok(None);
                };
                let language = review.language.as_str();
                add("claim_reviewed", &review.claim_reviewed, language);
                add("headline", &review.headline, language);
                add("claimant", &review.claimant, language);
                add("publisher", &review.publisher_name, language);
                if let Some(rating) = &review.rating {
                    add("rating", &rating.alternate_name, language);
                }
                pb::search_result::Result::ExternalReview(convert::review_out(&review))
            }
        };
        Ok(Some(pb::SearchResult {
            result: Some(result),
            score: hit.score,
            highlights,
        }))
    }

    /// RegisterClaim's "checked before?" list for `view`: empty when the
    /// server keeps no index or it is not ready (a registration never
    /// fails for it).
    pub(super) async fn checked_before(&self, view: &ClaimView) -> Vec<pb::SearchResult> {
        let Some(index) = self.index_if_ready() else {
            return Vec::new();
        };
        let claim = &view.claim;
        let image = claim.image.clone().unwrap_or_default();
        let found = index.checked_before(
            &claim.claim_text,
            &claim.language,
            Target::Claim(claim.id),
            &image.sha256,
            &image.source_url,
        );
        match found {
            Ok(found) => self.checked_results(&found).await.unwrap_or_else(|err| {
                tracing::warn!(error = %err, "cannot list the claims checked before");
                Vec::new()
            }),
            Err(err) => {
                tracing::warn!(error = %err, "cannot search the claims checked before");
                Vec::new()
            }
        }
    }

    async fn checked_results(&self, found: &CheckedBefore) -> Result<Vec<pb::SearchResult>> {
        let mut out = Vec::new();
        for hit in &found.candidates {
            let same_image = hit.score == f32::MAX;
            let result = match hit.target {
                Target::Claim(id) => match self.store.get_claim(id).await? {
                    Some(view)
                        if same_image
                            || found.matches(&view.claim.claim_text, &view.claim.language) =>
                    {
                        pb::search_result::Result::Claim(convert::claim_into(view))
                    }
                    _ => continue,
                },
                Target::Review(id) => match self.store.get_review(id).await? {
                    Some(review)
                        if same_image
                            || found.matches(&review.claim_reviewed, &review.language) =>
                    {
                        pb::search_result::Result::ExternalReview(convert::review_out(&review))
                    }
                    _ => continue,
                },
            };
            out.push(pb::SearchResult {
                result: Some(result),
                score: if same_image { 0.0 } else { hit.score },
                highlights: Vec::new(),
            });
        }
        Ok(out)
    }

    /// Imported MediaReviews of the image `sha256` (FindSimilarClaims).
    pub(super) async fn reviews_of_image(&self, sha256: &str) -> Result<Vec<pb::ExternalReview>> {
        let Some(index) = self.index_if_ready().filter(|_| !sha256.is_empty()) else {
            return Ok(Vec::new());
        };
        let ids = index
            .reviews_of_image(sha256, 50)
            .map_err(|e| Error::Internal(e.to_string()))?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(review) = self.store.get_review(id).await? {
                out.push(convert::review_out(&review));
            }
        }
        Ok(out)
    }

    pub(super) async fn import_claim_reviews_now(
        &self,
        req: pb::ImportClaimReviewsRequest,
        actor: String,
    ) -> Result<pb::ImportClaimReviewsResponse> {
        if req.document.trim().is_empty() {
            return Err(Error::invalid(
                "document",
                "is required: ClaimReview or MediaReview JSON-LD",
            ));
        }
        let items = parse_items(&req.document).map_err(|e| Error::invalid("document", e))?;
        if items.len() > MAX_IMPORT_ITEMS {
            return Err(Error::ResourceExhausted(format!(
                "document holds {} items; at most {MAX_IMPORT_ITEMS} are imported per call: split it",
                items.len()
            )));
        }
        let mut reply = pb::ImportClaimReviewsResponse::default();
        let mut valid = Vec::new();
        let mut positions = Vec::new();
        for (index, item) in items.into_iter().enumerate() {
            match item {
                Ok(review) => {
                    valid.push(review);
                    positions.push(index);
                }
                Err(err) => reply.errors.push(pb::ImportError {
                    index: err.index as i32,
                    field: err.field,
                    reason: err.reason,
                }),
            }
        }
        if valid.is_empty() {
            return Ok(reply);
        }
        let imported = self.store.import_reviews(valid, actor).await?;
        for (index, done) in positions.into_iter().zip(imported) {
            let outcome = match done.outcome {
                ImportOutcome::Created => {
                    reply.created += 1;
                    pb::ImportOutcome::Created
                }
                ImportOutcome::Updated => {
                    reply.updated += 1;
                    pb::ImportOutcome::Updated
                }
                ImportOutcome::Unchanged => {
                    reply.unchanged += 1;
                    pb::ImportOutcome::Unchanged
                }
            };
            reply.imported.push(pb::ImportedReview {
                index: index as i32,
                name: crate::wire::names::external_review_name(done.id),
                outcome: outcome as i32,
            });
        }
        Ok(reply)
    }

    pub(super) async fn get_external_review_now(
        &self,
        req: pb::GetExternalReviewRequest,
    ) -> Result<pb::ExternalReview> {
        let id = parse_external_review_name(&req.name, "name")?;
        let review = self.store.get_review(id).await?;
        let review = review.ok_or_else(|| Error::NotFound(req.name.clone()))?;
        Ok(convert::review_out(&review))
    }

    pub(super) async fn list_external_reviews_now(
        &self,
        req: pb::ListExternalReviewsRequest,
    ) -> Result<pb::ListExternalReviewsResponse> {
        let limit = crate::wire::names::page_size(req.page_size)?;
        let key = self.store.page_token_key();
        let before = decode_page_token(&key, &req.page_token, Listing::ExternalReviews, 0)?;
        let page = self.store.list_reviews(before, limit).await?;
        let (external_reviews, next) = super::fit_page(page, convert::review_out, |r| r.id);
        Ok(pb::ListExternalReviewsResponse {
            external_reviews,
            next_page_token: encode_page_token(&key, Listing::ExternalReviews, 0, next),
        })
    }
}
