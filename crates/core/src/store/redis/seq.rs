//! Sequence numbers on published invalidations, so a subscriber can tell
//! that it missed one while its connection looked healthy (a message lost
//! between cluster nodes, a middlebox that drops a frame).
//!
//! Every process that revokes is a publisher with a random id; each message
//! its scripts publish carries `@<publisher>:<n>`, numbered from 1 (a script
//! that changed nothing still publishes its number, as `-@…`). Every second
//! a publisher announces `h@<publisher>:<n>`: every number up to `n` has been
//! answered by Redis (or given up on), so its message was published if it
//! ever will be. A subscriber that was told `n` but has not seen every
//! number up to it [`GAP_GRACE`] later, or that stops hearing from a known
//! publisher for [`SILENT_AFTER`], may have lost something: the caches are
//! flushed and counting goes on from there (the subscription stays, so a
//! steady stream of revocations cannot keep it resubscribing). Messages of
//! one publisher may arrive out of order on a cluster (its scripts run on
//! several nodes), hence the grace. A publisher's first announcement on a
//! subscription is its baseline: numbers up to it that were not seen may
//! predate the subscription or be lost, so that also flushes (cheap: the
//! caches were flushed on subscribing a moment before). Pure bookkeeping.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::store::Invalidation;

/// How often a publisher announces how far its numbers are complete.
pub(super) const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// How long an announced number may be missing (out-of-order delivery).
pub(super) const GAP_GRACE: Duration = Duration::from_millis(500);
/// Silence after which a known publisher may have lost messages unseen (it
/// died, or its announcements are lost too).
pub(super) const SILENT_AFTER: Duration = Duration::from_secs(3);

/// The numbering of one process' published messages.
pub(super) struct Publisher {
    /// Random, per process.
    id: String,
    state: Mutex<Numbers>,
    /// Whether anything was ever numbered (announcements start then).
    started: AtomicBool,
}

#[derive(Default)]
struct Numbers {
    /// Last number handed out.
    last: u64,
    /// Handed out, not yet answered.
    in_flight: BTreeSet<u64>,
}

/// A number in flight; answered (or given up on) when dropped.
pub(super) struct Ticket<'a> {
    publisher: &'a Publisher,
    n: u64,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.publisher.state.lock().unwrap_or_else(|p| p.into_inner()).in_flight.remove(&self.n);
    }
}

impl Publisher {
    pub(super) fn new() -> Publisher {
        let mut b = [0u8; 8];
        crate::rng::fill(&mut b);
        let id = base62::encode(u64::from_le_bytes(b));
        Publisher { id, state: Mutex::new(Numbers::default()), started: AtomicBool::new(false) }
    }

    /// True the first time only.
    pub(super) fn first_use(&self) -> bool {
        !self.started.swap(true, Ordering::Relaxed)
    }

    /// The next message to publish for `inv`, and its ticket: keep it until
    /// the script that publishes it has answered.
    pub(super) fn message(&self, inv: Invalidation) -> (String, Ticket<'_>) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.last += 1;
        let n = s.last;
        s.in_flight.insert(n);
        (format!("{}@{}:{n}", inv.encode(), self.id), Ticket { publisher: self, n })
    }

    /// The announcement, once anything was numbered: every number up to the
    /// one it carries has been answered.
    pub(super) fn heartbeat(&self) -> Option<String> {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let done = s.in_flight.first().map_or(s.last, |first| first - 1);
        (s.last > 0).then(|| format!("h@{}:{done}", self.id))
    }
}

/// What a received message means.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Heard {
    Invalidate(Invalidation),
    /// Something may have been missed (the reason): flush the caches.
    Missed(String),
    /// A number, an announcement, or an unnumbered message of no use.
    Nothing,
}

/// A subscription's view of every publisher's numbers.
#[derive(Default)]
pub(super) struct GapDetector {
    publishers: HashMap<String, Seen>,
}

