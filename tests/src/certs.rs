//! Certificates for tests of SIP over TLS and WSS: a certificate authority of the test's own
//! and a server certificate it signed, written as PEM files. Clients trust the authority
//! (`AgentConfig::tls_roots`), as an organisation's softphones would trust its private CA;
//! a second authority makes a certificate nobody trusts.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

/// A test authority and a server certificate it issued, as files.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The authority's certificate: what clients trust.
    pub ca: PathBuf,
    /// The server's certificate (leaf only).
    pub cert: PathBuf,
    /// The server's private key (PKCS#8).
    pub key: PathBuf,
}

impl TestPki {
    /// A new authority in `dir` (created) named `name`, and a server certificate from it for
    /// `names` (DNS names or IP addresses), files prefixed with `name`.
    pub fn issue(dir: &Path, name: &str, names: &[&str]) -> TestPki {
        std::fs::create_dir_all(dir).expect("the certificates' directory");
        let ca_key = KeyPair::generate().expect("a CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let ca = ca_params.self_signed(&ca_key).expect("the CA certificate");
        let key = KeyPair::generate().expect("a server key");
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .expect("server certificate parameters");
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or(name));
        let leaf = params
            .signed_by(&key, &ca, &ca_key)
            .expect("the server certificate");
        let pki = TestPki {
            ca: dir.join(format!("{name}-ca.pem")),
            cert: dir.join(format!("{name}-cert.pem")),
            key: dir.join(format!("{name}-key.pem")),
        };
        std::fs::write(&pki.ca, ca.pem()).expect("write the CA certificate");
        std::fs::write(&pki.cert, leaf.pem()).expect("write the server certificate");
        std::fs::write(&pki.key, key.serialize_pem()).expect("write the server key");
        pki
    }
}
