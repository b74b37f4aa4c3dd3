//! The one place where domain errors become gRPC statuses.

use cred_core::Error;
use cred_core::store::StoreError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// `google.rpc.ErrorInfo.reason` of every unusable credential: SDKs see it
/// and fetch a new token.
pub const INVALID_API_KEY: &str = "INVALID_API_KEY";
/// `google.rpc.ErrorInfo.reason` of a refusal by the failed-authentication
/// budgets (`metadata.limit`: "peer" or "credential id").
pub const THROTTLED: &str = "TOO_MANY_FAILED_AUTHENTICATIONS";
/// `google.rpc.ErrorInfo.domain` of our errors.
pub const ERROR_DOMAIN: &str = "authd";

/// Maps a domain error to the status the caller sees.
pub fn to_status(e: Error) -> Status {
    match e {
        // No oracle: the precise reason stays inside (logs, introspect).
        Error::InvalidCredential(reason) => {
            tracing::debug!(%reason, "credential refused");
            Status::with_error_details(
                Code::Unauthenticated,
                "invalid credential",
                ErrorDetails::with_error_info(INVALID_API_KEY, ERROR_DOMAIN, []),
            )
        }
        Error::InvalidArgument { field, message } => Status::with_error_details(
            Code::InvalidArgument,
            format!("{field}: {message}"),
            ErrorDetails::with_bad_request_violation(field, message),
        ),
        Error::PermissionDenied(scope) => Status::permission_denied(format!("the API key lacks scope {scope}")),
        Error::NotFound(what) => Status::not_found(format!("{what} not found")),
        Error::FailedPrecondition(m) => Status::failed_precondition(m),
        Error::ResourceExhausted(m) => Status::resource_exhausted(m),
        // RESOURCE_EXHAUSTED, not UNAUTHENTICATED: an SDK drops a credential
        // on INVALID_API_KEY, and this one may be the caller's good key under
        // someone else's attack; RetryInfo says when to come back.
        Error::Throttled(t) => {
            tracing::info!(limit = t.spent.as_str(), retry_after_ms = t.retry_after.as_millis() as u64, "throttled");
            let mut d = ErrorDetails::with_retry_info(Some(t.retry_after));
            d.set_error_info(THROTTLED, ERROR_DOMAIN, [("limit".to_string(), t.spent.as_str().to_string())]);
            Status::with_error_details(
                Code::ResourceExhausted,
                format!("too many failed authentications for this {}; retry later", t.spent.as_str()),
                d,
            )
        }
        Error::Store(StoreError::Unavailable(m)) => {
            tracing::warn!(error = %m, "store unavailable");
            Status::unavailable("credential store unavailable")
        }
        Error::Store(StoreError::Corrupt(m)) => {
            tracing::error!(error = %m, "store data corrupt");
            Status::internal("credential store returned unexpected data")
        }
    }
}
