//! WatchClaimEvents: history then live with no gap or duplicate, resume
//! from a cursor across a graceful restart and across kill -9, stalled
//! consumers, shutdown, filters and bad requests.

mod common;

use std::time::Duration;

use common::*;
use photoclaim::api::WatchOptions;
use photoclaim::pb;
use photoclaim::server::Options;
use tokio_stream::StreamExt;
use tonic::Code;

type Events = tonic::Streaming<pb::ClaimEvent>;

async fn watch(client: &mut Client, req: pb::WatchClaimEventsRequest) -> Events {
    client
        .watch_claim_events(req)
        .await
        .expect("watch accepted")
        .into_inner()
}

fn after(cursor: &str) -> pb::WatchClaimEventsRequest {
    pb::WatchClaimEventsRequest {
        after_cursor: cursor.to_string(),
        ..Default::default()
    }
}

/// Reads `n` events (panics on an error or the end of the stream).
async fn take(stream: &mut Events, n: usize) -> Vec<pb::ClaimEvent> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(30), stream.next()).await {
            Ok(Some(Ok(event))) => out.push(event),
            Ok(Some(Err(status))) => panic!("stream failed after {} events: {status:?}", out.len()),
            Ok(None) => panic!("stream ended after {} of {n} events", out.len()),
            Err(_) => panic!("no event within 30 s after {} of {n}", out.len()),
        }
    }
    out
}

/// Reads until the stream ends; returns the events and the final status.
async fn drain(stream: &mut Events) -> (Vec<pb::ClaimEvent>, Option<tonic::Status>) {
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(30), stream.next()).await {
            Ok(Some(Ok(event))) => out.push(event),
            Ok(Some(Err(status))) => return (out, Some(status)),
            Ok(None) => return (out, None),
            Err(_) => panic!(
                "stream neither ended nor sent within 30 s (after {} events)",
                out.len()
            ),
        }
    }
}

fn cursor(event: &pb::ClaimEvent) -> u64 {
    event.cursor.parse().expect("numeric cursor")
}

/// The cursors are exactly `from..=to`, in order.
fn assert_contiguous(events: &[pb::ClaimEvent], from: u64, to: u64) {
    let cursors: Vec<u64> = events.iter().map(cursor).collect();
    let expected: Vec<u64> = (from..=to).collect();
    assert_eq!(
        cursors, expected,
        "cursors must be contiguous, no gap or duplicate"
    );
}

fn resume_cursor(status: &tonic::Status) -> String {
    let value = status
        .metadata()
        .get("photoclaim-resume-cursor")
        .unwrap_or_else(|| panic!("no resume cursor in {status:?}"));
    let cursor = value.to_str().unwrap().to_string();
    assert!(status.message().contains(&cursor), "{status:?}");
    cursor
}

#[tokio::test]
async fn history_then_live_events_arrive_in_order_with_no_gap_or_duplicate() {
    let server = InProcess::start().await;
    let mut client = server.client.clone();
    let first = new_claim(&mut client, "history 1").await;
    new_claim(&mut client, "history 2").await;
    attach(
        &mut client,
        &first.name,
        sample_response(pb::Stance::Refutes),
        "",
    )
    .await;

    let mut stream = watch(&mut client, after("")).await;
    let history = take(&mut stream, 3).await;
    assert_contiguous(&history, 1, 3);
    assert_eq!(
        history[0].r#type,
        pb::ClaimEventType::ClaimRegistered as i32
    );
    assert_eq!(history[2].claim, first.name);

    // Live: writers racing the stream, 8 at a time.
    let mut writers = tokio::task::JoinSet::new();
    for i in 0..40 {
        let mut c = client.clone();
        writers.spawn(async move { new_claim(&mut c, &format!("live {i}")).await });
    }
    let live = take(&mut stream, 40).await;
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    assert_contiguous(&live, 4, 43);
    // Every event is the stored one, byte for byte.
    for event in live.iter().step_by(7) {
        let stored = all_events(&mut client, &event.claim).await;
        assert!(stored.contains(event), "{event:?} not as stored");
    }

    // start_at_end: only what happens from now on.
    let mut fresh = watch(
        &mut client,
        pb::WatchClaimEventsRequest {
            start_at_end: true,
            ..Default::default()
        },
    )
    .await;
    let claim = new_claim(&mut client, "after the end").await;
    let next = take(&mut fresh, 1).await;
    assert_eq!(next[0].claim, claim.name);
    assert_eq!(cursor(&next[0]), 44);
    server.stop().await;
}

