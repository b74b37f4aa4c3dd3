//! What `/proc` says about the processes a figure measures, read through
//! `procfs`: CPU time per process, per thread of this process and of its
//! reaped children (h2load), the machine's busy time, RSS, and which TCP
//! connections a process holds to a port. A read that fails counts as zero:
//! a figure then shows an implausible number rather than stopping the run.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};

use procfs::process::{FDTarget, Process};
use procfs::{Current, CurrentSI, KernelStats, LoadAverage};

/// Clock ticks per second of `/proc` CPU times.
fn tick_s() -> f64 {
    1.0 / procfs::ticks_per_second() as f64
}

fn process(pid: u32) -> Option<Process> {
    Process::new(i32::try_from(pid).ok()?).ok()
}

/// utime + stime of a process, seconds (all its threads, alive or gone).
pub fn cpu_s(pid: u32) -> f64 {
    process(pid).and_then(|p| p.stat().ok()).map_or(0.0, |s| (s.utime + s.stime) as f64 * tick_s())
}

/// CPU of this process, seconds.
pub fn self_cpu_s() -> f64 {
    Process::myself().and_then(|p| p.stat()).map_or(0.0, |s| (s.utime + s.stime) as f64 * tick_s())
}

/// cutime + cstime of this process: CPU of its children that were waited
/// for (h2load), seconds.
pub fn children_cpu_s() -> f64 {
    Process::myself().and_then(|p| p.stat()).map_or(0.0, |s| (s.cutime + s.cstime).max(0) as f64 * tick_s())
}

/// CPU time of each thread of this process, by thread id: (thread name,
/// nanoseconds on a CPU from `schedstat`).
pub fn threads_ns() -> BTreeMap<i32, (String, u64)> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = Process::myself().and_then(|p| p.tasks()) else { return out };
    for t in tasks.flatten() {
        let name = t.stat().map(|s| s.comm).unwrap_or_default();
        let ns = t.schedstat().map_or(0, |s| s.sum_exec_runtime);
        out.insert(t.tid, (name, ns));
    }
    out
}

/// Busy CPU of the whole machine (every process), seconds: everything but
/// idle and iowait.
pub fn machine_busy_s() -> f64 {
    let Ok(k) = KernelStats::current() else { return 0.0 };
    let t = k.total;
    let busy = t.user + t.nice + t.system + t.irq.unwrap_or(0) + t.softirq.unwrap_or(0) + t.steal.unwrap_or(0);
    busy as f64 * tick_s()
}

/// `VmRSS` of a process, bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    Some(process(pid)?.status().ok()?.vmrss? * 1024)
}

/// `VmHWM` (peak RSS) of a process, bytes.
pub fn hwm_bytes(pid: u32) -> Option<u64> {
    Some(process(pid)?.status().ok()?.vmhwm? * 1024)
}

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` prints them.
pub fn loadavg() -> String {
    LoadAverage::current().map_or("?".into(), |l| format!("{:.2} {:.2} {:.2}", l.one, l.five, l.fifteen))
}

/// Local ports of the TCP connections `pid` holds to `127.0.0.1:remote_port`
/// (its connections to Redis): its socket inodes matched in the TCP table.
pub fn ports_to(pid: u32, remote_port: u16) -> HashSet<u16> {
    let Some(p) = process(pid) else { return HashSet::new() };
    let inodes: HashSet<u64> = p
        .fd()
        .map(|fds| {
            fds.flatten()
                .filter_map(|fd| match fd.target {
                    FDTarget::Socket(inode) => Some(inode),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let redis = (IpAddr::V4(Ipv4Addr::LOCALHOST), remote_port);
    procfs::net::tcp()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| (e.remote_address.ip(), e.remote_address.port()) == redis && inodes.contains(&e.inode))
        .map(|e| e.local_address.port())
        .collect()
}

/// CPU seconds by process over one run of a figure.
#[derive(Default, Clone, Copy)]
pub struct Cpu {
    pub h2load: f64,
    pub server: f64,
    pub redis: f64,
    pub bench: f64,
    /// The rest of the machine: busy CPU of every process minus the above
    /// (idle replicas, and whatever else shares this machine).
    pub others: f64,
}

impl Cpu {
    /// Ours: h2load, the server, Redis and this process.
    pub fn total(&self) -> f64 {
        self.h2load + self.server + self.redis + self.bench
    }
}

/// The CPU counters [`Cpu`] is the difference of.
pub struct Sample {
    h2load_children: f64,
    server: f64,
    redis: f64,
    bench: f64,
    machine: f64,
}

impl Sample {
    /// Reads the counters of `server` and `redis` (a pid of 0 reads zero).
    pub fn take(server: u32, redis: u32) -> Sample {
        Sample {
            h2load_children: children_cpu_s(),
            server: cpu_s(server),
            redis: cpu_s(redis),
            bench: self_cpu_s(),
            machine: machine_busy_s(),
        }
    }

    pub fn since(&self, b: &Sample) -> Cpu {
        let mut c = Cpu {
            h2load: self.h2load_children - b.h2load_children,
            server: self.server - b.server,
            redis: self.redis - b.redis,
            bench: self.bench - b.bench,
            others: 0.0,
        };
        c.others = (self.machine - b.machine - c.total()).max(0.0);
        c
    }
}
