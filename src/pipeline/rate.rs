//! `--rate N/s`: a limit on items *started* per unit of time, shared by all
//! workers (governor's GCRA limiter). Every try counts, retries included:
//! the limit usually protects a service, which sees each try.
//!
//! Starts are spaced evenly (a burst of one): `20/s` starts an item every
//! 50 ms, so no window of a second ever sees more than 21 starts. A larger
//! burst would let the first N go at once, which is what a rate limit on
//! the other side tends to punish.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use super::retry::pause;
use crate::pool::Cancel;

/// A rate of starts: `N` items per second, minute or hour, parsed from
/// `N/s`, `N/m` (or `N/min`), `N/h`.
///
/// ```
/// let rate: batchproc::Rate = "120/m".parse().unwrap();
/// assert_eq!(rate.interval(), std::time::Duration::from_millis(500));
/// assert!("0/s".parse::<batchproc::Rate>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    count: u32,
    per: Duration,
    unit: &'static str,
}

impl Rate {
    /// The time between two starts.
    pub fn interval(&self) -> Duration {
        self.per / self.count
    }
}

impl FromStr for Rate {
    type Err = String;

    /// `N/s`, `N/m` (or `N/min`), `N/h`, with N a whole number ≥ 1.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let usage = "expected N/s, N/m or N/h with N a whole number of at least 1, e.g. 20/s";
        let (n, unit) = s.split_once('/').ok_or(usage)?;
        let (per, unit) = match unit.trim() {
            "s" | "sec" | "second" => (Duration::from_secs(1), "s"),
            "m" | "min" | "minute" => (Duration::from_secs(60), "m"),
            "h" | "hour" => (Duration::from_secs(3600), "h"),
            _ => return Err(usage.into()),
        };
        let count: u32 = n.trim().parse().map_err(|_| usage)?;
        if count == 0 {
            return Err(format!("a rate of 0 would start nothing; {usage}"));
        }
        let rate = Rate { count, per, unit };
        if rate.interval().is_zero() {
            return Err("at most 1000000000/s".into());
        }
        Ok(rate)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, self.unit)
    }
}

/// The limiter one run's workers share.
pub(super) struct RateLimit {
    limiter: DefaultDirectRateLimiter,
}

impl RateLimit {
    pub(super) fn new(rate: Rate) -> Self {
        let quota = Quota::with_period(rate.interval())
            .expect("Rate::from_str refuses a zero interval")
            .allow_burst(NonZeroU32::MIN);
        RateLimit {
            limiter: RateLimiter::direct(quota),
        }
    }

    /// Blocks until this worker may start an item; false if the run was
    /// cancelled first (the item is then not started).
    pub(super) fn until_ready(&self, cancel: &Cancel) -> bool {
        loop {
            if cancel.is_cancelled() {
                return false;
            }
            match self.limiter.check() {
                Ok(()) => return true,
                // Several workers may wake for one slot; the losers wait again.
                Err(not_until) => {
                    let wait = not_until.wait_time_from(self.limiter.clock().now());
                    if !pause(wait, cancel) {
                        return false;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::CancelReason;
    use std::time::Instant;

    #[test]
    fn parses_units_and_refuses_nonsense() {
        let r: Rate = "20/s".parse().unwrap();
        assert_eq!((r.count, r.interval()), (20, Duration::from_millis(50)));
        assert_eq!(r.to_string(), "20/s");
        for (text, interval) in [("120/m", 500), ("120/min", 500), ("7200/h", 500)] {
            let r: Rate = text.parse().unwrap();
            assert_eq!(r.interval(), Duration::from_millis(interval), "{text}");
        }
        for bad in [
            "abc",
            "20",
            "20/d",
            "/s",
            "-1/s",
            "0/s",
            "1.5/s",
            "5000000000/s",
        ] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
        assert!("0/s".parse::<Rate>().unwrap_err().contains("start nothing"));
    }

    #[test]
    fn starts_are_spaced_by_the_interval() {
        let limit = RateLimit::new("100/s".parse().unwrap());
        let cancel = Cancel::new();
        let started = Instant::now();
        for _ in 0..11 {
            assert!(limit.until_ready(&cancel));
        }
        // The first start is free, then one every 10 ms.
        assert!(started.elapsed() >= Duration::from_millis(100));
    }

    #[test]
    fn a_cancel_wakes_a_waiting_worker() {
        let limit = RateLimit::new("1/h".parse().unwrap());
        let cancel = Cancel::new();
        assert!(limit.until_ready(&cancel));
        let started = Instant::now();
        let ready = std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(50));
                cancel.cancel_with(CancelReason::Interrupted);
            });
            limit.until_ready(&cancel)
        });
        assert!(!ready);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
