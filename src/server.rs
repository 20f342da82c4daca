//! Builds and runs the gRPC server: `ClaimService`, `AdminService`,
//! `grpc.health.v1.Health` (answering for "" and for each of the others by
//! name, and for the store: [`WRITES_HEALTH`], [`INTEGRITY_HEALTH`]) and
//! server reflection (v1 and v1alpha: grpcurl before 1.8.8 only
//! speaks v1alpha), on a listener the caller has already bound, behind the
//! guard of [`crate::api::auth`] and optionally TLS.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic::transport::{Certificate, Server, ServerTlsConfig};
use tonic_health::ServingStatus;

use crate::api::admin::AdminApi;
use crate::api::auth::{AuthPolicy, GuardLayer};
use crate::api::{ClaimApi, ImageOptions, WatchOptions};
use crate::domain::access::Role;
use crate::domain::review::Publisher;
use crate::pb::admin_service_server::AdminServiceServer;
use crate::pb::claim_service_server::ClaimServiceServer;
use crate::store::{Store, Writability};

/// Health name that is SERVING while the store takes writes, NOT_SERVING
/// while it refuses them (disk full, or reopening after a failed write).
/// `""`, `ClaimService` and `AdminService` follow it: the server never says
/// SERVING while it refuses every write.
pub const WRITES_HEALTH: &str = "photoclaim.storage.writes";
/// Health name that turns NOT_SERVING (and `""` with it) once a storage read
/// found corrupt data, until a restart: run `photoclaim check`.
pub const INTEGRITY_HEALTH: &str = "photoclaim.storage.integrity";

/// Largest image (`image.content`) accepted by default (bytes).
pub const DEFAULT_MAX_IMAGE_BYTES: usize = 20 * 1024 * 1024;
/// Largest request message accepted by default (bytes): the largest image
/// plus 1 MiB for the rest of the request.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = DEFAULT_MAX_IMAGE_BYTES + 1024 * 1024;
/// Largest PDQ distance that counts as a near duplicate by default.
pub const DEFAULT_SIMILARITY_DISTANCE: u32 = 31;
/// How long in-flight calls may take to finish after shutdown begins, by default.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Calls in flight across all connections before new ones are shed, by default.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 512;
/// Calls in flight one caller may hold, by default: a quarter of the total.
pub const DEFAULT_MAX_IN_FLIGHT_PER_CALLER: usize = 128;
/// Concurrent calls on one connection, by default; also advertised to
/// clients as HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS`.
pub const DEFAULT_MAX_CALLS_PER_CONNECTION: usize = 64;
/// Connections open at once, by default: below the common soft limit of
/// 1,024 descriptors, leaving room for sled's files and the metrics port.
pub const DEFAULT_MAX_CONNECTIONS: usize = 768;
/// How long a new connection may take to send its first bytes (HTTP/2
/// preface or TLS ClientHello), by default.
pub const DEFAULT_FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest any call may run, by default (a shorter `grpc-timeout` wins).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Interval of HTTP/2 keepalive pings, by default.
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// Longest a TLS handshake may take.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Server settings that are not the listener or the store.
#[derive(Clone, Debug)]
pub struct Options {
    /// Requests larger than this are refused (`OUT_OF_RANGE`) before any handler runs.
    pub max_message_bytes: usize,
    /// Bound on the drain after the shutdown signal; connections still open
    /// then are closed.
    pub shutdown_grace: Duration,
    /// Images and near-duplicate matching.
    pub images: ImageOptions,
    /// Who may call without an API key. `run` applies it as given: the
    /// rule that only loopback servers may be open without keys is
    /// [`anonymous_access`], which the binary applies before calling `run`;
    /// embedders must do the same (the default is open, for tests).
    pub auth: AuthPolicy,
    /// Serve TLS (and require client certificates) when set.
    pub tls: Option<TlsFiles>,
    /// Guarded calls in flight at once, across connections; more are refused
    /// with `RESOURCE_EXHAUSTED`. Health checks do not count. 0: no limit.
    pub max_in_flight: usize,
    /// Of those, how many one caller (an API key, a client certificate,
    /// or an anonymous caller's address) may hold; the last sixteenth of
    /// `max_in_flight` only admins may take.
    pub max_in_flight_per_caller: usize,
    /// Concurrent calls on one connection; more wait for a slot. Advertised
    /// as HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS`, so well-behaved clients
    /// queue on their side.
    pub max_calls_per_connection: usize,
    /// Connections open at once; more are closed as they arrive (see
    /// [`crate::listener`]).
    pub max_connections: usize,
    /// How long a new connection may take to send its first bytes before
    /// it is closed.
    pub first_bytes_timeout: Duration,
    /// Request bytes all calls together may hold while their bodies arrive
    /// (see [`crate::api::body_limits`]).
    pub max_body_bytes_in_flight: usize,
    /// How long a request body may send nothing before it is complete.
    pub body_timeout: Duration,
    /// Longest any call may run; a shorter `grpc-timeout` from the client wins.
    pub request_timeout: Duration,
    /// Interval of HTTP/2 keepalive pings (a peer that does not answer within
    /// 10 s is dropped).
    pub keepalive_interval: Duration,
    /// WatchClaimEvents' per-stream buffer and stall timeout.
    pub watch: WatchOptions,
    /// Browser origins allowed to call over gRPC-Web (CORS). Empty: none
    /// (gRPC-Web still works for same-origin and non-browser callers).
    pub cors_allow_origins: Vec<String>,
    /// Author and page URLs of published reviews (ExportClaimReview);
    /// checked with [`Publisher::validate`] by whoever builds the options.
    pub publisher: Publisher,
    /// Where the full-text search index lives; `None` turns search off
    /// (SearchClaims is FAILED_PRECONDITION, no "checked before?" list).
    pub search: Option<crate::search::Location>,
    /// Reads Content Credentials (C2PA) from uploaded images, trusting the
    /// operator's anchors; `None` turns reading off.
    pub credentials: Option<crate::imaging::credentials::CredentialReader>,
}

