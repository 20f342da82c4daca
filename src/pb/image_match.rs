//! `photoclaim.v1.ImageMatch`, written by hand instead of generated
//! (`build.rs` maps the message here with `extern_path`), so that a server
//! can send a claim it has already encoded.
//!
//! A `FindSimilarClaims` reply carries up to 50 whole claims, and the same
//! claims come back in many replies. Built as a generated message, each
//! match cost a copy of every string of the claim and its encoding, again
//! at every reply. [`ImageMatch::encoded`] instead takes the claim's bytes
//! as a `photoclaim.v1.Claim` message (the store keeps them with the cached
//! claim) and writes them as they are: on the wire, an embedded message and
//! its bytes are the same thing, so clients see no difference.
//!
//! Decoding always fills [`ImageMatch::claim`]; the encoded form exists only
//! on the sending side.

#![warn(clippy::all, missing_docs)]

use bytes::{Buf, BufMut, Bytes};
use prost::encoding::{self, DecodeContext, WireType};
use prost::DecodeError;

use super::Claim;

/// Another claim about the same image or a near duplicate of it.
/// Equality compares the form too: a match made by [`ImageMatch::encoded`]
/// equals only another made from the same bytes (decode it to compare
/// claims).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImageMatch {
    /// The other claim, with its verification status.
    pub claim: Option<Claim>,
    /// True when the images have the same SHA-256.
    pub exact: bool,
    /// Hamming distance between the PDQ hashes, 0-256; always 0 for an exact
    /// match.
    pub distance: i32,
    /// How the other claim's image relates to the query picture
    /// (`photoclaim.v1.ImageTransformation`).
    pub transformation: i32,
    /// The claim as an encoded `photoclaim.v1.Claim`, sent instead of
    /// `claim` when present ([`ImageMatch::encoded`]).
    encoded_claim: Option<Bytes>,
}

impl ImageMatch {
    /// A match whose claim is already encoded: `claim` must be the bytes of
    /// a `photoclaim.v1.Claim` message.
    pub fn encoded(claim: Bytes, exact: bool, distance: i32) -> ImageMatch {
        ImageMatch {
            claim: None,
            exact,
            distance,
            transformation: 0,
            encoded_claim: Some(claim),
        }
    }

    /// The same match, saying how its image relates to the query's.
    pub fn with_transformation(mut self, transformation: i32) -> ImageMatch {
        self.transformation = transformation;
        self
    }
}

