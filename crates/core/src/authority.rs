//! Every credential operation of the contract, written once over any
//! [`Store`]: who may do what, the sliding-expiry rule, shown-once secrets,
//! and the audit trail. The gRPC edge only converts types and maps errors.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use uuid::Uuid;

use crate::cache::{Cache, CacheOptions, Entry, Record};

use crate::clock::mono_ms;
use crate::clock::{Millis, now_ms};
use crate::error::{Error, InvalidReason, StoreError};
use crate::guard::{FailureGuard, GuardOptions, Verdict, identity};
use crate::model::{
    ApiKey, AuditEvent, Client, Environment, Quotas, Scope, Scopes, SecretHash, Session, Tenant, limits, sliding_expiry,
};
use crate::store::{After, CreateSession, Invalidation, Page, RollApiKey, Store};
use crate::token::{Token, TokenKind};
use crate::verify::{check_api_key, check_session};

/// A credential record with its token, which is shown once.
#[derive(Debug)]
pub struct Issued<T> {
    pub record: T,
    /// The token text; hand it to the holder and drop it.
    pub token: String,
}

/// Which page of a listing a caller asks for: the `next_page_token` of the
/// previous page (empty: the first) and a size (0: the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct PageRequest<'a> {
    pub token: &'a str,
    pub size: u32,
}

impl PageRequest<'_> {
    /// The store's cursor and page size, or the field at fault.
    fn parse(&self) -> Result<(Option<After>, usize), Error> {
        let limit = match self.size as usize {
            0 => limits::PAGE_DEFAULT,
            n if n > limits::PAGE_MAX => {
                return Err(Error::invalid("page_size", format!("at most {}", limits::PAGE_MAX)));
            }
            n => n,
        };
        if self.token.is_empty() {
            return Ok((None, limit));
        }
        let after = self
            .token
            .split_once('.')
            .and_then(|(score, id)| Some(After { score: score.parse().ok()?, id: crate::token::parse_short_id(id)? }));
        match after {
            Some(a) => Ok((Some(a), limit)),
            None => Err(Error::invalid("page_token", "must be a next_page_token as returned")),
        }
    }
}

/// A page of a listing, and the token of the next one (empty: the last).
/// A page may hold fewer items than asked for, even none, and still be
/// followed by more.
#[derive(Debug)]
pub struct Listed<T> {
    pub items: Vec<T>,
    pub next_page_token: String,
}

impl<T> From<Page<T>> for Listed<T> {
    fn from(p: Page<T>) -> Listed<T> {
        let next_page_token =
            p.next.map(|a| format!("{}.{}", a.score, crate::token::short_id(a.id))).unwrap_or_default();
        Listed { items: p.items, next_page_token }
    }
}

/// A client with the session minted with it.
#[derive(Debug)]
pub struct NewClient {
    pub client: Client,
    pub session: Session,
    pub token: String,
}

/// An authenticated API key with its tenant.
#[derive(Debug, Clone)]
pub struct ApiPrincipal {
    pub key: ApiKey,
    pub tenant: Tenant,
}

impl ApiPrincipal {
    /// The audit actor.
    pub fn actor(&self) -> String {
        format!("api_key:{}", self.key.id)
    }

    fn require(&self, s: Scope) -> Result<(), Error> {
        if self.key.scopes.allows(s) { Ok(()) } else { Err(Error::PermissionDenied(s.name())) }
    }
}

/// An authenticated session (or test client key) with its client and tenant.
#[derive(Debug, Clone)]
pub struct SessionPrincipal {
    pub tenant: Tenant,
    pub client: Client,
    pub session: Session,
}

/// What a new API key should be.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub tenant_id: Uuid,
    pub env: Environment,
    pub name: String,
    pub scopes: Scopes,
    pub expires_at: Option<Millis>,
}

/// The result of a roll.
#[derive(Debug)]
pub struct Rolled {
    pub new: Issued<ApiKey>,
    pub old_expires_at: Millis,
}

fn invalid(r: InvalidReason) -> Error {
    Error::InvalidCredential(r)
}

