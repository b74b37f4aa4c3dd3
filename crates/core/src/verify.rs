//! The checks that decide whether a presented credential is usable, given
//! its records: shared by authd (on every authenticated call) and
//! introspect (on a store read and again on every cache hit).

use crate::error::InvalidReason;
use crate::model::{ApiKey, Client, Millis, Session, Tenant};
use crate::store::Gone;
use crate::token::{SecretHash, Token, TokenKind};

/// Checks an API key token against its records.
pub fn check_api_key(
    token: &Token,
    hash: &SecretHash,
    key: Option<&ApiKey>,
    tenant: Option<&Tenant>,
    revoked: bool,
    now: Millis,
) -> Result<(), InvalidReason> {
    if token.kind != TokenKind::ApiKey {
        return Err(InvalidReason::Malformed);
    }
    let (Some(key), Some(tenant)) = (key, tenant) else {
        return Err(if revoked { InvalidReason::Revoked } else { InvalidReason::Unknown });
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

/// Checks a session token or test client key against its records.
/// `session.expires_at` is the expiry as the caller knows it (the store's,
/// or a cache's view of it).
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
    let test_kind = token.kind == TokenKind::TestClientKey;
    if !session.hash.matches(hash)
        || client.env != token.env
        || session.is_test_key() != test_kind
        || client.tenant_id != tenant.id
    {
        return Err(InvalidReason::Unknown);
    }
    if tenant.revoked(session.created_at) {
        return Err(InvalidReason::Revoked);
    }
    if session.max_expires_at.is_some_and(|cap| cap <= now) {
        return Err(InvalidReason::ExpiredMax);
    }
    if session.expires_at.is_some_and(|e| e <= now) {
        return Err(InvalidReason::ExpiredIdle);
    }
    Ok(())
}
