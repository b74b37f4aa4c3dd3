//! Optional server TLS (rustls, ring) for both services, loaded from PEM
//! files at start and reloaded when they change (a watch on their
//! directories, and SIGHUP), and the client-certificate check behind authd's
//! admin mTLS. Every error names the flag whose file is wrong, so a bad
//! setting fails at start, not at the first handshake; after start a bad
//! file is logged at ERROR and the previous certificate stays in use.
//!
//! The handshake is done here rather than by tonic's `ServerTlsConfig`,
//! which cannot change its certificate: each accepted connection takes the
//! rustls config current at that moment, so a reload applies to new
//! connections and leaves open ones as they are.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::server::TlsStream;
use tokio_stream::{Stream, StreamExt};
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::interceptor::InterceptedService;
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

/// Server TLS built from the files; [`ServerTls::incoming`] does the
/// handshakes, [`ServerTls::watch`] keeps it current. Clones share the
/// current config.
#[derive(Clone, Debug)]
pub struct ServerTls {
    /// Where the PEM files are.
    files: Arc<Files>,
    /// The config new connections get, replaced whole by a good reload.
    current: Arc<RwLock<Arc<ServerConfig>>>,
    /// The file contents `current` was built from (a reload that reads the
    /// same bytes changes nothing and logs nothing).
    loaded: Arc<Mutex<Pem>>,
}

/// A client CA file and the flag that named it (for errors).
pub type ClientCa<'a> = (&'static str, &'a Path);

