//! Builds and runs the gRPC server: `ClaimService`, `grpc.health.v1.Health`
//! and server reflection (v1 and v1alpha: grpcurl before 1.8.8 only speaks
//! v1alpha), on a listener the caller has already bound.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic_health::ServingStatus;

use crate::api::ClaimApi;
use crate::pb::claim_service_server::ClaimServiceServer;
use crate::store::Store;

/// Largest request message accepted by default (bytes).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// How long in-flight calls may take to finish after shutdown begins, by default.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Server settings that are not the listener or the store.
#[derive(Clone, Debug)]
pub struct Options {
    /// Requests larger than this are refused (`OUT_OF_RANGE`) before any handler runs.
    pub max_message_bytes: usize,
    /// Bound on the drain after the shutdown signal; connections still open
    /// then are closed.
    pub shutdown_grace: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
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
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<ClaimServiceServer<ClaimApi<S>>>()
        .await;

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
    let claims = ClaimServiceServer::new(ClaimApi::new(store.clone()))
        .max_decoding_message_size(options.max_message_bytes);

    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
    let serve = Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(claims)
        // Small unary replies must not wait for Nagle's algorithm (~40 ms stalls).
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
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
            health.set_not_serving::<ClaimServiceServer<ClaimApi<S>>>().await;
            health.set_service_status("", ServingStatus::NotServing).await;
            let _ = drain_tx.send(());
            match tokio::time::timeout(options.shutdown_grace, &mut serve).await {
                Ok(result) => result?,
                Err(_) => tracing::warn!("drain did not finish in time; closing remaining connections"),
            }
        }
    }
    store.close().await?;
    tracing::info!("stopped: all acknowledged writes are on disk");
    Ok(())
}
