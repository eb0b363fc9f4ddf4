//! Lenient scalars: KeyCRM sends numbers as strings, PHP's `[]` for empty objects and `null`
//! for absent values. A [`Loose`] accepts any JSON value without failing, so that the caller can
//! decide what it needs and name the field when it is not there.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

#[derive(Clone, Debug, Default, PartialEq)]
pub enum Loose<'a> {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    /// An array or object; its content is skipped.
    Composite,
}

impl<'a> Loose<'a> {
    /// An integer from a number or a numeric string (`23196`, `"23196"`, `16.0`).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Loose::Int(i) => Some(*i),
            Loose::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
            Loose::Str(s) => {
                let s = s.trim();
                s.parse::<i64>().ok().or_else(|| s.parse::<f64>().ok().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15).map(|f| f as i64))
            }
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Loose::Int(i) => Some(*i as f64),
            Loose::Float(f) => Some(*f),
            Loose::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Loose::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Text for matching: strings as they are, numbers in their plain decimal form.
    pub fn to_text(&self) -> Option<String> {
        match self {
            Loose::Str(s) => Some(s.to_string()),
            Loose::Int(i) => Some(i.to_string()),
            Loose::Float(f) if f.fract() == 0.0 => Some(format!("{}", *f as i64)),
            Loose::Float(f) => Some(f.to_string()),
            _ => None,
        }
    }

    pub fn is_absent(&self) -> bool {
        matches!(self, Loose::Null)
    }

    /// A short description of the value for error messages; strings are cut, never echoed whole.
    pub fn describe(&self) -> String {
        match self {
            Loose::Null => "null".into(),
            Loose::Bool(b) => b.to_string(),
            Loose::Int(i) => i.to_string(),
            Loose::Float(f) => f.to_string(),
            Loose::Str(s) => {
                let cut: String = s.chars().take(40).collect();
                if cut.len() < s.len() { format!("{cut:?}…") } else { format!("{cut:?}") }
            }
            Loose::Composite => "an array or object".into(),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Loose<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LooseVisitor(std::marker::PhantomData))
    }
}

struct LooseVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for LooseVisitor<'a> {
    type Value = Loose<'a>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Loose::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Loose::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(v).map_or(Loose::Float(v as f64), Loose::Int))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Loose::Float(v))
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Owned(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Loose::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Loose::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Loose::Composite)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Loose::Composite)
    }
}

/// An object that may arrive as PHP's empty array `[]` (or `null`): both mean "no object".
#[derive(Clone, Debug, PartialEq)]
pub struct MaybeObject<T>(pub Option<T>);

impl<T> Default for MaybeObject<T> {
    fn default() -> Self {
        MaybeObject(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for MaybeObject<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = MaybeObject<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object, [] or null")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(MaybeObject(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(MaybeObject(None))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(self)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(MaybeObject(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(|t| MaybeObject(Some(t)))
            }
        }
        deserializer.deserialize_any(V(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_arrive_as_numbers_or_strings() {
        let v: Vec<Loose> = serde_json::from_str(r#"[16, "16", 16.0, " 16 ", "2.00", null, [], {}]"#).unwrap();
        assert_eq!(v[0].as_i64(), Some(16));
        assert_eq!(v[1].as_i64(), Some(16));
        assert_eq!(v[2].as_i64(), Some(16));
        assert_eq!(v[3].as_i64(), Some(16));
        assert_eq!(v[4].as_f64(), Some(2.0));
        assert!(v[5].is_absent());
        assert_eq!(v[6], Loose::Composite);
        assert_eq!(v[7], Loose::Composite);
    }

    #[test]
    fn php_empty_array_is_an_absent_object() {
        #[derive(serde::Deserialize)]
        struct Offer {
            id: i64,
        }
        let v: Vec<MaybeObject<Offer>> = serde_json::from_str(r#"[[], null, {"id": 3}]"#).unwrap();
        assert!(v[0].0.is_none());
        assert!(v[1].0.is_none());
        assert_eq!(v[2].0.as_ref().map(|o| o.id), Some(3));
    }
}
