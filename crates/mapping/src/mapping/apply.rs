//! Applying a compiled mapping to one record: filters, fields, id and type, time,
//! location and attributes, giving a normalized NGSI-LD entity fragment or a
//! [`Reject`] naming the field.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use citybrain_model::{AttrKind, Attribute, Entity, Instances, JsonLdContext};
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use serde_json::{Map, Number, Value};

use super::compile::{Attr, Cond, Field, Geometry, Mapping, Part, Source, Template};
use super::spec::ValueType;
use crate::record::Record;
use crate::reject::{Reason, Reject};

/// Characters escaped in values substituted into an entity id, so that the id stays a
/// URI (and the escaping can be undone).
const ID_ESCAPE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// Variables from outside the record: MQTT topic captures.
pub type Vars = [(String, String)];

/// Owned topic captures, as [`Mapping::match_topic`] answers them.
pub type TopicVars = Vec<(String, String)>;

/// What a record maps to.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    /// An entity fragment: id, type, the mapped attributes.
    Entity(MappedRecord),
    /// A filter left the record out.
    Filtered,
}

/// The content of a mapped attribute.
#[derive(Debug, Clone, PartialEq)]
pub enum MappedValue {
    Property(Value),
    /// The object's entity id.
    Relationship(String),
    /// A GeoJSON geometry (validated).
    Geo(Value),
}

/// One mapped attribute (short name, as in the mapping).
#[derive(Debug, Clone, PartialEq)]
pub struct MappedAttr {
    pub name: Arc<str>,
    pub value: MappedValue,
    pub observed: Option<DateTime<Utc>>,
    pub unit: Option<Arc<str>>,
    pub dataset_id: Option<Arc<str>>,
}

/// A mapped record: an entity fragment in the mapping's short names, every part
/// already validated (id URI, type name, values, geometry).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MappedRecord {
    pub id: String,
    pub ty: String,
    pub attrs: Vec<MappedAttr>,
}

impl MappedRecord {
    /// The fragment as normalized NGSI-LD JSON (short names, for the mapping's
    /// `@context`): what the edge forwarder sends, and what tests read.
    pub fn to_json(&self) -> Value {
        let mut body = Map::new();
        body.insert("id".into(), Value::String(self.id.clone()));
        body.insert("type".into(), Value::String(self.ty.clone()));
        for a in &self.attrs {
            let mut o = Map::new();
            match &a.value {
                MappedValue::Property(v) => {
                    o.insert("type".into(), "Property".into());
                    o.insert("value".into(), v.clone());
                }
                MappedValue::Relationship(id) => {
                    o.insert("type".into(), "Relationship".into());
                    o.insert("object".into(), Value::String(id.clone()));
                }
                MappedValue::Geo(g) => {
                    o.insert("type".into(), "GeoProperty".into());
                    o.insert("value".into(), g.clone());
                }
            }
            if let Some(t) = &a.observed {
                o.insert(
                    "observedAt".into(),
                    Value::String(citybrain_model::time::format_datetime(t)),
                );
            }
            if let Some(u) = &a.unit {
                o.insert("unitCode".into(), Value::String(u.to_string()));
            }
            if let Some(d) = &a.dataset_id {
                o.insert("datasetId".into(), Value::String(d.to_string()));
            }
            let o = Value::Object(o);
            match body.get_mut(&*a.name) {
                Some(Value::Array(list)) => list.push(o),
                Some(prev) => {
                    let first = prev.take();
                    *prev = Value::Array(vec![first, o]);
                }
                None => {
                    body.insert(a.name.to_string(), o);
                }
            }
        }
        Value::Object(body)
    }

    /// The fragment as a model entity with names expanded by `names` (the values move).
    pub fn into_entity(self, names: &Names, now: DateTime<Utc>) -> Entity {
        let mut attrs: Vec<(Arc<str>, Instances)> = Vec::with_capacity(self.attrs.len());
        for a in self.attrs {
            let (kind, v) = match a.value {
                MappedValue::Property(v) => (AttrKind::Property, v),
                MappedValue::Relationship(id) => (AttrKind::Relationship, Value::String(id)),
                MappedValue::Geo(g) => (AttrKind::GeoProperty, g),
            };
            let mut attr = Attribute::property(v, now);
            attr.kind = kind;
            attr.observed_at = a.observed;
            attr.unit_code = a.unit;
            if let Some(d) = &a.dataset_id {
                attr.set_dataset_id(Some(d.as_ref().into()));
            }
            let name = names.attr(&a.name);
            match attrs.iter_mut().find(|(n, _)| *n == name) {
                Some((_, list)) => list.push(attr),
                None => attrs.push((name, citybrain_model::instances![attr])),
            }
        }
        Entity {
            types: vec![names.entity_type(&self.ty)],
            id: self.id,
            scope: None,
            created_at: now,
            modified_at: now,
            attrs,
        }
    }
}

