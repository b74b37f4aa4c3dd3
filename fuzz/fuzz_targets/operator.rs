//! `cred_core::operator`: opening XChaCha20-Poly1305 sealed `opk_` keys
//! under a fixed secret, and parsing secrets and allowlists.
//!
//! First byte even: the rest is text; `open` must agree with the oracle's
//! opener, an opened key is in canonical form and never opens under another
//! secret; `OperatorSecret::parse` and `Allowlist::parse` must agree with the
//! documented rules. First byte odd: the rest chooses a nonce and key id;
//! the oracle seals that key, `open` must return the id, and one changed
//! character or a cut must be refused.
#![no_main]

use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use cred_core::operator::{Allowlist, OperatorSecret};
use cred_fuzz::oracle::{self, OPERATOR_SECRET, OTHER_SECRET};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use uuid::Uuid;

static SECRET: LazyLock<OperatorSecret> =
    LazyLock::new(|| OperatorSecret::parse(&STANDARD.encode(OPERATOR_SECRET)).expect("secret"));
static OTHER: LazyLock<OperatorSecret> =
    LazyLock::new(|| OperatorSecret::parse(&URL_SAFE_NO_PAD.encode(OTHER_SECRET)).expect("secret"));

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode & 1 == 0 {
        text(&String::from_utf8_lossy(rest));
    } else {
        let _ = structured(&mut Unstructured::new(rest));
    }
});

fn text(s: &str) {
    let got = SECRET.open(s);
    assert_eq!(got, oracle::open_operator_key(&OPERATOR_SECRET, s), "{s:?}");
    if got.is_some() {
        // Canonical: no padding, no stray bits, nothing around it.
        let raw = URL_SAFE_NO_PAD.decode(&s[4..]).expect("opened, so decodes");
        assert_eq!(format!("opk_{}", URL_SAFE_NO_PAD.encode(raw)), s);
        assert_eq!(OTHER.open(s), None, "{s:?} opens under two secrets");
    }

    // A secret is 32 bytes of base64 (standard or URL-safe), trimmed.
    let t = s.trim();
    let bytes = STANDARD.decode(t).or_else(|_| URL_SAFE_NO_PAD.decode(t));
    let want = bytes.is_ok_and(|b| b.len() == 32);
    assert_eq!(OperatorSecret::parse(s).is_ok(), want, "secret {s:?}");

    // An allowlist: one UUID per line, `#` comments and blank lines ignored.
    let lines: Vec<&str> = s.lines().map(|l| l.split('#').next().unwrap_or("").trim()).collect();
    match Allowlist::parse(s) {
        Ok(a) => {
            let ids: Vec<Uuid> =
                lines.iter().filter(|l| !l.is_empty()).map(|l| Uuid::parse_str(l).expect("ok")).collect();
            assert!(ids.iter().all(|id| a.contains(*id)));
            assert!(a.len() <= ids.len());
        }
        Err(e) => {
            // The first bad line, counted from 1.
            let first = lines.iter().position(|l| !l.is_empty() && Uuid::parse_str(l).is_err());
            assert_eq!(Some(e.line - 1), first, "{s:?}");
        }
    }
}

fn structured(u: &mut Unstructured<'_>) -> Result<()> {
    let nonce: [u8; 24] = u.arbitrary()?;
    let id = Uuid::from_u128(u.arbitrary()?);
    let tok = oracle::seal_operator_key(&OPERATOR_SECRET, &nonce, id);
    assert_eq!(SECRET.open(&tok), Some(id), "{tok:?}");
    assert_eq!(OTHER.open(&tok), None);
    // One changed character: refused (AEAD tag, or not canonical base64).
    let i = u.choose_index(tok.len())?;
    let c: char = u.arbitrary()?;
    if !tok[i..].starts_with(c) {
        let mut m = String::with_capacity(tok.len() + 4);
        m.push_str(&tok[..i]);
        m.push(c);
        m.push_str(&tok[i + 1..]);
        assert_eq!(SECRET.open(&m), None, "accepted {m:?}, one change from {tok:?}");
    }
    let cut = u.choose_index(tok.len())?;
    assert_eq!(SECRET.open(&tok[..cut]), None);
    Ok(())
}
