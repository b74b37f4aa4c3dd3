//! A [`Store`] wrapper that gives every store call a `tracing` span (a child
//! of the caller's span, so of the RPC's) and reports its latency to a
//! [`StoreObserver`]. It knows nothing of OpenTelemetry or gRPC: the
//! telemetry crate turns the spans into OTLP spans and the observations into
//! a histogram. Health pings are passed through unobserved: they run every
//! second and would drown the traces.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;
use uuid::Uuid;

use super::{After, ApiKeyLookup, CreateSession, Invalidations, Page, RollApiKey, SessionLookup, Store, StoreResult};
use crate::clock::Millis;
use crate::model::{ApiKey, AuditEvent, Client, Environment, Quotas, Session, Tenant};

/// Told the duration and outcome of every store call.
pub trait StoreObserver: Send + Sync + 'static {
    /// `op` is the [`Store`] method's name.
    fn observe(&self, op: &'static str, elapsed: Duration, ok: bool);
}

/// Observes nothing.
pub struct NoObserver;

impl StoreObserver for NoObserver {
    fn observe(&self, _: &'static str, _: Duration, _: bool) {}
}

/// `S`, with a span and an observation per call.
#[derive(Clone)]
pub struct Instrumented<S> {
    /// The store doing the work.
    inner: S,
    /// Where latencies go (the telemetry crate's histogram).
    observer: Arc<dyn StoreObserver>,
}

impl<S: Store> Instrumented<S> {
    /// Wraps `inner`, reporting to `observer`.
    pub fn new(inner: S, observer: Arc<dyn StoreObserver>) -> Instrumented<S> {
        Instrumented { inner, observer }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn call<F: Future<Output = StoreResult<T>> + Send, T>(
        &self,
        op: &'static str,
        f: F,
    ) -> impl Future<Output = StoreResult<T>> + Send + use<F, T, S> {
        observed(self.observer.clone(), op, f)
    }
}

/// `f` inside a `store` span, its latency reported to `observer`.
fn observed<F: Future<Output = StoreResult<T>> + Send, T>(
    observer: Arc<dyn StoreObserver>,
    op: &'static str,
    f: F,
) -> impl Future<Output = StoreResult<T>> + Send {
    let span = tracing::info_span!(
        target: "cred::store",
        "store",
        otel.name = op,
        otel.kind = "client",
        db.operation.name = op,
        otel.status_code = tracing::field::Empty,
    );
    async move {
        let start = Instant::now();
        let r = f.await;
        observer.observe(op, start.elapsed(), r.is_ok());
        if r.is_err() {
            tracing::Span::current().record("otel.status_code", "ERROR");
        }
        r
    }
    .instrument(span)
}

impl<S: Store> Store for Instrumented<S> {
    fn put_tenant(&self, t: &Tenant) -> impl Future<Output = StoreResult<()>> + Send {
        self.call("put_tenant", self.inner.put_tenant(t))
    }
    fn get_tenant(&self, id: Uuid) -> impl Future<Output = StoreResult<Option<Tenant>>> + Send {
        self.call("get_tenant", self.inner.get_tenant(id))
    }
    fn list_tenants(
        &self,
        after: Option<After>,
        limit: usize,
    ) -> impl Future<Output = StoreResult<Page<Tenant>>> + Send {
        self.call("list_tenants", self.inner.list_tenants(after, limit))
    }
    fn revoke_tenant_before(
        &self,
        id: Uuid,
        before: Millis,
        now: Millis,
    ) -> impl Future<Output = StoreResult<Option<Tenant>>> + Send {
        self.call("revoke_tenant_before", self.inner.revoke_tenant_before(id, before, now))
    }
    fn put_api_key(&self, k: &ApiKey, max: u64) -> impl Future<Output = StoreResult<bool>> + Send {
        self.call("put_api_key", self.inner.put_api_key(k, max))
    }
    fn set_quotas(&self, tenant: Uuid, q: Quotas) -> impl Future<Output = StoreResult<Option<Tenant>>> + Send {
        self.call("set_quotas", self.inner.set_quotas(tenant, q))
    }
    fn uncount_client(&self, c: &Client) -> impl Future<Output = StoreResult<()>> + Send {
        self.call("uncount_client", self.inner.uncount_client(c))
    }
    fn get_api_key(&self, tenant: Uuid, id: Uuid) -> impl Future<Output = StoreResult<ApiKeyLookup>> + Send {
        self.call("get_api_key", self.inner.get_api_key(tenant, id))
    }
    fn list_api_keys(
        &self,
        tenant: Uuid,
        after: Option<After>,
        limit: usize,
    ) -> impl Future<Output = StoreResult<Page<ApiKey>>> + Send {
        self.call("list_api_keys", self.inner.list_api_keys(tenant, after, limit))
    }
    fn revoke_api_key(&self, tenant: Uuid, id: Uuid) -> impl Future<Output = StoreResult<Option<ApiKey>>> + Send {
        self.call("revoke_api_key", self.inner.revoke_api_key(tenant, id))
    }
    fn roll_api_key(
        &self,
        old: Uuid,
        new: &ApiKey,
        old_expires_at: Millis,
    ) -> impl Future<Output = StoreResult<RollApiKey>> + Send {
        self.call("roll_api_key", self.inner.roll_api_key(old, new, old_expires_at))
    }
    fn create_client(&self, c: &Client, first: Option<&Session>) -> impl Future<Output = StoreResult<()>> + Send {
        self.call("create_client", self.inner.create_client(c, first))
    }
    fn create_client_audited(
        &self,
        c: &Client,
        first: Option<&Session>,
        e: &AuditEvent,
        max: u64,
    ) -> impl Future<Output = StoreResult<bool>> + Send {
        self.call("create_client_audited", self.inner.create_client_audited(c, first, e, max))
    }
    fn get_client(&self, id: Uuid) -> impl Future<Output = StoreResult<Option<Client>>> + Send {
        self.call("get_client", self.inner.get_client(id))
    }
    fn list_clients(
        &self,
        tenant: Uuid,
        env: Option<Environment>,
        after: Option<After>,
        limit: usize,
    ) -> impl Future<Output = StoreResult<Page<Client>>> + Send {
        self.call("list_clients", self.inner.list_clients(tenant, env, after, limit))
    }
    fn delete_client(&self, id: Uuid) -> impl Future<Output = StoreResult<bool>> + Send {
        self.call("delete_client", self.inner.delete_client(id))
    }
    fn create_session(&self, s: &Session, max_live: usize) -> impl Future<Output = StoreResult<CreateSession>> + Send {
        self.call("create_session", self.inner.create_session(s, max_live))
    }
    fn create_session_audited(
        &self,
        s: &Session,
        owner: (Uuid, Environment),
        e: &AuditEvent,
        max_live: usize,
    ) -> impl Future<Output = StoreResult<CreateSession>> + Send {
        self.call("create_session_audited", self.inner.create_session_audited(s, owner, e, max_live))
    }
    fn get_session(&self, client: Uuid, id: Uuid) -> impl Future<Output = StoreResult<SessionLookup>> + Send {
        self.call("get_session", self.inner.get_session(client, id))
    }
    fn touch_session(
        &self,
        client: Uuid,
        id: Uuid,
        now: Millis,
        idle_ms: Millis,
    ) -> impl Future<Output = StoreResult<Option<Millis>>> + Send {
        self.call("touch_session", self.inner.touch_session(client, id, now, idle_ms))
    }
    fn list_sessions(
        &self,
        client: Uuid,
        after: Option<After>,
        limit: usize,
    ) -> impl Future<Output = StoreResult<Page<Session>>> + Send {
        self.call("list_sessions", self.inner.list_sessions(client, after, limit))
    }
    fn revoke_session(&self, client: Uuid, id: Uuid) -> impl Future<Output = StoreResult<bool>> + Send {
        self.call("revoke_session", self.inner.revoke_session(client, id))
    }
    fn revoke_all_sessions(&self, client: Uuid) -> impl Future<Output = StoreResult<u32>> + Send {
        self.call("revoke_all_sessions", self.inner.revoke_all_sessions(client))
    }
    fn append_audit(&self, e: &AuditEvent) -> impl Future<Output = StoreResult<String>> + Send {
        self.call("append_audit", self.inner.append_audit(e))
    }
    fn subscribe(&self) -> impl Future<Output = StoreResult<Invalidations>> + Send {
        self.call("subscribe", self.inner.subscribe())
    }
    fn ping(&self) -> impl Future<Output = StoreResult<()>> + Send {
        self.inner.ping()
    }
    fn list_audit(
        &self,
        tenant: Uuid,
        after: Option<&str>,
        limit: usize,
        newest_first: bool,
    ) -> impl Future<Output = StoreResult<Vec<AuditEvent>>> + Send {
        self.call("list_audit", self.inner.list_audit(tenant, after, limit, newest_first))
    }
}
