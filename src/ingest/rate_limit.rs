//! Per-source rate limit on verified webhooks (GCRA token bucket from `governor`). It counts
//! only deliveries whose signature or token checked out, so a flood of forged requests against
//! a source's URL cannot use up the real vendor's allowance; those are answered 401 cheaply.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

pub struct SourceRateLimit {
    limiter: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl SourceRateLimit {
    pub fn new(per_second: u32, burst: u32) -> SourceRateLimit {
        let rate = NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
        SourceRateLimit {
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            clock: DefaultClock::default(),
        }
    }

    /// `Err(wait)` when the source is over its rate: retry after `wait`.
    pub fn check(&self, source_id: &str) -> Result<(), Duration> {
        self.limiter
            .check_key(&source_id.to_owned())
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_over_its_burst_is_told_when_to_retry_and_others_are_not_affected() {
        let limit = SourceRateLimit::new(1, 3);
        for _ in 0..3 {
            assert!(limit.check("a").is_ok());
        }
        let wait = limit.check("a").expect_err("over the burst");
        assert!(wait <= Duration::from_secs(1));
        assert!(limit.check("b").is_ok(), "limits are per source");
    }
}
