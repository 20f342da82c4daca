//! gRPC handlers for `photoclaim.v1.ClaimService`. Each one is thin: parse
//! names and tokens, convert to domain drafts, validate, call the store,
//! convert back. Errors go through [`status::to_status`].

pub mod admin;
pub mod auth;
pub mod body_limits;
pub mod codec;
mod provenance;
mod search;
pub mod slots;
pub mod status;
pub mod watch;

use std::sync::Arc;

use prost::Message;
use tonic::{Request, Response, Status};

use crate::domain::review::{self, Publisher};
use crate::domain::{validate, ClaimStatus, Error, Timestamp, Verdict, VerificationState};
use crate::imaging;
use crate::pb::{self, claim_service_server::ClaimService};
use crate::rpc;
use crate::store::{NewClaim, NewResponse, NewVerdict, Similar, SimilarQuery, Store};
use crate::wire::convert;
use crate::wire::names::{
    self, decode_page_token, encode_page_token, page_size, parse_claim_name, Listing,
};
use slots::Caller;
use status::observe;
pub use watch::WatchOptions;

/// The authenticated identity of a caller, placed in the request's
/// extensions by an authentication layer. Without one, the caller is
/// [`ANONYMOUS`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity(pub String);

/// Response metadata key set to `true` when AttachOfficialResponse replays
/// an earlier call with the same `request_id`.
pub const REPLAYED_METADATA: &str = "photoclaim-replayed";

/// Largest encoded size of the items of one list page. Pages stop early
/// (returning fewer than `page_size` items, as AIP-158 allows) so that a
/// page of long texts stays under clients' default 4 MiB receive limit.
pub const MAX_PAGE_BYTES: usize = 3 * 1024 * 1024;

/// Takes messages while their encoded sizes add up to at most `budget`
/// bytes; with `keep_first`, the first one is taken whatever its size.
fn fitting<P: prost::Message>(
    messages: impl Iterator<Item = P>,
    budget: usize,
    keep_first: bool,
) -> Vec<P> {
    let mut out = Vec::new();
    let mut bytes = 0;
    for message in messages {
        bytes += message.encoded_len();
        if bytes > budget && !(keep_first && out.is_empty()) {
            break;
        }
        out.push(message);
    }
    out
}

/// Converts a page's items, stopping before the page would exceed
/// [`MAX_PAGE_BYTES`] (always keeping the first item); returns the items and
/// the cursor to continue after.
fn fit_page<T, P: prost::Message>(
    page: crate::domain::Page<T>,
    to_pb: impl Fn(&T) -> P,
    cursor_of: impl Fn(&T) -> u64,
) -> (Vec<P>, Option<u64>) {
    let out = fitting(page.items.iter().map(to_pb), MAX_PAGE_BYTES, true);
    if out.len() < page.items.len() {
        let cursor = cursor_of(&page.items[out.len() - 1]);
        return (out, Some(cursor));
    }
    (out, page.next_cursor)
}

/// Actor recorded for calls that carry no [`Identity`].
pub const ANONYMOUS: &str = "anonymous";

fn actor<T>(request: &Request<T>) -> String {
    request
        .extensions()
        .get::<Identity>()
        .map(|i| i.0.clone())
        .unwrap_or_else(|| ANONYMOUS.to_string())
}

/// Image limits and similarity settings of `ClaimService`.
#[derive(Clone, Copy, Debug)]
pub struct ImageOptions {
    /// Largest `image.content` / `content`, in bytes.
    pub max_image_bytes: usize,
    /// PDQ distance that counts as a near duplicate when a request does not
    /// say (FindSimilarClaims) and in RegisterClaim's `same_image_claims`.
    pub default_max_distance: u32,
}

/// Largest `max_distance` a FindSimilarClaims request may ask for.
pub const MAX_SIMILARITY_DISTANCE: i32 = 64;

