//! A fresh in-memory world per input: the services under test over a
//! `MemoryStore`, with real credentials to put in requests.
//!
//! Ids and tokens are random per fixture, so seeds name them by marker: a
//! string field equal to `@tenant`, `@key`, `@client` or `@session` is
//! replaced with the fixture's id before the call (none of these is a
//! UUID, so a marker never hides a case the fuzzer could reach otherwise).

use authd::admin::AdminApi;
use authd::auth::OperatorAuth;
use authd::clients::ClientApi;
use authd::sessions::SessionApi;
use cred_core::Authority;
use cred_core::authority::NewApiKey;
use cred_core::cache::CacheOptions;
use cred_core::model::{Environment, Scopes};
use cred_core::operator::{Allowlist, OperatorSecret};
use cred_core::store::MemoryStore;
use introspect::service::IntrospectApi;
use introspect::{Verifier, VerifyOptions};
use std::time::Duration;
use uuid::Uuid;

use crate::block_on;
use crate::oracle::{OPERATOR_SECRET, OTHER_SECRET};

const ACTOR: &str = "operator:fuzz";

/// The world of one input.
pub struct World {
    pub admin: AdminApi<MemoryStore>,
    pub clients: ClientApi<MemoryStore>,
    pub sessions: SessionApi<MemoryStore>,
    pub introspect: IntrospectApi<MemoryStore>,
    /// An allowlisted operator key.
    pub operator_token: String,
    /// An operator key sealed with the right secret but not allowlisted.
    pub unlisted_operator_token: String,
    /// An operator key sealed with another secret.
    pub foreign_operator_token: String,
    pub tenant: Uuid,
    /// Test API key with every scope (no scope list = all).
    pub key: Uuid,
    pub key_token: String,
    /// Production API key holding only `sessions.read`.
    pub scoped_key: Uuid,
    pub scoped_key_token: String,
    /// A test client with one session.
    pub client: Uuid,
    pub session: Uuid,
    pub session_token: String,
    /// A test client key (its own client).
    pub tck_client: Uuid,
    pub tck_session: Uuid,
    pub tck_token: String,
}

fn secret(bytes: &[u8; 32]) -> OperatorSecret {
    use base64::Engine;
    OperatorSecret::parse(&base64::engine::general_purpose::STANDARD.encode(bytes)).expect("32-byte secret")
}

impl World {
    pub fn new() -> World {
        let store = MemoryStore::new();
        let authority = Authority::new(store.clone());
        let op = secret(&OPERATOR_SECRET);
        let (op_id, operator_token) = op.issue();
        let (_, unlisted_operator_token) = op.issue();
        let (_, foreign_operator_token) = secret(&OTHER_SECRET).issue();
        let operators = OperatorAuth::new(op, Allowlist::of([op_id]));
        block_on(async {
            let t =
                authority.create_tenant(ACTOR, "fuzz".into(), None, None, Default::default()).await.expect("tenant");
            let new_key =
                |env, scopes| NewApiKey { tenant_id: t.id, env, name: "fuzz".into(), scopes, expires_at: None };
            let k = authority.create_api_key(ACTOR, new_key(Environment::Test, Scopes::default())).await.expect("key");
            let scoped = Scopes::parse(["sessions.read"]).expect("scope");
            let sk = authority.create_api_key(ACTOR, new_key(Environment::Production, scoped)).await.expect("key");
            let p = authority.authenticate_api_key(&k.token).await.expect("auth");
            let c = authority.create_client(&p, Default::default()).await.expect("client");
            let tc = authority.create_test_client(&p, Default::default()).await.expect("test client");
            let verifier = Verifier::new(
                store,
                VerifyOptions {
                    // Small caches: built per input.
                    cache: CacheOptions { capacity: 64, negative_capacity: 64, ..CacheOptions::default() },
                    deadline: Duration::from_secs(5),
                    ..VerifyOptions::default()
                },
            );
            World {
                admin: AdminApi { authority: authority.clone(), operators },
                clients: ClientApi { authority: authority.clone() },
                sessions: SessionApi { authority },
                introspect: IntrospectApi { verifier },
                operator_token,
                unlisted_operator_token,
                foreign_operator_token,
                tenant: t.id,
                key: k.record.id,
                key_token: k.token,
                scoped_key: sk.record.id,
                scoped_key_token: sk.token,
                client: c.client.id,
                session: c.session.id,
                session_token: c.token,
                tck_client: tc.client.id,
                tck_session: tc.session.id,
                tck_token: tc.token,
            }
        })
    }

    /// Replaces a marker with the fixture's id (see the module doc).
    pub fn subst(&self, field: &mut String) {
        let id = match field.as_str() {
            "@tenant" => self.tenant,
            "@key" => self.key,
            "@scoped_key" => self.scoped_key,
            "@client" => self.client,
            "@session" => self.session,
            _ => return,
        };
        *field = id.to_string();
    }
}

impl Default for World {
    fn default() -> Self {
        World::new()
    }
}

/// A request with `authorization: Bearer <token>` (or none).
pub fn request<T>(msg: T, bearer: Option<&str>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(b) = bearer
        && let Ok(v) = format!("Bearer {b}").parse()
    {
        r.metadata_mut().insert("authorization", v);
    }
    r
}