#[derive(Debug)]
struct Files {
    cert: PathBuf,
    key: PathBuf,
    /// The client CA and its flag, when client certificates are requested
    /// and verified (mTLS).
    client_ca: Option<(&'static str, PathBuf)>,
}

/// The bytes of the files, as read.
#[derive(Debug, PartialEq, Eq)]
struct Pem {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

/// What a reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// The files changed and parse: new connections get them.
    Applied,
    /// The files hold what is already in use.
    Unchanged,
}

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
        let files =
            Files { cert: cert.into(), key: key.into(), client_ca: client_ca.map(|(flag, p)| (flag, p.to_path_buf())) };
        let pem = files.read()?;
        let config = files.config(&pem)?;
        Ok(ServerTls {
            files: Arc::new(files),
            current: Arc::new(RwLock::new(Arc::new(config))),
            loaded: Arc::new(Mutex::new(pem)),
        })
    }

    /// Re-reads the files; when they changed and are good, new connections
    /// get them. On an error nothing changes: the previous certificate stays.
    pub fn reload(&self) -> Result<Reload, TlsError> {
        let pem = self.files.read()?;
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        if *loaded == pem {
            return Ok(Reload::Unchanged);
        }
        let config = self.files.config(&pem)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
        *loaded = pem;
        Ok(Reload::Applied)
    }

    /// Reloads on SIGHUP and whenever something changes in the files'
    /// directories (Kubernetes updates a mounted Secret by swapping a
    /// symlink there, and sends no signal), for as long as the process
    /// runs. A failed reload is logged at ERROR, naming the flag.
    pub fn watch(&self) {
        let files = &self.files;
        let paths = [Some(&files.cert), Some(&files.key), files.client_ca.as_ref().map(|(_, p)| p)];
        let tls = self.clone();
        crate::watch::on_change("TLS", paths.into_iter().flatten().cloned().collect(), move || match tls.reload() {
            Ok(Reload::Applied) => {
                tracing::info!(cert = %tls.files.cert.display(), "TLS certificate reloaded; new connections get it")
            }
            Ok(Reload::Unchanged) => {}
            Err(e) => tracing::error!(error = %e, "TLS files not reloaded; new connections keep the previous ones"),
        });
    }

    /// Whether client certificates are verified (a client CA is set).
    pub fn verifies_clients(&self) -> bool {
        self.files.client_ca.is_some()
    }

    /// The TLS connections of `tcp`: each handshake runs on its own task
    /// (bounded by [`HANDSHAKE_TIMEOUT`]) with the config current when the
    /// connection was accepted; a failed one is dropped, logged at DEBUG
    /// (scanners and plaintext clients are not news). Accept errors pass
    /// through. Dropping the stream stops accepting.
    pub fn incoming<S, IO>(&self, tcp: S) -> impl Stream<Item = std::io::Result<TlsStream<IO>>> + Send + 'static
    where
        S: Stream<Item = std::io::Result<IO>> + Send + 'static,
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let current = self.current.clone();
        tokio::spawn(async move {
            let mut tcp = std::pin::pin!(tcp);
            loop {
                let io = tokio::select! {
                    () = tx.closed() => return,
                    next = tcp.next() => match next {
                        Some(Ok(io)) => io,
                        Some(Err(e)) => {
                            if tx.send(Err(e)).await.is_err() {
                                return;
                            }
                            continue;
                        }
                        None => return,
                    },
                };
                let config = current.read().unwrap_or_else(PoisonError::into_inner).clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let accept = tokio_rustls::TlsAcceptor::from(config).accept(io);
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept).await {
                        Ok(Ok(s)) => {
                            let _ = tx.send(Ok(s)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                });
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(rx)
    }
}

impl Files {
    fn read(&self) -> Result<Pem, TlsError> {
        Ok(Pem {
            cert: read(CERT_FLAG, &self.cert)?,
            key: read(KEY_FLAG, &self.key)?,
            client_ca: self.client_ca.as_ref().map(|(flag, p)| read(flag, p)).transpose()?,
        })
    }

    /// rustls' config of `pem`: HTTP/2 only (ALPN `h2`, as tonic's), the
    /// client CA's verifier when set.
    fn config(&self, pem: &Pem) -> Result<ServerConfig, TlsError> {
        let certs = CertificateDer::pem_slice_iter(&pem.cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| file_error(CERT_FLAG, &self.cert, format!("not PEM: {e}")))?;
        if certs.is_empty() {
            return Err(file_error(CERT_FLAG, &self.cert, "no CERTIFICATE in the file"));
        }
        let key = PrivateKeyDer::from_pem_slice(&pem.key)
            .map_err(|e| file_error(KEY_FLAG, &self.key, format!("no PEM private key: {e}")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Pair(e.to_string()))?;
        let builder = match (&self.client_ca, &pem.client_ca) {
            (Some((flag, path)), Some(ca_pem)) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(ca_pem) {
                    let c = c.map_err(|e| file_error(flag, path, format!("not PEM: {e}")))?;
                    roots.add(c).map_err(|e| file_error(flag, path, e.to_string()))?;
                }
                if roots.is_empty() {
                    return Err(file_error(flag, path, "no CERTIFICATE in the file"));
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| file_error(flag, path, e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            _ => builder.with_no_client_auth(),
        };
        // rustls checks here that the key is the certificate's.
        let mut config = builder.with_single_cert(certs, key).map_err(|e| TlsError::Pair(e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}

/// Whether the caller presented a client certificate. With a client CA set,
/// rustls has already verified any certificate it let through, so presence
/// is proof.
pub fn has_client_cert<T>(req: &Request<T>) -> bool {
    req.peer_certs().is_some_and(|c| !c.is_empty())
}

/// The check of services that need a verified client certificate when the
/// TLS settings verify clients: without one the call is refused
/// UNAUTHENTICATED (the caller has not proven who it is), before any other
/// check. Applied by [`ClientCertCheck::service`].
#[derive(Debug, Clone, Copy)]
pub struct RequireClientCert {
    /// The flag that set the client CA (named in the refusal).
    flag: &'static str,
}

impl tonic::service::Interceptor for RequireClientCert {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        if has_client_cert(&req) {
            return Ok(req);
        }
        let flag = self.flag;
        Err(Status::unauthenticated(format!("this RPC needs a TLS client certificate issued by the CA of {flag}")))
    }
}

/// Whether services need a verified client certificate ([`RequireClientCert`]),
/// as a wrapper of services.
#[derive(Debug, Clone, Copy)]
pub struct ClientCertCheck(Option<RequireClientCert>);

impl ClientCertCheck {
    /// The check `tls` asks for (none without a client CA).
    pub fn of(tls: Option<&ServerTls>) -> ClientCertCheck {
        ClientCertCheck(tls.and_then(|t| t.files.client_ca.as_ref().map(|(flag, _)| RequireClientCert { flag })))
    }

    /// `inner` behind the check when clients are verified; otherwise `inner`
    /// itself, called directly: without a client CA the check passes every
    /// call, and tonic's `InterceptedService` would still take every request
    /// apart and put it back together (about 250 instructions a call,
    /// figure g).
    pub fn service<S>(self, inner: S) -> ClientCert<S> {
        match self.0 {
            Some(check) => ClientCert::Required(InterceptedService::new(inner, check)),
            None => ClientCert::Open(inner),
        }
    }
}

/// A service that needs a verified client certificate, or not.
#[derive(Debug, Clone)]
pub enum ClientCert<S> {
    /// No client CA: every call goes through.
    Open(S),
    /// Behind the check.
    Required(InterceptedService<S, RequireClientCert>),
}

impl<S: NamedService> NamedService for ClientCert<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tower::Service<http::Request<B>> for ClientCert<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<Body>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = ClientCertFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self {
            ClientCert::Open(s) => s.poll_ready(cx),
            ClientCert::Required(s) => s.poll_ready(cx),
        }
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        match self {
            ClientCert::Open(s) => ClientCertFuture::Open { inner: s.call(req) },
            ClientCert::Required(s) => ClientCertFuture::Required { inner: s.call(req) },
        }
    }
}

pin_project_lite::pin_project! {
    /// [`ClientCert`]'s answer.
    #[project = ClientCertProj]
    pub enum ClientCertFuture<F> {
        /// The service's own future.
        Open { #[pin] inner: F },
        /// Through the interceptor (its answer's body boxed).
        Required { #[pin] inner: tonic::service::interceptor::ResponseFuture<F> },
    }
}

impl<F, E> Future for ClientCertFuture<F>
where
    F: Future<Output = Result<http::Response<Body>, E>>,
{
    type Output = Result<http::Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ClientCertProj::Open { inner } => inner.poll(cx),
            ClientCertProj::Required { inner } => inner.poll(cx).map_ok(|r| r.map(Body::new)),
        }
    }
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| file_error(flag, path, e.to_string()))
}

fn file_error(flag: &'static str, path: &Path, reason: impl Into<String>) -> TlsError {
    TlsError::File { flag, path: PathBuf::from(path).display().to_string(), reason: reason.into() }
}