/// `ClaimService` over any [`Store`].
pub struct ClaimApi<S> {
    /// Shared with the server, which flushes it at shutdown.
    store: Arc<S>,
    images: ImageOptions,
    /// One permit per core: image decodes wait for one, so memory and CPU
    /// spent on images stay bounded however many calls send them.
    decoders: Arc<tokio::sync::Semaphore>,
    watch: WatchOptions,
    /// Watch streams' slots and the byte budget of their buffers.
    watch_limits: watch::Limits,
    /// Becomes true when the server starts shutting down: watch streams end.
    shutdown: tokio::sync::watch::Receiver<bool>,
    /// Author and page URLs of published reviews (ExportClaimReview).
    publisher: Arc<Publisher>,
    /// The full-text index (SearchClaims, "checked before?"); `None` when
    /// search is off.
    search: Option<Arc<crate::search::SearchIndex>>,
    /// Reads Content Credentials from uploaded images; `None`: not read.
    credentials: Option<imaging::credentials::CredentialReader>,
}

impl<S: Store> ClaimApi<S> {
    /// A service backed by `store`, with the default image settings.
    pub fn new(store: Arc<S>) -> Self {
        Self::with_images(
            store,
            ImageOptions {
                max_image_bytes: 20 * 1024 * 1024,
                default_max_distance: 31,
            },
        )
    }

    /// A service backed by `store` with these image settings.
    pub fn with_images(store: Arc<S>, images: ImageOptions) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        ClaimApi {
            store,
            images,
            decoders: Arc::new(tokio::sync::Semaphore::new(cores)),
            watch: WatchOptions::default(),
            watch_limits: watch::Limits::new(&WatchOptions::default()),
            // A sender that is never used: no shutdown until `with_watch`.
            shutdown: tokio::sync::watch::Sender::new(false).subscribe(),
            publisher: Arc::new(Publisher::default()),
            search: None,
            credentials: Some(imaging::credentials::CredentialReader::new()),
        }
    }

    /// The same service reading Content Credentials with `reader` (`None`:
    /// not at all).
    pub fn with_credentials(
        mut self,
        reader: Option<imaging::credentials::CredentialReader>,
    ) -> Self {
        self.credentials = reader;
        self
    }

    /// The same service, searching `index` (kept up to date by the caller,
    /// with [`crate::search::start`]).
    pub fn with_search(mut self, index: Arc<crate::search::SearchIndex>) -> Self {
        self.search = Some(index);
        self
    }

    /// Sets WatchClaimEvents' buffer and stall timeout, and the signal that
    /// ends every stream at shutdown.
    pub fn with_watch(
        mut self,
        options: WatchOptions,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        self.watch = options;
        self.watch_limits = watch::Limits::new(&options);
        self.shutdown = shutdown;
        self
    }

    /// The same service, publishing reviews as `publisher` (checked by the
    /// caller with [`Publisher::validate`]).
    pub fn with_publisher(mut self, publisher: Publisher) -> Self {
        self.publisher = Arc::new(publisher);
        self
    }

    /// Analyses image bytes off the async runtime (decoding is CPU-bound).
    async fn analyze(
        &self,
        content: Vec<u8>,
        field: &'static str,
    ) -> Result<imaging::ImageFacts, Error> {
        if content.len() > self.images.max_image_bytes {
            return Err(Error::invalid(
                field,
                format!(
                    "is {} bytes; the largest image accepted is {} bytes",
                    content.len(),
                    self.images.max_image_bytes
                ),
            ));
        }
        let permit = self
            .decoders
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::Internal(format!("image decoder slots closed: {e}")))?;
        let reader = self.credentials.clone();
        tokio::task::spawn_blocking(move || {
            let facts = imaging::analyze_with(&content, field, reader.as_ref());
            drop(permit);
            facts
        })
        .await
        .map_err(|e| Error::Internal(format!("image analysis failed: {e}")))?
    }
}

