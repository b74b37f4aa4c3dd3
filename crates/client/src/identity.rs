//! `Identity`: who a verified credential belongs to, as a plain Rust value
//! (the wire types stay inside this crate), and its conversion from
//! introspect's answer.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use cred_core::Error;
use cred_core::error::StoreError;
use cred_core::model::Environment;
use cred_proto::introspect::v1 as pb;
use uuid::Uuid;

/// The verified caller, put in the request extensions by the layer (and an
/// axum extractor with the `axum` feature). Never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The tenant the credential belongs to.
    pub tenant_id: Uuid,
    /// Production or test; the two never mix.
    pub environment: Environment,
    /// What kind of credential, with its ids.
    pub credential: Credential,
    /// An API key's scopes (empty: every scope); empty for sessions.
    pub scopes: Vec<String>,
    /// The client's labels (sessions and test client keys).
    pub labels: HashMap<String, String>,
    /// When the credential was issued.
    pub create_time: SystemTime,
    /// When it dies if not used again; `None`: never (test client keys,
    /// API keys without expiry).
    pub expire_time: Option<SystemTime>,
    /// A session's hard cap; `None` for test client keys and API keys.
    pub max_expire_time: Option<SystemTime>,
}

/// The kind of credential presented, with the ids it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Credential {
    /// A client session token (`cst_live_…`, `cst_test_…`).
    Session { client_id: Uuid, session_id: Uuid },
    /// A never-expiring test client key (`tck_test_…`), stored as a session.
    TestClientKey { client_id: Uuid, session_id: Uuid },
    /// A tenant backend's API key (`sk_live_…`, `sk_test_…`).
    ApiKey { key_id: Uuid },
}

impl Credential {
    /// `"session"`, `"test_client_key"` or `"api_key"`, for logs and JSON.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Credential::Session { .. } => "session",
            Credential::TestClientKey { .. } => "test_client_key",
            Credential::ApiKey { .. } => "api_key",
        }
    }
}

impl Identity {
    /// The end user's client id (sessions and test client keys).
    pub fn client_id(&self) -> Option<Uuid> {
        match self.credential {
            Credential::Session { client_id, .. } | Credential::TestClientKey { client_id, .. } => Some(client_id),
            Credential::ApiKey { .. } => None,
        }
    }

    /// The session id (sessions and test client keys).
    pub fn session_id(&self) -> Option<Uuid> {
        match self.credential {
            Credential::Session { session_id, .. } | Credential::TestClientKey { session_id, .. } => Some(session_id),
            Credential::ApiKey { .. } => None,
        }
    }

    /// The API key's id.
    pub fn key_id(&self) -> Option<Uuid> {
        match self.credential {
            Credential::ApiKey { key_id } => Some(key_id),
            _ => None,
        }
    }
}

/// introspect's answer as an `Identity`. An answer this crate cannot read
/// (a bad id, an unknown kind) is `StoreError::Corrupt`, i.e. UNAVAILABLE to
/// the caller: never a half-filled identity.
pub(crate) fn from_response(r: pb::VerifyResponse) -> Result<Identity, Error> {
    let bad = |what: &str| Error::Store(StoreError::Corrupt(format!("introspect answered a bad {what}")));
    let id = |what: &'static str, s: &str| Uuid::parse_str(s).map_err(|_| bad(what));
    let time = |what: &'static str, t: Option<prost_types::Timestamp>| {
        let ms = cred_proto::convert::millis(what, t).map_err(|_| bad(what))?;
        Ok::<_, Error>(ms.map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms as u64)))
    };
    let environment = pb::Environment::try_from(r.environment)
        .ok()
        .and_then(Option::<Environment>::from)
        .ok_or_else(|| bad("environment"))?;
    let credential = match pb::CredentialKind::try_from(r.kind) {
        Ok(pb::CredentialKind::Session) => Credential::Session {
            client_id: id("client_id", &r.client_id)?,
            session_id: id("session_id", &r.session_id)?,
        },
        Ok(pb::CredentialKind::TestClientKey) => Credential::TestClientKey {
            client_id: id("client_id", &r.client_id)?,
            session_id: id("session_id", &r.session_id)?,
        },
        Ok(pb::CredentialKind::ApiKey) => Credential::ApiKey { key_id: id("key_id", &r.key_id)? },
        _ => return Err(bad("kind")),
    };
    Ok(Identity {
        tenant_id: id("tenant_id", &r.tenant_id)?,
        environment,
        credential,
        scopes: r.scopes,
        labels: r.labels,
        create_time: time("create_time", r.create_time)?.ok_or_else(|| bad("create_time"))?,
        expire_time: time("expire_time", r.expire_time)?,
        max_expire_time: time("max_expire_time", r.max_expire_time)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> pb::VerifyResponse {
        pb::VerifyResponse {
            kind: pb::CredentialKind::Session as i32,
            tenant_id: Uuid::new_v4().to_string(),
            environment: pb::Environment::Test as i32,
            client_id: Uuid::new_v4().to_string(),
            session_id: Uuid::new_v4().to_string(),
            create_time: Some(prost_types::Timestamp { seconds: 1_700_000_000, nanos: 5_000_000 }),
            expire_time: Some(prost_types::Timestamp { seconds: 1_700_000_060, nanos: 0 }),
            ..Default::default()
        }
    }

    #[test]
    fn a_session_answer() {
        let r = session();
        let i = from_response(r.clone()).unwrap();
        assert_eq!(i.client_id().map(|u| u.to_string()), Some(r.client_id));
        assert_eq!(i.key_id(), None);
        assert_eq!(i.environment, Environment::Test);
        assert_eq!(i.create_time, SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_005));
        assert_eq!(i.max_expire_time, None);
        assert_eq!(i.credential.kind_name(), "session");
    }

    #[test]
    fn an_unreadable_answer_is_unavailable_not_an_identity() {
        for broken in [
            pb::VerifyResponse { kind: 0, ..session() },
            pb::VerifyResponse { environment: 0, ..session() },
            pb::VerifyResponse { client_id: "nope".into(), ..session() },
            pb::VerifyResponse { create_time: None, ..session() },
        ] {
            assert!(matches!(from_response(broken), Err(Error::Store(StoreError::Corrupt(_)))));
        }
    }
}
