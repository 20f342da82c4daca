//! Searching the index: requests compiled to tantivy queries, the ranked
//! page, facet counts over every match, highlights, and the "checked
//! before?" match of a new claim.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

use tantivy::collector::{Collector, Count, SegmentCollector};
use tantivy::columnar::Column;
use tantivy::query::{
    AllQuery, BooleanQuery, ConstScoreQuery, Occur, PhraseQuery, Query, RangeQuery, TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::snippet::SnippetGenerator;
use tantivy::{DocAddress, DocId, Order, Score, Searcher, SegmentOrdinal, SegmentReader, Term};

use super::analysis::{self, stemmed_analyzer, ANY};
use super::document::{
    pack_language, split_facet_key, unpack_language, Target, KIND_CLAIM, KIND_REVIEW,
};
use super::query::Clause;
use super::{Indexed, SearchError, SearchIndex};

/// Which records a search looks at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Source {
    /// Claims and external reviews.
    #[default]
    All,
    /// Claims only.
    Claims,
    /// External reviews only.
    Reviews,
}

/// A search, as the API hands it over (validated).
#[derive(Clone, Debug, Default)]
pub struct SearchRequest {
    /// The query's words and phrases.
    pub clauses: Vec<Clause>,
    /// The query's language (BCP-47), if given.
    pub language: Option<String>,
    /// Only these states (numbers of `VerificationState`).
    pub states: Vec<i32>,
    /// Only these claim ratings.
    pub ratings: Vec<i32>,
    /// Only these media authenticity ratings.
    pub media: Vec<i32>,
    /// Only these languages (BCP-47).
    pub languages: Vec<String>,
    /// Only these tags.
    pub tags: Vec<String>,
    /// Claimant's words.
    pub claimant: String,
    /// Responding organization's words.
    pub organization: String,
    /// First seen in `[from, to)`, nanoseconds since the epoch.
    pub first_seen: (Option<i64>, Option<i64>),
    /// Updated in `[from, to)`, nanoseconds since the epoch.
    pub updated: (Option<i64>, Option<i64>),
    /// Newest first instead of by relevance.
    pub newest: bool,
    /// Claims, reviews or both.
    pub source: Source,
    /// Results to skip (the page token's offset).
    pub offset: usize,
    /// Results to return.
    pub limit: usize,
}

impl SearchRequest {
    /// Whether a filter is set (a query may then be empty).
    pub fn has_filter(&self) -> bool {
        !self.states.is_empty()
            || !self.ratings.is_empty()
            || !self.media.is_empty()
            || !self.languages.is_empty()
            || !self.tags.is_empty()
            || !self.claimant.trim().is_empty()
            || !self.organization.trim().is_empty()
            || self.first_seen != (None, None)
            || self.updated != (None, None)
            || self.source != Source::All
    }
}

/// One result.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hit {
    /// The record.
    pub target: Target,
    /// BM25 (0 when ordered by newest).
    pub score: f32,
}

/// Counts of the matching records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facets {
    /// By verification state (claims).
    pub states: BTreeMap<i32, u64>,
    /// By claim rating (claims with a verdict).
    pub ratings: BTreeMap<i32, u64>,
    /// By language's primary subtag ("" for none).
    pub languages: BTreeMap<String, u64>,
    /// Claims matching.
    pub claims: u64,
    /// External reviews matching.
    pub reviews: u64,
}

/// A search's answer.
pub struct SearchResults {
    /// The page.
    pub hits: Vec<Hit>,
    /// All matches.
    pub total: u64,
    /// Facet counts over all matches.
    pub facets: Facets,
    /// Where the index stood.
    pub indexed: Indexed,
    /// Highlights the query's words in the records' texts.
    pub highlighter: Highlighter,
}

/// A highlighted passage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Highlight {
    /// The passage.
    pub text: String,
    /// The passage as HTML with the matches in `<b>`.
    pub html: String,
    /// Byte ranges of the matches in `text`.
    pub matches: Vec<(usize, usize)>,
}

/// Makes highlights for one search's query (see [`SearchResults`]).
pub struct Highlighter {
    searcher: Searcher,
    query: Option<Box<dyn Query>>,
    fields: Vec<(&'static str, Field)>,
    generators: HashMap<&'static str, Option<SnippetGenerator>>,
}

/// Characters of a highlighted passage at most.
const PASSAGE_CHARS: usize = 200;

impl Highlighter {
    fn generator(&mut self, analyzer: &'static str) -> Option<&SnippetGenerator> {
        if !self.generators.contains_key(analyzer) {
            let made = match (
                &self.query,
                self.fields.iter().find(|(n, _)| *n == analyzer),
            ) {
                (Some(query), Some((_, field))) => {
                    SnippetGenerator::create(&self.searcher, query.as_ref(), *field)
                        .ok()
                        .map(|mut g| {
                            g.set_max_num_chars(PASSAGE_CHARS);
                            g
                        })
                }
                _ => None,
            };
            self.generators.insert(analyzer, made);
        }
        self.generators.get(analyzer).and_then(Option::as_ref)
    }

