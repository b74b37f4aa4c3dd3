//! Assembles introspect's gRPC server: the verify service,
//! `grpc.health.v1`, and server reflection (v1 and v1alpha).

use std::future::Future;

use cred_core::store::Store;
use cred_proto::introspect::v1::introspect_service_server::IntrospectServiceServer;
use std::time::Duration;

use cred_proto::serve::{ServeError, ServeOptions, serve_and_drain_with, watch_health, with_reflection};
use cred_proto::tls::server_builder;
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
    run_with(listener, verifier, shutdown, ServeOptions::new(drain)).await
}

/// [`run`], with drain, TLS, a health-only listener and limits given.
pub async fn run_with<S: Store>(
    listener: TcpListener,
    verifier: Verifier<S>,
    shutdown: impl Future<Output = ()> + Send,
    opts: ServeOptions,
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
    let health_only = opts.health_listener.map(|l| (Server::builder().add_service(health_service.clone()), l));
    let limits = opts.limits;
    let api =
        IntrospectServiceServer::new(IntrospectApi { verifier }).max_decoding_message_size(limits.max_request_bytes);
    let router = with_reflection(limits.apply(server_builder(opts.tls.as_ref())?).add_service(health_service))?
        // A span, a log line and metrics per verify.
        .add_service(RpcLayer::new().layer(limits.service(api)));
    serve_and_drain_with(router, listener, watch, shutdown, opts.drain, health_only).await
}
