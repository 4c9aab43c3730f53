//! `/ingest`: raw vendor payloads in, dead letters out. Handlers decode the HTTP
//! request, call the ingestion pipeline, and encode its answer.
//!
//! `POST /ingest/{source}` answers:
//! - 200 OK: every record was written durably or left out by a filter;
//! - 202 Accepted: the payload is safely stored, but some records (or the payload) are
//!   in the dead letters, listed in the body, for a replay after a mapping fix. The
//!   sender must not resend: nothing is lost;
//! - 413 with the dead letter's id when the payload is over `ingest.max_payload_bytes`;
//! - 404 for an unknown source, 503 when the store cannot make the data durable (then
//!   nothing is acknowledged and the sender should retry).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{MatchedPath, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use citybrain_ingest::deadletter::{Letter, LetterQuery};
use citybrain_ingest::{Ingest, Reason};
use citybrain_model::ErrorKind;
use futures::StreamExt;
use serde_json::{json, Value};

use crate::problem::{ApiError, ApiResult};
use crate::AppState;

fn ingest(app: &AppState) -> ApiResult<&Arc<Ingest>> {
    app.ingest.as_ref().ok_or_else(|| {
        ApiError::new(
            ErrorKind::ResourceNotFound,
            "ingestion is not enabled on this server",
        )
    })
}

use crate::response::plain_json as json_response;

/// Refuses query parameters the route does not take.
fn check_params(
    method: &axum::http::Method,
    route: &MatchedPath,
    q: &HashMap<String, String>,
) -> ApiResult<()> {
    if let Some(allowed) = crate::routes::allowed_params(method, route.as_str()) {
        if let Some(k) = q.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(ApiError::invalid(format!(
                "unknown query parameter '{k}' (this path takes: {})",
                if allowed.is_empty() {
                    "none".to_string()
                } else {
                    allowed.join(", ")
                }
            )));
        }
    }
    Ok(())
}

/// Reads a body up to `max` bytes; answers the bytes and whether there was more.
async fn read_limited(body: Body, max: usize) -> ApiResult<(Vec<u8>, bool)> {
    let mut out = Vec::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::invalid(format!("reading the body failed: {e}")))?;
        if out.len() + chunk.len() > max {
            let room = max - out.len();
            out.extend_from_slice(&chunk[..room]);
            return Ok((out, true));
        }
        out.extend_from_slice(&chunk);
    }
    Ok((out, false))
}

/// `POST /ingest/{source}`.
pub async fn post_payload(
    State(app): State<AppState>,
    method: axum::http::Method,
    route: MatchedPath,
    Path(source): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: Body,
) -> ApiResult<Response> {
    check_params(&method, &route, &q)?;
    let ing = ingest(&app)?;
    if ing.source(&source).is_none() {
        return Err(citybrain_ingest::IngestError::UnknownSource(source).into());
    }
    let max = ing.settings.max_payload_bytes;
    let (bytes, over) = read_limited(body, max).await?;
    if over {
        let s = ing.reject_oversized(&source, &bytes, None).await?;
        let mut body = crate::response::encode(&s)?;
        body["detail"] = json!(format!(
            "the payload is larger than {max} bytes; its first {max} bytes are kept as a dead letter"
        ));
        return Ok(json_response(StatusCode::PAYLOAD_TOO_LARGE, &body));
    }
    let s = ing.ingest_payload(&source, &bytes, None, &[]).await?;
    let status = if s.rejected_total() == 0 {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok(json_response(status, &crate::response::encode(&s)?))
}

/// `GET /ingest/sources`: the loaded mappings and their counters.
pub async fn sources(State(app): State<AppState>) -> ApiResult<Response> {
    let ing = ingest(&app)?;
    let stats = ing.stats.snapshot();
    let list: Vec<Value> = ing
        .sources()
        .iter()
        .map(|s| {
            let m = &s.mapping;
            let st = stats.get(&m.source).cloned().unwrap_or_default();
            json!({
                "source": m.source,
                "format": m.format.name(),
                "file": m.origin,
                "tenant": m.tenant,
                "topics": m.topics.iter().map(|t| t.pattern.clone()).collect::<Vec<_>>(),
                "payloads": st.payloads,
                "records": st.records,
                "written": st.written,
                "filtered": st.filtered,
                "reduced": st.reduced,
                "rejected": st.rejected,
            })
        })
        .collect();
    Ok(json_response(StatusCode::OK, &Value::Array(list)))
}

/// `POST /ingest/reload`: re-reads the mappings directory (400 naming file and line when
/// a mapping is invalid; the running mappings then stay).
pub async fn reload(State(app): State<AppState>) -> ApiResult<Response> {
    let ing = ingest(&app)?;
    let n = ing.reload()?;
    Ok(json_response(StatusCode::OK, &json!({ "mappings": n })))
}

fn letter_json(l: &Letter) -> ApiResult<Value> {
    crate::response::encode(l)
}

/// `GET /ingest/deadletters?source=&reason=&limit=&offset=`.
pub async fn list_letters(
    State(app): State<AppState>,
    method: axum::http::Method,
    route: MatchedPath,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    check_params(&method, &route, &q)?;
    let ing = ingest(&app)?;
    let num = |k: &str, default: usize, max: usize| -> ApiResult<usize> {
        match q.get(k) {
            None => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| ApiError::bad_data(format!("'{k}' must be a number up to {max}"))),
        }
    };
    let reason = match q.get("reason") {
        None => None,
        Some(r) => Some(Reason::parse(r).ok_or_else(|| {
            ApiError::bad_data(format!(
                "'reason' must be one of: {}",
                Reason::ALL.map(Reason::as_str).join(", ")
            ))
        })?),
    };
    let (page, total) = ing.dead.list(&LetterQuery {
        source: q.get("source").cloned(),
        reason,
        limit: num("limit", 100, 1000)?,
        offset: num("offset", 0, usize::MAX)?,
    });
    Ok(json_response(
        StatusCode::OK,
        &json!({"total": total, "letters": page.iter().map(letter_json).collect::<ApiResult<Vec<_>>>()?}),
    ))
}