/// A found claim as a match; its encoding is kept with the cached claim,
/// so a claim found again is not encoded again.
fn image_match(found: Similar) -> pb::ImageMatch {
    let claim = found
        .claim
        .encoding(|view| convert::claim_out(view).encode_to_vec().into());
    pb::ImageMatch::encoded(claim, found.exact, found.distance as i32)
        .with_transformation(found.transformation as i32)
}

#[tonic::async_trait]
impl<S: Store> ClaimService for ClaimApi<S> {
    async fn register_claim(
        &self,
        request: Request<pb::RegisterClaimRequest>,
    ) -> Result<Response<pb::RegisterClaimResponse>, Status> {
        let actor = actor(&request);
        let req = request.into_inner();
        observe(&rpc::REGISTER_CLAIM, "", async {
            validate::validate_request_id(&req.request_id)?;
            let Some(claim) = req.claim else {
                return Err(Error::invalid("claim", "is required"));
            };
            let (mut draft, content) = convert::claim_draft(claim);
            let mut variants = None;
            if !content.is_empty() {
                let facts = self.analyze(content, "claim.image.content").await?;
                variants = Some(facts.pdq_variants);
                let image = draft.image.get_or_insert_with(Default::default);
                if !image.sha256.is_empty() {
                    validate::validate_sha256(&image.sha256, "claim.image.sha256")?;
                }
                if !image.sha256.is_empty() && image.sha256 != facts.sha256 {
                    return Err(Error::invalid(
                        "claim.image.sha256",
                        format!(
                            "does not match image.content, whose SHA-256 is {}",
                            facts.sha256
                        ),
                    ));
                }
                if !image.pdq.is_empty() {
                    return Err(Error::invalid(
                        "claim.image.pdq",
                        "is computed from image.content; send one or the other",
                    ));
                }
                image.sha256 = facts.sha256;
                image.pdq = facts.pdq;
                image.pdq_quality = facts.pdq_quality;
                image.pdq_quality_known = true;
                image.width = facts.width;
                image.height = facts.height;
                image.format = facts.format;
                image.exif = facts.exif;
                image.content_credentials = facts.content_credentials;
            } else if let Some(image) = draft.image.as_mut() {
                image.pdq = image.pdq.to_ascii_lowercase();
                image.pdq_quality_known = image.pdq_quality != 0;
                if image.pdq.bytes().all(|b| b == b'0') && !image.pdq.is_empty() {
                    // The hash of a featureless (flat) image: it would match
                    // every other flat image, so it is never reliable.
                    image.pdq_quality = 0;
                    image.pdq_quality_known = true;
                }
            }
            validate::validate_new_claim(&draft, Timestamp::now())?;
            let registered = self
                .store
                .register_claim(NewClaim {
                    claim: draft,
                    request_id: req.request_id,
                    actor,
                    near_distance: self.images.default_max_distance,
                    dihedral: !req.same_orientation_only,
                    variants,
                })
                .await?;
            let checked_before = self.checked_before(&registered.claim).await;
            let claim = convert::claim_into(registered.claim);
            tracing::Span::current().record("claim", claim.name.as_str());
            // Same budget as a list page, so that the reply stays under
            // clients' default 4 MiB limit even when earlier claims on the
            // image are long.
            let matches = registered.same_image.into_iter().map(image_match);
            let budget = MAX_PAGE_BYTES.saturating_sub(claim.encoded_len());
            let same_image_claims = fitting(matches, budget, false);
            let used: usize = same_image_claims.iter().map(|m| m.encoded_len()).sum();
            Ok(pb::RegisterClaimResponse {
                checked_before: fitting(
                    checked_before.into_iter(),
                    budget.saturating_sub(used),
                    false,
                ),
                same_image_claims,
                claim: Some(claim),
                replayed: registered.replayed,
            })
        })
        .await
    }

