//! The in-process caches of a service replica (introspect's verifies,
//! authd's API keys): verified credentials, tenants, and
//! recently refused tokens, each bounded by entry count; plus the record of
//! recent invalidations that keeps an in-flight load from caching what a
//! revocation just killed.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::{Millis, mono_ms};
use crate::error::InvalidReason;
use crate::model::SecretHash;
use crate::model::{ApiKey, Client, Environment, Session, Tenant};
use crate::store::Invalidation;
use crate::tag::{SecretTag, TagKey};
use crate::token::Token;
use quick_cache::sync::Cache as Lru;
use uuid::Uuid;

/// Bounds of the caches.
#[derive(Debug, Clone)]
pub struct CacheOptions {
    /// Verified credentials kept (about 240 bytes each).
    pub capacity: usize,
    /// Refused tokens kept.
    pub negative_capacity: usize,
    /// Oldest a cached answer may be: the safety net under push invalidation.
    pub max_age: Duration,
    /// How long a refused token is remembered.
    pub negative_ttl: Duration,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            capacity: 1_000_000,
            negative_capacity: 100_000,
            max_age: Duration::from_secs(30),
            negative_ttl: Duration::from_secs(5),
        }
    }
}

/// What a cache keeps of a session: only what a verify reads again. Its
/// ids are the cache key, its tenant the entry's shared tenant.
#[derive(Debug)]
pub struct CachedSession {
    pub hash: SecretHash,
    pub env: Environment,
    pub created_at: Millis,
    /// The hard cap; `None` for a test client key.
    pub cap: Option<Millis>,
    /// The client's labels; out of line, since most clients have none.
    pub labels: Option<Box<BTreeMap<String, String>>>,
}

impl CachedSession {
    /// The slim copy of records read from the store.
    pub fn of(client: &Client, session: &Session) -> CachedSession {
        CachedSession {
            hash: session.hash,
            env: client.env,
            created_at: session.created_at,
            cap: session.max_expires_at,
            labels: (!client.labels.is_empty()).then(|| Box::new(client.labels.clone())),
        }
    }
}

/// A credential's records as cached.
#[derive(Debug)]
pub enum Record {
    Session(CachedSession),
    ApiKey(Box<ApiKey>),
}

/// A cached, verified credential.
#[derive(Debug)]
pub struct Entry {
    pub record: Record,
    pub tenant: Arc<Tenant>,
    /// When the load that produced this entry started: an invalidation after
    /// it makes the entry stale.
    pub loaded_at: u64,
    /// The invalidation generation a hit last checked this entry against
    /// (0: never): while it is still the cache's generation, no invalidation
    /// happened since, and hits skip the invalidation record and its lock.
    checked_gen: AtomicU64,
    /// This replica's view of the session's expiry: the exact sliding rule
    /// over the uses it saw (`Millis::MAX` if none).
    pub expires_at: AtomicI64,
    /// When this replica last wrote a touch; coalesces writes.
    pub last_write: AtomicI64,
    /// The tag of the secret whose hash the load checked (`crate::tag`): a
    /// hit presenting the same secret is known to match the stored hash
    /// without hashing it again. `None`: hits hash (authd's API keys).
    accepted: Option<SecretTag>,
}

impl Entry {
    /// A fresh entry; `expires_at` and `last_used` are the store's.
    pub fn new(
        record: Record,
        tenant: Arc<Tenant>,
        loaded_at: u64,
        expires_at: Option<Millis>,
        last_used: Millis,
    ) -> Entry {
        Entry {
            record,
            tenant,
            loaded_at,
            checked_gen: AtomicU64::new(0),
            expires_at: AtomicI64::new(expires_at.unwrap_or(Millis::MAX)),
            last_write: AtomicI64::new(last_used),
            accepted: None,
        }
    }

    /// The entry, remembering that the load accepted the secret of `tag`.
    pub fn accepting(self, tag: SecretTag) -> Entry {
        Entry { accepted: Some(tag), ..self }
    }

    /// Whether `tag` is that of the secret the load accepted (constant
    /// time). True means the presented secret's hash is the stored one.
    pub fn accepts(&self, tag: &SecretTag) -> bool {
        self.accepted.as_ref().is_some_and(|a| a.matches(tag))
    }

