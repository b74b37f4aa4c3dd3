//! Budgets of failed authentications, per credential and per peer, so that
//! a guessing attack costs the attacker, never the store or the victim.
//!
//! Each budget is a GCRA limiter (`governor`) that only refusals read from
//! the store draw on: `n` per minute, in bursts of up to `n`. Once a key's
//! budget is spent, [`FailureGuard::check`] refuses it until a failure's
//! worth has refilled, before any store command. Successful authentications
//! never draw on a budget and are never slowed.
//!
//! What the store said of a refused credential is remembered with its
//! budget ([`Known`]): the stored secret's hash, or that it is dead (a
//! credential never comes back to life, and its hash never changes). So the
//! real secret of a credential under attack is never refused by a budget
//! others spent, and a wrong secret or a dead credential presented again is
//! refused from memory, at no cost to the store and drawing on no budget:
//! a live id, a revoked one and an unknown one are throttled alike.
//! Where peers have budgets, the secret of every credential the store last
//! accepted is remembered too (its *known-good* hash), so a credential this
//! process has verified is never refused by a peer budget others spent on a
//! shared address, even once its cache entry has aged out or been flushed.
//! Credentials are keyed by their whole identity (kind, environment, route,
//! id), so a forged token with another route or kind teaches nothing about
//! the real one. Peers are IP addresses, IPv6 grouped by /64 (one host's
//! share). Keys live in bounded maps (`quick_cache`): memory stays bounded
//! however many ids or peers an attacker cycles through.

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
use crate::model::{Environment, SecretHash};
use crate::token::{Token, TokenKind};

/// A credential's whole identity: everything of a token but its secret.
pub type Identity = (TokenKind, Environment, Uuid, Uuid);

/// The identity of `token`.
pub fn identity(token: &Token) -> Identity {
    (token.kind, token.env, token.route, token.id)
}

/// What a store read told of a refused credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// It exists, with this stored hash (the presented secret was wrong).
    Secret(SecretHash),
    /// Refused whatever the secret, for good, for this reason.
    Dead(InvalidReason),
}

impl Known {
    /// What a refusal for `reason` shows, `stored` the stored hash if the
    /// record was read: an unknown secret for a record that exists is a
    /// wrong one; anything else is final.
    pub fn of(reason: InvalidReason, stored: Option<SecretHash>) -> Known {
        match (reason, stored) {
            (InvalidReason::Unknown, Some(h)) => Known::Secret(h),
            (r, _) => Known::Dead(r),
        }
    }
}

/// The key of a peer's budget: its address, IPv6 cut to its /64 (what one
/// host or customer gets) and IPv4-mapped IPv6 as IPv4.
pub fn peer_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

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
    /// What the store said of this credential (credential budgets only):
    /// a death replaces a stored hash (the real secret, refused once it was
    /// revoked, is refused from memory after that), never the other way.
    known: std::sync::Mutex<Option<Known>>,
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

    /// What is remembered of `k`; a use keeps the memory as long as a
    /// failure would.
    fn known(&self, k: &K, now: u64) -> Option<Known> {
        let slot = self.slots.get(k)?;
        let known = (*slot.known.lock().unwrap_or_else(|p| p.into_inner()))?;
        slot.last_failure.fetch_max(now, Ordering::Relaxed);
        Some(known)
    }

    fn blocked(&self, k: &K, now: u64) -> Option<Duration> {
        let until = self.slots.get(k)?.blocked_until.load(Ordering::Relaxed);
        (until > now).then(|| Duration::from_millis(until - now))
    }

    /// Draws a failure from `k`'s budget, remembering `known` of it.
    fn fail(&self, k: &K, known: Option<Known>) {
        let quota = self.quota;
        let slot = self.slots.get_or_insert_with(k, || {
            Ok::<_, std::convert::Infallible>(Arc::new(Slot {
                limiter: RateLimiter::direct(quota),
                blocked_until: AtomicU64::new(0),
                last_failure: AtomicU64::new(0),
                known: std::sync::Mutex::new(None),
            }))
        });
        let Ok(slot) = slot;
        if let Some(k) = known {
            let mut was = slot.known.lock().unwrap_or_else(|p| p.into_inner());
            if !matches!(*was, Some(Known::Dead(_))) {
                *was = Some(k);
            }
        }
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
    credentials: Option<Budgets<Identity>>,
    peers: Option<Budgets<IpAddr>>,
    /// The hash the store last accepted per credential, kept only with peer
    /// budgets (what it lets past); bounded like the budgets.
    good: Option<Lru<Identity, SecretHash>>,
}

/// What [`FailureGuard::check`] decides before a store read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go on: cache or store.
    Go,
    /// Refused from memory, with this reason; no store read, no budget drawn.
    Refuse(InvalidReason),
}

impl FailureGuard {
    /// Budgets as `opts` says.
    pub fn new(opts: GuardOptions) -> FailureGuard {
        FailureGuard {
            credentials: opts.per_credential.map(|n| Budgets::new(n, opts.capacity)),
            peers: opts.per_peer.map(|n| Budgets::new(n, opts.capacity)),
            good: opts.per_peer.map(|_| Lru::new(opts.capacity.max(1))),
        }
    }

