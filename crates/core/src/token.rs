//! The token format: `<prefix><route><id><secret><checksum>`.
//!
//! - prefix: kind and environment, readable (`sk_live_`, `cst_test_`, ...);
//! - route: the UUID that routes the token to its records (tenant for an API
//!   key, client for a session or test client key), so one client's records
//!   share a Redis Cluster hash slot;
//! - id: the credential's own UUID (API key id, session id);
//! - secret: 256 bits from the thread's ChaCha20 CSPRNG;
//! - checksum: CRC32 of everything before it.
//!
//! Each 128-bit part is base62, left-padded to 22 characters, and the CRC32 to
//! 6, so every token of a prefix has one length and `parse` can refuse a typo
//! or random text without touching the store. CRC32 detects every error burst
//! of up to 32 bits, hence every single-character change in the covered text;
//! a change inside the checksum changes the value it decodes to.

use std::fmt;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::model::{Environment, SecretHash};
use crate::rng;
use crate::tag::{SecretTag, TagKey};

/// What a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// A tenant backend's API key.
    ApiKey,
    /// A client session token (CST).
    Session,
    /// A never-expiring test client key.
    TestClientKey,
}

const U128_LEN: usize = 22;
const CRC_LEN: usize = 6;
const BODY_LEN: usize = 4 * U128_LEN + CRC_LEN;

/// Every valid prefix with what it stands for.
const PREFIXES: [(&str, TokenKind, Environment); 5] = [
    ("sk_live_", TokenKind::ApiKey, Environment::Production),
    ("sk_test_", TokenKind::ApiKey, Environment::Test),
    ("cst_live_", TokenKind::Session, Environment::Production),
    ("cst_test_", TokenKind::Session, Environment::Test),
    ("tck_test_", TokenKind::TestClientKey, Environment::Test),
];

/// A 256-bit token secret. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; 32]);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// A parsed (or freshly minted) token.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// What the token is for.
    pub kind: TokenKind,
    /// Production or test, from the prefix.
    pub env: Environment,
    /// Tenant id (API key) or client id (session, test client key).
    pub route: Uuid,
    /// The credential's id: API key id or session id.
    pub id: Uuid,
    secret: Secret,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("kind", &self.kind)
            .field("env", &self.env)
            .field("route", &self.route)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Why `parse` refused a token. Callers outside see only "invalid".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("unknown token prefix")]
    Prefix,
    #[error("wrong token length")]
    Length,
    #[error("token is not base62")]
    Encoding,
    #[error("token checksum mismatch")]
    Checksum,
}

impl Token {
    /// Mints a token with a fresh secret.
    pub fn mint(kind: TokenKind, env: Environment, route: Uuid, id: Uuid) -> Token {
        let mut s = [0u8; 32];
        rng::fill(&mut s);
        Token { kind, env, route, id, secret: Secret(s) }
    }

    /// The hash to store and compare against.
    pub fn hash(&self) -> SecretHash {
        let d = Sha256::digest(self.secret.0);
        let mut h = [0u8; 16];
        h.copy_from_slice(&d[..16]);
        SecretHash(h)
    }

    /// The secret's tag under a process' key (`crate::tag`): what a cache
    /// compares on a hit instead of [`Token::hash`].
    pub fn tag(&self, key: &TagKey) -> SecretTag {
        key.tag(&self.secret.0)
    }

    fn prefix(&self) -> &'static str {
        PREFIXES
            .iter()
            .find(|(_, k, e)| *k == self.kind && *e == self.env)
            .map(|(p, _, _)| *p)
            // Test client keys exist only in the test environment; the model
            // never mints one for production.
            .unwrap_or("tck_test_")
    }

    /// The text handed to the holder, once.
    pub fn expose(&self) -> String {
        let prefix = self.prefix();
        let mut out = String::with_capacity(prefix.len() + BODY_LEN);
        out.push_str(prefix);
        push_b62(&mut out, self.route.as_u128(), U128_LEN);
        push_b62(&mut out, self.id.as_u128(), U128_LEN);
        push_b62(&mut out, u128::from_be_bytes(self.secret.0[..16].try_into().unwrap_or_default()), U128_LEN);
        push_b62(&mut out, u128::from_be_bytes(self.secret.0[16..].try_into().unwrap_or_default()), U128_LEN);
        let crc = crc32fast::hash(out.as_bytes());
        push_b62(&mut out, u128::from(crc), CRC_LEN);
        out
    }

    /// Parses and checksums a presented token. Touches nothing but the text.
    pub fn parse(text: &str) -> Result<Token, ParseError> {
        let (prefix, kind, env) =
            PREFIXES.iter().find(|(p, _, _)| text.starts_with(p)).copied().ok_or(ParseError::Prefix)?;
        let body = &text[prefix.len()..];
        if body.len() != BODY_LEN {
            return Err(ParseError::Length);
        }
        // The slicing below is by byte offset: a multi-byte character would
        // split (a panic; found by `fuzz/` target `token`). Base62 is ASCII.
        if !body.is_ascii() {
            return Err(ParseError::Encoding);
        }
        let covered = text.len() - CRC_LEN;
        let crc = decode_b62(&text[covered..])?;
        if crc != u128::from(crc32fast::hash(&text.as_bytes()[..covered])) {
            return Err(ParseError::Checksum);
        }
        let part = |i: usize| decode_b62(&body[i * U128_LEN..(i + 1) * U128_LEN]);
        let route = Uuid::from_u128(part(0)?);
        let id = Uuid::from_u128(part(1)?);
        let mut secret = [0u8; 32];
        secret[..16].copy_from_slice(&part(2)?.to_be_bytes());
        secret[16..].copy_from_slice(&part(3)?.to_be_bytes());
        Ok(Token { kind, env, route, id, secret: Secret(secret) })
    }
}

