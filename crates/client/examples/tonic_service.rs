//! A tonic service behind `credd-client`: `grpc.health.v1.Health/Check`
//! stands in for your API. The handler finds the verified `Identity` in the
//! request extensions and answers with its tenant and subject in the
//! response metadata. The layer wraps this one service (`Server::layer`
//! would cover every service of the server, your probes' health included).
//!
//! ```sh
//! introspect serve --redis-url redis://127.0.0.1:6379 --listen 127.0.0.1:50052 &
//! cargo run -p credd-client --example tonic_service -- http://127.0.0.1:50052 127.0.0.1:50060
//! grpcurl -plaintext -import-path . -proto health.proto -H "authorization: Bearer sk_test_..." \
//!   127.0.0.1:50060 grpc.health.v1.Health/Check
//! ```

use std::pin::Pin;

use credd_client::{Identity, IntrospectLayer};
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// The handler.
pub struct WhoAmI;

#[tonic::async_trait]
impl Health for WhoAmI {
    async fn check(&self, req: Request<HealthCheckRequest>) -> Result<Response<HealthCheckResponse>, Status> {
        // tonic copies the HTTP request's extensions into its Request.
        let id = req.extensions().get::<Identity>().ok_or_else(|| Status::unauthenticated("no identity"))?;
        let subject = id.client_id().or(id.key_id()).unwrap_or_default();
        let mut r = Response::new(HealthCheckResponse { status: ServingStatus::Serving as i32 });
        let md = r.metadata_mut();
        md.insert("tenant-id", id.tenant_id.to_string().parse().map_err(|_| Status::internal("metadata"))?);
        md.insert("subject", subject.to_string().parse().map_err(|_| Status::internal("metadata"))?);
        md.insert("kind", id.credential.kind_name().parse().map_err(|_| Status::internal("metadata"))?);
        Ok(r)
    }

    type WatchStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<HealthCheckResponse, Status>> + Send + 'static>>;

    async fn watch(&self, _: Request<HealthCheckRequest>) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("watch"))
    }
}

/// The service on `listener`, behind the layer.
pub async fn serve(
    listener: tokio::net::TcpListener,
    layer: IntrospectLayer,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    use tower::Layer;
    tonic::transport::Server::builder()
        .add_service(layer.layer(HealthServer::new(WhoAmI)))
        .serve_with_incoming_shutdown(tokio_stream::wrappers::TcpListenerStream::new(listener), shutdown)
        .await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let introspect = args.next().unwrap_or_else(|| "http://127.0.0.1:50052".into());
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:50060".into());
    let layer = IntrospectLayer::lazy(&introspect)?;
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on {}", listener.local_addr()?);
    serve(listener, layer, std::future::pending()).await?;
    Ok(())
}
