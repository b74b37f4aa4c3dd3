//! Assembles authd's gRPC server: the three services, `grpc.health.v1`, and
//! server reflection (v1 for grpcurl and buf curl, v1alpha for grpcio).

use std::future::Future;

use cred_core::Authority;
use cred_core::store::Store;
use cred_proto::authd::v1::admin_service_server::AdminServiceServer;
use cred_proto::authd::v1::client_service_server::ClientServiceServer;
use cred_proto::authd::v1::session_service_server::SessionServiceServer;
use std::time::Duration;

use cred_proto::serve::{ServeError, ServeOptions, serve_and_drain_with, watch_health, with_reflection};
use cred_proto::tls::{require_client_cert, server_builder};
use cred_telemetry::RpcLayer;
use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic::transport::Server;
use tower::Layer;

use crate::admin::AdminApi;
use crate::auth::OperatorAuth;
use crate::clients::ClientApi;
use crate::sessions::SessionApi;

/// How long calls in flight may take to finish after shutdown, by default.
pub const DRAIN: Duration = Duration::from_secs(10);

/// Serves authd on `listener` until `shutdown` completes, then drains for
/// at most [`DRAIN`].
pub async fn run<S: Store>(
    listener: TcpListener,
    authority: Authority<S>,
    operators: OperatorAuth,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    run_with_drain(listener, authority, operators, shutdown, DRAIN).await
}

/// [`run`], with the drain timeout given: after `shutdown`, health goes
/// NOT_SERVING, new connections are refused, and calls in flight get at most
/// `drain` to finish.
pub async fn run_with_drain<S: Store>(
    listener: TcpListener,
    authority: Authority<S>,
    operators: OperatorAuth,
    shutdown: impl Future<Output = ()> + Send,
    drain: Duration,
) -> Result<(), ServeError> {
    run_with(listener, authority, operators, shutdown, ServeOptions::new(drain)).await
}

/// [`run`], with drain, TLS, a health-only listener and limits given. With a client
/// CA in the TLS setting, AdminService calls also need a verified client
/// certificate (UNAUTHENTICATED without one); the other services do not.
pub async fn run_with<S: Store>(
    listener: TcpListener,
    authority: Authority<S>,
    operators: OperatorAuth,
    shutdown: impl Future<Output = ()> + Send,
    opts: ServeOptions,
) -> Result<(), ServeError> {
    let operators = match authority.failure_guard() {
        Some(g) => operators.with_guard(g.clone()),
        None => operators,
    };
    if let Some(cache) = authority.api_key_cache() {
        cred_core::push::spawn(authority.store().clone(), cache.clone());
        cred_telemetry::metrics::observe_cache("api_key", cache.clone());
    }
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<AdminServiceServer<AdminApi<S>>>().await;
    health.set_serving::<ClientServiceServer<ClientApi<S>>>().await;
    health.set_serving::<SessionServiceServer<SessionApi<S>>>().await;
    // NOT_SERVING while the store does not answer.
    let names = vec![
        <AdminServiceServer<AdminApi<S>> as NamedService>::NAME,
        <ClientServiceServer<ClientApi<S>> as NamedService>::NAME,
        <SessionServiceServer<SessionApi<S>> as NamedService>::NAME,
    ];
    let store = authority.store().clone();
    let watch = watch_health(health, names, move || {
        let store = store.clone();
        async move { store.ping().await.is_ok() }
    });

    // Admin mTLS: a verified client certificate, checked before the key.
    let admin_mtls = require_client_cert(opts.tls.as_ref().is_some_and(|t| t.verifies_clients()));
    let health_only = opts.health_listener.map(|l| (Server::builder().add_service(health_service.clone()), l));
    let (limits, max) = (opts.limits, opts.limits.max_request_bytes);
    // A span, a log line and metrics per API call (not health or reflection),
    // outside the size limit so that its refusals are counted too.
    let rpc = RpcLayer::new();
    let router =
        with_reflection(limits.apply(server_builder(opts.tls.as_ref())?).add_service(health_service))?
            .add_service(
                rpc.layer(
                    limits.service(tonic::service::interceptor::InterceptedService::new(
                        AdminServiceServer::new(AdminApi { authority: authority.clone(), operators })
                            .max_decoding_message_size(max),
                        admin_mtls,
                    )),
                ),
            )
            .add_service(rpc.layer(limits.service(
                ClientServiceServer::new(ClientApi { authority: authority.clone() }).max_decoding_message_size(max),
            )))
            .add_service(rpc.layer(
                limits.service(SessionServiceServer::new(SessionApi { authority }).max_decoding_message_size(max)),
            ));
    serve_and_drain_with(router, listener, watch, shutdown, opts.drain, health_only).await
}
