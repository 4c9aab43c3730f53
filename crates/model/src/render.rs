//! Output representations of entities: normalized, concise, keyValues (simplified) and
//! GeoJSON, compacted with the request's `@context`, with optional system attributes,
//! attribute projection (`attrs`/`pick`/`omit`) and language selection (`lang`).

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::context::JsonLdContext;
use crate::entity::{AttrKind, Attribute, Entity, Instances};
use crate::error::{ModelError, Result};
use crate::time::format_datetime;

/// The representation asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Normalized,
    Concise,
    KeyValues,
}

/// Which members of an entity to include.
#[derive(Debug, Clone, Default)]
pub struct Projection {
    /// Attributes to keep (expanded names); `None` keeps all.
    pub attrs: Option<HashSet<String>>,
    /// Attributes to drop (expanded names).
    pub omit: HashSet<String>,
    pub omit_id: bool,
    pub omit_type: bool,
    /// Projections of linked entities, by the Relationship (expanded name) that links them.
    pub linked: Vec<(String, Projection)>,
}

impl Projection {
    pub fn keeps(&self, attr: &str) -> bool {
        self.attrs.as_ref().is_none_or(|a| a.contains(attr)) && !self.omit.contains(attr)
    }

    /// True when a projection was asked for (attrs, pick or omit).
    pub fn is_active(&self) -> bool {
        self.attrs.is_some() || !self.omit.is_empty() || self.omit_id || self.omit_type
    }

    /// The projection for entities linked through `attr` (none: everything).
    pub fn for_linked(&self, attr: &str) -> Projection {
        self.linked
            .iter()
            .find(|(a, _)| a == attr)
            .map(|(_, p)| p.clone())
            .unwrap_or_default()
    }

    /// Builds a projection from `pick` and/or `omit` members.
    pub fn from_pick_omit(
        pick: Option<&[Member]>,
        omit: Option<&[Member]>,
        ctx: &JsonLdContext,
    ) -> Result<Projection> {
        if let (Some(p), Some(o)) = (pick, omit) {
            if let Some(both) = p.iter().find(|m| {
                o.iter()
                    .any(|n| n.name == m.name && n.nested.is_empty() && m.nested.is_empty())
            }) {
                return Err(ModelError::bad_data(format!(
                    "'{}' is both picked and omitted",
                    both.name
                )));
            }
        }
        let mut pr = Projection::default();
        if let Some(pick) = pick {
            pr.omit_id = !pick.iter().any(|m| m.name == "id");
            pr.omit_type = !pick.iter().any(|m| m.name == "type");
            pr.attrs = Some(
                pick.iter()
                    .filter(|m| m.name != "id" && m.name != "type")
                    .map(|m| ctx.expand(&m.name))
                    .collect(),
            );
            for m in pick.iter().filter(|m| !m.nested.is_empty()) {
                pr.linked.push((
                    ctx.expand(&m.name),
                    Projection::from_pick_omit(Some(&m.nested), None, ctx)?,
                ));
            }
        }
        if let Some(omit) = omit {
            let flat: Vec<&Member> = omit.iter().filter(|m| m.nested.is_empty()).collect();
            pr.omit_id = flat.iter().any(|m| m.name == "id");
            pr.omit_type = flat.iter().any(|m| m.name == "type");
            pr.omit = flat
                .iter()
                .filter(|m| m.name != "id" && m.name != "type")
                .map(|m| ctx.expand(&m.name))
                .collect();
            for m in omit.iter().filter(|m| !m.nested.is_empty()) {
                pr.linked.push((
                    ctx.expand(&m.name),
                    Projection::from_pick_omit(None, Some(&m.nested), ctx)?,
                ));
            }
        }
        Ok(pr)
    }
}

/// One member of a `pick`/`omit` expression: a name and, for a Relationship, the members
/// of the entity it links to (`locatedAt{id,name}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub nested: Vec<Member>,
}

