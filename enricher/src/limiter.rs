//! One token bucket per project, shared by every call to that project's API in the process.
//!
//! The bucket is a GCRA (generic cell rate algorithm): a request may start once the theoretical
//! arrival time, less the burst allowance, has come. With the default burst of one, requests
//! are spaced at least `window / rate` apart, so no window of any length sees more than the
//! configured rate (plus the burst). A 429 pauses the bucket for everyone of that project.
//!
//! A new bucket starts spent, as if its whole burst had just been used: the limit holds across
//! restarts (an enricher restarted right after a burst of calls waits as the old one would
//! have) and across a client made anew for a changed token or rate.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    burst: u32,
    state: Mutex<BucketState>,
}

#[derive(Debug)]
struct BucketState {
    /// When the next request would be due if the bucket were always used at the full rate.
    theoretical_arrival: Instant,
    /// No request starts before this (set by a 429).
    paused_until: Option<Instant>,
}

impl RateLimiter {
    /// `rate` requests per `window`, at most `burst` of them back to back; spent at first.
    pub fn new(rate: u32, window: Duration, burst: u32) -> Self {
        let (interval, burst) = (window / rate.max(1), burst.max(1));
        let spent = Instant::now() + interval * burst;
        RateLimiter { interval, burst, state: Mutex::new(BucketState { theoretical_arrival: spent, paused_until: None }) }
    }

    /// The spacing of requests at the full rate.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Waits until a request may start, and takes its token.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut state = self.state.lock().await;
                let now = Instant::now();
                let allowance = self.interval * (self.burst - 1);
                let mut earliest = state.theoretical_arrival.checked_sub(allowance).unwrap_or(now);
                if let Some(paused) = state.paused_until {
                    if paused <= now {
                        state.paused_until = None;
                    } else {
                        earliest = earliest.max(paused);
                    }
                }
                if earliest <= now {
                    state.theoretical_arrival = state.theoretical_arrival.max(now) + self.interval;
                    return;
                }
                earliest - now
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Holds every request of the project for `pause` from now (a 429 with `Retry-After`, or
    /// the back-off chosen for one without).
    pub async fn pause_for(&self, pause: Duration) {
        let until = Instant::now() + pause;
        let mut state = self.state.lock().await;
        state.paused_until = Some(state.paused_until.map_or(until, |p| p.max(until)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn requests_are_spaced_by_the_rate() {
        let limiter = RateLimiter::new(60, Duration::from_secs(60), 1);
        let start = Instant::now();
        let mut starts = Vec::new();
        for _ in 0..5 {
            limiter.acquire().await;
            starts.push(start.elapsed());
        }
        assert_eq!(starts, (1..6).map(Duration::from_secs).collect::<Vec<_>>(), "a new bucket starts spent");
    }

    #[tokio::test(start_paused = true)]
    async fn burst_allows_back_to_back_requests_after_a_quiet_spell_then_the_rate() {
        let limiter = RateLimiter::new(20, Duration::from_secs(60), 3);
        // Spent at first, as after a restart that followed a burst: the rate, not the burst.
        limiter.acquire().await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        let start = Instant::now();
        for _ in 0..3 {
            limiter.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "a full bucket takes a burst back to back");
        limiter.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_bucket_waits_as_if_its_burst_had_just_been_used() {
        let limiter = RateLimiter::new(20, Duration::from_secs(60), 3);
        let start = Instant::now();
        limiter.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(3), "one interval after the spent burst");
        limiter.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(6));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_every_caller() {
        let limiter = RateLimiter::new(60, Duration::from_secs(60), 1);
        limiter.acquire().await;
        let start = Instant::now();
        limiter.pause_for(Duration::from_secs(10)).await;
        limiter.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        limiter.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(11));
    }
}
