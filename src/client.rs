//! Reaching a running server as a client: a server's address and
//! credentials ([`ServerTarget`], made from the `--server`, `--token`,
//! `--ca-cert`, `--client-cert`/`--client-key` flags by the CLI) turned into
//! a tonic [`Channel`], authorized requests and the `AdminService` client.
//! Shared by every command that works through a server (`keys`, `export`,
//! `backup`, the desk CLI); no clap and no terminal output here.

use std::path::Path;

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

/// How long the first connection may take (TCP and TLS) before the command
/// gives up with "timed out".
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl ServerTarget {
    /// Reads the certificate files named by the flags; errors name the flag.
    /// `server` is taken as people type it: `HOST:PORT` means plaintext
    /// (like `grpcurl -plaintext`), `http://` and `https://` URLs as given.
    pub fn from_flags(
        server: String,
        token: Option<String>,
        ca_cert: Option<&Path>,
        client_cert: Option<&Path>,
        client_key: Option<&Path>,
    ) -> Result<Self, String> {
        let url = server_url(&server)?;
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

    /// Connects. An https URL is verified against `--ca-cert` when given,
    /// else against the system's trust store (which honours `SSL_CERT_FILE`
    /// and `SSL_CERT_DIR`). The error says what failed: refused, no such
    /// host, TLS, timeout.
    pub async fn connect(&self) -> Result<Channel, ConnectError> {
        let mut endpoint = Endpoint::from_shared(self.url.clone())
            .map_err(|e| ConnectError::Settings(format!("--server {}: {e}", self.url)))?
            .connect_timeout(CONNECT_TIMEOUT);
        if self.url.starts_with("https://") {
            let mut tls = ClientTlsConfig::new().timeout(CONNECT_TIMEOUT);
            tls = match &self.ca_cert {
                Some(ca) => tls.ca_certificate(Certificate::from_pem(ca)),
                None => tls.with_native_roots(),
            };
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
            .map_err(|e| ConnectError::Unreachable(describe_connect_error(&self.url, &e)))
    }

    /// `body` as a request carrying `authorization: Bearer <token>` when a
    /// token is set. The error never contains the token.
    pub fn request<T>(&self, body: T) -> Result<tonic::Request<T>, String> {
        let mut request = tonic::Request::new(body);
        if !self.token.is_empty() {
            let value = format!("Bearer {}", self.token).parse().map_err(|_| {
                "the token (--token or PHOTOCLAIM_TOKEN) is not a valid header value".to_string()
            })?;
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}

/// `http://HOST:PORT` for `HOST:PORT`; `http://` and `https://` URLs as
/// they are; anything else is refused with the forms that work.
pub fn server_url(server: &str) -> Result<String, String> {
    let server = server.trim();
    if server.starts_with("http://") || server.starts_with("https://") {
        return Ok(server.trim_end_matches('/').to_string());
    }
    if server.contains("://") {
        return Err(format!(
            "--server {server}: give HOST:PORT (plaintext), http://HOST:PORT or https://HOST:PORT"
        ));
    }
    let has_port = server
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !has_port {
        return Err(format!(
            "--server {server}: give HOST:PORT (plaintext, e.g. 127.0.0.1:50051), \
             http://HOST:PORT or https://HOST:PORT"
        ));
    }
    Ok(format!("http://{server}"))
}

/// What went wrong connecting to `url`, in words: the innermost cause of
/// tonic's error chain, classified (refused, no such host, TLS, timeout).
fn describe_connect_error(url: &str, err: &tonic::transport::Error) -> String {
    let mut causes = Vec::new();
    let mut io_kind = None;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            io_kind.get_or_insert(io.kind());
        }
        causes.push(cause.to_string());
        source = cause.source();
    }
    let inner = causes.last().cloned().unwrap_or_default();
    let all = causes.join(": ").to_ascii_lowercase();
    let host = url.split_once("://").map_or(url, |(_, rest)| rest);
    let host_name = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let what = if io_kind == Some(std::io::ErrorKind::ConnectionRefused)
        || all.contains("connection refused")
    {
        format!("connection refused: nothing listens on {host} (is the server running?)")
    } else if all.contains("lookup address")
        || all.contains("name or service not known")
        || all.contains("no address associated")
        || all.contains("name resolution")
        || all.contains("nodename nor servname")
    {
        format!("no such host: {host_name} ({inner})")
    } else if io_kind == Some(std::io::ErrorKind::TimedOut)
        || all.contains("timed out")
        || all.contains("timeout")
        || all.contains("elapsed")
    {
        format!(
            "timed out after {} s connecting to {host}",
            CONNECT_TIMEOUT.as_secs()
        )
    } else if all.contains("certificate")
        || all.contains("tls")
        || all.contains("handshake")
        || all.contains("alert")
    {
        format!("TLS handshake with {host} failed: {inner}")
    } else {
        inner
    };
    format!("cannot connect to {url}: {what}")
}

/// Why [`ServerTarget::connect`] failed.
#[derive(Debug)]
pub enum ConnectError {
    /// The flags are wrong (bad URL, unusable PEM).
    Settings(String),
    /// Nothing answered at the URL, the name does not resolve, the TLS
    /// handshake failed, or it timed out.
    Unreachable(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Settings(why) | ConnectError::Unreachable(why) => f.write_str(why),
        }
    }
}

fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
}

impl ServerTarget {
    /// A client of the server's `AdminService`.
    pub async fn admin_client(
        &self,
    ) -> Result<crate::pb::admin_service_client::AdminServiceClient<Channel>, ConnectError> {
        Ok(crate::pb::admin_service_client::AdminServiceClient::new(
            self.connect().await?,
        ))
    }
}