impl Default for Options {
    /// Open to anonymous callers (until a key exists), plaintext: what tests
    /// and a developer's loopback server use.
    fn default() -> Self {
        Options {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            images: ImageOptions {
                max_image_bytes: DEFAULT_MAX_IMAGE_BYTES,
                default_max_distance: DEFAULT_SIMILARITY_DISTANCE,
            },
            auth: AuthPolicy {
                allow_anonymous: true,
                client_cert_role: Role::Reader,
            },
            tls: None,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_in_flight_per_caller: DEFAULT_MAX_IN_FLIGHT_PER_CALLER,
            max_calls_per_connection: DEFAULT_MAX_CALLS_PER_CONNECTION,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            first_bytes_timeout: DEFAULT_FIRST_BYTES_TIMEOUT,
            max_body_bytes_in_flight: crate::api::body_limits::DEFAULT_BODY_BYTES_IN_FLIGHT,
            body_timeout: crate::api::body_limits::DEFAULT_BODY_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
            watch: WatchOptions::default(),
            cors_allow_origins: Vec::new(),
            publisher: Publisher::default(),
            search: Some(crate::search::Location::Memory),
            credentials: Some(crate::imaging::credentials::CredentialReader::new()),
        }
    }
}

/// PEM contents for TLS.
#[derive(Clone)]
pub struct TlsFiles {
    /// The server's certificate chain.
    pub cert_pem: Vec<u8>,
    /// The server's private key.
    pub key_pem: Vec<u8>,
    /// CA certificates that client certificates must chain to; when set,
    /// every client must present one (mutual TLS).
    pub client_ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for TlsFiles {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFiles")
            .field("mutual", &self.client_ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

/// Decides whether callers without credentials may be served, from where
/// the server listens and what protects it; `Err` explains why the server
/// must not start. Anonymous access only ever applies while no API key
/// exists.
pub fn anonymous_access(
    listen: SocketAddr,
    keys_exist: bool,
    mutual_tls: bool,
    insecure_allow_anonymous: bool,
) -> Result<bool, String> {
    if keys_exist || mutual_tls {
        return Ok(false);
    }
    if listen.ip().is_loopback() || insecure_allow_anonymous {
        return Ok(true);
    }
    Err(format!(
        "refusing to serve {listen} without API keys: anyone who can reach it could write verdicts. \
         Create a key first (photoclaim keys create --name NAME --role admin), require client \
         certificates (--tls-client-ca), listen on a loopback address, or pass \
         --insecure-allow-anonymous if this really is a private network"
    ))
}

/// Any failure that stops the server.
pub type ServeError = Box<dyn std::error::Error + Send + Sync>;

/// Serves on `listener` until `shutdown` resolves; then reports NOT_SERVING,
/// stops accepting, lets in-flight calls finish for at most
/// `options.shutdown_grace`, and flushes the store.
pub async fn run<S: Store>(
    listener: TcpListener,
    store: Arc<S>,
    options: Options,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    // Our protos, health, and google.rpc error details (so grpcurl can decode
    // the BadRequest details of INVALID_ARGUMENT errors).
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    // Becomes true when shutdown begins, so that watch streams end (with a
    // cursor to resume from) instead of holding the drain open.
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let mut api = ClaimApi::with_images(store.clone(), options.images)
        .with_watch(options.watch, stopping)
        .with_publisher(options.publisher.clone())
        .with_credentials(options.credentials.clone());
    let mut indexer = None;
    if let Some(location) = &options.search {
        let index = crate::search::SearchIndex::open(location.clone())?;
        tracing::info!(index = ?location, "search index opened");
        indexer = Some(crate::search::start(Arc::clone(&index), store.clone()));
        api = api.with_search(index);
    }
    let claims = ClaimServiceServer::new(api).max_decoding_message_size(options.max_message_bytes);
    let admin = AdminServiceServer::new(AdminApi::new(store.clone()))
        .max_decoding_message_size(options.max_message_bytes);
    // Health answers for the server as a whole ("") and for every service
    // it serves, by the name clients call it by: SERVING now, NOT_SERVING
    // once the drain begins. Any other name is NOT_FOUND.
    let served = [
        service_name(&claims),
        service_name(&admin),
        service_name(&reflection_v1),
        service_name(&reflection_v1alpha),
    ];
    let (health, health_service) = tonic_health::server::health_reporter();
    // Every name is known before the first call (the follower below then
    // keeps the storage names in step): no caller sees "not registered".
    for name in served.into_iter().chain([WRITES_HEALTH, INTEGRITY_HEALTH]) {
        health
            .set_service_status(name, ServingStatus::Serving)
            .await;
    }
    let storage_health = tokio::spawn(follow_storage(
        health.clone(),
        [served[0], served[1]],
        store.writability(),
    ));
    let guard = GuardLayer::new(
        store.clone(),
        options.auth.clone(),
        options.max_in_flight,
        options.max_in_flight_per_caller,
    );
    let cors = cors_layer(&options.cors_allow_origins)?;

    let mut builder = Server::builder();
    if let Some(tls) = &options.tls {
        // A peer that opens a connection and stalls the handshake is dropped.
        let mut config = ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(
                &tls.cert_pem,
                &tls.key_pem,
            ))
            .timeout(TLS_HANDSHAKE_TIMEOUT);
        if let Some(ca) = &tls.client_ca_pem {
            config = config.client_ca_root(Certificate::from_pem(ca));
        }
        builder = builder.tls_config(config)?;
    }

    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
    let serve = builder
        .http2_keepalive_interval(Some(options.keepalive_interval))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .concurrency_limit_per_connection(options.max_calls_per_connection)
        .max_concurrent_streams(u32::try_from(options.max_calls_per_connection).ok())
        .timeout(options.request_timeout)
        // gRPC-Web (HTTP/1.1 or HTTP/2) on the same port: CORS answers
        // browsers' preflights, the web layer translates to gRPC, and the
        // guard then sees a gRPC call like any other.
        .accept_http1(true)
        .layer(tower::util::option_layer(cors))
        .layer(tonic_web::GrpcWebLayer::new())
        .layer(guard)
        .layer(crate::api::body_limits::BodyLimitLayer::new(
            crate::api::body_limits::BodyLimits {
                max_message_bytes: options.max_message_bytes,
                max_body_bytes_in_flight: options.max_body_bytes_in_flight,
                body_timeout: options.body_timeout,
            },
        ))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(claims)
        .add_service(admin)
        // The accept loop caps connections and closes silent ones; it also
        // turns off Nagle's algorithm (small replies would stall ~40 ms).
        .serve_with_incoming_shutdown(
            crate::listener::incoming(
                listener,
                crate::listener::ConnectionLimits {
                    max_connections: options.max_connections,
                    first_bytes_timeout: options.first_bytes_timeout,
                },
                crate::listener::server_stats(),
            ),
            async {
                let _ = drain_rx.await;
            },
        );
    tokio::pin!(serve);
    tokio::pin!(shutdown);

    tokio::select! {
        result = &mut serve => result?,
        () = &mut shutdown => {
            tracing::info!(grace_ms = options.shutdown_grace.as_millis() as u64, "shutdown requested: draining");
            storage_health.abort();
            let _ = storage_health.await;
            for name in served.into_iter().chain(["", WRITES_HEALTH, INTEGRITY_HEALTH]) {
                health.set_service_status(name, ServingStatus::NotServing).await;
            }
            let _ = stopping_tx.send(true);
            let _ = drain_tx.send(());
            match tokio::time::timeout(options.shutdown_grace, &mut serve).await {
                Ok(result) => result?,
                Err(_) => tracing::warn!("drain did not finish in time; closing remaining connections"),
            }
        }
    }
    if let Some(indexer) = indexer {
        indexer.stop().await;
    }
    store.close().await?;
    tracing::info!("stopped: all acknowledged writes are on disk");
    Ok(())
}

/// Keeps the health statuses in step with the store: [`WRITES_HEALTH`]
/// and the `services` that write follow its writability,
/// [`INTEGRITY_HEALTH`] the corruption counter, `""` both.
async fn follow_storage(
    health: tonic_health::server::HealthReporter,
    services: [&'static str; 2],
    mut writability: tokio::sync::watch::Receiver<Writability>,
) {
    let status = |ok| {
        if ok {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        }
    };
    let metrics = crate::metrics::global();
    let corruption_at_start = metrics.corruption_count();
    // `run` has set every name SERVING: send only changes from there, so a
    // health watcher never gets a second, unchanged SERVING.
    let mut shown = Some((true, true));
    let mut sender_alive = true;
    loop {
        let writable = *writability.borrow_and_update() == Writability::Writable;
        let intact = metrics.corruption_count() == corruption_at_start;
        if shown != Some((writable, intact)) {
            for name in services.into_iter().chain([WRITES_HEALTH]) {
                health.set_service_status(name, status(writable)).await;
            }
            health
                .set_service_status(INTEGRITY_HEALTH, status(intact))
                .await;
            health
                .set_service_status("", status(writable && intact))
                .await;
            shown = Some((writable, intact));
        }
        // Corruption is counted, not signalled: look again every second.
        let tick = tokio::time::sleep(Duration::from_secs(1));
        if sender_alive {
            tokio::select! {
                changed = writability.changed() => sender_alive = changed.is_ok(),
                () = tick => {}
            }
        } else {
            tick.await;
        }
    }
}

/// Serves Prometheus metrics (`GET /metrics`, [`crate::metrics`]) on
/// `listener` until the process ends, with `store`'s figures read at each
/// scrape.
pub async fn serve_metrics<S: Store>(listener: TcpListener, store: Arc<S>) -> std::io::Result<()> {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    let scrape = move || {
        let store = store.clone();
        async move {
            match store.stats().await {
                Ok(stats) => (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    crate::metrics::global().render(&crate::metrics::StoreFigures {
                        claims: stats.claims,
                        bytes_on_disk: stats.bytes_on_disk,
                        disk_free_bytes: stats.disk_free_bytes,
                    }),
                )
                    .into_response(),
                Err(err) => {
                    tracing::error!(error = %err, "metrics: cannot read store statistics");
                    StatusCode::INTERNAL_SERVER_ERROR.into_response()
                }
            }
        }
    };
    let router = axum::Router::new().route("/metrics", axum::routing::get(scrape));
    axum::serve(listener, router).await
}

/// The fully qualified gRPC name of a service, e.g. `photoclaim.v1.AdminService`.
fn service_name<T: NamedService>(_: &T) -> &'static str {
    T::NAME
}

/// The CORS policy for gRPC-Web callers from these browser origins; none
/// when the list is empty.
fn cors_layer(origins: &[String]) -> Result<Option<tower_http::cors::CorsLayer>, ServeError> {
    use http::header::{HeaderName, AUTHORIZATION, CONTENT_TYPE};
    if origins.is_empty() {
        return Ok(None);
    }
    let origins = origins
        .iter()
        .map(|o| {
            http::HeaderValue::from_str(o).map_err(|_| {
                ServeError::from(format!("--cors-allow-origin {o:?} is not a valid origin"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let header = HeaderName::from_static;
    Ok(Some(
        tower_http::cors::CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([http::Method::POST])
            .allow_headers([
                CONTENT_TYPE,
                AUTHORIZATION,
                header("x-grpc-web"),
                header("x-user-agent"),
                header("grpc-timeout"),
            ])
            .expose_headers([
                header("grpc-status"),
                header("grpc-message"),
                header("grpc-status-details-bin"),
                header("photoclaim-replayed"),
                header(crate::api::watch::RESUME_CURSOR),
            ])
            .max_age(Duration::from_secs(600)),
    ))
}
