//! The store interface and its two implementations: Redis (production) and
//! in memory (dev mode, unit tests); `instrumented` wraps either with a span
//! and a latency observation per call. Both keep the same semantics, checked by
//! one conformance suite (`tests/store_conformance.rs`).
//!
//! Semantics every store keeps:
//! - a session's expiry is its record's TTL, so dead sessions vanish on their
//!   own; a touch never extends past the cap and never revives a missing
//!   record;
//! - every change that spans several records of one client (or one tenant)
//!   is atomic;
//! - indexes are pruned of dead members, so nothing grows without bound.

use std::future::Future;
use std::pin::Pin;

use futures::Stream;
use uuid::Uuid;

use crate::model::{ApiKey, AuditEvent, Client, Environment, Quotas, Session, Tenant};

use crate::clock::Millis;
pub(crate) use crate::error::StoreError;

pub mod instrumented;
pub mod memory;
pub mod redis;

pub use instrumented::{Instrumented, StoreObserver};
pub use memory::MemoryStore;
pub use redis::{RedisStore, RedisTarget};

/// Result of [`Store::create_session`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateSession {
    Created,
    /// The client does not exist (any more): nothing was written.
    NoClient,
    /// The client already has the maximum number of live sessions.
    Full,
}

/// Result of [`Store::roll_api_key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollApiKey {
    Rolled,
    NotFound,
    /// The key was rolled before; roll its successor instead.
    AlreadyRolled,
}

/// Result of a store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// Why a session that once existed is gone (best effort: remembered for a
/// day past its cap, or 30 days for a revoked test client key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    Revoked,
    ExpiredIdle,
    ExpiredMax,
}

/// Everything a verify needs about a session, read in one round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionLookup {
    pub client: Option<Client>,
    pub session: Option<Session>,
    /// Set when `session` is missing and the store knows why.
    pub gone: Option<Gone>,
}

/// Everything a verify needs about an API key, read in one round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyLookup {
    pub key: Option<ApiKey>,
    pub tenant: Option<Tenant>,
    /// Why the key is missing, if it once existed: revoked (remembered 30
    /// days), or past its expiry (`ExpiredMax`; `Revoked` for a rolled key
    /// past its grace period), remembered a day past it.
    pub gone: Option<Gone>,
}

/// A change that makes cached credentials stale, pushed by the store to
/// every subscriber (Redis pub/sub, published by the same script that made
/// the change).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Invalidation {
    /// One session (or test client key) was revoked.
    Session { client: Uuid, session: Uuid },
    /// Every session of a client was revoked, or the client deleted.
    Client(Uuid),
    /// An API key was revoked or rolled (its expiry changed).
    ApiKey { tenant: Uuid, key: Uuid },
    /// A tenant changed (revoke-before).
    Tenant(Uuid),
}

/// The pub/sub channel invalidations are published on.
pub const INVALIDATION_CHANNEL: &str = "cred:invalidate";

impl Invalidation {
    /// Wire form: `s:<client>:<session>`, `c:<client>`, `k:<tenant>:<key>`, `t:<tenant>`.
    pub fn encode(&self) -> String {
        use crate::token::short_id as s;
        match *self {
            Invalidation::Session { client, session } => format!("s:{}:{}", s(client), s(session)),
            Invalidation::Client(c) => format!("c:{}", s(c)),
            Invalidation::ApiKey { tenant, key } => format!("k:{}:{}", s(tenant), s(key)),
            Invalidation::Tenant(t) => format!("t:{}", s(t)),
        }
    }

    /// Inverse of [`Invalidation::encode`].
    pub fn decode(text: &str) -> Option<Invalidation> {
        use crate::token::parse_short_id as p;
        let mut it = text.split(':');
        let kind = it.next()?;
        let a = p(it.next()?)?;
        let b = it.next().map(p);
        if it.next().is_some() {
            return None;
        }
        Some(match (kind, b) {
            ("s", Some(Some(b))) => Invalidation::Session { client: a, session: b },
            ("c", None) => Invalidation::Client(a),
            ("k", Some(Some(b))) => Invalidation::ApiKey { tenant: a, key: b },
            ("t", None) => Invalidation::Tenant(a),
            _ => return None,
        })
    }
}

/// What a subscription delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// One change.
    Invalidation(Invalidation),
    /// Some invalidation may have been missed (the store found a gap in what
    /// it was sent): every cached answer must go.
    Missed,
}

/// A live subscription to invalidations; it ends when the connection is
/// lost (the subscriber must then assume it missed some).
pub type Invalidations = Pin<Box<dyn Stream<Item = Pushed> + Send>>;

/// Where a page of a listing starts: after the item of this sort score and
/// id. Listings are ordered by (score, id in its base62 form), the order of
/// a Redis sorted set: an API key's score is its creation time, a session's
/// its cap (`Millis::MAX` for a test client key, which has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct After {
    pub score: Millis,
    pub id: Uuid,
}

/// One page of a listing. `next` is set when more may follow: where the
/// next page starts. A page may hold fewer items than asked for (records
/// found dead while listing are left out), even none, with more to come.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<After>,
}

