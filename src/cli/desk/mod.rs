//! `photoclaim claim ...`: the desk CLI. Talks to a running server over gRPC
//! (the same connection flags as `photoclaim keys --server`, see
//! [`crate::client`]) so that people can record and read claims without
//! writing grpcurl JSON.
//!
//! Output is plain text by default; `--json` prints the reply in the
//! canonical proto3 JSON mapping ([`crate::pb::to_json`], what grpcurl
//! prints). Commands that create something print its name alone on the first
//! line, so scripts can capture it with `head -n 1`.
//!
//! Errors go to standard error as `error: <CODE>: <message>` (a field the
//! server refused is named by the flag that set it), with `hint:` lines;
//! the exit code tells the class (see [`crate::cli::ExitClass`]).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use tonic::transport::Channel;
use tonic_types::StatusExt;

use crate::cli::keys::format_time;
use crate::cli::{code_name, Failure};
use crate::client::ServerTarget;
use crate::outln;
use crate::pb;
use crate::pb::claim_service_client::ClaimServiceClient;

mod args;
mod format;
mod helpers;
mod search;
use args::*;
pub use args::{ClaimArgs, ReviewsArgs};
use format::{
    event_details, event_type_word, excerpt, print_claim_body, print_response_body,
    print_status_body, state_word, verdict_words,
};
use helpers::*;
pub use search::run_reviews;

type Outcome = Result<(), Failure>;

/// Runs `photoclaim claim ...`.
pub async fn run(args: ClaimArgs) -> Outcome {
    let mut desk = Desk::connect(&args.connection, args.json).await?;
    match args.command {
        ClaimCommand::Register(a) => desk.register(*a).await,
        ClaimCommand::Show { claim } => desk.show(claim).await,
        ClaimCommand::List { state, limit } => desk.list(state, limit).await,
        ClaimCommand::Status { claim } => desk.status(claim).await,
        ClaimCommand::Respond(a) => desk.respond(*a).await,
        ClaimCommand::Verdict(a) => desk.verdict(*a).await,
        ClaimCommand::History { claim } => desk.history(claim).await,
        ClaimCommand::Watch(a) => desk.watch(a).await,
        ClaimCommand::Similar(a) => desk.similar(a).await,
        ClaimCommand::Check(a) => desk.check(*a).await,
        ClaimCommand::Review(a) => desk.review(a).await,
        ClaimCommand::Search(a) => desk.search(*a).await,
    }
}

/// A connected client and how to print.
struct Desk {
    /// The ClaimService client over one channel (tonic reconnects it).
    client: ClaimServiceClient<Channel>,
    /// Token and URL, to authorize each request.
    target: ServerTarget,
    /// `--json`.
    json: bool,
}

impl Desk {
    /// Connects to the server the flags name.
    async fn connect(c: &ConnectionArgs, json: bool) -> Result<Desk, Failure> {
        let target = c
            .credentials
            .target(c.server.clone())
            .map_err(Failure::usage)?;
        let channel = target.connect().await?;
        Ok(Desk {
            client: ClaimServiceClient::new(channel),
            target,
            json,
        })
    }

    fn request<T>(&self, body: T) -> Result<tonic::Request<T>, Failure> {
        self.target.request(body).map_err(Failure::usage)
    }

    fn print_json<M: prost::Message>(&self, message: &M, full_name: &str) {
        outln!("{}", pb::to_json_text(message, full_name, true));
    }

