//! The Redis store.
//!
//! Key layout (ids in their 22-character base62 form, `{…}` a hash tag):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `t:{T}` | hash | tenant T: `n` name, `i` idle ms, `m` max ms, `c` created, `r` revoked-before |
//! | `k:{T}:K` | hash | API key K of T: `e` env, `n` name, `s` scopes, `c` created, `x` expiry, `r` successor, `h` hash; TTL = expiry |
//! | `ki:{T}` | set | ids of T's API keys (pruned on list) |
//! | `a:{T}` | stream | T's audit trail, capped |
//! | `c:{C}` | hash | client C: `t` tenant, `e` env, `c` created, `l` labels (JSON) |
//! | `s:{C}:S` | string | session S of C, 40 bytes: hash (16) ‖ created ‖ cap (0 = test key) ‖ last use, each i64 big-endian; TTL = expiry |
//! | `si:{C}` | sorted set | C's session ids scored by cap (+inf for a test key); TTL = the largest cap + 1 day |
//! | `sr:{C}` | sorted set | C's revoked session ids, scored by how long to remember them |
//! | `kr:{T}` | sorted set | T's revoked API key ids, scored by how long to remember them |
//!
//! `si` outlives its members' caps by a day so that a verify can tell
//! "expired at the cap" and "expired idle" from "unknown"; `sr` and `kr` tell
//! "revoked". Every revocation also PUBLISHes an [`Invalidation`] on
//! [`INVALIDATION_CHANNEL`] from the same script, so caches hear of it.
//!
//! A tenant's records share the slot of `{T}`, a client's the slot of `{C}`,
//! so every multi-key change is one script or MULTI on one slot: atomic and
//! cluster-safe. Scripts refer to session keys they derive from the index
//! (same hash tag, so same slot).
//!
//! The store runs over one standalone server or a Redis Cluster
//! ([`RedisTarget`]); the only call that differs is
//! [`Store::create_client_audited`], whose single round trip spans two slots
//! and so becomes two on a cluster. Invalidations are plain PUBLISH, which a
//! cluster broadcasts to every node: the subscriber listens on any one live
//! node and, when that node is lost, the stream ends and the next
//! subscription picks another one from the current topology (or the seeds).

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{
    AsyncCommands, Cmd, ConnectionAddr, ConnectionInfo, ErrorKind, IntoConnectionInfo, Pipeline, RedisError,
    RedisFuture, Script, Value, pipe,
};
use uuid::Uuid;

use super::{
    AUDIT_MAX_LEN, ApiKeyLookup, CreateSession, Gone, INVALIDATION_CHANNEL, Invalidation, Invalidations, REMEMBER_MS,
    REMEMBER_REVOKED_MS, RollApiKey, SessionLookup, Store, StoreError, StoreResult,
};
use crate::model::{ApiKey, AuditEvent, Client, Environment, Millis, Scopes, Session, Tenant, now_ms};
use crate::token::{SecretHash, parse_short_id, short_id};

/// How the Redis store connects.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Longest wait for one command's answer; past it the call fails
    /// UNAVAILABLE (fail closed).
    pub response_timeout: Duration,
    /// Longest wait for a (re)connection.
    pub connection_timeout: Duration,
    /// After every write, `WAIT` for replicas to acknowledge it (`None`: do
    /// not wait). See [`WaitReplicas`].
    pub wait_replicas: Option<WaitReplicas>,
}

/// Replica acknowledgement of writes: after each write, `WAIT replicas
/// timeout` on the connection that wrote. Fewer acknowledgements within the
/// timeout fail the call `Unavailable` ("not replicated"); the write stays
/// on the master (the caller never received the credential, or retries an
/// idempotent revocation).
#[derive(Debug, Clone, Copy)]
pub struct WaitReplicas {
    /// Replicas that must acknowledge, at least 1.
    pub replicas: u32,
    /// Longest wait for them, at least 1 ms (`WAIT n 0` would block forever).
    pub timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            response_timeout: Duration::from_millis(500),
            connection_timeout: Duration::from_millis(500),
            wait_replicas: None,
        }
    }
}

/// Where the store's Redis is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server: `redis://host:port/db`.
    Standalone(String),
    /// A Redis Cluster, by some of its nodes (`redis://host:port` each); the
    /// rest of the topology is discovered from them.
    Cluster(Vec<String>),
}

