//! Encoding of responses: media type, `Link` to the context, `@context` in JSON-LD bodies.

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use citybrain_broker::subscriptions::link_header;
use citybrain_model::context::CORE_CONTEXT_URL;
use citybrain_model::render::{render_entity, render_feature, RenderOptions};
use citybrain_model::{Entity, JsonLdContext};
use serde_json::{json, Map, Value};

use crate::request::Accept;

/// The `@context` value to embed for a request context.
pub fn context_value(ld: &JsonLdContext) -> Value {
    if ld.is_core_only() {
        Value::String(CORE_CONTEXT_URL.into())
    } else {
        ld.source().clone()
    }
}

/// A JSON response in the accepted representation, with `Link` for plain JSON.
pub fn json(
    status: StatusCode,
    body: &Value,
    accept: Accept,
    ld: &JsonLdContext,
    extra: &[(HeaderName, String)],
) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(accept.content_type()),
    );
    if accept != Accept::JsonLd {
        if let Ok(v) = HeaderValue::from_str(&link_header(ld)) {
            h.insert(header::LINK, v);
        }
    }
    for (k, v) in extra {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.append(k.clone(), v);
        }
    }
    resp
}

/// Adds `@context` to an object when the client wants JSON-LD.
pub fn with_context(mut m: Map<String, Value>, accept: Accept, ld: &JsonLdContext) -> Value {
    if accept == Accept::JsonLd {
        m.insert("@context".into(), context_value(ld));
    }
    Value::Object(m)
}

/// Renders one entity in the accepted representation.
pub fn entity(
    e: &Entity,
    ld: &JsonLdContext,
    accept: Accept,
    opts: &RenderOptions,
    geometry: &str,
) -> Value {
    match accept {
        Accept::GeoJson => {
            let mut f = render_feature(e, ld, opts, geometry);
            if let Value::Object(m) = &mut f {
                m.insert("@context".into(), context_value(ld));
            }
            f
        }
        _ => with_context(render_entity(e, ld, opts), accept, ld),
    }
}

/// Renders a list of entities (a FeatureCollection for GeoJSON).
pub fn entities<'a>(
    list: impl Iterator<Item = &'a Entity>,
    ld: &JsonLdContext,
    accept: Accept,
    opts: &RenderOptions,
    geometry: &str,
) -> Value {
    let items: Vec<Value> = list
        .map(|e| match accept {
            Accept::GeoJson => render_feature(e, ld, opts, geometry),
            _ => entity(e, ld, accept, opts, geometry),
        })
        .collect();
    match accept {
        Accept::GeoJson => {
            json!({"type": "FeatureCollection", "features": items, "@context": context_value(ld)})
        }
        _ => Value::Array(items),
    }
}

pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

pub fn created(location: &str) -> Response {
    let mut resp = StatusCode::CREATED.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// `Link` headers with `rel="next"` / `rel="prev"` for a page of results; every other
/// query parameter is kept.
pub fn page_links(
    params: &std::collections::HashMap<String, String>,
    path: &str,
    offset: usize,
    limit: usize,
    has_more: bool,
) -> Vec<(HeaderName, String)> {
    let link = |offset: usize, rel: &str| {
        let mut kept: Vec<(&String, &String)> = params
            .iter()
            .filter(|(k, _)| *k != "offset" && *k != "limit")
            .collect();
        kept.sort();
        let mut qs: Vec<String> = kept
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
                )
            })
            .collect();
        qs.push(format!("limit={limit}"));
        qs.push(format!("offset={offset}"));
        (
            header::LINK,
            format!(
                "<{path}?{}>; rel=\"{rel}\"; type=\"application/ld+json\"",
                qs.join("&")
            ),
        )
    };
    let mut out = Vec::new();
    if has_more {
        out.push(link(offset + limit, "next"));
    }
    if offset > 0 && limit > 0 {
        out.push(link(offset.saturating_sub(limit), "prev"));
    }
    out
}

/// How linked entities are returned (`join`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Join {
    None,
    /// Each Relationship carries its target under `entity` (keyValues: replaces the id).
    Inline,
    /// Targets are appended to the result list.
    Flat,
}

/// Renders entities following their Relationships `level` deep. `lookup` fetches a
/// target entity (same tenant).
pub fn render_joined(
    roots: &[&Entity],
    lookup: &dyn Fn(&str) -> Option<std::sync::Arc<Entity>>,
    ld: &JsonLdContext,
    accept: Accept,
    opts: &RenderOptions,
    join: Join,
    level: usize,
) -> Vec<Value> {
    match join {
        Join::None => roots
            .iter()
            .map(|e| with_context(render_entity(e, ld, opts), accept, ld))
            .collect(),
        Join::Inline => roots
            .iter()
            .map(|e| with_context(inline(e, lookup, ld, opts, level), accept, ld))
            .collect(),
        Join::Flat => {
            let mut seen: std::collections::HashSet<String> =
                roots.iter().map(|e| e.id.clone()).collect();
            let mut out: Vec<Value> = roots
                .iter()
                .map(|e| with_context(render_entity(e, ld, opts), accept, ld))
                .collect();
            let mut frontier: Vec<String> = roots
                .iter()
                .flat_map(|e| relationship_targets(e, opts))
                .collect();
            for _ in 0..level {
                let mut next = Vec::new();
                for id in frontier {
                    if seen.insert(id.clone()) {
                        if let Some(t) = lookup(&id) {
                            let linked = linked_options(opts, None);
                            out.push(with_context(render_entity(&t, ld, &linked), accept, ld));
                            next.extend(relationship_targets(&t, &linked));
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
fn linked_options(opts: &RenderOptions, via: Option<&str>) -> RenderOptions {
    let projection = match via {
        Some(attr) => opts.projection.for_linked(attr),
        None => opts
            .projection
            .linked
            .first()
            .map(|(_, p)| p.clone())
            .unwrap_or_default(),
    };
    RenderOptions {
        projection,
        dataset_ids: None,
        ..opts.clone()
    }
}

/// The ids a (projected) entity's Relationships point to.
fn relationship_targets(e: &Entity, opts: &RenderOptions) -> Vec<String> {
    let mut out = Vec::new();
    for (name, instances) in &e.attrs {
        if !opts.projection.keeps(name) {
            continue;
        }
        for a in instances {
            if a.kind == citybrain_model::AttrKind::Relationship {
                match &a.value {
                    Value::String(s) => out.push(s.clone()),
                    Value::Array(v) => {
                        out.extend(v.iter().filter_map(Value::as_str).map(str::to_string))
                    }
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
        let (citybrain_model::AttrKind::Relationship, Value::String(target)) = (a.kind, &a.value)
        else {
            continue;
        };
        let Some(t) = lookup(target) else { continue };
        let linked = linked_options(opts, Some(name));
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