fn parse_id(id: &str) -> ApiResult<u64> {
    id.parse::<u64>()
        .map_err(|_| ApiError::bad_data(format!("'{id}' is not a dead-letter id")))
}

/// `GET /ingest/deadletters/{id}`: the letter with its bytes (`payload` as text when
/// it is UTF-8, else `payloadBase64`).
pub async fn get_letter(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let ing = ingest(&app)?;
    let id = parse_id(&id)?;
    let letter = ing
        .dead
        .get(id)
        .ok_or(citybrain_ingest::IngestError::NoSuchLetter(id))?;
    let raw = ing
        .dead
        .raw(id)
        .map_err(citybrain_ingest::IngestError::from)?;
    let mut v = letter_json(&letter)?;
    match String::from_utf8(raw) {
        Ok(s) => v["payload"] = Value::String(s),
        Err(e) => {
            v["payloadBase64"] =
                Value::String(base64::engine::general_purpose::STANDARD.encode(e.as_bytes()))
        }
    }
    Ok(json_response(StatusCode::OK, &v))
}

/// `DELETE /ingest/deadletters/{id}`.
pub async fn delete_letter(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let ing = ingest(&app)?;
    let id = parse_id(&id)?;
    let n = ing
        .dead
        .delete(&[id])
        .map_err(citybrain_ingest::IngestError::from)?;
    if n == 0 {
        return Err(citybrain_ingest::IngestError::NoSuchLetter(id).into());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /ingest/deadletters/replay` with `{"ids": [..]}` or `{"source": .., "reason": ..}`
/// (both optional: all letters).
pub async fn replay(State(app): State<AppState>, body: axum::body::Bytes) -> ApiResult<Response> {
    let ing = ingest(&app)?;
    let req: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_data(format!("the body is not JSON: {e}")))?
    };
    let obj = req
        .as_object()
        .ok_or_else(|| ApiError::bad_data("the body must be a JSON object"))?;
    if let Some(k) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "ids" | "source" | "reason"))
    {
        return Err(ApiError::bad_data(format!(
            "unknown member '{k}' (ids, source, reason)"
        )));
    }
    let ids: Vec<u64> = match obj.get("ids") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_u64()
                    .ok_or_else(|| ApiError::bad_data("'ids' must be an array of numbers"))
            })
            .collect::<ApiResult<_>>()?,
        Some(_) => return Err(ApiError::bad_data("'ids' must be an array of numbers")),
        None => {
            // A filter of another type is refused, never read as "no filter" (which
            // would replay every letter).
            let text = |k: &str| match obj.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.as_str())),
                Some(_) => Err(ApiError::bad_data(format!("'{k}' must be a string"))),
            };
            let source = text("source")?;
            let reason = match text("reason")? {
                None => None,
                Some(r) => Some(
                    Reason::parse(r)
                        .ok_or_else(|| ApiError::bad_data(format!("unknown reason '{r}'")))?,
                ),
            };
            ing.dead.ids(source, reason)
        }
    };
    let results = ing.replay(&ids).await?;
    let replayed = results.iter().filter(|r| r.replayed).count();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "replayed": replayed,
            "failed": results.len() - replayed,
            "results": results,
        }),
    ))
}