/// The command connection: multiplexed and self-reconnecting in both forms
/// (commands of all tasks are pipelined on it). A cluster connection routes
/// each command, script and pipeline by the slot of its keys, follows
/// MOVED/ASK and refreshes the topology after a failover.
#[derive(Clone)]
pub enum RedisConn {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Standalone(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Standalone(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Standalone(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
        }
    }
}

/// How the invalidation subscriber connects (a dedicated pub/sub connection).
#[derive(Clone)]
enum Subscriber {
    Standalone(redis::Client),
    /// The seeds (their credentials and TLS settings are reused for any
    /// node) and the longest wait for one node.
    Cluster {
        seeds: Vec<ConnectionInfo>,
        timeout: Duration,
    },
}

/// Redis-backed store over one multiplexed connection (to a server or a
/// cluster) plus a dedicated pub/sub connection per subscription.
#[derive(Clone)]
pub struct RedisStore {
    conn: RedisConn,
    sub: Subscriber,
    /// With replica acknowledgement on: the connection writes go through
    /// (WAIT blocks the connection that issues it, so reads keep their own),
    /// and what to wait for. Standalone only.
    writer: Option<(RedisConn, WaitReplicas)>,
}

impl From<RedisError> for StoreError {
    fn from(e: RedisError) -> Self {
        match e.kind() {
            ErrorKind::Parse | ErrorKind::UnexpectedReturnType => StoreError::Corrupt(e.to_string()),
            _ => StoreError::Unavailable(e.to_string()),
        }
    }
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn tenant_key(t: Uuid) -> String {
    format!("t:{{{}}}", short_id(t))
}
fn api_key_key(t: Uuid, k: Uuid) -> String {
    format!("k:{{{}}}:{}", short_id(t), short_id(k))
}
fn api_index_key(t: Uuid) -> String {
    format!("ki:{{{}}}", short_id(t))
}
fn audit_key(t: Uuid) -> String {
    format!("a:{{{}}}", short_id(t))
}
fn client_key(c: Uuid) -> String {
    format!("c:{{{}}}", short_id(c))
}
fn session_prefix(c: Uuid) -> String {
    format!("s:{{{}}}:", short_id(c))
}
fn session_key(c: Uuid, s: Uuid) -> String {
    format!("s:{{{}}}:{}", short_id(c), short_id(s))
}
fn session_index_key(c: Uuid) -> String {
    format!("si:{{{}}}", short_id(c))
}
fn revoked_sessions_key(c: Uuid) -> String {
    format!("sr:{{{}}}", short_id(c))
}
fn revoked_api_keys_key(t: Uuid) -> String {
    format!("kr:{{{}}}", short_id(t))
}

/// A hash as HGETALL returns it.
type Hash = HashMap<String, Vec<u8>>;

/// A hash read with HGETALL.
struct Fields(HashMap<String, Vec<u8>>);

impl Fields {
    fn str(&self, f: &str) -> StoreResult<String> {
        let v = self.0.get(f).ok_or_else(|| corrupt(f))?;
        String::from_utf8(v.clone()).map_err(|_| corrupt(f))
    }
    fn int(&self, f: &str) -> StoreResult<i64> {
        self.str(f)?.parse().map_err(|_| corrupt(f))
    }
    fn opt_int(&self, f: &str) -> StoreResult<Option<i64>> {
        self.0.contains_key(f).then(|| self.int(f)).transpose()
    }
    fn hash(&self, f: &str) -> StoreResult<SecretHash> {
        let v = self.0.get(f).ok_or_else(|| corrupt(f))?;
        Ok(SecretHash(v.as_slice().try_into().map_err(|_| corrupt(f))?))
    }
    fn env(&self, f: &str) -> StoreResult<Environment> {
        Environment::from_code(&self.str(f)?).ok_or_else(|| corrupt(f))
    }
    fn id(&self, f: &str) -> StoreResult<Uuid> {
        parse_short_id(&self.str(f)?).ok_or_else(|| corrupt(f))
    }
}

fn tenant_from(id: Uuid, f: HashMap<String, Vec<u8>>) -> StoreResult<Option<Tenant>> {
    if f.is_empty() {
        return Ok(None);
    }
    let f = Fields(f);
    Ok(Some(Tenant {
        id,
        name: f.str("n")?,
        idle_timeout_ms: f.int("i")?,
        max_lifetime_ms: f.int("m")?,
        created_at: f.int("c")?,
        revoked_before: f.opt_int("r")?,
    }))
}

fn api_key_from(tenant_id: Uuid, id: Uuid, f: HashMap<String, Vec<u8>>) -> StoreResult<Option<ApiKey>> {
    if f.is_empty() {
        return Ok(None);
    }
    let f = Fields(f);
    Ok(Some(ApiKey {
        id,
        tenant_id,
        env: f.env("e")?,
        name: f.str("n")?,
        scopes: Scopes(u8::try_from(f.int("s")?).map_err(|_| corrupt("s"))?),
        created_at: f.int("c")?,
        expires_at: f.opt_int("x")?,
        successor: f.0.contains_key("r").then(|| f.id("r")).transpose()?,
        hash: f.hash("h")?,
    }))
}

fn api_key_fields(k: &ApiKey) -> Vec<(&'static str, Vec<u8>)> {
    let mut v = vec![
        ("e", k.env.code().as_bytes().to_vec()),
        ("n", k.name.as_bytes().to_vec()),
        ("s", k.scopes.0.to_string().into_bytes()),
        ("c", k.created_at.to_string().into_bytes()),
        ("h", k.hash.0.to_vec()),
    ];
    if let Some(x) = k.expires_at {
        v.push(("x", x.to_string().into_bytes()));
    }
    if let Some(r) = k.successor {
        v.push(("r", short_id(r).into_bytes()));
    }
    v
}

fn client_from(id: Uuid, f: HashMap<String, Vec<u8>>) -> StoreResult<Option<Client>> {
    if f.is_empty() {
        return Ok(None);
    }
    let f = Fields(f);
    let labels = match f.0.get("l") {
        Some(l) => serde_json::from_slice(l).map_err(|_| corrupt("l"))?,
        None => BTreeMap::new(),
    };
    Ok(Some(Client { id, tenant_id: f.id("t")?, env: f.env("e")?, labels, created_at: f.int("c")? }))
}

/// Bytes of a session value; one small string is the most compact record
/// Redis keeps (an embedded string: one allocation with its header).
const SESSION_LEN: usize = 40;

/// A session's value: hash ‖ created ‖ cap (0 = none) ‖ last use.
fn session_value(s: &Session) -> Vec<u8> {
    let mut v = Vec::with_capacity(SESSION_LEN);
    v.extend_from_slice(&s.hash.0);
    v.extend_from_slice(&s.created_at.to_be_bytes());
    v.extend_from_slice(&s.max_expires_at.unwrap_or(0).to_be_bytes());
    v.extend_from_slice(&s.last_used.to_be_bytes());
    v
}

/// A session from its value and PEXPIRETIME (-1: none).
fn session_from(client_id: Uuid, id: Uuid, v: Option<Vec<u8>>, expire: i64) -> StoreResult<Option<Session>> {
    let Some(v) = v else { return Ok(None) };
    if v.len() != SESSION_LEN {
        return Err(corrupt("session value"));
    }
    let int = |at: usize| i64::from_be_bytes(v[at..at + 8].try_into().unwrap_or_default());
    let cap = int(24);
    Ok(Some(Session {
        id,
        client_id,
        created_at: int(16),
        last_used: int(32),
        expires_at: (expire >= 0).then_some(expire),
        max_expires_at: (cap != 0).then_some(cap),
        hash: SecretHash(v[..16].try_into().map_err(|_| corrupt("session hash"))?),
    }))
}

/// Index score of a session: its cap, +inf for a test key.
fn session_score(s: &Session) -> String {
    s.max_expires_at.map_or_else(|| "+inf".to_string(), |m| m.to_string())
}

/// Appends a new session's writes to a MULTI.
fn push_session_writes(p: &mut redis::Pipeline, s: &Session) {
    let key = session_key(s.client_id, s.id);
    let set = p.cmd("SET").arg(&key).arg(session_value(s));
    if let Some(e) = s.expires_at {
        set.arg("PXAT").arg(e);
    }
    set.ignore();
}

/// Lua shared by the revoking scripts: remember `member` of the revoked set
/// `key` (until a day past its cap, or 30 days for a test key), prune what
/// is past remembering, and let the set expire with its last member.
fn lua_remember() -> String {
    format!(
        r#"
local function remember(key, member, cap, now)
  local keep
  if cap and cap ~= 'inf' then keep = tonumber(cap) + {REMEMBER_MS} else keep = now + {REMEMBER_REVOKED_MS} end
  redis.call('ZADD', key, string.format('%d', keep), member)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local top = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', key, top[2])
end
"#
    )
}

/// Appends a client's records (and its first session) to a pipeline.
fn push_client_writes(p: &mut redis::Pipeline, c: &Client, first: Option<&Session>) -> StoreResult<()> {
    let mut fields =
        vec![("t", short_id(c.tenant_id)), ("e", c.env.code().to_string()), ("c", c.created_at.to_string())];
    if !c.labels.is_empty() {
        fields.push(("l", serde_json::to_string(&c.labels).map_err(|e| corrupt(&e.to_string()))?));
    }
    p.hset_multiple(client_key(c.id), &fields).ignore();
    if let Some(s) = first {
        push_session_writes(p, s);
        let idx = session_index_key(c.id);
        p.zadd(&idx, short_id(s.id), session_score(s)).ignore();
        if let Some(m) = s.max_expires_at {
            p.cmd("PEXPIREAT").arg(&idx).arg(m + REMEMBER_MS).ignore();
        }
    }
    Ok(())
}

/// The XADD of an audit event to its tenant's capped stream.
fn xadd(e: &AuditEvent) -> redis::Cmd {
    let mut c = redis::cmd("XADD");
    c.arg(audit_key(e.tenant_id))
        .arg("MAXLEN")
        .arg("~")
        .arg(AUDIT_MAX_LEN)
        .arg("*")
        .arg("tm")
        .arg(e.time)
        .arg("ac")
        .arg(&e.actor)
        .arg("an")
        .arg(&e.action)
        .arg("s")
        .arg(e.subjects.join(" "));
    c
}

static CREATE_SESSION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"
-- KEYS: client, session, index. ARGV: sid, now, value, expiry (0 = none),
-- max live, session key prefix, index score.
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local now = tonumber(ARGV[2])
local max = tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', string.format('%d', now - {REMEMBER_MS}))
-- Members past their cap (kept a day to explain expiry) do not count; members
-- that idled out are dropped when the index is full or twice the limit.
local live = redis.call('ZCOUNT', KEYS[3], '(' .. ARGV[2], '+inf')
if live >= max or redis.call('ZCARD', KEYS[3]) >= 2 * max then
  for _, sid in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. ARGV[2], '+inf')) do
    if redis.call('EXISTS', ARGV[6] .. sid) == 0 then redis.call('ZREM', KEYS[3], sid) end
  end
  live = redis.call('ZCOUNT', KEYS[3], '(' .. ARGV[2], '+inf')
  if live >= max then return -2 end
