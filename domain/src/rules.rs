//! A project's settings made ready for computation: one working clock per calendar.

use chrono::{Days, NaiveDate};
use ksa_schemas::{ProjectSettings, Timestamp};

use crate::clock::{WorkCalendar, WorkingClock};

/// Settings plus compiled clocks. Build it once per project and settings revision; computing
/// a timeline then never touches a calendar's definition.
#[derive(Clone, Debug)]
pub struct ProjectRules {
    pub settings: ProjectSettings,
    default_clock: WorkingClock,
    group_clocks: Vec<(u16, WorkingClock)>,
}

impl ProjectRules {
    /// Compiles the calendars for the local dates `first..=last`. Instants outside that span
    /// are still answered exactly, only more slowly.
    pub fn new(settings: ProjectSettings, first: NaiveDate, last: NaiveDate) -> Self {
        let tz = settings.timezone;
        let compile = |spec| {
            let calendar = WorkCalendar::new(spec, tz);
            if calendar.is_always_open() { WorkingClock::always_open() } else { WorkingClock::new(calendar, first, last) }
        };
        let default_clock = compile(&settings.calendars.default);
        let group_clocks = settings.calendars.groups.iter().map(|(group, spec)| (*group, compile(spec))).collect();
        ProjectRules { settings, default_clock, group_clocks }
    }

    /// The longest span compiled into tables: one absurd timestamp in the input must not make
    /// the tables huge. Instants before it are still answered exactly, by the slow path.
    pub const MAX_COMPILED_DAYS: u64 = 20 * 366;

    /// Compiles the calendars for the dates that `from..=to` touch in the project's time zone,
    /// with a day of margin on each side, and at most [`Self::MAX_COMPILED_DAYS`] back from `to`.
    pub fn covering(settings: ProjectSettings, from: Timestamp, to: Timestamp) -> Self {
        let calendar = WorkCalendar::new(&settings.calendars.default, settings.timezone);
        let first = calendar.local_date(from.min(to));
        let last = calendar.local_date(from.max(to));
        let last = last.checked_add_days(Days::new(1)).unwrap_or(last);
        let earliest_allowed = last.checked_sub_days(Days::new(Self::MAX_COMPILED_DAYS)).unwrap_or(first);
        let first = first.checked_sub_days(Days::new(1)).unwrap_or(first).max(earliest_allowed);
        ProjectRules::new(settings, first, last)
    }

    /// The clock of a status group: its own calendar, else the project default.
    pub fn clock_for_group(&self, group: u16) -> &WorkingClock {
        self.group_clocks.iter().find(|(g, _)| *g == group).map_or(&self.default_clock, |(_, clock)| clock)
    }

    /// The project's default clock: used for the lead-in before an order's first known event.
    pub fn default_clock(&self) -> &WorkingClock {
        &self.default_clock
    }

    pub fn is_terminal(&self, group: u16) -> bool {
        self.settings.is_terminal(group)
    }
}
