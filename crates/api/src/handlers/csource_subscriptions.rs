//! `/csourceSubscriptions` handlers: decode, call the federation, encode.

use axum::extract::{Path, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::Response;
use serde_json::Value;

use crate::problem::ApiResult;
use crate::request::NgsiRequest;
use crate::response;
use crate::routes::CSOURCE_SUBSCRIPTIONS;
use crate::AppState;

pub async fn create(State(app): State<AppState>, req: NgsiRequest) -> ApiResult<Response> {
    let body = req.object()?;
    let id = app
        .federation
        .create_csub(&req.rc, body, req.context.clone())
        .await?;
    Ok(response::created(&format!("{CSOURCE_SUBSCRIPTIONS}/{id}")))
}

pub async fn list(State(app): State<AppState>, req: NgsiRequest) -> ApiResult<Response> {
    let accept = req.accept_json()?;
    app.broker.check_tenant(&req.rc)?;
    let ld = app.broker.contexts.resolve(req.context.as_ref()).await?;
    let (limit, offset) = req.paging(&app.broker.limits)?;
    let (page, total) =
        app.federation
            .list_csubs(&req.rc, &ld, req.has_option("sysAttrs"), offset, limit)?;
    let items: Vec<Value> = page
        .into_iter()
        .map(|m| response::with_context(m, accept, &ld))
        .collect();
    let mut extra = Vec::new();
    if req.bool_param("count")? {
        extra.push((
            HeaderName::from_static("ngsild-results-count"),
            total.to_string(),
        ));
    }
    extra.extend(response::page_links(
        &req.params,
        CSOURCE_SUBSCRIPTIONS,
        offset,
        limit,
        offset.saturating_add(limit) < total,
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
    let m = app
        .federation
        .get_csub(&req.rc, &id, &ld, req.has_option("sysAttrs"))?;
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
        .update_csub(&req.rc, &id, body, req.context.clone())
        .await?;
    Ok(response::no_content())
}

pub async fn delete(
    State(app): State<AppState>,
    Path(id): Path<String>,
    req: NgsiRequest,
) -> ApiResult<Response> {
    app.broker.check_tenant(&req.rc)?;
    app.federation.delete_csub(&req.rc, &id).await?;
    Ok(response::no_content())
}
