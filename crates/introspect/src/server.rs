//! Assembles introspect's gRPC server: the verify service,
//! `grpc.health.v1`, and server reflection (v1 and v1alpha).

use std::future::Future;

use cred_core::store::Store;
use cred_proto::introspect::v1::introspect_service_server::IntrospectServiceServer;
use cred_serve::serve::{Assembly, ServeError, ServeOptions};
use cred_serve::tls::require_client_cert;
use cred_telemetry::CallLog;
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;

use crate::service::IntrospectApi;
use crate::verifier::Verifier;

/// Serves introspect on `listener` until `shutdown` completes, then drains
/// for at most `opts.drain`; `opts` also sets TLS, the health-only listener
/// and the limits; with a client CA in the TLS setting, every Verify needs
/// a verified client certificate. Starts the invalidation listener.
pub async fn run<S: Store>(
    listener: TcpListener,
    verifier: Verifier<S>,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    cred_core::push::spawn(verifier.store().clone(), verifier.cache().clone());
    cred_telemetry::metrics::observe_cache("verify", verifier.cache().clone());
    // A line per refusal, error or slow call; a fast OK at DEBUG (the
    // per-request hot path: a line per verify is opt-in).
    // Caller mTLS, when a client CA is set: a verified certificate first.
    let mtls = require_client_cert(opts.tls.as_ref());
    let edge = Assembly::new(opts)?.call_log(CallLog::Notable);
    let store = verifier.store().clone();
    let api =
        IntrospectServiceServer::new(IntrospectApi { verifier }).max_decoding_message_size(edge.max_request_bytes());
    let api = InterceptedService::new(api, mtls);
    // NOT_SERVING while the store does not answer (cached answers are still
    // served; new credentials could not be).
    let probe = move || {
        let store = store.clone();
        async move { store.ping().await.is_ok() }
    };
    edge.api(api).serve(listener, probe, shutdown).await
}
