//! The one mapping from domain errors to gRPC statuses, and the per-RPC span
//! that records method, claim, status code and latency.

use std::future::Future;
use std::time::Instant;

use tonic::{Code, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};
use tracing::Instrument;

use crate::domain::Error;

/// Maps a domain error to the status a caller sees. Internal causes are
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
        Error::Aborted(msg) => Status::aborted(msg),
        Error::FailedPrecondition(msg) => Status::failed_precondition(msg),
        Error::Internal(cause) => {
            tracing::error!(%cause, "internal error");
            Status::internal("internal error; the cause is in the server log")
        }
    }
}

/// Runs one RPC inside a span named `rpc` with `method` and `claim`, maps its
/// error, and logs one line with the status code and latency.
pub async fn observe<T>(
    method: &'static str,
    claim: &str,
    work: impl Future<Output = Result<T, Error>>,
) -> Result<Response<T>, Status> {
    let span = tracing::info_span!("rpc", method, claim = tracing::field::Empty);
    if !claim.is_empty() {
        span.record("claim", claim);
    }
    let started = Instant::now();
    let result = work.instrument(span.clone()).await.map_err(to_status);
    let latency_us = started.elapsed().as_micros() as u64;
    let _entered = span.enter();
    match &result {
        Ok(_) => tracing::info!(code = ?Code::Ok, latency_us, "rpc done"),
        Err(status) => tracing::info!(
            code = ?status.code(),
            latency_us,
            error = status.message(),
            "rpc done"
        ),
    }
    result.map(Response::new)
}
