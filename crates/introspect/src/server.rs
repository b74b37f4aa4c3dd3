//! Assembles introspect's gRPC server: the verify service,
//! `grpc.health.v1`, and server reflection (v1 and v1alpha).

use std::future::Future;

use cred_core::store::Store;
use cred_proto::introspect::v1::introspect_service_server::IntrospectServiceServer;
use std::time::Duration;

use cred_proto::serve::{ServeError, serve_and_drain, watch_health, with_reflection};
use cred_telemetry::RpcLayer;
use tokio::net::TcpListener;
use tonic::server::NamedService;
use tonic::transport::Server;
use tower::Layer;

use crate::service::IntrospectApi;
use crate::verifier::Verifier;

/// How long calls in flight may take to finish after shutdown, by default.
pub const DRAIN: Duration = Duration::from_secs(10);

/// Serves introspect on `listener` until `shutdown` completes, then drains
/// for at most [`DRAIN`]. Starts the invalidation listener.
pub async fn run<S: Store>(
    listener: TcpListener,
    verifier: Verifier<S>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    run_with_drain(listener, verifier, shutdown, DRAIN).await
}

/// [`run`], with the drain timeout given.
pub async fn run_with_drain<S: Store>(
    listener: TcpListener,
    verifier: Verifier<S>,
    shutdown: impl Future<Output = ()> + Send,
    drain: Duration,
) -> Result<(), ServeError> {
    cred_core::push::spawn(verifier.store().clone(), verifier.cache().clone());
    cred_telemetry::metrics::observe_cache("verify", verifier.cache().clone());
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<IntrospectServiceServer<IntrospectApi<S>>>().await;
    // NOT_SERVING while the store does not answer (cached answers are still
    // served; new credentials could not be).
    let store = verifier.store().clone();
    let watch =
        watch_health(health, vec![<IntrospectServiceServer<IntrospectApi<S>> as NamedService>::NAME], move || {
            let store = store.clone();
            async move { store.ping().await.is_ok() }
        });
    let router = with_reflection(Server::builder().add_service(health_service))?
        // A span, a log line and metrics per verify.
        .add_service(RpcLayer::new().layer(IntrospectServiceServer::new(IntrospectApi { verifier })));
    serve_and_drain(router, listener, watch, shutdown, drain).await
}