    /// The passage of `text` (in `language`) where the query matched, if
    /// it did.
    pub fn highlight(&mut self, text: &str, language: &str) -> Option<Highlight> {
        if text.trim().is_empty() {
            return None;
        }
        let mut analyzers = Vec::with_capacity(2);
        analyzers.extend(stemmed_analyzer(language));
        analyzers.push(ANY);
        for analyzer in analyzers {
            let Some(generator) = self.generator(analyzer) else {
                continue;
            };
            let snippet = generator.snippet(text);
            if snippet.highlighted().is_empty() {
                continue;
            }
            return Some(Highlight {
                text: snippet.fragment().to_string(),
                html: snippet.to_html(),
                matches: snippet
                    .highlighted()
                    .iter()
                    .map(|r| (r.start, r.end))
                    .collect(),
            });
        }
        None
    }
}

/// A new claim's "checked before?" match: the candidates, and the terms
/// a candidate's own statement must share with the new claim.
pub struct CheckedBefore {
    /// The best candidates, best first.
    pub candidates: Vec<Hit>,
    /// The analyzer of the new claim's language.
    pub analyzer: &'static str,
    /// The new claim's distinct terms.
    pub terms: BTreeSet<String>,
    /// The new claim's text.
    source_text: String,
}

/// Share of the new claim's distinct terms a match must contain.
pub const CHECKED_BEFORE_SHARE: f64 = 0.6;
/// Fewest distinct terms a claim needs for the "checked before?" match.
pub const CHECKED_BEFORE_MIN_TERMS: usize = 2;
/// Candidates examined (and matches listed) at most.
pub const CHECKED_BEFORE_MAX: usize = 10;

impl CheckedBefore {
    /// Whether `statement` (in `language`) contains enough of the terms.
    pub fn matches(&self, statement: &str, language: &str) -> bool {
        let analyzer = match self.analyzer {
            ANY => ANY,
            a if stemmed_analyzer(language) == Some(a) => a,
            _ => ANY,
        };
        let mut terms = self.terms.clone();
        if analyzer != self.analyzer {
            // Another language: compare normalized words.
            let Some(words) = normalized_terms(ANY, &self.source_text) else {
                return false;
            };
            terms = words;
        }
        let Some(theirs) = normalized_terms(analyzer, statement) else {
            return false;
        };
        let shared = terms.iter().filter(|t| theirs.contains(*t)).count();
        !terms.is_empty() && shared as f64 >= CHECKED_BEFORE_SHARE * terms.len() as f64
    }
}

fn normalized_terms(analyzer: &str, text: &str) -> Option<BTreeSet<String>> {
    let mut analyzer = analysis::analyzer(analyzer)?;
    Some(
        analysis::terms(&mut analyzer, text)
            .into_iter()
            .map(|(_, t)| t)
            .collect(),
    )
}

/// Counts facets over every matching document.
struct FacetCollector;

struct SegmentFacets {
    facet: Column<u64>,
    counts: HashMap<u64, u64>,
}

/// Matching documents by [`facet_key`].
#[derive(Default)]
struct RawFacets(HashMap<u64, u64>);

impl Collector for FacetCollector {
    type Fruit = RawFacets;
    type Child = SegmentFacets;

