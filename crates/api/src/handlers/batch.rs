//! `/entityOperations/*` handlers.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use citybrain_broker::{BatchItem, BatchOutcome, QueryParams, UpsertMode};
use citybrain_model::JsonLdContext;
use serde_json::{json, Value};

use crate::handlers::entities::{add_warnings, page_response};
use crate::handlers::federated;
use crate::problem::{ApiError, ApiResult};
use crate::request::{Accept, NgsiRequest};
use crate::response::{self, Join};
use crate::routes::ENTITIES;
use crate::AppState;
use citybrain_federation::write::WriteKind;

/// Splits a batch body into items, each with its own `@context` (JSON-LD bodies carry one
/// per item; JSON bodies use the `Link` header). Items that break the media-type rules
/// fail alone.
async fn batch_items(app: &AppState, req: &NgsiRequest) -> ApiResult<Vec<BatchItem>> {
    let items = req.array()?;
    let link = req.context.clone();
    let mut out = Vec::with_capacity(items.len());
    for mut body in items {
        let own = body.as_object_mut().and_then(|m| m.remove("@context"));
        let source = match (req.is_ld, own) {
            (true, Some(c)) => Ok(Some(c)),
            (true, None) => Err("with application/ld+json every entity needs an @context"),
            (false, Some(_)) => Err("with application/json an entity must not carry an @context"),
            (false, None) => Ok(link.clone()),
        };
        let ld = match source {
            Ok(src) => match app.broker.contexts.resolve(src.as_ref()).await {
                Ok(ld) => Ok(ld),
                Err(e) => Err(citybrain_model::ModelError::new(
                    citybrain_model::ErrorCode::kind(&e),
                    citybrain_model::ErrorCode::public_detail(&e),
                )),
            },
            Err(why) => Err(citybrain_model::ModelError::bad_data(why)),
        };
        out.push(BatchItem { body, ld });
    }
    Ok(out)
}

/// Errors of the local batch and of the sources' parts (already ProblemDetails).
type ItemErrors = Vec<(String, Value)>;

fn partial(o: &BatchOutcome, extra: &ItemErrors, ld: &JsonLdContext) -> Response {
    let errors: Vec<Value> = o
        .errors
        .iter()
        .map(|(id, e)| json!({"entityId": id, "error": ApiError::of(e).body()}))
        .chain(
            extra
                .iter()
                .map(|(id, e)| json!({"entityId": id, "error": e})),
        )
        .collect();
    response::json(
        StatusCode::MULTI_STATUS,
        &json!({"success": o.success, "errors": errors}),
        Accept::Json,
        ld,
        &[],
    )
}

/// 204 when all succeeded, 207 otherwise.
fn all_or_partial(o: &BatchOutcome, extra: &ItemErrors, ld: &JsonLdContext) -> Response {
    if o.errors.is_empty() && extra.is_empty() {
        response::no_content()
    } else {
        partial(o, extra, ld)
    }
}

/// Runs the sources' parts of a batch (when registrations took part) and folds their
/// results into the outcome; the errors they add, and their warnings.
async fn federate(
    app: &AppState,
    kind: WriteKind,
    split: Option<federated::BatchSplit>,
    o: &mut BatchOutcome,
) -> (ItemErrors, Vec<citybrain_federation::Warning>) {
    match split {
        Some(s) => federated::finish_batch(app, kind, s, o).await,
        None => (Vec::new(), Vec::new()),
    }
}

/// Whether the local batch runs: always without federation (an empty batch is the
/// broker's to refuse), and when anything of it is left after the sources took theirs.
fn local_left<T>(items: &[T], split: &Option<federated::BatchSplit>) -> bool {
    split.is_none() || !items.is_empty()
}

fn warned(mut resp: Response, warnings: &[citybrain_federation::Warning]) -> Response {
    add_warnings(&mut resp, warnings);
    resp
}