impl prost::Message for ImageMatch {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        match (&self.encoded_claim, &self.claim) {
            (Some(bytes), _) => encoding::bytes::encode(1, bytes, buf),
            (None, Some(claim)) => encoding::message::encode(1, claim, buf),
            (None, None) => {}
        }
        if self.exact {
            encoding::bool::encode(2, &self.exact, buf);
        }
        if self.distance != 0 {
            encoding::int32::encode(3, &self.distance, buf);
        }
        if self.transformation != 0 {
            encoding::int32::encode(4, &self.transformation, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        let field = match tag {
            1 => {
                // Merging into a match built from bytes: decode them first,
                // as merging into the message they stand for would.
                if let Some(bytes) = self.encoded_claim.take() {
                    self.claim = Some(prost::Message::decode(bytes)?);
                }
                let claim = self.claim.get_or_insert_with(Claim::default);
                encoding::message::merge(wire_type, claim, buf, ctx).map_err(|e| (e, "claim"))
            }
            2 => encoding::bool::merge(wire_type, &mut self.exact, buf, ctx)
                .map_err(|e| (e, "exact")),
            3 => encoding::int32::merge(wire_type, &mut self.distance, buf, ctx)
                .map_err(|e| (e, "distance")),
            4 => encoding::int32::merge(wire_type, &mut self.transformation, buf, ctx)
                .map_err(|e| (e, "transformation")),
            _ => return encoding::skip_field(wire_type, tag, buf, ctx),
        };
        field.map_err(|(mut e, name)| {
            e.push("ImageMatch", name);
            e
        })
    }

    fn encoded_len(&self) -> usize {
        let claim = match (&self.encoded_claim, &self.claim) {
            (Some(bytes), _) => encoding::bytes::encoded_len(1, bytes),
            (None, Some(claim)) => encoding::message::encoded_len(1, claim),
            (None, None) => 0,
        };
        let exact = if self.exact {
            encoding::bool::encoded_len(2, &self.exact)
        } else {
            0
        };
        let distance = if self.distance != 0 {
            encoding::int32::encoded_len(3, &self.distance)
        } else {
            0
        };
        let transformation = if self.transformation != 0 {
            encoding::int32::encoded_len(4, &self.transformation)
        } else {
            0
        };
        claim + exact + distance + transformation
    }

    fn clear(&mut self) {
        *self = ImageMatch::default();
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::pb::{FindSimilarClaimsResponse, VerificationStatus};

    fn claim() -> Claim {
        Claim {
            name: "claims/7".into(),
            claim_text: "UN peacekeepers in Kazakhstan".into(),
            tags: vec!["kazakhstan".into(), "un".into()],
            verification_status: Some(VerificationStatus {
                claim: "claims/7".into(),
                etag: "W/\"3\"".into(),
                official_response_count: 2,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The bytes protobuf's own rules give an `ImageMatch`: field 1 the
    /// embedded claim, 2 `exact`, 3 `distance`, defaults left out.
    fn by_the_rules(claim: &Claim, exact: bool, distance: i32) -> Vec<u8> {
        let mut out = Vec::new();
        encoding::message::encode(1, claim, &mut out);
        if exact {
            encoding::bool::encode(2, &exact, &mut out);
        }
        if distance != 0 {
            encoding::int32::encode(3, &distance, &mut out);
        }
        out
    }

    #[test]
    fn the_transformation_is_field_4() {
        let claim = claim();
        let m = ImageMatch::encoded(claim.encode_to_vec().into(), false, 9).with_transformation(2);
        let mut want = by_the_rules(&claim, false, 9);
        encoding::int32::encode(4, &2, &mut want);
        assert_eq!(m.encode_to_vec(), want);
        assert_eq!(m.encoded_len(), want.len());
        let decoded = ImageMatch::decode(want.as_slice()).unwrap();
        assert_eq!((decoded.distance, decoded.transformation), (9, 2));
    }

    #[test]
    fn an_encoded_claim_goes_out_as_the_embedded_message_would() {
        let claim = claim();
        for (exact, distance) in [(true, 0), (false, 17), (false, 0)] {
            let typed = ImageMatch {
                claim: Some(claim.clone()),
                exact,
                distance,
                ..Default::default()
            };
            let from_bytes = ImageMatch::encoded(claim.encode_to_vec().into(), exact, distance);
            let want = by_the_rules(&claim, exact, distance);
            assert_eq!(typed.encode_to_vec(), want);
            assert_eq!(from_bytes.encode_to_vec(), want);
            assert_eq!(typed.encoded_len(), want.len());
            assert_eq!(from_bytes.encoded_len(), want.len());
            let decoded = ImageMatch::decode(want.as_slice()).unwrap();
            assert_eq!(decoded, typed, "decoding fills the typed claim");
        }
    }

    #[test]
    fn a_reply_of_encoded_matches_decodes_to_the_claims() {
        let mut other = claim();
        other.name = "claims/8".into();
        let reply = FindSimilarClaimsResponse {
            matches: vec![
                ImageMatch::encoded(claim().encode_to_vec().into(), true, 0),
                ImageMatch::encoded(other.encode_to_vec().into(), false, 12),
            ],
            query_pdq: "ab".repeat(32),
            ..Default::default()
        };
        let decoded = FindSimilarClaimsResponse::decode(reply.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded.matches.len(), 2);
        assert_eq!(decoded.matches[0].claim, Some(claim()));
        assert!(decoded.matches[0].exact);
        assert_eq!(decoded.matches[1].claim, Some(other));
        assert_eq!(decoded.matches[1].distance, 12);
        assert_eq!(decoded.query_pdq, "ab".repeat(32));
        let json = crate::pb::to_json(&reply, "photoclaim.v1.FindSimilarClaimsResponse");
        assert_eq!(json["matches"][1]["claim"]["name"], "claims/8");
    }

    #[test]
    fn merging_a_claim_into_an_encoded_match_merges_into_its_claim() {
        let mut merged = ImageMatch::encoded(claim().encode_to_vec().into(), false, 3);
        let patch = ImageMatch {
            claim: Some(Claim {
                claimant: "social media posts".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        merged.merge(patch.encode_to_vec().as_slice()).unwrap();
        let mut want = claim();
        want.claimant = "social media posts".into();
        assert_eq!(merged.claim, Some(want));
        assert_eq!(merged.distance, 3);
        let again = ImageMatch::decode(merged.encode_to_vec().as_slice()).unwrap();
        assert_eq!(again.claim, merged.claim);
    }

    #[test]
    fn a_bad_field_is_named_and_unknown_fields_are_skipped() {
        let mut bytes = Vec::new();
        encoding::string::encode(9, &"later field".to_string(), &mut bytes);
        encoding::int32::encode(3, &5, &mut bytes);
        let decoded = ImageMatch::decode(bytes.as_slice()).unwrap();
        assert_eq!(decoded.distance, 5);
        // Field 1 as a varint: the wrong wire type.
        let mut bad = Vec::new();
        encoding::int32::encode(1, &1, &mut bad);
        let err = ImageMatch::decode(bad.as_slice()).unwrap_err();
        assert!(err.to_string().contains("ImageMatch.claim"), "{err}");
    }
}
