//! `/platform/v1/mode` and `/platform/v1/areas`: normal/emergency mode, for the tenant
//! or one area. Handlers decode, call the hub, encode.
//!
//! - `GET /platform/v1/mode`: `{"mode", "areas": {name: mode}, "history"}`;
//! - `PUT /platform/v1/mode` `{"mode", "reason", "area"?}`: switches the tenant, or the
//!   area named (400 naming `area` when there is none);
//! - `GET /platform/v1/areas`: every area, `{name: {"geometry", "description"}}`;
//! - `GET|PUT|DELETE /platform/v1/areas/{name}`: one area (a GeoJSON Polygon or
//!   MultiPolygon); deleting one in emergency mode is a 409.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use citybrain_hub::sla::Mode;
use citybrain_hub::{AreaSpec, DeskError};
use serde_json::json;

use super::incidents::desk_error;
use super::rules::{hub, json_response};
use crate::context::Ctx;
use crate::problem::ApiResult;
use crate::request::parse_object;
use crate::AppState;

pub async fn mode(State(app): State<AppState>, Ctx(rc): Ctx) -> ApiResult<Response> {
    let hub = hub(&app)?;
    let m = hub.mode(&rc.tenant).await;
    Ok(json_response(StatusCode::OK, &json!(m)))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ModeBody {
    mode: Mode,
    reason: String,
    #[serde(default)]
    area: Option<String>,
}

pub async fn set_mode(
    State(app): State<AppState>,
    Ctx(rc): Ctx,
    body: Bytes,
) -> ApiResult<Response> {
    let hub = hub(&app)?;
    let m: ModeBody = parse_object(&body)?;
    Ok(
        match hub
            .set_mode(&rc, m.mode, &m.reason, m.area.as_deref())
            .await
        {
            Ok(change) => json_response(StatusCode::OK, &json!(change)),
            Err(e) => desk_error(e),
        },
    )
}

pub async fn areas(State(app): State<AppState>, Ctx(rc): Ctx) -> ApiResult<Response> {
    let hub = hub(&app)?;
    let a = hub.areas(&rc.tenant).await;
    Ok(json_response(StatusCode::OK, &json!(a)))
}

pub async fn area(
    State(app): State<AppState>,
    Ctx(rc): Ctx,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let hub = hub(&app)?;
    Ok(match hub.areas(&rc.tenant).await.remove(&name) {
        Some(a) => json_response(StatusCode::OK, &json!(a)),
        None => desk_error(DeskError::NoArea(name)),
    })
}

pub async fn put_area(
    State(app): State<AppState>,
    Ctx(rc): Ctx,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let hub = hub(&app)?;
    let spec: AreaSpec = parse_object(&body)?;
    Ok(match hub.put_area(&rc, &name, spec.clone()).await {
        Ok(true) => json_response(StatusCode::CREATED, &json!(spec)),
        Ok(false) => json_response(StatusCode::OK, &json!(spec)),
        Err(e) => desk_error(e),
    })
}

pub async fn delete_area(
    State(app): State<AppState>,
    Ctx(rc): Ctx,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let hub = hub(&app)?;
    Ok(match hub.delete_area(&rc, &name).await {
        Ok(()) => {
            let mut r = Response::new(axum::body::Body::empty());
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        }
        Err(e) => desk_error(e),
    })
}