/// Parses `name,rel{name,rel2{...}}` (NGSI-LD 1.8 projection syntax).
pub fn parse_members(param: &str, s: &str) -> Result<Vec<Member>> {
    fn list(param: &str, b: &[u8], s: &str, pos: &mut usize, depth: usize) -> Result<Vec<Member>> {
        if depth > 8 {
            return Err(ModelError::bad_data(format!("'{param}' nests too deeply")));
        }
        let mut out = Vec::new();
        loop {
            let start = *pos;
            while *pos < b.len()
                && (b[*pos].is_ascii_alphanumeric()
                    || matches!(b[*pos], b'_' | b'-' | b':' | b'/' | b'.' | b'#'))
            {
                *pos += 1;
            }
            let name = &s[start..*pos];
            if name.is_empty() || !name.as_bytes()[0].is_ascii_alphanumeric() {
                return Err(ModelError::bad_data(format!(
                    "invalid '{param}' expression '{s}' at position {start}"
                )));
            }
            let mut nested = Vec::new();
            if b.get(*pos) == Some(&b'{') {
                *pos += 1;
                nested = list(param, b, s, pos, depth + 1)?;
                if b.get(*pos) != Some(&b'}') {
                    return Err(ModelError::bad_data(format!(
                        "invalid '{param}' expression '{s}': missing '}}'"
                    )));
                }
                *pos += 1;
            }
            out.push(Member {
                name: name.to_string(),
                nested,
            });
            match b.get(*pos) {
                Some(b',') => *pos += 1,
                _ => return Ok(out),
            }
        }
    }
    let b = s.as_bytes();
    let mut pos = 0;
    let members = list(param, b, s, &mut pos, 0)?;
    if pos != b.len() {
        return Err(ModelError::bad_data(format!(
            "invalid '{param}' expression '{s}' at position {pos}"
        )));
    }
    Ok(members)
}

/// Plain member names (no nesting) as members.
pub fn members_of(names: &[String]) -> Vec<Member> {
    names
        .iter()
        .map(|n| Member {
            name: n.clone(),
            nested: Vec::new(),
        })
        .collect()
}

/// Rendering options.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    pub format: Format,
    pub sys_attrs: bool,
    pub projection: Projection,
    pub lang: Option<String>,
    /// Keep only these attribute instances (`datasetId`; `None` is the default instance).
    pub dataset_ids: Option<Vec<Option<String>>>,
}

impl RenderOptions {
    fn keeps_instance(&self, a: &Attribute) -> bool {
        self.dataset_ids
            .as_ref()
            .is_none_or(|ids| ids.iter().any(|d| d.as_deref() == a.dataset_id()))
    }
}

/// Parses a `datasetId` list where `@none` names the default instance.
pub fn parse_dataset_ids(items: &[String]) -> Vec<Option<String>> {
    items
        .iter()
        .map(|d| if d == "@none" { None } else { Some(d.clone()) })
        .collect()
}

pub fn compact_types(types: &[std::sync::Arc<str>], ctx: &JsonLdContext) -> Value {
    if types.len() == 1 {
        Value::String(ctx.compact(&types[0]))
    } else {
        Value::Array(
            types
                .iter()
                .map(|t| Value::String(ctx.compact(t)))
                .collect(),
        )
    }
}

/// Renders an entity as a JSON object (without `@context`).
pub fn render_entity(e: &Entity, ctx: &JsonLdContext, o: &RenderOptions) -> Map<String, Value> {
    let mut out = Map::new();
    if !o.projection.omit_id {
        out.insert("id".into(), Value::String(e.id.clone()));
    }
    if !o.projection.omit_type {
        out.insert("type".into(), compact_types(&e.types, ctx));
    }
    if let Some(scope) = &e.scope {
        let v = if scope.len() == 1 {
            Value::String(scope[0].clone())
        } else {
            scope.iter().cloned().map(Value::String).collect()
        };
        out.insert("scope".into(), v);
    }
    if o.sys_attrs {
        out.insert(
            "createdAt".into(),
            Value::String(format_datetime(&e.created_at)),
        );
        out.insert(
            "modifiedAt".into(),
            Value::String(format_datetime(&e.modified_at)),
        );
    }
    for (name, instances) in &e.attrs {
        if !o.projection.keeps(name) {
            continue;
        }
        if o.dataset_ids.is_some() {
            let kept: Instances = instances
                .iter()
                .filter(|a| o.keeps_instance(a))
                .cloned()
                .collect();
            if !kept.is_empty() {
                out.insert(ctx.compact(name), render_instances(&kept, ctx, o));
            }
            continue;
        }
        out.insert(ctx.compact(name), render_instances(instances, ctx, o));
    }
    out
}

