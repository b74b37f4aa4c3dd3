//! The credential model: tenants, API keys, clients, sessions, audit events,
//! and the validation limits of everything a caller may send.

use std::collections::BTreeMap;
use std::fmt;

use subtle::ConstantTimeEq;

use uuid::Uuid;

use crate::clock::Millis;
use crate::error::Error;

/// SHA-256 of a token secret, truncated to 128 bits: the only form in which
/// a secret is stored. The secret has 256 bits of entropy, so a fast hash is
/// enough (no dictionary to slow down), and 128 bits of it leave a preimage
/// search at 2^128 while saving 16 bytes on every stored session.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecretHash(pub [u8; 16]);

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(..)")
    }
}

impl SecretHash {
    /// Constant-time comparison.
    pub fn matches(&self, other: &SecretHash) -> bool {
        ct_eq16(&self.0, &other.0)
    }
}

/// Constant-time equality of 16 bytes, as two 64-bit words: `subtle`'s
/// comparison of byte arrays goes a byte at a time, each through an
/// optimization barrier (about 130 instructions, on every verify).
pub fn ct_eq16(a: &[u8; 16], b: &[u8; 16]) -> bool {
    let (a, b) = (u128::from_le_bytes(*a), u128::from_le_bytes(*b));
    ((a as u64).ct_eq(&(b as u64)) & ((a >> 64) as u64).ct_eq(&((b >> 64) as u64))).into()
}

/// Production and test data never mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Environment {
    Production,
    Test,
}

impl Environment {
    /// One-letter form used in store records.
    pub fn code(self) -> &'static str {
        match self {
            Environment::Production => "p",
            Environment::Test => "t",
        }
    }

    /// Inverse of [`Environment::code`].
    pub fn from_code(s: &str) -> Option<Environment> {
        match s {
            "p" => Some(Environment::Production),
            "t" => Some(Environment::Test),
            _ => None,
        }
    }
}

/// What an API key may do. An empty scope set means everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    ClientsCreate,
    ClientsRead,
    ClientsDelete,
    SessionsCreate,
    SessionsRead,
    SessionsRevoke,
}

impl Scope {
    /// Every scope, in documentation order.
    pub const ALL: [Scope; 6] = [
        Scope::ClientsCreate,
        Scope::ClientsRead,
        Scope::ClientsDelete,
        Scope::SessionsCreate,
        Scope::SessionsRead,
        Scope::SessionsRevoke,
    ];

    /// The name callers use.
    pub fn name(self) -> &'static str {
        match self {
            Scope::ClientsCreate => "clients.create",
            Scope::ClientsRead => "clients.read",
            Scope::ClientsDelete => "clients.delete",
            Scope::SessionsCreate => "sessions.create",
            Scope::SessionsRead => "sessions.read",
            Scope::SessionsRevoke => "sessions.revoke",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of scopes, stored as a bit mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes(pub u8);

impl Scopes {
    /// Parses caller-given scope names; an unknown name is an error naming
    /// the field.
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Scopes, Error> {
        let mut bits = 0u8;
        for n in names {
            let s = Scope::ALL.iter().find(|s| s.name() == n).ok_or_else(|| {
                Error::invalid("scopes", format!("unknown scope {n:?}; known: {}", Scopes::all_names()))
            })?;
            bits |= s.bit();
        }
        Ok(Scopes(bits))
    }

    fn all_names() -> String {
        Scope::ALL.iter().map(|s| s.name()).collect::<Vec<_>>().join(", ")
    }

    /// Whether a key with these scopes may do `s` (empty = all).
    pub fn allows(self, s: Scope) -> bool {
        self.0 == 0 || self.0 & s.bit() != 0
    }

    /// Whether a key with these scopes holds every scope of `want`.
    pub fn allows_all(self, want: Scopes) -> bool {
        self.0 == 0 || want.0 & !self.0 == 0
    }

    /// The names, for display.
    pub fn names(self) -> Vec<&'static str> {
        Scope::ALL.iter().filter(|s| self.0 & s.bit() != 0).map(|s| s.name()).collect()
    }
}

/// One customer of the platform, with its session policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: Uuid,
    pub name: String,
    /// A session dies after this long unused.
    pub idle_timeout_ms: Millis,
    /// A session dies this long after creation, used or not.
    pub max_lifetime_ms: Millis,
    pub created_at: Millis,
    /// Incident response: credentials issued before this are refused.
    pub revoked_before: Option<Millis>,
    /// What the tenant may hold.
    pub quotas: Quotas,
}