end
if ARGV[4] ~= '0' then
  redis.call('SET', KEYS[2], ARGV[3], 'PXAT', ARGV[4])
else
  redis.call('SET', KEYS[2], ARGV[3])
end
redis.call('ZADD', KEYS[3], ARGV[7], ARGV[1])
-- The index outlives its longest-lived member by a day.
local top = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
if top[2] == 'inf' then
  redis.call('PERSIST', KEYS[3])
else
  redis.call('PEXPIREAT', KEYS[3], string.format('%d', tonumber(top[2]) + {REMEMBER_MS}))
end
return 1
"#
    ))
});

static TOUCH_SESSION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
-- KEYS: session. ARGV: now, idle. Never revives: a missing key stays missing.
-- The value is hash(16) created(8) cap(8) last-use(8); SETRANGE keeps the TTL.
local v = redis.call('GET', KEYS[1])
if not v then return -2 end
local cap = struct.unpack('>i8', string.sub(v, 25, 32))
redis.call('SETRANGE', KEYS[1], 32, struct.pack('>i8', tonumber(ARGV[1])))
if cap == 0 then return -1 end
local new = tonumber(ARGV[1]) + tonumber(ARGV[2])
if new > cap then new = cap end
local cur = redis.call('PEXPIRETIME', KEYS[1])
if new > cur then
  redis.call('PEXPIREAT', KEYS[1], string.format('%d', new))
  return new
