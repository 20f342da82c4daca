//! Resource names (`claims/{id}`, `claims/{id}/officialResponses/{id}`),
//! page sizes and opaque page tokens (AIP-122, AIP-158), which carry a MAC
//! under the data directory's page-token key so that an edited or forged
//! token is refused.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::{excerpt, Error, Result};
use crate::store::PageTokenKey;

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
    /// SearchClaims (the cursor is an offset in the ranking; the scope a
    /// hash of the query and filters).
    Search = 4,
    /// ListExternalReviews.
    ExternalReviews = 5,
}

/// `externalReviews/{id}`.
pub fn external_review_name(id: u64) -> String {
    format!("externalReviews/{id}")
}

/// Parses `externalReviews/{id}` given in `field`.
pub fn parse_external_review_name(name: &str, field: &str) -> Result<u64> {
    if name.is_empty() {
        return Err(Error::invalid(
            field,
            "is required: an external review name such as \"externalReviews/1\"",
        ));
    }
    name.strip_prefix("externalReviews/")
        .and_then(parse_id)
        .ok_or_else(|| {
            Error::invalid(
                field,
                format!(
                    "{} is not an external review name; expected \"externalReviews/{{id}}\"",
                    excerpt(name)
                ),
            )
        })
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

/// Token layout version, in the high half of a token's first byte. Version
/// 1 was hex without a MAC; its tokens are refused.
const TOKEN_VERSION: u8 = 2;
/// Bytes under the MAC: header (version, listing), scope, cursor.
const TOKEN_BODY: usize = 1 + 8 + 8;
/// Bytes of the truncated HMAC-SHA256 tag.
const TOKEN_TAG: usize = 16;
/// Characters of a token: 33 bytes in unpadded base64url (33 is a multiple
/// of 3, so each character carries 6 bits and no spelling is ambiguous).
const TOKEN_CHARS: usize = (TOKEN_BODY + TOKEN_TAG) / 3 * 4;

fn token_tag(key: &PageTokenKey, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(body);
    mac
}

/// Encodes a cursor as an opaque token bound to its listing and scope (the
/// claim for child listings, the state filter for ListClaims) and signed
/// with `key`: the token's header, scope and cursor, then the first 16
/// bytes of their HMAC-SHA256, in unpadded base64url (44 characters). Empty
/// for no next page.
pub fn encode_page_token(
    key: &PageTokenKey,
    listing: Listing,
    scope: u64,
    cursor: Option<u64>,
) -> String {
    let Some(cursor) = cursor else {
        return String::new();
    };
    let mut bytes = Vec::with_capacity(TOKEN_BODY + TOKEN_TAG);
    bytes.push(TOKEN_VERSION << 4 | listing as u8);
    bytes.extend_from_slice(&scope.to_be_bytes());
    bytes.extend_from_slice(&cursor.to_be_bytes());
    let tag = token_tag(key, &bytes).finalize().into_bytes();
    bytes.extend_from_slice(&tag[..TOKEN_TAG]);
    base64url(&bytes)
}

/// Decodes a token from [`encode_page_token`]; empty means the first page.
/// A token whose MAC does not verify under `key` (edited, cut short, made
/// up, or issued for another data directory) is refused before any of its
/// contents is used; so is a genuine token of another listing or scope.
pub fn decode_page_token(
    key: &PageTokenKey,
    token: &str,
    listing: Listing,
    scope: u64,
) -> Result<Option<u64>> {
    if token.is_empty() {
        return Ok(None);
    }
    let not_issued = || {
        Error::invalid(
            "page_token",
            "is not one this server issued: it was changed, cut short or made up, or comes from \
             another data directory; send a next_page_token exactly as returned, or none to start \
             from the first page",
        )
    };
    let bytes = Some(token)
        .filter(|t| t.len() == TOKEN_CHARS)
        .and_then(unbase64url)
        .ok_or_else(not_issued)?;
    let (body, tag) = bytes.split_at(TOKEN_BODY);
    token_tag(key, body)
        .verify_truncated_left(tag)
        .map_err(|_| not_issued())?;
    let word = |at: usize| u64::from_be_bytes(body[at..at + 8].try_into().expect("8 bytes"));
    if body[0] != (TOKEN_VERSION << 4 | listing as u8) || word(1) != scope {
        return Err(Error::invalid(
            "page_token",
            "is not a token returned by this listing with the same parameters",
        ));
    }
    Ok(Some(word(9)))
}

const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Unpadded base64url of `bytes`, whose length is a multiple of 3.
fn base64url(bytes: &[u8]) -> String {
    debug_assert_eq!(bytes.len() % 3, 0);
    let mut out = String::with_capacity(bytes.len() / 3 * 4);
    for chunk in bytes.chunks_exact(3) {
        let n = u32::from(chunk[0]) << 16 | u32::from(chunk[1]) << 8 | u32::from(chunk[2]);
        for shift in [18, 12, 6, 0] {
            out.push(BASE64URL[(n >> shift & 63) as usize] as char);
        }
    }
    out
}

/// Inverse of [`base64url`]: `None` unless every character is base64url and
/// the length a multiple of 4.
fn unbase64url(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let sextet = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'-' => Some(62),
        b'_' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    for chunk in text.as_bytes().chunks_exact(4) {
        let mut n = 0u32;
        for &c in chunk {
            n = n << 6 | u32::from(sextet(c)?);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::PAGE_TOKEN_KEY_LEN;

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

    const KEY: PageTokenKey = [7; PAGE_TOKEN_KEY_LEN];

    #[test]
    fn page_tokens_round_trip_and_are_bound_to_their_listing() {
        let token = encode_page_token(&KEY, Listing::Events, 9, Some(77));
        assert_eq!(token.len(), TOKEN_CHARS);
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(
            decode_page_token(&KEY, &token, Listing::Events, 9).unwrap(),
            Some(77)
        );
        assert!(decode_page_token(&KEY, &token, Listing::Events, 8).is_err());
        assert!(decode_page_token(&KEY, &token, Listing::Responses, 9).is_err());
        assert!(decode_page_token(&KEY, "zz", Listing::Events, 9).is_err());
        assert_eq!(encode_page_token(&KEY, Listing::Claims, 0, None), "");
        assert_eq!(
            decode_page_token(&KEY, "", Listing::Claims, 0).unwrap(),
            None
        );
    }

    #[test]
    fn page_tokens_are_refused_when_edited_or_signed_with_another_key() {
        let token = encode_page_token(&KEY, Listing::Claims, 0, Some(1_000));
        let other_key = [8; PAGE_TOKEN_KEY_LEN];
        assert!(decode_page_token(&other_key, &token, Listing::Claims, 0).is_err());
        for at in 0..token.len() {
            for c in BASE64URL.iter().map(|&c| c as char) {
                let mut edited: Vec<char> = token.chars().collect();
                if edited[at] == c {
                    continue;
                }
                edited[at] = c;
                let edited: String = edited.into_iter().collect();
                let err = decode_page_token(&KEY, &edited, Listing::Claims, 0).unwrap_err();
                assert!(
                    err.to_string().contains("not one this server issued"),
                    "{err}"
                );
            }
        }
        // Version 1 tokens (hex, no MAC) are refused too.
        let old = format!("0101{}{:016x}", "0".repeat(16), 5u64);
        assert!(decode_page_token(&KEY, &old, Listing::Claims, 0).is_err());
        // Base64url round trip of every byte value.
        let bytes: Vec<u8> = (0..=255u8).chain([0, 0]).collect();
        assert_eq!(unbase64url(&base64url(&bytes)).unwrap(), bytes);
        assert!(unbase64url("AAA=").is_none());
    }

    #[test]
    fn page_size_defaults_caps_and_refuses_negative() {
        assert_eq!(page_size(0).unwrap(), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(5).unwrap(), 5);
        assert_eq!(page_size(1_000_000).unwrap(), MAX_PAGE_SIZE);
        assert!(page_size(-1).is_err());
    }
}
