//! WatchClaimEvents: the event log as a stream, history first, then live.
//!
//! Each stream has a producer task that reads the store's event log after
//! the caller's cursor, up to the newest *durable* position, and pushes the
//! matching events into a bounded channel; when it has caught up it waits for
//! the durable position to move. Writers never wait for watchers: they only
//! bump that position. Because the stream only ever reads the store, history
//! and live events come from the same place, in the same order, and the seam
//! between them has no gap and no duplicate, across restarts too (positions
//! are stored and never reused).
//!
//! A consumer that leaves the buffer full for longer than the stall timeout,
//! and every stream at shutdown, ends with a status whose trailer
//! [`RESUME_CURSOR`] (also quoted in the message) is the cursor to resume
//! after: every event before it was delivered.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tonic::metadata::MetadataValue;
use tonic::Status;

use super::convert;
use super::names::parse_claim_name;
use crate::domain::{ClaimEventType, Error};
use crate::pb;
use crate::store::{EventFilter, Store};

/// Trailer carrying the cursor to resume after when a stream is cut short.
pub const RESUME_CURSOR: &str = "photoclaim-resume-cursor";

/// Events read from the store per batch.
const BATCH: usize = 256;

/// Buffer and stall settings of WatchClaimEvents.
#[derive(Clone, Copy, Debug)]
pub struct WatchOptions {
    /// Events a stream may hold for a consumer that is not reading.
    pub buffer: usize,
    /// How long a full buffer may stay full before the stream ends with
    /// RESOURCE_EXHAUSTED.
    pub stall_timeout: Duration,
    /// Streams open at once across all callers; more are refused with
    /// RESOURCE_EXHAUSTED. (An open stream holds no in-flight call slot.)
    pub max_streams: usize,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            buffer: 1024,
            stall_timeout: Duration::from_secs(10),
            max_streams: 1024,
        }
    }
}

/// What a validated request asks for.
pub(crate) struct WatchRequest {
    filter: EventFilter,
    /// Start after this log position.
    after: u64,
}

/// Validates a request against the store (the claim must exist, the cursor
/// must not be beyond the newest event).
pub(crate) async fn validate<S: Store>(
    store: &S,
    req: pb::WatchClaimEventsRequest,
) -> Result<WatchRequest, Error> {
    let mut filter = EventFilter::default();
    if !req.claim.is_empty() {
        let id = parse_claim_name(&req.claim, "claim")?;
        if store.get_claim(id).await?.is_none() {
            return Err(Error::NotFound(format!("claims/{id}")));
        }
        filter.claim_id = Some(id);
    }
    for (i, &t) in req.event_types.iter().enumerate() {
        match ClaimEventType::try_from(t) {
            Ok(ClaimEventType::Unspecified) | Err(_) => {
                return Err(Error::invalid(
                    format!("event_types[{i}]"),
                    format!("{t} is not an event type: use CLAIM_REGISTERED, OFFICIAL_RESPONSE_ATTACHED or VERDICT_SET"),
                ))
            }
            Ok(_) => filter.types.push(t),
        }
    }
    let newest = *store.durable_log().borrow();
    let after = if req.after_cursor.is_empty() {
        if req.start_at_end {
            newest
        } else {
            0
        }
    } else {
        if req.start_at_end {
            return Err(Error::invalid(
                "start_at_end",
                "cannot be combined with after_cursor",
            ));
        }
        let cursor: u64 = req.after_cursor.parse().map_err(|_| {
            Error::invalid(
                "after_cursor",
                "is not a cursor: pass the `cursor` of an event this service sent",
            )
        })?;
        if cursor > newest {
            return Err(Error::OutOfRange(format!(
                "after_cursor {cursor} is beyond the newest event ({newest}): it was not issued by this data directory"
            )));
        }
        cursor
    };
    Ok(WatchRequest { filter, after })
}

/// Starts the producer for `request`; the returned stream ends when the
/// producer stops, with its final status if it set one.
pub(crate) fn start<S: Store>(
    store: Arc<S>,
    request: WatchRequest,
    options: WatchOptions,
    slots: &Arc<tokio::sync::Semaphore>,
    shutdown: watch::Receiver<bool>,
) -> Result<EventStream, Error> {
    let slot = slots.clone().try_acquire_owned().map_err(|_| {
        Error::ResourceExhausted(format!(
            "too many watch streams open (limit {}): retry later",
            options.max_streams
        ))
    })?;
    let (tx, rx) = mpsc::channel(options.buffer.max(1));
    let end = Arc::new(Mutex::new(None));
    let producer = Producer {
        store,
        tx,
        end: end.clone(),
        options,
        shutdown,
    };
    tokio::spawn(async move {
        producer.run(request).await;
        drop(slot);
    });
    Ok(EventStream {
        rx,
        end,
        done: false,
    })
}