    /// Whether an attempt from `peer` with credential `who` and a secret
    /// hashing to `presented` may go on to the store. The stored secret of
    /// a credential refused before, and the secret the store last accepted,
    /// always go on, whatever budget others spent; a secret known wrong, or
    /// a credential known dead, is refused from memory; anything else is
    /// refused while its credential's or its peer's budget is spent.
    pub fn check(&self, peer: Option<IpAddr>, who: &Identity, presented: &SecretHash) -> Result<Verdict, Throttled> {
        let now = mono_ms();
        if let Some(b) = &self.credentials {
            match b.known(who, now) {
                Some(Known::Secret(h)) if h.matches(presented) => return Ok(Verdict::Go),
                Some(Known::Secret(_)) => return Ok(Verdict::Refuse(InvalidReason::Unknown)),
                Some(Known::Dead(r)) => return Ok(Verdict::Refuse(r)),
                None => {}
            }
        }
        if let Some(good) = &self.good
            && good.get(who).is_some_and(|h| h.matches(presented))
        {
            return Ok(Verdict::Go);
        }
        self.check_peer(peer)?;
        if let Some(b) = &self.credentials
            && let Some(retry_after) = b.blocked(who, now)
        {
            return Err(Throttled { spent: Spent::Credential, retry_after });
        }
        Ok(Verdict::Go)
    }

    /// Whether `peer` may make an attempt that costs a check (an operator
    /// key that failed to open).
    pub fn check_peer(&self, peer: Option<IpAddr>) -> Result<(), Throttled> {
        if let (Some(b), Some(p)) = (&self.peers, peer)
            && let Some(retry_after) = b.blocked(&peer_key(p), mono_ms())
        {
            return Err(Throttled { spent: Spent::Peer, retry_after });
        }
        Ok(())
    }

    /// Records a failed check that read no store (an operator key that did
    /// not open): the peer's budget only.
    pub fn failed(&self, peer: Option<IpAddr>) {
        if let (Some(b), Some(p)) = (&self.peers, peer) {
            b.fail(&peer_key(p), None);
        }
    }

    /// Records that the store refused credential `who` for `reason`, having
    /// read `stored` as its hash (if the record was there). Every such
    /// refusal draws alike on the credential's and the peer's budgets,
    /// whatever the reason (a dead credential and a guess look the same
    /// from outside); what was learned answers the next attempts.
    pub fn refused(&self, peer: Option<IpAddr>, who: &Identity, reason: InvalidReason, stored: Option<SecretHash>) {
        if let Some(b) = &self.credentials {
            b.fail(who, Some(Known::of(reason, stored)));
        }
        self.failed(peer);
    }

    /// Records that the store accepted credential `who` with the secret
    /// hashing to `presented`: from now on that secret goes on to the
    /// store from any address (a store read still decides).
    pub fn accepted(&self, who: &Identity, presented: &SecretHash) {
        if let Some(good) = &self.good {
            good.insert(*who, *presented);
        }
    }

    /// Keys tracked (credentials, peers), for tests and metrics.
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

    fn who() -> Identity {
        (TokenKind::ApiKey, Environment::Production, Uuid::new_v4(), Uuid::new_v4())
    }

    const REAL: SecretHash = SecretHash([1; 16]);
    const WRONG: SecretHash = SecretHash([2; 16]);

    #[test]
    fn a_spent_budget_refuses_what_is_not_known_until_refilled() {
        let g = guard(3, 0, 100);
        let (id, other) = (who(), who());
        // Refusals whose record was not read (absent): each new identity.
        for _ in 0..4 {
            assert_eq!(g.check(None, &other, &WRONG), Ok(Verdict::Go));
            g.credentials.as_ref().unwrap().fail(&other, None);
        }
        let t = g.check(None, &other, &WRONG).unwrap_err();
        assert_eq!(t.spent, Spent::Credential);
        // One failure's worth refills in 60 s / 3.
        assert!(t.retry_after > Duration::from_secs(15) && t.retry_after <= Duration::from_secs(20), "{t:?}");
        assert_eq!(g.check(None, &id, &WRONG), Ok(Verdict::Go), "budgets are per credential");
        assert!(g.check_peer(Some([127, 0, 0, 1].into())).is_ok(), "no peer budget configured");
    }

    #[test]
    fn the_real_secret_is_never_refused_by_a_budget_others_spent() {
        let g = guard(3, 2, 100);
        let (id, attacker, victim): (Identity, IpAddr, IpAddr) = (who(), [10, 0, 0, 1].into(), [10, 0, 0, 1].into());
        // The attacker's forged tokens read the record once...
        assert_eq!(g.check(Some(attacker), &id, &WRONG), Ok(Verdict::Go));
        g.refused(Some(attacker), &id, InvalidReason::Unknown, Some(REAL));
        for _ in 0..10 {
            // ...then are refused from memory, drawing nothing.
            assert_eq!(g.check(Some(attacker), &id, &WRONG), Ok(Verdict::Refuse(InvalidReason::Unknown)));
        }
        // Spend the shared address' peer budget with other ids.
        for _ in 0..5 {
            g.refused(Some(attacker), &who(), InvalidReason::Unknown, None);
        }
        assert_eq!(g.check(Some(attacker), &who(), &WRONG).unwrap_err().spent, Spent::Peer);
        // The victim, behind the same address, with the real secret: goes on.
        assert_eq!(g.check(Some(victim), &id, &REAL), Ok(Verdict::Go));
    }

