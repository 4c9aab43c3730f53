//! A light JSON tree for decoded records. A record is read by a few paths and then
//! dropped, so objects are member lists: no hash table to build and hash every key
//! into (serde_json's `Map` is an ordered hash map), and a lookup compares the few keys
//! a record has. Measured on the import benchmark: decoding and mapping a JSON record
//! this way takes about a third less time than through `serde_json::Value`
//! (docs/benchmarks.md, ingestion).

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Number, Value};

/// One JSON value of a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Node>),
    /// Members in document order. A repeated key is kept twice (a dead letter gives the
    /// record back as it came); lookups see the last one, as `serde_json::Value` would.
    Object(Vec<(String, Node)>),
}

impl Node {
    /// The member `key` of an object (the last one when the key repeats).
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Object(m) => m.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Element `i` of an array.
    pub fn at(&self, i: usize) -> Option<&Node> {
        match self {
            Node::Array(a) => a.get(i),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Node::Null)
    }

    /// The value as a `serde_json::Value` (repeated keys: the last wins).
    pub fn to_value(&self) -> Value {
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Number(n) => Value::Number(n.clone()),
            Node::String(s) => Value::String(s.clone()),
            Node::Array(a) => Value::Array(a.iter().map(Node::to_value).collect()),
            Node::Object(m) => {
                let mut o = serde_json::Map::with_capacity(m.len());
                for (k, v) in m {
                    o.insert(k.clone(), v.to_value());
                }
                Value::Object(o)
            }
        }
    }
}

impl From<Value> for Node {
    fn from(v: Value) -> Node {
        match v {
            Value::Null => Node::Null,
            Value::Bool(b) => Node::Bool(b),
            Value::Number(n) => Node::Number(n),
            Value::String(s) => Node::String(s),
            Value::Array(a) => Node::Array(a.into_iter().map(Node::from).collect()),
            Value::Object(o) => Node::Object(o.into_iter().map(|(k, v)| (k, v.into())).collect()),
        }
    }
}

impl fmt::Display for Node {
    /// Compact JSON.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = serde_json::to_string(self).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Null => s.serialize_unit(),
            Node::Bool(b) => s.serialize_bool(*b),
            Node::Number(n) => n.serialize(s),
            Node::String(v) => s.serialize_str(v),
            Node::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for v in a {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Node::Object(m) => {
                let mut map = s.serialize_map(Some(m.len()))?;
                for (k, v) in m {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        // JSON has no NaN or infinity; a deserializer that yields one gets null, as
        // `serde_json::Value` does.
        Ok(Number::from_f64(v).map_or(Node::Null, Node::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(v) = seq.next_element()? {
            out.push(v);
        }
        Ok(Node::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Node, A::Error> {
        object(map)
    }
}

/// The rest of an object whose opening the caller's visitor has seen.
pub fn object<'de, A: MapAccess<'de>>(mut map: A) -> Result<Node, A::Error> {
    let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8).min(64));
    while let Some((k, v)) = map.next_entry::<String, Node>()? {
        out.push((k, v));
    }
    Ok(Node::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_through_text_and_value() {
        let text = r#"{"a":1,"b":[true,null,2.5,"x"],"c":{"d":-3,"e":18446744073709551615}}"#;
        let n: Node = serde_json::from_str(text).unwrap();
        assert_eq!(n.to_string(), text);
        let v: Value = serde_json::from_str(text).unwrap();
        assert_eq!(n.to_value(), v);
        assert_eq!(Node::from(v), n);
        assert_eq!(
            n.get("c").and_then(|c| c.get("d")),
            Some(&Node::Number((-3).into()))
        );
        assert_eq!(
            n.get("b").and_then(|b| b.at(2)).map(Node::to_value),
            Some(json!(2.5))
        );
        assert_eq!(n.get("zz"), None);
        assert_eq!(n.at(0), None);
    }

    #[test]
    fn a_repeated_key_reads_as_the_last_and_is_kept() {
        let n: Node = serde_json::from_str(r#"{"k":1,"k":2}"#).unwrap();
        assert_eq!(n.get("k"), Some(&Node::Number(2.into())));
        assert_eq!(n.to_value(), json!({"k": 2}));
        assert_eq!(n.to_string(), r#"{"k":1,"k":2}"#);
    }
}
