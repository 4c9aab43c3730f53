//! `/jsonldContexts` handlers.

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::context::Ctx;
use crate::problem::{ApiError, ApiResult};
use crate::request::NgsiRequest;
use crate::response;
use crate::routes::CONTEXTS;
use crate::AppState;

pub async fn list(State(app): State<AppState>, req: NgsiRequest) -> ApiResult<Response> {
    let details = req.bool_param("details")?;
    let items = app.broker.contexts.list(details, req.param("kind"))?;
    Ok(plain_json(StatusCode::OK, &Value::Array(items)))
}

/// The body *is* a context document (it carries `@context` whatever the media type), so
/// it is decoded here rather than by [`NgsiRequest`].
pub async fn create(
    State(app): State<AppState>,
    Ctx(rc): Ctx,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let doc: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid(format!("the body is not valid JSON: {e}")))?;
    let id = app.broker.add_context(&rc, doc).await?;
    Ok(response::created(&format!("{CONTEXTS}/{id}")))
}

pub async fn retrieve(
    State(app): State<AppState>,
    Path(id): Path<String>,
    req: NgsiRequest,
) -> ApiResult<Response> {
    let doc = if req.bool_param("details")? {
        app.broker.contexts.details(&id)?
    } else {
        app.broker.contexts.get(&id)?
    };
    Ok(plain_json(StatusCode::OK, &doc))
}

pub async fn delete(
    State(app): State<AppState>,
    Path(id): Path<String>,
    req: NgsiRequest,
) -> ApiResult<Response> {
    app.broker
        .delete_context(&req.rc, &id, req.bool_param("reload")?)
        .await?;
    Ok(response::no_content())
}

fn plain_json(status: StatusCode, v: &Value) -> Response {
    let mut resp = (status, v.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
