//! Field codecs: domain records to and from Redis hashes, session strings,
//! index scores and stream entries.

use std::collections::{BTreeMap, HashMap};

use redis::{ErrorKind, RedisError};
use uuid::Uuid;

use super::keys::{audit_key, client_key, session_index_key, session_key};
use crate::clock::Millis;
use crate::error::StoreError;
use crate::model::SecretHash;
use crate::model::{ApiKey, AuditEvent, Client, Environment, Quotas, Scopes, Session, Tenant};
use crate::store::{AUDIT_MAX_LEN, Gone, REMEMBER_MS, StoreResult};
use crate::token::{parse_short_id, short_id};

impl From<RedisError> for StoreError {
    fn from(e: RedisError) -> Self {
        match e.kind() {
            ErrorKind::Parse | ErrorKind::UnexpectedReturnType => StoreError::Corrupt(e.to_string()),
            _ => StoreError::Unavailable(e.to_string()),
        }
    }
}

pub(super) fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// A hash as HGETALL returns it.
pub(super) type Hash = HashMap<String, Vec<u8>>;

/// A hash read with HGETALL.
pub(super) struct Fields(pub(super) HashMap<String, Vec<u8>>);

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

pub(super) fn tenant_from(id: Uuid, f: HashMap<String, Vec<u8>>) -> StoreResult<Option<Tenant>> {
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
        quotas: {
            let d = Quotas::default();
            Quotas {
                api_keys: f.opt_int("qk")?.map_or(d.api_keys, |v| v as u64),
                clients: f.opt_int("qc")?.map_or(d.clients, |v| v as u64),
                sessions_per_client: f.opt_int("qs")?.map_or(d.sessions_per_client, |v| v as u64),
            }
        },
    }))
}

pub(super) fn api_key_from(tenant_id: Uuid, id: Uuid, f: HashMap<String, Vec<u8>>) -> StoreResult<Option<ApiKey>> {
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

pub(super) fn api_key_fields(k: &ApiKey) -> Vec<(&'static str, Vec<u8>)> {
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

pub(super) fn client_from(id: Uuid, f: HashMap<String, Vec<u8>>) -> StoreResult<Option<Client>> {
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
pub(super) const SESSION_LEN: usize = 40;

/// A session's value: hash ‖ created ‖ cap (0 = none) ‖ last use.
pub(super) fn session_value(s: &Session) -> Vec<u8> {
    let mut v = Vec::with_capacity(SESSION_LEN);
    v.extend_from_slice(&s.hash.0);
    v.extend_from_slice(&s.created_at.to_be_bytes());
    v.extend_from_slice(&s.max_expires_at.unwrap_or(0).to_be_bytes());
    v.extend_from_slice(&s.last_used.to_be_bytes());
    v
}

/// A session from its value and PEXPIRETIME (-1: none).
pub(super) fn session_from(client_id: Uuid, id: Uuid, v: Option<Vec<u8>>, expire: i64) -> StoreResult<Option<Session>> {
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
pub(super) fn session_score(s: &Session) -> String {
    s.max_expires_at.map_or_else(|| "+inf".to_string(), |m| m.to_string())
}

/// Appends a new session's writes to a MULTI.
pub(super) fn push_session_writes(p: &mut redis::Pipeline, s: &Session) {
    let key = session_key(s.client_id, s.id);
    let set = p.cmd("SET").arg(&key).arg(session_value(s));
    if let Some(e) = s.expires_at {
        set.arg("PXAT").arg(e);
    }
    set.ignore();
}

/// Appends a client's records (and its first session) to a pipeline.
pub(super) fn push_client_writes(p: &mut redis::Pipeline, c: &Client, first: Option<&Session>) -> StoreResult<()> {
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
pub(super) fn xadd(e: &AuditEvent) -> redis::Cmd {
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

/// Why a session is missing, from its index score (its cap) and whether it
/// is in the revoked set.
pub(super) fn gone(cap: Option<f64>, revoked: bool, now: Millis) -> Option<Gone> {
    if revoked {
        return Some(Gone::Revoked);
    }
    cap.map(|cap| if cap <= now as f64 { Gone::ExpiredMax } else { Gone::ExpiredIdle })
}
