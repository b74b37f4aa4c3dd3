//! `envoy.service.auth.v3.Authorization/Check`: Envoy's ext_authz filter
//! (and Istio's `envoyExtAuthzGrpc`, Envoy Gateway's `extAuth`) asks here
//! whether a request may pass. The bearer comes from the request's
//! `authorization` header, the route's requirements from its context
//! extensions (`credd.environment`, `credd.scopes`, `credd.passive`), and
//! the verify is the same call the gRPC API makes. An allowed request goes
//! upstream with the identity headers set and every identity header it did
//! not get from us removed, so a client cannot forge one; a denied one gets
//! the gateway's refusal (`gateway::Refusal`). The service is served here
//! rather than by envoy-types' generated server: it decodes the request into
//! `check_request::CheckRequest`, the few fields a check reads, and encodes
//! an allowed answer directly (`check_response::Answer`).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use cred_core::store::Store;
use cred_core::{Error, InvalidReason};
use cred_serve::peer::TrustedProxies;
use cred_serve::status::floored;
use tonic::body::Body;
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};

use crate::check_request::CheckRequest;
use crate::check_response::{AllowedParts, Answer};
use crate::gateway::{Refusal, bearer, outcome, requirements};
use crate::verifier::Verifier;
use cred_telemetry::metrics::verify_outcome;
use cred_telemetry::record_tenant;

/// The context extension keys a route sets (Envoy `ExtAuthzPerRoute`,
/// Istio/Envoy Gateway per-route settings).
pub const ENVIRONMENT: &str = "credd.environment";
/// Scopes an API key must hold, separated by spaces or commas.
pub const SCOPES: &str = "credd.scopes";
/// `true`: the check does not count as the credential's activity.
pub const PASSIVE: &str = "credd.passive";

/// The ext_authz service over a verifier.
pub struct ExtAuthz<S> {
    /// The verify data path, shared with the gRPC API.
    pub verifier: Verifier<S>,
    /// The allowed answer's constant parts: the identity headers' names,
    /// encoded once.
    pub allowed: Arc<AllowedParts>,
    /// The gRPC peers (Envoys) whose reported downstream address counts as
    /// the caller for the per-peer budget.
    pub proxies: TrustedProxies,
}

impl<S: Store> ExtAuthz<S> {
    /// One check: Envoy's request in, the answer Envoy applies out (a
    /// denial is an answer too: the call itself is OK).
    pub async fn check(&self, req: Request<CheckRequest>) -> Result<Response<Answer>, Status> {
        let caller = cred_serve::peer::client_ip(&req);
        let tcp = req.remote_addr().map(|a| a.ip());
        let r = req.into_inner();
        // The address in the check request counts only from a trusted proxy:
        // anyone else reaching this port could name a new address per guess
        // and spend budgets that are not theirs.
        let peer = match tcp {
            Some(ip) if self.proxies.trusts(ip) => r.source().or(caller),
            _ => caller,
        };
        let token = r.header("authorization").map(bearer).filter(|t| !t.is_empty());
        // A denial reaches the end user: held to the refusal floor, as
        // forward-auth's and authd's (a valid token is never held).
        let verified = floored(async {
            match (token, requirements(r.extension(ENVIRONMENT), r.extension(SCOPES), r.extension(PASSIVE))) {
                (_, Err(e)) => Err(e),
                (None, _) => Err(Error::InvalidCredential(InvalidReason::Malformed)),
                (Some(t), Ok(want)) => self.verifier.verify_from(t, &want, peer).await,
            }
        })
        .await;
        let answer = match verified {
            Ok(v) => {
                record_tenant(v.tenant_id);
                verify_outcome("VALID");
                Answer::Allowed(self.allowed.allowed(&v))
            }
            Err(e) => {
                let o = outcome(&e);
                verify_outcome(o);
                let r = Refusal::of(e, token.is_some());
                // The call itself is OK (a denial is an answer): the call log
                // would not show it, so it gets its own line.
                tracing::info!(endpoint = "ext_authz", status = r.status.as_u16(), outcome = o, "refused");
                Answer::denied(&r)
            }
        };
        Ok(Response::new(answer))
    }
}

/// The gRPC service `envoy.service.auth.v3.Authorization` over an
/// [`ExtAuthz`]: its one method, `Check`, and `UNIMPLEMENTED` for anything
/// else (as a generated server answers).
pub struct AuthorizationService<S> {
    inner: Arc<ExtAuthz<S>>,
    max_decoding: usize,
}

impl<S> AuthorizationService<S> {
    /// The service, refusing requests larger than `max_decoding` bytes.
    pub fn new(inner: ExtAuthz<S>, max_decoding: usize) -> Self {
        AuthorizationService { inner: Arc::new(inner), max_decoding }
    }
}

impl<S> Clone for AuthorizationService<S> {
    fn clone(&self) -> Self {
        AuthorizationService { inner: self.inner.clone(), max_decoding: self.max_decoding }
    }
}

impl<S> NamedService for AuthorizationService<S> {
    const NAME: &'static str = "envoy.service.auth.v3.Authorization";
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'static>>;

/// `Check` as tonic's unary method.
struct CheckMethod<S>(Arc<ExtAuthz<S>>);

impl<S: Store> UnaryService<CheckRequest> for CheckMethod<S> {
    type Response = Answer;
    type Future = BoxFuture<Response<Answer>, Status>;

    fn call(&mut self, req: Request<CheckRequest>) -> Self::Future {
        let inner = self.0.clone();
        Box::pin(async move { inner.check(req).await })
    }
}

impl<S: Store> tower::Service<http::Request<Body>> for AuthorizationService<S> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if req.uri().path() != "/envoy.service.auth.v3.Authorization/Check" {
            return Box::pin(async { Ok(Status::unimplemented("").into_http()) });
        }
        let method = CheckMethod(self.inner.clone());
        let max = self.max_decoding;
        Box::pin(async move {
            let codec = tonic_prost::ProstCodec::<Answer, CheckRequest>::default();
            let mut grpc = Grpc::new(codec).apply_max_message_size_config(Some(max), None);
            Ok(grpc.unary(method, req).await)
        })
    }
}
