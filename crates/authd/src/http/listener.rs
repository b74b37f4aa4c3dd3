//! The HTTP/JSON listener's router (served by `cred_serve::http`: HTTP/1.1
//! and h2c on one socket); each request is matched to its RPC, transcoded, and handed as a gRPC request to the
//! same service stack the gRPC listener runs (size limit, peer address,
//! telemetry, admin mTLS check, the services themselves), and the gRPC
//! answer is turned back into JSON or an AIP-193 error.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use bytes::Bytes;
use cred_serve::limits::Limits;
use cred_serve::status::HttpError;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use tonic::service::Routes;
use tonic::transport::server::TcpConnectInfo;
use tonic::{Code, Status};
use tower::ServiceExt;

use super::console;
use super::routes::{Found, Table};
use super::transcode;

/// Request headers passed on to the gRPC stack: the credential, the
/// caller's address behind proxies, and the trace context.
const FORWARDED: [&str; 5] = ["authorization", "x-forwarded-for", "traceparent", "tracestate", "user-agent"];

/// What answers HTTP requests.
#[derive(Clone)]
pub struct Api {
    /// The routes, from the proto's `google.api.http` options.
    pub table: Arc<Table>,
    /// The gRPC services, each behind the same layers as on the gRPC listener.
    pub grpc: Routes,
    /// The limits of the gRPC listener, applied here too.
    pub limits: Limits,
    /// Whether the operator console is served under `/console/`.
    pub console: bool,
}

/// `api` as the router `Assembly::http_limited` serves (cred_serve's accept
/// loop, header read timeout and drain with the gRPC server; the gRPC
/// listener's header and stream limits): every request goes to [`answer`].
pub fn router(api: Api) -> axum::Router {
    axum::Router::new().fallback_service(tower::service_fn(move |req: Request<Body>| {
        let api = api.clone();
        async move { Ok::<_, Infallible>(answer(&api, req).await) }
    }))
}

/// The JSON answer to one request.
async fn answer(api: &Api, req: Request<Body>) -> Response<Full<Bytes>> {
    if api.console
        && matches!(*req.method(), Method::GET | Method::HEAD)
        && req.uri().path().starts_with(console::PREFIX)
    {
        let path = req.uri().path();
        return console::asset(path)
            .unwrap_or_else(|| refused(Status::not_found(format!("no console page {path}")).into()));
    }
    match call(api, req).await {
        Ok(json) => json_response(StatusCode::OK, json),
        Err(refusal) => refused(refusal),
    }
}

/// A refusal: a gRPC status, with the HTTP status it gets when the one
/// table has no word for it (405, 413), and the methods a 405 allows.
struct Refusal {
    /// What went wrong, as the gRPC stack says it (the JSON body's source).
    status: Status,
    /// The HTTP status when the one table's (from the code) does not fit.
    http: Option<StatusCode>,
    /// For a 405: the methods the path takes (the `Allow` header).
    allow: Vec<Method>,
}

impl From<Status> for Refusal {
    fn from(status: Status) -> Refusal {
        Refusal { status, http: None, allow: Vec::new() }
    }
}

async fn call(api: &Api, req: Request<Body>) -> Result<Vec<u8>, Refusal> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    let (route, params) = match api.table.find(&parts.method, path) {
        Found::Route(r, p) => (r, p),
        Found::NoPath => {
            // Counted and logged: how a gateway or client misconfiguration shows.
            cred_serve::unserved::note("http", &parts.uri);
            return Err(Status::not_found(format!("no route {} {path} (README, \"HTTP/JSON\")", parts.method)).into());
        }
        Found::WrongMethod(allow) => {
            let status = Status::unimplemented(format!("{path} does not take {}", parts.method));
            return Err(Refusal { status, http: Some(StatusCode::METHOD_NOT_ALLOWED), allow });
        }
    };
    let max = api.limits.max_request_bytes;
    let body = match Limited::new(body, max).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            let status = Status::resource_exhausted(format!(
                "request body exceeds the limit of {max} bytes (max request bytes)"
            ));
            return Err(Refusal { status, http: Some(StatusCode::PAYLOAD_TOO_LARGE), allow: Vec::new() });
        }
        Err(e) => return Err(Status::invalid_argument(format!("request body unreadable: {e}")).into()),
    };
    let msg = transcode::request(route, params, parts.uri.query(), &body)?;
    let mut grpc = Request::new(Full::new(transcode::frame(&msg)?));
    *grpc.method_mut() = Method::POST;
    *grpc.uri_mut() = route.grpc_path.parse().map_err(|_| Status::internal("bad gRPC path"))?;
    let headers = grpc.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(header::TE, HeaderValue::from_static("trailers"));
    for name in FORWARDED {
        for v in parts.headers.get_all(name) {
            headers.append(HeaderName::from_static(name), v.clone());
        }
    }
    // What tonic's server sets on an accepted connection (cred_serve's HTTP
    // listener sets it too): the peer address for the per-peer budgets and the logs.
    if let Some(peer) = parts.extensions.get::<TcpConnectInfo>() {
        grpc.extensions_mut().insert(peer.clone());
    }
    let timeout = api.limits.request_timeout;
    let resp = tokio::time::timeout(timeout, api.grpc.clone().oneshot(grpc))
        .await
        .map_err(|_| Status::deadline_exceeded(format!("no answer within {timeout:?} (request timeout)")))?
        .unwrap_or_else(|never| match never {});
    // Trailers-only (an error before any message): the status is in the headers.
    if let Some(s) = Status::from_header_map(resp.headers()) {
        done(s)?;
        return Err(Status::internal("no response message from the service").into());
    }
    let collected = resp.into_body().collect().await.map_err(|e| Status::internal(format!("response body: {e}")))?;
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let bytes = collected.to_bytes();
    let s = Status::from_header_map(&trailers).unwrap_or_else(|| Status::internal("no grpc-status from the service"));
    done(s)?;
    Ok(transcode::response(&route.rpc.output(), transcode::unframe(&bytes)?)?)
}

/// `Ok` for an OK status, else the status as the error.
fn done(s: Status) -> Result<(), Status> {
    if s.code() == Code::Ok { Ok(()) } else { Err(s) }
}

fn refused(r: Refusal) -> Response<Full<Bytes>> {
    let mut e = HttpError::from_status(&r.status);
    if let Some(h) = r.http {
        e.status = h;
        e.body["error"]["code"] = h.as_u16().into();
    }
    let mut resp = json_response(e.status, e.body.to_string().into_bytes());
    let headers = resp.headers_mut();
    if let Some(s) = e.retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    if !r.allow.is_empty() {
        let allow = r.allow.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
        if let Ok(v) = HeaderValue::from_str(&allow) {
            headers.insert(header::ALLOW, v);
        }
    }
    resp
}

/// A JSON response; never cached (it may hold a secret shown once).
fn json_response(status: StatusCode, json: Vec<u8>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(json)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}