end
return cur
"#,
    )
});

static LIST_SESSIONS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
-- KEYS: index. ARGV: session key prefix, now.
local out = {}
for _, sid in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[2], '+inf')) do
  local k = ARGV[1] .. sid
  local v = redis.call('GET', k)
  if v then table.insert(out, {sid, v, redis.call('PEXPIRETIME', k)}) end
end
return out
"#,
    )
});

static REVOKE_SESSION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"{}
-- KEYS: session, index, revoked. ARGV: sid, now, invalidation.
local n = redis.call('DEL', KEYS[1])
local cap = redis.call('ZSCORE', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if n == 1 then
  remember(KEYS[3], ARGV[1], cap, tonumber(ARGV[2]))
  redis.call('PUBLISH', '{INVALIDATION_CHANNEL}', ARGV[3])
end
return n
"#,
        lua_remember()
    ))
});

static REVOKE_ALL_SESSIONS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"{}
-- KEYS: index, revoked, client (optional: also delete the client).
-- ARGV: session key prefix, now, invalidation.
local n = 0
local members = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #members, 2 do
  if redis.call('DEL', ARGV[1] .. members[i]) == 1 then
    n = n + 1
    remember(KEYS[2], members[i], members[i + 1], tonumber(ARGV[2]))
  end
end
redis.call('DEL', KEYS[1])
local existed = 0
if KEYS[3] then existed = redis.call('DEL', KEYS[3]) end
if n > 0 or existed > 0 then redis.call('PUBLISH', '{INVALIDATION_CHANNEL}', ARGV[3]) end
return {{n, existed}}
"#,
        lua_remember()
    ))
});

static LIST_API_KEYS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
-- KEYS: index. ARGV: API key key prefix.
local out = {}
for _, kid in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local f = redis.call('HGETALL', ARGV[1] .. kid)
  if #f > 0 then table.insert(out, {kid, f}) else redis.call('SREM', KEYS[1], kid) end
end
return out
"#,
    )
});

static REVOKE_API_KEY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"{}
-- KEYS: key, index, revoked. ARGV: key id, now, invalidation.
local f = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
if #f > 0 then
  remember(KEYS[3], ARGV[1], nil, tonumber(ARGV[2]))
  redis.call('PUBLISH', '{INVALIDATION_CHANNEL}', ARGV[3])
end
return f
"#,
        lua_remember()
    ))
});

static ROLL_API_KEY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"
-- KEYS: old key, new key, index. ARGV: new id, old expiry, new expiry (0 = none),
-- invalidation of the old key, then the new key's fields as name/value pairs.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('HEXISTS', KEYS[1], 'r') == 1 then return -1 end
local x = ARGV[2]
local cur = redis.call('HGET', KEYS[1], 'x')
if cur and tonumber(cur) < tonumber(x) then x = cur end
redis.call('HSET', KEYS[1], 'r', ARGV[1], 'x', x)
redis.call('PEXPIREAT', KEYS[1], x)
redis.call('HSET', KEYS[2], unpack(ARGV, 5))
if ARGV[3] ~= '0' then redis.call('PEXPIREAT', KEYS[2], ARGV[3]) end
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('PUBLISH', '{INVALIDATION_CHANNEL}', ARGV[4])
return 1
"#
    ))
});

static REVOKE_TENANT_BEFORE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r#"
-- KEYS: tenant. ARGV: time, invalidation. Only ever moves forward.
if redis.call('EXISTS', KEYS[1]) == 0 then return {{}} end
local cur = redis.call('HGET', KEYS[1], 'r')
if not cur or tonumber(cur) < tonumber(ARGV[1]) then redis.call('HSET', KEYS[1], 'r', ARGV[1]) end
redis.call('PUBLISH', '{INVALIDATION_CHANNEL}', ARGV[2])
return redis.call('HGETALL', KEYS[1])
"#
    ))
});