    async fn register(&mut self, a: RegisterArgs) -> Outcome {
        let content = match &a.image_file {
            Some(path) => read_image_file(path)?,
            None => Vec::new(),
        };
        let request_id = a.request_id.unwrap_or_else(fresh_request_id);
        let claim = pb::Claim {
            claim_text: a.text,
            claimant: a.claimant.unwrap_or_default(),
            language: a.language,
            appearance_urls: a.appearance_urls,
            first_seen_time: a.first_seen,
            event_time: a.event,
            tags: a.tags,
            image: Some(pb::Image {
                source_url: a.image_url.unwrap_or_default(),
                sha256: a.image_sha256.unwrap_or_default(),
                credit: a.credit.unwrap_or_default(),
                publisher: a.publisher.unwrap_or_default(),
                published_time: a.published,
                captured_time: a.captured,
                location: a.location.unwrap_or_default(),
                caption: a.caption.unwrap_or_default(),
                content,
                ..Default::default()
            }),
            ..Default::default()
        };
        let reply = self
            .client
            .register_claim(self.request(pb::RegisterClaimRequest {
                request_id: request_id.clone(),
                claim: Some(claim),
                ..Default::default()
            })?)
            .await
            .map_err(|s| in_flag_words(s, REGISTER_FLAGS))?
            .into_inner();
        if self.json {
            self.print_json(&reply, "photoclaim.v1.RegisterClaimResponse");
            return Ok(());
        }
        let claim = reply.claim.unwrap_or_default();
        outln!("{}", claim.name);
        if reply.replayed {
            outln!("  (already registered with request id {request_id}: nothing new was written)");
        } else {
            outln!("  registered; request id {request_id} (repeat it with --request-id to retry safely)");
        }
        print_claim_body(&claim);
        if reply.same_image_claims.is_empty() {
            outln!("same image: no other claim on this image or a near duplicate");
        } else {
            outln!("same image ({}):", reply.same_image_claims.len());
            for m in &reply.same_image_claims {
                let other = m.claim.clone().unwrap_or_default();
                let status = other.verification_status.clone().unwrap_or_default();
                let how = match (m.exact, m.transformation) {
                    (true, _) => "exact".to_string(),
                    (false, 0 | 1) => format!("distance {}", m.distance),
                    (false, t) => format!(
                        "distance {}, {}",
                        m.distance,
                        format::transformation_word(t)
                    ),
                };
                outln!(
                    "  {:<12} {:<12} {:<12} {}  {}",
                    other.name,
                    how,
                    state_word(status.state),
                    verdict_words(&status),
                    excerpt(&other.claim_text, 60)
                );
            }
        }
        Ok(())
    }

    async fn get_claim(&mut self, name: String) -> Result<pb::Claim, Failure> {
        Ok(self
            .client
            .get_claim(self.request(pb::GetClaimRequest { name })?)
            .await?
            .into_inner())
    }

    async fn show(&mut self, name: String) -> Outcome {
        let claim = self.get_claim(name).await?;
        if self.json {
            self.print_json(&claim, "photoclaim.v1.Claim");
        } else {
            outln!("{}", claim.name);
            print_claim_body(&claim);
            if let Some(status) = &claim.verification_status {
                print_status_body(status);
            }
        }
        Ok(())
    }

    async fn list(&mut self, state: Option<StateArg>, limit: Option<usize>) -> Outcome {
        let state = state.map_or(pb::VerificationState::Unspecified, Into::into);
        let limit = limit.unwrap_or(usize::MAX);
        let mut claims = Vec::new();
        let mut page_token = String::new();
        let mut more = false;
        while claims.len() < limit {
            let page = self
                .client
                .list_claims(self.request(pb::ListClaimsRequest {
                    page_size: (limit - claims.len()).min(1000) as i32,
                    page_token,
                    state: state as i32,
                })?)
                .await?
                .into_inner();
            claims.extend(page.claims);
            page_token = page.next_page_token;
            if page_token.is_empty() {
                break;
            }
            more = claims.len() >= limit;
        }
        claims.truncate(limit);
        if self.json {
            let reply = pb::ListClaimsResponse {
                claims,
                next_page_token: String::new(),
            };
            self.print_json(&reply, "photoclaim.v1.ListClaimsResponse");
            return Ok(());
        }
        outln!(
            "{:<12} {:<12} {:<34} {:<20} CLAIM",
            "NAME",
            "STATE",
            "VERDICT",
            "UPDATED"
        );
        for claim in &claims {
            let status = claim.verification_status.clone().unwrap_or_default();
            outln!(
                "{:<12} {:<12} {:<34} {:<20} {}",
                claim.name,
                state_word(status.state),
                verdict_words(&status),
                format_time(claim.update_time.as_ref()),
                excerpt(&claim.claim_text, 60)
            );
        }
        if more {
            eprintln!("(more claims exist; raise --limit to see them)");
        }
        Ok(())
    }

    async fn get_status(&mut self, claim: String) -> Result<pb::VerificationStatus, Failure> {
        self.status_of(claim, false).await
    }

