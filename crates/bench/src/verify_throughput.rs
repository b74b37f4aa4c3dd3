//! introspect-bench's figure a: warm verify throughput, p50/p99 and server
//! CPU per request under h2load against replica A as shipped (default flags
//! and log level, stderr to a file), beside the two floors under the same
//! load, rounds alternated: a bare tonic server answering Verify (the
//! targets: throughput >= 0.90, p99 <= 1.15, server CPU per request <= 1.25
//! of it) and the same stack as introspect answering with a fixed response
//! (what the verify itself costs); and a', the same after figure d's
//! revocations.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cred_proto::introspect::v1 as pb;
use prost::Message;

use crate::h2load::{self, H2Run, Load, Target};
use crate::proc_stats::{Cpu, Sample};
use crate::process::Proc;
use crate::revocation::REVOCATIONS;
use crate::stats::{median, us};
use crate::summary::{Summary, verdict_max, verdict_min};
use crate::verify_env::{Env, VERIFY_PATH};

/// Figure a: the same load for both servers (STACK.md's floor used this).
const WARM_LOAD: Load = Load { connections: 4, streams: 10, requests: 200_000, rps: None };
/// Unmeasured h2load run against each server first.
const WARM_UP_LOAD: Load = Load { connections: 4, streams: 10, requests: 20_000, rps: None };
/// Alternated (bare no-op, same-stack no-op, verify) triples.
const ROUNDS: usize = 5;
/// The same, after figure d's revocations.
const AFTER_ROUNDS: usize = 3;

struct LoadRun {
    label: String,
    run: H2Run,
    cpu: Cpu,
    /// Expected DATA bytes of one valid answer (5-byte prefix + message).
    answer_bytes: usize,
}

impl LoadRun {
    fn per_req_us(&self, s: f64) -> f64 {
        s * 1e6 / self.run.succeeded.max(1) as f64
    }
    fn total_cpu(&self) -> f64 {
        self.cpu.total()
    }
}

fn load_header() -> String {
    format!(
        "  {:<22} {:>9} {:>8} {:>8} {:>8} {:>7} {:>11} | CPU µs/req: {:>6} {:>6} {:>6} {:>6} {:>6} | {:>5} | {:>6}",
        "run",
        "req/s",
        "p50",
        "p99",
        "max",
        "errors",
        "data B/resp",
        "h2load",
        "server",
        "redis",
        "bench",
        "total",
        "cores",
        "others"
    )
}

fn load_row(r: &LoadRun) -> String {
    format!(
        "  {:<22} {:>9.0} {:>8} {:>8} {:>8} {:>7} {:>5.1} ({:>3}) | CPU µs/req: {:>6.2} {:>6.2} {:>6.2} {:>6.2} {:>6.2} | {:>5.2} | {:>6.2}",
        r.label,
        r.run.req_per_s,
        us(r.run.p(50.0)),
        us(r.run.p(99.0)),
        us(r.run.p(100.0)),
        r.run.failed + r.run.errored + r.run.timeout + r.run.non_200,
        r.run.data_per_response(),
        r.answer_bytes,
        r.per_req_us(r.cpu.h2load),
        r.per_req_us(r.cpu.server),
        r.per_req_us(r.cpu.redis),
        r.per_req_us(r.cpu.bench),
        r.per_req_us(r.total_cpu()),
        r.total_cpu() / r.run.wall.as_secs_f64(),
        r.cpu.others / r.run.wall.as_secs_f64(),
    )
}

/// What figure a' repeats.
pub struct FigA {
    body: PathBuf,
    noop_bytes: usize,
    verify_bytes: usize,
}

/// The targets against the bare floor.
const MIN_THROUGHPUT: f64 = 0.90;
const MAX_P99: f64 = 1.15;
const MAX_CPU: f64 = 1.25;

