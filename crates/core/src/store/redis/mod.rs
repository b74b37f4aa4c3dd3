//! The Redis store: `RedisStore` and its `Store` impl, reading like the trait.
//!
//! Layout, one sentence a module (each imports only from those below it):
//! - `client_index`: a tenant's client index of one environment (ListClients)
//!   as a directory over small buckets, and its reads and writes;
//! - `scripts`: the Lua scripts, one file each under `scripts/`;
//! - `records`: field codecs between domain records and Redis values;
//! - `keys`: every key name, and the key layout table;
//! - `conn`: options, targets, connections and the subscriber's pub/sub;
//! - `sentinel`: the `redis+sentinel://` URL and the lookup of the current
//!   master through the sentinels;
//! - `seq`: sequence numbers on published invalidations (the publisher's
//!   numbering, the subscriber's gap detection).
//!
//! A session is a field of its client's hash, kept a day past its cap so
//! that a verify can tell "expired at the cap" and "expired idle" from
//! "unknown" (see `keys` for the layout); `sr` and `kr` tell
//! "revoked". Every revocation also PUBLISHes an [`Invalidation`] on
//! [`INVALIDATION_CHANNEL`] from the same script, so caches hear of it,
//! numbered per process so that a subscriber notices a lost one (`seq`).
//!
//! A tenant's records share the slot of `{T}`, a client's the slot of `{C}`,
//! so every multi-key change is one script or MULTI on one slot: atomic and
//! cluster-safe. Every key a script touches is declared in its KEYS, even
//! those named by an index: the caller reads the index first (see
//! `revoke_sessions`), because a cluster redirects a script during a slot
//! migration by its declared keys only.
//!
//! The store runs over one standalone server or a Redis Cluster
//! ([`RedisTarget`]); the only call that differs is
//! [`Store::create_client_audited`], whose single transaction spans two slots
//! and so becomes two round trips on a cluster (the audit event first). Invalidations are plain PUBLISH, which a
//! cluster broadcasts to every node: the subscriber listens on any one live
//! node and, when that node is lost, the stream ends and the next
//! subscription picks another one from the current topology (or the seeds).
//! Behind Sentinel the store behaves as on one server, the master the
//! sentinels name: a connection that fails, or answers as a replica
//! (`READONLY`), is dropped and the next call asks the sentinels again, as
//! does the next subscription after one ends.

mod client_index;
mod conn;
mod keys;
mod records;
mod scripts;
mod sentinel;
mod seq;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use redis::{AsyncCommands, pipe};
use uuid::Uuid;

use super::{
    After, ApiKeyLookup, CLIENT_INDEX_GRACE_MS, CreateSession, Gone, INVALIDATION_CHANNEL, Invalidation, Invalidations,
    Page, Pushed, REMEMBER_MS, RollApiKey, SessionLookup, Store, StoreError, StoreResult, api_key_order, page,
    session_order,
};
use crate::clock::{Millis, now_ms};
use crate::model::{ApiKey, AuditEvent, Client, Environment, Quotas, Session, Tenant, limits};
use crate::token::{parse_short_id, short_id};
use client_index::{Guesses, added_and_count};
use conn::{Connections, PUBSUB_PING_EVERY, PUBSUB_PING_TIMEOUT};
pub use conn::{RedisAuth, RedisConn, RedisOptions, RedisTarget, RedisTls, WaitReplicas};
use keys::*;
use records::*;
use scripts::*;
pub use sentinel::SentinelTarget;
use seq::{GapDetector, HEARTBEAT_EVERY, Heard, Publisher, Ticket};

/// Redis-backed store over one multiplexed connection (to a server or a
/// cluster) plus a dedicated pub/sub connection per subscription.
#[derive(Clone)]
pub struct RedisStore {
    /// The command, writer and subscription connections.
    c: Connections,
    /// This process' numbering of what it publishes.
    publisher: Arc<Publisher>,
    /// The client index bucket each tenant environment's next creation
    /// likely writes to (this process' last one).
    guesses: Arc<Guesses>,
}

