//! Imported fact-checks (external reviews): one atomic write per import,
//! deduplicated by the normalized review URL, each change appended to the
//! review log (their audit trail, and what the search index follows).

use std::ops::Bound;

use prost::Message;

use super::store_impl::{next, tx_decode};
use super::Core;
use crate::domain::external_review::{ExternalReview, EXTERNAL_REVIEW_FORMAT_VERSION};
use crate::domain::{Error, Page, Result, Timestamp};
use crate::store::engine::{all, After, Engine, TxError, WriteTx};
use crate::store::schema::{
    be, decode, u64_at, ReviewChange, Table, META_LAST_REVIEW_ID, META_LAST_REVIEW_POSITION,
};
use crate::store::{ImportOutcome, ImportedReview};

/// The fields an import sets: two reviews are the same publication when
/// these agree, whatever the store recorded about their imports.
fn published(review: &ExternalReview) -> ExternalReview {
    ExternalReview {
        id: 0,
        create_time: None,
        update_time: None,
        imported_by: String::new(),
        revision: 0,
        ..review.clone()
    }
}

impl<E: Engine> Core<E> {
    /// Imports `reviews` (normalized, validated) in one atomic write.
    pub(super) async fn import_reviews_now(
        &self,
        reviews: Vec<ExternalReview>,
        actor: String,
    ) -> Result<Vec<ImportedReview>> {
        let now = Timestamp::now();
        let nothing = After {
            committed: |_: &Vec<ImportedReview>| {},
            durable: |_: &Vec<ImportedReview>| {},
        };
        let committed = self
            .engine
            .commit(
                move |tx: &dyn WriteTx| import(tx, &reviews, &actor, now),
                nothing,
            )
            .await?;
        committed.durable?;
        Ok(committed.value)
    }

    /// One external review.
    pub(super) fn read_review(&self, id: u64) -> Result<Option<ExternalReview>> {
        let at = || format!("externalReviews/{id}");
        match self
            .engine
            .get(Table::ExternalReviews, &be(id))
            .map_err(|e| e.at(&at()))?
        {
            Some(bytes) => decode(bytes.as_ref(), &at()).map(Some),
            None => Ok(None),
        }
    }

    /// Reviews newest first below the cursor `before`.
    pub(super) fn reviews_desc(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Page<ExternalReview>> {
        let range = (
            Bound::Unbounded,
            Bound::Excluded(be(before.unwrap_or(u64::MAX)).to_vec()),
        );
        let scan = self.engine.scan(Table::ExternalReviews, range, true);
        Self::page(scan, limit, "external_reviews", |key, value| {
            let id = u64_at(key, 0);
            Ok((id, decode(value, &format!("externalReviews/{id}"))?))
        })
    }

    /// Review log entries after `after`, at most `limit`, in log order.
    pub(super) fn review_log_after(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, ReviewChange)>> {
        let range = (Bound::Excluded(be(after).to_vec()), Bound::Unbounded);
        let mut out = Vec::new();
        for entry in self.engine.scan(Table::ReviewLog, range, false) {
            if out.len() == limit {
                break;
            }
            let (key, value) = entry.map_err(|e| e.at("review_log"))?;
            let position = u64_at(key.as_ref(), 0);
            out.push((
                position,
                decode(value.as_ref(), &format!("review_log/{position}"))?,
            ));
        }
        Ok(out)
    }

    /// The newest review log position (0: none).
    pub(super) fn review_log_newest(&self) -> Result<u64> {
        let last = self
            .engine
            .first(Table::ReviewLog, all(), true)
            .map_err(|e| e.at("review_log"))?;
        Ok(last.map_or(0, |(key, _)| u64_at(key.as_ref(), 0)))
    }
}

/// The write of an import: each review created, updated (a new revision)
/// or left as it is, every change appended to the review log.
fn import(
    tx: &dyn WriteTx,
    reviews: &[ExternalReview],
    actor: &str,
    now: Timestamp,
) -> std::result::Result<Vec<ImportedReview>, TxError> {
    let mut out = Vec::with_capacity(reviews.len());
    for review in reviews {
        if review.review_url.is_empty() {
            return Err(TxError::Abort(Error::Internal(
                "an external review without its URL reached the store".into(),
            )));
        }
        let url_key = review.review_url.as_bytes();
        let existing = match tx.get(Table::ExternalReviewsByUrl, url_key)? {
            Some(id) => {
                let id = u64_at(&id, 0);
                let bytes = tx.get(Table::ExternalReviews, &be(id))?.ok_or_else(|| {
                    TxError::Abort(Error::Internal(format!(
                        "external_reviews_by_url names missing externalReviews/{id}"
                    )))
                })?;
                Some(tx_decode::<ExternalReview>(
                    &bytes,
                    &format!("externalReviews/{id}"),
                )?)
            }
            None => None,
        };
        let (record, outcome) = match existing {
            Some(old) if published(&old) == published(review) => {
                out.push(ImportedReview {
                    id: old.id,
                    outcome: ImportOutcome::Unchanged,
                });
                continue;
            }
            Some(old) => (
                ExternalReview {
                    format_version: EXTERNAL_REVIEW_FORMAT_VERSION,
                    id: old.id,
                    create_time: old.create_time,
                    update_time: Some(now),
                    imported_by: actor.to_string(),
                    revision: old.revision + 1,
                    ..review.clone()
                },
                ImportOutcome::Updated,
            ),
            None => {
                let id = next(tx, META_LAST_REVIEW_ID)?;
                tx.insert(Table::ExternalReviewsByUrl, url_key, &be(id))?;
                (
                    ExternalReview {
                        format_version: EXTERNAL_REVIEW_FORMAT_VERSION,
                        id,
                        create_time: Some(now),
                        update_time: Some(now),
                        imported_by: actor.to_string(),
                        revision: 1,
                        ..review.clone()
                    },
                    ImportOutcome::Created,
                )
            }
        };
        tx.insert(
            Table::ExternalReviews,
            &be(record.id),
            &record.encode_to_vec(),
        )?;
        let position = next(tx, META_LAST_REVIEW_POSITION)?;
        let change = ReviewChange {
            review_id: record.id,
            revision: record.revision,
            time: Some(now),
            actor: actor.to_string(),
        };
        tx.insert(Table::ReviewLog, &be(position), &change.encode_to_vec())?;
        out.push(ImportedReview {
            id: record.id,
            outcome,
        });
    }
    Ok(out)
}