    async fn get_claim(
        &self,
        request: Request<pb::GetClaimRequest>,
    ) -> Result<Response<pb::Claim>, Status> {
        let req = request.into_inner();
        observe(&rpc::GET_CLAIM, &req.name, async {
            let id = parse_claim_name(&req.name, "name")?;
            let view = self.store.get_claim(id).await?;
            let view = view.ok_or_else(|| Error::NotFound(req.name.clone()))?;
            Ok(convert::claim_into(view))
        })
        .await
    }

    async fn list_claims(
        &self,
        request: Request<pb::ListClaimsRequest>,
    ) -> Result<Response<pb::ListClaimsResponse>, Status> {
        let req = request.into_inner();
        observe(&rpc::LIST_CLAIMS, "", async {
            let limit = page_size(req.page_size)?;
            let state = match VerificationState::try_from(req.state) {
                Err(_) => {
                    return Err(Error::invalid(
                        "state",
                        format!("{} is not a known value", req.state),
                    ))
                }
                Ok(VerificationState::Unspecified) => None,
                Ok(state) => Some(state),
            };
            let scope = req.state as u64;
            let key = self.store.page_token_key();
            let before = decode_page_token(&key, &req.page_token, Listing::Claims, scope)?;
            let page = self.store.list_claims(state, before, limit).await?;
            let (claims, next) = fit_page(page, convert::claim_out, |v| v.claim.id);
            Ok(pb::ListClaimsResponse {
                claims,
                next_page_token: encode_page_token(&key, Listing::Claims, scope, next),
            })
        })
        .await
    }

    async fn attach_official_response(
        &self,
        request: Request<pb::AttachOfficialResponseRequest>,
    ) -> Result<Response<pb::OfficialResponse>, Status> {
        let actor = actor(&request);
        let req = request.into_inner();
        observe(&rpc::ATTACH_OFFICIAL_RESPONSE, &req.parent, async {
            let claim_id = parse_claim_name(&req.parent, "parent")?;
            validate::validate_request_id(&req.request_id)?;
            let Some(response) = req.official_response else {
                return Err(Error::invalid("official_response", "is required"));
            };
            let in_reply_to = if response.in_reply_to.is_empty() {
                0
            } else {
                let field = "official_response.in_reply_to";
                let (reply_claim, reply_id) =
                    names::parse_response_name(&response.in_reply_to, field)?;
                if reply_claim != claim_id {
                    return Err(Error::invalid(
                        field,
                        format!("must name a response of {}", req.parent),
                    ));
                }
                reply_id
            };
            let draft = convert::response_draft(response, in_reply_to);
            validate::validate_new_response(&draft, Timestamp::now())?;
            let attached = self
                .store
                .attach_response(NewResponse {
                    claim_id,
                    response: draft,
                    request_id: req.request_id,
                    actor,
                })
                .await?;
            Ok((convert::response_out(&attached.response), attached.replayed))
        })
        .await
        .map(|response| {
            // OfficialResponse is a resource and has no `replayed` field, so
            // a replay is signalled in the response metadata instead.
            let (body, replayed) = response.into_inner();
            let mut response = Response::new(body);
            if replayed {
                response
                    .metadata_mut()
                    .insert(REPLAYED_METADATA, "true".parse().expect("ASCII value"));
            }
            response
        })
    }

    async fn list_official_responses(
        &self,
        request: Request<pb::ListOfficialResponsesRequest>,
    ) -> Result<Response<pb::ListOfficialResponsesResponse>, Status> {
        let req = request.into_inner();
        observe(&rpc::LIST_OFFICIAL_RESPONSES, &req.parent, async {
            let claim_id = parse_claim_name(&req.parent, "parent")?;
            let limit = page_size(req.page_size)?;
            let key = self.store.page_token_key();
            let after = decode_page_token(&key, &req.page_token, Listing::Responses, claim_id)?;
            let page = self.store.list_responses(claim_id, after, limit).await?;
            let (official_responses, next) = fit_page(page, convert::response_out, |r| r.id);
            Ok(pb::ListOfficialResponsesResponse {
                official_responses,
                next_page_token: encode_page_token(&key, Listing::Responses, claim_id, next),
            })
        })
        .await
    }

