//! introspect's plain HTTP listener (`--http-listen`, off by default), for
//! gateways that cannot speak gRPC:
//! - `/forward-auth` (any method): nginx `auth_request`, Traefik
//!   `ForwardAuth`, nginx ingress `auth-url`. The bearer of the request's
//!   `Authorization`; requirements from the query (`environment`, `scopes`,
//!   `passive`, as `gateway::requirements` reads them); 200 with the
//!   identity headers, else the gateway refusal (401, 403, 429, 503).
//! - `POST /oauth2/introspect`: RFC 7662 (`oauth`).
//!
//! Anything else is 404, counted and logged as unserved.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Form, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use cred_core::store::Store;
use cred_core::{Error, InvalidReason};
use cred_serve::peer::TrustedProxies;
use cred_serve::status::floored;

use crate::gateway::{IdentityHeaders, Refusal, bearer, outcome, requirements};
use crate::oauth::{Callers, introspect};
use crate::verifier::Verifier;
use cred_telemetry::metrics::verify_outcome;
use cred_telemetry::record_tenant;

/// Largest form body of an introspection request (a token is ~100 bytes).
const MAX_FORM_BYTES: usize = 8 * 1024;

/// What the HTTP endpoints share.
pub struct Gateway<S> {
    /// The verify data path, shared with the gRPC API.
    pub verifier: Verifier<S>,
    /// The identity headers' names.
    pub headers: IdentityHeaders,
    /// Who may call `/oauth2/introspect`.
    pub callers: Callers,
    /// Proxies whose `x-forwarded-for` names the caller (per-peer budget).
    pub proxies: TrustedProxies,
}

/// The router of the HTTP listener.
pub fn router<S: Store>(gateway: Gateway<S>) -> Router {
    Router::new()
        .route("/forward-auth", any(forward_auth::<S>))
        .route("/oauth2/introspect", post(rfc7662::<S>))
        .fallback(unserved)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM_BYTES))
        .with_state(Arc::new(gateway))
}

/// The refusal as a response, with its log line (what the gRPC listener's
/// call log says of a refused call, so a gateway's refusals show too).
fn refused(endpoint: &'static str, outcome: &'static str, r: Refusal) -> Response {
    tracing::info!(endpoint, status = r.status.as_u16(), outcome, "refused");
    let mut resp = (r.status, r.body.to_string()).into_response();
    for (name, value) in r.headers() {
        resp.headers_mut().insert(name, value);
    }
    resp
}

async fn forward_auth<S: Store>(
    State(g): State<Arc<Gateway<S>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let peer = g.proxies.resolve(peer.ip(), &headers);
    let token = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(bearer);
    let token = token.filter(|t| !t.is_empty());
    let q = |k: &str| q.get(k).map(String::as_str);
    // Its refusals reach end users: held to the floor, as authd's.
    let verified = floored(async {
        match (token, requirements(q("environment"), q("scopes"), q("passive"))) {
            (_, Err(e)) => Err(e),
            (None, _) => Err(Error::InvalidCredential(InvalidReason::Malformed)),
            (Some(t), Ok(want)) => g.verifier.verify_from(t, &want, Some(peer)).await,
        }
    })
    .await;
    match verified {
        Ok(v) => {
            record_tenant(v.tenant_id);
            verify_outcome("VALID");
            let mut resp = StatusCode::OK.into_response();
            for (name, value) in g.headers.of(&v) {
                resp.headers_mut().insert(name.clone(), value);
            }
            resp
        }
        Err(e) => {
            let o = outcome(&e);
            verify_outcome(o);
            refused("forward-auth", o, Refusal::of(e, token.is_some()))
        }
    }
}

async fn rfc7662<S: Store>(
    State(g): State<Arc<Gateway<S>>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let auth = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if !g.callers.admits(auth) {
        // RFC 6749 §5.2, as RFC 7662 §2.1 points to: invalid_client.
        let body = axum::Json(serde_json::json!({"error": "invalid_client"}));
        let mut resp = (StatusCode::UNAUTHORIZED, body).into_response();
        resp.headers_mut()
            .insert(http::header::WWW_AUTHENTICATE, http::HeaderValue::from_static(r#"Basic realm="introspect""#));
        return resp;
    }
    let Ok(Form(form)) = form else {
        let body = serde_json::json!({"error": "invalid_request", "error_description": "expected an application/x-www-form-urlencoded body with token"});
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    };
    let peer = g.proxies.resolve(peer.ip(), &headers);
    let (status, extra, body) = introspect(&g.verifier, form.get("token").map(String::as_str), Some(peer)).await;
    if status != StatusCode::OK {
        tracing::info!(endpoint = "oauth2/introspect", status = status.as_u16(), "refused");
    }
    let mut resp = (status, axum::Json(body)).into_response();
    for (name, value) in extra {
        resp.headers_mut().insert(name, value);
    }
    resp
}

async fn unserved(uri: Uri) -> Response {
    cred_serve::unserved::note("http", &uri);
    let body = serde_json::json!({"error": {"code": 404, "status": "NOT_FOUND", "message": "no such endpoint: /forward-auth and POST /oauth2/introspect are served here"}});
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}
