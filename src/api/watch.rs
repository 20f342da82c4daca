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
//!
//! Memory has a budget, not just counts: a stream's buffer holds at most
//! `buffer` events and `stream_buffer_bytes` bytes, and all streams'
//! buffers together at most `total_buffer_bytes` (a producer that cannot
//! queue waits as for a full buffer, and stalls the same way). A stream cut
//! for stalling drops its buffer at once, even though its consumer (not
//! reading) may keep the HTTP/2 stream open: the status it then reads first
//! is the RESOURCE_EXHAUSTED with the cursor, events after which it has not
//! received.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use prost::Message;
use tokio::sync::{watch, Notify};
use tokio_stream::Stream;
use tonic::metadata::MetadataValue;
use tonic::Status;

use super::slots::{Caller, Refused, SlotLimits, Slots};
use crate::domain::{ClaimEventType, Error};
use crate::pb;
use crate::store::{EventFilter, Store};
use crate::wire::convert;
use crate::wire::names::parse_claim_name;

/// Trailer carrying the cursor to resume after when a stream is cut short.
pub const RESUME_CURSOR: &str = "photoclaim-resume-cursor";

/// Events read from the store per batch, at most. A batch is also kept
/// within the room left in the stream's buffer (by the sizes of the events
/// seen so far), so that a producer waiting on a stalled consumer holds
/// about one buffer's worth, not a batch of large events on top of it.
const BATCH: usize = 256;

/// Size assumed of an event before any was seen: large, so that the first
/// batch of a stream stays small (16 events in a 1 MiB buffer).
const FIRST_GUESS_EVENT_BYTES: usize = 64 * 1024;

/// Buffer and stall settings of WatchClaimEvents.
#[derive(Clone, Copy, Debug)]
pub struct WatchOptions {
    /// Events a stream may hold for a consumer that is not reading.
    pub buffer: usize,
    /// Bytes a stream may hold for a consumer that is not reading (events
    /// counted at their encoded size plus [`EVENT_OVERHEAD`]); one event is
    /// always allowed, however large.
    pub stream_buffer_bytes: usize,
    /// Bytes all streams' buffers may hold together.
    pub total_buffer_bytes: usize,
    /// How long a full buffer may stay full before the stream ends with
    /// RESOURCE_EXHAUSTED.
    pub stall_timeout: Duration,
    /// Streams open at once across all callers; more are refused with
    /// RESOURCE_EXHAUSTED. (An open stream holds no in-flight call slot.)
    /// The last sixteenth only admins may open.
    pub max_streams: usize,
    /// Streams one caller (key, certificate, anonymous address) may have
    /// open at once.
    pub max_streams_per_caller: usize,
}

/// Watch streams one caller may have open, by default.
pub const DEFAULT_MAX_STREAMS_PER_CALLER: usize = 64;

/// Bytes counted for a buffered event beyond its encoded size: the
/// decoded message's own allocations.
pub const EVENT_OVERHEAD: usize = 512;

/// A stream's buffer by default: 1 MiB.
pub const DEFAULT_STREAM_BUFFER_BYTES: usize = 1024 * 1024;
/// All streams' buffers together by default: 256 MiB.
pub const DEFAULT_TOTAL_BUFFER_BYTES: usize = 256 * 1024 * 1024;

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            buffer: 1024,
            stream_buffer_bytes: DEFAULT_STREAM_BUFFER_BYTES,
            total_buffer_bytes: DEFAULT_TOTAL_BUFFER_BYTES,
            stall_timeout: Duration::from_secs(10),
            max_streams: 1024,
            max_streams_per_caller: DEFAULT_MAX_STREAMS_PER_CALLER,
        }
    }
}

/// What all streams of one service share: the stream slots and the byte
/// budget of their buffers.
#[derive(Clone)]
pub struct Limits {
    /// One slot per open stream, counted per caller too.
    slots: Arc<Slots>,
    /// Bytes buffered across streams.
    budget: Arc<Budget>,
}

impl Limits {
    /// Slots and budget for `options`.
    pub fn new(options: &WatchOptions) -> Self {
        Limits {
            slots: Slots::new(
                SlotLimits::new(options.max_streams, options.max_streams_per_caller),
                "watch streams open",
            ),
            budget: Arc::new(Budget {
                limit: options.total_buffer_bytes,
                used: AtomicUsize::new(0),
                freed: Notify::new(),
            }),
        }
    }
}