#[tokio::test]
async fn filters_by_claim_and_by_type() {
    let server = InProcess::start().await;
    let mut client = server.client.clone();
    let a = new_claim(&mut client, "a").await;
    let b = new_claim(&mut client, "b").await;
    attach(
        &mut client,
        &a.name,
        sample_response(pb::Stance::Refutes),
        "",
    )
    .await;
    attach(
        &mut client,
        &b.name,
        sample_response(pb::Stance::Supports),
        "",
    )
    .await;

    let mut only_b = watch(
        &mut client,
        pb::WatchClaimEventsRequest {
            claim: b.name.clone(),
            ..Default::default()
        },
    )
    .await;
    let got = take(&mut only_b, 2).await;
    assert!(got.iter().all(|e| e.claim == b.name), "{got:?}");
    let mut attached = watch(
        &mut client,
        pb::WatchClaimEventsRequest {
            event_types: vec![pb::ClaimEventType::OfficialResponseAttached as i32],
            ..Default::default()
        },
    )
    .await;
    let got = take(&mut attached, 2).await;
    assert_eq!(
        got.iter().map(|e| e.claim.as_str()).collect::<Vec<_>>(),
        [a.name.as_str(), b.name.as_str()]
    );
    // Live, filtered: a's next event does not reach b's stream, b's does.
    attach(
        &mut client,
        &a.name,
        sample_response(pb::Stance::AddsContext),
        "",
    )
    .await;
    attach(
        &mut client,
        &b.name,
        sample_response(pb::Stance::AddsContext),
        "",
    )
    .await;
    let got = take(&mut only_b, 1).await;
    assert_eq!(got[0].claim, b.name);
    assert_eq!(got[0].sequence, 3);
    server.stop().await;
}

#[tokio::test]
async fn bad_watch_requests_get_clear_errors() {
    let server = InProcess::start().await;
    let mut client = server.client.clone();
    new_claim(&mut client, "one").await;
    let cases = [
        (after("abc"), Code::InvalidArgument, "after_cursor"),
        (after("99"), Code::OutOfRange, "after_cursor 99"),
        (
            pb::WatchClaimEventsRequest {
                claim: "claims/42".into(),
                ..Default::default()
            },
            Code::NotFound,
            "claims/42",
        ),
        (
            pb::WatchClaimEventsRequest {
                claim: "photos/1".into(),
                ..Default::default()
            },
            Code::InvalidArgument,
            "claim",
        ),
        (
            pb::WatchClaimEventsRequest {
                event_types: vec![99],
                ..Default::default()
            },
            Code::InvalidArgument,
            "event_types[0]",
        ),
        (
            pb::WatchClaimEventsRequest {
                after_cursor: "1".into(),
                start_at_end: true,
                ..Default::default()
            },
            Code::InvalidArgument,
            "start_at_end",
        ),
    ];
    for (req, code, needle) in cases {
        let err = client
            .watch_claim_events(req.clone())
            .await
            .expect_err(&format!("{req:?} must be refused"));
        assert_eq!(err.code(), code, "{req:?}: {err:?}");
        assert!(err.message().contains(needle), "{req:?}: {err:?}");
    }
    server.stop().await;
}

