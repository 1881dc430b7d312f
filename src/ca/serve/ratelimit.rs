//! Request rate limits for `ca serve`: a token bucket per key (an ACME account, say) and one
//! global bucket, in bounded memory, shared by every task of the server.
//!
//! A bucket holds up to `burst` tokens and gains `per_second` tokens a second; a request takes
//! one token from its key's bucket and one from the global bucket, or, if either is empty, none
//! (the refusal costs nothing) and is told how long until both have one
//! ([`RateLimiter::check`]): the server answers `rateLimited` (RFC 8555 §6.7) with that
//! `Retry-After`.
//!
//! At most `max_keys` keys are tracked; when a new key arrives and the map is full, the key
//! used least recently is forgotten (its bucket would come back full). Keys are the server's own
//! short identifiers (account ids), never unbounded client input. Time is a parameter
//! ([`Instant`]), so the limiter is deterministic in tests.
//!
//! The limits are per instance: several `ca serve` instances behind a load balancer each apply
//! them (a client may get up to N times the rate from N instances).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A bucket's size and refill rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limit {
    /// Tokens added per second (> 0).
    pub per_second: f64,
    /// The bucket's capacity: how many requests may come at once after a quiet spell (≥ 1).
    pub burst: u32,
}

impl Limit {
    /// A limit of `per_second` requests a second on average with bursts of `burst`. A rate that
    /// is not a positive finite number becomes one request per hour; a burst of 0 becomes 1.
    pub fn new(per_second: f64, burst: u32) -> Limit {
        let per_second = if per_second.is_finite() && per_second > 0.0 {
            per_second
        } else {
            1.0 / 3600.0
        };
        Limit {
            per_second,
            burst: burst.max(1),
        }
    }
}

/// The default limit per account: 20 requests a second, bursts of 100 (a client running many
/// orders at once stays well inside it).
pub const DEFAULT_PER_KEY: Limit = Limit {
    per_second: 20.0,
    burst: 100,
};

/// The default limit of one instance as a whole: 500 requests a second, bursts of 2000.
pub const DEFAULT_GLOBAL: Limit = Limit {
    per_second: 500.0,
    burst: 2000,
};

/// The default number of keys tracked at once.
pub const DEFAULT_MAX_KEYS: usize = 10_000;

/// One token bucket.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn full(limit: Limit, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(limit.burst),
            updated: now,
        }
    }

    /// The bucket refilled up to `now` (time never runs backwards for it).
    fn refilled(self, limit: Limit, now: Instant) -> Bucket {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        Bucket {
            tokens: (self.tokens + elapsed * limit.per_second).min(f64::from(limit.burst)),
            updated: self.updated.max(now),
        }
    }

    /// How long until the bucket holds a whole token (zero if it does).
    fn wait(&self, limit: Limit) -> Duration {
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::try_from_secs_f64((1.0 - self.tokens) / limit.per_second).unwrap_or(Duration::MAX)
        }
    }
}

struct Tracked {
    bucket: Bucket,
    /// When the key was last used, as a sequence number (the key of `State::recency`).
    used: u64,
}

struct State {
    global: Bucket,
    keys: HashMap<String, Tracked>,
    /// Keys by last use, oldest first.
    recency: BTreeMap<u64, String>,
    next_use: u64,
}

/// Per-key and global token buckets (see the module docs). Thread-safe: share it in an `Arc`.
pub struct RateLimiter {
    per_key: Limit,
    global: Limit,
    max_keys: usize,
    state: Mutex<State>,
}

impl RateLimiter {
    /// A limiter with `per_key` and `global` limits tracking at most `max_keys` keys (at least
    /// one); every bucket starts full at `now`.
    pub fn new(per_key: Limit, global: Limit, max_keys: usize, now: Instant) -> RateLimiter {
        let per_key = Limit::new(per_key.per_second, per_key.burst);
        let global = Limit::new(global.per_second, global.burst);
        RateLimiter {
            per_key,
            global,
            max_keys: max_keys.max(1),
            state: Mutex::new(State {
                global: Bucket::full(global, now),
                keys: HashMap::new(),
                recency: BTreeMap::new(),
                next_use: 0,
            }),
        }
    }

