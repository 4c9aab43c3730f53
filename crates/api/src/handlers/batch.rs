//! `/entityOperations/*` handlers.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use citybrain_broker::{BatchItem, BatchOutcome, QueryParams, UpsertMode};
use citybrain_model::JsonLdContext;
use serde_json::{json, Value};

use crate::handlers::entities::page_response;
use crate::problem::{ApiError, ApiResult};
use crate::request::{Accept, NgsiRequest};
use crate::response::{self, Join};
use crate::routes::ENTITIES;
use crate::AppState;

/// Splits a batch body into items, each with its own `@context` (JSON-LD bodies carry one
/// per item; JSON bodies use the `Link` header). Items that break the media-type rules
/// fail alone.
async fn batch_items(app: &AppState, req: &NgsiRequest) -> ApiResult<Vec<BatchItem>> {
    let items = req.array()?;
    let link = req.context.clone();
    let mut out = Vec::with_capacity(items.len());
    for mut body in items {
        let own = body.as_object_mut().and_then(|m| m.remove("@context"));
        let source = match (req.is_ld, own) {
            (true, Some(c)) => Ok(Some(c)),
            (true, None) => Err("with application/ld+json every entity needs an @context"),
            (false, Some(_)) => Err("with application/json an entity must not carry an @context"),
            (false, None) => Ok(link.clone()),
        };
        let ld = match source {
            Ok(src) => match app.broker.contexts.resolve(src.as_ref()).await {
                Ok(ld) => Ok(ld),
                Err(e) => Err(citybrain_model::ModelError::new(
                    citybrain_model::ErrorCode::kind(&e),
                    citybrain_model::ErrorCode::public_detail(&e),
                )),
            },
            Err(why) => Err(citybrain_model::ModelError::bad_data(why)),
        };
        out.push(BatchItem { body, ld });
    }
    Ok(out)
}

fn partial(o: &BatchOutcome, ld: &JsonLdContext) -> Response {
    let errors: Vec<Value> = o
        .errors
        .iter()
        .map(|(id, e)| json!({"entityId": id, "error": ApiError::of(e).body()}))
        .collect();
    response::json(
        StatusCode::MULTI_STATUS,
        &json!({"success": o.success, "errors": errors}),
        Accept::Json,
        ld,
        &[],
    )
}

/// 204 when all succeeded, 207 otherwise.
fn all_or_partial(o: &BatchOutcome, ld: &JsonLdContext) -> Response {
    if o.errors.is_empty() {
        response::no_content()
    } else {
        partial(o, ld)
    }
}

pub async fn create(State(app): State<AppState>, req: NgsiRequest) -> ApiResult<Response> {
    let ld = app.broker.contexts.resolve(req.context.as_ref()).await?;
    let o = app
        .broker
        .batch_create(&req.rc, &batch_items(&app, &req).await?)
        .await?;
    if o.errors.is_empty() {
        Ok(response::json(
            StatusCode::CREATED,
            &json!(o.success),
            Accept::Json,
            &ld,
            &[],
        ))
    } else {
        Ok(partial(&o, &ld))
    }
}

pub async fn upsert(State(app): State<AppState>, req: NgsiRequest) -> ApiResult<Response> {
    let ld = app.broker.contexts.resolve(req.context.as_ref()).await?;
    let mode = if req.has_option("update") {
        UpsertMode::Update
    } else {
        UpsertMode::Replace
    };
    let o = app
        .broker
        .batch_upsert(&req.rc, &batch_items(&app, &req).await?, mode)
        .await?;
    if !o.errors.is_empty() {
        return Ok(partial(&o, &ld));
    }
    if o.created.is_empty() {
        Ok(response::no_content())
    } else {
        Ok(response::json(
            StatusCode::CREATED,
            &json!(o.created),
            Accept::Json,
            &ld,
            &[],
        ))
    }
}

pub async fn update(State(app): State<AppState>, req: NgsiRequest) -> ApiResult<Response> {
    let ld = app.broker.contexts.resolve(req.context.as_ref()).await?;
    let o = app
        .broker
        .batch_update(
            &req.rc,
            &batch_items(&app, &req).await?,
            req.has_option("noOverwrite"),
        )
        .await?;
    Ok(all_or_partial(&o, &ld))
}

