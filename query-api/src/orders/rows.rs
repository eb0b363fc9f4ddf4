//! The shapes of answers about orders: a row of the list (the stored row measured at `as_of`,
//! with names and the override), and a timeline with each interval's working segments.

use std::collections::HashMap;

use chrono::{Offset, TimeZone};
use ksa_domain::{OrderTimeline, ProjectRules};
use ksa_schemas::Timestamp;
use ksa_schemas::row::OrderRow;
use ksa_state::StateStore;
use ksa_state::admin::OrderOverride;
use serde_json::{Value, json};

use crate::admin::overrides::override_json;
use crate::error::ApiError;

/// The project's names of statuses and groups.
#[derive(Clone, Debug, Default)]
pub struct Names {
    pub statuses: HashMap<i64, String>,
    /// In id order.
    pub groups: Vec<(u16, String)>,
}

impl Names {
    pub async fn load<S: StateStore>(state: &S, project_id: i64) -> Result<Names, ApiError> {
        let statuses = state.statuses(project_id).await?.into_iter().map(|s| (s.status_id, s.name)).collect();
        let mut groups: Vec<(u16, String)> = state.status_groups(project_id).await?.into_iter().map(|g| (g.group_id, g.name)).collect();
        groups.sort_by_key(|(id, _)| *id);
        Ok(Names { statuses, groups })
    }

    pub fn status(&self, id: i64) -> Option<&str> {
        self.statuses.get(&id).map(String::as_str)
    }

    pub fn group(&self, id: u16) -> Option<&str> {
        self.groups.iter().find(|(g, _)| *g == id).map(|(_, name)| name.as_str())
    }
}

/// One row of `GET /api/orders` (and of the live feed): the row with its current status's and
/// group's names and, in lists, the order's override (`null` when it has none). Written out
/// directly, without a JSON tree in between.
#[derive(serde::Serialize)]
pub struct ListedRow<'a> {
    #[serde(flatten)]
    pub row: &'a OrderRow,
    pub current_status_name: Option<&'a str>,
    pub current_group_name: Option<&'a str>,
    /// `None`: left out (the live feed's rows).
    #[serde(rename = "override", skip_serializing_if = "Option::is_none")]
    pub overridden: Option<Value>,
}

impl<'a> ListedRow<'a> {
    pub fn new(row: &'a OrderRow, names: &'a Names, stored: Option<Option<&OrderOverride>>) -> Self {
        ListedRow {
            row,
            current_status_name: names.status(row.current_status_id),
            current_group_name: names.group(row.current_group_id),
            overridden: stored.map(|o| o.map_or(Value::Null, override_json)),
        }
    }
}

/// The UTC offset of `tz` at `at`, as `+02:00`.
pub fn offset_at(tz: chrono_tz::Tz, at: Timestamp) -> String {
    let utc = chrono::DateTime::from_timestamp_micros(at.as_micros()).unwrap_or_default().naive_utc();
    tz.offset_from_utc_datetime(&utc).fix().to_string()
}

/// `GET /api/orders/{id}/timeline`'s answer: the timeline at `as_of`; each interval with the
/// limits that applied and its segments in its group's calendar (`[{from, to, working,
/// offset}]`, in UTC with the calendar's offset at `from`); the row's totals, urgency and why,
/// the next SLA change; names; and the override.
pub fn timeline_json(
    timeline: &OrderTimeline,
    row: &OrderRow,
    rules: &ProjectRules,
    names: &Names,
    stored: Option<&OrderOverride>,
) -> Value {
    let mut value = serde_json::to_value(timeline).unwrap_or(Value::Null);
    let Value::Object(map) = &mut value else { return value };
    if let Some(Value::Array(intervals)) = map.get_mut("intervals") {
        for (interval, value) in timeline.intervals.iter().zip(intervals.iter_mut()) {
            let Value::Object(fields) = value else { continue };
            let clock = rules.clock_for_group(interval.group_id);
            let tz = clock.calendar().timezone();
            let until = interval.left_at.unwrap_or(timeline.as_of);
            let segments: Vec<Value> = clock
                .segments(interval.entered_at, until)
                .into_iter()
                .map(|(from, to, working)| json!({"from": from, "to": to, "working": working, "offset": offset_at(tz, from)}))
                .collect();
            fields.insert("segments".into(), Value::Array(segments));
            fields.insert("group_limit_seconds".into(), json!(row.groups.get(&interval.group_id).and_then(|g| g.limit_seconds)));
            fields.insert("status_limit_seconds".into(), json!(row.statuses.get(&interval.status_id).and_then(|s| s.limit_seconds)));
            fields.insert("status_name".into(), json!(names.status(interval.status_id)));
            fields.insert("group_name".into(), json!(names.group(interval.group_id)));
        }
    }
    map.insert("urgency_source".into(), serde_json::to_value(&row.urgency_source).unwrap_or(Value::Null));
    map.insert("sla_next".into(), serde_json::to_value(&row.sla_next).unwrap_or(Value::Null));
    map.insert("crossings".into(), serde_json::to_value(&row.crossings).unwrap_or(Value::Null));
    map.insert("current_status_name".into(), json!(names.status(row.current_status_id)));
    map.insert("current_group_name".into(), json!(names.group(row.current_group_id)));
    map.insert("timezone".into(), json!(rules.settings.timezone.name()));
    map.insert("override".into(), stored.map_or(Value::Null, override_json));
    map.insert("settings_revision".into(), json!(row.settings_revision));
    value
}
