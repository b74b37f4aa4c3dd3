//! soak: a fixed-rate mixed load against real `redis-server`, `authd` and
//! `introspect` processes on loopback, for a bounded time
//! (`cred_bench::soak`). Run `crates/bench/soak.sh`.
#![forbid(unsafe_code)]

fn main() {
    cred_bench::soak::main();
}
