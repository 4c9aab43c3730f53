//! The data catalogue (`docs/catalog.md`): handlers decode, call `citybrain-catalog`,
//! encode.
//!
//! - `GET /platform/v1/catalog`: the catalogue as DCAT-AP 3 JSON-LD;
//!   `GET /platform/v1/catalog/datasets/{id}`: one dataset;
//! - `GET /platform/v1/datasets`: the datasets the caller may see (plain JSON);
//!   `GET|PUT|DELETE /platform/v1/datasets/{id}` (PUT and DELETE: administrators);
//! - `GET /platform/v1/datasets/{id}/export?limit=&offset=`: CSV, as the caller reads;
//! - `GET /platform/v1/datasets/{id}/aggregate?statistic=…`: a differentially private
//!   aggregate; `GET /platform/v1/datasets/{id}/budget`: the caller's budget.
//!
//! What a caller may not see answers 404, as if it did not exist.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use citybrain_catalog::aggregate::AggregateRequest;
use citybrain_catalog::{Catalog, DatasetSpec};
use citybrain_model::ErrorKind;
use serde_json::json;

use super::audit::number;
use crate::context::Ctx;
use crate::problem::{ApiError, ApiResult};
use crate::response::{encode, plain_json};
use crate::AppState;

fn catalog(app: &AppState) -> ApiResult<&Arc<Catalog>> {
    app.catalog.as_ref().ok_or_else(|| {
        ApiError::new(
            ErrorKind::ResourceNotFound,
            "the data catalogue is not enabled on this server",
        )
    })
}

/// The base of absolute URLs in answers: `server.public_url` when configured, else the scheme a proxy reports
/// (`X-Forwarded-Proto`) or http, and the request's host when it is a plain host name
/// or address (anything else becomes `localhost`, so that a forged header cannot put
/// markup or another path into the links).
fn base(c: &Catalog, headers: &HeaderMap) -> String {
    if let Some(b) = c.base_url() {
        return b.to_string();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        })
        .unwrap_or("localhost");
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
    {
        Some("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}")
}

fn jsonld(v: &serde_json::Value) -> Response {
    let mut r = (StatusCode::OK, v.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/ld+json"),
    );
    r
}

pub async fn dcat_catalog(
    State(app): State<AppState>,
    Ctx(rc): Ctx,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let c = catalog(&app)?;
    let v = c
        .dcat_catalog(&rc, &base(c, &headers))
        .map_err(|e| ApiError::of(&e))?;
    Ok(jsonld(&v))
}

pub async fn dcat_dataset(
    State(app): State<AppState>,
    Ctx(rc): Ctx,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let c = catalog(&app)?;
    let v = c
        .dcat_document(&rc, &base(c, &headers), &id)
        .map_err(|e| ApiError::of(&e))?;
    Ok(jsonld(&v))
}

pub async fn list(State(app): State<AppState>, Ctx(rc): Ctx) -> ApiResult<Response> {
    let c = catalog(&app)?;
    let d = c.datasets(&rc).map_err(|e| ApiError::of(&e))?;
    Ok(plain_json(StatusCode::OK, &encode(&d)?))
}

pub async fn retrieve(
    State(app): State<AppState>,
    Ctx(rc): Ctx,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let c = catalog(&app)?;
    let d = c.dataset(&rc, &id).map_err(|e| ApiError::of(&e))?;
    Ok(plain_json(StatusCode::OK, &encode(&d)?))
}

pub async fn put(
    State(app): State<AppState>,
    Ctx(rc): Ctx,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let c = catalog(&app)?;
    let spec = DatasetSpec::from_json(&body).map_err(|e| ApiError::of(&e))?;
    let d = c.put(&rc, &id, spec).await.map_err(|e| ApiError::of(&e))?;
    Ok(plain_json(StatusCode::OK, &encode(&d)?))
}

pub async fn delete(
    State(app): State<AppState>,
    Ctx(rc): Ctx,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let c = catalog(&app)?;
    c.delete(&rc, &id).await.map_err(|e| ApiError::of(&e))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn export(
    State(app): State<AppState>,
    Ctx(rc): Ctx,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let c = catalog(&app)?;
    if let Some(k) = q.keys().find(|k| !matches!(k.as_str(), "limit" | "offset")) {
        return Err(ApiError::bad_data(format!(
            "unknown parameter '{k}' (limit, offset)"
        )));
    }
    let limit = number(&q, "limit", Some(10_000))? as usize;
    let offset = number(&q, "offset", Some(0))? as usize;
    let e = c
        .export(&rc, &id, limit, offset)
        .map_err(|e| ApiError::of(&e))?;
    let mut r = (StatusCode::OK, e.csv).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{id}.csv\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if e.more {
        // The next page, as NGSI-LD pages entity queries.
        let next = format!(
            "</platform/v1/datasets/{id}/export?limit={limit}&offset={}>; rel=\"next\"",
            offset + e.rows
        );
        if let Ok(v) = HeaderValue::from_str(&next) {
            h.insert(header::LINK, v);
        }
    }
    Ok(r)
}

pub async fn aggregate(
    State(app): State<AppState>,
    Ctx(rc): Ctx,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Response> {
    let c = catalog(&app)?;
    let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    let req = AggregateRequest::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(|e| ApiError::of(&e))?;
    let a = c
        .aggregate(&rc, &id, &req)
        .await
        .map_err(|e| ApiError::of(&e))?;
    Ok(plain_json(StatusCode::OK, &encode(&a)?))
}

pub async fn budget(
    State(app): State<AppState>,
    Ctx(rc): Ctx,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let c = catalog(&app)?;
    let b = c.budget(&rc, &id).map_err(|e| ApiError::of(&e))?;
    Ok(plain_json(StatusCode::OK, &json!(b)))
}