    /// The stored hash of the credential's secret.
    pub fn stored_hash(&self) -> &SecretHash {
        match &self.record {
            Record::Session(s) => &s.hash,
            Record::ApiKey(k) => &k.hash,
        }
    }

    /// The ids an invalidation may name for the entry at `key`: the route
    /// (client, or tenant for an API key), the credential, the tenant.
    fn ids(&self, key: &Key) -> [Uuid; 3] {
        [key.0, key.1, self.tenant.id]
    }
}

/// Cache key: the token's routing id and credential id.
pub type Key = (Uuid, Uuid);

/// The caches of one replica.
pub struct Cache {
    opts: CacheOptions,
    entries: Lru<Key, Arc<Entry>>,
    tenants: Lru<Uuid, (Arc<Tenant>, u64)>,
    /// Keyed by the token's ids and the tag of its secret: a forged secret
    /// for a real id must not lock the real token out, nor a refused token
    /// another id that happens to share its secret.
    negative: Lru<(Key, SecretTag), (InvalidReason, u64)>,
    /// The key of this replica's [`SecretTag`]s (drawn at start, never
    /// leaves the process).
    tag_key: TagKey,
    /// Ids invalidated within the last max-age, and when.
    invalidated: Mutex<HashMap<Uuid, u64>>,
    /// The latest invalidation time: entries loaded after it skip the map.
    last_invalidation: AtomicU64,
    /// Bumped, inside the `invalidated` lock, after every invalidation is
    /// recorded. A hit reads it before checking the record: an invalidation
    /// the check did not see bumps it afterwards, so the entry's
    /// `checked_gen` no longer matches and the next hit checks again. (A
    /// timestamp cannot do this: a check and an invalidation may share a
    /// millisecond, or a check may read the clock after the invalidation
    /// did and still take the lock before it.)
    generation: AtomicU64,
    /// The last flush: anything loaded before it is stale.
    flushed_at: AtomicU64,
    /// Whether the invalidation channel is up.
    push_connected: AtomicBool,
    /// What the caches did, for metrics.
    stats: CacheStats,
}

/// Running totals of what a replica's caches did, read by the telemetry
/// crate's observable instruments: a relaxed add each, so the verify path
/// neither allocates nor locks for metrics.
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Lookups that found a fresh entry.
    pub hits: AtomicU64,
    /// Lookups that found nothing usable (the caller reads the store).
    pub misses: AtomicU64,
    /// Tokens refused from the negative cache, with no store read.
    pub negative_hits: AtomicU64,
    /// Invalidations received by push.
    pub invalidations: AtomicU64,
    /// Activity writes sent to the store.
    pub touches_written: AtomicU64,
    /// Activity that needed no write (coalesced into a recent one).
    pub touches_coalesced: AtomicU64,
}

impl CacheStats {
    /// Adds one to `counter`.
    #[inline]
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Most ids remembered as invalidated before the caches are flushed instead.
const INVALIDATED_MAX: usize = 1_000_000;

/// How often [`Cache::sweep`] runs.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

impl Cache {
    /// Empty caches.
    pub fn new(opts: CacheOptions) -> Cache {
        Cache {
            entries: Lru::new(opts.capacity.max(1)),
            tenants: Lru::new((opts.capacity / 16).clamp(1, 100_000)),
            negative: Lru::new(opts.negative_capacity.max(1)),
            tag_key: TagKey::random(),
            invalidated: Mutex::new(HashMap::new()),
            last_invalidation: AtomicU64::new(0),
            generation: AtomicU64::new(1),
            flushed_at: AtomicU64::new(0),
            push_connected: AtomicBool::new(false),
            stats: CacheStats::default(),
            opts,
        }
    }

    /// What the caches did so far.
    pub fn stats(&self) -> &CacheStats {
        &self.stats
    }

    /// The options in force.
    pub fn options(&self) -> &CacheOptions {
        &self.opts
    }

    fn fresh(&self, at: u64, now: u64) -> bool {
        now.saturating_sub(at) < self.opts.max_age.as_millis() as u64
    }

    fn invalidated_since(&self, ids: &[Uuid], at: u64) -> bool {
        if at <= self.flushed_at.load(Ordering::Acquire) {
            return true;
        }
        if at > self.last_invalidation.load(Ordering::Acquire) {
            return false;
        }
        let map = self.invalidated.lock().unwrap_or_else(|p| p.into_inner());
        ids.iter().any(|id| map.get(id).is_some_and(|&t| t >= at))
    }

