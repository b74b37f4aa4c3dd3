//! The one place where domain errors become gRPC statuses.

use cred_core::Error;
use cred_core::store::StoreError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// `google.rpc.ErrorInfo.reason` of every unusable credential: SDKs see it
/// and fetch a new token.
pub const INVALID_API_KEY: &str = "INVALID_API_KEY";
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
