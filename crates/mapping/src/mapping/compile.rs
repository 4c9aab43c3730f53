//! Validation of a [`MappingSpec`] into a compiled [`Mapping`]: every path parsed, every
//! regex compiled, every unit and time format checked, every template resolved, so that
//! applying a mapping never meets a configuration error.

use std::collections::BTreeMap;
use std::sync::Arc;

use regex::Regex;
use serde_json::Value;

use super::spec::{
    AttributeSpec, FieldSpec, FilterSpec, Format, LocationSpec, MappingSpec, ValueType,
};
use crate::record::{parse_field_path, parse_json_path, FieldPath, Seg};
use crate::reduce::ReduceRule;
use crate::timefmt::{TimeFormat, Zone};
use crate::units;

/// A compile error: (field path in the mapping, message).
pub(crate) type CompileError = (String, String);

/// How records are found in a payload.
#[derive(Debug, Clone, PartialEq)]
pub enum Selector {
    /// JSON: navigate these steps; an array found there yields its elements.
    Json(Vec<Seg>),
    /// XML: elements at this absolute path from the root, or (`anywhere`) any element
    /// with the last name.
    Xml { steps: Vec<String>, anywhere: bool },
    /// CSV rows, JSON Lines lines.
    Rows,
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Part {
    Lit(String),
    /// A topic variable; outside MQTT (files, HTTP) the record path of the same name.
    Topic(String, Option<FieldPath>),
    Field(usize),
    Path(FieldPath),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Template {
    pub parts: Vec<Part>,
}

/// An MQTT topic pattern: `city/{district}/aq/{device}`; `+` and `#` also match.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicPattern {
    pub pattern: String,
    levels: Vec<Level>,
}

#[derive(Debug, Clone, PartialEq)]
enum Level {
    Lit(String),
    Var(String),
    One,
    Rest,
}

impl TopicPattern {
    fn parse(p: &str) -> Result<TopicPattern, String> {
        let mut levels = Vec::new();
        let parts: Vec<&str> = p.split('/').collect();
        for (i, l) in parts.iter().enumerate() {
            levels.push(if *l == "#" {
                if i + 1 != parts.len() {
                    return Err(format!("'{p}': '#' must be the last level"));
                }
                Level::Rest
            } else if *l == "+" {
                Level::One
            } else if let Some(v) = l.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(format!("'{p}': '{l}' is not a valid variable"));
                }
                Level::Var(v.to_string())
            } else if l.contains(['+', '#', '{', '}']) {
                return Err(format!("'{p}': '{l}' mixes wildcards with text"));
            } else {
                Level::Lit((*l).to_string())
            });
        }
        Ok(TopicPattern {
            pattern: p.to_string(),
            levels,
        })
    }

    /// The variables of `topic` when it matches.
    pub fn matches(&self, topic: &str) -> Option<Vec<(String, String)>> {
        let mut vars = Vec::new();
        let mut parts = topic.split('/');
        for l in &self.levels {
            match l {
                Level::Rest => return Some(vars),
                _ => {
                    let p = parts.next()?;
                    match l {
                        Level::Lit(s) if s != p => return None,
                        Level::Var(v) => vars.push((v.clone(), p.to_string())),
                        _ => {}
                    }
                }
            }
        }
        parts.next().is_none().then_some(vars)
    }

    /// The MQTT subscription filter of this pattern (`{x}` becomes `+`).
    pub fn filter(&self) -> String {
        self.levels
            .iter()
            .map(|l| match l {
                Level::Lit(s) => s.as_str(),
                Level::Var(_) | Level::One => "+",
                Level::Rest => "#",
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    fn vars(&self) -> impl Iterator<Item = &str> {
        self.levels.iter().filter_map(|l| match l {
            Level::Var(v) => Some(v.as_str()),
            _ => None,
        })
    }
}

/// Where a value comes from.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    Path(FieldPath),
    Template(Template),
    Const(Value),
}

#[derive(Debug, Clone)]
pub(crate) struct Field {
    pub source: Source,
    pub default: Option<Value>,
    pub regex: Option<Regex>,
}

#[derive(Debug, Clone)]
pub(crate) struct Attr {
    pub name: Arc<str>,
    pub field: Field,
    pub ty: ValueType,
    /// Interned: a handful of codes repeat across millions of values.
    pub unit: Option<Arc<str>>,
    pub convert: Option<units::Conversion>,
    pub scale: Option<f64>,
    pub offset: Option<f64>,
    pub map: Option<BTreeMap<String, Value>>,
    pub required: bool,
    pub dataset_id: Option<Arc<str>>,
}

#[derive(Debug, Clone)]
pub(crate) struct TimeRule {
    pub path: FieldPath,
    pub format: TimeFormat,
    pub zone: Zone,
    pub now_when_missing: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum Geometry {
    LatLon(FieldPath, FieldPath),
    Wkt(FieldPath),
    GeoJson(FieldPath),
}

#[derive(Debug, Clone)]
pub(crate) struct Location {
    pub name: Arc<str>,
    pub geometry: Geometry,
    pub required: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum Cond {
    Equals(Value),
    NotEquals(Value),
    In(Vec<Value>),
    Matches(Regex),
    Exists(bool),
    Min(f64),
    Max(f64),
}

#[derive(Debug, Clone)]
pub(crate) struct Filter {
    pub what: Part,
    pub conds: Vec<Cond>,
}

/// A compiled mapping.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub source: String,
    pub format: Format,
    pub selector: Selector,
    pub context: Option<String>,
    pub tenant: String,
    pub topics: Vec<TopicPattern>,
    pub csv_delimiter: u8,
    pub csv_header: bool,
    pub reduce: Vec<ReduceRule>,
    /// The file it was loaded from (for messages).
    pub origin: String,
    pub(crate) id: Template,
    pub(crate) ty: Template,
    pub(crate) fields: Vec<(String, Field)>,
    pub(crate) observed: Option<TimeRule>,
    pub(crate) location: Option<Location>,
    pub(crate) attrs: Vec<Attr>,
    pub(crate) filters: Vec<Filter>,
}

impl Mapping {
    pub fn with_origin(mut self, origin: String) -> Self {
        self.origin = origin;
        self
    }

    /// The variables of the first topic pattern that matches `topic`.
    pub fn match_topic(&self, topic: &str) -> Option<Vec<(String, String)>> {
        self.topics.iter().find_map(|p| p.matches(topic))
    }
}

struct Ctx<'a> {
    format: Format,
    csv_header: bool,
    topic_vars: Vec<String>,
    field_names: Vec<&'a str>,
}

impl Ctx<'_> {
    fn path(&self, field: &str, p: &str) -> Result<FieldPath, CompileError> {
        parse_field_path(self.format, self.csv_header, p).map_err(|e| (field.to_string(), e.0))
    }

    /// A template: `{name}` is a topic variable, a declared field (when fields are
    /// known), or else a path into the record. `{{` and `}}` are literal braces.
    fn template(&self, field: &str, t: &str, allow_fields: bool) -> Result<Template, CompileError> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = t.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    let mut closed = false;
                    for c in chars.by_ref() {
                        if c == '}' {
                            closed = true;
                            break;
                        }
                        name.push(c);
                    }
                    if !closed || name.trim().is_empty() {
                        return Err((field.into(), format!("'{t}': unclosed or empty '{{}}'")));
                    }
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(self.var(field, name.trim(), allow_fields)?);
                }
                '}' => return Err((field.into(), format!("'{t}': unmatched '}}'"))),
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Template { parts })
    }

    fn var(&self, field: &str, name: &str, allow_fields: bool) -> Result<Part, CompileError> {
        if self.topic_vars.iter().any(|v| v == name) {
            let fallback = parse_field_path(self.format, self.csv_header, name).ok();
            return Ok(Part::Topic(name.to_string(), fallback));
        }
        if allow_fields {
            if let Some(i) = self.field_names.iter().position(|f| *f == name) {
                return Ok(Part::Field(i));
            }
        }
        self.path(field, name).map(Part::Path)
    }

    fn regex(&self, field: &str, r: &str) -> Result<Regex, CompileError> {
        Regex::new(r).map_err(|e| (field.to_string(), format!("invalid regex: {e}")))
    }
}

