//! introspect-bench's figure b: the store round trips of a cold verify on
//! replica A, with the tenant cached and not: the commands from MONITOR,
//! kept to A's own Redis connections (found through `/proc`), and the round
//! trips from Redis' read events over a window where only A talks to Redis.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use cred_proto::authd::v1 as apb;

use crate::api::{create_client, new_tenant, verify_ok};
use crate::monitor::{self, Monitor};
use crate::proc_stats::ports_to;
use crate::redis_info::reads_processed;
use crate::stats::us;
use crate::summary::Summary;
use crate::verify_env::Env;

/// Figure b.
pub async fn figure_b(env: &mut Env, sum: &mut Summary) -> Result<(), String> {
    println!(
        "\n== b. Store round trips of a cold verify on A. Commands: MONITOR, keeping only A's own Redis \
         connections (found through /proc/{}/fd and /proc/net/tcp). Round trips: Redis' read events \
         (INFO stats total_reads_processed) over a window where only A talks to Redis: a pipeline arrives in \
         one read, each further round trip is another read",
        env.a.pid
    );
    // Two never-seen tokens of the hot tenant (one primes the tenant cache)
    // and one of a tenant A has never seen.
    let (_, _, primer) = create_client(&env.authd, &env.api_key).await?;
    let (_, _, probe) = create_client(&env.authd, &env.api_key).await?;
    let (_, other_key) = new_tenant(&env.authd, &env.operator, "bench-other", apb::Environment::Production).await?;
    let (_, _, probe_other) = create_client(&env.authd, &other_key).await?;
    // Older than the touch granularity, as any token last used over 1 s ago:
    // the first verify then also writes a touch.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let mut a = env.a.client().await?;
    verify_ok(&mut a, &primer, false).await.map_err(|e| format!("primer: {e}"))?;
    let ports = ports_to(env.a.pid, env.redis_port);
    println!(
        "A's connections to Redis: local ports {:?} (one multiplexed command connection + one pub/sub)",
        sorted(&ports)
    );
    let mon = Monitor::start(env.redis_port).await?;
    // Calibration: the same window with no verify (expect 0 reads).
    let (m0, m1) = ("bench-b-idle-start", "bench-b-idle-end");
    mon.mark(&mut env.admin, m0).await?;
    let r0 = reads_processed(&mut env.admin).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_reads = reads_processed(&mut env.admin).await? - r0 - 1;
    mon.mark(&mut env.admin, m1).await?;
    println!("calibration: {idle_reads} read events in 300 ms with no verify (the window's own INFO excluded)");
    let cases = [
        ("tenant cached (another new token of the same tenant was verified just before)", &probe),
        ("tenant not cached (a tenant A has never seen)", &probe_other),
    ];
    for (i, (what, token)) in cases.iter().enumerate() {
        let (m0, m1) = (format!("bench-b{i}-start"), format!("bench-b{i}-end"));
        mon.mark(&mut env.admin, &m0).await?;
        let r0 = reads_processed(&mut env.admin).await?;
        let t = Instant::now();
        verify_ok(&mut a, token, false).await?;
        let latency = t.elapsed();
        // The touch is written asynchronously, spawned as the answer goes out.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let reads = reads_processed(&mut env.admin).await? - r0 - 1 - idle_reads;
        mon.mark(&mut env.admin, &m1).await?;
        let lines = mon.between(&m0, &m1);
        let mine = monitor::from_ports(&lines, &ports);
        let lua = lines.iter().filter(|l| l.source == "lua").count();
        let others = lines
            .iter()
            .filter(|l| l.source != "lua" && l.cmd != "info" && !l.port().is_some_and(|p| ports.contains(&p)))
            .count();
        println!("-- cold verify, {what}: answered in {} (client-side)", us(latency.as_secs_f64() * 1e6));
        let base = mine.first().map_or(0, |l| l.at_us);
        for l in &mine {
            let role = if l.cmd == "evalsha" { "touch (async)" } else { "load" };
            println!("   +{:>6} µs  {:<13} {}", l.at_us - base, role, short(&l.raw, 150));
        }
        let touches = mine.iter().filter(|l| l.cmd == "evalsha").count() as i64;
        let load: Vec<&str> = mine.iter().filter(|l| l.cmd != "evalsha").map(|l| l.cmd.as_str()).collect();
        let trips = reads - touches;
        println!(
            "   => {} top-level command(s) from A ({}) + {touches} touch EVALSHA ({lua} script-internal lines); \
             Redis read events: {reads}, so {trips} round trip(s) on the answer's path + {touches} asynchronous \
             touch; commands from other clients in the window: {others}",
            load.len(),
            load.join(" "),
        );
        let label = if i == 0 {
            "b. cold verify store round trips (tenant cached)"
        } else {
            "b. cold verify store round trips (tenant not cached)"
        };
        sum.row(
            label,
            format!("{trips} ({} commands: {}) + {touches} async touch", load.len(), load.join(" ")),
            if i == 0 { "1" } else { "1 (informative)" },
            if trips <= 1 { "met".into() } else { format!("NOT met: {trips} round trips (+{})", trips - 1) },
        );
        if i == 1 && trips > 1 {
            sum.limits.push(
                "b (tenant not cached): the tenant id comes from the client record, so the tenant HGETALL can \
                 only be sent after the first pipeline's answer (introspect verifier.rs `load` → `tenant`). \
                 Tenants stay cached for the max age (30 s) from their load and are not renewed by use, so even a \
                 hot tenant's next cold verify pays this second round trip once every 30 s per replica"
                    .into(),
            );
        }
    }
    mon.stop();
    Ok(())
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { format!("{}…", s.chars().take(n).collect::<String>()) }
}

fn sorted(s: &HashSet<u16>) -> Vec<u16> {
    let mut v: Vec<u16> = s.iter().copied().collect();
    v.sort_unstable();
    v
}
