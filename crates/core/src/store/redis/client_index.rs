//! A tenant's client index of one environment (ListClients), bucketed so
//! that it stays small in Redis: a directory `cd:{T}:E` (a sorted set:
//! member = the bucket's low id then its name, score = its low created ms,
//! the first one's -inf) over buckets `cx:{T}:E:<name>` (sorted sets: member
//! = client id, score = created ms), each holding exactly the entries from
//! its low bound (created, id) up to the next bucket's, the listing's order:
//! a B+tree's leaf level. The low id orders buckets of equal scores, so
//! clients created in the same millisecond split like any others. A bucket
//! is split when it reaches [`SPLIT`] entries, below Redis' 128 entries of a
//! listpack-encoded sorted set (about 33 B a client in all, where one large
//! skiplist sorted set cost 120: `cred-bench B`), and leaves the directory
//! once emptied.
//!
//! Every key a script touches is in its KEYS (cluster-safe): the caller reads
//! the directory first and names the bucket; the script checks the bucket is
//! still the right one and answers "that one" otherwise. A creation writes
//! its entry inside the creation's MULTI ([`push_add`]) with the bucket this
//! process last used for the tenant's environment ([`Guesses`]), so it stays
//! one round trip; a wrong guess (a split by another process) costs one more
//! ([`Guesses::settle`]). The index as one sorted set (`cx:{T}:E`, before buckets) is
//! moved into buckets in bounded chunks by the first listing or creation
//! that finds it ([`move_legacy`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use redis::{Pipeline, Value, pipe};
use uuid::Uuid;

use super::conn::{Connections, RedisConn};
use super::keys::{client_bucket_key, client_index_dir_key, legacy_client_index_key};
use super::records::corrupt;
use super::scripts::{ADD_TO_CLIENT_INDEX, COUNT_CLIENTS, DROP_FROM_CLIENT_INDEX, READ_CLIENT_INDEX};
use crate::clock::Millis;
use crate::model::{Client, Environment};
use crate::store::{After, StoreError, StoreResult};
use crate::token::short_id;

/// Entries at which a bucket is split: under Redis' default 128 listpack
/// entries of a sorted set, with room for a chunk of moved entries (32).
pub(super) const SPLIT: usize = 96;
/// Entries of the old single index moved by one script call.
const MOVE_CHUNK: isize = 32;
/// Times a script answering "another bucket" is called again before the
/// call fails (each answer follows a concurrent split or merge).
const RETRIES: usize = 16;
/// Most tenant environments whose last bucket a process remembers.
const GUESSES: usize = 10_000;

/// Per (tenant, environment), the bucket this process' last creation wrote
/// to: the next creation's guess. Bounded; a forgotten guess costs one read.
pub(super) struct Guesses {
    last: quick_cache::sync::Cache<(Uuid, Environment), String>,
    /// Whether this process has loaded the add script (once: a server that
    /// lost it answers `NOSCRIPT`, and [`Guesses::settle`] loads it again).
    loaded: AtomicBool,
}

impl Default for Guesses {
    fn default() -> Self {
        Guesses { last: quick_cache::sync::Cache::new(GUESSES), loaded: AtomicBool::new(false) }
    }
}

/// One listed index entry, with the bucket it was read from (to prune it).
pub(super) struct Entry {
    /// The client's short id.
    pub(super) id: String,
    /// Its creation time, the entry's score.
    pub(super) created: Millis,
    /// The bucket it was read from.
    pub(super) bucket: String,
}

/// A new bucket name: 8 base62 characters (a collision with a live bucket
/// only skips a split, see `add_to_client_index.lua`).
fn fresh_name() -> String {
    short_id(crate::rng::uuid())[..8].to_string()
}

/// Length of a directory member's low id (a short id), before the name.
const LOW_ID: usize = 22;

/// The directory member of a first bucket (its low bound is -inf: the low
/// id does not matter), for an empty directory.
fn first_member() -> String {
    format!("{}{}", "0".repeat(LOW_ID), fresh_name())
}