    /// A fresh, still valid cached entry.
    pub fn get(&self, key: &Key) -> Option<Arc<Entry>> {
        let e = self.lookup(key);
        CacheStats::bump(if e.is_some() { &self.stats.hits } else { &self.stats.misses });
        e
    }

    fn lookup(&self, key: &Key) -> Option<Arc<Entry>> {
        let e = self.entries.get(key)?;
        let now = mono_ms();
        // From the load, never renewed by use: what an entry carries beyond
        // its record (the tenant's cut-off, the client) is only as fresh as
        // the load.
        if !self.fresh(e.loaded_at, now) {
            self.entries.remove(key);
            return None;
        }
        // Read before the check: see `generation`.
        let generation = self.generation.load(Ordering::Acquire);
        if e.checked_gen.load(Ordering::Acquire) == generation && e.loaded_at > self.flushed_at.load(Ordering::Acquire)
        {
            return Some(e);
        }
        if self.invalidated_since(&e.ids(key), e.loaded_at) {
            self.entries.remove(key);
            return None;
        }
        e.checked_gen.fetch_max(generation, Ordering::AcqRel);
        Some(e)
    }

    /// Caches an entry, unless an invalidation arrived while it loaded.
    pub fn insert(&self, key: Key, e: Arc<Entry>) {
        if !self.invalidated_since(&e.ids(&key), e.loaded_at) {
            self.entries.insert(key, e);
        }
    }

    /// Drops one entry (e.g. a touch found its record gone).
    pub fn remove(&self, key: &Key) {
        self.entries.remove(key);
    }

    /// A fresh cached tenant.
    pub fn tenant(&self, id: Uuid) -> Option<Arc<Tenant>> {
        let (t, at) = self.tenants.get(&id)?;
        (self.fresh(at, mono_ms()) && !self.invalidated_since(&[id], at)).then_some(t)
    }

    /// Caches a tenant loaded at `at`.
    pub fn insert_tenant(&self, t: Arc<Tenant>, at: u64) {
        if !self.invalidated_since(&[t.id], at) {
            self.tenants.insert(t.id, (t, at));
        }
    }

    /// The tag of a token's secret under this replica's key: what the
    /// negative cache and [`Entry::accepts`] take.
    pub fn tag(&self, token: &Token) -> SecretTag {
        token.tag(&self.tag_key)
    }

    /// Why this token was refused recently, if it was.
    pub fn negative(&self, key: &Key, tag: &SecretTag) -> Option<InvalidReason> {
        let (r, at) = self.negative.get(&(*key, *tag))?;
        let live = mono_ms().saturating_sub(at) < self.opts.negative_ttl.as_millis() as u64;
        if live {
            CacheStats::bump(&self.stats.negative_hits);
        }
        live.then_some(r)
    }

    /// Remembers a refusal. Dead credentials stay dead, so this is safe for
    /// every reason; unknown ones are short-lived anyway.
    pub fn insert_negative(&self, key: Key, tag: SecretTag, r: InvalidReason) {
        self.negative.insert((key, tag), (r, mono_ms()));
    }

    /// Applies a pushed invalidation.
    pub fn invalidate(&self, inv: Invalidation) {
        CacheStats::bump(&self.stats.invalidations);
        let now = mono_ms();
        let ids: &[Uuid] = match &inv {
            Invalidation::Session { client, session } => {
                self.entries.remove(&(*client, *session));
                &[*session]
            }
            Invalidation::ApiKey { tenant, key } => {
                self.entries.remove(&(*tenant, *key));
                &[*key]
            }
            Invalidation::Client(c) => &[*c],
            Invalidation::Tenant(t) => {
                self.tenants.remove(t);
                &[*t]
            }
        };
        let mut map = self.invalidated.lock().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            map.insert(*id, now);
        }
        // Never backwards: two invalidations may store out of order.
        self.last_invalidation.fetch_max(now, Ordering::AcqRel);
        self.generation.fetch_add(1, Ordering::AcqRel);
        if map.len() > INVALIDATED_MAX / 2 {
            self.prune_invalidated(&mut map, now);
        }
        if map.len() > INVALIDATED_MAX {
            map.clear();
            drop(map);
            self.flush();
        }
    }

