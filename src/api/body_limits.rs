//! Request bodies under limits, as one tower layer inside the guard.
//!
//! tonic buffers a request's whole message before decoding it, up to the
//! server's largest message size. Without more, every call in flight may
//! pin that much memory (an image's worth, 21 MiB by default) while its
//! caller trickles or stops sending, GetClaim included. Here each body is
//! held to three limits as its frames arrive:
//!
//! - the limit of its method ([`message_limit`]): only the RPCs that carry
//!   image bytes take `max_message_bytes`; responses and verdicts carry
//!   text (1 MiB), everything else names and cursors (64 KiB);
//! - a byte budget shared by all bodies being received
//!   (`max_body_bytes_in_flight`), so that many large bodies at once are
//!   refused rather than held;
//! - a stall timeout: a body that sends nothing for `body_timeout` before
//!   it is complete is cut, well before the request timeout.
//!
//! A body over a limit ends with RESOURCE_EXHAUSTED, a stalled one with
//! DEADLINE_EXCEEDED; the handler never runs, and tonic answers with that
//! status.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;
use tonic::Status;

/// Bytes of the gRPC frame prefix (compressed flag and length) before a
/// message.
const GRPC_PREFIX_BYTES: usize = 5;

/// Largest message of the RPCs that carry no image but free text
/// (AttachOfficialResponse, SetVerdict): 50,000 characters of up to 4
/// bytes and the other fields fit.
pub const TEXT_MESSAGE_BYTES: usize = 1024 * 1024;
/// Largest message of every other RPC (names, cursors, page sizes).
pub const SMALL_MESSAGE_BYTES: usize = 64 * 1024;
/// Request bytes all calls together may hold while their bodies arrive,
/// by default.
pub const DEFAULT_BODY_BYTES_IN_FLIGHT: usize = 256 * 1024 * 1024;
/// How long a request body may send nothing before it is complete, by
/// default.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest request message (gRPC framing included) accepted for the
/// method at `path`, given the image-carrying RPCs' `max_message_bytes`.
pub fn message_limit(path: &str, max_message_bytes: usize) -> usize {
    let method = path.rsplit('/').next().unwrap_or_default();
    match method {
        "RegisterClaim" | "FindSimilarClaims" => max_message_bytes,
        "AttachOfficialResponse" | "SetVerdict" => TEXT_MESSAGE_BYTES.min(max_message_bytes),
        _ => SMALL_MESSAGE_BYTES.min(max_message_bytes),
    }
}

/// The limits of [`BodyLimitLayer`].
#[derive(Clone, Copy, Debug)]
pub struct BodyLimits {
    /// The image-carrying RPCs' largest message.
    pub max_message_bytes: usize,
    /// Bytes all bodies being received may hold together.
    pub max_body_bytes_in_flight: usize,
    /// How long a body may send nothing before it is complete.
    pub body_timeout: Duration,
}

/// Holds every request body to [`BodyLimits`].
#[derive(Clone)]
pub struct BodyLimitLayer {
    shared: Arc<Shared>,
}

struct Shared {
    limits: BodyLimits,
    /// Bytes received by bodies not yet complete (or dropped).
    in_flight: AtomicUsize,
}

impl BodyLimitLayer {
    /// A layer enforcing `limits`.
    pub fn new(limits: BodyLimits) -> Self {
        BodyLimitLayer {
            shared: Arc::new(Shared {
                limits,
                in_flight: AtomicUsize::new(0),
            }),
        }
    }

    /// Bytes held by bodies being received now.
    pub fn bytes_in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Relaxed)
    }
}

impl<I> tower::Layer<I> for BodyLimitLayer {
    type Service = BodyLimit<I>;

