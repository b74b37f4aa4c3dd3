//! What a gateway needs around a verify, whichever way it asks (Envoy's
//! ext_authz, forward-auth, RFC 7662): the token of an `Authorization`
//! value, the caller's requirements from its configuration, the verified
//! identity as headers for the upstream, and a refusal as an HTTP answer.
//! Refusals go through the one status table with an [`OUTSIDE`] edge: a
//! gateway's denial reaches the end user, so no precise cause is told
//! (introspect's gRPC callers, inside, still get it).

use cred_core::Error;
use cred_core::model::{Environment, Scope, Scopes};
use cred_core::token::TokenKind;
use cred_serve::status::{Edge, HttpError};
use http::{HeaderName, HeaderValue, StatusCode};

use crate::verifier::{Requirements, Verified};

/// The edge of answers that reach outside callers: introspect's domain,
/// no cause.
pub const OUTSIDE: Edge = Edge { domain: "introspect", tells_cause: false, attempts: "verifies" };

/// The token of an `Authorization` value: `Bearer <token>` (the scheme in
/// any case, RFC 6750) or the token alone; surrounding blanks ignored.
pub fn bearer(value: &str) -> &str {
    let v = value.trim();
    // The scheme is what precedes the first space: it is `bearer` only if
    // the first seven bytes are `bearer ` (no search through the token for
    // a space, on every verify).
    match v.split_at_checked(7) {
        Some((scheme, rest)) if scheme.as_bytes()[6] == b' ' && scheme[..6].eq_ignore_ascii_case("bearer") => {
            rest.trim_start()
        }
        _ => v,
    }
}

/// What a gateway route requires, as its configuration spells it (Envoy
/// context extensions, forward-auth query parameters): `environment`
/// (`production` or `test`; unset: the server's `--environment`), `scopes`
/// (names separated by spaces or commas: an API key holding all of them)
/// and `passive` (`true`: not counted as activity). A bad value is
/// INVALID_ARGUMENT naming it: a misconfigured route, refused, never
/// waved through.
pub fn requirements(
    environment: Option<&str>,
    scopes: Option<&str>,
    passive: Option<&str>,
) -> Result<Requirements, Error> {
    let env = match environment.map(str::trim) {
        None | Some("") => None,
        Some(e) if e.eq_ignore_ascii_case("production") => Some(Environment::Production),
        Some(e) if e.eq_ignore_ascii_case("test") => Some(Environment::Test),
        Some(e) => return Err(Error::invalid("environment", format!("{e:?}: expected production or test"))),
    };
    let scopes = match scopes.map(|s| s.split([' ', ',']).filter(|n| !n.is_empty()).collect::<Vec<_>>()) {
        Some(names) if !names.is_empty() => Some(Scopes::parse(names)?),
        _ => None,
    };
    let passive = match passive.map(str::trim) {
        None | Some("") | Some("false") => false,
        Some("true") => true,
        Some(p) => return Err(Error::invalid("passive", format!("{p:?}: expected true or false"))),
    };
    Ok(Requirements { env, scopes, passive })
}

/// The names of the identity headers sent upstream: a prefix (`x-credd-`
/// by default) and a fixed suffix each, so a deployment renames them all
/// at once.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    /// `<prefix>kind`: `session`, `test_client_key` or `api_key`.
    pub kind: HeaderName,
    /// `<prefix>tenant-id`.
    pub tenant: HeaderName,
    /// `<prefix>environment`: `production` or `test`.
    pub environment: HeaderName,
    /// `<prefix>client-id` (sessions and test client keys).
    pub client: HeaderName,
    /// `<prefix>session-id` (sessions and test client keys).
    pub session: HeaderName,
    /// `<prefix>key-id` (API keys).
    pub key: HeaderName,
    /// `<prefix>scopes`: an API key's scopes, space-separated (every scope
    /// named for a key that holds them all).
    pub scopes: HeaderName,
}

/// The default prefix of the identity headers.
pub const DEFAULT_PREFIX: &str = "x-credd-";

