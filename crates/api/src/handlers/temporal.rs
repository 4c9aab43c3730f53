//! `/temporal/...` handlers: decode, call the broker, encode.

use axum::extract::{Path, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::Response;
use citybrain_broker::temporal::render::render_temporal;
use citybrain_broker::{TemporalPage, TemporalParams, TemporalQuery};
use citybrain_model::JsonLdContext;
use serde_json::Value;

use crate::handlers::batch::query_params_from_body;
use crate::handlers::entities::{entity_query, query_params};
use crate::problem::{ApiError, ApiResult};
use crate::request::NgsiRequest;
use crate::response;
use crate::routes::TEMPORAL_ENTITIES;
use crate::AppState;

fn temporal_params(req: &NgsiRequest) -> TemporalParams {
    let p = |k: &str| req.param(k).map(str::to_string);
    TemporalParams {
        timerel: p("timerel"),
        time_at: p("timeAt"),
        end_time_at: p("endTimeAt"),
        timeproperty: p("timeproperty"),
        last_n: p("lastN"),
        aggr_methods: p("aggrMethods"),
        aggr_period_duration: p("aggrPeriodDuration"),
    }
}

/// Builds the temporal request from parameters (and, for POST queries, the body's
/// `temporalQ`).
fn temporal_query(
    req: &NgsiRequest,
    ld: &JsonLdContext,
    body_tq: Option<&Value>,
) -> ApiResult<(TemporalQuery, citybrain_model::render::RenderOptions)> {
    let (format, opts) = req.temporal_options(ld)?;
    let mut params = temporal_params(req);
    if let Some(tq) = body_tq {
        let s = |k: &str| -> ApiResult<Option<String>> {
            match tq.get(k) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(Value::Number(n)) => Ok(Some(n.to_string())),
                Some(other) => Err(ApiError::bad_data(format!(
                    "'temporalQ.{k}' must be a string, got {other}"
                ))),
            }
        };
        params.timerel = s("timerel")?.or(params.timerel);
        params.time_at = s("timeAt")?.or(params.time_at);
        params.end_time_at = s("endTimeAt")?.or(params.end_time_at);
        params.timeproperty = s("timeproperty")?.or(params.timeproperty);
        params.last_n = s("lastN")?.or(params.last_n);
    }
    // `attrs` selects series; `pick`/`omit` only shape the output.
    let attrs = match req.param("attrs") {
        Some(s) => Some(
            citybrain_broker::query::split_list("attrs", s)?
                .iter()
                .map(|a| ld.expand(a))
                .collect::<Vec<_>>(),
        ),
        None => None,
    };
    let tq = TemporalQuery::from_params(&params, format, attrs, opts.dataset_ids.clone())?;
    Ok((tq, opts))
}

/// Encodes a temporal answer: 200, or 206 with `Content-Range` when instances were cut.
fn page_response(
    req: &NgsiRequest,
    ld: &JsonLdContext,
    page: &TemporalPage,
    tq: &TemporalQuery,
    opts: &citybrain_model::render::RenderOptions,
    single: bool,
) -> ApiResult<Response> {
    let accept = req.accept_json()?;
    let mut items: Vec<Value> = page
        .entities
        .iter()
        .map(|e| response::with_context(render_temporal(e, tq, ld, opts), accept, ld))
        .collect();
    let body = if single {
        let one = items.pop().unwrap_or(Value::Null);
        // A projection that leaves nothing (NGSI-LD 4.21) finds nothing.
        let empty = one
            .as_object()
            .is_some_and(|m| m.keys().all(|k| k == "@context"));
        if empty {
            return Err(ApiError::from(citybrain_broker::BrokerError::not_found(
                "the projection leaves nothing of the entity",
            )));
        }
        one
    } else {
        Value::Array(items)
    };
    let mut extra = Vec::new();
    if let Some(total) = page.total {
        extra.push((
            HeaderName::from_static("ngsild-results-count"),
            total.to_string(),
        ));
    }
    if !single {
        extra.extend(response::page_links(
            &req.params,
            TEMPORAL_ENTITIES,
            page.offset,
            page.limit,
            page.has_more,
        ));
    }
    let status = match &page.range {
        Some(r) => {
            extra.push((HeaderName::from_static("content-range"), r.header()));
            StatusCode::PARTIAL_CONTENT
        }
        None => StatusCode::OK,
    };
    Ok(response::json(status, &body, accept, ld, &extra))
}

