//! The index's documents: one per claim (its text, image caption,
//! claimant, official responses and verdict rationale, with the filter
//! fields) and one per imported review.

use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions, FAST,
    INDEXED, STRING,
};
use tantivy::TantivyDocument;

use super::analysis::{self, primary_subtag, stemmed_analyzer, ANY};
use crate::domain::external_review::ExternalReview;
use crate::domain::{ClaimView, OfficialResponse, Timestamp};

/// `kind` of a claim's document.
pub const KIND_CLAIM: u64 = 1;
/// `kind` of an external review's document.
pub const KIND_REVIEW: u64 = 2;

/// The bit that tells a review's `uid` from a claim's.
const REVIEW_BIT: u64 = 1 << 63;

/// What a document is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// `claims/{id}`.
    Claim(u64),
    /// `externalReviews/{id}`.
    Review(u64),
}

impl Target {
    /// The document's unique key.
    pub fn uid(self) -> u64 {
        match self {
            Target::Claim(id) => id,
            Target::Review(id) => id | REVIEW_BIT,
        }
    }

    /// The target of a document's unique key.
    pub fn from_uid(uid: u64) -> Target {
        match uid & REVIEW_BIT {
            0 => Target::Claim(uid),
            _ => Target::Review(uid & !REVIEW_BIT),
        }
    }
}

/// A language's primary subtag packed into a number (up to 8 ASCII
/// letters, big-endian), so that language facets are counted from a
/// numeric column: 0 for none.
pub fn pack_language(tag: &str) -> u64 {
    let primary = primary_subtag(tag);
    if primary.is_empty() || primary.len() > 8 || !primary.bytes().all(|b| b.is_ascii_alphabetic())
    {
        return 0;
    }
    let mut bytes = [0u8; 8];
    bytes[8 - primary.len()..].copy_from_slice(primary.as_bytes());
    u64::from_be_bytes(bytes)
}

/// The facet values of a document in one number: kind (4 bits), state (4),
/// rating (4), then the language's packed primary subtag in the low 52
/// bits (tags of up to 6 letters fit; longer ones count as none).
pub fn facet_key(kind: u64, state: u64, rating: u64, language: u64) -> u64 {
    let language = if language >> 48 == 0 { language } else { 0 };
    (kind & 15) << 60 | (state & 15) << 56 | (rating & 15) << 52 | language
}

/// Inverse of [`facet_key`]: (kind, state, rating, packed language).
pub fn split_facet_key(key: u64) -> (u64, u64, u64, u64) {
    (
        key >> 60,
        (key >> 56) & 15,
        (key >> 52) & 15,
        key & ((1 << 52) - 1),
    )
}

/// Inverse of [`pack_language`].
pub fn unpack_language(packed: u64) -> String {
    packed
        .to_be_bytes()
        .iter()
        .filter(|b| **b != 0)
        .map(|b| *b as char)
        .collect()
}

/// The fields of the index.
pub struct Fields {
    /// [`Target::uid`]: the key documents are replaced by.
    pub uid: Field,
    /// [`KIND_CLAIM`] or [`KIND_REVIEW`].
    pub kind: Field,
    /// The searched text, one field per analyzer: (analyzer name, field).
    pub text: Vec<(&'static str, Field)>,
    /// Claimant's words (the `any` analyzer).
    pub claimant: Field,
    /// Responding organizations' words (the `any` analyzer).
    pub org: Field,
    /// Verification state.
    pub state: Field,
    /// Claim rating.
    pub rating: Field,
    /// Media authenticity.
    pub media: Field,
    /// [`pack_language`] of the record's language.
    pub lang: Field,
    /// Tags, lower-cased.
    pub tag: Field,
    /// First seen (claims) or the reviewed claim's date (reviews), [`nanos`].
    pub first_seen: Field,
    /// Last update, [`nanos`].
    pub updated: Field,
    /// Registration (claims) or publication (reviews) time, [`nanos`]: "newest first".
    pub newest: Field,
    /// A MediaReview's image SHA-256.
    pub media_sha256: Field,
    /// A MediaReview's image URL.
    pub media_url: Field,
    /// The facet values in one number ([`facet_key`]), so that counting
    /// facets reads one column per matching document.
    pub facet: Field,
    /// Bytes of text handed to the index so far (each text once, however
    /// many analyzers index it): the logical size the index is measured
    /// against.
    pub text_bytes: std::sync::atomic::AtomicU64,
}

impl Fields {
    /// The schema and its fields.
    pub fn schema() -> (Schema, Fields) {
        let mut b = Schema::builder();
        let number = || NumericOptions::default().set_indexed();
        let words = |analyzer: &str, positions: bool| {
            let option = match positions {
                true => IndexRecordOption::WithFreqsAndPositions,
                false => IndexRecordOption::WithFreqs,
            };
            TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(analyzer)
                    .set_index_option(option),
            )
        };
        let text = analysis::analyzers()
            .into_iter()
            .map(|(name, _)| {
                (
                    name,
                    b.add_text_field(&format!("text_{name}"), words(name, true)),
                )
            })
            .collect();
        let fields = Fields {
            uid: b.add_u64_field("uid", INDEXED | FAST),
            kind: b.add_u64_field("kind", INDEXED),
            text,
            claimant: b.add_text_field("claimant", words(ANY, false)),
            org: b.add_text_field("org", words(ANY, false)),
            state: b.add_u64_field("state", number()),
            rating: b.add_u64_field("rating", number()),
            media: b.add_u64_field("media", number()),
            lang: b.add_u64_field("lang", number()),
            tag: b.add_text_field("tag", STRING),
            first_seen: b.add_i64_field("first_seen", number()),
            updated: b.add_i64_field("updated", number()),
            newest: b.add_i64_field("newest", FAST),
            media_sha256: b.add_text_field("media_sha256", STRING),
            media_url: b.add_text_field("media_url", STRING),
            facet: b.add_u64_field("facet", FAST),
            text_bytes: std::sync::atomic::AtomicU64::new(0),
        };
        (b.build(), fields)
    }

