//! The verify data path, in one straight line:
//! parse → known-bad? → cache or one store read → the shared checks →
//! requirements → coalesced activity.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cred_core::clock::{Millis, now_ms};
use cred_core::error::StoreError;
use cred_core::guard::{FailureGuard, GuardOptions, Verdict, identity};
use cred_core::model::SecretHash;
use cred_core::model::{Environment, Scopes, sliding_expiry};
use cred_core::store::Store;
use cred_core::tag::SecretTag;
use cred_core::token::{Token, TokenKind};
use cred_core::verify::{SessionView, check_api_key, check_session, check_session_view};
use cred_core::{Error, InvalidReason};

use cred_core::cache::{Cache, CacheOptions, CacheStats, CachedSession, Entry, Key, Record};

use cred_core::clock::mono_ms;

/// How a replica verifies.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Longest wait for the store before answering UNAVAILABLE.
    pub deadline: Duration,
    /// At most one touch write per token per this interval (per replica);
    /// the stored expiry lags the exact rule by at most this much.
    pub touch_granularity: Duration,
    pub cache: CacheOptions,
    /// Budgets of failed verifies per token id (and per caller, usually
    /// off: introspect's callers are gateways speaking for many users);
    /// `None`: no limit.
    pub guard: Option<GuardOptions>,
    /// The environment required of a credential when the caller names none
    /// (`required_environment` unset); `None`: either.
    pub environment: Option<Environment>,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            deadline: Duration::from_millis(250),
            touch_granularity: Duration::from_secs(1),
            cache: CacheOptions::default(),
            guard: None,
            environment: None,
        }
    }
}

/// What the caller requires of the credential.
#[derive(Debug, Clone, Default)]
pub struct Requirements {
    /// Refuse (ENV_MISMATCH) a credential of another environment.
    pub env: Option<Environment>,
    /// Must be an API key holding all of these.
    pub scopes: Option<Scopes>,
    /// Do not count as activity.
    pub passive: bool,
}

/// A successful verify: who the credential is, as the answer needs it (a
/// copy, not the cache's entry, so callers see no cache internals).
#[derive(Debug)]
pub struct Verified {
    /// Session, test client key or API key.
    pub kind: TokenKind,
    /// The credential's ids: (client, session) or (tenant, API key).
    pub key: Key,
    /// The tenant that owns it.
    pub tenant_id: uuid::Uuid,
    /// Its environment.
    pub env: Environment,
    /// An API key's scopes (empty: every scope); empty for sessions.
    pub scopes: Scopes,
    /// The client's labels (sessions); empty, and unallocated, for API keys
    /// and unlabelled clients.
    pub labels: HashMap<String, String>,
    /// When it was made.
    pub created_at: Millis,
    /// Expiry after this use (`None`: never).
    pub expires_at: Option<Millis>,
    /// A session's hard cap (`None` for test client keys and API keys).
    pub cap: Option<Millis>,
}

impl Verified {
    /// The answer of a verify of `key` that found `entry`.
    fn of(kind: TokenKind, key: Key, entry: &Entry, expires_at: Option<Millis>) -> Verified {
        let tenant_id = entry.tenant.id;
        match &entry.record {
            Record::Session(s) => Verified {
                kind,
                key,
                tenant_id,
                env: s.env,
                scopes: Scopes::default(),
                labels: s.labels.iter().flat_map(|l| l.iter()).map(|(k, v)| (k.clone(), v.clone())).collect(),
                created_at: s.created_at,
                expires_at,
                cap: s.cap,
            },
            Record::ApiKey(k) => Verified {
                kind,
                key,
                tenant_id,
                env: k.env,
                scopes: k.scopes,
                labels: HashMap::new(),
                created_at: k.created_at,
                expires_at,
                cap: None,
            },
        }
    }
}

struct Inner<S> {
    store: S,
    cache: Arc<Cache>,
    opts: VerifyOptions,
    guard: Option<FailureGuard>,
}

/// Verifies credentials against a store, through the replica's caches.
pub struct Verifier<S> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for Verifier<S> {
    fn clone(&self) -> Self {
        Verifier { inner: self.inner.clone() }
    }
}

fn invalid(r: InvalidReason) -> Error {
    Error::InvalidCredential(r)
}

