//! The project settings document: time zone, working calendars, SLA grids, cycle rules and
//! urgency rules. The same JSON document is read by the offline analyzer and served by the API.
//!
//! Every invalid value is rejected with the path of the value and what is wrong with it, for
//! example `calendars.groups.3.weekly.mon[1]: "25:00-18:00" is not a window`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::NaiveDate;
use chrono_tz::Tz;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use crate::loose::Loose;

mod document;
mod validate;

pub use document::hours_minutes;

/// A rejected settings document: where, and what is wrong there.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", if path.is_empty() { message.clone() } else { format!("{path}: {message}") })]
pub struct SettingsError {
    pub path: String,
    pub message: String,
}

impl SettingsError {
    pub(crate) fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        SettingsError { path: path.into(), message: message.into() }
    }
}

/// A project's rules, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct ProjectSettings {
    pub timezone: Tz,
    /// Groups that stop the clock (KeyCRM: 5 completed, 6 canceled): the union of
    /// `completion_groups` and `cancellation_groups`.
    pub terminal_groups: BTreeSet<u16>,
    /// Terminal groups that mean the order was completed.
    pub completion_groups: BTreeSet<u16>,
    /// Terminal groups that mean the order was cancelled.
    pub cancellation_groups: BTreeSet<u16>,
    pub calendars: Calendars,
    pub sla: SlaSettings,
    pub cycles: Vec<CycleRule>,
    /// The cycle shown by default and the one per-order cycle overrides apply to; the first
    /// rule when unset.
    pub default_cycle: Option<u32>,
    pub urgency_rules: Vec<UrgencyRule>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Calendars {
    /// The project's default calendar; 24/7 unless set.
    pub default: CalendarSpec,
    /// Calendars of single status groups; a group without one uses the default.
    pub groups: BTreeMap<u16, CalendarSpec>,
}

/// A working window in local wall-clock time, in minutes after midnight. A window whose end is
/// not after its start runs past midnight into the next day; `end == 1440` is `24:00`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    pub start: u16,
    pub end: u16,
}

impl Window {
    pub const MINUTES_PER_DAY: u16 = 1440;

    pub fn new(start: u16, end: u16) -> Option<Self> {
        (start < Self::MINUTES_PER_DAY && end <= Self::MINUTES_PER_DAY).then_some(Window { start, end })
    }

    pub fn whole_day() -> Self {
        Window { start: 0, end: Self::MINUTES_PER_DAY }
    }

    /// True when the window ends on the next local date.
    pub fn is_overnight(&self) -> bool {
        self.end <= self.start
    }

    /// Parses `HH:MM-HH:MM` (an en dash works too).
    pub fn parse(text: &str) -> Option<Self> {
        let (start, end) = text.split_once(['-', '–', '—'])?;
        let start = parse_clock(start.trim())?;
        let end = parse_clock(end.trim())?;
        Window::new(start, end)
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}-{:02}:{:02}", self.start / 60, self.start % 60, self.end / 60, self.end % 60)
    }
}

/// `HH:MM` from `00:00` to `24:00`.
fn parse_clock(text: &str) -> Option<u16> {
    let (h, m) = text.split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let h: u16 = h.parse().ok()?;
    let m: u16 = m.parse().ok()?;
    (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
}

/// A weekly schedule plus dated exceptions, in the project's time zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CalendarSpec {
    /// Windows per weekday, Monday first. An empty day is a day off.
    pub weekly: [Vec<Window>; 7],
    /// A date's own windows replace the weekly windows that start on that date; empty = closed.
    pub exceptions: BTreeMap<NaiveDate, Vec<Window>>,
}

impl Default for CalendarSpec {
    fn default() -> Self {
        CalendarSpec::always_open()
    }
}

impl CalendarSpec {
    /// The `24/7` preset.
    pub fn always_open() -> Self {
        CalendarSpec { weekly: std::array::from_fn(|_| vec![Window::whole_day()]), exceptions: BTreeMap::new() }
    }

    /// The `Mon–Fri 09:00–18:00` preset.
    pub fn office_hours() -> Self {
        CalendarSpec {
            weekly: std::array::from_fn(|day| if day < 5 { vec![Window { start: 9 * 60, end: 18 * 60 }] } else { Vec::new() }),
            exceptions: BTreeMap::new(),
        }
    }

    pub fn preset(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "24/7" | "always" => Some(Self::always_open()),
            "mon-fri 09:00-18:00" | "mon–fri 09:00–18:00" | "office" | "office_hours" => Some(Self::office_hours()),
            _ => None,
        }
    }

    /// True when every instant is working time, so working time equals wall time.
    pub fn is_always_open(&self) -> bool {
        self.exceptions.is_empty() && self.weekly.iter().all(|day| day.contains(&Window::whole_day()))
    }
}

