//! Time: wall-clock milliseconds for records and Redis expiries, and a
//! monotonic clock for ages and budgets inside one process.

use std::sync::OnceLock;
use std::time::Instant;

/// Milliseconds since the Unix epoch: the one time unit of the domain and
/// the store (Redis `PEXPIREAT` takes it as is).
pub type Millis = i64;

/// Now, in [`Millis`].
pub fn now_ms() -> Millis {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as Millis).unwrap_or(0)
}

/// Milliseconds on this process' monotonic clock.
pub fn mono_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}
