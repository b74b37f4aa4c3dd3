//! Operator keys: made offline from the server secret, checked with no
//! store round trip.
//!
//! A token is `opk_` + base64url(nonce ‖ XChaCha20-Poly1305(key id)). The
//! server accepts it only if it opens under the secret and the key id is in
//! the allowlist; removing an id from the allowlist revokes its key.

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use uuid::Uuid;

use crate::rng;

const PREFIX: &str = "opk_";
/// Binds tokens to this use of the secret.
const AAD: &[u8] = b"authd operator key v1";
const NONCE_LEN: usize = 24;

/// The server's operator secret: 32 bytes, written as base64.
#[derive(Clone)]
pub struct OperatorSecret {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for OperatorSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OperatorSecret(..)")
    }
}

/// Why an operator secret was refused.
#[derive(Debug, thiserror::Error)]
#[error("the operator secret must be 32 bytes in base64 (make one with `authd operator-key secret`)")]
pub struct BadSecret;

impl OperatorSecret {
    /// A fresh random secret, and its base64 text.
    pub fn generate() -> (OperatorSecret, String) {
        let mut k = [0u8; 32];
        rng::fill(&mut k);
        let text = base64::engine::general_purpose::STANDARD.encode(k);
        (OperatorSecret { cipher: XChaCha20Poly1305::new(&k.into()) }, text)
    }

    /// Parses the base64 text of a secret (standard or URL-safe alphabet).
    pub fn parse(text: &str) -> Result<OperatorSecret, BadSecret> {
        let text = text.trim();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .or_else(|_| URL_SAFE_NO_PAD.decode(text))
            .map_err(|_| BadSecret)?;
        let k: [u8; 32] = bytes.try_into().map_err(|_| BadSecret)?;
        Ok(OperatorSecret { cipher: XChaCha20Poly1305::new(&k.into()) })
    }

    /// Makes a new operator key: its id and its token (shown once).
    pub fn issue(&self) -> (Uuid, String) {
        let id = rng::uuid();
        let mut nonce = [0u8; NONCE_LEN];
        rng::fill(&mut nonce);
        let ct = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: id.as_bytes(), aad: AAD })
            // Encryption of 16 bytes cannot exceed the AEAD's length limits.
            .unwrap_or_default();
        let mut raw = nonce.to_vec();
        raw.extend_from_slice(&ct);
        (id, format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(raw)))
    }

    /// The key id sealed in `token`, if it opens under this secret.
    pub fn open(&self, token: &str) -> Option<Uuid> {
        let raw = URL_SAFE_NO_PAD.decode(token.strip_prefix(PREFIX)?).ok()?;
        if raw.len() != NONCE_LEN + 16 + 16 {
            return None;
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let pt = self.cipher.decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: AAD }).ok()?;
        Uuid::from_slice(&pt).ok()
    }
}

/// The operator key ids the server accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist(HashSet<Uuid>);

/// A line of an allowlist file that is not a key id.
#[derive(Debug, thiserror::Error)]
#[error("allowlist line {line}: {text:?} is not a key id (UUID)")]
pub struct BadAllowlist {
    pub line: usize,
    pub text: String,
}

impl Allowlist {
    /// Parses an allowlist file: one key id per line; blank lines and `#`
    /// comments are ignored.
    pub fn parse(text: &str) -> Result<Allowlist, BadAllowlist> {
        let mut ids = HashSet::new();
        for (i, line) in text.lines().enumerate() {
            let l = line.split('#').next().unwrap_or("").trim();
            if l.is_empty() {
                continue;
            }
            let id = Uuid::parse_str(l).map_err(|_| BadAllowlist { line: i + 1, text: l.to_string() })?;
            ids.insert(id);
        }
        Ok(Allowlist(ids))
    }

    /// Parses what it can: the ids of the good lines, and each bad line.
    pub fn parse_lenient(text: &str) -> (Allowlist, Vec<BadAllowlist>) {
        let (mut ids, mut bad) = (HashSet::new(), Vec::new());
        for (i, line) in text.lines().enumerate() {
            let l = line.split('#').next().unwrap_or("").trim();
            if l.is_empty() {
                continue;
            }
            match Uuid::parse_str(l) {
                Ok(id) => {
                    ids.insert(id);
                }
                Err(_) => bad.push(BadAllowlist { line: i + 1, text: l.to_string() }),
            }
        }
        (Allowlist(ids), bad)
    }

    /// The ids of this list that are also in `other`: its removals applied,
    /// none of its additions.
    pub fn intersection(&self, other: &Allowlist) -> Allowlist {
        Allowlist(self.0.intersection(&other.0).copied().collect())
    }

    /// An allowlist of the given ids.
    pub fn of(ids: impl IntoIterator<Item = Uuid>) -> Allowlist {
        Allowlist(ids.into_iter().collect())
    }

    /// Whether `id` is allowed.
    pub fn contains(&self, id: Uuid) -> bool {
        self.0.contains(&id)
    }

    /// How many ids are allowed.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no id is allowed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_and_open() {
        let (s, text) = OperatorSecret::generate();
        let (id, tok) = s.issue();
        assert_eq!(s.open(&tok), Some(id));
        assert_eq!(OperatorSecret::parse(&text).unwrap().open(&tok), Some(id));
        let (other, _) = OperatorSecret::generate();
        assert_eq!(other.open(&tok), None);
        let mut bad = tok.clone().into_bytes();
        let last = bad.len() - 1;
        bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(s.open(std::str::from_utf8(&bad).unwrap()), None);
        assert_eq!(s.open("opk_"), None);
        assert_eq!(s.open("garbage"), None);
    }

    #[test]
    fn allowlist_file() {
        let id = crate::rng::uuid();
        let a = Allowlist::parse(&format!("# ops\n\n{id}  # alice\n")).unwrap();
        assert!(a.contains(id));
        assert_eq!(Allowlist::parse("nope").unwrap_err().line, 1);
        assert!(OperatorSecret::parse("c2hvcnQ=").is_err());
    }
}
