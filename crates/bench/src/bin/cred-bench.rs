//! cred-bench: the benchmark figures of authd, measured end to end on
//! loopback against a private `redis-server` that the run starts and stops:
//! figure A, session mint over gRPC beside the raw store rate of the same
//! work (`cred_bench::mint`), figure B, Redis memory per live session
//! (`cred_bench::session_memory`), and figure C, the largest single Redis
//! command at 20,000 API keys and 100,000 clients in one tenant
//! (`cred_bench::tenant_scale`). `cred-bench B` or `cred-bench C` runs that
//! figure alone.
//!
//! Every phase is bounded in time and count; the run exits by itself. Run it
//! with `cargo run --release -p cred-bench` (needs `redis-server`, `h2load`
//! from nghttp2-client, and optionally `redis-benchmark`).
#![forbid(unsafe_code)]

use std::time::Instant;

/// authd's allocator, since figure A runs authd in this process.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use cred_bench::mint::{self, LOAD_THREADS};
use cred_bench::redis_info::{self, admin_connection};
use cred_bench::redis_server::RedisServer;
use cred_bench::{h2load, session_memory, tenant_scale};

fn main() {
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread().thread_name(LOAD_THREADS).enable_all().build();
    let code = match rt.map_err(|e| format!("tokio runtime: {e}")).and_then(|rt| rt.block_on(run())) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("cred-bench: {e}");
            1
        }
    };
    eprintln!("cred-bench: done in {:.1} s", started.elapsed().as_secs_f64());
    std::process::exit(code);
}

async fn run() -> Result<(), String> {
    let (a_b, c) = match std::env::args().nth(1).as_deref() {
        None => (true, true),
        Some("B") => (false, false),
        Some("C") => (false, true),
        Some(a) => {
            return Err(format!("unknown argument {a:?}; cred-bench takes none, B or C (that figure alone)"));
        }
    };
    let redis = RedisServer::start().await?;
    let mut admin = admin_connection(&redis.url()).await?;
    println!(
        "cred-bench: redis-server {} on 127.0.0.1:{} (no persistence, log {}), {}, {} CPU(s)",
        redis_info::version(&mut admin).await,
        redis.port(),
        redis.log_path().display(),
        h2load::version().await,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let mut summary = String::from("================================ SUMMARY ================================\n");
    if a_b {
        let a = mint::figure_a(&redis, &mut admin).await?;
        a.summary(&mut summary);
    }
    if a_b || !c {
        let b = session_memory::figure_b(&redis.url(), &mut admin).await?;
        session_memory::summary(&b, &mut summary);
        redis_info::flush(&mut admin).await?;
    }
    if c {
        let c = tenant_scale::figure_c(&redis.url(), &mut admin).await?;
        c.summary(&mut summary);
    }
    println!("\n{summary}");
    // Redis is killed when `redis` drops, after the figures are done.
    Ok(())
}
