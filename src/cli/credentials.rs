//! The credential flags shared by every command that talks to a server
//! (`keys`, `export`, `backup`, `claim`), turned into a
//! [`crate::client::ServerTarget`].

use std::path::PathBuf;

/// The credential flags of every command that talks to a server (`keys`,
/// `export`, `claim`); `--server` itself differs per command.
#[derive(clap::Args, Debug)]
pub struct CredentialArgs {
    /// API key token, sent as `authorization: Bearer`. Prefer the environment variable.
    #[arg(
        long,
        env = "PHOTOCLAIM_TOKEN",
        hide_env_values = true,
        global = true,
        help_heading = "Connection"
    )]
    pub token: Option<String>,
    /// PEM CA certificate to verify an https --server with (default: the
    /// system's trust store).
    #[arg(
        long,
        env = "PHOTOCLAIM_CA_CERT",
        global = true,
        help_heading = "Connection"
    )]
    pub ca_cert: Option<PathBuf>,
    /// PEM client certificate, for a --server that requires one (needs --client-key).
    #[arg(
        long,
        env = "PHOTOCLAIM_CLIENT_CERT",
        global = true,
        help_heading = "Connection"
    )]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(
        long,
        env = "PHOTOCLAIM_CLIENT_KEY",
        global = true,
        help_heading = "Connection"
    )]
    pub client_key: Option<PathBuf>,
}

impl CredentialArgs {
    /// The server at `url` with these credentials (certificate files read
    /// now; errors name the flag).
    pub fn target(&self, url: String) -> Result<crate::client::ServerTarget, String> {
        crate::client::ServerTarget::from_flags(
            url,
            self.token.clone(),
            self.ca_cert.as_deref(),
            self.client_cert.as_deref(),
            self.client_key.as_deref(),
        )
    }
}