impl RedisStore {
    /// The create-session script for a client (of `owner`, when given),
    /// after the audit event `e` in one transaction when given (a standalone
    /// server or Sentinel's master: one round trip, all or nothing).
    async fn write_session(
        &self,
        s: &Session,
        owner: Option<(Uuid, Environment)>,
        max_live: usize,
        mut e: Option<&AuditEvent>,
    ) -> StoreResult<CreateSession> {
        let mut wc = self.c.w().await?;
        let (index, now) = (session_index_key(s.client_id), now_ms());
        let (field, value) = session_field(s);
        let (tenant, tenant_b62, env) = match owner {
            Some((t, env)) => (t.as_bytes().to_vec(), short_id(t), env.code()),
            None => (Vec::new(), String::new(), ""),
        };
        // Full with sessions written before they were fields, the script
        // asks for their index members to prune, so that it touches only
        // keys it is given (see `revoke_sessions`).
        let mut prune: Option<Vec<String>> = None;
        let r = loop {
            let mut create = CREATE_SESSION.key(client_key(s.client_id));
            create.key(&index).arg(&field[..]).arg(&value).arg(now).arg(max_live);
            create.arg(if prune.is_some() { "1" } else { "0" }).arg(&tenant[..]).arg(&tenant_b62).arg(env);
            for sid in prune.iter().flatten() {
                create.key(format!("{}{sid}", session_prefix(s.client_id))).arg(sid);
            }
            let r: i64 = match e.take() {
                None => create.invoke_async(&mut wc).await?,
                Some(e) => {
                    let mut p = pipe();
                    p.atomic().ignore_errors().add_command(xadd(e)).invoke_script(&create);
                    let rows: Vec<redis::Value> = p.query_async(&mut wc).await?;
                    match rows.as_slice() {
                        [redis::Value::BulkString(_), redis::Value::Int(r)] => *r,
                        // The event is written; a server that lost the
                        // script runs it on its own (loaded again).
                        [redis::Value::BulkString(_), redis::Value::ServerError(err)]
                            if err.kind() == Some(redis::ServerErrorKind::NoScript) =>
                        {
                            create.invoke_async(&mut wc).await?
                        }
                        other => return Err(StoreError::Unavailable(format!("session write failed: {other:?}"))),
                    }
                }
            };
            if r != -3 || prune.is_some() {
                break r;
            }
            prune = Some(self.members(&index, Some(now)).await?);
        };
        self.c.replicated(&mut wc).await?;
        Ok(match r {
            1 => CreateSession::Created,
            -2 | -3 => CreateSession::Full,
            _ => CreateSession::NoClient,
        })
    }

    /// Connects to a standalone Redis (`redis://host:port/db`).
    pub async fn connect(url: &str, opts: RedisOptions) -> StoreResult<RedisStore> {
        Ok(RedisStore::over(Connections::connect(url, opts).await?))
    }

    /// Connects to a Redis Cluster through any of `nodes` (`redis://host:port`
    /// each), with the same timeouts as a standalone server: `response_timeout`
    /// bounds a whole call, retries and redirections included.
    pub async fn connect_cluster(nodes: &[String], opts: RedisOptions) -> StoreResult<RedisStore> {
        Ok(RedisStore::over(Connections::connect_cluster(nodes, opts).await?))
    }

    /// Connects to `target`.
    pub async fn open(target: &RedisTarget, opts: RedisOptions) -> StoreResult<RedisStore> {
        Ok(RedisStore::over(Connections::open(target, opts).await?))
    }

    fn over(c: Connections) -> RedisStore {
        RedisStore { c, publisher: Arc::new(Publisher::new()), guesses: Arc::default() }
    }

