//! Access control end to end: the role × RPC matrix, public health and
//! reflection, identity in the record, revocation, the `keys` CLI, safe
//! defaults of the real binary, and tokens never leaking into logs or errors.
//!
//! Every test runs a real server over a real sled directory: in-process for
//! the API-level tests, the real binary for the CLI, start-up and log tests.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::cli::{photoclaim, text};
use common::*;
use photoclaim::pb;
use photoclaim::pb::admin_service_client::AdminServiceClient;
use photoclaim::pb::claim_service_client::ClaimServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

// ---------------------------------------------------------------------------
// Clients that present credentials
// ---------------------------------------------------------------------------

/// Sets `authorization` to a fixed value on every call (or sends none).
#[derive(Clone)]
struct Auth(Option<MetadataValue<Ascii>>);

impl Interceptor for Auth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

impl Auth {
    /// The raw header value `header`, or no header.
    fn header(header: Option<&str>) -> Auth {
        Auth(header.map(|h| h.parse().expect("ASCII header value")))
    }

    /// `authorization: Bearer <token>`.
    fn bearer(token: &str) -> Auth {
        Auth::header(Some(&format!("Bearer {token}")))
    }
}

type Claims = ClaimServiceClient<InterceptedService<Channel, Auth>>;
type Admin = AdminServiceClient<InterceptedService<Channel, Auth>>;

fn claims_as(channel: &Channel, auth: Auth) -> Claims {
    ClaimServiceClient::with_interceptor(channel.clone(), auth)
}

fn admin_as(channel: &Channel, auth: Auth) -> Admin {
    AdminServiceClient::with_interceptor(channel.clone(), auth)
}