/// Renders all instances of one attribute (an object, or an array for several).
pub fn render_instances(instances: &[Attribute], ctx: &JsonLdContext, o: &RenderOptions) -> Value {
    if instances.len() == 1 {
        render_attribute(&instances[0], ctx, o)
    } else if o.format == Format::KeyValues {
        // Simplified multi-instance form: {"dataset": {datasetId | "@none": value}}.
        let mut d = Map::new();
        for a in instances {
            let key = a
                .dataset_id()
                .map(str::to_string)
                .unwrap_or_else(|| "@none".into());
            d.insert(key, render_attribute(a, ctx, o));
        }
        serde_json::json!({ "dataset": d })
    } else {
        // Several instances: each must read back as an attribute, so a concise bare value
        // (a number, a geometry) is written as an object here.
        Value::Array(
            instances
                .iter()
                .map(|a| {
                    let v = render_attribute(a, ctx, o);
                    let is_attribute = v
                        .as_object()
                        .is_some_and(|m| m.contains_key(a.kind.content_key()));
                    if o.format == Format::Concise && !is_attribute {
                        let mut m = Map::new();
                        if a.kind == AttrKind::GeoProperty {
                            m.insert("type".into(), Value::String(a.kind.type_name().into()));
                        }
                        m.insert(a.kind.content_key().into(), v);
                        Value::Object(m)
                    } else {
                        v
                    }
                })
                .collect(),
        )
    }
}

fn pick_language(map: &Value, lang: &str) -> Option<(String, Value)> {
    let m = map.as_object()?;
    if let Some(v) = m.get(lang) {
        return Some((lang.to_string(), v.clone()));
    }
    if let Some(v) = m.get("@none") {
        return Some(("@none".to_string(), v.clone()));
    }
    m.iter().next().map(|(k, v)| (k.clone(), v.clone()))
}

pub fn content(a: &Attribute, ctx: &JsonLdContext) -> Value {
    match a.kind {
        AttrKind::VocabProperty => match a.value.to_value() {
            Value::String(s) => Value::String(ctx.compact(&s)),
            Value::Array(v) => Value::Array(
                v.iter()
                    .map(|s| Value::String(ctx.compact(s.as_str().unwrap_or_default())))
                    .collect(),
            ),
            other => other,
        },
        AttrKind::ListRelationship => match a.value.to_value() {
            Value::Array(v) => Value::Array(
                v.iter()
                    .map(|o| serde_json::json!({ "object": o }))
                    .collect(),
            ),
            other => other,
        },
        _ => a.value.to_value(),
    }
}

/// One value as itself, any other number of them as an array (an attribute with one
/// instance, a single rendered entity).
pub fn one_or_list(items: Vec<Value>) -> Value {
    match <[Value; 1]>::try_from(items) {
        Ok([one]) => one,
        Err(items) => Value::Array(items),
    }
}