    /// The numbered message of `inv`; keep the ticket until the script that
    /// publishes it has answered. The first one starts the announcements.
    fn numbered(&self, inv: Invalidation) -> (String, Ticket<'_>) {
        if self.publisher.first_use() {
            let (publisher, mut conn) = (Arc::downgrade(&self.publisher), self.c.conn.clone());
            tokio::spawn(async move {
                let mut every = tokio::time::interval(HEARTBEAT_EVERY);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    // Ends with the last clone of the store.
                    let Some(beat) = publisher.upgrade().and_then(|p| p.heartbeat()) else { return };
                    let sent: redis::RedisResult<i64> =
                        redis::cmd("PUBLISH").arg(INVALIDATION_CHANNEL).arg(beat).query_async(&mut conn).await;
                    if let Err(e) = sent {
                        tracing::debug!(error = %e, "invalidation heartbeat not published");
                    }
                }
            });
        }
        self.publisher.message(inv)
    }

    /// The members of the sorted set `key`: all, or those scored above
    /// `above`.
    async fn members(&self, key: &str, above: Option<Millis>) -> StoreResult<Vec<String>> {
        let min = above.map_or_else(|| "-inf".to_string(), |t| format!("({t}"));
        Ok(self.c.conn.clone().zrangebyscore(key, min, "+inf").await?)
    }

    /// Up to `limit` members of the sorted set `key` after `after` (from the
    /// start if `None`), scored above `above` if set, with their scores; and
    /// where the next page starts, if more follow.
    async fn page_of(
        &self,
        key: &str,
        above: Option<Millis>,
        after: Option<After>,
        limit: usize,
    ) -> StoreResult<(Vec<(String, Millis)>, Option<After>)> {
        let score = |s: Millis| if s == Millis::MAX { "+inf".to_string() } else { s.to_string() };
        // From the cursor's score, inclusive (ties are skipped by id below).
        let min = match (after, above) {
            (Some(a), Some(f)) if f >= a.score => format!("({f}"),
            (Some(a), _) => score(a.score),
            (None, Some(f)) => format!("({f}"),
            (None, None) => "-inf".to_string(),
        };
        let skip = after.map(|a| a.key());
        let (mut out, mut offset, batch) = (Vec::new(), 0, limit + 1);
        loop {
            let rows: Vec<(String, String)> = redis::cmd("ZRANGE")
                .arg(key)
                .arg(&min)
                .arg("+inf")
                .arg("BYSCORE")
                .arg("LIMIT")
                .arg(offset)
                .arg(batch)
                .arg("WITHSCORES")
                .query_async(&mut self.c.conn.clone())
                .await?;
            offset += rows.len();
            let full = rows.len() == batch;
            for (member, s) in rows {
                let s = if s == "inf" {
                    Millis::MAX
                } else {
                    s.parse::<f64>().map_err(|_| corrupt("index score"))? as Millis
                };
                if skip.as_ref().is_some_and(|k| (s, &member) <= (k.0, &k.1)) {
                    continue;
                }
                out.push((member, s));
            }
            if out.len() > limit || !full {
                break;
            }
        }
        let more = out.len() > limit;
        out.truncate(limit);
        let next = match out.last() {
            Some((m, s)) if more => Some(After { score: *s, id: parse_short_id(m).ok_or_else(|| corrupt("index"))? }),
            _ => None,
        };
        Ok((out, next))
    }

    /// Moves what the API key index held as a set (written before sorted
    /// sets) into the sorted set, in bounded chunks.
    async fn move_legacy_api_key_index(&self, tenant: Uuid) -> StoreResult<()> {
        let legacy = legacy_api_index_key(tenant);
        let ids: Vec<String> = self.c.conn.clone().smembers(&legacy).await?;
        if ids.is_empty() {
            return Ok(());
        }
        let mut wc = self.c.w().await?;
        for chunk in ids.chunks(500) {
            let mut mv = MOVE_API_KEY_INDEX.key(&legacy);
            mv.key(api_index_key(tenant));
            for kid in chunk {
                mv.key(format!("{}{kid}", api_key_prefix(tenant))).arg(kid);
            }
            let _: i64 = mv.invoke_async(&mut wc).await?;
        }
        self.c.replicated(&mut wc).await?;
        Ok(())
    }

    /// Revokes every session of `client` (and deletes it if `delete`): how
    /// many sessions were live, and whether the client existed. The script
    /// is given every session key it touches, as read from the index just
    /// before: a cluster applies ASK redirections and TRYAGAIN to declared
    /// keys only, so a script that derived them itself could, while the slot
    /// migrates, delete half of them and fail, or read a moved one as absent.
    /// A session created between the read and the script was created
    /// concurrently with this call, and is left; a delete reads again once
    /// the client is gone (no session can be created after that).
    async fn revoke_sessions(&self, client: Uuid, delete: bool) -> StoreResult<(u32, bool)> {
        let mut wc = self.c.w().await?;
        let index = session_index_key(client);
        let (mut revoked, mut existed) = (0, false);
        for _ in 0..2 {
            let sids = self.members(&index, None).await?;
            let (msg, _answered) = self.numbered(Invalidation::Client(client));
            let mut revoke = REVOKE_ALL_SESSIONS.key(&index);
            revoke.key(revoked_sessions_key(client)).key(client_key(client)).arg(now_ms()).arg(&msg).arg(if delete {
                "1"
            } else {
                "0"
            });
            for sid in &sids {
                revoke.key(format!("{}{sid}", session_prefix(client))).arg(sid);
            }
            let (n, was, left): (u32, i64, i64) = revoke.invoke_async(&mut wc).await?;
            (revoked, existed) = (revoked + n, existed || was == 1);
            if !delete || left == 0 {
                break;
            }
        }
        self.c.replicated(&mut wc).await?;
        Ok((revoked, existed))
    }

    /// A client's record: its client fields only (its hash also holds its
    /// sessions).
    async fn read_client(&self, id: Uuid) -> StoreResult<Option<Client>> {
        let values: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
            .arg(client_key(id))
            .arg(&CLIENT_FIELDS[..])
            .query_async(&mut self.c.conn.clone())
            .await?;
        client_from_values(id, values)
    }

    /// The underlying connection, for tests and benchmarks.
    pub fn connection(&self) -> RedisConn {
        self.c.conn.clone()
    }
}

