//! How text becomes index terms: one analyzer per stemmed language, and a
//! language-neutral one for every text.
//!
//! - **`any`** (every text, whatever its language): words split at
//!   anything that is not a letter or digit, lower-cased, Unicode NFKC,
//!   diacritics removed (é → e, й → и, Arabic harakat dropped). No
//!   stemming, no stop words: scripts and languages without a stemmer match
//!   on these normalized words.
//! - **One per [`STEMMED`] language**: the same words, stop words of that
//!   language left out, reduced to their stem by that language's Snowball
//!   stemmer (so "миротворцев" and "миротворцы" meet), and then diacritics
//!   removed.
//!
//! A text is indexed with `any` and, when its BCP-47 language's primary
//! subtag has a stemmer, with that language's analyzer too.

use std::mem;

use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer,
    Token, TokenFilter, TokenStream, Tokenizer,
};
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// Name of the language-neutral analyzer (and suffix of its field).
pub const ANY: &str = "any";

/// Longest word indexed, in bytes: longer "words" (hashes, base64) are
/// dropped rather than bloating the index.
const MAX_WORD_BYTES: usize = 64;

/// The languages with a stemmer: (primary subtag, Snowball language).
/// Ukrainian, Chinese, Japanese, Korean, Hindi and others have none: their
/// texts match on normalized words only.
pub const STEMMED: [(&str, Language); 18] = [
    ("ar", Language::Arabic),
    ("da", Language::Danish),
    ("de", Language::German),
    ("el", Language::Greek),
    ("en", Language::English),
    ("es", Language::Spanish),
    ("fi", Language::Finnish),
    ("fr", Language::French),
    ("hu", Language::Hungarian),
    ("it", Language::Italian),
    ("nl", Language::Dutch),
    ("no", Language::Norwegian),
    ("pt", Language::Portuguese),
    ("ro", Language::Romanian),
    ("ru", Language::Russian),
    ("sv", Language::Swedish),
    ("ta", Language::Tamil),
    ("tr", Language::Turkish),
];

/// The primary subtag of a BCP-47 tag, lower-cased ("pt-BR" → "pt"); the
/// Norwegian variants "nb" and "nn" map to "no".
pub fn primary_subtag(tag: &str) -> String {
    let primary = tag
        .split(['-', '_'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    match primary.as_str() {
        "nb" | "nn" => "no".to_string(),
        _ => primary,
    }
}

/// The analyzer name for texts in `language` (BCP-47): its stemmed
/// language's subtag, or `None` when it has no stemmer.
pub fn stemmed_analyzer(language: &str) -> Option<&'static str> {
    let primary = primary_subtag(language);
    STEMMED
        .iter()
        .find(|(code, _)| *code == primary)
        .map(|(code, _)| *code)
}

/// Every analyzer: `any` and one per stemmed language, by name.
pub fn analyzers() -> Vec<(&'static str, TextAnalyzer)> {
    let mut out = vec![(ANY, neutral())];
    for (code, language) in STEMMED {
        out.push((code, stemmed(language)));
    }
    out
}

/// Every analyzer, built once (stop-word sets and stemmers are not free to
/// make); [`analyzer`] hands out clones, which share them.
static ANALYZERS: std::sync::LazyLock<Vec<(&'static str, TextAnalyzer)>> =
    std::sync::LazyLock::new(analyzers);

/// The analyzer named `name` (`any` or a stemmed language's subtag).
pub fn analyzer(name: &str) -> Option<TextAnalyzer> {
    ANALYZERS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, a)| a.clone())
}

/// The `any` analyzer.
pub fn neutral() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_WORD_BYTES))
        .filter(LowerCaser)
        .filter(Normalize::Fold)
        .build()
}

fn stemmed(language: Language) -> TextAnalyzer {
    let builder = TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_WORD_BYTES))
        .filter(LowerCaser)
        .filter(Normalize::Nfkc)
        .dynamic();
    let builder = match StopWordFilter::new(language) {
        Some(stop) => builder.filter_dynamic(stop),
        None => builder,
    };
    builder
        .filter_dynamic(Stemmer::new(language))
        .filter_dynamic(Normalize::Fold)
        .build()
}

