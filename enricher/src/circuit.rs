//! A circuit breaker per project: after `threshold` failed calls in a row (each already retried),
//! calls fail at once for `open_for`; then one trial call decides whether it closes again.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: u32,
    open_for: Duration,
    state: Mutex<Circuit>,
}

#[derive(Debug, Default)]
struct Circuit {
    failures_in_a_row: u32,
    open_until: Option<Instant>,
}

/// What the breaker says about a call about to start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// Open: try again after this long.
    Refused(Duration),
}

/// What a finished call did to the breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    None,
    Opened,
    Closed,
}

impl CircuitBreaker {
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        CircuitBreaker { threshold: threshold.max(1), open_for, state: Mutex::new(Circuit::default()) }
    }

    pub fn admit(&self) -> Admission {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match state.open_until {
            Some(until) if until > Instant::now() => Admission::Refused(until - Instant::now()),
            _ => Admission::Allowed,
        }
    }

    pub fn is_open(&self) -> bool {
        matches!(self.admit(), Admission::Refused(_))
    }

    pub fn record_success(&self) -> Transition {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let was_tripped = state.open_until.is_some();
        *state = Circuit::default();
        if was_tripped { Transition::Closed } else { Transition::None }
    }

    pub fn record_failure(&self) -> Transition {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.failures_in_a_row += 1;
        // Half-open (the open period is over) and the trial failed, or the threshold is reached.
        let half_open_failed = state.open_until.is_some_and(|until| until <= Instant::now());
        if half_open_failed || (state.open_until.is_none() && state.failures_in_a_row >= self.threshold) {
            state.open_until = Some(Instant::now() + self.open_for);
            Transition::Opened
        } else {
            Transition::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_the_threshold_then_half_opens_after_the_pause() {
        let breaker = CircuitBreaker::new(3, Duration::from_secs(30));
        assert_eq!(breaker.record_failure(), Transition::None);
        assert_eq!(breaker.record_failure(), Transition::None);
        assert_eq!(breaker.record_failure(), Transition::Opened);
        assert_eq!(breaker.admit(), Admission::Refused(Duration::from_secs(30)));
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(breaker.admit(), Admission::Allowed);
        // The trial fails: open again at once.
        assert_eq!(breaker.record_failure(), Transition::Opened);
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(breaker.record_success(), Transition::Closed);
        assert_eq!(breaker.admit(), Admission::Allowed);
        assert_eq!(breaker.record_failure(), Transition::None);
    }
}