impl Store for RedisStore {
    async fn put_tenant(&self, t: &Tenant) -> StoreResult<()> {
        let mut wc = self.c.w().await?;
        let mut fields = vec![
            ("n", t.name.clone()),
            ("i", t.idle_timeout_ms.to_string()),
            ("m", t.max_lifetime_ms.to_string()),
            ("c", t.created_at.to_string()),
        ];
        if let Some(r) = t.revoked_before {
            fields.push(("r", r.to_string()));
        }
        let q = t.quotas;
        fields.extend([
            ("qk", q.api_keys.to_string()),
            ("qc", q.clients.to_string()),
            ("qs", q.sessions_per_client.to_string()),
        ]);
        // The index first (another slot, so not in one MULTI): a tenant
        // that exists is always listed; a failed write leaves at most a
        // dangling id, skipped by the listing.
        let () = wc.zadd(TENANT_INDEX, short_id(t.id), t.created_at).await?;
        let () = wc.hset_multiple(tenant_key(t.id), &fields).await?;
        self.c.replicated(&mut wc).await?;
        Ok(())
    }

    async fn list_tenants(&self, after: Option<After>, limit: usize) -> StoreResult<Page<Tenant>> {
        let (ids, next) = self.page_of(TENANT_INDEX, None, after, limit).await?;
        // One read per tenant (each in its own slot), at once.
        let reads = ids.iter().map(|(member, _)| async move {
            let id = parse_short_id(member).ok_or_else(|| corrupt("tenant index"))?;
            let f: HashMap<String, Vec<u8>> = self.c.conn.clone().hgetall(tenant_key(id)).await?;
            tenant_from(id, f)
        });
        let items = futures::future::try_join_all(reads).await?.into_iter().flatten().collect();
        Ok(Page { items, next })
    }

    async fn get_tenant(&self, id: Uuid) -> StoreResult<Option<Tenant>> {
        let f: HashMap<String, Vec<u8>> = self.c.conn.clone().hgetall(tenant_key(id)).await?;
        tenant_from(id, f)
    }

    async fn revoke_tenant_before(&self, id: Uuid, before: Millis, now: Millis) -> StoreResult<Option<Tenant>> {
        let mut wc = self.c.w().await?;
        let (msg, _answered) = self.numbered(Invalidation::Tenant(id));
        let f: HashMap<String, Vec<u8>> = REVOKE_TENANT_BEFORE
            .key(tenant_key(id))
            .arg(before)
            .arg(now + limits::CLOCK_SKEW_MS)
            .arg(now + 1)
            .arg(&msg)
            .invoke_async(&mut wc)
            .await?;
        self.c.replicated(&mut wc).await?;
        tenant_from(id, f)
    }

    async fn put_api_key(&self, k: &ApiKey, max: u64) -> StoreResult<bool> {
        let mut wc = self.c.w().await?;
        let (key, index) = (api_key_key(k.tenant_id, k.id), api_index_key(k.tenant_id));
        let mut p = pipe();
        p.atomic().hset_multiple(&key, &api_key_fields(k)).ignore();
        // Kept a day past its expiry, so a use then is told "expired".
        if let Some(x) = k.expires_at {
            p.cmd("PEXPIREAT").arg(&key).arg(x + REMEMBER_MS).ignore();
        }
        p.zadd(&index, short_id(k.id), k.created_at).ignore();
        // Counted in the same transaction: over the quota, taken back.
        p.zcard(&index).scard(legacy_api_index_key(k.tenant_id));
        let (sorted, legacy): (u64, u64) = p.query_async(&mut wc).await?;
        if sorted + legacy > max {
            let () =
                pipe().atomic().del(&key).ignore().zrem(&index, short_id(k.id)).ignore().query_async(&mut wc).await?;
            self.c.replicated(&mut wc).await?;
            return Ok(false);
        }
        self.c.replicated(&mut wc).await?;
        Ok(true)
    }

    async fn set_quotas(&self, tenant: Uuid, q: Quotas) -> StoreResult<Option<Tenant>> {
        let mut wc = self.c.w().await?;
        let f: HashMap<String, Vec<u8>> = SET_QUOTAS
            .key(tenant_key(tenant))
            .arg(q.api_keys)
            .arg(q.clients)
            .arg(q.sessions_per_client)
            .invoke_async(&mut wc)
            .await?;
        self.c.replicated(&mut wc).await?;
        tenant_from(tenant, f)
    }

    async fn uncount_client(&self, c: &Client) -> StoreResult<()> {
        let mut wc = self.c.w().await?;
        client_index::uncount(&self.c.conn, &mut wc, c).await?;
        self.c.replicated(&mut wc).await?;
        Ok(())
    }