    /// Drops what can no longer be served: entries, tenants and refusals past
    /// their max age (a bounded LRU would otherwise keep them, dead weight,
    /// until evicted: memory would climb to the capacity under churn), and
    /// invalidations older than any entry they could concern. Run every
    /// [`SWEEP_INTERVAL`] by [`crate::push::spawn`].
    pub fn sweep(&self) {
        let now = mono_ms();
        let (max_age, negative_ttl) = (self.opts.max_age.as_millis() as u64, self.opts.negative_ttl.as_millis() as u64);
        self.entries.retain(|_, e| now.saturating_sub(e.loaded_at) < max_age);
        self.tenants.retain(|_, (_, at)| now.saturating_sub(*at) < max_age);
        self.negative.retain(|_, (_, at)| now.saturating_sub(*at) < negative_ttl);
        let mut map = self.invalidated.lock().unwrap_or_else(|p| p.into_inner());
        self.prune_invalidated(&mut map, now);
    }

    /// An invalidation older than the max age concerns no servable entry
    /// (every entry loaded before it is stale by age).
    fn prune_invalidated(&self, map: &mut HashMap<Uuid, u64>, now: u64) {
        let max_age = self.opts.max_age.as_millis() as u64;
        map.retain(|_, t| now.saturating_sub(*t) <= max_age);
    }

    /// Forgets everything (the push channel was lost and came back, so some
    /// invalidations may have been missed).
    pub fn flush(&self) {
        self.entries.clear();
        self.tenants.clear();
        // Refusals stay valid: nothing dead comes back.
        self.flushed_at.fetch_max(mono_ms(), Ordering::AcqRel);
    }

    /// Records whether the invalidation channel is up.
    pub fn set_push_connected(&self, up: bool) {
        self.push_connected.store(up, Ordering::Release);
    }

    /// Whether the invalidation channel is up.
    pub fn push_connected(&self) -> bool {
        self.push_connected.load(Ordering::Acquire)
    }

    /// Entries cached now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use crate::model::Scopes;
    use crate::rng;

    use super::*;

    fn entry(tenant: Uuid, loaded_at: u64) -> (Key, Arc<Entry>) {
        entry_at((tenant, rng::uuid()), loaded_at)
    }

    /// An API key entry at `key` (tenant, key id).
    fn entry_at((tenant, key_id): Key, loaded_at: u64) -> (Key, Arc<Entry>) {
        let t = Tenant {
            id: tenant,
            name: "t".into(),
            idle_timeout_ms: 1000,
            max_lifetime_ms: 1000,
            created_at: 0,
            revoked_before: None,
            quotas: Default::default(),
        };
        let k = ApiKey {
            id: key_id,
            tenant_id: tenant,
            env: Environment::Test,
            name: "k".into(),
            scopes: Scopes::default(),
            created_at: 0,
            expires_at: None,
            successor: None,
            hash: SecretHash([0; 16]),
        };
        ((tenant, k.id), Arc::new(Entry::new(Record::ApiKey(Box::new(k)), Arc::new(t), loaded_at, None, 0)))
    }

    #[test]
    fn a_load_that_raced_an_invalidation_is_not_cached() {
        let c = Cache::new(CacheOptions::default());
        let tenant = rng::uuid();
        let started = mono_ms();
        let (key, e) = entry(tenant, started);
        c.invalidate(Invalidation::Tenant(tenant));
        c.insert(key, e);
        assert!(c.get(&key).is_none());
        // A load that started after the invalidation is cached.
        std::thread::sleep(Duration::from_millis(2));
        let (key, e) = entry(tenant, mono_ms());
        c.insert(key, e);
        assert!(c.get(&key).is_some());
        // A flush drops everything loaded before it.
        c.flush();
        assert!(c.get(&key).is_none());
    }

    #[test]
    fn a_checked_entry_still_hears_later_invalidations() {
        let c = Cache::new(CacheOptions::default());
        let tenant = rng::uuid();
        let (key, e) = entry(tenant, mono_ms());
        c.insert(key, e);
        c.invalidate(Invalidation::Tenant(rng::uuid()));
        assert!(c.get(&key).is_some(), "slow path: checked, unrelated invalidation");
        assert!(c.get(&key).is_some(), "fast path");
        c.invalidate(Invalidation::Tenant(tenant));
        assert!(c.get(&key).is_none());
    }

