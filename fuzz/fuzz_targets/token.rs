//! `cred_core::token`: parse and checksum of every token kind.
//!
//! First byte even: the rest is text for `Token::parse`, compared with the
//! oracle's decoder (accepted exactly when well formed; an accepted token
//! re-encodes to the same text). First byte odd: the rest chooses a kind,
//! ids and secret; the oracle encodes that token, `parse` must accept it
//! with those fields, and one changed character, a cut or an extension of
//! it must be refused.
#![no_main]

use cred_core::token::{Token, parse_short_id, short_id};
use cred_fuzz::oracle::{self, PREFIXES};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use uuid::Uuid;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode & 1 == 0 {
        text(&String::from_utf8_lossy(rest));
    } else {
        let _ = structured(&mut Unstructured::new(rest));
    }
});

fn text(s: &str) {
    let parsed = Token::parse(s);
    let want = oracle::decode_token(s);
    assert_eq!(parsed.is_ok(), want.is_some(), "parse {parsed:?} vs oracle {want:?} for {s:?}");
    if let (Ok(t), Some(d)) = (parsed, want) {
        check(&t, &d, s);
    }
    // Short ids (store keys) round-trip when they parse.
    if let Some(id) = parse_short_id(s) {
        assert_eq!(short_id(id), s);
    }
}

fn check(t: &Token, d: &oracle::Decoded, text: &str) {
    assert_eq!((t.kind, t.env, t.route, t.id), (d.kind, d.env, d.route, d.id), "{text:?}");
    assert_eq!(t.hash().0, oracle::secret_hash(&d.secret), "{text:?}");
    // One text per token: what parses re-encodes to itself.
    assert_eq!(t.expose(), text);
    assert_eq!(Token::parse(&t.expose()).as_ref(), Ok(t));
}

fn structured(u: &mut Unstructured<'_>) -> Result<()> {
    let (prefix, kind, env) = PREFIXES[u.choose_index(PREFIXES.len())?];
    let route: u128 = u.arbitrary()?;
    let id: u128 = u.arbitrary()?;
    let secret: [u8; 32] = u.arbitrary()?;
    let text = oracle::encode_token(prefix, route, id, &secret);
    let t = Token::parse(&text).unwrap_or_else(|e| panic!("well-formed {text:?} refused: {e}"));
    let d = oracle::Decoded { kind, env, route: Uuid::from_u128(route), id: Uuid::from_u128(id), secret };
    check(&t, &d, &text);
    assert_eq!(parse_short_id(&short_id(d.route)), Some(d.route));

    // Every single-character change is refused (CRC32 catches any burst of
    // up to 32 bits; a changed checksum decodes to another value).
    let i = u.choose_index(text.len())?;
    let c: char = u.arbitrary()?;
    if !text[i..].starts_with(c) {
        let mut m = String::with_capacity(text.len() + 4);
        m.push_str(&text[..i]);
        m.push(c);
        m.push_str(&text[i + 1..]);
        assert!(Token::parse(&m).is_err(), "accepted {m:?}, one change from {text:?}");
    }
    // Cut or extended: refused.
    let cut = u.choose_index(text.len())?;
    assert!(Token::parse(&text[..cut]).is_err(), "accepted a prefix of {text:?}");
    let extra: char = u.arbitrary()?;
    assert!(Token::parse(&format!("{text}{extra}")).is_err(), "accepted {text:?} + {extra:?}");
    Ok(())
}
