//! TLS, mutual TLS and the server's limits, against real servers on
//! 127.0.0.1:0 over real sled directories.
//!
//! The certificates are made here with rcgen: a server CA and a server
//! certificate for `localhost` and 127.0.0.1, a client CA and a client
//! certificate for `CN=wire-desk-bot`, and an unrelated CA (with a client
//! certificate of its own) that nothing on the server trusts.
//!
//! The overload and timeout tests hold calls in flight deterministically,
//! with no sleep standing in for synchronisation: a client-streaming call to
//! the unary `GetClaim` whose request stream never yields keeps the server
//! waiting for the request message, so the call holds its slot of the
//! in-flight limit until the client drops it (or the server's request
//! timeout ends it). Only bounded polling loops wait, for the server to see
//! what the client did.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use photoclaim::api::auth::AuthPolicy;
use photoclaim::domain::access::{ApiKey, Role};
use photoclaim::domain::Timestamp;
use photoclaim::pb;
use photoclaim::pb::claim_service_client::ClaimServiceClient;
use photoclaim::server::{self, Options, TlsFiles};
use photoclaim::store::{SledStore, Store};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// Upper bound on anything that should fail or finish quickly: a safety net
/// against hangs, never a synchronisation.
const SAFETY: Duration = Duration::from_secs(30);
/// Bound on polling loops (each attempt waits a few milliseconds at most).
const ATTEMPTS: usize = 2000;
/// Subject CN of the trusted client certificate.
const CLIENT_CN: &str = "wire-desk-bot";

// --- certificates -------------------------------------------------------------

/// PEM certificates and keys for the tests.
struct Pki {
    /// CA that signed the server certificate (clients trust it).
    server_ca: String,
    server_cert: String,
    server_key: String,
    /// CA that client certificates must chain to (the server trusts it).
    client_ca: String,
    client_cert: String,
    client_key: String,
    /// A CA nobody trusts, and a client certificate it signed.
    other_ca: String,
    stranger_cert: String,
    stranger_key: String,
}

/// `O=Photoclaim Tests`, then `CN=cn` (X.509 order: most significant first;
/// RFC 4514 strings list them the other way round).
fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Photoclaim Tests");
    dn.push(DnType::CommonName, cn);
    dn
}

fn ca(cn: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.distinguished_name = name(cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA cert")
}

/// A leaf certificate signed by `issuer`: (certificate PEM, key PEM).
fn leaf(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    cn: &str,
    sans: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(sans).expect("leaf params");
    params.distinguished_name = name(cn);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().expect("leaf key");
    let cert = params.signed_by(&key, &**issuer).expect("sign leaf");
    (cert.pem(), key.serialize_pem())
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let server_ca = ca("photoclaim test server CA");
        let client_ca = ca("photoclaim test client CA");
        let other_ca = ca("unrelated CA");
        let (server_cert, server_key) = leaf(
            &server_ca,
            "localhost",
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) = leaf(
            &client_ca,
            CLIENT_CN,
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let (stranger_cert, stranger_key) = leaf(
            &other_ca,
            "stranger-bot",
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        Pki {
            server_ca: server_ca.pem(),
            server_cert,
            server_key,
            client_ca: client_ca.pem(),
            client_cert,
            client_key,
            other_ca: other_ca.pem(),
            stranger_cert,
            stranger_key,
        }
    })
}

fn tls_files(mutual: bool) -> TlsFiles {
    let pki = pki();
    TlsFiles {
        cert_pem: pki.server_cert.clone().into_bytes(),
        key_pem: pki.server_key.clone().into_bytes(),
        client_ca_pem: mutual.then(|| pki.client_ca.clone().into_bytes()),
    }
}

// --- servers and clients --------------------------------------------------------

/// A server in this process with its own options.
struct Server {
    addr: SocketAddr,
    store: Arc<SledStore>,
    _dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<(), server::ServeError>>,
}

impl Server {
    async fn start(options: Options) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(SledStore::open(dir.path()).expect("open store"));
        // Bound before the server task starts: connections wait in the
        // backlog until it accepts them.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(server::run(listener, store.clone(), options, async {
            let _ = rx.await;
        }));
        Server {
            addr,
            store,
            _dir: dir,
            shutdown: Some(tx),
            handle,
        }
    }

    /// Creates an API key directly in the store; returns its token.
    async fn create_key(&self, name: &str, role: Role) -> String {
        let (key, token) = ApiKey::create(name, role, "test", Timestamp::now()).expect("key");
        self.store.create_key(key).await.expect("store key");
        token
    }

    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(SAFETY, &mut self.handle)
            .await
            .expect("server stops in time")
            .expect("server task")
            .expect("server ran cleanly");
    }
}

