//! Content Credentials (C2PA manifests) read from an image's bytes into
//! [`ContentCredentials`], with the `c2pa` crate (Rust-native crypto, no
//! OpenSSL, no HTTP client compiled in).
//!
//! # The three states
//!
//! The state is c2pa's own `validation_state()` for the manifest store:
//!
//! - **Invalid**: the store is malformed or cannot be read, a hash does not
//!   match (the pixels or an assertion were changed after signing), the
//!   signature does not verify, the signing certificate is not acceptable
//!   (profile, expiry), or an ingredient failed validation.
//! - **Valid**: well-formed, every hash matches and the signature verifies
//!   with a certificate of an acceptable profile. It says nothing about who
//!   the signer is: anybody can make a certificate with any name in it.
//! - **Trusted**: valid, and the signing certificate chains to one of the
//!   trust anchors the operator configured ([`CredentialReader::with_trust_anchors`],
//!   `--c2pa-trust-anchors`). There are no anchors by default, not even the
//!   C2PA trust list: without anchors the best state is Valid, and the
//!   informational code `signingCredential.untrusted` says the signer was
//!   not checked against any trust list. With anchors, trust is checked by
//!   c2pa (`verify.verify_trust`); a signer that does not chain to them is
//!   reported by c2pa with the same code, which is shown as informational
//!   (c2pa itself treats it as the one failure a Valid manifest may have).
//!
//! # What is not checked
//!
//! Nothing is ever fetched over the network (the c2pa crate is built without
//! an HTTP client, and the settings say so as well):
//!
//! - **Remote manifests**: an image whose XMP points to a manifest on the
//!   web and embeds none is reported as Invalid (nothing could be verified)
//!   with its `remote_manifest_url` and the informational code
//!   `photoclaim.remoteManifest.notFetched`. A remote reference next to an
//!   embedded store is not reported (the embedded store is what is read).
//! - **Revocation**: OCSP responses are not fetched. A response stapled in
//!   the manifest is checked by c2pa and reported with its own
//!   `signingCredential.ocsp.*` code; when c2pa reports nothing about
//!   revocation, the informational code `signingCredential.ocsp.skipped` is
//!   added so a reader of the codes knows it was not checked.
//! - **Time stamps**: an RFC 3161 time stamp embedded in the signature is
//!   verified as embedded (its signature, its message imprint, and its
//!   certificate against the configured anchors); nothing is requested from
//!   a time-stamp authority. `signing_time` is the embedded time stamp's
//!   time; a manifest without one has no signing time (C2PA signatures carry
//!   no other signed time). Whether the time-stamping certificate is trusted
//!   is in the `timeStamp.*` codes.
//! - CAWG identity assertions are not decoded or verified (they can name
//!   `did:web` identities, which would need the network).
//!
//! # Limits
//!
//! At most 32 validation codes (failures first, then informational codes,
//! then successes, so truncation drops successes first), 32 actions and 32
//! ingredients with at most 8 identifiers each; every string at most 256
//! characters (so a claim's credentials stay well under 100 KB) (cut on a character
//! boundary, control characters dropped). The caller caps the input (20 MiB).
//! A read never panics: c2pa runs under `catch_unwind`, and a panic, like a
//! parse error of a store that is present, becomes an Invalid result with the
//! failure code `photoclaim.unreadable`. c2pa's own limits apply to what it
//! allocates (e.g. 32 MB for a decompressed manifest). The image's bytes are
//! never logged.
//!
//! # No store versus a broken store
//!
//! `read` returns `None` when c2pa finds no manifest store (`JumbfNotFound`)
//! and the bytes do not contain the C2PA manifest-store marker (the 16-byte
//! `c2pa` JUMBF type UUID, which every embedded store begins with). When c2pa
//! fails for any other reason, the same marker decides: present, the image
//! carries a store that could not be read (Invalid, `photoclaim.unreadable`);
//! absent, the failure was in the image container itself and there are no
//! credentials to report (`None`; the image decoder reports a broken image).
//! The marker is only consulted after c2pa has failed, so a readable store is
//! never skipped.
//!
//! # Cost
//!
//! One read parses the container, the JUMBF store and the certificates,
//! verifies the signature(s) and hashes the whole image once (the hard
//! binding). An image without a store costs one pass of the container parser.
//! CPU-bound: call it off the async runtime, like [`super::analyze`].

