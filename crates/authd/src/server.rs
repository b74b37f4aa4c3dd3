//! Assembles authd's gRPC server: the three services, `grpc.health.v1`, and
//! server reflection (v1 for grpcurl and buf curl, v1alpha for grpcio); and,
//! when asked, the HTTP/JSON listener over the same services and layers.

use std::future::Future;

use cred_core::Authority;
use cred_core::store::Store;
use cred_proto::authd::v1::admin_service_server::AdminServiceServer;
use cred_proto::authd::v1::client_service_server::ClientServiceServer;
use cred_proto::authd::v1::session_service_server::SessionServiceServer;
use cred_serve::limits::{Limits, SizeLimited};
use cred_serve::peer::{Resolved, TrustedProxies};
use cred_serve::serve::{Assembly, ServeError, ServeOptions};
use cred_serve::tls::ClientCertCheck;
use cred_telemetry::RpcLayer;
use cred_telemetry::rpc::Rpc;
use tokio::net::TcpListener;
use tonic::service::Routes;
use tower::Layer;

use crate::admin::AdminApi;
use crate::auth::OperatorAuth;
use crate::clients::ClientApi;
use crate::http;
use crate::sessions::SessionApi;

/// Serves authd on `listener` until `shutdown` completes, then drains for
/// at most `opts.drain`; `opts` also sets TLS, the health-only listener and
/// the limits. With a client CA in the TLS setting, AdminService calls also
/// need a verified client certificate (UNAUTHENTICATED without one); the
/// other services do not. Starts the API key cache's invalidation listener.
pub async fn run<S: Store>(
    listener: TcpListener,
    authority: Authority<S>,
    operators: OperatorAuth,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    run_with_http(listener, None, authority, operators, opts, shutdown).await
}

/// [`run`], and HTTP/JSON on `http` when given (plaintext, HTTP/1.1 and
/// h2c; with the operator console if asked): every RPC at the path of its `google.api.http` option, through the
/// same layers as gRPC (size limit, peer address, telemetry, admin mTLS), so
/// budgets, audit and metrics cannot tell the two apart. It stops with the
/// gRPC listener and drains as long.
pub async fn run_with_http<S: Store>(
    listener: TcpListener,
    http: Option<http::Listen>,
    authority: Authority<S>,
    operators: OperatorAuth,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let operators = match authority.failure_guard() {
        Some(g) => operators.with_guard(g.clone()),
        None => operators,
    };
    if let Some(cache) = authority.api_key_cache() {
        cred_core::push::spawn(authority.store().clone(), cache.clone());
        cred_telemetry::metrics::observe_cache("api_key", cache.clone());
    }
    // Admin mTLS: a verified client certificate, checked before the key.
    let admin_mtls = ClientCertCheck::of(opts.tls.as_ref());
    let (limits, peers) = (opts.limits, opts.trusted_proxies.clone());
    let mut edge = Assembly::new(opts)?;
    let max = edge.max_request_bytes();
    let admin = admin_mtls.service(
        AdminServiceServer::new(AdminApi { authority: authority.clone(), operators }).max_decoding_message_size(max),
    );
    let clients = ClientServiceServer::new(ClientApi { authority: authority.clone() }).max_decoding_message_size(max);
    let store = authority.store().clone();
    let sessions = SessionServiceServer::new(SessionApi { authority }).max_decoding_message_size(max);
    if let Some(http::Listen { listener: l, console }) = http {
        let layers = Edge { rpc: cred_telemetry::RpcLayer::new(), peers, limits };
        let grpc = Routes::new(layers.layered(admin.clone()))
            .add_service(layers.layered(clients.clone()))
            .add_service(layers.layered(sessions.clone()));
        // Built from the descriptor set compiled in: every RPC has a
        // route (a unit test checks), so this cannot fail at run time.
        let table = http::Table::authd().expect("the built-in proto has an HTTP route for every RPC");
        let api = http::Api { table: std::sync::Arc::new(table), grpc, limits, console };
        // Served from start, stopped and drained with the gRPC listener.
        edge = edge.http_limited(l, http::router(api));
    }
    edge.api(admin)
        .api(clients)
        .api(sessions)
        // NOT_SERVING while the store does not answer.
        .serve(
            listener,
            move || {
                let store = store.clone();
                async move { store.ping().await.is_ok() }
            },
            shutdown,
        )
        .await
}

/// The layers `Assembly::api` puts around each API service on the gRPC
/// listener, rebuilt for the HTTP/JSON listener's calls (cred-serve builds
/// and serves its router itself, so the layers are not shared by value).
struct Edge {
    /// A span, a log line and `rpc.server.*` metrics per call.
    rpc: RpcLayer,
    /// Who the caller is behind trusted proxies (the per-peer budgets).
    peers: TrustedProxies,
    /// The request size limit.
    limits: Limits,
}

impl Edge {
    /// `svc` behind the layers, outermost first, as `Assembly::api` orders them.
    fn layered<S>(&self, svc: S) -> Rpc<Resolved<SizeLimited<S>>> {
        // Telemetry outermost, so its metrics count the refusals below it too.
        self.rpc.layer(
            // The caller's address, before any check reads it.
            self.peers.service(
                // An oversized message is RESOURCE_EXHAUSTED before it is read.
                self.limits.service(svc),
            ),
        )
    }
}