/// Why a session is missing, from its index score (its cap) and whether it
/// is in the revoked set.
fn gone(cap: Option<f64>, revoked: bool, now: Millis) -> Option<Gone> {
    if revoked {
        return Some(Gone::Revoked);
    }
    cap.map(|cap| if cap <= now as f64 { Gone::ExpiredMax } else { Gone::ExpiredIdle })
}

impl RedisStore {
    /// Connects to a standalone Redis (`redis://host:port/db`).
    pub async fn connect(url: &str, opts: RedisOptions) -> StoreResult<RedisStore> {
        let client = redis::Client::open(url).map_err(|e| StoreError::Unavailable(format!("bad Redis URL: {e}")))?;
        let cfg = ConnectionManagerConfig::new()
            .set_response_timeout(Some(opts.response_timeout))
            .set_connection_timeout(Some(opts.connection_timeout))
            // A lost connection is re-dialled by the next call, with at most
            // one retry ~100-200 ms later: calls succeed again within a few
            // hundred ms of Redis accepting connections (tests/store_outage.rs).
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_with_config(client.clone(), cfg.clone()).await?;
        let writer = match opts.wait_replicas {
            Some(w) if w.replicas == 0 || w.timeout.is_zero() => {
                return Err(StoreError::Unavailable("WAIT needs at least 1 replica and a timeout of 1 ms".into()));
            }
            Some(w) => {
                // The answer to WAIT may take the whole WAIT timeout.
                let cfg = cfg.set_response_timeout(Some(opts.response_timeout + w.timeout));
                Some((RedisConn::Standalone(ConnectionManager::new_with_config(client.clone(), cfg).await?), w))
            }
            None => None,
        };
        Ok(RedisStore { conn: RedisConn::Standalone(conn), sub: Subscriber::Standalone(client), writer })
    }

    /// The connection for a write: the writer when writes wait for replicas.
    fn w(&self) -> RedisConn {
        self.writer.as_ref().map_or_else(|| self.conn.clone(), |(c, _)| c.clone())
    }

    /// After a write on `conn` (from [`Self::w`]): waits for the configured
    /// replicas to acknowledge every write of that connection so far.
    async fn replicated(&self, conn: &mut RedisConn) -> StoreResult<()> {
        let Some((_, w)) = &self.writer else { return Ok(()) };
        let acked: u32 =
            redis::cmd("WAIT").arg(w.replicas).arg(w.timeout.as_millis().max(1) as u64).query_async(conn).await?;
        if acked < w.replicas {
            return Err(StoreError::Unavailable(format!(
                "not replicated: {acked} of {} replicas acknowledged within {:?}",
                w.replicas, w.timeout
            )));
        }
        Ok(())
    }

    /// Connects to a Redis Cluster through any of `nodes` (`redis://host:port`
    /// each), with the same timeouts as a standalone server: `response_timeout`
    /// bounds a whole call, retries and redirections included.
    pub async fn connect_cluster(nodes: &[String], opts: RedisOptions) -> StoreResult<RedisStore> {
        if opts.wait_replicas.is_some() {
            // WAIT would have to go to the master of each write's slot; the
            // redis crate sends it to every master. Not offered on a cluster.
            return Err(StoreError::Unavailable("waiting for replicas is not supported on a cluster".into()));
        }
        if nodes.is_empty() {
            return Err(StoreError::Unavailable("no cluster node given".into()));
        }
        let seeds = nodes
            .iter()
            .map(|n| n.as_str().into_connection_info())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::Unavailable(format!("bad Redis URL: {e}")))?;
        let client = ClusterClientBuilder::new(seeds.clone())
            .connection_timeout(opts.connection_timeout)
            .response_timeout(opts.response_timeout)
            // A failed node or a MOVED answer is retried (after a topology
            // refresh) within the response timeout.
            .retries(3)
            .build()?;
        let conn = client.get_async_connection().await?;
        Ok(RedisStore {
            conn: RedisConn::Cluster(conn),
            sub: Subscriber::Cluster { seeds, timeout: opts.connection_timeout },
            writer: None,
        })
    }

    /// Connects to `target`.
    pub async fn open(target: &RedisTarget, opts: RedisOptions) -> StoreResult<RedisStore> {
        match target {
            RedisTarget::Standalone(url) => RedisStore::connect(url, opts).await,
            RedisTarget::Cluster(nodes) => RedisStore::connect_cluster(nodes, opts).await,
        }
    }

    /// The underlying connection, for tests and benchmarks.
    pub fn connection(&self) -> RedisConn {
        self.conn.clone()
    }

    /// A pub/sub connection subscribed to the invalidations on one live
    /// cluster node: the nodes of the current topology not flagged failing
    /// (from a rotating start, so replicas spread), then the seeds.
    async fn cluster_pubsub(&self, seeds: &[ConnectionInfo], timeout: Duration) -> StoreResult<redis::aio::PubSub> {
        let mut addrs = match self.live_nodes().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the cluster topology; trying the seed nodes");
                Vec::new()
            }
        };
        if !addrs.is_empty() {
            let start = now_ms().unsigned_abs() as usize % addrs.len();
            addrs.rotate_left(start);
        }
        for s in seeds {
            if let ConnectionAddr::Tcp(h, p) = s.addr()
                && !addrs.contains(&(h.clone(), *p))
            {
                addrs.push((h.clone(), *p));
            }
        }
        let mut last = StoreError::Unavailable("no cluster node to subscribe on".into());
        for (host, port) in addrs {
            let info = seeds[0].clone().set_addr(ConnectionAddr::Tcp(host.clone(), port));
            let attempt = async {
                let mut ps = redis::Client::open(info)?.get_async_pubsub().await?;
                ps.subscribe(INVALIDATION_CHANNEL).await?;
                Ok::<_, RedisError>(ps)
            };
            match tokio::time::timeout(timeout, attempt).await {
                Ok(Ok(ps)) => {
                    tracing::info!(node = %format!("{host}:{port}"), "listening for invalidations");
                    return Ok(ps);
                }
                Ok(Err(e)) => last = e.into(),
                Err(_) => last = StoreError::Unavailable(format!("{host}:{port} did not answer in time")),
            }
        }
        Err(last)
    }

    /// Addresses of the cluster's nodes that no one flags as failing, from
    /// `CLUSTER NODES` (asked of any node).
    async fn live_nodes(&self) -> StoreResult<Vec<(String, u16)>> {
        let text: String = redis::cmd("CLUSTER").arg("NODES").query_async(&mut self.conn.clone()).await?;
        Ok(parse_live_nodes(&text))
    }
}