/// A tenant's sort score in listings: its creation time.
pub fn tenant_order(t: &Tenant) -> After {
    After { score: t.created_at, id: t.id }
}

/// A session's sort score in listings: its cap, or `Millis::MAX`.
pub fn session_order(s: &Session) -> After {
    After { score: s.max_expires_at.unwrap_or(Millis::MAX), id: s.id }
}

/// An API key's sort score in listings: its creation time.
pub fn api_key_order(k: &ApiKey) -> After {
    After { score: k.created_at, id: k.id }
}

/// A client's sort score in listings: its creation time.
pub fn client_order(c: &Client) -> After {
    After { score: c.created_at, id: c.id }
}

/// The page of `v` after `after` in the listing order of `order`.
pub(crate) fn page<T>(mut v: Vec<T>, order: fn(&T) -> After, after: Option<After>, limit: usize) -> Page<T> {
    v.sort_by_cached_key(|x| order(x).key());
    let start = after.map_or(0, |a| v.partition_point(|x| order(x).key() <= a.key()));
    let mut rest = v.split_off(start);
    let more = rest.len() > limit;
    rest.truncate(limit);
    let next = if more { rest.last().map(order) } else { None };
    Page { items: rest, next }
}

impl After {
    /// The sort key: (score, base62 id).
    pub fn key(&self) -> (Millis, String) {
        (self.score, crate::token::short_id(self.id))
    }
}

/// How long a gone session's reason (or a revoked API key) is remembered.
pub const REMEMBER_MS: Millis = 24 * 3600 * 1000;
/// How long a revoked test client key or API key is remembered.
pub const REMEMBER_REVOKED_MS: Millis = 30 * 24 * 3600 * 1000;
/// How old a listed client's index entry must be before a listing that
/// finds no client for it drops it. On a cluster the entry is written with
/// the count, on the tenant's slot, before the client on its own slot: a
/// younger entry may be a creation still under way (bounded by the request
/// timeout, seconds), so it is skipped but kept.
pub const CLIENT_INDEX_GRACE_MS: Millis = 10 * 60 * 1000;
/// Most revoked ids a set remembers (per client, per tenant): past that the
/// soonest forgotten go first, refused all the same (as `UNKNOWN`). Bounds
/// a set at about 400 KiB in Redis.
pub const REMEMBER_MAX: usize = 10_000;

