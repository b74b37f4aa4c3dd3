//! introspect-bench's figure g: instructions per warm verify, counted by
//! `valgrind --tool=callgrind`, for the bare no-op, the same-stack no-op and
//! introspect as shipped. Each server is started under callgrind and driven
//! by h2load with [`FEW`] and then, in a second process, [`MANY`] requests of
//! the same body; start, warm-up and shutdown cancel in the difference:
//! instructions per request = (Ir(MANY) - Ir(FEW)) / (MANY - FEW). Unlike
//! req/s and CPU time, this barely moves when other work shares the machine.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use prost::Message as _;

use crate::api::{CHECK_PATH, check_request, grpc_frame};
use crate::h2load::{self, Load, Target};
use crate::process::{self, Proc, free_port, wait_serving};
use crate::summary::Summary;
use crate::verify_env::{Env, VERIFY_PATH};

/// Requests of the short and the long run.
const FEW: usize = 500;
const MANY: usize = 2_500;
/// Everything under callgrind runs some 50 times slower.
const LIMIT: Duration = Duration::from_secs(120);

/// A server to count: its name, program and arguments (before `--listen`).
type Server = (&'static str, PathBuf, Vec<String>);
/// What h2load calls: the method's path and the request body file.
type Call<'a> = (&'static str, &'a Path);

/// The three servers.
fn servers(env: &Env) -> Result<[Server; 3], String> {
    let build = "`cargo build --release -p introspect -p cred-bench`";
    let noop = process::sibling("noop-introspect", build)?;
    Ok([
        ("bare no-op", noop.clone(), vec!["--bare".into()]),
        ("same-stack no-op", noop, vec![]),
        ("introspect (as shipped)", env.introspect_bin.clone(), vec!["serve".into()]),
    ])
}

/// Instructions one process ran: `bin args --listen <free> [--redis-url]`
/// under callgrind, `requests` warm verifies, SIGTERM.
async fn count(
    env: &Env,
    name: &str,
    bin: &Path,
    args: &[String],
    call: Call<'_>,
    requests: usize,
) -> Result<u64, String> {
    let out = env.dir.join(format!("callgrind.{}.{requests}.out", name.replace(' ', "_")));
    let addr = ([127, 0, 0, 1], free_port()?).into();
    let mut cmd = tokio::process::Command::new("valgrind");
    cmd.arg("--tool=callgrind").arg(format!("--callgrind-out-file={}", out.display())).arg(bin).args(args);
    cmd.args(["--listen", &format!("{addr}")]);
    if args.first().is_some_and(|a| a == "serve") {
        cmd.args(["--redis-url", &env.url]);
    }
    cmd.env_remove("RUST_LOG");
    let log = env.dir.join(format!("callgrind.{}.{requests}.log", name.replace(' ', "_")));
    let proc: Proc = process::spawn(cmd, name, addr, &log).map_err(|e| {
        if e.contains("No such file") {
            "valgrind not found: install it (Debian: apt-get install valgrind)".to_string()
        } else {
            e
        }
    })?;
    let proc = wait_serving(proc, Instant::now(), LIMIT).await?.proc;
    // One verify first: introspect loads the token into its cache. Under
    // callgrind on a busy machine the store read can overrun its deadline
    // (UNAVAILABLE): try again, a few times.
    let mut client = proc.client().await?;
    let warm = cred_proto::introspect::v1::VerifyRequest { token: env.hot_cst.clone(), ..Default::default() };
    let mut tries = 0;
    while let Err(s) = client.verify(warm.clone()).await {
        tries += 1;
        if s.code() != tonic::Code::Unavailable || tries == 10 {
            return Err(format!("{name}: {s:?}"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let target = Target { addr, path: call.0, headers: &[], h1: false };
    let load = Load { connections: 1, streams: 10, requests, rps: None };
    let run = h2load::run(&target, call.1, load, &env.dir.join("h2load.log"), LIMIT).await?;
    if run.succeeded != requests as u64 {
        return Err(format!("{name}: {} of {requests} requests succeeded", run.succeeded));
    }
    let status = proc.terminate(LIMIT).await?;
    let text = std::fs::read_to_string(&out).map_err(|e| format!("{name} ({status}): {}: {e}", out.display()))?;
    text.lines()
        .find_map(|l| l.strip_prefix("summary: ")?.trim().parse().ok())
        .ok_or_else(|| format!("{}: no summary line", out.display()))
}

/// Figure g.
pub async fn figure_g(env: &mut Env, sum: &mut Summary) -> Result<(), String> {
    println!(
        "\n== g. Instructions per warm verify (valgrind --tool=callgrind, the whole process, all threads): each \
         server started under callgrind, one verify to warm it, h2load -c 1 -m 10 -n {FEW} and, in a second \
         process, -n {MANY}; per request = (Ir({MANY}) - Ir({FEW})) / {}",
        MANY - FEW
    );
    let check_body = env.dir.join("check-g.body");
    std::fs::write(&check_body, grpc_frame(&check_request(&env.hot_cst).encode_to_vec())).map_err(|e| e.to_string())?;
    let [bare, stack, shipped] = servers(env)?;
    let check = ("introspect, Check", shipped.1.clone(), shipped.2.clone());
    let runs: [(Server, Call<'_>); 4] = [
        (bare, (VERIFY_PATH, &env.body)),
        (stack, (VERIFY_PATH, &env.body)),
        (shipped, (VERIFY_PATH, &env.body)),
        (check, (CHECK_PATH, &check_body)),
    ];
    let mut per = Vec::new();
    for ((name, bin, args), call) in runs {
        let few = count(env, name, &bin, &args, call, FEW).await?;
        let many = count(env, name, &bin, &args, call, MANY).await?;
        let ir = many.saturating_sub(few) as f64 / (MANY - FEW) as f64;
        println!("  {name:<24} Ir {few} ({FEW} requests), {many} ({MANY}): {ir:.0} instructions per request");
        per.push((name, ir));
    }
    let (bare, stack, verify, check) = (per[0].1, per[1].1, per[2].1, per[3].1);
    sum.row(
        "g. instructions per warm verify, introspect / bare no-op",
        format!(
            "{:.2} ({verify:.0} / {bare:.0}; same-stack no-op {stack:.0}, {:.2} of bare)",
            verify / bare,
            stack / bare
        ),
        "-",
        "(informative: repeatable under noise; the CPU target is row a)".into(),
    );
    sum.row(
        "g. instructions per Check, against per Verify",
        format!("{:.2} ({check:.0} / {verify:.0})", check / verify),
        "-",
        "(informative: figure h's ratio, counted)".into(),
    );
    Ok(())
}