async fn load_run(
    env: &Env,
    label: &str,
    server: &Proc,
    body: &Path,
    load: Load,
    bytes: usize,
) -> Result<LoadRun, String> {
    let log = env.dir.join("h2load.log");
    let before = Sample::take(server.pid, env.redis_pid);
    let target = Target { addr: server.addr, path: VERIFY_PATH, headers: &[], h1: false };
    let run = h2load::run(&target, body, load, &log, Duration::from_secs(90)).await?;
    let cpu = Sample::take(server.pid, env.redis_pid).since(&before);
    if run.succeeded == 0 {
        return Err(format!("{label}: no request succeeded"));
    }
    Ok(LoadRun { label: label.to_string(), run, cpu, answer_bytes: bytes })
}

/// The runs of one figure: per round the bare floor, the same-stack no-op
/// and introspect A, in that order.
#[derive(Default)]
struct Rounds {
    bare: Vec<LoadRun>,
    noop: Vec<LoadRun>,
    verify: Vec<LoadRun>,
}

async fn rounds(env: &Env, fa: &FigA, n: usize) -> Result<Rounds, String> {
    println!("{}", load_header());
    let mut r = Rounds::default();
    for round in 1..=n {
        let b = load_run(env, &format!("bare no-op #{round}"), &env.bare, &fa.body, WARM_LOAD, fa.noop_bytes).await?;
        println!("{}", load_row(&b));
        let s = load_run(env, &format!("stack no-op #{round}"), &env.noop, &fa.body, WARM_LOAD, fa.noop_bytes).await?;
        println!("{}", load_row(&s));
        let v = load_run(env, &format!("verify A #{round}"), &env.a, &fa.body, WARM_LOAD, fa.verify_bytes).await?;
        println!("{}", load_row(&v));
        r.bare.push(b);
        r.noop.push(s);
        r.verify.push(v);
    }
    for (i, ((b, s), v)) in r.bare.iter().zip(&r.noop).zip(&r.verify).enumerate() {
        println!(
            "  round {}: verify / bare: throughput {:.3}, p99 {:.2}, server CPU {:.2}; verify / stack no-op: \
             throughput {:.3}, p99 {:.2}",
            i + 1,
            v.run.req_per_s / b.run.req_per_s,
            v.run.p(99.0) / b.run.p(99.0),
            v.per_req_us(v.cpu.server) / b.per_req_us(b.cpu.server),
            v.run.req_per_s / s.run.req_per_s,
            v.run.p(99.0) / s.run.p(99.0)
        );
    }
    Ok(r)
}

/// Figure a.
pub async fn figure_a(env: &mut Env, sum: &mut Summary) -> Result<FigA, String> {
    println!(
        "\n== a. Warm verify throughput and latency: {} POSTs of one valid VerifyRequest{{token: CST}} \
         (content-type application/grpc, te: trailers); the bare no-op, the same-stack no-op and introspect A \
         (as shipped: default flags and log level, stderr to a file), alternated, {ROUNDS} rounds",
        WARM_LOAD.describe()
    );
    // The h2load body: 5-byte gRPC prefix + the encoded request.
    let path = env.body.clone();
    let body = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;

    // The same bytes, decoded, through a real tonic client: grpc-status 0?
    let decoded = pb::VerifyRequest::decode(&body[5..]).map_err(|e| format!("body does not decode: {e}"))?;
    let n = env.noop.client().await?.verify(decoded.clone()).await.map_err(|s| format!("no-op verify: {s:?}"))?;
    env.bare.client().await?.verify(decoded.clone()).await.map_err(|s| format!("bare no-op verify: {s:?}"))?;
    let v = env.a.client().await?.verify(decoded).await.map_err(|s| format!("body refused by introspect A: {s:?}"))?;
    let (n, v) = (n.into_inner(), v.into_inner());
    if v.kind != pb::CredentialKind::Session as i32 {
        return Err(format!("introspect A answered kind {} for the CST", v.kind));
    }
    let (noop_bytes, verify_bytes) = (5 + n.encoded_len(), 5 + v.encoded_len());
    println!(
        "body {} B ({}); tonic client check: grpc-status 0 from all three (A: kind SESSION, client {}); \
         a valid answer is {verify_bytes} B of DATA from A, {noop_bytes} B from the no-ops, a gRPC error 0 B",
        body.len(),
        path.display(),
        v.client_id
    );
    let fa = FigA { body: path, noop_bytes, verify_bytes };
    for (label, server, bytes) in [
        ("warm-up bare", &env.bare, noop_bytes),
        ("warm-up no-op", &env.noop, noop_bytes),
        ("warm-up verify", &env.a, verify_bytes),
    ] {
        load_run(env, label, server, &fa.body, WARM_UP_LOAD, bytes).await?;
    }
    println!(
        "  (CPU µs/req from /proc/<pid>/stat: h2load, the server under test, redis-server, this process \
         (authd + clients, idle here); cores = their CPU / wall time; others = busy cores of the rest of the \
         machine over the run, from /proc/stat: the machine is shared)"
    );
    let r = rounds(env, &fa, ROUNDS).await?;
    throughput_verdicts(sum, "", "bare no-op", true, &r.bare, &r.verify);
    throughput_verdicts(sum, "", "same-stack no-op", false, &r.noop, &r.verify);
    Ok(fa)
}

