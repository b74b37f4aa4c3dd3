//! The Lua scripts of the Redis store, one readable file each under
//! `scripts/`. Constants are spliced in once, at first use, where a script
//! names them (`__REMEMBER_MS__`, `__REMEMBER_REVOKED_MS__`,
//! `__REMEMBER_MAX__`, `__INVALIDATION_CHANNEL__`); the revoking scripts start with
//! `announce.lua` (numbered PUBLISH, see `seq`) and, most, `remember.lua`; the
//! session scripts with `session_field.lua` (a session field's codec).

use std::sync::LazyLock;

use redis::Script;

use crate::store::{INVALIDATION_CHANNEL, REMEMBER_MAX, REMEMBER_MS, REMEMBER_REVOKED_MS};

/// The shared `remember(key, member, cap, now)` function.
const REMEMBER: &str = include_str!("scripts/remember.lua");
/// The shared `announce(changed, msg)` function.
const ANNOUNCE: &str = include_str!("scripts/announce.lua");
/// The shared session field functions (`session_state`, `field_time`,
/// `session_used`, `hdel_all`).
const SESSION_FIELD: &str = include_str!("scripts/session_field.lua");
/// The client index's shared `bucket_of(dir, t)` and
/// `drop_if_empty(dir, key, name)` functions.
const CLIENT_INDEX: &str = include_str!("scripts/client_index.lua");

/// A script's text with its constants spliced in.
fn splice(lua: &str) -> String {
    lua.replace("__REMEMBER_MS__", &REMEMBER_MS.to_string())
        .replace("__REMEMBER_REVOKED_MS__", &REMEMBER_REVOKED_MS.to_string())
        .replace("__INVALIDATION_CHANNEL__", INVALIDATION_CHANNEL)
        .replace("__REMEMBER_MAX__", &REMEMBER_MAX.to_string())
}

/// A script as it is sent to Redis, after the shared functions it uses.
fn load(lua: &str, shared: &[&str]) -> Script {
    Script::new(&splice(&format!("{}{lua}", shared.concat())))
}

/// A new session, if the client exists and has room.
pub(super) static CREATE_SESSION: LazyLock<Script> =
    LazyLock::new(|| load(include_str!("scripts/create_session.lua"), &[SESSION_FIELD]));

/// Slides a live session's expiry forward (never revives, never past the cap).
pub(super) static TOUCH_SESSION: LazyLock<Script> =
    LazyLock::new(|| load(include_str!("scripts/touch_session.lua"), &[SESSION_FIELD]));

/// A client's live session strings (written before sessions were client
/// hash fields) with their values and expiries.
pub(super) static LIST_SESSIONS: LazyLock<Script> =
    LazyLock::new(|| load(include_str!("scripts/list_sessions.lua"), &[]));

/// Deletes one session, remembers it as revoked, publishes.
pub(super) static REVOKE_SESSION: LazyLock<Script> =
    LazyLock::new(|| load(include_str!("scripts/revoke_session.lua"), &[ANNOUNCE, REMEMBER, SESSION_FIELD]));

/// Deletes every session of a client (and optionally the client), publishes.
pub(super) static REVOKE_ALL_SESSIONS: LazyLock<Script> =
    LazyLock::new(|| load(include_str!("scripts/revoke_all_sessions.lua"), &[ANNOUNCE, REMEMBER, SESSION_FIELD]));

/// A tenant's API keys, pruning dead index members.
pub(super) static LIST_API_KEYS: LazyLock<Script> =
    LazyLock::new(|| load(include_str!("scripts/list_api_keys.lua"), &[]));

/// Sets a tenant's quotas, if the tenant exists.
pub(super) static SET_QUOTAS: LazyLock<Script> = LazyLock::new(|| load(include_str!("scripts/set_quotas.lua"), &[]));

/// Counts a tenant's clients down and drops one from the client index.
pub(super) static COUNT_CLIENTS: LazyLock<Script> =
    LazyLock::new(|| load(include_str!("scripts/count_clients.lua"), &[CLIENT_INDEX]));

/// Adds entries to a client index bucket, splitting it when full.
pub(super) static ADD_TO_CLIENT_INDEX: LazyLock<Script> =
    LazyLock::new(|| load(include_str!("scripts/add_to_client_index.lua"), &[CLIENT_INDEX]));

/// Consecutive buckets of a client index, if the directory still has them.
pub(super) static READ_CLIENT_INDEX: LazyLock<Script> =
    LazyLock::new(|| load(include_str!("scripts/read_client_index.lua"), &[]));

/// Drops dangling entries from a client index bucket.
pub(super) static DROP_FROM_CLIENT_INDEX: LazyLock<Script> =
    LazyLock::new(|| load(include_str!("scripts/drop_from_client_index.lua"), &[CLIENT_INDEX]));

/// Moves members of the API key index from its old set to its sorted set.
pub(super) static MOVE_API_KEY_INDEX: LazyLock<Script> =
    LazyLock::new(|| load(include_str!("scripts/move_api_key_index.lua"), &[]));

/// Deletes an API key, remembers it as revoked, publishes.
pub(super) static REVOKE_API_KEY: LazyLock<Script> =
    LazyLock::new(|| load(include_str!("scripts/revoke_api_key.lua"), &[ANNOUNCE, REMEMBER]));

/// Rolls an API key: successor, old key's grace expiry, publishes.
pub(super) static ROLL_API_KEY: LazyLock<Script> =
    LazyLock::new(|| load(include_str!("scripts/roll_api_key.lua"), &[ANNOUNCE]));

/// Moves a tenant's revoked-before forward, publishes.
pub(super) static REVOKE_TENANT_BEFORE: LazyLock<Script> =
    LazyLock::new(|| load(include_str!("scripts/revoke_tenant_before.lua"), &[ANNOUNCE]));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_is_spliced() {
        for lua in [
            REMEMBER,
            ANNOUNCE,
            SESSION_FIELD,
            include_str!("scripts/create_session.lua"),
            include_str!("scripts/touch_session.lua"),
            include_str!("scripts/list_sessions.lua"),
            include_str!("scripts/revoke_session.lua"),
            include_str!("scripts/revoke_all_sessions.lua"),
            include_str!("scripts/list_api_keys.lua"),
            include_str!("scripts/move_api_key_index.lua"),
            include_str!("scripts/set_quotas.lua"),
            include_str!("scripts/count_clients.lua"),
            CLIENT_INDEX,
            include_str!("scripts/add_to_client_index.lua"),
            include_str!("scripts/read_client_index.lua"),
            include_str!("scripts/drop_from_client_index.lua"),
            include_str!("scripts/revoke_api_key.lua"),
            include_str!("scripts/roll_api_key.lua"),
            include_str!("scripts/revoke_tenant_before.lua"),
        ] {
            assert!(!splice(lua).contains("__"), "{lua}");
        }
    }
}
