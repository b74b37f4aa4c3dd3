//! Budgets of failed authentications, per credential id and per peer, so
//! that a guessing attack costs the attacker, not the store.
//!
//! Each budget is a GCRA limiter (`governor`) that only failures draw on:
//! `n` failures per minute, in bursts of up to `n`. Once a key's budget is
//! spent, [`FailureGuard::check`] refuses it until a failure's worth has
//! refilled, and the caller refuses the request before any store command.
//! Successful authentications never draw on a budget and are never slowed.
//! Keys live in bounded maps (`quick_cache`): memory stays bounded however
//! many ids or peers an attacker cycles through; an evicted key starts over
//! with a full budget, which only the per-peer budget then bounds.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use quick_cache::sync::Cache as Lru;
use uuid::Uuid;

use crate::clock::mono_ms;
use crate::error::{InvalidReason, Spent, Throttled};

/// How many failures each key may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardOptions {
    /// Failures per minute (and burst) per credential id; `None`: no limit.
    pub per_credential: Option<NonZeroU32>,
    /// Failures per minute (and burst) per peer IP address; `None`: no limit.
    pub per_peer: Option<NonZeroU32>,
    /// Keys remembered per map (credential ids, peers).
    pub capacity: usize,
}

impl Default for GuardOptions {
    fn default() -> Self {
        GuardOptions { per_credential: NonZeroU32::new(10), per_peer: NonZeroU32::new(100), capacity: 100_000 }
    }
}

/// One key's budget.
struct Slot {
    limiter: DefaultDirectRateLimiter,
    /// `mono_ms` before which this key is refused (0: not refused).
    blocked_until: AtomicU64,
    /// `mono_ms` of the last failure: a minute later the budget is whole
    /// again and the slot is no different from none.
    last_failure: AtomicU64,
}

/// A budget is whole again this long after its last failure (quotas are per
/// minute, bursts as large).
const REFILLED_MS: u64 = 60_000;
/// How often, at most, whole budgets are dropped (on a failure).
const SWEEP_MS: u64 = 10_000;

/// One map of budgets.
struct Budgets<K> {
    slots: Lru<K, Arc<Slot>>,
    quota: Quota,
    /// When whole budgets were last dropped: without it, memory would climb
    /// to the capacity under ordinary churn (every refused dead credential).
    swept_at: AtomicU64,
}

impl<K: Eq + std::hash::Hash + Clone> Budgets<K> {
    fn new(per_minute: NonZeroU32, capacity: usize) -> Budgets<K> {
        Budgets { slots: Lru::new(capacity.max(1)), quota: Quota::per_minute(per_minute), swept_at: AtomicU64::new(0) }
    }

    fn blocked(&self, k: &K, now: u64) -> Option<Duration> {
        let until = self.slots.get(k)?.blocked_until.load(Ordering::Relaxed);
        (until > now).then(|| Duration::from_millis(until - now))
    }

    fn fail(&self, k: &K) {
        let quota = self.quota;
        let slot = self.slots.get_or_insert_with(k, || {
            Ok::<_, std::convert::Infallible>(Arc::new(Slot {
                limiter: RateLimiter::direct(quota),
                blocked_until: AtomicU64::new(0),
                last_failure: AtomicU64::new(0),
            }))
        });
        let Ok(slot) = slot;
        let now = mono_ms();
        slot.last_failure.store(now, Ordering::Relaxed);
        self.sweep(now);
        if let Err(not_until) = slot.limiter.check() {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            // At least 1 ms, so the block is visible at once.
            let until = mono_ms() + (wait.as_millis() as u64).max(1);
            slot.blocked_until.fetch_max(until, Ordering::Relaxed);
        }
    }

    /// Drops whole, unblocked budgets, at most every [`SWEEP_MS`].
    fn sweep(&self, now: u64) {
        let last = self.swept_at.load(Ordering::Relaxed);
        if now.saturating_sub(last) < SWEEP_MS
            || self.swept_at.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            return;
        }
        self.slots.retain(|_, s| {
            now.saturating_sub(s.last_failure.load(Ordering::Relaxed)) < REFILLED_MS
                || s.blocked_until.load(Ordering::Relaxed) > now
        });
    }

    fn len(&self) -> usize {
        self.slots.len()
    }
}

/// The failure budgets of one process.
pub struct FailureGuard {
    credentials: Option<Budgets<Uuid>>,
    peers: Option<Budgets<IpAddr>>,
}

impl FailureGuard {
    /// Budgets as `opts` says.
    pub fn new(opts: GuardOptions) -> FailureGuard {
        FailureGuard {
            credentials: opts.per_credential.map(|n| Budgets::new(n, opts.capacity)),
            peers: opts.per_peer.map(|n| Budgets::new(n, opts.capacity)),
        }
    }

