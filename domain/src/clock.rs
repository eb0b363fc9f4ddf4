//! Working calendars turned into a working clock: cumulative working time at every window edge,
//! so that `working_micros(a, b)` is two binary searches, not a walk through days.

use chrono::{Datelike, Days, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone};
use chrono_tz::Tz;
use ksa_schemas::Timestamp;
use ksa_schemas::settings::{CalendarSpec, Window};

const MICROS_PER_SECOND: i64 = 1_000_000;

/// A calendar placed in its project's time zone.
#[derive(Clone, Debug)]
pub struct WorkCalendar {
    spec: CalendarSpec,
    tz: Tz,
    always_open: bool,
}

/// Which side of a window an edge is: it decides how a fall-back overlap resolves, so that a
/// window covers the real elapsed time.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Edge {
    Opens,
    Closes,
}

impl WorkCalendar {
    pub fn new(spec: &CalendarSpec, tz: Tz) -> Self {
        WorkCalendar { always_open: spec.is_always_open(), spec: spec.clone(), tz }
    }

    pub fn always_open() -> Self {
        WorkCalendar::new(&CalendarSpec::always_open(), Tz::UTC)
    }

    pub fn is_always_open(&self) -> bool {
        self.always_open
    }

    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The local date an instant falls on.
    pub fn local_date(&self, t: Timestamp) -> NaiveDate {
        self.tz.from_utc_datetime(&t.to_datetime().naive_utc()).date_naive()
    }

    /// The windows that start on a local date: the date's exception if it has one, else its
    /// weekday's windows.
    fn windows_starting_on(&self, date: NaiveDate) -> &[Window] {
        match self.spec.exceptions.get(&date) {
            Some(windows) => windows,
            None => &self.spec.weekly[date.weekday().num_days_from_monday() as usize],
        }
    }

    /// Working windows of the local dates `first..=last` in UTC microseconds, sorted and merged.
    fn utc_windows(&self, first: NaiveDate, last: NaiveDate) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        let mut date = first;
        while date <= last {
            for window in self.windows_starting_on(date) {
                let start = self.to_utc(date, window.start, Edge::Opens);
                let end_date =
                    if window.is_overnight() || window.end == Window::MINUTES_PER_DAY { date.succ_opt().unwrap_or(date) } else { date };
                let end = self.to_utc(end_date, window.end % Window::MINUTES_PER_DAY, Edge::Closes);
                if end > start {
                    out.push((start, end));
                }
            }
            match date.succ_opt() {
                Some(next) => date = next,
                None => break,
            }
        }
        merge(&mut out);
        out
    }

    /// A local wall-clock time as a UTC instant, with the DST rules of docs/domain.md: in a
    /// spring-forward gap the edge moves to the end of the gap; in a fall-back overlap an opening
    /// edge takes the earlier instant and a closing edge the later one.
    fn to_utc(&self, date: NaiveDate, minute: u16, edge: Edge) -> i64 {
        let time = NaiveTime::from_hms_opt(u32::from(minute / 60), u32::from(minute % 60), 0).unwrap_or(NaiveTime::MIN);
        let local = date.and_time(time);
        match self.tz.from_local_datetime(&local) {
            LocalResult::Single(dt) => dt.timestamp_micros(),
            LocalResult::Ambiguous(earlier, later) => match edge {
                Edge::Opens => earlier.timestamp_micros(),
                Edge::Closes => later.timestamp_micros(),
            },
            LocalResult::None => self.end_of_gap(local),
        }
    }

    /// The first instant whose local time is at or after `local`: the end of the gap that
    /// `local` falls into. Offsets stay within ±15 h, so the answer lies within 15 h of `local`
    /// read as UTC; local time only moves forward there.
    fn end_of_gap(&self, local: NaiveDateTime) -> i64 {
        let naive_utc = local.and_utc().timestamp();
        let (mut lo, mut hi) = (naive_utc - 15 * 3600, naive_utc + 15 * 3600);
        let local_at = |secs: i64| {
            let utc = chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default().naive_utc();
            self.tz.from_utc_datetime(&utc).naive_local()
        };
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if local_at(mid) >= local { hi = mid } else { lo = mid }
        }
        hi * MICROS_PER_SECOND
    }
}

