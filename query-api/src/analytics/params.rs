//! The parameters every analytics query shares: the period, which rows belong to it, calendar
//! buckets in the project's time zone, urgency, groups and statuses.

use chrono::{Datelike, Days, Months, NaiveDate};
use chrono_tz::Tz;
use ksa_domain::start_of_day;
use ksa_schemas::Timestamp;

use super::sql::Span;
use crate::error::ApiError;
use crate::orders::params::bound;
use crate::routes::Request;

/// The longest period one query covers.
pub const MAX_DAYS: i64 = 3 * 366;
/// The period when `from` is not given: this many days before `to`.
pub const DEFAULT_DAYS: u64 = 30;

/// Which rows a period holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum By {
    /// Orders created in the period (their first status event), with all their intervals.
    Created,
    /// Intervals (or cycles) entered in the period.
    Entered,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BucketKind {
    Day,
    Week,
    Month,
}

impl BucketKind {
    pub fn name(self) -> &'static str {
        match self {
            BucketKind::Day => "day",
            BucketKind::Week => "week",
            BucketKind::Month => "month",
        }
    }

    /// The first day of the bucket that holds `date`.
    fn start(self, date: NaiveDate) -> NaiveDate {
        match self {
            BucketKind::Day => date,
            BucketKind::Week => date - Days::new(u64::from(date.weekday().num_days_from_monday())),
            BucketKind::Month => date.with_day(1).unwrap_or(date),
        }
    }

    fn next(self, start: NaiveDate) -> NaiveDate {
        match self {
            BucketKind::Day => start + Days::new(1),
            BucketKind::Week => start + Days::new(7),
            BucketKind::Month => start + Months::new(1),
        }
    }
}

/// Calendar buckets of a period: each one's first local day and its first instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Buckets {
    pub days: Vec<NaiveDate>,
    /// The instant each bucket starts at (the first clipped to the period's start).
    pub edges: Vec<i64>,
}

impl Buckets {
    /// The buckets of `kind` covering `span` in `tz`: local midnights, DST-correct.
    pub fn new(kind: BucketKind, span: Span, tz: Tz) -> Buckets {
        let first = Timestamp::from_micros(span.from).to_datetime().with_timezone(&tz).date_naive();
        let mut day = kind.start(first);
        let (mut days, mut edges) = (Vec::new(), Vec::new());
        loop {
            let at = start_of_day(tz, day).as_micros();
            if at >= span.to {
                break;
            }
            days.push(day);
            edges.push(at.max(span.from));
            day = kind.next(day);
        }
        Buckets { days, edges }
    }

    /// The first day of bucket `index`, `YYYY-MM-DD`.
    pub fn label(&self, index: i64) -> Option<String> {
        usize::try_from(index).ok().and_then(|i| self.days.get(i)).map(|day| day.format("%Y-%m-%d").to_string())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UrgencyFilter {
    All,
    Urgent,
    Normal,
    Pending,
    /// One row per urgency.
    Split,
}

impl UrgencyFilter {
    const ALL: [UrgencyFilter; 5] =
        [UrgencyFilter::All, UrgencyFilter::Urgent, UrgencyFilter::Normal, UrgencyFilter::Pending, UrgencyFilter::Split];
}

impl UrgencyFilter {
    pub fn name(self) -> &'static str {
        match self {
            UrgencyFilter::All => "all",
            UrgencyFilter::Urgent => "urgent",
            UrgencyFilter::Normal => "normal",
            UrgencyFilter::Pending => "pending",
            UrgencyFilter::Split => "split",
        }
    }

    /// The condition on the `urgency` column (0 pending, 1 normal, 2 urgent).
    pub fn condition(self) -> &'static str {
        match self {
            UrgencyFilter::All | UrgencyFilter::Split => "1 = 1",
            UrgencyFilter::Urgent => "urgency = 2",
            UrgencyFilter::Normal => "urgency = 1",
            UrgencyFilter::Pending => "urgency = 0",
        }
    }
}

/// The name of an urgency rank, as the answers spell it.
pub fn urgency_name(rank: i64) -> &'static str {
    match rank {
        2 => "urgent",
        1 => "normal",
        _ => "pending",
    }
}

impl Span {
    /// Reads `from` and `to` (dates local to `tz`, or instants with their offset); 400 naming
    /// the one that is wrong. `to` defaults to now, `from` to 30 days before `to`; a period is
    /// at most [`MAX_DAYS`] long.
    pub fn parse(request: &Request, tz: Tz, now: Timestamp) -> Result<Span, ApiError> {
        let to = bound(request, "to", tz, true)?.unwrap_or(now.as_micros());
        let from = match bound(request, "from", tz, false)? {
            Some(from) => from,
            None => {
                let day = Timestamp::from_micros(to).to_datetime().with_timezone(&tz).date_naive() - Days::new(DEFAULT_DAYS);
                start_of_day(tz, day).as_micros()
            }
        };
        if from >= to {
            return Err(ApiError::bad("to", "to must come after from"));
        }
        if to - from > MAX_DAYS * 86_400 * 1_000_000 {
            return Err(ApiError::bad("from", format!("the period is longer than 3 years ({MAX_DAYS} days); ask for a shorter one")));
        }
        Ok(Span { from, to })
    }
}

