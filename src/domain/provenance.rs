//! Provenance facts about an image: its Content Credentials (C2PA
//! manifests, read by [`crate::imaging::credentials`]).
//!
//! These are records like those of [`super::model`]: stored on the claim's
//! image (tag 16 of [`super::Image`]), so their tags are forever. Enum
//! numbers match the public API's (`resources.proto`).

use super::Timestamp;

/// How far a manifest's signature can be trusted, as C2PA readers report it.
/// The three states are kept apart on purpose: "valid" means well-formed and
/// signed by a certificate that verifies, not that anyone vouches for the
/// signer; "trusted" means the signing certificate chains to an anchor the
/// operator configured (`--c2pa-trust-anchors`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum CredentialState {
    /// Not set.
    Unspecified = 0,
    /// Malformed, tampered with (a hash mismatch), or a signature that does
    /// not verify.
    Invalid = 1,
    /// Well-formed and signed; the signer is not on a configured trust list.
    Valid = 2,
    /// Valid, and the signing certificate chains to a configured anchor.
    Trusted = 3,
}

/// Kind of a validation code, as in the C2PA specification's status lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum CodeKind {
    /// Not set.
    Unspecified = 0,
    /// A check that passed.
    Success = 1,
    /// Not an error: something noted or not checked (e.g. an untrusted
    /// signer, a remote manifest or OCSP not fetched).
    Informational = 2,
    /// A failed check.
    Failure = 3,
}

/// One validation status code, e.g. `claimSignature.validated` or
/// `assertion.dataHash.mismatch`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ValidationCode {
    /// The C2PA code.
    #[prost(string, tag = "1")]
    pub code: String,
    /// Success, informational or failure.
    #[prost(enumeration = "CodeKind", tag = "2")]
    pub kind: i32,
    /// The reader's explanation, if any (at most 256 characters).
    #[prost(string, tag = "3")]
    pub explanation: String,
}

/// An action of a manifest's `c2pa.actions` assertion.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CredentialAction {
    /// The action, e.g. `c2pa.created`, `c2pa.edited`, `c2pa.opened`.
    #[prost(string, tag = "1")]
    pub action: String,
    /// The IPTC digital source type, e.g.
    /// `http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia`.
    #[prost(string, tag = "2")]
    pub digital_source_type: String,
    /// The software that performed it, when named.
    #[prost(string, tag = "3")]
    pub software_agent: String,
    /// When, if the manifest says.
    #[prost(message, optional, tag = "4")]
    pub when: Option<Timestamp>,
}

/// An ingredient of the active manifest (an image it was made from).
#[derive(Clone, PartialEq, prost::Message)]
pub struct CredentialIngredient {
    /// Its title (often a file name).
    #[prost(string, tag = "1")]
    pub title: String,
    /// Its media type, e.g. `image/jpeg`.
    #[prost(string, tag = "2")]
    pub format: String,
    /// `parentOf`, `componentOf` or `inputTo`.
    #[prost(string, tag = "3")]
    pub relationship: String,
    /// What identifies it, labelled: `manifest:<label>` (its own active
    /// manifest), `hash:<value>` (the hash the manifest records),
    /// `instanceId:`, `documentId:`; at most 8.
    #[prost(string, repeated, tag = "4")]
    pub hashes: Vec<String>,
    /// The ingredient's own validation state, when it had credentials.
    #[prost(enumeration = "CredentialState", tag = "5")]
    pub state: i32,
}

/// The Content Credentials found in an image. Absent (`None` on the image)
/// when the image carries no C2PA manifest.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContentCredentials {
    /// Invalid, valid or trusted.
    #[prost(enumeration = "CredentialState", tag = "1")]
    pub state: i32,
    /// The validation codes the reader reported: failures first, then
    /// informational codes, then successes; at most 32.
    #[prost(message, repeated, tag = "2")]
    pub validation_codes: Vec<ValidationCode>,
    /// The active manifest's claim generator, e.g. `ExampleCam/1.0`.
    #[prost(string, tag = "3")]
    pub claim_generator: String,
    /// The active manifest's title.
    #[prost(string, tag = "4")]
    pub title: String,
    /// Subject of the signing certificate (its distinguished name).
    #[prost(string, tag = "5")]
    pub signer_subject: String,
    /// Issuer of the signing certificate.
    #[prost(string, tag = "6")]
    pub signer_issuer: String,
    /// When it was signed (from the signature's time stamp or signing time).
    #[prost(message, optional, tag = "7")]
    pub signing_time: Option<Timestamp>,
    /// The active manifest's actions, at most 32.
    #[prost(message, repeated, tag = "8")]
    pub actions: Vec<CredentialAction>,
    /// The active manifest's ingredients, at most 32.
    #[prost(message, repeated, tag = "9")]
    pub ingredients: Vec<CredentialIngredient>,
    /// The active manifest's label (a URN).
    #[prost(string, tag = "10")]
    pub manifest_label: String,
    /// The URL of a remote manifest the image points to; it is never
    /// fetched (reported as not checked).
    #[prost(string, tag = "11")]
    pub remote_manifest_url: String,
}

/// IPTC digital source types that mean the pixels were made or changed by
/// a generative model.
pub const GENERATIVE_SOURCE_TYPES: [&str; 3] = [
    "trainedAlgorithmicMedia",
    "compositeWithTrainedAlgorithmicMedia",
    "algorithmicMedia",
];

/// Actions that change what an image shows (not merely open or re-save it).
pub const EDITING_ACTIONS: [&str; 7] = [
    "c2pa.edited",
    "c2pa.cropped",
    "c2pa.filtered",
    "c2pa.color_adjustments",
    "c2pa.drawing",
    "c2pa.placed",
    "c2pa.removed",
];

impl ContentCredentials {
    /// Valid or trusted: the manifest's statements can be relied on as
    /// statements of its signer.
    pub fn is_sound(&self) -> bool {
        matches!(
            self.state(),
            CredentialState::Valid | CredentialState::Trusted
        )
    }

    /// Actions declaring a generative-model source.
    pub fn generative_actions(&self) -> impl Iterator<Item = &CredentialAction> {
        self.actions.iter().filter(|a| {
            let kind = a.digital_source_type.rsplit('/').next().unwrap_or("");
            GENERATIVE_SOURCE_TYPES.contains(&kind)
        })
    }

    /// Actions that edit the picture.
    pub fn editing_actions(&self) -> impl Iterator<Item = &CredentialAction> {
        self.actions
            .iter()
            .filter(|a| EDITING_ACTIONS.contains(&a.action.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(action: &str, source: &str) -> CredentialAction {
        CredentialAction {
            action: action.into(),
            digital_source_type: source.into(),
            ..Default::default()
        }
    }

    #[test]
    fn generative_and_editing_actions_are_recognised() {
        let credentials = ContentCredentials {
            state: CredentialState::Valid as i32,
            actions: vec![
                action(
                    "c2pa.created",
                    "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia",
                ),
                action(
                    "c2pa.opened",
                    "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture",
                ),
                action("c2pa.edited", ""),
            ],
            ..Default::default()
        };
        assert!(credentials.is_sound());
        assert_eq!(credentials.generative_actions().count(), 1);
        assert_eq!(credentials.editing_actions().count(), 1);
        let invalid = ContentCredentials {
            state: CredentialState::Invalid as i32,
            ..credentials
        };
        assert!(!invalid.is_sound());
        assert_eq!(
            ContentCredentials::default().state(),
            CredentialState::Unspecified
        );
    }
}
