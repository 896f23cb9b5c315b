//! `sync` mode: one plugin's view of the fleet's buckets and counters in
//! this gateway, answered from at once and reconciled with Redis by the
//! `weir-fleet` thread every `sync_interval` ([`View::collect`] hands it
//! what this gateway did since the last round, [`View::settle`] applies
//! the fleet's values it read back).
//!
//! A bucket is kept as this gateway's share of the fleet's bucket: its
//! *part* of the capacity and the refill, set at each round to its part
//! of the tokens the fleet's bucket holds once this gateway's takes are
//! subtracted. The part is this gateway's part of the fleet's recent
//! takes: Redis keeps the fleet's takes averaged over about ten intervals
//! (each reported take weighs `e^(-age / 10 intervals)`), each gateway the
//! same average of its own, and the ratio is its part, never below `1/n`
//! with `n` gateways seen (`1/n` before it has taken). The parts of the
//! gateways that take add up to 1: gateways that take alike hold `1/n`
//! each, and a gateway that takes alone (a client whose requests all reach
//! it) holds the whole bucket. Between rounds the gateways together take
//! at most what the fleet's bucket held at their last rounds plus one
//! interval's refill, and more while parts are shifting (a gateway that
//! starts taking uses `1/n` beside one that still holds a larger part,
//! for about ten intervals): the overshoot of a burst is at most the
//! capacity plus one interval's refill, and of a shift at most `1/n` of
//! ten intervals' refill. The takes they report are subtracted in Redis,
//! down to a debt of one capacity, so an overshoot is paid back in the
//! next intervals. A key this gateway had not seen starts from a full
//! share of `1/n`. While Redis cannot be reached, the part is `1/n` and
//! the share goes on refilling at `refill / n`: limits divided by the
//! gateways last seen, and the takes are reported once Redis is back.
//!
//! A counter is kept as the fleet's count read at the last round, plus
//! `n` times this gateway's increments since: while the gateways count
//! alike, that is the fleet's count, and while Redis cannot be reached it
//! reaches a limit after `1/n` of it. A counter whose window (TTL) ended
//! starts again from 0.

use std::time::{Duration, Instant};

use dashmap::DashMap;

use super::FleetError;
use crate::plugin::state::{Bucket, limits};

/// An entry unused for this long is dropped from the view (Redis keeps the
/// fleet's value; a later use starts again from a full share, or from 0
/// plus what the next round reads).
const IDLE: Duration = Duration::from_secs(10);
/// An entry used within this many sync intervals is read back at every
/// round even when this gateway took nothing.
const FRESH_ROUNDS: u32 = 2;

#[derive(Debug)]
enum Entry {
    Bucket {
        capacity: u64,
        refill: u64,
        /// This gateway's share of the tokens, as of `last`.
        share: f64,
        last: Instant,
        /// The part of the fleet's bucket that is this gateway's: its
        /// part of the fleet's averaged takes, at least `1/n` (`None`
        /// before its first report with takes: `1/n`).
        part: Option<f64>,
        /// This gateway's reported takes, averaged as Redis averages the
        /// fleet's (`scripts::bucket_sync`), as of `mine_at`.
        mine: f64,
        mine_at: Option<Instant>,
        /// Tokens taken since the last round was sent.
        pending: u64,
        /// Tokens taken and sent in the round under way.
        sent: u64,
        used: Instant,
    },
    Counter {
        /// The fleet's count read at the last round.
        base: i64,
        /// When the counter's window ends, as Redis said.
        expires: Option<Instant>,
        ttl_ms: Option<u64>,
        pending: i64,
        sent: i64,
        used: Instant,
    },
}

impl Entry {
    fn used(&self) -> Instant {
        match self {
            Entry::Bucket { used, .. } | Entry::Counter { used, .. } => *used,
        }
    }

    /// Whether Redis has every take and increment this gateway made (none
    /// waiting to be reported, none in a round under way).
    fn settled(&self) -> bool {
        match self {
            Entry::Bucket { pending, sent, .. } => *pending == 0 && *sent == 0,
            Entry::Counter { pending, sent, .. } => *pending == 0 && *sent == 0,
        }
    }
}

/// What one key's round sends.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Push {
    Bucket {
        capacity: u64,
        refill: u64,
        taken: u64,
    },
    Counter {
        delta: i64,
        ttl_ms: Option<u64>,
    },
}

