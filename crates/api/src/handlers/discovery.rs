//! `/types` and `/attributes` handlers.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Map, Value};

use crate::problem::{ApiError, ApiResult};
use crate::request::NgsiRequest;
use crate::response;
use crate::AppState;

fn details(req: &NgsiRequest) -> bool {
    req.param("details") == Some("true")
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

pub async fn types(State(app): State<AppState>, req: NgsiRequest) -> ApiResult<Response> {
    let accept = req.accept_json()?;
    let ld = app.broker.contexts.resolve(req.context.as_ref()).await?;
    let infos = app.broker.entity_types(&req.rc)?;
    let body = if details(&req) {
        Value::Array(
            infos
                .iter()
                .map(|t| {
                    let names: Vec<String> = t.attributes.keys().map(|a| ld.compact(a)).collect();
                    response::with_context(obj(json!({"id": t.iri, "type": "EntityType", "typeName": ld.compact(&t.iri), "attributeNames": names})), accept, &ld)
                })
                .collect(),
        )
    } else {
        let mut list: Vec<String> = infos.iter().map(|t| ld.compact(&t.iri)).collect();
        list.sort();
        response::with_context(
            obj(
                json!({"id": format!("urn:ngsi-ld:EntityTypeList:{}", uuid::Uuid::new_v4()), "type": "EntityTypeList", "typeList": list}),
            ),
            accept,
            &ld,
        )
    };
    Ok(response::json(StatusCode::OK, &body, accept, &ld, &[]))
}

pub async fn type_info(
    State(app): State<AppState>,
    Path(name): Path<String>,
    req: NgsiRequest,
) -> ApiResult<Response> {
    let accept = req.accept_json()?;
    let ld = app.broker.contexts.resolve(req.context.as_ref()).await?;
    let iri = ld.expand(&name);
    let info = app
        .broker
        .entity_types(&req.rc)?
        .into_iter()
        .find(|t| t.iri == iri)
        .ok_or_else(|| {
            ApiError::new(
                citybrain_model::ErrorKind::ResourceNotFound,
                format!("entity type '{name}' not found"),
            )
        })?;
    let attrs: Vec<Value> = info
        .attributes
        .iter()
        .map(|(a, kinds)| json!({"id": a, "type": "Attribute", "attributeName": ld.compact(a), "attributeTypes": kinds.iter().collect::<Vec<_>>()}))
        .collect();
    let body = response::with_context(
        obj(
            json!({"id": info.iri, "type": "EntityTypeInfo", "typeName": ld.compact(&info.iri), "entityCount": info.entity_count, "attributeDetails": attrs}),
        ),
        accept,
        &ld,
    );
    Ok(response::json(StatusCode::OK, &body, accept, &ld, &[]))
}

pub async fn attributes(State(app): State<AppState>, req: NgsiRequest) -> ApiResult<Response> {
    let accept = req.accept_json()?;
    let ld = app.broker.contexts.resolve(req.context.as_ref()).await?;
    let infos = app.broker.attributes(&req.rc)?;
    let body = if details(&req) {
        Value::Array(
            infos
                .iter()
                .map(|a| {
                    let types: Vec<String> = a.types.iter().map(|t| ld.compact(t)).collect();
                    response::with_context(obj(json!({"id": a.iri, "type": "Attribute", "attributeName": ld.compact(&a.iri), "typeNames": types})), accept, &ld)
                })
                .collect(),
        )
    } else {
        let mut list: Vec<String> = infos.iter().map(|a| ld.compact(&a.iri)).collect();
        list.sort();
        response::with_context(
            obj(
                json!({"id": format!("urn:ngsi-ld:AttributeList:{}", uuid::Uuid::new_v4()), "type": "AttributeList", "attributeList": list}),
            ),
            accept,
            &ld,
        )
    };
    Ok(response::json(StatusCode::OK, &body, accept, &ld, &[]))
}

pub async fn attribute_info(
    State(app): State<AppState>,
    Path(name): Path<String>,
    req: NgsiRequest,
) -> ApiResult<Response> {
    let accept = req.accept_json()?;
    let ld = app.broker.contexts.resolve(req.context.as_ref()).await?;
    let iri = ld.expand(&name);
    let a = app
        .broker
        .attributes(&req.rc)?
        .into_iter()
        .find(|a| a.iri == iri)
        .ok_or_else(|| {
            ApiError::new(
                citybrain_model::ErrorKind::ResourceNotFound,
                format!("attribute '{name}' not found"),
            )
        })?;
    let types: Vec<String> = a.types.iter().map(|t| ld.compact(t)).collect();
    let body = response::with_context(
        obj(
            json!({"id": a.iri, "type": "Attribute", "attributeName": ld.compact(&a.iri), "attributeCount": a.count, "attributeTypes": a.kinds.iter().collect::<Vec<_>>(), "typeNames": types}),
        ),
        accept,
        &ld,
    );
    Ok(response::json(StatusCode::OK, &body, accept, &ld, &[]))
}