/// The credential operations over a store.
#[derive(Clone)]
pub struct Authority<S> {
    store: S,
    /// Live sessions a client may hold.
    /// Verified API keys, kept fresh by push invalidation (see
    /// `cred_core::push`) and invalidated at once by this process' own
    /// revocations.
    api_keys: Option<Arc<Cache>>,
    /// Budgets of failed authentications (per credential id and peer).
    guard: Option<Arc<FailureGuard>>,
}

impl<S: Store> Authority<S> {
    /// Operations over `store` with the documented limits.
    pub fn new(store: S) -> Authority<S> {
        Authority { store, api_keys: None, guard: None }
    }

    /// Limits failed authentications: once a credential id or peer has
    /// spent its budget, its attempts are refused (`Error::Throttled`)
    /// without a store command, except an API key this process has cached,
    /// which is checked against the cache (so the real key keeps working
    /// while its id is under attack).
    pub fn with_failure_guard(mut self, opts: GuardOptions) -> Authority<S> {
        self.guard = Some(Arc::new(FailureGuard::new(opts)));
        self
    }

    /// The failure budgets, if enabled (shared with operator-key checks).
    pub fn failure_guard(&self) -> Option<&Arc<FailureGuard>> {
        self.guard.as_ref()
    }

    /// Runs an authentication of `token` (its secret hashing to `hash`) from
    /// `peer` under the failure budgets: refused at once when known wrong or
    /// dead or when a budget is spent; a refusal the store gave is recorded
    /// with the stored hash `auth` read (see [`crate::guard`]).
    async fn guarded<T>(
        &self,
        peer: Option<IpAddr>,
        token: &Token,
        hash: &SecretHash,
        auth: impl Future<Output = (Result<T, Error>, Option<SecretHash>)>,
    ) -> Result<T, Error> {
        let Some(g) = &self.guard else { return auth.await.0 };
        let who = identity(token);
        if let Verdict::Refuse(r) = g.check(peer, &who, hash).map_err(Error::Throttled)? {
            return Err(invalid(r));
        }
        let (r, stored) = auth.await;
        match &r {
            Ok(_) => g.accepted(&who, hash),
            Err(Error::InvalidCredential(reason)) => g.refused(peer, &who, *reason, stored),
            Err(_) => {}
        }
        r
    }

    /// An API key this process just stored: its first call here is never
    /// refused by a peer budget others spent (see [`FailureGuard::accepted`]).
    fn minted(&self, token: &Token) {
        if let Some(g) = &self.guard {
            g.accepted(&identity(token), &token.hash());
        }
    }

    /// Caches verified API keys (one store read saved on almost every
    /// client RPC). The caller must run `cred_core::push::spawn` with
    /// [`Authority::api_key_cache`] so revocations elsewhere reach it.
    pub fn with_api_key_cache(mut self, opts: CacheOptions) -> Authority<S> {
        self.api_keys = Some(Arc::new(Cache::new(opts)));
        self
    }

    /// The API key cache, if enabled.
    pub fn api_key_cache(&self) -> Option<&Arc<Cache>> {
        self.api_keys.as_ref()
    }

    /// Drops what this process just revoked from its own cache, without
    /// waiting for the push.
    fn invalidate(&self, i: Invalidation) {
        if let Some(c) = &self.api_keys {
            c.invalidate(i);
        }
    }

    /// The store, for callers that need it directly (health checks, tests).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Makes `change` with its audit event written first (write-ahead): an
    /// event that cannot be written refuses the change (UNAVAILABLE, nothing
    /// changed), so no applied change goes unaudited, not even one whose
    /// caller saw UNAVAILABLE because Redis froze after applying it. A
    /// change the service turns down once the event is written (not found,
    /// full, already rolled) is followed by `<action>.rejected` naming the
    /// reason, best effort. See ARCHITECTURE.md, "Audit".
    async fn audited<T>(
        &self,
        actor: &str,
        action: &str,
        tenant_id: Uuid,
        subjects: Vec<String>,
        change: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let e = self.event(actor, action, tenant_id, subjects);
        if let Err(err) = self.store.append_audit(&e).await {
            return Err(
                StoreError::Unavailable(format!("audit trail not written, so nothing was changed: {err}")).into()
            );
        }
        let r = change.await;
        if let Err(err) = &r {
            self.rejected(e, err).await;
        }
        r
    }