use std::fmt;
use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use c2pa::validation_results::validation_codes::{
    log_kind, SIGNING_CREDENTIAL_OCSP_SKIPPED, SIGNING_CREDENTIAL_TRUSTED,
    SIGNING_CREDENTIAL_UNTRUSTED,
};
use c2pa::validation_status::ValidationStatus;
use c2pa::{Context, Error as C2paError, Ingredient, Manifest, Reader, Relationship};
use c2pa::{ValidationResults, ValidationState};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::domain::provenance::{
    CodeKind, ContentCredentials, CredentialAction, CredentialIngredient, CredentialState,
    ValidationCode,
};
use crate::domain::Timestamp;

/// Most entries kept in each list (codes, actions, ingredients, hashes).
const MAX_ITEMS: usize = 32;
/// Most identifiers kept per ingredient.
const MAX_HASHES: usize = 8;
/// Longest string kept, in characters.
const MAX_TEXT: usize = 256;

/// Failure code of a manifest store that is present but cannot be read.
const UNREADABLE: &str = "photoclaim.unreadable";
/// Informational code of a remote manifest that was not fetched.
const REMOTE_NOT_FETCHED: &str = "photoclaim.remoteManifest.notFetched";

/// The type UUID of a C2PA manifest store's JUMBF description box
/// (`c2pa` followed by the C2PA UUID suffix): every embedded store starts
/// with it, in every container format.
const STORE_MARKER: [u8; 16] = [
    0x63, 0x32, 0x70, 0x61, 0x00, 0x11, 0x00, 0x10, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71,
];

/// Reads C2PA manifests with the operator's trust anchors. Cheap to clone (Arc inside); Send + Sync.
#[derive(Clone)]
pub struct CredentialReader {
    /// One c2pa context (settings, trust anchors) shared by every read.
    context: Arc<Context>,
    /// Whether anchors were configured (and trust is verified).
    anchors: bool,
}

impl CredentialReader {
    /// No trust anchors: the best state is Valid.
    pub fn new() -> CredentialReader {
        let context = context(None).expect("the fixed C2PA reader settings are valid");
        CredentialReader {
            context: Arc::new(context),
            anchors: false,
        }
    }

    /// Trusts certificates chaining to the PEM anchors in `pem` (one or more CERTIFICATE blocks).
    /// Err(message) when the PEM holds no certificate or cannot be parsed (message says why).
    pub fn with_trust_anchors(pem: &str) -> Result<CredentialReader, String> {
        let mut anchors = Vec::new();
        for (index, block) in CertificateDer::pem_slice_iter(pem.as_bytes()).enumerate() {
            let der =
                block.map_err(|e| format!("certificate {} is not valid PEM: {e}", index + 1))?;
            use x509_cert::der::Decode;
            x509_cert::Certificate::from_der(der.as_ref()).map_err(|e| {
                format!("certificate {} is not an X.509 certificate: {e}", index + 1)
            })?;
            anchors.push(der);
        }
        if anchors.is_empty() {
            return Err(
                "holds no PEM certificate (expected one or more \"-----BEGIN CERTIFICATE-----\" blocks)"
                    .into(),
            );
        }
        // Only the certificates go to c2pa, re-encoded: it would also take
        // other PEM blocks (keys, CRLs) as anchors.
        let bundle: String = anchors.iter().map(|der| pem_certificate(der)).collect();
        let context =
            context(Some(&bundle)).map_err(|e| format!("refused by the C2PA reader: {e}"))?;
        Ok(CredentialReader {
            context: Arc::new(context),
            anchors: true,
        })
    }

    /// True when anchors were configured.
    pub fn has_trust_anchors(&self) -> bool {
        self.anchors
    }

