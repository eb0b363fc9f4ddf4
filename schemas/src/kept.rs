//! What is kept of a webhook body. KeyCRM's order context carries free text (the manager's and
//! the client's comments, a gift message) that holds customers' names, phones and addresses,
//! and other events may nest buyer or shipping objects. None of it is needed to time statuses.
//! Ingest keeps an allow-listed projection instead of the body: the ids, statuses, timestamps,
//! money totals, source and marketing fields listed in [`KEPT_CONTEXT_FIELDS`], and the click
//! ids ([`CLICK_IDS`]) found in the comments; the rest is dropped before the record is written
//! anywhere. The projection has the body's shape, so it reads back as a webhook.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use crate::loose::{Loose, MaybeObject};

/// The fields of a webhook's `context` that are kept, when they are scalars (strings, numbers,
/// booleans or null; arrays and objects are dropped whatever their name).
pub const KEPT_CONTEXT_FIELDS: &[&str] = &[
    // Identity and status.
    "id",
    "parent_id",
    "status_id",
    "status_group_id",
    "status_on_source",
    "closed_from",
    "is_expired",
    // Timestamps.
    "status_changed_at",
    "status_expired_at",
    "created_at",
    "ordered_at",
    "updated_at",
    "closed_at",
    "deleted_at",
    "last_synced_at",
    "source_updated_at",
    // Source and people, by id only.
    "source_id",
    "source_uuid",
    "global_source_uuid",
    "client_id",
    "manager_id",
    "shipping_type_id",
    // Money.
    "grand_total",
    "total_discount",
    "margin_sum",
    "expenses_sum",
    "discount_amount",
    "discount_percent",
    "shipping_price",
    "taxes",
    "payments_total",
    "products_total",
    "payment_status",
    "fiscal_status",
    // Marketing.
    "promocode",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
];

/// The click ids that KeyCRM keeps only inside the manager's comment; kept as `context.marketing`.
pub const CLICK_IDS: [&str; 3] = ["fbclid", "_fbc", "_fbp"];

/// The free-text fields searched for [`CLICK_IDS`] (and then dropped).
const COMMENTS: [&str; 2] = ["manager_comment", "client_comment"];

#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow, default)]
    event: Loose<'a>,
    #[serde(borrow, default)]
    context: MaybeObject<Context<'a>>,
}

/// A webhook's `context` as far as it is kept: the values of [`KEPT_CONTEXT_FIELDS`] (by their
/// index there) and the comments, each the last of its name (as a JSON object with a repeated
/// name reads); every other value is skipped unread.
struct Context<'a> {
    kept: Vec<Option<Loose<'a>>>,
    comments: [Loose<'a>; COMMENTS.len()],
}

impl<'de: 'a, 'a> Deserialize<'de> for Context<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Context<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut context = Context { kept: vec![None; KEPT_CONTEXT_FIELDS.len()], comments: Default::default() };
                while let Some(Name(name)) = map.next_key::<Name>()? {
                    if let Some(index) = KEPT_CONTEXT_FIELDS.iter().position(|field| *field == name) {
                        context.kept[index] = Some(map.next_value()?);
                    } else if let Some(index) = COMMENTS.iter().position(|comment| *comment == name) {
                        context.comments[index] = map.next_value()?;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(context)
            }
        }
        deserializer.deserialize_map(V(std::marker::PhantomData))
    }
}

/// An object's member name, borrowed from the body unless it has escapes.
struct Name<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Name<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Name<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(V(std::marker::PhantomData))
    }
}

/// A kept scalar, written as the JSON value it was read as.
struct Scalar<'s, 'a>(&'s Loose<'a>);

impl Serialize for Scalar<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Loose::Null | Loose::Composite => serializer.serialize_unit(),
            Loose::Bool(b) => serializer.serialize_bool(*b),
            Loose::Int(i) => serializer.serialize_i64(*i),
            Loose::Float(f) => serializer.serialize_f64(*f),
            Loose::Str(s) => serializer.serialize_str(s),
        }
    }
}

/// Whether a value is kept: scalars are (a float only when JSON can write it), arrays and
/// objects are not.
fn is_scalar(value: &Loose) -> bool {
    match value {
        Loose::Composite => false,
        Loose::Float(f) => f.is_finite(),
        _ => true,
    }
}

/// What is written for a kept field of the context.
enum KeptValue<'s, 'a> {
    Scalar(Scalar<'s, 'a>),
    Marketing(&'s BTreeMap<&'static str, String>),
}

impl Serialize for KeptValue<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            KeptValue::Scalar(scalar) => scalar.serialize(serializer),
            KeptValue::Marketing(marketing) => marketing.serialize(serializer),
        }
    }
}

