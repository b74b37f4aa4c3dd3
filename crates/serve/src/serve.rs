//! What every server of the workspace assembles the same way: server
//! reflection (v1 for grpcurl and buf curl, v1alpha for grpcio) over every
//! proto and `grpc.health.v1`, health (the process, readiness, the store), how accepted
//! sockets are set up, and drain on shutdown. [`ServeOptions`] carries what
//! a deployment may turn on: TLS ([`crate::tls`]), a plaintext health-only
//! listener for probes, and the request limits ([`crate::limits`]);
//! [`Assembly`] puts one service's API beside all that and serves it.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use cred_telemetry::{CallLog, RpcLayer};

use crate::peer::TrustedProxies;
use crate::unserved::UnservedLayer;
use tokio::net::TcpListener;
use tokio_stream::{Stream, StreamExt};
use tonic::body::Body;
use tonic::codegen::Service;
use tonic::server::NamedService;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::limits::Limits;
use crate::tls::ServerTls;

/// The server's router: every request passes the [`UnservedLayer`] first.
pub type Router =
    tonic::transport::server::Router<tower::layer::util::Stack<UnservedLayer, tower::layer::util::Identity>>;

/// Why a server stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("reflection setup: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Adds server reflection, both protocol versions, to `router`, listing
/// `services` (the API this server serves), health and reflection itself:
/// a client is never offered the other binary's services. Every descriptor
/// stays resolvable (the shared types live in one set), and so are the
/// `google.rpc` error details (`ErrorInfo`, `BadRequest`, `RetryInfo`, ...)
/// the status table attaches: grpcurl and buf curl then print an ErrorInfo's
/// reason and metadata as text, not as base64 bytes.
pub fn with_reflection<L: Clone>(
    router: tonic::transport::server::Router<L>,
    services: &[&'static str],
) -> Result<tonic::transport::server::Router<L>, ServeError> {
    let builder = || {
        let b = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(cred_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET);
        let listed = [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ];
        services.iter().copied().chain(listed).fold(b, |b, name| b.with_service_name(name))
    };
    Ok(router.add_service(builder().build_v1()?).add_service(builder().build_v1alpha()?))
}

/// The accepted connections of `listener`, with Nagle's algorithm off (left
/// on, it meets the peer's delayed ACK in a ~40 ms stall per small
/// response), each a [`Conn`].
pub fn incoming(listener: TcpListener) -> impl Stream<Item = std::io::Result<Conn>> + Send + 'static {
    TcpIncoming::from(listener).with_nodelay(Some(true)).map(|c| c.map(Conn))
}

/// An accepted TCP connection that tells h2 it has no vectored writes. h2
/// then copies DATA frames of up to 1 KiB into its write buffer (with
/// vectored writes: up to 255 bytes; a larger frame is chained and flushes
/// the buffer on its own), so answers of 256 bytes to 1 KiB, an ext_authz OK
/// with its identity headers or a CreateClient with its token, go out
/// together with the others that are ready instead of one `writev` each:
/// introspect-bench h measured Check at 0.73 of Verify before this, most of
/// the difference in `writev` (on loopback the sender pays for the
/// receiver's TCP work too).
pub struct Conn(tokio::net::TcpStream);

impl tokio::io::AsyncRead for Conn {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Conn {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        false
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.connect_info()
    }
}

/// Completes on SIGTERM (Kubernetes) or Ctrl-C: the servers' shutdown signal.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// How often the servers ask their store whether it answers.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(1);

/// The health name of the process alone (liveness): SERVING from start
/// until the server has stopped, whatever the store does.
pub const LIVE: &str = "credd.live";
/// The health name that follows the store (monitoring, alerts): SERVING
/// while it answers PING. Each API service's own name follows it too.
pub const STORE: &str = "credd.store";

/// Keeps `grpc.health.v1` in step with the store: every [`HEALTH_INTERVAL`],
/// `probe` decides whether `services` and [`STORE`] are SERVING or
/// NOT_SERVING, until [`HealthWatch::stop`]. The server as a whole ("",
/// readiness) and [`LIVE`] do not follow the store: every replica shares
/// it, so taking replicas out of their Service when it fails helps no one,
/// and an introspect replica still answers what it has cached (README,
/// "Health and probes").
fn watch_health<F, Fut>(health: HealthReporter, services: Vec<&'static str>, probe: F) -> HealthWatch
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let (h, names) = (health.clone(), services.clone());
    let task = tokio::spawn(async move {
        let mut last = None;
        loop {
            let up = probe().await;
            if last != Some(up) {
                let status = if up { ServingStatus::Serving } else { ServingStatus::NotServing };
                for s in names.iter().copied().chain([STORE]) {
                    h.set_service_status(s, status).await;
                }
                last = Some(up);
            }
            tokio::time::sleep(HEALTH_INTERVAL).await;
        }
    });
    HealthWatch { task, health, services }
}

/// The running health watcher of a server.
struct HealthWatch {
    /// The probing loop.
    task: tokio::task::JoinHandle<()>,
    /// Where the statuses go.
    health: HealthReporter,
    /// The services reported (besides [`STORE`]).
    services: Vec<&'static str>,
}

