//! `/platform/v1/policies`, `/platform/v1/classification` and `/platform/v1/keys`: the
//! access policies (Cedar, validated and versioned), the data classification, and API
//! keys. Handlers decode, call the governance and identity crates, encode.
//!
//! - `GET /platform/v1/policies`: the version in force `{"version", "policies",
//!   "author", "at"}`; `PUT` with the Cedar text (`text/plain`, or JSON
//!   `{"policies": "…"}`) replaces it (400 naming the policy and the fault);
//! - `GET /platform/v1/policies/versions`: every version, oldest first;
//! - `GET|PUT /platform/v1/classification`: `{"default", "types", "attributes"}`;
//! - `GET /platform/v1/keys`, `POST` `{"user", "name", "roles", "department",
//!   "tenants", "scopes", "expiresAt"}` (answers the key, once),
//!   `DELETE /platform/v1/keys/{keyId}` (revokes).
//!
//! Every route is the `governance` API of the policies: reading it needs `read`,
//! changing it `administer` (administrators, by default).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use citybrain_model::ErrorKind;
use citybrain_policy::Governance;
use serde_json::json;

use crate::context::Ctx;
use crate::problem::{ApiError, ApiResult};
use crate::request::parse_object;
use crate::response::plain_json;
use crate::AppState;

fn governance(app: &AppState) -> ApiResult<&Arc<Governance>> {
    app.governance.as_ref().ok_or_else(|| {
        ApiError::new(
            ErrorKind::ResourceNotFound,
            "access policies apply once authentication is configured (run `citybrain bootstrap`)",
        )
    })
}

fn keys(app: &AppState) -> ApiResult<&Arc<citybrain_identity::KeyStore>> {
    app.auth.as_ref().and_then(|a| a.keys()).ok_or_else(|| {
        ApiError::new(
            ErrorKind::ResourceNotFound,
            "API keys are not enabled on this server (auth.api_keys)",
        )
    })
}

pub async fn policies(State(app): State<AppState>) -> ApiResult<Response> {
    let g = governance(&app)?;
    Ok(plain_json(StatusCode::OK, &json!(g.policies())))
}

pub async fn policy_versions(State(app): State<AppState>) -> ApiResult<Response> {
    let g = governance(&app)?;
    let v = g.policy_versions().map_err(|e| ApiError::of(&e))?;
    Ok(plain_json(StatusCode::OK, &json!(v)))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PoliciesBody {
    policies: String,
}

pub async fn set_policies(
    State(app): State<AppState>,
    Ctx(rc): Ctx,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let g = governance(&app)?;
    let json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.to_ascii_lowercase().contains("json"));
    let text = if json {
        parse_object::<PoliciesBody>(&body)?.policies
    } else {
        String::from_utf8(body.to_vec())
            .map_err(|_| ApiError::bad_data("policies: the body is not UTF-8 text"))?
    };
    let v = g
        .set_policies(&rc, &text)
        .await
        .map_err(|e| ApiError::of(&e))?;
    Ok(plain_json(StatusCode::OK, &json!(v)))
}

pub async fn classification(State(app): State<AppState>) -> ApiResult<Response> {
    let g = governance(&app)?;
    Ok(plain_json(StatusCode::OK, &json!(*g.classification())))
}

pub async fn set_classification(
    State(app): State<AppState>,
    Ctx(rc): Ctx,
    body: Bytes,
) -> ApiResult<Response> {
    let g = governance(&app)?;
    let v: serde_json::Value = parse_object(&body)?;
    let c = g
        .set_classification(&rc, v)
        .await
        .map_err(|e| ApiError::of(&e))?;
    Ok(plain_json(StatusCode::OK, &json!(*c)))
}

pub async fn list_keys(State(app): State<AppState>) -> ApiResult<Response> {
    let ks = keys(&app)?;
    Ok(plain_json(StatusCode::OK, &json!(ks.list())))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct KeyBody {
    user: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    department: Option<String>,
    #[serde(default)]
    tenants: Option<Vec<String>>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    expires_at: Option<String>,
}

pub async fn create_key(
    State(app): State<AppState>,
    Ctx(rc): Ctx,
    body: Bytes,
) -> ApiResult<Response> {
    let ks = keys(&app)?;
    let b: KeyBody = parse_object(&body)?;
    let expires_at = b
        .expires_at
        .as_deref()
        .map(|s| {
            citybrain_model::time::parse_datetime(s)
                .ok_or_else(|| ApiError::bad_data("expiresAt: not a date-time"))
        })
        .transpose()?;
    let now = app.broker.clock().now();
    let (key, secret) = ks
        .create(
            citybrain_identity::NewKey {
                name: b.name,
                user: b.user,
                roles: b.roles,
                department: b.department,
                tenants: b.tenants,
                scopes: b.scopes,
                expires_at,
            },
            now,
        )
        .map_err(|e| ApiError::of(&e))?;
    tracing::info!(key = %key.id, user = %key.user, actor = %rc.actor(), "API key created");
    let mut v = json!(key);
    v["key"] = json!(secret);
    Ok(plain_json(StatusCode::CREATED, &v))
}

pub async fn revoke_key(
    State(app): State<AppState>,
    Ctx(rc): Ctx,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let ks = keys(&app)?;
    let now = app.broker.clock().now();
    let k = ks.revoke(&id, now).map_err(|e| ApiError::of(&e))?;
    tracing::info!(key = %k.id, user = %k.user, actor = %rc.actor(), "API key revoked");
    Ok(plain_json(StatusCode::OK, &json!(k)))
}
