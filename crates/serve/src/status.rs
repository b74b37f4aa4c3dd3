//! The one table from domain errors to `tonic::Status`, for both services.
//! What really differs between them is an [`Edge`] parameter, not a second
//! table: introspect tells its internal callers the precise cause; authd,
//! facing tenant backends, tells nobody (no oracle). Over HTTP (authd's
//! JSON API, introspect's gateway endpoints) the same `Status` becomes an
//! HTTP status and a JSON body by [`HttpError::from_status`]: the table is
//! still this one.

use std::collections::HashMap;

use cred_core::Error;
use cred_core::error::StoreError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// `google.rpc.ErrorInfo.reason` of every unusable credential: SDKs see it
/// and fetch a new token.
pub const INVALID_API_KEY: &str = "INVALID_API_KEY";
/// `google.rpc.ErrorInfo.reason` of a refusal by the failed-authentication
/// budgets (`metadata.limit`: "peer" or "credential id").
pub const THROTTLED: &str = "TOO_MANY_FAILED_AUTHENTICATIONS";
/// `google.rpc.ErrorInfo.metadata` key holding the precise reason, when the
/// edge tells it.
pub const CAUSE: &str = "cause";

/// The least time a refused credential takes to answer an outside caller,
/// from the start of its check: a refusal from memory or the cache
/// (microseconds) and one read from Redis (a few hundred) then look alike,
/// so time tells nothing of why (README, "Failure budgets"). authd's
/// callers and introspect's gateway endpoints (whose refusals reach end
/// users) are held to it; introspect's gRPC API, for internal callers told
/// the cause, is not.
pub const REFUSAL_FLOOR: std::time::Duration = std::time::Duration::from_millis(5);

/// `check`, its refusal of a credential held until [`REFUSAL_FLOOR`] has
/// passed since it began (other errors, throttling among them, are the same
/// whatever the credential, and answer at once).
pub async fn floored<T>(check: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
    let started = tokio::time::Instant::now();
    let r = check.await;
    if let Err(Error::InvalidCredential(_)) = &r {
        tokio::time::sleep_until(started + REFUSAL_FLOOR).await;
    }
    r
}

/// What one service's answers differ in.
#[derive(Debug, Clone, Copy)]
pub struct Edge {
    /// `google.rpc.ErrorInfo.domain` of the service's errors.
    pub domain: &'static str,
    /// Whether an unusable credential's ErrorInfo carries [`CAUSE`].
    pub tells_cause: bool,
    /// What the failure budgets count, in the throttled message
    /// ("authentications", "verifies").
    pub attempts: &'static str,
}

impl Edge {
    /// Maps a domain error to the status the caller sees.
    pub fn status(&self, e: Error) -> Status {
        match e {
            Error::InvalidCredential(reason) => {
                tracing::debug!(%reason, "credential refused");
                let cause = self.tells_cause.then(|| (CAUSE.to_string(), reason.as_str().to_string()));
                Status::with_error_details(
                    Code::Unauthenticated,
                    "invalid credential",
                    ErrorDetails::with_error_info(
                        INVALID_API_KEY,
                        self.domain,
                        cause.into_iter().collect::<HashMap<_, _>>(),
                    ),
                )
            }
            Error::InvalidArgument { field, message } => Status::with_error_details(
                Code::InvalidArgument,
                format!("{field}: {message}"),
                ErrorDetails::with_bad_request_violation(field, message),
            ),
            Error::PermissionDenied(scope) => Status::permission_denied(format!("the API key lacks scope {scope}")),
            Error::Forbidden(m) => Status::permission_denied(m),
            Error::NotFound(what) => Status::not_found(format!("{what} not found")),
            Error::FailedPrecondition(m) => Status::failed_precondition(m),
            Error::ResourceExhausted(m) => Status::resource_exhausted(m),
            // RESOURCE_EXHAUSTED, not UNAUTHENTICATED: an SDK drops a credential
            // on INVALID_API_KEY, and this one may be the caller's good key under
            // someone else's attack; RetryInfo says when to come back.
            Error::Throttled(t) => {
                tracing::info!(
                    limit = t.spent.as_str(),
                    retry_after_ms = t.retry_after.as_millis() as u64,
                    "throttled"
                );
                let mut d = ErrorDetails::with_retry_info(Some(t.retry_after));
                d.set_error_info(THROTTLED, self.domain, [("limit".to_string(), t.spent.as_str().to_string())]);
                Status::with_error_details(
                    Code::ResourceExhausted,
                    format!("too many failed {} for this {}; retry later", self.attempts, t.spent.as_str()),
                    d,
                )
            }
            Error::Store(StoreError::Unavailable(m)) => {
                tracing::warn!(error = %m, "store unavailable");
                Status::unavailable("credential store unavailable")
            }
            // UNAVAILABLE, not INTERNAL, in both services: an answer we cannot
            // read comes from a store in trouble far more often than from bad
            // data at rest (a reply cut by a failover, another server at the
            // address), the call may succeed on retry, and callers already
            // fail closed on UNAVAILABLE. The error log is what flags it.
            Error::Store(StoreError::Corrupt(m)) => {
                tracing::error!(error = %m, "store data corrupt");
                Status::unavailable("credential store unavailable")
            }
        }
    }
}