/// Renders one attribute instance.
pub fn render_attribute(a: &Attribute, ctx: &JsonLdContext, o: &RenderOptions) -> Value {
    if o.format == Format::KeyValues {
        // The simplified representation (NGSI-LD 4.5.4) wraps LanguageProperty (without
        // a chosen language), JsonProperty and VocabProperty in single-key objects,
        // `{"languageMap": …}`, `{"json": …}`, `{"vocab": …}`, so their kind stays
        // recognisable; value lists and object lists stay bare (the ETSI suite's
        // 454_01, FIWARE's Extended-Properties tutorial).
        return match (a.kind, &o.lang) {
            (AttrKind::LanguageProperty, Some(lang)) => pick_language(&a.value.to_value(), lang)
                .map(|(_, v)| v)
                .unwrap_or(Value::Null),
            (AttrKind::LanguageProperty, None) => {
                serde_json::json!({ "languageMap": a.value.to_value() })
            }
            (AttrKind::VocabProperty, _) => serde_json::json!({ "vocab": content(a, ctx) }),
            (AttrKind::JsonProperty, _) => serde_json::json!({ "json": content(a, ctx) }),
            (AttrKind::ListRelationship, _) => a.value.to_value(),
            _ => content(a, ctx),
        };
    }
    let mut m = Map::new();
    let concise = o.format == Format::Concise;
    let mut kind = a.kind;
    let mut body = content(a, ctx);
    let mut lang_used = None;
    if let (AttrKind::LanguageProperty, Some(lang)) = (a.kind, &o.lang) {
        if let Some((l, v)) = pick_language(&a.value.to_value(), lang) {
            kind = AttrKind::Property;
            body = v;
            lang_used = Some(l);
        }
    }
    let simple = a.sub().is_empty()
        && a.observed_at.is_none()
        && a.unit_code.is_none()
        && a.dataset_id().is_none()
        && a.object_type().is_none()
        && lang_used.is_none()
        && !o.sys_attrs;
    if concise
        && simple
        && (kind == AttrKind::GeoProperty || (kind == AttrKind::Property && !body.is_object()))
    {
        return body;
    }
    // Concise drops the type where the content key identifies it; a GeoProperty keeps it,
    // since `{"value": geometry}` would read back as a Property.
    if !concise || kind == AttrKind::GeoProperty {
        m.insert("type".into(), Value::String(kind.type_name().into()));
    }
    m.insert(kind.content_key().into(), body);
    if let Some(l) = lang_used {
        m.insert("lang".into(), Value::String(l));
    }
    if let Some(t) = a.object_type() {
        let t = match t {
            Value::String(s) => Value::String(ctx.compact(s)),
            Value::Array(v) => Value::Array(
                v.iter()
                    .map(|s| Value::String(ctx.compact(s.as_str().unwrap_or_default())))
                    .collect(),
            ),
            other => other.clone(),
        };
        m.insert("objectType".into(), t);
    }
    if let Some(d) = &a.dataset_id() {
        m.insert("datasetId".into(), Value::String(d.to_string()));
    }
    if let Some(t) = &a.observed_at {
        m.insert("observedAt".into(), Value::String(format_datetime(t)));
    }
    if let Some(u) = &a.unit_code {
        m.insert("unitCode".into(), Value::String(u.to_string()));
    }
    if o.sys_attrs {
        m.insert(
            "createdAt".into(),
            Value::String(format_datetime(&a.created_at)),
        );
        m.insert(
            "modifiedAt".into(),
            Value::String(format_datetime(&a.modified_at)),
        );
    }
    for (name, sub) in a.sub() {
        m.insert(ctx.compact(name), render_attribute(sub, ctx, o));
    }
    Value::Object(m)
}

/// Renders an entity as a GeoJSON Feature; `geometry_attr` is the expanded name of the
/// GeoProperty used as the feature's geometry.
pub fn render_feature(
    e: &Entity,
    ctx: &JsonLdContext,
    o: &RenderOptions,
    geometry_attr: &str,
) -> Value {
    let mut props = render_entity(e, ctx, o);
    props.remove("id");
    let geometry = e
        .default_instance(geometry_attr)
        .filter(|a| a.kind == AttrKind::GeoProperty)
        .map(|a| a.value.to_value())
        .unwrap_or(Value::Null);
    let mut f = Map::new();
    f.insert("id".into(), Value::String(e.id.clone()));
    f.insert("type".into(), Value::String("Feature".into()));
    f.insert("geometry".into(), geometry);
    f.insert("properties".into(), Value::Object(props));
    Value::Object(f)
}

/// How linked entities are returned (`join`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Join {
    #[default]
    None,
    /// Each Relationship carries its target under `entity` (keyValues: replaces the id).
    Inline,
    /// Targets are appended to the result list.
    Flat,
}

impl Join {
    /// Parses `join` (`inline`, `flat`, `@none`).
    pub fn parse(v: Option<&str>) -> Result<Join> {
        match v {
            None | Some("@none") => Ok(Join::None),
            Some("inline") => Ok(Join::Inline),
            Some("flat") => Ok(Join::Flat),
            Some(other) => Err(ModelError::bad_data(format!(
                "unknown join '{other}' (inline, flat, @none)"
            ))),
        }
    }

    /// Parses `joinLevel` (1 to 16; default 1).
    pub fn parse_level(v: Option<&str>) -> Result<usize> {
        match v {
            None => Ok(1),
            Some(l) => l
                .parse::<usize>()
                .ok()
                .filter(|l| (1..=16).contains(l))
                .ok_or_else(|| {
                    ModelError::bad_data(format!(
                        "'joinLevel' must be an integer from 1 to 16, got '{l}'"
                    ))
                }),
        }
    }
}

