//! Tampering, against a real server on 127.0.0.1:0: page tokens carry a MAC
//! under a key of the data directory, so an edited, cut or forged token (or
//! one another data directory issued) is INVALID_ARGUMENT naming
//! `page_token` and changes nothing, on every paginated RPC; and a request
//! with two `authorization` headers is UNAUTHENTICATED, whatever they hold.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use photoclaim::pb;
use photoclaim::pb::admin_service_client::AdminServiceClient;
use photoclaim::pb::claim_service_client::ClaimServiceClient;
use photoclaim::server::{self, Options};
use photoclaim::store::{OpenError, SledStore};
use tokio::sync::oneshot;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// One paginated RPC and its parent.
#[derive(Clone, Debug)]
enum Listing {
    Claims,
    Responses(String),
    Events(String),
}

/// One page: the items' names (or sequence numbers) and the next token.
async fn page(
    client: &mut Client,
    listing: &Listing,
    token: &str,
    page_size: i32,
) -> Result<(Vec<String>, String), Status> {
    let page_token = token.to_string();
    Ok(match listing {
        Listing::Claims => {
            let page = client
                .list_claims(pb::ListClaimsRequest {
                    page_size,
                    page_token,
                    state: 0,
                })
                .await?
                .into_inner();
            let names = page.claims.into_iter().map(|c| c.name).collect();
            (names, page.next_page_token)
        }
        Listing::Responses(parent) => {
            let page = client
                .list_official_responses(pb::ListOfficialResponsesRequest {
                    parent: parent.clone(),
                    page_size,
                    page_token,
                })
                .await?
                .into_inner();
            let names = page
                .official_responses
                .into_iter()
                .map(|r| r.name)
                .collect();
            (names, page.next_page_token)
        }
        Listing::Events(claim) => {
            let page = client
                .list_claim_events(pb::ListClaimEventsRequest {
                    claim: claim.clone(),
                    page_size,
                    page_token,
                })
                .await?
                .into_inner();
            let sequences = page
                .events
                .into_iter()
                .map(|e| e.sequence.to_string())
                .collect();
            (sequences, page.next_page_token)
        }
    })
}

/// Every item of a listing, one page of `page_size` at a time.
async fn every_item(client: &mut Client, listing: &Listing, page_size: i32) -> Vec<String> {
    let (mut items, mut token) = (Vec::new(), String::new());
    loop {
        let (mut got, next) = page(client, listing, &token, page_size).await.unwrap();
        items.append(&mut got);
        if next.is_empty() {
            return items;
        }
        token = next;
    }
}

/// Asserts `result` is the refusal of a token this server did not issue.
#[track_caller]
fn assert_not_issued<T: std::fmt::Debug>(result: Result<T, Status>, token: &str, what: &str) {
    let status = result.expect_err(what);
    assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
    let message = status.message();
    assert!(
        message.contains("page_token") && message.contains("not one this server issued"),
        "{what}: {message}"
    );
    assert!(
        token.len() < 8 || !message.contains(token),
        "{what}: the token is echoed: {message}"
    );
    let fields: Vec<String> = status
        .get_details_bad_request()
        .expect("a BadRequest detail")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["page_token"], "{what}");
}

fn base64url_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in text.as_bytes().chunks(4) {
        let mut n = 0u32;
        for &c in chunk {
            let sextet = ALPHABET.iter().position(|&a| a == c).expect("base64url");
            n = n << 6 | sextet as u32;
        }
        out.extend_from_slice(&n.to_be_bytes()[1..]);
    }
    out
}

fn base64url_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = u32::from(chunk[0]) << 16 | u32::from(chunk[1]) << 8 | u32::from(chunk[2]);
        for shift in [18, 12, 6, 0] {
            out.push(ALPHABET[(n >> shift & 63) as usize] as char);
        }
    }
    out
}