pub(crate) fn compile(spec: MappingSpec) -> Result<Mapping, CompileError> {
    if spec.version != 1 {
        return Err((
            "version".into(),
            format!(
                "mapping language version {} is not supported (1)",
                spec.version
            ),
        ));
    }
    let src_ok = !spec.source.is_empty()
        && spec.source.len() <= 64
        && spec
            .source
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !src_ok {
        return Err((
            "source".into(),
            format!(
                "'{}' must be 1-64 letters, digits, '_', '-' or '.' (it is a URL segment)",
                spec.source
            ),
        ));
    }
    if matches!(
        spec.source.as_str(),
        "sources" | "reload" | "deadletters" | "mqtt"
    ) {
        return Err((
            "source".into(),
            format!(
                "'{}' is reserved (an /ingest path or the MQTT fallback source)",
                spec.source
            ),
        ));
    }
    if let Some(t) = &spec.tenant {
        citybrain_access::validate_tenant(t).map_err(|e| ("tenant".to_string(), e.to_string()))?;
    }
    let delim = spec.csv.delimiter.as_bytes();
    if delim.len() != 1 {
        return Err((
            "csv.delimiter".into(),
            "the delimiter must be one ASCII character".into(),
        ));
    }
    let selector = selector(spec.format, spec.records.as_deref())?;
    let topics = spec
        .topics
        .iter()
        .enumerate()
        .map(|(i, t)| TopicPattern::parse(t).map_err(|e| (format!("topics[{i}]"), e)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut ctx = Ctx {
        format: spec.format,
        csv_header: spec.csv.header,
        topic_vars: topics
            .iter()
            .flat_map(|t| t.vars().map(str::to_string))
            .collect(),
        field_names: Vec::new(),
    };
    // Fields first (they may use topic variables and record paths, not other fields).
    let mut fields = Vec::new();
    for (name, f) in &spec.fields {
        let key = format!("fields.{name}");
        if ctx.topic_vars.iter().any(|v| v == name) {
            return Err((key, format!("'{name}' is already a topic variable")));
        }
        fields.push((name.clone(), field(&ctx, &key, f)?));
    }
    ctx.field_names = spec.fields.keys().map(String::as_str).collect();
    let id = ctx.template("entity.id", &spec.entity.id, true)?;
    if id.parts.is_empty() {
        return Err(("entity.id".into(), "the id template is empty".into()));
    }
    let ty = ctx.template("entity.type", &spec.entity.ty, true)?;
    let observed = match &spec.observed {
        None => None,
        Some(o) => Some(TimeRule {
            path: ctx.path("observed.path", &o.path)?,
            format: TimeFormat::parse(o.format.as_deref())
                .map_err(|e| ("observed.format".to_string(), e))?,
            zone: Zone::parse(o.timezone.as_deref())
                .map_err(|e| ("observed.timezone".to_string(), e))?,
            now_when_missing: match o.missing.as_deref() {
                None | Some("reject") => false,
                Some("now") => true,
                Some(x) => {
                    return Err((
                        "observed.missing".into(),
                        format!("'{x}' is not 'reject' or 'now'"),
                    ))
                }
            },
        }),
    };
    let location = spec
        .location
        .as_ref()
        .map(|l| location(&ctx, l))
        .transpose()?;
    let mut attrs = Vec::new();
    for (i, a) in spec.attributes.iter().enumerate() {
        attrs.push(attribute(&ctx, &format!("attributes[{i}]"), a)?);
        if let Some(prev) = attrs[..i]
            .iter()
            .find(|p| *p.name == *a.name && p.dataset_id.as_deref() == a.dataset_id.as_deref())
        {
            return Err((
                format!("attributes[{i}].name"),
                format!("attribute '{}' is mapped twice", prev.name),
            ));
        }
    }
    if attrs.is_empty() && location.is_none() {
        return Err((
            "attributes".into(),
            "the mapping maps no attribute and no location".into(),
        ));
    }
    let filters = spec
        .filters
        .iter()
        .enumerate()
        .map(|(i, f)| filter(&ctx, &format!("filters[{i}]"), f))
        .collect::<Result<Vec<_>, _>>()?;
    let reduce = spec
        .reduce
        .iter()
        .enumerate()
        .map(|(i, r)| ReduceRule::compile(r).map_err(|(f, m)| (format!("reduce[{i}].{f}"), m)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Mapping {
        source: spec.source,
        format: spec.format,
        selector,
        context: spec.context,
        tenant: spec.tenant.unwrap_or_default(),
        topics,
        csv_delimiter: delim[0],
        csv_header: spec.csv.header,
        reduce,
        origin: String::new(),
        id,
        ty,
        fields,
        observed,
        location,
        attrs,
        filters,
    })
}

fn selector(format: Format, records: Option<&str>) -> Result<Selector, CompileError> {
    let err = |m: String| ("records".to_string(), m);
    match (format, records) {
        (Format::Csv | Format::Jsonl, None) => Ok(Selector::Rows),
        (Format::Csv | Format::Jsonl, Some(_)) => Err(err(format!(
            "{} payloads have one record per row; 'records' does not apply",
            format.name()
        ))),
        (Format::Json, r) => Ok(Selector::Json(
            parse_json_path(r.unwrap_or("")).map_err(|e| err(e.0))?,
        )),
        (Format::Xml, None) => Err(err(
            "XML needs a record selector, e.g. '/reads/read' or '//read'".into(),
        )),
        (Format::Xml, Some(r)) => {
            let (anywhere, body) = match r.strip_prefix("//") {
                Some(b) => (true, b),
                None => (false, r.strip_prefix('/').unwrap_or(r)),
            };
            let steps: Vec<String> = body.split('/').map(str::to_string).collect();
            if steps
                .iter()
                .any(|s| s.is_empty() || s.contains(['@', '[', '*', '(']))
            {
                return Err(err(format!(
                    "'{r}' must be an element path like '/reads/read' or '//read'"
                )));
            }
            if anywhere && steps.len() != 1 {
                return Err(err(format!("'{r}': '//' takes one element name")));
            }
            Ok(Selector::Xml { steps, anywhere })
        }
    }
}

fn field(ctx: &Ctx, key: &str, f: &FieldSpec) -> Result<Field, CompileError> {
    match f {
        FieldSpec::Path(p) => Ok(Field {
            source: Source::Path(ctx.path(key, p)?),
            default: None,
            regex: None,
        }),
        FieldSpec::Full(full) => {
            let source = match (&full.path, &full.template) {
                (Some(p), None) => Source::Path(ctx.path(&format!("{key}.path"), p)?),
                (None, Some(t)) => {
                    Source::Template(ctx.template(&format!("{key}.template"), t, false)?)
                }
                _ => {
                    return Err((
                        key.to_string(),
                        "give exactly one of 'path' and 'template'".into(),
                    ))
                }
            };
            Ok(Field {
                source,
                default: full.default.clone(),
                regex: full
                    .regex
                    .as_deref()
                    .map(|r| ctx.regex(&format!("{key}.regex"), r))
                    .transpose()?,
            })
        }
    }
}

fn attribute(ctx: &Ctx, key: &str, a: &AttributeSpec) -> Result<Attr, CompileError> {
    citybrain_model::entity::validate_name("attribute", &a.name)
        .map_err(|e| (format!("{key}.name"), e.to_string()))?;
    if matches!(
        a.name.as_str(),
        "id" | "type"
            | "@context"
            | "scope"
            | "createdAt"
            | "modifiedAt"
            | "deletedAt"
            | "observedAt"
            | "unitCode"
            | "datasetId"
            | "instanceId"
    ) {
        return Err((
            format!("{key}.name"),
            format!("'{}' is reserved in NGSI-LD", a.name),
        ));
    }
    if matches!(
        a.name.as_str(),
        "location" | "observationSpace" | "operationSpace"
    ) {
        return Err((
            format!("{key}.name"),
            format!(
                "'{}' is a GeoProperty in NGSI-LD: map it with the [location] table",
                a.name
            ),
        ));
    }
    if let Some(v) = &a.value {
        if v.is_null() {
            return Err((format!("{key}.value"), "a value must not be null".into()));
        }
    }
    if let Some(m) = &a.map {
        if let Some((k, _)) = m.iter().find(|(_, v)| v.is_null()) {
            return Err((
                format!("{key}.map"),
                format!("'{k}' maps to null; NGSI-LD values must not be null"),
            ));
        }
    }
    let source = match (&a.path, &a.template, &a.value) {
        (Some(p), None, None) => Source::Path(ctx.path(&format!("{key}.path"), p)?),
        (None, Some(t), None) => {
            Source::Template(ctx.template(&format!("{key}.template"), t, true)?)
        }
        (None, None, Some(v)) => Source::Const(v.clone()),
        _ => {
            return Err((
                key.to_string(),
                "give exactly one of 'path', 'template' and 'value'".into(),
            ))
        }
    };
    if let Some(u) = &a.unit {
        if !units::known(u) && a.from_unit.is_some() {
            return Err((
                format!("{key}.unit"),
                format!("unknown UN/CEFACT unit code '{u}'"),
            ));
        }
    }
    let convert = match (&a.from_unit, &a.unit) {
        (None, _) => None,
        (Some(_), None) => {
            return Err((
                format!("{key}.from_unit"),
                "'from_unit' needs 'unit', the code to convert to".into(),
            ))
        }
        (Some(f), Some(t)) => {
            Some(units::conversion(f, t).map_err(|e| (format!("{key}.from_unit"), e))?)
        }
    };
    let numeric = convert.is_some() || a.scale.is_some() || a.offset.is_some();
    if numeric
        && matches!(
            a.ty,
            ValueType::String | ValueType::Boolean | ValueType::Json | ValueType::Relationship
        )
    {
        return Err((
            format!("{key}.type"),
            "unit conversion, scale and offset need a numeric type".into(),
        ));
    }
    if let Some(d) = &a.dataset_id {
        if !citybrain_model::uri::is_absolute_uri(d) {
            return Err((
                format!("{key}.datasetId"),
                format!("'{d}' is not an absolute URI"),
            ));
        }
    }
    Ok(Attr {
        name: Arc::from(a.name.as_str()),
        field: Field {
            source,
            default: a.default.clone(),
            regex: a
                .regex
                .as_deref()
                .map(|r| ctx.regex(&format!("{key}.regex"), r))
                .transpose()?,
        },
        ty: a.ty,
        unit: a.unit.as_deref().map(citybrain_model::intern::intern),
        convert,
        scale: a.scale,
        offset: a.offset,
        map: a.map.clone(),
        required: a.required,
        dataset_id: a.dataset_id.as_deref().map(Arc::from),
    })
}

fn location(ctx: &Ctx, l: &LocationSpec) -> Result<Location, CompileError> {
    let geometry = match (&l.lat, &l.lon, &l.wkt, &l.geojson) {
        (Some(la), Some(lo), None, None) => {
            Geometry::LatLon(ctx.path("location.lat", la)?, ctx.path("location.lon", lo)?)
        }
        (None, None, Some(w), None) => Geometry::Wkt(ctx.path("location.wkt", w)?),
        (None, None, None, Some(g)) => Geometry::GeoJson(ctx.path("location.geojson", g)?),
        _ => {
            return Err((
                "location".into(),
                "give 'lat' and 'lon', or 'wkt', or 'geojson'".into(),
            ))
        }
    };
    let name = l.name.clone().unwrap_or_else(|| "location".into());
    citybrain_model::entity::validate_name("attribute", &name)
        .map_err(|e| ("location.name".to_string(), e.to_string()))?;
    Ok(Location {
        name: Arc::from(name.as_str()),
        geometry,
        required: l.required,
    })
}

fn filter(ctx: &Ctx, key: &str, f: &FilterSpec) -> Result<Filter, CompileError> {
    let what = match f.path.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
        Some(name) => ctx.var(&format!("{key}.path"), name, true)?,
        None => Part::Path(ctx.path(&format!("{key}.path"), &f.path)?),
    };
    let mut conds = Vec::new();
    if let Some(v) = &f.equals {
        conds.push(Cond::Equals(v.clone()));
    }
    if let Some(v) = &f.not_equals {
        conds.push(Cond::NotEquals(v.clone()));
    }
    if let Some(v) = &f.one_of {
        conds.push(Cond::In(v.clone()));
    }
    if let Some(r) = &f.matches {
        conds.push(Cond::Matches(ctx.regex(&format!("{key}.matches"), r)?));
    }
    if let Some(e) = f.exists {
        conds.push(Cond::Exists(e));
    }
    if let Some(m) = f.min {
        conds.push(Cond::Min(m));
    }
    if let Some(m) = f.max {
        conds.push(Cond::Max(m));
    }
    if conds.is_empty() {
        return Err((
            key.to_string(),
            "a filter needs a condition (equals, not_equals, in, matches, exists, min, max)".into(),
        ));
    }
    Ok(Filter { what, conds })
}