/// A plaintext channel to `addr`, retrying while the server comes up.
async fn channel(addr: &str) -> Channel {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
        {
            Ok(channel) => return channel,
            Err(err) if Instant::now() > deadline => panic!("cannot connect to {addr}: {err}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

async fn create_key(admin: &mut Admin, name: &str, role: pb::Role) -> String {
    let reply = admin
        .create_api_key(pb::CreateApiKeyRequest {
            name: name.into(),
            role: role as i32,
        })
        .await
        .unwrap_or_else(|s| panic!("create key {name}: {s:?}"))
        .into_inner();
    let key = reply.api_key.expect("the created key");
    assert_eq!(key.name, name);
    assert_eq!(key.role, role as i32);
    assert!(
        reply.token.starts_with(&key.token_prefix),
        "token {:?} starts with its prefix {:?}",
        redact(&reply.token),
        key.token_prefix
    );
    assert_token_shape(&reply.token);
    reply.token
}

/// `pc1_<16 hex>_<64 hex>`.
/// A server whose first key, the admin key "ops", was created by an
/// anonymous caller while the server was still open; from then on it is
/// closed. Returns the server, a channel to it and the admin token.
async fn secured_server() -> (InProcess, Channel, String) {
    let server = InProcess::start().await;
    let ch = channel(&server.addr.to_string()).await;
    let admin_token = create_key(
        &mut admin_as(&ch, Auth::header(None)),
        "ops",
        pb::Role::Admin,
    )
    .await;
    (server, ch, admin_token)
}

fn assert_token_shape(token: &str) {
    let parts: Vec<&str> = token.split('_').collect();
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    assert!(
        parts.len() == 3
            && parts[0] == "pc1"
            && parts[1].len() == 16
            && parts[2].len() == 64
            && hex(parts[1])
            && hex(parts[2]),
        "not a token: {:?}",
        redact(token)
    );
}

/// The secret part of a token.
fn secret_of(token: &str) -> &str {
    token.rsplit('_').next().unwrap()
}

/// `pc1_<id>` of a token, safe to print in assertion messages.
fn redact(token: &str) -> String {
    match token.rsplit_once('_') {
        Some((public, _)) => format!("{public}_…"),
        None => "…".into(),
    }
}

/// A well-formed token for the id of `token` with a different secret.
fn forged(token: &str) -> String {
    let (public, _) = token.rsplit_once('_').unwrap();
    format!("{public}_{}", "f00d".repeat(16))
}

/// A well-formed token of no key.
const UNKNOWN_TOKEN: &str =
    "pc1_0123456789abcdef_0000111122223333444455556666777788889999aaaabbbbccccddddeeeeffff";

fn code_name(code: Code) -> String {
    let camel = format!("{code:?}");
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

fn bad_request_fields(status: &Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

fn verdict_request(claim: &str, rationale: &str) -> pb::SetVerdictRequest {
    pb::SetVerdictRequest {
        claim: claim.into(),
        claim_rating: pb::ClaimRating::False as i32,
        media_authenticity: pb::MediaAuthenticity::Decontextualized as i32,
        rationale: rationale.into(),
        etag: String::new(),
    }
}

fn attach_request(
    parent: &str,
    response: pb::OfficialResponse,
) -> pb::AttachOfficialResponseRequest {
    pb::AttachOfficialResponseRequest {
        parent: parent.into(),
        request_id: String::new(),
        official_response: Some(response),
    }
}

async fn events_of(client: &mut Claims, claim: &str) -> Vec<pb::ClaimEvent> {
    client
        .list_claim_events(pb::ListClaimEventsRequest {
            claim: claim.into(),
            page_size: 1000,
            page_token: String::new(),
        })
        .await
        .expect("list events")
        .into_inner()
        .events
}

// ---------------------------------------------------------------------------
// 1. The role × RPC matrix
// ---------------------------------------------------------------------------

const RPCS: [&str; 14] = [
    "GetClaim",
    "ListClaims",
    "ListOfficialResponses",
    "GetVerificationStatus",
    "ListClaimEvents",
    "FindSimilarClaims",
    "RegisterClaim",
    "AttachOfficialResponse",
    "SetVerdict",
    "CheckVerdict",
    "CreateApiKey",
    "ListApiKeys",
    "RevokeApiKey",
    "Backup",
];

const ROLES: [&str; 4] = ["reader", "ingest", "desk", "admin"];

/// The role each RPC needs, as its rank in [`ROLES`] and its name.
fn needed(rpc: &str) -> (usize, &'static str) {
    let role = match rpc {
        "GetClaim"
        | "ListClaims"
        | "ListOfficialResponses"
        | "GetVerificationStatus"
        | "ListClaimEvents"
        | "FindSimilarClaims" => "reader",
        "RegisterClaim" | "AttachOfficialResponse" => "ingest",
        "SetVerdict" | "CheckVerdict" => "desk",
        "CreateApiKey" | "ListApiKeys" | "RevokeApiKey" | "Backup" => "admin",
        other => panic!("unknown RPC {other}"),
    };
    (ROLES.iter().position(|r| *r == role).unwrap(), role)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// UNAUTHENTICATED, with a message containing this.
    Unauthenticated(&'static str),
    /// A key of this rank in [`ROLES`].
    Role(usize),
}

/// One column of the matrix: who calls.
struct Caller {
    label: &'static str,
    header: Option<String>,
    expect: Expect,
}

/// Calls `rpc` with a valid request as `caller`. `label` makes the request's
/// own names unique per caller, so side effects can be checked afterwards.
async fn call_rpc(
    channel: &Channel,
    rpc: &str,
    caller: &Caller,
    claim: &str,
) -> Result<(), Status> {
    let auth = Auth::header(caller.header.as_deref());
    let mut claims = claims_as(channel, auth.clone());
    let mut admin = admin_as(channel, auth);
    let label = caller.label;
    match rpc {
        "GetClaim" => claims
            .get_claim(pb::GetClaimRequest { name: claim.into() })
            .await
            .map(drop),
        "ListClaims" => claims
            .list_claims(pb::ListClaimsRequest::default())
            .await
            .map(drop),
        "ListOfficialResponses" => claims
            .list_official_responses(pb::ListOfficialResponsesRequest {
                parent: claim.into(),
                ..Default::default()
            })
            .await
            .map(drop),
        "GetVerificationStatus" => claims
            .get_verification_status(pb::GetVerificationStatusRequest {
                claim: claim.into(),
                ..Default::default()
            })
            .await
            .map(drop),
        "ListClaimEvents" => claims
            .list_claim_events(pb::ListClaimEventsRequest {
                claim: claim.into(),
                ..Default::default()
            })
            .await
            .map(drop),
        "FindSimilarClaims" => claims
            .find_similar_claims(pb::FindSimilarClaimsRequest {
                pdq: "ab".repeat(32),
                ..Default::default()
            })
            .await
            .map(drop),
        "RegisterClaim" => claims
            .register_claim(pb::RegisterClaimRequest {
                request_id: String::new(),
                claim: Some(sample_claim(&format!("registered with {label}"))),
                ..Default::default()
            })
            .await
            .map(drop),
        "AttachOfficialResponse" => {
            let mut response = sample_response(pb::Stance::Refutes);
            response.text = format!("attached with {label}");
            claims
                .attach_official_response(attach_request(claim, response))
                .await
                .map(drop)
        }
        "SetVerdict" => claims
            .set_verdict(verdict_request(claim, &format!("verdict with {label}")))
            .await
            .map(drop),
        "CheckVerdict" => claims
            .check_verdict(pb::CheckVerdictRequest {
                claim: claim.into(),
                claim_rating: pb::ClaimRating::False as i32,
                media_authenticity: pb::MediaAuthenticity::Decontextualized as i32,
                rationale: format!("checked with {label}: https://example.org/original"),
            })
            .await
            .map(drop),
        "CreateApiKey" => admin
            .create_api_key(pb::CreateApiKeyRequest {
                name: format!("created-with-{label}"),
                role: pb::Role::Reader as i32,
            })
            .await
            .map(drop),
        "ListApiKeys" => admin
            .list_api_keys(pb::ListApiKeysRequest {})
            .await
            .map(drop),
        "RevokeApiKey" => admin
            .revoke_api_key(pb::RevokeApiKeyRequest {
                name: format!("victim-{label}"),
            })
            .await
            .map(drop),
        "Backup" => {
            let mut stream = admin.backup(pb::BackupRequest {}).await?.into_inner();
            // The whole (small) backup must come through for an admin.
            while stream.message().await?.is_some() {}
            Ok(())
        }
        other => panic!("unknown RPC {other}"),
    }
}

/// Calls the raw HTTP/2 `path` with an empty message and `header`; the
/// reply, if any, is decoded as an empty message.
async fn call_path(channel: &Channel, path: &str, header: Option<&str>) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("channel ready");
    let mut request = Request::new(());
    if let Some(h) = header {
        request
            .metadata_mut()
            .insert("authorization", h.parse().unwrap());
    }
    let path: http::uri::PathAndQuery = path.parse().expect("a valid path");
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    grpc.unary(request, path, codec).await.map(drop)
}

/// Calls a method of no known service with `header`.
async fn call_unknown_service(channel: &Channel, header: Option<&str>) -> Status {
    call_path(channel, "/photoclaim.v1.NoSuchService/Probe", header)
        .await
        .expect_err("no such service")
}

#[tokio::test]
async fn every_rpc_admits_exactly_the_roles_it_needs() {
    let server = InProcess::start().await;
    let ch = channel(&server.addr.to_string()).await;

    // Open while no key exists: the first admin key is created anonymously.
    let mut anonymous = admin_as(&ch, Auth::header(None));
    let listed = anonymous
        .list_api_keys(pb::ListApiKeysRequest {})
        .await
        .expect("an open server serves anonymous callers")
        .into_inner();
    assert!(listed.api_keys.is_empty());
    let admin_token = create_key(&mut anonymous, "admin", pb::Role::Admin).await;

    // From now on anonymous callers are refused, reads included.
    let err = anonymous
        .create_api_key(pb::CreateApiKeyRequest {
            name: "second-anonymous".into(),
            role: pb::Role::Admin as i32,
        })
        .await
        .expect_err("a key exists: anonymous is over");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    let err = claims_as(&ch, Auth::header(None))
        .list_claims(pb::ListClaimsRequest::default())
        .await
        .expect_err("anonymous read after the first key");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

    let mut admin = admin_as(&ch, Auth::bearer(&admin_token));
    let mut tokens = vec![("admin", admin_token.clone())];
    for (name, role) in [
        ("reader", pb::Role::Reader),
        ("ingest", pb::Role::Ingest),
        ("desk", pb::Role::Desk),
    ] {
        tokens.push((name, create_key(&mut admin, name, role).await));
    }
    let token = |name: &str| tokens.iter().find(|(n, _)| *n == name).unwrap().1.clone();
    // A revoked key that had every role.
    let retired = create_key(&mut admin, "retired", pb::Role::Admin).await;
    admin
        .revoke_api_key(pb::RevokeApiKeyRequest {
            name: "retired".into(),
        })
        .await
        .expect("revoke retired");

    let keys = admin
        .list_api_keys(pb::ListApiKeysRequest {})
        .await
        .unwrap()
        .into_inner()
        .api_keys;
    let creators: Vec<(&str, &str)> = keys
        .iter()
        .map(|k| (k.name.as_str(), k.created_by.as_str()))
        .collect();
    assert_eq!(
        creators,
        [
            ("admin", "anonymous"),
            ("reader", "admin"),
            ("ingest", "admin"),
            ("desk", "admin"),
            ("retired", "admin")
        ]
    );

    // A claim with a response for the read RPCs and the verdict to work on.
    let mut ingest = claims_as(&ch, Auth::bearer(&token("ingest")));
    let claim = ingest
        .register_claim(pb::RegisterClaimRequest {
            request_id: String::new(),
            claim: Some(sample_claim("matrix fixture")),
            ..Default::default()
        })
        .await
        .expect("fixture claim")
        .into_inner()
        .claim
        .unwrap()
        .name;
    ingest
        .attach_official_response(attach_request(
            &claim,
            sample_response(pb::Stance::Supports),
        ))
        .await
        .expect("fixture response");

    let mut callers = vec![
        Caller {
            label: "none",
            header: None,
            expect: Expect::Unauthenticated("missing credentials"),
        },
        Caller {
            label: "malformed",
            header: Some("Bearer not-a-photoclaim-token".into()),
            expect: Expect::Unauthenticated("Bearer <token>"),
        },
        Caller {
            label: "unknown",
            header: Some(format!("Bearer {UNKNOWN_TOKEN}")),
            expect: Expect::Unauthenticated("unknown API key"),
        },
        Caller {
            label: "forged",
            header: Some(format!("Bearer {}", forged(&admin_token))),
            expect: Expect::Unauthenticated("unknown API key"),
        },
        Caller {
            label: "revoked",
            header: Some(format!("Bearer {retired}")),
            expect: Expect::Unauthenticated("revoked"),
        },
    ];
    for (rank, role) in ROLES.iter().enumerate() {
        callers.push(Caller {
            label: role,
            header: Some(format!("Bearer {}", token(role))),
            expect: Expect::Role(rank),
        });
    }
    // One victim key per caller for RevokeApiKey to aim at.
    for caller in &callers {
        create_key(
            &mut admin,
            &format!("victim-{}", caller.label),
            pb::Role::Reader,
        )
        .await;
    }

    let mut failures = Vec::new();
    let mut table: Vec<(&str, Vec<String>)> = Vec::new();
    for rpc in RPCS {
        let (needed_rank, needed_role) = needed(rpc);
        let mut row = Vec::new();
        for caller in &callers {
            let result = call_rpc(&ch, rpc, caller, &claim).await;
            let code = result.as_ref().err().map_or(Code::Ok, Status::code);
            row.push(code_name(code));
            let cell = format!("{rpc} as {}", caller.label);
            let message = result.as_ref().err().map(|s| s.message().to_string());
            if let Some(message) = &message {
                for (_, t) in &tokens {
                    if message.contains(secret_of(t)) {
                        failures.push(format!("{cell}: the error message carries a secret"));
                    }
                }
            }
            match caller.expect {
                Expect::Unauthenticated(words) => {
                    let message = message.unwrap_or_default();
                    if code != Code::Unauthenticated || !message.contains(words) {
                        failures.push(format!(
                            "{cell}: want UNAUTHENTICATED mentioning {words:?}, got {code:?} {message:?}"
                        ));
                    }
                }
                Expect::Role(rank) if rank < needed_rank => {
                    let message = message.unwrap_or_default();
                    let names_role = message.contains(&format!("needs the {needed_role} role"));
                    if code != Code::PermissionDenied || !names_role || !message.contains(rpc) {
                        failures.push(format!(
                            "{cell}: want PERMISSION_DENIED naming {rpc} and the {needed_role} role, got {code:?} {message:?}"
                        ));
                    }
                }
                Expect::Role(_) => {
                    if code != Code::Ok {
                        failures.push(format!(
                            "{cell}: want OK (valid request, sufficient role), got {code:?} {message:?}"
                        ));
                    }
                }
            }
        }
        table.push((rpc, row));
    }

    // The matrix, for `-- --nocapture`.
    let width = 19;
    let mut printed = format!("\n{:<24}", "RPC \\ caller");
    for caller in &callers {
        printed.push_str(&format!("{:<width$}", caller.label));
    }
    printed.truncate(printed.trim_end().len());
    printed.push('\n');
    for (rpc, row) in &table {
        printed.push_str(&format!("{rpc:<24}"));
        for cell in row {
            printed.push_str(&format!("{cell:<width$}"));
        }
        printed.truncate(printed.trim_end().len());
        printed.push('\n');
    }
    println!("{printed}");
    assert!(
        failures.is_empty(),
        "{} cells of the matrix are wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Refused calls changed nothing; allowed ones did what they say.
    let allowed = |rpc: &str| -> BTreeSet<String> {
        let (needed_rank, _) = needed(rpc);
        ROLES[needed_rank..].iter().map(|r| r.to_string()).collect()
    };
    let mut reader = claims_as(&ch, Auth::bearer(&token("reader")));
    let texts: BTreeSet<String> = reader
        .list_claims(pb::ListClaimsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .claims
        .into_iter()
        .filter_map(|c| {
            c.claim_text
                .strip_prefix("registered with ")
                .map(String::from)
        })
        .collect();
    assert_eq!(texts, allowed("RegisterClaim"), "claims registered");
    let attached: BTreeSet<String> = reader
        .list_official_responses(pb::ListOfficialResponsesRequest {
            parent: claim.clone(),
            page_size: 1000,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .official_responses
        .into_iter()
        .filter_map(|r| {
            r.text.strip_prefix("attached with ").map(|label| {
                assert_eq!(r.attached_by, label, "attached_by is the caller's key");
                label.to_string()
            })
        })
        .collect();
    assert_eq!(
        attached,
        allowed("AttachOfficialResponse"),
        "responses attached"
    );
    let verdicts: BTreeSet<String> = events_of(&mut reader, &claim)
        .await
        .into_iter()
        .filter(|e| e.r#type() == pb::ClaimEventType::VerdictSet)
        .map(|e| e.actor)
        .collect();
    assert_eq!(verdicts, allowed("SetVerdict"), "verdicts set");
    let keys = admin
        .list_api_keys(pb::ListApiKeysRequest {})
        .await
        .unwrap()
        .into_inner()
        .api_keys;
    let created: BTreeSet<String> = keys
        .iter()
        .filter_map(|k| k.name.strip_prefix("created-with-").map(String::from))
        .collect();
    assert_eq!(created, allowed("CreateApiKey"), "keys created");
    let revoked: BTreeSet<String> = keys
        .iter()
        .filter(|k| k.revoke_time.is_some())
        .filter_map(|k| k.name.strip_prefix("victim-").map(String::from))
        .collect();
    assert_eq!(revoked, allowed("RevokeApiKey"), "victim keys revoked");

    // Unknown paths fail closed: not even revealed to callers without a
    // key, admin-only for the rest (so a future RPC cannot inherit a lower
    // role by accident).
    let status = call_unknown_service(&ch, None).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let status = call_unknown_service(&ch, Some(&format!("Bearer {}", token("desk")))).await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let status = call_unknown_service(&ch, Some(&format!("Bearer {}", token("admin")))).await;
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");

    server.stop().await;
}

// ---------------------------------------------------------------------------
// 2. Health and reflection are public
// ---------------------------------------------------------------------------

#[tokio::test]
async fn health_and_reflection_need_no_key_even_when_keys_exist() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let (server, ch, admin_token) = secured_server().await;
    // Keys exist: the API itself is closed to callers without one.
    let err = claims_as(&ch, Auth::header(None))
        .list_claims(pb::ListClaimsRequest::default())
        .await
        .expect_err("closed");
    assert_eq!(err.code(), Code::Unauthenticated);

    // No header, a malformed one and a forged token: none matters to health
    // and reflection.
    let forged_header = format!("Bearer {}", forged(&admin_token));
    for header in [None, Some("Bearer garbage"), Some(forged_header.as_str())] {
        let mut health = HealthClient::with_interceptor(ch.clone(), Auth::header(header));
        let reply = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: "photoclaim.v1.ClaimService".into(),
            })
            .await
            .unwrap_or_else(|s| panic!("health with {header:?}: {s:?}"))
            .into_inner();
        assert_eq!(reply.status(), ServingStatus::Serving);

        let mut reflection =
            ServerReflectionClient::with_interceptor(ch.clone(), Auth::header(header));
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = reflection
            .server_reflection_info(tokio_stream::iter(vec![request]))
            .await
            .unwrap_or_else(|s| panic!("reflection with {header:?}: {s:?}"))
            .into_inner();
        let services = match stream.message().await.unwrap().unwrap().message_response {
            Some(MessageResponse::ListServicesResponse(list)) => {
                list.service.into_iter().map(|s| s.name).collect::<Vec<_>>()
            }
            other => panic!("unexpected reflection answer {other:?}"),
        };
        for expected in ["photoclaim.v1.ClaimService", "photoclaim.v1.AdminService"] {
            assert!(
                services.iter().any(|s| s == expected),
                "{expected} missing from {services:?}"
            );
        }
    }

    // Paths that start like a public service but lead elsewhere are not a
    // way around the guard.
    for path in [
        "/grpc.health.v1.Health/../photoclaim.v1.AdminService/ListApiKeys",
        "/grpc.health.v1.Health/Check/../../photoclaim.v1.AdminService/ListApiKeys",
        "/grpc.reflection.v1.ServerReflection/../../photoclaim.v1.ClaimService/ListClaims",
        "//photoclaim.v1.AdminService/ListApiKeys",
        "/grpc.health.v1.Health%2F..%2Fphotoclaim.v1.AdminService/ListApiKeys",
        "/photoclaim.v1.AdminService/ListApiKeys?via=/grpc.health.v1.Health/Check",
    ] {
        let result = call_path(&ch, path, None).await;
        let code = result.err().map(|s| s.code());
        assert!(
            matches!(code, Some(Code::Unauthenticated | Code::Unimplemented)),
            "{path} without credentials: want UNAUTHENTICATED or UNIMPLEMENTED, got {code:?}"
        );
    }
    // The real path of the same RPC, for contrast, works with the key.
    call_path(
        &ch,
        "/photoclaim.v1.AdminService/ListApiKeys",
        Some(&format!("Bearer {admin_token}")),
    )
    .await
    .expect("the raw call works with a key");
    server.stop().await;
}

// ---------------------------------------------------------------------------
// 3. Identity in the record
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_record_names_the_key_that_made_each_change_whatever_the_request_says() {
    let (server, ch, admin_token) = secured_server().await;
    let mut admin = admin_as(&ch, Auth::bearer(&admin_token));
    let wire_bot = create_key(&mut admin, "wire-bot", pb::Role::Ingest).await;
    let desk_editor = create_key(&mut admin, "desk-editor", pb::Role::Desk).await;

    let mut bot = claims_as(&ch, Auth::bearer(&wire_bot));
    let claim = bot
        .register_claim(pb::RegisterClaimRequest {
            request_id: "identity-1".into(),
            claim: Some(sample_claim("UN peacekeepers in Almaty")),
            ..Default::default()
        })
        .await
        .expect("register")
        .into_inner()
        .claim
        .unwrap()
        .name;
    let mut spoof = sample_response(pb::Stance::Refutes);
    spoof.attached_by = "someone-else".into();
    let attached = bot
        .attach_official_response(attach_request(&claim, spoof))
        .await
        .expect("attach")
        .into_inner();
    assert_eq!(attached.attached_by, "wire-bot", "the reply");

    let mut desk = claims_as(&ch, Auth::bearer(&desk_editor));
    let mut verdict = verdict_request(&claim, "The soldiers are Kazakh peacekeepers.");
    verdict.etag = desk
        .get_claim(pb::GetClaimRequest {
            name: claim.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .etag;
    let set = desk
        .set_verdict(verdict)
        .await
        .expect("verdict")
        .into_inner();
    assert_eq!(set.reviewed_by, "desk-editor", "SetVerdict's reply");

    // As read back by a third key.
    let reader_token = create_key(&mut admin, "reader", pb::Role::Reader).await;
    let mut reader = claims_as(&ch, Auth::bearer(&reader_token));
    let responses = reader
        .list_official_responses(pb::ListOfficialResponsesRequest {
            parent: claim.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .official_responses;
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].attached_by, "wire-bot");
    let status = reader
        .get_verification_status(pb::GetVerificationStatusRequest {
            claim: claim.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.reviewed_by, "desk-editor");
    assert_eq!(
        status.latest_official_response.unwrap().attached_by,
        "wire-bot"
    );
    let events: Vec<(pb::ClaimEventType, String)> = events_of(&mut reader, &claim)
        .await
        .into_iter()
        .map(|e| (e.r#type(), e.actor))
        .collect();
    assert_eq!(
        events,
        [
            (pb::ClaimEventType::ClaimRegistered, "wire-bot".to_string()),
            (
                pb::ClaimEventType::OfficialResponseAttached,
                "wire-bot".to_string()
            ),
            (pb::ClaimEventType::VerdictSet, "desk-editor".to_string()),
        ]
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------
// 4. Revocation and key management errors
// ---------------------------------------------------------------------------

#[tokio::test]
async fn revocation_takes_effect_at_once_and_key_management_validates_its_input() {
    let (server, ch, admin_token) = secured_server().await;
    let mut admin = admin_as(&ch, Auth::bearer(&admin_token));
    let temp = create_key(&mut admin, "temp-ingest", pb::Role::Ingest).await;

    // One channel for the key's calls before and after: no reconnect, no restart.
    let mut client = claims_as(&ch, Auth::bearer(&temp));
    client
        .register_claim(pb::RegisterClaimRequest {
            request_id: String::new(),
            claim: Some(sample_claim("before revocation")),
            ..Default::default()
        })
        .await
        .expect("the key works");
    let revoked = admin
        .revoke_api_key(pb::RevokeApiKeyRequest {
            name: "temp-ingest".into(),
        })
        .await
        .expect("revoke")
        .into_inner();
    assert!(revoked.revoke_time.is_some());
    assert_eq!(revoked.revoked_by, "ops");
    let err = client
        .list_claims(pb::ListClaimsRequest::default())
        .await
        .expect_err("revoked");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("revoked"), "{err:?}");
    assert!(err.message().contains("temp-ingest"), "{err:?}");
    assert!(!err.message().contains(secret_of(&temp)));

    // Revoking twice returns the key unchanged.
    let again = admin
        .revoke_api_key(pb::RevokeApiKeyRequest {
            name: "temp-ingest".into(),
        })
        .await
        .expect("revoke again")
        .into_inner();
    assert_eq!(again, revoked);

    // The name stays taken, in any case.
    for name in ["temp-ingest", "Temp-Ingest"] {
        let err = admin
            .create_api_key(pb::CreateApiKeyRequest {
                name: name.into(),
                role: pb::Role::Ingest as i32,
            })
            .await
            .expect_err("name taken by a revoked key");
        assert_eq!(err.code(), Code::AlreadyExists, "{name}: {err:?}");
    }

    // Bad names and roles name their field.
    let long = "a".repeat(65);
    for name in [
        "",
        "-x",
        "has space",
        "anonymous",
        "cli",
        long.as_str(),
        "é",
    ] {
        let err = admin
            .create_api_key(pb::CreateApiKeyRequest {
                name: name.into(),
                role: pb::Role::Reader as i32,
            })
            .await
            .expect_err("bad name");
        assert_eq!(err.code(), Code::InvalidArgument, "{name:?}: {err:?}");
        assert!(err.message().starts_with("name"), "{name:?}: {err:?}");
        assert_eq!(bad_request_fields(&err), ["name"], "{name:?}");
        let err = admin
            .revoke_api_key(pb::RevokeApiKeyRequest { name: name.into() })
            .await
            .expect_err("bad name");
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "revoke {name:?}: {err:?}"
        );
        assert_eq!(bad_request_fields(&err), ["name"], "revoke {name:?}");
    }
    for role in [0i32, 5, 99, -1] {
        let err = admin
            .create_api_key(pb::CreateApiKeyRequest {
                name: format!("role-{}", role.abs()),
                role,
            })
            .await
            .expect_err("bad role");
        assert_eq!(err.code(), Code::InvalidArgument, "{role}: {err:?}");
        assert!(err.message().starts_with("role"), "{role}: {err:?}");
        assert_eq!(bad_request_fields(&err), ["role"], "{role}");
    }
    let err = admin
        .revoke_api_key(pb::RevokeApiKeyRequest {
            name: "no-such-key".into(),
        })
        .await
        .expect_err("unknown key");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    // None of the refused creations left a key behind, and listing never
    // shows token material.
    let list = admin
        .list_api_keys(pb::ListApiKeysRequest {})
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = list.api_keys.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["ops", "temp-ingest"]);
    let debug = format!("{list:?}");
    for token in [&admin_token, &temp] {
        assert!(
            !debug.contains(secret_of(token)),
            "ListApiKeys shows a secret"
        );
        assert!(
            debug.contains(&redact(token).replace("_…", "")),
            "prefix shown"
        );
    }

    // The revoking admin can revoke itself; it is then locked out too.
    admin
        .revoke_api_key(pb::RevokeApiKeyRequest { name: "ops".into() })
        .await
        .expect("self-revoke");
    let err = admin
        .list_api_keys(pb::ListApiKeysRequest {})
        .await
        .expect_err("revoked admin");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    // Every key is revoked, yet the server does not fall back to open access.
    let err = admin_as(&ch, Auth::header(None))
        .list_api_keys(pb::ListApiKeysRequest {})
        .await
        .expect_err("no anonymous once a key existed");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    server.stop().await;
}

// ---------------------------------------------------------------------------
// The real binary
// ---------------------------------------------------------------------------

/// Runs `photoclaim keys ...`; `envs` are added to the environment.
fn keys(args: &[&str], envs: &[(&str, &str)]) -> Output {
    photoclaim()
        .arg("keys")
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run photoclaim keys")
}

/// `keys create` on a data directory; returns the token (the only stdout line).
fn create_on_dir(dir: &std::path::Path, name: &str, role: &str) -> String {
    let out = cli::keys_create_on_dir(dir, name, role);
    assert!(out.status.success(), "keys create: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "exactly one line on stdout");
    assert!(stdout.ends_with('\n'));
    let token = stdout.trim_end().to_string();
    assert_token_shape(&token);
    assert!(
        !text(&out.stderr).contains(secret_of(&token)),
        "the token goes to stdout only"
    );
    token
}

/// `photoclaim serve` as a child process, with stdout and stderr captured.
struct Served {
    child: Child,
    /// Where to connect (a wildcard listen address becomes 127.0.0.1).
    addr: String,
    log: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

/// The address from a `photoclaim listening` line, text or JSON.
fn listening_addr(line: &str) -> Option<String> {
    if !line.contains("photoclaim listening") {
        return None;
    }
    if line.trim_start().starts_with('{') {
        let value: serde_json::Value = serde_json::from_str(line).ok()?;
        return value["fields"]["addr"].as_str().map(String::from);
    }
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("addr="))
        .map(String::from)
}

impl Served {
    /// Starts `photoclaim <args>` and waits until it listens; `Err` has the
    /// exit status and output if it exits first.
    fn start(args: &[&str], envs: &[(&str, &str)]) -> Result<Served, (ExitStatus, String)> {
        let mut child = photoclaim()
            .args(args)
            .env("RUST_LOG", "info")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn photoclaim");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel::<Option<String>>();
        let mut readers = Vec::new();
        let stdout = child.stdout.take().unwrap();
        let sink = log.clone();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        }));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        readers.push(std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                {
                    let mut log = sink.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
                if !sent {
                    if let Some(addr) = listening_addr(&line) {
                        let _ = tx.send(Some(addr));
                        sent = true;
                    }
                }
            }
            if !sent {
                let _ = tx.send(None);
            }
        }));
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Some(addr)) => {
                let addr = match addr.strip_prefix("0.0.0.0:") {
                    Some(port) => format!("127.0.0.1:{port}"),
                    None => addr,
                };
                Ok(Served {
                    child,
                    addr,
                    log,
                    readers,
                })
            }
            _ => {
                let _ = child.kill();
                let status = child.wait().expect("wait");
                for reader in readers {
                    let _ = reader.join();
                }
                let log = log.lock().unwrap().clone();
                Err((status, log))
            }
        }
    }

    fn spawn(args: &[&str], envs: &[(&str, &str)]) -> Served {
        Self::start(args, envs).unwrap_or_else(|(status, log)| {
            panic!("server exited ({status}) before listening:\n{log}")
        })
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// SIGTERM; waits for the exit and for every line of output.
    fn terminate(mut self) -> (ExitStatus, String) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let exit = self.child.wait().expect("wait for server");
        for reader in std::mem::take(&mut self.readers) {
            reader.join().expect("log reader");
        }
        (exit, self.log())
    }
}

impl Served {
    /// [`Served::terminate`] off the runtime's thread, so that this test's
    /// clients keep running and can close their connections when the server
    /// says goodbye (a blocked client would hold the drain open).
    async fn stop(self) -> (ExitStatus, String) {
        tokio::task::spawn_blocking(move || self.terminate())
            .await
            .expect("terminate")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// 5. The keys CLI
// ---------------------------------------------------------------------------

#[tokio::test]
async fn keys_cli_manages_the_data_dir_and_goes_through_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();

    let admin_token = create_on_dir(dir.path(), "ops", "admin");
    let desk_token = create_on_dir(dir.path(), "desk-ana", "desk");
    let gone_token = create_on_dir(dir.path(), "gone", "reader");

    let out = keys(&["list", "--data-dir", &data], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    let row = |listing: &str, name: &str| -> Vec<String> {
        listing
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} missing from:\n{listing}"))
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    let desk_row = row(&listing, "desk-ana");
    assert_eq!(desk_row[1], "desk", "{listing}");
    assert_eq!(desk_row[2], "active", "{listing}");
    assert_eq!(desk_row[4], "cli", "created by the CLI: {listing}");
    assert!(desk_token.starts_with(&desk_row[5]), "token prefix shown");
    for token in [&admin_token, &desk_token, &gone_token] {
        assert!(
            !listing.contains(secret_of(token)),
            "keys list shows a secret:\n{listing}"
        );
    }

    let out = keys(&["revoke", "gone", "--data-dir", &data], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = keys(&["list", "--data-dir", &data], &[]);
    let listing = text(&out.stdout);
    assert_eq!(row(&listing, "gone")[2], "revoked", "{listing}");
    assert_eq!(row(&listing, "desk-ana")[2], "active", "{listing}");

    // The real server on that directory.
    let server = Served::spawn(
        &["serve", "--listen", "127.0.0.1:0", "--data-dir", &data],
        &[],
    );
    assert!(!server.log().contains("OPEN ACCESS"), "{}", server.log());
    let ch = channel(&server.addr).await;
    let mut desk = claims_as(&ch, Auth::bearer(&desk_token));
    let claim = desk
        .register_claim(pb::RegisterClaimRequest {
            request_id: String::new(),
            claim: Some(sample_claim("via a CLI-made key")),
            ..Default::default()
        })
        .await
        .expect("a key created on the data dir works")
        .into_inner()
        .claim
        .unwrap()
        .name;
    desk.set_verdict(verdict_request(&claim, "checked"))
        .await
        .expect("desk sets verdicts");
    for (token, words) in [
        (&gone_token, "revoked"),
        (&UNKNOWN_TOKEN.to_string(), "unknown"),
    ] {
        let err = claims_as(&ch, Auth::bearer(token))
            .list_claims(pb::ListClaimsRequest::default())
            .await
            .expect_err("refused");
        assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
        assert!(err.message().contains(words), "{err:?}");
    }
    let err = claims_as(&ch, Auth::header(None))
        .list_claims(pb::ListClaimsRequest::default())
        .await
        .expect_err("keys exist: no anonymous");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

    // The data dir is locked while the server runs: the CLI says to use --server.
    let out = keys(
        &[
            "create",
            "--name",
            "late",
            "--role",
            "reader",
            "--data-dir",
            &data,
        ],
        &[],
    );
    assert!(!out.status.success(), "must fail while the server runs");
    assert!(out.stdout.is_empty(), "no token printed");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("--server"), "{stderr}");

    // Through the server with an admin token from the environment.
    let url = format!("http://{}", server.addr);
    let out = keys(
        &[
            "create", "--name", "late", "--role", "reader", "--server", &url,
        ],
        &[("PHOTOCLAIM_TOKEN", admin_token.as_str())],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let late_token = stdout.trim_end().to_string();
    assert_token_shape(&late_token);
    claims_as(&ch, Auth::bearer(&late_token))
        .get_claim(pb::GetClaimRequest {
            name: claim.clone(),
        })
        .await
        .expect("a key created through the server works at once");
    let out = keys(
        &["list", "--server", &url],
        &[("PHOTOCLAIM_TOKEN", admin_token.as_str())],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    assert_eq!(
        row(&listing, "late")[4],
        "ops",
        "created by the admin key: {listing}"
    );
    assert_eq!(row(&listing, "gone")[2], "revoked", "{listing}");

    // Without a token, or with a non-admin one, the server refuses.
    let out = keys(
        &[
            "create", "--name", "nobody", "--role", "admin", "--server", &url,
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).starts_with("error: UNAUTHENTICATED: ")
            && text(&out.stderr).contains("PHOTOCLAIM_TOKEN"),
        "{}",
        text(&out.stderr)
    );
    let out = keys(
        &[
            "create", "--name", "nobody", "--role", "admin", "--server", &url,
        ],
        &[("PHOTOCLAIM_TOKEN", desk_token.as_str())],
    );
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).starts_with("error: PERMISSION_DENIED: "),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !text(&out.stderr).contains(secret_of(&desk_token)),
        "the CLI does not echo the token it was given"
    );
    assert!(text(&out.stderr).contains("admin"), "{}", text(&out.stderr));

    // Revoking through the server stops the key at once.
    let out = keys(
        &["revoke", "late", "--server", &url],
        &[("PHOTOCLAIM_TOKEN", admin_token.as_str())],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = claims_as(&ch, Auth::bearer(&late_token))
        .get_claim(pb::GetClaimRequest { name: claim })
        .await
        .expect_err("revoked through the server");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

    let (exit, log) = server.stop().await;
    assert!(exit.success(), "{exit}: {log}");
}

// ---------------------------------------------------------------------------
// 6. Safe by default
// ---------------------------------------------------------------------------

#[test]
fn without_keys_a_non_loopback_listener_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    match Served::start(&["serve", "--listen", "0.0.0.0:0", "--data-dir", data], &[]) {
        Ok(server) => panic!("served anonymously on 0.0.0.0:\n{}", server.log()),
        Err((status, log)) => {
            assert!(!status.success(), "{status}");
            assert!(log.contains("--insecure-allow-anonymous"), "{log}");
            assert!(!log.contains("photoclaim listening"), "{log}");
        }
    }
}

#[tokio::test]
async fn insecure_allow_anonymous_opens_a_non_loopback_listener_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let server = Served::spawn(
        &[
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--data-dir",
            data,
            "--insecure-allow-anonymous",
        ],
        &[],
    );
    let log = server.log();
    assert!(log.contains("OPEN ACCESS"), "{log}");
    let ch = channel(&server.addr).await;
    claims_as(&ch, Auth::header(None))
        .list_claims(pb::ListClaimsRequest::default())
        .await
        .expect("open access really is open");
    let (exit, log) = server.stop().await;
    assert!(exit.success(), "{exit}: {log}");
}

#[tokio::test]
async fn loopback_without_keys_is_open_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let server = Served::spawn(
        &["serve", "--listen", "127.0.0.1:0", "--data-dir", data],
        &[],
    );
    let log = server.log();
    assert!(log.contains("OPEN ACCESS"), "{log}");
    let ch = channel(&server.addr).await;
    let reply = admin_as(&ch, Auth::header(None))
        .create_api_key(pb::CreateApiKeyRequest {
            name: "first".into(),
            role: pb::Role::Admin as i32,
        })
        .await
        .expect("open on loopback")
        .into_inner();
    assert_eq!(reply.api_key.unwrap().created_by, "anonymous");
    let err = claims_as(&ch, Auth::header(None))
        .list_claims(pb::ListClaimsRequest::default())
        .await
        .expect_err("closed once a key exists, without restart");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    let (exit, log) = server.stop().await;
    assert!(exit.success(), "{exit}: {log}");
}

#[tokio::test]
async fn with_a_key_a_non_loopback_listener_starts_closed_without_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let token = create_on_dir(dir.path(), "boot", "admin");
    let server = Served::spawn(&["serve", "--listen", "0.0.0.0:0", "--data-dir", data], &[]);
    let log = server.log();
    assert!(!log.contains("OPEN ACCESS"), "{log}");
    let ch = channel(&server.addr).await;
    let err = claims_as(&ch, Auth::header(None))
        .list_claims(pb::ListClaimsRequest::default())
        .await
        .expect_err("no anonymous access");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    claims_as(&ch, Auth::bearer(&token))
        .list_claims(pb::ListClaimsRequest::default())
        .await
        .expect("the key works");
    let (exit, log) = server.stop().await;
    assert!(exit.success(), "{exit}: {log}");
}

// ---------------------------------------------------------------------------
// 7. Secrets never leak
// ---------------------------------------------------------------------------

/// A string that must never show up anywhere, sent in a malformed header.
const MARKER: &str = "SECRET-MARKER-7f3a9c2e-do-not-log";

async fn secrets_stay_out_of_logs_and_errors(log_format: &str) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_string();
    let admin_token = create_on_dir(dir.path(), "ops", "admin");
    let spare_token = create_on_dir(dir.path(), "spare", "reader");
    let out = keys(&["revoke", "spare", "--data-dir", &data], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let server = Served::spawn(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &data,
            "--log-format",
            log_format,
        ],
        &[("RUST_LOG", "debug")],
    );
    let ch = channel(&server.addr).await;
    let mut admin = admin_as(&ch, Auth::bearer(&admin_token));
    let desk_token = create_key(&mut admin, "leak-desk", pb::Role::Desk).await;
    let reader_token = create_key(&mut admin, "leak-reader", pb::Role::Reader).await;
    let url = format!("http://{}", server.addr);
    let out = keys(
        &[
            "create", "--name", "leak-cli", "--role", "ingest", "--server", &url,
        ],
        &[("PHOTOCLAIM_TOKEN", admin_token.as_str())],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let cli_token = text(&out.stdout).trim_end().to_string();
    assert_token_shape(&cli_token);

    // Valid calls with every key.
    let mut desk = claims_as(&ch, Auth::bearer(&desk_token));
    let claim = desk
        .register_claim(pb::RegisterClaimRequest {
            request_id: String::new(),
            claim: Some(sample_claim("leak check")),
            ..Default::default()
        })
        .await
        .expect("register")
        .into_inner()
        .claim
        .unwrap()
        .name;
    desk.set_verdict(verdict_request(&claim, "fine"))
        .await
        .expect("verdict");
    claims_as(&ch, Auth::bearer(&cli_token))
        .attach_official_response(attach_request(&claim, sample_response(pb::Stance::Refutes)))
        .await
        .expect("attach");
    claims_as(&ch, Auth::bearer(&reader_token))
        .get_claim(pb::GetClaimRequest {
            name: claim.clone(),
        })
        .await
        .expect("read");
    // Lower-case scheme is accepted too.
    claims_as(&ch, Auth::header(Some(&format!("bearer {reader_token}"))))
        .list_claims(pb::ListClaimsRequest::default())
        .await
        .expect("lower-case bearer");
    admin
        .revoke_api_key(pb::RevokeApiKeyRequest {
            name: "leak-reader".into(),
        })
        .await
        .expect("revoke");

    // Refused calls: wrong, revoked, malformed, and a too-low role.
    let forged_admin = forged(&admin_token);
    let refused_headers = vec![
        format!("Bearer {forged_admin}"),
        format!("Bearer {UNKNOWN_TOKEN}"),
        format!("Bearer {spare_token}"),
        format!("Bearer {reader_token}"),
        format!("Bearer {MARKER}"),
        format!("Basic {MARKER}"),
        MARKER.to_string(),
        format!("Token {admin_token}"),
        format!("Bearer {admin_token}{MARKER}"),
        format!("Bearer {admin_token}0"),
        format!("Bearer pc1_{MARKER}_{}", secret_of(&admin_token)),
        admin_token.clone(),
    ];
    let mut messages = Vec::new();
    for header in &refused_headers {
        for rpc in ["ListClaims", "SetVerdict", "CreateApiKey"] {
            let caller = Caller {
                label: "leak",
                header: Some(header.clone()),
                expect: Expect::Unauthenticated(""),
            };
            let err = call_rpc(&ch, rpc, &caller, &claim)
                .await
                .expect_err("refused");
            assert_eq!(err.code(), Code::Unauthenticated, "{rpc}: {err:?}");
            messages.push(format!("{err:?}"));
        }
    }
    let err = claims_as(&ch, Auth::bearer(&cli_token))
        .set_verdict(verdict_request(&claim, "ingest may not"))
        .await
        .expect_err("too low");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    messages.push(format!("{err:?}"));

    let (exit, log) = server.stop().await;
    assert!(exit.success(), "{exit}: {log}");
    // The log really has debug lines and the refusals, so the check below
    // looks at something.
    assert!(log.contains("rpc refused"), "{log}");
    assert!(log.contains("DEBUG"), "RUST_LOG=debug took effect: {log}");
    if log_format == "json" {
        for line in log.lines() {
            assert!(
                serde_json::from_str::<serde_json::Value>(line).is_ok(),
                "not a JSON log line: {line}"
            );
        }
    }

    let tokens = [
        &admin_token,
        &spare_token,
        &desk_token,
        &reader_token,
        &cli_token,
        &forged_admin,
    ];
    let mut secrets: Vec<String> = vec![MARKER.to_string(), UNKNOWN_TOKEN.to_string()];
    for token in tokens {
        secrets.push(token.to_string());
        secrets.push(secret_of(token).to_string());
    }
    secrets.push(secret_of(UNKNOWN_TOKEN).to_string());
    // Report where a secret showed up, with the secret itself masked.
    let mask = |text: &str| {
        secrets
            .iter()
            .fold(text.to_string(), |t, s| t.replace(s.as_str(), "<SECRET>"))
    };
    let leaked_lines: Vec<String> = log
        .lines()
        .filter(|line| secrets.iter().any(|s| line.contains(s.as_str())))
        .map(mask)
        .collect();
    assert!(
        leaked_lines.is_empty(),
        "the server's output ({log_format}) contains secrets on these lines:\n{}",
        leaked_lines.join("\n")
    );
    let leaked_messages: Vec<String> = messages
        .iter()
        .filter(|m| secrets.iter().any(|s| m.contains(s.as_str())))
        .map(|m| mask(m))
        .collect();
    assert!(
        leaked_messages.is_empty(),
        "errors returned to the client contain secrets:\n{}",
        leaked_messages.join("\n")
    );
}

#[tokio::test]
async fn tokens_never_appear_in_text_debug_logs_or_errors() {
    secrets_stay_out_of_logs_and_errors("text").await;
}

#[tokio::test]
async fn tokens_never_appear_in_json_logs_or_errors() {
    secrets_stay_out_of_logs_and_errors("json").await;
}

/// Any reader may export a review; only the desk may force one past the
/// pre-publication checks.
#[tokio::test]
async fn forcing_an_export_past_the_checks_needs_the_desk_role() {
    let (server, ch, admin_token) = secured_server().await;
    let mut admin = admin_as(&ch, Auth::bearer(&admin_token));
    let reader = create_key(&mut admin, "reader-key", pb::Role::Reader).await;
    let desk = create_key(&mut admin, "desk-key", pb::Role::Desk).await;
    let mut as_desk = claims_as(&ch, Auth::bearer(&desk));
    let mut as_reader = claims_as(&ch, Auth::bearer(&reader));
    let mut claim = sample_claim("an old photo said to be new");
    // The image's URL is only where the claim circulated, not an original.
    claim.appearance_urls = vec![claim.image.as_ref().unwrap().source_url.clone()];
    let claim = as_desk
        .register_claim(pb::RegisterClaimRequest {
            claim: Some(claim),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .claim
        .unwrap();
    // DECONTEXTUALIZED with no original linked anywhere: an error finding.
    as_desk
        .set_verdict(verdict_request(&claim.name, "an old photo"))
        .await
        .unwrap();
    let export = |force| pb::ExportClaimReviewRequest {
        claim: claim.name.clone(),
        force,
    };
    let refused = as_reader
        .export_claim_review(export(false))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let denied = as_reader
        .export_claim_review(export(true))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(denied.message().contains("desk role"), "{denied:?}");
    let forced = as_desk
        .export_claim_review(export(true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(forced.findings.len(), 1);
    assert_eq!(forced.findings[0].code, "DECONTEXTUALIZED_WITHOUT_ORIGINAL");
    server.stop().await;
}