/// Names of a mapping expanded with one `@context` (computed once per batch).
pub struct Names {
    ctx: Arc<JsonLdContext>,
    attrs: Vec<(Arc<str>, Arc<str>)>,
    ty: Option<(String, Arc<str>)>,
}

impl Names {
    pub fn new(m: &Mapping, ctx: Arc<JsonLdContext>) -> Names {
        let mut attrs: Vec<(Arc<str>, Arc<str>)> = m
            .attrs
            .iter()
            .map(|a| a.name.clone())
            .chain(m.location.iter().map(|l| l.name.clone()))
            .map(|n| {
                let e = citybrain_model::intern::intern(&ctx.expand(&n));
                (n, e)
            })
            .collect();
        attrs.dedup_by(|a, b| Arc::ptr_eq(&a.0, &b.0));
        let ty = match m.ty.parts.as_slice() {
            [Part::Lit(t)] => Some((t.clone(), citybrain_model::intern::intern(&ctx.expand(t)))),
            _ => None,
        };
        Names { ctx, attrs, ty }
    }

    pub fn context(&self) -> &Arc<JsonLdContext> {
        &self.ctx
    }

    fn attr(&self, short: &Arc<str>) -> Arc<str> {
        self.attrs
            .iter()
            .find(|(s, _)| Arc::ptr_eq(s, short) || s == short)
            .map(|(_, e)| e.clone())
            .unwrap_or_else(|| citybrain_model::intern::intern(&self.ctx.expand(short)))
    }

    fn entity_type(&self, short: &str) -> Arc<str> {
        match &self.ty {
            Some((s, e)) if s == short => e.clone(),
            _ => citybrain_model::intern::intern(&self.ctx.expand(short)),
        }
    }
}

struct Env<'a> {
    rec: Record<'a>,
    vars: &'a Vars,
    fields: Vec<Option<Value>>,
}

impl Env<'_> {
    fn part(&self, p: &Part) -> Option<Value> {
        match p {
            Part::Lit(s) => Some(Value::String(s.clone())),
            Part::Topic(name, fallback) => self
                .vars
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| Value::String(v.clone()))
                .or_else(|| fallback.as_ref().and_then(|p| self.rec.get(p))),
            Part::Field(i) => self.fields.get(*i).cloned().flatten(),
            Part::Path(fp) => self.rec.get(fp),
        }
    }

    /// Renders a template; `None` when a placeholder has no value. `escape` percent-
    /// encodes substituted values (entity ids).
    fn render(&self, t: &Template, escape: bool) -> Option<String> {
        let mut out = String::new();
        for p in &t.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                _ => {
                    let v = self.part(p)?;
                    let s = text_of(&v);
                    if escape {
                        out.extend(utf8_percent_encode(&s, ID_ESCAPE));
                    } else {
                        out.push_str(&s);
                    }
                }
            }
        }
        Some(out)
    }

    fn field(&self, f: &Field) -> Result<Option<Value>, String> {
        let v = match &f.source {
            Source::Path(p) => self.rec.get(p),
            Source::Template(t) => self.render(t, false).map(Value::String),
            Source::Const(v) => Some(v.clone()),
        };
        let v = match (v, &f.regex) {
            (Some(v), Some(re)) => {
                // No match counts as no value: `default` and `required` decide.
                let s = text_of(&v);
                re.captures(&s).map(|caps| {
                    let m = caps.get(1).or_else(|| caps.get(0)).map(|m| m.as_str());
                    Value::String(m.unwrap_or_default().to_string())
                })
            }
            (v, _) => v,
        };
        Ok(v.or_else(|| f.default.clone()))
    }
}

/// The text of a scalar (strings unquoted, other JSON as written).
fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn clip(s: &str) -> String {
    if s.chars().count() > 60 {
        let mut c: String = s.chars().take(60).collect();
        c.push('…');
        c
    } else {
        s.to_string()
    }
}