    /// The credentials in `bytes` (format: "jpeg", "png", "webp" or "gif"), or None when the
    /// image has no C2PA manifest store at all. Never panics, never fetches anything over the
    /// network (see the module documentation for what is and is not checked).
    pub fn read(&self, bytes: &[u8], format: &str) -> Option<ContentCredentials> {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            Reader::from_shared_context(&self.context)
                .with_stream(media_type(format), Cursor::new(bytes))
                .map(|reader| self.describe(&reader))
        }));
        match outcome {
            Ok(Ok(credentials)) => Some(credentials),
            Ok(Err(C2paError::RemoteManifestUrl(url))) => Some(remote_only(&url)),
            Ok(Err(C2paError::JumbfNotFound)) => has_store_marker(bytes).then(|| {
                unreadable("a C2PA manifest store marker is present, but no readable manifest store was found")
            }),
            Ok(Err(error)) => has_store_marker(bytes).then(|| {
                unreadable(&format!("the C2PA manifest store cannot be read: {error}"))
            }),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".into());
                tracing::warn!(panic = %clean(&what), "the C2PA reader panicked on an image");
                has_store_marker(bytes).then(|| {
                    unreadable(&format!("the C2PA reader failed on this manifest store: {what}"))
                })
            }
        }
    }

    /// The domain record of what c2pa read and validated.
    fn describe(&self, reader: &Reader) -> ContentCredentials {
        let state = match reader.validation_state() {
            ValidationState::Invalid => CredentialState::Invalid,
            ValidationState::Valid => CredentialState::Valid,
            ValidationState::Trusted => CredentialState::Trusted,
        };
        let mut codes = Codes::default();
        match reader.validation_results() {
            Some(results) => codes.add_results(results),
            None => {
                for status in reader.validation_status().unwrap_or_default() {
                    codes.add(status, CodeKind::Failure);
                }
            }
        }
        if !self.anchors
            && state == CredentialState::Valid
            && !codes.has(SIGNING_CREDENTIAL_UNTRUSTED)
        {
            codes.note(
                SIGNING_CREDENTIAL_UNTRUSTED,
                "no trust anchors are configured (--c2pa-trust-anchors): the signer was not checked against any trust list",
            );
        }
        if !codes.has_prefix("signingCredential.ocsp.") {
            codes.note(
                SIGNING_CREDENTIAL_OCSP_SKIPPED,
                "revocation (OCSP) was not checked: the manifest staples no OCSP response and this service never fetches one",
            );
        }
        let mut credentials = ContentCredentials {
            state: state as i32,
            validation_codes: codes.into_list(),
            manifest_label: clean(reader.active_label().unwrap_or_default()),
            ..Default::default()
        };
        if let Some(manifest) = reader.active_manifest() {
            self.describe_manifest(reader, manifest, &mut credentials);
        }
        credentials
    }

    fn describe_manifest(
        &self,
        reader: &Reader,
        manifest: &Manifest,
        credentials: &mut ContentCredentials,
    ) {
        credentials.claim_generator = clean(&claim_generator(manifest));
        credentials.title = clean(manifest.title().unwrap_or_default());
        if credentials.manifest_label.is_empty() {
            credentials.manifest_label = clean(manifest.label().unwrap_or_default());
        }
        if let Some(info) = manifest.signature_info() {
            let (subject, issuer) = certificate_names(info.cert_chain()).unwrap_or_else(|| {
                // The chain did not parse: c2pa's own fields, which hold the
                // subject's common name and organisation (c2pa calls the
                // organisation "issuer").
                let mut parts = Vec::new();
                if let Some(cn) = &info.common_name {
                    parts.push(format!("CN={cn}"));
                }
                if let Some(o) = &info.issuer {
                    parts.push(format!("O={o}"));
                }
                (parts.join(","), String::new())
            });
            credentials.signer_subject = clean(&subject);
            credentials.signer_issuer = clean(&issuer);
            credentials.signing_time = info.time.as_deref().and_then(timestamp);
        }
        credentials.actions = actions(manifest);
        credentials.ingredients = manifest
            .ingredients()
            .iter()
            .take(MAX_ITEMS)
            .map(|ingredient| self.describe_ingredient(reader, manifest, ingredient))
            .collect();
    }

    fn describe_ingredient(
        &self,
        reader: &Reader,
        manifest: &Manifest,
        ingredient: &Ingredient,
    ) -> CredentialIngredient {
        let relationship = match ingredient.relationship() {
            Relationship::ParentOf => "parentOf",
            Relationship::ComponentOf => "componentOf",
            Relationship::InputTo => "inputTo",
        };
        // Identifiers the manifest records for the ingredient: the label of
        // its own C2PA manifest (a URN), its v1 hash, its XMP instance and
        // document IDs.
        let mut hashes = Vec::new();
        if let Some(label) = ingredient.active_manifest() {
            hashes.push(format!("manifest:{label}"));
        }
        if let Some(hash) = ingredient.hash() {
            hashes.push(format!("hash:{hash}"));
        }
        let instance = ingredient.instance_id();
        if !instance.is_empty() && instance != "None" {
            hashes.push(format!("instanceId:{instance}"));
        }
        if let Some(document) = ingredient.document_id() {
            hashes.push(format!("documentId:{document}"));
        }
        CredentialIngredient {
            title: clean(ingredient.title().unwrap_or_default()),
            format: clean(ingredient.format().unwrap_or_default()),
            relationship: relationship.into(),
            hashes: hashes.iter().take(MAX_HASHES).map(|h| clean(h)).collect(),
            state: self.ingredient_state(reader, manifest, ingredient) as i32,
        }
    }

    /// The ingredient's state: what the manifest records for it (as
    /// validated when it was added, with the signer's trust settings),
    /// corrected by c2pa's re-validation of the ingredient's manifest with
    /// this reader's settings (the "ingredient deltas"): Invalid when that
    /// found failures, Trusted only when this reader's anchors confirm it,
    /// otherwise at most Valid. Unspecified when the ingredient had no
    /// credentials.
    fn ingredient_state(
        &self,
        reader: &Reader,
        manifest: &Manifest,
        ingredient: &Ingredient,
    ) -> CredentialState {
        let recorded = if let Some(results) = ingredient.validation_results() {
            results.validation_state()
        } else if let Some(statuses) = ingredient.validation_status() {
            let failed = statuses.iter().any(|s| {
                log_kind(s.code()) == c2pa::status_tracker::LogKind::Failure
                    && s.code() != SIGNING_CREDENTIAL_UNTRUSTED
            });
            if failed {
                ValidationState::Invalid
            } else {
                ValidationState::Valid
            }
        } else if ingredient.active_manifest().is_some() {
            ValidationState::Valid
        } else {
            return CredentialState::Unspecified;
        };
        let (mut failed, mut untrusted, mut trusted) = (false, false, false);
        if let (Some(deltas), Some(label), Some(parent)) = (
            reader
                .validation_results()
                .and_then(ValidationResults::ingredient_deltas),
            ingredient.label(),
            manifest.label(),
        ) {
            let suffix = format!("/{label}");
            for delta in deltas.iter().filter(|d| {
                let uri = d.ingredient_assertion_uri();
                uri.ends_with(&suffix) && uri.contains(parent)
            }) {
                let codes = delta.validation_deltas();
                for status in codes.failure() {
                    if status.code() == SIGNING_CREDENTIAL_UNTRUSTED {
                        untrusted = true;
                    } else {
                        failed = true;
                    }
                }
                trusted |= codes
                    .success()
                    .iter()
                    .any(|s| s.code() == SIGNING_CREDENTIAL_TRUSTED);
            }
        }
        if failed || recorded == ValidationState::Invalid {
            CredentialState::Invalid
        } else if self.anchors && !untrusted && (trusted || recorded == ValidationState::Trusted) {
            CredentialState::Trusted
        } else {
            CredentialState::Valid
        }
    }
}

