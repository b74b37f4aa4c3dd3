//! A refused request's answer, from the one status table
//! (`cred_serve::status`): a gRPC caller gets a trailers-only response
//! (HTTP 200, `grpc-status`, `grpc-message`, `grpc-status-details-bin`), any
//! other caller the HTTP status and AIP-193 JSON body of
//! `HttpError::from_status`, with `Retry-After` and the RFC 6750
//! `WWW-Authenticate` challenge.

use bytes::Bytes;
use cred_core::Error;
use cred_serve::status::{Edge, HttpError};
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

/// How the caller speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `content-type: application/grpc…`.
    Grpc,
    /// Anything else.
    Http,
}

impl Protocol {
    /// The protocol of a request, by its `content-type`.
    pub fn of(headers: &http::HeaderMap) -> Protocol {
        let grpc = headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().get(..16).is_some_and(|p| p.eq_ignore_ascii_case(b"application/grpc")));
        if grpc { Protocol::Grpc } else { Protocol::Http }
    }
}

/// The answer to a refused request.
pub fn refuse(edge: &Edge, e: Error, protocol: Protocol, challenge: Challenge<'_>) -> Response<Full<Bytes>> {
    let status = edge.status(e);
    if protocol == Protocol::Grpc {
        return status.into_http();
    }
    let e = HttpError::from_status(&status);
    let mut r = Response::new(Full::new(Bytes::from(e.body.to_string())));
    *r.status_mut() = e.status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(s) = e.retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    let www = match e.status {
        StatusCode::UNAUTHORIZED => Some(challenge.unauthorized()),
        StatusCode::FORBIDDEN => Some(challenge.forbidden()),
        _ => None,
    };
    if let Some(v) = www.and_then(|v| HeaderValue::from_str(&v).ok()) {
        h.insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// What the `WWW-Authenticate` challenge says (RFC 6750 §3).
#[derive(Debug, Clone, Copy)]
pub struct Challenge<'a> {
    /// Whether a credential was presented: a request with none gets a bare
    /// `Bearer` challenge, no error code (RFC 6750 §3.1).
    pub presented: bool,
    /// The scopes required, named in an `insufficient_scope` challenge.
    pub scopes: &'a [String],
}

impl Challenge<'_> {
    fn unauthorized(&self) -> String {
        if self.presented { r#"Bearer error="invalid_token""#.to_string() } else { "Bearer".to_string() }
    }

    fn forbidden(&self) -> String {
        if self.scopes.is_empty() {
            r#"Bearer error="insufficient_scope""#.to_string()
        } else {
            format!(r#"Bearer error="insufficient_scope", scope="{}""#, self.scopes.join(" "))
        }
    }
}

#[cfg(test)]
mod tests {
    use cred_core::InvalidReason;
    use cred_core::error::StoreError;

    use super::*;

    const EDGE: Edge = Edge { domain: "credd", tells_cause: false, attempts: "verifies" };
    const SEEN: Challenge<'static> = Challenge { presented: true, scopes: &[] };

    #[test]
    fn grpc_by_content_type() {
        let mut h = http::HeaderMap::new();
        assert_eq!(Protocol::of(&h), Protocol::Http);
        for ct in ["application/grpc", "application/grpc+proto", "Application/GRPC-web"] {
            h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
            assert_eq!(Protocol::of(&h), Protocol::Grpc, "{ct}");
        }
        h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        assert_eq!(Protocol::of(&h), Protocol::Http);
    }

    #[test]
    fn grpc_refusals_are_trailers_only() {
        let r = refuse(&EDGE, Error::InvalidCredential(InvalidReason::Revoked), Protocol::Grpc, SEEN);
        assert_eq!(r.status(), StatusCode::OK);
        let h = r.headers();
        assert_eq!(h["content-type"], "application/grpc");
        assert_eq!(h["grpc-status"], "16");
        assert!(h.contains_key("grpc-status-details-bin"));
        assert!(!h.contains_key(header::WWW_AUTHENTICATE));
    }

    #[test]
    fn http_refusals() {
        let r = refuse(&EDGE, Error::InvalidCredential(InvalidReason::Revoked), Protocol::Http, SEEN);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], r#"Bearer error="invalid_token""#);
        let none = Challenge { presented: false, scopes: &[] };
        let r = refuse(&EDGE, Error::InvalidCredential(InvalidReason::Malformed), Protocol::Http, none);
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");
        let scopes = ["clients.read".to_string(), "sessions.read".to_string()];
        let r = refuse(&EDGE, Error::Forbidden("x"), Protocol::Http, Challenge { presented: true, scopes: &scopes });
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            r.headers()[header::WWW_AUTHENTICATE],
            r#"Bearer error="insufficient_scope", scope="clients.read sessions.read""#
        );
        let r = refuse(&EDGE, Error::Store(StoreError::Unavailable("x".into())), Protocol::Http, SEEN);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()["content-type"], "application/json");
    }
}
