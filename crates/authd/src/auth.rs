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

/// The caller's IP address, the key of the per-peer failure budget
/// (through trusted proxies, see `cred_serve::peer`).
pub fn peer<T>(req: &Request<T>) -> Option<IpAddr> {
    cred_serve::peer::client_ip(req)
}

// Refusals are held to the same floor whatever their reason (the function
// lives in the one status table's module, shared with introspect's gateways).
pub use cred_serve::status::{REFUSAL_FLOOR, floored};

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

    /// Applies the removals of `good` (the parsable part of a bad file) and
    /// none of its additions; how many keys remain.
    pub fn remove_missing(&self, good: &Allowlist) -> usize {
        let mut list = self.allowlist.write().unwrap_or_else(|p| p.into_inner());
        *list = list.intersection(good);
        list.len()
    }

    /// The audit actor of the request's operator key, or why it is refused.
    /// The key is opened before any budget is looked at (it costs no store
    /// command), so a valid operator key works from a throttled address.
    pub fn check<T>(&self, req: &Request<T>) -> Result<String, Error> {
        let r = self.open(req);
        let (Some(g), Err(_)) = (&self.guard, &r) else { return r };
        let peer = peer(req);
        g.check_peer(peer).map_err(Error::Throttled)?;
        g.failed(peer);
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
