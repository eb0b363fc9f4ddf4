//! The rules of docs/domain.md as pure functions: no IO, no async, no clock reads. Every function
//! that needs the present takes `now` as an argument.

pub mod clock;
pub mod cycles;
pub mod quantile;
pub mod row;
pub mod rules;
pub mod sla;
pub mod timeline;
pub mod urgency;

pub use clock::{WorkCalendar, WorkingClock, start_of_day};
pub use rules::ProjectRules;
pub use sla::{SlaProfile, SlaState};
pub use timeline::{Elapsed, OrderOverrides, OrderTimeline, compute_timeline};
pub use urgency::{Urgency, matching_rule, urgency_of};