impl IdentityHeaders {
    /// The headers under `prefix` (lower-cased); an error names what is
    /// not a header name.
    pub fn new(prefix: &str) -> Result<IdentityHeaders, String> {
        let name = |suffix: &str| {
            HeaderName::try_from(format!("{}{suffix}", prefix.to_ascii_lowercase()))
                .map_err(|_| format!("{prefix:?} does not make header names (use letters, digits and '-')"))
        };
        Ok(IdentityHeaders {
            kind: name("kind")?,
            tenant: name("tenant-id")?,
            environment: name("environment")?,
            client: name("client-id")?,
            session: name("session-id")?,
            key: name("key-id")?,
            scopes: name("scopes")?,
        })
    }

    /// Every identity header: what a gateway strips from the incoming
    /// request, so that only introspect can set them.
    pub fn all(&self) -> [&HeaderName; 7] {
        [&self.kind, &self.tenant, &self.environment, &self.client, &self.session, &self.key, &self.scopes]
    }

    /// The headers that carry `v`'s identity, with their values as text
    /// (ids, names: always valid header values). ext_authz writes the same
    /// values without these strings (`check_response`).
    pub fn values(&self, v: &Verified) -> Vec<(&HeaderName, String)> {
        let mut out = Vec::with_capacity(5);
        out.push((&self.kind, kind_name(v.kind).to_string()));
        out.push((&self.tenant, v.tenant_id.to_string()));
        out.push((&self.environment, env_name(v.env).to_string()));
        match v.kind {
            TokenKind::Session | TokenKind::TestClientKey => {
                out.push((&self.client, v.key.0.to_string()));
                out.push((&self.session, v.key.1.to_string()));
            }
            TokenKind::ApiKey => {
                out.push((&self.key, v.key.1.to_string()));
                out.push((&self.scopes, scope_names(v.scopes).join(" ")));
            }
        }
        out
    }

    /// [`IdentityHeaders::values`] as HTTP header values (forward-auth).
    pub fn of(&self, v: &Verified) -> Vec<(&HeaderName, HeaderValue)> {
        let value = |s: String| HeaderValue::try_from(s).unwrap_or_else(|_| HeaderValue::from_static(""));
        self.values(v).into_iter().map(|(n, s)| (n, value(s))).collect()
    }
}

/// The name of a credential kind, in headers and JSON.
pub fn kind_name(k: TokenKind) -> &'static str {
    match k {
        TokenKind::Session => "session",
        TokenKind::TestClientKey => "test_client_key",
        TokenKind::ApiKey => "api_key",
    }
}

/// The name of an environment, in headers and JSON.
pub fn env_name(e: Environment) -> &'static str {
    match e {
        Environment::Production => "production",
        Environment::Test => "test",
    }
}

/// An API key's scopes by name; a key that holds every scope (stored as
/// none) names them all, so the upstream never reads "none" for "all".
pub fn scope_names(s: Scopes) -> Vec<&'static str> {
    if s.0 == 0 { Scope::ALL.iter().map(|s| s.name()).collect() } else { s.names() }
}

/// The `cred.verify.outcomes` label of a refusal.
pub fn outcome(e: &Error) -> &'static str {
    match e {
        Error::InvalidCredential(reason) => reason.as_str(),
        Error::Forbidden(_) | Error::PermissionDenied(_) => "FORBIDDEN",
        Error::Throttled(_) => "THROTTLED",
        Error::InvalidArgument { .. } => "BAD_REQUEST",
        Error::Store(_) | Error::NotFound(_) | Error::FailedPrecondition(_) | Error::ResourceExhausted(_) => {
            "UNAVAILABLE"
        }
    }
}

/// A refusal as the gateway's caller sees it.
#[derive(Debug)]
pub struct Refusal {
    /// The gRPC code of the same refusal (ext_authz's `status`).
    pub code: tonic::Code,
    /// The HTTP status: 401, 403, 429, 503 (400 for a misconfigured route).
    pub status: StatusCode,
    /// `WWW-Authenticate` (401 and 403, RFC 6750 §3).
    pub www_authenticate: Option<&'static str>,
    /// `Retry-After`, in seconds (429).
    pub retry_after: Option<u64>,
    /// The AIP-193 JSON body (ErrorInfo `INVALID_API_KEY` for an unusable
    /// credential, as from authd).
    pub body: serde_json::Value,
}