pub async fn create(State(app): State<AppState>, req: NgsiRequest) -> ApiResult<Response> {
    let ld = app.broker.contexts.resolve(req.context.as_ref()).await?;
    let mut items = batch_items(&app, &req).await?;
    let split = federated::split_batch(&app, &req, WriteKind::Create, &mut items)?;
    let mut o = match local_left(&items, &split) {
        true => app.broker.batch_create(&req.rc, &items).await?,
        false => BatchOutcome::default(),
    };
    let (extra, warnings) = federate(&app, WriteKind::Create, split, &mut o).await;
    let resp = if o.errors.is_empty() && extra.is_empty() {
        response::json(
            StatusCode::CREATED,
            &json!(o.success),
            Accept::Json,
            &ld,
            &[],
        )
    } else {
        partial(&o, &extra, &ld)
    };
    Ok(warned(resp, &warnings))
}

pub async fn upsert(State(app): State<AppState>, req: NgsiRequest) -> ApiResult<Response> {
    let ld = app.broker.contexts.resolve(req.context.as_ref()).await?;
    let (mode, kind) = if req.has_option("update") {
        (
            UpsertMode::Update,
            WriteKind::Append {
                no_overwrite: false,
            },
        )
    } else {
        (UpsertMode::Replace, WriteKind::Replace)
    };
    let mut items = batch_items(&app, &req).await?;
    let split = federated::split_batch(&app, &req, kind, &mut items)?;
    let mut o = match local_left(&items, &split) {
        true => app.broker.batch_upsert(&req.rc, &items, mode).await?,
        false => BatchOutcome::default(),
    };
    let (extra, warnings) = federate(&app, kind, split, &mut o).await;
    let resp = if !o.errors.is_empty() || !extra.is_empty() {
        partial(&o, &extra, &ld)
    } else if o.created.is_empty() {
        response::no_content()
    } else {
        response::json(
            StatusCode::CREATED,
            &json!(o.created),
            Accept::Json,
            &ld,
            &[],
        )
    };
    Ok(warned(resp, &warnings))
}

pub async fn update(State(app): State<AppState>, req: NgsiRequest) -> ApiResult<Response> {
    let ld = app.broker.contexts.resolve(req.context.as_ref()).await?;
    let no_overwrite = req.has_option("noOverwrite");
    let kind = WriteKind::Append { no_overwrite };
    let mut items = batch_items(&app, &req).await?;
    let split = federated::split_batch(&app, &req, kind, &mut items)?;
    let mut o = match local_left(&items, &split) {
        true => {
            app.broker
                .batch_update(&req.rc, &items, no_overwrite)
                .await?
        }
        false => BatchOutcome::default(),
    };
    let (extra, warnings) = federate(&app, kind, split, &mut o).await;
    Ok(warned(all_or_partial(&o, &extra, &ld), &warnings))
}

pub async fn merge(State(app): State<AppState>, req: NgsiRequest) -> ApiResult<Response> {
    let ld = app.broker.contexts.resolve(req.context.as_ref()).await?;
    let mut items = batch_items(&app, &req).await?;
    let split = federated::split_batch(&app, &req, WriteKind::Merge, &mut items)?;
    let mut o = match local_left(&items, &split) {
        true => app.broker.batch_merge(&req.rc, &items).await?,
        false => BatchOutcome::default(),
    };
    let (extra, warnings) = federate(&app, WriteKind::Merge, split, &mut o).await;
    Ok(warned(all_or_partial(&o, &extra, &ld), &warnings))
}

pub async fn delete(State(app): State<AppState>, req: NgsiRequest) -> ApiResult<Response> {
    let ld = app.broker.contexts.resolve(req.context.as_ref()).await?;
    let (ids, split) = federated::split_batch_delete(&app, &req, req.array()?)?;
    let mut o = match local_left(&ids, &split) {
        true => app.broker.batch_delete(&req.rc, &ids).await?,
        false => BatchOutcome::default(),
    };
    // An entity the sources hold and this broker does not is no error here: the
    // sources' answers decide (`finish_batch`).
    if let Some(s) = &split {
        o.errors.retain(|(id, e)| {
            !(citybrain_model::ErrorCode::kind(e) == citybrain_model::ErrorKind::ResourceNotFound
                && s.held_elsewhere(id))
        });
    }
    let (extra, warnings) = federate(&app, WriteKind::Delete, split, &mut o).await;
    Ok(warned(all_or_partial(&o, &extra, &ld), &warnings))
}