/// What Redis answered for one key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Read {
    /// The tokens the fleet's bucket holds (negative: a debt), and the
    /// fleet's averaged takes.
    Bucket { tokens: f64, takes: f64 },
    /// The fleet's count, and the milliseconds left in its window.
    Counter(i64, Option<u64>),
}

/// One plugin's `sync` entries.
#[derive(Debug, Default)]
pub struct View {
    map: DashMap<String, Entry>,
}

/// This gateway's share of `capacity` when `part` of the bucket is its
/// (never below one take of `cost`, so a small bucket still admits on
/// every gateway).
fn share_of(capacity: u64, cost: u64, part: f64) -> f64 {
    (capacity as f64 * part).max(cost.min(capacity) as f64)
}

/// The part of the bucket a gateway uses: `1/n` before it knows better,
/// and always while Redis is down (`up` false), so a limit is then
/// divided by the gateways last seen.
fn part_of(part: Option<f64>, n: f64, up: bool) -> f64 {
    match part {
        Some(p) if up => p.max(1.0 / n),
        _ => 1.0 / n,
    }
}

impl View {
    fn room(&self, now: Instant) -> Result<(), FleetError> {
        if self.map.len() >= limits::MAX_KEYS {
            self.map
                .retain(|_, e| !e.settled() || now.saturating_duration_since(e.used()) < IDLE);
            if self.map.len() >= limits::MAX_KEYS {
                return Err(FleetError::Limit(format!(
                    "this plugin already holds {} fleet keys, the most allowed",
                    limits::MAX_KEYS
                )));
            }
        }
        Ok(())
    }

    /// A take of `cost` from this gateway's share of the bucket `key`, one
    /// of `nodes` gateways, with Redis reachable (`up`) or not.
    pub fn take(
        &self,
        key: &str,
        (capacity, refill): (u64, u64),
        cost: u64,
        nodes: u32,
        up: bool,
        now: Instant,
    ) -> Result<Bucket, FleetError> {
        let n = f64::from(nodes.max(1));
        let decide = |e: &mut Entry| -> Result<Bucket, FleetError> {
            let Entry::Bucket {
                capacity: c,
                refill: r,
                share,
                last,
                part,
                pending,
                used,
                ..
            } = e
            else {
                return Err(FleetError::Invalid(format!(
                    "fleet key `{key}` holds a counter, not a token bucket"
                )));
            };
            // The plugin may change a key's bucket; the share follows.
            (*c, *r) = (capacity, refill);
            let part = part_of(*part, n, up);
            let cap_share = share_of(capacity, cost, part);
            let rate_share = refill as f64 * part;
            let elapsed = now.saturating_duration_since(*last).as_secs_f64();
            *share = (*share + elapsed * rate_share).min(cap_share);
            *last = now;
            *used = now;
            let cost_f = cost as f64;
            if *share >= cost_f {
                *share -= cost_f;
                *pending = pending.saturating_add(cost);
                Ok(Bucket {
                    allowed: true,
                    remaining: (*share / part).max(0.0) as u64,
                    retry_after_ms: 0,
                })
            } else {
                let retry_after_ms = if refill == 0 || cost > capacity {
                    u64::MAX
                } else {
                    // Less a nanosecond's worth, so float error does not
                    // round an exact millisecond up.
                    ((cost_f - *share) / rate_share * 1000.0 - 1e-6).ceil() as u64
                };
                Ok(Bucket {
                    allowed: false,
                    remaining: (*share / part).max(0.0) as u64,
                    retry_after_ms,
                })
            }
        };
        if let Some(mut e) = self.map.get_mut(key) {
            return decide(&mut e);
        }
        self.room(now)?;
        let mut entry = self.map.entry(key.to_owned()).or_insert(Entry::Bucket {
            capacity,
            refill,
            share: share_of(capacity, cost, 1.0 / n),
            last: now,
            part: None,
            mine: 0.0,
            mine_at: None,
            pending: 0,
            sent: 0,
            used: now,
        });
        decide(&mut entry)
    }

