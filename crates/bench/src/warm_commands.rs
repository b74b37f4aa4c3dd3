//! introspect-bench's figure c: the store commands per 1,000 warm verifies
//! of one hot token at 1,000 verifies/s (h2load, paced) against replica A,
//! from MONITOR (A's own connections) and `INFO commandstats` around it.

use std::collections::BTreeMap;
use std::time::Duration;

use cred_proto::introspect::v1 as pb;
use prost::Message;

use crate::h2load::{self, Load, Target};
use crate::monitor::{self, Monitor};
use crate::proc_stats::{Sample, ports_to};
use crate::redis_info::{command_delta, commandstats};
use crate::stats::us;
use crate::summary::{Summary, verdict_max};
use crate::verify_env::{Env, VERIFY_PATH};

/// Figure c: one connection, paced at 1,000 verifies/s for 10 s.
const PACED_LOAD: Load = Load { connections: 1, streams: 1, requests: 10_000, rps: Some(1_000) };

/// Figure c.
pub async fn figure_c(env: &mut Env, sum: &mut Summary) -> Result<(), String> {
    println!(
        "\n== c. Store commands per 1,000 warm verifies of one hot token at 1,000 verifies/s: {} (10 s) \
         against A, MONITOR and INFO commandstats around it",
        PACED_LOAD.describe()
    );
    let path = env.body.clone();
    let mut a = env.a.client().await?;
    let answer = a
        .verify(pb::VerifyRequest { token: env.hot_cst.clone(), ..Default::default() })
        .await
        .map_err(|s| format!("verify: {s:?}"))?
        .into_inner();
    let ports = ports_to(env.a.pid, env.redis_port);
    let mon = Monitor::start(env.redis_port).await?;
    let before = commandstats(&mut env.admin).await?;
    mon.mark(&mut env.admin, "bench-c-start").await?;
    let before_cpu = Sample::take(env.a.pid, env.redis_pid);
    let target = Target { addr: env.a.addr, path: VERIFY_PATH, headers: &[], h1: false };
    let run = h2load::run(&target, &path, PACED_LOAD, &env.dir.join("h2load.log"), Duration::from_secs(40)).await?;
    let cpu = Sample::take(env.a.pid, env.redis_pid).since(&before_cpu);
    tokio::time::sleep(Duration::from_millis(200)).await;
    mon.mark(&mut env.admin, "bench-c-end").await?;
    let after = commandstats(&mut env.admin).await?;
    let lines = mon.between("bench-c-start", "bench-c-end");
    mon.stop();
    let mine = monitor::from_ports(&lines, &ports);
    let health_pings = monitor::pings(&lines, &ports);
    let mut by_cmd: BTreeMap<&str, usize> = BTreeMap::new();
    for l in &mine {
        *by_cmd.entry(l.cmd.as_str()).or_default() += 1;
    }
    let lua = lines.iter().filter(|l| l.source == "lua").count();
    let verifies = run.succeeded;
    let per_1000 = mine.len() as f64 * 1000.0 / verifies.max(1) as f64;
    let delta = command_delta(&before, &after, &["info", "echo", "monitor"]);
    println!(
        "  {verifies} verifies in {:.2} s ({:.0}/s achieved), p50 {} p99 {}, data {:.1} B/response (valid answer ~{} B); \
         A CPU {:.1} µs/verify",
        run.wall.as_secs_f64(),
        run.req_per_s,
        us(run.p(50.0)),
        us(run.p(99.0)),
        run.data_per_response(),
        5 + answer.encoded_len(),
        cpu.server * 1e6 / verifies.max(1) as f64
    );
    println!(
        "  top-level commands from A's connections: {} ({:?}); script-internal (lua) lines: {lua}; \
         health-probe PINGs left out: {health_pings} (one a second, whatever the load); \
         INFO commandstats delta (counts script-internal calls too): {:?}",
        mine.len(),
        by_cmd,
        delta
    );
    let span = match (mine.first(), mine.last()) {
        (Some(f), Some(l)) if mine.len() > 1 => {
            format!(", one every {:.0} ms", (l.at_us - f.at_us) as f64 / 1000.0 / (mine.len() - 1) as f64)
        }
        _ => String::new(),
    };
    println!("  => {per_1000:.2} store commands per 1,000 verifies{span}");
    sum.row(
        "c. store commands / 1,000 warm verifies",
        format!("{per_1000:.2} ({} commands / {verifies} verifies at {:.0}/s{span})", mine.len(), run.req_per_s),
        "<= 1",
        verdict_max(per_1000, 1.0, ""),
    );
    if per_1000 > 1.0 {
        sum.limits.push(format!(
            "c: one touch EVALSHA per token per touch granularity (1 s) per replica is the design; at 1,000 \
             verifies/s that is 1.0 per 1,000 exactly, so a run spanning {:.2} s sees {} touches; anything above \
             10 is the run's own length, not extra commands",
            run.wall.as_secs_f64(),
            mine.len()
        ));
    }
    Ok(())
}
