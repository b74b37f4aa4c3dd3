//! Hostile callers, over real gRPC and a real redis-server: guessing
//! attacks hit the failed-authentication budgets and stop costing store
//! commands, and random or mutated tokens are refused without one.
//!
//! `HOSTILE_TOKENS` sets how many random and mutated tokens are sent to
//! introspect (20,000 by default; the README's documented run uses 1,000,000).
//! `HOSTILE_SEED` replays a run.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use cred_core::guard::GuardOptions;
use cred_core::model::Environment;
use cred_core::token::{Token, TokenKind};
use cred_proto::authd::v1 as apb;
use cred_proto::introspect::v1 as pb;
use cred_tests::authd::{assert_invalid_api_key, authed};
use cred_tests::introspect::cause;
use cred_tests::{Authd, Backend, Redis, RedisServer, Replica};
use futures::StreamExt;
use introspect::VerifyOptions;
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// Store commands run since `before` (health pings and INFO excluded).
fn store_commands(redis: &RedisServer, before: &HashMap<String, u64>) -> HashMap<String, u64> {
    redis
        .command_stats()
        .into_iter()
        .filter(|(k, _)| k != "info" && k != "ping")
        .map(|(k, v)| (k.clone(), v - before.get(&k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

/// Asserts a refusal by the failure budgets, and returns its RetryInfo delay.
fn assert_throttled(s: &Status, limit: &str) -> Duration {
    assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
    let info = s.get_details_error_info().unwrap_or_else(|| panic!("no ErrorInfo in {s:?}"));
    assert_eq!(info.reason, "TOO_MANY_FAILED_AUTHENTICATIONS");
    assert_eq!(info.metadata.get("limit").map(String::as_str), Some(limit), "{s:?}");
    let retry = s.get_details_retry_info().unwrap_or_else(|| panic!("no RetryInfo in {s:?}"));
    retry.retry_delay.expect("a retry delay")
}

/// The same token with a fresh (wrong) secret.
fn forged(token: &str) -> String {
    let t = Token::parse(token).expect("a valid token");
    Token::mint(t.kind, t.env, t.route, t.id).expose()
}

fn guard(per_credential: u32, per_peer: u32) -> GuardOptions {
    GuardOptions {
        per_credential: NonZeroU32::new(per_credential),
        per_peer: NonZeroU32::new(per_peer),
        capacity: 1000,
    }
}

const BUDGET: u32 = 5;

#[tokio::test]
async fn authd_guessing_one_api_key_id_is_throttled_without_store_commands() {
    let authd = Authd::start_configured(Redis::start(Backend::Standalone), Default::default(), |a| {
        a.with_failure_guard(guard(BUDGET, 0))
    })
    .await;
    let keys = authd.tenant(None).await;
    let mut clients = authd.clients();
    let get = |key: &str| authed(key, apb::GetClientRequest { client_id: uuid::Uuid::new_v4().to_string() });

    // An uncached key id under attack: the budget's failures reach the store,
    // then one more, and every later guess is refused with no store command.
    let victim = authd.api_key(&keys.tenant_id, apb::Environment::Test, &[]).await;
    for i in 0..=BUDGET {
        let s = clients.get_client(get(&forged(&victim))).await.unwrap_err();
        assert_invalid_api_key(&s, &format!("guess {i}"));
    }
    let before = authd.redis.server().command_stats();
    for _ in 0..200 {
        let s = clients.get_client(get(&forged(&victim))).await.unwrap_err();
        let retry = assert_throttled(&s, "credential id");
        assert!(retry > Duration::ZERO && retry <= Duration::from_secs(60 / BUDGET as u64), "{retry:?}");
    }
    // The trade-off of a per-id budget: the real key, not cached here, is
    // refused too until the budget refills (README, "Limits").
    let s = clients.get_client(get(&victim)).await.unwrap_err();
    assert_throttled(&s, "credential id");
    let used = store_commands(authd.redis.server(), &before);
    assert!(used.is_empty(), "throttled guesses ran store commands: {used:?}");

    // A key this authd has cached keeps working while its id is attacked:
    // guesses are checked against the cache, no store command either way.
    assert!(authd.api_key_ok(&keys.test_key).await);
    let before = authd.redis.server().command_stats();
    for _ in 0..50 {
        let s = clients.get_client(get(&forged(&keys.test_key))).await.unwrap_err();
        assert!(matches!(s.code(), Code::Unauthenticated | Code::ResourceExhausted), "{s:?}");
    }
    let used = store_commands(authd.redis.server(), &before);
    assert!(used.is_empty(), "guesses of a cached key ran store commands: {used:?}");
    let s = clients.get_client(get(&keys.test_key)).await.unwrap_err();
    assert_eq!(s.code(), Code::NotFound, "the real key is authenticated: {s:?}");

    // Sessions: the same budget per session id.
    let c = clients
        .create_client(authed(&keys.test_key, apb::CreateClientRequest::default()))
        .await
        .expect("create client")
        .into_inner();
    for _ in 0..=BUDGET {
        assert!(!authd.session_ok(&forged(&c.token)).await);
    }
    let before = authd.redis.server().command_stats();
    let s = authd
        .sessions()
        .get_current_session(authed(&forged(&c.token), apb::GetCurrentSessionRequest {}))
        .await
        .unwrap_err();
    assert_throttled(&s, "credential id");
    assert!(store_commands(authd.redis.server(), &before).is_empty());
}

#[tokio::test]
async fn authd_refuses_an_oversized_request_before_reading_it() {
    let authd = Authd::start().await;
    let keys = authd.tenant(None).await;
    let labels = [("k".to_string(), "v".repeat(1 << 20))].into();
    let before = authd.redis.server().command_stats();
    let s =
        authd.clients().create_client(authed(&keys.test_key, apb::CreateClientRequest { labels })).await.unwrap_err();
    assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
    assert!(s.message().contains("limit of 65536 bytes"), "{s:?}");
    assert!(store_commands(authd.redis.server(), &before).is_empty(), "an oversized request reached the store");
    assert!(authd.api_key_ok(&keys.test_key).await, "authd still serves");
}

/// Logged-out users behind one address present many dead credentials: those
/// refusals draw on each credential's own budget, not on the peer's, so the
/// address is never locked out for them.
#[tokio::test]
async fn dead_credentials_do_not_spend_the_peer_budget() {
    let authd = Authd::start_configured(Redis::start(Backend::Standalone), Default::default(), |a| {
        a.with_failure_guard(guard(BUDGET, BUDGET))
    })
    .await;
    let keys = authd.tenant(None).await;
    let mut clients = authd.clients();
    let mut dead = Vec::new();
    for _ in 0..4 * BUDGET {
        let c = clients
            .create_client(authed(&keys.test_key, apb::CreateClientRequest::default()))
            .await
            .expect("create client")
            .into_inner();
        let req = apb::DeleteClientRequest { client_id: c.client.expect("client").client_id };
        clients.delete_client(authed(&keys.test_key, req)).await.expect("delete client");
        dead.push(c.token);
    }
    for token in &dead {
        assert!(!authd.session_ok(token).await, "a deleted client's session is refused as invalid, not throttled");
    }
    let live = clients
        .create_client(authed(&keys.test_key, apb::CreateClientRequest::default()))
        .await
        .expect("create client")
        .into_inner();
    assert!(authd.session_ok(&live.token).await, "the same peer still authenticates a live session");
}

#[tokio::test]
async fn authd_a_guessing_peer_is_throttled_across_ids() {
    let authd = Authd::start_configured(Redis::start(Backend::Standalone), Default::default(), |a| {
        a.with_failure_guard(guard(0, BUDGET))
    })
    .await;
    let keys = authd.tenant(None).await;
    assert!(authd.api_key_ok(&keys.test_key).await, "cache the real key first");
    let mut clients = authd.clients();
    let tenant: uuid::Uuid = keys.tenant_id.parse().unwrap();
    // Well-formed keys of random ids: each would cost a store read.
    let guess = || Token::mint(TokenKind::ApiKey, Environment::Test, tenant, uuid::Uuid::new_v4()).expose();
    let get = |key: &str| authed(key, apb::GetClientRequest { client_id: uuid::Uuid::new_v4().to_string() });
    for _ in 0..=BUDGET {
        let s = clients.get_client(get(&guess())).await.unwrap_err();
        assert_invalid_api_key(&s, "guess");
    }
    let before = authd.redis.server().command_stats();
    for _ in 0..200 {
        let s = clients.get_client(get(&guess())).await.unwrap_err();
        assert_throttled(&s, "peer");
    }
    assert!(store_commands(authd.redis.server(), &before).is_empty(), "throttled guesses ran store commands");
    // Successes draw on no budget: the cached real key is not slowed.
    for _ in 0..20 {
        let s = clients.get_client(get(&keys.test_key)).await.unwrap_err();
        assert_eq!(s.code(), Code::NotFound, "{s:?}");
    }
    // Operator keys count against the peer too (no store involved).
    let s = authd
        .admin()
        .get_tenant(authed("not-an-operator-key", apb::GetTenantRequest { tenant_id: keys.tenant_id.clone() }))
        .await
        .unwrap_err();
    assert_throttled(&s, "peer");
}

#[tokio::test]
async fn introspect_guessing_one_token_id_is_throttled_without_store_commands() {
    let authd = Authd::start().await;
    let keys = authd.tenant(None).await;
    let opts = VerifyOptions { guard: Some(guard(BUDGET, 0)), ..Default::default() };
    let replica = Replica::start(&authd.redis.target(), opts).await;
    let mint = || async {
        let req = authed(&keys.test_key, apb::CreateClientRequest::default());
        authd.clients().create_client(req).await.expect("create client").into_inner().token
    };

    // Uncached id: after the budget, no store read.
    let victim = mint().await;
    for _ in 0..=BUDGET {
        assert_eq!(replica.cause(&forged(&victim)).await.as_deref(), Some("UNKNOWN"));
    }
    let before = authd.redis.server().command_stats();
    for _ in 0..200 {
        let s = replica.verify(&forged(&victim)).await.unwrap_err();
        assert_throttled(&s, "credential id");
    }
    assert!(store_commands(authd.redis.server(), &before).is_empty(), "throttled verifies ran store commands");

    // A token this replica has cached keeps verifying while its id is
    // attacked, and the guesses cost no store command.
    let real = mint().await;
    replica.verify(&real).await.expect("real token verifies");
    let before = authd.redis.server().command_stats();
    for _ in 0..100 {
        let s = replica.verify(&forged(&real)).await.unwrap_err();
        assert!(matches!(s.code(), Code::Unauthenticated), "{s:?}");
        replica
            .verify_with(pb::VerifyRequest { token: real.clone(), passive: true, ..Default::default() })
            .await
            .expect("real token still verifies");
    }
    let used = store_commands(authd.redis.server(), &before);
    assert!(used.is_empty(), "guesses of a cached token ran store commands: {used:?}");
}

/// Text a hostile or careless caller might present, derived from `valid`.
fn hostile(rng: &mut ChaCha8Rng, valid: &[String]) -> String {
    const B62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    const PREFIXES: [&str; 5] = ["sk_live_", "sk_test_", "cst_live_", "cst_test_", "tck_test_"];
    let mut n = |m: usize| (rng.next_u64() % m as u64) as usize;
    let t = valid[n(valid.len())].clone().into_bytes();
    let mut b = t.clone();
    let b62 = |i: usize| B62[i % B62.len()];
    match n(11) {
        // One bit of one character.
        0 => {
            let i = n(b.len());
            b[i] ^= 1 << n(7);
        }
        // One character changed to another base62 one.
        1 => {
            let i = n(b.len());
            let c = b62(B62.iter().position(|&c| c == b[i]).unwrap_or(0) + 1 + n(61));
            b[i] = c;
        }
        2 => b.truncate(n(b.len())),
        3 => (0..1 + n(20)).for_each(|_| b.push(b62(n(62)))),
        // Another kind's prefix on this body.
        4 => {
            let cut = b.iter().rposition(|&c| c == b'_').unwrap() + 1;
            let mut p = PREFIXES[n(5)].as_bytes().to_vec();
            p.extend_from_slice(&b[cut..]);
            b = p;
        }
        5 => {
            let mut p: Vec<u8> = (0..1 + n(10)).map(|_| b62(n(62))).collect();
            p.extend_from_slice(&b);
            b = p;
        }
        6 => {
            b.remove(n(b.len()));
        }
        // Two neighbours swapped.
        7 => {
            let i = n(b.len() - 1);
            if b[i] == b[i + 1] {
                b[i] = b62(B62.iter().position(|&c| c == b[i]).unwrap_or(0) + 1);
            }
            b.swap(i, i + 1);
        }
        // Random printable text of random length.
        8 => b = (0..n(160)).map(|_| b' ' + n(95) as u8).collect(),
        // A valid prefix and a random body of the right length.
        9 => {
            let cut = b.iter().rposition(|&c| c == b'_').unwrap() + 1;
            for c in &mut b[cut..] {
                *c = b62(n(62));
            }
        }
        // Random Unicode.
        _ => {
            return (0..n(120)).filter_map(|_| char::from_u32(n(0x3000) as u32)).collect();
        }
    }
    if b == t {
        b.push(b'x');
    }
    String::from_utf8(b).expect("ASCII stays UTF-8")
}

#[tokio::test]
async fn random_and_mutated_tokens_are_refused_without_store_commands() {
    let count: usize = std::env::var("HOSTILE_TOKENS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let seed: u64 = std::env::var("HOSTILE_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    let authd = Authd::start().await;
    let keys = authd.tenant(None).await;
    let c = authd
        .clients()
        .create_client(authed(&keys.test_key, apb::CreateClientRequest::default()))
        .await
        .expect("create client")
        .into_inner();
    let tck = authd
        .clients()
        .create_test_client(authed(&keys.test_key, apb::CreateTestClientRequest::default()))
        .await
        .expect("create test client")
        .into_inner();
    let valid = vec![keys.test_key.clone(), keys.live_key.clone(), c.token.clone(), tck.token.clone()];
    let replica = Replica::start(&authd.redis.target(), VerifyOptions::default()).await;
    let passive = |t: &String| pb::VerifyRequest { token: t.clone(), passive: true, ..Default::default() };
    for t in &valid {
        replica.verify_with(passive(t)).await.expect("the originals verify");
    }

    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let tokens: Vec<String> = (0..count).map(|_| hostile(&mut rng, &valid)).collect();
    let before = authd.redis.server().command_stats();
    let started = Instant::now();
    let client = replica.client();
    let mut results = futures::stream::iter(tokens.into_iter().map(|token| {
        let mut client = client.clone();
        async move { client.verify(pb::VerifyRequest { token, ..Default::default() }).await }
    }))
    .buffer_unordered(64);
    let mut refused = 0usize;
    while let Some(r) = results.next().await {
        match r {
            Ok(v) => panic!("a hostile token was accepted (seed {seed}): {v:?}"),
            Err(s) => assert_eq!(cause(&s), "MALFORMED", "seed {seed}"),
        }
        refused += 1;
    }
    let took = started.elapsed();
    let used = store_commands(authd.redis.server(), &before);
    eprintln!(
        "hostile tokens: {refused} sent, {refused} refused MALFORMED, store commands {used:?}, {:.1} s ({:.0}/s), seed {seed}",
        took.as_secs_f64(),
        refused as f64 / took.as_secs_f64()
    );
    assert_eq!(refused, count);
    assert!(used.is_empty(), "checksum refusals ran store commands: {used:?} (seed {seed})");
    for t in &valid {
        replica.verify_with(passive(t)).await.expect("the originals still verify");
    }
}