    fn for_segment(
        &self,
        _: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<SegmentFacets> {
        Ok(SegmentFacets {
            facet: segment.fast_fields().u64("facet")?,
            counts: HashMap::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<RawFacets>) -> tantivy::Result<RawFacets> {
        let mut all = HashMap::new();
        for fruit in fruits {
            for (k, v) in fruit.0 {
                *all.entry(k).or_default() += v;
            }
        }
        Ok(RawFacets(all))
    }
}

impl SegmentCollector for SegmentFacets {
    type Fruit = RawFacets;

    fn collect(&mut self, doc: DocId, _: Score) {
        let key = self.facet.first(doc).unwrap_or(0);
        *self.counts.entry(key).or_default() += 1;
    }

    fn harvest(self) -> RawFacets {
        RawFacets(self.counts)
    }
}

impl RawFacets {
    fn finish(self) -> Facets {
        let mut facets = Facets::default();
        for (key, count) in self.0 {
            let (kind, state, rating, language) = split_facet_key(key);
            *facets
                .languages
                .entry(unpack_language(language))
                .or_default() += count;
            match kind {
                KIND_CLAIM => {
                    facets.claims += count;
                    *facets.states.entry(state as i32).or_default() += count;
                    if rating != 0 {
                        *facets.ratings.entry(rating as i32).or_default() += count;
                    }
                }
                KIND_REVIEW => facets.reviews += count,
                _ => {}
            }
        }
        facets
    }
}

/// How many of `terms` the document at `address` has in `field`.
fn shared_terms(
    searcher: &Searcher,
    address: DocAddress,
    field: Field,
    terms: &BTreeSet<String>,
) -> Result<usize, SearchError> {
    use tantivy::DocSet;
    let index = searcher
        .segment_reader(address.segment_ord)
        .inverted_index(field)?;
    let mut shared = 0;
    for term in terms {
        let term = Term::from_field_text(field, term);
        let postings = index
            .read_postings(&term, IndexRecordOption::Basic)
            .map_err(|e| SearchError(format!("reading postings: {e}")))?;
        if let Some(mut postings) = postings {
            // A fresh list stands on its first document, which may lie
            // past the one sought (seek only moves forward).
            let at = match postings.doc() {
                first if first >= address.doc_id => first,
                _ => postings.seek(address.doc_id),
            };
            if at == address.doc_id {
                shared += 1;
            }
        }
    }
    Ok(shared)
}

/// A request as tantivy queries.
struct Compiled {
    /// Words, exclusions and filters.
    query: Box<dyn Query>,
    /// The words to highlight (none for a search by filters alone).
    highlight: Option<Box<dyn Query>>,
}

fn boxed(q: impl Query) -> Box<dyn Query> {
    Box::new(q)
}

fn filter(q: Box<dyn Query>) -> (Occur, Box<dyn Query>) {
    (Occur::Must, boxed(ConstScoreQuery::new(q, 0.0)))
}

fn any_of(terms: Vec<Term>) -> Box<dyn Query> {
    boxed(BooleanQuery::union(
        terms
            .into_iter()
            .map(|t| boxed(TermQuery::new(t, IndexRecordOption::Basic)))
            .collect(),
    ))
}

fn range(field: Field, (from, to): (Option<i64>, Option<i64>)) -> Option<Box<dyn Query>> {
    if from.is_none() && to.is_none() {
        return None;
    }
    let bound = |b: Option<i64>, inclusive: bool| match b {
        None => Bound::Unbounded,
        Some(v) if inclusive => Bound::Included(Term::from_field_i64(field, v)),
        Some(v) => Bound::Excluded(Term::from_field_i64(field, v)),
    };
    Some(boxed(RangeQuery::new(bound(from, true), bound(to, false))))
}

impl SearchIndex {
    /// The query of `text` on `field` analysed by `analyzer`: a term, a
    /// phrase of its terms, or `None` when it has no terms there.
    fn text_query(&self, analyzer: &str, field: Field, text: &str) -> Option<Box<dyn Query>> {
        let mut analyzer = analysis::analyzer(analyzer)?;
        let terms = analysis::terms(&mut analyzer, text);
        match terms.len() {
            0 => None,
            1 => Some(boxed(TermQuery::new(
                Term::from_field_text(field, &terms[0].1),
                IndexRecordOption::WithFreqsAndPositions,
            ))),
            _ => {
                let first = terms[0].0;
                Some(boxed(PhraseQuery::new_with_offset(
                    terms
                        .into_iter()
                        .map(|(at, t)| (at - first, Term::from_field_text(field, &t)))
                        .collect(),
                )))
            }
        }
    }

    /// All of `words` (the `any` analysis) must occur in `field`.
    fn words_filter(&self, field: Field, words: &str) -> Option<Box<dyn Query>> {
        let mut analyzer = analysis::analyzer(ANY)?;
        let terms = analysis::terms(&mut analyzer, words);
        if terms.is_empty() {
            return None;
        }
        Some(boxed(BooleanQuery::intersection(
            terms
                .into_iter()
                .map(|(_, t)| {
                    boxed(TermQuery::new(
                        Term::from_field_text(field, &t),
                        IndexRecordOption::Basic,
                    ))
                })
                .collect(),
        )))
    }

    /// The text fields a query in `language` searches.
    fn searched_fields(&self, language: Option<&str>) -> Vec<(&'static str, Field)> {
        match language {
            None => self.fields.text.clone(),
            Some(language) => self
                .fields
                .text
                .iter()
                .filter(|(name, _)| *name == ANY || stemmed_analyzer(language) == Some(*name))
                .copied()
                .collect(),
        }
    }

    /// The whole query and the words to highlight; `Ok(None)` when
    /// nothing is left to search (only stop words, no filter).
    fn compile(&self, request: &SearchRequest) -> Result<Option<Compiled>, SearchError> {
        let fields = self.searched_fields(request.language.as_deref());
        let f = &self.fields;
        let mut parts: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        let mut positive: Vec<Box<dyn Query>> = Vec::new();
        for clause in &request.clauses {
            let per_field: Vec<Box<dyn Query>> = fields
                .iter()
                .filter_map(|(name, field)| self.text_query(name, *field, &clause.text))
                .collect();
            if per_field.is_empty() {
                continue; // only stop words or punctuation
            }
            let query = boxed(BooleanQuery::union(per_field));
            if clause.excluded {
                parts.push((Occur::MustNot, query));
            } else {
                positive.push(query.box_clone());
                parts.push((Occur::Must, query));
            }
        }
        if positive.is_empty() && !request.has_filter() {
            return Ok(None);
        }
        let highlight = match positive.is_empty() {
            true => None,
            false => Some(boxed(BooleanQuery::union(positive))),
        };
        if parts.iter().all(|(occur, _)| *occur == Occur::MustNot) {
            parts.push((Occur::Must, boxed(AllQuery)));
        }
        let numbers = |field: Field, values: &[i32]| {
            any_of(
                values
                    .iter()
                    .map(|v| Term::from_field_u64(field, *v as u64))
                    .collect(),
            )
        };
        match request.source {
            Source::All => {}
            Source::Claims => parts.push(filter(numbers(f.kind, &[KIND_CLAIM as i32]))),
            Source::Reviews => parts.push(filter(numbers(f.kind, &[KIND_REVIEW as i32]))),
        }
        for (field, values) in [
            (f.state, &request.states),
            (f.rating, &request.ratings),
            (f.media, &request.media),
        ] {
            if !values.is_empty() {
                parts.push(filter(numbers(field, values)));
            }
        }
        if !request.languages.is_empty() {
            let terms = request
                .languages
                .iter()
                .map(|l| Term::from_field_u64(f.lang, pack_language(l)))
                .collect();
            parts.push(filter(any_of(terms)));
        }
        if !request.tags.is_empty() {
            let terms = request
                .tags
                .iter()
                .map(|t| Term::from_field_text(f.tag, &t.to_lowercase()))
                .collect();
            parts.push(filter(any_of(terms)));
        }
        for (field, words) in [
            (f.claimant, &request.claimant),
            (f.org, &request.organization),
        ] {
            if words.trim().is_empty() {
                continue;
            }
            // Words that analyse to nothing match nothing.
            let query = self
                .words_filter(field, words)
                .unwrap_or_else(|| boxed(tantivy::query::EmptyQuery));
            parts.push(filter(query));
        }
        for (field, bounds) in [
            (f.first_seen, request.first_seen),
            (f.updated, request.updated),
        ] {
            if let Some(query) = range(field, bounds) {
                parts.push(filter(query));
            }
        }
        Ok(Some(Compiled {
            query: boxed(BooleanQuery::new(parts)),
            highlight,
        }))
    }

    fn searcher(&self) -> Searcher {
        self.reader.searcher()
    }

    fn uid_of(searcher: &Searcher, address: DocAddress) -> Result<u64, SearchError> {
        let column = searcher
            .segment_reader(address.segment_ord)
            .fast_fields()
            .u64("uid")?;
        column
            .first(address.doc_id)
            .ok_or_else(|| SearchError("a document without uid".into()))
    }

    /// Runs a search. `Ok(None)` when the query has nothing to search
    /// (only stop words or punctuation, and no filter).
    pub fn search(&self, request: &SearchRequest) -> Result<Option<SearchResults>, SearchError> {
        let indexed = *self.indexed.borrow();
        let Some(Compiled { query, highlight }) = self.compile(request)? else {
            return Ok(None);
        };
        let searcher = self.searcher();
        let top = tantivy::collector::TopDocs::with_limit(request.limit.max(1))
            .and_offset(request.offset);
        // Two passes: the ranked page (scored, so that a top-k search can
        // skip documents that cannot make the page), then the count and the
        // facets over every match without scoring.
        let hits: Vec<(Score, DocAddress)> = if request.newest {
            searcher
                .search(
                    query.as_ref(),
                    &top.order_by_fast_field::<i64>("newest", Order::Desc),
                )?
                .into_iter()
                .map(|(_, address)| (0.0, address))
                .collect()
        } else {
            searcher.search(query.as_ref(), &top.order_by_score())?
        };
        let (total, facets) = searcher.search(query.as_ref(), &(Count, FacetCollector))?;
        let mut out = Vec::with_capacity(hits.len());
        for (score, address) in hits.into_iter().take(request.limit) {
            out.push(Hit {
                target: Target::from_uid(Self::uid_of(&searcher, address)?),
                score,
            });
        }
        Ok(Some(SearchResults {
            hits: out,
            total: total as u64,
            facets: facets.finish(),
            indexed,
            highlighter: Highlighter {
                searcher,
                query: highlight,
                fields: self.fields.text.clone(),
                generators: HashMap::new(),
            },
        }))
    }

    /// The "checked before?" candidates of a new claim: the records that
    /// share the most (and rarest) of its distinct terms (analysed in its
    /// language), best first, without `exclude`; and imported
    /// MediaReviews of its image (`sha256`, `source_url`). The caller
    /// keeps the candidates whose own statement passes
    /// [`CheckedBefore::matches`].
    pub fn checked_before(
        &self,
        text: &str,
        language: &str,
        exclude: Target,
        sha256: &str,
        source_url: &str,
    ) -> Result<CheckedBefore, SearchError> {
        let analyzer = stemmed_analyzer(language).unwrap_or(ANY);
        let terms = normalized_terms(analyzer, text).unwrap_or_default();
        let field = self
            .fields
            .text_field(analyzer)
            .ok_or_else(|| SearchError(format!("no field for analyzer {analyzer}")))?;
        let searcher = self.searcher();
        let mut candidates = Vec::new();
        if terms.len() >= CHECKED_BEFORE_MIN_TERMS {
            let clauses: Vec<Box<dyn Query>> = terms
                .iter()
                .map(|t| {
                    boxed(TermQuery::new(
                        Term::from_field_text(field, t),
                        IndexRecordOption::WithFreqs,
                    ))
                })
                .collect();
            // Any of the terms, best first: the top few are found without
            // visiting every document of a common word (block-max WAND);
            // the share is checked on them after (`CheckedBefore::matches`).
            let query = BooleanQuery::union(clauses);
            let top =
                tantivy::collector::TopDocs::with_limit(CHECKED_BEFORE_MAX + 1).order_by_score();
            let needed = (CHECKED_BEFORE_SHARE * terms.len() as f64).ceil() as usize;
            for (score, address) in searcher.search(&query, &top)? {
                let target = Target::from_uid(Self::uid_of(&searcher, address)?);
                // A record whose whole text lacks the share cannot have it
                // in its statement: left out without reading it.
                if target != exclude && shared_terms(&searcher, address, field, &terms)? >= needed {
                    candidates.push(Hit { target, score });
                }
            }
        }
        let mut media_terms = Vec::new();
        if !sha256.is_empty() {
            media_terms.push(Term::from_field_text(self.fields.media_sha256, sha256));
        }
        if !source_url.is_empty() {
            media_terms.push(Term::from_field_text(self.fields.media_url, source_url));
        }
        if !media_terms.is_empty() {
            let top = tantivy::collector::TopDocs::with_limit(CHECKED_BEFORE_MAX).order_by_score();
            for (_, address) in searcher.search(any_of(media_terms).as_ref(), &top)? {
                let target = Target::from_uid(Self::uid_of(&searcher, address)?);
                if !candidates.iter().any(|h| h.target == target) {
                    // Same image: listed whatever its text; first.
                    candidates.insert(
                        0,
                        Hit {
                            target,
                            score: f32::MAX,
                        },
                    );
                }
            }
        }
        candidates.truncate(CHECKED_BEFORE_MAX);
        Ok(CheckedBefore {
            candidates,
            analyzer,
            terms,
            source_text: text.to_string(),
        })
    }

    /// Imported MediaReviews of the image with this SHA-256, newest first.
    pub fn reviews_of_image(&self, sha256: &str, limit: usize) -> Result<Vec<u64>, SearchError> {
        let searcher = self.searcher();
        let query = TermQuery::new(
            Term::from_field_text(self.fields.media_sha256, sha256),
            IndexRecordOption::Basic,
        );
        let top = tantivy::collector::TopDocs::with_limit(limit.max(1))
            .order_by_fast_field::<i64>("newest", Order::Desc);
        let mut out = Vec::new();
        for (_, address) in searcher.search(&query, &top)? {
            if let Target::Review(id) = Target::from_uid(Self::uid_of(&searcher, address)?) {
                out.push(id);
            }
        }
        Ok(out)
    }
}