/// TLS, and with `mutual` a client certificate from the client CA required.
fn tls_options(mutual: bool, client_cert_role: Role) -> Options {
    Options {
        tls: Some(tls_files(mutual)),
        auth: AuthPolicy {
            // As `serve` decides: never anonymous under mutual TLS.
            allow_anonymous: !mutual,
            client_cert_role,
        },
        ..Options::default()
    }
}

/// How a client talks to the server.
struct ClientTls<'a> {
    /// CA certificate to trust; `None`: none at all.
    ca: Option<&'a str>,
    /// Client certificate and key to present.
    identity: Option<(&'a str, &'a str)>,
}

/// Connects over TLS to `addr` as `localhost`.
async fn tls_channel(addr: SocketAddr, tls: ClientTls<'_>) -> Result<Channel, String> {
    let mut config = ClientTlsConfig::new().domain_name("localhost");
    if let Some(ca) = tls.ca {
        config = config.ca_certificate(Certificate::from_pem(ca));
    }
    if let Some((cert, key)) = tls.identity {
        config = config.identity(Identity::from_pem(cert, key));
    }
    let endpoint = Endpoint::from_shared(format!("https://{addr}"))
        .map_err(|e| format!("endpoint: {e}"))?
        .tls_config(config)
        .map_err(|e| format!("tls config: {e:?}"))?
        .connect_timeout(Duration::from_secs(10));
    endpoint
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))
}

async fn plain_channel(addr: SocketAddr) -> Result<Channel, String> {
    Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("endpoint: {e}"))?
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))
}

fn list_request() -> pb::ListClaimsRequest {
    pb::ListClaimsRequest {
        page_size: 10,
        ..Default::default()
    }
}

/// Connects and calls ListClaims; `Err` describes whichever step failed.
/// A hang is a test failure, not a refusal.
async fn try_list<F>(connect: F) -> Result<pb::ListClaimsResponse, String>
where
    F: std::future::Future<Output = Result<Channel, String>>,
{
    tokio::time::timeout(SAFETY, async {
        let channel = connect.await?;
        ClaimServiceClient::new(channel)
            .list_claims(list_request())
            .await
            .map(|r| r.into_inner())
            .map_err(|s| format!("call: {s:?}"))
    })
    .await
    .expect("the attempt neither succeeded nor failed within 30 s")
}

fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header value"),
    );
    request
}

fn register_request(text: &str) -> pb::RegisterClaimRequest {
    pb::RegisterClaimRequest {
        request_id: String::new(),
        claim: Some(common::sample_claim(text)),
        ..Default::default()
    }
}

/// The actor of the claim's CLAIM_REGISTERED event (the first one).
async fn registered_by(client: &mut common::Client, claim: &str) -> String {
    let events = common::all_events(client, claim).await;
    let first = events.first().expect("a registered claim has an event");
    assert_eq!(first.sequence, 1, "first event: {first:?}");
    first.actor.clone()
}

// --- TLS ----------------------------------------------------------------------

