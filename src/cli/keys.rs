//! `photoclaim keys ...`: API key management for operators, either directly
//! on a data directory (while no server holds it) or through a running
//! server's `AdminService`.

use crate::domain::access::{validate_key_name, ApiKey, Role};
use crate::domain::Timestamp;
use crate::pb;
use crate::store::{SledStore, Store, DEFAULT_CACHE_BYTES};
use crate::wire::convert::key_out;

/// Actor recorded for key changes made on the data directory.
pub const CLI_ACTOR: &str = "cli";

pub use crate::cli::Target;
pub use crate::client::ServerTarget;

/// What went wrong: a code and words for an operator.
pub type KeyError = crate::cli::Failure;

/// Creates a key; returns it and its token.
pub async fn create(
    target: &Target,
    name: &str,
    role: Role,
) -> Result<(pb::ApiKey, String), KeyError> {
    match target {
        Target::DataDir(dir) => {
            let store = open(dir)?;
            let (key, token) = ApiKey::create(name, role, CLI_ACTOR, Timestamp::now())?;
            let key = store.create_key(key).await?;
            store.close().await?;
            Ok((key_out(&key), token))
        }
        Target::Server(server) => {
            let reply = server
                .admin_client()
                .await?
                .create_api_key(crate::cli::admin_request(
                    server,
                    pb::CreateApiKeyRequest {
                        name: name.to_string(),
                        role: role as i32,
                    },
                )?)
                .await
                .map_err(KeyError::from)?
                .into_inner();
            let key = reply
                .api_key
                .ok_or_else(|| KeyError::other("the server sent no key"))?;
            Ok((key, reply.token))
        }
    }
}

/// Lists all keys, oldest first.
pub async fn list(target: &Target) -> Result<Vec<pb::ApiKey>, KeyError> {
    match target {
        Target::DataDir(dir) => {
            let store = open_existing(dir)?;
            let keys = store.list_keys().await?;
            Ok(keys.iter().map(key_out).collect())
        }
        Target::Server(server) => Ok(server
            .admin_client()
            .await?
            .list_api_keys(crate::cli::admin_request(
                server,
                pb::ListApiKeysRequest {},
            )?)
            .await
            .map_err(KeyError::from)?
            .into_inner()
            .api_keys),
    }
}

/// Revokes the key named `name`.
pub async fn revoke(target: &Target, name: &str) -> Result<pb::ApiKey, KeyError> {
    match target {
        Target::DataDir(dir) => {
            validate_key_name(name).map_err(KeyError::from)?;
            let store = open_existing(dir)?;
            let key = store.revoke_key(name, CLI_ACTOR).await?;
            store.close().await?;
            Ok(key_out(&key))
        }
        Target::Server(server) => server
            .admin_client()
            .await?
            .revoke_api_key(crate::cli::admin_request(
                server,
                pb::RevokeApiKeyRequest {
                    name: name.to_string(),
                },
            )?)
            .await
            .map(tonic::Response::into_inner)
            .map_err(KeyError::from),
    }
}

/// Like [`open`], but a mistyped path is an error (NOT_FOUND) instead of a
/// new, empty database (only `create` may start a data directory).
fn open_existing(dir: &std::path::Path) -> Result<SledStore, KeyError> {
    crate::cli::open_existing(dir, DEFAULT_CACHE_BYTES)
}

fn open(dir: &std::path::Path) -> Result<SledStore, KeyError> {
    Ok(SledStore::open_without_index(dir, DEFAULT_CACHE_BYTES)?)
}

/// `2026-11-28T10:49:03Z` for a protobuf timestamp (UTC, whole seconds),
/// `-` for none.
pub fn format_time(t: Option<&prost_types::Timestamp>) -> String {
    t.map_or_else(
        || "-".to_string(),
        |t| prost_types::Timestamp { nanos: 0, ..*t }.to_string(),
    )
}

/// The lower-case name of a protobuf role value.
pub fn role_name(value: i32) -> &'static str {
    Role::try_from(value).unwrap_or(Role::Unspecified).as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_server_that_is_not_there_is_named_as_refused() {
        let target = Target::Server(ServerTarget {
            url: "https://127.0.0.1:1".into(),
            token: String::new(),
            ca_cert: None,
            client_identity: None,
        });
        let err = list(&target).await.unwrap_err();
        assert_eq!(err.code, tonic::Code::Unavailable, "{err}");
        assert!(err.message.contains("connection refused"), "{err}");
    }

    #[test]
    fn times_format_as_rfc3339_utc() {
        let at = |seconds| format_time(Some(&prost_types::Timestamp { seconds, nanos: 0 }));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_796_294_943), "2026-12-03T10:49:03Z");
        assert_eq!(format_time(None), "-");
    }
}
