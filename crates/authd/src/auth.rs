//! Caller credentials: the bearer token from metadata, and operator keys
//! checked against the server secret and a reloadable allowlist.

use std::sync::{Arc, RwLock};

use cred_core::operator::{Allowlist, OperatorSecret};
use cred_core::{Error, InvalidReason};
use tonic::Request;

/// The bearer token of a request (`authorization: Bearer <token>`).
pub fn bearer<T>(req: &Request<T>) -> Result<&str, Error> {
    req.metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .ok_or(Error::InvalidCredential(InvalidReason::Malformed))
}

/// Checks operator keys: opens under the secret, id in the allowlist.
#[derive(Clone)]
pub struct OperatorAuth {
    secret: OperatorSecret,
    /// Replaced whole on SIGHUP; read on every admin call.
    allowlist: Arc<RwLock<Allowlist>>,
}

impl OperatorAuth {
    /// Accepts the keys of `allowlist` sealed with `secret`.
    pub fn new(secret: OperatorSecret, allowlist: Allowlist) -> OperatorAuth {
        OperatorAuth { secret, allowlist: Arc::new(RwLock::new(allowlist)) }
    }

    /// Replaces the allowlist (SIGHUP).
    pub fn reload(&self, allowlist: Allowlist) {
        *self.allowlist.write().unwrap_or_else(|p| p.into_inner()) = allowlist;
    }

    /// The audit actor of the request's operator key, or why it is refused.
    pub fn check<T>(&self, req: &Request<T>) -> Result<String, Error> {
        let id = self.secret.open(bearer(req)?).ok_or(Error::InvalidCredential(InvalidReason::Unknown))?;
        if !self.allowlist.read().unwrap_or_else(|p| p.into_inner()).contains(id) {
            return Err(Error::InvalidCredential(InvalidReason::Revoked));
        }
        Ok(format!("operator:{id}"))
    }
}
