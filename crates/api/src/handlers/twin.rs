//! `/platform/v1/twin/what-ifs`: what-if runs of the traffic twin. Handlers decode,
//! call the twin's [`Scenarios`](crate::scenarios::Scenarios), encode.
//!
//! - `POST /platform/v1/twin/what-ifs` `{"close": [edge], "slow": [{"edge", "kmh"}],
//!   "controller"?, "seed"?, "duration"?}`: 202 with the queued run and its
//!   `Location`; 400 naming the field at fault; 429 when too many runs wait;
//! - `GET /platform/v1/twin/what-ifs`: the runs kept, newest first;
//! - `GET /platform/v1/twin/what-ifs/{runId}`: one run; its `result` once `done`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use citybrain_model::ErrorKind;

use super::rules::json_response;
use crate::context::Ctx;
use crate::problem::{ApiError, ApiResult};
use crate::request::parse_object;
use crate::routes::WHAT_IFS;
use crate::scenarios::{Scenarios, WhatIfRequest};
use crate::AppState;

fn twin(app: &AppState) -> ApiResult<&Arc<dyn Scenarios>> {
    app.scenarios.as_ref().ok_or_else(|| {
        ApiError::new(
            ErrorKind::ResourceNotFound,
            "the traffic twin is not running on this server (docs/twin.md: install SUMO with scripts/install-sumo.sh)",
        )
    })
}

pub async fn submit(State(app): State<AppState>, Ctx(rc): Ctx, body: Bytes) -> ApiResult<Response> {
    let twin = twin(&app)?;
    let req: WhatIfRequest = parse_object(&body)?;
    let run = twin
        .submit(&rc.tenant, &rc.actor(), req)
        .map_err(|e| ApiError::of(&e))?;
    let mut r = json_response(StatusCode::ACCEPTED, &serde_json::json!(run));
    if let Ok(v) = HeaderValue::from_str(&format!("{WHAT_IFS}/{}", run.id)) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

pub async fn list(State(app): State<AppState>, Ctx(rc): Ctx) -> ApiResult<Response> {
    let twin = twin(&app)?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!(twin.runs(&rc.tenant)),
    ))
}

pub async fn retrieve(
    State(app): State<AppState>,
    Ctx(rc): Ctx,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let twin = twin(&app)?;
    let run = twin.run(&rc.tenant, &id).ok_or_else(|| {
        ApiError::new(
            ErrorKind::ResourceNotFound,
            format!("no what-if run '{id}'"),
        )
    })?;
    Ok(json_response(StatusCode::OK, &serde_json::json!(run)))
}