    /// An audit event at the current time, its id given by the store.
    fn event(&self, actor: &str, action: &str, tenant_id: Uuid, subjects: Vec<String>) -> AuditEvent {
        AuditEvent {
            id: String::new(),
            time: now_ms(),
            actor: actor.to_string(),
            action: action.to_string(),
            tenant_id,
            subjects,
        }
    }

    /// Follows the written event `e` with `<action>.rejected` naming why,
    /// when the change was turned down (not found, full, already rolled);
    /// best effort: the request is already on record.
    async fn rejected(&self, mut e: AuditEvent, err: &Error) {
        let reason = match err {
            Error::NotFound(_) => "not_found",
            Error::FailedPrecondition(_) => "failed_precondition",
            Error::ResourceExhausted(_) => "resource_exhausted",
            _ => return,
        };
        e.action = format!("{}.rejected", e.action);
        e.subjects.push(format!("reason:{reason}"));
        if let Err(err) = self.store.append_audit(&e).await {
            tracing::warn!(%err, action = %e.action, tenant = %e.tenant_id, "audit append failed");
        }
    }

    // ---- operators ----

    /// Creates a tenant; durations default to 24 h idle and 7 d max.
    pub async fn create_tenant(
        &self,
        actor: &str,
        name: String,
        idle_ms: Option<Millis>,
        max_ms: Option<Millis>,
        quotas: Quotas,
    ) -> Result<Tenant, Error> {
        limits::name("name", &name)?;
        limits::quotas(&quotas)?;
        let max = max_ms.unwrap_or(limits::DEFAULT_MAX_MS);
        let idle = idle_ms.unwrap_or(limits::DEFAULT_IDLE_MS.min(max));
        limits::policy(idle, max)?;
        let t = Tenant {
            id: crate::rng::uuid(),
            name,
            idle_timeout_ms: idle,
            max_lifetime_ms: max,
            created_at: now_ms(),
            revoked_before: None,
            quotas,
        };
        let subjects = vec![format!("tenant:{}", t.id)];
        self.audited(actor, "tenant.create", t.id, subjects, async { Ok(self.store.put_tenant(&t).await?) }).await?;
        Ok(t)
    }

    /// Reads a tenant.
    pub async fn get_tenant(&self, id: Uuid) -> Result<Tenant, Error> {
        self.store.get_tenant(id).await?.ok_or(Error::NotFound("tenant"))
    }

    /// A page of every tenant, oldest first.
    pub async fn list_tenants(&self, page: PageRequest<'_>) -> Result<Listed<Tenant>, Error> {
        let (after, limit) = page.parse()?;
        Ok(self.store.list_tenants(after, limit).await?.into())
    }

    /// Sets a tenant's quotas. Lowering one below what the tenant holds
    /// removes nothing; it only refuses more.
    pub async fn set_quotas(&self, actor: &str, tenant: Uuid, q: Quotas) -> Result<Tenant, Error> {
        limits::quotas(&q)?;
        let subjects = vec![
            format!("tenant:{tenant}"),
            format!("api_keys:{}", q.api_keys),
            format!("clients:{}", q.clients),
            format!("sessions_per_client:{}", q.sessions_per_client),
        ];
        self.audited(actor, "tenant.set_quotas", tenant, subjects, async {
            self.store.set_quotas(tenant, q).await?.ok_or(Error::NotFound("tenant"))
        })
        .await
    }

