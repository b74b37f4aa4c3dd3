//! introspect-bench: the figures of the verify sidecar, end to end on
//! loopback (one module of `cred_bench` each):
//!
//! - a. warm verify throughput and p50/p99 under h2load against replica A,
//!   beside the no-op tonic server under the same load, runs alternated
//!   (`verify_throughput`);
//! - b. the store round trips of a cold verify (`cold_round_trips`);
//! - c. store commands per 1,000 warm verifies of one hot token at 1,000/s
//!   (`warm_commands`);
//! - d. revocation propagation to both replicas over 1,000 revocations
//!   (`revocation`), then a. again;
//! - e. memory per cached credential with 1,000,000 cached (`cache_memory`);
//! - f. process start to SERVING (`start_time`);
//! - g. instructions per warm verify under callgrind, beside the two no-ops
//!   (`instructions`);
//! - h. Envoy ext_authz Check and forward-auth against Verify on one replica
//!   (`gateway_throughput`).
//!
//! The setting they share (Redis, authd in process, replicas A and B, the
//! no-op) is `verify_env`. Every phase is bounded in time and count; the run
//! exits by itself and kills what it started, also on SIGINT or SIGTERM.
//!
//! Build and run: `crates/bench/introspect-bench.sh` (or `cargo build
//! --release -p introspect -p cred-bench && target/release/introspect-bench`).
#![forbid(unsafe_code)]

use std::time::Instant;

use cred_bench::cache_memory::{self, MEMORY_CACHE_CAPACITY, MEMORY_CREDENTIALS};
use cred_bench::proc_stats::{loadavg, machine_busy_s};
use cred_bench::redis_info::{self, admin_connection};
use cred_bench::redis_server::RedisServer;
use cred_bench::summary::{Summary, report};
use cred_bench::verify_env::Env;
use cred_bench::{
    cold_round_trips, gateway_throughput, h2load, instructions, process, revocation, start_time, verify_throughput,
    warm_commands,
};

fn main() {
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread().thread_name("bench-rt").enable_all().build();
    let code = match rt.map_err(|e| format!("tokio runtime: {e}")).and_then(|rt| rt.block_on(run())) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("introspect-bench: {e}");
            1
        }
    };
    eprintln!("introspect-bench: done in {:.1} s", started.elapsed().as_secs_f64());
    std::process::exit(code);
}

/// Command-line options (all optional; the defaults are the full figures).
struct Config {
    /// Figures to run, by letter.
    only: String,
    /// Figure e's cached credentials.
    credentials: usize,
    /// `RUST_LOG` for every introspect started (unset: the shipped default).
    rust_log: Option<String>,
}

const USAGE: &str = "usage: introspect-bench [--only LETTERS] [--credentials N] [--rust-log FILTER]\n  \
    --only LETTERS     run only these figures, e.g. --only ab (default abcdefgh)\n  \
    --credentials N    figure e's cached credentials (default 1000000)\n  \
    --rust-log FILTER  RUST_LOG of every introspect started (default: unset, the shipped level; \
    `info,cred::rpc=debug` logs every verify)";

fn parse_args(args: &[String]) -> Result<Config, String> {
    let mut c = Config { only: "abcdefgh".into(), credentials: MEMORY_CREDENTIALS, rust_log: None };
    let mut args = args.iter().cloned();
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--only", Some(v)) if !v.is_empty() && v.chars().all(|c| "abcdefgh".contains(c)) => c.only = v,
            ("--credentials", Some(v)) => {
                c.credentials =
                    v.parse().ok().filter(|&n| n > 0).ok_or_else(|| format!("--credentials {v}\n{USAGE}"))?
            }
            ("--rust-log", Some(v)) => c.rust_log = Some(v),
            _ => return Err(format!("bad argument {a:?}\n{USAGE}")),
        }
    }
    Ok(c)
}

async fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, n] = args.as_slice()
        && flag == "--cache-probe"
    {
        return cache_memory::probe(n.parse().map_err(|e| format!("--cache-probe {n}: {e}"))?, MEMORY_CACHE_CAPACITY);
    }
    let config = parse_args(&args)?;
    let build = "`cargo build --release -p introspect -p cred-bench` (or run crates/bench/introspect-bench.sh)";
    let introspect_bin = process::sibling("introspect", build)?;
    let noop_bin = process::sibling("noop-introspect", build)?;
    let tmp = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let dir = tmp.path().to_path_buf();
    // INTROSPECT_BENCH_KEEP=1 keeps the run's files (logs, callgrind outputs
    // for callgrind_annotate) instead of removing them at the end.
    let _tmp = if std::env::var_os("INTROSPECT_BENCH_KEEP").is_some() {
        println!("introspect-bench: keeping the run's files in {}", tmp.keep().display());
        None
    } else {
        Some(tmp)
    };
    let redis = RedisServer::start().await?;
    let mut admin = admin_connection(&redis.url()).await?;
    println!(
        "introspect-bench: redis-server {} on 127.0.0.1:{} (pid {}, log {}), {} CPU(s), {}, h2load {}",
        redis_info::version(&mut admin).await,
        redis.port(),
        redis.pid(),
        redis.log_path().display(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        introspect_bin.display(),
        h2load::version().await.trim_start_matches("h2load "),
    );

    // On SIGINT/SIGTERM the figures future is dropped, which kills every
    // child (kill_on_drop); Redis is killed when `redis` drops.
    tokio::select! {
        r = async {
            let env = Env::start(&redis, introspect_bin, noop_bin, &dir, config.credentials, config.rust_log.clone()).await?;
            figures(env, &config.only).await
        } => r,
        () = cred_serve::serve::shutdown_signal() => {
            Err("interrupted by a signal; stopped every process it started".into())
        }
    }
}

async fn figures(mut env: Env, only: &str) -> Result<(), String> {
    let wanted = |figure: char| only.contains(figure);
    let mut sum = Summary::default();
    let (started, machine0, load0) = (Instant::now(), machine_busy_s(), loadavg());
    let mut fa = None;
    if wanted('a') {
        let t = Instant::now();
        let r = verify_throughput::figure_a(&mut env, &mut sum).await;
        report("a", t, &r, &mut sum);
        fa = r.ok();
    }
    if wanted('b') {
        let t = Instant::now();
        let r = cold_round_trips::figure_b(&mut env, &mut sum).await;
        report("b", t, &r, &mut sum);
    }
    if wanted('c') {
        let t = Instant::now();
        let r = warm_commands::figure_c(&mut env, &mut sum).await;
        report("c", t, &r, &mut sum);
    }
    if wanted('d') {
        let t = Instant::now();
        let r = revocation::figure_d(&mut env, &mut sum).await;
        report("d", t, &r, &mut sum);
        if let (Ok(()), Some(fa)) = (&r, &fa) {
            let t = Instant::now();
            let r = verify_throughput::after_revocations(&mut env, fa, &mut sum).await;
            report("a'", t, &r, &mut sum);
        }
    }
    if wanted('f') {
        let t = Instant::now();
        let r = start_time::figure_f(&mut env, &mut sum).await;
        report("f", t, &r, &mut sum);
    }
    if wanted('g') {
        let t = Instant::now();
        let r = instructions::figure_g(&mut env, &mut sum).await;
        report("g", t, &r, &mut sum);
    }
    if wanted('h') {
        let t = Instant::now();
        let r = gateway_throughput::figure_h(&mut env, &mut sum).await;
        report("h", t, &r, &mut sum);
    }
    if wanted('e') {
        let t = Instant::now();
        let r = cache_memory::figure_e(&mut env, &mut sum).await;
        report("e", t, &r, &mut sum);
    }

    let busy = (machine_busy_s() - machine0) / started.elapsed().as_secs_f64();
    sum.notes.push(format!(
        "machine: {} CPU(s), on average {busy:.2} of them busy over the run (every process); load average {} at \
         the start, {} at the end",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load0,
        loadavg()
    ));
    println!("\n{}", sum.render());
    env.stop().await;
    if sum.failed.is_empty() { Ok(()) } else { Err(format!("figures not measured: {}", sum.failed.join(", "))) }
}
