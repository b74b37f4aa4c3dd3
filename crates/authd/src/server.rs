//! Assembles authd's gRPC server: the three services, `grpc.health.v1`, and
//! server reflection (v1 for grpcurl and buf curl, v1alpha for grpcio).

use std::future::Future;

use cred_core::Authority;
use cred_core::store::Store;
use cred_proto::authd::v1::admin_service_server::AdminServiceServer;
use cred_proto::authd::v1::client_service_server::ClientServiceServer;
use cred_proto::authd::v1::session_service_server::SessionServiceServer;
use cred_serve::serve::{Assembly, ServeError, ServeOptions};
use cred_serve::tls::require_client_cert;
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;

use crate::admin::AdminApi;
use crate::auth::OperatorAuth;
use crate::clients::ClientApi;
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
    let operators = match authority.failure_guard() {
        Some(g) => operators.with_guard(g.clone()),
        None => operators,
    };
    if let Some(cache) = authority.api_key_cache() {
        cred_core::push::spawn(authority.store().clone(), cache.clone());
        cred_telemetry::metrics::observe_cache("api_key", cache.clone());
    }
    // Admin mTLS: a verified client certificate, checked before the key.
    let admin_mtls = require_client_cert(opts.tls.as_ref());
    let edge = Assembly::new(opts)?;
    let max = edge.max_request_bytes();
    let admin = AdminServiceServer::new(AdminApi { authority: authority.clone(), operators });
    let clients = ClientServiceServer::new(ClientApi { authority: authority.clone() });
    let store = authority.store().clone();
    let sessions = SessionServiceServer::new(SessionApi { authority });
    edge.api(InterceptedService::new(admin.max_decoding_message_size(max), admin_mtls))
        .api(clients.max_decoding_message_size(max))
        .api(sessions.max_decoding_message_size(max))
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