pub async fn merge(State(app): State<AppState>, req: NgsiRequest) -> ApiResult<Response> {
    let ld = app.broker.contexts.resolve(req.context.as_ref()).await?;
    let o = app
        .broker
        .batch_merge(&req.rc, &batch_items(&app, &req).await?)
        .await?;
    Ok(all_or_partial(&o, &ld))
}

pub async fn delete(State(app): State<AppState>, req: NgsiRequest) -> ApiResult<Response> {
    let ld = app.broker.contexts.resolve(req.context.as_ref()).await?;
    let o = app.broker.batch_delete(&req.rc, &req.array()?).await?;
    Ok(all_or_partial(&o, &ld))
}

/// `POST /entityOperations/query`: a Query object in the body.
pub async fn query(State(app): State<AppState>, req: NgsiRequest) -> ApiResult<Response> {
    req.accept()?;
    let ld = app.broker.contexts.resolve(req.context.as_ref()).await?;
    let body = req.object()?;
    if body.get("type").and_then(Value::as_str) != Some("Query") {
        return Err(ApiError::bad_data(
            "the body must be a Query object (\"type\": \"Query\")",
        ));
    }
    let p = query_params_from_body(&req, &body)?;
    let q = crate::handlers::entities::entity_query(&app, &ld, &p)?;
    let (page, warnings) = if app.federation.has_registrations(&req.rc.tenant) {
        let f = app
            .federation
            .query_entities(
                &req.rc,
                &p,
                &q,
                &ld,
                &crate::handlers::entities::incoming(&req)?,
            )
            .await
            .map_err(crate::handlers::entities::federated_error)?;
        (f.value, f.warnings)
    } else {
        (app.broker.query_entities(&req.rc, &q)?, Vec::new())
    };
    // join / joinLevel may come in the Query body (019_24) or as parameters.
    let mut join = req.join()?;
    if let Some(j) = body.get("join") {
        join.0 = Join::parse(j.as_str())?;
    }
    if let Some(l) = body.get("joinLevel") {
        join.1 = Join::parse_level(Some(&l.to_string()))?;
    }
    let mut resp = page_response(&app, &req, &ld, &page, ENTITIES, join)?;
    crate::handlers::entities::add_warnings(&mut resp, &warnings);
    Ok(resp)
}

/// The parameters of a `Query` body (`POST .../entityOperations/query`).
pub(crate) fn query_params_from_body(
    req: &NgsiRequest,
    body: &serde_json::Map<String, Value>,
) -> ApiResult<QueryParams> {
    let mut p = QueryParams {
        count: req.param("count") == Some("true"),
        limit: req.param("limit").map(str::to_string),
        offset: req.param("offset").map(str::to_string),
        ..Default::default()
    };
    if let Some(ents) = body.get("entities") {
        let arr = ents
            .as_array()
            .ok_or_else(|| ApiError::bad_data("'entities' must be an array"))?;
        let mut types = Vec::new();
        let mut ids = Vec::new();
        for e in arr {
            if let Some(t) = e.get("type").and_then(Value::as_str) {
                types.push(t.to_string());
            }
            if let Some(i) = e.get("id").and_then(Value::as_str) {
                ids.push(i.to_string());
            }
            if let Some(pat) = e.get("idPattern").and_then(Value::as_str) {
                p.id_pattern = Some(pat.to_string());
            }
        }
        if !types.is_empty() {
            p.type_ = Some(types.join(","));
        }
        if !ids.is_empty() {
            p.id = Some(ids.join(","));
        }
    }
    let list = |k: &str| -> ApiResult<Option<String>> {
        match body.get(k) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
            )),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(ApiError::bad_data(format!(
                "'{k}' must be an array of strings, got {other}"
            ))),
        }
    };
    p.attrs = list("attrs")?;
    p.order_by = match body.get("orderBy") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ApiError::bad_data("'orderBy' must be a string")),
        None => req.param("orderBy").map(str::to_string),
    };
    p.q = body.get("q").and_then(Value::as_str).map(str::to_string);
    p.scope_q = body
        .get("scopeQ")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(g) = body.get("geoQ") {
        p.georel = g.get("georel").and_then(Value::as_str).map(str::to_string);
        p.geometry = g
            .get("geometry")
            .and_then(Value::as_str)
            .map(str::to_string);
        p.coordinates = g.get("coordinates").cloned();
        p.geoproperty = g
            .get("geoproperty")
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    Ok(p)
}