/// The common parameters of a query.
#[derive(Clone, Debug)]
pub struct Period {
    pub span: Span,
    pub by: By,
    pub buckets: Option<(BucketKind, Buckets)>,
    pub urgency: UrgencyFilter,
    pub groups: Vec<i64>,
    pub statuses: Vec<i64>,
}

impl Period {
    /// Reads `from`, `to`, `by`, `bucket`, `urgency`, `group` and `status`; 400 naming the
    /// parameter that is wrong. `to` defaults to now, `from` to 30 days before `to`.
    pub fn parse(request: &Request, tz: Tz, now: Timestamp) -> Result<Period, ApiError> {
        let span = Span::parse(request, tz, now)?;
        let by = match request.param("by") {
            None | Some("created") => By::Created,
            Some("entered") => By::Entered,
            Some(other) => return Err(ApiError::bad("by", format!("{other:?} is not created or entered"))),
        };
        let buckets = match request.param("bucket") {
            None => None,
            Some(text) => {
                let kind = [BucketKind::Day, BucketKind::Week, BucketKind::Month]
                    .into_iter()
                    .find(|k| k.name() == text)
                    .ok_or_else(|| ApiError::bad("bucket", format!("{text:?} is not day, week or month")))?;
                Some((kind, Buckets::new(kind, span, tz)))
            }
        };
        let urgency = match request.param("urgency") {
            None => UrgencyFilter::All,
            Some(text) => UrgencyFilter::ALL
                .into_iter()
                .find(|u| u.name() == text)
                .ok_or_else(|| ApiError::bad("urgency", format!("{text:?} is not all, urgent, normal, pending or split")))?,
        };
        Ok(Period { span, by, buckets, urgency, groups: ids(request, "group")?, statuses: ids(request, "status")? })
    }

    /// The bucket index of an instant column (0 without buckets).
    pub fn bucket_of(&self, column: &str) -> String {
        match &self.buckets {
            Some((_, buckets)) => super::sql::bucket_expr(column, &buckets.edges),
            None => "0".to_owned(),
        }
    }

    pub fn bucketed(&self) -> bool {
        self.buckets.is_some()
    }

    pub fn bucket_label(&self, index: i64) -> Option<String> {
        self.buckets.as_ref().and_then(|(_, buckets)| buckets.label(index))
    }
}

/// A comma list of ids, empty when absent; 400 naming `name` when one is not a number.
fn ids(request: &Request, name: &str) -> Result<Vec<i64>, ApiError> {
    let Some(text) = request.param(name) else { return Ok(Vec::new()) };
    text.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| part.parse::<i64>().map_err(|_| ApiError::bad(name, format!("{part:?} is not an id"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kyiv() -> Tz {
        "Europe/Kyiv".parse().unwrap()
    }

    fn at(text: &str) -> i64 {
        Timestamp::parse(text).unwrap().as_micros()
    }

    #[test]
    fn days_follow_local_midnight_across_both_dst_changes() {
        // Spring forward: 2026-03-29 03:00 → 04:00 in Kyiv; the day is 23 hours long.
        let span = Span { from: at("2026-03-28T00:00:00+02:00"), to: at("2026-03-31T00:00:00+03:00") };
        let days = Buckets::new(BucketKind::Day, span, kyiv());
        assert_eq!(days.edges, vec![at("2026-03-28T00:00:00+02:00"), at("2026-03-29T00:00:00+02:00"), at("2026-03-30T00:00:00+03:00")]);
        assert_eq!(days.edges[2] - days.edges[1], 23 * 3_600_000_000);
        // Fall back: 2026-10-25 04:00 → 03:00; the day is 25 hours long.
        let span = Span { from: at("2026-10-25T00:00:00+03:00"), to: at("2026-10-27T00:00:00+02:00") };
        let days = Buckets::new(BucketKind::Day, span, kyiv());
        assert_eq!(days.edges[1] - days.edges[0], 25 * 3_600_000_000);
        assert_eq!(days.label(1).as_deref(), Some("2026-10-26"));
    }

    #[test]
    fn weeks_start_on_monday_and_months_on_the_first() {
        // 2026-03-04 is a Wednesday: its week began on Monday 2026-03-02, before the period.
        let span = Span { from: at("2026-03-04T00:00:00+02:00"), to: at("2026-04-02T00:00:00+03:00") };
        let weeks = Buckets::new(BucketKind::Week, span, kyiv());
        assert_eq!(weeks.label(0).as_deref(), Some("2026-03-02"));
        assert_eq!(weeks.edges[0], span.from, "the first bucket is clipped to the period");
        assert_eq!(weeks.label(1).as_deref(), Some("2026-03-09"));
        assert_eq!(weeks.days.len(), 5);
        let months = Buckets::new(BucketKind::Month, span, kyiv());
        assert_eq!(months.days.iter().map(|d| d.to_string()).collect::<Vec<_>>(), ["2026-03-01", "2026-04-01"]);
        assert_eq!(months.edges[1], at("2026-04-01T00:00:00+03:00"));
    }
}
