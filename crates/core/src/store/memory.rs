//! The in-memory store: the Redis store's semantics in one mutex-guarded
//! map, for dev mode and unit tests. Expiry is checked against the wall
//! clock on every read, as Redis does; dead entries are dropped on access
//! and by a periodic sweep, so nothing grows without bound.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use uuid::Uuid;

use futures::StreamExt;
use tokio::sync::broadcast;

use super::{
    AUDIT_MAX_LEN, After, ApiKeyLookup, CreateSession, Gone, Invalidation, Invalidations, Page, Pushed, REMEMBER_MS,
    REMEMBER_REVOKED_MS, RollApiKey, SessionLookup, Store, StoreResult, api_key_order, client_order, page,
    session_order, tenant_order,
};
use crate::clock::{Millis, now_ms};
use crate::model::{ApiKey, AuditEvent, Client, Environment, Quotas, Session, Tenant, limits};

/// Writes between two full sweeps of dead entries.
const SWEEP_EVERY: u32 = 1024;

/// In-memory store; clones share the data.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    /// Invalidations to subscribers, like Redis pub/sub.
    tx: broadcast::Sender<Invalidation>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore { inner: Arc::default(), tx: broadcast::channel(4096).0 }
    }
}

#[derive(Default)]
struct Inner {
    tenants: HashMap<Uuid, Tenant>,
    /// Keyed by (tenant, key id), as the Redis keys are.
    api_keys: HashMap<(Uuid, Uuid), ApiKey>,
    clients: HashMap<Uuid, Client>,
    /// Per tenant, its listed clients: those counted, as Redis' `cx:{T}:E`
    /// (a client written by `create_client` alone is not listed).
    listed: HashMap<Uuid, HashSet<Uuid>>,
    /// Per client, its sessions by id.
    sessions: HashMap<Uuid, BTreeMap<Uuid, Session>>,
    /// Per client, every session's cap (`Millis::MAX` for a test key), kept
    /// a day past it to explain expiry (Redis: the session field, kept until pruned).
    index: HashMap<Uuid, HashMap<Uuid, Millis>>,
    /// Per client, revoked sessions and until when to remember them.
    revoked: HashMap<Uuid, HashMap<Uuid, Millis>>,
    /// Revoked API keys and until when to remember them.
    revoked_keys: HashMap<(Uuid, Uuid), Millis>,
    /// Per tenant, its audit trail, oldest first.
    audit: HashMap<Uuid, VecDeque<AuditEvent>>,
    /// Last audit id issued, to keep ids increasing like a Redis stream's.
    last_audit: (Millis, u64),
    /// Writes since the last sweep.
    writes: u32,
}

fn live_at(expires_at: Option<Millis>, now: Millis) -> bool {
    expires_at.is_none_or(|e| now < e)
}

/// An API key not yet a day past its expiry (the day it is remembered).
fn remembered(k: &ApiKey, now: Millis) -> bool {
    live_at(k.expires_at.map(|x| x + REMEMBER_MS), now)
}

impl Inner {
    /// A client and its first session, if any.
    fn insert_client(&mut self, c: &Client, first: Option<&Session>) {
        self.clients.insert(c.id, c.clone());
        if let Some(s) = first {
            self.sessions.entry(c.id).or_default().insert(s.id, s.clone());
            self.index.entry(c.id).or_default().insert(s.id, s.max_expires_at.unwrap_or(Millis::MAX));
        }
        self.wrote();
    }