/// Renders entities following their Relationships `level` deep. `lookup` fetches a
/// target entity (same tenant).
pub fn render_joined(
    roots: &[&Entity],
    lookup: &dyn Fn(&str) -> Option<std::sync::Arc<Entity>>,
    ld: &JsonLdContext,
    opts: &RenderOptions,
    join: Join,
    level: usize,
) -> Vec<Map<String, Value>> {
    match join {
        Join::None => roots.iter().map(|e| render_entity(e, ld, opts)).collect(),
        Join::Inline => roots
            .iter()
            .map(|e| inline(e, lookup, ld, opts, level))
            .collect(),
        Join::Flat => {
            let mut seen: std::collections::HashSet<String> =
                roots.iter().map(|e| e.id.clone()).collect();
            let mut out: Vec<Map<String, Value>> =
                roots.iter().map(|e| render_entity(e, ld, opts)).collect();
            // Each linked entity is shown with the nested projection of the Relationship
            // that reached it.
            let mut frontier: Vec<(String, RenderOptions)> = roots
                .iter()
                .flat_map(|e| relationship_targets(e, opts))
                .map(|(attr, id)| (id, linked_options(opts, attr)))
                .collect();
            for _ in 0..level {
                let mut next = Vec::new();
                for (id, linked) in frontier {
                    if seen.insert(id.clone()) {
                        if let Some(t) = lookup(&id) {
                            out.push(render_entity(&t, ld, &linked));
                            next.extend(
                                relationship_targets(&t, &linked)
                                    .into_iter()
                                    .map(|(attr, id)| (id, linked_options(&linked, attr))),
                            );
                        }
                    }
                }
                frontier = next;
            }
            out
        }
    }
}

/// Options for an entity reached through the Relationship `via`: the root's format, and
/// the nested projection given for that Relationship (if any).
fn linked_options(opts: &RenderOptions, via: &str) -> RenderOptions {
    RenderOptions {
        projection: opts.projection.for_linked(via),
        dataset_ids: None,
        ..opts.clone()
    }
}

/// (Relationship name, target id) for each Relationship a (projected) entity keeps.
fn relationship_targets<'e>(e: &'e Entity, opts: &RenderOptions) -> Vec<(&'e str, String)> {
    let mut out = Vec::new();
    for (name, instances) in &e.attrs {
        if !opts.projection.keeps(name) {
            continue;
        }
        for a in instances {
            if a.kind == AttrKind::Relationship {
                match a.value.to_value() {
                    Value::String(s) => out.push((&**name, s)),
                    Value::Array(v) => out.extend(
                        v.iter()
                            .filter_map(Value::as_str)
                            .map(|s| (&**name, s.to_string())),
                    ),
                    _ => {}
                }
            }
        }
    }
    out
}

