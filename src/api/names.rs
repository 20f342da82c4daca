//! Resource names (`claims/{id}`, `claims/{id}/officialResponses/{id}`),
//! page sizes and opaque page tokens (AIP-122, AIP-158).

use crate::domain::{excerpt, Error, Result};

/// Page size used when a request gives 0.
pub const DEFAULT_PAGE_SIZE: usize = 50;
/// Larger page sizes are capped to this.
pub const MAX_PAGE_SIZE: usize = 1_000;

/// Which listing a page token belongs to; a token from one listing is refused by another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Listing {
    /// ListClaims.
    Claims = 1,
    /// ListOfficialResponses.
    Responses = 2,
    /// ListClaimEvents.
    Events = 3,
}

/// `claims/{id}`.
pub fn claim_name(id: u64) -> String {
    format!("claims/{id}")
}

/// `claims/{claim_id}/officialResponses/{response_id}`.
pub fn response_name(claim_id: u64, response_id: u64) -> String {
    format!("claims/{claim_id}/officialResponses/{response_id}")
}

/// A positive decimal id without leading zeros (so each id has one spelling).
fn parse_id(s: &str) -> Option<u64> {
    if s.is_empty() || s.starts_with('0') || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses `claims/{id}` given in `field`.
pub fn parse_claim_name(name: &str, field: &str) -> Result<u64> {
    if name.is_empty() {
        return Err(Error::invalid(
            field,
            "is required: a claim name such as \"claims/1\"",
        ));
    }
    name.strip_prefix("claims/")
        .and_then(parse_id)
        .ok_or_else(|| {
            Error::invalid(
                field,
                format!(
                    "{} is not a claim name; expected \"claims/{{claim_id}}\"",
                    excerpt(name)
                ),
            )
        })
}

/// Parses `claims/{claim_id}/officialResponses/{response_id}` given in `field`.
pub fn parse_response_name(name: &str, field: &str) -> Result<(u64, u64)> {
    let parsed = name.strip_prefix("claims/").and_then(|rest| {
        let (claim, response) = rest.split_once("/officialResponses/")?;
        Some((parse_id(claim)?, parse_id(response)?))
    });
    parsed.ok_or_else(|| {
        Error::invalid(
            field,
            format!(
                "{} is not an official response name; expected \"claims/{{claim_id}}/officialResponses/{{response_id}}\"",
                excerpt(name)
            ),
        )
    })
}

/// AIP-158 page size: 0 means the default, larger than the maximum is capped,
/// negative is refused.
pub fn page_size(requested: i32) -> Result<usize> {
    match requested {
        n if n < 0 => Err(Error::invalid("page_size", "must not be negative")),
        0 => Ok(DEFAULT_PAGE_SIZE),
        n => Ok((n as usize).min(MAX_PAGE_SIZE)),
    }
}

const TOKEN_VERSION: u8 = 1;

/// Encodes a cursor as an opaque token bound to its listing and scope (the
/// claim for child listings, the state filter for ListClaims).
pub fn encode_page_token(listing: Listing, scope: u64, cursor: Option<u64>) -> String {
    let Some(cursor) = cursor else {
        return String::new();
    };
    let mut bytes = Vec::with_capacity(18);
    bytes.push(TOKEN_VERSION);
    bytes.push(listing as u8);
    bytes.extend_from_slice(&scope.to_be_bytes());
    bytes.extend_from_slice(&cursor.to_be_bytes());
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decodes a token from [`encode_page_token`]; empty means the first page.
pub fn decode_page_token(token: &str, listing: Listing, scope: u64) -> Result<Option<u64>> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || {
        Error::invalid(
            "page_token",
            "is not a token returned by this listing with the same parameters",
        )
    };
    if token.len() != 36 || !token.is_ascii() {
        return Err(invalid());
    }
    let bytes: Vec<u8> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&token[i..i + 2], 16))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| invalid())?;
    let word = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    if bytes[0] != TOKEN_VERSION || bytes[1] != listing as u8 || word(2) != scope {
        return Err(invalid());
    }
    Ok(Some(word(10)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_names_have_one_spelling() {
        assert_eq!(parse_claim_name("claims/42", "name").unwrap(), 42);
        for bad in [
            "",
            "claims/",
            "claims/042",
            "claims/0",
            "claims/x",
            "claim/1",
            "claims/1/",
            "claims/-1",
            "claims/99999999999999999999",
        ] {
            assert!(parse_claim_name(bad, "name").is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_response_name("claims/3/officialResponses/2", "f").unwrap(),
            (3, 2)
        );
        assert!(parse_response_name("claims/3/officialResponses/", "f").is_err());
    }

    #[test]
    fn page_tokens_round_trip_and_are_bound_to_their_listing() {
        let token = encode_page_token(Listing::Events, 9, Some(77));
        assert_eq!(
            decode_page_token(&token, Listing::Events, 9).unwrap(),
            Some(77)
        );
        assert!(decode_page_token(&token, Listing::Events, 8).is_err());
        assert!(decode_page_token(&token, Listing::Responses, 9).is_err());
        assert!(decode_page_token("zz", Listing::Events, 9).is_err());
        assert_eq!(encode_page_token(Listing::Claims, 0, None), "");
        assert_eq!(decode_page_token("", Listing::Claims, 0).unwrap(), None);
    }

    #[test]
    fn page_size_defaults_caps_and_refuses_negative() {
        assert_eq!(page_size(0).unwrap(), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(5).unwrap(), 5);
        assert_eq!(page_size(1_000_000).unwrap(), MAX_PAGE_SIZE);
        assert!(page_size(-1).is_err());
    }
}