/// Tries a ListClaims over TLS as a client trusting `ca` and presenting
/// `identity`, and checks it is served exactly when `served` says so.
async fn expect_handshake(
    addr: SocketAddr,
    who: &str,
    ca: Option<&str>,
    identity: Option<(&str, &str)>,
    served: bool,
) {
    let result = try_list(tls_channel(addr, ClientTls { ca, identity })).await;
    assert_eq!(result.is_ok(), served, "{who}: {result:?}");
}

#[tokio::test]
async fn tls_serves_clients_that_trust_its_ca_and_only_them() {
    let server = Server::start(tls_options(false, Role::Reader)).await;
    let pki = pki();
    let addr = server.addr;
    let trusted = Some(pki.server_ca.as_str());
    expect_handshake(
        addr,
        "a client trusting the server's CA",
        trusted,
        None,
        true,
    )
    .await;
    let other = Some(pki.other_ca.as_str());
    expect_handshake(
        addr,
        "a client trusting only an unrelated CA",
        other,
        None,
        false,
    )
    .await;
    expect_handshake(addr, "a client trusting no CA", None, None, false).await;

    let plaintext = try_list(plain_channel(addr)).await;
    assert!(
        plaintext.is_err(),
        "a plaintext client must not be served by a TLS server: {plaintext:?}"
    );
    // Still serving the trusted client after the failed handshakes.
    expect_handshake(
        addr,
        "the trusted client after refusals",
        trusted,
        None,
        true,
    )
    .await;
    server.stop().await;
}

// --- mutual TLS ---------------------------------------------------------------

async fn mtls_client(addr: SocketAddr) -> common::Client {
    let pki = pki();
    let channel = tls_channel(
        addr,
        ClientTls {
            ca: Some(&pki.server_ca),
            identity: Some((&pki.client_cert, &pki.client_key)),
        },
    )
    .await
    .expect("a client with a trusted certificate connects");
    ClaimServiceClient::new(channel)
}