    /// The status, with the image's earliest sighting when `sighting`.
    async fn status_of(
        &mut self,
        claim: String,
        sighting: bool,
    ) -> Result<pb::VerificationStatus, Failure> {
        Ok(self
            .client
            .get_verification_status(self.request(pb::GetVerificationStatusRequest {
                claim,
                include_earliest_sighting: sighting,
            })?)
            .await?
            .into_inner())
    }

    async fn status(&mut self, claim: String) -> Outcome {
        let status = self.status_of(claim, true).await?;
        if self.json {
            self.print_json(&status, "photoclaim.v1.VerificationStatus");
        } else {
            outln!("{}", status.claim);
            print_status_body(&status);
        }
        Ok(())
    }

    async fn respond(&mut self, a: RespondArgs) -> Outcome {
        let in_reply_to = match a.in_reply_to {
            None => String::new(),
            Some(r) if r.bytes().all(|b| b.is_ascii_digit()) && !r.is_empty() => {
                format!("{}/officialResponses/{r}", a.claim)
            }
            Some(r) => r,
        };
        let request_id = a.request_id.unwrap_or_else(fresh_request_id);
        let response = pb::OfficialResponse {
            responder: Some(pb::Responder {
                organization: a.organization,
                person: a.person.unwrap_or_default(),
                role: a.role.map_or(pb::ResponderRole::Unspecified, Into::into) as i32,
            }),
            kind: pb::ResponseKind::from(a.kind) as i32,
            stance: pb::Stance::from(a.stance) as i32,
            text: a.text,
            language: a.language,
            source_url: a.source_url.unwrap_or_default(),
            issue_time: a.issued,
            in_reply_to,
            ..Default::default()
        };
        let reply = self
            .client
            .attach_official_response(self.request(pb::AttachOfficialResponseRequest {
                parent: a.claim,
                request_id: request_id.clone(),
                official_response: Some(response),
            })?)
            .await
            .map_err(|s| in_flag_words(s, RESPOND_FLAGS))?;
        let replayed = reply
            .metadata()
            .get("photoclaim-replayed")
            .is_some_and(|v| v == "true");
        let response = reply.into_inner();
        if self.json {
            self.print_json(&response, "photoclaim.v1.OfficialResponse");
            return Ok(());
        }
        outln!("{}", response.name);
        if replayed {
            outln!("  (already attached with request id {request_id}: nothing new was written)");
        } else {
            outln!(
                "  attached; request id {request_id} (repeat it with --request-id to retry safely)"
            );
        }
        print_response_body(&response);
        Ok(())
    }

