//! Assembles authd's gRPC server: the three services, `grpc.health.v1`, and
//! server reflection (v1 for grpcurl and buf curl, v1alpha for grpcio).

use std::future::Future;

use cred_core::Authority;
use cred_core::store::Store;
use cred_proto::authd::v1::admin_service_server::AdminServiceServer;
use cred_proto::authd::v1::client_service_server::ClientServiceServer;
use cred_proto::authd::v1::session_service_server::SessionServiceServer;
use std::time::Duration;

use cred_proto::serve::{ServeError, serve_and_drain, watch_health, with_reflection};
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

    // A span, a log line and metrics per API call (not health or reflection).
    let rpc = RpcLayer::new();
    let router = with_reflection(Server::builder().add_service(health_service))?
        .add_service(rpc.layer(AdminServiceServer::new(AdminApi { authority: authority.clone(), operators })))
        .add_service(rpc.layer(ClientServiceServer::new(ClientApi { authority: authority.clone() })))
        .add_service(rpc.layer(SessionServiceServer::new(SessionApi { authority })));
    serve_and_drain(router, listener, watch, shutdown, drain).await
}