struct Producer<S> {
    store: Arc<S>,
    tx: mpsc::Sender<pb::ClaimEvent>,
    end: Arc<Mutex<Option<Status>>>,
    options: WatchOptions,
    shutdown: watch::Receiver<bool>,
}

/// Why a producer stopped early.
enum Stop {
    /// The consumer went away: nothing to tell.
    Gone,
    /// End the stream with this status.
    With(Status),
}

impl<S: Store> Producer<S> {
    async fn run(mut self, request: WatchRequest) {
        let span = tracing::info_span!("watch", claim = ?request.filter.claim_id);
        let result = self.pump(request).await;
        let _entered = span.enter();
        match result {
            Stop::Gone => tracing::debug!("watcher went away"),
            Stop::With(status) => {
                tracing::info!(code = ?status.code(), reason = status.message(), "watch ended");
                *self.end.lock().unwrap_or_else(PoisonError::into_inner) = Some(status);
            }
        }
        // Dropping the sender lets the consumer drain the buffer, then see
        // the final status.
    }

    async fn pump(&mut self, request: WatchRequest) -> Stop {
        let mut durable = self.store.durable_log();
        let mut after = request.after;
        loop {
            if *self.shutdown.borrow() {
                return Stop::With(resume_status(
                    tonic::Code::Unavailable,
                    "the server is shutting down",
                    after,
                ));
            }
            let newest = *durable.borrow_and_update();
            if after < newest {
                let batch = match self
                    .store
                    .log_events(after, newest, &request.filter, BATCH)
                    .await
                {
                    Ok(batch) => batch,
                    Err(err) => return Stop::With(super::status::to_status(err)),
                };
                for event in batch.events {
                    let position = event.log_position;
                    if let Err(stop) = self.deliver(convert::event_out(&event), position - 1).await
                    {
                        return stop;
                    }
                    after = position;
                }
                after = after.max(batch.examined_to);
                continue;
            }
            tokio::select! {
                changed = durable.changed() => {
                    if changed.is_err() {
                        return Stop::With(resume_status(tonic::Code::Unavailable, "the store closed", after));
                    }
                }
                _ = stopping(&mut self.shutdown) => {}
                _ = self.tx.closed() => return Stop::Gone,
            }
        }
    }

    /// Queues one event; `resume_after` is the cursor to report if it cannot
    /// be queued (everything before the event was).
    async fn deliver(&mut self, event: pb::ClaimEvent, resume_after: u64) -> Result<(), Stop> {
        let event = match self.tx.try_send(event) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(Stop::Gone),
            Err(mpsc::error::TrySendError::Full(event)) => event,
        };
        let stall = self.options.stall_timeout;
        tokio::select! {
            sent = tokio::time::timeout(stall, self.tx.send(event)) => match sent {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(Stop::Gone),
                Err(_) => Err(Stop::With(resume_status(
                    tonic::Code::ResourceExhausted,
                    &format!(
                        "the consumer fell behind: {} events waited unread for {} ms",
                        self.options.buffer,
                        stall.as_millis()
                    ),
                    resume_after,
                ))),
            },
            _ = stopping(&mut self.shutdown) => Err(Stop::With(resume_status(
                tonic::Code::Unavailable,
                "the server is shutting down",
                resume_after,
            ))),
        }
    }
}

/// A status that tells the caller where to resume.
fn resume_status(code: tonic::Code, why: &str, after: u64) -> Status {
    let mut status = Status::new(code, format!("{why}; resume with after_cursor \"{after}\""));
    status
        .metadata_mut()
        .insert(RESUME_CURSOR, MetadataValue::from(after));
    status
}

/// The response stream: buffered events, then the producer's final status.
pub struct EventStream {
    rx: mpsc::Receiver<pb::ClaimEvent>,
    end: Arc<Mutex<Option<Status>>>,
    done: bool,
}

impl Stream for EventStream {
    type Item = Result<pb::ClaimEvent, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(event)) => Poll::Ready(Some(Ok(event))),
            Poll::Ready(None) => {
                self.done = true;
                let end = self
                    .end
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                Poll::Ready(end.map(Err))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Resolves once the server is stopping; never, if nothing can stop it (a
/// service built without [`super::ClaimApi::with_watch`] has a dropped
/// sender, which must not make every wait return at once).
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}
