//! `photoclaim.v1.AdminService`: API key management. The guard in
//! [`super::auth`] lets only ADMIN callers reach these handlers.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::domain::access::{validate_key_name, ApiKey, Role};
use crate::domain::{Error, Timestamp};
use crate::pb::{self, admin_service_server::AdminService};
use crate::rpc;
use crate::store::Store;
use crate::wire::backup;

use super::actor;
use super::status::{observe, to_status};
use crate::wire::archive;
use crate::wire::convert::key_out;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tracing::Instrument;

/// `AdminService` over any [`Store`].
pub struct AdminApi<S> {
    store: Arc<S>,
}

impl<S: Store> AdminApi<S> {
    /// A service backed by `store`.
    pub fn new(store: Arc<S>) -> Self {
        AdminApi { store }
    }
}

fn role_in(value: i32) -> Result<Role, Error> {
    match Role::try_from(value) {
        Ok(Role::Unspecified) => Err(Error::invalid(
            "role",
            "is required: ROLE_READER, ROLE_INGEST, ROLE_DESK or ROLE_ADMIN",
        )),
        Ok(role) => Ok(role),
        Err(_) => Err(Error::invalid(
            "role",
            format!("{value} is not a known value"),
        )),
    }
}

/// A server stream fed by a producer task through a channel.
type Relay<T> =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Runs `producer` as its own task (in a span named `name`) and streams
/// what it sends, each item wrapped by `wrap`; the producer's error ends
/// the stream with its status.
fn relay<T: Send + 'static, U: Send + 'static, R: Send + 'static>(
    producer: impl std::future::Future<Output = R> + Send + 'static,
    name: &'static str,
    rx: tokio::sync::mpsc::Receiver<Result<T, Error>>,
    wrap: fn(T) -> U,
) -> Relay<U> {
    tokio::spawn(producer.instrument(tracing::info_span!("producer", name)));
    Box::pin(ReceiverStream::new(rx).map(move |chunk| chunk.map(wrap).map_err(to_status)))
}

#[tonic::async_trait]
impl<S: Store> AdminService for AdminApi<S> {
    type ExportClaimsStream = Relay<pb::ExportClaimsResponse>;

    async fn export_claims(
        &self,
        _request: Request<pb::ExportClaimsRequest>,
    ) -> Result<Response<Self::ExportClaimsStream>, Status> {
        observe(&rpc::EXPORT_CLAIMS, "", async {
            let (tx, rx) = archive::channel();
            let producer = archive::produce(self.store.clone(), tx);
            Ok(relay(producer, "export", rx, |lines| {
                pb::ExportClaimsResponse { lines }
            }))
        })
        .await
    }

    type BackupStream = Relay<pb::BackupChunk>;

    async fn backup(
        &self,
        _request: Request<pb::BackupRequest>,
    ) -> Result<Response<Self::BackupStream>, Status> {
        observe(&rpc::BACKUP, "", async {
            let (tx, rx) = backup::channel();
            let producer = backup::produce(self.store.clone(), tx);
            Ok(relay(producer, "backup", rx, |data| pb::BackupChunk {
                data,
            }))
        })
        .await
    }

    async fn create_api_key(
        &self,
        request: Request<pb::CreateApiKeyRequest>,
    ) -> Result<Response<pb::CreateApiKeyResponse>, Status> {
        let actor = actor(&request);
        let req = request.into_inner();
        observe(&rpc::CREATE_API_KEY, "", async {
            let role = role_in(req.role)?;
            let (key, token) = ApiKey::create(&req.name, role, &actor, Timestamp::now())?;
            let key = self.store.create_key(key).await?;
            tracing::info!(key = %key.name, role = role.as_str(), "API key created");
            Ok(pb::CreateApiKeyResponse {
                api_key: Some(key_out(&key)),
                token,
            })
        })
        .await
    }

    async fn list_api_keys(
        &self,
        _request: Request<pb::ListApiKeysRequest>,
    ) -> Result<Response<pb::ListApiKeysResponse>, Status> {
        observe(&rpc::LIST_API_KEYS, "", async {
            let keys = self.store.list_keys().await?;
            Ok(pb::ListApiKeysResponse {
                api_keys: keys.iter().map(key_out).collect(),
            })
        })
        .await
    }

    async fn revoke_api_key(
        &self,
        request: Request<pb::RevokeApiKeyRequest>,
    ) -> Result<Response<pb::ApiKey>, Status> {
        let actor = actor(&request);
        let req = request.into_inner();
        observe(&rpc::REVOKE_API_KEY, "", async {
            validate_key_name(&req.name)?;
            let key = self.store.revoke_key(&req.name, &actor).await?;
            tracing::info!(key = %key.name, "API key revoked");
            Ok(key_out(&key))
        })
        .await
    }
}
