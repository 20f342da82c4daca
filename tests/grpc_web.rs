//! gRPC-Web on the same port, over plain HTTP/1.1 as a browser library
//! sends it, and the CORS policy for browser origins.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use common::*;
use photoclaim::pb;
use photoclaim::server::Options;
use prost::Message;

const ALLOWED: &str = "https://desk.example.org";

/// One HTTP/1.1 exchange; returns the status line and headers (lower-cased
/// names) and the de-chunked body.
fn http1(addr: SocketAddr, request_head: &str, body: &[u8]) -> (String, Vec<u8>) {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.write_all(request_head.as_bytes()).unwrap();
    tcp.write_all(body).unwrap();
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let mut rest = &raw[split + 4..];
    if !head.contains("transfer-encoding: chunked") {
        return (head, rest.to_vec());
    }
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap().trim(), 16)
                .unwrap();
        rest = &rest[line_end + 2..];
        if size == 0 {
            return (head, body);
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// A gRPC-Web unary call: the framed message out, the message frame and the
/// trailer frame's text back.
fn grpc_web_call(
    addr: SocketAddr,
    method: &str,
    message: &[u8],
    extra_headers: &str,
) -> (String, Option<Vec<u8>>, String) {
    let mut body = vec![0u8];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(message);
    let head = format!(
        "POST /photoclaim.v1.ClaimService/{method} HTTP/1.1\r\nHost: {addr}\r\n\
         Content-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\n\
         Origin: {ALLOWED}\r\n{extra_headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let (head, body) = http1(addr, &head, &body);
    let mut message = None;
    let mut trailers = String::new();
    let mut rest = &body[..];
    while rest.len() >= 5 {
        let len = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
        let payload = &rest[5..5 + len];
        if rest[0] & 0x80 != 0 {
            trailers = String::from_utf8_lossy(payload).to_ascii_lowercase();
        } else {
            message = Some(payload.to_vec());
        }
        rest = &rest[5 + len..];
    }
    // A trailers-only reply carries the status in the headers.
    if trailers.is_empty() {
        trailers = head.clone();
    }
    (head, message, trailers)
}

#[tokio::test]
async fn a_browser_calls_unary_rpcs_over_http1_grpc_web() {
    let server = InProcess::in_memory_with(Options {
        cors_allow_origins: vec![ALLOWED.to_string()],
        ..Options::default()
    })
    .await;
    let mut client = server.client.clone();
    let claim = new_claim(&mut client, "seen through a browser").await;
    let addr = server.addr;

    let request = pb::GetClaimRequest {
        name: claim.name.clone(),
    }
    .encode_to_vec();
    let (head, message, trailers) =
        tokio::task::spawn_blocking(move || grpc_web_call(addr, "GetClaim", &request, ""))
            .await
            .unwrap();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("content-type: application/grpc-web"),
        "{head}"
    );
    assert!(
        head.contains(&format!("access-control-allow-origin: {ALLOWED}")),
        "{head}"
    );
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
    let got = pb::Claim::decode(message.expect("a reply message").as_slice()).unwrap();
    assert_eq!(got.name, claim.name);
    assert_eq!(got.claim_text, "seen through a browser");

    // Errors come back as gRPC-Web statuses too.
    let request = pb::GetClaimRequest {
        name: "claims/999".into(),
    }
    .encode_to_vec();
    let (_, message, trailers) =
        tokio::task::spawn_blocking(move || grpc_web_call(addr, "GetClaim", &request, ""))
            .await
            .unwrap();
    assert!(message.is_none());
    assert!(
        trailers.contains("grpc-status: 5") || trailers.contains("grpc-status:5"),
        "{trailers}"
    );

    // A write, then the same claim read back natively.
    let request = pb::RegisterClaimRequest {
        request_id: "web-1".into(),
        claim: Some(sample_claim("registered from a browser")),
        ..Default::default()
    }
    .encode_to_vec();
    let (_, message, trailers) =
        tokio::task::spawn_blocking(move || grpc_web_call(addr, "RegisterClaim", &request, ""))
            .await
            .unwrap();
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
    let registered = pb::RegisterClaimResponse::decode(message.unwrap().as_slice()).unwrap();
    let name = registered.claim.unwrap().name;
    let native = client
        .get_claim(pb::GetClaimRequest { name: name.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(native.claim_text, "registered from a browser");
    server.stop().await;
}

#[tokio::test]
async fn cors_preflights_allow_only_the_configured_origins() {
    let server = InProcess::in_memory_with(Options {
        cors_allow_origins: vec![ALLOWED.to_string()],
        ..Options::default()
    })
    .await;
    let addr = server.addr;
    let preflight = move |origin: &str| {
        let head = format!(
            "OPTIONS /photoclaim.v1.ClaimService/GetClaim HTTP/1.1\r\nHost: {addr}\r\n\
             Origin: {origin}\r\nAccess-Control-Request-Method: POST\r\n\
             Access-Control-Request-Headers: content-type,x-grpc-web,authorization\r\n\
             Connection: close\r\n\r\n"
        );
        http1(addr, &head, b"").0
    };
    let allowed = tokio::task::spawn_blocking(move || preflight(ALLOWED))
        .await
        .unwrap();
    assert!(
        allowed.contains(&format!("access-control-allow-origin: {ALLOWED}")),
        "{allowed}"
    );
    assert!(allowed.contains("authorization"), "{allowed}");
    let other = tokio::task::spawn_blocking(move || preflight("https://evil.example"))
        .await
        .unwrap();
    assert!(!other.contains("access-control-allow-origin"), "{other}");
    server.stop().await;
}

#[tokio::test]
async fn without_configured_origins_browsers_get_no_cors_grant_and_keys_still_apply() {
    let server = InProcess::in_memory().await;
    let mut client = server.client.clone();
    let claim = new_claim(&mut client, "closed to browsers").await;
    // A key now exists: the server is no longer open.
    let mut admin = photoclaim::pb::admin_service_client::AdminServiceClient::connect(format!(
        "http://{}",
        server.addr
    ))
    .await
    .unwrap();
    admin
        .create_api_key(pb::CreateApiKeyRequest {
            name: "web-reader".into(),
            role: pb::Role::Reader as i32,
        })
        .await
        .unwrap();
    let addr = server.addr;
    let request = pb::GetClaimRequest {
        name: claim.name.clone(),
    }
    .encode_to_vec();
    let (head, message, trailers) =
        tokio::task::spawn_blocking(move || grpc_web_call(addr, "GetClaim", &request, ""))
            .await
            .unwrap();
    assert!(!head.contains("access-control-allow-origin"), "{head}");
    assert!(message.is_none());
    assert!(
        trailers.contains("grpc-status: 16") || trailers.contains("grpc-status:16"),
        "UNAUTHENTICATED without a token: {trailers}"
    );
    server.stop().await;
}
