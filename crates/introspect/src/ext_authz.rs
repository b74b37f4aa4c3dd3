//! `envoy.service.auth.v3.Authorization/Check`: Envoy's ext_authz filter
//! (and Istio's `envoyExtAuthzGrpc`, Envoy Gateway's `extAuth`) asks here
//! whether a request may pass. The bearer comes from the request's
//! `authorization` header, the route's requirements from its context
//! extensions (`credd.environment`, `credd.scopes`, `credd.passive`), and
//! the verify is the same call the gRPC API makes. An allowed request goes
//! upstream with the identity headers set and every identity header it did
//! not get from us removed, so a client cannot forge one; a denied one gets
//! the gateway's refusal (`gateway::Refusal`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use cred_core::store::Store;
use cred_core::{Error, InvalidReason};
use cred_serve::peer::TrustedProxies;
use envoy_types::ext_authz::v3::pb::{
    Address, Authorization, CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction, HeaderValue,
    HeaderValueOption, HttpResponse, HttpStatus, OkHttpResponse,
};
use envoy_types::pb::google::rpc;
use tonic::{Request, Response, Status};

use crate::gateway::{IdentityHeaders, Refusal, bearer, outcome, requirements};
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
    /// The identity headers' names.
    pub headers: Arc<IdentityHeaders>,
    /// The gRPC peers (Envoys) whose reported downstream address counts as
    /// the caller for the per-peer budget.
    pub proxies: TrustedProxies,
}

/// The value of header `name` (lower case, as Envoy sends names) of the
/// checked request: from the `headers` map, or from `header_map` when
/// Envoy is configured to send raw headers.
fn header<'a>(
    http: &'a envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest,
    name: &str,
) -> Option<&'a str> {
    if let Some(v) = http.headers.get(name) {
        return Some(v);
    }
    let map = http.header_map.as_ref()?;
    map.headers
        .iter()
        .find(|h| h.key.eq_ignore_ascii_case(name))
        .and_then(|h| if h.value.is_empty() { std::str::from_utf8(&h.raw_value).ok() } else { Some(h.value.as_str()) })
}

/// The end user's address as Envoy saw it (for the per-peer budget, when
/// on), as the check request says.
fn source(r: &CheckRequest) -> Option<IpAddr> {
    let a = r.attributes.as_ref()?.source.as_ref()?.address.as_ref()?.address.as_ref()?;
    match a {
        Address::SocketAddress(s) => s.address.parse().ok(),
        _ => None,
    }
}

fn set(name: &http::HeaderName, value: String) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue { key: name.as_str().to_string(), value, ..Default::default() }),
        // Replaces whatever the client sent under that name.
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    }
}

fn allowed(ok: OkHttpResponse) -> CheckResponse {
    CheckResponse {
        status: Some(rpc::Status { code: tonic::Code::Ok as i32, ..Default::default() }),
        http_response: Some(HttpResponse::OkResponse(ok)),
        ..Default::default()
    }
}

fn denied(r: &Refusal) -> CheckResponse {
    let headers = r.headers().iter().map(|(n, v)| set(n, v.to_str().unwrap_or_default().to_string())).collect();
    let denied = DeniedHttpResponse {
        status: Some(HttpStatus { code: i32::from(r.status.as_u16()) }),
        headers,
        body: r.body.to_string(),
    };
    CheckResponse {
        status: Some(rpc::Status { code: r.code as i32, message: String::new(), details: vec![] }),
        http_response: Some(HttpResponse::DeniedResponse(denied)),
        ..Default::default()
    }
}

#[tonic::async_trait]
impl<S: Store> Authorization for ExtAuthz<S> {
    async fn check(&self, req: Request<CheckRequest>) -> Result<Response<CheckResponse>, Status> {
        let caller = cred_serve::peer::client_ip(&req);
        let tcp = req.remote_addr().map(|a| a.ip());
        let r = req.into_inner();
        // The address in the check request counts only from a trusted proxy:
        // anyone else reaching this port could name a new address per guess
        // and spend budgets that are not theirs.
        let peer = match tcp {
            Some(ip) if self.proxies.trusts(ip) => source(&r).or(caller),
            _ => caller,
        };
        let empty = HashMap::new();
        let ext = r.attributes.as_ref().map_or(&empty, |a| &a.context_extensions);
        let http = r.attributes.as_ref().and_then(|a| a.request.as_ref()).and_then(|q| q.http.as_ref());
        let token = http.and_then(|h| header(h, "authorization")).map(bearer).filter(|t| !t.is_empty());
        let verified = match (
            token,
            requirements(
                ext.get(ENVIRONMENT).map(String::as_str),
                ext.get(SCOPES).map(String::as_str),
                ext.get(PASSIVE).map(String::as_str),
            ),
        ) {
            (_, Err(e)) => Err(e),
            (None, _) => Err(Error::InvalidCredential(InvalidReason::Malformed)),
            (Some(t), Ok(want)) => self.verifier.verify_from(t, &want, peer).await,
        };
        let answer = match verified {
            Ok(v) => {
                record_tenant(v.tenant_id);
                verify_outcome("VALID");
                let set_now = self.headers.values(&v);
                let headers_to_remove = self
                    .headers
                    .all()
                    .into_iter()
                    .filter(|n| !set_now.iter().any(|(s, _)| s == n))
                    .map(|n| n.as_str().to_string())
                    .collect();
                let headers = set_now.into_iter().map(|(n, v)| set(n, v)).collect();
                allowed(OkHttpResponse { headers, headers_to_remove, ..Default::default() })
            }
            Err(e) => {
                let o = outcome(&e);
                verify_outcome(o);
                let r = Refusal::of(e, token.is_some());
                // The call itself is OK (a denial is an answer): the call log
                // would not show it, so it gets its own line.
                tracing::info!(endpoint = "ext_authz", status = r.status.as_u16(), outcome = o, "refused");
                denied(&r)
            }
        };
        Ok(Response::new(answer))
    }
}
