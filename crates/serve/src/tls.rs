//! Optional server TLS (rustls, ring) for both services, loaded from PEM
//! files at start, and the client-certificate check behind authd's admin
//! mTLS. Every error names the flag whose file is wrong, so a bad setting
//! fails at start, not at the first handshake.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Status};

/// The certificate flag, the same in both services.
pub const CERT_FLAG: &str = "--tls-cert-file";
/// The private key flag, the same in both services.
pub const KEY_FLAG: &str = "--tls-key-file";
/// authd's flag for the CA that admin callers' certificates must chain to.
pub const CLIENT_CA_FLAG: &str = "--admin-client-ca-file";

/// Longest TLS handshake: a peer that stalls it does not hold a connection
/// slot for longer.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A bad TLS setting, naming the flag.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file is unreadable or does not hold what the flag needs.
    #[error("{flag} {path}: {reason}")]
    File { flag: &'static str, path: String, reason: String },
    /// One flag of a pair is set without the other.
    #[error("{0}")]
    Incomplete(String),
    /// The files parse but rustls refuses them together (e.g. the key is not
    /// the certificate's).
    #[error("{CERT_FLAG} / {KEY_FLAG}: {0}")]
    Pair(String),
}

/// Server TLS built from the files, ready for [`ServerTls::apply`].
#[derive(Clone, Debug)]
pub struct ServerTls {
    /// tonic's config: identity, and the client CA when set.
    config: ServerTlsConfig,
    /// The flag of the client CA, when client certificates are requested
    /// and verified (mTLS).
    client_ca_flag: Option<&'static str>,
}

/// A client CA file and the flag that named it (for errors).
pub type ClientCa<'a> = (&'static str, &'a Path);

impl ServerTls {
    /// The TLS setting of a service from its flags: `None` when TLS is off.
    /// `client_ca` needs TLS; the cert and key go together.
    pub fn from_flags(
        cert: Option<&Path>,
        key: Option<&Path>,
        client_ca: Option<ClientCa<'_>>,
    ) -> Result<Option<ServerTls>, TlsError> {
        match (cert, key) {
            (Some(c), Some(k)) => ServerTls::load(c, k, client_ca).map(Some),
            (None, None) if let Some((flag, _)) = client_ca => {
                Err(TlsError::Incomplete(format!("{flag} needs server TLS: set {CERT_FLAG} and {KEY_FLAG} too")))
            }
            (None, None) => Ok(None),
            (Some(_), None) => Err(TlsError::Incomplete(format!("{CERT_FLAG} is set without {KEY_FLAG}"))),
            (None, Some(_)) => Err(TlsError::Incomplete(format!("{KEY_FLAG} is set without {CERT_FLAG}"))),
        }
    }

    /// Loads a PEM certificate chain and private key and, if given, the PEM
    /// CA that client certificates must chain to. Client certificates are
    /// then requested but optional at the TLS level: callers without one
    /// still connect, and each service decides which RPCs need one; a
    /// certificate that does not verify fails the handshake.
    pub fn load(cert: &Path, key: &Path, client_ca: Option<ClientCa<'_>>) -> Result<ServerTls, TlsError> {
        let cert_pem = read(CERT_FLAG, cert)?;
        let certs = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| file_error(CERT_FLAG, cert, format!("not PEM: {e}")))?;
        if certs.is_empty() {
            return Err(file_error(CERT_FLAG, cert, "no CERTIFICATE in the file"));
        }
        let key_pem = read(KEY_FLAG, key)?;
        PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| file_error(KEY_FLAG, key, format!("no PEM private key: {e}")))?;
        let mut config =
            ServerTlsConfig::new().identity(Identity::from_pem(&cert_pem, &key_pem)).timeout(HANDSHAKE_TIMEOUT);
        if let Some((flag, ca)) = client_ca {
            let ca_pem = read(flag, ca)?;
            let roots = CertificateDer::pem_slice_iter(&ca_pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| file_error(flag, ca, format!("not PEM: {e}")))?;
            if roots.is_empty() {
                return Err(file_error(flag, ca, "no CERTIFICATE in the file"));
            }
            config = config.client_ca_root(Certificate::from_pem(&ca_pem)).client_auth_optional(true);
        }
        // Build rustls' config once now, so a key that is not the
        // certificate's (or a CA rustls refuses) fails at start.
        Server::builder().tls_config(config.clone()).map_err(|e| TlsError::Pair(chain(&e)))?;
        Ok(ServerTls { config, client_ca_flag: client_ca.map(|(flag, _)| flag) })
    }

    /// Whether client certificates are verified (a client CA is set).
    pub fn verifies_clients(&self) -> bool {
        self.client_ca_flag.is_some()
    }

    /// Turns TLS on for `server`.
    pub fn apply(&self, server: Server) -> Result<Server, tonic::transport::Error> {
        server.tls_config(self.config.clone())
    }
}

/// `builder` with TLS on when `tls` is set.
pub fn server_builder(tls: Option<&ServerTls>) -> Result<Server, tonic::transport::Error> {
    match tls {
        Some(t) => t.apply(Server::builder()),
        None => Ok(Server::builder()),
    }
}

/// Whether the caller presented a client certificate. With a client CA set,
/// rustls has already verified any certificate it let through, so presence
/// is proof.
pub fn has_client_cert<T>(req: &Request<T>) -> bool {
    req.peer_certs().is_some_and(|c| !c.is_empty())
}

/// An interceptor for services that need a verified client certificate when
/// `tls` verifies clients: without one the call is refused UNAUTHENTICATED
/// (the caller has not proven who it is), before any other check.
pub fn require_client_cert(
    tls: Option<&ServerTls>,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone + use<> {
    let flag = tls.and_then(|t| t.client_ca_flag);
    move |req: Request<()>| match flag {
        Some(flag) if !has_client_cert(&req) => {
            Err(Status::unauthenticated(format!("this RPC needs a TLS client certificate issued by the CA of {flag}")))
        }
        _ => Ok(req),
    }
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| file_error(flag, path, e.to_string()))
}

fn file_error(flag: &'static str, path: &Path, reason: impl Into<String>) -> TlsError {
    TlsError::File { flag, path: PathBuf::from(path).display().to_string(), reason: reason.into() }
}

/// An error and its sources on one line (tonic's own message is only
/// "transport error").
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}
