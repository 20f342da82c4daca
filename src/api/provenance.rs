//! Provenance in the API: the earliest sighting of a claim's image across
//! its copies (GetVerificationStatus, SetVerdict, FindSimilarClaims) and
//! the pre-publication checks (CheckVerdict, SetVerdict's warnings,
//! ExportClaimReview's refusal). The rules are the domain's
//! ([`crate::domain::verdict_checks`]); this gathers their inputs from the
//! store.

use super::ClaimApi;
use crate::domain::pdq::{Pdq, Transformation};
use crate::domain::verdict_checks::{self, CheckInput, CopyOf, Finding, Severity, Sighting};
use crate::domain::{Claim, ClaimView, Error, OfficialResponse, Result, Verdict};
use crate::pb;
use crate::store::{Similar, SimilarQuery, Store};
use crate::wire::convert::time_out;
use crate::wire::names::claim_name;

/// Most copies of an image whose dates are compared.
pub const MAX_SIGHTING_COPIES: usize = 1_000;
/// Most official responses the checks read.
const MAX_CHECKED_RESPONSES: usize = 1_000;

/// The copy a similarity match is.
pub fn copy_of(found: &Similar) -> CopyOf {
    CopyOf {
        exact: found.exact,
        distance: found.distance,
        transformation: found.transformation,
    }
}

/// The earliest of the matches' dated facts, with `own` (the query
/// picture's own sightings) and `extra` taken into account.
pub fn earliest_of(found: &[Similar], own: Vec<Sighting>) -> Option<Sighting> {
    let copies = found
        .iter()
        .flat_map(|f| verdict_checks::sightings_of(&f.claim.view().claim, copy_of(f)));
    verdict_checks::earliest(own.into_iter().chain(copies))
}

/// The query picture's own EXIF capture time as a sighting.
pub fn exif_sighting(exif: Option<&crate::domain::ImageExif>) -> Option<Sighting> {
    let time = verdict_checks::parse_exif_time(&exif?.capture_time)?;
    Some(Sighting {
        time,
        source: verdict_checks::SightingSource::ExifCapture,
        claim_id: None,
        exact: true,
        distance: 0,
        transformation: Transformation::Identity,
    })
}

impl<S: Store> ClaimApi<S> {
    /// CheckVerdict: the verdict in `req`, or the claim's current one when
    /// the request gives none, checked.
    pub(super) async fn check_proposed(
        &self,
        id: u64,
        req: pb::CheckVerdictRequest,
    ) -> Result<(Vec<Finding>, Option<Sighting>)> {
        let proposed =
            req.claim_rating != 0 || req.media_authenticity != 0 || !req.rationale.is_empty();
        let verdict = Verdict {
            claim_rating: req.claim_rating,
            media_authenticity: req.media_authenticity,
            rationale: req.rationale,
            ..Default::default()
        };
        if proposed {
            crate::domain::validate::validate_verdict(&verdict)?;
        }
        let view = self.store.get_claim(id).await?;
        let view = view.ok_or_else(|| Error::NotFound(req.claim.clone()))?;
        let verdict = match (proposed, &view.claim.verdict) {
            (true, _) => verdict,
            (false, Some(current)) => current.clone(),
            (false, None) => {
                return Err(Error::invalid(
                    "claim_rating",
                    "the claim has no verdict yet: give the verdict to check (claim_rating, media_authenticity, rationale)",
                ))
            }
        };
        self.check(&view, &verdict).await
    }

    /// The earliest dated sighting of `claim`'s image: its own dates and
    /// those of every claim on the same image or a near duplicate (rotated
    /// and mirrored copies included), within the server's default distance.
    pub(super) async fn earliest_sighting(&self, claim: &Claim) -> Result<Option<Sighting>> {
        let own = verdict_checks::sightings_of(
            claim,
            CopyOf {
                exact: true,
                distance: 0,
                transformation: Transformation::Identity,
            },
        );
        let Some(image) = &claim.image else {
            return Ok(verdict_checks::earliest(own));
        };
        let reliable = crate::store::image_hash_is_reliable(image);
        let query = SimilarQuery {
            sha256: (!image.sha256.is_empty()).then(|| image.sha256.clone()),
            pdq: Pdq::from_hex(&image.pdq).filter(|_| reliable),
            max_distance: self.images.default_max_distance,
            include_low_quality: false,
            before: None,
            limit: MAX_SIGHTING_COPIES,
            dihedral: true,
            variants: None,
        };
        let found = if query.sha256.is_some() || query.pdq.is_some() {
            self.store.find_similar(query).await?
        } else {
            Vec::new()
        };
        Ok(earliest_of(&found, own))
    }

    /// The pre-publication checks of `verdict` on the claim in `view`.
    pub(super) async fn check(
        &self,
        view: &ClaimView,
        verdict: &Verdict,
    ) -> Result<(Vec<Finding>, Option<Sighting>)> {
        let claim = &view.claim;
        let responses = self.all_responses(claim.id).await?;
        let earliest = self.earliest_sighting(claim).await?;
        let findings = verdict_checks::check_verdict(&CheckInput {
            claim,
            verdict,
            responses: &responses,
            earliest: earliest.as_ref(),
        });
        Ok((findings, earliest))
    }

    /// The claim's responses, oldest first (at most
    /// [`MAX_CHECKED_RESPONSES`]).
    async fn all_responses(&self, claim_id: u64) -> Result<Vec<OfficialResponse>> {
        let mut out = Vec::new();
        let mut after = None;
        while out.len() < MAX_CHECKED_RESPONSES {
            let page = self.store.list_responses(claim_id, after, 200).await?;
            out.extend(page.items);
            match page.next_cursor {
                Some(cursor) => after = Some(cursor),
                None => break,
            }
        }
        Ok(out)
    }
}

/// A sighting for the API.
pub fn sighting_out(s: &Sighting) -> pb::Sighting {
    pb::Sighting {
        time: time_out(Some(s.time)),
        source: s.source as i32,
        claim: s.claim_id.map(claim_name).unwrap_or_default(),
        exact: s.exact,
        distance: s.distance as i32,
        transformation: s.transformation as i32,
    }
}

/// A finding for the API.
pub fn finding_out(f: &Finding) -> pb::VerdictFinding {
    pb::VerdictFinding {
        code: f.code.to_string(),
        severity: match f.severity {
            Severity::Error => pb::FindingSeverity::Error,
            Severity::Warning => pb::FindingSeverity::Warning,
        } as i32,
        message: f.message.clone(),
        field: f.field.to_string(),
    }
}

/// FAILED_PRECONDITION for an export whose verdict has errors.
pub fn refuse_export(name: &str, findings: &[Finding]) -> Error {
    let errors: Vec<String> = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f| format!("{}: {}", f.code, f.message))
        .collect();
    Error::FailedPrecondition(crate::domain::Precondition {
        kind: "VERDICT_CONTRADICTS_RECORD".into(),
        subject: name.to_string(),
        description: format!(
            "the verdict contradicts the record ({}); fix the verdict, or export anyway with force",
            errors.join("; ")
        ),
    })
}