    /// Creates an API key; the token is shown once.
    pub async fn create_api_key(&self, actor: &str, req: NewApiKey) -> Result<Issued<ApiKey>, Error> {
        limits::name("name", &req.name)?;
        let now = now_ms();
        if req.expires_at.is_some_and(|x| x <= now) {
            return Err(Error::invalid("expire_time", "must be in the future"));
        }
        let tenant = self.get_tenant(req.tenant_id).await?;
        issuable(&tenant, now)?;
        let token = Token::mint(TokenKind::ApiKey, req.env, req.tenant_id, crate::rng::uuid());
        let key = ApiKey {
            id: token.id,
            tenant_id: req.tenant_id,
            env: req.env,
            name: req.name,
            scopes: req.scopes,
            created_at: now,
            expires_at: req.expires_at,
            successor: None,
            hash: token.hash(),
        };
        let subjects = vec![format!("api_key:{}", key.id)];
        let max = tenant.quotas.api_keys;
        self.audited(actor, "api_key.create", key.tenant_id, subjects, async {
            match self.store.put_api_key(&key, max).await? {
                true => Ok(()),
                false => Err(Error::ResourceExhausted(format!(
                    "quotas.api_keys: the tenant holds {max} API keys, its quota; revoke one, or raise the quota \
                     with SetTenantQuotas"
                ))),
            }
        })
        .await?;
        self.minted(&token);
        Ok(Issued { record: key, token: token.expose() })
    }

    /// A page of a tenant's live API keys, oldest first.
    pub async fn list_api_keys(&self, tenant: Uuid, page: PageRequest<'_>) -> Result<Listed<ApiKey>, Error> {
        let (after, limit) = page.parse()?;
        self.get_tenant(tenant).await?;
        Ok(self.store.list_api_keys(tenant, after, limit).await?.into())
    }

    /// A page of a tenant's clients (of `env`, or both), oldest first.
    pub async fn list_clients(
        &self,
        tenant: Uuid,
        env: Option<Environment>,
        page: PageRequest<'_>,
    ) -> Result<Listed<Client>, Error> {
        let (after, limit) = page.parse()?;
        self.get_tenant(tenant).await?;
        Ok(self.store.list_clients(tenant, env, after, limit).await?.into())
    }

