//! Revocation propagation into a process' caches: subscribes to the store's
//! invalidations and applies them. When the subscription is lost, cached
//! answers keep their max age as the safety net. Every time a subscription is
//! established (the first included: the server may have cached answers
//! before it), the caches are flushed, since invalidations may have been
//! missed meanwhile. A second task sweeps stale entries out of the caches.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use crate::cache::{Cache, SWEEP_INTERVAL};
use crate::store::Store;

/// Runs the listener until the runtime ends; reconnects with backoff. Its
/// state shows in [`Cache::push_connected`].
pub fn spawn<S: Store>(store: S, cache: Arc<Cache>) {
    let swept = cache.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(SWEEP_INTERVAL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            swept.sweep();
        }
    });
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(50);
        loop {
            match store.subscribe().await {
                Ok(mut stream) => {
                    cache.flush();
                    tracing::info!("invalidation channel up; caches flushed");
                    cache.set_push_connected(true);
                    backoff = Duration::from_millis(50);
                    while let Some(inv) = stream.next().await {
                        cache.invalidate(inv);
                    }
                    cache.set_push_connected(false);
                    tracing::warn!("invalidation channel lost; cached answers now rely on their max age");
                }
                Err(e) => tracing::warn!(error = %e, "cannot subscribe to invalidations; retrying"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    });
}
