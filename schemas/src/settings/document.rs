//! The settings as a document again: every key written out, defaults included, in the shape
//! `ProjectSettings::from_json` reads. What the API serves, and what a change to one part of
//! the settings is merged into.

use serde_json::{Map, Value, json};

use super::{CalendarSpec, CycleEnd, CycleStart, NearThreshold, Occurrence, ProjectSettings, UrgencyMatch};

const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl ProjectSettings {
    /// The whole document, with every default written out. Reading it back gives the same
    /// settings.
    pub fn to_document(&self) -> Value {
        let mut doc = Map::new();
        doc.insert("timezone".into(), json!(self.timezone.name()));
        doc.insert("terminal_groups".into(), json!(self.terminal_groups));
        doc.insert("completion_groups".into(), json!(self.completion_groups));
        doc.insert("cancellation_groups".into(), json!(self.cancellation_groups));
        doc.insert(
            "calendars".into(),
            json!({
                "default": calendar(&self.calendars.default),
                "groups": self.calendars.groups.iter().map(|(g, c)| (g.to_string(), calendar(c))).collect::<Map<_, _>>(),
            }),
        );
        let near = match self.sla.near {
            NearThreshold::Percent(p) => json!({ "percent": p }),
            NearThreshold::BeforeSeconds(s) => json!({ "before": hours_minutes(s) }),
        };
        doc.insert(
            "sla".into(),
            json!({
                "near": near,
                "normal": limits(&self.sla.normal.groups),
                "urgent": limits(&self.sla.urgent.groups),
                "statuses": {"normal": limits(&self.sla.normal.statuses), "urgent": limits(&self.sla.urgent.statuses)},
            }),
        );
        doc.insert(
            "cycles".into(),
            self.cycles
                .iter()
                .map(|c| {
                    let start = match c.start {
                        CycleStart::Created => json!({ "kind": "created" }),
                        CycleStart::Group { id, occurrence } => endpoint("group", i64::from(id), occurrence),
                        CycleStart::Status { id, occurrence } => endpoint("status", id, occurrence),
                    };
                    let end = match c.end {
                        CycleEnd::Group { id, occurrence } => endpoint("group", i64::from(id), occurrence),
                        CycleEnd::Status { id, occurrence } => endpoint("status", id, occurrence),
                    };
                    json!({ "id": c.id, "title": c.title, "start": start, "end": end })
                })
                .collect(),
        );
        if let Some(id) = self.default_cycle {
            doc.insert("default_cycle".into(), json!(id));
        }
        doc.insert(
            "urgency_rules".into(),
            self.urgency_rules
                .iter()
                .map(|rule| {
                    let (kind, value) = match &rule.matches {
                        UrgencyMatch::Sku(sku) => ("sku", json!(sku)),
                        UrgencyMatch::OfferId(id) => ("offer_id", json!(id)),
                        UrgencyMatch::ProductId(id) => ("product_id", json!(id)),
                    };
                    let mut out = json!({ "match_type": kind, "match_value": value, "is_active": rule.is_active });
                    if let Some(name) = &rule.name {
                        out["name"] = json!(name);
                    }
                    out
                })
                .collect(),
        );
        Value::Object(doc)
    }
}

fn calendar(spec: &CalendarSpec) -> Value {
    let weekly: Map<String, Value> = WEEKDAYS
        .iter()
        .zip(&spec.weekly)
        .map(|(day, windows)| (day.to_string(), windows.iter().map(|w| w.to_string()).collect()))
        .collect();
    let exceptions: Map<String, Value> =
        spec.exceptions.iter().map(|(date, windows)| (date.to_string(), windows.iter().map(|w| w.to_string()).collect())).collect();
    json!({ "weekly": weekly, "exceptions": exceptions })
}

fn limits<K: ToString>(grid: &std::collections::BTreeMap<K, i64>) -> Value {
    Value::Object(grid.iter().map(|(k, seconds)| (k.to_string(), json!(hours_minutes(*seconds)))).collect())
}

/// Seconds as `HH:MM` (hours may exceed 24), as limits are entered.
pub fn hours_minutes(seconds: i64) -> String {
    let minutes = seconds / 60;
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

fn endpoint(kind: &str, id: i64, occurrence: Occurrence) -> Value {
    let occurrence = match occurrence {
        Occurrence::First => "first",
        Occurrence::Last => "last",
    };
    json!({ "kind": kind, "id": id, "occurrence": occurrence })
}