impl Default for CredentialReader {
    fn default() -> Self {
        CredentialReader::new()
    }
}

impl fmt::Debug for CredentialReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialReader")
            .field("has_trust_anchors", &self.anchors)
            .finish()
    }
}

/// The c2pa context of every read: trust verified only with anchors, and
/// nothing that would reach the network.
fn context(anchors: Option<&str>) -> Result<Context, C2paError> {
    let mut settings = serde_json::json!({
        "verify": {
            "verify_after_reading": true,
            "verify_trust": anchors.is_some(),
            // Without anchors a time stamp's authority cannot be trusted
            // either; checking it would drop every time stamp and judge
            // the signing certificate at today's date (an expired one
            // would turn a sound manifest invalid).
            "verify_timestamp_trust": anchors.is_some(),
            "ocsp_fetch": false,
            "remote_manifest_fetch": false,
        },
        "core": {
            // An empty list blocks every host in c2pa's HTTP resolvers.
            "allowed_network_hosts": [],
            "decode_identity_assertions": false,
        },
        "builder": {
            "thumbnail": { "enabled": false },
            "auto_timestamp_assertion": { "enabled": false },
        },
    });
    if let Some(pem) = anchors {
        settings["trust"] = serde_json::json!({ "trust_anchors": pem });
    }
    Context::new().with_settings(settings)
}