/// A WatchClaimEvents call over raw HTTP/2 whose reader returns flow-control
/// credit only when told to: a consumer that really stops reading.
struct RawWatch {
    body: h2::RecvStream,
    pending: Vec<u8>,
}

impl RawWatch {
    async fn open(addr: std::net::SocketAddr, req: pb::WatchClaimEventsRequest) -> RawWatch {
        use prost::Message;
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (client, connection) = h2::client::Builder::new()
            .initial_window_size(1024)
            .handshake::<_, bytes::Bytes>(tcp)
            .await
            .unwrap();
        tokio::spawn(connection);
        let mut client = client.ready().await.unwrap();
        let request = grpc_request(&addr.to_string(), "WatchClaimEvents", &[]);
        let (response, mut send) = client.send_request(request, false).unwrap();
        let frame = grpc_frame(&req.encode_to_vec());
        send.send_data(frame.into(), true).unwrap();
        let response = response.await.unwrap();
        assert_eq!(response.status(), 200);
        RawWatch {
            body: response.into_body(),
            pending: Vec::new(),
        }
    }

    /// Reads to the end: the events, then grpc-status and the resume cursor
    /// from the trailers.
    async fn read_to_end(mut self) -> (Vec<pb::ClaimEvent>, Code, Option<String>) {
        use prost::Message;
        while let Some(chunk) = self.body.data().await {
            let chunk = chunk.unwrap();
            self.body
                .flow_control()
                .release_capacity(chunk.len())
                .unwrap();
            self.pending.extend_from_slice(&chunk);
        }
        let trailers = self.body.trailers().await.unwrap().expect("trailers");
        let mut events = Vec::new();
        let mut rest = &self.pending[..];
        while rest.len() >= 5 {
            let len = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
            events.push(pb::ClaimEvent::decode(&rest[5..5 + len]).unwrap());
            rest = &rest[5 + len..];
        }
        let code = trailers["grpc-status"]
            .to_str()
            .unwrap()
            .parse::<i32>()
            .unwrap();
        let cursor = trailers
            .get("photoclaim-resume-cursor")
            .map(|v| v.to_str().unwrap().to_string());
        (events, Code::from(code), cursor)
    }
}

#[tokio::test]
async fn a_stalled_consumer_does_not_block_writers_and_is_cut_off_with_a_cursor() {
    let options = Options {
        watch: WatchOptions {
            buffer: 8,
            stall_timeout: Duration::from_millis(300),
            ..WatchOptions::default()
        },
        ..Options::default()
    };
    let server = InProcess::start_with(options).await;
    const N: i32 = 1000;
    let stalled = RawWatch::open(server.addr, after("")).await;

    // 1,000 concurrent writes complete while the watcher reads nothing.
    let mut client = server.client.clone();
    let mut writers = tokio::task::JoinSet::new();
    for i in 0..N {
        let mut c = client.clone();
        writers.spawn(async move {
            // ~5 KB events: 5 MB in all, past what the HTTP/2 layer itself
            // buffers for a stream plus the stream's own buffer.
            let claim = sample_claim(&format!("write {i} {}", "x".repeat(5000)));
            register(&mut c, claim, &format!("stall-{i}")).await
        });
    }
    let mut written = 0;
    while let Some(done) = writers.join_next().await {
        done.expect("writer");
        written += 1;
    }
    assert_eq!(written, N);

    // Now read: a prefix of the log, then RESOURCE_EXHAUSTED with the cursor.
    let (got, code, resume) = stalled.read_to_end().await;
    assert_eq!(code, Code::ResourceExhausted);
    assert!(
        got.len() < N as usize,
        "cut off before the end ({} events)",
        got.len()
    );
    let resume = resume.expect("a resume cursor");
    assert_eq!(
        resume,
        got.len().to_string(),
        "resume after the last delivered"
    );
    assert_contiguous(&got, 1, got.len() as u64);

    // Resuming from the cursor delivers the rest, no gap, no duplicate.
    let mut rest = watch(&mut client, after(&resume)).await;
    let more = take(&mut rest, N as usize - got.len()).await;
    assert_contiguous(&more, got.len() as u64 + 1, N as u64);
    server.stop().await;
}