/// The key of the bucket whose directory member is `member`.
fn key_of((t, e): (Uuid, Environment), member: &str) -> String {
    client_bucket_key(t, e, member.get(LOW_ID..).unwrap_or(""))
}

/// The add of `c`'s entry to bucket `guess`, as a script invocation.
fn add_call<'a>(
    (t, e): (Uuid, Environment),
    guess: &str,
    fresh: &str,
    mv: bool,
    entries: &[(String, String)],
) -> redis::ScriptInvocation<'a> {
    let mut add = ADD_TO_CLIENT_INDEX.key(client_index_dir_key(t, e));
    add.key(key_of((t, e), guess))
        .key(client_bucket_key(t, e, fresh))
        .key(legacy_client_index_key(t, e))
        .arg(guess)
        .arg(fresh)
        .arg(SPLIT)
        .arg(if mv { "1" } else { "0" });
    for (id, created) in entries {
        add.arg(id).arg(created);
    }
    add
}

/// What a call of `add_to_client_index.lua` answered.
pub(super) enum Added {
    /// Added; the bucket now holding the entry (the next guess).
    Done(String),
    /// Not added: the entry belongs to this bucket (`None`: read again).
    Elsewhere(Option<String>),
    /// Not added: the old single index must be moved first.
    MoveFirst,
    /// The script did not run (`NOSCRIPT` in a transaction, say): not added.
    Failed(String),
}

/// Reads an answer of `add_to_client_index.lua`.
pub(super) fn added(v: &Value) -> Added {
    let Value::Array(a) = v else { return Added::Failed(format!("{v:?}")) };
    let name = |i: usize| match a.get(i) {
        Some(Value::BulkString(b)) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    };
    match a.first() {
        Some(Value::Int(1)) => name(1).map_or_else(|| Added::Failed(format!("{v:?}")), Added::Done),
        Some(Value::Int(0)) => Added::Elsewhere(name(1)),
        Some(Value::Int(-1)) => Added::MoveFirst,
        _ => Added::Failed(format!("{v:?}")),
    }
}

/// Pushes the add of `c`'s entry to bucket `guess` onto `p` (a
/// transaction's), as `EVALSHA`: read its answer with [`added`].
pub(super) fn push_add(p: &mut Pipeline, c: &Client, guess: &str) {
    let entry = [(short_id(c.id), c.created_at.to_string())];
    p.invoke_script(&add_call((c.tenant_id, c.env), guess, &fresh_name(), false, &entry));
}

/// A creation transaction's answers to [`push_add`] and to the count after
/// it (the last two of `rows`): what the add did, and the count. Read with
/// the pipeline's `ignore_errors` (an add that did not run is not a failed
/// creation), so any other command's error fails it here.
pub(super) fn added_and_count(rows: &[Value]) -> StoreResult<(Added, u64)> {
    match rows {
        [before @ .., a, Value::Int(n)] => match before.iter().find(|v| matches!(v, Value::ServerError(_))) {
            Some(e) => Err(StoreError::Unavailable(format!("client write failed: {e:?}"))),
            None => Ok((added(a), *n as u64)),
        },
        _ => Err(StoreError::Unavailable(format!("client count not read: {:?}", rows.last()))),
    }
}

/// The last bucket of `dir` starting at or before time `t`: the one holding
/// an entry at `t`, unless several buckets start at `t` (then the script
/// given it names the right one, by id).
fn bucket_of_cmd(p: &mut Pipeline, dir: &str, t: Millis) {
    p.cmd("ZREVRANGEBYSCORE").arg(dir).arg(t).arg("-inf").arg("LIMIT").arg(0).arg(1);
}

