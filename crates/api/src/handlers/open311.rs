//! Open311 GeoReport v2 under `/open311/v2`: discovery, services, service definitions,
//! requests (`POST` form-encoded with `api_key`; `GET` with every filter of the spec),
//! tokens, in `.json` or `.xml`, with errors as the spec gives them
//! (`[{"code", "description"}]`, `<errors><error>…`). The tenant is the
//! `jurisdiction_id` parameter (the default tenant without one). Beyond the spec, a
//! citizen may rate a resolved or closed request: `POST requests/{id}/rating.json`
//! with `api_key` and `rating` (1-5).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use citybrain_hub::open311::{Open311Error, RequestQuery};
use serde_json::{json, Value};

use super::rules::hub;
use crate::context::Ctx;
use crate::problem::{ApiError, ApiResult};
use crate::AppState;
use citybrain_model::ErrorKind;

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Json,
    Xml,
}

/// `name.json` → (`name`, Json).
fn split(file: &str) -> Result<(&str, Format), Open311Error> {
    match file.rsplit_once('.') {
        Some((name, "json")) => Ok((name, Format::Json)),
        Some((name, "xml")) => Ok((name, Format::Xml)),
        _ => Err(Open311Error::new(
            ErrorKind::ResourceNotFound,
            format!("'{file}': add .json or .xml"),
        )),
    }
}

fn tenant(q: &HashMap<String, String>) -> Result<String, Open311Error> {
    jurisdiction(q.get("jurisdiction_id"))
}

/// The tenant of a form-encoded POST: its `jurisdiction_id`, from the body or the query
/// string (GeoReport clients send it with the other fields); the first one, as for every
/// other field of the form.
fn form_tenant(form: &[(String, String)]) -> Result<String, Open311Error> {
    jurisdiction(
        form.iter()
            .find(|(k, _)| k == "jurisdiction_id")
            .map(|(_, v)| v),
    )
}

fn jurisdiction(j: Option<&String>) -> Result<String, Open311Error> {
    match j {
        None => Ok(String::new()),
        Some(j) => citybrain_broker::request::validate_tenant(j)
            .map(|()| j.clone())
            .map_err(|e| {
                Open311Error::new(
                    ErrorKind::BadRequestData,
                    format!("jurisdiction_id: {}", e.detail),
                )
            }),
    }
}

/// Escapes element text (no attributes are written, so quotes stay as they are); drops
/// the control characters XML 1.0 cannot carry.
fn escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') => {}
            c => out.push(c),
        }
    }
}

/// The element name of a list's items (`attributes` → `attribute`).
fn item_name(list: &str) -> &str {
    match list {
        "attributes" => "attribute",
        "values" => "value",
        "endpoints" => "endpoint",
        "formats" => "format",
        "keywords" => "keyword",
        _ => "item",
    }
}

fn value_xml(name: &str, v: &Value, out: &mut String) {
    match v {
        Value::Null => {
            out.push('<');
            out.push_str(name);
            out.push_str("/>");
        }
        Value::Array(items) => {
            out.push('<');
            out.push_str(name);
            out.push('>');
            for it in items {
                value_xml(item_name(name), it, out);
            }
            out.push_str("</");
            out.push_str(name);
            out.push('>');
        }
        Value::Object(m) => {
            out.push('<');
            out.push_str(name);
            out.push('>');
            for (k, v) in m {
                value_xml(k, v, out);
            }
            out.push_str("</");
            out.push_str(name);
            out.push('>');
        }
        Value::String(s) => {
            out.push('<');
            out.push_str(name);
            out.push('>');
            escape(s, out);
            out.push_str("</");
            out.push_str(name);
            out.push('>');
        }
        other => {
            out.push('<');
            out.push_str(name);
            out.push('>');
            out.push_str(&other.to_string());
            out.push_str("</");
            out.push_str(name);
            out.push('>');
        }
    }
}

/// A body in the asked format: a list is `<root><item>…</item>…</root>` in XML.
fn respond(status: StatusCode, f: Format, root: &str, item: &str, v: &Value) -> Response {
    let (body, ct) = match f {
        Format::Json => (v.to_string(), "application/json; charset=utf-8"),
        Format::Xml => {
            let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>");
            match v {
                Value::Array(items) => {
                    out.push('<');
                    out.push_str(root);
                    out.push('>');
                    for it in items {
                        value_xml(item, it, &mut out);
                    }
                    out.push_str("</");
                    out.push_str(root);
                    out.push('>');
                }
                other => value_xml(root, other, &mut out),
            }
            (out, "text/xml; charset=utf-8")
        }
    };
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    r
}