    async fn verdict(&mut self, a: VerdictArgs) -> Outcome {
        let etag = match a.etag {
            Some(etag) => etag,
            None => self.get_status(a.claim.clone()).await?.etag,
        };
        let result = self
            .client
            .set_verdict(self.request(pb::SetVerdictRequest {
                claim: a.claim.clone(),
                claim_rating: pb::ClaimRating::from(a.rating) as i32,
                media_authenticity: pb::MediaAuthenticity::from(a.media) as i32,
                rationale: a.rationale,
                etag: etag.clone(),
            })?)
            .await;
        let status = match result {
            Ok(reply) => reply.into_inner(),
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::Aborted | tonic::Code::FailedPrecondition
                ) =>
            {
                return Err(Failure::from(s).hint(format!(
                    "the verdict was NOT set: {} changed after etag {etag} was read (a response \
                     or another verdict arrived). Check `photoclaim claim status {}` and try again.",
                    a.claim, a.claim
                )));
            }
            Err(s) => return Err(in_flag_words(s, VERDICT_FLAGS)),
        };
        if self.json {
            self.print_json(&status, "photoclaim.v1.VerificationStatus");
        } else {
            outln!("{}", status.claim);
            print_status_body(&status);
        }
        Ok(())
    }

    async fn history(&mut self, claim: String) -> Outcome {
        let mut events = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = self
                .client
                .list_claim_events(self.request(pb::ListClaimEventsRequest {
                    claim: claim.clone(),
                    page_size: 1000,
                    page_token,
                })?)
                .await?
                .into_inner();
            events.extend(page.events);
            page_token = page.next_page_token;
            if page_token.is_empty() {
                break;
            }
        }
        if self.json {
            let reply = pb::ListClaimEventsResponse {
                events,
                next_page_token: String::new(),
            };
            self.print_json(&reply, "photoclaim.v1.ListClaimEventsResponse");
            return Ok(());
        }
        outln!(
            "{:>4} {:<20} {:<26} {:<16} {:<10} DETAILS",
            "SEQ",
            "TIME",
            "EVENT",
            "ACTOR",
            "STATE"
        );
        for event in &events {
            outln!(
                "{:>4} {:<20} {:<26} {:<16} {:<10} {}",
                event.sequence,
                format_time(event.time.as_ref()),
                event_type_word(event.r#type),
                event.actor,
                state_word(event.state),
                event_details(event)
            );
        }
        Ok(())
    }

    async fn watch(&mut self, a: WatchArgs) -> Outcome {
        const MAX_BACKOFF: Duration = Duration::from_secs(5);
        /// Consecutive interruptions without a new event before giving up.
        const MAX_RETRIES: u32 = 10;
        let event_types: Vec<i32> = a
            .types
            .iter()
            .map(|t| pb::ClaimEventType::from(*t) as i32)
            .collect();
        let mut cursor = a.after.unwrap_or_default();
        let mut seen: u64 = 0;
        let mut retries = 0;
        let mut backoff = Duration::from_millis(250);
        if a.count == Some(0) {
            return Ok(());
        }
        loop {
            let request = self.request(pb::WatchClaimEventsRequest {
                claim: a.claim.clone().unwrap_or_default(),
                event_types: event_types.clone(),
                after_cursor: cursor.clone(),
                // From now on, unless asked to replay or resuming.
                start_at_end: !a.from_start && cursor.is_empty(),
            })?;
            let interrupted = match self.client.watch_claim_events(request).await {
                Err(status) => status,
                Ok(reply) => {
                    let mut stream = reply.into_inner();
                    loop {
                        match stream.message().await {
                            Ok(Some(event)) => {
                                self.print_event(&event);
                                cursor.clone_from(&event.cursor);
                                seen += 1;
                                retries = 0;
                                backoff = Duration::from_millis(250);
                                if a.count.is_some_and(|n| seen >= n) {
                                    return Ok(());
                                }
                            }
                            Ok(None) => return Ok(()),
                            Err(status) => break status,
                        }
                    }
                }
            };
            if interrupted.code() == tonic::Code::Unimplemented {
                return Err(Failure::from(interrupted)
                    .hint("this server does not offer WatchClaimEvents yet"));
            }
            let resume = resume_cursor(&interrupted, &cursor);
            if let Some(resume) = &resume {
                cursor.clone_from(resume);
            }
            if a.no_resume || resume.is_none() || retries >= MAX_RETRIES {
                let mut failure = Failure::from(interrupted);
                if !cursor.is_empty() {
                    failure = failure.hint(format!("resume with --after {cursor}"));
                }
                return Err(failure);
            }
            retries += 1;
            eprintln!(
                "stream interrupted ({}: {}); reconnecting in {} ms{}",
                code_name(interrupted.code()),
                interrupted.message(),
                backoff.as_millis(),
                if cursor.is_empty() {
                    String::new()
                } else {
                    format!(" from cursor {cursor}")
                }
            );
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn similar(&mut self, a: SimilarArgs) -> Outcome {
        let content = match &a.image.image_file {
            Some(path) => read_image_file(path)?,
            None => Vec::new(),
        };
        let reply = self
            .client
            .find_similar_claims(self.request(pb::FindSimilarClaimsRequest {
                content,
                sha256: a.image.sha256.unwrap_or_default(),
                pdq: a.image.pdq.unwrap_or_default(),
                max_distance: a.max_distance,
                include_low_quality: a.include_low_quality,
                page_size: a.limit,
                same_orientation_only: a.same_orientation_only,
            })?)
            .await
            .map_err(|s| in_flag_words(s, SIMILAR_FLAGS))?
            .into_inner();
        if self.json {
            self.print_json(&reply, "photoclaim.v1.FindSimilarClaimsResponse");
            return Ok(());
        }
        if !reply.query_pdq.is_empty() {
            eprintln!(
                "query pdq {}{}",
                reply.query_pdq,
                match reply.query_pdq_quality {
                    0 => String::new(),
                    q => format!(" (quality {q} of 100)"),
                }
            );
        }
        if reply.query_low_quality {
            eprintln!(
                "the image is too featureless (PDQ quality below 50) for near-duplicate \
                 matching: only exact copies are listed (--include-low-quality to match anyway)"
            );
        }
        if reply.matches.is_empty() {
            eprintln!("no claim on this image or a near duplicate");
        } else {
            self.print_matches(&reply.matches);
        }
        // After the table, which scripts read from its first line.
        if let Some(s) = &reply.earliest_sighting {
            outln!("earliest seen {}", format::sighting_words(s));
        }
        if let Some(c) = &reply.query_content_credentials {
            outln!("this image");
            format::print_credentials(c);
        }
        Ok(())
    }

    fn print_matches(&self, matches: &[pb::ImageMatch]) {
        outln!(
            "{:<12} {:>8} {:<5} {:<22} {:<12} {:<34} CLAIM",
            "NAME",
            "DISTANCE",
            "EXACT",
            "ORIENTATION",
            "STATE",
            "RATING"
        );
        for m in matches {
            let claim = m.claim.clone().unwrap_or_default();
            let status = claim.verification_status.clone().unwrap_or_default();
            outln!(
                "{:<12} {:>8} {:<5} {:<22} {:<12} {:<34} {}",
                claim.name,
                m.distance,
                if m.exact { "yes" } else { "no" },
                format::transformation_word(m.transformation),
                state_word(status.state),
                verdict_words(&status),
                excerpt(&claim.claim_text, 60)
            );
        }
    }

    async fn check(&mut self, a: CheckArgs) -> Outcome {
        let reply = self
            .client
            .check_verdict(self.request(pb::CheckVerdictRequest {
                claim: a.claim.clone(),
                claim_rating: a.rating.map_or(0, |r| pb::ClaimRating::from(r) as i32),
                media_authenticity: a.media.map_or(0, |m| pb::MediaAuthenticity::from(m) as i32),
                rationale: a.rationale.unwrap_or_default(),
            })?)
            .await
            .map_err(|s| in_flag_words(s, VERDICT_FLAGS))?
            .into_inner();
        let errors = reply
            .findings
            .iter()
            .filter(|f| f.severity == pb::FindingSeverity::Error as i32)
            .count();
        if self.json {
            self.print_json(&reply, "photoclaim.v1.CheckVerdictResponse");
        } else {
            outln!("{}", a.claim);
            if let Some(s) = &reply.earliest_sighting {
                format::field("earliest seen", &format::sighting_words(s));
            }
            if reply.findings.is_empty() {
                outln!("  nothing in the record contradicts the verdict");
            }
            format::print_findings(&reply.findings);
        }
        if errors > 0 {
            return Err(Failure::other(format!(
                "{errors} error{} found: ExportClaimReview refuses this verdict without --force",
                if errors == 1 { "" } else { "s" }
            )));
        }
        Ok(())
    }

    async fn review(&mut self, a: ReviewArgs) -> Outcome {
        let reply = self
            .client
            .export_claim_review(self.request(pb::ExportClaimReviewRequest {
                claim: a.claim.clone(),
                force: a.force,
            })?)
            .await
            .map_err(|s| {
                let contradicted = s.message().contains("contradicts the record");
                let unresolved = s.code() == tonic::Code::FailedPrecondition;
                let failure = Failure::from(s);
                if contradicted {
                    failure.hint(format!(
                        "see `photoclaim claim check {}`; fix the verdict, or export anyway with --force",
                        a.claim
                    ))
                } else if unresolved {
                    failure.hint(format!(
                        "set a verdict first: photoclaim claim verdict {} --rating ... --media ... \
                         --rationale ...",
                        a.claim
                    ))
                } else {
                    failure
                }
            })?
            .into_inner();
        // Findings (warnings, or errors overridden with --force) go to
        // standard error: standard output is the documents.
        for f in &reply.findings {
            let severity = if f.severity == pb::FindingSeverity::Error as i32 {
                "ERROR (exported with --force)"
            } else {
                "warning"
            };
            eprintln!("{severity} {}: {}", f.code, f.message);
        }
        let documents = [
            ("claim-review", reply.claim_review),
            ("media-review", reply.media_review),
        ];
        match &a.out {
            None if self.json => self.print_json(
                &pb::ExportClaimReviewResponse {
                    claim_review: documents[0].1.clone(),
                    media_review: documents[1].1.clone(),
                    findings: reply.findings.clone(),
                },
                "photoclaim.v1.ExportClaimReviewResponse",
            ),
            None => {
                for (_, document) in documents.iter().filter(|(_, d)| !d.is_empty()) {
                    outln!("{}", pretty_json(document));
                }
            }
            Some(dir) => {
                let stem = a.claim.replace('/', "-");
                for (kind, document) in documents.iter().filter(|(_, d)| !d.is_empty()) {
                    let path = dir.join(format!("{stem}.{kind}.jsonld"));
                    let text = pretty_json(document) + "\n";
                    crate::cli::export::write_atomically(&path, |partial| async move {
                        std::fs::write(&partial, text).map_err(|e| {
                            Failure::other(format!("cannot write {}: {e}", partial.display()))
                        })
                    })
                    .await?;
                    outln!("{}", path.display());
                }
            }
        }
        Ok(())
    }

    fn print_event(&self, event: &pb::ClaimEvent) {
        if self.json {
            outln!(
                "{}",
                pb::to_json_text(event, "photoclaim.v1.ClaimEvent", false)
            );
        } else {
            outln!(
                "{}  {} #{} {} {} by {} -> {}  {}",
                event.cursor,
                event.claim,
                event.sequence,
                format_time(event.time.as_ref()),
                event_type_word(event.r#type),
                event.actor,
                state_word(event.state),
                event_details(event)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_names_are_accepted_with_or_without_the_collection() {
        assert_eq!(claim_name("7").unwrap(), "claims/7");
        assert_eq!(claim_name("claims/12").unwrap(), "claims/12");
        for bad in [
            "",
            "claims/",
            "07",
            "claims/x",
            "-1",
            "claims/7/x",
            "claim/7",
        ] {
            assert!(claim_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn refused_fields_are_named_by_the_flags_that_set_them() {
        let mut details = tonic_types::ErrorDetails::new();
        details.add_bad_request_violation("claim.language", "is required");
        details.add_bad_request_violation(
            "claim.image",
            "give at least one of source_url, sha256 or content",
        );
        details.add_bad_request_violation("claim.appearance_urls[1]", "is not a URL");
        details.add_bad_request_violation("claim.somewhere_new", "is wrong");
        let status = tonic::Status::with_error_details(
            tonic::Code::InvalidArgument,
            "claim.language: is required; ...",
            details,
        );
        let failure = in_flag_words(status, REGISTER_FLAGS);
        assert_eq!(failure.code, tonic::Code::InvalidArgument);
        assert_eq!(
            failure.message,
            "--language: is required; \
             --image-url, --image-sha256 or --image-file: give at least one of an image URL, \
             its SHA-256 or the file; \
             --appearance-url (the 2nd): is not a URL; \
             claim.somewhere_new: is wrong"
        );
        let plain = in_flag_words(
            tonic::Status::not_found("claims/9 not found"),
            REGISTER_FLAGS,
        );
        assert_eq!(plain.message, "claims/9 not found");
    }

    #[test]
    fn a_watch_resumes_only_when_the_server_may_recover_and_where_it_says() {
        let with_trailer = |code, cursor: &str| {
            let mut metadata = tonic::metadata::MetadataMap::new();
            metadata.insert("photoclaim-resume-cursor", cursor.parse().unwrap());
            tonic::Status::with_metadata(code, "interrupted", metadata)
        };
        let unavailable = with_trailer(tonic::Code::Unavailable, "c-42");
        assert_eq!(resume_cursor(&unavailable, "c-40").as_deref(), Some("c-42"));
        let lagging = with_trailer(tonic::Code::ResourceExhausted, "c-7");
        assert_eq!(resume_cursor(&lagging, "").as_deref(), Some("c-7"));
        let bare = tonic::Status::unavailable("restarting");
        assert_eq!(resume_cursor(&bare, "c-40").as_deref(), Some("c-40"));
        for code in [
            tonic::Code::Unauthenticated,
            tonic::Code::InvalidArgument,
            tonic::Code::Internal,
        ] {
            assert_eq!(resume_cursor(&with_trailer(code, "c-1"), "c-0"), None);
        }
    }

    #[test]
    fn request_ids_are_fresh() {
        assert_ne!(fresh_request_id(), fresh_request_id());
    }
}
