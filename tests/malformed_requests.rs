//! A request body that is not a valid protobuf message (a string that is not
//! UTF-8, a truncated message, a wrong wire type, groups nested past prost's
//! recursion limit), sent as raw gRPC frames over HTTP/2 to a server on
//! 127.0.0.1:0, is INVALID_ARGUMENT naming the decode failure (not
//! tonic-prost's INTERNAL); it is logged at info and counted in
//! `photoclaim_rpc_requests_total` (scraped from the metrics endpoint), and
//! the server goes on serving.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{scrape_metrics, InProcess};
use photoclaim::pb;
use prost::Message;
use tonic::Code;
use tonic_types::StatusExt;

/// Everything logged in this test binary (its one test).
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    /// Captures this process's log lines at info and above, as the server
    /// writes them.
    fn capture() -> Log {
        let log = Log::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        log
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// One unary call with `message` as the body's only frame, over raw HTTP/2
/// (no client codec in the way); the status from the trailers, or from the
/// headers of a trailers-only reply.
async fn raw_call(addr: &str, method: &str, message: &[u8]) -> tonic::Status {
    let mut client = common::h2_client(addr).await;
    let request = common::grpc_request(addr, method, &[]);
    let (response, mut send) = client.send_request(request, false).unwrap();
    let frame = common::grpc_frame(message);
    send.send_data(frame.into(), true).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .expect("a reply in time")
        .unwrap();
    assert_eq!(response.status(), 200);
    if let Some(status) = tonic::Status::from_header_map(response.headers()) {
        return status;
    }
    let mut body = response.into_body();
    while let Some(data) = body.data().await {
        data.unwrap();
    }
    let trailers = body.trailers().await.unwrap().expect("trailers");
    tonic::Status::from_header_map(&trailers).expect("grpc-status in the trailers")
}

/// `photoclaim_rpc_requests_total{method, code}` (0 if absent).
fn calls(body: &str, method: &str, code: &str) -> f64 {
    let series = format!("photoclaim_rpc_requests_total{{method=\"{method}\",code=\"{code}\"}}");
    body.lines()
        .find_map(|l| l.strip_prefix(&series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// A field key: field number and wire type.
fn key(field: u32, wire_type: u8) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::encode_varint(u64::from(field << 3 | u32::from(wire_type)), &mut out);
    out
}

/// `field` as a length-delimited field holding `bytes`.
fn delimited(field: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = key(field, 2);
    prost::encoding::encode_varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    out
}

#[tokio::test]
async fn undecodable_requests_are_invalid_argument_logged_and_counted() {
    let log = Log::capture();
    let server = InProcess::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = listener.local_addr().unwrap().to_string();
    tokio::spawn(photoclaim::server::serve_metrics(
        listener,
        server.store.clone(),
    ));
    let addr = server.addr.to_string();
    let before = scrape_metrics(&metrics).await.1;

    // GetClaimRequest.name (1) that is not UTF-8.
    let status = raw_call(&addr, "GetClaim", &delimited(1, &[0xff, 0xfe])).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(
        status.message(),
        "request body is not a valid photoclaim.v1.GetClaimRequest: name: \
         invalid string value: data is not UTF-8 encoded"
    );
    let violations = status
        .get_details_bad_request()
        .expect("BadRequest details")
        .field_violations;
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].field, "name");
    assert_eq!(
        violations[0].description,
        "invalid string value: data is not UTF-8 encoded"
    );

    // A RegisterClaimRequest cut short inside its claim.
    let whole = pb::RegisterClaimRequest {
        request_id: "truncated-1".into(),
        claim: Some(common::sample_claim("cut short")),
        ..Default::default()
    }
    .encode_to_vec();
    let status = raw_call(&addr, "RegisterClaim", &whole[..whole.len() - 5]).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(
        status.message(),
        "request body is not a valid photoclaim.v1.RegisterClaimRequest: claim: buffer underflow"
    );
    let violations = status.get_details_bad_request().unwrap().field_violations;
    assert_eq!(violations[0].field, "claim");

    // GetVerificationStatusRequest.claim (1), a string, sent as a varint.
    let mut wrong = key(1, 0);
    wrong.push(7);
    let status = raw_call(&addr, "GetVerificationStatus", &wrong).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(
        status.message(),
        "request body is not a valid photoclaim.v1.GetVerificationStatusRequest: claim: \
         invalid wire type: Varint (expected LengthDelimited)"
    );

    // The claim of a RegisterClaimRequest holding an unknown field (1000)
    // as 200 groups nested in each other: past prost's limit of 100.
    let mut groups = Vec::new();
    for _ in 0..200 {
        groups.extend(key(1000, 3));
    }
    for _ in 0..200 {
        groups.extend(key(1000, 4));
    }
    let status = raw_call(&addr, "RegisterClaim", &delimited(2, &groups)).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(
        status.message(),
        "request body is not a valid photoclaim.v1.RegisterClaimRequest: claim: \
         recursion limit reached"
    );

    // Groups that deep at the top level: no field to name, so no details.
    let status = raw_call(&addr, "ListClaims", &groups).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(
        status.message(),
        "request body is not a valid photoclaim.v1.ListClaimsRequest: recursion limit reached"
    );
    assert!(status.get_details_bad_request().is_none(), "{status:?}");

    // The server goes on serving, on a new connection and over raw HTTP/2.
    let mut client = server.client.clone();
    let claim = common::new_claim(&mut client, "still serving").await;
    let request = pb::GetClaimRequest {
        name: claim.name.clone(),
    }
    .encode_to_vec();
    let status = raw_call(&addr, "GetClaim", &request).await;
    assert_eq!(status.code(), Code::Ok, "{status:?}");

    // Counted under their methods...
    let after = scrape_metrics(&metrics).await.1;
    for (method, refused) in [
        ("GetClaim", 1.0),
        ("RegisterClaim", 2.0),
        ("GetVerificationStatus", 1.0),
        ("ListClaims", 1.0),
    ] {
        assert_eq!(
            calls(&after, method, "INVALID_ARGUMENT") - calls(&before, method, "INVALID_ARGUMENT"),
            refused,
            "{method}:\n{after}"
        );
        assert_eq!(calls(&after, method, "INTERNAL"), 0.0, "{after}");
    }
    assert_eq!(calls(&after, "RegisterClaim", "OK"), 1.0, "{after}");
    assert_eq!(calls(&after, "GetClaim", "OK"), 1.0, "{after}");

    // ...and logged at info with method, code and cause.
    let log = log.text();
    let refused: Vec<_> = log.lines().filter(|l| l.contains("rpc refused")).collect();
    assert_eq!(refused.len(), 5, "{log}");
    let utf8 = refused[0];
    for part in [
        "INFO",
        "method=\"GetClaim\"",
        "code=InvalidArgument",
        "request body is not a valid photoclaim.v1.GetClaimRequest: name: invalid string value",
    ] {
        assert!(utf8.contains(part), "{part} missing in {utf8}");
    }
    server.stop().await;
}