    async fn get_api_key(&self, tenant: Uuid, id: Uuid) -> StoreResult<ApiKeyLookup> {
        let (k, t, r): (Hash, Hash, Option<f64>) = pipe()
            .hgetall(api_key_key(tenant, id))
            .hgetall(tenant_key(tenant))
            .zscore(revoked_api_keys_key(tenant), short_id(id))
            .query_async(&mut self.c.conn.clone())
            .await?;
        let (mut key, mut gone) = (api_key_from(tenant, id, k)?, r.map(|_| Gone::Revoked));
        // Past its expiry (kept a day to say so): gone, not live.
        if let Some(k) = key.take_if(|k| k.expires_at.is_some_and(|x| x <= now_ms())) {
            gone = Some(if k.successor.is_some() { Gone::Revoked } else { Gone::ExpiredMax });
        }
        Ok(ApiKeyLookup { key, tenant: tenant_from(tenant, t)?, gone })
    }

    async fn list_api_keys(&self, tenant: Uuid, after: Option<After>, limit: usize) -> StoreResult<Page<ApiKey>> {
        self.move_legacy_api_key_index(tenant).await?;
        let index = api_index_key(tenant);
        let (ids, next) = self.page_of(&index, None, after, limit).await?;
        let mut list = LIST_API_KEYS.key(&index);
        for (kid, _) in &ids {
            list.key(format!("{}{kid}", api_key_prefix(tenant))).arg(kid);
        }
        let rows: Vec<(String, HashMap<String, Vec<u8>>)> = list.invoke_async(&mut self.c.conn.clone()).await?;
        let mut items = Vec::with_capacity(rows.len());
        let now = now_ms();
        for (kid, f) in rows {
            let id = parse_short_id(&kid).ok_or_else(|| corrupt("api key index"))?;
            // Expired keys are kept a day to name the cause; not listed.
            items.extend(api_key_from(tenant, id, f)?.filter(|k| k.expires_at.is_none_or(|x| x > now)));
        }
        items.sort_by_cached_key(|k| api_key_order(k).key());
        Ok(Page { items, next })
    }

    async fn revoke_api_key(&self, tenant: Uuid, id: Uuid) -> StoreResult<Option<ApiKey>> {
        let mut wc = self.c.w().await?;
        let (msg, _answered) = self.numbered(Invalidation::ApiKey { tenant, key: id });
        let f: HashMap<String, Vec<u8>> = REVOKE_API_KEY
            .key(api_key_key(tenant, id))
            .key(api_index_key(tenant))
            .key(revoked_api_keys_key(tenant))
            .key(legacy_api_index_key(tenant))
            .arg(short_id(id))
            .arg(now_ms())
            .arg(&msg)
            .invoke_async(&mut wc)
            .await?;
        self.c.replicated(&mut wc).await?;
        api_key_from(tenant, id, f)
    }

    async fn roll_api_key(&self, old: Uuid, new: &ApiKey, old_expires_at: Millis) -> StoreResult<RollApiKey> {
        let mut wc = self.c.w().await?;
        let t = new.tenant_id;
        let (msg, _answered) = self.numbered(Invalidation::ApiKey { tenant: t, key: old });
        let mut inv = ROLL_API_KEY.key(api_key_key(t, old));
        inv.key(api_key_key(t, new.id))
            .key(api_index_key(t))
            .arg(short_id(new.id))
            .arg(old_expires_at)
            .arg(new.expires_at.unwrap_or(0))
            .arg(&msg)
            .arg(now_ms())
            .arg(new.created_at);
        for (name, value) in api_key_fields(new) {
            inv.arg(name).arg(value);
        }
        let r: i64 = inv.invoke_async(&mut wc).await?;
        self.c.replicated(&mut wc).await?;
        Ok(match r {
            1 => RollApiKey::Rolled,
            -1 => RollApiKey::AlreadyRolled,
            _ => RollApiKey::NotFound,
        })
    }

    async fn create_client(&self, c: &Client, first: Option<&Session>) -> StoreResult<()> {
        let mut wc = self.c.w().await?;
        let mut p = pipe();
        p.atomic();
        push_client_writes(&mut p, c, first)?;
        let () = p.query_async(&mut wc).await?;
        self.c.replicated(&mut wc).await?;
        Ok(())
    }