/// The media type c2pa expects for our format names.
fn media_type(format: &str) -> &str {
    match format {
        "jpeg" | "jpg" => "image/jpeg",
        "png" => "image/png",
        "webp" => "image/webp",
        "gif" => "image/gif",
        other => other,
    }
}

/// Whether `bytes` contain the C2PA manifest-store marker.
fn has_store_marker(bytes: &[u8]) -> bool {
    let mut rest = bytes;
    while let Some(at) = rest.iter().position(|&b| b == STORE_MARKER[0]) {
        if rest[at..].starts_with(&STORE_MARKER) {
            return true;
        }
        rest = &rest[at + 1..];
    }
    false
}

/// An Invalid result for a store that is present but unreadable.
fn unreadable(why: &str) -> ContentCredentials {
    ContentCredentials {
        state: CredentialState::Invalid as i32,
        validation_codes: vec![ValidationCode {
            code: UNREADABLE.into(),
            kind: CodeKind::Failure as i32,
            explanation: clean(why),
        }],
        ..Default::default()
    }
}

/// The result for an image that only points to a remote manifest.
fn remote_only(url: &str) -> ContentCredentials {
    ContentCredentials {
        state: CredentialState::Invalid as i32,
        validation_codes: vec![ValidationCode {
            code: REMOTE_NOT_FETCHED.into(),
            kind: CodeKind::Informational as i32,
            explanation: clean(&format!(
                "the image embeds no manifest and points to a remote one, which this service does not fetch: {url}"
            )),
        }],
        remote_manifest_url: clean(url),
        ..Default::default()
    }
}

/// Validation codes collected by kind, in the order they are reported.
#[derive(Default)]
struct Codes {
    failures: Vec<ValidationCode>,
    informational: Vec<ValidationCode>,
    successes: Vec<ValidationCode>,
}

impl Codes {
    fn add_results(&mut self, results: &ValidationResults) {
        if let Some(active) = results.active_manifest() {
            for status in active.failure() {
                self.add(status, CodeKind::Failure);
            }
            for status in active.informational() {
                self.add(status, CodeKind::Informational);
            }
            for status in active.success() {
                self.add(status, CodeKind::Success);
            }
        }
        // What changed for ingredients since they were added (successes
        // left out: they repeat the ingredient's own record).
        for delta in results.ingredient_deltas().into_iter().flatten() {
            for status in delta.validation_deltas().failure() {
                self.add(status, CodeKind::Failure);
            }
            for status in delta.validation_deltas().informational() {
                self.add(status, CodeKind::Informational);
            }
        }
    }