impl HealthWatch {
    /// Stops watching and reports NOT_SERVING for good (shutting down), but
    /// for [`LIVE`], which stays SERVING until the process stops serving.
    async fn stop(self) {
        self.task.abort();
        for s in self.services.iter().copied().chain([STORE, ""]) {
            self.health.set_service_status(s, ServingStatus::NotServing).await;
        }
    }
}

/// How long calls in flight may take to finish after shutdown, by default.
pub const DRAIN: Duration = Duration::from_secs(10);

/// What a deployment may set on a server beyond its main listener.
#[derive(Debug)]
pub struct ServeOptions {
    /// How long calls in flight get to finish after shutdown.
    pub drain: Duration,
    /// How long after shutdown begins new calls are still accepted (health
    /// already NOT_SERVING), before the drain.
    pub drain_delay: Duration,
    /// Server TLS on the main listener; plaintext when `None`.
    pub tls: Option<ServerTls>,
    /// A plaintext listener that serves only `grpc.health.v1`: Kubernetes'
    /// native gRPC probes cannot speak TLS, and health carries no secret.
    pub health_listener: Option<TcpListener>,
    /// Request size, metadata, stream and timeout limits.
    pub limits: Limits,
    /// Proxies whose `x-forwarded-for` names the caller (budgets per peer).
    pub trusted_proxies: TrustedProxies,
    /// A plaintext listener serving Prometheus' `GET /metrics`.
    pub metrics: Option<(TcpListener, cred_telemetry::Scrape)>,
}

impl ServeOptions {
    /// Plaintext, no health listener, default limits, `drain` after shutdown.
    pub fn new(drain: Duration) -> ServeOptions {
        ServeOptions {
            drain,
            drain_delay: Duration::ZERO,
            tls: None,
            health_listener: None,
            limits: Limits::default(),
            trusted_proxies: TrustedProxies::default(),
            metrics: None,
        }
    }
}

impl Default for ServeOptions {
    /// [`ServeOptions::new`] with [`DRAIN`].
    fn default() -> Self {
        ServeOptions::new(DRAIN)
    }
}

/// One service's server being put together: health and reflection on the
/// TLS- and limit-configured builder, then the API services, each behind
/// the size limit and one [`RpcLayer`] (a span, a log line and metrics per
/// call; outside the size limit, so that its refusals are counted too).
pub struct Assembly {
    /// Health, reflection and the services added so far.
    router: Router,
    /// The services whose health follows the store.
    names: Vec<&'static str>,
    /// What the deployment set.
    limits: Limits,
    /// How long calls in flight get after shutdown.
    drain: Duration,
    /// How long new calls are still accepted after shutdown begins.
    drain_delay: Duration,
    /// The plaintext health-only listener and its router, if any.
    health_only: Option<(tonic::transport::server::Router, TcpListener)>,
    /// Plain HTTP listeners, their routers (gateway endpoints, metrics,
    /// authd's HTTP/JSON) and limits, served beside the gRPC one.
    http: Vec<(TcpListener, axum::Router, Option<Limits>)>,
    /// Where health is reported.
    health: HealthReporter,
    /// The telemetry layer every API service goes behind.
    rpc: RpcLayer,
    /// Resolves the caller behind trusted proxies.
    peers: TrustedProxies,
    /// TLS on the main listener, reloaded while serving.
    tls: Option<ServerTls>,
}

impl Assembly {
    /// The server of `opts`, with health and reflection and no API yet.
    pub fn new(opts: ServeOptions) -> Result<Assembly, ServeError> {
        let (health, health_service) = tonic_health::server::health_reporter();
        let mut builder = opts.limits.apply(Server::builder()).layer(UnservedLayer);
        let health_only = opts.health_listener.map(|l| (Server::builder().add_service(health_service.clone()), l));
        let router = builder.add_service(health_service);
        Ok(Assembly {
            router,
            names: Vec::new(),
            limits: opts.limits,
            drain: opts.drain,
            drain_delay: opts.drain_delay,
            health_only,
            http: opts.metrics.into_iter().map(|(l, s)| (l, crate::http::metrics_router(s), None)).collect(),
            health,
            rpc: RpcLayer::new(),
            peers: opts.trusted_proxies,
            tls: opts.tls,
        })
    }

    /// Which calls of the API services log at INFO (every call unless set).
    pub fn call_log(mut self, log: CallLog) -> Assembly {
        self.rpc = self.rpc.with_call_log(log);
        self
    }

    /// Largest request message: a generated server's
    /// `max_decoding_message_size`, as a backstop under the size limit.
    pub fn max_request_bytes(&self) -> usize {
        self.limits.max_request_bytes
    }