#[tokio::test]
async fn watchers_that_never_read_stay_within_the_byte_budget_and_are_cut() {
    const STREAMS: usize = 40;
    const BUDGET_MB: u64 = 32;
    let dir = tempfile::tempdir().unwrap();
    let server = Process::spawn_with(
        &dir.path().join("data"),
        &[
            "--watch-stall-seconds",
            "1",
            "--watch-buffer-mb",
            "32",
            "--watch-stream-buffer-kb",
            "1024",
        ],
    );
    let pid = server.child.id();
    let addr: std::net::SocketAddr = server.addr.parse().unwrap();
    let mut client = connect(&server.addr).await;
    // 400 claims of 10,000 four-byte characters: 40 KB events, 16 MB of log.
    // Before the budget, each watcher held up to 1,024 of them: all 16 MB.
    let text: String = std::iter::repeat_n('\u{1D54F}', 9_990).collect();
    for i in 0..400 {
        register(
            &mut client,
            sample_claim(&format!("{i} {text}")),
            &format!("big-{i}"),
        )
        .await;
    }
    let baseline = memory_kib(pid, "VmRSS:");

    // Watchers from the start that never read (no flow-control credit).
    let mut stalled = Vec::new();
    for _ in 0..STREAMS {
        stalled.push(RawWatch::open(addr, after("")).await);
    }
    // Past the stall timeout every one has been cut.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let peak = memory_kib(pid, "VmHWM:");
    let grown_mib = peak.saturating_sub(baseline) / 1024;
    // The budget, plus what the HTTP/2 layer buffers per stream (its send
    // buffer, bounded by hyper), plus slack for the allocator.
    let allowed_mib = BUDGET_MB + STREAMS as u64 * 2 + 64;
    eprintln!("{STREAMS} stalled watchers: server RSS {baseline} KiB -> peak {peak} KiB (+{grown_mib} MiB)");
    assert!(
        grown_mib <= allowed_mib,
        "{STREAMS} stalled watchers grew the server by {grown_mib} MiB (allowed {allowed_mib}; \
         without the budget it is about {} MiB)",
        STREAMS * 16
    );

    // Each was told where to resume: RESOURCE_EXHAUSTED with a cursor, after
    // far fewer than all 400 events (its buffer was dropped when cut).
    let (got, code, resume) = stalled.pop().unwrap().read_to_end().await;
    assert_eq!(code, Code::ResourceExhausted);
    assert!(got.len() < 100, "{} events delivered", got.len());
    assert_eq!(resume, Some(got.len().to_string()));
    // The server still serves, and a reading watcher gets everything.
    let mut live = watch(&mut client, after("")).await;
    let all = take(&mut live, 400).await;
    assert_contiguous(&all, 1, 400);
    drop(stalled);
}

#[tokio::test]
async fn shutdown_ends_streams_with_a_cursor_instead_of_holding_the_drain() {
    let server = InProcess::start_with(Options {
        // Far longer than the test may take: the drain must not wait for it.
        shutdown_grace: Duration::from_secs(120),
        ..Options::default()
    })
    .await;
    let mut client = server.client.clone();
    new_claim(&mut client, "before shutdown").await;
    let mut stream = watch(&mut client, after("")).await;
    take(&mut stream, 1).await;
    let started = std::time::Instant::now();
    let stopping = tokio::spawn(server.stop());
    let (rest, end) = drain(&mut stream).await;
    assert!(rest.is_empty());
    let end = end.expect("a final status");
    assert_eq!(end.code(), Code::Unavailable, "{end:?}");
    assert_eq!(resume_cursor(&end), "1");
    stopping.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the drain waited for the stream"
    );
}

