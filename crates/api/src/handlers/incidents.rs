//! `/platform/v1/incidents` and `/platform/v1/routing`: the incident desk. Handlers
//! decode, call the hub, encode.
//!
//! - `GET /platform/v1/incidents?status=&category=&department=&open=`: newest first;
//! - `GET /platform/v1/incidents/{id}`: one incident with its whole history;
//! - `POST /platform/v1/incidents/{id}/transitions` `{"to", "reason", "department",
//!   "unit", "duplicateOf"}`: a lifecycle move; 409 with the allowed moves when the
//!   incident cannot make it;
//! - `POST /platform/v1/incidents/{id}/comments` `{"text"}`;
//! - `POST /platform/v1/incidents/{id}/attachments` `{"url", "name"}`;
//! - `GET|PUT /platform/v1/routing?mode=`: the routing table of a mode, category →
//!   department;
//! - `GET|PUT /platform/v1/sla/policy`, `GET /platform/v1/sla/report`: service-level
//!   targets per category and mode, and the figures per department;
//! - `POST /platform/v1/incidents` `{"category", "title", "severity", "location",
//!   "entities", "tasks"}`: an incident filed by hand, fanned out into tasks;
//! - `POST /platform/v1/incidents/{id}/tasks/{n}` `{"status"}`: a task moves (409 with
//!   `waitingFor` while the tasks it depends on are not done);
//! - `GET|PUT /platform/v1/plans`: emergency plans (tasks opened per category).

use std::collections::{BTreeMap, HashMap};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use citybrain_hub::sla::{Mode, SlaPolicy};
use citybrain_hub::tasks::{Plan, TaskStatus};
use citybrain_hub::{DeskError, IncidentFilter, Move, NewIncident, Status};
use serde_json::json;

use super::rules::{hub, json_response};
use crate::context::Ctx;
use crate::problem::{ApiError, ApiResult};
use crate::request::{parse_body, parse_object};
use crate::AppState;

pub(crate) fn desk_error(e: DeskError) -> Response {
    ApiError::from(e).into_response()
}

pub async fn list(
    State(app): State<AppState>,
    Ctx(rc): Ctx,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let hub = hub(&app)?;
    if let Some(k) = q
        .keys()
        .find(|k| !matches!(k.as_str(), "status" | "category" | "department" | "open"))
    {
        return Err(ApiError::invalid(format!(
            "unknown query parameter '{k}' (this path takes: status, category, department, open)"
        )));
    }
    let status =
        match q.get("status") {
            None => None,
            Some(s) => Some(serde_json::from_value::<Status>(json!(s)).map_err(|_| {
                ApiError::bad_data(format!("status: '{s}' is not an incident status"))
            })?),
        };
    let open = match q.get("open").map(String::as_str) {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return Err(ApiError::bad_data("open: true or false")),
    };
    let f = IncidentFilter {
        status,
        category: q.get("category").cloned(),
        department: q.get("department").cloned(),
        open,
    };
    let list = hub.incidents(&rc.tenant, &f).await;
    Ok(json_response(StatusCode::OK, &json!(list)))
}

pub async fn retrieve(
    State(app): State<AppState>,
    Ctx(rc): Ctx,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let hub = hub(&app)?;
    match hub.incident(&rc.tenant, &id).await {
        Some(i) => Ok(json_response(StatusCode::OK, &json!(i))),
        None => Ok(desk_error(DeskError::NotFound(id))),
    }
}

