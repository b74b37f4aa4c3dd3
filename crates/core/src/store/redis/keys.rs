//! Every Redis key name of the store, and the layout they make.
//!
//! Key layout (ids in their 22-character base62 form, `{…}` a hash tag):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `t:{T}` | hash | tenant T: `n` name, `i` idle ms, `m` max ms, `c` created, `r` revoked-before, `qk` `qc` `qs` quotas (API keys, clients, sessions per client), `nc` clients counted |
//! | `k:{T}:K` | hash | API key K of T: `e` env, `n` name, `s` scopes, `c` created, `x` expiry, `r` successor, `h` hash; TTL = expiry + 1 day (past the expiry it is read as "expired", never as live) |
//! | `kx:{T}` | sorted set | ids of T's API keys scored by creation time (pruned on list; pages of ListApiKeys) |
//! | `cd:{T}:E` | sorted set | the directory of T's client index of environment E (`p`, `t`): its buckets, each as its low id (22 characters) then its name B, scored by its low creation ms (the first one's -inf): a bucket's low bound is (ms, id) |
//! | `cx:{T}:E:B` | sorted set | bucket B of that index: ids of T's clients of E scored by creation time, from B's low bound (ms, id) up to the next bucket's; split at 96 entries (stays listpack-encoded), dropped from `cd` once empty (ListClients, see `client_index`); written with the client count `nc`, removed with its count-down; entries whose client is gone are skipped, and pruned once older than `CLIENT_INDEX_GRACE_MS` |
//! | `cx:{T}:E` | sorted set | T's client index of E as one sorted set, as written before buckets (moved into them by the next listing or creation) |
//! | `tx` | sorted set | every tenant's id scored by creation time (ListTenants; the one key outside a tenant's slot, written before the tenant itself) |
//! | `ki:{T}` | set | ids of T's API keys as written before `kx` (moved into `kx` by the next list) |
//! | `a:{T}` | stream | T's audit trail, capped |
//! | `c:{C}` | hash | client C: `t` tenant (16 bytes; base62 before), `e` env, `c` created, `l` labels (JSON); and each session S of C as a field named by S's 16 bytes: hash (16) ‖ created ‖ cap ‖ last use ‖ expiry, each 6-byte big-endian ms, 0 for none (a test key has neither cap nor expiry) |
//! | `sr:{C}` | sorted set | C's revoked session ids (16 bytes; base62 before), scored by how long to remember them; at most `REMEMBER_MAX` |
//! | `s:{C}:S`, `si:{C}` | string, sorted set | sessions as written before they were fields of `c:{C}` (the 40-byte value with 8-byte times, TTL = expiry; the index scored by cap): never written now; read, touched, counted and revoked where they are (not moved: an older authd still revokes them there during a rollout) |
//! | `kr:{T}` | sorted set | T's revoked API key ids, scored by how long to remember them; at most `REMEMBER_MAX` |
//!
//! A session field is kept until its client's next session write prunes it, read
//! as unknown once a day past its cap, so that a verify can tell "expired at the cap" and
//! "expired idle" from "unknown", and an API key
//! outlives its expiry by a day for the same reason (a rolled key past its
//! grace reads as "revoked"); `sr` and `kr` tell "revoked". Every revocation also PUBLISHes an [`Invalidation`] on
//! [`INVALIDATION_CHANNEL`] from the same script, so caches hear of it.
//!
//! A tenant's records share the slot of `{T}`, a client's the slot of `{C}`,
//! so every multi-key change is one script or MULTI on one slot: atomic and
//! cluster-safe. Scripts are given every key they touch in KEYS, those listed
//! by an index included (the caller reads the index first).

use uuid::Uuid;

use crate::model::Environment;
use crate::token::short_id;

pub(super) fn tenant_key(t: Uuid) -> String {
    format!("t:{{{}}}", short_id(t))
}
/// The index of every tenant (ListTenants). Not in any tenant's slot: it is
/// written on its own before the tenant, so a listed id may be dangling
/// (skipped when read), but a tenant that exists is never missing from it.
pub(super) const TENANT_INDEX: &str = "tx";
pub(super) fn api_key_key(t: Uuid, k: Uuid) -> String {
    format!("k:{{{}}}:{}", short_id(t), short_id(k))
}
pub(super) fn api_index_key(t: Uuid) -> String {
    format!("kx:{{{}}}", short_id(t))
}
/// The API key index as a set, before `kx`: read only to move its members.
pub(super) fn legacy_api_index_key(t: Uuid) -> String {
    format!("ki:{{{}}}", short_id(t))
}
/// The directory of T's client index of one environment (ListClients): one
/// index per environment, so that a filtered listing reads only what it
/// lists.
pub(super) fn client_index_dir_key(t: Uuid, env: Environment) -> String {
    format!("cd:{{{}}}:{}", short_id(t), env.code())
}
/// Bucket `name` of T's client index of one environment.
pub(super) fn client_bucket_key(t: Uuid, env: Environment, name: &str) -> String {
    format!("cx:{{{}}}:{}:{name}", short_id(t), env.code())
}
/// T's client index of one environment as one sorted set, before buckets:
/// read only to move its members.
pub(super) fn legacy_client_index_key(t: Uuid, env: Environment) -> String {
    format!("cx:{{{}}}:{}", short_id(t), env.code())
}
pub(super) fn audit_key(t: Uuid) -> String {
    format!("a:{{{}}}", short_id(t))
}
pub(super) fn client_key(c: Uuid) -> String {
    format!("c:{{{}}}", short_id(c))
}
/// Prefix of C's session strings (before sessions were client hash fields).
pub(super) fn session_prefix(c: Uuid) -> String {
    format!("s:{{{}}}:", short_id(c))
}
/// A session string (before sessions were client hash fields).
pub(super) fn session_key(c: Uuid, s: Uuid) -> String {
    format!("s:{{{}}}:{}", short_id(c), short_id(s))
}
/// C's session index (before sessions were client hash fields).
pub(super) fn session_index_key(c: Uuid) -> String {
    format!("si:{{{}}}", short_id(c))
}
pub(super) fn revoked_sessions_key(c: Uuid) -> String {
    format!("sr:{{{}}}", short_id(c))
}
pub(super) fn revoked_api_keys_key(t: Uuid) -> String {
    format!("kr:{{{}}}", short_id(t))
}
/// Prefix of T's API key keys (the list script appends each id).
pub(super) fn api_key_prefix(t: Uuid) -> String {
    format!("k:{{{}}}:", short_id(t))
}