    async fn create_client_audited(
        &self,
        c: &Client,
        first: Option<&Session>,
        e: &AuditEvent,
        max: u64,
    ) -> StoreResult<bool> {
        // The count and the listing go together, on the tenant's slot: the
        // index entry to the bucket this process last wrote to (see
        // `client_index`), or, when that guess is wrong, in a call of its own
        // just after.
        let guess = self.guesses.guess(&self.c.conn, c).await?;
        let count = |p: &mut redis::Pipeline| {
            client_index::push_add(p, c, &guess);
            p.cmd("HINCRBY").arg(tenant_key(c.tenant_id)).arg("nc").arg(1);
        };
        if let RedisConn::Cluster(_) = self.c.conn {
            // The client's slot and the tenant's (audit stream, count,
            // listing) may live on two nodes: the event, the count and the
            // listing, then the client.
            let mut wc = self.c.w().await?;
            let mut p = pipe();
            // An add that did not run (`NOSCRIPT`) is read, not raised (the
            // event's answer is kept to be checked).
            p.atomic().ignore_errors().add_command(xadd(e));
            count(&mut p);
            let rows: Vec<redis::Value> = p.query_async(&mut wc).await?;
            let (added, n) = added_and_count(&rows)?;
            if n > max {
                self.uncount_client(c).await?;
                return Ok(false);
            }
            let made = async {
                self.guesses.settle(&self.c.conn, &mut wc, c, added).await?;
                self.create_client(c, first).await
            };
            if let Err(err) = made.await {
                // Not created: not counted (best effort; a failure leaves
                // the count one high, never low).
                let _ = self.uncount_client(c).await;
                return Err(err);
            }
            return Ok(true);
        }
        let mut wc = self.c.w().await?;
        // One transaction, the event and the count included: all or none
        // (the index entry too, unless the guess was wrong: then it follows).
        // EXEC's reply is kept so that an aborted transaction fails the call;
        // an add that did not run (`NOSCRIPT`) is read, not raised.
        let mut p = pipe();
        p.ignore_errors().cmd("MULTI").ignore();
        push_client_writes(&mut p, c, first)?;
        p.add_command(xadd(e)).ignore();
        client_index::push_add(&mut p, c, &guess);
        p.ignore().cmd("HINCRBY").arg(tenant_key(c.tenant_id)).arg("nc").arg(1).ignore();
        p.cmd("EXEC");
        let (exec,): (redis::Value,) = p.query_async(&mut wc).await?;
        let (added, n) = match exec {
            redis::Value::Array(v) => added_and_count(&v)?,
            other => return Err(StoreError::Unavailable(format!("client write not applied: {other:?}"))),
        };
        // Taken back: its token was never returned.
        let take_back = async |wc: &mut RedisConn| -> StoreResult<()> {
            let mut undo = pipe();
            undo.atomic().del(client_key(c.id)).ignore();
            let () = undo.query_async(wc).await?;
            self.uncount_client(c).await
        };
        if n > max {
            // Over the quota.
            take_back(&mut wc).await?;
            return Ok(false);
        }
        if let Err(err) = self.guesses.settle(&self.c.conn, &mut wc, c, added).await {
            // Not listed: not kept either (best effort, as on a cluster).
            let _ = take_back(&mut wc).await;
            return Err(err);
        }
        self.c.replicated(&mut wc).await?;
        Ok(true)
    }

    async fn get_client(&self, id: Uuid) -> StoreResult<Option<Client>> {
        self.read_client(id).await
    }

    async fn list_clients(
        &self,
        tenant: Uuid,
        env: Option<Environment>,
        after: Option<After>,
        limit: usize,
    ) -> StoreResult<Page<Client>> {
        let envs = match env {
            Some(e) => vec![e],
            None => vec![Environment::Production, Environment::Test],
        };
        // A page of each index, merged: the first `limit` of both are among
        // the first `limit` of each.
        let pages = envs.iter().map(|&e| async move {
            let (rows, more) = client_index::page(&self.c, tenant, e, after, limit).await?;
            Ok::<_, StoreError>((rows.into_iter().map(move |r| (r, e)).collect::<Vec<_>>(), more))
        });
        let (mut rows, mut more) = (Vec::new(), false);
        for (r, m) in futures::future::try_join_all(pages).await? {
            rows.extend(r);
            more |= m;
        }
        rows.sort_unstable_by(|(a, _), (b, _)| (a.created, &a.id).cmp(&(b.created, &b.id)));
        more |= rows.len() > limit;
        rows.truncate(limit);
        let next = match rows.last() {
            Some((r, _)) if more => {
                Some(After { score: r.created, id: parse_short_id(&r.id).ok_or_else(|| corrupt("client index"))? })
            }
            _ => None,
        };
        // One read per client (each in its own slot), at once.
        let reads = rows.iter().map(|(r, _)| async move {
            let id = parse_short_id(&r.id).ok_or_else(|| corrupt("client index"))?;
            self.read_client(id).await
        });
        let found = futures::future::try_join_all(reads).await?;
        let (mut items, mut gone) = (Vec::with_capacity(rows.len()), Vec::new());
        let old = now_ms() - CLIENT_INDEX_GRACE_MS;
        for ((r, e), c) in rows.into_iter().zip(found) {
            match c {
                Some(c) if c.tenant_id == tenant && c.env == e => items.push(c),
                // Gone (its delete's count-down failed) or taken back; a
                // young entry may be a creation under way: kept.
                _ if r.created < old => gone.push((e, r)),
                _ => {}
            }
        }
        if !gone.is_empty() {
            let mut wc = self.c.w().await?;
            for e in envs {
                let entries: Vec<_> = gone.iter().filter(|(x, _)| *x == e).map(|(_, r)| r).collect();
                client_index::drop_entries(&mut wc, tenant, e, &entries).await?;
            }
        }
        Ok(Page { items, next })
    }