    #[test]
    fn a_secret_the_store_accepted_is_never_refused_by_a_spent_peer_budget() {
        let g = guard(3, 2, 100);
        let (id, shared): (Identity, IpAddr) = (who(), [10, 0, 0, 1].into());
        g.accepted(&id, &REAL);
        for _ in 0..5 {
            g.refused(Some(shared), &who(), InvalidReason::Unknown, None);
        }
        assert_eq!(g.check(Some(shared), &who(), &REAL).unwrap_err().spent, Spent::Peer);
        assert_eq!(g.check(Some(shared), &id, &REAL), Ok(Verdict::Go), "the accepted secret goes on");
        assert_eq!(g.check(Some(shared), &id, &WRONG).unwrap_err().spent, Spent::Peer, "another secret does not");
        // A forged secret teaches the stored hash; once the store says the
        // credential is dead, memory refuses it whatever was learned before.
        g.refused(Some(shared), &id, InvalidReason::Unknown, Some(REAL));
        assert_eq!(g.check(Some(shared), &id, &REAL), Ok(Verdict::Go));
        g.refused(Some(shared), &id, InvalidReason::Revoked, Some(REAL));
        assert_eq!(g.check(Some(shared), &id, &REAL), Ok(Verdict::Refuse(InvalidReason::Revoked)));
        g.refused(Some(shared), &id, InvalidReason::Unknown, Some(REAL));
        assert_eq!(g.check(Some(shared), &id, &WRONG), Ok(Verdict::Refuse(InvalidReason::Revoked)), "dead stays dead");
        // Without peer budgets nothing is remembered (nothing to let past).
        let no_peers = guard(3, 0, 100);
        no_peers.accepted(&id, &REAL);
        assert!(no_peers.good.is_none());
    }

    #[test]
    fn a_dead_credential_is_refused_from_memory_whatever_the_secret() {
        let g = guard(3, 100, 100);
        let id = who();
        g.refused(None, &id, InvalidReason::Revoked, None);
        assert_eq!(g.check(None, &id, &REAL), Ok(Verdict::Refuse(InvalidReason::Revoked)));
        assert_eq!(g.check(None, &id, &WRONG), Ok(Verdict::Refuse(InvalidReason::Revoked)));
        // Another identity with the same id (another route) knows nothing.
        let (k, e, _, i) = id;
        assert_eq!(g.check(None, &(k, e, Uuid::new_v4(), i), &REAL), Ok(Verdict::Go));
    }

    #[test]
    fn whole_budgets_are_dropped() {
        let b: Budgets<Uuid> = Budgets::new(NonZeroU32::new(3).unwrap(), 100);
        for _ in 0..10 {
            b.fail(&Uuid::new_v4(), None);
        }
        let spent = Uuid::new_v4();
        for _ in 0..4 {
            b.fail(&spent, None);
        }
        assert!(b.blocked(&spent, mono_ms()).is_some());
        let now = mono_ms();
        b.sweep(now + SWEEP_MS);
        assert_eq!(b.len(), 11, "nothing is whole within a minute");
        b.sweep(now + 2 * SWEEP_MS + REFILLED_MS);
        assert_eq!(b.len(), 0, "a minute after the last failure every budget is whole");
    }

    #[test]
    fn peers_have_their_own_budget_and_ipv6_is_grouped_by_64() {
        let g = guard(0, 2, 100);
        let p: IpAddr = [10, 0, 0, 1].into();
        for _ in 0..3 {
            g.failed(Some(p));
        }
        assert_eq!(g.check_peer(Some(p)).unwrap_err().spent, Spent::Peer);
        assert!(g.check_peer(Some([10, 0, 0, 2].into())).is_ok());
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap();
        for _ in 0..3 {
            g.failed(Some(v6("2001:db8:1:2::1")));
        }
        assert!(g.check_peer(Some(v6("2001:db8:1:2:ffff::9"))).is_err(), "same /64");
        assert!(g.check_peer(Some(v6("2001:db8:1:3::1"))).is_ok(), "another /64");
        assert_eq!(peer_key(v6("::ffff:10.0.0.1")), p, "IPv4-mapped is IPv4");
    }

    #[test]
    fn memory_is_bounded() {
        let g = guard(1, 1, 1000);
        for i in 0..20_000u32 {
            g.refused(Some(IpAddr::from(i.to_be_bytes())), &who(), InvalidReason::Unknown, None);
        }
        let (ids, peers) = g.tracked();
        assert!(ids <= 1000 && peers <= 1000, "{ids} ids, {peers} peers tracked");
    }
}
