//! cred-bench: the benchmark figures of authd, measured end to end on
//! loopback against a private `redis-server` that the run starts and stops:
//! figure A, session mint over gRPC beside the raw store rate of the same
//! work (`cred_bench::mint`), and figure B, Redis memory per live session
//! (`cred_bench::session_memory`).
//!
//! Every phase is bounded in time and count; the run exits by itself. Run it
//! with `cargo run --release -p cred-bench` (needs `redis-server`, `h2load`
//! from nghttp2-client, and optionally `redis-benchmark`).
#![forbid(unsafe_code)]

use std::time::Instant;

use cred_bench::mint::{self, LOAD_THREADS};
use cred_bench::redis_info::{self, admin_connection};
use cred_bench::redis_server::RedisServer;
use cred_bench::{h2load, session_memory};

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
    if let Some(a) = std::env::args().nth(1) {
        return Err(format!("unknown argument {a:?}; cred-bench takes no arguments"));
    }
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
    let a = mint::figure_a(&redis, &mut admin).await?;
    let b = session_memory::figure_b(&redis.url(), &mut admin).await?;
    let mut summary = String::from("================================ SUMMARY ================================\n");
    a.summary(&mut summary);
    session_memory::summary(&b, &mut summary);
    println!("\n{summary}");
    // Redis is killed when `redis` drops, after the figures are done.
    Ok(())
}