/// The terms `analyzer` makes of `text`, with their positions.
pub fn terms(analyzer: &mut TextAnalyzer, text: &str) -> Vec<(usize, String)> {
    let mut stream = analyzer.token_stream(text);
    let mut out = Vec::new();
    while stream.advance() {
        let token = stream.token();
        out.push((token.position, token.text.clone()));
    }
    out
}

/// Unicode normalization of tokens.
#[derive(Clone, Copy, Debug)]
pub enum Normalize {
    /// NFKC: compatibility forms folded (ﬁ → fi, full-width → ASCII).
    Nfkc,
    /// NFKC, then combining marks (diacritics) removed.
    Fold,
}

impl TokenFilter for Normalize {
    type Tokenizer<T: Tokenizer> = NormalizeFilter<T>;

    fn transform<T: Tokenizer>(self, tokenizer: T) -> NormalizeFilter<T> {
        NormalizeFilter {
            mode: self,
            tokenizer,
        }
    }
}

/// [`Normalize`] over a tokenizer.
#[derive(Clone)]
pub struct NormalizeFilter<T> {
    mode: Normalize,
    tokenizer: T,
}

impl<T: Tokenizer> Tokenizer for NormalizeFilter<T> {
    type TokenStream<'a> = NormalizeStream<T::TokenStream<'a>>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> Self::TokenStream<'a> {
        NormalizeStream {
            mode: self.mode,
            tail: self.tokenizer.token_stream(text),
            buffer: String::new(),
        }
    }
}

/// The token stream of [`NormalizeFilter`].
pub struct NormalizeStream<S> {
    mode: Normalize,
    tail: S,
    buffer: String,
}

impl<S: TokenStream> TokenStream for NormalizeStream<S> {
    fn advance(&mut self) -> bool {
        if !self.tail.advance() {
            return false;
        }
        let token = self.tail.token_mut();
        if token.text.is_ascii() {
            return true;
        }
        self.buffer.clear();
        match self.mode {
            Normalize::Nfkc => self.buffer.extend(token.text.nfkc()),
            Normalize::Fold => self
                .buffer
                .extend(token.text.nfkd().filter(|c| !is_combining_mark(*c)).nfc()),
        }
        mem::swap(&mut token.text, &mut self.buffer);
        true
    }

    fn token(&self) -> &Token {
        self.tail.token()
    }

    fn token_mut(&mut self) -> &mut Token {
        self.tail.token_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
        terms(analyzer, text).into_iter().map(|(_, t)| t).collect()
    }

    #[test]
    fn russian_inflections_meet() {
        let mut ru = stemmed(Language::Russian);
        assert_eq!(
            words(&mut ru, "миротворцы ООН"),
            words(&mut ru, "Миротворцев оон")
        );
        assert_eq!(
            words(&mut ru, "в Казахстане"),
            words(&mut ru, "Казахстаном")
        );
        // Snowball's limit: the nominative of this name stems one letter
        // shorter ("казахста"), so it does not meet the other cases.
        assert_ne!(words(&mut ru, "Казахстан"), words(&mut ru, "Казахстане"));
    }

    #[test]
    fn english_stems_and_drops_stop_words() {
        let mut en = stemmed(Language::English);
        assert_eq!(words(&mut en, "the peacekeepers"), vec!["peacekeep"]);
        assert_eq!(words(&mut en, "Peacekeeping"), vec!["peacekeep"]);
    }

    #[test]
    fn neutral_folds_case_diacritics_and_compatibility_forms() {
        let mut any = neutral();
        assert_eq!(
            words(&mut any, "Café ＡＢＣ ﬁne"),
            vec!["cafe", "abc", "fine"]
        );
        assert_eq!(words(&mut any, "Україна"), words(&mut any, "україна"));
        // Words longer than the limit are dropped.
        assert!(words(&mut any, &"x".repeat(100)).is_empty());
    }

    #[test]
    fn languages_map_to_their_stemmer() {
        assert_eq!(stemmed_analyzer("pt-BR"), Some("pt"));
        assert_eq!(stemmed_analyzer("RU"), Some("ru"));
        assert_eq!(stemmed_analyzer("nb"), Some("no"));
        assert_eq!(stemmed_analyzer("uk"), None);
        assert_eq!(stemmed_analyzer("und"), None);
    }
}
