//! `/platform/v1/audit`: the tamper-evident audit log (docs/security.md).
//!
//! - `GET /platform/v1/audit`: `{"size", "checkpoint", "verifierKey"}`: the newest
//!   signed checkpoint (a C2SP note) and the key to verify it with;
//! - `GET /platform/v1/audit/entries?from=N&count=M` (M ≤ 1000): entries as stored;
//! - `GET /platform/v1/audit/proofs/inclusion?index=I&size=N`: the audit path of entry
//!   I in the tree of the first N entries (base64 hashes, RFC 9162);
//! - `GET /platform/v1/audit/proofs/consistency?from=M&to=N`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use citybrain_audit::AuditLog;
use citybrain_model::ErrorKind;
use serde_json::json;

use crate::problem::{ApiError, ApiResult};
use crate::response::plain_json;
use crate::AppState;

fn audit(app: &AppState) -> ApiResult<&Arc<AuditLog>> {
    app.audit.as_ref().ok_or_else(|| {
        ApiError::new(
            ErrorKind::ResourceNotFound,
            "the audit log is kept once authentication is configured (run `citybrain bootstrap`)",
        )
    })
}

/// A whole-number query parameter (`default` when absent; `None`: it is required).
pub(crate) fn number(
    q: &HashMap<String, String>,
    name: &str,
    default: Option<u64>,
) -> ApiResult<u64> {
    match q.get(name) {
        Some(v) => v
            .parse()
            .map_err(|_| ApiError::bad_data(format!("{name}: not a non-negative integer"))),
        None => default.ok_or_else(|| ApiError::bad_data(format!("{name}: missing"))),
    }
}

pub async fn summary(State(app): State<AppState>) -> ApiResult<Response> {
    let a = audit(&app)?;
    let checkpoint = a.checkpoint().map_err(|e| ApiError::of(&e))?;
    Ok(plain_json(
        StatusCode::OK,
        &json!({"size": a.size(), "checkpoint": checkpoint, "verifierKey": a.verifier_key()}),
    ))
}

pub async fn entries(
    State(app): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let a = audit(&app)?;
    let from = number(&q, "from", Some(0))?;
    let count = number(&q, "count", Some(100))?;
    if count > 1000 {
        return Err(ApiError::bad_data("count: at most 1000"));
    }
    let e = a
        .entries(from, count as usize)
        .map_err(|e| ApiError::of(&e))?;
    Ok(plain_json(StatusCode::OK, &json!(e)))
}

pub async fn inclusion(
    State(app): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let a = audit(&app)?;
    let (index, size) = (
        number(&q, "index", None)?,
        number(&q, "size", Some(a.size()))?,
    );
    let proof = a
        .inclusion_proof(index, size)
        .map_err(|e| ApiError::of(&e))?;
    Ok(plain_json(
        StatusCode::OK,
        &json!({"index": index, "size": size, "proof": proof}),
    ))
}

pub async fn consistency(
    State(app): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let a = audit(&app)?;
    let (from, to) = (number(&q, "from", None)?, number(&q, "to", Some(a.size()))?);
    let proof = a
        .consistency_proof(from, to)
        .map_err(|e| ApiError::of(&e))?;
    Ok(plain_json(
        StatusCode::OK,
        &json!({"from": from, "to": to, "proof": proof}),
    ))
}
