//! The digest of a project's derived state, computed the same way from either database.
//!
//! What goes in: every `orders_current` row but `project_id` and `updated_at` (the project's id
//! may differ between two databases holding the same data) ordered by order id, then every
//! `order_cycle_metrics` row ordered by `(order_id, cycle_id)`. Instants are microseconds;
//! floats their IEEE bits (with `-0.0` as `0.0`, which SQLite does not keep apart); each field
//! is tagged and texts are length-prefixed, so no two different rows hash alike by accident.
//!
//! `derived_json` goes in canonically. Both databases now keep the text the processor wrote, but
//! rows written before PostgreSQL's migration 0006 hold what JSONB printed: keys reordered,
//! whitespace dropped, numbers rewritten (`1e3` comes back as `1000`). So the text is parsed and
//! re-rendered here with sorted keys, integers as integers and other numbers in Rust's shortest
//! round-trip form, and a migrated database digests like one written afresh.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::StateError;

/// An `orders_current` row as the digest reads it.
pub(crate) struct DigestOrder {
    pub order_id: i64,
    pub current_status_id: i64,
    pub last_status_group_id: i64,
    pub last_changed_at: i64,
    pub started_at: i64,
    pub untracked_seconds: f64,
    pub delivery_entered_at: Option<i64>,
    pub cycle_duration_to_delivery: Option<f64>,
    pub closed_at: Option<i64>,
    pub cycle_rule_id_applied: Option<i64>,
    pub urgency: String,
    pub sla_state: String,
    pub event_count: i64,
    pub settings_revision: i64,
    pub derived_json: String,
}

/// An `order_cycle_metrics` row as the digest reads it.
pub(crate) struct DigestCycle {
    pub order_id: i64,
    pub cycle_id: i64,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub wall_seconds: f64,
    pub working_seconds: f64,
    pub is_open: bool,
}

/// Fed all orders first, then all cycles, each in key order.
pub(crate) struct DerivedDigest {
    hasher: Sha256,
    orders: i64,
    cycles: i64,
}

impl DerivedDigest {
    pub fn new() -> Self {
        let mut digest = DerivedDigest { hasher: Sha256::new(), orders: 0, cycles: 0 };
        digest.text("ksa derived digest v1");
        digest
    }

    pub fn order(&mut self, row: &DigestOrder) -> Result<(), StateError> {
        let json = canonical_json(&row.derived_json)
            .map_err(|e| StateError::Corrupt(format!("derived_json of order {} is not JSON: {e}", row.order_id)))?;
        self.tag(b'O');
        self.int(row.order_id);
        self.int(row.current_status_id);
        self.int(row.last_status_group_id);
        self.int(row.last_changed_at);
        self.int(row.started_at);
        self.float(row.untracked_seconds);
        self.opt_int(row.delivery_entered_at);
        self.opt_float(row.cycle_duration_to_delivery);
        self.opt_int(row.closed_at);
        self.opt_int(row.cycle_rule_id_applied);
        self.text(&row.urgency);
        self.text(&row.sla_state);
        self.int(row.event_count);
        self.int(row.settings_revision);
        self.text(&json);
        self.orders += 1;
        Ok(())
    }

    pub fn cycle(&mut self, row: &DigestCycle) {
        self.tag(b'C');
        self.int(row.order_id);
        self.int(row.cycle_id);
        self.int(row.started_at);
        self.opt_int(row.ended_at);
        self.float(row.wall_seconds);
        self.float(row.working_seconds);
        self.int(i64::from(row.is_open));
        self.cycles += 1;
    }