struct Seen {
    /// Every number up to this one was received, or forgiven after a flush;
    /// `None` until the publisher's first announcement.
    contiguous: Option<u64>,
    /// Received beyond `contiguous`.
    ahead: BTreeSet<u64>,
    /// The highest announced number, and when it was first owed.
    owed: Option<(u64, Instant)>,
    heard: Instant,
}

impl Seen {
    /// Counts `ahead` into `contiguous` as far as it runs without a hole.
    fn close_up(&mut self) {
        if let Some(c) = &mut self.contiguous {
            self.ahead.retain(|&n| n > *c);
            while self.ahead.remove(&(*c + 1)) {
                *c += 1;
            }
            if self.owed.is_some_and(|(o, _)| o <= *c) {
                self.owed = None;
            }
        }
    }
}

impl GapDetector {
    /// Takes one message's text.
    pub(super) fn on_message(&mut self, text: &str, now: Instant) -> Heard {
        let Some((body, tag)) = text.rsplit_once('@') else {
            // Unnumbered: published by a version before numbering.
            return Invalidation::decode(text).map_or_else(|| malformed(text), Heard::Invalidate);
        };
        let Some((publisher, n)) = tag.split_once(':').and_then(|(p, n)| Some((p, n.parse::<u64>().ok()?))) else {
            return malformed(text);
        };
        let seen = self.publishers.entry(publisher.to_string()).or_insert_with(|| Seen {
            contiguous: None,
            ahead: BTreeSet::new(),
            owed: None,
            heard: now,
        });
        seen.heard = now;
        let mut missed = None;
        if body == "h" {
            match seen.contiguous {
                // First announcement: had this subscription seen every
                // number up to it? If not, some were published before it
                // (the flush on subscribing covered those) or lost after it:
                // no way to tell, so flush (cheap this early) and start here.
                None => {
                    if n > 0 && seen.ahead.range(1..=n).count() as u64 != n {
                        missed = Some(format!("publisher {publisher}: first heard at {n}, numbers unaccounted for"));
                    }
                    seen.contiguous = Some(n);
                }
                Some(c) if n > c && seen.owed.is_none_or(|(o, _)| o < n) => {
                    seen.owed = Some((n, seen.owed.map_or(now, |(_, t)| t)));
                }
                Some(_) => {}
            }
        } else {
            seen.ahead.insert(n);
        }
        seen.close_up();
        if let Some(why) = missed.or_else(|| self.check(now)) {
            return Heard::Missed(why);
        }
        if body == "h" || body == "-" {
            return Heard::Nothing;
        }
        Invalidation::decode(body).map_or_else(|| malformed(text), Heard::Invalidate)
    }

    /// A reason to flush if a number is owed past the grace or a publisher
    /// fell silent; the detector then starts over from what it was told.
    pub(super) fn check(&mut self, now: Instant) -> Option<String> {
        let mut why = None;
        self.publishers.retain(|p, s| {
            if now.duration_since(s.heard) >= SILENT_AFTER {
                why = Some(format!("publisher {p}: nothing heard for {SILENT_AFTER:?}"));
                return false;
            }
            if let (Some((n, since)), Some(c)) = (s.owed, s.contiguous)
                && now.duration_since(since) >= GAP_GRACE
            {
                why = Some(format!("publisher {p}: message {} of {n} never arrived", c + 1));
                s.contiguous = Some(n);
                s.close_up();
            }
            true
        });
        why
    }
}

