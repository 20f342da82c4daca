//! The domain's error type. `crate::api::status` maps it to gRPC codes in one place.

/// One offending field of a request, named by its path in the API message
/// (e.g. `claim.image.sha256`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldViolation {
    /// Path of the field in the request, as the API names it.
    pub field: String,
    /// What is wrong with it, in words a caller can act on.
    pub description: String,
}

/// A stale `etag`: what the caller needs to retry (the current etag), not
/// only words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "etag {} is stale: {claim} has changed (current etag {current_etag:?}); read it again and retry",
    excerpt(.given)
)]
pub struct EtagMismatch {
    /// The claim's resource name, `claims/{claim_id}`.
    pub claim: String,
    /// The etag the caller sent.
    pub given: String,
    /// The claim's etag now.
    pub current_etag: String,
}

/// A precondition the resource's state does not meet, in the terms of
/// `google.rpc.PreconditionFailure`. Displays as its description.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{description}")]
pub struct Precondition {
    /// What kind of precondition failed, an upper-case word such as
    /// `NOT_RESOLVED` (the violation's `type`).
    pub kind: String,
    /// What it failed on, e.g. `claims/7`.
    pub subject: String,
    /// How to satisfy it, in words a caller can act on.
    pub description: String,
}

/// Everything that can go wrong in an operation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The request itself is malformed; nothing was changed.
    #[error("{}", describe_violations(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// A named resource does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A resource with the requested name exists (an API key's name).
    #[error("{0}")]
    AlreadyExists(String),
    /// A `request_id` was reused with a different payload (ALREADY_EXISTS too).
    #[error(
        "request_id {} was already used for a different request; use a new request_id for a new request",
        excerpt(.request_id)
    )]
    RequestIdReused {
        /// The reused request_id, as the caller sent it.
        request_id: String,
    },
    /// An `etag` did not match: the resource changed since the caller read it.
    #[error("{0}")]
    Aborted(EtagMismatch),
    /// The request is well-formed but the resource is not in a state that allows it.
    #[error("{0}")]
    FailedPrecondition(Precondition),
    /// A value is well-formed but outside what exists (e.g. a cursor beyond
    /// the newest event).
    #[error("{0}")]
    OutOfRange(String),
    /// A limit of the service was reached (e.g. open watch streams); retry later.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The service cannot take this call now but will soon by itself (the
    /// store is being reopened after a failed write); retry.
    #[error("{0}")]
    Unavailable(String),
    /// Stored records fail their integrity check (a broken audit trail):
    /// the text names the record, never its content.
    #[error("{0}")]
    DataLoss(String),
    /// A fault of the service (storage, corruption). The text is for the log
    /// only; callers get a generic message.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// A single-field `InvalidArgument`.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Error::InvalidArgument(vec![FieldViolation {
            field: field.into(),
            description: description.into(),
        }])
    }
}

fn describe_violations(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Longest excerpt of a caller's value quoted back in an error message.
pub const MAX_EXCERPT_CHARS: usize = 64;

/// A caller's value quoted for an error message: Debug-escaped (so control
/// characters cannot forge log lines) and cut to [`MAX_EXCERPT_CHARS`], so a
/// megabyte of garbage in a name field does not come back in the reply or
/// land in the log.
pub fn excerpt(value: &str) -> String {
    let mut chars = value.chars();
    let head: String = chars.by_ref().take(MAX_EXCERPT_CHARS).collect();
    if chars.next().is_some() {
        format!("{head:?}… ({} bytes)", value.len())
    } else {
        format!("{head:?}")
    }
}

/// Short alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