#[tokio::test]
async fn mtls_requires_a_client_certificate_from_the_client_ca() {
    let server = Server::start(tls_options(true, Role::Ingest)).await;
    let pki = pki();
    let ca = Some(pki.server_ca.as_str());
    let cases = [
        (
            "a client certificate from the client CA",
            Some((pki.client_cert.as_str(), pki.client_key.as_str())),
            true,
        ),
        ("no client certificate", None, false),
        (
            "a client certificate from an unrelated CA",
            Some((pki.stranger_cert.as_str(), pki.stranger_key.as_str())),
            false,
        ),
    ];
    for (who, identity, served) in cases {
        expect_handshake(server.addr, who, ca, identity, served).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn mtls_certificate_subject_is_the_actor_with_the_configured_role() {
    let server = Server::start(tls_options(true, Role::Ingest)).await;
    let mut client = mtls_client(server.addr).await;

    let claim = client
        .register_claim(register_request("Registered with a client certificate"))
        .await
        .expect("client_cert_role ingest may register")
        .into_inner()
        .claim
        .expect("claim");
    let actor = registered_by(&mut client, &claim.name).await;
    assert!(
        actor.contains(CLIENT_CN),
        "the actor must be the certificate subject, got {actor:?}"
    );
    // The whole subject, as an RFC 4514 string (as the README shows it).
    assert_eq!(actor, format!("CN={CLIENT_CN},O=Photoclaim Tests"));

    // SetVerdict needs desk: more than the certificate's role.
    let status = common::status(&mut client, &claim.name).await;
    let err = client
        .set_verdict(pb::SetVerdictRequest {
            claim: claim.name.clone(),
            etag: status.etag.clone(),
            ..Default::default()
        })
        .await
        .expect_err("ingest certificate cannot set verdicts");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("desk"), "{err:?}");

    // A bearer token takes precedence over the certificate.
    let token = server.create_key("desk-tool", Role::Ingest).await;
    let claim = client
        .register_claim(with_token(
            register_request("Registered with a token over mutual TLS"),
            &token,
        ))
        .await
        .expect("token with ingest role")
        .into_inner()
        .claim
        .expect("claim");
    assert_eq!(registered_by(&mut client, &claim.name).await, "desk-tool");

    // A bad token is refused, not replaced by the certificate.
    let err = client
        .list_claims(with_token(list_request(), "pc1_not-a-token"))
        .await
        .expect_err("a malformed token is refused even with a valid certificate");
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

    server.stop().await;
}

#[tokio::test]
async fn mtls_reader_certificate_cannot_write_but_a_token_can() {
    let server = Server::start(tls_options(true, Role::Reader)).await;
    let mut client = mtls_client(server.addr).await;

    client
        .list_claims(list_request())
        .await
        .expect("a reader certificate may list");

    let err = client
        .register_claim(register_request("Should be refused"))
        .await
        .expect_err("a reader certificate cannot register");
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(
        err.message().contains("ingest"),
        "the refusal must name the role needed: {err:?}"
    );
    assert!(
        err.message().contains(CLIENT_CN),
        "the refusal names the caller: {err:?}"
    );
    let listed = client
        .list_claims(list_request())
        .await
        .expect("list")
        .into_inner();
    assert!(
        listed.claims.is_empty(),
        "nothing was registered: {listed:?}"
    );

    // The token's role, not the certificate's, decides.
    let token = server.create_key("ingest-bot", Role::Ingest).await;
    let claim = client
        .register_claim(with_token(register_request("Registered by token"), &token))
        .await
        .expect("an ingest token may register over a reader certificate")
        .into_inner()
        .claim
        .expect("claim");
    assert_eq!(registered_by(&mut client, &claim.name).await, "ingest-bot");

    server.stop().await;
}

// --- overload -------------------------------------------------------------------

/// Starts a GetClaim call whose request message never comes: the server
/// waits for it with the call's in-flight slot taken, until the call is
/// dropped or times out.
fn hold_call(channel: Channel) -> JoinHandle<Result<tonic::Response<pb::Claim>, Status>> {
    tokio::spawn(async move {
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready()
            .await
            .map_err(|e| Status::unknown(format!("channel not ready: {e}")))?;
        let codec = tonic_prost::ProstCodec::<pb::GetClaimRequest, pb::Claim>::default();
        let path = http::uri::PathAndQuery::from_static("/photoclaim.v1.ClaimService/GetClaim");
        grpc.client_streaming(
            Request::new(tokio_stream::pending::<pb::GetClaimRequest>()),
            path,
            codec,
        )
        .await
    })
}

/// The health status of `service` ("": the whole server).
async fn health_status(channel: Channel, service: &str) -> ServingStatus {
    let reply = tokio::time::timeout(
        SAFETY,
        HealthClient::new(channel).check(HealthCheckRequest {
            service: service.into(),
        }),
    )
    .await
    .expect("health check answers in time")
    .expect("health check succeeds")
    .into_inner();
    ServingStatus::try_from(reply.status).expect("known status")
}

/// Calls ListClaims until it fails with RESOURCE_EXHAUSTED; panics on any
/// other error or if it never does.
async fn until_refused(client: &mut common::Client) -> Status {
    for _ in 0..ATTEMPTS {
        match client.list_claims(list_request()).await {
            Err(status) if status.code() == Code::ResourceExhausted => return status,
            Err(status) => panic!("unexpected error while waiting for the limit: {status:?}"),
            Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
    panic!("ListClaims was never refused with RESOURCE_EXHAUSTED");
}

/// Calls ListClaims until it succeeds; panics on errors other than
/// RESOURCE_EXHAUSTED or if it never does.
async fn until_served(client: &mut common::Client) {
    for _ in 0..ATTEMPTS {
        match client.list_claims(list_request()).await {
            Ok(_) => return,
            Err(status) if status.code() == Code::ResourceExhausted => {
                tokio::time::sleep(Duration::from_millis(5)).await
            }
            Err(status) => panic!("unexpected error while waiting for a free slot: {status:?}"),
        }
    }
    panic!("ListClaims was never served again after the held calls ended");
}

#[tokio::test]
async fn calls_beyond_max_in_flight_are_refused_while_health_answers() {
    let server = Server::start(Options {
        max_in_flight: 2,
        // Far beyond the test: only the client ends the held calls.
        request_timeout: Duration::from_secs(600),
        ..Options::default()
    })
    .await;
    let held_channel = plain_channel(server.addr).await.expect("connect");
    let probe_channel = plain_channel(server.addr).await.expect("connect");
    let mut probe = ClaimServiceClient::new(probe_channel.clone());
    let claim = common::new_claim(&mut probe, "A claim to read under load").await;

    let held = [
        hold_call(held_channel.clone()),
        hold_call(held_channel.clone()),
    ];

    let refused = until_refused(&mut probe).await;
    assert!(
        refused.message().contains("2 calls in flight"),
        "the refusal must mention the limit: {refused:?}"
    );
    assert!(
        held.iter().all(|h| !h.is_finished()),
        "the held calls are still in flight"
    );

    // While both slots are held, every guarded call is refused at once...
    let err = probe
        .get_verification_status(pb::GetVerificationStatusRequest {
            claim: claim.name.clone(),
            ..Default::default()
        })
        .await
        .expect_err("GetVerificationStatus beyond the limit");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("2 calls in flight"), "{err:?}");
    let fresh_channel = plain_channel(server.addr).await.expect("connect");
    let err = ClaimServiceClient::new(fresh_channel.clone())
        .list_claims(list_request())
        .await
        .expect_err("ListClaims on a new connection beyond the limit");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");

    // ...while health checks still answer, on every connection.
    for (which, channel) in [
        ("the held calls' connection", held_channel.clone()),
        ("the refused probe's connection", probe_channel.clone()),
        ("a new connection", fresh_channel),
        (
            "another new connection",
            plain_channel(server.addr).await.expect("connect"),
        ),
    ] {
        for service in ["", "photoclaim.v1.ClaimService"] {
            assert_eq!(
                health_status(channel.clone(), service).await,
                ServingStatus::Serving,
                "health of {service:?} on {which} while overloaded"
            );
        }
    }
    assert!(
        held.iter().all(|h| !h.is_finished()),
        "the held calls were still in flight during the checks"
    );

    // Dropping the held calls frees their slots.
    drop(held_channel);
    for handle in held {
        handle.abort();
        let outcome = handle.await;
        assert!(
            outcome.as_ref().is_err_and(|e| e.is_cancelled()),
            "a held call ended on its own: {outcome:?}"
        );
    }
    until_served(&mut probe).await;
    common::status(&mut probe, &claim.name).await;

    server.stop().await;
}

#[tokio::test]
async fn request_timeout_ends_a_call_that_hangs_and_frees_its_slot() {
    let server = Server::start(Options {
        max_in_flight: 1,
        request_timeout: Duration::from_secs(1),
        ..Options::default()
    })
    .await;
    let channel = plain_channel(server.addr).await.expect("connect");

    let held = hold_call(channel.clone());
    let outcome = tokio::time::timeout(SAFETY, held)
        .await
        .expect("the server's request timeout ends the call (safety net: 30 s)")
        .expect("held call task");
    let status = outcome.expect_err("a call whose request never arrives cannot succeed");
    // tonic's Server::timeout ends it with CANCELLED ("Timeout expired"), as
    // the README documents for --request-timeout-seconds.
    assert_eq!(
        status.code(),
        Code::Cancelled,
        "an expired call ends with CANCELLED: {status:?}"
    );

    // Its slot (the only one) was not leaked: calls are served again.
    let mut client = ClaimServiceClient::new(channel);
    until_served(&mut client).await;

    server.stop().await;
}
