//! `photoclaim claim search` and `photoclaim reviews ...`.

use std::io::Read;
use std::path::Path;

use super::*;

/// How SearchClaims' fields are set on the command line.
const SEARCH_FLAGS: &[(&str, &str)] = &[
    ("query", "QUERY"),
    ("language", "--language"),
    ("languages", "--in-language"),
    ("tags", "--tag"),
    ("claimant", "--claimant"),
    ("responder_organization", "--organization"),
    ("first_seen_before", "--first-seen-before"),
    ("update_before", "--updated-before"),
    ("page_size", "--limit"),
    ("page_token", "--page-token"),
];

/// The record of a search result: (name, kind, state, rating, text).
fn result_row(result: &pb::SearchResult) -> (String, &'static str, String, String, String) {
    match &result.result {
        Some(pb::search_result::Result::Claim(claim)) => {
            let status = claim.verification_status.clone().unwrap_or_default();
            (
                claim.name.clone(),
                "claim",
                state_word(status.state),
                verdict_words(&status),
                claim.claim_text.clone(),
            )
        }
        Some(pb::search_result::Result::ExternalReview(review)) => {
            let rating = review.rating.clone().unwrap_or_default();
            let words = match rating.alternate_name.is_empty() {
                true => rating.value.clone(),
                false => rating.alternate_name.clone(),
            };
            (
                review.name.clone(),
                "review",
                excerpt(&review.publisher_name, 12),
                excerpt(&words, 34),
                review.claim_reviewed.clone(),
            )
        }
        None => (
            String::new(),
            "",
            String::new(),
            String::new(),
            String::new(),
        ),
    }
}

/// A highlight with its matches marked `[like this]` (a terminal shows no HTML).
fn marked(h: &pb::Highlight) -> String {
    let mut out = String::new();
    let mut at = 0;
    for m in &h.matches {
        let (start, end) = (m.start as usize, m.end as usize);
        if start < at
            || end > h.text.len()
            || !h.text.is_char_boundary(start)
            || !h.text.is_char_boundary(end)
        {
            continue;
        }
        out.push_str(&h.text[at..start]);
        out.push('[');
        out.push_str(&h.text[start..end]);
        out.push(']');
        at = end;
    }
    out.push_str(&h.text[at..]);
    out.replace('\n', " ")
}

impl Desk {
    pub(super) async fn search(&mut self, a: SearchArgs) -> Outcome {
        let ints = |v: &[i32]| v.to_vec();
        let request = pb::SearchClaimsRequest {
            query: a.query,
            language: a.language.unwrap_or_default(),
            states: ints(
                &a.state
                    .iter()
                    .map(|s| pb::VerificationState::from(*s) as i32)
                    .collect::<Vec<_>>(),
            ),
            claim_ratings: a
                .rating
                .iter()
                .map(|r| pb::ClaimRating::from(*r) as i32)
                .collect(),
            media_authenticities: a
                .media
                .iter()
                .map(|m| pb::MediaAuthenticity::from(*m) as i32)
                .collect(),
            languages: a.languages,
            tags: a.tag,
            claimant: a.claimant.unwrap_or_default(),
            responder_organization: a.organization.unwrap_or_default(),
            first_seen_after: a.first_seen_after,
            first_seen_before: a.first_seen_before,
            update_after: a.updated_after,
            update_before: a.updated_before,
            order_by: match a.newest {
                true => pb::SearchOrder::Newest as i32,
                false => pb::SearchOrder::Relevance as i32,
            },
            page_size: a.limit,
            page_token: a.page_token.unwrap_or_default(),
            source: match a.source {
                None => pb::SearchSource::Unspecified as i32,
                Some(SourceArg::Claims) => pb::SearchSource::Claims as i32,
                Some(SourceArg::Reviews) => pb::SearchSource::ExternalReviews as i32,
            },
        };
        let reply = self
            .client
            .search_claims(self.request(request)?)
            .await
            .map_err(|s| in_flag_words(s, SEARCH_FLAGS))?
            .into_inner();
        if self.json {
            self.print_json(&reply, "photoclaim.v1.SearchClaimsResponse");
            return Ok(());
        }
        eprintln!("{} matching", reply.total_size);
        if reply.results.is_empty() {
            return Ok(());
        }
        outln!(
            "{:<22} {:<6} {:>6} {:<12} {:<34} TEXT",
            "NAME",
            "KIND",
            "SCORE",
            "STATE",
            "RATING"
        );
        for result in &reply.results {
            let (name, kind, state, rating, text) = result_row(result);
            outln!(
                "{:<22} {:<6} {:>6.2} {:<12} {:<34} {}",
                name,
                kind,
                result.score,
                state,
                rating,
                excerpt(&text, 60)
            );
            for h in &result.highlights {
                outln!("    {}: {}", h.field, excerpt(&marked(h), 110));
            }
        }
        let facet = |label: &str, counts: &[pb::FacetCount]| {
            if !counts.is_empty() {
                let parts: Vec<String> = counts
                    .iter()
                    .map(|c| format!("{} {}", c.value, c.count))
                    .collect();
                eprintln!("{label}: {}", parts.join(", "));
            }
        };
        facet("states", &reply.state_counts);
        facet("ratings", &reply.claim_rating_counts);
        facet("languages", &reply.language_counts);
        facet("sources", &reply.source_counts);
        if !reply.next_page_token.is_empty() {
            eprintln!("more: --page-token {}", reply.next_page_token);
        }
        Ok(())
    }
}

