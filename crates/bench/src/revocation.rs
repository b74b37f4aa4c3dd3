//! introspect-bench's figure d: revocation propagation to both replicas:
//! sessions verified (cached) on A and B, then the time from just before
//! authd's RevokeSession until both replicas refuse them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cred_proto::authd::v1 as apb;
use cred_proto::introspect::v1 as pb;
use tokio::task::JoinSet;
use tonic::Code;
use tonic_types::StatusExt;

use crate::api::{VerifyClient, authed, create_client, verify_ok};
use crate::stats::{percentile, us};
use crate::summary::{Summary, verdict_max};
use crate::verify_env::Env;

/// Figure d.
pub const REVOCATIONS: usize = 1_000;
const REVOKE_WORKERS: usize = 4;
const REVOKE_GIVE_UP: Duration = Duration::from_secs(5);

struct Revocation {
    rpc: Duration,
    a: Duration,
    b: Duration,
    a_first_poll: bool,
    b_first_poll: bool,
    polls: usize,
}

/// Figure d.
pub async fn figure_d(env: &mut Env, sum: &mut Summary) -> Result<(), String> {
    println!(
        "\n== d. Revocation propagation to both replicas: {REVOCATIONS} sessions, {REVOKE_WORKERS} at a time; \
         each: verify on A and B (cached), then time from just before authd RevokeSession (gRPC) until both \
         replicas refuse it (each polled back to back over its own connection; give up after {REVOKE_GIVE_UP:?})"
    );
    // The sessions, through authd.
    let t = Instant::now();
    let made = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    for _ in 0..16 {
        let (ch, key, made) = (env.authd.clone(), env.api_key.clone(), made.clone());
        set.spawn(async move {
            let mut out = Vec::new();
            while made.fetch_add(1, Ordering::Relaxed) < REVOCATIONS {
                out.push(create_client(&ch, &key).await?);
            }
            Ok::<_, String>(out)
        });
    }
    let mut sessions = Vec::new();
    while let Some(r) = set.join_next().await {
        sessions.extend(r.map_err(|e| e.to_string())??);
    }
    println!(
        "  {} clients with one session each created through authd in {:.2} s",
        sessions.len(),
        t.elapsed().as_secs_f64()
    );

    let queue = Arc::new(std::sync::Mutex::new(sessions));
    let mut set = JoinSet::new();
    for _ in 0..REVOKE_WORKERS {
        let mut a = env.a.client().await?;
        let mut b = env.b.client().await?;
        let mut clients = apb::client_service_client::ClientServiceClient::new(env.authd.clone());
        let (queue, key) = (queue.clone(), env.api_key.clone());
        set.spawn(async move {
            let mut out = Vec::new();
            let mut errors: Vec<String> = Vec::new();
            loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
                let Some((client_id, session_id, token)) = next else { break };
                if let Err(e) = verify_ok(&mut a, &token, false).await {
                    errors.push(format!("warm A: {e}"));
                    continue;
                }
                if let Err(e) = verify_ok(&mut b, &token, false).await {
                    errors.push(format!("warm B: {e}"));
                    continue;
                }
                let t0 = Instant::now();
                let r = clients.revoke_session(authed(&key, apb::RevokeSessionRequest { client_id, session_id })).await;
                let rpc = t0.elapsed();
                if let Err(s) = r {
                    errors.push(format!("RevokeSession: {s:?}"));
                    continue;
                }
                let (ra, rb) = tokio::join!(until_refused(&mut a, &token, t0), until_refused(&mut b, &token, t0));
                match (ra, rb) {
                    (Ok((ta, pa)), Ok((tb, pb))) => out.push(Revocation {
                        rpc,
                        a: ta,
                        b: tb,
                        a_first_poll: pa == 1,
                        b_first_poll: pb == 1,
                        polls: pa + pb,
                    }),
                    (Err(e), _) => errors.push(format!("A: {e}")),
                    (_, Err(e)) => errors.push(format!("B: {e}")),
                }
            }
            (out, errors)
        });
    }
    let t = Instant::now();
    let (mut done, mut errors) = (Vec::new(), Vec::new());
    while let Some(r) = set.join_next().await {
        let (o, e) = r.map_err(|e| e.to_string())?;
        done.extend(o);
        errors.extend(e);
    }
    let elapsed = t.elapsed();
    let us_of = |f: &dyn Fn(&Revocation) -> Duration| -> Vec<u64> {
        let mut v: Vec<u64> = done.iter().map(|r| f(r).as_micros() as u64).collect();
        v.sort_unstable();
        v
    };
    let (rpc, ta, tb, both) = (us_of(&|r| r.rpc), us_of(&|r| r.a), us_of(&|r| r.b), us_of(&|r| r.a.max(r.b)));
    let line = |name: &str, v: &[u64]| {
        println!(
            "  {name:<44} p50 {:>8}  p99 {:>8}  max {:>8}",
            us(percentile(v, 50.0)),
            us(percentile(v, 99.0)),
            us(percentile(v, 100.0))
        )
    };
    println!(
        "  {} revocations measured in {:.2} s, {} failed{}",
        done.len(),
        elapsed.as_secs_f64(),
        errors.len(),
        errors.first().map_or(String::new(), |e| format!(" (first: {e})"))
    );
    line("RevokeSession RPC (authd, Lua script + PUBLISH)", &rpc);
    line("revoke → A refuses", &ta);
    line("revoke → B refuses", &tb);
    line("revoke → both refuse", &both);
    let first_a = done.iter().filter(|r| r.a_first_poll).count();
    let first_b = done.iter().filter(|r| r.b_first_poll).count();
    let polls: usize = done.iter().map(|r| r.polls).sum();
    println!(
        "  already refused on the first poll after the RPC returned: A {first_a}/{n}, B {first_b}/{n} \
         (so mostly the figure is the RPC time plus one verify round trip); {:.2} polls per revocation",
        polls as f64 / done.len().max(1) as f64,
        n = done.len()
    );
    let p99 = percentile(&both, 99.0) / 1000.0;
    sum.row(
        "d. revocation → both replicas refuse, p99",
        format!(
            "{:.2} ms (p50 {:.2} ms, max {:.2} ms; n = {}, {} failed)",
            p99,
            percentile(&both, 50.0) / 1000.0,
            percentile(&both, 100.0) / 1000.0,
            done.len(),
            errors.len()
        ),
        "<= 100 ms",
        if done.len() < REVOCATIONS {
            format!("INCOMPLETE ({} of {REVOCATIONS})", done.len())
        } else {
            verdict_max(p99, 100.0, " ms")
        },
    );
    if p99 > 100.0 {
        sum.limits.push(format!(
            "d: p99 {p99:.1} ms; RPC p99 {} vs both-refuse p99 {}: see the rows above for which leg is slow",
            us(percentile(&rpc, 99.0)),
            us(percentile(&both, 99.0))
        ));
    }
    Ok(())
}

/// Verifies `token` back to back until refused (UNAUTHENTICATED, cause
/// REVOKED); returns the time since `t0` and the number of polls.
async fn until_refused(c: &mut VerifyClient, token: &str, t0: Instant) -> Result<(Duration, usize), String> {
    let mut polls = 0;
    loop {
        polls += 1;
        match c.verify(pb::VerifyRequest { token: token.to_string(), ..Default::default() }).await {
            Ok(_) => {}
            Err(s) if s.code() == Code::Unauthenticated => {
                let at = t0.elapsed();
                let cause =
                    s.get_details_error_info().and_then(|i| i.metadata.get("cause").cloned()).unwrap_or_default();
                if cause != "REVOKED" {
                    return Err(format!("refused with cause {cause:?}, not REVOKED"));
                }
                return Ok((at, polls));
            }
            Err(s) => return Err(format!("{s:?}")),
        }
        if t0.elapsed() > REVOKE_GIVE_UP {
            return Err(format!("still accepted {REVOKE_GIVE_UP:?} after the revoke"));
        }
    }
}
