//! Independent statements of the formats and field rules, to compare the
//! code under test against (a differential check, not "does not panic").

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use cred_core::model::Environment;
use cred_core::token::TokenKind;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Every token prefix, as PRODUCT.md lists them.
pub const PREFIXES: [(&str, TokenKind, Environment); 5] = [
    ("sk_live_", TokenKind::ApiKey, Environment::Production),
    ("sk_test_", TokenKind::ApiKey, Environment::Test),
    ("cst_live_", TokenKind::Session, Environment::Production),
    ("cst_test_", TokenKind::Session, Environment::Test),
    ("tck_test_", TokenKind::TestClientKey, Environment::Test),
];

const PART: usize = 22;
const CRC: usize = 6;

/// Base62 (0-9A-Za-z) of `n`, left-padded with '0' to `width`.
pub fn b62(n: u128, width: usize) -> String {
    let d = base62::encode(n);
    format!("{}{d}", "0".repeat(width.saturating_sub(d.len())))
}

/// `<prefix><route><id><secret hi><secret lo><crc32>` as the token module
/// documents it.
pub fn encode_token(prefix: &str, route: u128, id: u128, secret: &[u8; 32]) -> String {
    let hi = u128::from_be_bytes(secret[..16].try_into().unwrap_or_default());
    let lo = u128::from_be_bytes(secret[16..].try_into().unwrap_or_default());
    let mut s = format!("{prefix}{}{}{}{}", b62(route, PART), b62(id, PART), b62(hi, PART), b62(lo, PART));
    let crc = crc32fast::hash(s.as_bytes());
    s.push_str(&b62(u128::from(crc), CRC));
    s
}

/// What a well-formed token text holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub kind: TokenKind,
    pub env: Environment,
    pub route: Uuid,
    pub id: Uuid,
    pub secret: [u8; 32],
}

fn part(s: &[u8]) -> Option<u128> {
    // Digit by digit, with overflow checks: not the base62 crate's decoder.
    s.iter().try_fold(0u128, |acc, &c| {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'A'..=b'Z' => c - b'A' + 10,
            b'a'..=b'z' => c - b'a' + 36,
            _ => return None,
        };
        acc.checked_mul(62)?.checked_add(u128::from(d))
    })
}

/// Decodes a token by the format alone; `None` if it is not well formed.
pub fn decode_token(text: &str) -> Option<Decoded> {
    let (prefix, kind, env) = PREFIXES.iter().find(|(p, _, _)| text.starts_with(p))?;
    let b = &text.as_bytes()[prefix.len()..];
    if b.len() != 4 * PART + CRC {
        return None;
    }
    let covered = text.len() - CRC;
    if part(&b[4 * PART..])? != u128::from(crc32fast::hash(&text.as_bytes()[..covered])) {
        return None;
    }
    let p = |i: usize| part(&b[i * PART..(i + 1) * PART]);
    let mut secret = [0u8; 32];
    secret[..16].copy_from_slice(&p(2)?.to_be_bytes());
    secret[16..].copy_from_slice(&p(3)?.to_be_bytes());
    Some(Decoded { kind: *kind, env: *env, route: Uuid::from_u128(p(0)?), id: Uuid::from_u128(p(1)?), secret })
}

/// SHA-256 of the secret, first 128 bits: what the store keeps.
pub fn secret_hash(secret: &[u8; 32]) -> [u8; 16] {
    let d = Sha256::digest(secret);
    let mut h = [0u8; 16];
    h.copy_from_slice(&d[..16]);
    h
}

/// The fixed operator secret of the fuzz targets (32 bytes).
pub const OPERATOR_SECRET: [u8; 32] = *b"cred-fuzz fixed operator secret.";
/// Another secret: keys sealed under the first must not open under it.
pub const OTHER_SECRET: [u8; 32] = *b"cred-fuzz some other secret 0123";
const OPK_AAD: &[u8] = b"authd operator key v1";

/// `opk_` + base64url(nonce ‖ XChaCha20-Poly1305(key id)), as the operator
/// module documents it.
pub fn seal_operator_key(secret: &[u8; 32], nonce: &[u8; 24], id: Uuid) -> String {
    let c = XChaCha20Poly1305::new(secret.into());
    let ct = c.encrypt(XNonce::from_slice(nonce), Payload { msg: id.as_bytes(), aad: OPK_AAD }).unwrap_or_default();
    let mut raw = nonce.to_vec();
    raw.extend_from_slice(&ct);
    format!("opk_{}", URL_SAFE_NO_PAD.encode(raw))
}