    async fn get_verification_status(
        &self,
        request: Request<pb::GetVerificationStatusRequest>,
    ) -> Result<Response<pb::VerificationStatus>, Status> {
        let req = request.into_inner();
        observe(&rpc::GET_VERIFICATION_STATUS, &req.claim, async {
            let id = parse_claim_name(&req.claim, "claim")?;
            let view = self.store.get_status(id).await?;
            let view = view.ok_or_else(|| Error::NotFound(req.claim.clone()))?;
            let mut status = convert::status_out(view.status, view.latest_response.as_ref());
            if req.include_earliest_sighting {
                if let Some(claim) = self.store.get_claim(id).await? {
                    let earliest = self.earliest_sighting(&claim.claim).await?;
                    status.earliest_sighting = earliest.as_ref().map(provenance::sighting_out);
                }
            }
            Ok(status)
        })
        .await
    }

    async fn set_verdict(
        &self,
        request: Request<pb::SetVerdictRequest>,
    ) -> Result<Response<pb::VerificationStatus>, Status> {
        let actor = actor(&request);
        let req = request.into_inner();
        observe(&rpc::SET_VERDICT, &req.claim, async {
            let claim_id = parse_claim_name(&req.claim, "claim")?;
            let verdict = Verdict {
                claim_rating: req.claim_rating,
                media_authenticity: req.media_authenticity,
                rationale: req.rationale,
                ..Default::default()
            };
            validate::validate_verdict(&verdict)?;
            let view = self
                .store
                .set_verdict(NewVerdict {
                    claim_id,
                    verdict,
                    etag: (!req.etag.is_empty()).then_some(req.etag),
                    actor,
                })
                .await?;
            let recorded = view.claim.verdict.clone().unwrap_or_default();
            // The verdict is recorded: a failure of the checks must not
            // turn its reply into an error.
            let checked = self.check(&view, &recorded).await;
            let mut status = convert::status_out(
                ClaimStatus::from(&view.claim),
                view.latest_response.as_ref(),
            );
            match checked {
                Ok((findings, earliest)) => {
                    status.verdict_findings =
                        findings.iter().map(provenance::finding_out).collect();
                    status.earliest_sighting = earliest.as_ref().map(provenance::sighting_out);
                }
                Err(err) => tracing::warn!(%err, "pre-publication checks failed after SetVerdict"),
            }
            Ok(status)
        })
        .await
    }

    async fn list_claim_events(
        &self,
        request: Request<pb::ListClaimEventsRequest>,
    ) -> Result<Response<pb::ListClaimEventsResponse>, Status> {
        let req = request.into_inner();
        observe(&rpc::LIST_CLAIM_EVENTS, &req.claim, async {
            let claim_id = parse_claim_name(&req.claim, "claim")?;
            let limit = page_size(req.page_size)?;
            let key = self.store.page_token_key();
            let after = decode_page_token(&key, &req.page_token, Listing::Events, claim_id)?;
            let page = self.store.list_events(claim_id, after, limit).await?;
            let (events, next) = fit_page(page, convert::event_out, |e| e.sequence);
            Ok(pb::ListClaimEventsResponse {
                events,
                next_page_token: encode_page_token(&key, Listing::Events, claim_id, next),
            })
        })
        .await
    }

    type WatchClaimEventsStream = watch::EventStream;

