//! The query language of SearchClaims: words, "quoted phrases", and `-`
//! before a word or phrase to exclude it. Everything else is text: no
//! field prefixes, no operators, so that a pasted post is a valid query.

use crate::domain::{Error, Result};

/// Longest query, in characters.
pub const MAX_QUERY_CHARS: usize = 1_000;

/// Most words and phrases in one query.
pub const MAX_CLAUSES: usize = 64;

/// One word or phrase of a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Clause {
    /// The text (a word, or a phrase's words).
    pub text: String,
    /// Quoted: its words must appear in this order, next to each other.
    pub phrase: bool,
    /// After `-`: must not match.
    pub excluded: bool,
}

/// Parses `query`; a syntax error is `INVALID_ARGUMENT` on `field` naming
/// the (1-based, in characters) position.
pub fn parse(query: &str, field: &str) -> Result<Vec<Clause>> {
    let chars = query.chars().count();
    if chars > MAX_QUERY_CHARS {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_QUERY_CHARS} characters, got {chars}"),
        ));
    }
    if let Some((at, _)) = query
        .chars()
        .enumerate()
        .find(|(_, c)| c.is_control() && !c.is_whitespace())
    {
        return Err(Error::invalid(
            field,
            format!("has a control character at position {}", at + 1),
        ));
    }
    let mut clauses = Vec::new();
    let mut it = query.chars().enumerate().peekable();
    while let Some(&(at, c)) = it.peek() {
        if c.is_whitespace() {
            it.next();
            continue;
        }
        let excluded = c == '-';
        if excluded {
            it.next();
            match it.peek() {
                Some((_, next)) if !next.is_whitespace() => {}
                _ => {
                    return Err(Error::invalid(
                        field,
                        format!(
                            "has a '-' at position {} with nothing after it; write -word or -\"a phrase\" to exclude, or leave it out",
                            at + 1
                        ),
                    ))
                }
            }
        }
        let Some(&(start, first)) = it.peek() else {
            break;
        };
        if first == '"' {
            it.next();
            let mut text = String::new();
            let mut closed = false;
            for (_, c) in it.by_ref() {
                if c == '"' {
                    closed = true;
                    break;
                }
                text.push(c);
            }
            if !closed {
                return Err(Error::invalid(
                    field,
                    format!("has a quote at position {} that is never closed", start + 1),
                ));
            }
            if text.trim().is_empty() {
                return Err(Error::invalid(
                    field,
                    format!("has an empty phrase at position {}", start + 1),
                ));
            }
            clauses.push(Clause {
                text,
                phrase: true,
                excluded,
            });
        } else {
            let mut text = String::new();
            while let Some(&(_, c)) = it.peek() {
                if c.is_whitespace() || c == '"' {
                    break;
                }
                text.push(c);
                it.next();
            }
            clauses.push(Clause {
                text,
                phrase: false,
                excluded,
            });
        }
        if clauses.len() > MAX_CLAUSES {
            return Err(Error::invalid(
                field,
                format!("has more than {MAX_CLAUSES} words and phrases"),
            ));
        }
    }
    Ok(clauses)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clause(text: &str, phrase: bool, excluded: bool) -> Clause {
        Clause {
            text: text.into(),
            phrase,
            excluded,
        }
    }

    #[test]
    fn words_phrases_and_exclusions() {
        assert_eq!(
            parse(
                r#"UN "blue helmets" -Russia -"war crime" миротворцы"#,
                "query"
            )
            .unwrap(),
            vec![
                clause("UN", false, false),
                clause("blue helmets", true, false),
                clause("Russia", false, true),
                clause("war crime", true, true),
                clause("миротворцы", false, false),
            ]
        );
        assert_eq!(parse("  ", "query").unwrap(), vec![]);
        // A hyphen inside a word is part of it.
        assert_eq!(
            parse("e-mail", "query").unwrap(),
            vec![clause("e-mail", false, false)]
        );
    }

    fn message(query: &str) -> String {
        match parse(query, "query") {
            Err(Error::InvalidArgument(v)) => {
                assert_eq!(v[0].field, "query");
                v[0].description.clone()
            }
            other => panic!("{query:?}: {other:?}"),
        }
    }

    #[test]
    fn syntax_errors_name_the_position() {
        assert!(message(r#"UN "blue helmets"#).contains("position 4"));
        assert!(message("UN - helmets").contains("position 4"));
        assert!(message("UN -").contains("position 4"));
        assert!(message(r#"a "" b"#).contains("position 3"));
        assert!(message("a\u{7}b").contains("position 2"));
        assert!(message(&"a ".repeat(600)).contains("at most 1000"));
        assert!(message(&"a ".repeat(65)).contains("more than 64"));
    }
}
