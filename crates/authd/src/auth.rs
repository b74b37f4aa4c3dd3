//! Caller credentials: the bearer token from metadata, and operator keys
//! checked against the server secret and a reloadable allowlist.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use cred_core::guard::FailureGuard;
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

/// The caller's IP address, the key of the per-peer failure budget.
pub fn peer<T>(req: &Request<T>) -> Option<IpAddr> {
    req.remote_addr().map(|a| a.ip())
}

/// Checks operator keys: opens under the secret, id in the allowlist.
#[derive(Clone)]
pub struct OperatorAuth {
    secret: OperatorSecret,
    /// Replaced whole on SIGHUP; read on every admin call.
    allowlist: Arc<RwLock<Allowlist>>,
    /// Per-peer budget of failed checks. Guessing an operator key costs no
    /// store command (it is an AEAD seal), but a peer that keeps failing is
    /// refused all the same.
    guard: Option<Arc<FailureGuard>>,
}

impl OperatorAuth {
    /// Accepts the keys of `allowlist` sealed with `secret`.
    pub fn new(secret: OperatorSecret, allowlist: Allowlist) -> OperatorAuth {
        OperatorAuth { secret, allowlist: Arc::new(RwLock::new(allowlist)), guard: None }
    }

    /// Counts failed checks against the per-peer budgets of `guard`.
    pub fn with_guard(mut self, guard: Arc<FailureGuard>) -> OperatorAuth {
        self.guard = Some(guard);
        self
    }

    /// Replaces the allowlist (SIGHUP).
    pub fn reload(&self, allowlist: Allowlist) {
        *self.allowlist.write().unwrap_or_else(|p| p.into_inner()) = allowlist;
    }

    /// The audit actor of the request's operator key, or why it is refused.
    pub fn check<T>(&self, req: &Request<T>) -> Result<String, Error> {
        let Some(g) = &self.guard else { return self.open(req) };
        let peer = peer(req);
        g.check(peer, None).map_err(Error::Throttled)?;
        let r = self.open(req);
        if r.is_err() {
            g.failed(peer, None);
        }
        r
    }

    fn open<T>(&self, req: &Request<T>) -> Result<String, Error> {
        let id = self.secret.open(bearer(req)?).ok_or(Error::InvalidCredential(InvalidReason::Unknown))?;
        if !self.allowlist.read().unwrap_or_else(|p| p.into_inner()).contains(id) {
            return Err(Error::InvalidCredential(InvalidReason::Revoked));
        }
        Ok(format!("operator:{id}"))
    }
}