    /// Takes a token for a request by `key` at `now` from `key`'s bucket and the global one.
    ///
    /// # Errors
    /// `Err(retry_after)` if either bucket is empty: how long until both hold a token. Nothing
    /// is taken then.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let state = &mut *state;
        let global = state.global.refilled(self.global, now);
        let key_bucket = match state.keys.get(key) {
            Some(tracked) => tracked.bucket.refilled(self.per_key, now),
            None => Bucket::full(self.per_key, now),
        };
        let wait = global.wait(self.global).max(key_bucket.wait(self.per_key));
        let (global, key_bucket) = if wait.is_zero() {
            (
                Bucket {
                    tokens: global.tokens - 1.0,
                    ..global
                },
                Bucket {
                    tokens: key_bucket.tokens - 1.0,
                    ..key_bucket
                },
            )
        } else {
            (global, key_bucket)
        };
        state.global = global;
        let used = state.next_use;
        state.next_use += 1;
        match state.keys.get_mut(key) {
            Some(tracked) => {
                state.recency.remove(&tracked.used);
                tracked.bucket = key_bucket;
                tracked.used = used;
            }
            None => {
                while state.keys.len() >= self.max_keys {
                    let Some((_, oldest)) = state.recency.pop_first() else {
                        break;
                    };
                    state.keys.remove(&oldest);
                }
                state.keys.insert(
                    key.to_string(),
                    Tracked {
                        bucket: key_bucket,
                        used,
                    },
                );
            }
        }
        state.recency.insert(used, key.to_string());
        if wait.is_zero() { Ok(()) } else { Err(wait) }
    }

    /// Takes a token from the global bucket only, for requests that belong to no key yet
    /// (newNonce, newAccount).
    ///
    /// # Errors
    /// `Err(retry_after)` if the global bucket is empty (nothing is taken).
    pub fn check_global(&self, now: Instant) -> Result<(), Duration> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let global = state.global.refilled(self.global, now);
        let wait = global.wait(self.global);
        state.global = if wait.is_zero() {
            Bucket {
                tokens: global.tokens - 1.0,
                ..global
            }
        } else {
            global
        };
        if wait.is_zero() { Ok(()) } else { Err(wait) }
    }

    /// How many keys are tracked now (at most `max_keys`).
    pub fn tracked_keys(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .keys
            .len()
    }
}

impl Default for RateLimiter {
    /// [`DEFAULT_PER_KEY`], [`DEFAULT_GLOBAL`] and [`DEFAULT_MAX_KEYS`], starting now.
    fn default() -> Self {
        RateLimiter::new(DEFAULT_PER_KEY, DEFAULT_GLOBAL, DEFAULT_MAX_KEYS, Instant::now())
    }
}