impl<S: Store> Verifier<S> {
    /// A verifier over `store`.
    pub fn new(store: S, opts: VerifyOptions) -> Verifier<S> {
        let cache = Arc::new(Cache::new(opts.cache.clone()));
        let guard = opts.guard.map(FailureGuard::new);
        Verifier { inner: Arc::new(Inner { store, cache, opts, guard }) }
    }

    /// The caches (for the push listener and tests).
    pub fn cache(&self) -> &Arc<Cache> {
        &self.inner.cache
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.inner.store
    }

    /// The failure budgets, if configured (for tests).
    pub fn guard(&self) -> Option<&FailureGuard> {
        self.inner.guard.as_ref()
    }

    /// Verifies a presented credential.
    pub async fn verify(&self, text: &str, req: &Requirements) -> Result<Verified, Error> {
        self.verify_from(text, req, None).await
    }

    /// [`Verifier::verify`] for a caller at `peer`, under the failure
    /// budgets: a spent budget refuses before a store read, but a cached
    /// credential is still checked (so the real token keeps working while
    /// its id is under attack).
    pub async fn verify_from(&self, text: &str, req: &Requirements, peer: Option<IpAddr>) -> Result<Verified, Error> {
        // 1. Typos and garbage are refused here, with no store command.
        let token = Token::parse(text).map_err(|_| invalid(InvalidReason::Malformed))?;
        if req.env.or(self.inner.opts.environment).is_some_and(|e| e != token.env) {
            return Err(invalid(InvalidReason::EnvMismatch));
        }
        // The secret's keyed tag, not its SHA-256: a hit presenting the
        // secret its load accepted needs no hash (`cred_core::tag` argues why
        // that is as strong); anything else hashes it as before.
        let tag = self.inner.cache.tag(&token);
        let key: Key = (token.route, token.id);
        // 2. Refused recently: still refused (dead stays dead).
        if let Some(r) = self.inner.cache.negative(&key, &tag) {
            return Err(invalid(r));
        }
        // 3. Cached and alive by this replica's view, or one store read.
        let now = now_ms();
        let (entry, hash) = match self.inner.cache.get(&key) {
            Some(e) if e.expires_at.load(Ordering::Relaxed) > now => {
                let hash = if e.accepts(&tag) { *e.stored_hash() } else { token.hash() };
                (e, hash)
            }
            _ => {
                let hash = token.hash();
                // Known wrong or dead, or a spent failure budget: no store read.
                let who = identity(&token);
                if let Some(g) = &self.inner.guard
                    && let Verdict::Refuse(r) = g.check(peer, &who, &hash).map_err(Error::Throttled)?
                {
                    return Err(invalid(r));
                }
                let mut stored = None;
                let loaded = self.load(&token, &hash, tag, key, &mut stored).await;
                if let Some(g) = &self.inner.guard {
                    match &loaded {
                        Ok(_) => g.accepted(&who, &hash),
                        Err(Error::InvalidCredential(r)) => g.refused(peer, &who, *r, stored),
                        Err(_) => {}
                    }
                }
                (loaded?, hash)
            }
        };
        // 4. The checks authd makes, on the cached records (no store read:
        // nothing for the budgets).
        if let Err(r) = check(&entry, &token, &hash, now) {
            self.inner.cache.insert_negative(key, tag, r);
            return Err(invalid(r));
        }
        // 5. What the caller requires.
        if let Some(want) = req.scopes {
            match &entry.record {
                Record::ApiKey(k) if k.scopes.allows_all(want) => {}
                Record::ApiKey(_) => return Err(Error::Forbidden("the API key lacks a required scope")),
                Record::Session(_) => {
                    return Err(Error::Forbidden("scopes were required of a session token"));
                }
            }
        }
        // 6. Activity slides the expiry; writes are coalesced.
        let expires_at =
            if req.passive { entry.expires_at.load(Ordering::Relaxed) } else { self.touch(&entry, key, now) };
        Ok(Verified::of(token.kind, key, &entry, (expires_at != Millis::MAX).then_some(expires_at)))
    }