    async fn delete_client(&self, id: Uuid) -> StoreResult<bool> {
        let (_, existed) = self.revoke_sessions(id, true).await?;
        Ok(existed)
    }

    async fn create_session(&self, s: &Session, max_live: usize) -> StoreResult<CreateSession> {
        self.write_session(s, None, max_live, None).await
    }

    async fn create_session_audited(
        &self,
        s: &Session,
        owner: (Uuid, Environment),
        e: &AuditEvent,
        max_live: usize,
    ) -> StoreResult<CreateSession> {
        if let RedisConn::Cluster(_) = self.c.conn {
            // The audit stream (the tenant's slot) and the client may live
            // on two nodes: the event first, then the session.
            let _: String = xadd(e).query_async(&mut self.c.w().await?).await?;
            return self.write_session(s, Some(owner), max_live, None).await;
        }
        self.write_session(s, Some(owner), max_live, Some(e)).await
    }

    async fn get_session(&self, client: Uuid, id: Uuid) -> StoreResult<SessionLookup> {
        let (legacy, sid, now) = (session_key(client, id), short_id(id), now_ms());
        let revoked = revoked_sessions_key(client);
        // The session's field with the client's, and what tells a gone one
        // (the revoked set, by 16 bytes or, before, base62); and the session
        // as written before sessions were fields.
        #[allow(clippy::type_complexity)]
        let (mut c, revoked_raw, revoked_old, old, old_exp, old_cap): (
            Vec<Option<Vec<u8>>>,
            Option<f64>,
            Option<f64>,
            Option<Vec<u8>>,
            i64,
            Option<f64>,
        ) = pipe()
            .cmd("HMGET")
            .arg(client_key(client))
            .arg(&CLIENT_FIELDS[..])
            .arg(id.as_bytes())
            .zscore(&revoked, id.as_bytes())
            .zscore(&revoked, &sid)
            .get(&legacy)
            .cmd("PEXPIRETIME")
            .arg(&legacy)
            .zscore(session_index_key(client), &sid)
            .query_async(&mut self.c.conn.clone())
            .await?;
        let field = c.pop().ok_or_else(|| corrupt("HMGET"))?;
        let client_record = client_from_values(client, c)?;
        let was_revoked = revoked_raw.is_some() || revoked_old.is_some();
        let (session, gone) = match field {
            Some(v) => match session_state(session_from_field(client, id, &v)?, now) {
                Ok(s) => (Some(s), None),
                Err(why) => (None, why),
            },
            None => match legacy_session_from(client, id, old, old_exp)? {
                Some(s) => (Some(s), None),
                None => (None, gone(old_cap, was_revoked, now)),
            },
        };
        Ok(SessionLookup { client: client_record, session, gone })
    }

    async fn touch_session(&self, client: Uuid, id: Uuid, now: Millis, idle_ms: Millis) -> StoreResult<Option<Millis>> {
        let r: i64 = TOUCH_SESSION
            .key(client_key(client))
            .key(session_key(client, id))
            .arg(id.as_bytes())
            .arg(now)
            .arg(idle_ms)
            .invoke_async(&mut self.c.conn.clone())
            .await?;
        Ok(match r {
            -2 => None,
            -1 => Some(Millis::MAX),
            e => Some(e),
        })
    }

    async fn list_sessions(&self, client: Uuid, after: Option<After>, limit: usize) -> StoreResult<Page<Session>> {
        let now = now_ms();
        // Sessions written before they were fields (never moved), then the
        // fields. Index members past their cap are kept a day: not live.
        let old = self.members(&session_index_key(client), Some(now)).await?;
        let mut items = Vec::new();
        if !old.is_empty() {
            let mut list = LIST_SESSIONS.prepare_invoke();
            for sid in &old {
                list.key(format!("{}{sid}", session_prefix(client))).arg(sid);
            }
            let rows: Vec<(String, Vec<u8>, i64)> = list.invoke_async(&mut self.c.conn.clone()).await?;
            for (sid, v, exp) in rows {
                let id = parse_short_id(&sid).ok_or_else(|| corrupt("session index"))?;
                items.extend(legacy_session_from(client, id, Some(v), exp)?);
            }
        }
        let fields: Vec<(Vec<u8>, Vec<u8>)> = self.c.conn.clone().hgetall(client_key(client)).await?;
        for (name, v) in fields {
            let Ok(id) = Uuid::from_slice(&name) else { continue };
            items.extend(session_state(session_from_field(client, id, &v)?, now).ok());
        }
        Ok(page(items, session_order, after, limit))
    }

