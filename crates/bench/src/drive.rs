//! The in-process load driver: `op(task, index)` from a number of
//! concurrent tasks, bounded in calls and time, with every call's latency.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::stats::percentile;

/// What one bounded load run did.
pub struct Run {
    /// Per-call latency, nanoseconds, sorted (h2load: HTTP 200 answers).
    pub lat_ns: Vec<u64>,
    /// Calls finished, successful or not.
    pub calls: usize,
    pub errors: usize,
    pub first_error: Option<String>,
    pub elapsed: Duration,
}

impl Run {
    pub fn calls(&self) -> usize {
        self.calls
    }
    pub fn ok(&self) -> usize {
        self.calls().saturating_sub(self.errors)
    }
    /// Successful calls per second.
    pub fn rate(&self) -> f64 {
        self.ok() as f64 / self.elapsed.as_secs_f64()
    }
    /// Nearest-rank percentile, microseconds.
    pub fn percentile_us(&self, p: f64) -> f64 {
        percentile(&self.lat_ns, p) / 1000.0
    }
    pub fn require_all(&self, n: usize, what: &str) -> Result<(), String> {
        if self.ok() == n {
            Ok(())
        } else {
            Err(format!(
                "{what}: {} of {n} done, {} failed (e.g. {})",
                self.ok(),
                self.errors,
                self.first_error.as_deref().unwrap_or("time limit")
            ))
        }
    }
}

/// Runs `op(task, index)` from `tasks` concurrent tasks until `max_calls`
/// calls were started or `limit` passed. Indexes run from `first`.
pub async fn drive<F, Fut>(tasks: usize, first: usize, max_calls: usize, limit: Duration, op: Arc<F>) -> Run
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut set = JoinSet::new();
    for t in 0..tasks {
        let (op, next) = (op.clone(), next.clone());
        set.spawn(async move {
            let mut lat = Vec::with_capacity(max_calls / tasks + 1);
            let mut errors = 0;
            let mut first_error = None;
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= max_calls || start.elapsed() >= limit {
                    break;
                }
                let t0 = Instant::now();
                let r = op(t, first + k).await;
                lat.push(u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX));
                if let Err(e) = r {
                    errors += 1;
                    first_error.get_or_insert(e);
                }
            }
            (lat, errors, first_error)
        });
    }
    let mut run =
        Run { lat_ns: Vec::with_capacity(max_calls), calls: 0, errors: 0, first_error: None, elapsed: Duration::ZERO };
    while let Some(r) = set.join_next().await {
        match r {
            Ok((lat, errors, first_error)) => {
                run.lat_ns.extend(lat);
                run.errors += errors;
                if run.first_error.is_none() {
                    run.first_error = first_error;
                }
            }
            Err(e) => {
                run.errors += 1;
                run.first_error.get_or_insert(format!("load task failed: {e}"));
            }
        }
    }
    run.elapsed = start.elapsed();
    run.calls = run.lat_ns.len();
    run.lat_ns.sort_unstable();
    run
}
