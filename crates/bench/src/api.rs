//! The calls a benchmark makes as a user would, over real gRPC: a tenant and
//! an API key through authd's admin API, a client and its first session, a
//! verify; Envoy's Check of a request carrying a token; and the framing
//! h2load sends.

use std::collections::HashMap;

use cred_proto::authd::v1 as apb;
use cred_proto::introspect::v1 as ipb;
use envoy_types::ext_authz::v3::pb::CheckRequest;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, attribute_context};
use tonic::Request;
use tonic::transport::Channel;

pub type VerifyClient = ipb::introspect_service_client::IntrospectServiceClient<Channel>;

/// `msg` with `authorization: Bearer <token>`.
pub fn authed<T>(token: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    if let Ok(v) = format!("Bearer {token}").parse() {
        r.metadata_mut().insert("authorization", v);
    }
    r
}

/// A status as `Code: message`.
pub fn status_text(s: tonic::Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}

/// Envoy's ext_authz method.
pub const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";

/// What Envoy's ext_authz filter sends for `GET /orders` with
/// `authorization: Bearer <token>` (the header map as Envoy fills it).
pub fn check_request(token: &str) -> CheckRequest {
    let headers = HashMap::from([("authorization".to_string(), format!("Bearer {token}"))]);
    let http =
        attribute_context::HttpRequest { method: "GET".into(), path: "/orders".into(), headers, ..Default::default() };
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(attribute_context::Request { http: Some(http), ..Default::default() }),
            ..Default::default()
        }),
    }
}

/// One gRPC message on the wire: the 5-byte prefix (not compressed, length
/// big-endian) and the encoded message, as h2load's body file.
pub fn grpc_frame(msg: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(5 + msg.len());
    b.push(0);
    b.extend_from_slice(&u32::try_from(msg.len()).unwrap_or(u32::MAX).to_be_bytes());
    b.extend_from_slice(msg);
    b
}

/// A tenant (default durations) and an API key of `env` for it, through
/// authd's admin API: (tenant id, API key).
pub async fn new_tenant(
    authd: &Channel,
    operator: &str,
    name: &str,
    env: apb::Environment,
) -> Result<(String, String), String> {
    let mut admin = apb::admin_service_client::AdminServiceClient::new(authd.clone());
    let t = admin
        .create_tenant(authed(
            operator,
            apb::CreateTenantRequest { name: name.into(), idle_timeout: None, max_lifetime: None, quotas: None },
        ))
        .await
        .map_err(|s| format!("CreateTenant: {s:?}"))?
        .into_inner();
    let tenant_id = t.tenant.ok_or("CreateTenant returned no tenant")?.tenant_id;
    let key = admin
        .create_api_key(authed(
            operator,
            apb::CreateApiKeyRequest {
                tenant_id: tenant_id.clone(),
                environment: env.into(),
                name: name.into(),
                scopes: vec![],
                expire_time: None,
            },
        ))
        .await
        .map_err(|s| format!("CreateApiKey: {s:?}"))?
        .into_inner()
        .secret;
    Ok((tenant_id, key))
}

/// A client and its first session through authd: (client id, session id, CST).
pub async fn create_client(authd: &Channel, api_key: &str) -> Result<(String, String, String), String> {
    let mut c = apb::client_service_client::ClientServiceClient::new(authd.clone());
    let r = c
        .create_client(authed(api_key, apb::CreateClientRequest::default()))
        .await
        .map_err(|s| format!("CreateClient: {s:?}"))?
        .into_inner();
    let client_id = r.client.ok_or("no client")?.client_id;
    let session_id = r.session.ok_or("no session")?.session_id;
    Ok((client_id, session_id, r.token))
}

/// Verifies and requires success.
pub async fn verify_ok(c: &mut VerifyClient, token: &str, passive: bool) -> Result<(), String> {
    c.verify(ipb::VerifyRequest { token: token.to_string(), passive, ..Default::default() })
        .await
        .map(drop)
        .map_err(|s| format!("verify: {:?}: {}", s.code(), s.message()))
}
