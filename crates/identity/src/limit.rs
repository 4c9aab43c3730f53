//! Per-principal rate limits: a token bucket per caller (`user:<id>`; anonymous
//! callers share one), refilled continuously. A caller beyond its rate is told when to
//! come back (`Retry-After`) instead of slowing everyone else.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use citybrain_access::Principal;
use parking_lot::Mutex;

/// How many requests a principal may make: `per_second` sustained, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Most principals tracked; beyond it, buckets full again (idle ones) are dropped.
const TRACKED: usize = 100_000;

pub struct RateLimiter {
    rate: Rate,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("rate", &self.rate)
            .finish()
    }
}

impl RateLimiter {
    pub fn new(rate: Rate) -> RateLimiter {
        RateLimiter {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `p`'s bucket at `now`; `Err(wait)` when it is empty.
    /// Services (the platform itself) are never limited.
    pub fn take(&self, p: &Principal, now: Instant) -> Result<(), Duration> {
        let key = match p {
            Principal::Service(_) => return Ok(()),
            Principal::Anonymous => "anonymous",
            Principal::User(i) => i.id.as_str(),
        };
        let Rate { per_second, burst } = self.rate;
        let mut buckets = self.buckets.lock();
        if buckets.len() >= TRACKED && !buckets.contains_key(key) {
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.at).as_secs_f64() * per_second < burst
            });
        }
        let b = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * per_second).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            // A rate so small that the wait overflows: an hour (never a panic).
            Err(Duration::try_from_secs_f64((1.0 - b.tokens) / per_second)
                .unwrap_or(Duration::from_secs(3600))
                .min(Duration::from_secs(3600)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_principal_has_its_own_bucket() {
        let l = RateLimiter::new(Rate {
            per_second: 10.0,
            burst: 3.0,
        });
        let t0 = Instant::now();
        let ana = Principal::user("ana", &[]);
        let bob = Principal::user("bob", &[]);
        for _ in 0..3 {
            assert!(l.take(&ana, t0).is_ok());
        }
        let wait = l.take(&ana, t0).unwrap_err();
        assert!(wait <= Duration::from_millis(100) && wait > Duration::ZERO);
        // Another user is not slowed by ana.
        assert!(l.take(&bob, t0).is_ok());
        // A tenth of a second later, one more.
        assert!(l.take(&ana, t0 + Duration::from_millis(100)).is_ok());
        assert!(l.take(&ana, t0 + Duration::from_millis(100)).is_err());
        // The platform itself is never limited.
        for _ in 0..10 {
            assert!(l.take(&Principal::RULES, t0).is_ok());
        }
    }
}