    fn layer(&self, inner: I) -> BodyLimit<I> {
        BodyLimit {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service of [`BodyLimitLayer`].
#[derive(Clone)]
pub struct BodyLimit<I> {
    inner: I,
    shared: Arc<Shared>,
}

impl<I, B> tower::Service<http::Request<B>> for BodyLimit<I>
where
    I: tower::Service<http::Request<tonic::body::Body>>,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = I::Response;
    type Error = I::Error;
    type Future = I::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let limit = message_limit(request.uri().path(), self.shared.limits.max_message_bytes);
        let method = request
            .uri()
            .path()
            .rsplit('/')
            .next()
            .map(crate::domain::excerpt)
            .unwrap_or_default();
        let timeout = self.shared.limits.body_timeout;
        let request = request.map(|body| {
            tonic::body::Body::new(LimitedBody {
                inner: body,
                shared: self.shared.clone(),
                limit,
                method,
                received: 0,
                held: 0,
                timeout,
                stall: Box::pin(tokio::time::sleep(timeout)),
                done: false,
            })
        });
        self.inner.call(request)
    }
}

/// A request body held to its limits; gives its bytes back to the shared
/// budget when complete or dropped.
struct LimitedBody<B> {
    inner: B,
    shared: Arc<Shared>,
    /// The method's message limit.
    limit: usize,
    /// The method, for the log line of a refusal.
    method: String,
    /// Bytes received so far.
    received: usize,
    /// Bytes of the shared budget this body holds.
    held: usize,
    timeout: Duration,
    /// Fires when the body has sent nothing for `timeout`.
    stall: Pin<Box<Sleep>>,
    /// Ended (complete, refused or failed): no more frames.
    done: bool,
}

impl<B> LimitedBody<B> {
    fn release(&mut self) {
        let held = std::mem::take(&mut self.held);
        if held > 0 {
            self.shared.in_flight.fetch_sub(held, Ordering::AcqRel);
        }
    }

    fn refuse(&mut self, status: Status) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        tracing::info!(
            method = %self.method,
            code = ?status.code(),
            received = self.received,
            reason = status.message(),
            "request body refused"
        );
        crate::metrics::global().refused(&self.method, status.code() as i32);
        self.done = true;
        self.release();
        Poll::Ready(Some(Err(Box::new(status))))
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<B> Drop for LimitedBody<B> {
    fn drop(&mut self) {
        self.release();
    }
}

impl<B> Body for LimitedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len();
                    this.received += n;
                    // The gRPC frame's 5-byte prefix is not the message's.
                    if this.received > this.limit + GRPC_PREFIX_BYTES {
                        let status = Status::resource_exhausted(format!(
                            "request message larger than {} bytes, the most {} accepts",
                            this.limit, this.method
                        ));
                        return this.refuse(status);
                    }
                    let budget = this.shared.limits.max_body_bytes_in_flight;
                    let taken = this.shared.in_flight.fetch_update(
                        Ordering::AcqRel,
                        Ordering::Acquire,
                        |used| (used + n <= budget).then_some(used + n),
                    );
                    if taken.is_err() {
                        let status = Status::resource_exhausted(format!(
                            "the server is receiving {budget} bytes of requests already: retry later"
                        ));
                        return this.refuse(status);
                    }
                    this.held += n;
                    this.stall
                        .as_mut()
                        .reset(tokio::time::Instant::now() + this.timeout);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => {
                this.done = true;
                this.release();
                Poll::Ready(Some(Err(err.into())))
            }
            Poll::Ready(None) => {
                this.done = true;
                this.release();
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.stall.as_mut().poll(cx).is_ready() {
                    let status = Status::deadline_exceeded(format!(
                        "the request body stalled: nothing arrived for {} ms",
                        this.timeout.as_millis()
                    ));
                    return this.refuse(status);
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_image_rpcs_take_the_large_limit() {
        let max = 21 * 1024 * 1024;
        let limit = |m: &str| message_limit(&format!("/photoclaim.v1.ClaimService/{m}"), max);
        assert_eq!(limit("RegisterClaim"), max);
        assert_eq!(limit("FindSimilarClaims"), max);
        assert_eq!(limit("AttachOfficialResponse"), TEXT_MESSAGE_BYTES);
        assert_eq!(limit("SetVerdict"), TEXT_MESSAGE_BYTES);
        assert_eq!(limit("GetClaim"), SMALL_MESSAGE_BYTES);
        assert_eq!(limit("WatchClaimEvents"), SMALL_MESSAGE_BYTES);
        assert_eq!(
            message_limit("/grpc.health.v1.Health/Check", max),
            SMALL_MESSAGE_BYTES
        );
        // A server configured below the defaults keeps its own limit.
        assert_eq!(
            message_limit("/photoclaim.v1.ClaimService/SetVerdict", 4096),
            4096
        );
    }
}
