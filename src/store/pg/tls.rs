//! TLS to the database as libpq users expect it, from the URL's `sslmode`
//! and `sslrootcert` (which the driver's own parser does not take: they are
//! read here and removed before it sees the URL).
//!
//! | `sslmode` | TLS | the server's certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (default) | if the server offers it | not checked (as libpq without a root certificate) |
//! | `require` | always | not checked, unless `sslrootcert` is given: then verified, host name included |
//! | `verify-ca`, `verify-full` | always | verified against `sslrootcert` (a PEM file) or the system's trust store, host name included |
//!
//! rustls always checks the host name when it verifies, so `verify-ca` is
//! as strict as `verify-full` here.

use std::sync::Arc;

use postgres::config::SslMode;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

/// What the URL asked of TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The driver's mode: disable, prefer or require.
    pub mode: SslMode,
    /// Whether the server's certificate is verified.
    pub verify: bool,
    /// The PEM file of `sslrootcert`.
    pub root_cert: Option<String>,
}

/// Splits `sslmode` and `sslrootcert` off `url` (URL or key=value form):
/// the rest for the driver, and the settings.
pub fn split(url: &str) -> Result<(String, TlsSettings), String> {
    let mut mode = None;
    let mut root_cert = None;
    let mut take = |key: &str, value: &str| -> Result<bool, String> {
        match key {
            "sslmode" => mode = Some(value.to_owned()),
            "sslrootcert" => root_cert = Some(value.to_owned()),
            _ => return Ok(false),
        }
        Ok(true)
    };
    let rest = if let Some((base, query)) = url.split_once('?') {
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if !take(key, value)? {
                kept.push(pair);
            }
        }
        match kept.is_empty() {
            true => base.to_owned(),
            false => format!("{base}?{}", kept.join("&")),
        }
    } else if url.contains("://") {
        url.to_owned()
    } else {
        let mut kept = Vec::new();
        for word in url.split_whitespace() {
            let (key, value) = word.split_once('=').unwrap_or((word, ""));
            if !take(key, value)? {
                kept.push(word);
            }
        }
        kept.join(" ")
    };
    let settings = match mode.as_deref().unwrap_or("prefer") {
        "disable" => TlsSettings {
            mode: SslMode::Disable,
            verify: false,
            root_cert: None,
        },
        "allow" | "prefer" => TlsSettings {
            mode: SslMode::Prefer,
            verify: false,
            root_cert,
        },
        "require" => TlsSettings {
            mode: SslMode::Require,
            verify: root_cert.is_some(),
            root_cert,
        },
        "verify-ca" | "verify-full" => TlsSettings {
            mode: SslMode::Require,
            verify: true,
            root_cert,
        },
        other => {
            return Err(format!(
            "sslmode={other} is not one of disable, allow, prefer, require, verify-ca, verify-full"
        ))
        }
    };
    Ok((rest, settings))
}

/// The driver's TLS connector for `settings` (`None`: no TLS).
pub fn connector(settings: &TlsSettings) -> Result<Option<MakeRustlsConnect>, String> {
    if settings.mode == SslMode::Disable {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let config = if settings.verify {
        let mut roots = rustls::RootCertStore::empty();
        match &settings.root_cert {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("sslrootcert={path}: {e}"))?;
                for cert in certs {
                    let cert = cert.map_err(|e| format!("sslrootcert={path}: {e}"))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("sslrootcert={path}: {e}"))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
            }
        }
        if roots.is_empty() {
            return Err(
                "no root certificate to verify the database's certificate with (sslrootcert)"
                    .into(),
            );
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
            .with_no_client_auth()
    };
    Ok(Some(MakeRustlsConnect::new(config)))
}

/// Encryption without authentication (`sslmode=prefer` or `require`
/// without `sslrootcert`, as libpq): the handshake's signatures are still
/// checked, the certificate is not.
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_are_taken_off_the_url_and_the_rest_kept() {
        let (rest, tls) = split(
            "postgres://u@h:5432/db?sslmode=verify-full&sslrootcert=/ca.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(rest, "postgres://u@h:5432/db?application_name=x");
        assert!(tls.verify && tls.mode == SslMode::Require);
        assert_eq!(tls.root_cert.as_deref(), Some("/ca.pem"));
        let (rest, tls) = split("postgres://u@h/db").unwrap();
        assert_eq!(rest, "postgres://u@h/db");
        assert!(!tls.verify && tls.mode == SslMode::Prefer);
        let (rest, tls) = split("host=h user=u sslmode=require").unwrap();
        assert_eq!(rest, "host=h user=u");
        assert!(!tls.verify && tls.mode == SslMode::Require);
        let (_, tls) = split("postgres://u@h/db?sslmode=require&sslrootcert=/ca.pem").unwrap();
        assert!(
            tls.verify,
            "require with a root certificate verifies, as libpq"
        );
        assert!(split("postgres://u@h/db?sslmode=sometimes").is_err());
        assert_eq!(
            split("postgres://u@h/db?sslmode=disable").unwrap().1.mode,
            SslMode::Disable
        );
    }
}