    async fn revoke_session(&self, client: Uuid, id: Uuid) -> StoreResult<bool> {
        let mut wc = self.c.w().await?;
        let (msg, _answered) = self.numbered(Invalidation::Session { client, session: id });
        let n: i64 = REVOKE_SESSION
            .key(client_key(client))
            .key(revoked_sessions_key(client))
            .key(session_key(client, id))
            .key(session_index_key(client))
            .arg(id.as_bytes())
            .arg(now_ms())
            .arg(&msg)
            .arg(short_id(id))
            .invoke_async(&mut wc)
            .await?;
        self.c.replicated(&mut wc).await?;
        Ok(n == 1)
    }

    async fn revoke_all_sessions(&self, client: Uuid) -> StoreResult<u32> {
        Ok(self.revoke_sessions(client, false).await?.0)
    }

    async fn append_audit(&self, e: &AuditEvent) -> StoreResult<String> {
        let mut wc = self.c.w().await?;
        let id: String = xadd(e).query_async(&mut wc).await?;
        self.c.replicated(&mut wc).await?;
        Ok(id)
    }

    async fn ping(&self) -> StoreResult<()> {
        let () = redis::cmd("PING").query_async(&mut self.c.conn.clone()).await.map(|_: String| ())?;
        Ok(())
    }

    async fn subscribe(&self) -> StoreResult<Invalidations> {
        use futures::StreamExt;
        enum Event {
            Message(String),
            Tick,
            Dead(String),
        }
        let (pubsub, moved) = self.c.pubsub().await?;
        let (sink, messages) = pubsub.split();
        // The stream ends when the connection does, when a PING on it goes
        // unanswered (see `PUBSUB_PING_EVERY`), or when the sentinels name
        // another master; a numbered message found missing (see `seq`) is
        // told as `Pushed::Missed`.
        let alive = futures::stream::unfold((sink, moved), |(mut sink, moved)| async move {
            tokio::time::sleep(PUBSUB_PING_EVERY).await;
            let event = match tokio::time::timeout(PUBSUB_PING_TIMEOUT, sink.ping::<redis::Value>()).await {
                Ok(Ok(_)) if moved.moved() => Event::Dead("the sentinels name another master".to_string()),
                Ok(Ok(_)) => Event::Tick,
                Ok(Err(e)) => Event::Dead(format!("PING failed: {e}")),
                Err(_) => Event::Dead(format!("no answer to PING within {PUBSUB_PING_TIMEOUT:?}")),
            };
            Some((event, (sink, moved)))
        });
        let messages = messages
            .filter_map(|m| std::future::ready(m.get_payload::<String>().ok().map(Event::Message)))
            .chain(futures::stream::once(async { Event::Dead("the connection closed".to_string()) }));
        let merged = futures::stream::select(messages, alive)
            .scan(GapDetector::default(), |gaps, event| {
                let heard = match event {
                    Event::Message(text) => Some(gaps.on_message(&text, Instant::now())),
                    Event::Tick => Some(gaps.check(Instant::now()).map_or(Heard::Nothing, Heard::Missed)),
                    Event::Dead(why) => {
                        tracing::warn!(reason = %why, "invalidation subscription dead");
                        None
                    }
                };
                std::future::ready(heard)
            })
            .filter_map(|heard| async move {
                match heard {
                    Heard::Invalidate(inv) => Some(Pushed::Invalidation(inv)),
                    Heard::Missed(why) => {
                        tracing::warn!(reason = %why, "a numbered invalidation is missing");
                        Some(Pushed::Missed)
                    }
                    Heard::Nothing => None,
                }
            });
        Ok(Box::pin(merged))
    }

    async fn list_audit(
        &self,
        tenant: Uuid,
        after: Option<&str>,
        limit: usize,
        newest_first: bool,
    ) -> StoreResult<Vec<AuditEvent>> {
        // Exclusive ranges ("(id") from the cursor: Redis 6.2 and later.
        let (cmd, from, to) = match newest_first {
            false => ("XRANGE", after.map_or_else(|| "-".to_string(), |a| format!("({a}")), "+"),
            true => ("XREVRANGE", after.map_or_else(|| "+".to_string(), |a| format!("({a}")), "-"),
        };
        let rows: Vec<(String, HashMap<String, String>)> = redis::cmd(cmd)
            .arg(audit_key(tenant))
            .arg(from)
            .arg(to)
            .arg("COUNT")
            .arg(limit)
            .query_async(&mut self.c.conn.clone())
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