    fn wrote(&mut self) {
        self.writes += 1;
        if self.writes >= SWEEP_EVERY {
            self.writes = 0;
            let now = now_ms();
            self.api_keys.retain(|_, k| remembered(k, now));
            for s in self.sessions.values_mut() {
                s.retain(|_, s| live_at(s.expires_at, now));
            }
            self.sessions.retain(|_, s| !s.is_empty());
            for i in self.index.values_mut() {
                i.retain(|_, cap| cap.saturating_add(REMEMBER_MS) > now);
            }
            self.index.retain(|_, i| !i.is_empty());
            for r in self.revoked.values_mut() {
                r.retain(|_, keep| *keep > now);
            }
            self.revoked.retain(|_, r| !r.is_empty());
            self.revoked_keys.retain(|_, keep| *keep > now);
            let clients = &self.clients;
            for l in self.listed.values_mut() {
                l.retain(|id| clients.contains_key(id));
            }
            self.listed.retain(|_, l| !l.is_empty());
        }
    }

    /// Remembers revoked sessions (Redis: `sr:{C}`).
    fn remember_revoked(&mut self, client: Uuid, ids: impl IntoIterator<Item = Uuid>) {
        let now = now_ms();
        let caps = self.index.get(&client).cloned().unwrap_or_default();
        let r = self.revoked.entry(client).or_default();
        for id in ids {
            let keep = match caps.get(&id) {
                Some(&cap) if cap != Millis::MAX => cap + REMEMBER_MS,
                _ => now + REMEMBER_REVOKED_MS,
            };
            r.insert(id, keep);
        }
    }

    /// A key not past its expiry. An expired one is kept a day past it (to
    /// name the cause), then forgotten.
    fn live_api_key(&mut self, tenant: Uuid, id: Uuid) -> Option<&mut ApiKey> {
        let now = now_ms();
        if self.api_keys.get(&(tenant, id)).is_some_and(|k| !remembered(k, now)) {
            self.api_keys.remove(&(tenant, id));
        }
        self.api_keys.get_mut(&(tenant, id)).filter(|k| live_at(k.expires_at, now))
    }

