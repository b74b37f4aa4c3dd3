//! `IntrospectLayer`, the tower layer in front of a tonic or axum service:
//! bearer → Verify (with a deadline) → the inner service with the
//! `Identity` in the request extensions, or a refusal it never sees.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use cred_core::model::{Environment, Scopes};
use cred_core::{Error, InvalidReason};
use cred_proto::introspect::v1::introspect_service_client::IntrospectServiceClient;
use cred_serve::status::Edge;
use http::{Request, Response};
use http_body_util::{Either, Full};
use tonic::transport::{Channel, Endpoint};

use crate::bearer::{Presented, presented};
use crate::identity::Identity;
use crate::refusal::{Challenge, Protocol, refuse};
use crate::verify::Verify;

/// How long a request waits for introspect by default: twice introspect's
/// own store deadline (250 ms), so introspect's UNAVAILABLE normally comes
/// first, and short enough that a black-holed introspect costs a request
/// half a second, not a hung worker.
pub const DEFAULT_DEADLINE: Duration = Duration::from_millis(500);

/// `google.rpc.ErrorInfo.domain` of the refusals, unless set with
/// [`IntrospectLayer::error_domain`].
pub const DEFAULT_DOMAIN: &str = "credd";

/// The body of a response through the layer: the inner service's, or a
/// refusal's.
pub type ResponseBody<B> = Either<B, Full<Bytes>>;

/// A tower layer that verifies every request's bearer with introspect.
/// Cheap to clone; every clone shares one `Channel`.
#[derive(Debug, Clone)]
pub struct IntrospectLayer {
    config: Arc<Config>,
}

#[derive(Debug, Clone)]
struct Config {
    /// The Verify call and what it requires.
    verify: Verify,
    /// How refusals read (this edge never tells the precise cause).
    edge: Edge,
    /// A request with no `authorization` header goes on, without an
    /// `Identity`.
    optional: bool,
}

impl IntrospectLayer {
    /// A layer verifying over `channel` (connected or lazy, plaintext or
    /// TLS: the caller's choice), with [`DEFAULT_DEADLINE`], no
    /// requirements, active use (a session's idle expiry slides), and every
    /// request required to present a credential.
    pub fn new(channel: Channel) -> IntrospectLayer {
        let verify = Verify {
            client: IntrospectServiceClient::new(channel),
            deadline: DEFAULT_DEADLINE,
            environment: None,
            scopes: Vec::new(),
            passive: false,
        };
        let edge = Edge { domain: DEFAULT_DOMAIN, tells_cause: false, attempts: "verifies" };
        IntrospectLayer { config: Arc::new(Config { verify, edge, optional: false }) }
    }

    /// A layer over a lazily connected plaintext channel to `uri`
    /// (`http://introspect:50052`); a bad URI is an error now, an
    /// unreachable introspect is a 503 per request later.
    pub fn lazy(uri: &str) -> Result<IntrospectLayer, tonic::transport::Error> {
        let channel = Endpoint::from_shared(uri.to_string())?.connect_timeout(DEFAULT_DEADLINE).connect_lazy();
        Ok(IntrospectLayer::new(channel))
    }

    fn with(mut self, f: impl FnOnce(&mut Config)) -> IntrospectLayer {
        f(Arc::make_mut(&mut self.config));
        self
    }

    /// Longest wait for introspect per request (connecting included); past
    /// it the request is refused UNAVAILABLE (503).
    pub fn deadline(self, deadline: Duration) -> IntrospectLayer {
        self.with(|c| c.verify.deadline = deadline)
    }

    /// Refuse (401) credentials of the other environment.
    pub fn environment(self, env: Environment) -> IntrospectLayer {
        self.with(|c| c.verify.environment = Some(env))
    }

    /// Require an API key holding every one of these scopes: anything else
    /// is 403 / PERMISSION_DENIED. An unknown scope name is an error now
    /// (`INVALID_ARGUMENT` on `scopes`), not a refusal of every request.
    pub fn scopes<'a>(self, names: impl IntoIterator<Item = &'a str>) -> Result<IntrospectLayer, Error> {
        let names: Vec<String> = names.into_iter().map(str::to_string).collect();
        Scopes::parse(names.iter().map(String::as_str))?;
        Ok(self.with(|c| c.verify.scopes = names))
    }

    /// Check without counting as activity: a session's idle expiry does not
    /// slide (for a service that sees traffic the user did not make).
    pub fn passive(self, passive: bool) -> IntrospectLayer {
        self.with(|c| c.verify.passive = passive)
    }

    /// Let a request with no `authorization` header through, with no
    /// `Identity` (the handler takes `Option<Identity>`). A header that is
    /// there is still verified: a bad credential is refused, never treated
    /// as none.
    pub fn optional(self, optional: bool) -> IntrospectLayer {
        self.with(|c| c.optional = optional)
    }

    /// `google.rpc.ErrorInfo.domain` of the refusals (your service's name).
    pub fn error_domain(self, domain: &'static str) -> IntrospectLayer {
        self.with(|c| c.edge.domain = domain)
    }
}

impl<S> tower::Layer<S> for IntrospectLayer {
    type Service = IntrospectService<S>;

    fn layer(&self, inner: S) -> IntrospectService<S> {
        IntrospectService { inner, config: self.config.clone() }
    }
}

/// The service [`IntrospectLayer`] makes.
#[derive(Debug, Clone)]
pub struct IntrospectService<S> {
    /// The app's service, called only with a verified identity (or, when
    /// optional, with none presented).
    inner: S,
    config: Arc<Config>,
}

impl<S, B, R> tower::Service<Request<B>> for IntrospectService<S>
where
    S: tower::Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = Response<ResponseBody<R>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // The clone that was polled ready is the one called (tower's rule).
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let config = self.config.clone();
        Box::pin(async move {
            // Only this layer's verify names the caller: nothing set before it
            // (or a header) is taken for an identity.
            req.extensions_mut().remove::<Identity>();
            let protocol = Protocol::of(req.headers());
            let token = match presented(req.headers()) {
                Presented::Nothing if config.optional => None,
                Presented::Nothing => return Ok(refused(&config, None, protocol, false)),
                Presented::Unusable => return Ok(refused(&config, None, protocol, true)),
                Presented::Token(t) => Some(t.to_string()),
            };
            if let Some(token) = token {
                match config.verify.verify(token).await {
                    Ok(identity) => {
                        req.extensions_mut().insert(identity);
                    }
                    Err(e) => return Ok(refused(&config, Some(e), protocol, true)),
                }
            }
            Ok(inner.call(req).await?.map(Either::Left))
        })
    }
}

/// So one tonic service can be put behind the layer alone
/// (`Server::builder().add_service(layer.layer(MyServer::new(..)))`), its
/// neighbours (health, reflection) left open.
impl<S: tonic::server::NamedService> tonic::server::NamedService for IntrospectService<S> {
    const NAME: &'static str = S::NAME;
}

/// A refusal; `None`: no usable credential was presented.
fn refused<R>(config: &Config, e: Option<Error>, protocol: Protocol, presented: bool) -> Response<ResponseBody<R>> {
    let e = e.unwrap_or(Error::InvalidCredential(InvalidReason::Malformed));
    let challenge = Challenge { presented, scopes: &config.verify.scopes };
    refuse(&config.edge, e, protocol, challenge).map(Either::Right)
}