impl Guesses {
    /// The bucket `c`'s entry likely goes to: this process' last one for its
    /// tenant's environment, else read from the directory (with the add
    /// script loaded in the same round trip on a standalone server, since a
    /// transaction does not load it on `NOSCRIPT`; a cluster's node may lose
    /// it to a slot move anyway, and [`Guesses::settle`] makes up for it); a
    /// new name when the directory is empty.
    pub(super) async fn guess(&self, conn: &RedisConn, c: &Client) -> StoreResult<String> {
        if let Some(g) = self.last.get(&(c.tenant_id, c.env)) {
            return Ok(g);
        }
        let mut p = pipe();
        if !matches!(conn, RedisConn::Cluster(_)) && !self.loaded.swap(true, Ordering::Relaxed) {
            p.load_script(&ADD_TO_CLIENT_INDEX).ignore();
        }
        bucket_of_cmd(&mut p, &client_index_dir_key(c.tenant_id, c.env), c.created_at);
        let (found,): (Vec<String>,) = p.query_async(&mut conn.clone()).await?;
        Ok(found.into_iter().next().unwrap_or_else(first_member))
    }

    /// After a creation's add answered: remembers the bucket, or adds the
    /// entry in calls of its own (moving the old index first if asked).
    pub(super) async fn settle(&self, conn: &RedisConn, wc: &mut RedisConn, c: &Client, a: Added) -> StoreResult<()> {
        if let Added::Done(holder) = a {
            self.last.insert((c.tenant_id, c.env), holder);
            return Ok(());
        }
        // Stale: the bucket named is the next creations' guess at once (so
        // that concurrent ones do not all read the directory); read again
        // where none is named.
        match &a {
            Added::Elsewhere(Some(b)) => self.last.insert((c.tenant_id, c.env), b.clone()),
            _ => {
                self.last.remove(&(c.tenant_id, c.env));
            }
        }
        let mut next = match a {
            Added::Done(_) => None,
            Added::Elsewhere(b) => b,
            Added::MoveFirst => {
                move_legacy(conn, wc, c.tenant_id, c.env).await?;
                None
            }
            Added::Failed(why) => {
                tracing::debug!(%why, "client index add not run in the transaction: again on its own");
                None
            }
        };
        let entry = [(short_id(c.id), c.created_at.to_string())];
        for _ in 0..RETRIES {
            let guess = match next.take() {
                Some(b) => b,
                None => self.guess(conn, c).await?,
            };
            let v: Value =
                add_call((c.tenant_id, c.env), &guess, &fresh_name(), false, &entry).invoke_async(wc).await?;
            match added(&v) {
                Added::Done(holder) => {
                    self.last.insert((c.tenant_id, c.env), holder);
                    return Ok(());
                }
                Added::Elsewhere(b) => next = b,
                Added::MoveFirst => move_legacy(conn, wc, c.tenant_id, c.env).await?,
                Added::Failed(why) => return Err(StoreError::Unavailable(format!("client index add: {why}"))),
            }
        }
        Err(StoreError::Unavailable("client index: the bucket kept moving".to_string()))
    }
}

/// Counts `c`'s tenant's clients down and drops `c` from its index, in one
/// script (read the directory, then the script on the bucket found).
pub(super) async fn uncount(conn: &RedisConn, wc: &mut RedisConn, c: &Client) -> StoreResult<()> {
    let (t, e, id) = (c.tenant_id, c.env, short_id(c.id));
    let dir = client_index_dir_key(t, e);
    let mut next: Option<String> = None;
    for _ in 0..RETRIES {
        let bucket = match next.take() {
            Some(b) => b,
            None => {
                let mut p = pipe();
                bucket_of_cmd(&mut p, &dir, c.created_at);
                let (found,): (Vec<String>,) = p.query_async(&mut conn.clone()).await?;
                // None: an empty directory, any name will do.
                found.into_iter().next().unwrap_or_default()
            }
        };
        let v: Value = COUNT_CLIENTS
            .key(super::keys::tenant_key(t))
            .key(&dir)
            .key(key_of((t, e), &bucket))
            .key(legacy_client_index_key(t, e))
            .arg(&bucket)
            .arg(&id)
            .arg(c.created_at)
            .invoke_async(wc)
            .await?;
        match added(&v) {
            Added::Done(_) => return Ok(()),
            Added::Elsewhere(b) => next = b,
            _ => return Err(StoreError::Unavailable(format!("client count-down: {v:?}"))),
        }
    }
    Err(StoreError::Unavailable("client index: the bucket kept moving".to_string()))
}