    async fn watch_claim_events(
        &self,
        request: Request<pb::WatchClaimEventsRequest>,
    ) -> Result<Response<Self::WatchClaimEventsStream>, Status> {
        // Streams are counted per caller; without the guard (a service
        // used on its own) every caller counts as one reader.
        let caller = request
            .extensions()
            .get::<Caller>()
            .cloned()
            .unwrap_or(Caller {
                key: ANONYMOUS.to_string(),
                role: crate::domain::access::Role::Reader,
            });
        let req = request.into_inner();
        let claim = req.claim.clone();
        observe(&rpc::WATCH_CLAIM_EVENTS, &claim, async {
            let request = watch::validate(self.store.as_ref(), req).await?;
            watch::start(
                self.store.clone(),
                request,
                self.watch,
                &self.watch_limits,
                &caller,
                self.shutdown.clone(),
            )
        })
        .await
    }

    async fn export_claim_review(
        &self,
        request: Request<pb::ExportClaimReviewRequest>,
    ) -> Result<Response<pb::ExportClaimReviewResponse>, Status> {
        // Overriding the pre-publication checks is the desk's decision:
        // readers may export, not force. (Without the guard, as when the
        // service is embedded, there is no caller to check.)
        let forcing_role = request.extensions().get::<Caller>().map(|c| c.role);
        if request.get_ref().force
            && forcing_role.is_some_and(|role| role < crate::domain::access::Role::Desk)
        {
            return Err(Status::permission_denied(
                "ExportClaimReview with force (past the pre-publication checks) needs the desk role",
            ));
        }
        let req = request.into_inner();
        observe(&rpc::EXPORT_CLAIM_REVIEW, &req.claim, async {
            let id = parse_claim_name(&req.claim, "claim")?;
            let view = self.store.get_claim(id).await?;
            let view = view.ok_or_else(|| Error::NotFound(req.claim.clone()))?;
            let reviews = review::reviews(&view.claim, &self.publisher)?;
            let verdict = view.claim.verdict.clone().unwrap_or_default();
            let (findings, _) = self.check(&view, &verdict).await?;
            let errors = findings
                .iter()
                .any(|f| f.severity == crate::domain::verdict_checks::Severity::Error);
            if errors && !req.force {
                return Err(provenance::refuse_export(&req.claim, &findings));
            }
            Ok(pb::ExportClaimReviewResponse {
                claim_review: reviews.claim_review.to_string(),
                media_review: reviews
                    .media_review
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
                findings: findings.iter().map(provenance::finding_out).collect(),
            })
        })
        .await
    }

