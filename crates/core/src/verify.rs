//! The checks that decide whether a presented credential is usable, given
//! its records: shared by authd (on every authenticated call) and
//! introspect (on a store read and again on every cache hit).

use uuid::Uuid;

use crate::clock::Millis;
use crate::error::InvalidReason;
use crate::model::SecretHash;
use crate::model::{ApiKey, Client, Environment, Session, Tenant};
use crate::store::Gone;
use crate::token::{Token, TokenKind};

/// Checks an API key token against its records.
pub fn check_api_key(
    token: &Token,
    hash: &SecretHash,
    key: Option<&ApiKey>,
    tenant: Option<&Tenant>,
    gone: Option<Gone>,
    now: Millis,
) -> Result<(), InvalidReason> {
    if token.kind != TokenKind::ApiKey {
        return Err(InvalidReason::Malformed);
    }
    let (Some(key), Some(tenant)) = (key, tenant) else {
        return Err(match gone {
            Some(Gone::Revoked) => InvalidReason::Revoked,
            Some(Gone::ExpiredMax | Gone::ExpiredIdle) => InvalidReason::ExpiredMax,
            None => InvalidReason::Unknown,
        });
    };
    if !key.hash.matches(hash) || key.env != token.env || key.tenant_id != token.route {
        return Err(InvalidReason::Unknown);
    }
    if tenant.revoked(key.created_at) {
        return Err(InvalidReason::Revoked);
    }
    if key.expires_at.is_some_and(|x| x <= now) {
        // A rolled key past its grace period is revoked, not merely expired.
        return Err(if key.successor.is_some() { InvalidReason::Revoked } else { InvalidReason::ExpiredMax });
    }
    Ok(())
}

/// What the checks need to know of a session and its client, whether they
/// come from the store or from a cache entry.
#[derive(Debug, Clone, Copy)]
pub struct SessionView<'a> {
    pub hash: &'a SecretHash,
    pub env: Environment,
    pub tenant_id: Uuid,
    pub created_at: Millis,
    /// The hard cap; `None` for a test client key.
    pub cap: Option<Millis>,
    /// The expiry as the caller knows it (the store's, or a cache's view).
    pub expires_at: Option<Millis>,
}

impl<'a> SessionView<'a> {
    /// The view of records read from the store.
    pub fn of(client: &Client, session: &'a Session) -> SessionView<'a> {
        SessionView {
            hash: &session.hash,
            env: client.env,
            tenant_id: client.tenant_id,
            created_at: session.created_at,
            cap: session.max_expires_at,
            expires_at: session.expires_at,
        }
    }
}

/// Checks a session token or test client key against its records.
pub fn check_session(
    token: &Token,
    hash: &SecretHash,
    client: Option<&Client>,
    session: Option<&Session>,
    gone: Option<Gone>,
    tenant: Option<&Tenant>,
    now: Millis,
) -> Result<(), InvalidReason> {
    if !matches!(token.kind, TokenKind::Session | TokenKind::TestClientKey) {
        return Err(InvalidReason::Malformed);
    }
    let Some(session) = session else {
        return Err(match gone {
            Some(Gone::Revoked) => InvalidReason::Revoked,
            Some(Gone::ExpiredIdle) => InvalidReason::ExpiredIdle,
            Some(Gone::ExpiredMax) => InvalidReason::ExpiredMax,
            None => InvalidReason::Unknown,
        });
    };
    let (Some(client), Some(tenant)) = (client, tenant) else {
        return Err(InvalidReason::Unknown);
    };
    check_session_view(token, hash, &SessionView::of(client, session), tenant, now)
}

/// The checks on a known session.
pub fn check_session_view(
    token: &Token,
    hash: &SecretHash,
    s: &SessionView<'_>,
    tenant: &Tenant,
    now: Millis,
) -> Result<(), InvalidReason> {
    if !matches!(token.kind, TokenKind::Session | TokenKind::TestClientKey) {
        return Err(InvalidReason::Malformed);
    }
    let test_kind = token.kind == TokenKind::TestClientKey;
    if !s.hash.matches(hash) || s.env != token.env || s.cap.is_none() != test_kind || s.tenant_id != tenant.id {
        return Err(InvalidReason::Unknown);
    }
    if tenant.revoked(s.created_at) {
        return Err(InvalidReason::Revoked);
    }
    if s.cap.is_some_and(|cap| cap <= now) {
        return Err(InvalidReason::ExpiredMax);
    }
    if s.expires_at.is_some_and(|e| e <= now) {
        return Err(InvalidReason::ExpiredIdle);
    }
    Ok(())
}