/// Moves the old single index of `tenant`'s `env` (if any) into buckets,
/// [`MOVE_CHUNK`] entries a call, lowest first.
pub(super) async fn move_legacy(
    conn: &RedisConn,
    wc: &mut RedisConn,
    tenant: Uuid,
    env: Environment,
) -> StoreResult<()> {
    let (dir, legacy) = (client_index_dir_key(tenant, env), legacy_client_index_key(tenant, env));
    let mut stuck = 0;
    loop {
        let rows: Vec<(String, String)> = redis::cmd("ZRANGE")
            .arg(&legacy)
            .arg(0)
            .arg(MOVE_CHUNK - 1)
            .arg("WITHSCORES")
            .query_async(&mut conn.clone())
            .await?;
        let Some((_, first)) = rows.first() else { return Ok(()) };
        let first: Millis = parse_score(first)?;
        let mut p = pipe();
        bucket_of_cmd(&mut p, &dir, first);
        let (found,): (Vec<String>,) = p.query_async(&mut conn.clone()).await?;
        let bucket = found.into_iter().next().unwrap_or_else(first_member);
        let v: Value = add_call((tenant, env), &bucket, &fresh_name(), true, &rows).invoke_async(wc).await?;
        match added(&v) {
            Added::Done(_) => stuck = 0,
            Added::Elsewhere(_) if stuck < RETRIES => stuck += 1,
            other => {
                let why = match other {
                    Added::Failed(why) => why,
                    _ => "the bucket kept moving".to_string(),
                };
                return Err(StoreError::Unavailable(format!("client index move: {why}")));
            }
        }
    }
}

/// The directory members of up to `n + 1` consecutive buckets from the one
/// holding `at` (from the first if `None`), and (asked with `legacy`, in the
/// same round trip) whether the index as one sorted set still exists. Where
/// buckets share `at` as their low score, from the one before them: the
/// caller skips what is before `at`.
async fn window(
    conn: &RedisConn,
    dir: &str,
    legacy: Option<&str>,
    at: Option<Millis>,
    n: usize,
) -> StoreResult<(Vec<String>, bool)> {
    let mut p = pipe();
    match at {
        None => {
            p.cmd("ZRANGE").arg(dir).arg(0).arg(n);
        }
        Some(t) => {
            p.cmd("ZREVRANGEBYSCORE").arg(dir).arg(format!("({t}")).arg("-inf").arg("LIMIT").arg(0).arg(1);
            p.cmd("ZRANGE").arg(dir).arg(t).arg("+inf").arg("BYSCORE").arg("LIMIT").arg(0).arg(n);
        }
    }
    if let Some(l) = legacy {
        p.exists(l);
    }
    let mut replies: Vec<Value> = p.query_async(&mut conn.clone()).await?;
    let old = legacy.is_some() && matches!(replies.pop(), Some(Value::Int(1)));
    let mut members = Vec::new();
    for r in replies {
        let part: Vec<String> = redis::from_redis_value(r).map_err(|_| corrupt("client index directory"))?;
        members.extend(part);
    }
    Ok((members, old))
}

/// An entry's score as Redis writes it.
fn parse_score(s: &str) -> StoreResult<Millis> {
    s.parse::<f64>().map(|f| f as Millis).map_err(|_| corrupt("client index score"))
}

