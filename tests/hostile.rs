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
async fn authd_guessing_one_credential_costs_one_store_read_and_never_locks_out_its_holder() {
    let authd = Authd::start_configured(Redis::start(Backend::Standalone), Default::default(), |a| {
        a.with_failure_guard(guard(BUDGET, 0))
    })
    .await;
    let keys = authd.tenant(None).await;
    let mut clients = authd.clients();
    let get = |key: &str| authed(key, apb::GetClientRequest { client_id: uuid::Uuid::new_v4().to_string() });

    // An uncached key id under attack: the first guess reads the store and
    // teaches authd the stored hash; every later guess is refused from
    // memory, exactly as the first (no throttling to tell it from an
    // unknown id), with no store command.
    let victim = authd.api_key(&keys.tenant_id, apb::Environment::Test, &[]).await;
    let s = clients.get_client(get(&forged(&victim))).await.unwrap_err();
    assert_invalid_api_key(&s, "first guess");
    let before = authd.redis.server().command_stats();
    for i in 0..200 {
        let s = clients.get_client(get(&forged(&victim))).await.unwrap_err();
        assert_invalid_api_key(&s, &format!("guess {i}"));
    }
    let used = store_commands(authd.redis.server(), &before);
    assert!(used.is_empty(), "repeated guesses ran store commands: {used:?}");
    // The real key, never cached here, is not refused by what the attacker
    // did: it goes to the store and works.
    let s = clients.get_client(get(&victim)).await.unwrap_err();
    assert_eq!(s.code(), Code::NotFound, "the real key is authenticated: {s:?}");

    // A key this authd has cached keeps working while its id is attacked:
    // guesses are checked against the cache, no store command either way.
    assert!(authd.api_key_ok(&keys.test_key).await);
    let before = authd.redis.server().command_stats();
    for _ in 0..50 {
        let s = clients.get_client(get(&forged(&keys.test_key))).await.unwrap_err();
        assert_invalid_api_key(&s, "guess of a cached key");
    }
    let used = store_commands(authd.redis.server(), &before);
    assert!(used.is_empty(), "guesses of a cached key ran store commands: {used:?}");

    // Sessions: the same.
    let c = clients
        .create_client(authed(&keys.test_key, apb::CreateClientRequest::default()))
        .await
        .expect("create client")
        .into_inner();
    assert!(!authd.session_ok(&forged(&c.token)).await);
    let before = authd.redis.server().command_stats();
    for _ in 0..50 {
        assert!(!authd.session_ok(&forged(&c.token)).await);
    }
    assert!(store_commands(authd.redis.server(), &before).is_empty());
    assert!(authd.session_ok(&c.token).await, "the real session still authenticates");
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

/// Logged-out users behind one address keep presenting their dead
/// credentials: each costs one store read, once; presented again it is
/// refused from memory, drawing on no budget, so the address is never
/// locked out by them.
#[tokio::test]
async fn dead_credentials_presented_again_do_not_spend_the_peer_budget() {
    let authd = Authd::start_configured(Redis::start(Backend::Standalone), Default::default(), |a| {
        a.with_failure_guard(guard(BUDGET, BUDGET))
    })
    .await;
    let keys = authd.tenant(None).await;
    let mut clients = authd.clients();
    let mut dead = Vec::new();
    for _ in 0..BUDGET - 1 {
        let c = clients
            .create_client(authed(&keys.test_key, apb::CreateClientRequest::default()))
            .await
            .expect("create client")
            .into_inner();
        let req = apb::DeleteClientRequest { client_id: c.client.expect("client").client_id };
        clients.delete_client(authed(&keys.test_key, req)).await.expect("delete client");
        dead.push(c.token);
    }
    for _ in 0..10 {
        for token in &dead {
            assert!(!authd.session_ok(token).await, "a deleted client's session is refused as invalid, not throttled");
        }
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
    // A key this process made after the address was throttled works on its
    // first call from it (its hash is known here from the mint).
    let fresh = authd.api_key(&keys.tenant_id, apb::Environment::Test, &[]).await;
    let s = clients.get_client(get(&fresh)).await.unwrap_err();
    assert_eq!(s.code(), Code::NotFound, "a key minted here, first used from a throttled address: {s:?}");
    // Operator keys count against the peer too (no store involved).
    let s = authd
        .admin()
        .get_tenant(authed("not-an-operator-key", apb::GetTenantRequest { tenant_id: keys.tenant_id.clone() }))
        .await
        .unwrap_err();
    assert_throttled(&s, "peer");
    // A valid operator key is opened before any budget: it works from the
    // throttled address.
    let req = apb::GetTenantRequest { tenant_id: keys.tenant_id.clone() };
    authd.admin().get_tenant(authed(&authd.operator, req)).await.expect("a valid operator key from a throttled peer");
}

/// The shared-address lockout of issue 11, after the cache: a credential the
/// process has verified keeps working from an address an attacker throttled,
/// each time its cache entry ages out (a store read decides, the budget does
/// not), and a revoked one is still refused.
#[tokio::test]
async fn a_credential_verified_here_is_never_refused_by_a_throttled_address_once_its_cache_entry_ages_out() {
    const AGE: Duration = Duration::from_millis(300);
    let short = cred_core::cache::CacheOptions { max_age: AGE, ..Default::default() };
    let authd = Authd::start_configured(Redis::start(Backend::Standalone), Default::default(), |a| {
        a.with_api_key_cache(short.clone()).with_failure_guard(guard(BUDGET, BUDGET))
    })
    .await;
    let keys = authd.tenant(None).await;
    let replica = Replica::start(
        &authd.redis.target(),
        VerifyOptions { guard: Some(guard(BUDGET, BUDGET)), cache: short.clone(), ..Default::default() },
    )
    .await;
    let session = {
        let req = authed(&keys.test_key, apb::CreateClientRequest::default());
        authd.clients().create_client(req).await.expect("create client").into_inner().token
    };
    assert!(authd.api_key_ok(&keys.test_key).await, "authd verifies the key once");
    replica.verify(&session).await.expect("introspect verifies the session once");

    // The attacker, at the same address, spends both peer budgets with
    // well-formed guesses of random ids.
    let tenant: uuid::Uuid = keys.tenant_id.parse().unwrap();
    let guess = || Token::mint(TokenKind::ApiKey, Environment::Test, tenant, uuid::Uuid::new_v4()).expose();
    let get = |key: &str| authed(key, apb::GetClientRequest { client_id: uuid::Uuid::new_v4().to_string() });
    let mut clients = authd.clients();
    for _ in 0..=BUDGET {
        let _ = clients.get_client(get(&guess())).await;
        let _ = replica.verify(&guess()).await;
    }
    assert_throttled(&clients.get_client(get(&guess())).await.unwrap_err(), "peer");
    assert_throttled(&replica.verify(&guess()).await.unwrap_err(), "peer");

    // Three times over, the entries age out and the real credentials are
    // read from the store again, from the throttled address, while the
    // attacker keeps the budgets spent.
    for round in 0..3 {
        tokio::time::sleep(AGE + Duration::from_millis(100)).await;
        let before = authd.redis.server().command_stats();
        let s = clients.get_client(get(&keys.test_key)).await.unwrap_err();
        assert_eq!(s.code(), Code::NotFound, "round {round}: the real key from a throttled address: {s:?}");
        replica.verify(&session).await.unwrap_or_else(|s| panic!("round {round}: the real session: {s:?}"));
        assert!(!store_commands(authd.redis.server(), &before).is_empty(), "round {round}: not a store read");
        assert_throttled(&clients.get_client(get(&guess())).await.unwrap_err(), "peer");
        assert_throttled(&replica.verify(&guess()).await.unwrap_err(), "peer");
    }

    // What the store accepted lets a credential reach the store, never
    // answers for it: revoked, it is refused, and then from memory.
    let client_id = replica.verify(&session).await.expect("still valid").client_id;
    let req = authed(&keys.test_key, apb::DeleteClientRequest { client_id });
    authd.clients().delete_client(req).await.expect("delete the client");
    tokio::time::sleep(AGE + Duration::from_millis(100)).await;
    let cause = replica.cause(&session).await;
    assert!(cause.is_some(), "a deleted client's session is refused");
    let before = authd.redis.server().command_stats();
    assert_eq!(replica.cause(&session).await, cause, "and stays refused");
    assert!(store_commands(authd.redis.server(), &before).is_empty(), "a known-dead session read the store again");
}

#[tokio::test]
async fn introspect_guessing_one_token_costs_one_store_read_and_never_locks_out_its_holder() {
    let authd = Authd::start().await;
    let keys = authd.tenant(None).await;
    let opts = VerifyOptions { guard: Some(guard(BUDGET, BUDGET)), ..Default::default() };
    let replica = Replica::start(&authd.redis.target(), opts).await;
    let mint = || async {
        let req = authed(&keys.test_key, apb::CreateClientRequest::default());
        authd.clients().create_client(req).await.expect("create client").into_inner().token
    };

    // Uncached token under attack: one store read, then refused from memory,
    // the cause unchanged, no throttling, no store read.
    let victim = mint().await;
    assert_eq!(replica.cause(&forged(&victim)).await.as_deref(), Some("UNKNOWN"));
    let before = authd.redis.server().command_stats();
    for _ in 0..200 {
        assert_eq!(replica.cause(&forged(&victim)).await.as_deref(), Some("UNKNOWN"));
    }
    assert!(store_commands(authd.redis.server(), &before).is_empty(), "repeated guesses ran store commands");
    // A token this replica has cached keeps verifying while it is attacked,
    // and the guesses cost no store command.
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
    // The attacker spends the peer budget with guesses of other ids: the
    // address is throttled for what this replica knows nothing of...
    let tenant: uuid::Uuid = keys.tenant_id.parse().unwrap();
    for _ in 0..=BUDGET {
        let guess = Token::mint(TokenKind::ApiKey, Environment::Test, tenant, uuid::Uuid::new_v4()).expose();
        let _ = replica.verify(&guess).await;
    }
    let guess = Token::mint(TokenKind::ApiKey, Environment::Test, tenant, uuid::Uuid::new_v4()).expose();
    assert_throttled(&replica.verify(&guess).await.unwrap_err(), "peer");
    // ...but the victim's real token, from the same address and never
    // cached here, verifies.
    replica.verify(&victim).await.expect("the real token verifies from the throttled address");
    replica.verify(&real).await.expect("a cached token verifies from the throttled address");
    // The trade-off (README, "Failure budgets"): a token this replica has
    // neither cached nor seen attacked is refused from a throttled address.
    let cold = mint().await;
    assert_throttled(&replica.verify(&cold).await.unwrap_err(), "peer");
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

/// One attacker and many honest callers behind one proxy: with the proxy
/// trusted, the budgets count each caller's own address from
/// `x-forwarded-for`, so the attacker's spent budget refuses no one else;
/// without it, the header is ignored (anyone can write it) and the proxy's
/// address is the peer.
#[tokio::test]
async fn behind_a_trusted_proxy_each_caller_has_its_own_budget() {
    let serve = cred_serve::serve::ServeOptions {
        trusted_proxies: cred_serve::peer::TrustedProxies::parse(&["127.0.0.0/8", "::1"]).unwrap(),
        ..Default::default()
    };
    let redis = Redis::start(Backend::Standalone);
    let target = redis.target();
    let authd = Authd::start_serving(redis, &target, Default::default(), serve, |a| {
        a.with_failure_guard(guard(BUDGET, BUDGET))
    })
    .await;
    let keys = authd.tenant(None).await;
    let tenant: uuid::Uuid = keys.tenant_id.parse().unwrap();
    let from = |xff: &str, key: &str| {
        let mut r = authed(key, apb::GetClientRequest { client_id: uuid::Uuid::new_v4().to_string() });
        r.metadata_mut().insert("x-forwarded-for", xff.parse().unwrap());
        r
    };
    let guess = || Token::mint(TokenKind::ApiKey, Environment::Test, tenant, uuid::Uuid::new_v4()).expose();
    let mut clients = authd.clients();
    // The attacker (198.51.100.66, forging a spoofed hop in front) spends its budget.
    for _ in 0..=BUDGET {
        let _ = clients.get_client(from("10.9.9.9, 198.51.100.66", &guess())).await;
    }
    let s = clients.get_client(from("198.51.100.66", &guess())).await.unwrap_err();
    assert_throttled(&s, "peer");
    // Another caller of the same proxy, with a key never used before: served.
    let cold = authd.api_key(&keys.tenant_id, apb::Environment::Test, &[]).await;
    let s = clients.get_client(from("198.51.100.7", &cold)).await.unwrap_err();
    assert_eq!(s.code(), Code::NotFound, "an honest caller behind the proxy is authenticated: {s:?}");
    // An IPv6 attacker is one /64: another address in it is throttled too.
    for _ in 0..=BUDGET {
        let _ = clients.get_client(from("2001:db8:5:6::1", &guess())).await;
    }
    let s = clients.get_client(from("2001:db8:5:6:abcd::2", &guess())).await.unwrap_err();
    assert_throttled(&s, "peer");
    let s = clients.get_client(from("2001:db8:5:7::1", &cold)).await.unwrap_err();
    assert_eq!(s.code(), Code::NotFound, "another /64 is its own peer: {s:?}");
}

/// Without trusted proxies `x-forwarded-for` changes nothing: an attacker
/// cannot dodge its budget by writing a new address in each request.
#[tokio::test]
async fn x_forwarded_for_is_ignored_unless_the_proxy_is_trusted() {
    let authd = Authd::start_configured(Redis::start(Backend::Standalone), Default::default(), |a| {
        a.with_failure_guard(guard(BUDGET, BUDGET))
    })
    .await;
    let keys = authd.tenant(None).await;
    let tenant: uuid::Uuid = keys.tenant_id.parse().unwrap();
    let mut clients = authd.clients();
    for i in 0..=BUDGET {
        let key = Token::mint(TokenKind::ApiKey, Environment::Test, tenant, uuid::Uuid::new_v4()).expose();
        let mut r = authed(&key, apb::GetClientRequest { client_id: uuid::Uuid::new_v4().to_string() });
        r.metadata_mut().insert("x-forwarded-for", format!("198.51.100.{i}").parse().unwrap());
        let _ = clients.get_client(r).await;
    }
    let key = Token::mint(TokenKind::ApiKey, Environment::Test, tenant, uuid::Uuid::new_v4()).expose();
    let mut r = authed(&key, apb::GetClientRequest { client_id: uuid::Uuid::new_v4().to_string() });
    r.metadata_mut().insert("x-forwarded-for", "198.51.100.200".parse().unwrap());
    assert_throttled(&clients.get_client(r).await.unwrap_err(), "peer");
}

/// Envoy's ext_authz check request says where the end user's request came
/// from. That address is the per-peer budget's caller only when the gRPC
/// peer (the Envoy) is a trusted proxy: anyone else who can reach the port
/// could name a new address per guess and never run out.
#[tokio::test]
async fn ext_authz_source_address_counts_only_from_a_trusted_envoy() {
    use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse, HttpResponse};
    use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address, socket_address};
    use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
    use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, attribute_context};

    let authd = Authd::start().await;
    let keys = authd.tenant(None).await;
    let tenant: uuid::Uuid = keys.tenant_id.parse().unwrap();
    let check = |source: &str, token: &str| {
        let headers = HashMap::from([("authorization".to_string(), format!("Bearer {token}"))]);
        let http = attribute_context::HttpRequest { headers, ..Default::default() };
        let addr = SocketAddress {
            address: source.into(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(443)),
            ..Default::default()
        };
        CheckRequest {
            attributes: Some(AttributeContext {
                source: Some(attribute_context::Peer {
                    address: Some(Address { address: Some(address::Address::SocketAddress(addr)) }),
                    ..Default::default()
                }),
                request: Some(attribute_context::Request { http: Some(http), ..Default::default() }),
                ..Default::default()
            }),
        }
    };
    let guess = || Token::mint(TokenKind::ApiKey, Environment::Test, tenant, uuid::Uuid::new_v4()).expose();
    let status = |r: &CheckResponse| match &r.http_response {
        Some(HttpResponse::DeniedResponse(d)) => d.status.as_ref().map_or(0, |s| s.code),
        Some(HttpResponse::OkResponse(_)) => 200,
        _ => 0,
    };
    let opts = || VerifyOptions { guard: Some(guard(0, BUDGET)), ..Default::default() };

    // Not trusted: a new source address per guess still spends the one
    // budget of the caller's own address.
    let replica = Replica::start(&authd.redis.target(), opts()).await;
    let mut envoy = AuthorizationClient::new(replica.channel.clone());
    let mut codes = Vec::new();
    for i in 0..=BUDGET + 1 {
        let r = envoy.check(check(&format!("198.51.100.{i}"), &guess())).await.expect("an answer").into_inner();
        codes.push(status(&r));
    }
    assert_eq!(codes.last(), Some(&429), "a rotating source address dodged the budget: {codes:?}");

    // Trusted (the Envoy's address is in --trusted-proxies): each end user
    // has their own budget, so the attacker's spent one refuses no one else.
    let serve = cred_serve::serve::ServeOptions {
        trusted_proxies: cred_serve::peer::TrustedProxies::parse(&["127.0.0.0/8", "::1"]).unwrap(),
        ..Default::default()
    };
    let replica = Replica::start_serving(&authd.redis.target(), opts(), serve).await;
    let mut envoy = AuthorizationClient::new(replica.channel.clone());
    // A user's token this replica has seen before the attack.
    let req = authed(&keys.test_key, apb::CreateClientRequest::default());
    let token = authd.clients().create_client(req).await.expect("create client").into_inner().token;
    let r = envoy.check(check("198.51.100.66", &token)).await.expect("an answer").into_inner();
    assert_eq!(status(&r), 200, "a valid token");
    let mut codes = Vec::new();
    for _ in 0..=BUDGET + 1 {
        let r = envoy.check(check("198.51.100.66", &guess())).await.expect("an answer").into_inner();
        codes.push(status(&r));
    }
    assert_eq!(codes.last(), Some(&429), "the attacker's own address was never throttled: {codes:?}");
    let r = envoy.check(check("198.51.100.7", &guess())).await.expect("an answer").into_inner();
    assert_eq!(status(&r), 401, "another end user behind the same Envoy was throttled");
    // The known trade-off (README, "Failure budgets"): a token unseen here
    // would be refused from the throttled address; one seen is not.
    let r = envoy.check(check("198.51.100.66", &token)).await.expect("an answer").into_inner();
    assert_eq!(status(&r), 200, "a valid token from the throttled address was refused");
}