    fn live_sessions(&mut self, client: Uuid) -> Option<&mut BTreeMap<Uuid, Session>> {
        let now = now_ms();
        let s = self.sessions.get_mut(&client)?;
        s.retain(|_, s| live_at(s.expires_at, now));
        Some(s)
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn publish(&self, i: Invalidation) {
        // No subscriber is not an error.
        let _ = self.tx.send(i);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied change
        // (every change is a few map operations), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A session for an existing client (of `owner`, when given) with room.
    fn add_session(&self, s: &Session, owner: Option<(Uuid, Environment)>, max_live: usize) -> CreateSession {
        let mut g = self.lock();
        match g.clients.get(&s.client_id) {
            Some(c) if owner.is_none_or(|o| o == (c.tenant_id, c.env)) => {}
            _ => return CreateSession::NoClient,
        }
        let live = g.live_sessions(s.client_id).map_or(0, |m| m.len());
        if live >= max_live {
            return CreateSession::Full;
        }
        g.sessions.entry(s.client_id).or_default().insert(s.id, s.clone());
        g.index.entry(s.client_id).or_default().insert(s.id, s.max_expires_at.unwrap_or(Millis::MAX));
        g.wrote();
        CreateSession::Created
    }
}

impl Store for MemoryStore {
    async fn put_tenant(&self, t: &Tenant) -> StoreResult<()> {
        self.lock().tenants.insert(t.id, t.clone());
        Ok(())
    }

    async fn get_tenant(&self, id: Uuid) -> StoreResult<Option<Tenant>> {
        Ok(self.lock().tenants.get(&id).cloned())
    }

    async fn list_tenants(&self, after: Option<After>, limit: usize) -> StoreResult<Page<Tenant>> {
        let v: Vec<Tenant> = self.lock().tenants.values().cloned().collect();
        Ok(page(v, tenant_order, after, limit))
    }

    async fn revoke_tenant_before(&self, id: Uuid, before: Millis, now: Millis) -> StoreResult<Option<Tenant>> {
        let t = self.lock().tenants.get_mut(&id).map(|t| {
            let cur = t.revoked_before.map(|rb| if rb > now + limits::CLOCK_SKEW_MS { now + 1 } else { rb });
            t.revoked_before = Some(cur.map_or(before, |rb| rb.max(before)));
            t.clone()
        });
        if t.is_some() {
            self.publish(Invalidation::Tenant(id));
        }
        Ok(t)
    }

    async fn put_api_key(&self, k: &ApiKey, max: u64) -> StoreResult<bool> {
        let mut g = self.lock();
        let now = now_ms();
        g.api_keys.retain(|_, k| remembered(k, now));
        // As Redis counts its index: every key not revoked, until a day past
        // its expiry (a listing prunes the index of what is gone).
        let held = g.api_keys.keys().filter(|(t, _)| *t == k.tenant_id).count() as u64;
        if held >= max {
            return Ok(false);
        }
        g.api_keys.insert((k.tenant_id, k.id), k.clone());
        g.wrote();
        Ok(true)
    }

    async fn set_quotas(&self, tenant: Uuid, q: Quotas) -> StoreResult<Option<Tenant>> {
        Ok(self.lock().tenants.get_mut(&tenant).map(|t| {
            t.quotas = q;
            t.clone()
        }))
    }

    async fn uncount_client(&self, c: &Client) -> StoreResult<()> {
        // Counted exactly from the clients themselves; only the listing.
        if let Some(l) = self.lock().listed.get_mut(&c.tenant_id) {
            l.remove(&c.id);
        }
        Ok(())
    }

    async fn create_client_audited(
        &self,
        c: &Client,
        first: Option<&Session>,
        e: &AuditEvent,
        max: u64,
    ) -> StoreResult<bool> {
        self.append_audit(e).await?;
        // The count and the insert under one lock: concurrent creations
        // cannot both pass a quota with one place left.
        let mut g = self.lock();
        if g.clients.values().filter(|x| x.tenant_id == c.tenant_id).count() as u64 >= max {
            return Ok(false);
        }
        g.insert_client(c, first);
        g.listed.entry(c.tenant_id).or_default().insert(c.id);
        Ok(true)
    }

    async fn get_api_key(&self, tenant: Uuid, id: Uuid) -> StoreResult<ApiKeyLookup> {
        let mut g = self.lock();
        let key = g.live_api_key(tenant, id).cloned();
        let now = now_ms();
        let expired = g.api_keys.get(&(tenant, id)).filter(|k| !live_at(k.expires_at, now));
        let gone = if g.revoked_keys.get(&(tenant, id)).is_some_and(|keep| *keep > now) {
            Some(Gone::Revoked)
        } else {
            // A rolled key past its grace period was replaced: revoked.
            expired.map(|k| if k.successor.is_some() { Gone::Revoked } else { Gone::ExpiredMax })
        };
        Ok(ApiKeyLookup { key, tenant: g.tenants.get(&tenant).cloned(), gone })
    }

    async fn list_api_keys(&self, tenant: Uuid, after: Option<After>, limit: usize) -> StoreResult<Page<ApiKey>> {
        let now = now_ms();
        let mut g = self.lock();
        g.api_keys.retain(|_, k| remembered(k, now));
        let v: Vec<ApiKey> =
            g.api_keys.values().filter(|k| k.tenant_id == tenant && live_at(k.expires_at, now)).cloned().collect();
        Ok(page(v, api_key_order, after, limit))
    }

    async fn revoke_api_key(&self, tenant: Uuid, id: Uuid) -> StoreResult<Option<ApiKey>> {
        let k = {
            let mut g = self.lock();
            // An expired key is not found, and stays remembered as expired.
            let k = g.live_api_key(tenant, id).cloned();
            if k.is_some() {
                g.api_keys.remove(&(tenant, id));
                g.revoked_keys.insert((tenant, id), now_ms() + REMEMBER_REVOKED_MS);
            }
            k
        };
        if k.is_some() {
            self.publish(Invalidation::ApiKey { tenant, key: id });
        }
        Ok(k)
    }

    async fn roll_api_key(&self, old: Uuid, new: &ApiKey, old_expires_at: Millis) -> StoreResult<RollApiKey> {
        let mut g = self.lock();
        let Some(k) = g.live_api_key(new.tenant_id, old) else {
            return Ok(RollApiKey::NotFound);
        };
        if k.successor.is_some() {
            return Ok(RollApiKey::AlreadyRolled);
        }
        k.successor = Some(new.id);
        k.expires_at = Some(k.expires_at.map_or(old_expires_at, |e| e.min(old_expires_at)));
        g.api_keys.insert((new.tenant_id, new.id), new.clone());
        g.wrote();
        drop(g);
        self.publish(Invalidation::ApiKey { tenant: new.tenant_id, key: old });
        Ok(RollApiKey::Rolled)
    }

    async fn create_client(&self, c: &Client, first: Option<&Session>) -> StoreResult<()> {
        self.lock().insert_client(c, first);
        Ok(())
    }

    async fn get_client(&self, id: Uuid) -> StoreResult<Option<Client>> {
        Ok(self.lock().clients.get(&id).cloned())
    }

    async fn list_clients(
        &self,
        tenant: Uuid,
        env: Option<Environment>,
        after: Option<After>,
        limit: usize,
    ) -> StoreResult<Page<Client>> {
        let mut g = self.lock();
        let g = &mut *g;
        let Some(listed) = g.listed.get_mut(&tenant) else { return Ok(Page { items: Vec::new(), next: None }) };
        // Nothing is under way here: a listed client that is gone goes.
        listed.retain(|id| g.clients.contains_key(id));
        let v: Vec<Client> = listed
            .iter()
            .filter_map(|id| g.clients.get(id))
            .filter(|c| c.tenant_id == tenant && env.is_none_or(|e| c.env == e))
            .cloned()
            .collect();
        Ok(page(v, client_order, after, limit))
    }

    async fn delete_client(&self, id: Uuid) -> StoreResult<bool> {
        self.revoke_all_sessions(id).await?;
        let existed = self.lock().clients.remove(&id).is_some();
        if existed {
            self.publish(Invalidation::Client(id));
        }
        Ok(existed)
    }

    async fn create_session(&self, s: &Session, max_live: usize) -> StoreResult<CreateSession> {
        Ok(self.add_session(s, None, max_live))
    }

    async fn create_session_audited(
        &self,
        s: &Session,
        owner: (Uuid, Environment),
        e: &AuditEvent,
        max_live: usize,
    ) -> StoreResult<CreateSession> {
        self.append_audit(e).await?;
        Ok(self.add_session(s, Some(owner), max_live))
    }

    async fn get_session(&self, client: Uuid, id: Uuid) -> StoreResult<SessionLookup> {
        let now = now_ms();
        let mut g = self.lock();
        let session = g.live_sessions(client).and_then(|m| m.get(&id).cloned());
        let gone = if session.is_some() {
            None
        } else if g.revoked.get(&client).and_then(|r| r.get(&id)).is_some_and(|keep| *keep > now) {
            Some(Gone::Revoked)
        } else {
            g.index.get(&client).and_then(|i| i.get(&id)).and_then(|&cap| {
                if cap.saturating_add(REMEMBER_MS) <= now {
                    None
                } else if cap <= now {
                    Some(Gone::ExpiredMax)
                } else {
                    Some(Gone::ExpiredIdle)
                }
            })
        };
        Ok(SessionLookup { client: g.clients.get(&client).cloned(), session, gone })
    }

    async fn touch_session(&self, client: Uuid, id: Uuid, now: Millis, idle_ms: Millis) -> StoreResult<Option<Millis>> {
        let mut g = self.lock();
        let Some(s) = g.live_sessions(client).and_then(|m| m.get_mut(&id)) else {
            return Ok(None);
        };
        s.last_used = now;
        let (Some(cap), Some(cur)) = (s.max_expires_at, s.expires_at) else {
            return Ok(Some(Millis::MAX));
        };
        let new = crate::model::sliding_expiry(now, idle_ms, cap).max(cur);
        s.expires_at = Some(new);
        Ok(Some(new))
    }

    async fn list_sessions(&self, client: Uuid, after: Option<After>, limit: usize) -> StoreResult<Page<Session>> {
        let mut g = self.lock();
        let v: Vec<Session> = g.live_sessions(client).map(|m| m.values().cloned().collect()).unwrap_or_default();
        Ok(page(v, session_order, after, limit))
    }

    async fn revoke_session(&self, client: Uuid, id: Uuid) -> StoreResult<bool> {
        let removed = {
            let mut g = self.lock();
            let removed = g.live_sessions(client).and_then(|m| m.remove(&id)).is_some();
            if removed {
                g.remember_revoked(client, [id]);
            }
            if let Some(i) = g.index.get_mut(&client) {
                i.remove(&id);
            }
            removed
        };
        if removed {
            self.publish(Invalidation::Session { client, session: id });
        }
        Ok(removed)
    }

    async fn revoke_all_sessions(&self, client: Uuid) -> StoreResult<u32> {
        let n = {
            let mut g = self.lock();
            let ids: Vec<Uuid> = g.live_sessions(client).map(|m| m.keys().copied().collect()).unwrap_or_default();
            g.remember_revoked(client, ids.iter().copied());
            g.sessions.remove(&client);
            g.index.remove(&client);
            ids.len() as u32
        };
        if n > 0 {
            self.publish(Invalidation::Client(client));
        }
        Ok(n)
    }

    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }

    async fn subscribe(&self) -> StoreResult<Invalidations> {
        let rx = tokio_stream::wrappers::BroadcastStream::new(self.tx.subscribe());
        // A lagging subscriber missed invalidations: end its stream so that
        // it treats this as a lost connection.
        Ok(Box::pin(
            rx.take_while(|r| std::future::ready(r.is_ok()))
                .filter_map(|r| std::future::ready(r.ok().map(Pushed::Invalidation))),
        ))
    }

    async fn append_audit(&self, e: &AuditEvent) -> StoreResult<String> {
        let mut g = self.lock();
        let (ms, seq) = g.last_audit;
        let next = if e.time > ms { (e.time, 0) } else { (ms, seq + 1) };
        g.last_audit = next;
        let mut e = e.clone();
        e.id = format!("{}-{}", next.0, next.1);
        let q = g.audit.entry(e.tenant_id).or_default();
        q.push_back(e.clone());
        while q.len() > AUDIT_MAX_LEN {
            q.pop_front();
        }
        Ok(e.id)
    }

    async fn list_audit(
        &self,
        tenant: Uuid,
        after: Option<&str>,
        limit: usize,
        newest_first: bool,
    ) -> StoreResult<Vec<AuditEvent>> {
        let after = after.map(parse_stream_id);
        let g = self.lock();
        let Some(q) = g.audit.get(&tenant) else { return Ok(vec![]) };
        let page = |it: &mut dyn Iterator<Item = &AuditEvent>, past: &dyn Fn((u64, u64), (u64, u64)) -> bool| {
            it.filter(|e| after.is_none_or(|a| past(parse_stream_id(&e.id), a))).take(limit).cloned().collect()
        };
        Ok(match newest_first {
            false => page(&mut q.iter(), &|id, a| id > a),
            true => page(&mut q.iter().rev(), &|id, a| id < a),
        })
    }
}

/// Orders stream ids `ms-seq` numerically; anything unparsable sorts first.
fn parse_stream_id(s: &str) -> (u64, u64) {
    let (a, b) = s.split_once('-').unwrap_or((s, "0"));
    (a.parse().unwrap_or(0), b.parse().unwrap_or(0))
}