    fn add(&mut self, status: &ValidationStatus, kind: CodeKind) {
        // An untrusted signer is not an error here: the state says Valid,
        // not Trusted (c2pa lists it as a failure but exempts it).
        let kind = if status.code() == SIGNING_CREDENTIAL_UNTRUSTED {
            CodeKind::Informational
        } else {
            kind
        };
        let mut explanation = status.explanation().unwrap_or_default().to_string();
        if let Some(url) = status
            .url()
            .filter(|u| !u.is_empty() && !explanation.contains(u))
        {
            if explanation.is_empty() {
                explanation = url.to_string();
            } else {
                explanation = format!("{explanation} ({url})");
            }
        }
        let list = match kind {
            CodeKind::Failure => &mut self.failures,
            CodeKind::Informational => &mut self.informational,
            _ => &mut self.successes,
        };
        if list.len() < MAX_ITEMS {
            list.push(ValidationCode {
                code: clean(status.code()),
                kind: kind as i32,
                explanation: clean(&explanation),
            });
        }
    }

    /// Adds an informational code of our own.
    fn note(&mut self, code: &str, explanation: &str) {
        self.informational.push(ValidationCode {
            code: code.into(),
            kind: CodeKind::Informational as i32,
            explanation: clean(explanation),
        });
    }

    fn all(&self) -> impl Iterator<Item = &ValidationCode> {
        self.failures
            .iter()
            .chain(&self.informational)
            .chain(&self.successes)
    }

    fn has(&self, code: &str) -> bool {
        self.all().any(|c| c.code == code)
    }

    fn has_prefix(&self, prefix: &str) -> bool {
        self.all().any(|c| c.code.starts_with(prefix))
    }

    /// Failures, then informational codes, then successes; at most 32.
    fn into_list(self) -> Vec<ValidationCode> {
        self.failures
            .into_iter()
            .chain(self.informational)
            .chain(self.successes)
            .take(MAX_ITEMS)
            .collect()
    }
}

/// The claim generator: the v1 string, or the first v2 generator's
/// `name/version`.
fn claim_generator(manifest: &Manifest) -> String {
    if let Some(generator) = manifest.claim_generator().filter(|g| !g.is_empty()) {
        return generator.to_string();
    }
    manifest
        .claim_generator_info
        .as_ref()
        .and_then(|infos| infos.first())
        .map(|info| match &info.version {
            Some(version) if !version.is_empty() => format!("{}/{version}", info.name),
            _ => info.name.clone(),
        })
        .unwrap_or_default()
}

/// Subject and issuer distinguished names of the first certificate of a
/// PEM chain (the signer's).
fn certificate_names(chain: &str) -> Option<(String, String)> {
    use x509_cert::der::Decode;
    let der = CertificateDer::pem_slice_iter(chain.as_bytes())
        .next()?
        .ok()?;
    let cert = x509_cert::Certificate::from_der(der.as_ref()).ok()?;
    Some((
        cert.tbs_certificate.subject.to_string(),
        cert.tbs_certificate.issuer.to_string(),
    ))
}

/// The actions of the manifest's `c2pa.actions` / `c2pa.actions.v2`
/// assertions, read from their JSON so unusual values do not lose the rest.
fn actions(manifest: &Manifest) -> Vec<CredentialAction> {
    let text =
        |v: Option<&serde_json::Value>| clean(v.and_then(|v| v.as_str()).unwrap_or_default());
    manifest
        .assertions()
        .iter()
        .filter(|a| a.label().starts_with("c2pa.actions"))
        .filter_map(|a| a.value().ok()?.get("actions")?.as_array())
        .flatten()
        .take(MAX_ITEMS)
        .map(|action| {
            let software_agent = match action.get("softwareAgent") {
                Some(serde_json::Value::String(name)) => clean(name),
                Some(agent @ serde_json::Value::Object(_)) => {
                    let name = agent
                        .get("name")
                        .and_then(|n| n.as_str())
                        .unwrap_or_default();
                    match agent.get("version").and_then(|v| v.as_str()) {
                        Some(version) if !version.is_empty() => clean(&format!("{name}/{version}")),
                        _ => clean(name),
                    }
                }
                _ => String::new(),
            };
            CredentialAction {
                action: text(action.get("action")),
                digital_source_type: text(action.get("digitalSourceType")),
                software_agent,
                when: action
                    .get("when")
                    .and_then(|w| w.as_str())
                    .and_then(timestamp),
            }
        })
        .collect()
}

