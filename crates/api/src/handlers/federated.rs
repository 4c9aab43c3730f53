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
use crate::problem::{ApiError, ApiResult};
use crate::request::{Accept, NgsiRequest};
use crate::response;
use crate::AppState;

/// How a write divides, when a registration of the tenant takes part (`None`: the
/// write is local, as without federation; always so with `local=true`). The loop
/// check and the caller's authorization of the sources' parts happen here, before
/// anything is written.
pub(crate) fn split(
    app: &AppState,
    req: &NgsiRequest,
    kind: WriteKind,
    id: &str,
    body: Option<&Map<String, Value>>,
    ld: &Arc<JsonLdContext>,
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
        (WriteKind::Create | WriteKind::Replace, None) => Vec::new(),
        _ => match app.broker.retrieve_entity(&req.rc, id) {
            Ok(e) => e.types.clone(),
            Err(e) if e.kind() == ErrorKind::ResourceNotFound => Vec::new(),
            Err(e) => return Err(e.into()),
        },
    };
    app.federation
        .split_write(&req.rc, (kind, id), &types, body, ld, incoming(req)?)
        .map_err(federated_error)
}

/// [`split`] for a write of one attribute: `{attr: content}` is built only when the
/// tenant has registrations (attribute writes of other tenants copy nothing).
pub(crate) fn split_attr(
    app: &AppState,
    req: &NgsiRequest,
    kind: WriteKind,
    id: &str,
    attr: &str,
    content: &Value,
    ld: &Arc<JsonLdContext>,
) -> ApiResult<Option<Split>> {
    if !app.federation.has_registrations(&req.rc.tenant) {
        return Ok(None);
    }
    let one = Map::from_iter([(attr.to_string(), content.clone())]);
    split(app, req, kind, id, Some(&one), ld)
}

/// What of a write's body this broker writes: all of it when no registration takes
/// part, else the split's local part (`None`: nothing stays here).
pub(crate) fn local_part(
    split: &mut Option<Split>,
    body: Map<String, Value>,
) -> Option<Map<String, Value>> {
    match split {
        None => Some(body),
        Some(s) => s.local.take(),
    }
}

/// Whether this broker writes its part of an attribute write (whose local part, when
/// it has one, is the whole body): always without registrations.
pub(crate) fn writes_here(split: &mut Option<Split>) -> bool {
    split.as_mut().is_none_or(|s| s.local.take().is_some())
}

/// The answer of a write once its local part is done: `ok` as it is without
/// registrations, else after the sources took theirs ([`finish`]).
pub(crate) async fn answer(
    app: &AppState,
    (kind, id): (WriteKind, &str),
    split: Option<Split>,
    ok: Response,
) -> ApiResult<Response> {
    match split {
        None => Ok(ok),
        Some(s) => finish(app, (kind, id), s, true, ok).await,
    }
}

/// Sends the sources' parts of a write and answers: `ok` when every source took its
/// part, else 207 naming those that did not (in the body and in `NGSILD-Warning`).
/// `found_here`: the local part found what it wrote to (a deletion of what exists
/// nowhere is 404).
pub(crate) async fn finish(
    app: &AppState,
    (kind, id): (WriteKind, &str),
    split: Split,
    found_here: bool,
    ok: Response,
) -> ApiResult<Response> {
    let sent = app.federation.send_write(kind, id, split).await;
    if !found_here && !sent.found && sent.warnings.is_empty() {
        return Err(ApiError::new(
            ErrorKind::ResourceNotFound,
            format!("entity '{id}' not found here or at its context sources"),
        ));
    }
    if sent.warnings.is_empty() {
        return Ok(ok);
    }
    let body = json!({
        "notUpdated": sent.warnings
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
    add_warnings(&mut resp, &sent.warnings);
    Ok(resp)
}