    /// Lower-case hex SHA-256.
    pub fn finish(mut self) -> String {
        self.tag(b'E');
        self.int(self.orders);
        self.int(self.cycles);
        self.hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    fn tag(&mut self, tag: u8) {
        self.hasher.update([tag]);
    }

    fn int(&mut self, value: i64) {
        self.hasher.update([b'i']);
        self.hasher.update(value.to_be_bytes());
    }

    fn opt_int(&mut self, value: Option<i64>) {
        match value {
            Some(value) => self.int(value),
            None => self.hasher.update([b'n']),
        }
    }

    fn float(&mut self, value: f64) {
        let value = if value == 0.0 {
            0.0
        } else if value.is_nan() {
            f64::NAN
        } else {
            value
        };
        self.hasher.update([b'f']);
        self.hasher.update(value.to_bits().to_be_bytes());
    }

    fn opt_float(&mut self, value: Option<f64>) {
        match value {
            Some(value) => self.float(value),
            None => self.hasher.update([b'n']),
        }
    }

    fn text(&mut self, value: &str) {
        self.hasher.update([b's']);
        self.hasher.update((value.len() as u64).to_be_bytes());
        self.hasher.update(value.as_bytes());
    }
}

/// `text` re-rendered so that equal JSON values give equal text, whichever database kept it.
fn canonical_json(text: &str) -> Result<String, serde_json::Error> {
    let value: Value = serde_json::from_str(text)?;
    let mut out = String::with_capacity(text.len());
    write_value(&value, &mut out);
    Ok(out)
}

fn write_value(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            // Sorted here, not by the map: serde_json keeps insertion order when any crate in
            // the build turns on its `preserve_order` feature.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_value(item, out);
            }
            out.push('}');
        }
    }
}

/// Integers (also integral floats such as `2.0` or `1e3`) as integers, other numbers in the
/// shortest form that reads back as the same `f64`.
fn write_number(n: &serde_json::Number, out: &mut String) {
    use std::fmt::Write;
    if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else if let Some(f) = n.as_f64() {
        // 2^63: below it an integral f64 converts to i64 exactly.
        if f.fract() == 0.0 && f.abs() < 9_223_372_036_854_775_808.0 {
            let _ = write!(out, "{}", f as i64);
        } else {
            let _ = write!(out, "{f:?}");
        }
    }
}

fn write_string(s: &str, out: &mut String) {
    use std::fmt::Write;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c < ' ' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(text: &str) -> String {
        canonical_json(text).expect("valid JSON")
    }

    #[test]
    fn key_order_whitespace_and_escapes_do_not_change_the_canonical_text() {
        let written = r#"{ "b": [1, {"y": null, "x": true}], "a": "\u0421\u0442\u0430\u0442\u0443\u0441" }"#;
        let as_jsonb_renders_it = r#"{"a": "Статус", "b": [1, {"x": true, "y": null}]}"#;
        assert_eq!(canonical(written), canonical(as_jsonb_renders_it));
        assert_eq!(canonical(written), r#"{"a":"Статус","b":[1,{"x":true,"y":null}]}"#);
    }

    #[test]
    fn numbers_that_jsonb_rewrites_keep_their_canonical_text() {
        for (serde_wrote, jsonb_renders) in
            [("1e3", "1000"), ("2.0", "2.0"), ("1.5e-7", "0.00000015"), ("1e16", "10000000000000000"), ("-0.0", "0.0")]
        {
            assert_eq!(canonical(serde_wrote), canonical(jsonb_renders), "{serde_wrote} vs {jsonb_renders}");
        }
        assert_eq!(canonical("0.1"), "0.1");
        assert_ne!(canonical("0.1"), canonical("0.10000000000000002"));
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(canonical(r#""a\u0001\n\"""#), r#""a\u0001\n\"""#);
    }

    #[test]
    fn the_digest_depends_on_every_field_and_the_order_of_rows() {
        let order = |order_id, urgency: &str| DigestOrder {
            order_id,
            current_status_id: 20,
            last_status_group_id: 1,
            last_changed_at: 1,
            started_at: 0,
            untracked_seconds: 0.0,
            delivery_entered_at: None,
            cycle_duration_to_delivery: Some(1.5),
            closed_at: None,
            cycle_rule_id_applied: None,
            urgency: urgency.to_owned(),
            sla_state: "none".to_owned(),
            event_count: 1,
            settings_revision: 1,
            derived_json: "{}".to_owned(),
        };
        let digest = |rows: &[DigestOrder]| {
            let mut digest = DerivedDigest::new();
            for row in rows {
                digest.order(row).expect("valid row");
            }
            digest.finish()
        };
        let base = digest(&[order(1, "normal"), order(2, "normal")]);
        assert_eq!(base.len(), 64);
        assert_eq!(base, digest(&[order(1, "normal"), order(2, "normal")]));
        assert_ne!(base, digest(&[order(1, "normal"), order(2, "urgent")]));
        assert_ne!(base, digest(&[order(2, "normal"), order(1, "normal")]));
        assert_ne!(base, digest(&[order(1, "normal")]));
    }
}