/// SLA limits in working seconds, per profile.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SlaSettings {
    pub near: NearThreshold,
    pub normal: SlaGrid,
    pub urgent: SlaGrid,
}

/// Limits of one profile (normal or urgent).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlaGrid {
    pub groups: BTreeMap<u16, i64>,
    pub statuses: BTreeMap<i64, i64>,
}

/// When an order turns `near`: at a share of the limit, or some time before it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NearThreshold {
    Percent(f64),
    BeforeSeconds(i64),
}

impl Default for NearThreshold {
    fn default() -> Self {
        NearThreshold::Percent(80.0)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CycleRule {
    pub id: u32,
    pub title: String,
    pub start: CycleStart,
    pub end: CycleEnd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Occurrence {
    First,
    Last,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CycleStart {
    Created,
    Group { id: u16, occurrence: Occurrence },
    Status { id: i64, occurrence: Occurrence },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CycleEnd {
    Group { id: u16, occurrence: Occurrence },
    Status { id: i64, occurrence: Occurrence },
}

impl CycleRule {
    /// "to delivery": created → first entry into group 4.
    pub fn to_delivery(id: u32) -> Self {
        CycleRule {
            id,
            title: "to delivery".into(),
            start: CycleStart::Created,
            end: CycleEnd::Group { id: 4, occurrence: Occurrence::First },
        }
    }

    /// "full cycle": created → first entry into group 5.
    pub fn full_cycle(id: u32) -> Self {
        CycleRule {
            id,
            title: "full cycle".into(),
            start: CycleStart::Created,
            end: CycleEnd::Group { id: 5, occurrence: Occurrence::First },
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UrgencyMatch {
    /// The line's `sku` or its offer's `sku`.
    Sku(String),
    OfferId(i64),
    ProductId(i64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UrgencyRule {
    /// What people call the rule ("Термінове виготовлення"); shown as the reason an order is
    /// urgent.
    pub name: Option<String>,
    pub matches: UrgencyMatch,
    pub is_active: bool,
}

impl Default for ProjectSettings {
    fn default() -> Self {
        ProjectSettings {
            timezone: Tz::UTC,
            terminal_groups: [5, 6].into_iter().collect(),
            completion_groups: [5].into_iter().collect(),
            cancellation_groups: [6].into_iter().collect(),
            calendars: Calendars::default(),
            sla: SlaSettings::default(),
            cycles: vec![CycleRule::to_delivery(1), CycleRule::full_cycle(2)],
            default_cycle: None,
            urgency_rules: Vec::new(),
        }
    }
}

impl ProjectSettings {
    /// Reads and validates a settings document.
    pub fn from_json(text: &str) -> Result<Self, SettingsError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let raw: RawSettings = serde_path_to_error::deserialize(de).map_err(|err| {
            let path = err.path().to_string();
            let path = if path == "." || path == "?" { String::new() } else { path };
            SettingsError::at(path, err.into_inner().to_string())
        })?;
        raw.validate()
    }

    pub fn is_terminal(&self, group: u16) -> bool {
        self.terminal_groups.contains(&group)
    }

    /// The calendar a group is measured by: its own, else the project default.
    pub fn calendar_for_group(&self, group: u16) -> &CalendarSpec {
        self.calendars.groups.get(&group).unwrap_or(&self.calendars.default)
    }

    /// The cycle that overrides apply to and that the dashboard shows first.
    pub fn default_cycle_id(&self) -> Option<u32> {
        self.default_cycle.or_else(|| self.cycles.first().map(|c| c.id))
    }
}

// ----- the raw document, as serde reads it --------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    #[serde(default)]
    timezone: Option<TzName>,
    #[serde(default)]
    terminal_groups: Option<Vec<GroupKey>>,
    #[serde(default)]
    completion_groups: Option<Vec<GroupKey>>,
    #[serde(default)]
    cancellation_groups: Option<Vec<GroupKey>>,
    #[serde(default)]
    calendars: RawCalendars,
    #[serde(default)]
    sla: RawSla,
    #[serde(default)]
    cycles: Option<Vec<RawCycle>>,
    #[serde(default)]
    default_cycle: Option<u32>,
    #[serde(default)]
    urgency_rules: Vec<RawUrgencyRule>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCalendars {
    #[serde(default)]
    default: Option<CalendarSpec>,
    #[serde(default)]
    groups: BTreeMap<GroupKey, CalendarSpec>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSla {
    #[serde(default)]
    near: Option<RawNear>,
    #[serde(default)]
    normal: BTreeMap<GroupKey, Option<HoursMinutes>>,
    #[serde(default)]
    urgent: BTreeMap<GroupKey, Option<HoursMinutes>>,
    #[serde(default)]
    statuses: RawStatusLimits,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStatusLimits {
    #[serde(default)]
    normal: BTreeMap<StatusKey, Option<HoursMinutes>>,
    #[serde(default)]
    urgent: BTreeMap<StatusKey, Option<HoursMinutes>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
enum RawNear {
    Percent(f64),
    Before(HoursMinutes),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCycle {
    id: u32,
    title: String,
    start: RawEndpoint,
    end: RawEndpoint,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    kind: EndpointKind,
    #[serde(default)]
    id: Option<i64>,
    #[serde(default)]
    occurrence: Option<RawOccurrence>,
}

#[derive(Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum EndpointKind {
    Created,
    Group,
    Status,
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawOccurrence {
    First,
    Last,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUrgencyRule {
    #[serde(default)]
    name: Option<String>,
    match_type: MatchType,
    match_value: serde_json::Value,
    #[serde(default = "yes")]
    is_active: bool,
}

fn yes() -> bool {
    true
}

#[derive(Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum MatchType {
    Sku,
    OfferId,
    ProductId,
}

impl RawSettings {
    fn validate(self) -> Result<ProjectSettings, SettingsError> {
        let defaults = ProjectSettings::default();
        let set = |groups: Vec<GroupKey>| groups.into_iter().map(|g| g.0).collect::<BTreeSet<u16>>();
        let (completion_groups, cancellation_groups) = match (self.completion_groups, self.cancellation_groups, &self.terminal_groups) {
            (None, None, Some(terminal)) => {
                // A document from before completion and cancellation were named: group 6 is
                // KeyCRM's cancellation, every other terminal group a completion.
                let terminal = set(terminal.clone());
                (terminal.iter().copied().filter(|g| *g != 6).collect(), terminal.iter().copied().filter(|g| *g == 6).collect())
            }
            (completion, cancellation, _) => {
                (completion.map_or(defaults.completion_groups.clone(), set), cancellation.map_or(defaults.cancellation_groups.clone(), set))
            }
        };
        if let Some(group) = completion_groups.intersection(&cancellation_groups).next() {
            return Err(SettingsError::at("cancellation_groups", format!("group {group} cannot mean both completion and cancellation")));
        }
        let terminal_groups: BTreeSet<u16> = completion_groups.union(&cancellation_groups).copied().collect();
        if let Some(given) = self.terminal_groups.map(set)
            && given != terminal_groups
        {
            return Err(SettingsError::at(
                "terminal_groups",
                "must be the union of completion_groups and cancellation_groups (or leave it out)",
            ));
        }
        let near = match self.sla.near {
            None => NearThreshold::default(),
            Some(RawNear::Percent(p)) if p > 0.0 && p <= 100.0 => NearThreshold::Percent(p),
            Some(RawNear::Percent(p)) => {
                return Err(SettingsError::at("sla.near.percent", format!("{p} is not a share of the limit (0 < percent ≤ 100)")));
            }
            Some(RawNear::Before(hm)) => NearThreshold::BeforeSeconds(hm.0),
        };
        let grid = |groups: BTreeMap<GroupKey, Option<HoursMinutes>>, statuses: BTreeMap<StatusKey, Option<HoursMinutes>>| SlaGrid {
            groups: groups.into_iter().filter_map(|(g, l)| Some((g.0, l?.0))).collect(),
            statuses: statuses.into_iter().filter_map(|(s, l)| Some((s.0, l?.0))).collect(),
        };
        let sla = SlaSettings {
            near,
            normal: grid(self.sla.normal, self.sla.statuses.normal),
            urgent: grid(self.sla.urgent, self.sla.statuses.urgent),
        };
        let cycles = match self.cycles {
            None => defaults.cycles,
            Some(raw) => validate_cycles(raw)?,
        };
        if let Some(id) = self.default_cycle
            && !cycles.iter().any(|c| c.id == id)
        {
            return Err(SettingsError::at("default_cycle", format!("{id} is not the id of a cycle in `cycles`")));
        }
        let urgency_rules =
            self.urgency_rules.into_iter().enumerate().map(|(i, rule)| validate_urgency_rule(i, rule)).collect::<Result<_, _>>()?;
        Ok(ProjectSettings {
            timezone: self.timezone.map_or(Tz::UTC, |t| t.0),
            terminal_groups,
            completion_groups,
            cancellation_groups,
            calendars: Calendars {
                default: self.calendars.default.unwrap_or_default(),
                groups: self.calendars.groups.into_iter().map(|(g, c)| (g.0, c)).collect(),
            },
            sla,
            cycles,
            default_cycle: self.default_cycle,
            urgency_rules,
        })
    }
}

fn validate_cycles(raw: Vec<RawCycle>) -> Result<Vec<CycleRule>, SettingsError> {
    let mut seen = BTreeSet::new();
    let mut cycles = Vec::with_capacity(raw.len());
    for (i, cycle) in raw.into_iter().enumerate() {
        if !seen.insert(cycle.id) {
            return Err(SettingsError::at(format!("cycles[{i}].id"), format!("{} is used by another cycle", cycle.id)));
        }
        if cycle.title.trim().is_empty() {
            return Err(SettingsError::at(format!("cycles[{i}].title"), "must not be empty"));
        }
        let start = match endpoint(&cycle.start, &format!("cycles[{i}].start"))? {
            None => CycleStart::Created,
            Some(Endpoint::Group(id, occurrence)) => CycleStart::Group { id, occurrence },
            Some(Endpoint::Status(id, occurrence)) => CycleStart::Status { id, occurrence },
        };
        let end = match endpoint(&cycle.end, &format!("cycles[{i}].end"))? {
            None => {
                return Err(SettingsError::at(
                    format!("cycles[{i}].end.kind"),
                    "a cycle cannot end at order creation; use \"group\" or \"status\"",
                ));
            }
            Some(Endpoint::Group(id, occurrence)) => CycleEnd::Group { id, occurrence },
            Some(Endpoint::Status(id, occurrence)) => CycleEnd::Status { id, occurrence },
        };
        cycles.push(CycleRule { id: cycle.id, title: cycle.title, start, end });
    }
    Ok(cycles)
}

enum Endpoint {
    Group(u16, Occurrence),
    Status(i64, Occurrence),
}

fn endpoint(raw: &RawEndpoint, path: &str) -> Result<Option<Endpoint>, SettingsError> {
    let occurrence = match raw.occurrence {
        None | Some(RawOccurrence::First) => Occurrence::First,
        Some(RawOccurrence::Last) => Occurrence::Last,
    };
    match raw.kind {
        EndpointKind::Created => {
            if raw.id.is_some() {
                return Err(SettingsError::at(format!("{path}.id"), "order creation takes no id"));
            }
            Ok(None)
        }
        EndpointKind::Group => {
            let id = raw.id.ok_or_else(|| SettingsError::at(format!("{path}.id"), "missing: which status group?"))?;
            let id = u16::try_from(id)
                .ok()
                .filter(|g| *g > 0)
                .ok_or_else(|| SettingsError::at(format!("{path}.id"), format!("{id} is not a status group id")))?;
            Ok(Some(Endpoint::Group(id, occurrence)))
        }
        EndpointKind::Status => {
            let id = raw.id.ok_or_else(|| SettingsError::at(format!("{path}.id"), "missing: which status?"))?;
            if id <= 0 {
                return Err(SettingsError::at(format!("{path}.id"), format!("{id} is not a status id")));
            }
            Ok(Some(Endpoint::Status(id, occurrence)))
        }
    }
}

fn validate_urgency_rule(i: usize, rule: RawUrgencyRule) -> Result<UrgencyRule, SettingsError> {
    let path = format!("urgency_rules[{i}].match_value");
    let value = match &rule.match_value {
        serde_json::Value::String(s) => Loose::Str(s.as_str().into()),
        serde_json::Value::Number(n) => n.as_i64().map_or(Loose::Float(n.as_f64().unwrap_or(f64::NAN)), Loose::Int),
        serde_json::Value::Null => Loose::Null,
        serde_json::Value::Bool(b) => Loose::Bool(*b),
        _ => Loose::Composite,
    };
    let value = &value;
    let id = |what: &str| {
        value.as_i64().filter(|id| *id > 0).ok_or_else(|| SettingsError::at(&path, format!("{} is not {what}", value.describe())))
    };
    let matches = match rule.match_type {
        MatchType::Sku => UrgencyMatch::Sku(
            value
                .to_text()
                .filter(|s| !s.trim().is_empty())
                .ok_or_else(|| SettingsError::at(&path, format!("{} is not a SKU", value.describe())))?,
        ),
        MatchType::OfferId => UrgencyMatch::OfferId(id("an offer id")?),
        MatchType::ProductId => UrgencyMatch::ProductId(id("a product id")?),
    };
    let name = rule.name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
    Ok(UrgencyRule { name, matches, is_active: rule.is_active })
}

// ----- scalar types with their own messages -------------------------------------------------

/// An IANA time-zone name.
struct TzName(Tz);

impl<'de> Deserialize<'de> for TzName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse::<Tz>()
            .map(TzName)
            .map_err(|_| de::Error::custom(format!("{name:?} is not an IANA time zone (for example \"Europe/Kyiv\")")))
    }
}

/// A status group id used as a key: `"3"` or `3`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct GroupKey(u16);

impl<'de> Deserialize<'de> for GroupKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Loose::deserialize(d)?;
        value
            .as_i64()
            .and_then(|g| u16::try_from(g).ok())
            .filter(|g| *g > 0)
            .map(GroupKey)
            .ok_or_else(|| de::Error::custom(format!("{} is not a status group id", value.describe())))
    }
}

/// A status id used as a key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct StatusKey(i64);

impl<'de> Deserialize<'de> for StatusKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Loose::deserialize(d)?;
        value
            .as_i64()
            .filter(|s| *s > 0)
            .map(StatusKey)
            .ok_or_else(|| de::Error::custom(format!("{} is not a status id", value.describe())))
    }
}

/// A duration entered as `HH:MM`; hours may exceed 24. Held in seconds.
struct HoursMinutes(i64);

impl<'de> Deserialize<'de> for HoursMinutes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_hours_minutes(&text)
            .map(HoursMinutes)
            .ok_or_else(|| de::Error::custom(format!("{text:?} is not a duration (expected HH:MM, for example \"36:30\")")))
    }
}

/// `HH:MM` (hours may exceed 24) as seconds.
pub fn parse_hours_minutes(text: &str) -> Option<i64> {
    let (h, m) = text.trim().split_once(':')?;
    if h.is_empty() || h.len() > 6 || m.len() != 2 || !h.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: i64 = h.parse().ok()?;
    let m: i64 = m.parse().ok()?;
    (m < 60).then_some(h * 3600 + m * 60)
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Window::parse(&text)
            .ok_or_else(|| de::Error::custom(format!("{text:?} is not a window (expected HH:MM-HH:MM between 00:00 and 24:00)")))
    }
}

/// A local date used as a key: `YYYY-MM-DD`.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct DateKey(NaiveDate);

impl<'de> Deserialize<'de> for DateKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        NaiveDate::parse_from_str(&text, "%Y-%m-%d")
            .map(DateKey)
            .map_err(|_| de::Error::custom(format!("{text:?} is not a date (expected YYYY-MM-DD)")))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWeekly {
    #[serde(default)]
    mon: Vec<Window>,
    #[serde(default)]
    tue: Vec<Window>,
    #[serde(default)]
    wed: Vec<Window>,
    #[serde(default)]
    thu: Vec<Window>,
    #[serde(default)]
    fri: Vec<Window>,
    #[serde(default)]
    sat: Vec<Window>,
    #[serde(default)]
    sun: Vec<Window>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCalendar {
    #[serde(default)]
    preset: Option<String>,
    #[serde(default)]
    weekly: Option<RawWeekly>,
    #[serde(default)]
    exceptions: BTreeMap<DateKey, Vec<Window>>,
}

/// A calendar is a preset name (`"24/7"`, `"Mon–Fri 09:00–18:00"`) or an object with `weekly`
/// (missing weekdays are days off), optional `exceptions`, and optionally a `preset` that
/// supplies the weekly part.
impl<'de> Deserialize<'de> for CalendarSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CalendarSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a calendar: a preset name or an object with `weekly` and `exceptions`")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<CalendarSpec, E> {
                CalendarSpec::preset(name)
                    .ok_or_else(|| E::custom(format!("{name:?} is not a calendar preset (\"24/7\" or \"Mon-Fri 09:00-18:00\")")))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<CalendarSpec, A::Error> {
                let raw = RawCalendar::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let mut spec = match (&raw.preset, raw.weekly) {
                    (Some(_), Some(_)) => {
                        return Err(de::Error::custom("give either `preset` or `weekly`, not both"));
                    }
                    (Some(name), None) => self.visit_str::<A::Error>(name)?,
                    (None, Some(w)) => {
                        CalendarSpec { weekly: [w.mon, w.tue, w.wed, w.thu, w.fri, w.sat, w.sun], exceptions: BTreeMap::new() }
                    }
                    (None, None) => return Err(de::Error::custom("a calendar needs `weekly` or `preset`")),
                };
                spec.exceptions = raw.exceptions.into_iter().map(|(d, w)| (d.0, w)).collect();
                Ok(spec)
            }
        }
        d.deserialize_any(V)
    }
}