/// The HTTP status of a gRPC code: the mapping of `google.rpc.Code`
/// (grpc-gateway, Google APIs), so a JSON caller and a gRPC caller of the
/// same call learn the same thing.
pub fn http_status(code: Code) -> http::StatusCode {
    use http::StatusCode as H;
    match code {
        Code::Ok => H::OK,
        Code::Cancelled => H::from_u16(499).unwrap_or(H::BAD_REQUEST),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => H::BAD_REQUEST,
        Code::DeadlineExceeded => H::GATEWAY_TIMEOUT,
        Code::NotFound => H::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => H::CONFLICT,
        Code::PermissionDenied => H::FORBIDDEN,
        Code::Unauthenticated => H::UNAUTHORIZED,
        Code::ResourceExhausted => H::TOO_MANY_REQUESTS,
        Code::Unimplemented => H::NOT_IMPLEMENTED,
        Code::Unavailable => H::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => H::INTERNAL_SERVER_ERROR,
    }
}

/// A refusal as an HTTP caller sees it: the status of [`http_status`], the
/// `Retry-After` of a throttled call, and the JSON error body of Google's
/// APIs (AIP-193: `{"error": {"code", "status", "message", "details":
/// [{"@type": ".../google.rpc.ErrorInfo", "reason", ...}]}}`), carrying the
/// same ErrorInfo, BadRequest and RetryInfo as the gRPC answer.
#[derive(Debug, Clone)]
pub struct HttpError {
    /// The HTTP status.
    pub status: http::StatusCode,
    /// Whole seconds to wait (RetryInfo, rounded up), for `Retry-After`.
    pub retry_after: Option<u64>,
    /// The JSON body.
    pub body: serde_json::Value,
}

impl HttpError {
    /// Renders `s` (made by [`Edge::status`] or by tonic itself).
    pub fn from_status(s: &Status) -> HttpError {
        use serde_json::{Value, json};
        const TYPES: &str = "type.googleapis.com/google.rpc.";
        let status = http_status(s.code());
        let d = s.get_error_details();
        let mut details = Vec::<Value>::new();
        if let Some(i) = d.error_info() {
            details.push(json!({"@type": format!("{TYPES}ErrorInfo"), "reason": i.reason, "domain": i.domain, "metadata": i.metadata}));
        }
        if let Some(b) = d.bad_request() {
            let v: Vec<Value> =
                b.field_violations.iter().map(|f| json!({"field": f.field, "description": f.description})).collect();
            details.push(json!({"@type": format!("{TYPES}BadRequest"), "fieldViolations": v}));
        }
        let retry = d.retry_info().and_then(|r| r.retry_delay);
        if let Some(t) = retry {
            // proto3 JSON of a Duration: seconds with up to 9 decimals, "s".
            details
                .push(json!({"@type": format!("{TYPES}RetryInfo"), "retryDelay": format!("{:.3}s", t.as_secs_f64())}));
        }
        let body = json!({"error": {
            "code": status.as_u16(),
            "status": code_name(s.code()),
            "message": s.message(),
            "details": details,
        }});
        let retry_after = retry.map(|t| t.as_secs() + u64::from(t.subsec_nanos() > 0));
        HttpError { status, retry_after, body }
    }
}

/// `google.rpc.Code`'s enum name (what the JSON `status` field carries).
pub fn code_name(c: Code) -> &'static str {
    match c {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use cred_core::InvalidReason;

    use super::*;

    const QUIET: Edge = Edge { domain: "authd", tells_cause: false, attempts: "authentications" };
    const TELLS: Edge = Edge { domain: "introspect", tells_cause: true, attempts: "verifies" };

    #[test]
    fn the_cause_is_told_only_where_the_edge_says() {
        let s = QUIET.status(Error::InvalidCredential(InvalidReason::Revoked));
        let info = s.get_details_error_info().unwrap();
        assert_eq!(
            (s.code(), info.reason.as_str(), info.domain.as_str()),
            (Code::Unauthenticated, INVALID_API_KEY, "authd")
        );
        assert!(info.metadata.is_empty());
        let s = TELLS.status(Error::InvalidCredential(InvalidReason::Revoked));
        let info = s.get_details_error_info().unwrap();
        assert_eq!(info.domain, "introspect");
        assert_eq!(info.metadata.get(CAUSE).map(String::as_str), Some("REVOKED"));
    }

    #[test]
    fn http_callers_get_the_same_answer_as_json() {
        let e = HttpError::from_status(&QUIET.status(Error::InvalidCredential(InvalidReason::Unknown)));
        assert_eq!(e.status, http::StatusCode::UNAUTHORIZED);
        assert_eq!(e.body["error"]["status"], "UNAUTHENTICATED");
        assert_eq!(e.body["error"]["details"][0]["reason"], INVALID_API_KEY);
        let e = HttpError::from_status(&QUIET.status(Error::invalid("labels", "too many")));
        assert_eq!((e.status, e.retry_after), (http::StatusCode::BAD_REQUEST, None));
        assert_eq!(e.body["error"]["details"][0]["fieldViolations"][0]["field"], "labels");
        let t = cred_core::error::Throttled {
            spent: cred_core::error::Spent::Peer,
            retry_after: std::time::Duration::from_millis(1500),
        };
        let e = HttpError::from_status(&QUIET.status(Error::Throttled(t)));
        assert_eq!((e.status, e.retry_after), (http::StatusCode::TOO_MANY_REQUESTS, Some(2)));
        assert_eq!(e.body["error"]["details"][1]["retryDelay"], "1.500s");
        assert_eq!(http_status(Code::Unavailable), http::StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn a_corrupt_store_answer_is_unavailable_in_both() {
        for edge in [QUIET, TELLS] {
            assert_eq!(edge.status(Error::Store(StoreError::Corrupt("x".into()))).code(), Code::Unavailable);
            assert_eq!(edge.status(Error::Store(StoreError::Unavailable("x".into()))).code(), Code::Unavailable);
        }
    }
}