fn malformed(text: &str) -> Heard {
    tracing::warn!(message = %text, "ignoring a malformed invalidation");
    Heard::Nothing
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn inv() -> Invalidation {
        Invalidation::Client(Uuid::from_u128(7))
    }

    #[test]
    fn numbers_and_heartbeats_follow_answers() {
        let p = Publisher::new();
        assert_eq!(p.heartbeat(), None, "nothing numbered, nothing announced");
        let (m1, t1) = p.message(inv());
        let (m2, t2) = p.message(inv());
        assert!(m1.starts_with(&format!("{}@", inv().encode())) && m1.ends_with(":1") && m2.ends_with(":2"));
        drop(t2);
        assert!(p.heartbeat().unwrap().ends_with(":0"), "1 is still in flight");
        drop(t1);
        assert!(p.heartbeat().unwrap().ends_with(":2"));
    }

    fn missed(h: Heard) -> bool {
        matches!(h, Heard::Missed(_))
    }

    #[test]
    fn a_lost_message_is_missed_once_the_grace_has_passed_then_forgiven() {
        let p = Publisher::new();
        let t0 = Instant::now();
        let mut d = GapDetector::default();
        assert_eq!(d.on_message(&format!("h@{}:0", p.id), t0), Heard::Nothing);
        let (m1, _) = p.message(inv());
        let (_lost, _) = p.message(inv());
        let (m3, _) = p.message(inv());
        assert_eq!(d.on_message(&m1, t0), Heard::Invalidate(inv()));
        assert_eq!(d.on_message(&m3, t0), Heard::Invalidate(inv()), "out of order is fine");
        let hb = format!("h@{}:3", p.id);
        assert_eq!(d.on_message(&hb, t0 + Duration::from_millis(10)), Heard::Nothing);
        assert_eq!(d.check(t0 + Duration::from_millis(400)), None, "within the grace");
        assert!(d.check(t0 + Duration::from_millis(600)).is_some(), "2 never came");
        assert_eq!(d.check(t0 + Duration::from_millis(700)), None, "flushed once, then forgiven");
        let (m4, _) = p.message(inv());
        assert_eq!(d.on_message(&m4, t0 + Duration::from_millis(800)), Heard::Invalidate(inv()));
        assert_eq!(d.on_message(&format!("h@{}:4", p.id), t0 + Duration::from_millis(900)), Heard::Nothing);
        assert_eq!(d.check(t0 + Duration::from_secs(2)), None);
    }

    #[test]
    fn late_arrivals_within_the_grace_close_the_gap() {
        let p = Publisher::new();
        let t0 = Instant::now();
        let mut d = GapDetector::default();
        d.on_message(&format!("h@{}:0", p.id), t0);
        let msgs: Vec<String> = (0..3).map(|_| p.message(inv()).0).collect();
        d.on_message(&msgs[0], t0);
        d.on_message(&format!("h@{}:3", p.id), t0);
        d.on_message(&msgs[2], t0);
        d.on_message(&msgs[1], t0 + Duration::from_millis(300));
        assert_eq!(d.check(t0 + Duration::from_secs(2)), None);
    }

    #[test]
    fn a_first_announcement_with_numbers_unaccounted_for_is_missed() {
        let p = Publisher::new();
        let t0 = Instant::now();
        let mut d = GapDetector::default();
        let _before_or_lost = p.message(inv());
        let (m2, _) = p.message(inv());
        assert_eq!(d.on_message(&m2, t0), Heard::Invalidate(inv()));
        assert!(missed(d.on_message(&format!("h@{}:2", p.id), t0)));
        assert_eq!(d.check(t0 + GAP_GRACE * 2), None, "once");
        // Every number seen from 1: a new publisher, nothing missed.
        let q = Publisher::new();
        let (n1, _) = q.message(inv());
        d.on_message(&n1, t0);
        assert_eq!(d.on_message(&format!("h@{}:1", q.id), t0), Heard::Nothing);
    }

    #[test]
    fn a_silent_publisher_is_missed_and_unnumbered_messages_still_apply() {
        let t0 = Instant::now();
        let mut d = GapDetector::default();
        assert_eq!(d.on_message(&inv().encode(), t0), Heard::Invalidate(inv()));
        d.on_message("h@abc:0", t0);
        assert_eq!(d.check(t0 + Duration::from_secs(2)), None);
        assert!(d.check(t0 + SILENT_AFTER).is_some());
        assert_eq!(d.check(t0 + SILENT_AFTER), None, "forgotten");
        assert_eq!(d.on_message("-@abc:1", t0), Heard::Nothing);
        assert_eq!(d.on_message("garbage@abc:x", t0), Heard::Nothing);
    }
}