/// Edits of a genuine token: every character changed in turn (to the next
/// base64url character, and at a few positions to one outside the
/// alphabet), cut short, lengthened, and the cursor replaced by all ones
/// (the version 2 layout: header byte, scope, cursor, 16-byte tag).
fn edits(token: &str) -> Vec<(String, String)> {
    let mut edits = Vec::new();
    for (at, c) in token.char_indices() {
        let next = ALPHABET[(ALPHABET.iter().position(|&a| a as char == c).unwrap() + 1) % 64];
        let mut edited = token.to_string();
        edited.replace_range(at..at + 1, &(next as char).to_string());
        edits.push((format!("character {at} changed"), edited));
    }
    for at in [0, token.len() / 2, token.len() - 1] {
        for bad in ["=", ".", "+", "/"] {
            let mut edited = token.to_string();
            edited.replace_range(at..at + 1, bad);
            edits.push((format!("character {at} made {bad:?}"), edited));
        }
    }
    for keep in [1, 4, token.len() / 2, token.len() - 4, token.len() - 1] {
        edits.push((format!("cut to {keep}"), token[..keep].to_string()));
    }
    edits.push(("lengthened".into(), format!("{token}AAAA")));
    edits.push(("doubled".into(), token.repeat(2)));
    let mut bytes = base64url_decode(token);
    assert_eq!(bytes.len(), 33, "the version 2 layout");
    bytes[9..17].fill(0xff);
    edits.push(("cursor replaced by ffff…".into(), base64url_encode(&bytes)));
    let mut bytes = base64url_decode(token);
    bytes[9..17].copy_from_slice(&1u64.to_be_bytes());
    edits.push(("cursor replaced by 1".into(), base64url_encode(&bytes)));
    edits
}

