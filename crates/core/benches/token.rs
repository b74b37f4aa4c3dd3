//! Token format costs (issue 2, figures): minting a token, rendering it,
//! parsing a valid one, refusing one with a bad checksum (the no-store
//! rejection path), and hashing its secret.
//!
//! Run with `cargo bench -p cred-core --bench token`. Measurement windows are
//! short so the whole run stays well under a minute.

use std::hint::black_box;
use std::time::Duration;

use cred_core::model::Environment;
use cred_core::rng;
use cred_core::token::{Token, TokenKind};
use criterion::{Criterion, criterion_group, criterion_main};

/// A valid token's text with one character of its secret part changed, so
/// that only the checksum tells it apart from a valid token.
fn bad_checksum(valid: &str) -> String {
    // The secret sits before the 6-character checksum; change a character
    // well inside it to another base62 digit.
    let i = valid.len() - 6 - 10;
    let mut b = valid.as_bytes().to_vec();
    b[i] = if b[i] == b'A' { b'B' } else { b'A' };
    String::from_utf8(b).expect("ASCII in, ASCII out")
}

fn token(c: &mut Criterion) {
    let route = rng::uuid();
    let id = rng::uuid();
    let minted = Token::mint(TokenKind::Session, Environment::Production, route, id);
    let text = minted.expose();
    let bad = bad_checksum(&text);
    assert!(Token::parse(&text).is_ok(), "the valid token must parse");
    assert!(Token::parse(&bad).is_err(), "the changed token must be refused");

    let mut g = c.benchmark_group("token");
    g.measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_secs(1)).sample_size(30);

    g.bench_function("mint", |b| {
        b.iter(|| Token::mint(TokenKind::Session, Environment::Production, black_box(route), black_box(id)))
    });
    g.bench_function("expose", |b| b.iter(|| black_box(&minted).expose()));
    g.bench_function("parse_valid", |b| b.iter(|| Token::parse(black_box(&text))));
    g.bench_function("parse_bad_checksum", |b| b.iter(|| Token::parse(black_box(&bad))));
    g.bench_function("hash", |b| b.iter(|| black_box(&minted).hash()));
    g.finish();
}

criterion_group!(benches, token);
criterion_main!(benches);
