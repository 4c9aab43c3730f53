//! Entity writes that registrations take part in: the federation says which part of
//! a write stays here and which goes to which context source (`citybrain-federation`,
//! `write.rs`); the entity handlers do the local part and answer.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use citybrain_federation::write::{Split, WriteKind};
use citybrain_model::{ErrorCode, ErrorKind, JsonLdContext};
use serde_json::{json, Map, Value};

use crate::handlers::entities::{add_warnings, federated_error, incoming};
use crate::problem::ApiResult;
use crate::request::{Accept, NgsiRequest};
use crate::response;
use crate::AppState;

/// How a write divides, when a registration of the tenant takes part (`None`: the
/// write is local, as without federation; always so with `local=true`).
pub(crate) fn split(
    app: &AppState,
    req: &NgsiRequest,
    kind: WriteKind,
    id: &str,
    body: Option<&Map<String, Value>>,
    ld: &JsonLdContext,
) -> ApiResult<Option<Split>> {
    if !app.federation.has_registrations(&req.rc.tenant) || req.bool_param("local")? {
        return Ok(None);
    }
    let types: Vec<Arc<str>> = match (kind, body.and_then(|b| b.get("type"))) {
        (WriteKind::Create | WriteKind::Replace, Some(t)) => {
            let names: Vec<&str> = match t {
                Value::String(s) => vec![s.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            names
                .iter()
                .map(|n| Arc::from(ld.expand(n).as_str()))
                .collect()
        }
        _ => match app.broker.retrieve_entity(&req.rc, id) {
            Ok(e) => e.types.clone(),
            Err(e) if e.kind() == ErrorKind::ResourceNotFound => Vec::new(),
            Err(e) => return Err(e.into()),
        },
    };
    app.federation
        .split_write(&req.rc, kind, id, &types, body, ld)
        .map_err(federated_error)
}

/// Sends the sources' parts of a write and answers: `ok` when every source took its
/// part, else 207 naming those that did not (in the body and in `NGSILD-Warning`).
pub(crate) async fn finish(
    app: &AppState,
    req: &NgsiRequest,
    kind: WriteKind,
    id: &str,
    split: Split,
    ok: Response,
) -> ApiResult<Response> {
    let warnings = app
        .federation
        .send_write(&req.rc, kind, id, split, &incoming(req)?)
        .await
        .map_err(federated_error)?;
    if warnings.is_empty() {
        return Ok(ok);
    }
    let body = json!({
        "notUpdated": warnings
            .iter()
            .map(|w| json!({"registrationId": w.agent, "reason": w.text}))
            .collect::<Vec<_>>(),
    });
    let mut resp = response::json(
        StatusCode::MULTI_STATUS,
        &body,
        Accept::Json,
        &JsonLdContext::core(),
        &[],
    );
    add_warnings(&mut resp, &warnings);
    Ok(resp)
}