/// A wait as a `Retry-After` value (RFC 9110 §10.2.3): whole seconds, rounded up, at least 1.
pub fn retry_after_seconds(wait: Duration) -> u64 {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    seconds.max(1)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::sync::Arc;

    use super::*;

    const GENEROUS: Limit = Limit {
        per_second: 1000.0,
        burst: 1000,
    };

    #[test]
    fn a_burst_then_one_token_per_interval() {
        let t0 = Instant::now();
        let limiter = RateLimiter::new(Limit::new(2.0, 5), GENEROUS, 10, t0);
        for _ in 0..5 {
            limiter.check("acct-1", t0).unwrap();
        }
        // Empty: the next token comes in half a second.
        assert_eq!(limiter.check("acct-1", t0), Err(Duration::from_millis(500)));
        assert_eq!(
            limiter.check("acct-1", t0 + Duration::from_millis(200)),
            Err(Duration::from_millis(300))
        );
        limiter.check("acct-1", t0 + Duration::from_millis(500)).unwrap();
        assert!(limiter.check("acct-1", t0 + Duration::from_millis(500)).is_err());
        // Another key has its own bucket.
        limiter.check("acct-2", t0).unwrap();
        // After a long pause the bucket is full again, never fuller.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..5 {
            limiter.check("acct-1", later).unwrap();
        }
        assert!(limiter.check("acct-1", later).is_err());
    }

    #[test]
    fn the_global_bucket_limits_every_key_together() {
        let t0 = Instant::now();
        let limiter = RateLimiter::new(GENEROUS, Limit::new(10.0, 3), 100, t0);
        limiter.check("a", t0).unwrap();
        limiter.check("b", t0).unwrap();
        limiter.check_global(t0).unwrap();
        assert_eq!(limiter.check("c", t0), Err(Duration::from_millis(100)));
        assert_eq!(limiter.check_global(t0), Err(Duration::from_millis(100)));
        limiter.check("c", t0 + Duration::from_millis(100)).unwrap();
    }

    #[test]
    fn a_refused_request_takes_nothing() {
        let t0 = Instant::now();
        let limiter = RateLimiter::new(Limit::new(1.0, 1), Limit::new(1.0, 2), 100, t0);
        limiter.check("a", t0).unwrap();
        // a's bucket is empty: refused, and the global token is not spent on it.
        assert!(limiter.check("a", t0).is_err());
        limiter.check("b", t0).unwrap();
        // Now the global bucket is empty: c is refused without spending its own token.
        assert!(limiter.check("c", t0).is_err());
        let t1 = t0 + Duration::from_secs(1);
        limiter.check("c", t1).unwrap();
    }

    #[test]
    fn the_wait_covers_both_buckets() {
        let t0 = Instant::now();
        let limiter = RateLimiter::new(Limit::new(1.0, 1), Limit::new(4.0, 1), 100, t0);
        limiter.check("a", t0).unwrap();
        // Key: 1 s; global: 0.25 s: the longer one.
        assert_eq!(limiter.check("a", t0), Err(Duration::from_secs(1)));
        assert_eq!(limiter.check("b", t0), Err(Duration::from_millis(250)));
    }

    #[test]
    fn memory_is_bounded_and_the_least_recently_used_key_goes() {
        let t0 = Instant::now();
        let limiter = RateLimiter::new(Limit::new(1.0, 2), GENEROUS, 3, t0);
        for key in ["a", "b", "c"] {
            limiter.check(key, t0).unwrap();
            limiter.check(key, t0).unwrap();
        }
        // a is used again (refused, but used): b is now the oldest.
        assert!(limiter.check("a", t0).is_err());
        limiter.check("d", t0).unwrap();
        assert_eq!(limiter.tracked_keys(), 3);
        // a and c kept their empty buckets; b was forgotten and comes back full.
        assert!(limiter.check("a", t0).is_err());
        assert!(limiter.check("c", t0).is_err());
        limiter.check("b", t0).unwrap();
        // Many new keys: never more than three tracked.
        let limiter = RateLimiter::new(Limit::new(1.0, 1), Limit::new(1e9, u32::MAX), 1000, t0);
        for i in 0..5000 {
            limiter.check(&format!("key-{i}"), t0).unwrap();
            assert!(limiter.tracked_keys() <= 1000);
        }
        assert_eq!(limiter.tracked_keys(), 1000);
        assert!(limiter.check("key-4999", t0).is_err());
        limiter.check("key-0", t0).unwrap();
    }

    #[test]
    fn time_running_backwards_refills_nothing() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let limiter = RateLimiter::new(Limit::new(1.0, 1), GENEROUS, 10, t0);
        limiter.check("a", t0).unwrap();
        assert!(limiter.check("a", t0 - Duration::from_secs(5)).is_err());
        assert!(limiter.check("a", t0 + Duration::from_millis(999)).is_err());
        limiter.check("a", t0 + Duration::from_secs(1)).unwrap();
    }

    #[test]
    fn many_threads_never_get_more_than_the_burst() {
        let t0 = Instant::now();
        let limiter = Arc::new(RateLimiter::new(Limit::new(1.0, 50), Limit::new(1.0, 300), 1000, t0));
        let threads: Vec<_> = (0..8)
            .map(|thread| {
                let limiter = Arc::clone(&limiter);
                std::thread::spawn(move || {
                    (0..100)
                        .filter(|i| limiter.check(&format!("acct-{}", (thread + i) % 4), t0).is_ok())
                        .count()
                })
            })
            .collect();
        let granted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        // Four keys of 50 each (200) under a global 300.
        assert_eq!(granted, 200);
    }

    #[test]
    fn limits_are_sane_and_retry_after_rounds_up() {
        assert_eq!(
            Limit::new(0.0, 0),
            Limit {
                per_second: 1.0 / 3600.0,
                burst: 1
            }
        );
        assert_eq!(Limit::new(f64::NAN, 3).burst, 3);
        assert_eq!(Limit::new(-1.0, 3).per_second, 1.0 / 3600.0);
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_seconds(Duration::from_secs(7)), 7);
        let limiter = RateLimiter::default();
        limiter.check("a", Instant::now()).unwrap();
    }
}