    /// Adds an API service, behind the size limit and the telemetry layer;
    /// its health follows the store.
    pub fn api<S, B>(mut self, svc: S) -> Assembly
    where
        S: Service<http::Request<Body>, Response = http::Response<B>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        B: http_body::Body<Data = tonic::codegen::Bytes> + Send + 'static,
        B::Error: Into<tonic::codegen::StdError>,
    {
        self.names.push(S::NAME);
        let svc = self.peers.service(self.limits.service(svc));
        self.router = self.router.add_service(tower::Layer::layer(&self.rpc, svc));
        self
    }

    /// Also serves `router` over plain HTTP on `listener`, from start until
    /// the gRPC listener stops accepting, drained with it.
    pub fn http(mut self, listener: TcpListener, router: axum::Router) -> Assembly {
        self.http.push((listener, router, None));
        self
    }

    /// [`Assembly::http`], with the gRPC listener's header and stream
    /// limits on its connections (an API served over both protocols).
    pub fn http_limited(mut self, listener: TcpListener, router: axum::Router) -> Assembly {
        self.http.push((listener, router, Some(self.limits)));
        self
    }

    /// Serves on `listener` until `shutdown` completes, then drains (see
    /// `serve_and_drain`). The services and the server as a whole are
    /// SERVING while `probe` (the store answers) says so.
    pub async fn serve<F, Fut>(
        self,
        listener: TcpListener,
        probe: F,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = bool> + Send,
    {
        for name in self.names.iter().copied().chain([STORE, LIVE, ""]) {
            self.health.set_service_status(name, ServingStatus::Serving).await;
        }
        // Reflection last: it lists exactly the services added.
        let router = with_reflection(self.router, &self.names)?;
        let watch = watch_health(self.health, self.names, probe);
        let beside = Beside { health_only: self.health_only, http: self.http };
        if let Some(tls) = &self.tls {
            tls.watch();
        }
        let main = Main { router, listener, tls: self.tls };
        serve_and_drain(main, watch, shutdown, (self.drain_delay, self.drain), beside).await
    }
}

/// The main listener and what it serves.
struct Main {
    router: Router,
    listener: TcpListener,
    /// Handshakes on accepted connections, when set.
    tls: Option<ServerTls>,
}

/// What is served beside the main listener.
struct Beside {
    /// The health service alone and its plaintext listener.
    health_only: Option<(tonic::transport::server::Router, TcpListener)>,
    /// The plain HTTP listeners, their routers, and the limits they take
    /// from the gRPC listener's (none: the defaults).
    http: Vec<(TcpListener, axum::Router, Option<Limits>)>,
}

/// Serves `router` on `listener` until `shutdown` completes; then health
/// goes NOT_SERVING and new calls are still served for `delay` (load
/// balancers and meshes take seconds to notice), then new connections are
/// refused and calls in flight get at most `drain` to finish before this
/// returns anyway. The health-only router is served beside it until the
/// main server returns, so probes see NOT_SERVING while calls drain; the
/// HTTP listener stops accepting with the main one and is drained with it.
async fn serve_and_drain(
    main: Main,
    health: HealthWatch,
    shutdown: impl Future<Output = ()> + Send,
    (delay, drain): (Duration, Duration),
    beside: Beside,
) -> Result<(), ServeError> {
    let probes = beside.health_only.map(|(r, l)| tokio::spawn(r.serve_with_incoming(incoming(l))));
    let (stop_http, http_stopping) = tokio::sync::watch::channel(false);
    let http: Vec<_> = beside
        .http
        .into_iter()
        .map(|(l, r, limits)| {
            let mut stopping = http_stopping.clone();
            tokio::spawn(crate::http::serve(l, r, limits, async move {
                let _ = stopping.wait_for(|stop| *stop).await;
            }))
        })
        .collect();
    let tcp = incoming(main.listener);
    let result = match main.tls {
        Some(tls) => serve_main(main.router, tls.incoming(tcp), health, shutdown, delay, drain, stop_http).await,
        None => serve_main(main.router, tcp, health, shutdown, delay, drain, stop_http).await,
    };
    for mut h in http {
        // It stopped accepting with the main listener; its requests in flight
        // (verifies: milliseconds) get at most one more drain period.
        if tokio::time::timeout(drain, &mut h).await.is_err() {
            h.abort();
        }
    }
    if let Some(p) = probes {
        p.abort();
    }
    result
}

async fn serve_main<IO>(
    router: Router,
    incoming: impl Stream<Item = std::io::Result<IO>> + Send + 'static,
    health: HealthWatch,
    shutdown: impl Future<Output = ()> + Send,
    delay: Duration,
    drain: Duration,
    stop_http: tokio::sync::watch::Sender<bool>,
) -> Result<(), ServeError>
where
    IO: tonic::transport::server::Connected + tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        health.stop().await;
        // Still accepting while the endpoint is taken out of rotation.
        tokio::time::sleep(delay).await;
        let _ = stop_http.send(true);
        let _ = stopping.send(());
    };
    let serve = router.serve_with_incoming_shutdown(incoming, signal);
    tokio::pin!(serve);
    let deadline = async {
        match stopped.await {
            Ok(()) => tokio::time::sleep(drain).await,
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        r = &mut serve => r?,
        () = deadline => {}
    }
    Ok(())
}