/// Opens an operator key by the format alone.
pub fn open_operator_key(secret: &[u8; 32], text: &str) -> Option<Uuid> {
    let raw = URL_SAFE_NO_PAD.decode(text.strip_prefix("opk_")?).ok()?;
    if raw.len() != 24 + 16 + 16 {
        return None;
    }
    let c = XChaCha20Poly1305::new(secret.into());
    let pt = c.decrypt(XNonce::from_slice(&raw[..24]), Payload { msg: &raw[24..], aad: OPK_AAD }).ok()?;
    Uuid::from_slice(&pt).ok()
}

// ---- request field rules (README "Limits and defaults") ----

/// A required UUID field.
pub fn uuid_ok(s: &str) -> bool {
    !s.is_empty() && Uuid::parse_str(s).is_ok()
}

/// A page token as listings return it (`<score>.<base62 id>`), or empty.
pub fn page_token_ok(s: &str) -> bool {
    s.is_empty()
        || s.split_once('.')
            .is_some_and(|(score, id)| score.parse::<i64>().is_ok() && cred_core::token::parse_short_id(id).is_some())
}

/// A page size: 0 (the default) to 1000.
pub fn page_size_ok(n: u32) -> bool {
    n <= 1000
}

/// A quota of a request: 0 (the default) or 1 to 10^9.
pub fn quota_ok(n: u64) -> bool {
    n <= cred_core::model::limits::QUOTA_MAX
}

/// ENVIRONMENT_PRODUCTION (1) or ENVIRONMENT_TEST (2).
pub fn env_of(v: i32) -> Option<Environment> {
    match v {
        1 => Some(Environment::Production),
        2 => Some(Environment::Test),
        _ => None,
    }
}

/// Tenant and API key names: 1–64 characters, no control characters.
pub fn name_ok(s: &str) -> bool {
    (1..=64).contains(&s.chars().count()) && printable(s)
}

/// No C0/C1 control character and no bidirectional formatting character
/// (ALM, LRM, RLM, LRE..RLO, LRI..PDI).
fn printable(s: &str) -> bool {
    const BIDI: [u32; 11] = [0x061C, 0x200E, 0x200F, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068];
    s.chars().all(|c| {
        let u = c as u32;
        u >= 0x20 && !(0x7F..=0x9F).contains(&u) && !BIDI.contains(&u) && u != 0x2069
    })
}

/// A field the rules refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bad;

/// A Duration field in ms; `Err` if negative, malformed or too long.
pub fn duration_ms(d: Option<&prost_types::Duration>) -> Result<Option<i64>, Bad> {
    let Some(d) = d else { return Ok(None) };
    if d.seconds < 0 || !(0..1_000_000_000).contains(&d.nanos) {
        return Err(Bad);
    }
    d.seconds.checked_mul(1000).and_then(|ms| ms.checked_add(i64::from(d.nanos) / 1_000_000)).map(Some).ok_or(Bad)
}

/// A Timestamp field in ms; `Err` outside years 1970–9999 or malformed.
pub fn timestamp_ms(t: Option<&prost_types::Timestamp>) -> Result<Option<i64>, Bad> {
    let Some(t) = t else { return Ok(None) };
    if !(0..1_000_000_000).contains(&t.nanos) || !(0..=253_402_300_799).contains(&t.seconds) {
        return Err(Bad);
    }
    Ok(Some(t.seconds * 1000 + i64::from(t.nanos) / 1_000_000))
}

/// The six scope names.
pub const SCOPES: [&str; 6] =
    ["clients.create", "clients.read", "clients.delete", "sessions.create", "sessions.read", "sessions.revoke"];

/// Every name is a known scope.
pub fn scopes_ok(names: &[String]) -> bool {
    names.iter().all(|n| SCOPES.contains(&n.as_str()))
}

pub const DAY_MS: i64 = 24 * 3600 * 1000;

/// (idle, max) after defaults, or the field that is out of range.
pub fn policy(idle: Option<i64>, max: Option<i64>) -> Result<(i64, i64), &'static str> {
    let max = max.unwrap_or(7 * DAY_MS);
    let idle = idle.unwrap_or(DAY_MS.min(max));
    if !(1..=365 * DAY_MS).contains(&max) {
        return Err("max_lifetime");
    }
    if idle < 1000 || idle > max {
        return Err("idle_timeout");
    }
    Ok((idle, max))
}

/// Client labels: at most 16; keys 1–63 of `[a-z0-9._-]`; values ≤ 256 bytes.
pub fn labels_ok<'a>(labels: impl ExactSizeIterator<Item = (&'a String, &'a String)>) -> bool {
    let n = labels.len();
    n <= 16
        && labels.into_iter().all(|(k, v)| {
            (1..=63).contains(&k.len())
                && k.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
                && v.len() <= 256
                && printable(v)
        })
}

/// An audit event id as returned: `<u64>-<u64>`.
pub fn event_id_ok(s: &str) -> bool {
    s.split_once('-').is_some_and(|(a, b)| a.parse::<u64>().is_ok() && b.parse::<u64>().is_ok())
}
