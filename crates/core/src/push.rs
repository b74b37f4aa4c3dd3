//! Revocation propagation into a process' caches: subscribes to the store's
//! invalidations and applies them. Every time a subscription is established
//! (the first included: the server may have cached answers before it), the
//! caches are flushed, since invalidations may have been missed meanwhile.
//! When the subscription is lost (the store's stream ends, which a store
//! also does when its liveness PING goes unanswered), what happens depends
//! on the store: if it still answers, revocations may be going on unseen, so
//! the caches are flushed at once and again on every failed resubscription;
//! if it does not, nothing can be revoked either, and cached answers keep
//! serving for their max age (the cache is what outages are served from). A
//! second task sweeps stale entries out of the caches.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use crate::cache::{Cache, SWEEP_INTERVAL};
use crate::store::{Pushed, Store};

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
                    while let Some(pushed) = stream.next().await {
                        match pushed {
                            Pushed::Invalidation(inv) => cache.invalidate(inv),
                            Pushed::Missed => {
                                cache.flush();
                                tracing::warn!("an invalidation may have been missed; caches flushed");
                            }
                        }
                    }
                    cache.set_push_connected(false);
                    flush_if_store_answers(&store, &cache, "invalidation channel lost").await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot subscribe to invalidations; retrying");
                    flush_if_store_answers(&store, &cache, "still no invalidation channel").await;
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    });
}

/// Without a channel, a store that answers may be revoking unseen: flush.
/// One that does not cannot be revoking: keep serving the cache.
async fn flush_if_store_answers<S: Store>(store: &S, cache: &Cache, what: &str) {
    match tokio::time::timeout(STORE_CHECK, store.ping()).await {
        Ok(Ok(())) => {
            cache.flush();
            tracing::warn!("{what} while the store answers; caches flushed");
        }
        _ => tracing::warn!("{what} and the store does not answer; cached answers serve until their max age"),
    }
}

/// How long the store gets to answer that check.
const STORE_CHECK: Duration = Duration::from_secs(1);
