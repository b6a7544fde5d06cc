//! TLS for SIP (RFC 3261 §26.2, RFC 5922) and secure WebSockets (RFC 7118): rustls with the
//! ring provider that DTLS already uses.
//!
//! A client verifies the server's certificate against the system's trusted roots (and any
//! extra CA files the account names) and checks that it was issued to the SIP domain or host
//! it dialled: nothing is accepted unverified. A server loads its chain and key from PEM files.
//! An untrusted certificate is told apart from other failures ([`is_untrusted`]), so that
//! the user reads "the server's certificate is not trusted", not "cannot reach the server".

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate or key file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file held no certificate, or no private key, in PEM form.
    #[error("{path} holds no {what} in PEM form")]
    Missing {
        /// The file.
        path: PathBuf,
        /// "certificate" or "private key".
        what: &'static str,
    },
    /// The server name is not a valid DNS name or IP address.
    #[error("{0:?} is not a name a certificate can be checked against")]
    BadName(String),
    /// rustls refused the configuration (a key that does not match the certificate, ...).
    #[error("TLS configuration refused: {0}")]
    Config(String),
    /// No root certificate to trust at all.
    #[error("no trusted root certificates: neither the system's nor any configured CA file")]
    NoRoots,
}

impl TlsError {
    /// A stable code for the UI and logs.
    pub fn code(&self) -> &'static str {
        match self {
            TlsError::Read { .. } => "tls.unreadable",
            TlsError::Missing { .. } => "tls.missing",
            TlsError::BadName(_) => "tls.badName",
            TlsError::Config(_) => "tls.config",
            TlsError::NoRoots => "tls.noRoots",
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })?;
    let certs = certificates_in_pem(&bytes);
    if certs.is_empty() {
        return Err(TlsError::Missing {
            path: path.to_owned(),
            what: "certificate",
        });
    }
    Ok(certs)
}

/// The certificates of a PEM text (anything else in it is skipped).
pub fn certificates_in_pem(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect()
}

/// How many certificates of a PEM text could be trusted as authorities (their structure
/// parses as a root); what a settings form checks before it keeps a file the user chose.
pub fn trustable_authorities(pem: &[u8]) -> usize {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(certificates_in_pem(pem)).0
}

/// How we connect to a server over TLS: whom we trust and which name its certificate must
/// carry. Cheap to clone.
#[derive(Clone)]
pub struct TlsClient {
    pub(crate) config: Arc<ClientConfig>,
    pub(crate) name: ServerName<'static>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl TlsClient {
    /// Trust the system's roots and the CA certificates in `extra_roots` (PEM files), and
    /// expect certificates issued to `server_name` (the SIP domain, RFC 5922 §7.2, or the
    /// server's host name or IP address).
    pub fn new(server_name: &str, extra_roots: &[PathBuf]) -> Result<TlsClient, TlsError> {
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        let (added, ignored) = roots.add_parsable_certificates(native.certs);
        tracing::debug!(
            added,
            ignored,
            errors = native.errors.len(),
            "system root certificates"
        );
        for path in extra_roots {
            for cert in read_certs(path)? {
                roots
                    .add(cert)
                    .map_err(|e| TlsError::Config(format!("{}: {e}", path.display())))?;
            }
        }
        if roots.is_empty() {
            return Err(TlsError::NoRoots);
        }
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let host = server_name.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| TlsError::BadName(server_name.to_owned()))?;
        Ok(TlsClient {
            config: Arc::new(config),
            name,
        })
    }

    /// Open TLS over `stream` and verify the server (an untrusted certificate fails with an
    /// error [`is_untrusted`] recognises).
    pub async fn connect<S>(&self, stream: S) -> io::Result<tokio_rustls::client::TlsStream<S>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(self.name.clone(), stream)
            .await
    }

    /// The name certificates are checked against.
    pub fn server_name(&self) -> String {
        self.name.to_str().into_owned()
    }
}

/// A server's TLS configuration from a PEM certificate chain (leaf first) and its PEM private
/// key (PKCS#8, PKCS#1 or SEC1).
pub fn server_config(cert_chain: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = read_certs(cert_chain)?;
    let key_bytes = std::fs::read(key).map_err(|source| TlsError::Read {
        path: key.to_owned(),
        source,
    })?;
    let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|_| TlsError::Missing {
        path: key.to_owned(),
        what: "private key",
    })?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(Arc::new(config))
}

/// Whether an I/O error is a TLS peer's certificate we do not trust (unknown issuer, wrong
/// name, expired, ...), as opposed to a network failure.
pub fn is_untrusted(e: &io::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = e.get_ref().map(|i| i as _);
    while let Some(err) = source {
        if let Some(rustls::Error::InvalidCertificate(_)) = err.downcast_ref::<rustls::Error>() {
            return true;
        }
        if let Some(inner) = err.downcast_ref::<io::Error>() {
            if is_untrusted(inner) {
                return true;
            }
        }
        source = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_files_are_clear_errors() {
        let dir = std::env::temp_dir().join(format!("hookflash-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate").unwrap();
        let e = server_config(&dir.join("absent.pem"), &empty).unwrap_err();
        assert_eq!(e.code(), "tls.unreadable", "an absent file says so: {e}");
        let e = server_config(&empty, &empty).unwrap_err();
        assert_eq!(e.code(), "tls.missing", "a file without PEM says so: {e}");
        assert!(e.to_string().contains("certificate"), "{e}");
        let e = TlsClient::new("example.org", &[empty]).unwrap_err();
        assert_eq!(
            e.code(),
            "tls.missing",
            "an extra CA file must hold a CA: {e}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_client_checks_names_it_can_check() {
        let c = TlsClient::new("hookflash.example", &[]);
        // A machine without system roots refuses to trust anything, which is also right.
        if let Ok(c) = c {
            assert_eq!(c.server_name(), "hookflash.example");
        }
        assert!(
            matches!(
                TlsClient::new("not a name", &[]),
                Err(TlsError::BadName(_) | TlsError::NoRoots)
            ),
            "a name with spaces cannot be checked against a certificate"
        );
    }
}
