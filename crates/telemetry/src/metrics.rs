//! The instruments. Attribute values are `&'static str` or integers, so
//! recording allocates nothing; the cache and touch counters are
//! `cred_core::cache::CacheStats` atomics, read by observable instruments at
//! export time. Without a meter provider (no collector configured) every
//! instrument is a no-op.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cred_core::cache::{Cache, CacheStats};
use cred_core::store::StoreObserver;
use opentelemetry::metrics::{Counter, Histogram, Meter};
use opentelemetry::{KeyValue, global};

/// Milliseconds buckets for RPC and store latencies (sub-millisecond
/// resolution: a cached verify or a Redis round trip is well under 1 ms).
const MS_BUCKETS: [f64; 16] =
    [0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0];

/// The meter of this workspace's instruments.
pub fn meter() -> Meter {
    global::meter("cred")
}

/// `rpc.server.requests` and `rpc.server.duration`.
#[derive(Clone)]
pub struct RpcMetrics {
    requests: Counter<u64>,
    duration: Histogram<f64>,
}

impl RpcMetrics {
    /// Instruments of the current meter provider.
    pub fn new() -> RpcMetrics {
        let m = meter();
        RpcMetrics {
            requests: m
                .u64_counter("rpc.server.requests")
                .with_description("RPCs handled, by service, method and gRPC status code")
                .with_unit("{request}")
                .build(),
            duration: m
                .f64_histogram("rpc.server.duration")
                .with_description("RPC latency from request headers to response headers")
                .with_unit("ms")
                .with_boundaries(MS_BUCKETS.to_vec())
                .build(),
        }
    }

    /// Counts one RPC.
    pub fn record(&self, service: &'static str, method: &'static str, code: i32, elapsed: Duration) {
        self.record_with(&rpc_attributes(service, method, code), elapsed);
    }

    /// Counts one RPC whose attributes ([`rpc_attributes`]) were built
    /// before: the RPC layer builds them once per method and status code.
    pub fn record_with(&self, attrs: &[KeyValue], elapsed: Duration) {
        self.requests.add(1, attrs);
        self.duration.record(elapsed.as_secs_f64() * 1e3, attrs);
    }
}

/// The attributes of an RPC's metric points.
pub fn rpc_attributes(service: &'static str, method: &'static str, code: i32) -> [KeyValue; 4] {
    [
        KeyValue::new("rpc.system", "grpc"),
        KeyValue::new("rpc.service", service),
        KeyValue::new("rpc.method", method),
        KeyValue::new("rpc.grpc.status_code", i64::from(code)),
    ]
}

impl Default for RpcMetrics {
    fn default() -> Self {
        RpcMetrics::new()
    }
}

/// `cred.store.duration`: every store call's latency, by operation and
/// outcome (`ok` / `error`).
pub struct StoreMetrics {
    duration: Histogram<f64>,
}

/// A store observer feeding `cred.store.duration`.
pub fn store_observer() -> Arc<dyn StoreObserver> {
    Arc::new(StoreMetrics {
        duration: meter()
            .f64_histogram("cred.store.duration")
            .with_description("Store (Redis) call latency, by operation and outcome")
            .with_unit("ms")
            .with_boundaries(MS_BUCKETS.to_vec())
            .build(),
    })
}

impl StoreObserver for StoreMetrics {
    fn observe(&self, op: &'static str, elapsed: Duration, ok: bool) {
        let attrs = [KeyValue::new("db.operation.name", op), KeyValue::new("outcome", if ok { "ok" } else { "error" })];
        self.duration.record(elapsed.as_secs_f64() * 1e3, &attrs);
    }
}

/// Counts one introspect verify answer in `cred.verify.outcomes`:
/// `VALID`, an invalid-credential reason (`EXPIRED_IDLE`, `REVOKED`, ...),
/// `FORBIDDEN`, `UNAVAILABLE` or `BAD_REQUEST` (the ErrorInfo causes, and more).
pub fn verify_outcome(outcome: &'static str) {
    static COUNTER: OnceLock<Counter<u64>> = OnceLock::new();
    // Built at the first verify, after `init` installed the provider.
    let c = COUNTER.get_or_init(|| {
        meter()
            .u64_counter("cred.verify.outcomes")
            .with_description("introspect verify answers, by outcome (valid or the reason)")
            .with_unit("{verify}")
            .build()
    });
    c.add(1, &[KeyValue::new("outcome", outcome)]);
}

/// Counts one request for a method or path the server does not serve in
/// `cred.unserved.requests` (attribute `protocol`: `grpc` or `http`; the
/// path goes to the log only, as it is the caller's text).
pub fn unserved(protocol: &'static str) {
    static COUNTER: OnceLock<Counter<u64>> = OnceLock::new();
    let c = COUNTER.get_or_init(|| {
        meter()
            .u64_counter("cred.unserved.requests")
            .with_description("Requests for a method or path this server does not serve (a misrouted gateway)")
            .with_unit("{request}")
            .build()
    });
    c.add(1, &[KeyValue::new("protocol", protocol)]);
}

/// Publishes a cache's counters: `cred.cache.hits`, `cred.cache.misses`,
/// `cred.cache.negative_hits`, `cred.invalidations.received`,
/// `cred.touches.written`, `cred.touches.coalesced`, each with the attribute
/// `cache` = `name`. The callbacks hold the cache for the process' life.
pub fn observe_cache(name: &'static str, cache: Arc<Cache>) {
    type Pick = fn(&CacheStats) -> &AtomicU64;
    let counters: [(&'static str, &'static str, Pick); 6] = [
        ("cred.cache.hits", "Cache lookups that found a fresh entry", |s| &s.hits),
        ("cred.cache.misses", "Cache lookups that went to the store", |s| &s.misses),
        ("cred.cache.negative_hits", "Tokens refused from the negative cache", |s| &s.negative_hits),
        ("cred.invalidations.received", "Invalidations received by push", |s| &s.invalidations),
        ("cred.touches.written", "Session activity writes sent to the store", |s| &s.touches_written),
        ("cred.touches.coalesced", "Session activity coalesced into a recent write", |s| &s.touches_coalesced),
    ];
    let m = meter();
    for (metric, description, pick) in counters {
        let cache = cache.clone();
        m.u64_observable_counter(metric)
            .with_description(description)
            .with_callback(move |o| {
                o.observe(pick(cache.stats()).load(Ordering::Relaxed), &[KeyValue::new("cache", name)])
            })
            .build();
    }
}