/// `<id> <ip:port@bus[,host]> <flags> <master> <ping> <pong> <epoch> <link> <slots…>`
/// per line; keeps the nodes that are neither failing nor unreachable.
fn parse_live_nodes(text: &str) -> Vec<(String, u16)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (addr, flags, link) = (f.get(1)?, f.get(2)?, f.get(7)?);
            let bad = flags.split(',').any(|x| matches!(x, "fail" | "fail?" | "handshake" | "noaddr"));
            if bad || *link != "connected" {
                return None;
            }
            let (host, port) = addr.split(['@', ',']).next()?.rsplit_once(':')?;
            Some((host.to_string(), port.parse().ok()?))
        })
        .filter(|(h, p)| !h.is_empty() && *p != 0)
        .collect()
}

impl Store for RedisStore {
    async fn put_tenant(&self, t: &Tenant) -> StoreResult<()> {
        let mut wc = self.w();
        let mut fields = vec![
            ("n", t.name.clone()),
            ("i", t.idle_timeout_ms.to_string()),
            ("m", t.max_lifetime_ms.to_string()),
            ("c", t.created_at.to_string()),
        ];
        if let Some(r) = t.revoked_before {
            fields.push(("r", r.to_string()));
        }
        let () = wc.hset_multiple(tenant_key(t.id), &fields).await?;
        self.replicated(&mut wc).await?;
        Ok(())
    }

    async fn get_tenant(&self, id: Uuid) -> StoreResult<Option<Tenant>> {
        let f: HashMap<String, Vec<u8>> = self.conn.clone().hgetall(tenant_key(id)).await?;
        tenant_from(id, f)
    }

    async fn revoke_tenant_before(&self, id: Uuid, before: Millis) -> StoreResult<Option<Tenant>> {
        let mut wc = self.w();
        let f: HashMap<String, Vec<u8>> = REVOKE_TENANT_BEFORE
            .key(tenant_key(id))
            .arg(before)
            .arg(Invalidation::Tenant(id).encode())
            .invoke_async(&mut wc)
            .await?;
        self.replicated(&mut wc).await?;
        tenant_from(id, f)
    }

    async fn put_api_key(&self, k: &ApiKey) -> StoreResult<()> {
        let mut wc = self.w();
        let key = api_key_key(k.tenant_id, k.id);
        let mut p = pipe();
        p.atomic().hset_multiple(&key, &api_key_fields(k)).ignore();
        if let Some(x) = k.expires_at {
            p.cmd("PEXPIREAT").arg(&key).arg(x).ignore();
        }
        p.sadd(api_index_key(k.tenant_id), short_id(k.id)).ignore();
        let () = p.query_async(&mut wc).await?;
        self.replicated(&mut wc).await?;
        Ok(())
    }

    async fn get_api_key(&self, tenant: Uuid, id: Uuid) -> StoreResult<ApiKeyLookup> {
        let (k, t, r): (Hash, Hash, Option<f64>) = pipe()
            .hgetall(api_key_key(tenant, id))
            .hgetall(tenant_key(tenant))
            .zscore(revoked_api_keys_key(tenant), short_id(id))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(ApiKeyLookup { key: api_key_from(tenant, id, k)?, tenant: tenant_from(tenant, t)?, revoked: r.is_some() })
    }

    async fn list_api_keys(&self, tenant: Uuid) -> StoreResult<Vec<ApiKey>> {
        let rows: Vec<(String, HashMap<String, Vec<u8>>)> = LIST_API_KEYS
            .key(api_index_key(tenant))
            .arg(format!("k:{{{}}}:", short_id(tenant)))
            .invoke_async(&mut self.conn.clone())
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for (kid, f) in rows {
            let id = parse_short_id(&kid).ok_or_else(|| corrupt("api key index"))?;
            out.extend(api_key_from(tenant, id, f)?);
        }
        out.sort_by_key(|k| (k.created_at, k.id));
        Ok(out)
    }

