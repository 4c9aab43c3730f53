//! Encoding of responses: media type, `Link` to the context, `@context` in JSON-LD bodies.

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use citybrain_broker::subscriptions::link_header;
use citybrain_model::context::CORE_CONTEXT_URL;
use citybrain_model::render::{render_entity, render_feature, RenderOptions};
use citybrain_model::{Entity, JsonLdContext};
use serde_json::{json, Map, Value};

use crate::problem::ApiError;
use crate::request::Accept;

/// The `@context` value to embed for a request context.
pub fn context_value(ld: &JsonLdContext) -> Value {
    if ld.is_core_only() {
        Value::String(CORE_CONTEXT_URL.into())
    } else {
        ld.source().clone()
    }
}

/// A plain `application/json` response (platform API, ingest API).
pub fn plain_json(status: StatusCode, body: &Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// `value` as JSON: what cannot be encoded is an internal error (logged where it is
/// answered), never a `null` answer.
pub fn encode<T: serde::Serialize + ?Sized>(value: &T) -> Result<Value, ApiError> {
    serde_json::to_value(value).map_err(|e| {
        tracing::error!(error = %e, "an answer could not be encoded");
        ApiError::new(
            citybrain_model::ErrorKind::InternalError,
            "the answer could not be encoded; see the server log",
        )
    })
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
                "<{path}?{}>;rel=\"{rel}\";type=\"application/ld+json\"",
                qs.join("&")
            ),
        )
    };
    let mut out = Vec::new();
    // A page of no results (`limit=0`, a count only) has no next page: a link to
    // itself would make a client that follows links loop forever.
    if has_more && limit > 0 {
        out.push(link(offset + limit, "next"));
    }
    if offset > 0 && limit > 0 {
        out.push(link(offset.saturating_sub(limit), "prev"));
    }
    out
}

pub use citybrain_model::render::Join;

/// Renders entities with their linked entities (`join`), adding `@context` for JSON-LD.
#[allow(clippy::too_many_arguments)]
pub fn render_joined(
    roots: &[&Entity],
    lookup: &dyn Fn(&str) -> Option<std::sync::Arc<Entity>>,
    ld: &JsonLdContext,
    accept: Accept,
    opts: &RenderOptions,
    join: Join,
    level: usize,
) -> Vec<Value> {
    citybrain_model::render::render_joined(roots, lookup, ld, opts, join, level)
        .into_iter()
        .map(|m| with_context(m, accept, ld))
        .collect()
}