/// The byte budget shared by all streams' buffers.
struct Budget {
    limit: usize,
    used: AtomicUsize,
    /// Woken when bytes are given back.
    freed: Notify,
}

impl Budget {
    /// Takes `n` bytes if they fit.
    fn try_take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used + n <= self.limit).then_some(used + n)
            })
            .is_ok()
    }

    fn give_back(&self, n: usize) {
        if n > 0 {
            self.used.fetch_sub(n, Ordering::AcqRel);
            self.freed.notify_waiters();
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
    limits: &Limits,
    caller: &Caller,
    shutdown: watch::Receiver<bool>,
) -> Result<EventStream, Error> {
    let slot = limits
        .slots
        .try_take(caller)
        .map_err(|Refused(why)| Error::ResourceExhausted(why))?;
    let queue = Arc::new(Queue {
        inner: Mutex::new(QueueState {
            taken_to: request.after,
            ..QueueState::default()
        }),
        space: Notify::new(),
        budget: limits.budget.clone(),
    });
    let producer = Producer {
        store,
        queue: queue.clone(),
        options,
        shutdown,
        seen_bytes: 0,
        seen_events: 0,
    };
    tokio::spawn(async move {
        producer.run(request).await;
        drop(slot);
    });
    Ok(EventStream { queue, done: false })
}

/// One stream's buffer, shared by its producer and its consumer.
struct Queue {
    inner: Mutex<QueueState>,
    /// Woken when the consumer takes an event (or goes away).
    space: Notify,
    /// The budget the buffered bytes are taken from.
    budget: Arc<Budget>,
}

#[derive(Default)]
struct QueueState {
    /// Events with the bytes each holds of the budget and their log
    /// position.
    events: VecDeque<(pb::ClaimEvent, usize, u64)>,
    /// Log position of the last event the consumer took (the request's
    /// start before any): where to resume if the buffer is dropped.
    taken_to: u64,
    /// Bytes of `events`.
    bytes: usize,
    /// The producer stopped: after the buffered events, the stream ends
    /// with this status (or cleanly, if none).
    finished: bool,
    end: Option<Status>,
    /// The consumer dropped the stream.
    gone: bool,
    /// The consumer waiting for an event.
    waker: Option<Waker>,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Ends the stream with `end` after what is buffered.
    fn finish(&self, end: Option<Status>) {
        self.end_with(|_| end, false);
    }

    /// Ends the stream of a consumer that stalled: drops its buffer at once
    /// and ends with RESOURCE_EXHAUSTED and the cursor of the last event it
    /// took.
    fn cut(&self, why: &str) -> Status {
        let mut sent = None;
        self.end_with(
            |taken_to| {
                let status = resume_status(tonic::Code::ResourceExhausted, why, taken_to);
                sent = Some(status.clone());
                Some(status)
            },
            true,
        );
        sent.expect("end_with calls it")
    }

    fn end_with(&self, end: impl FnOnce(u64) -> Option<Status>, drop_buffer: bool) {
        let waker = {
            let mut state = self.lock();
            if drop_buffer {
                state.events.clear();
                self.budget.give_back(std::mem::take(&mut state.bytes));
            }
            state.finished = true;
            state.end = end(state.taken_to);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        let mut state = self.queue.lock();
        state.gone = true;
        state.events.clear();
        self.queue
            .budget
            .give_back(std::mem::take(&mut state.bytes));
        drop(state);
        self.queue.space.notify_one();
    }
}

struct Producer<S> {
    store: Arc<S>,
    queue: Arc<Queue>,
    options: WatchOptions,
    shutdown: watch::Receiver<bool>,
    /// Bytes and count of the events queued so far, for the batch size.
    seen_bytes: usize,
    seen_events: usize,
}

/// Why a producer stopped early.
enum Stop {
    /// The consumer went away: nothing to tell.
    Gone,
    /// End the stream with this status, after the buffered events.
    With(Status),
    /// The consumer stalled: drop the buffer and end with
    /// RESOURCE_EXHAUSTED (this reason, and the cursor of the last event
    /// it took).
    Stalled(String),
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
                self.queue.finish(Some(status));
            }
            Stop::Stalled(why) => {
                let status = self.queue.cut(&why);
                tracing::info!(code = ?status.code(), reason = status.message(), "watch ended");
            }
        }
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
                let limit = self.batch_limit();
                let batch = match self
                    .store
                    .log_events(after, newest, &request.filter, limit)
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
                () = consumer_gone(&self.queue) => return Stop::Gone,
            }
        }
    }

    /// How many events to read next: what fits in the room left in the
    /// buffer at the mean size seen so far, between 1 and [`BATCH`].
    fn batch_limit(&self) -> usize {
        let state = self.queue.lock();
        let free_bytes = self.options.stream_buffer_bytes.saturating_sub(state.bytes);
        let free_events = self.options.buffer.saturating_sub(state.events.len());
        drop(state);
        let mean = self
            .seen_bytes
            .checked_div(self.seen_events)
            .unwrap_or(FIRST_GUESS_EVENT_BYTES);
        (free_bytes / mean.max(1)).min(free_events).clamp(1, BATCH)
    }

    /// Queues one event; `resume_after` is the cursor to report if it cannot
    /// be queued (everything before the event was). Waits while the
    /// stream's buffer or the shared budget is full, at most the stall
    /// timeout.
    async fn deliver(&mut self, event: pb::ClaimEvent, resume_after: u64) -> Result<(), Stop> {
        let size = event.encoded_len() + EVENT_OVERHEAD;
        self.seen_bytes += size;
        self.seen_events += 1;
        let stall = tokio::time::sleep(self.options.stall_timeout);
        tokio::pin!(stall);
        let mut event = Some(event);
        loop {
            // Register for wake-ups before looking, so none is missed.
            let space = self.queue.space.notified();
            let freed = self.queue.budget.freed.notified();
            tokio::pin!(space, freed);
            space.as_mut().enable();
            freed.as_mut().enable();
            let waker = {
                let mut state = self.queue.lock();
                if state.gone {
                    return Err(Stop::Gone);
                }
                let fits_stream = state.events.is_empty()
                    || (state.events.len() < self.options.buffer.max(1)
                        && state.bytes + size <= self.options.stream_buffer_bytes);
                if fits_stream && self.queue.budget.try_take(size) {
                    state.bytes += size;
                    state.events.push_back((
                        event.take().expect("queued once"),
                        size,
                        resume_after + 1,
                    ));
                    state.waker.take()
                } else {
                    None
                }
            };
            if event.is_none() {
                if let Some(waker) = waker {
                    waker.wake();
                }
                return Ok(());
            }
            tokio::select! {
                () = &mut space => {}
                () = &mut freed => {}
                () = &mut stall => return Err(Stop::Stalled(format!(
                    "the consumer fell behind: its buffer stayed full for {} ms \
                     (limits: {} events, {} bytes a stream, {} bytes in all)",
                    self.options.stall_timeout.as_millis(),
                    self.options.buffer,
                    self.options.stream_buffer_bytes,
                    self.options.total_buffer_bytes,
                ))),
                _ = stopping(&mut self.shutdown) => return Err(Stop::With(resume_status(
                    tonic::Code::Unavailable,
                    "the server is shutting down",
                    resume_after,
                ))),
            }
        }
    }
}

/// Resolves when the consumer has dropped the stream.
async fn consumer_gone(queue: &Queue) {
    loop {
        let space = queue.space.notified();
        tokio::pin!(space);
        space.as_mut().enable();
        if queue.lock().gone {
            return;
        }
        space.await;
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
    queue: Arc<Queue>,
    done: bool,
}

impl Stream for EventStream {
    type Item = Result<pb::ClaimEvent, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let mut state = self.queue.lock();
        if let Some((event, size, position)) = state.events.pop_front() {
            state.bytes -= size;
            state.taken_to = position;
            drop(state);
            self.queue.budget.give_back(size);
            self.queue.space.notify_one();
            return Poll::Ready(Some(Ok(event)));
        }
        if state.finished {
            let end = state.end.take();
            drop(state);
            self.done = true;
            return Poll::Ready(end.map(Err));
        }
        state.waker = Some(cx.waker().clone());
        Poll::Pending
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