/// Writes through a real server process and watches it; the server goes
/// away (SIGTERM, then kill -9 mid-write); the watcher resumes from its
/// cursor on the restarted server and sees every event exactly once, and
/// every event it saw before the crash is still stored.
#[tokio::test]
async fn resume_from_a_cursor_across_restarts_and_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let server = Process::spawn(dir.path());
    let mut client = connect(&server.addr).await;
    for i in 0..5 {
        new_claim(&mut client, &format!("before restart {i}")).await;
    }
    let mut stream = watch(&mut client, after("")).await;
    let mut seen = take(&mut stream, 5).await;
    let (exit, _) = server.terminate();
    assert!(exit.success());
    let (rest, end) = drain(&mut stream).await;
    assert!(rest.is_empty(), "{rest:?}");
    let end = end.expect("a final status at shutdown");
    assert_eq!(end.code(), Code::Unavailable, "{end:?}");
    let cursor_at_shutdown = resume_cursor(&end);
    assert_eq!(cursor_at_shutdown, "5");

    // Restart; writers run while the watcher resumes; then kill -9.
    let server = Process::spawn(dir.path());
    let mut client = connect(&server.addr).await;
    let mut stream = watch(&mut client, after(&cursor_at_shutdown)).await;
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..4 {
        let mut c = client.clone();
        writers.spawn(async move {
            for i in 0..1000 {
                let claim = sample_claim(&format!("writer {w} claim {i}"));
                if c.register_claim(pb::RegisterClaimRequest {
                    request_id: format!("w{w}-{i}"),
                    claim: Some(claim),
                    ..Default::default()
                })
                .await
                .is_err()
                {
                    break; // the server was killed
                }
            }
        });
    }
    seen.extend(take(&mut stream, 100).await);
    server.kill9();
    while writers.join_next().await.is_some() {}
    let (tail, _) = drain(&mut stream).await;
    seen.extend(tail);
    let last = cursor(seen.last().unwrap());
    assert_contiguous(&seen, 1, last);

    let server = Process::spawn(dir.path());
    let mut client = connect(&server.addr).await;
    // Everything the watcher saw survived the crash, unchanged.
    for event in seen.iter().skip(5).step_by(13) {
        let stored = all_events(&mut client, &event.claim).await;
        assert!(stored.contains(event), "{event:?} was shown, then lost");
    }
    // Resume: the next event continues the sequence.
    new_claim(&mut client, "after the crash").await;
    let mut stream = watch(&mut client, after(&last.to_string())).await;
    let next = take(&mut stream, 1).await;
    assert_eq!(cursor(&next[0]), last + 1);
    let _ = server.terminate();
}

#[tokio::test]
async fn open_streams_are_capped_and_a_closed_one_frees_its_slot() {
    let server = InProcess::start_with(Options {
        watch: WatchOptions {
            max_streams: 1,
            ..WatchOptions::default()
        },
        ..Options::default()
    })
    .await;
    let mut client = server.client.clone();
    new_claim(&mut client, "one").await;
    let mut first = watch(&mut client, after("")).await;
    take(&mut first, 1).await;
    let err = client
        .watch_claim_events(after(""))
        .await
        .expect_err("a second stream is over the limit");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("limit 1"), "{err:?}");
    // Other calls are not affected.
    new_claim(&mut client, "two").await;
    drop(first);
    // The producer notices the closed stream and frees the slot.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match client.watch_claim_events(after("")).await {
            Ok(stream) => {
                let mut stream = stream.into_inner();
                assert_eq!(take(&mut stream, 2).await.len(), 2);
                break;
            }
            Err(err) if err.code() == Code::ResourceExhausted => {
                assert!(std::time::Instant::now() < deadline, "slot never freed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(err) => panic!("{err:?}"),
        }
    }
    server.stop().await;
}
