//! The store interface and its two implementations: Redis (production) and
//! in memory (dev mode, unit tests). Both keep the same semantics, checked by
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

use uuid::Uuid;

use crate::model::{ApiKey, AuditEvent, Client, Millis, Session, Tenant};

pub mod memory;
pub mod redis;

pub use memory::MemoryStore;
pub use redis::RedisStore;

/// A store failure. Never "not found": absence is a value, not an error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or did not answer in time.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store answered with something this code did not write.
    #[error("store data is corrupt: {0}")]
    Corrupt(String),
}

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

/// Where credentials live. `now` parameters are the caller's clock, in
/// milliseconds since the epoch, as Redis' `PEXPIREAT` takes them.
pub trait Store: Clone + Send + Sync + 'static {
    /// Writes a new tenant.
    fn put_tenant(&self, t: &Tenant) -> impl Future<Output = StoreResult<()>> + Send;
    /// Reads a tenant.
    fn get_tenant(&self, id: Uuid) -> impl Future<Output = StoreResult<Option<Tenant>>> + Send;
    /// Raises a tenant's revoke-before time (never lowers it); returns the
    /// updated tenant.
    fn revoke_tenant_before(
        &self,
        id: Uuid,
        before: Millis,
    ) -> impl Future<Output = StoreResult<Option<Tenant>>> + Send;

    /// Writes a new API key (with its expiry as TTL) and indexes it.
    fn put_api_key(&self, k: &ApiKey) -> impl Future<Output = StoreResult<()>> + Send;
    /// Reads an API key with its tenant, in one round trip (same hash slot).
    fn get_api_key(
        &self,
        tenant: Uuid,
        id: Uuid,
    ) -> impl Future<Output = StoreResult<(Option<ApiKey>, Option<Tenant>)>> + Send;
    /// A tenant's live API keys, oldest first; prunes dead index entries.
    fn list_api_keys(&self, tenant: Uuid) -> impl Future<Output = StoreResult<Vec<ApiKey>>> + Send;
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

    /// Writes a new client, and atomically with it its first session.
    fn create_client(&self, c: &Client, first: Option<&Session>) -> impl Future<Output = StoreResult<()>> + Send;
    /// Reads a client.
    fn get_client(&self, id: Uuid) -> impl Future<Output = StoreResult<Option<Client>>> + Send;
    /// Deletes a client and every credential of it; false if it did not exist.
    fn delete_client(&self, id: Uuid) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Adds a session to an existing client, atomically checking that the
    /// client exists and has room (`max_live` live sessions).
    fn create_session(&self, s: &Session, max_live: usize) -> impl Future<Output = StoreResult<CreateSession>> + Send;
    /// Reads a live session with its client, in one round trip.
    fn get_session(
        &self,
        client: Uuid,
        id: Uuid,
    ) -> impl Future<Output = StoreResult<(Option<Client>, Option<Session>)>> + Send;
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
    /// A client's live sessions, oldest first; prunes dead index entries.
    fn list_sessions(&self, client: Uuid) -> impl Future<Output = StoreResult<Vec<Session>>> + Send;
    /// Deletes one session; false if it did not exist.
    fn revoke_session(&self, client: Uuid, id: Uuid) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Deletes every session of a client; returns how many were live.
    fn revoke_all_sessions(&self, client: Uuid) -> impl Future<Output = StoreResult<u32>> + Send;

    /// Appends to the tenant's bounded audit trail; returns the event id.
    fn append_audit(&self, e: &AuditEvent) -> impl Future<Output = StoreResult<String>> + Send;
    /// Reads the audit trail after `after` (exclusive), oldest first.
    fn list_audit(
        &self,
        tenant: Uuid,
        after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = StoreResult<Vec<AuditEvent>>> + Send;
}

/// Most audit events kept per tenant (older ones are trimmed).
pub const AUDIT_MAX_LEN: usize = 10_000;
