//! `/entities` handlers: decode, call the broker, encode.

use axum::extract::{Path, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use citybrain_broker::{EntityQuery, QueryPage, QueryParams};
use citybrain_federation::forward::Incoming;
use citybrain_federation::write::WriteKind;

use crate::handlers::federated;
use citybrain_federation::{FederationError, Warning};
use citybrain_model::ops::UpdateOutcome;
use citybrain_model::JsonLdContext;
use serde_json::{json, Value};

use crate::problem::{ApiError, ApiResult};
use crate::request::{Accept, NgsiRequest};
use crate::response::{self, Join};
use crate::routes::ENTITIES;
use crate::AppState;

/// True when a projection leaves nothing to show: no member at all, or (with `attrs`)
/// none of the requested attributes. Such an entity is "not found" (NGSI-LD 1.8, 4.21).
fn projection_empties(
    e: &citybrain_model::Entity,
    opts: &citybrain_model::render::RenderOptions,
    attrs_given: bool,
) -> bool {
    let p = &opts.projection;
    if !p.is_active() {
        return false;
    }
    let any_attr = e.attrs.iter().any(|(n, _)| p.keeps(n));
    !any_attr && (attrs_given || (p.omit_id && p.omit_type))
}

/// Query parameters of `GET /entities` as the broker takes them.
pub fn query_params(req: &NgsiRequest) -> ApiResult<QueryParams> {
    let p = |k: &str| req.param(k).map(str::to_string);
    Ok(QueryParams {
        id: p("id"),
        type_: p("type"),
        id_pattern: p("idPattern"),
        attrs: p("attrs"),
        q: p("q"),
        georel: p("georel"),
        geometry: p("geometry"),
        coordinates: p("coordinates").map(Value::String),
        geoproperty: p("geoproperty"),
        scope_q: p("scopeQ"),
        limit: p("limit"),
        offset: p("offset"),
        count: req.bool_param("count")?,
        order_by: p("orderBy"),
        allow_unfiltered: req.bool_param("local")?,
    })
}

/// Encodes one page of entities with `NGSILD-Results-Count` and `Link: rel="next"`.
pub fn page_response(
    app: &AppState,
    req: &NgsiRequest,
    ld: &JsonLdContext,
    page: &QueryPage,
    path: &str,
    join: (Join, usize),
) -> ApiResult<Response> {
    let accept = req.accept()?;
    let opts = req.render_options(ld)?;
    let geometry = ld.expand(req.param("geometryProperty").unwrap_or("location"));
    let (join, level) = join;
    let kept: Vec<&citybrain_model::Entity> = page
        .entities
        .iter()
        .map(|e| e.as_ref())
        .filter(|e| !projection_empties(e, &opts, false))
        .collect();
    let body = if join == Join::None || accept == Accept::GeoJson {
        response::entities(kept.iter().copied(), ld, accept, &opts, &geometry)
    } else {
        let roots = kept;
        let lookup = |target: &str| app.broker.retrieve_entity(&req.rc, target).ok();
        Value::Array(response::render_joined(
            &roots, &lookup, ld, accept, &opts, join, level,
        ))
    };
    let mut extra = Vec::new();
    if let Some(total) = page.total {
        extra.push((
            HeaderName::from_static("ngsild-results-count"),
            total.to_string(),
        ));
    }
    extra.extend(response::page_links(
        &req.params,
        path,
        page.offset,
        page.limit,
        page.has_more,
    ));
    Ok(response::json(StatusCode::OK, &body, accept, ld, &extra))
}

/// Validates query parameters against the broker's limits.
pub(crate) fn entity_query(
    app: &AppState,
    ld: &JsonLdContext,
    params: &QueryParams,
) -> ApiResult<EntityQuery> {
    let l = &app.broker.limits;
    Ok(EntityQuery::from_params(
        params,
        ld,
        l.default_limit,
        l.max_limit,
    )?)
}

/// What of the request travels with the requests a distributed operation sends.
pub(crate) fn incoming(req: &NgsiRequest) -> ApiResult<Incoming> {
    Ok(Incoming {
        via: req
            .headers
            .get("via")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        link: req.link.clone(),
        local: req.bool_param("local")?,
        csf: req.param("csf").map(str::to_string),
        inline_context: req.is_ld,
        headers: req.headers.clone(),
    })
}

/// The `NGSILD-Warning` headers naming the context sources that failed.
pub(crate) fn warning_headers(warnings: &[Warning]) -> Vec<(HeaderName, String)> {
    warnings
        .iter()
        .map(|w| (HeaderName::from_static("ngsild-warning"), w.header_value()))
        .collect()
}

/// A distributed operation's error, with its sources' warnings as headers.
pub(crate) fn federated_error(e: FederationError) -> ApiError {
    let headers = warning_headers(e.warnings());
    headers
        .into_iter()
        .fold(ApiError::of(&e), |err, (n, v)| err.with_header(n, v))
}

pub async fn query(State(app): State<AppState>, req: NgsiRequest) -> ApiResult<Response> {
    req.accept()?;
    let ld = app.broker.contexts.resolve(req.context.as_ref()).await?;
    let params = query_params(&req)?;
    let q = entity_query(&app, &ld, &params)?;
    if !app.federation.has_registrations(&req.rc.tenant) {
        let page = app.broker.query_entities(&req.rc, &q)?;
        return page_response(&app, &req, &ld, &page, ENTITIES, req.join()?);
    }
    let f = app
        .federation
        .query_entities(&req.rc, &params, &q, &ld, &incoming(&req)?)
        .await
        .map_err(federated_error)?;
    let mut resp = page_response(&app, &req, &ld, &f.value, ENTITIES, req.join()?)?;
    add_warnings(&mut resp, &f.warnings);
    Ok(resp)
}

/// Adds the sources' warnings to an answer.
pub(crate) fn add_warnings(resp: &mut Response, warnings: &[Warning]) {
    for (n, v) in warning_headers(warnings) {
        if let Ok(v) = axum::http::HeaderValue::from_str(&v) {
            resp.headers_mut().append(n, v);
        }
    }
}

pub async fn create(State(app): State<AppState>, req: NgsiRequest) -> ApiResult<Response> {
    let ld = app.broker.contexts.resolve(req.context.as_ref()).await?;
    let body = req.object()?;
    let id = body
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut split = federated::split(&app, &req, WriteKind::Create, &id, Some(&body), &ld)?;
    let mut created = id.clone();
    if let Some(local) = federated::local_part(&mut split, body) {
        created = app.broker.create_entity(&req.rc, &ld, &local).await?;
    }
    let ok = response::created(&format!("{ENTITIES}/{created}"));
    federated::answer(&app, (WriteKind::Create, &id), split, ok).await
}

pub async fn retrieve(
    State(app): State<AppState>,
    Path(id): Path<String>,
    req: NgsiRequest,
) -> ApiResult<Response> {
    let accept = req.accept()?;
    let ld = app.broker.contexts.resolve(req.context.as_ref()).await?;
    let opts = req.render_options(&ld)?;
    let (join, level) = req.join()?;
    let (e, warnings) = if app.federation.has_registrations(&req.rc.tenant) {
        let attrs: Option<Vec<String>> = opts
            .projection
            .attrs
            .as_ref()
            .map(|a| a.iter().cloned().collect());
        let f = app
            .federation
            .retrieve_entity(&req.rc, &id, attrs.as_deref(), &ld, &incoming(&req)?)
            .await
            .map_err(federated_error)?;
        (f.value, f.warnings)
    } else {
        (app.broker.retrieve_entity(&req.rc, &id)?, Vec::new())
    };
    if projection_empties(&e, &opts, req.param("attrs").is_some()) {
        return Err(ApiError::new(
            citybrain_model::ErrorKind::ResourceNotFound,
            format!("entity '{id}' has none of the requested attributes"),
        ));
    }
    let geometry = ld.expand(req.param("geometryProperty").unwrap_or("location"));
    let body = if join == Join::None || accept == Accept::GeoJson {
        response::entity(&e, &ld, accept, &opts, &geometry)
    } else {
        let lookup = |target: &str| app.broker.retrieve_entity(&req.rc, target).ok();
        let list = response::render_joined(&[&e], &lookup, &ld, accept, &opts, join, level);
        // Flat with nothing linked is just the entity.
        citybrain_model::render::one_or_list(list)
    };
    Ok(response::json(
        StatusCode::OK,
        &body,
        accept,
        &ld,
        &warning_headers(&warnings),
    ))
}

pub async fn replace(
    State(app): State<AppState>,
    Path(id): Path<String>,
    req: NgsiRequest,
) -> ApiResult<Response> {
    let ld = app.broker.contexts.resolve(req.context.as_ref()).await?;
    let body = req.object()?;
    let mut split = federated::split(&app, &req, WriteKind::Replace, &id, Some(&body), &ld)?;
    if let Some(local) = federated::local_part(&mut split, body) {
        app.broker.replace_entity(&req.rc, &ld, &id, &local).await?;
    }
    let ok = response::no_content();
    federated::answer(&app, (WriteKind::Replace, &id), split, ok).await
}

pub async fn merge(
    State(app): State<AppState>,
    Path(id): Path<String>,
    req: NgsiRequest,
) -> ApiResult<Response> {
    let ld = app.broker.contexts.resolve(req.context.as_ref()).await?;
    let body = req.object()?;
    let mut split = federated::split(&app, &req, WriteKind::Merge, &id, Some(&body), &ld)?;
    if let Some(local) = federated::local_part(&mut split, body) {
        app.broker.merge_entity(&req.rc, &ld, &id, &local).await?;
    }
    let ok = response::no_content();
    federated::answer(&app, (WriteKind::Merge, &id), split, ok).await
}

/// `DELETE /entities` with a query: purge (NGSI-LD 1.9, 5.6.21).
pub async fn purge(State(app): State<AppState>, req: NgsiRequest) -> ApiResult<Response> {
    let ld = app.broker.contexts.resolve(req.context.as_ref()).await?;
    let mut params = query_params(&req)?;
    // Paging is the purge's own business.
    params.limit = None;
    params.offset = None;
    app.broker
        .purge_entities(&req.rc, &ld, &params, req.param("keep"), req.param("drop"))
        .await?;
    Ok(response::no_content())
}

pub async fn delete(
    State(app): State<AppState>,
    Path(id): Path<String>,
    req: NgsiRequest,
) -> ApiResult<Response> {
    let core = JsonLdContext::core();
    let Some(mut split) = federated::split(&app, &req, WriteKind::Delete, &id, None, &core)? else {
        app.broker.delete_entity(&req.rc, &id).await?;
        return Ok(response::no_content());
    };
    let mut found_here = false;
    if split.local.take().is_some() {
        match app.broker.delete_entity(&req.rc, &id).await {
            Ok(()) => found_here = true,
            // Held only by the sources: nothing to delete here.
            Err(e)
                if citybrain_model::ErrorCode::kind(&e)
                    == citybrain_model::ErrorKind::ResourceNotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    let ok = response::no_content();
    federated::finish(&app, (WriteKind::Delete, &id), split, found_here, ok).await
}

/// 204, or 207 with an UpdateResult. Attribute names are given as full IRIs: the result
/// carries no `@context`, so only IRIs are unambiguous (and the ETSI suite expects them).
fn outcome_response(o: &UpdateOutcome, ld: &JsonLdContext) -> Response {
    if o.not_updated.is_empty() {
        return response::no_content();
    }
    let body = json!({
        "updated": o.updated,
        "notUpdated": o.not_updated.iter().map(|(n, r)| json!({"attributeName": n, "reason": r})).collect::<Vec<_>>(),
    });
    response::json(StatusCode::MULTI_STATUS, &body, Accept::Json, ld, &[])
}

pub async fn append_attrs(
    State(app): State<AppState>,
    Path(id): Path<String>,
    req: NgsiRequest,
) -> ApiResult<Response> {
    let ld = app.broker.contexts.resolve(req.context.as_ref()).await?;
    let no_overwrite = req.has_option("noOverwrite");
    let body = req.object()?;
    let kind = WriteKind::Append { no_overwrite };
    let mut split = federated::split(&app, &req, kind, &id, Some(&body), &ld)?;
    let ok = match federated::local_part(&mut split, body) {
        Some(local) => {
            let o = app
                .broker
                .append_attrs(&req.rc, &ld, &id, &local, no_overwrite)
                .await?;
            outcome_response(&o, &ld)
        }
        None => response::no_content(),
    };
    federated::answer(&app, (kind, &id), split, ok).await
}

pub async fn update_attrs(
    State(app): State<AppState>,
    Path(id): Path<String>,
    req: NgsiRequest,
) -> ApiResult<Response> {
    let ld = app.broker.contexts.resolve(req.context.as_ref()).await?;
    let body = req.object()?;
    let mut split = federated::split(&app, &req, WriteKind::Update, &id, Some(&body), &ld)?;
    let ok = match federated::local_part(&mut split, body) {
        Some(local) => {
            let o = app.broker.update_attrs(&req.rc, &ld, &id, &local).await?;
            outcome_response(&o, &ld)
        }
        None => response::no_content(),
    };
    federated::answer(&app, (WriteKind::Update, &id), split, ok).await
}

pub async fn patch_attr(
    State(app): State<AppState>,
    Path((id, attr)): Path<(String, String)>,
    req: NgsiRequest,
) -> ApiResult<Response> {
    let ld = app.broker.contexts.resolve(req.context.as_ref()).await?;
    let body = req.object()?;
    let kind = WriteKind::PatchAttr;
    let content = Value::Object(body);
    let mut split = federated::split_attr(&app, &req, kind, &id, &attr, &content, &ld)?;
    let Value::Object(body) = content else {
        return Err(ApiError::invalid("the body must be an object"));
    };
    if federated::writes_here(&mut split) {
        app.broker
            .patch_attr(&req.rc, &ld, &id, &attr, &body)
            .await?;
    }
    federated::answer(&app, (kind, &id), split, response::no_content()).await
}

pub async fn replace_attr(
    State(app): State<AppState>,
    Path((id, attr)): Path<(String, String)>,
    req: NgsiRequest,
) -> ApiResult<Response> {
    let ld = app.broker.contexts.resolve(req.context.as_ref()).await?;
    let body = req
        .body
        .clone()
        .ok_or_else(|| ApiError::invalid("a body is required"))?;
    let kind = WriteKind::ReplaceAttr;
    let mut split = federated::split_attr(&app, &req, kind, &id, &attr, &body, &ld)?;
    if federated::writes_here(&mut split) {
        app.broker
            .replace_attr(&req.rc, &ld, &id, &attr, &body)
            .await?;
    }
    federated::answer(&app, (kind, &id), split, response::no_content()).await
}

pub async fn delete_attr(
    State(app): State<AppState>,
    Path((id, attr)): Path<(String, String)>,
    req: NgsiRequest,
) -> ApiResult<Response> {
    let ld = app.broker.contexts.resolve(req.context.as_ref()).await?;
    let all = req.bool_param("deleteAll")?;
    let kind = WriteKind::DeleteAttr;
    let split = federated::split_attr(&app, &req, kind, &id, &attr, &Value::Null, &ld)?;
    let Some(mut split) = split else {
        app.broker
            .delete_attr(&req.rc, &ld, &id, &attr, req.param("datasetId"), all)
            .await?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    if split.local.take().is_some() {
        app.broker
            .delete_attr(&req.rc, &ld, &id, &attr, req.param("datasetId"), all)
            .await?;
    }
    federated::finish(&app, (kind, &id), split, true, response::no_content()).await
}
