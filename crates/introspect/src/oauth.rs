//! RFC 7662 token introspection (`POST /oauth2/introspect`), for gateways
//! that speak it (Kong, APISIX, oauth2-proxy...): the form's `token`,
//! verified as the gRPC API does, answered `{"active": true, ...}` or, for
//! every unusable credential, `{"active": false}` and nothing more (§2.2).
//! The caller authenticates as §2.1 requires: HTTP Basic with a client id
//! and secret from `--introspection-clients-file`, or nothing when the
//! deployment says so (`--introspection-open`, e.g. behind mTLS or a mesh).

use std::collections::HashMap;
use std::net::IpAddr;

use base64::Engine;
use cred_core::Error;
use cred_core::store::Store;
use cred_core::token::TokenKind;
use cred_serve::status::floored;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use crate::gateway::{Refusal, bearer, env_name, kind_name, outcome, scope_names};
use crate::verifier::{Requirements, Verified, Verifier};
use cred_telemetry::metrics::verify_outcome;
use cred_telemetry::record_tenant;

/// Who may call the introspection endpoint.
#[derive(Debug, Clone)]
pub enum Callers {
    /// Nobody is configured: every call is refused `invalid_client`.
    Nobody,
    /// Anyone who reaches it (`--introspection-open`).
    Open,
    /// HTTP Basic with one of these client ids and secrets.
    Basic(HashMap<String, String>),
}

impl Callers {
    /// Reads `id:secret` lines (blank lines and `#` comments skipped); an
    /// error names the line.
    pub fn parse(text: &str) -> Result<Callers, String> {
        let mut out = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.split_once(':') {
                Some((id, secret)) if !id.is_empty() && secret.len() >= 16 => {
                    out.insert(id.to_string(), secret.to_string());
                }
                _ => {
                    return Err(format!(
                        "line {}: expected client_id:secret, the secret at least 16 characters",
                        n + 1
                    ));
                }
            }
        }
        if out.is_empty() {
            return Err("no client_id:secret line".into());
        }
        Ok(Callers::Basic(out))
    }

    /// Whether the request's `Authorization` value lets it in.
    pub fn admits(&self, authorization: Option<&str>) -> bool {
        let table = match self {
            Callers::Nobody => return false,
            Callers::Open => return true,
            Callers::Basic(t) => t,
        };
        let Some((id, secret)) = authorization.and_then(basic) else { return false };
        // Constant time in the secret (the id is not a secret).
        table.get(&id).is_some_and(|s| bool::from(s.as_bytes().ct_eq(secret.as_bytes())))
    }
}

/// `Basic base64(id:secret)` (RFC 7617; the scheme in any case).
fn basic(value: &str) -> Option<(String, String)> {
    let (scheme, b64) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

/// An introspection answer: HTTP status, extra headers, JSON body.
pub type Answer = (http::StatusCode, Vec<(http::HeaderName, http::HeaderValue)>, Value);

/// The answer to a caller's `token` (already admitted). An unusable
/// credential is inactive; a throttled or unanswerable verify is the
/// gateway refusal (429, 503), so that a gateway neither caches "inactive"
/// for a good token nor lets anything through.
pub async fn introspect<S: Store>(verifier: &Verifier<S>, token: Option<&str>, peer: Option<IpAddr>) -> Answer {
    let Some(token) = token.map(bearer).filter(|t| !t.is_empty()) else {
        let body = json!({"error": "invalid_request", "error_description": "token: missing"});
        return (http::StatusCode::BAD_REQUEST, vec![], body);
    };
    // An inactive answer reaches, through the resource server, whoever
    // presented the token: held to the floor, as authd's refusals.
    match floored(verifier.verify_from(token, &Requirements::default(), peer)).await {
        Ok(v) => {
            record_tenant(v.tenant_id);
            verify_outcome("VALID");
            (http::StatusCode::OK, vec![], active(&v))
        }
        Err(e) => {
            let o = outcome(&e);
            verify_outcome(o);
            if let Error::InvalidCredential(_) = e {
                tracing::info!(endpoint = "oauth2/introspect", outcome = o, "inactive");
                return (http::StatusCode::OK, vec![], json!({"active": false}));
            }
            let r = Refusal::of(e, true);
            let headers = r.headers().into_iter().filter(|(n, _)| n != http::header::WWW_AUTHENTICATE).collect();
            (r.status, headers, r.body)
        }
    }
}

/// `{"active": true, ...}`: the RFC's members (`sub`: the end user or the
/// API key; `client_id`: the tenant it was issued to; `exp`, `iat` in
/// seconds; `scope`; `token_type`) and credd's own (`kind`, `tenant_id`,
/// `session_id` or `key_id`, `environment`).
fn active(v: &Verified) -> Value {
    let mut o = json!({
        "active": true,
        "token_type": "Bearer",
        "client_id": v.tenant_id.to_string(),
        "iat": v.created_at / 1000,
        "kind": kind_name(v.kind),
        "tenant_id": v.tenant_id.to_string(),
        "environment": env_name(v.env),
    });
    if let Some(exp) = v.expires_at {
        o["exp"] = json!(exp / 1000);
    }
    match v.kind {
        TokenKind::Session | TokenKind::TestClientKey => {
            o["sub"] = json!(v.key.0.to_string());
            o["session_id"] = json!(v.key.1.to_string());
        }
        TokenKind::ApiKey => {
            o["sub"] = json!(v.key.1.to_string());
            o["key_id"] = json!(v.key.1.to_string());
            o["scope"] = json!(scope_names(v.scopes).join(" "));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_callers_need_the_right_secret() {
        let c = Callers::parse("# gateways\nkong:0123456789abcdef0123\n\napisix:fedcba9876543210fedc\n").unwrap();
        let b = |s: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(s));
        assert!(c.admits(Some(&b("kong:0123456789abcdef0123"))));
        assert!(c.admits(Some(&b("apisix:fedcba9876543210fedc"))));
        assert!(!c.admits(Some(&b("kong:fedcba9876543210fedc"))));
        assert!(!c.admits(Some(&b("nobody:0123456789abcdef0123"))));
        assert!(!c.admits(Some("Bearer kong:0123456789abcdef0123")));
        assert!(!c.admits(None));
        assert!(!Callers::Nobody.admits(Some(&b("kong:0123456789abcdef0123"))));
        assert!(Callers::Open.admits(None));
        assert!(Callers::parse("kong:short").unwrap_err().contains("line 1"));
        assert!(Callers::parse("# nothing\n").is_err());
    }
}