    pub fn increment(
        &self,
        key: &str,
        delta: i64,
        ttl_ms: Option<u64>,
        nodes: u32,
        now: Instant,
    ) -> Result<i64, FleetError> {
        let n = i64::from(nodes.max(1));
        let add = |e: &mut Entry| -> Result<i64, FleetError> {
            let Entry::Counter {
                base,
                expires,
                ttl_ms: t,
                pending,
                sent,
                used,
            } = e
            else {
                return Err(FleetError::Invalid(format!(
                    "fleet key `{key}` holds a token bucket, not a counter"
                )));
            };
            if expires.is_some_and(|x| x <= now) {
                *base = 0;
                *expires = None;
            }
            *t = ttl_ms;
            *used = now;
            *pending = pending
                .checked_add(delta)
                .ok_or_else(|| FleetError::Invalid("counter overflow".into()))?;
            Ok(base.saturating_add(sent.saturating_add(*pending).saturating_mul(n)))
        };
        if let Some(mut e) = self.map.get_mut(key) {
            return add(&mut e);
        }
        self.room(now)?;
        let mut entry = self.map.entry(key.to_owned()).or_insert(Entry::Counter {
            base: 0,
            expires: None,
            ttl_ms,
            pending: 0,
            sent: 0,
            used: now,
        });
        add(&mut entry)
    }

    /// What a round sends for this view: every key with takes to report or
    /// used in the last `FRESH_ROUNDS` intervals (their pending amounts
    /// move to `sent`). Entries idle for [`IDLE`] with nothing to report
    /// are dropped here.
    pub(super) fn collect(&self, interval: Duration, now: Instant) -> Vec<(String, Push)> {
        let fresh = interval * FRESH_ROUNDS;
        let mut out = Vec::new();
        self.map.retain(|key, e| {
            let idle = now.saturating_duration_since(e.used());
            if e.settled() && idle >= IDLE {
                return false;
            }
            let push = match e {
                Entry::Bucket {
                    capacity,
                    refill,
                    pending,
                    sent,
                    ..
                } => {
                    if *pending == 0 && idle >= fresh {
                        return true;
                    }
                    *sent = sent.saturating_add(std::mem::take(pending));
                    Push::Bucket {
                        capacity: *capacity,
                        refill: *refill,
                        taken: *sent,
                    }
                }
                Entry::Counter {
                    ttl_ms,
                    pending,
                    sent,
                    ..
                } => {
                    if *pending == 0 && idle >= fresh {
                        return true;
                    }
                    *sent = sent.saturating_add(std::mem::take(pending));
                    Push::Counter {
                        delta: *sent,
                        ttl_ms: *ttl_ms,
                    }
                }
            };
            out.push((key.clone(), push));
            true
        });
        out
    }

    /// Applies what Redis read back for `key` after this gateway's report,
    /// with `nodes` gateways seen.
    /// `average` is the time constant of the fleet's averaged takes.
    pub(super) fn settle(
        &self,
        key: &str,
        read: Read,
        (nodes, average): (u32, Duration),
        now: Instant,
    ) {
        let Some(mut e) = self.map.get_mut(key) else {
            return;
        };
        let n = f64::from(nodes.max(1));
        match (&mut *e, read) {
            (
                Entry::Bucket {
                    capacity,
                    share,
                    last,
                    part,
                    mine,
                    mine_at,
                    pending,
                    sent,
                    ..
                },
                Read::Bucket { tokens, takes },
            ) => {
                // This gateway's averaged takes, with the same time
                // constant as the fleet's in Redis: their ratio is its
                // part of the fleet's takes.
                if let Some(at) = *mine_at {
                    let age = now.saturating_duration_since(at).as_secs_f64();
                    *mine *= (-age / average.as_secs_f64()).exp();
                }
                *mine += *sent as f64;
                *mine_at = Some(now);
                // Nobody took lately: nothing learnt, the part stays.
                if takes > 0.0 {
                    *part = Some((*mine / takes).clamp(1.0 / n, 1.0));
                }
                *sent = 0;
                let part = part_of(*part, n, true);
                // The takes since the round was sent are this gateway's
                // own, not yet in what Redis read.
                *share = (tokens * part).min(*capacity as f64 * part) - *pending as f64;
                *last = now;
            }
            (
                Entry::Counter {
                    base,
                    expires,
                    sent,
                    ..
                },
                Read::Counter(count, left_ms),
            ) => {
                *sent = 0;
                *base = count;
                *expires = left_ms.map(|ms| now + Duration::from_millis(ms));
            }
            // The key changed kind between the round and its answer: the
            // next round reads it again.
            _ => {}
        }
    }

    /// A round that failed: what it sent for `key` is reported again by
    /// the next one.
    pub(super) fn unsend(&self, key: &str) {
        if let Some(mut e) = self.map.get_mut(key) {
            match &mut *e {
                Entry::Bucket { pending, sent, .. } => {
                    *pending = pending.saturating_add(std::mem::take(sent));
                }
                Entry::Counter { pending, sent, .. } => {
                    *pending = pending.saturating_add(std::mem::take(sent));
                }
            }
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }
}