    async fn revoke_api_key(&self, tenant: Uuid, id: Uuid) -> StoreResult<Option<ApiKey>> {
        let mut wc = self.w();
        let f: HashMap<String, Vec<u8>> = REVOKE_API_KEY
            .key(api_key_key(tenant, id))
            .key(api_index_key(tenant))
            .key(revoked_api_keys_key(tenant))
            .arg(short_id(id))
            .arg(now_ms())
            .arg(Invalidation::ApiKey { tenant, key: id }.encode())
            .invoke_async(&mut wc)
            .await?;
        self.replicated(&mut wc).await?;
        api_key_from(tenant, id, f)
    }

    async fn roll_api_key(&self, old: Uuid, new: &ApiKey, old_expires_at: Millis) -> StoreResult<RollApiKey> {
        let mut wc = self.w();
        let t = new.tenant_id;
        let mut inv = ROLL_API_KEY.key(api_key_key(t, old));
        inv.key(api_key_key(t, new.id))
            .key(api_index_key(t))
            .arg(short_id(new.id))
            .arg(old_expires_at)
            .arg(new.expires_at.unwrap_or(0))
            .arg(Invalidation::ApiKey { tenant: t, key: old }.encode());
        for (name, value) in api_key_fields(new) {
            inv.arg(name).arg(value);
        }
        let r: i64 = inv.invoke_async(&mut wc).await?;
        self.replicated(&mut wc).await?;
        Ok(match r {
            1 => RollApiKey::Rolled,
            -1 => RollApiKey::AlreadyRolled,
            _ => RollApiKey::NotFound,
        })
    }

    async fn create_client(&self, c: &Client, first: Option<&Session>) -> StoreResult<()> {
        let mut wc = self.w();
        let mut p = pipe();
        p.atomic();
        push_client_writes(&mut p, c, first)?;
        let () = p.query_async(&mut wc).await?;
        self.replicated(&mut wc).await?;
        Ok(())
    }

    async fn create_client_audited(&self, c: &Client, first: Option<&Session>, e: &AuditEvent) -> StoreResult<()> {
        if let RedisConn::Cluster(_) = self.conn {
            // The client's slot and the tenant's audit stream may live on two
            // nodes: the write, then the audit, as the trait's default does.
            self.create_client(c, first).await?;
            if let Err(err) = self.append_audit(e).await {
                tracing::warn!(%err, action = %e.action, "audit append failed");
            }
            return Ok(());
        }
        let mut wc = self.w();
        // MULTI … EXEC, then XADD, in one round trip. EXEC's reply is kept so
        // that an aborted transaction fails the call.
        let mut p = pipe();
        p.cmd("MULTI").ignore();
        push_client_writes(&mut p, c, first)?;
        p.cmd("EXEC");
        p.add_command(xadd(e)).ignore();
        let (exec,): (redis::Value,) = p.query_async(&mut wc).await?;
        self.replicated(&mut wc).await?;
        match exec {
            redis::Value::Array(_) => Ok(()),
            other => Err(StoreError::Unavailable(format!("client write not applied: {other:?}"))),
        }
    }

    async fn get_client(&self, id: Uuid) -> StoreResult<Option<Client>> {
        let f: HashMap<String, Vec<u8>> = self.conn.clone().hgetall(client_key(id)).await?;
        client_from(id, f)
    }

    async fn delete_client(&self, id: Uuid) -> StoreResult<bool> {
        let mut wc = self.w();
        let (_, existed): (i64, i64) = REVOKE_ALL_SESSIONS
            .key(session_index_key(id))
            .key(revoked_sessions_key(id))
            .key(client_key(id))
            .arg(session_prefix(id))
            .arg(now_ms())
            .arg(Invalidation::Client(id).encode())
            .invoke_async(&mut wc)
            .await?;
        self.replicated(&mut wc).await?;
        Ok(existed == 1)
    }

    async fn create_session(&self, s: &Session, max_live: usize) -> StoreResult<CreateSession> {
        let mut wc = self.w();
        let r: i64 = CREATE_SESSION
            .key(client_key(s.client_id))
            .key(session_key(s.client_id, s.id))
            .key(session_index_key(s.client_id))
            .arg(short_id(s.id))
            .arg(now_ms())
            .arg(session_value(s))
            .arg(s.expires_at.unwrap_or(0))
            .arg(max_live)
            .arg(session_prefix(s.client_id))
            .arg(session_score(s))
            .invoke_async(&mut wc)
            .await?;
        self.replicated(&mut wc).await?;
        Ok(match r {
            1 => CreateSession::Created,
            -2 => CreateSession::Full,
            _ => CreateSession::NoClient,
        })
    }