impl Mapping {
    /// Maps one record. `now` stands in for a missing time when the mapping says so.
    pub fn apply(
        &self,
        rec: Record<'_>,
        vars: &Vars,
        now: DateTime<Utc>,
    ) -> Result<Mapped, Reject> {
        let mut env = Env {
            rec,
            vars,
            fields: Vec::with_capacity(self.fields.len()),
        };
        for (name, f) in &self.fields {
            let v = env
                .field(f)
                .map_err(|m| Reject::new(Reason::BadValue, format!("field '{name}': {m}")))?;
            env.fields.push(v);
        }
        for f in &self.filters {
            if !passes(&env.part(&f.what), &f.conds) {
                return Ok(Mapped::Filtered);
            }
        }
        let id = env.render(&self.id, true).ok_or_else(|| {
            Reject::new(
                Reason::MissingValue,
                "entity.id: a placeholder of the id template has no value in the record",
            )
        })?;
        if !citybrain_model::uri::is_absolute_uri(&id) {
            return Err(Reject::new(
                Reason::BadId,
                format!("entity.id: '{}' is not an absolute URI", clip(&id)),
            ));
        }
        let ty = env.render(&self.ty, false).ok_or_else(|| {
            Reject::new(
                Reason::MissingValue,
                "entity.type: a placeholder of the type template has no value in the record",
            )
        })?;
        citybrain_model::entity::validate_name("entity type", &ty)
            .map_err(|e| Reject::new(Reason::BadId, format!("entity.type: {e}")))?;
        let observed = match &self.observed {
            None => None,
            Some(t) => match env.rec.get(&t.path) {
                Some(v) => {
                    let t = crate::timefmt::parse_time(&v, &t.format, &t.zone)
                        .map_err(|m| Reject::new(Reason::BadTime, format!("observed: {m}")))?;
                    // Millisecond precision, as NGSI-LD times are kept.
                    DateTime::from_timestamp_millis(t.timestamp_millis())
                }
                None if t.now_when_missing => Some(now),
                None => {
                    return Err(Reject::new(
                        Reason::MissingValue,
                        "observed: the record has no time",
                    ))
                }
            },
        };
        let mut attrs = Vec::with_capacity(self.attrs.len() + 1);
        if let Some(loc) = &self.location {
            match geometry(&env, &loc.geometry) {
                Ok(Some(g)) => attrs.push(MappedAttr {
                    name: loc.name.clone(),
                    value: MappedValue::Geo(g),
                    observed,
                    unit: None,
                    dataset_id: None,
                }),
                Ok(None) if loc.required => {
                    return Err(Reject::new(
                        Reason::MissingValue,
                        "location: the record has no position",
                    ))
                }
                Ok(None) => {}
                Err(m) => return Err(Reject::new(Reason::BadGeometry, format!("location: {m}"))),
            }
        }
        for a in &self.attrs {
            if let Some(attr) = attribute(&env, a, observed)? {
                attrs.push(attr);
            }
        }
        Ok(Mapped::Entity(MappedRecord { id, ty, attrs }))
    }
}

fn passes(v: &Option<Value>, conds: &[Cond]) -> bool {
    conds.iter().all(|c| match (c, v) {
        (Cond::Exists(want), v) => v.is_some() == *want,
        (_, None) => false,
        (Cond::Equals(x), Some(v)) => loosely_equal(v, x),
        (Cond::NotEquals(x), Some(v)) => !loosely_equal(v, x),
        (Cond::In(xs), Some(v)) => xs.iter().any(|x| loosely_equal(v, x)),
        (Cond::Matches(re), Some(v)) => re.is_match(&text_of(v)),
        (Cond::Min(m), Some(v)) => number_of(v).is_some_and(|n| n >= *m),
        (Cond::Max(m), Some(v)) => number_of(v).is_some_and(|n| n <= *m),
    })
}

/// Equality across text and typed values ("5" from CSV equals 5 in the mapping).
fn loosely_equal(v: &Value, x: &Value) -> bool {
    v == x
        || text_of(v) == text_of(x)
        || matches!((number_of(v), number_of(x)), (Some(a), Some(b)) if a == b)
}

fn number_of(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

fn geometry(env: &Env, g: &Geometry) -> Result<Option<Value>, String> {
    match g {
        Geometry::LatLon(la, lo) => {
            let (Some(lat), Some(lon)) = (env.rec.get(la), env.rec.get(lo)) else {
                return Ok(None);
            };
            let lat = number_of(&lat).ok_or_else(|| format!("latitude {lat} is not a number"))?;
            let lon = number_of(&lon).ok_or_else(|| format!("longitude {lon} is not a number"))?;
            if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
                return Err(format!(
                    "({lat}, {lon}) is outside latitude/longitude range"
                ));
            }
            Ok(Some(
                serde_json::json!({"type": "Point", "coordinates": [lon, lat]}),
            ))
        }
        Geometry::Wkt(p) => match env.rec.get(p) {
            None => Ok(None),
            Some(v) => super::wkt::parse_wkt(&text_of(&v)).map(Some),
        },
        Geometry::GeoJson(p) => match env.rec.get(p) {
            None => Ok(None),
            Some(Value::String(s)) => {
                let v: Value = serde_json::from_str(&s).map_err(|e| format!("not GeoJSON: {e}"))?;
                check_geojson(v).map(Some)
            }
            Some(v) => check_geojson(v).map(Some),
        },
    }
}

