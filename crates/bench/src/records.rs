//! Client and session records built as `cred_core::Authority` builds them
//! (fresh ids and token, the tenant's default policy), for figures that
//! write straight through the store.

use std::collections::BTreeMap;

use cred_core::clock::now_ms;
use cred_core::model::{Client, Environment, Session, Tenant, sliding_expiry};
use cred_core::rng;
use cred_core::token::{Token, TokenKind};

/// A client record as `Authority::create_client` builds it.
pub fn client(tenant: &Tenant, env: Environment) -> Client {
    Client { id: rng::uuid(), tenant_id: tenant.id, env, labels: BTreeMap::new(), created_at: now_ms() }
}

/// A session record as `Authority` builds it (fresh token, the tenant's
/// idle timeout and cap), with its token.
pub fn session_and_token(tenant: &Tenant, env: Environment, client_id: uuid::Uuid) -> (Session, Token) {
    let now = now_ms();
    let token = Token::mint(TokenKind::Session, env, client_id, rng::uuid());
    let cap = now + tenant.max_lifetime_ms;
    let session = Session {
        id: token.id,
        client_id,
        created_at: now,
        last_used: now,
        expires_at: Some(sliding_expiry(now, tenant.idle_timeout_ms, cap)),
        max_expires_at: Some(cap),
        hash: token.hash(),
    };
    (session, token)
}

/// A session record as `Authority` builds it.
pub fn session(tenant: &Tenant, env: Environment, client_id: uuid::Uuid) -> Session {
    session_and_token(tenant, env, client_id).0
}
