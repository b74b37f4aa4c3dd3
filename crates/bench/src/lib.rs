//! cred-bench: the benchmark figures, each measured end to end on loopback
//! against servers the run starts and stops itself, as ratios against a
//! baseline run in the same process tree and the same minute. The binaries
//! (`cred-bench`, `introspect-bench`, `soak`, and `noop-introspect`, the
//! floor) only parse flags and print; each figure is one module here.
//!
//! Layout, top floor first (a module uses only those below it):
//! - `mint`, `session_memory`, `tenant_scale`, `verify_throughput`, `gateway_throughput`, `cold_round_trips`, `warm_commands`, `revocation`, `cache_memory`, `start_time`, `instructions`, `soak`:
//!   one figure each (cred-bench's A to C, introspect-bench's a to h, the
//!   soak);
//! - `verify_env`, `summary`: introspect-bench's shared setting (authd,
//!   replicas A and B, the no-op) and its summary table with verdicts;
//! - `authd_in_process`, `api`, `drive`, `h2load`, `h2_grpc`, `monitor`, `records`:
//!   authd on its own runtime, the gRPC calls a user makes, the in-process
//!   load driver, the one h2load driver, a lean gRPC load client for bodies
//!   that differ per call, Redis MONITOR capture, and records built as
//!   `Authority` builds them;
//! - `redis_server`, `redis_info`: a private redis-server, and what Redis
//!   says about itself (INFO, commandstats, memory, keys);
//! - `process`, `proc_stats`, `stats`: the one process wrapper for spawned
//!   servers, `/proc` through procfs (CPU, RSS, sockets), and percentiles.
#![forbid(unsafe_code)]

pub mod api;
pub mod authd_in_process;
pub mod cache_memory;
pub mod cold_round_trips;
pub mod drive;
pub mod gateway_throughput;
pub mod h2_grpc;
pub mod h2load;
pub mod instructions;
pub mod mint;
pub mod monitor;
pub mod proc_stats;
pub mod process;
pub mod records;
pub mod redis_info;
pub mod redis_server;
pub mod revocation;
pub mod session_memory;
pub mod soak;
pub mod start_time;
pub mod stats;
pub mod summary;
pub mod tenant_scale;
pub mod verify_env;
pub mod verify_throughput;
pub mod warm_commands;