fn check_geojson(v: Value) -> Result<Value, String> {
    citybrain_model::geojson::validate_geometry("location", &v).map_err(|e| e.to_string())?;
    Ok(v)
}

/// One mapped attribute, or `None` when the record has no value and none is required.
fn attribute(
    env: &Env,
    a: &Attr,
    observed: Option<DateTime<Utc>>,
) -> Result<Option<MappedAttr>, Reject> {
    let bad = |m: String| Reject::new(Reason::BadValue, format!("attribute '{}': {m}", a.name));
    let Some(raw) = env.field(&a.field).map_err(bad)? else {
        if a.required {
            return Err(Reject::new(
                Reason::MissingValue,
                format!("attribute '{}': the record has no value", a.name),
            ));
        }
        return Ok(None);
    };
    let raw = match &a.map {
        None => raw,
        Some(m) => {
            let key = text_of(&raw);
            m.get(&key)
                .cloned()
                .ok_or_else(|| bad(format!("'{}' is not in the value map", clip(&key))))?
        }
    };
    let from_text = env.rec.is_text() && a.map.is_none();
    let mut v = coerce(raw, a.ty, from_text).map_err(bad)?;
    if a.convert.is_some() || a.scale.is_some() || a.offset.is_some() {
        let mut x = v
            .as_f64()
            .ok_or_else(|| bad(format!("{v} is not a number")))?;
        if let Some(c) = &a.convert {
            x = round_sig(c.apply(x));
        }
        if let Some(s) = a.scale {
            x *= s;
        }
        if let Some(o) = a.offset {
            x += o;
        }
        v = if a.ty == ValueType::Integer {
            Value::Number(Number::from(x.round() as i64))
        } else {
            Number::from_f64(x)
                .map(Value::Number)
                .ok_or_else(|| bad("the converted value is not finite".into()))?
        };
    }
    if v.is_null() {
        return Err(bad("the value is null".into()));
    }
    let value = if a.ty == ValueType::Relationship {
        let id = text_of(&v);
        if !citybrain_model::uri::is_absolute_uri(&id) {
            return Err(bad(format!("'{}' is not an entity id (URI)", clip(&id))));
        }
        MappedValue::Relationship(id)
    } else {
        MappedValue::Property(v)
    };
    Ok(Some(MappedAttr {
        name: a.name.clone(),
        unit: match &value {
            MappedValue::Property(_) => a.unit.clone(),
            _ => None,
        },
        value,
        observed,
        dataset_id: a.dataset_id.clone(),
    }))
}

/// Rounds to 12 significant digits: unit factors like 5/9 leave binary noise
/// (212 °F → 100.00000000000001 °C) that no sensor measures.
fn round_sig(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    format!("{x:.11e}").parse().unwrap_or(x)
}

/// Types a raw value. `from_text`: the value came from CSV/XML text, so `auto` turns
/// numeric text into a number.
fn coerce(v: Value, ty: ValueType, from_text: bool) -> Result<Value, String> {
    match ty {
        ValueType::Auto => Ok(match v {
            Value::String(s) if from_text => match auto_number(&s) {
                Some(n) => Value::Number(n),
                None => Value::String(s),
            },
            v => v,
        }),
        ValueType::Number => match &v {
            Value::Number(_) => Ok(v),
            _ => number_of(&v)
                .and_then(Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| format!("'{}' is not a number", clip(&text_of(&v)))),
        },
        ValueType::Integer => match &v {
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(v),
            _ => {
                let t = text_of(&v);
                t.trim()
                    .parse::<i64>()
                    .map(|i| Value::Number(i.into()))
                    .map_err(|_| format!("'{}' is not an integer", clip(&t)))
            }
        },
        ValueType::String | ValueType::Relationship => Ok(Value::String(text_of(&v))),
        ValueType::Boolean => match &v {
            Value::Bool(_) => Ok(v),
            _ => match text_of(&v).trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(Value::Bool(true)),
                "false" | "0" | "no" | "off" => Ok(Value::Bool(false)),
                t => Err(format!("'{}' is not a boolean", clip(t))),
            },
        },
        ValueType::Json => match v {
            Value::String(s) => serde_json::from_str(&s).map_err(|e| format!("not JSON: {e}")),
            v => Ok(v),
        },
    }
}

/// Numeric text as a JSON number: integers stay integers; leading zeros ("007") and
/// non-finite values stay text.
fn auto_number(s: &str) -> Option<Number> {
    let t = s.trim();
    if t.is_empty() || (t.len() > 1 && t.starts_with('0') && !t.starts_with("0.")) {
        return None;
    }
    if let Ok(i) = t.parse::<i64>() {
        return Some(i.into());
    }
    if !t
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
    {
        return None;
    }
    t.parse::<f64>().ok().and_then(Number::from_f64)
}
