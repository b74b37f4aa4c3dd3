//! The one table from domain errors to `tonic::Status`, for both services.
//! What really differs between them is an [`Edge`] parameter, not a second
//! table: introspect tells its internal callers the precise cause; authd,
//! facing tenant backends, tells nobody (no oracle).

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
    fn a_corrupt_store_answer_is_unavailable_in_both() {
        for edge in [QUIET, TELLS] {
            assert_eq!(edge.status(Error::Store(StoreError::Corrupt("x".into()))).code(), Code::Unavailable);
            assert_eq!(edge.status(Error::Store(StoreError::Unavailable("x".into()))).code(), Code::Unavailable);
        }
    }
}