/// The first instant of a local date in `tz`: its midnight, or, where midnight falls into a
/// spring-forward gap, the end of the gap (docs/domain.md's rule for window edges).
pub fn start_of_day(tz: Tz, date: NaiveDate) -> Timestamp {
    Timestamp::from_micros(WorkCalendar::new(&CalendarSpec::always_open(), tz).to_utc(date, 0, Edge::Opens))
}

/// Sorts windows and merges those that overlap or touch.
fn merge(windows: &mut Vec<(i64, i64)>) {
    windows.sort_unstable();
    let mut merged: Vec<(i64, i64)> = Vec::with_capacity(windows.len());
    for &(start, end) in windows.iter() {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    *windows = merged;
}

/// A calendar compiled for a span of local dates. Inside the span `working_micros` is
/// O(log n); outside it the answer is still exact, computed from the calendar directly.
#[derive(Clone, Debug)]
pub struct WorkingClock {
    calendar: WorkCalendar,
    /// Instants `[cover.0, cover.1)` are answered from the tables below.
    cover: (i64, i64),
    starts: Vec<i64>,
    ends: Vec<i64>,
    /// Working time before window `i`, counted from the first window.
    cumulative: Vec<i64>,
}

impl WorkingClock {
    /// Compiles `calendar` for the local dates `first..=last`.
    pub fn new(calendar: WorkCalendar, first: NaiveDate, last: NaiveDate) -> Self {
        let last = last.max(first);
        let cover_start = calendar.to_utc(first, 0, Edge::Opens);
        let cover_end = calendar.to_utc(last.checked_add_days(Days::new(1)).unwrap_or(last), 0, Edge::Opens);
        // Windows that start the day before `first` may run into it.
        let windows = if calendar.always_open { Vec::new() } else { calendar.utc_windows(first.pred_opt().unwrap_or(first), last) };
        let mut starts = Vec::with_capacity(windows.len());
        let mut ends = Vec::with_capacity(windows.len());
        let mut cumulative = Vec::with_capacity(windows.len());
        let mut total = 0;
        for (start, end) in windows {
            starts.push(start);
            ends.push(end);
            cumulative.push(total);
            total += end - start;
        }
        WorkingClock { calendar, cover: (cover_start, cover_end), starts, ends, cumulative }
    }

    /// A clock that counts every instant: working time equals wall time.
    pub fn always_open() -> Self {
        let calendar = WorkCalendar::always_open();
        WorkingClock { calendar, cover: (i64::MIN, i64::MAX), starts: Vec::new(), ends: Vec::new(), cumulative: Vec::new() }
    }

    pub fn calendar(&self) -> &WorkCalendar {
        &self.calendar
    }

    /// How many merged windows the tables hold.
    pub fn compiled_windows(&self) -> usize {
        self.starts.len()
    }

    /// Working time in `[a, b)`, in microseconds; zero when `b <= a`.
    pub fn working_micros(&self, a: Timestamp, b: Timestamp) -> i64 {
        let (a, b) = (a.as_micros(), b.as_micros());
        if b <= a {
            return 0;
        }
        if self.calendar.always_open {
            return b - a;
        }
        let (lo, hi) = self.cover;
        if a >= lo && b <= hi {
            return self.cumulative_at(b) - self.cumulative_at(a);
        }
        let mut total = 0;
        if a < lo {
            total += self.outside_cover(a, b.min(lo));
        }
        if b > lo && a < hi {
            total += self.cumulative_at(b.min(hi)) - self.cumulative_at(a.max(lo));
        }
        if b > hi {
            total += self.outside_cover(a.max(hi), b);
        }
        total
    }

    /// Working time in seconds, for callers that report seconds.
    pub fn working_seconds(&self, a: Timestamp, b: Timestamp) -> f64 {
        self.working_micros(a, b) as f64 / MICROS_PER_SECOND as f64
    }

    /// Working time from the start of the compiled span up to `t`, when `t` is inside it:
    /// `working_micros(a, b) == cumulative(b) - cumulative(a)`. Readers that measure many spans
    /// up to one instant subtract once instead of searching per span.
    pub fn cumulative(&self, t: Timestamp) -> Option<i64> {
        let t = t.as_micros();
        if self.calendar.always_open {
            return Some(t);
        }
        (t >= self.cover.0 && t <= self.cover.1).then(|| self.cumulative_at(t))
    }

    /// The earliest instant at which `working` microseconds of working time have passed since
    /// `start`: `working_micros(start, t) == working` and no earlier `t` has it. `None` when the
    /// calendar has not that much working time within twenty years.
    pub fn instant_after(&self, start: Timestamp, working: i64) -> Option<Timestamp> {
        if working <= 0 {
            return Some(start);
        }
        let a = start.as_micros();
        if self.calendar.always_open {
            return Some(Timestamp::from_micros(a.saturating_add(working)));
        }
        let (lo, hi) = self.cover;
        let mut from = a;
        let mut remaining = working;
        if from < lo {
            let before = self.outside_cover(from, lo);
            if before >= remaining {
                return self.walk(from, remaining);
            }
            remaining -= before;
            from = lo;
        }
        if from < hi {
            let base = self.cumulative_at(from);
            if self.cumulative_at(hi) - base >= remaining {
                let target = base + remaining;
                let index = self.first_window_reaching(target);
                return Some(Timestamp::from_micros(self.starts[index] + (target - self.cumulative[index])));
            }
            remaining -= self.cumulative_at(hi) - base;
            from = hi;
        }
        self.walk(from, remaining)
    }

    /// The index of the first compiled window whose cumulative end reaches `target`.
    fn first_window_reaching(&self, target: i64) -> usize {
        let (mut lo, mut hi) = (0, self.starts.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.cumulative[mid] + (self.ends[mid] - self.starts[mid]) >= target {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo
    }

    /// [`WorkingClock::instant_after`] outside the compiled span: the calendar's windows a
    /// month at a time (each month with the windows that run into it from the day before), for
    /// at most twenty years.
    fn walk(&self, mut from: i64, mut remaining: i64) -> Option<Timestamp> {
        let mut date = self.calendar.local_date(Timestamp::from_micros(from));
        for _ in 0..(20 * 12 + 1) {
            let last = date.checked_add_days(Days::new(31))?;
            let next = last.succ_opt()?;
            let boundary = self.calendar.to_utc(next, 0, Edge::Opens);
            for (start, end) in self.calendar.utc_windows(date.pred_opt()?, last) {
                let (start, end) = (start.max(from), end.min(boundary));
                if end <= start {
                    continue;
                }
                if end - start >= remaining {
                    return Some(Timestamp::from_micros(start + remaining));
                }
                remaining -= end - start;
            }
            from = boundary.max(from);
            date = next;
        }
        None
    }

    /// `[a, b)` cut into spans of working and non-working time, in order: what a Gantt bar shades.
    pub fn segments(&self, a: Timestamp, b: Timestamp) -> Vec<(Timestamp, Timestamp, bool)> {
        let (a, b) = (a.as_micros(), b.as_micros());
        if b <= a {
            return Vec::new();
        }
        if self.calendar.always_open {
            return vec![(Timestamp::from_micros(a), Timestamp::from_micros(b), true)];
        }
        let first = self.calendar.local_date(Timestamp::from_micros(a));
        let last = self.calendar.local_date(Timestamp::from_micros(b));
        let mut out = Vec::new();
        let mut at = a;
        for (start, end) in self.calendar.utc_windows(first.pred_opt().unwrap_or(first), last) {
            let (start, end) = (start.max(a), end.min(b));
            if end <= start {
                continue;
            }
            if start > at {
                out.push((Timestamp::from_micros(at), Timestamp::from_micros(start), false));
            }
            out.push((Timestamp::from_micros(start), Timestamp::from_micros(end), true));
            at = end;
        }
        if at < b {
            out.push((Timestamp::from_micros(at), Timestamp::from_micros(b), false));
        }
        out
    }

    /// Working time from the first window up to `t`.
    fn cumulative_at(&self, t: i64) -> i64 {
        let i = self.starts.partition_point(|&start| start <= t);
        if i == 0 {
            return 0;
        }
        let j = i - 1;
        self.cumulative[j] + t.min(self.ends[j]) - self.starts[j]
    }

    /// The slow, exact path for spans the tables do not cover: windows of the dates involved.
    fn outside_cover(&self, a: i64, b: i64) -> i64 {
        if b <= a {
            return 0;
        }
        let first = self.calendar.local_date(Timestamp::from_micros(a));
        let last = self.calendar.local_date(Timestamp::from_micros(b));
        let windows = self.calendar.utc_windows(first.pred_opt().unwrap_or(first), last);
        windows.iter().map(|&(s, e)| (e.min(b) - s.max(a)).max(0)).sum()
    }
}