/// Medians over the rounds, the ratio rows (with verdicts against the bare
/// floor, informative against the same-stack no-op), and what limits them.
fn throughput_verdicts(
    sum: &mut Summary,
    suffix: &str,
    floor: &str,
    targets: bool,
    noops: &[LoadRun],
    verifies: &[LoadRun],
) {
    let med = |v: &[LoadRun], f: &dyn Fn(&LoadRun) -> f64| median(&v.iter().map(f).collect::<Vec<_>>());
    let (nr, vr) = (med(noops, &|r| r.run.req_per_s), med(verifies, &|r| r.run.req_per_s));
    let (n99, v99) = (med(noops, &|r| r.run.p(99.0)), med(verifies, &|r| r.run.p(99.0)));
    let (n50, v50) = (med(noops, &|r| r.run.p(50.0)), med(verifies, &|r| r.run.p(50.0)));
    let tr = vr / nr;
    let pr = v99 / n99;
    // Best of the rounds: the runs least disturbed by the rest of the machine.
    let best = |v: &[LoadRun], f: &dyn Fn(&LoadRun) -> f64, max: bool| {
        v.iter().map(f).fold(if max { f64::MIN } else { f64::MAX }, |a, b| if max { a.max(b) } else { a.min(b) })
    };
    let (bnr, bvr) = (best(noops, &|r| r.run.req_per_s, true), best(verifies, &|r| r.run.req_per_s, true));
    let (bn99, bv99) = (best(noops, &|r| r.run.p(99.0), false), best(verifies, &|r| r.run.p(99.0), false));
    let others = med(noops, &|r| r.cpu.others / r.run.wall.as_secs_f64())
        .max(med(verifies, &|r| r.cpu.others / r.run.wall.as_secs_f64()));
    let server_cpu = |v: &[LoadRun]| med(v, &|r| r.per_req_us(r.cpu.server));
    let (ns, vs) = (server_cpu(noops), server_cpu(verifies));
    let cr = vs / ns;
    let (t_min, t_p99, t_cpu) = if targets {
        (format!(">= {MIN_THROUGHPUT}"), format!("<= {MAX_P99}"), format!("<= {MAX_CPU}"))
    } else {
        ("-".to_string(), "-".to_string(), "-".to_string())
    };
    let verdict = |v: String| if targets { v } else { "(informative)".to_string() };
    sum.row(
        &format!("a. server CPU per request, verify / {floor}{suffix}"),
        format!("{cr:.2} ({vs:.2} / {ns:.2} µs, {:+.2} µs)", vs - ns),
        &t_cpu,
        verdict(verdict_max(cr, MAX_CPU, "")),
    );
    println!(
        "  medians{suffix}: {floor} {nr:.0} req/s p50 {} p99 {}; verify {vr:.0} req/s p50 {} p99 {}; \
         throughput ratio {tr:.3}, p99 ratio {pr:.2}, server CPU ratio {cr:.2}\n  \
         best of {} rounds{suffix}: {floor} {bnr:.0} req/s, verify {bvr:.0} req/s: ratio {:.3}; lowest p99 \
         {floor} {}, verify {}: ratio {:.2}; the rest of the machine kept {others:.2} cores busy (median over the runs)",
        us(n50),
        us(n99),
        us(v50),
        us(v99),
        noops.len(),
        bvr / bnr,
        us(bn99),
        us(bv99),
        bv99 / bn99,
    );
    sum.row(
        &format!("a. warm verify throughput / {floor}{suffix}"),
        format!("{tr:.3} ({vr:.0} / {nr:.0} req/s, median of {}; best-of ratio {:.3})", noops.len(), bvr / bnr),
        &t_min,
        verdict(verdict_min(tr, MIN_THROUGHPUT, "")),
    );
    sum.row(
        &format!("a. warm verify p99 / {floor} p99{suffix}"),
        format!(
            "{pr:.2} ({} / {}; p50 {} / {}; lowest-p99 ratio {:.2})",
            us(v99),
            us(n99),
            us(v50),
            us(n50),
            bv99 / bn99
        ),
        &t_p99,
        verdict(verdict_max(pr, MAX_P99, "")),
    );
    if targets && (tr < MIN_THROUGHPUT || pr > MAX_P99 || cr > MAX_CPU) {
        let cpu = |v: &[LoadRun], f: &dyn Fn(&LoadRun) -> f64| med(v, &|r| r.per_req_us(f(r)));
        let (nh, vh) = (cpu(noops, &|r| r.cpu.h2load), cpu(verifies, &|r| r.cpu.h2load));
        let (nt, vt) = (cpu(noops, &|r| r.total_cpu()), cpu(verifies, &|r| r.total_cpu()));
        let (nc, vc) = (
            med(noops, &|r| r.total_cpu() / r.run.wall.as_secs_f64()),
            med(verifies, &|r| r.total_cpu() / r.run.wall.as_secs_f64()),
        );
        sum.limits.push(format!(
            "a{suffix}: CPU-bound: h2load and the server used {nc:.2} / {vc:.2} cores ({floor} / verify) while the \
             rest of the machine kept {others:.2} of the 2 cores busy. Server CPU per request {ns:.2} µs {floor} vs \
             {vs:.2} µs verify (+{:.2} µs, +{:.0}%: the limits and telemetry layers, parse, the secret's keyed tag, \
             negative-cache and cache lookups, checks, response building; the same-stack no-op rows split the \
             layers from the \
             verify); h2load {nh:.2} / {vh:.2} µs; total {nt:.2} / {vt:.2} µs per request. At a fixed CPU budget \
             throughput goes as 1/total: predicted ratio {:.3} vs measured {tr:.3}; the p99 follows the per-request \
             server time plus queueing behind the other processes on the same 2 cores, so it swings from round to \
             round (see the per-round ratios)",
            vs - ns,
            (vs / ns - 1.0) * 100.0,
            nt / vt,
        ));
    }
}

/// Figure a': figure a again after figure d's revocations (the hot entry
/// was loaded before them, so every hit now consults the invalidation
/// record).
pub async fn after_revocations(env: &mut Env, fa: &FigA, sum: &mut Summary) -> Result<(), String> {
    println!(
        "\n== a'. The same warm load after figure d's {REVOCATIONS} revocations (the hot entry was loaded before \
         them: each cache hit now also looks the entry's ids up in the replica's invalidation record)"
    );
    let r = rounds(env, fa, AFTER_ROUNDS).await?;
    throughput_verdicts(sum, " (after revocations)", "bare no-op", true, &r.bare, &r.verify);
    Ok(())
}
