//! Wire ↔ domain conversions of authd's messages (those both services make,
//! `Timestamp` and `Environment`, are `cred_proto::convert`'s). Prost types
//! go no further than this module and the service files; every field is
//! validated here or in the domain, and a bad one is an error naming it.

use cred_core::Error;
use cred_core::clock::Millis;
use cred_core::model::{ApiKey, AuditEvent, Client, Environment, Quotas, Session, Tenant};
use cred_proto::authd::v1 as pb;
use cred_proto::convert::timestamp as ts;
use uuid::Uuid;

/// Parses a UUID field.
pub fn uuid(field: &'static str, s: &str) -> Result<Uuid, Error> {
    if s.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    Uuid::parse_str(s).map_err(|_| Error::invalid(field, "must be a UUID"))
}

/// Parses an environment field; UNSPECIFIED and unknown values are refused.
pub fn env(field: &'static str, v: i32) -> Result<Environment, Error> {
    pb::Environment::try_from(v)
        .ok()
        .and_then(Option::from)
        .ok_or_else(|| Error::invalid(field, "must be ENVIRONMENT_PRODUCTION or ENVIRONMENT_TEST"))
}

/// Parses an environment filter: UNSPECIFIED is `None` (either), an unknown
/// value is refused.
pub fn env_filter(field: &'static str, v: i32) -> Result<Option<Environment>, Error> {
    pb::Environment::try_from(v).map(Option::from).map_err(|_| {
        Error::invalid(field, "must be ENVIRONMENT_PRODUCTION, ENVIRONMENT_TEST or ENVIRONMENT_UNSPECIFIED (both)")
    })
}

/// An optional Duration field in milliseconds; negative or malformed ones are
/// refused.
pub fn duration_ms(field: &'static str, d: Option<prost_types::Duration>) -> Result<Option<Millis>, Error> {
    let Some(d) = d else { return Ok(None) };
    if d.seconds < 0 || !(0..1_000_000_000).contains(&d.nanos) {
        return Err(Error::invalid(field, "must be a non-negative duration"));
    }
    d.seconds
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(i64::from(d.nanos / 1_000_000)))
        .map(Some)
        .ok_or_else(|| Error::invalid(field, "is too long"))
}

fn dur(ms: Millis) -> prost_types::Duration {
    prost_types::Duration { seconds: ms / 1000, nanos: ((ms % 1000) * 1_000_000) as i32 }
}

pub fn tenant(t: Tenant) -> pb::Tenant {
    pb::Tenant {
        tenant_id: t.id.to_string(),
        name: t.name,
        idle_timeout: Some(dur(t.idle_timeout_ms)),
        max_lifetime: Some(dur(t.max_lifetime_ms)),
        create_time: Some(ts(t.created_at)),
        revoked_before: t.revoked_before.map(ts),
        quotas: Some(pb::Quotas {
            api_keys: t.quotas.api_keys,
            clients: t.quotas.clients,
            sessions_per_client: t.quotas.sessions_per_client,
        }),
    }
}

/// Quotas of a request: unset or 0 fields are the defaults.
pub fn quotas(q: Option<pb::Quotas>) -> Quotas {
    let (q, d) = (q.unwrap_or_default(), Quotas::default());
    let or = |v: u64, d: u64| if v == 0 { d } else { v };
    Quotas {
        api_keys: or(q.api_keys, d.api_keys),
        clients: or(q.clients, d.clients),
        sessions_per_client: or(q.sessions_per_client, d.sessions_per_client),
    }
}

pub fn api_key(k: ApiKey) -> pb::ApiKey {
    pb::ApiKey {
        key_id: k.id.to_string(),
        tenant_id: k.tenant_id.to_string(),
        environment: pb::Environment::from(k.env).into(),
        name: k.name,
        scopes: k.scopes.names().into_iter().map(str::to_string).collect(),
        create_time: Some(ts(k.created_at)),
        expire_time: k.expires_at.map(ts),
        successor_key_id: k.successor.map(|s| s.to_string()).unwrap_or_default(),
    }
}

pub fn client(c: Client) -> pb::Client {
    pb::Client {
        client_id: c.id.to_string(),
        tenant_id: c.tenant_id.to_string(),
        environment: pb::Environment::from(c.env).into(),
        labels: c.labels.into_iter().collect(),
        create_time: Some(ts(c.created_at)),
    }
}

pub fn session(s: Session) -> pb::Session {
    pb::Session {
        session_id: s.id.to_string(),
        client_id: s.client_id.to_string(),
        create_time: Some(ts(s.created_at)),
        last_use_time: Some(ts(s.last_used)),
        expire_time: s.expires_at.map(ts),
        max_expire_time: s.max_expires_at.map(ts),
        test_key: s.max_expires_at.is_none(),
    }
}

pub fn audit_event(e: AuditEvent) -> pb::AuditEvent {
    pb::AuditEvent {
        event_id: e.id,
        time: Some(ts(e.time)),
        actor: e.actor,
        action: e.action,
        tenant_id: e.tenant_id.to_string(),
        subjects: e.subjects,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_named() {
        let e = uuid("client_id", "nope").unwrap_err();
        assert!(e.to_string().starts_with("client_id:"));
        assert!(env("environment", 0).is_err() && env("environment", 7).is_err());
        assert_eq!(env("environment", 2).unwrap(), Environment::Test);
        assert!(duration_ms("grace_period", Some(prost_types::Duration { seconds: -1, nanos: 0 })).is_err());
        assert_eq!(duration_ms("x", Some(prost_types::Duration { seconds: 2, nanos: 5_000_000 })).unwrap(), Some(2005));
    }
}