/// Up to `limit` entries of `tenant`'s `env` index after `after` (from the
/// start if `None`), in (created, id) order, and whether more follow; the
/// index as one sorted set, if found by the first read, is moved first. Reads
/// a window of buckets at a time, each in one script call that checks the
/// directory still has them in a row (a split between a read of the
/// directory and of the buckets could otherwise hide entries) and answers
/// the next window's members.
pub(super) async fn page(
    c: &Connections,
    tenant: Uuid,
    env: Environment,
    after: Option<After>,
    limit: usize,
) -> StoreResult<(Vec<Entry>, bool)> {
    let (conn, dir, legacy) = (&c.conn, client_index_dir_key(tenant, env), legacy_client_index_key(tenant, env));
    let mut check = Some(legacy.as_str());
    // Buckets hold 48 to 95 entries: enough for the page and one more.
    let n = (limit / 48 + 2).min(64);
    // Where the page is: entries at or before it are skipped (those of the
    // first buckets read before the cursor, and those read twice: a bucket
    // split between two windows moves what was read of it to one the next
    // window reads).
    let mut floor = after.map(|a| a.key());
    let (mut out, mut tries) = (Vec::new(), 0);
    let mut members: Option<Vec<String>> = None;
    loop {
        let mut window_members = match members.take() {
            Some(m) => m,
            None => {
                let (m, old) = window(conn, &dir, check.take(), floor.as_ref().map(|f| f.0), n).await?;
                if old {
                    let mut wc = c.w().await?;
                    move_legacy(conn, &mut wc, tenant, env).await?;
                    c.replicated(&mut wc).await?;
                    continue;
                }
                m
            }
        };
        let more = window_members.len() > n;
        window_members.truncate(n);
        if window_members.is_empty() {
            return Ok((out, false));
        }
        let mut read = READ_CLIENT_INDEX.key(&dir);
        read.arg(n + 1);
        for m in &window_members {
            read.key(key_of((tenant, env), m)).arg(m);
        }
        let v: Vec<Value> = read.invoke_async(&mut conn.clone()).await?;
        if v.len() != window_members.len() + 2 {
            // The directory changed under the read: read it again from where
            // the page is.
            tries += 1;
            if tries > RETRIES {
                return Err(StoreError::Unavailable("client index: the directory kept changing".to_string()));
            }
            continue;
        }
        let mut v = v.into_iter().skip(1);
        let next: Vec<String> =
            redis::from_redis_value(v.next().unwrap_or(Value::Nil)).map_err(|_| corrupt("client index directory"))?;
        for (m, rows) in window_members.iter().zip(v) {
            let rows: Vec<(String, String)> =
                redis::from_redis_value(rows).map_err(|_| corrupt("client index bucket"))?;
            for (id, s) in rows {
                let created = parse_score(&s)?;
                if floor.as_ref().is_some_and(|k| (created, &id) <= (k.0, &k.1)) {
                    continue;
                }
                floor = Some((created, id.clone()));
                out.push(Entry { id, created, bucket: m.clone() });
            }
        }
        if out.len() > limit {
            out.truncate(limit);
            return Ok((out, true));
        }
        if !more {
            return Ok((out, false));
        }
        members = Some(next);
    }
}

/// Drops `entries` (dangling: their client is gone) from `tenant`'s `env`
/// index, one call per bucket.
pub(super) async fn drop_entries(
    wc: &mut RedisConn,
    tenant: Uuid,
    env: Environment,
    entries: &[&Entry],
) -> StoreResult<()> {
    let mut by_bucket: HashMap<&str, Vec<&str>> = HashMap::new();
    for e in entries {
        by_bucket.entry(&e.bucket).or_default().push(&e.id);
    }
    for (bucket, ids) in by_bucket {
        let _: i64 = DROP_FROM_CLIENT_INDEX
            .key(client_index_dir_key(tenant, env))
            .key(key_of((tenant, env), bucket))
            .arg(bucket)
            .arg(ids)
            .invoke_async(wc)
            .await?;
    }
    Ok(())
}