impl Refusal {
    /// The answer to `e`; `presented`: whether the request carried a token
    /// at all (RFC 6750: no error code when it did not).
    pub fn of(e: Error, presented: bool) -> Refusal {
        let s = OUTSIDE.status(e);
        let HttpError { status, retry_after, body } = HttpError::from_status(&s);
        let www_authenticate = match status {
            StatusCode::UNAUTHORIZED if presented => Some(r#"Bearer error="invalid_token""#),
            StatusCode::UNAUTHORIZED => Some("Bearer"),
            StatusCode::FORBIDDEN => Some(r#"Bearer error="insufficient_scope""#),
            _ => None,
        };
        Refusal { code: s.code(), status, www_authenticate, retry_after, body }
    }

    /// The headers of the refusal, besides its body's content type.
    pub fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        let mut h = vec![(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"))];
        if let Some(w) = self.www_authenticate {
            h.push((http::header::WWW_AUTHENTICATE, HeaderValue::from_static(w)));
        }
        if let Some(s) = self.retry_after {
            h.push((http::header::RETRY_AFTER, HeaderValue::from(s)));
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_taken_with_or_without_its_scheme() {
        assert_eq!(bearer("Bearer cst_x"), "cst_x");
        assert_eq!(bearer("bearer  cst_x "), "cst_x");
        assert_eq!(bearer("BEARER cst_x"), "cst_x");
        assert_eq!(bearer("cst_x"), "cst_x");
        // Another scheme is not stripped: the token is then malformed.
        assert_eq!(bearer("Basic abc"), "Basic abc");
        assert_eq!(bearer(""), "");
        // As the first space splits it: a scheme is never cut elsewhere.
        for v in ["Bearer", "Bearer ", "bearer\tx", "bearerx y", "Bearé x", "xBearer y", " Bearer  y ", "Bearer x y"] {
            let first = v.trim().split_once(' ');
            let want = match first {
                Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim_start(),
                _ => v.trim(),
            };
            assert_eq!(bearer(v), want, "{v:?}");
        }
    }

    #[test]
    fn route_requirements_are_checked_and_named() {
        let r = requirements(Some("test"), Some("clients.read, sessions.read"), Some("true")).unwrap();
        assert_eq!(r.env, Some(Environment::Test));
        assert_eq!(r.scopes.map(|s| s.names()), Some(vec!["clients.read", "sessions.read"]));
        assert!(r.passive);
        let r = requirements(None, Some(" "), None).unwrap();
        assert!(r.env.is_none() && r.scopes.is_none() && !r.passive);
        for (e, s, p, field) in [
            (Some("prod"), None, None, "environment"),
            (None, Some("admin"), None, "scopes"),
            (None, None, Some("yes"), "passive"),
        ] {
            match requirements(e, s, p) {
                Err(Error::InvalidArgument { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn header_names_follow_the_prefix() {
        let h = IdentityHeaders::new("X-Auth-").unwrap();
        assert_eq!(h.tenant.as_str(), "x-auth-tenant-id");
        assert!(IdentityHeaders::new("bad prefix ").is_err());
    }

    #[test]
    fn refusals_carry_rfc_6750_challenges_and_no_cause() {
        let r = Refusal::of(Error::InvalidCredential(cred_core::InvalidReason::Revoked), true);
        assert_eq!((r.status, r.www_authenticate), (StatusCode::UNAUTHORIZED, Some(r#"Bearer error="invalid_token""#)));
        let body = r.body.to_string();
        assert!(body.contains("INVALID_API_KEY") && !body.contains("REVOKED"), "{body}");
        let r = Refusal::of(Error::InvalidCredential(cred_core::InvalidReason::Malformed), false);
        assert_eq!(r.www_authenticate, Some("Bearer"));
        let r = Refusal::of(Error::PermissionDenied("clients.read"), true);
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let r = Refusal::of(Error::Store(cred_core::error::StoreError::Unavailable("down".into())), true);
        assert_eq!((r.status, r.www_authenticate), (StatusCode::SERVICE_UNAVAILABLE, None));
    }
}
