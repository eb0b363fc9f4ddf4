//! SLA states: how an elapsed working time compares with a limit.

use ksa_schemas::settings::{NearThreshold, SlaGrid, SlaSettings};
use serde::{Deserialize, Serialize};

/// Worst-is-greatest, so an order's state is the maximum over its groups.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlaState {
    /// No limit applies (none set, or a terminal group).
    #[default]
    None,
    Ok,
    Near,
    Over,
}

impl SlaState {
    pub fn as_str(self) -> &'static str {
        match self {
            SlaState::None => "none",
            SlaState::Ok => "ok",
            SlaState::Near => "near",
            SlaState::Over => "over",
        }
    }
}

/// Which grid an order is measured against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlaProfile {
    Normal,
    Urgent,
}

impl SlaProfile {
    pub fn grid(self, sla: &SlaSettings) -> &SlaGrid {
        match self {
            SlaProfile::Normal => &sla.normal,
            SlaProfile::Urgent => &sla.urgent,
        }
    }
}

/// The state of `elapsed` working seconds (in microseconds) against `limit_seconds`.
pub fn sla_state(elapsed_micros: i64, limit_seconds: Option<i64>, near: NearThreshold) -> SlaState {
    let Some(limit_seconds) = limit_seconds else {
        return SlaState::None;
    };
    let limit = limit_seconds.saturating_mul(1_000_000);
    if elapsed_micros >= limit {
        return SlaState::Over;
    }
    if elapsed_micros >= near_threshold_micros(limit, near) { SlaState::Near } else { SlaState::Ok }
}

/// The elapsed working time (µs) at which a limit (µs) turns `near`.
pub fn near_threshold_micros(limit_micros: i64, near: NearThreshold) -> i64 {
    match near {
        NearThreshold::Percent(p) => ((limit_micros as f64) * p / 100.0).round() as i64,
        NearThreshold::BeforeSeconds(before) => (limit_micros - before.saturating_mul(1_000_000)).max(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_follow_the_limit_and_the_near_threshold() {
        let near = NearThreshold::Percent(80.0);
        let hour = 3_600_000_000;
        assert_eq!(sla_state(hour, None, near), SlaState::None);
        assert_eq!(sla_state(hour, Some(7200), near), SlaState::Ok);
        assert_eq!(sla_state(hour * 8 / 5, Some(7200), near), SlaState::Near);
        assert_eq!(sla_state(2 * hour - 1, Some(7200), near), SlaState::Near);
        assert_eq!(sla_state(2 * hour, Some(7200), near), SlaState::Over);
    }

    #[test]
    fn near_can_be_a_fixed_time_before_the_limit() {
        let near = NearThreshold::BeforeSeconds(1800);
        let minute = 60_000_000;
        assert_eq!(sla_state(89 * minute, Some(7200), near), SlaState::Ok);
        assert_eq!(sla_state(90 * minute, Some(7200), near), SlaState::Near);
        // A limit shorter than the warning time is near from the start.
        assert_eq!(sla_state(0, Some(600), near), SlaState::Near);
    }

    #[test]
    fn worst_state_is_the_greatest() {
        assert!(SlaState::Over > SlaState::Near && SlaState::Near > SlaState::Ok && SlaState::Ok > SlaState::None);
    }
}
