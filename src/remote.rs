//! Reaching a running server as a client: the `--server`, `--token`,
//! `--ca-cert`, `--client-cert`/`--client-key` flags turned into a tonic
//! [`Channel`] and authorized requests. Shared by `photoclaim keys --server`
//! ([`crate::keys`]) and the desk CLI ([`crate::desk`]).

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// How to reach a running server.
pub struct ServerTarget {
    /// `http://host:port` or `https://host:port`.
    pub url: String,
    /// An API key's token (empty: none, for a server still open).
    pub token: String,
    /// PEM CA certificate to verify an https server with.
    pub ca_cert: Option<Vec<u8>>,
    /// PEM client certificate and key, for servers that require one.
    pub client_identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl ServerTarget {
    /// Reads the certificate files named by the flags; errors name the flag.
    pub fn from_flags(
        url: String,
        token: Option<String>,
        ca_cert: Option<&Path>,
        client_cert: Option<&Path>,
        client_key: Option<&Path>,
    ) -> Result<Self, String> {
        let client_identity = match (client_cert, client_key) {
            (Some(cert), Some(key)) => Some((
                read_file(cert, "--client-cert")?,
                read_file(key, "--client-key")?,
            )),
            (None, None) => None,
            _ => return Err("--client-cert and --client-key go together".into()),
        };
        let ca_cert = ca_cert.map(|p| read_file(p, "--ca-cert")).transpose()?;
        Ok(ServerTarget {
            url,
            token: token.unwrap_or_default(),
            ca_cert,
            client_identity,
        })
    }

    /// Connects; an https URL needs the CA named (there is no built-in root
    /// store: the server's CA is always explicit).
    pub async fn connect(&self) -> Result<Channel, ConnectError> {
        let mut endpoint = Endpoint::from_shared(self.url.clone())
            .map_err(|e| ConnectError::Settings(format!("--server: {e}")))?;
        if self.url.starts_with("https://") {
            let Some(ca) = &self.ca_cert else {
                return Err(ConnectError::Settings(
                    "--ca-cert is required with an https:// --server".into(),
                ));
            };
            let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
            if let Some((cert, key)) = &self.client_identity {
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| ConnectError::Settings(format!("TLS settings: {e}")))?;
        }
        endpoint
            .connect()
            .await
            .map_err(|e| ConnectError::Unreachable(format!("cannot connect to {}: {e}", self.url)))
    }

    /// `body` as a request carrying `authorization: Bearer <token>` when a
    /// token is set. The error never contains the token.
    pub fn request<T>(&self, body: T) -> Result<tonic::Request<T>, String> {
        let mut request = tonic::Request::new(body);
        if !self.token.is_empty() {
            let value = format!("Bearer {}", self.token)
                .parse()
                .map_err(|_| "PHOTOCLAIM_TOKEN is not a valid header value".to_string())?;
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}

/// Why [`ServerTarget::connect`] failed.
#[derive(Debug)]
pub enum ConnectError {
    /// The flags are wrong (bad URL, https without --ca-cert, unusable PEM).
    Settings(String),
    /// Nothing answered at the URL, or the TLS handshake failed.
    Unreachable(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Settings(why) | ConnectError::Unreachable(why) => f.write_str(why),
        }
    }
}

impl From<ConnectError> for String {
    fn from(err: ConnectError) -> String {
        err.to_string()
    }
}

fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
}

/// The credential flags of every command that talks to a server (`keys`,
/// `export`, `claim`); `--server` itself differs per command.
#[derive(clap::Args, Debug)]
pub struct CredentialArgs {
    /// API key token, sent as `authorization: Bearer`. Prefer the environment variable.
    #[arg(long, env = "PHOTOCLAIM_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// PEM CA certificate to verify an https --server with.
    #[arg(long, env = "PHOTOCLAIM_CA_CERT", global = true)]
    pub ca_cert: Option<PathBuf>,
    /// PEM client certificate, for a --server that requires one (needs --client-key).
    #[arg(long, env = "PHOTOCLAIM_CLIENT_CERT", global = true)]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(long, env = "PHOTOCLAIM_CLIENT_KEY", global = true)]
    pub client_key: Option<PathBuf>,
}

impl CredentialArgs {
    /// The server at `url` with these credentials (certificate files read
    /// now; errors name the flag).
    pub fn target(&self, url: String) -> Result<ServerTarget, String> {
        ServerTarget::from_flags(
            url,
            self.token.clone(),
            self.ca_cert.as_deref(),
            self.client_cert.as_deref(),
            self.client_key.as_deref(),
        )
    }
}
