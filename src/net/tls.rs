//! TLS configuration with rustls (ring): trust stores, certificates from
//! PEM files, and the client and server configs connections use.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, ring};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

/// Largest amount of plaintext a TLS connection buffers before the kernel
/// has taken the records: keeps backpressure working through TLS.
pub const PLAINTEXT_BUFFER: usize = 64 * 1024;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

fn load_certs(file: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(Path::new(file))
        .map_err(|e| format!("cannot read certificates from '{file}': {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot read certificates from '{file}': {e}"))?;
    if certs.is_empty() {
        return Err(format!("no certificate in '{file}'"));
    }
    Ok(certs)
}

fn load_key(file: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(Path::new(file))
        .map_err(|e| format!("cannot read a private key from '{file}': {e}"))
}

fn load_roots(file: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(file)? {
        roots
            .add(cert)
            .map_err(|e| format!("bad CA certificate in '{file}': {e}"))?;
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err("no trusted certificates found on this system".into());
    }
    Ok(roots)
}

/// A certificate chain with its private key, checked to belong together.
#[derive(Debug)]
struct Identity {
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Identity {
    fn load(cert_file: &str, key_file: &str) -> Result<Identity, String> {
        let certs = load_certs(cert_file)?;
        let key = load_key(key_file)?;
        let signing = provider()
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|e| format!("unusable private key in '{key_file}': {e}"))?;
        rustls::sign::CertifiedKey::new(certs.clone(), signing)
            .keys_match()
            .map_err(|_| {
                format!("the key in '{key_file}' does not match the certificate in '{cert_file}'")
            })?;
        Ok(Identity { certs, key })
    }
}

/// The TLS settings of a context: what clients trust and show.  Configs
/// are built on first use, so a context that never connects over TLS
/// never reads the system's trust store.
#[derive(Debug)]
pub struct ClientTls {
    ca_file: Option<String>,
    /// The client certificate for mTLS.
    identity: Option<Identity>,
    verified: OnceLock<Result<Arc<ClientConfig>, String>>,
    unverified: OnceLock<Result<Arc<ClientConfig>, String>>,
}

impl ClientTls {
    /// Check the files now, so that a bad one croaks at `new`.
    pub fn new(
        cert: Option<&str>,
        key: Option<&str>,
        ca: Option<&str>,
    ) -> Result<ClientTls, String> {
        let identity = match (cert, key) {
            (Some(cert), Some(key)) => Some(Identity::load(cert, key)?),
            (None, None) => None,
            (Some(_), None) => return Err("ssl_cert needs ssl_key".into()),
            (None, Some(_)) => return Err("ssl_key needs ssl_cert".into()),
        };
        if let Some(ca) = ca {
            load_roots(ca)?;
        }
        Ok(ClientTls {
            ca_file: ca.map(str::to_string),
            identity,
            verified: OnceLock::new(),
            unverified: OnceLock::new(),
        })
    }

    /// The config for `ssl_verify` on or off.
    pub fn config(&self, verify: bool) -> Result<Arc<ClientConfig>, String> {
        let slot = if verify {
            &self.verified
        } else {
            &self.unverified
        };
        slot.get_or_init(|| self.build(verify)).clone()
    }

    fn build(&self, verify: bool) -> Result<Arc<ClientConfig>, String> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = if verify {
            let roots = match &self.ca_file {
                Some(file) => load_roots(file)?,
                None => system_roots()?,
            };
            builder.with_root_certificates(roots)
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyServer(provider())))
        };
        let config = match &self.identity {
            Some(id) => builder
                .with_client_auth_cert(id.certs.clone(), id.key.clone_key())
                .map_err(|e| e.to_string())?,
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }
}

/// A client TLS session for `host` (a name or an IP literal).
pub fn client_session(config: Arc<ClientConfig>, host: &str) -> Result<rustls::Connection, String> {
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| format!("bad TLS server name '{host}': {e}"))?;
    let mut session = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    session.set_buffer_limit(Some(PLAINTEXT_BUFFER));
    Ok(session.into())
}

/// A listener's TLS config; with `ca`, clients must show a certificate it
/// signed.
pub fn server_config(cert: &str, key: &str, ca: Option<&str>) -> Result<Arc<ServerConfig>, String> {
    let identity = Identity::load(cert, key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match ca {
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(load_roots(ca)?), provider())
                    .build()
                    .map_err(|e| e.to_string())?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(identity.certs, identity.key)
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(config))
}

/// A server TLS session for an accepted socket.
pub fn server_session(config: &Arc<ServerConfig>) -> Result<rustls::Connection, String> {
    let mut session =
        rustls::ServerConnection::new(Arc::clone(config)).map_err(|e| e.to_string())?;
    session.set_buffer_limit(Some(PLAINTEXT_BUFFER));
    Ok(session.into())
}

/// `ssl_verify => 0`: any certificate, any name.  Signatures are still
/// checked, so the session is at least with the holder of the key.
#[derive(Debug)]
struct AcceptAnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServer {
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
