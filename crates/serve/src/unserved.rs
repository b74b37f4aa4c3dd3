//! Calls to what a server does not serve, counted (`cred.unserved.requests`)
//! and logged: how a gateway pointed at the wrong port, service or path
//! shows. For gRPC, a layer over the whole server notes every
//! `UNIMPLEMENTED` answer (tonic's unknown-service fallback and a generated
//! server's unknown method alike; no handler of ours answers it); the HTTP
//! listeners call [`note`] from their fallback.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response, Uri};
use tower::{Layer, Service};

/// The longest part of an unserved path that is logged (it is the caller's
/// text).
const LOGGED_PATH: usize = 200;

/// Counts and logs one request for `uri` that nothing here serves.
pub fn note(protocol: &'static str, uri: &Uri) {
    cred_telemetry::metrics::unserved(protocol);
    let path = uri.path();
    let path = path.get(..LOGGED_PATH.min(path.len())).unwrap_or("(not UTF-8 at the cut)");
    tracing::warn!(protocol, path, "request for a method or path this server does not serve");
}

/// The gRPC server's layer (`Server::layer`).
#[derive(Debug, Clone, Copy, Default)]
pub struct UnservedLayer;

impl<S> Layer<S> for UnservedLayer {
    type Service = Unserved<S>;
    fn layer(&self, inner: S) -> Unserved<S> {
        Unserved { inner }
    }
}

/// Notes the requests whose answer is `UNIMPLEMENTED`.
#[derive(Debug, Clone)]
pub struct Unserved<S> {
    inner: S,
}

impl<S, B, R> Service<Request<B>> for Unserved<S>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = Noted<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // A `Uri` clone shares its bytes (reference counts, no copy).
        let uri = req.uri().clone();
        Noted { inner: self.inner.call(req), uri }
    }
}

pin_project_lite::pin_project! {
    /// The inner future, and the path to name if it answers UNIMPLEMENTED.
    pub struct Noted<F> {
        #[pin]
        inner: F,
        uri: Uri,
    }
}

impl<F, R, E> Future for Noted<F>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let out = std::task::ready!(this.inner.poll(cx));
        if let Ok(resp) = &out
            && resp.headers().get(&tonic::Status::GRPC_STATUS).is_some_and(|v| v.as_bytes() == b"12")
        {
            note("grpc", this.uri);
        }
        Poll::Ready(out)
    }
}