    /// Loads a credential's records in one store round trip (plus one for
    /// its tenant when that is not cached), within the deadline.
    /// `stored` gets the stored hash of the record read, for the budgets.
    /// The entry cached remembers `tag`, the tag of the secret it accepted.
    async fn load(
        &self,
        token: &Token,
        hash: &SecretHash,
        tag: SecretTag,
        key: Key,
        stored: &mut Option<SecretHash>,
    ) -> Result<Arc<Entry>, Error> {
        let started = mono_ms();
        let load = async {
            let now = now_ms();
            match token.kind {
                TokenKind::ApiKey => {
                    let l = self.inner.store.get_api_key(token.route, token.id).await?;
                    *stored = l.key.as_ref().map(|k| k.hash);
                    check_api_key(token, hash, l.key.as_ref(), l.tenant.as_ref(), l.gone, now).map_err(invalid)?;
                    let (Some(k), Some(t)) = (l.key, l.tenant) else { return Err(invalid(InvalidReason::Unknown)) };
                    let t = Arc::new(t);
                    self.inner.cache.insert_tenant(t.clone(), started);
                    let expires_at = k.expires_at;
                    Ok(Entry::new(Record::ApiKey(Box::new(k)), t, started, expires_at, 0))
                }
                TokenKind::Session | TokenKind::TestClientKey => {
                    let l = self.inner.store.get_session(token.route, token.id).await?;
                    *stored = l.session.as_ref().map(|s| s.hash);
                    let tenant = match &l.client {
                        Some(c) => self.tenant(c.tenant_id, started).await?,
                        None => None,
                    };
                    check_session(token, hash, l.client.as_ref(), l.session.as_ref(), l.gone, tenant.as_deref(), now)
                        .map_err(invalid)?;
                    let (Some(client), Some(session), Some(t)) = (l.client, l.session, tenant) else {
                        return Err(invalid(InvalidReason::Unknown));
                    };
                    let record = Record::Session(CachedSession::of(&client, &session));
                    Ok(Entry::new(record, t, started, session.expires_at, session.last_used))
                }
            }
        };
        let entry = match tokio::time::timeout(self.inner.opts.deadline, load).await {
            Err(_) => return Err(StoreError::Unavailable("store deadline exceeded".into()).into()),
            Ok(Err(Error::InvalidCredential(r))) => {
                self.inner.cache.insert_negative(key, tag, r);
                return Err(invalid(r));
            }
            Ok(r) => Arc::new(r?.accepting(tag)),
        };
        self.inner.cache.insert(key, entry.clone());
        Ok(entry)
    }

    async fn tenant(&self, id: uuid::Uuid, started: u64) -> Result<Option<Arc<cred_core::model::Tenant>>, Error> {
        if let Some(t) = self.inner.cache.tenant(id) {
            return Ok(Some(t));
        }
        let Some(t) = self.inner.store.get_tenant(id).await? else { return Ok(None) };
        let t = Arc::new(t);
        self.inner.cache.insert_tenant(t.clone(), started);
        Ok(Some(t))
    }

    /// Records a use at `now`: the local expiry follows the exact rule; the
    /// store hears of it at most once per granularity interval. Returns the
    /// expiry after this use.
    fn touch(&self, entry: &Arc<Entry>, key: Key, now: Millis) -> Millis {
        let Record::Session(session) = &entry.record else {
            return entry.expires_at.load(Ordering::Relaxed);
        };
        let idle = entry.tenant.idle_timeout_ms;
        let expires = match session.cap {
            Some(cap) => {
                let e = sliding_expiry(now, idle, cap);
                entry.expires_at.fetch_max(e, Ordering::Relaxed).max(e)
            }
            None => Millis::MAX,
        };
        let g = self.inner.opts.touch_granularity.as_millis() as Millis;
        let last = entry.last_write.load(Ordering::Relaxed);
        let stats = self.inner.cache.stats();
        if now - last < g || entry.last_write.compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed).is_err()
        {
            CacheStats::bump(&stats.touches_coalesced);
            return expires;
        }
        CacheStats::bump(&stats.touches_written);
        let (this, entry) = (self.clone(), entry.clone());
        tokio::spawn(async move {
            let write = this.inner.store.touch_session(key.0, key.1, now, idle);
            match tokio::time::timeout(this.inner.opts.deadline, write).await {
                // The store confirmed the record (the entry still ages from
                // its load: the touch does not re-read the tenant).
                Ok(Ok(Some(_))) => {}
                // Gone (revoked, deleted, expired): never revived; forget it.
                Ok(Ok(None)) => this.inner.cache.remove(&key),
                // Store trouble: let the next use try again.
                Ok(Err(_)) | Err(_) => {
                    let _ = entry.last_write.compare_exchange(now, last, Ordering::AcqRel, Ordering::Relaxed);
                }
            }
        });
        expires
    }
}

