//! Assembles introspect's gRPC server: the verify service,
//! `grpc.health.v1`, and server reflection (v1 and v1alpha).

use std::future::Future;

use cred_core::store::Store;
use cred_proto::introspect::v1::introspect_service_server::IntrospectServiceServer;
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use crate::service::IntrospectApi;
use crate::verifier::Verifier;

/// Why the server stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("reflection setup: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves introspect on `listener` until `shutdown` completes. Starts the
/// invalidation listener.
pub async fn run<S: Store>(
    listener: TcpListener,
    verifier: Verifier<S>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    cred_core::push::spawn(verifier.store().clone(), verifier.cache().clone());
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<IntrospectServiceServer<IntrospectApi<S>>>().await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(cred_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    Server::builder()
        .add_service(health_service)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .add_service(IntrospectServiceServer::new(IntrospectApi { verifier }))
        // Nagle's algorithm on accepted sockets meets the peer's delayed ACK
        // in a ~40 ms stall per small response: turn it off.
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), shutdown)
        .await?;
    Ok(())
}