/// `POST /entityOperations/query`: a Query object in the body.
pub async fn query(State(app): State<AppState>, req: NgsiRequest) -> ApiResult<Response> {
    req.accept()?;
    let ld = app.broker.contexts.resolve(req.context.as_ref()).await?;
    let body = req.object()?;
    if body.get("type").and_then(Value::as_str) != Some("Query") {
        return Err(ApiError::bad_data(
            "the body must be a Query object (\"type\": \"Query\")",
        ));
    }
    let p = query_params_from_body(&req, &body)?;
    let q = crate::handlers::entities::entity_query(&app, &ld, &p)?;
    let (page, warnings) = if app.federation.has_registrations(&req.rc.tenant) {
        let f = app
            .federation
            .query_entities(
                &req.rc,
                &p,
                &q,
                &ld,
                &crate::handlers::entities::incoming(&req)?,
            )
            .await
            .map_err(crate::handlers::entities::federated_error)?;
        (f.value, f.warnings)
    } else {
        (app.broker.query_entities(&req.rc, &q)?, Vec::new())
    };
    // join / joinLevel may come in the Query body (019_24) or as parameters.
    let mut join = req.join()?;
    if let Some(j) = body.get("join") {
        join.0 = Join::parse(j.as_str())?;
    }
    if let Some(l) = body.get("joinLevel") {
        join.1 = Join::parse_level(Some(&l.to_string()))?;
    }
    let mut resp = page_response(&app, &req, &ld, &page, ENTITIES, join)?;
    crate::handlers::entities::add_warnings(&mut resp, &warnings);
    Ok(resp)
}

/// The parameters of a `Query` body (`POST .../entityOperations/query`).
pub(crate) fn query_params_from_body(
    req: &NgsiRequest,
    body: &serde_json::Map<String, Value>,
) -> ApiResult<QueryParams> {
    let mut p = QueryParams {
        count: req.param("count") == Some("true"),
        limit: req.param("limit").map(str::to_string),
        offset: req.param("offset").map(str::to_string),
        ..Default::default()
    };
    if let Some(ents) = body.get("entities") {
        let arr = ents
            .as_array()
            .ok_or_else(|| ApiError::bad_data("'entities' must be an array"))?;
        let mut types = Vec::new();
        let mut ids = Vec::new();
        for e in arr {
            if let Some(t) = e.get("type").and_then(Value::as_str) {
                types.push(t.to_string());
            }
            if let Some(i) = e.get("id").and_then(Value::as_str) {
                ids.push(i.to_string());
            }
            if let Some(pat) = e.get("idPattern").and_then(Value::as_str) {
                p.id_pattern = Some(pat.to_string());
            }
        }
        if !types.is_empty() {
            p.type_ = Some(types.join(","));
        }
        if !ids.is_empty() {
            p.id = Some(ids.join(","));
        }
    }
    let list = |k: &str| -> ApiResult<Option<String>> {
        match body.get(k) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
            )),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(ApiError::bad_data(format!(
                "'{k}' must be an array of strings, got {other}"
            ))),
        }
    };
    p.attrs = list("attrs")?;
    p.order_by = match body.get("orderBy") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ApiError::bad_data("'orderBy' must be a string")),
        None => req.param("orderBy").map(str::to_string),
    };
    p.q = body.get("q").and_then(Value::as_str).map(str::to_string);
    p.scope_q = body
        .get("scopeQ")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(g) = body.get("geoQ") {
        p.georel = g.get("georel").and_then(Value::as_str).map(str::to_string);
        p.geometry = g
            .get("geometry")
            .and_then(Value::as_str)
            .map(str::to_string);
        p.coordinates = g.get("coordinates").cloned();
        p.geoproperty = g
            .get("geoproperty")
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    Ok(p)
}