/// What a tenant may hold, set per tenant by operators; the defaults suit a
/// large product and only stop a runaway backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// API keys (live, or rolled and in their grace period).
    pub api_keys: u64,
    /// Clients.
    pub clients: u64,
    /// Live sessions per client (test client keys count).
    pub sessions_per_client: u64,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            api_keys: limits::API_KEYS_PER_TENANT,
            clients: limits::CLIENTS_PER_TENANT,
            sessions_per_client: limits::SESSIONS_PER_CLIENT as u64,
        }
    }
}

impl Tenant {
    /// Whether a credential issued at `issued_at` was cut off by
    /// revoke-before.
    pub fn revoked(&self, issued_at: Millis) -> bool {
        self.revoked_before.is_some_and(|rb| issued_at < rb)
    }
}

/// An API key record: metadata and the hash of its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub env: Environment,
    pub name: String,
    pub scopes: Scopes,
    pub created_at: Millis,
    /// Set when the key expires, by request or by a roll's grace period.
    pub expires_at: Option<Millis>,
    /// The key this one was rolled into.
    pub successor: Option<Uuid>,
    pub hash: SecretHash,
}

/// An end user of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub env: Environment,
    pub labels: BTreeMap<String, String>,
    pub created_at: Millis,
}

/// A client session token's record, or a test client key's (which never
/// expires).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: Uuid,
    pub client_id: Uuid,
    pub created_at: Millis,
    pub last_used: Millis,
    /// Current expiry (the store's TTL); `None` for a test client key.
    pub expires_at: Option<Millis>,
    /// The hard cap; `None` for a test client key.
    pub max_expires_at: Option<Millis>,
    pub hash: SecretHash,
}

impl Session {
    /// Whether this is a never-expiring test client key.
    pub fn is_test_key(&self) -> bool {
        self.max_expires_at.is_none()
    }
}

/// The sliding-expiry rule of PRODUCT.md: after a use at `t`, a session
/// lives until `min(t + idle, created + max)`.
pub fn sliding_expiry(t: Millis, idle_ms: Millis, max_expires_at: Millis) -> Millis {
    (t.saturating_add(idle_ms)).min(max_expires_at)
}

/// One entry of the audit trail. Never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// Store position (Redis stream id form `ms-seq`); empty before append.
    pub id: String,
    pub time: Millis,
    /// "operator:<id>" or "api_key:<id>".
    pub actor: String,
    /// e.g. "session.create".
    pub action: String,
    pub tenant_id: Uuid,
    /// e.g. "client:<id>".
    pub subjects: Vec<String>,
}

/// Documented limits on what callers send.
pub mod limits {
    use super::*;

    /// Tenant and API key names.
    pub const NAME_MAX_CHARS: usize = 64;
    /// Labels per client.
    pub const LABELS_MAX: usize = 16;
    /// Label key length; keys are `[a-z0-9._-]`.
    pub const LABEL_KEY_MAX: usize = 63;
    /// Label value length in bytes.
    pub const LABEL_VALUE_MAX: usize = 256;
    /// Shortest idle timeout.
    pub const MIN_IDLE_MS: Millis = 1_000;
    /// Longest max lifetime: a year.
    pub const MAX_LIFETIME_MS: Millis = 365 * 24 * 3600 * 1000;
    /// Default idle timeout: 24 h.
    pub const DEFAULT_IDLE_MS: Millis = 24 * 3600 * 1000;
    /// Default max lifetime: 7 d.
    pub const DEFAULT_MAX_MS: Millis = 7 * 24 * 3600 * 1000;
    /// Longest grace period of a roll: 30 d.
    pub const MAX_GRACE_MS: Millis = 30 * 24 * 3600 * 1000;
    /// How far ahead of the server clock a tenant's revoke-before cut-off
    /// may be set (the clock skew between an operator's tooling, or another
    /// authd, and this one).
    pub const CLOCK_SKEW_MS: Millis = 5_000;
    /// Live sessions per client (test client keys included), by default.
    pub const SESSIONS_PER_CLIENT: usize = 100;
    /// API keys per tenant, by default.
    pub const API_KEYS_PER_TENANT: u64 = 1_000;
    /// Clients per tenant, by default.
    pub const CLIENTS_PER_TENANT: u64 = 1_000_000;
    /// The largest quota an operator may set (each is at least 1).
    pub const QUOTA_MAX: u64 = 1_000_000_000;
    /// Audit page size cap.
    pub const AUDIT_PAGE_MAX: usize = 1000;
    /// Largest page of a listing (API keys, sessions), and the default.
    pub const PAGE_MAX: usize = 1000;
    pub const PAGE_DEFAULT: usize = 100;