/// Where credentials live. `now` parameters are the caller's clock, in
/// milliseconds since the epoch, as Redis' `PEXPIREAT` takes them.
pub trait Store: Clone + Send + Sync + 'static {
    /// Writes a new tenant.
    fn put_tenant(&self, t: &Tenant) -> impl Future<Output = StoreResult<()>> + Send;
    /// Reads a tenant.
    fn get_tenant(&self, id: Uuid) -> impl Future<Output = StoreResult<Option<Tenant>>> + Send;
    /// A page of every tenant, oldest first (ordered by [`tenant_order`]).
    fn list_tenants(
        &self,
        after: Option<After>,
        limit: usize,
    ) -> impl Future<Output = StoreResult<Page<Tenant>>> + Send;
    /// Raises a tenant's revoke-before time to `before`; returns the updated
    /// tenant. Never lowers it, except a stored cut-off more than
    /// [`crate::model::limits::CLOCK_SKEW_MS`] past `now` (set before
    /// cut-offs were bounded), which first comes down to `now + 1`: nothing
    /// issued before `now` becomes valid by that.
    fn revoke_tenant_before(
        &self,
        id: Uuid,
        before: Millis,
        now: Millis,
    ) -> impl Future<Output = StoreResult<Option<Tenant>>> + Send;

    /// Writes a new API key (with its expiry as TTL) and indexes it, unless
    /// its tenant would then hold more than `max` keys: false, nothing kept.
    fn put_api_key(&self, k: &ApiKey, max: u64) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Sets a tenant's quotas; the tenant as it is now, `None` if there is
    /// no such tenant.
    fn set_quotas(&self, tenant: Uuid, q: Quotas) -> impl Future<Output = StoreResult<Option<Tenant>>> + Send;
    /// Counts `c`'s tenant's clients down by one (after a delete, or a
    /// creation taken back), never below 0, and drops `c` from the tenant's
    /// listing, in one atomic write on the tenant's records. The client as it
    /// was read before its delete: its environment and creation time say
    /// where its listing entry is.
    fn uncount_client(&self, c: &Client) -> impl Future<Output = StoreResult<()>> + Send;
    /// Reads an API key with its tenant, in one round trip (same hash slot).
    fn get_api_key(&self, tenant: Uuid, id: Uuid) -> impl Future<Output = StoreResult<ApiKeyLookup>> + Send;
    /// A page of a tenant's live API keys, oldest first (ordered by
    /// creation time, then id: see [`After`]); prunes dead index entries.
    fn list_api_keys(
        &self,
        tenant: Uuid,
        after: Option<After>,
        limit: usize,
    ) -> impl Future<Output = StoreResult<Page<ApiKey>>> + Send;
    /// Deletes an API key; returns it as it was, if it existed.
    fn revoke_api_key(&self, tenant: Uuid, id: Uuid) -> impl Future<Output = StoreResult<Option<ApiKey>>> + Send;
    /// Atomically: the old key gets `successor = new.id` and expires at
    /// `min(its expiry, old_expires_at)`; the new key is written.
    fn roll_api_key(
        &self,
        old: Uuid,
        new: &ApiKey,
        old_expires_at: Millis,
    ) -> impl Future<Output = StoreResult<RollApiKey>> + Send;

    /// Writes a new client, and atomically with it its first session. Not
    /// counted nor listed: [`Store::create_client_audited`] is the whole
    /// creation.
    fn create_client(&self, c: &Client, first: Option<&Session>) -> impl Future<Output = StoreResult<()>> + Send;
    /// [`Store::create_client`] with its audit event, counted against the
    /// tenant's `max` clients and added to the tenant's listing: false (no
    /// client kept) when over it. Event, client, count and listing in one
    /// atomic write where the store can, else the event, count and listing
    /// first (write-ahead, as every audited change: see ARCHITECTURE.md,
    /// "Audit"); an event that cannot be written fails the call with nothing
    /// written.
    fn create_client_audited(
        &self,
        c: &Client,
        first: Option<&Session>,
        e: &AuditEvent,
        max: u64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Reads a client.
    fn get_client(&self, id: Uuid) -> impl Future<Output = StoreResult<Option<Client>>> + Send;
    /// A page of a tenant's clients (of `env`, or both), oldest first
    /// (ordered by [`client_order`]): those made by
    /// [`Store::create_client_audited`] and not yet uncounted. An index entry
    /// whose client is gone is skipped, and dropped once older than
    /// [`CLIENT_INDEX_GRACE_MS`].
    fn list_clients(
        &self,
        tenant: Uuid,
        env: Option<Environment>,
        after: Option<After>,
        limit: usize,
    ) -> impl Future<Output = StoreResult<Page<Client>>> + Send;
    /// Deletes a client and every credential of it; false if it did not exist.
    fn delete_client(&self, id: Uuid) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Adds a session to an existing client, atomically checking that the
    /// client exists and has room (`max_live` live sessions).
    fn create_session(&self, s: &Session, max_live: usize) -> impl Future<Output = StoreResult<CreateSession>> + Send;
    /// [`Store::create_session`] with its audit event, for a client of
    /// `owner` (tenant, environment): another's client is `NoClient`, as a
    /// missing one. The event is written first (write-ahead, as every audited
    /// change: see ARCHITECTURE.md, "Audit"), in one atomic write with the
    /// session where the store can; an event that cannot be written fails the
    /// call with nothing written.
    fn create_session_audited(
        &self,
        s: &Session,
        owner: (Uuid, Environment),
        e: &AuditEvent,
        max_live: usize,
    ) -> impl Future<Output = StoreResult<CreateSession>> + Send;
    /// Reads a live session with its client (or why it is gone), in one
    /// round trip.
    fn get_session(&self, client: Uuid, id: Uuid) -> impl Future<Output = StoreResult<SessionLookup>> + Send;
    /// Records a use at `now`: expiry becomes `min(now + idle, cap)` if that
    /// is later than the current one. Returns the new expiry, or `None` if
    /// the session is gone (a touch never revives). Test client keys return
    /// `Some(i64::MAX)` and stay without expiry.
    fn touch_session(
        &self,
        client: Uuid,
        id: Uuid,
        now: Millis,
        idle_ms: Millis,
    ) -> impl Future<Output = StoreResult<Option<Millis>>> + Send;
    /// A page of a client's live sessions, ordered by cap (a test client key
    /// last), then id: see [`After`].
    fn list_sessions(
        &self,
        client: Uuid,
        after: Option<After>,
        limit: usize,
    ) -> impl Future<Output = StoreResult<Page<Session>>> + Send;
    /// Deletes one session and remembers it as revoked; false if it did not
    /// exist.
    fn revoke_session(&self, client: Uuid, id: Uuid) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Deletes every session of a client; returns how many were live.
    fn revoke_all_sessions(&self, client: Uuid) -> impl Future<Output = StoreResult<u32>> + Send;

    /// Appends to the tenant's bounded audit trail; returns the event id.
    fn append_audit(&self, e: &AuditEvent) -> impl Future<Output = StoreResult<String>> + Send;
    /// Subscribes to invalidations published by revocations.
    fn subscribe(&self) -> impl Future<Output = StoreResult<Invalidations>> + Send;

    /// Whether the store answers at all (health checks).
    fn ping(&self) -> impl Future<Output = StoreResult<()>> + Send;

    /// Reads the audit trail after `after` (exclusive), oldest first, or
    /// newest first (then `after` pages towards older events).
    fn list_audit(
        &self,
        tenant: Uuid,
        after: Option<&str>,
        limit: usize,
        newest_first: bool,
    ) -> impl Future<Output = StoreResult<Vec<AuditEvent>>> + Send;
}

/// Most audit events kept per tenant (older ones are trimmed).
pub const AUDIT_MAX_LEN: usize = 10_000;