/// The time of a refusal tells nothing of its reason: 2,000 refusals of
/// each kind, 32 at a time, timed at the client over loopback (the floor is
/// applied by the server, so loopback adds the same to each); every one
/// takes at least the floor, and the medians are printed for the README.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_take_the_same_time_whatever_the_reason() {
    let authd = Authd::start_configured(Redis::start(Backend::Standalone), Default::default(), |a| {
        a.with_failure_guard(guard(1_000_000, 0))
    })
    .await;
    let keys = authd.tenant(None).await;
    let tenant: uuid::Uuid = keys.tenant_id.parse().unwrap();
    assert!(authd.api_key_ok(&keys.test_key).await, "cache the real key");
    let uncached = authd.api_key(&keys.tenant_id, apb::Environment::Test, &[]).await;
    let revoked = {
        let req = apb::CreateApiKeyRequest {
            tenant_id: keys.tenant_id.clone(),
            environment: apb::Environment::Test.into(),
            name: "gone".into(),
            scopes: vec![],
            expire_time: None,
        };
        let k = authd.admin().create_api_key(authed(&authd.operator, req)).await.unwrap().into_inner();
        let req = apb::RevokeApiKeyRequest {
            tenant_id: keys.tenant_id.clone(),
            key_id: k.api_key.unwrap().key_id,
            include_successor: false,
        };
        authd.admin().revoke_api_key(authed(&authd.operator, req)).await.unwrap();
        k.secret
    };
    type Make = Box<dyn Fn() -> String + Send + Sync>;
    let kinds: Vec<(&str, Make)> = vec![
        (
            "unknown id",
            Box::new(move || Token::mint(TokenKind::ApiKey, Environment::Test, tenant, uuid::Uuid::new_v4()).expose()),
        ),
        (
            "wrong secret, cached key",
            Box::new({
                let k = keys.test_key.clone();
                move || forged(&k)
            }),
        ),
        ("wrong secret, uncached key", Box::new(move || forged(&uncached))),
        ("revoked key", Box::new(move || revoked.clone())),
        ("malformed", Box::new(|| "sk_test_not-a-token".to_string())),
    ];
    for (what, make) in kinds {
        let make = std::sync::Arc::new(make);
        let times: Vec<Duration> = futures::stream::iter(0..2_000)
            .map(|_| {
                let (mut clients, make) = (authd.clients(), make.clone());
                async move {
                    let req = authed(&make(), apb::GetClientRequest { client_id: uuid::Uuid::new_v4().to_string() });
                    let t = Instant::now();
                    let s = clients.get_client(req).await.unwrap_err();
                    let took = t.elapsed();
                    assert_invalid_api_key(&s, "a refusal");
                    took
                }
            })
            .buffer_unordered(8)
            .collect()
            .await;
        let mut sorted = times.clone();
        sorted.sort();
        let floor = authd::auth::REFUSAL_FLOOR;
        assert!(sorted[0] >= floor, "{what}: a refusal in {:?}, under the {floor:?} floor", sorted[0]);
        println!(
            "refusal time, {what}: median {:?}, p99 {:?}, max {:?} (n = {})",
            sorted[sorted.len() / 2],
            sorted[sorted.len() * 99 / 100],
            sorted[sorted.len() - 1],
            sorted.len()
        );
    }
}