    async fn get_session(&self, client: Uuid, id: Uuid) -> StoreResult<SessionLookup> {
        let key = session_key(client, id);
        let sid = short_id(id);
        let (c, v, exp, cap, revoked): (Hash, Option<Vec<u8>>, i64, Option<f64>, Option<f64>) = pipe()
            .hgetall(client_key(client))
            .get(&key)
            .cmd("PEXPIRETIME")
            .arg(&key)
            .zscore(session_index_key(client), &sid)
            .zscore(revoked_sessions_key(client), &sid)
            .query_async(&mut self.conn.clone())
            .await?;
        let session = session_from(client, id, v, exp)?;
        let gone = if session.is_some() { None } else { gone(cap, revoked.is_some(), now_ms()) };
        Ok(SessionLookup { client: client_from(client, c)?, session, gone })
    }

    async fn touch_session(&self, client: Uuid, id: Uuid, now: Millis, idle_ms: Millis) -> StoreResult<Option<Millis>> {
        let r: i64 = TOUCH_SESSION
            .key(session_key(client, id))
            .arg(now)
            .arg(idle_ms)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(match r {
            -2 => None,
            -1 => Some(Millis::MAX),
            e => Some(e),
        })
    }

    async fn list_sessions(&self, client: Uuid) -> StoreResult<Vec<Session>> {
        let rows: Vec<(String, Vec<u8>, i64)> = LIST_SESSIONS
            .key(session_index_key(client))
            .arg(session_prefix(client))
            .arg(now_ms())
            .invoke_async(&mut self.conn.clone())
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for (sid, v, exp) in rows {
            let id = parse_short_id(&sid).ok_or_else(|| corrupt("session index"))?;
            out.extend(session_from(client, id, Some(v), exp)?);
        }
        out.sort_by_key(|s| (s.created_at, s.id));
        Ok(out)
    }

    async fn revoke_session(&self, client: Uuid, id: Uuid) -> StoreResult<bool> {
        let mut wc = self.w();
        let n: i64 = REVOKE_SESSION
            .key(session_key(client, id))
            .key(session_index_key(client))
            .key(revoked_sessions_key(client))
            .arg(short_id(id))
            .arg(now_ms())
            .arg(Invalidation::Session { client, session: id }.encode())
            .invoke_async(&mut wc)
            .await?;
        self.replicated(&mut wc).await?;
        Ok(n == 1)
    }

    async fn revoke_all_sessions(&self, client: Uuid) -> StoreResult<u32> {
        let mut wc = self.w();
        let (n, _): (u32, i64) = REVOKE_ALL_SESSIONS
            .key(session_index_key(client))
            .key(revoked_sessions_key(client))
            .arg(session_prefix(client))
            .arg(now_ms())
            .arg(Invalidation::Client(client).encode())
            .invoke_async(&mut wc)
            .await?;
        self.replicated(&mut wc).await?;
        Ok(n)
    }

    async fn append_audit(&self, e: &AuditEvent) -> StoreResult<String> {
        let mut wc = self.w();
        let id: String = xadd(e).query_async(&mut wc).await?;
        self.replicated(&mut wc).await?;
        Ok(id)
    }

    async fn ping(&self) -> StoreResult<()> {
        let () = redis::cmd("PING").query_async(&mut self.conn.clone()).await.map(|_: String| ())?;
        Ok(())
    }

    async fn subscribe(&self) -> StoreResult<Invalidations> {
        use futures::StreamExt;
        let ps = match &self.sub {
            Subscriber::Standalone(client) => {
                let mut ps = client.get_async_pubsub().await?;
                ps.subscribe(INVALIDATION_CHANNEL).await?;
                ps
            }
            Subscriber::Cluster { seeds, timeout } => self.cluster_pubsub(seeds, *timeout).await?,
        };
        Ok(Box::pin(ps.into_on_message().filter_map(|m| async move {
            let text: String = m.get_payload().ok()?;
            let inv = Invalidation::decode(&text);
            if inv.is_none() {
                tracing::warn!(message = %text, "ignoring a malformed invalidation");
            }
            inv
        })))
    }

    async fn list_audit(&self, tenant: Uuid, after: Option<&str>, limit: usize) -> StoreResult<Vec<AuditEvent>> {
        let start = after.map_or_else(|| "-".to_string(), |a| format!("({a}"));
        let rows: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
            .arg(audit_key(tenant))
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut self.conn.clone())
            .await?;
        rows.into_iter()
            .map(|(id, f)| {
                let get = |k: &str| f.get(k).cloned().ok_or_else(|| corrupt(k));
                Ok(AuditEvent {
                    id,
                    time: get("tm")?.parse().map_err(|_| corrupt("tm"))?,
                    actor: get("ac")?,
                    action: get("an")?,
                    tenant_id: tenant,
                    subjects: get("s")?.split_whitespace().map(str::to_string).collect(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::parse_live_nodes;

    #[test]
    fn live_nodes_skip_failing_and_disconnected() {
        let text = "\
a 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b 127.0.0.1:7001@17001,host.example master,fail - 1 1 2 disconnected 5461-10922
c 127.0.0.1:7002@17002 master - 0 1 3 connected 10923-16383
d 127.0.0.1:7003@17003 slave,fail? c 0 1 3 connected
e :0@0 master,noaddr - 0 0 0 disconnected
";
        assert_eq!(parse_live_nodes(text), vec![("127.0.0.1".to_string(), 7000), ("127.0.0.1".to_string(), 7002)]);
    }
}