/// The kept projection of a webhook body, as JSON text; `None` when the body is not a JSON
/// object (such a body is refused before anything is kept). Members are written in the order
/// of their names, at every level.
pub fn kept_payload(body: &[u8]) -> Option<String> {
    let body: Body = serde_json::from_slice(body).ok()?;
    let null = Loose::Null;
    let event = Scalar(if is_scalar(&body.event) { &body.event } else { &null });
    let mut out = Vec::with_capacity(1024);
    let mut writer = serde_json::Serializer::new(&mut out);
    let mut map = writer.serialize_map(None).ok()?;
    if let Some(context) = &body.context.0 {
        let mut marketing = BTreeMap::new();
        for comment in context.comments.iter().filter_map(Loose::as_str) {
            for name in CLICK_IDS {
                if let (false, Some(value)) = (marketing.contains_key(name), find_param(comment, name)) {
                    marketing.insert(name, value);
                }
            }
        }
        let mut kept: Vec<(&str, KeptValue)> = KEPT_CONTEXT_FIELDS
            .iter()
            .zip(&context.kept)
            .filter_map(|(name, value)| value.as_ref().filter(|v| is_scalar(v)).map(|v| (*name, KeptValue::Scalar(Scalar(v)))))
            .collect();
        if !marketing.is_empty() {
            kept.push(("marketing", KeptValue::Marketing(&marketing)));
        }
        kept.sort_unstable_by_key(|(name, _)| *name);
        map.serialize_entry("context", &Members(&kept)).ok()?;
    }
    map.serialize_entry("event", &event).ok()?;
    map.end().ok()?;
    String::from_utf8(out).ok()
}

