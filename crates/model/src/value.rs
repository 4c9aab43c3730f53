//! A compact attribute value. Scalars are held inline; objects and arrays (geometries,
//! structured values) are held as compact JSON text and parsed when used. An entity's
//! memory is dominated by its attribute values, and a `serde_json::Value` costs 80 bytes
//! before any heap (a Point geometry ~500 bytes); this costs 24 (and ~50 for a Point).
//!
//! It serialises exactly as the JSON value it holds, so the on-disk format is unchanged.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// An attribute's content.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Box<str>),
    /// An object or array, as compact JSON text.
    Json(Box<str>),
}

impl AttrValue {
    /// Converts from a JSON value.
    pub fn from_value(v: Value) -> AttrValue {
        match v {
            Value::Null => AttrValue::Null,
            Value::Bool(b) => AttrValue::Bool(b),
            Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => AttrValue::Int(i),
                (None, Some(f)) if n.is_f64() => AttrValue::Float(f),
                // u64 beyond i64: keep the exact text.
                _ => AttrValue::Json(n.to_string().into()),
            },
            Value::String(s) => AttrValue::Str(s.into()),
            other => AttrValue::Json(other.to_string().into()),
        }
    }

    /// The JSON value (objects and arrays are parsed from their text).
    pub fn to_value(&self) -> Value {
        match self {
            AttrValue::Null => Value::Null,
            AttrValue::Bool(b) => Value::Bool(*b),
            AttrValue::Int(i) => Value::from(*i),
            AttrValue::Float(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            AttrValue::Str(s) => Value::String(s.to_string()),
            // The text was produced by serde_json from a Value: it always parses back.
            AttrValue::Json(t) => serde_json::from_str(t).unwrap_or(Value::Null),
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, AttrValue::Null)
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            AttrValue::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl From<Value> for AttrValue {
    fn from(v: Value) -> Self {
        AttrValue::from_value(v)
    }
}

impl Serialize for AttrValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            AttrValue::Null => s.serialize_unit(),
            AttrValue::Bool(b) => s.serialize_bool(*b),
            AttrValue::Int(i) => s.serialize_i64(*i),
            AttrValue::Float(f) => s.serialize_f64(*f),
            AttrValue::Str(t) => s.serialize_str(t),
            // The text is already JSON: written as it is (no tree is built), for the
            // log, snapshots and history documents, which are all JSON.
            AttrValue::Json(t) => match serde_json::from_str::<&serde_json::value::RawValue>(t) {
                Ok(raw) => raw.serialize(s),
                Err(_) => self.to_value().serialize(s),
            },
        }
    }
}

impl<'de> Deserialize<'de> for AttrValue {
    /// Read as raw JSON text, one copy: an object or array without whitespace is kept
    /// as that text (what [`AttrValue::from_value`] would write for it, as the store's
    /// own log and snapshots hold it), without building a tree and writing it again,
    /// which cost half of a snapshot load's decoding; anything else goes through a
    /// `Value` as before.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<serde_json::value::RawValue>::deserialize(d)?;
        let text = raw.get();
        let compact = matches!(text.as_bytes().first(), Some(b'{' | b'['))
            && !text.bytes().any(|b| b.is_ascii_whitespace());
        if compact {
            return Ok(AttrValue::Json(raw.into()));
        }
        serde_json::from_str::<Value>(text)
            .map(AttrValue::from_value)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_every_json_shape() {
        for v in [
            json!(null),
            json!(true),
            json!(-5),
            json!(2.5),
            json!(2.0),
            json!(u64::MAX),
            json!("text"),
            json!([1, "a", {"b": null}]),
            json!({"type": "Point", "coordinates": [120.15, 30.25]}),
        ] {
            let a = AttrValue::from_value(v.clone());
            assert_eq!(a.to_value(), v);
            let text = serde_json::to_string(&a).unwrap();
            assert_eq!(
                serde_json::from_str::<Value>(&text).unwrap(),
                v,
                "serialises as itself"
            );
            assert_eq!(serde_json::from_str::<AttrValue>(&text).unwrap(), a);
        }
        assert_eq!(std::mem::size_of::<AttrValue>(), 24);
    }

    #[test]
    fn text_with_whitespace_is_made_compact() {
        let a: AttrValue = serde_json::from_str("{ \"a\" : [1, 2] }").unwrap();
        assert_eq!(a, AttrValue::Json("{\"a\":[1,2]}".into()));
        let a: AttrValue = serde_json::from_str("[\"a b\"]").unwrap();
        assert_eq!(a, AttrValue::Json("[\"a b\"]".into()));
        let a: AttrValue = serde_json::from_str("\"x\"").unwrap();
        assert_eq!(a, AttrValue::Str("x".into()));
    }
}
