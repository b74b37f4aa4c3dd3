//! Field codecs: domain records to and from Redis hashes, session fields
//! (and the session strings written before them), index scores and stream
//! entries.

use std::collections::{BTreeMap, HashMap};

use redis::{ErrorKind, RedisError};
use uuid::Uuid;

use super::keys::{audit_key, client_key};
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
    /// An id written as its 16 bytes, or in base62 (before those).
    fn raw_id(&self, f: &str) -> StoreResult<Uuid> {
        match self.0.get(f).map(Vec::as_slice) {
            Some(b) if b.len() == 16 => Ok(Uuid::from_slice(b).map_err(|_| corrupt(f))?),
            _ => self.id(f),
        }
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
    Ok(Some(Client { id, tenant_id: f.raw_id("t")?, env: f.env("e")?, labels, created_at: f.int("c")? }))
}

/// The client fields of a client hash, in the order [`client_from_values`]
/// takes them (HMGET: the hash also holds the client's sessions).
pub(super) const CLIENT_FIELDS: [&str; 4] = ["t", "e", "c", "l"];

/// A client from the HMGET of [`CLIENT_FIELDS`].
pub(super) fn client_from_values(id: Uuid, values: Vec<Option<Vec<u8>>>) -> StoreResult<Option<Client>> {
    let f: HashMap<String, Vec<u8>> =
        CLIENT_FIELDS.iter().zip(values).filter_map(|(k, v)| Some((k.to_string(), v?))).collect();
    client_from(id, f)
}

/// Bytes of a session string (before sessions were client hash fields).
pub(super) const LEGACY_SESSION_LEN: usize = 40;

/// Bytes of a session field's value: hash ‖ created ‖ cap ‖ last use ‖
/// expiry, the times as 6-byte big-endian ms (0: none). 40 bytes, so that a
/// client with one session stays in one 112-byte listpack allocation.
pub(super) const SESSION_LEN: usize = 40;

/// A time in 6 bytes (ms until the year 10889); 0 for none.
fn u48(t: Option<Millis>) -> [u8; 6] {
    let t = t.unwrap_or(0).clamp(0, (1 << 48) - 1) as u64;
    let b = t.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

fn from_u48(b: &[u8]) -> Millis {
    b.iter().fold(0, |acc, &x| (acc << 8) | Millis::from(x))
}

/// A session's field in its client's hash: its id's 16 bytes (a client
/// field's name is one letter), and its value.
pub(super) fn session_field(s: &Session) -> ([u8; 16], Vec<u8>) {
    let mut v = Vec::with_capacity(SESSION_LEN);
    v.extend_from_slice(&s.hash.0);
    v.extend_from_slice(&u48(Some(s.created_at)));
    v.extend_from_slice(&u48(s.max_expires_at));
    v.extend_from_slice(&u48(Some(s.last_used)));
    v.extend_from_slice(&u48(s.expires_at));
    (*s.id.as_bytes(), v)
}

/// A session from its field in the client hash, whatever its state.
pub(super) fn session_from_field(client_id: Uuid, id: Uuid, v: &[u8]) -> StoreResult<Session> {
    if v.len() != SESSION_LEN {
        return Err(corrupt("session field"));
    }
    let opt = |t: Millis| (t != 0).then_some(t);
    Ok(Session {
        id,
        client_id,
        created_at: from_u48(&v[16..22]),
        max_expires_at: opt(from_u48(&v[22..28])),
        last_used: from_u48(&v[28..34]),
        expires_at: opt(from_u48(&v[34..40])),
        hash: SecretHash(v[..16].try_into().map_err(|_| corrupt("session hash"))?),
    })
}

/// What a stored session is at `now`: live, gone (and why), or past
/// remembering (`Err(None)`), as the memory store tells it.
pub(super) fn session_state(s: Session, now: Millis) -> Result<Session, Option<Gone>> {
    match (s.max_expires_at, s.expires_at) {
        (Some(cap), _) if cap.saturating_add(REMEMBER_MS) <= now => Err(None),
        (Some(cap), _) if cap <= now => Err(Some(Gone::ExpiredMax)),
        (_, Some(e)) if e <= now => Err(Some(Gone::ExpiredIdle)),
        _ => Ok(s),
    }
}

/// A session from a session string and its PEXPIRETIME (-1: none), as
/// written before sessions were client hash fields.
pub(super) fn legacy_session_from(
    client_id: Uuid,
    id: Uuid,
    v: Option<Vec<u8>>,
    expire: i64,
) -> StoreResult<Option<Session>> {
    let Some(v) = v else { return Ok(None) };
    if v.len() != LEGACY_SESSION_LEN {
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

/// Appends a client's record (and its first session) to a pipeline: one
/// hash, the session a field of it.
pub(super) fn push_client_writes(p: &mut redis::Pipeline, c: &Client, first: Option<&Session>) -> StoreResult<()> {
    let mut fields: Vec<(&[u8], Vec<u8>)> = vec![
        (b"t", c.tenant_id.as_bytes().to_vec()),
        (b"e", c.env.code().as_bytes().to_vec()),
        (b"c", c.created_at.to_string().into_bytes()),
    ];
    if !c.labels.is_empty() {
        fields.push((b"l", serde_json::to_vec(&c.labels).map_err(|e| corrupt(&e.to_string()))?));
    }
    let session = first.map(session_field);
    if let Some((name, value)) = &session {
        fields.push((name.as_slice(), value.clone()));
    }
    p.hset_multiple(client_key(c.id), &fields).ignore();
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
