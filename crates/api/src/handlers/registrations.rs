//! `/csourceRegistrations` handlers: decode, call the federation, encode.

use axum::extract::{Path, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::Response;
use citybrain_federation::discovery::{CsrQuery, TimeParams};
use serde_json::Value;

use crate::handlers::entities::query_params;
use crate::problem::ApiResult;
use crate::request::NgsiRequest;
use crate::response;
use crate::routes::REGISTRATIONS;
use crate::AppState;

pub async fn create(State(app): State<AppState>, req: NgsiRequest) -> ApiResult<Response> {
    let body = req.object()?;
    let id = app
        .federation
        .create(&req.rc, body, req.context.clone())
        .await?;
    Ok(response::created(&format!("{REGISTRATIONS}/{id}")))
}

pub async fn query(State(app): State<AppState>, req: NgsiRequest) -> ApiResult<Response> {
    let accept = req.accept_json()?;
    app.broker.check_tenant(&req.rc)?;
    let ld = app.broker.contexts.resolve(req.context.as_ref()).await?;
    let p = |k: &str| req.param(k).map(str::to_string);
    let time = TimeParams {
        timeproperty: p("timeproperty"),
        timerel: p("timerel"),
        time_at: p("timeAt"),
        end_time_at: p("endTimeAt"),
    };
    let limits = (app.broker.limits.default_limit, app.broker.limits.max_limit);
    let q = CsrQuery::from_params(&query_params(&req)?, req.param("csf"), &time, &ld, limits)?;
    let (page, total) = app.federation.query(&req.rc, &q).await?;
    let sys_attrs = req.has_option("sysAttrs");
    let items: Vec<Value> = page
        .iter()
        .map(|e| {
            response::with_context(
                app.federation.render(&req.rc, e, &ld, sys_attrs),
                accept,
                &ld,
            )
        })
        .collect();
    let mut extra = Vec::new();
    if req.bool_param("count")? {
        extra.push((
            HeaderName::from_static("ngsild-results-count"),
            total.to_string(),
        ));
    }
    let has_more = q.offset.saturating_add(q.limit) < total;
    extra.extend(response::page_links(
        &req.params,
        REGISTRATIONS,
        q.offset,
        q.limit,
        has_more,
    ));
    Ok(response::json(
        StatusCode::OK,
        &Value::Array(items),
        accept,
        &ld,
        &extra,
    ))
}

pub async fn retrieve(
    State(app): State<AppState>,
    Path(id): Path<String>,
    req: NgsiRequest,
) -> ApiResult<Response> {
    let accept = req.accept_json()?;
    app.broker.check_tenant(&req.rc)?;
    let ld = app.broker.contexts.resolve(req.context.as_ref()).await?;
    let e = app.federation.get(&req.rc, &id).await?;
    let m = app
        .federation
        .render(&req.rc, &e, &ld, req.has_option("sysAttrs"));
    Ok(response::json(
        StatusCode::OK,
        &response::with_context(m, accept, &ld),
        accept,
        &ld,
        &[],
    ))
}

pub async fn update(
    State(app): State<AppState>,
    Path(id): Path<String>,
    req: NgsiRequest,
) -> ApiResult<Response> {
    let body = req.object()?;
    app.broker.check_tenant(&req.rc)?;
    app.federation
        .update(&req.rc, &id, body, req.context.clone())
        .await?;
    Ok(response::no_content())
}

pub async fn delete(
    State(app): State<AppState>,
    Path(id): Path<String>,
    req: NgsiRequest,
) -> ApiResult<Response> {
    app.broker.check_tenant(&req.rc)?;
    app.federation.delete(&req.rc, &id).await?;
    Ok(response::no_content())
}

/// `GET /info/sourceIdentity` (NGSI-LD 5.15): this broker's alias for the tenant (the
/// name it puts in `Via`), its uptime and its clock. Any tenant name is answered: the
/// identity does not reveal whether the tenant holds data.
pub async fn source_identity(State(app): State<AppState>, req: NgsiRequest) -> ApiResult<Response> {
    let accept = req.accept_json()?;
    let body = app.federation.source_identity(&req.rc.tenant);
    let ld = citybrain_model::JsonLdContext::core();
    let body = match body {
        Value::Object(m) => response::with_context(m, accept, &ld),
        other => other,
    };
    Ok(response::json(StatusCode::OK, &body, accept, &ld, &[]))
}