pub async fn query(State(app): State<AppState>, req: NgsiRequest) -> ApiResult<Response> {
    req.accept_json()?;
    let ld = app.broker.contexts.resolve(req.context.as_ref()).await?;
    let q = entity_query(&app, &ld, &query_params(&req)?)?;
    let (tq, opts) = temporal_query(&req, &ld, None)?;
    let page = app.broker.query_temporal(&req.rc, &q, &tq)?;
    page_response(&req, &ld, &page, &tq, &opts, false)
}

pub async fn query_post(State(app): State<AppState>, req: NgsiRequest) -> ApiResult<Response> {
    req.accept_json()?;
    let ld = app.broker.contexts.resolve(req.context.as_ref()).await?;
    let body = req.object()?;
    if body.get("type").and_then(Value::as_str) != Some("Query") {
        return Err(ApiError::bad_data(
            "the body must be a Query object (\"type\": \"Query\")",
        ));
    }
    let q = entity_query(&app, &ld, &query_params_from_body(&req, &body)?)?;
    let (tq, opts) = temporal_query(&req, &ld, body.get("temporalQ"))?;
    let page = app.broker.query_temporal(&req.rc, &q, &tq)?;
    page_response(&req, &ld, &page, &tq, &opts, false)
}

pub async fn retrieve(
    State(app): State<AppState>,
    Path(id): Path<String>,
    req: NgsiRequest,
) -> ApiResult<Response> {
    req.accept_json()?;
    let ld = app.broker.contexts.resolve(req.context.as_ref()).await?;
    let (tq, opts) = temporal_query(&req, &ld, None)?;
    let page = app.broker.retrieve_temporal(&req.rc, &id, &tq)?;
    page_response(&req, &ld, &page, &tq, &opts, true)
}

pub async fn upsert(State(app): State<AppState>, req: NgsiRequest) -> ApiResult<Response> {
    let ld = app.broker.contexts.resolve(req.context.as_ref()).await?;
    let body = req.object()?;
    let (id, created) = app.broker.upsert_temporal(&req.rc, &ld, &body).await?;
    Ok(if created {
        response::created(&format!("{TEMPORAL_ENTITIES}/{id}"))
    } else {
        response::no_content()
    })
}

pub async fn delete(
    State(app): State<AppState>,
    Path(id): Path<String>,
    req: NgsiRequest,
) -> ApiResult<Response> {
    app.broker.delete_temporal(&req.rc, &id).await?;
    Ok(response::no_content())
}

pub async fn append_attrs(
    State(app): State<AppState>,
    Path(id): Path<String>,
    req: NgsiRequest,
) -> ApiResult<Response> {
    let ld = app.broker.contexts.resolve(req.context.as_ref()).await?;
    let body = req.object()?;
    app.broker
        .append_temporal_attrs(&req.rc, &ld, &id, &body)
        .await?;
    Ok(response::no_content())
}

pub async fn delete_attr(
    State(app): State<AppState>,
    Path((id, attr)): Path<(String, String)>,
    req: NgsiRequest,
) -> ApiResult<Response> {
    let ld = app.broker.contexts.resolve(req.context.as_ref()).await?;
    let delete_all = req.bool_param("deleteAll")?;
    app.broker
        .delete_temporal_attr(&req.rc, &ld, &id, &attr, req.param("datasetId"), delete_all)
        .await?;
    Ok(response::no_content())
}

pub async fn delete_instance(
    State(app): State<AppState>,
    Path((id, attr, instance)): Path<(String, String, String)>,
    req: NgsiRequest,
) -> ApiResult<Response> {
    let ld = app.broker.contexts.resolve(req.context.as_ref()).await?;
    app.broker
        .delete_temporal_instance(&req.rc, &ld, &id, &attr, &instance)
        .await?;
    Ok(response::no_content())
}

pub async fn modify_instance(
    State(app): State<AppState>,
    Path((id, attr, instance)): Path<(String, String, String)>,
    req: NgsiRequest,
) -> ApiResult<Response> {
    // `.../attrs//{instanceId}`: with no attribute, the path is not an instance but
    // the attribute collection, which takes no PATCH (the ETSI suite's 016_02_06).
    if attr.is_empty() {
        return Err(crate::problem::ApiError::new(
            citybrain_model::ErrorKind::OperationNotSupported,
            "no attribute named in the path: PATCH applies to an attribute's instance",
        )
        .with_status(axum::http::StatusCode::METHOD_NOT_ALLOWED));
    }
    let ld = app.broker.contexts.resolve(req.context.as_ref()).await?;
    let body = req.object()?;
    app.broker
        .modify_temporal_instance(&req.rc, &ld, &id, &attr, &instance, &body)
        .await?;
    Ok(response::no_content())
}
