//! Where the Redis store keeps a session, for tests that look at Redis
//! itself: a field of its client's hash `c:{C}`, named by the session id's
//! 16 bytes (a client field's name is one letter). See the key layout table
//! in `cred_core::store::redis::keys`.

use redis::aio::MultiplexedConnection;
use uuid::Uuid;

use cred_core::token::short_id;

/// The client hash of `client`.
pub fn client_key(client: Uuid) -> String {
    format!("c:{{{}}}", short_id(client))
}

/// Whether session `session` of `client` is stored (live or not).
pub async fn session_stored(conn: &mut MultiplexedConnection, client: Uuid, session: Uuid) -> bool {
    redis::cmd("HEXISTS").arg(client_key(client)).arg(session.as_bytes()).query_async(conn).await.expect("HEXISTS")
}

/// The ids of every session stored in Redis, across all clients (a
/// standalone server; its whole keyspace is scanned).
pub async fn stored_sessions(conn: &mut MultiplexedConnection) -> Vec<Uuid> {
    let clients: Vec<String> = redis::cmd("KEYS").arg("c:{*").query_async(conn).await.expect("KEYS");
    let mut out = Vec::new();
    for key in clients {
        let fields: Vec<Vec<u8>> = redis::cmd("HKEYS").arg(&key).query_async(conn).await.expect("HKEYS");
        out.extend(fields.iter().filter_map(|f| Uuid::from_slice(f).ok()));
    }
    let legacy: Vec<String> = redis::cmd("KEYS").arg("s:{*").query_async(conn).await.expect("KEYS");
    assert!(legacy.is_empty(), "session strings written (the layout before fields): {legacy:?}");
    out
}