    /// The text field of analyzer `name`.
    pub fn text_field(&self, name: &str) -> Option<Field> {
        self.text.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
    }

    /// Adds `text` in `language` to the searched text.
    fn add_text(&self, doc: &mut TantivyDocument, text: &str, language: &str) {
        if text.trim().is_empty() {
            return;
        }
        self.text_bytes
            .fetch_add(text.len() as u64, std::sync::atomic::Ordering::Relaxed);
        if let Some(field) = self.text_field(ANY) {
            doc.add_text(field, text);
        }
        if let Some(field) = stemmed_analyzer(language).and_then(|a| self.text_field(a)) {
            doc.add_text(field, text);
        }
    }

    fn base(&self, target: Target, kind: u64, language: &str) -> TantivyDocument {
        let mut doc = TantivyDocument::default();
        doc.add_u64(self.uid, target.uid());
        doc.add_u64(self.kind, kind);
        doc.add_u64(self.lang, pack_language(language));
        doc
    }

    /// A claim's document.
    pub fn claim(&self, view: &ClaimView, responses: &[OfficialResponse]) -> TantivyDocument {
        let claim = &view.claim;
        let language = claim.language.as_str();
        let mut doc = self.base(Target::Claim(claim.id), KIND_CLAIM, language);
        self.add_text(&mut doc, &claim.claim_text, language);
        self.add_text(&mut doc, &claim.claimant, language);
        doc.add_text(self.claimant, &claim.claimant);
        if let Some(image) = &claim.image {
            self.add_text(&mut doc, &image.caption, language);
        }
        for response in responses {
            let response_language = match response.language.is_empty() {
                true => language,
                false => response.language.as_str(),
            };
            self.add_text(&mut doc, &response.text, response_language);
            if let Some(responder) = &response.responder {
                let who = format!("{} {}", responder.organization, responder.person);
                self.add_text(&mut doc, &who, response_language);
                doc.add_text(self.org, &responder.organization);
            }
        }
        if let Some(verdict) = &claim.verdict {
            self.add_text(&mut doc, &verdict.rationale, language);
            doc.add_u64(self.rating, verdict.claim_rating as u64);
            doc.add_u64(self.media, verdict.media_authenticity as u64);
        }
        doc.add_u64(self.state, claim.state as u64);
        let rating = claim.verdict.as_ref().map_or(0, |v| v.claim_rating as u64);
        doc.add_u64(
            self.facet,
            facet_key(
                KIND_CLAIM,
                claim.state as u64,
                rating,
                pack_language(language),
            ),
        );
        for tag in &claim.tags {
            doc.add_text(self.tag, tag.to_lowercase());
        }
        if let Some(t) = claim.first_seen_time {
            doc.add_i64(self.first_seen, nanos(t));
        }
        let updated = claim.update_time.or(claim.create_time);
        doc.add_i64(self.updated, nanos_or_zero(updated));
        doc.add_i64(self.newest, nanos_or_zero(claim.create_time));
        doc
    }

    /// An imported review's document.
    pub fn review(&self, review: &ExternalReview) -> TantivyDocument {
        let language = review.language.as_str();
        let mut doc = self.base(Target::Review(review.id), KIND_REVIEW, language);
        for text in [
            &review.claim_reviewed,
            &review.headline,
            &review.claimant,
            &review.publisher_name,
        ] {
            self.add_text(&mut doc, text, language);
        }
        if let Some(rating) = &review.rating {
            self.add_text(&mut doc, &rating.alternate_name, language);
        }
        doc.add_text(self.claimant, &review.claimant);
        doc.add_u64(
            self.facet,
            facet_key(KIND_REVIEW, 0, 0, pack_language(language)),
        );
        let first_seen = review.claim_date.or(review
            .first_appearance
            .as_ref()
            .and_then(|a| a.date_published));
        if let Some(t) = first_seen {
            doc.add_i64(self.first_seen, nanos(t));
        }
        doc.add_i64(self.updated, nanos_or_zero(review.update_time));
        doc.add_i64(
            self.newest,
            nanos_or_zero(review.date_published.or(review.create_time)),
        );
        if !review.media_sha256.is_empty() {
            doc.add_text(self.media_sha256, &review.media_sha256);
        }
        if !review.media_url.is_empty() {
            doc.add_text(self.media_url, &review.media_url);
        }
        doc
    }
}

/// A time as nanoseconds since the Unix epoch, saturating outside
/// 1677-2262 (earlier and later times compare as those bounds).
pub fn nanos(t: Timestamp) -> i64 {
    let n = i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos);
    n.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

fn nanos_or_zero(t: Option<Timestamp>) -> i64 {
    t.map_or(0, nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_and_languages_round_trip() {
        for target in [
            Target::Claim(1),
            Target::Review(1),
            Target::Claim(u64::MAX >> 1),
        ] {
            assert_eq!(Target::from_uid(target.uid()), target);
        }
        assert_ne!(Target::Claim(5).uid(), Target::Review(5).uid());
        assert_eq!(unpack_language(pack_language("pt-BR")), "pt");
        assert_eq!(unpack_language(pack_language("ru")), "ru");
        assert_eq!(pack_language(""), 0);
        assert_eq!(pack_language("x1"), 0);
        let key = facet_key(KIND_CLAIM, 4, 1, pack_language("ru"));
        assert_eq!(
            split_facet_key(key),
            (KIND_CLAIM, 4, 1, pack_language("ru"))
        );
    }
}