/// Members already in order, written as an object.
struct Members<'m, 's, 'a>(&'m [(&'m str, KeptValue<'s, 'a>)]);

impl Serialize for Members<'_, '_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// The value after `name=` or `name:` (optionally spaced) in free text, where `name` starts a
/// word (so `_fbc` is not found inside `x_fbc`, and `fbclid` is found in `?fbclid=` of a URL):
/// letters, digits and `. _ -` only, so nothing personal around it comes along.
pub fn find_param(text: &str, name: &str) -> Option<String> {
    let mut from = 0;
    while let Some(found) = text[from..].find(name) {
        let start = from + found;
        let end = start + name.len();
        from = end;
        let before = text[..start].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = text[end..].trim_start();
        let Some(rest) = rest.strip_prefix('=').or_else(|| rest.strip_prefix(':')) else { continue };
        let value: String = rest.trim_start().chars().take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')).collect();
        if !value.is_empty() {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    use super::*;

    /// The projection built the plain way, through `serde_json::Value`: what [`kept_payload`]
    /// must write, byte for byte.
    fn kept_by_value(body: &[u8]) -> Option<String> {
        #[derive(Deserialize)]
        struct Plain<'a> {
            #[serde(borrow, default)]
            event: Loose<'a>,
            #[serde(borrow, default)]
            context: MaybeObject<BTreeMap<Cow<'a, str>, Loose<'a>>>,
        }
        fn scalar(value: &Loose) -> Option<Value> {
            match value {
                Loose::Null => Some(Value::Null),
                Loose::Bool(b) => Some(Value::Bool(*b)),
                Loose::Int(i) => Some(Value::from(*i)),
                Loose::Float(f) => serde_json::Number::from_f64(*f).map(Value::Number),
                Loose::Str(s) => Some(Value::String(s.to_string())),
                Loose::Composite => None,
            }
        }
        let body: Plain = serde_json::from_slice(body).ok()?;
        let mut out = Map::new();
        out.insert("event".into(), scalar(&body.event).unwrap_or(Value::Null));
        if let Some(context) = body.context.0 {
            let mut kept = Map::new();
            for field in KEPT_CONTEXT_FIELDS {
                if let Some(value) = context.get(*field).and_then(scalar) {
                    kept.insert((*field).into(), value);
                }
            }
            let mut marketing = Map::new();
            for comment in COMMENTS.iter().filter_map(|name| context.get(*name).and_then(Loose::as_str)) {
                for name in CLICK_IDS {
                    if let (false, Some(value)) = (marketing.contains_key(name), find_param(comment, name)) {
                        marketing.insert(name.into(), Value::String(value));
                    }
                }
            }
            if !marketing.is_empty() {
                kept.insert("marketing".into(), Value::Object(marketing));
            }
            out.insert("context".into(), Value::Object(kept));
        }
        Some(Value::Object(out).to_string())
    }

    fn member_name() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => proptest::sample::select(KEPT_CONTEXT_FIELDS).prop_map(str::to_string),
            2 => proptest::sample::select(&COMMENTS[..]).prop_map(str::to_string),
            1 => "[a-z_]{1,12}",
        ]
    }

    fn member_value() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("null".to_string()),
            any::<bool>().prop_map(|b| b.to_string()),
            any::<i64>().prop_map(|i| i.to_string()),
            (u64::MAX / 2..u64::MAX).prop_map(|u| u.to_string()),
            (-1.0e12f64..1.0e12).prop_map(|f| format!("{f:?}")),
            "[a-zA-Z0-9 :=._№іє-]{0,24}".prop_map(|t| serde_json::to_string(&t).unwrap()),
            "(fbclid|_fbc|_fbp|x_fbc)[=:] ?[a-z0-9._-]{0,8}( Тел\\. \\+380[0-9]{9})?".prop_map(|t| serde_json::to_string(&t).unwrap()),
            Just(r#""esc\"aped \u0456 \n""#.to_string()),
            Just("[]".to_string()),
            Just(r#"{"phone":"+380501234567"}"#.to_string()),
        ]
    }

    proptest! {
        #[test]
        fn the_projection_is_written_as_the_plain_way_writes_it(
            members in proptest::collection::vec((member_name(), member_value()), 0..30),
            event in member_value(),
            context_kind in 0..4u8,
        ) {
            let context = match context_kind {
                0 => String::new(),
                1 => r#","context":[]"#.to_string(),
                2 => r#","context":null"#.to_string(),
                _ => format!(
                    r#","context":{{{}}}"#,
                    members.iter().map(|(name, value)| format!("{}:{value}", serde_json::to_string(name).unwrap())).collect::<Vec<_>>().join(",")
                ),
            };
            let body = format!(r#"{{"event":{event}{context}}}"#);
            prop_assert_eq!(kept_payload(body.as_bytes()), kept_by_value(body.as_bytes()), "{}", body);
        }
    }

    #[test]
    fn an_escaped_member_name_is_read_as_its_text() {
        let body = br#"{"event":"e","context":{"st\u0061tus_id":7,"id":1}}"#;
        assert_eq!(kept_payload(body).as_deref(), Some(r#"{"context":{"id":1,"status_id":7},"event":"e"}"#));
        assert_eq!(kept_payload(body), kept_by_value(body));
    }

    #[test]
    fn comments_nested_objects_and_unknown_fields_are_dropped_click_ids_kept() {
        let body = br#"{"event":"order.change_order_status","context":{"id":"23196","status_id":20,
            "status_group_id":2,"status_changed_at":"2026-01-29T18:53:35.000000Z","grand_total":"2.00",
            "manager_comment":"Ivan, +380501234567, ivan@example.com https://x.example/?fbclid=IwAR0abc_1 _fbp: fb.1.2.3",
            "client_comment":"call me 0671234567","gift_message":"for Olena","buyer":{"phone":"+380501234567"},
            "discount_data":[],"something_new":"maybe personal","is_gift":false}}"#;
        let kept: Value = serde_json::from_str(&kept_payload(body).unwrap()).unwrap();
        assert_eq!(
            kept,
            serde_json::json!({"event":"order.change_order_status","context":{"id":"23196","status_id":20,
                "status_group_id":2,"status_changed_at":"2026-01-29T18:53:35.000000Z","grand_total":"2.00",
                "marketing":{"fbclid":"IwAR0abc_1","_fbp":"fb.1.2.3"}}})
        );
    }

    #[test]
    fn the_projection_reads_back_as_the_same_event() {
        let body = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/keycrm/webhook_status_change.json")).unwrap();
        let kept = kept_payload(&body).unwrap();
        assert!(!kept.contains("380501234567") && !kept.contains("manager_comment"), "{kept}");
        assert_eq!(crate::parse_webhook(kept.as_bytes()).unwrap(), crate::parse_webhook(&body).unwrap());
    }

    #[test]
    fn names_inside_other_words_or_without_a_value_do_not_count() {
        assert_eq!(find_param("x_fbc=1 _fbc=2", "_fbc").as_deref(), Some("2"));
        assert_eq!(find_param("fbclid is missing", "fbclid"), None);
        assert_eq!(find_param("fbclid= ", "fbclid"), None);
    }

    #[test]
    fn a_body_that_is_not_an_object_keeps_nothing() {
        assert_eq!(kept_payload(b"[1,2]"), None);
        assert_eq!(kept_payload(b"not json"), None);
        assert_eq!(kept_payload(br#"{"event":"x","context":[]}"#).as_deref(), Some(r#"{"event":"x"}"#));
    }
}
