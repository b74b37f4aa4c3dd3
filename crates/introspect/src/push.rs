//! Revocation propagation: subscribes to the store's invalidations and
//! applies them to the caches. When the subscription is lost, cached answers
//! keep their max age as the safety net; when it comes back, every cache is
//! flushed, since invalidations may have been missed meanwhile.

use std::time::Duration;

use cred_core::store::Store;
use futures::StreamExt;

use crate::verifier::Verifier;

/// Runs the listener until the process ends; reconnects with backoff. Its
/// state shows in `Cache::push_connected`.
pub fn spawn<S: Store>(verifier: Verifier<S>) {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(50);
        let mut ever = false;
        loop {
            match verifier.store().subscribe().await {
                Ok(mut stream) => {
                    if ever {
                        verifier.cache().flush();
                        tracing::info!("invalidation channel back; caches flushed");
                    }
                    ever = true;
                    verifier.cache().set_push_connected(true);
                    backoff = Duration::from_millis(50);
                    while let Some(inv) = stream.next().await {
                        verifier.cache().invalidate(inv);
                    }
                    verifier.cache().set_push_connected(false);
                    tracing::warn!("invalidation channel lost; cached answers now rely on their max age");
                }
                Err(e) => tracing::warn!(error = %e, "cannot subscribe to invalidations; retrying"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    });
}
