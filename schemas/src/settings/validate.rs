//! Every error of a settings document at once, each with its path, so that a person fixing a
//! document (or the settings page showing errors beside the fields) sees them all, not one per
//! attempt.
//!
//! The document is cut into independent parts (each calendar, each SLA limit, each cycle and
//! urgency rule, each other key), each part is read alone by the one reader,
//! [`ProjectSettings::from_json`], and the errors are gathered. Checks that span parts (cycle
//! ids used twice, `default_cycle` naming a cycle) run on the whole document once the parts
//! are fine.

use serde_json::{Map, Value};

use super::{ProjectSettings, SettingsError};

impl ProjectSettings {
    /// Reads a settings document, reporting every invalid part.
    pub fn validate_document(text: &str) -> Result<ProjectSettings, Vec<SettingsError>> {
        let root = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err(vec![SettingsError::at("", "the settings document must be a JSON object")]),
            Err(err) => return Err(vec![SettingsError::at("", format!("not JSON: {err}"))]),
        };
        let mut errors = Vec::new();
        for (key, value) in &root {
            match (key.as_str(), value) {
                ("calendars", Value::Object(calendars)) => {
                    for (name, value) in calendars {
                        match (name.as_str(), value) {
                            ("groups", Value::Object(groups)) => {
                                for (group, calendar) in groups {
                                    check(&mut errors, nest(&["calendars", "groups", group], calendar), None);
                                }
                            }
                            _ => check(&mut errors, nest(&["calendars", name], value), None),
                        }
                    }
                }
                ("sla", Value::Object(sla)) => {
                    for (name, value) in sla {
                        match (name.as_str(), value) {
                            ("normal" | "urgent", Value::Object(limits)) => {
                                for (group, limit) in limits {
                                    check(&mut errors, nest(&["sla", name, group], limit), None);
                                }
                            }
                            ("statuses", Value::Object(grids)) => {
                                for (grid, value) in grids {
                                    match value {
                                        Value::Object(limits) => {
                                            for (status, limit) in limits {
                                                check(&mut errors, nest(&["sla", "statuses", grid, status], limit), None);
                                            }
                                        }
                                        _ => check(&mut errors, nest(&["sla", "statuses", grid], value), None),
                                    }
                                }
                            }
                            _ => check(&mut errors, nest(&["sla", name], value), None),
                        }
                    }
                }
                ("cycles" | "urgency_rules", Value::Array(items)) => {
                    for (i, item) in items.iter().enumerate() {
                        let mut doc = Map::new();
                        doc.insert(key.clone(), Value::Array(vec![item.clone()]));
                        check(&mut errors, Value::Object(doc), Some((key, i)));
                    }
                }
                // Read with the whole document below.
                ("default_cycle" | "terminal_groups" | "completion_groups" | "cancellation_groups", _) => {}
                _ => check(&mut errors, nest(&[key], value), None),
            }
        }
        // The terminal groups belong together.
        let terminal: Map<String, Value> = root
            .iter()
            .filter(|(k, _)| matches!(k.as_str(), "terminal_groups" | "completion_groups" | "cancellation_groups"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        check(&mut errors, Value::Object(terminal), None);
        if !errors.is_empty() {
            errors.dedup();
            return Err(errors);
        }
        ProjectSettings::from_json(text).map_err(|e| vec![e])
    }
}

/// `{"a": {"b": value}}` from the path `a.b`.
fn nest(path: &[&str], value: &Value) -> Value {
    path.iter().rev().fold(value.clone(), |inner, key| {
        let mut map = Map::new();
        map.insert((*key).to_owned(), inner);
        Value::Object(map)
    })
}

/// Reads `part` alone and keeps its error; `item` renumbers `key[0]` in the error's path to
/// the item's place in the whole document.
fn check(errors: &mut Vec<SettingsError>, part: Value, item: Option<(&str, usize)>) {
    let Err(mut error) = ProjectSettings::from_json(&part.to_string()) else { return };
    if let Some((key, index)) = item {
        let read = format!("{key}[0]");
        if let Some(rest) = error.path.strip_prefix(&read) {
            error.path = format!("{key}[{index}]{rest}");
        }
    }
    errors.push(error);
}