fn push_b62(out: &mut String, n: u128, width: usize) {
    let digits = base62::encode(n);
    for _ in digits.len()..width {
        out.push('0');
    }
    out.push_str(&digits);
}

fn decode_b62(s: &str) -> Result<u128, ParseError> {
    // base62 accepts only its alphabet; it refuses values above u128::MAX.
    base62::decode(s).map_err(|_| ParseError::Encoding)
}

/// Short, fixed-width text form of a UUID used inside store keys (22 chars
/// instead of 36, which matters at millions of keys).
pub fn short_id(id: Uuid) -> String {
    let mut s = String::with_capacity(U128_LEN);
    push_b62(&mut s, id.as_u128(), U128_LEN);
    s
}

/// Inverse of [`short_id`].
pub fn parse_short_id(s: &str) -> Option<Uuid> {
    (s.len() == U128_LEN).then(|| decode_b62(s).ok().map(Uuid::from_u128)).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kinds() -> impl Strategy<Value = (TokenKind, Environment)> {
        prop_oneof![
            Just((TokenKind::ApiKey, Environment::Production)),
            Just((TokenKind::ApiKey, Environment::Test)),
            Just((TokenKind::Session, Environment::Production)),
            Just((TokenKind::Session, Environment::Test)),
            Just((TokenKind::TestClientKey, Environment::Test)),
        ]
    }

    proptest! {
        #[test]
        fn round_trip((kind, env) in kinds(), route: u128, id: u128) {
            let t = Token::mint(kind, env, Uuid::from_u128(route), Uuid::from_u128(id));
            let text = t.expose();
            let back = Token::parse(&text).unwrap();
            prop_assert_eq!(&back, &t);
            prop_assert_eq!(back.hash(), t.hash());
            prop_assert_eq!(back.expose(), text);
        }

        #[test]
        fn every_single_character_change_is_refused(
            (kind, env) in kinds(), route: u128, id: u128, pos in any::<prop::sample::Index>(), c in any::<char>()
        ) {
            let text = Token::mint(kind, env, Uuid::from_u128(route), Uuid::from_u128(id)).expose();
            let i = pos.index(text.len());
            let old = text.as_bytes()[i] as char;
            prop_assume!(c != old);
            let mut changed = String::with_capacity(text.len() + 4);
            changed.push_str(&text[..i]);
            changed.push(c);
            changed.push_str(&text[i + 1..]);
            prop_assert!(Token::parse(&changed).is_err(), "accepted {changed:?} from {text:?}");
        }

        #[test]
        fn random_text_never_panics(s in ".{0,120}") {
            let _ = Token::parse(&s);
        }
    }

    /// Exhaustive over one token: every position, every printable ASCII
    /// character (the proptest above samples all of Unicode).
    #[test]
    fn every_ascii_substitution_is_refused() {
        for (kind, env) in [(TokenKind::ApiKey, Environment::Test), (TokenKind::Session, Environment::Production)] {
            let text = Token::mint(kind, env, rng::uuid(), rng::uuid()).expose();
            for i in 0..text.len() {
                for c in (0x20u8..0x7f).map(char::from) {
                    if text.as_bytes()[i] as char == c {
                        continue;
                    }
                    let mut b = text.clone().into_bytes();
                    b[i] = c as u8;
                    let changed = String::from_utf8(b).unwrap();
                    assert!(Token::parse(&changed).is_err(), "accepted {changed}");
                }
            }
        }
    }

    /// Right prefix and byte length, but a multi-byte character where the
    /// checksum starts: refused, not a panic (a fuzzing find).
    #[test]
    fn non_ascii_body_is_refused() {
        let text = Token::mint(TokenKind::Session, Environment::Test, rng::uuid(), rng::uuid()).expose();
        for at in [0, BODY_LEN - CRC_LEN - 1, BODY_LEN - 2] {
            let i = "cst_test_".len() + at;
            let changed = format!("{}\u{e9}{}", &text[..i], &text[i + 2..]);
            assert_eq!(changed.len(), text.len());
            assert_eq!(Token::parse(&changed), Err(ParseError::Encoding));
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let t = Token::mint(TokenKind::ApiKey, Environment::Test, rng::uuid(), rng::uuid());
        let text = t.expose();
        let dbg = format!("{t:?} {:?}", t.hash());
        assert!(!dbg.contains(&text[text.len() - 50..text.len() - 6]));
        assert!(dbg.contains("Token"));
    }

    #[test]
    fn short_ids_round_trip() {
        let id = rng::uuid();
        assert_eq!(parse_short_id(&short_id(id)), Some(id));
        assert_eq!(parse_short_id("x"), None);
    }
}