/// The shared checks, on a cached entry with this replica's expiry view.
fn check(entry: &Entry, token: &Token, hash: &SecretHash, now: Millis) -> Result<(), InvalidReason> {
    match &entry.record {
        Record::ApiKey(k) => check_api_key(token, hash, Some(k), Some(&entry.tenant), None, now),
        Record::Session(s) => {
            let local = entry.expires_at.load(Ordering::Relaxed);
            let view = SessionView {
                hash: &s.hash,
                env: s.env,
                tenant_id: entry.tenant.id,
                created_at: s.created_at,
                cap: s.cap,
                expires_at: (local != Millis::MAX).then_some(local),
            };
            check_session_view(token, hash, &view, &entry.tenant, now)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use cred_core::Authority;
    use cred_core::authority::NewApiKey;
    use cred_core::store::MemoryStore;

    use super::*;

    async fn setup() -> (Authority<MemoryStore>, Verifier<MemoryStore>, String, String) {
        let store = MemoryStore::new();
        let auth = Authority::new(store.clone());
        let t = auth.create_tenant("op", "t".into(), None, None, Default::default()).await.unwrap();
        let new = NewApiKey {
            tenant_id: t.id,
            env: Environment::Test,
            name: "k".into(),
            scopes: Scopes::default(),
            expires_at: None,
        };
        let key = auth.create_api_key("op", new).await.unwrap().token;
        let p = auth.authenticate_api_key(&key).await.unwrap();
        let c = auth.create_client(&p, BTreeMap::new()).await.unwrap();
        (auth, Verifier::new(store, VerifyOptions::default()), key, c.token)
    }

    #[tokio::test]
    async fn a_forged_secret_does_not_lock_out_the_real_token() {
        let (_, v, _, cst) = setup().await;
        let real = Token::parse(&cst).unwrap();
        let forged = Token::mint(real.kind, real.env, real.route, real.id).expose();
        let req = Requirements::default();
        assert!(matches!(v.verify(&forged, &req).await, Err(Error::InvalidCredential(InvalidReason::Unknown))));
        assert!(v.verify(&cst, &req).await.is_ok(), "refusal of a forged secret was cached by id");
        // And with the real one cached, the forged one is still refused.
        assert!(matches!(v.verify(&forged, &req).await, Err(Error::InvalidCredential(InvalidReason::Unknown))));
    }

    #[tokio::test]
    async fn pushed_revocations_drop_cached_answers() {
        let (auth, v, key, cst) = setup().await;
        cred_core::push::spawn(v.store().clone(), v.cache().clone());
        while !v.cache().push_connected() {
            tokio::task::yield_now().await;
        }
        let req = Requirements::default();
        let ok = v.verify(&cst, &req).await.unwrap();
        assert_eq!(ok.kind, TokenKind::Session);
        assert!(v.verify(&key, &req).await.is_ok());
        auth.store().revoke_session(ok.key.0, ok.key.1).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match v.verify(&cst, &req).await {
                Err(Error::InvalidCredential(InvalidReason::Revoked)) => break,
                Ok(_) => assert!(std::time::Instant::now() < deadline, "revocation never reached the cache"),
                Err(e) => panic!("{e:?}"),
            }
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn passive_verifies_do_not_touch() {
        let (auth, v, _, cst) = setup().await;
        let t = Token::parse(&cst).unwrap();
        let before = auth.store().get_session(t.route, t.id).await.unwrap().session.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let passive = Requirements { passive: true, ..Default::default() };
        v.verify(&cst, &passive).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let after = auth.store().get_session(t.route, t.id).await.unwrap().session.unwrap();
        assert_eq!(after.last_used, before.last_used);
        assert_eq!(after.expires_at, before.expires_at);
    }

    #[tokio::test]
    async fn requirements() {
        let (_, v, key, cst) = setup().await;
        let prod = Requirements { env: Some(Environment::Production), ..Default::default() };
        assert!(matches!(v.verify(&key, &prod).await, Err(Error::InvalidCredential(InvalidReason::EnvMismatch))));
        let scoped = Requirements { scopes: Some(Scopes::parse(["clients.read"]).unwrap()), ..Default::default() };
        assert!(v.verify(&key, &scoped).await.is_ok(), "a key without scopes holds all");
        assert!(matches!(v.verify(&cst, &scoped).await, Err(Error::Forbidden(_))));
        assert!(matches!(v.verify("x", &scoped).await, Err(Error::InvalidCredential(InvalidReason::Malformed))));
    }
}
