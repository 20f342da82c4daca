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
//! DEADLINE_EXCEEDED; a body of one of our methods that is empty or ends
//! inside its gRPC frame, or flags compression it does not name, with
//! INVALID_ARGUMENT (tonic would answer INTERNAL: our fault, which it is
//! not). The handler never runs, and tonic answers with that status.

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
    use crate::rpc::Body;
    match crate::rpc::by_path(path).map(|rpc| rpc.body) {
        Some(Body::Image) => max_message_bytes,
        Some(Body::Text) => TEXT_MESSAGE_BYTES.min(max_message_bytes),
        Some(Body::Small) | None => SMALL_MESSAGE_BYTES.min(max_message_bytes),
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
        // Our methods all take one request message; other services
        // (reflection) may stream several, or none.
        let framing = request
            .uri()
            .path()
            .starts_with("/photoclaim.v1.")
            .then(|| Framing {
                encoded: request.headers().contains_key("grpc-encoding"),
                ..Framing::default()
            });
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
                framing,
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
    /// For our own (unary-request) methods: the first message's 5-byte
    /// prefix as it arrives, to tell a body that ends inside it or inside
    /// its message from one tonic could decode.
    framing: Option<Framing>,
}

/// The gRPC framing of a unary request's body, checked at its end.
#[derive(Default)]
struct Framing {
    prefix: [u8; GRPC_PREFIX_BYTES],
    prefix_len: usize,
    /// The request named a `grpc-encoding` (compression).
    encoded: bool,
}

impl Framing {
    fn take(&mut self, data: &[u8]) {
        let n = (GRPC_PREFIX_BYTES - self.prefix_len).min(data.len());
        self.prefix[self.prefix_len..self.prefix_len + n].copy_from_slice(&data[..n]);
        self.prefix_len += n;
    }

    /// What is wrong with the prefix's flag byte, once it has arrived:
    /// checked as soon as it has (tonic would refuse it with INTERNAL).
    fn flag_problem(&self) -> Option<String> {
        if self.prefix_len < GRPC_PREFIX_BYTES {
            return None;
        }
        match self.prefix[0] {
            0 => None,
            1 if self.encoded => None,
            1 => Some(
                "the message is flagged as compressed but the request names no grpc-encoding"
                    .into(),
            ),
            flag => Some(format!("the gRPC message flag is {flag}, not 0 or 1")),
        }
    }

    /// What is wrong with a body that ended after `received` bytes, if
    /// anything: tonic would answer these with INTERNAL or UNIMPLEMENTED.
    fn problem(&self, received: usize) -> Option<String> {
        if received == 0 {
            return Some("the request body is empty: a gRPC message was expected".into());
        }
        if self.prefix_len < GRPC_PREFIX_BYTES {
            return Some(format!(
                "the request body ends inside the 5-byte gRPC message prefix ({received} bytes)"
            ));
        }
        if let Some(problem) = self.flag_problem() {
            return Some(problem);
        }
        let declared =
            u32::from_be_bytes(self.prefix[1..].try_into().expect("four bytes")) as usize;
        let got = received - GRPC_PREFIX_BYTES;
        (got < declared).then(|| {
            format!("the request body ends inside its message: {got} of the {declared} bytes it announces")
        })
    }
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
                    if let Some(framing) = &mut this.framing {
                        framing.take(data);
                        if let Some(problem) = framing.flag_problem() {
                            return this.refuse(Status::invalid_argument(problem));
                        }
                    }
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
                if let Some(problem) = this.framing.as_ref().and_then(|f| f.problem(this.received))
                {
                    return this.refuse(Status::invalid_argument(problem));
                }
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
        // A body whose framing is checked must be polled to its end (an
        // empty one included), so that a problem can be told.
        self.done || (self.framing.is_none() && self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_that_end_inside_their_frame_are_named() {
        let ended = |bytes: &[u8], encoded: bool| {
            let mut framing = Framing {
                encoded,
                ..Framing::default()
            };
            // Split the prefix over two frames, as a network may.
            let (a, b) = bytes.split_at(bytes.len().min(2));
            framing.take(a);
            framing.take(b);
            framing.problem(bytes.len())
        };
        assert!(ended(&[], false).unwrap().contains("empty"));
        assert!(ended(&[0, 0, 0], false).unwrap().contains("prefix"));
        assert!(ended(&[0, 0, 0, 0, 9, 1, 2], false)
            .unwrap()
            .contains("2 of the 9 bytes"));
        assert!(ended(&[1, 0, 0, 0, 1, 7], false)
            .unwrap()
            .contains("compressed"));
        assert_eq!(ended(&[1, 0, 0, 0, 1, 7], true), None);
        assert!(ended(&[2, 0, 0, 0, 0], false)
            .unwrap()
            .contains("flag is 2"));
        assert_eq!(ended(&[0, 0, 0, 0, 2, 8, 1], false), None);
        assert_eq!(ended(&[0, 0, 0, 0, 0], false), None);
    }

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
