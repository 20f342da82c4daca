//! Hostile connections against the real binary (issue 21, item 4 and the
//! HTTP/2 setting of item 5): raw TCP connections that never speak are
//! closed by the first-bytes deadline and give their descriptors back;
//! connections past `--max-connections` are closed at once, counted and
//! logged once a second at most; the server keeps serving others; HTTP/2
//! `SETTINGS_MAX_CONCURRENT_STREAMS` is advertised.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Process;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// Descriptors the process holds now.
fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| dir.count())
        .unwrap_or(0)
}

/// Whether the server closed `stream`: a read returns end-of-file or a
/// reset within `within`.
fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

async fn serving(addr: &str) -> bool {
    let Ok(channel) = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
    else {
        return false;
    };
    let reply = tokio::time::timeout(
        Duration::from_secs(5),
        HealthClient::new(channel).check(HealthCheckRequest {
            service: String::new(),
        }),
    )
    .await;
    matches!(reply, Ok(Ok(r)) if r.get_ref().status == 1)
}

/// The metrics address a server started with `--metrics-listen
/// 127.0.0.1:0` logged.
fn metrics_addr(log: &str) -> String {
    log.lines()
        .find(|l| l.contains("metrics listening"))
        .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix("addr=")))
        .expect("the metrics address in the log")
        .to_string()
}

#[tokio::test]
async fn silent_connections_are_closed_by_the_deadline_and_their_descriptors_freed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Process::spawn_with(
        &dir.path().join("data"),
        &[
            "--first-bytes-timeout-seconds",
            "3",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    let pid = server.child.id();
    assert!(serving(&server.addr).await);
    let baseline = open_descriptors(pid);

    // 200 connections that never send a byte (no key needed to do this).
    let mut silent: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(&server.addr).unwrap())
        .collect();
    // Accepted: well before the deadline, even on a busy machine.
    let accepting = Instant::now() + Duration::from_millis(2500);
    let mut held = open_descriptors(pid);
    while held < baseline + 150 && Instant::now() < accepting {
        std::thread::sleep(Duration::from_millis(20));
        held = open_descriptors(pid);
    }
    assert!(
        held >= baseline + 150,
        "the server accepted them: {baseline} -> {held} descriptors"
    );
    // Meanwhile others are served.
    assert!(serving(&server.addr).await, "served beside silent peers");

    // The deadline (3 s) closes every one of them.
    for (i, stream) in silent.iter_mut().enumerate() {
        assert!(
            closed_by_server(stream, Duration::from_secs(10)),
            "silent connection {i} still open"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while open_descriptors(pid) > baseline + 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        open_descriptors(pid) <= baseline + 5,
        "descriptors back near {baseline}: {}",
        open_descriptors(pid)
    );
    assert!(serving(&server.addr).await);
    // Counted where operators look.
    let addr = metrics_addr(&server.log.lock().unwrap());
    let (_, page) = common::scrape_metrics(&addr).await;
    let silent = page
        .lines()
        .find(|l| l.starts_with("photoclaim_connections_closed_by_server_total{reason=\"silent\"}"))
        .and_then(|l| l.split_whitespace().last()?.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no silent-connection count in:\n{page}"));
    assert!(silent >= 200, "{silent} counted");
    let (_, log) = server.terminate();
    assert!(
        log.contains("connection closed: it sent too little in time"),
        "{log}"
    );
    // Rate-limited: 200 closings within a few seconds are not 200 lines.
    assert!(log.matches("sent too little in time").count() < 20, "{log}");
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_at_once_and_the_server_still_serves() {
    let dir = tempfile::tempdir().unwrap();
    let server = Process::spawn_with(
        &dir.path().join("data"),
        &[
            "--max-connections",
            "16",
            "--first-bytes-timeout-seconds",
            "30",
        ],
    );
    assert!(serving(&server.addr).await);
    // 16 silent connections take every slot (the deadline is long)...
    let holders: Vec<TcpStream> = (0..16)
        .map(|_| TcpStream::connect(&server.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // ... so the next ones are closed at once, without waiting for anything.
    for _ in 0..5 {
        let mut extra = TcpStream::connect(&server.addr).unwrap();
        assert!(
            closed_by_server(&mut extra, Duration::from_secs(5)),
            "a connection past the cap stays open"
        );
    }
    // Once the holders leave, the server serves again.
    drop(holders);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut ok = false;
    while !ok && Instant::now() < deadline {
        ok = serving(&server.addr).await;
    }
    assert!(ok, "served again once slots were freed");
    let (_, log) = server.terminate();
    assert!(
        log.contains("connection refused: too many open connections"),
        "{log}"
    );
}

#[tokio::test]
async fn the_server_advertises_its_per_connection_stream_limit() {
    let dir = tempfile::tempdir().unwrap();
    let server = Process::spawn_with(
        &dir.path().join("data"),
        &["--max-calls-per-connection", "24"],
    );
    assert!(serving(&server.addr).await);
    // The server's SETTINGS arrive with its first frames; wait for them.
    let mut client = common::h2_client(&server.addr).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.current_max_send_streams() != 24 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        client = client.ready().await.unwrap();
    }
    assert_eq!(client.current_max_send_streams(), 24);
}