/// Runs `photoclaim reviews ...`.
pub async fn run_reviews(args: ReviewsArgs) -> Outcome {
    let mut desk = Desk::connect(&args.connection, args.json).await?;
    match args.command {
        ReviewsCommand::Import { files, batch } => desk.import(&files, batch as usize).await,
        ReviewsCommand::Show { name } => desk.show_review(name).await,
        ReviewsCommand::List { limit } => desk.list_reviews(limit).await,
    }
}

/// A file's items as separately sendable texts: an array's elements, a
/// DataFeed's elements, JSON Lines' lines; any other document whole.
fn split_items(text: &str) -> Vec<String> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Array(items)) => items.iter().map(|v| v.to_string()).collect(),
        Ok(serde_json::Value::Object(map)) => match map.get("dataFeedElement") {
            Some(serde_json::Value::Array(items)) => items.iter().map(|v| v.to_string()).collect(),
            _ => vec![text.to_string()],
        },
        Ok(_) => vec![text.to_string()],
        Err(_) => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect(),
    }
}

fn read_document(path: &Path) -> Result<String, Failure> {
    let mut text = String::new();
    let read = match path == Path::new("-") {
        true => std::io::stdin().read_to_string(&mut text).map(|_| ()),
        false => std::fs::read_to_string(path).map(|t| text = t),
    };
    read.map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?;
    Ok(text)
}

impl Desk {
    async fn import(&mut self, files: &[PathBuf], batch: usize) -> Outcome {
        let mut documents = Vec::with_capacity(files.len());
        for path in files {
            let text = read_document(path)?;
            documents.push((path.display().to_string(), split_items(&text)));
        }
        let total: usize = documents.iter().map(|(_, items)| items.len()).sum();
        let progress = crate::cli::progress(Some(total as u64), "items");
        let (mut created, mut updated, mut unchanged, mut refused) = (0, 0, 0, 0);
        let mut all = pb::ImportClaimReviewsResponse::default();
        for (file, items) in &documents {
            // Items are numbered in document order, as the server numbers
            // them within one call.
            let mut offset = 0i32;
            for chunk in items.chunks(batch) {
                let (document, local) = self.batch_document(chunk);
                let mut reply = pb::ImportClaimReviewsResponse::default();
                for (i, reason) in local {
                    reply.errors.push(pb::ImportError {
                        index: i as i32,
                        field: String::new(),
                        reason,
                    });
                }
                if let Some(document) = document {
                    let request = self.request(pb::ImportClaimReviewsRequest { document })?;
                    let sent = match self.client.import_claim_reviews(request).await {
                        Ok(reply) => reply.into_inner(),
                        Err(status) => {
                            progress.finish();
                            return Err(Failure::from(status).hint(format!(
                                "while importing {file}; the batches before were imported"
                            )));
                        }
                    };
                    let skipped = reply.errors.len() as i32;
                    reply.imported = sent.imported;
                    reply.errors.extend(sent.errors);
                    for item in &mut reply.imported {
                        item.index += skipped;
                    }
                    for error in reply.errors.iter_mut().skip(skipped as usize) {
                        error.index += skipped;
                    }
                    created += sent.created;
                    updated += sent.updated;
                    unchanged += sent.unchanged;
                }
                let seen = (reply.imported.len() + reply.errors.len()) as i32;
                for item in &mut reply.imported {
                    item.index += offset;
                }
                for error in &mut reply.errors {
                    error.index += offset;
                    if !self.json {
                        progress.suspend(|| {
                            eprintln!(
                                "{file}: item {}: {}{}",
                                error.index,
                                match error.field.is_empty() {
                                    true => String::new(),
                                    false => format!("{}: ", error.field),
                                },
                                error.reason
                            )
                        });
                    }
                }
                refused += reply.errors.len();
                offset += seen;
                all.imported.extend(reply.imported);
                all.errors.extend(reply.errors);
                progress.add(chunk.len() as u64);
            }
        }
        progress.finish();
        all.created = created;
        all.updated = updated;
        all.unchanged = unchanged;
        if self.json {
            self.print_json(&all, "photoclaim.v1.ImportClaimReviewsResponse");
        } else {
            eprintln!(
                "imported {}: {created} created, {updated} updated, {unchanged} unchanged; {refused} refused",
                created + updated + unchanged
            );
        }
        if refused > 0 {
            return Err(Failure::new(
                tonic::Code::InvalidArgument,
                format!("{refused} items were refused (listed above); the others were imported"),
            ));
        }
        Ok(())
    }