fn inline(
    e: &Entity,
    lookup: &dyn Fn(&str) -> Option<std::sync::Arc<Entity>>,
    ld: &JsonLdContext,
    opts: &RenderOptions,
    level: usize,
) -> Map<String, Value> {
    let mut m = render_entity(e, ld, opts);
    if level == 0 {
        return m;
    }
    for (name, instances) in &e.attrs {
        if !opts.projection.keeps(name) {
            continue;
        }
        let Some(a) = instances.first() else { continue };
        let (AttrKind::Relationship, Some(target)) = (a.kind, a.value.as_str()) else {
            continue;
        };
        let Some(t) = lookup(target) else { continue };
        let linked = linked_options(opts, name);
        let rendered = Value::Object(inline(&t, lookup, ld, &linked, level - 1));
        let key = ld.compact(name);
        match m.get_mut(&key) {
            Some(Value::Object(attr)) => {
                attr.insert("entity".into(), rendered);
            }
            Some(slot) => *slot = rendered,
            None => {}
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::parse_entity;
    use crate::time::{Clock as _, SystemClock};
    use serde_json::json;

    fn ent() -> Entity {
        let body = json!({
            "id": "urn:ngsi-ld:T:1", "type": "T",
            "speed": {"type": "Property", "value": 5, "unitCode": "KMH"},
            "plain": {"type": "Property", "value": 1},
            "owner": {"type": "Relationship", "object": "urn:x:1"},
            "name": {"type": "LanguageProperty", "languageMap": {"en": "road", "es": "calle"}},
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [1, 2]}}
        });
        parse_entity(
            body.as_object().unwrap(),
            &JsonLdContext::core(),
            SystemClock.now_precise(),
        )
        .unwrap()
    }

    #[test]
    fn normalized_concise_keyvalues() {
        let ctx = JsonLdContext::core();
        let e = ent();
        let n = render_entity(&e, &ctx, &RenderOptions::default());
        assert_eq!(
            n["speed"],
            json!({"type": "Property", "value": 5, "unitCode": "KMH"})
        );
        assert_eq!(
            n["owner"],
            json!({"type": "Relationship", "object": "urn:x:1"})
        );
        let c = render_entity(
            &e,
            &ctx,
            &RenderOptions {
                format: Format::Concise,
                ..Default::default()
            },
        );
        assert_eq!(c["plain"], json!(1));
        assert_eq!(c["speed"], json!({"value": 5, "unitCode": "KMH"}));
        assert_eq!(c["owner"], json!({"object": "urn:x:1"}));
        assert_eq!(
            c["location"],
            json!({"type": "Point", "coordinates": [1, 2]})
        );
        let k = render_entity(
            &e,
            &ctx,
            &RenderOptions {
                format: Format::KeyValues,
                lang: Some("es".into()),
                ..Default::default()
            },
        );
        assert_eq!(k["speed"], json!(5));
        assert_eq!(k["owner"], json!("urn:x:1"));
        assert_eq!(k["name"], json!("calle"));
        let l = render_entity(
            &e,
            &ctx,
            &RenderOptions {
                lang: Some("en".into()),
                ..Default::default()
            },
        );
        assert_eq!(
            l["name"],
            json!({"type": "Property", "value": "road", "lang": "en"})
        );
    }

    #[test]
    fn projection_members() {
        let m = parse_members("pick", "id,locatedAt{id,name},b").unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[1].nested.len(), 2);
        for bad in ["", "a{", "a{b", "a}}", "a,,b", "{a}", "$a", "a{b}}"] {
            assert!(parse_members("pick", bad).is_err(), "{bad}");
        }
        let ctx = JsonLdContext::core();
        let p = Projection::from_pick_omit(Some(&m), None, &ctx).unwrap();
        assert!(!p.omit_id && p.omit_type);
        assert_eq!(p.linked.len(), 1);
        let o = parse_members("omit", "a").unwrap();
        assert!(Projection::from_pick_omit(Some(&o), Some(&o), &ctx).is_err());
    }

    #[test]
    fn concise_reads_back_as_the_same_entity() {
        let ctx = JsonLdContext::core();
        let body = json!({
            "id": "urn:ngsi-ld:T:1", "type": "T",
            "a": {"type": "Property", "value": 1, "unitCode": "C", "s": {"type": "Property", "value": 2}},
            "m": [{"type": "Property", "value": 1, "datasetId": "urn:ds:1"}, {"type": "Property", "value": 2}],
            "g": [{"type": "GeoProperty", "value": {"type": "Point", "coordinates": [1, 2]}},
                  {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [3, 4]}, "datasetId": "urn:ds:2"}],
            "r": {"type": "Relationship", "object": "urn:x:1"},
            "l": {"type": "LanguageProperty", "languageMap": {"en": "x"}}
        });
        let now = SystemClock.now_precise();
        let e = parse_entity(body.as_object().unwrap(), &ctx, now).unwrap();
        let concise = render_entity(
            &e,
            &ctx,
            &RenderOptions {
                format: Format::Concise,
                ..Default::default()
            },
        );
        let back = parse_entity(&concise, &ctx, now).unwrap();
        let normalized = |e: &Entity| render_entity(e, &ctx, &RenderOptions::default());
        assert_eq!(normalized(&back), normalized(&e));
    }

    #[test]
    fn geojson_feature() {
        let ctx = JsonLdContext::core();
        let f = render_feature(
            &ent(),
            &ctx,
            &RenderOptions::default(),
            crate::context::iri::LOCATION,
        );
        assert_eq!(
            f["geometry"],
            json!({"type": "Point", "coordinates": [1, 2]})
        );
        assert_eq!(f["properties"]["type"], json!("T"));
    }
}
