//! The one mapping from domain errors to gRPC statuses (with their
//! `google.rpc` error details), and the per-RPC span
//! that records method, claim, status code and latency.

use std::collections::HashMap;
use std::future::Future;
use std::time::Instant;

use tonic::{Code, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tracing::Instrument;

use crate::domain::Error;

/// `google.rpc.ErrorInfo.domain` of our errors.
pub const ERROR_DOMAIN: &str = "photoclaim";
/// `ErrorInfo.reason` of ABORTED on a stale etag; metadata `claim` and
/// `current_etag` (what to read again, and what it is now).
pub const REASON_ETAG_MISMATCH: &str = "ETAG_MISMATCH";
/// `ErrorInfo.reason` of ALREADY_EXISTS for a `request_id` reused with a
/// different payload; metadata `request_id`.
pub const REASON_REQUEST_ID_REUSED: &str = "REQUEST_ID_REUSED";

/// Maps a domain error to the status a caller sees, with the standard error
/// details (AIP-193) where they apply: `google.rpc.BadRequest` on
/// INVALID_ARGUMENT, `ErrorInfo` on ABORTED (stale etag) and on
/// ALREADY_EXISTS for a reused request_id, `PreconditionFailure` on
/// FAILED_PRECONDITION. Internal causes are
/// logged here and replaced by a generic message.
pub fn to_status(err: Error) -> Status {
    match err {
        Error::InvalidArgument(violations) => {
            let message = Error::InvalidArgument(violations.clone()).to_string();
            let mut details = ErrorDetails::new();
            for v in violations {
                details.add_bad_request_violation(v.field, v.description);
            }
            Status::with_error_details(Code::InvalidArgument, message, details)
        }
        Error::NotFound(what) => Status::not_found(format!("{what} not found")),
        Error::AlreadyExists(msg) => Status::already_exists(msg),
        reused @ Error::RequestIdReused { .. } => {
            let message = reused.to_string();
            let Error::RequestIdReused { request_id } = reused else {
                unreachable!("matched above")
            };
            let details = ErrorDetails::with_error_info(
                REASON_REQUEST_ID_REUSED,
                ERROR_DOMAIN,
                HashMap::from([("request_id".to_string(), request_id)]),
            );
            Status::with_error_details(Code::AlreadyExists, message, details)
        }
        Error::Aborted(mismatch) => {
            let details = ErrorDetails::with_error_info(
                REASON_ETAG_MISMATCH,
                ERROR_DOMAIN,
                HashMap::from([
                    ("current_etag".to_string(), mismatch.current_etag.clone()),
                    ("claim".to_string(), mismatch.claim.clone()),
                ]),
            );
            Status::with_error_details(Code::Aborted, mismatch.to_string(), details)
        }
        Error::FailedPrecondition(precondition) => {
            let message = precondition.to_string();
            let details = ErrorDetails::with_precondition_failure_violation(
                precondition.kind,
                precondition.subject,
                precondition.description,
            );
            Status::with_error_details(Code::FailedPrecondition, message, details)
        }
        Error::OutOfRange(msg) => Status::out_of_range(msg),
        Error::ResourceExhausted(msg) => Status::resource_exhausted(msg),
        Error::Unavailable(msg) => Status::unavailable(msg),
        Error::DataLoss(msg) => {
            tracing::error!(cause = %msg, "stored data failed its integrity check");
            Status::data_loss(msg)
        }
        Error::Internal(cause) => {
            tracing::error!(%cause, "internal error");
            Status::internal("internal error; the cause is in the server log")
        }
    }
}

/// The `rpc` span of one call, with `method` and `claim`, at info or (for
/// successful reads, see [`observe`]) at debug.
fn rpc_span(at_info: bool, method: &'static str, claim: &str) -> tracing::Span {
    let span = if at_info {
        tracing::info_span!("rpc", method, claim = tracing::field::Empty)
    } else {
        tracing::debug_span!("rpc", method, claim = tracing::field::Empty)
    };
    // Only a well-formed name is logged: a caller's raw field could be a
    // megabyte long or carry anything.
    if !span.is_disabled() && crate::wire::names::parse_claim_name(claim, "").is_ok() {
        span.record("claim", claim);
    }
    span
}

/// Runs one RPC inside a span named `rpc` with `method` and `claim`, maps its
/// error, and logs one line with the status code and latency (successful
/// reads at debug, everything else at info).
///
/// A read's span is at debug too: at the default level it is never built,
/// which saves the subscriber formatting its fields on every call (about 5
/// % of a read's server time, BENCHMARKS.md). A failed read gets its info
/// span afterwards, for its line.
pub async fn observe<T>(
    rpc: &'static crate::rpc::Rpc,
    claim: &str,
    work: impl Future<Output = Result<T, Error>>,
) -> Result<Response<T>, Status> {
    let (method, at_info) = (rpc.method, rpc.logged_at_info);
    let span = rpc_span(at_info, method, claim);
    let started = Instant::now();
    let metrics = crate::metrics::global();
    let in_flight = metrics.started(method);
    let result = work.instrument(span.clone()).await.map_err(to_status);
    drop(in_flight);
    let elapsed = started.elapsed();
    let code = result.as_ref().map_or_else(|s| s.code(), |_| Code::Ok);
    metrics.finished(method, code as i32, elapsed);
    let latency_us = elapsed.as_micros() as u64;
    match &result {
        // A successful read changes nothing and can come thousands of
        // times a second (BENCHMARKS.md: the line cost ~10% of read
        // throughput); the metrics count it. Writes and failures stay at info.
        Ok(_) if !at_info => {
            let _entered = span.enter();
            tracing::debug!(code = ?Code::Ok, latency_us, "rpc done")
        }
        Ok(_) => {
            let _entered = span.enter();
            tracing::info!(code = ?Code::Ok, latency_us, "rpc done")
        }
        Err(status) => {
            let span = match at_info {
                true => span,
                false => rpc_span(true, method, claim),
            };
            let _entered = span.enter();
            tracing::info!(
                code = ?status.code(),
                latency_us,
                error = status.message(),
                "rpc done"
            )
        }
    }
    result.map(Response::new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EtagMismatch, FieldViolation, Precondition};

    #[test]
    fn internal_errors_hide_their_cause_from_the_caller() {
        let status = to_status(Error::Internal("sled: io error at /secret/path".into()));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("secret"), "{}", status.message());
    }

    #[test]
    fn invalid_argument_names_every_field_in_message_and_details() {
        let status = to_status(Error::InvalidArgument(vec![
            FieldViolation {
                field: "claim.language".into(),
                description: "bad".into(),
            },
            FieldViolation {
                field: "claim.tags[3]".into(),
                description: "too long".into(),
            },
        ]));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "claim.language: bad; claim.tags[3]: too long"
        );
        let fields: Vec<_> = status
            .get_details_bad_request()
            .expect("BadRequest details")
            .field_violations
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(fields, ["claim.language", "claim.tags[3]"]);
    }

    #[test]
    fn each_domain_error_has_its_code() {
        let cases = [
            (Error::NotFound("claims/1".into()), Code::NotFound),
            (Error::AlreadyExists("x".into()), Code::AlreadyExists),
            (
                Error::ResourceExhausted("disk full".into()),
                Code::ResourceExhausted,
            ),
            (Error::Unavailable("reopening".into()), Code::Unavailable),
            (
                Error::RequestIdReused {
                    request_id: "r".into(),
                },
                Code::AlreadyExists,
            ),
            (
                Error::Aborted(EtagMismatch {
                    claim: "claims/1".into(),
                    given: "1-1".into(),
                    current_etag: "1-2".into(),
                }),
                Code::Aborted,
            ),
            (
                Error::FailedPrecondition(Precondition {
                    kind: "K".into(),
                    subject: "s".into(),
                    description: "d".into(),
                }),
                Code::FailedPrecondition,
            ),
        ];
        for (err, code) in cases {
            assert_eq!(to_status(err).code(), code);
        }
    }

    #[test]
    fn stale_etag_carries_error_info_with_the_current_etag() {
        let status = to_status(Error::Aborted(EtagMismatch {
            claim: "claims/7".into(),
            given: "7-1".into(),
            current_etag: "7-3".into(),
        }));
        assert!(status.message().contains("\"7-3\""), "{}", status.message());
        let info = status.get_details_error_info().expect("ErrorInfo");
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            ("ETAG_MISMATCH", "photoclaim")
        );
        assert_eq!(info.metadata["current_etag"], "7-3");
        assert_eq!(info.metadata["claim"], "claims/7");
    }

    #[test]
    fn failed_precondition_carries_its_violation() {
        let status = to_status(Error::FailedPrecondition(Precondition {
            kind: "NOT_RESOLVED".into(),
            subject: "claims/7".into(),
            description: "claims/7 is DISPUTED".into(),
        }));
        assert_eq!(status.message(), "claims/7 is DISPUTED");
        let failure = status
            .get_details_precondition_failure()
            .expect("PreconditionFailure");
        let v = &failure.violations[0];
        assert_eq!(
            (
                v.r#type.as_str(),
                v.subject.as_str(),
                v.description.as_str()
            ),
            ("NOT_RESOLVED", "claims/7", "claims/7 is DISPUTED")
        );
    }
}