    /// One call's document: the items as JSON Lines (a single item as
    /// itself). Leading lines that are not JSON are not sent (the server
    /// reads a document whose first line is not JSON as not JSON Lines):
    /// they come back as (position, reason).
    fn batch_document(&self, items: &[String]) -> (Option<String>, Vec<(usize, String)>) {
        let mut local = Vec::new();
        let mut start = 0;
        while start < items.len() {
            match serde_json::from_str::<serde_json::Value>(&items[start]) {
                Ok(_) => break,
                Err(e) => {
                    local.push((start, format!("is not valid JSON: {e}")));
                    start += 1;
                }
            }
        }
        let rest = &items[start..];
        match rest.len() {
            0 => (None, local),
            _ => (Some(rest.join("\n")), local),
        }
    }

    async fn show_review(&mut self, name: String) -> Outcome {
        let name = match name.bytes().all(|b| b.is_ascii_digit()) {
            true => format!("externalReviews/{name}"),
            false => name,
        };
        let review = self
            .client
            .get_external_review(self.request(pb::GetExternalReviewRequest { name })?)
            .await?
            .into_inner();
        if self.json {
            self.print_json(&review, "photoclaim.v1.ExternalReview");
            return Ok(());
        }
        let field = format::field;
        field("name", &review.name);
        field("review", &review.review_url);
        field("publisher", &review.publisher_name);
        field("claim reviewed", &review.claim_reviewed);
        field("claimant", &review.claimant);
        if let Some(rating) = &review.rating {
            field(
                "rating",
                &format!(
                    "{} ({} of {}..{})",
                    rating.alternate_name, rating.value, rating.worst, rating.best
                ),
            );
        }
        field("language", &review.language);
        format::time_field("published", review.date_published.as_ref());
        for a in &review.appearances {
            field("appeared at", &a.url);
        }
        if !review.media_url.is_empty() {
            field("media", &review.media_url);
        }
        if !review.media_sha256.is_empty() {
            field("media sha256", &review.media_sha256);
        }
        field("revision", &review.revision.to_string());
        Ok(())
    }

    async fn list_reviews(&mut self, limit: Option<u64>) -> Outcome {
        let mut token = String::new();
        let mut shown = 0u64;
        if !self.json {
            outln!(
                "{:<22} {:<24} {:<20} CLAIM REVIEWED",
                "NAME",
                "PUBLISHER",
                "RATING"
            );
        }
        loop {
            let page = self
                .client
                .list_external_reviews(self.request(pb::ListExternalReviewsRequest {
                    page_size: 500,
                    page_token: token.clone(),
                })?)
                .await?
                .into_inner();
            for review in &page.external_reviews {
                if limit.is_some_and(|l| shown >= l) {
                    return Ok(());
                }
                shown += 1;
                if self.json {
                    self.print_json(review, "photoclaim.v1.ExternalReview");
                } else {
                    let rating = review.rating.clone().unwrap_or_default();
                    outln!(
                        "{:<22} {:<24} {:<20} {}",
                        review.name,
                        excerpt(&review.publisher_name, 24),
                        excerpt(&rating.alternate_name, 20),
                        excerpt(&review.claim_reviewed, 60)
                    );
                }
            }
            if page.next_page_token.is_empty() {
                return Ok(());
            }
            token = page.next_page_token;
        }
    }
}
