//! `/subscriptions` handlers.

use axum::extract::{Path, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::Response;
use serde_json::Value;

use crate::problem::ApiResult;
use crate::request::NgsiRequest;
use crate::response;
use crate::routes::SUBSCRIPTIONS;
use crate::AppState;

pub async fn create(State(app): State<AppState>, req: NgsiRequest) -> ApiResult<Response> {
    let body = req.object()?;
    let ctx = req.context.clone();
    let id = app.broker.subscriptions.create(&req.rc, body, ctx).await?;
    Ok(response::created(&format!("{SUBSCRIPTIONS}/{id}")))
}

pub async fn list(State(app): State<AppState>, req: NgsiRequest) -> ApiResult<Response> {
    let accept = req.accept_json()?;
    let ld = app.broker.contexts.resolve(req.context.as_ref()).await?;
    let (limit, offset) = req.paging(&app.broker.limits)?;
    // An unknown tenant is 404 NonexistentTenant here as on /entities (creating a
    // subscription, like creating an entity, makes the tenant).
    app.broker.check_tenant(&req.rc)?;
    let all = app.broker.subscriptions.list(&req.rc)?;
    let items: Vec<Value> = all
        .iter()
        .skip(offset)
        .take(limit)
        .map(|e| {
            let (m, _) = app
                .broker
                .subscriptions
                .render(e, req.has_option("sysAttrs"), Some(&ld));
            response::with_context(m, accept, &ld)
        })
        .collect();
    let mut extra = Vec::new();
    if req.param("count") == Some("true") {
        extra.push((
            HeaderName::from_static("ngsild-results-count"),
            all.len().to_string(),
        ));
    }
    let has_more = offset.saturating_add(limit) < all.len();
    extra.extend(response::page_links(
        &req.params,
        SUBSCRIPTIONS,
        offset,
        limit,
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
    let (m, _) =
        app.broker
            .subscriptions
            .get(&req.rc, &id, req.has_option("sysAttrs"), Some(&ld))?;
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
    app.broker
        .subscriptions
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
    app.broker.subscriptions.delete(&req.rc, &id).await?;
    Ok(response::no_content())
}