    /// Whether an attempt from `peer` with credential `id` may go on (to the
    /// store); a spent budget refuses it.
    pub fn check(&self, peer: Option<IpAddr>, id: Option<Uuid>) -> Result<(), Throttled> {
        let now = mono_ms();
        if let (Some(b), Some(p)) = (&self.peers, peer)
            && let Some(retry_after) = b.blocked(&p, now)
        {
            return Err(Throttled { spent: Spent::Peer, retry_after });
        }
        if let (Some(b), Some(id)) = (&self.credentials, id)
            && let Some(retry_after) = b.blocked(&id, now)
        {
            return Err(Throttled { spent: Spent::Credential, retry_after });
        }
        Ok(())
    }

    /// Records a failed authentication.
    pub fn failed(&self, peer: Option<IpAddr>, id: Option<Uuid>) {
        if let (Some(b), Some(p)) = (&self.peers, peer) {
            b.fail(&p);
        }
        if let (Some(b), Some(id)) = (&self.credentials, id) {
            b.fail(&id);
        }
    }

    /// Records that credential `id` was refused for `reason`. A dead
    /// credential (revoked, expired, of another environment) is what honest
    /// callers present after a logout or a timeout, many of them behind one
    /// address: it draws on its own id's budget only. An unknown id or a
    /// wrong secret, which is what guessing looks like, draws on the peer's
    /// budget too.
    pub fn refused(&self, peer: Option<IpAddr>, id: Uuid, reason: InvalidReason) {
        let guess = matches!(reason, InvalidReason::Unknown | InvalidReason::Malformed);
        self.failed(if guess { peer } else { None }, Some(id));
    }

    /// Keys tracked (credential ids, peers), for tests and metrics.
    pub fn tracked(&self) -> (usize, usize) {
        (self.credentials.as_ref().map_or(0, Budgets::len), self.peers.as_ref().map_or(0, Budgets::len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(per_credential: u32, per_peer: u32, capacity: usize) -> FailureGuard {
        FailureGuard::new(GuardOptions {
            per_credential: NonZeroU32::new(per_credential),
            per_peer: NonZeroU32::new(per_peer),
            capacity,
        })
    }

    #[test]
    fn a_spent_budget_refuses_until_refilled() {
        let g = guard(3, 0, 100);
        let (id, other) = (Uuid::new_v4(), Uuid::new_v4());
        for _ in 0..3 {
            assert!(g.check(None, Some(id)).is_ok());
            g.failed(None, Some(id));
        }
        assert!(g.check(None, Some(id)).is_ok(), "three failures are the budget");
        g.failed(None, Some(id));
        let t = g.check(None, Some(id)).unwrap_err();
        assert_eq!(t.spent, Spent::Credential);
        // One failure's worth refills in 60 s / 3.
        assert!(t.retry_after > Duration::from_secs(15) && t.retry_after <= Duration::from_secs(20), "{t:?}");
        assert!(g.check(None, Some(other)).is_ok(), "budgets are per id");
        assert!(g.check(Some([127, 0, 0, 1].into()), None).is_ok(), "no peer budget configured");
    }

    #[test]
    fn whole_budgets_are_dropped() {
        let b: Budgets<Uuid> = Budgets::new(NonZeroU32::new(3).unwrap(), 100);
        for _ in 0..10 {
            b.fail(&Uuid::new_v4());
        }
        let spent = Uuid::new_v4();
        for _ in 0..4 {
            b.fail(&spent);
        }
        assert!(b.blocked(&spent, mono_ms()).is_some());
        let now = mono_ms();
        b.sweep(now + SWEEP_MS);
        assert_eq!(b.len(), 11, "nothing is whole within a minute");
        b.sweep(now + 2 * SWEEP_MS + REFILLED_MS);
        assert_eq!(b.len(), 0, "a minute after the last failure every budget is whole");
    }

    #[test]
    fn peers_have_their_own_budget() {
        let g = guard(0, 2, 100);
        let p: IpAddr = [10, 0, 0, 1].into();
        for _ in 0..3 {
            g.failed(Some(p), Some(Uuid::new_v4()));
        }
        assert_eq!(g.check(Some(p), None).unwrap_err().spent, Spent::Peer);
        assert!(g.check(Some([10, 0, 0, 2].into()), None).is_ok());
    }

    #[test]
    fn memory_is_bounded() {
        let g = guard(1, 1, 1000);
        for i in 0..20_000u32 {
            g.failed(Some(IpAddr::from(i.to_be_bytes())), Some(Uuid::new_v4()));
        }
        let (ids, peers) = g.tracked();
        assert!(ids <= 1000 && peers <= 1000, "{ids} ids, {peers} peers tracked");
    }
}
