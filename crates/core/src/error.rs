//! Domain errors. The gRPC edge maps each variant to a status code in one
//! place; nothing here knows of gRPC.

use std::fmt;

use std::time::Duration;

/// Why a presented credential cannot be used. Outward callers only ever
/// learn "invalid"; introspect tells its internal callers this reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InvalidReason {
    /// Not a well-formed token (prefix, length, alphabet or checksum).
    Malformed,
    /// Well-formed, but no live record matches it.
    Unknown,
    /// Revoked (directly, by roll, or by tenant-wide revoke-before).
    Revoked,
    /// Unused for longer than the idle timeout.
    ExpiredIdle,
    /// Past its hard cap (or an API key's expiry).
    ExpiredMax,
    /// A credential of the wrong environment or kind for this call.
    EnvMismatch,
}

impl InvalidReason {
    /// The upper-case name used in errors and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            InvalidReason::Malformed => "MALFORMED",
            InvalidReason::Unknown => "UNKNOWN",
            InvalidReason::Revoked => "REVOKED",
            InvalidReason::ExpiredIdle => "EXPIRED_IDLE",
            InvalidReason::ExpiredMax => "EXPIRED_MAX",
            InvalidReason::EnvMismatch => "ENV_MISMATCH",
        }
    }
}

impl fmt::Display for InvalidReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A store failure. Never "not found": absence is a value, not an error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or did not answer in time.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store answered with something this code did not write.
    #[error("store data is corrupt: {0}")]
    Corrupt(String),
}

/// What spent its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spent {
    Credential,
    Peer,
}

impl Spent {
    /// The name used in errors.
    pub fn as_str(self) -> &'static str {
        match self {
            Spent::Credential => "credential id",
            Spent::Peer => "peer",
        }
    }
}

/// A refusal: too many recent failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub spent: Spent,
    /// When one more attempt will be let through.
    pub retry_after: Duration,
}

/// Everything a domain operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The presented credential is unusable.
    #[error("invalid credential ({0})")]
    InvalidCredential(InvalidReason),
    /// A request field is wrong; `field` names it.
    #[error("{field}: {message}")]
    InvalidArgument { field: &'static str, message: String },
    /// The credential lacks a scope.
    #[error("API key lacks scope {0}")]
    PermissionDenied(&'static str),
    /// A usable credential that is not what the caller required (introspect's
    /// required scopes); the message says what is missing.
    #[error("{0}")]
    Forbidden(&'static str),
    /// No such object visible to the caller.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The operation does not apply in the current state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A documented limit was reached.
    #[error("{0}")]
    ResourceExhausted(String),
    /// Too many recent failed authentications from this peer or for this
    /// credential id; refused before any store command.
    #[error("too many failed authentications ({}); retry after {:?}", .0.spent.as_str(), .0.retry_after)]
    Throttled(Throttled),
    /// The store failed; the request may be retried.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Error {
    /// An invalid-argument error naming the field.
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Error {
        Error::InvalidArgument { field, message: message.into() }
    }
}
