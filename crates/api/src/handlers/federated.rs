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

/// The entities of a batch that registrations take part in: each divides as the single
/// write of `kind` would ([`split`]), its local part staying in the batch.
pub(crate) struct BatchSplit {
    /// Entity id and its split.
    parts: Vec<(String, Split)>,
    /// Entities the federation refused outright (a loop, a conflict), with the error.
    refused: Vec<(String, ApiError)>,
}

impl BatchSplit {
    /// Whether a registration takes part in entity `id`'s write.
    pub(crate) fn held_elsewhere(&self, id: &str) -> bool {
        self.parts.iter().any(|(i, _)| i == id)
    }
}

/// Divides a batch of entity bodies (create, upsert, update, merge); `None` when no
/// registration of the tenant takes part (or `local=true`). Bodies held wholly by
/// sources leave the local batch.
pub(crate) fn split_batch(
    app: &AppState,
    req: &NgsiRequest,
    kind: WriteKind,
    items: &mut Vec<citybrain_broker::BatchItem>,
) -> ApiResult<Option<BatchSplit>> {
    if !app.federation.has_registrations(&req.rc.tenant) || req.bool_param("local")? {
        return Ok(None);
    }
    let mut out = BatchSplit {
        parts: Vec::new(),
        refused: Vec::new(),
    };
    let mut kept = Vec::with_capacity(items.len());
    for mut item in items.drain(..) {
        // Items the broker will refuse anyway (no id, a bad context) are left to it.
        let (Ok(ld), Some(body), Some(id)) = (
            item.ld.as_ref(),
            item.body.as_object(),
            item.body.get("id").and_then(Value::as_str),
        ) else {
            kept.push(item);
            continue;
        };
        let id = id.to_string();
        match split(app, req, kind, &id, Some(body), ld) {
            Ok(None) => kept.push(item),
            Ok(Some(mut s)) => {
                if let Some(l) = s.local.take() {
                    item.body = Value::Object(l);
                    kept.push(item);
                }
                out.parts.push((id, s));
            }
            Err(e) => out.refused.push((id, e)),
        }
    }
    *items = kept;
    Ok(Some(out))
}

/// Divides a batch deletion: the ids that stay in the local batch, and the split.
pub(crate) fn split_batch_delete(
    app: &AppState,
    req: &NgsiRequest,
    ids: Vec<Value>,
) -> ApiResult<(Vec<Value>, Option<BatchSplit>)> {
    if !app.federation.has_registrations(&req.rc.tenant) || req.bool_param("local")? {
        return Ok((ids, None));
    }
    let core = JsonLdContext::core();
    let mut out = BatchSplit {
        parts: Vec::new(),
        refused: Vec::new(),
    };
    let mut kept = Vec::with_capacity(ids.len());
    for v in ids {
        let Some(id) = v.as_str().map(str::to_string) else {
            kept.push(v);
            continue;
        };
        match split(app, req, WriteKind::Delete, &id, None, &core) {
            Ok(None) => kept.push(v),
            Ok(Some(mut s)) => {
                if s.local.take().is_some() {
                    kept.push(v);
                }
                out.parts.push((id, s));
            }
            Err(e) => out.refused.push((id, e)),
        }
    }
    Ok((kept, Some(out)))
}

/// What the sources made of a batch's parts, folded into the local outcome: an entity
/// succeeds when its local part (if any) and every source took their parts; one that
/// failed anywhere is an error naming the sources (and an `NGSILD-Warning`). An entity
/// whose local part failed is not sent on.
pub(crate) async fn finish_batch(
    app: &AppState,
    kind: WriteKind,
    split: BatchSplit,
    o: &mut citybrain_broker::BatchOutcome,
) -> (Vec<(String, Value)>, Vec<citybrain_federation::Warning>) {
    let mut errors: Vec<(String, Value)> = split
        .refused
        .into_iter()
        .map(|(id, e)| (id, e.body()))
        .collect();
    let mut warnings = Vec::new();
    for (id, s) in split.parts {
        let local_failed = o.errors.iter().any(|(e, _)| *e == id);
        if local_failed {
            continue;
        }
        // Done here: the local part succeeded (an entity wholly at its sources has none).
        let here = o.success.contains(&id) || o.created.contains(&id);
        let sent = app.federation.send_write(kind, &id, s).await;
        let gone_everywhere =
            kind == WriteKind::Delete && !here && !sent.found && sent.warnings.is_empty();
        if sent.warnings.is_empty() && !gone_everywhere {
            if !here {
                o.success.push(id);
            }
            continue;
        }
        o.success.retain(|s| *s != id);
        o.created.retain(|s| *s != id);
        let detail = if gone_everywhere {
            format!("entity '{id}' not found here or at its context sources")
        } else {
            let names: Vec<String> = sent
                .warnings
                .iter()
                .map(|w| format!("{} ({})", w.agent, w.text))
                .collect();
            format!("not written at context source(s): {}", names.join("; "))
        };
        let kind = if gone_everywhere {
            ErrorKind::ResourceNotFound
        } else {
            ErrorKind::InternalError
        };
        let mut body = ApiError::new(kind, detail).body();
        if !gone_everywhere {
            // The source's failure, not this broker's: a gateway error, as a 207 item.
            body["status"] = json!(StatusCode::BAD_GATEWAY.as_u16());
        }
        errors.push((id, body));
        warnings.extend(sent.warnings);
    }
    (errors, warnings)
}
