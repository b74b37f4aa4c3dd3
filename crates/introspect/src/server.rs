//! Assembles introspect's server: the verify service and Envoy's
//! `Authorization` on the gRPC listener, with `grpc.health.v1` and server
//! reflection (v1 and v1alpha); and, when configured, the plain HTTP
//! listener of the gateway endpoints.

use std::future::Future;

use cred_core::store::Store;
use cred_proto::introspect::v1::introspect_service_server::IntrospectServiceServer;
use cred_serve::serve::{Assembly, ServeError, ServeOptions};
use cred_serve::tls::ClientCertCheck;
use cred_telemetry::CallLog;
use tokio::net::TcpListener;

use crate::check_response::AllowedParts;
use crate::ext_authz::{AuthorizationService, ExtAuthz};
use crate::gateway::{DEFAULT_PREFIX, IdentityHeaders};
use crate::http::Gateway;
use crate::oauth::Callers;
use crate::service::IntrospectApi;
use crate::verifier::Verifier;

/// How gateways are answered.
pub struct GatewayOptions {
    /// The identity headers' names (ext_authz and forward-auth).
    pub headers: IdentityHeaders,
    /// The plain HTTP listener of forward-auth and RFC 7662; none: off.
    pub http: Option<TcpListener>,
    /// Who may call RFC 7662 introspection.
    pub callers: Callers,
}

impl Default for GatewayOptions {
    /// `x-credd-` headers, no HTTP listener.
    fn default() -> Self {
        let headers = IdentityHeaders::new(DEFAULT_PREFIX).unwrap_or_else(|e| unreachable!("{e}"));
        GatewayOptions { headers, http: None, callers: Callers::Nobody }
    }
}

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
    run_with(listener, verifier, opts, GatewayOptions::default(), shutdown).await
}

/// [`run`], with the gateways' options: the identity header names, and the
/// HTTP listener (forward-auth, RFC 7662) when one is given.
pub async fn run_with<S: Store>(
    listener: TcpListener,
    verifier: Verifier<S>,
    opts: ServeOptions,
    gateway: GatewayOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    cred_core::push::spawn(verifier.store().clone(), verifier.cache().clone());
    cred_telemetry::metrics::observe_cache("verify", verifier.cache().clone());
    // A line per refusal, error or slow call; a fast OK at DEBUG (the
    // per-request hot path: a line per verify is opt-in).
    // Caller mTLS, when a client CA is set: a verified certificate first.
    let mtls = ClientCertCheck::of(opts.tls.as_ref());
    let proxies = opts.trusted_proxies.clone();
    let mut edge = Assembly::new(opts)?.call_log(CallLog::Notable);
    let store = verifier.store().clone();
    let max = edge.max_request_bytes();
    let envoy = ExtAuthz {
        verifier: verifier.clone(),
        allowed: std::sync::Arc::new(AllowedParts::new(&gateway.headers)),
        proxies: proxies.clone(),
    };
    let envoy = mtls.service(AuthorizationService::new(envoy, max));
    if let Some(l) = gateway.http {
        let g = Gateway { verifier: verifier.clone(), headers: gateway.headers, callers: gateway.callers, proxies };
        edge = edge.http(l, crate::http::router(g));
    }
    let api = IntrospectServiceServer::new(IntrospectApi { verifier }).max_decoding_message_size(max);
    let api = mtls.service(api);
    // NOT_SERVING while the store does not answer (cached answers are still
    // served; new credentials could not be).
    let probe = move || {
        let store = store.clone();
        async move { store.ping().await.is_ok() }
    };
    edge.api(api).api(envoy).serve(listener, probe, shutdown).await
}