    async fn find_similar_claims(
        &self,
        request: Request<pb::FindSimilarClaimsRequest>,
    ) -> Result<Response<pb::FindSimilarClaimsResponse>, Status> {
        let req = request.into_inner();
        observe(&rpc::FIND_SIMILAR_CLAIMS, "", async {
            let given = [
                !req.content.is_empty(),
                !req.sha256.is_empty(),
                !req.pdq.is_empty(),
            ];
            if given.iter().filter(|g| **g).count() != 1 {
                return Err(Error::invalid(
                    "content",
                    "give exactly one of content, sha256 and pdq",
                ));
            }
            let max_distance = match req.max_distance {
                None => self.images.default_max_distance,
                Some(d) if (0..=MAX_SIMILARITY_DISTANCE).contains(&d) => d as u32,
                Some(d) => {
                    return Err(Error::invalid(
                        "max_distance",
                        format!("{d} is out of range: 0 to {MAX_SIMILARITY_DISTANCE}"),
                    ))
                }
            };
            let limit = page_size(req.page_size)?;
            let mut reply = pb::FindSimilarClaimsResponse::default();
            let mut query = SimilarQuery {
                max_distance,
                include_low_quality: req.include_low_quality,
                // All copies, for the earliest sighting; the page is cut below.
                limit: limit.max(provenance::MAX_SIGHTING_COPIES),
                dihedral: !req.same_orientation_only,
                ..Default::default()
            };
            let mut own = Vec::new();
            if !req.content.is_empty() {
                let facts = self.analyze(req.content, "content").await?;
                reply.query_pdq = facts.pdq.clone();
                reply.query_pdq_quality = facts.pdq_quality;
                reply.query_low_quality = !crate::domain::pdq::is_reliable(facts.pdq_quality);
                query.sha256 = Some(facts.sha256);
                query.pdq = crate::domain::pdq::Pdq::from_hex(&facts.pdq)
                    .filter(|_| req.include_low_quality || !reply.query_low_quality);
                query.variants = Some(facts.pdq_variants);
                reply.query_content_credentials = facts
                    .content_credentials
                    .as_ref()
                    .map(convert::credentials_out);
                own.extend(provenance::exif_sighting(facts.exif.as_ref()));
            } else if !req.sha256.is_empty() {
                validate::validate_sha256(&req.sha256, "sha256")?;
                query.sha256 = Some(req.sha256);
            } else {
                let pdq = crate::domain::pdq::Pdq::from_hex(&req.pdq).ok_or_else(|| {
                    Error::invalid("pdq", "must be 64 hex characters (a 256-bit PDQ hash)")
                })?;
                reply.query_pdq = pdq.to_hex();
                // A flat image's hash (all zeros) matches every flat image.
                reply.query_low_quality = pdq.0 == [0; 32];
                query.pdq =
                    Some(pdq).filter(|_| req.include_low_quality || !reply.query_low_quality);
            }
            let sha256 = query.sha256.clone().unwrap_or_default();
            let mut found = self.store.find_similar(query).await?;
            reply.earliest_sighting = provenance::earliest_of(&found, own)
                .as_ref()
                .map(provenance::sighting_out);
            found.truncate(limit);
            reply.matches = fitting(found.into_iter().map(image_match), MAX_PAGE_BYTES, false);
            reply.external_reviews = self.reviews_of_image(&sha256).await?;
            Ok(reply)
        })
        .await
    }

    async fn check_verdict(
        &self,
        request: Request<pb::CheckVerdictRequest>,
    ) -> Result<Response<pb::CheckVerdictResponse>, Status> {
        let req = request.into_inner();
        let name = req.claim.clone();
        observe(&rpc::CHECK_VERDICT, &name, async {
            let id = parse_claim_name(&req.claim, "claim")?;
            let (findings, earliest) = self.check_proposed(id, req).await?;
            Ok(pb::CheckVerdictResponse {
                findings: findings.iter().map(provenance::finding_out).collect(),
                earliest_sighting: earliest.as_ref().map(provenance::sighting_out),
            })
        })
        .await
    }

    async fn search_claims(
        &self,
        request: Request<pb::SearchClaimsRequest>,
    ) -> Result<Response<pb::SearchClaimsResponse>, Status> {
        let req = request.into_inner();
        observe(&rpc::SEARCH_CLAIMS, "", self.search_claims_now(req)).await
    }

    async fn import_claim_reviews(
        &self,
        request: Request<pb::ImportClaimReviewsRequest>,
    ) -> Result<Response<pb::ImportClaimReviewsResponse>, Status> {
        let actor = actor(&request);
        let req = request.into_inner();
        observe(
            &rpc::IMPORT_CLAIM_REVIEWS,
            "",
            self.import_claim_reviews_now(req, actor),
        )
        .await
    }

    async fn get_external_review(
        &self,
        request: Request<pb::GetExternalReviewRequest>,
    ) -> Result<Response<pb::ExternalReview>, Status> {
        let req = request.into_inner();
        let name = req.name.clone();
        observe(
            &rpc::GET_EXTERNAL_REVIEW,
            &name,
            self.get_external_review_now(req),
        )
        .await
    }

    async fn list_external_reviews(
        &self,
        request: Request<pb::ListExternalReviewsRequest>,
    ) -> Result<Response<pb::ListExternalReviewsResponse>, Status> {
        let req = request.into_inner();
        observe(
            &rpc::LIST_EXTERNAL_REVIEWS,
            "",
            self.list_external_reviews_now(req),
        )
        .await
    }
}
