//! `orderBy` (NGSI-LD 1.9): sorting query results by entity members and attribute
//! values, e.g. `type;asc,name.subProperty;desc,name`.
//!
//! Each term is `id`, `type`, `createdAt`, `modifiedAt` or an attribute path
//! (`attr`, `attr.subAttr`, `attr.createdAt`/`modifiedAt`/`observedAt`), optionally
//! followed by `;asc` (the default) or `;desc`. Values compare numbers before booleans
//! before text; an entity without the value sorts last in either direction. Ties keep
//! id order.

use std::cmp::Ordering;

use citybrain_model::{AttrValue, Attribute, Entity, JsonLdContext};

use crate::error::{BrokerError, Result};

#[derive(Debug, Clone, PartialEq)]
enum Key {
    Id,
    Type,
    CreatedAt,
    ModifiedAt,
    /// Expanded attribute name, then a path inside it.
    Attr(String, Vec<String>),
}

/// A parsed `orderBy`.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderBy(Vec<(Key, bool)>);

/// A comparable value (the variant order is the sort order of kinds).
#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum SortValue {
    Num(f64),
    Bool(bool),
    Text(String),
}

fn time_member(s: &str) -> bool {
    matches!(s, "createdAt" | "modifiedAt" | "observedAt")
}

impl OrderBy {
    pub fn parse(s: &str, ld: &JsonLdContext) -> Result<OrderBy> {
        let mut terms = Vec::new();
        for raw in crate::query::split_list("orderBy", s)? {
            let (path, dir) = match raw.split_once(';') {
                Some((p, "asc")) => (p, false),
                Some((p, "desc")) => (p, true),
                Some((_, d)) => {
                    return Err(BrokerError::bad_data(format!(
                        "'orderBy' direction must be asc or desc, got '{d}'"
                    )))
                }
                None => (raw.as_str(), false),
            };
            let key = match path {
                "id" => Key::Id,
                "type" => Key::Type,
                "createdAt" => Key::CreatedAt,
                "modifiedAt" => Key::ModifiedAt,
                p => {
                    let mut parts = p.split('.');
                    let attr = parts.next().unwrap_or_default();
                    citybrain_model::entity::validate_name("attribute in 'orderBy'", attr)?;
                    let rest: Vec<String> = parts
                        .map(|x| {
                            citybrain_model::entity::validate_name("member in 'orderBy'", x)?;
                            Ok(if time_member(x) {
                                x.to_string()
                            } else {
                                ld.expand(x)
                            })
                        })
                        .collect::<Result<_>>()?;
                    Key::Attr(ld.expand(attr), rest)
                }
            };
            terms.push((key, dir));
        }
        Ok(OrderBy(terms))
    }

    /// Orders two entities.
    pub fn compare(&self, a: &Entity, b: &Entity) -> Ordering {
        for (key, desc) in &self.0 {
            let (x, y) = (value(key, a), value(key, b));
            let o = match (x, y) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(x), Some(y)) => {
                    let o = x.partial_cmp(&y).unwrap_or(Ordering::Equal);
                    if *desc {
                        o.reverse()
                    } else {
                        o
                    }
                }
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        a.id.cmp(&b.id)
    }
}

fn of_attr_value(v: &AttrValue) -> Option<SortValue> {
    match v {
        AttrValue::Null => None,
        AttrValue::Bool(b) => Some(SortValue::Bool(*b)),
        AttrValue::Int(i) => Some(SortValue::Num(*i as f64)),
        AttrValue::Float(f) => Some(SortValue::Num(*f)),
        AttrValue::Str(s) => Some(SortValue::Text(s.to_string())),
        AttrValue::Json(t) => Some(SortValue::Text(t.to_string())),
    }
}

fn at_path(a: &Attribute, path: &[String]) -> Option<SortValue> {
    let time = |t: &chrono::DateTime<chrono::Utc>| SortValue::Num(t.timestamp_micros() as f64);
    match path.split_first() {
        None => of_attr_value(&a.value),
        Some((m, _)) if m == "createdAt" => Some(time(&a.created_at)),
        Some((m, _)) if m == "modifiedAt" => Some(time(&a.modified_at)),
        Some((m, _)) if m == "observedAt" => a.observed_at.as_ref().map(time),
        Some((sub, rest)) => at_path(a.sub_attr(sub)?, rest),
    }
}

fn value(key: &Key, e: &Entity) -> Option<SortValue> {
    match key {
        Key::Id => Some(SortValue::Text(e.id.clone())),
        Key::Type => e.types.first().map(|t| SortValue::Text(t.to_string())),
        Key::CreatedAt => Some(SortValue::Num(e.created_at.timestamp_micros() as f64)),
        Key::ModifiedAt => Some(SortValue::Num(e.modified_at.timestamp_micros() as f64)),
        Key::Attr(name, path) => {
            let instances = e.attr(name)?;
            let a = instances
                .iter()
                .find(|a| a.dataset_id().is_none())
                .or_else(|| instances.first())?;
            at_path(a, path)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use citybrain_model::entity::parse_entity;
    use citybrain_model::time::{Clock as _, SystemClock};
    use serde_json::json;

    fn e(id: &str, ty: &str, name: &str, sub: i64) -> Entity {
        let body = json!({"id": id, "type": ty, "name": {"type": "Property", "value": name,
            "sub": {"type": "Property", "value": sub}}});
        parse_entity(
            body.as_object().unwrap(),
            &JsonLdContext::core(),
            SystemClock.now_precise(),
        )
        .unwrap()
    }

    #[test]
    fn terms_directions_and_missing_values() {
        let ld = JsonLdContext::core();
        let mut v = [
            e("urn:a:3", "B", "C", 1),
            e("urn:a:1", "A", "B", 3),
            e("urn:a:2", "A", "A", 2),
        ];
        let mut sort = |s: &str| {
            let o = OrderBy::parse(s, &ld).unwrap();
            v.sort_by(|a, b| o.compare(a, b));
            v.iter().map(|x| x.id.clone()).collect::<Vec<_>>()
        };
        assert_eq!(sort("name"), ["urn:a:2", "urn:a:1", "urn:a:3"]);
        assert_eq!(sort("name;desc"), ["urn:a:3", "urn:a:1", "urn:a:2"]);
        assert_eq!(sort("name.sub"), ["urn:a:3", "urn:a:2", "urn:a:1"]);
        assert_eq!(
            sort("type;asc,name.sub;desc"),
            ["urn:a:1", "urn:a:2", "urn:a:3"]
        );
        assert_eq!(sort("missing;desc,id"), ["urn:a:1", "urn:a:2", "urn:a:3"]);
        assert!(OrderBy::parse("name;up", &ld).is_err());
        assert!(OrderBy::parse("na me", &ld).is_err());
        assert!(OrderBy::parse("a,,b", &ld).is_err());
    }
}