    /// Revokes an API key, and its successor if asked; returns the revoked ids.
    pub async fn revoke_api_key(
        &self,
        actor: &str,
        tenant: Uuid,
        id: Uuid,
        include_successor: bool,
    ) -> Result<Vec<Uuid>, Error> {
        let revoke = |k: Uuid| {
            self.audited(actor, "api_key.revoke", tenant, vec![format!("api_key:{k}")], async move {
                self.store.revoke_api_key(tenant, k).await?.ok_or(Error::NotFound("api key"))
            })
        };
        let old = revoke(id).await?;
        self.invalidate(Invalidation::ApiKey { tenant, key: id });
        let mut revoked = vec![id];
        if let (true, Some(next)) = (include_successor, old.successor) {
            match revoke(next).await {
                Ok(_) => {
                    self.invalidate(Invalidation::ApiKey { tenant, key: next });
                    revoked.push(next);
                }
                // Already revoked or expired: nothing more to do.
                Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(revoked)
    }

    /// Replaces an API key: the new one is like the old; the old one works
    /// for `grace_ms` more (never past its own expiry).
    pub async fn roll_api_key(&self, actor: &str, tenant: Uuid, id: Uuid, grace_ms: Millis) -> Result<Rolled, Error> {
        if !(0..=limits::MAX_GRACE_MS).contains(&grace_ms) {
            return Err(Error::invalid("grace_period", "must be between 0 and 30 days"));
        }
        let found = self.store.get_api_key(tenant, id).await?;
        let old = found.key.ok_or(Error::NotFound("api key"))?;
        let now = now_ms();
        issuable(&found.tenant.ok_or(Error::NotFound("tenant"))?, now)?;
        let token = Token::mint(TokenKind::ApiKey, old.env, tenant, crate::rng::uuid());
        let new = ApiKey { id: token.id, created_at: now, successor: None, hash: token.hash(), ..old.clone() };
        let grace_end = now + grace_ms;
        let subjects = vec![format!("api_key:{id}"), format!("api_key:{}", new.id)];
        self.audited(actor, "api_key.roll", tenant, subjects, async {
            match self.store.roll_api_key(id, &new, grace_end).await? {
                RollApiKey::Rolled => Ok(()),
                RollApiKey::NotFound => Err(Error::NotFound("api key")),
                RollApiKey::AlreadyRolled => {
                    Err(Error::FailedPrecondition("api key was already rolled; roll its successor".into()))
                }
            }
        })
        .await?;
        self.invalidate(Invalidation::ApiKey { tenant, key: id });
        self.minted(&token);
        let old_expires_at = old.expires_at.map_or(grace_end, |x| x.min(grace_end));
        Ok(Rolled { new: Issued { record: new, token: token.expose() }, old_expires_at })
    }

    /// Incident response: refuse every credential of the tenant issued
    /// before `before` (default now).
    pub async fn revoke_tenant_before(
        &self,
        actor: &str,
        tenant: Uuid,
        before: Option<Millis>,
    ) -> Result<Tenant, Error> {
        // +1: a credential issued in the same millisecond as the call is cut off too.
        let now = now_ms();
        let before = match before {
            Some(b) if b > now + limits::CLOCK_SKEW_MS => {
                return Err(Error::invalid(
                    "issued_before",
                    format!(
                        "is {} ms ahead of the server clock; a cut-off may be at most {} ms in the future \
                         (clock skew), or every credential issued until then would be refused",
                        b - now,
                        limits::CLOCK_SKEW_MS
                    ),
                ));
            }
            // Within the skew: now, so nothing issued after this call is refused.
            Some(b) => b.min(now + 1),
            None => now + 1,
        };
        let subjects = vec![format!("tenant:{tenant}"), format!("before:{before}")];
        let t = self
            .audited(actor, "tenant.revoke_before", tenant, subjects, async {
                self.store.revoke_tenant_before(tenant, before, now).await?.ok_or(Error::NotFound("tenant"))
            })
            .await?;
        self.invalidate(Invalidation::Tenant(tenant));
        Ok(t)
    }

    /// A page of the tenant's audit trail.
    pub async fn list_audit(
        &self,
        tenant: Uuid,
        after: Option<&str>,
        limit: usize,
        newest_first: bool,
    ) -> Result<Vec<AuditEvent>, Error> {
        if let Some(a) = after {
            let ok = a.split_once('-').is_some_and(|(ms, seq)| ms.parse::<u64>().is_ok() && seq.parse::<u64>().is_ok());
            if !ok {
                return Err(Error::invalid("after_event_id", "must be an event id as returned (e.g. 1700000000000-0)"));
            }
        }
        if limit > limits::AUDIT_PAGE_MAX {
            return Err(Error::invalid("page_size", format!("at most {}", limits::AUDIT_PAGE_MAX)));
        }
        self.get_tenant(tenant).await?;
        Ok(self.store.list_audit(tenant, after, limit.max(1), newest_first).await?)
    }

    // ---- tenant backends (API keys) ----

    /// Checks a presented API key: from the cache when enabled and fresh,
    /// else with one store read.
    pub async fn authenticate_api_key(&self, text: &str) -> Result<ApiPrincipal, Error> {
        self.authenticate_api_key_from(text, None).await
    }

    /// [`Authority::authenticate_api_key`] for a caller at `peer`, under the
    /// failure budgets (see [`Authority::with_failure_guard`]).
    pub async fn authenticate_api_key_from(&self, text: &str, peer: Option<IpAddr>) -> Result<ApiPrincipal, Error> {
        let token = Token::parse(text).map_err(|_| invalid(InvalidReason::Malformed))?;
        if token.kind != TokenKind::ApiKey {
            return Err(invalid(InvalidReason::Malformed));
        }
        let hash = token.hash();
        let key = (token.route, token.id);
        if let Some(e) = self.api_keys.as_ref().and_then(|c| c.get(&key))
            && let Record::ApiKey(k) = &e.record
        {
            // No store command, so nothing for the budgets; a spent budget
            // does not stop the cached real key.
            check_api_key(&token, &hash, Some(k), Some(&e.tenant), None, now_ms()).map_err(invalid)?;
            return Ok(ApiPrincipal { key: (**k).clone(), tenant: (*e.tenant).clone() });
        }
        let load = async {
            let mut stored = None;
            let r = async {
                let started = mono_ms();
                let l = self.store.get_api_key(token.route, token.id).await?;
                stored = l.key.as_ref().map(|k| k.hash);
                check_api_key(&token, &hash, l.key.as_ref(), l.tenant.as_ref(), l.gone, now_ms()).map_err(invalid)?;
                let (Some(k), Some(tenant)) = (l.key, l.tenant) else { return Err(invalid(InvalidReason::Unknown)) };
                if let Some(c) = &self.api_keys {
                    let record = Record::ApiKey(Box::new(k.clone()));
                    c.insert(key, Arc::new(Entry::new(record, Arc::new(tenant.clone()), started, k.expires_at, 0)));
                }
                Ok(ApiPrincipal { key: k, tenant })
            }
            .await;
            (r, stored)
        };
        self.guarded(peer, &token, &hash, load).await
    }

    /// A client the principal may see: same tenant and environment, or
    /// NOT_FOUND (never "forbidden", which would confirm it exists).
    async fn visible_client(&self, p: &ApiPrincipal, id: Uuid) -> Result<Client, Error> {
        match self.store.get_client(id).await? {
            Some(c) if c.tenant_id == p.tenant.id && c.env == p.key.env => Ok(c),
            _ => Err(Error::NotFound("client")),
        }
    }

    fn new_session(&self, p: &ApiPrincipal, client_id: Uuid, kind: TokenKind, now: Millis) -> (Session, Token) {
        let token = Token::mint(kind, p.key.env, client_id, crate::rng::uuid());
        let test = kind == TokenKind::TestClientKey;
        let cap = now + p.tenant.max_lifetime_ms;
        let s = Session {
            id: token.id,
            client_id,
            created_at: now,
            last_used: now,
            expires_at: (!test).then(|| sliding_expiry(now, p.tenant.idle_timeout_ms, cap)),
            max_expires_at: (!test).then_some(cap),
            hash: token.hash(),
        };
        (s, token)
    }

    async fn new_client(
        &self,
        p: &ApiPrincipal,
        labels: BTreeMap<String, String>,
        kind: TokenKind,
    ) -> Result<NewClient, Error> {
        p.require(Scope::ClientsCreate)?;
        limits::labels(&labels)?;
        let now = now_ms();
        issuable(&p.tenant, now)?;
        let client = Client { id: crate::rng::uuid(), tenant_id: p.tenant.id, env: p.key.env, labels, created_at: now };
        let (session, token) = self.new_session(p, client.id, kind, now);
        let action = if kind == TokenKind::TestClientKey { "test_client.create" } else { "client.create" };
        let event = AuditEvent {
            id: String::new(),
            time: now,
            actor: p.actor(),
            action: action.to_string(),
            tenant_id: p.tenant.id,
            subjects: vec![format!("client:{}", client.id), format!("session:{}", session.id)],
        };
        let max = p.tenant.quotas.clients;
        if !self.store.create_client_audited(&client, Some(&session), &event, max).await? {
            // The event went with the write (see `Store::create_client_audited`).
            let err = Error::ResourceExhausted(format!(
                "quotas.clients: the tenant holds {max} clients, its quota; delete one, or ask an operator to \
                 raise the quota"
            ));
            self.rejected(event, &err).await;
            return Err(err);
        }
        Ok(NewClient { client, session, token: token.expose() })
    }

    /// Registers an end user with its first session token.
    pub async fn create_client(&self, p: &ApiPrincipal, labels: BTreeMap<String, String>) -> Result<NewClient, Error> {
        self.new_client(p, labels, TokenKind::Session).await
    }

    /// Creates a client with a never-expiring test client key (test
    /// environment only).
    pub async fn create_test_client(
        &self,
        p: &ApiPrincipal,
        labels: BTreeMap<String, String>,
    ) -> Result<NewClient, Error> {
        if p.key.env != Environment::Test {
            return Err(Error::FailedPrecondition(
                "test client keys can only be created with a test-environment API key".into(),
            ));
        }
        self.new_client(p, labels, TokenKind::TestClientKey).await
    }

    /// Mints a new session token for an existing client.
    pub async fn create_session(&self, p: &ApiPrincipal, client_id: Uuid) -> Result<Issued<Session>, Error> {
        p.require(Scope::SessionsCreate)?;
        let now = now_ms();
        issuable(&p.tenant, now)?;
        let (s, token) = self.new_session(p, client_id, TokenKind::Session, now);
        let max_live = usize::try_from(p.tenant.quotas.sessions_per_client).unwrap_or(usize::MAX);
        let subjects = vec![format!("client:{client_id}"), format!("session:{}", s.id)];
        // The login path: the event, the owner check and the session in one
        // store call (one round trip on a standalone Redis), so no separate
        // client read first. A refusal follows its event with the reason.
        let e = self.event(&p.actor(), "session.create", p.tenant.id, subjects);
        let owner = (p.tenant.id, p.key.env);
        let r = match self.store.create_session_audited(&s, owner, &e, max_live).await {
            Ok(CreateSession::Created) => Ok(()),
            Ok(CreateSession::NoClient) => Err(Error::NotFound("client")),
            Ok(CreateSession::Full) => Err(Error::ResourceExhausted(format!(
                "quotas.sessions_per_client: the client has {max_live} live sessions, the tenant's quota; \
                 revoke one first"
            ))),
            Err(err) => return Err(err.into()),
        };
        if let Err(err) = &r {
            self.rejected(e, err).await;
        }
        r?;
        Ok(Issued { record: s, token: token.expose() })
    }

    /// Reads a client.
    pub async fn get_client(&self, p: &ApiPrincipal, id: Uuid) -> Result<Client, Error> {
        p.require(Scope::ClientsRead)?;
        self.visible_client(p, id).await
    }

    /// A client's live sessions.
    pub async fn list_sessions(
        &self,
        p: &ApiPrincipal,
        client_id: Uuid,
        page: PageRequest<'_>,
    ) -> Result<Listed<Session>, Error> {
        p.require(Scope::SessionsRead)?;
        let (after, limit) = page.parse()?;
        self.visible_client(p, client_id).await?;
        Ok(self.store.list_sessions(client_id, after, limit).await?.into())
    }

    /// Revokes one session.
    pub async fn revoke_session(&self, p: &ApiPrincipal, client_id: Uuid, id: Uuid) -> Result<(), Error> {
        p.require(Scope::SessionsRevoke)?;
        self.visible_client(p, client_id).await?;
        let subjects = vec![format!("client:{client_id}"), format!("session:{id}")];
        self.audited(&p.actor(), "session.revoke", p.tenant.id, subjects, async {
            match self.store.revoke_session(client_id, id).await? {
                true => Ok(()),
                false => Err(Error::NotFound("session")),
            }
        })
        .await
    }

    /// Revokes every session of a client; returns how many were live.
    pub async fn revoke_all_sessions(&self, p: &ApiPrincipal, client_id: Uuid) -> Result<u32, Error> {
        p.require(Scope::SessionsRevoke)?;
        self.visible_client(p, client_id).await?;
        let subjects = vec![format!("client:{client_id}")];
        self.audited(&p.actor(), "session.revoke_all", p.tenant.id, subjects, async {
            Ok(self.store.revoke_all_sessions(client_id).await?)
        })
        .await
    }

    /// Deletes a client and all its credentials.
    pub async fn delete_client(&self, p: &ApiPrincipal, client_id: Uuid) -> Result<(), Error> {
        p.require(Scope::ClientsDelete)?;
        let client = self.visible_client(p, client_id).await?;
        let subjects = vec![format!("client:{client_id}")];
        self.audited(&p.actor(), "client.delete", p.tenant.id, subjects, async {
            match self.store.delete_client(client_id).await? {
                true => Ok(()),
                false => Err(Error::NotFound("client")),
            }
        })
        .await?;
        // Counted down (and unlisted) after: a failure here leaves the count
        // one high (never low), which only a higher quota makes up for, and
        // an entry that listings skip and prune.
        if let Err(err) = self.store.uncount_client(&client).await {
            tracing::warn!(%err, tenant = %p.tenant.id, "client count not lowered");
        }
        Ok(())
    }

    // ---- end users (session tokens, test client keys) ----

    /// Checks a presented session token or test client key; a success is
    /// activity and slides the session's expiry.
    pub async fn authenticate_session(&self, text: &str) -> Result<SessionPrincipal, Error> {
        self.authenticate_session_from(text, None).await
    }

    /// [`Authority::authenticate_session`] for a caller at `peer`, under the
    /// failure budgets (see [`Authority::with_failure_guard`]).
    pub async fn authenticate_session_from(&self, text: &str, peer: Option<IpAddr>) -> Result<SessionPrincipal, Error> {
        let token = Token::parse(text).map_err(|_| invalid(InvalidReason::Malformed))?;
        if !matches!(token.kind, TokenKind::Session | TokenKind::TestClientKey) {
            return Err(invalid(InvalidReason::Malformed));
        }
        let hash = token.hash();
        let auth = async {
            let mut stored = None;
            let r = self.session_of(&token, &hash, &mut stored).await;
            (r, stored)
        };
        self.guarded(peer, &token, &hash, auth).await
    }

    /// `stored` gets the stored hash of the session read, for the budgets.
    async fn session_of(
        &self,
        token: &Token,
        hash: &SecretHash,
        stored: &mut Option<SecretHash>,
    ) -> Result<SessionPrincipal, Error> {
        let l = self.store.get_session(token.route, token.id).await?;
        *stored = l.session.as_ref().map(|s| s.hash);
        let tenant = match &l.client {
            Some(c) => self.store.get_tenant(c.tenant_id).await?,
            None => None,
        };
        let now = now_ms();
        check_session(token, hash, l.client.as_ref(), l.session.as_ref(), l.gone, tenant.as_ref(), now)
            .map_err(invalid)?;
        let (Some(client), Some(mut session), Some(tenant)) = (l.client, l.session, tenant) else {
            return Err(invalid(InvalidReason::Unknown));
        };
        match self.store.touch_session(client.id, session.id, now, tenant.idle_timeout_ms).await? {
            None => return Err(invalid(InvalidReason::Revoked)),
            Some(e) => {
                session.last_used = now;
                session.expires_at = (e != Millis::MAX).then_some(e);
            }
        }
        Ok(SessionPrincipal { tenant, client, session })
    }
}

/// Refuses to issue what the tenant's cut-off would refuse at once (a
/// cut-off in the future: within the clock skew of another authd, or set
/// before cut-offs were bounded).
fn issuable(t: &Tenant, now: Millis) -> Result<(), Error> {
    if t.revoked(now) {
        return Err(Error::FailedPrecondition(format!(
            "the tenant's revoke-before cut-off is {} ms in the future, so a credential issued now would be \
             refused; retry, or call RevokeTenantCredentials again to bring the cut-off to now",
            t.revoked_before.unwrap_or(now) - now
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn key(tenant: Uuid) -> NewApiKey {
        NewApiKey {
            tenant_id: tenant,
            env: Environment::Test,
            name: "k".into(),
            scopes: Scopes::default(),
            expires_at: None,
        }
    }

    #[tokio::test]
    async fn a_cut_off_ahead_of_now_is_refused_or_taken_as_now_and_issuance_never_hands_out_a_dead_credential() {
        let store = MemoryStore::new();
        let a = Authority::new(store.clone());
        let t = a.create_tenant("op", "t".into(), None, None, Default::default()).await.unwrap();
        let now = now_ms();
        let e = a.revoke_tenant_before("op", t.id, Some(now + 3_600_000)).await.unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { field: "issued_before", .. }), "{e:?}");
        assert_eq!(a.get_tenant(t.id).await.unwrap().revoked_before, None, "nothing changed");
        let within = a.revoke_tenant_before("op", t.id, Some(now_ms() + 2_000)).await.unwrap();
        assert!(within.revoked_before.unwrap() <= now_ms() + 1, "taken as now");

        // A cut-off stored ahead of now (before cut-offs were bounded):
        // issuing is refused rather than handing out what verify refuses,
        // until the next revoke brings it to now.
        let bricked = Tenant { revoked_before: Some(now_ms() + 3_600_000), ..a.get_tenant(t.id).await.unwrap() };
        store.put_tenant(&bricked).await.unwrap();
        let e = a.create_api_key("op", key(t.id)).await.unwrap_err();
        assert!(matches!(e, Error::FailedPrecondition(_)), "{e:?}");
        a.revoke_tenant_before("op", t.id, None).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        let k = a.create_api_key("op", key(t.id)).await.unwrap();
        assert!(!a.get_tenant(t.id).await.unwrap().revoked(k.record.created_at));
    }
}