    /// Quotas: each from 1 to [`QUOTA_MAX`].
    pub fn quotas(q: &Quotas) -> Result<(), Error> {
        for (field, v) in [
            ("quotas.api_keys", q.api_keys),
            ("quotas.clients", q.clients),
            ("quotas.sessions_per_client", q.sessions_per_client),
        ] {
            if !(1..=QUOTA_MAX).contains(&v) {
                return Err(Error::invalid(field, format!("must be from 1 to {QUOTA_MAX}")));
            }
        }
        Ok(())
    }

    /// A name: 1 to 64 characters, no control or bidirectional formatting
    /// characters.
    pub fn name(field: &'static str, s: &str) -> Result<(), Error> {
        let n = s.chars().count();
        if n == 0 || n > NAME_MAX_CHARS {
            return Err(Error::invalid(field, format!("must be 1 to {NAME_MAX_CHARS} characters")));
        }
        if s.chars().any(unprintable) {
            return Err(Error::invalid(field, "must not contain control or bidirectional formatting characters"));
        }
        Ok(())
    }

    /// A character that must not reach an operator's screen or a log line
    /// from a caller: control characters (NUL, ESC, newlines, C1) and the
    /// bidirectional formatting ones (a U+202E makes "exe.txt" read
    /// "txt.exe").
    pub fn unprintable(c: char) -> bool {
        c.is_control()
            || matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    }

    /// Client labels.
    pub fn labels(l: &BTreeMap<String, String>) -> Result<(), Error> {
        if l.len() > LABELS_MAX {
            return Err(Error::invalid("labels", format!("at most {LABELS_MAX} labels")));
        }
        for (k, v) in l {
            let ok = !k.is_empty()
                && k.len() <= LABEL_KEY_MAX
                && k.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
            if !ok {
                return Err(Error::invalid(
                    "labels",
                    format!("label key {k:?} must be 1 to {LABEL_KEY_MAX} characters of [a-z0-9._-]"),
                ));
            }
            if v.len() > LABEL_VALUE_MAX {
                return Err(Error::invalid("labels", format!("label {k:?} value is over {LABEL_VALUE_MAX} bytes")));
            }
            if v.chars().any(unprintable) {
                return Err(Error::invalid(
                    "labels",
                    format!("label {k:?} value must not contain control or bidirectional formatting characters"),
                ));
            }
        }
        Ok(())
    }

    /// A tenant's session policy.
    pub fn policy(idle: Millis, max: Millis) -> Result<(), Error> {
        if !(1..=MAX_LIFETIME_MS).contains(&max) {
            return Err(Error::invalid("max_lifetime", "must be between 1 s and 365 days"));
        }
        if idle < MIN_IDLE_MS || idle > max {
            return Err(Error::invalid("idle_timeout", "must be at least 1 s and at most max_lifetime"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_expiry_is_capped() {
        assert_eq!(sliding_expiry(1_000, 2_000, 10_000), 3_000);
        assert_eq!(sliding_expiry(9_000, 2_000, 10_000), 10_000);
    }

    #[test]
    fn scopes() {
        let s = Scopes::parse(["clients.read", "sessions.create"]).unwrap();
        assert!(s.allows(Scope::ClientsRead) && !s.allows(Scope::ClientsDelete));
        assert!(Scopes::default().allows(Scope::ClientsDelete));
        assert_eq!(s.names(), ["clients.read", "sessions.create"]);
        assert!(Scopes::parse(["admin"]).is_err());
        assert!(s.allows_all(Scopes::parse(["clients.read"]).unwrap()));
        assert!(!s.allows_all(Scopes::parse(["clients.read", "clients.delete"]).unwrap()));
        assert!(Scopes::default().allows_all(s));
    }

    #[test]
    fn label_limits() {
        let mut l = BTreeMap::new();
        l.insert("plan".to_string(), "pro".to_string());
        assert!(limits::labels(&l).is_ok());
        l.insert("Bad Key".to_string(), String::new());
        assert!(limits::labels(&l).is_err());
    }
}