/// GeoReport v2's error body; the status (also its `code`) from the one error table.
fn error(f: Format, e: &Open311Error) -> Response {
    let api = ApiError::of(e);
    let status = api.status();
    respond(
        status,
        f,
        "errors",
        "error",
        &json!([{"code": status.as_u16(), "description": api.detail}]),
    )
}

/// The format a failing path asked for (JSON when it cannot be told).
fn format_of(file: &str) -> Format {
    if file.ends_with(".xml") {
        Format::Xml
    } else {
        Format::Json
    }
}

fn finish(file: &str, r: Result<Response, Open311Error>) -> Response {
    r.unwrap_or_else(|e| error(format_of(file), &e))
}

fn list(q: &HashMap<String, String>, k: &str) -> Option<Vec<String>> {
    q.get(k).map(|v| {
        v.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    })
}

fn date(
    q: &HashMap<String, String>,
    k: &str,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, Open311Error> {
    match q.get(k) {
        None => Ok(None),
        Some(s) => citybrain_model::time::parse_datetime(s)
            .map(Some)
            .ok_or_else(|| {
                Open311Error::new(
                    ErrorKind::BadRequestData,
                    format!("{k}: '{s}' is not a w3 date-time (2010-01-01T00:00:00Z)"),
                )
            }),
    }
}

/// `GET /open311/v2/{discovery|services|requests}.{format}`.
pub async fn get_root(
    State(app): State<AppState>,
    Path(file): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let hub = hub(&app)?.clone();
    let r = async {
        let (name, f) = split(&file)?;
        let t = tenant(&q)?;
        match name {
            "discovery" => {
                let cfg = hub.open311_config(&t).await;
                let v = json!({
                    "changeset": "2026-11-29T00:00:00Z",
                    "contact": cfg.contact.unwrap_or_default(),
                    "key_service": "ask the city for an api_key",
                    "endpoints": [{
                        "specification": "http://wiki.open311.org/GeoReport_v2",
                        "url": "/open311/v2",
                        "changeset": "2026-11-29T00:00:00Z",
                        "type": "production",
                        "formats": ["application/json", "text/xml"]
                    }]
                });
                Ok(respond(StatusCode::OK, f, "discovery", "discovery", &v))
            }
            "services" => {
                let cfg = hub.open311_config(&t).await;
                let list: Vec<Value> = cfg
                    .services
                    .iter()
                    .map(|s| {
                        json!({
                            "service_code": s.service_code,
                            "service_name": s.service_name,
                            "description": s.description,
                            "metadata": !s.attributes.is_empty(),
                            "type": "realtime",
                            "keywords": s.keywords.join(","),
                            "group": s.group,
                        })
                    })
                    .collect();
                Ok(respond(
                    StatusCode::OK,
                    f,
                    "services",
                    "service",
                    &json!(list),
                ))
            }
            "requests" => {
                let rq = RequestQuery {
                    ids: list(&q, "service_request_id"),
                    service_codes: list(&q, "service_code"),
                    start: date(&q, "start_date")?,
                    end: date(&q, "end_date")?,
                    statuses: match list(&q, "status") {
                        Some(s) if s.iter().any(|x| x != "open" && x != "closed") => {
                            return Err(Open311Error::new(
                                ErrorKind::BadRequestData,
                                "status: open or closed",
                            ))
                        }
                        other => other,
                    },
                };
                let v = hub.open311_requests(&t, &rq).await?;
                Ok(respond(
                    StatusCode::OK,
                    f,
                    "service_requests",
                    "request",
                    &json!(v),
                ))
            }
            other => Err(Open311Error::new(
                ErrorKind::ResourceNotFound,
                format!("no resource '{other}'"),
            )),
        }
    }
    .await;
    Ok(finish(&file, r))
}

/// The fields of a form-encoded body, then those of the query string (some clients send
/// `api_key` there).
fn form_of(body: &[u8], q: &HashMap<String, String>) -> Vec<(String, String)> {
    let mut form: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    form.extend(q.iter().map(|(k, v)| (k.clone(), v.clone())));
    form
}

/// `POST /open311/v2/requests.{format}` (form-encoded).
pub async fn post_root(
    State(app): State<AppState>,
    Ctx(mut rc): Ctx,
    Path(file): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> ApiResult<Response> {
    let hub = hub(&app)?.clone();
    let r = async {
        let (name, f) = split(&file)?;
        if matches!(name, "discovery" | "services") {
            // Known resources that are only read: a method error, as HTTP has it.
            let mut r = respond(
                StatusCode::METHOD_NOT_ALLOWED,
                f,
                "errors",
                "error",
                &json!([{"code": 405, "description": format!("'{name}' is read with GET")}]),
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET"));
            return Ok(r);
        }
        if name != "requests" {
            return Err(Open311Error::new(ErrorKind::ResourceNotFound, format!("no resource '{name}' to post to")));
        }
        let form = form_of(&body, &q);
        rc.tenant = form_tenant(&form)?;
        let (id, token) = hub.open311_submit(&rc, &form).await?;
        let v = json!([{"service_request_id": id, "token": token, "service_notice": "", "account_id": ""}]);
        Ok(respond(StatusCode::CREATED, f, "service_requests", "request", &v))
    }
    .await;
    Ok(finish(&file, r))
}

/// `GET /open311/v2/services/{code}.{format}`: the service definition.
pub async fn service_definition(
    State(app): State<AppState>,
    Path(file): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let hub = hub(&app)?.clone();
    let r = async {
        let (code, f) = split(&file)?;
        let cfg = hub.open311_config(&tenant(&q)?).await;
        let s = cfg
            .services
            .iter()
            .find(|s| s.service_code == code)
            .ok_or_else(|| {
                Open311Error::new(
                    ErrorKind::ResourceNotFound,
                    format!("service_code '{code}' not found"),
                )
            })?;
        let v = json!({"service_code": s.service_code, "attributes": s.attributes});
        Ok(respond(
            StatusCode::OK,
            f,
            "service_definition",
            "service_definition",
            &v,
        ))
    }
    .await;
    Ok(finish(&file, r))
}

/// `GET /open311/v2/requests/{id}.{format}`.
pub async fn request(
    State(app): State<AppState>,
    Path(file): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    single(&app, &file, &q, Lookup::Request).await
}

/// `GET /open311/v2/tokens/{token}.{format}`.
pub async fn token(
    State(app): State<AppState>,
    Path(file): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    single(&app, &file, &q, Lookup::Token).await
}

/// What a one-item path names.
enum Lookup {
    Request,
    Token,
}

/// One request (by id or by token) as a one-item `service_requests` list.
async fn single(
    app: &AppState,
    file: &str,
    q: &HashMap<String, String>,
    what: Lookup,
) -> ApiResult<Response> {
    let hub = hub(app)?.clone();
    let r = async {
        let (key, f) = split(file)?;
        let t = tenant(q)?;
        let v = match what {
            Lookup::Request => hub.open311_request(&t, key).await?,
            Lookup::Token => hub.open311_token(&t, key).await?,
        };
        Ok(respond(
            StatusCode::OK,
            f,
            "service_requests",
            "request",
            &json!([v]),
        ))
    }
    .await;
    Ok(finish(file, r))
}

/// `POST /open311/v2/requests/{id}/rating.{format}` (form: `api_key`, `rating`).
pub async fn rate(
    State(app): State<AppState>,
    Ctx(mut rc): Ctx,
    Path((id, file)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> ApiResult<Response> {
    let hub = hub(&app)?.clone();
    let r = async {
        let (name, f) = split(&file)?;
        if name != "rating" {
            return Err(Open311Error::new(
                ErrorKind::ResourceNotFound,
                format!("no resource '{name}'"),
            ));
        }
        let form = form_of(&body, &q);
        rc.tenant = form_tenant(&form)?;
        let v = hub.open311_rate(&rc, &id, &form).await?;
        Ok(respond(
            StatusCode::OK,
            f,
            "service_requests",
            "request",
            &json!([v]),
        ))
    }
    .await;
    Ok(finish(&file, r))
}

/// `GET|PUT /platform/v1/open311`: the services and keys (platform API, JSON).
pub async fn config(State(app): State<AppState>, Ctx(rc): Ctx) -> ApiResult<Response> {
    let hub = hub(&app)?;
    let c = hub.open311_config(&rc.tenant).await;
    Ok(super::rules::json_response(StatusCode::OK, &json!(c)))
}

pub async fn set_config(
    State(app): State<AppState>,
    Ctx(rc): Ctx,
    body: Bytes,
) -> ApiResult<Response> {
    let hub = hub(&app)?;
    let c: citybrain_hub::open311::Open311Config = crate::request::parse_object(&body)?;
    hub.set_open311_config(&rc, c.clone()).await?;
    Ok(super::rules::json_response(StatusCode::OK, &json!(c)))
}