/// A server with 5 claims; the first one has 4 responses (and so 5 events).
async fn seeded() -> (InProcess, Vec<Listing>) {
    let server = InProcess::start().await;
    let mut client = server.client.clone();
    let mut first = None;
    for i in 0..5 {
        let claim = new_claim(&mut client, &format!("claim {i}")).await;
        first.get_or_insert(claim.name);
    }
    let first = first.unwrap();
    for _ in 0..4 {
        attach(
            &mut client,
            &first,
            sample_response(pb::Stance::AddsContext),
            "",
        )
        .await;
    }
    let listings = vec![
        Listing::Claims,
        Listing::Responses(first.clone()),
        Listing::Events(first),
    ];
    (server, listings)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_tokens_page_and_every_edit_is_refused_on_every_listing() {
    let (server, listings) = seeded().await;
    let mut client = server.client.clone();
    let before = snapshot(&mut client).await;
    for listing in &listings {
        let all = every_item(&mut client, listing, 100).await;
        assert!(all.len() >= 4, "{listing:?}: {all:?}");
        assert_eq!(
            every_item(&mut client, listing, 2).await,
            all,
            "{listing:?}"
        );
        let (first, token) = page(&mut client, listing, "", 2).await.unwrap();
        assert_eq!(first, all[..2]);
        assert_eq!(token.len(), 44, "{listing:?}: {token}");
        assert!(
            token.bytes().all(|b| ALPHABET.contains(&b)),
            "{listing:?}: not URL-safe: {token}"
        );
        let (second, _) = page(&mut client, listing, &token, 2).await.unwrap();
        assert_eq!(second, all[2..4], "{listing:?}");

        for (what, edited) in edits(&token) {
            assert_ne!(edited, token);
            let result = page(&mut client, listing, &edited, 2).await;
            assert_not_issued(result, &edited, &format!("{listing:?}: {what}"));
        }
        // The genuine token still works, and gives the same page.
        let (again, _) = page(&mut client, listing, &token, 2).await.unwrap();
        assert_eq!(again, second, "{listing:?}");
    }
    assert_eq!(
        snapshot(&mut client).await,
        before,
        "refusals change nothing"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_genuine_token_of_another_listing_is_still_refused() {
    let (server, listings) = seeded().await;
    let mut client = server.client.clone();
    let (_, claims_token) = page(&mut client, &listings[0], "", 1).await.unwrap();
    let (_, events_token) = page(&mut client, &listings[2], "", 1).await.unwrap();
    for (listing, token) in [(&listings[2], &claims_token), (&listings[0], &events_token)] {
        let status = page(&mut client, listing, token, 1).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("page_token"), "{status:?}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_of_another_data_directory_are_refused() {
    // Two servers with the same claims: the same listing position, but
    // different keys.
    let (one, listings) = seeded().await;
    let (two, same_listings) = seeded().await;
    let (mut c1, mut c2) = (one.client.clone(), two.client.clone());
    for (listing, same) in listings.iter().zip(&same_listings) {
        let (_, token) = page(&mut c1, listing, "", 1).await.unwrap();
        let (_, other) = page(&mut c2, same, "", 1).await.unwrap();
        assert_ne!(token, other, "{listing:?}: keys differ by directory");
        assert_not_issued(
            page(&mut c2, same, &token, 1).await,
            &token,
            &format!("{listing:?}: token of another directory"),
        );
        page(&mut c2, same, &other, 1).await.unwrap();
    }
    one.stop().await;
    two.stop().await;
}

/// A server on a given data directory.
struct Served {
    client: Client,
    shutdown: oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<Result<(), server::ServeError>>,
}

impl Served {
    async fn start(dir: &Path) -> Served {
        let store = loop {
            match SledStore::open(dir) {
                Ok(store) => break Arc::new(store),
                // A stopped server's store may take a moment to let go.
                Err(OpenError::Locked(_)) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(other) => panic!("{other}"),
            }
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(server::run(listener, store, Options::default(), async {
            let _ = rx.await;
        }));
        let client = connect(&addr.to_string()).await;
        Served {
            client,
            shutdown,
            handle,
        }
    }

    async fn stop(self) {
        let _ = self.shutdown.send(());
        self.handle.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_survive_a_restart_but_not_a_restore_into_a_new_directory() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("data");
    let served = Served::start(&dir).await;
    let mut client = served.client.clone();
    for i in 0..3 {
        new_claim(&mut client, &format!("claim {i}")).await;
    }
    let (first, token) = page(&mut client, &Listing::Claims, "", 1).await.unwrap();
    let (second, _) = page(&mut client, &Listing::Claims, &token, 1)
        .await
        .unwrap();
    drop(client);
    served.stop().await;

    // The key is kept in the data directory.
    let served = Served::start(&dir).await;
    let mut client = served.client.clone();
    let (again, _) = page(&mut client, &Listing::Claims, &token, 1)
        .await
        .unwrap();
    assert_eq!(again, second, "a token survives a restart");
    drop(client);
    served.stop().await;

    // A backup does not carry the key: the restored directory has its own.
    let file = work.path().join("photoclaim.backup");
    let restored = work.path().join("restored");
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let (ok, text) = cli(&["backup", "--data-dir", &path(&dir), "--out", &path(&file)]);
    assert!(ok, "{text}");
    let (ok, text) = cli(&[
        "restore",
        "--in",
        &path(&file),
        "--data-dir",
        &path(&restored),
    ]);
    assert!(ok, "{text}");
    let served = Served::start(&restored).await;
    let mut client = served.client.clone();
    assert_not_issued(
        page(&mut client, &Listing::Claims, &token, 1).await,
        &token,
        "a token issued before the restore",
    );
    let (first_again, fresh) = page(&mut client, &Listing::Claims, "", 1).await.unwrap();
    assert_eq!(first_again, first, "the restored data is all there");
    assert_ne!(fresh, token);
    let (second_again, _) = page(&mut client, &Listing::Claims, &fresh, 1)
        .await
        .unwrap();
    assert_eq!(second_again, second);
    drop(client);
    served.stop().await;
}

/// Clients that send every value in `values` as its own `authorization` header.
fn with_headers(
    channel: &Channel,
    values: &[String],
) -> (
    ClaimServiceClient<
        tonic::service::interceptor::InterceptedService<
            Channel,
            impl tonic::service::Interceptor + Clone,
        >,
    >,
    AdminServiceClient<
        tonic::service::interceptor::InterceptedService<
            Channel,
            impl tonic::service::Interceptor + Clone,
        >,
    >,
) {
    let values: Vec<MetadataValue<Ascii>> = values.iter().map(|v| v.parse().unwrap()).collect();
    let interceptor = move |mut request: Request<()>| -> Result<Request<()>, Status> {
        for value in &values {
            request
                .metadata_mut()
                .append("authorization", value.clone());
        }
        Ok(request)
    };
    (
        ClaimServiceClient::with_interceptor(channel.clone(), interceptor.clone()),
        AdminServiceClient::with_interceptor(channel.clone(), interceptor),
    )
}

#[track_caller]
fn assert_one_header_please<T: std::fmt::Debug>(result: Result<T, Status>, what: &str) {
    let status = result.expect_err(what);
    assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
    assert!(
        status.message().contains("send one authorization header"),
        "{what}: {}",
        status.message()
    );
    assert!(
        !status.message().contains("pc1_"),
        "{what}: a token is echoed: {}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_authorization_headers_are_unauthenticated_even_when_both_are_valid() {
    let server = InProcess::start().await;
    let channel = Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();

    // While the server is open (no keys yet), two headers are refused too.
    let (mut claims, _) = with_headers(&channel, &["Bearer a".into(), "Bearer b".into()]);
    assert_one_header_please(
        claims.list_claims(pb::ListClaimsRequest::default()).await,
        "open server",
    );

    // The first key closes the server; a second one is made with it.
    let (_, mut anonymous) = with_headers(&channel, &[]);
    let admin = anonymous
        .create_api_key(pb::CreateApiKeyRequest {
            name: "ops".into(),
            role: pb::Role::Admin as i32,
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    let bearer = |token: &str| format!("Bearer {token}");
    let (_, mut as_admin) = with_headers(&channel, &[bearer(&admin)]);
    let ingest = as_admin
        .create_api_key(pb::CreateApiKeyRequest {
            name: "wire".into(),
            role: pb::Role::Ingest as i32,
        })
        .await
        .unwrap()
        .into_inner()
        .token;

    // One header: served.
    let (mut claims, mut admins) = with_headers(&channel, &[bearer(&admin)]);
    claims
        .list_claims(pb::ListClaimsRequest::default())
        .await
        .unwrap();
    admins
        .list_api_keys(pb::ListApiKeysRequest::default())
        .await
        .unwrap();
    let claim_names = |mut claims: ClaimServiceClient<_>| async move {
        let reply = claims
            .list_claims(pb::ListClaimsRequest {
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        reply.claims.into_iter().map(|c| c.name).collect::<Vec<_>>()
    };
    let before = claim_names(claims.clone()).await;

    let pairs = [
        vec![bearer(&admin), bearer(&admin)],
        vec![bearer(&ingest), bearer(&admin)],
        vec![bearer(&admin), bearer(&ingest)],
        vec![bearer(&admin), "Bearer garbage".into()],
        vec!["Bearer garbage".into(), bearer(&admin)],
        vec![bearer(&admin), bearer(&admin), bearer(&admin)],
    ];
    for (i, headers) in pairs.iter().enumerate() {
        let (mut claims, mut admins) = with_headers(&channel, headers);
        assert_one_header_please(
            claims.list_claims(pb::ListClaimsRequest::default()).await,
            &format!("ListClaims, case {i}"),
        );
        assert_one_header_please(
            claims
                .register_claim(pb::RegisterClaimRequest {
                    request_id: String::new(),
                    claim: Some(sample_claim("two headers")),
                    ..Default::default()
                })
                .await,
            &format!("RegisterClaim, case {i}"),
        );
        assert_one_header_please(
            admins
                .list_api_keys(pb::ListApiKeysRequest::default())
                .await,
            &format!("ListApiKeys, case {i}"),
        );
        assert_one_header_please(
            admins
                .create_api_key(pb::CreateApiKeyRequest {
                    name: format!("sneaky-{i}"),
                    role: pb::Role::Admin as i32,
                })
                .await,
            &format!("CreateApiKey, case {i}"),
        );
    }
    assert_eq!(
        claim_names(claims.clone()).await,
        before,
        "refused calls change nothing"
    );
    let keys = admins
        .list_api_keys(pb::ListApiKeysRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(keys.api_keys.len(), 2, "no key was created: {keys:?}");
    server.stop().await;
}