    /// Readers hammer an entry while it is invalidated: once `invalidate`
    /// has returned, no lookup may return it. The trials cross many
    /// millisecond boundaries, where a timestamp-based check loses races.
    #[test]
    fn no_entry_survives_an_invalidation_racing_readers() {
        use std::sync::atomic::AtomicUsize;
        const TRIALS: usize = 100_000;
        const READERS: usize = 2;
        let c = Arc::new(Cache::new(CacheOptions::default()));
        let keys: Arc<Vec<Key>> = Arc::new((0..TRIALS).map(|_| (rng::uuid(), rng::uuid())).collect());
        // The trial under way, and the last one whose invalidate returned.
        let (current, done) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(usize::MAX)));
        let (stop, stale) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let readers: Vec<_> = (0..READERS)
            .map(|_| {
                let (c, keys, current, done) = (c.clone(), keys.clone(), current.clone(), done.clone());
                let (stop, stale) = (stop.clone(), stale.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Acquire) {
                        let i = current.load(Ordering::Acquire);
                        // Read before the lookup: a lookup that starts after
                        // invalidate returned must miss.
                        let invalidated = done.load(Ordering::Acquire) == i;
                        if c.get(&keys[i]).is_some() && invalidated {
                            stale.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for (i, key) in keys.iter().enumerate() {
            let (_, e) = entry_at(*key, mono_ms());
            c.insert(*key, e);
            current.store(i, Ordering::Release);
            // Let the readers check it (and start racing) before it goes.
            for _ in 0..50 {
                std::hint::spin_loop();
            }
            c.invalidate(Invalidation::Tenant(key.0));
            done.store(i, Ordering::Release);
            if c.get(key).is_some() {
                stale.fetch_add(1, Ordering::Relaxed);
            }
        }
        stop.store(true, Ordering::Release);
        for r in readers {
            r.join().unwrap();
        }
        assert_eq!(stale.load(Ordering::Relaxed), 0, "entries served after invalidate returned, of {TRIALS} trials");
    }

    #[test]
    fn entries_expire_at_the_max_age() {
        let c = Cache::new(CacheOptions { max_age: Duration::from_millis(30), ..Default::default() });
        let (key, e) = entry(rng::uuid(), mono_ms());
        c.insert(key, e);
        assert!(c.get(&key).is_some());
        std::thread::sleep(Duration::from_millis(40));
        assert!(c.get(&key).is_none());
    }

    #[test]
    fn a_sweep_drops_stale_entries_refusals_and_old_invalidations() {
        let c = Cache::new(CacheOptions {
            max_age: Duration::from_millis(30),
            negative_ttl: Duration::from_millis(30),
            ..Default::default()
        });
        for _ in 0..100 {
            let (key, e) = entry(rng::uuid(), mono_ms());
            c.insert(key, e);
            c.invalidate(Invalidation::Client(rng::uuid()));
        }
        c.insert_negative((rng::uuid(), rng::uuid()), SecretTag([7; 16]), InvalidReason::Revoked);
        c.sweep();
        assert_eq!(c.len(), 100, "fresh entries stay");
        std::thread::sleep(Duration::from_millis(40));
        let (key, e) = entry(rng::uuid(), mono_ms());
        c.insert(key, e);
        c.sweep();
        assert_eq!(c.len(), 1, "only the fresh entry is left");
        assert_eq!(c.negative.len(), 0);
        assert_eq!(c.invalidated.lock().unwrap().len(), 0);
        assert!(c.get(&key).is_some());
    }

    #[test]
    fn negatives_expire() {
        let c = Cache::new(CacheOptions { negative_ttl: Duration::from_millis(20), ..Default::default() });
        let (k, h) = ((rng::uuid(), rng::uuid()), SecretTag([7; 16]));
        c.insert_negative(k, h, InvalidReason::Unknown);
        assert_eq!(c.negative(&k, &h), Some(InvalidReason::Unknown));
        assert_eq!(c.negative(&k, &SecretTag([8; 16])), None);
        assert_eq!(c.negative(&(k.0, rng::uuid()), &h), None, "the same secret under another id is not refused");
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(c.negative(&k, &h), None);
    }
}
