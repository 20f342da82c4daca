//! Fair slots against the real binary (issue 21, item 5): one reader key's
//! slowloris (headers-only calls that never send a body) takes only its own
//! share of the in-flight slots, other keys, admins and health checks are
//! served meanwhile; the last sixteenth of the slots is kept for admins;
//! watch streams are limited per key the same way.

mod common;

use std::time::Duration;

use common::cli::create_key;
use common::Process;
use photoclaim::pb;
use photoclaim::pb::admin_service_client::AdminServiceClient;
use photoclaim::pb::claim_service_client::ClaimServiceClient;
use tonic::transport::Channel;
use tonic::Code;

/// Calls over raw HTTP/2 that send their headers and never a body: each
/// holds an in-flight slot (if it gets one) until the body timeout.
struct Slowloris {
    /// The replies that came back (refusals), with their grpc-message.
    refused: Vec<(Code, String)>,
    /// Calls still waiting: the held slots.
    held: usize,
    /// Keeps the streams open (reset on drop).
    _streams: Vec<h2::SendStream<bytes::Bytes>>,
}

async fn slowloris(addr: &str, token: &str, calls: usize) -> Slowloris {
    let client = common::h2_client(addr).await;
    let mut streams = Vec::new();
    let mut responses = Vec::new();
    for _ in 0..calls {
        let mut ready = client.clone().ready().await.unwrap();
        let bearer = format!("Bearer {token}");
        let request = common::grpc_request(addr, "GetClaim", &[("authorization", &bearer)]);
        let (response, send) = ready.send_request(request, false).unwrap();
        streams.push(send);
        responses.push(response);
    }
    // Refusals come back at once; the held calls do not answer.
    let waits: Vec<_> = responses
        .into_iter()
        .map(|response| tokio::spawn(tokio::time::timeout(Duration::from_secs(2), response)))
        .collect();
    let mut refused = Vec::new();
    let mut held = 0;
    for wait in waits {
        match wait.await.unwrap() {
            Ok(Ok(response)) => {
                let headers = response.headers();
                let code = headers
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok()?.parse::<i32>().ok())
                    .map_or(Code::Unknown, Code::from);
                let message = headers
                    .get("grpc-message")
                    .and_then(|v| v.to_str().ok())
                    .map(|m| m.replace("%20", " "))
                    .unwrap_or_default();
                refused.push((code, message));
            }
            Ok(Err(err)) => panic!("stream failed: {err}"),
            Err(_) => held += 1,
        }
    }
    Slowloris {
        refused,
        held,
        _streams: streams,
    }
}

impl Drop for Slowloris {
    /// Cancels the calls, as a client that gives up does: their slots
    /// come back.
    fn drop(&mut self) {
        for stream in &mut self._streams {
            stream.send_reset(h2::Reason::CANCEL);
        }
    }
}

fn bearer(
    token: &str,
) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone {
    let value: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
    move |mut request: tonic::Request<()>| {
        request
            .metadata_mut()
            .insert("authorization", value.clone());
        Ok(request)
    }
}

async fn channel(addr: &str) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn one_key_cannot_take_every_slot_and_admins_keep_a_share() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let greedy = create_key(&data, "greedy", "reader");
    let other = create_key(&data, "other", "reader");
    let third = create_key(&data, "third", "reader");
    let ops = create_key(&data, "ops", "admin");
    let server = Process::spawn_with(
        &data,
        &[
            "--max-in-flight",
            "32",
            "--max-in-flight-per-caller",
            "12",
            "--watch-max-streams",
            "32",
            "--watch-max-streams-per-caller",
            "6",
            "--body-timeout-seconds",
            "120",
            "--request-timeout-seconds",
            "300",
        ],
    );

    // The greedy key's 30 headers-only calls: 12 are held, 18 refused.
    let greedy_calls = slowloris(&server.addr, &greedy, 30).await;
    assert_eq!(greedy_calls.held, 12, "{:?}", greedy_calls.refused);
    assert_eq!(greedy_calls.refused.len(), 18);
    for (code, message) in &greedy_calls.refused {
        assert_eq!(*code, Code::ResourceExhausted, "{message}");
        assert!(
            message.contains("the most one caller may have"),
            "{message}"
        );
    }

    // Another reader is served meanwhile, and so is an admin.
    let mut other_client =
        ClaimServiceClient::with_interceptor(channel(&server.addr).await, bearer(&other));
    let err = other_client
        .get_claim(pb::GetClaimRequest {
            name: "claims/1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "served, not shed: {err:?}");
    let mut admin = AdminServiceClient::with_interceptor(channel(&server.addr).await, bearer(&ops));
    admin
        .list_api_keys(pb::ListApiKeysRequest {})
        .await
        .expect("an admin is served");

    // Two more readers fill the slots up to the admins' share (32 - 2):
    // 12 + 12 + 6 = 30; the rest is refused as kept for admins.
    let other_calls = slowloris(&server.addr, &other, 12).await;
    assert_eq!(other_calls.held, 12, "{:?}", other_calls.refused);
    let third_calls = slowloris(&server.addr, &third, 10).await;
    assert_eq!(third_calls.held, 6, "{:?}", third_calls.refused);
    assert!(
        third_calls
            .refused
            .iter()
            .all(|(c, m)| *c == Code::ResourceExhausted && m.contains("kept for admins")),
        "{:?}",
        third_calls.refused
    );
    // The operator can still act.
    admin
        .list_api_keys(pb::ListApiKeysRequest {})
        .await
        .expect("the admins' share is free");
    drop((greedy_calls, other_calls, third_calls));

    // Watch streams: six per key, the seventh refused; another key still
    // gets one.
    let mut greedy_client =
        ClaimServiceClient::with_interceptor(channel(&server.addr).await, bearer(&greedy));
    let watch_request = pb::WatchClaimEventsRequest {
        start_at_end: true,
        ..Default::default()
    };
    let mut open = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    // Slots of the slowloris calls come back once their streams are gone.
    while open.len() < 6 && std::time::Instant::now() < deadline {
        match greedy_client
            .watch_claim_events(watch_request.clone())
            .await
        {
            Ok(stream) => open.push(stream),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert_eq!(open.len(), 6);
    let err = greedy_client
        .watch_claim_events(watch_request.clone())
        .await
        .expect_err("a seventh stream for one key");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("watch streams"), "{err:?}");
    other_client
        .watch_claim_events(watch_request)
        .await
        .expect("another key's stream");
}