/// An RFC 3339 time as the domain's timestamp.
fn timestamp(text: &str) -> Option<Timestamp> {
    let parsed: prost_types::Timestamp = text.trim().parse().ok()?;
    Some(Timestamp {
        seconds: parsed.seconds,
        nanos: parsed.nanos,
    })
}

/// Text as kept: control characters dropped, at most [`MAX_TEXT`]
/// characters (so never cut inside a character).
fn clean(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_TEXT)
        .collect()
}

/// One certificate as a PEM block.
fn pem_certificate(der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut base64 = String::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                base64.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                base64.push('=');
            }
        }
    }
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in base64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([
                (x * 7 % 256) as u8,
                (y * 13 % 256) as u8,
                ((x ^ y) % 256) as u8,
            ])
        });
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    fn jpeg(width: u32, height: u32) -> Vec<u8> {
        let image = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([
                (x * 3 % 256) as u8,
                (y * 5 % 256) as u8,
                ((x + y) % 256) as u8,
            ])
        });
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
        out.into_inner()
    }

    /// A JPEG with an APP11 segment holding `payload` (a JUMBF box as
    /// C2PA embeds it: CI "JP", En, Z, then the box).
    fn jpeg_with_app11(payload: &[u8]) -> Vec<u8> {
        let base = jpeg(32, 32);
        let mut segment = b"JP\x00\x01\x00\x00\x00\x01".to_vec();
        segment.extend_from_slice(payload);
        let mut out = base[..2].to_vec();
        out.extend_from_slice(&[0xff, 0xeb]);
        out.extend_from_slice(&((segment.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&segment);
        out.extend_from_slice(&base[2..]);
        out
    }

    /// The start of a manifest-store superbox: `jumb` holding a `jumd`
    /// with the C2PA store UUID and the label "c2pa", then `tail`.
    fn store_box(declared_len: u32, tail: &[u8]) -> Vec<u8> {
        let mut jumd = Vec::new();
        jumd.extend_from_slice(&STORE_MARKER);
        jumd.push(0x03); // toggles: requestable, label present
        jumd.extend_from_slice(b"c2pa\0");
        let mut inner = ((jumd.len() + 8) as u32).to_be_bytes().to_vec();
        inner.extend_from_slice(b"jumd");
        inner.extend_from_slice(&jumd);
        inner.extend_from_slice(tail);
        let mut out = declared_len.to_be_bytes().to_vec();
        out.extend_from_slice(b"jumb");
        out.extend_from_slice(&inner);
        out
    }

    fn assert_bounded(credentials: &ContentCredentials) {
        assert!(credentials.validation_codes.len() <= MAX_ITEMS);
        assert!(credentials.actions.len() <= MAX_ITEMS);
        assert!(credentials.ingredients.len() <= MAX_ITEMS);
        for code in &credentials.validation_codes {
            assert!(code.explanation.chars().count() <= MAX_TEXT);
            assert!(code.code.chars().count() <= MAX_TEXT);
        }
    }

    #[test]
    fn images_without_a_manifest_have_no_credentials() {
        let reader = CredentialReader::new();
        assert!(!reader.has_trust_anchors());
        assert_eq!(reader.read(&png(64, 48), "png"), None);
        assert_eq!(reader.read(&jpeg(64, 48), "jpeg"), None);
        for format in [image::ImageFormat::Gif, image::ImageFormat::WebP] {
            let image = image::RgbaImage::from_pixel(8, 8, image::Rgba([9, 200, 30, 255]));
            let mut out = Cursor::new(Vec::new());
            image.write_to(&mut out, format).unwrap();
            let name = format.extensions_str()[0];
            assert_eq!(reader.read(out.get_ref(), name), None, "{name}");
        }
        // Not an image at all, or the wrong format name: still nothing.
        assert_eq!(reader.read(b"hello, not an image", "jpeg"), None);
        assert_eq!(reader.read(&png(16, 16), "jpeg"), None);
        assert_eq!(reader.read(b"", "png"), None);
    }

    #[test]
    fn broken_stores_are_invalid_or_absent_but_never_panic() {
        let reader = CredentialReader::new();
        let cases = [
            // A store box declaring 4 GiB, holding a few bytes.
            jpeg_with_app11(&store_box(u32::MAX, b"\x00\x00\x00\x10jumbgarbage!")),
            // A store box whose length is right but whose content is junk.
            jpeg_with_app11(&store_box((8 + 8 + 22 + 40) as u32, &[0x5a; 40])),
            // A store box cut right after its description.
            jpeg_with_app11(&store_box(8 + 8 + 22, b"")),
            // Random bytes that merely contain the marker.
            jpeg_with_app11(&[&[0u8; 20][..], &STORE_MARKER, &[0xee; 50]].concat()),
        ];
        for (i, bytes) in cases.iter().enumerate() {
            // Each carries the store marker: a store is there, unreadable.
            let credentials = reader
                .read(bytes, "jpeg")
                .unwrap_or_else(|| panic!("case {i}: a broken store is reported"));
            assert_eq!(
                credentials.state,
                CredentialState::Invalid as i32,
                "case {i}"
            );
            assert_eq!(
                credentials.validation_codes[0].code, UNREADABLE,
                "case {i}: {credentials:?}"
            );
            assert_eq!(
                credentials.validation_codes[0].kind,
                CodeKind::Failure as i32
            );
            assert_bounded(&credentials);
            // Truncated anywhere: no panic either.
            for cut in (0..bytes.len()).step_by(37) {
                if let Some(credentials) = reader.read(&bytes[..cut], "jpeg") {
                    assert_eq!(
                        credentials.state,
                        CredentialState::Invalid as i32,
                        "case {i} cut {cut}"
                    );
                    assert_bounded(&credentials);
                }
            }
        }
    }

    #[test]
    fn trust_anchors_must_hold_a_certificate() {
        let err = CredentialReader::with_trust_anchors("").unwrap_err();
        assert!(err.contains("no PEM certificate"), "{err}");
        let err = CredentialReader::with_trust_anchors("just some text\n").unwrap_err();
        assert!(err.contains("no PEM certificate"), "{err}");
        let key =
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n";
        let err = CredentialReader::with_trust_anchors(key).unwrap_err();
        assert!(err.contains("no PEM certificate"), "{err}");
        let junk = "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";
        let err = CredentialReader::with_trust_anchors(junk).unwrap_err();
        assert!(err.contains("not an X.509 certificate"), "{err}");
        let bad_base64 = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert!(CredentialReader::with_trust_anchors(bad_base64).is_err());
    }

    #[test]
    fn text_is_bounded_on_character_boundaries() {
        let long = "é".repeat(MAX_TEXT + 10);
        let cut = clean(&long);
        assert_eq!(cut.chars().count(), MAX_TEXT);
        assert_eq!(clean("a\u{1b}[31mb\nc"), "a[31mbc");
    }

    #[test]
    fn times_and_pem_are_encoded_as_expected() {
        assert_eq!(
            timestamp("2024-05-01T12:00:00+00:00"),
            Some(Timestamp {
                seconds: 1_714_564_800,
                nanos: 0
            })
        );
        assert_eq!(timestamp("yesterday"), None);
        // RFC 4648 test vectors, through the PEM body.
        let body = |der: &[u8]| {
            pem_certificate(der)
                .lines()
                .nth(1)
                .unwrap_or("")
                .to_string()
        };
        assert_eq!(body(b"f"), "Zg==");
        assert_eq!(body(b"fo"), "Zm8=");
        assert_eq!(body(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn the_reader_is_shared_across_threads() {
        fn send_sync<T: Send + Sync + Clone>() {}
        send_sync::<CredentialReader>();
        let reader = CredentialReader::default();
        let copy = reader.clone();
        std::thread::spawn(move || copy.read(&png(8, 8), "png"))
            .join()
            .unwrap();
        assert!(format!("{reader:?}").contains("has_trust_anchors"));
    }
}