pub async fn transition(
    State(app): State<AppState>,
    Ctx(rc): Ctx,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let hub = hub(&app)?;
    let m: Move = parse_object(&body)?;
    if m.to.is_none() {
        return Err(ApiError::bad_data("to: the status to move to is required"));
    }
    Ok(match hub.move_incident(&rc, &id, &m).await {
        Ok(i) => json_response(StatusCode::OK, &json!(i)),
        Err(e) => desk_error(e),
    })
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CommentBody {
    text: String,
}

pub async fn comment(
    State(app): State<AppState>,
    Ctx(rc): Ctx,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let hub = hub(&app)?;
    let c: CommentBody = parse_object(&body)?;
    Ok(match hub.comment(&rc, &id, &c.text).await {
        Ok(i) => json_response(StatusCode::CREATED, &json!(i)),
        Err(e) => desk_error(e),
    })
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AttachmentBody {
    url: String,
    #[serde(default)]
    name: Option<String>,
}

pub async fn attach(
    State(app): State<AppState>,
    Ctx(rc): Ctx,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let hub = hub(&app)?;
    let a: AttachmentBody = parse_object(&body)?;
    Ok(
        match hub.attach_url(&rc, &id, &a.url, a.name.as_deref()).await {
            Ok(i) => json_response(StatusCode::CREATED, &json!(i)),
            Err(e) => desk_error(e),
        },
    )
}

/// `?mode=normal|emergency` (normal by default).
fn mode_param(q: &HashMap<String, String>) -> ApiResult<Mode> {
    if let Some(k) = q.keys().find(|k| k.as_str() != "mode") {
        return Err(ApiError::invalid(format!(
            "unknown query parameter '{k}' (this path takes: mode)"
        )));
    }
    match q.get("mode").map(String::as_str) {
        None | Some("normal") => Ok(Mode::Normal),
        Some("emergency") => Ok(Mode::Emergency),
        Some(m) => Err(ApiError::bad_data(format!(
            "mode: '{m}' is not normal or emergency"
        ))),
    }
}

pub async fn routing(
    State(app): State<AppState>,
    Ctx(rc): Ctx,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let hub = hub(&app)?;
    let table = hub.routing(&rc.tenant, mode_param(&q)?).await;
    Ok(json_response(StatusCode::OK, &json!(table)))
}

pub async fn set_routing(
    State(app): State<AppState>,
    Ctx(rc): Ctx,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> ApiResult<Response> {
    let hub = hub(&app)?;
    let mode = mode_param(&q)?;
    let table: BTreeMap<String, String> = parse_object(&body)?;
    Ok(match hub.set_routing(&rc, mode, table.clone()).await {
        Ok(()) => json_response(StatusCode::OK, &json!(table)),
        Err(e) => desk_error(e),
    })
}

pub async fn sla_policy(State(app): State<AppState>, Ctx(rc): Ctx) -> ApiResult<Response> {
    let hub = hub(&app)?;
    let p = hub.sla_policy(&rc.tenant).await;
    Ok(json_response(StatusCode::OK, &json!(p)))
}

pub async fn set_sla_policy(
    State(app): State<AppState>,
    Ctx(rc): Ctx,
    body: Bytes,
) -> ApiResult<Response> {
    let hub = hub(&app)?;
    let p: SlaPolicy = parse_object(&body)?;
    Ok(match hub.set_sla_policy(&rc, p.clone()).await {
        Ok(()) => json_response(StatusCode::OK, &json!(p)),
        Err(e) => desk_error(e),
    })
}

pub async fn sla_report(State(app): State<AppState>, Ctx(rc): Ctx) -> ApiResult<Response> {
    let hub = hub(&app)?;
    let r = hub.sla_report(&rc.tenant).await;
    Ok(json_response(StatusCode::OK, &json!(r)))
}

pub async fn create(State(app): State<AppState>, Ctx(rc): Ctx, body: Bytes) -> ApiResult<Response> {
    let hub = hub(&app)?;
    let req: NewIncident = parse_object(&body)?;
    Ok(match hub.open_incident(&rc, req).await {
        Ok(i) => {
            let mut r = json_response(StatusCode::CREATED, &json!(i));
            if let Ok(loc) =
                axum::http::HeaderValue::from_str(&format!("/platform/v1/incidents/{}", i.id))
            {
                r.headers_mut().insert(axum::http::header::LOCATION, loc);
            }
            r
        }
        Err(e) => desk_error(e),
    })
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskBody {
    status: TaskStatus,
}

pub async fn task(
    State(app): State<AppState>,
    Ctx(rc): Ctx,
    Path((id, n)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let hub = hub(&app)?;
    let n: usize = n
        .parse()
        .map_err(|_| ApiError::bad_data("the task number is a whole number"))?;
    let t: TaskBody = parse_object(&body)?;
    Ok(match hub.move_task(&rc, &id, n, t.status).await {
        Ok(i) => json_response(StatusCode::OK, &json!(i)),
        Err(e) => desk_error(e),
    })
}

pub async fn plans(State(app): State<AppState>, Ctx(rc): Ctx) -> ApiResult<Response> {
    let hub = hub(&app)?;
    let p = hub.plans(&rc.tenant).await;
    Ok(json_response(StatusCode::OK, &json!(p)))
}

pub async fn set_plans(
    State(app): State<AppState>,
    Ctx(rc): Ctx,
    body: Bytes,
) -> ApiResult<Response> {
    let hub = hub(&app)?;
    let p: Vec<Plan> = parse_body(&body)?;
    Ok(match hub.set_plans(&rc, p.clone()).await {
        Ok(()) => json_response(StatusCode::OK, &json!(p)),
        Err(e) => desk_error(e),
    })
}
