//! introspect-bench's figure h: what the gateways cost against a plain
//! Verify, in the same run, rounds alternated, against one replica G (the
//! shipped defaults plus `--http-listen`): Envoy's `Authorization/Check`
//! with the hot CST in the checked request's `authorization` header (the
//! target: Check >= 0.9 of Verify), and forward-auth over HTTP/1.1
//! (pipelined to the same depth as the h2 streams; informative: another
//! protocol).

use std::path::Path;
use std::time::Duration;

use envoy_types::ext_authz::v3::pb::HttpResponse;
use prost::Message;

use crate::api::{CHECK_PATH, check_request, grpc_frame};
use crate::h2load::{self, H2Run, Load, Target};
use crate::proc_stats::Sample;
use crate::process::{self, Proc};
use crate::stats::{median, us};
use crate::summary::{Summary, verdict_min};
use crate::verify_env::{Env, VERIFY_PATH};

/// The load of every run (figure a's shape).
const LOAD: Load = Load { connections: 4, streams: 10, requests: 200_000, rps: None };
const WARM_UP: Load = Load { connections: 4, streams: 10, requests: 20_000, rps: None };
const ROUNDS: usize = 3;
const FORWARD_AUTH_PATH: &str = "/forward-auth";
/// The target of Check against Verify.
const MIN_CHECK: f64 = 0.9;

struct Run {
    run: H2Run,
    server_us: f64,
}

async fn run(env: &Env, g: &Proc, target: &Target<'_>, body: &Path, load: Load) -> Result<Run, String> {
    let before = Sample::take(g.pid, env.redis_pid);
    let run = h2load::run(target, body, load, &env.dir.join("h2load-h.log"), Duration::from_secs(120)).await?;
    let cpu = Sample::take(g.pid, env.redis_pid).since(&before);
    let bad = run.failed + run.errored + run.timeout + run.non_200;
    if run.succeeded == 0 || bad > 0 {
        return Err(format!("{}: {} succeeded, {bad} failed or not 200", target.path, run.succeeded));
    }
    Ok(Run { server_us: cpu.server * 1e6 / run.succeeded as f64, run })
}

/// Figure h.
pub async fn figure_h(env: &mut Env, sum: &mut Summary) -> Result<(), String> {
    println!(
        "\n== h. The gateways against Verify, one replica G (shipped defaults + --http-listen), {} each, \
         alternated, {ROUNDS} rounds: Verify (gRPC), Envoy ext_authz Check (gRPC, the CST in the checked \
         request's authorization header), forward-auth (HTTP/1.1, --h1, the CST in authorization)",
        LOAD.describe()
    );
    let http_port = process::free_port()?;
    let extra = ["--http-listen".to_string(), format!("127.0.0.1:{http_port}")];
    let g = process::start_introspect(
        &env.introspect_bin,
        "introspect-G",
        &env.url,
        &extra,
        env.rust_log.as_deref(),
        &env.dir,
    )
    .await?
    .proc;
    let http_addr = ([127, 0, 0, 1], http_port).into();

    // The Check body, and one Check through a real client: allowed?
    let check = check_request(&env.hot_cst);
    let check_body = env.dir.join("check.body");
    std::fs::write(&check_body, grpc_frame(&check.encode_to_vec())).map_err(|e| e.to_string())?;
    let mut client =
        envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient::new(g.channel().await?);
    let answer = client.check(check).await.map_err(|s| format!("Check: {s:?}"))?.into_inner();
    match answer.http_response {
        Some(HttpResponse::OkResponse(ok))
            if ok.headers.iter().any(|h| h.header.as_ref().is_some_and(|h| h.key.ends_with("tenant-id"))) => {}
        other => return Err(format!("Check did not allow the hot CST: {other:?}")),
    }
    let bearer = [format!("authorization: Bearer {}", env.hot_cst)];
    let verify = Target { addr: g.addr, path: VERIFY_PATH, headers: &[], h1: false };
    let check = Target { addr: g.addr, path: CHECK_PATH, headers: &[], h1: false };
    let forward = Target { addr: http_addr, path: FORWARD_AUTH_PATH, headers: &bearer, h1: true };
    let kinds: [(&str, &Target<'_>, &Path); 3] =
        [("Verify", &verify, &env.body), ("Check", &check, &check_body), ("forward-auth", &forward, &env.body)];
    for (_, t, b) in kinds {
        run(env, &g, t, b, WARM_UP).await?;
    }
    let mut runs: [Vec<Run>; 3] = Default::default();
    println!("  {:<16} {:>9} {:>8} {:>8} {:>14}", "run", "req/s", "p50", "p99", "server µs/req");
    for round in 1..=ROUNDS {
        for (i, (name, t, b)) in kinds.iter().enumerate() {
            let r = run(env, &g, t, b, LOAD).await?;
            println!(
                "  {:<16} {:>9.0} {:>8} {:>8} {:>14.2}",
                format!("{name} #{round}"),
                r.run.req_per_s,
                us(r.run.p(50.0)),
                us(r.run.p(99.0)),
                r.server_us
            );
            runs[i].push(r);
        }
    }
    let med = |v: &[Run], f: &dyn Fn(&Run) -> f64| median(&v.iter().map(f).collect::<Vec<_>>());
    let rate = |v: &[Run]| med(v, &|r| r.run.req_per_s);
    let cpu = |v: &[Run]| med(v, &|r| r.server_us);
    let (vr, cr, fr) = (rate(&runs[0]), rate(&runs[1]), rate(&runs[2]));
    let ratio = cr / vr;
    sum.row(
        "h. ext_authz Check throughput / Verify",
        format!(
            "{ratio:.3} ({cr:.0} / {vr:.0} req/s; server {:.2} / {:.2} µs per request)",
            cpu(&runs[1]),
            cpu(&runs[0])
        ),
        &format!(">= {MIN_CHECK}"),
        verdict_min(ratio, MIN_CHECK, ""),
    );
    sum.row(
        "h. forward-auth (HTTP/1.1) throughput / Verify (h2)",
        format!("{:.3} ({fr:.0} / {vr:.0} req/s; server {:.2} µs per request)", fr / vr, cpu(&runs[2])),
        "-",
        "(informative)".to_string(),
    );
    g.stop().await;
    Ok(())
}
