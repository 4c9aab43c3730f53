//! `/platform/v1/rules` and `/platform/v1/events`: rules managed as versioned data and
//! the events they raise, recent and live (Server-Sent Events). Handlers decode, call
//! the hub, encode.
//!
//! - `GET /platform/v1/rules`: every rule of the tenant (`NGSILD-Tenant`), with its
//!   version and run-time status;
//! - `POST /platform/v1/rules`: a new rule (JSON, or YAML with a YAML content type):
//!   201 with `Location`, 409 when the id exists, 400 naming the field at fault;
//! - `GET|PUT|DELETE /platform/v1/rules/{id}`: one rule; `PUT` creates or replaces it
//!   as the next version;
//! - `GET /platform/v1/rules/{id}/versions`: every version, deletions included;
//! - `GET /platform/v1/events?after=&rule=&entity=&kind=`: recent events (the last
//!   1,000 per tenant), oldest first;
//! - `GET /platform/v1/events/stream` with the same filters and `feed=events|
//!   incidents|all`: the live feed as Server-Sent Events, rule events (`event:
//!   rule-event`, `id` = the event's `seq`) and incidents opened or changed (`event:
//!   incident`);
//! - `POST /platform/v1/backtests` `{"rule": {...} | "ruleId": "...", "from", "to"}`:
//!   what the rule would have raised over that period of history.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use citybrain_hub::{Hub, HubError, HubEvent};
use citybrain_model::ErrorKind;
use citybrain_rules::RuleSpec;
use futures::Stream;
use serde_json::json;

use crate::context::Ctx;
use crate::problem::{ApiError, ApiResult};
use crate::AppState;
use citybrain_access::{Action, Resource};

pub(crate) fn hub(app: &AppState) -> ApiResult<&Arc<Hub>> {
    app.hub.as_ref().ok_or_else(|| {
        ApiError::new(
            ErrorKind::ResourceNotFound,
            "the coordination hub is not enabled on this server",
        )
    })
}

pub(crate) use crate::response::plain_json as json_response;

/// The rule in a request body: JSON, or YAML when the content type says so.
fn rule_of(headers: &HeaderMap, body: &Bytes) -> ApiResult<RuleSpec> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_ascii_lowercase();
    let text =
        std::str::from_utf8(body).map_err(|_| ApiError::bad_data("the body is not UTF-8"))?;
    if ct.contains("yaml") {
        let mut list = citybrain_rules::parse_rules(text, "body")
            .map_err(|e| ApiError::bad_data(e.to_string()))?;
        if list.len() != 1 {
            return Err(ApiError::bad_data("body: send one rule per request"));
        }
        return Ok(list.remove(0));
    }
    if !ct.starts_with("application/json") {
        return Err(ApiError::new(
            ErrorKind::InvalidRequest,
            "send the rule as application/json or application/yaml",
        )
        .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
    }
    crate::request::parse_object(text.as_bytes())
}

pub async fn list(State(app): State<AppState>, Ctx(rc): Ctx) -> ApiResult<Response> {
    let hub = hub(&app)?;
    let rules = hub.rules(&rc.tenant);
    Ok(json_response(StatusCode::OK, &json!(rules)))
}

pub async fn create(
    State(app): State<AppState>,
    Ctx(rc): Ctx,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let hub = hub(&app)?;
    let spec = rule_of(&headers, &body)?;
    let rec = hub.put_rule(&rc, spec, true).await?;
    let mut r = json_response(StatusCode::CREATED, &json!(rec));
    if let Ok(loc) = HeaderValue::from_str(&format!("/platform/v1/rules/{}", rec.rule.id)) {
        r.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(r)
}

pub async fn retrieve(
    State(app): State<AppState>,
    Ctx(rc): Ctx,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let hub = hub(&app)?;
    let view = hub
        .rule(&rc.tenant, &id)
        .ok_or_else(|| ApiError::from(HubError::NotFound(id)))?;
    Ok(json_response(StatusCode::OK, &json!(view)))
}

pub async fn replace(
    State(app): State<AppState>,
    Ctx(rc): Ctx,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let hub = hub(&app)?;
    let spec = rule_of(&headers, &body)?;
    if spec.id != id {
        return Err(ApiError::bad_data(format!(
            "id: '{}' differs from the path's '{id}'",
            spec.id
        )));
    }
    let rec = hub.put_rule(&rc, spec, false).await?;
    let status = if rec.version == 1 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json_response(status, &json!(rec)))
}

pub async fn delete(
    State(app): State<AppState>,
    Ctx(rc): Ctx,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let hub = hub(&app)?;
    hub.delete_rule(&rc, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn versions(
    State(app): State<AppState>,
    Ctx(rc): Ctx,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let hub = hub(&app)?;
    let v = hub.versions(&rc.tenant, &id);
    if v.is_empty() {
        return Err(HubError::NotFound(id).into());
    }
    Ok(json_response(StatusCode::OK, &json!(v)))
}

/// Event filters of `/events` and `/events/stream`.
struct Filter {
    rule: Option<String>,
    entity: Option<String>,
    kind: Option<String>,
    category: Option<String>,
}

impl Filter {
    fn of(q: &HashMap<String, String>) -> ApiResult<Filter> {
        if let Some(k) = q.keys().find(|k| {
            !matches!(
                k.as_str(),
                "after" | "rule" | "entity" | "kind" | "category"
            )
        }) {
            return Err(ApiError::invalid(format!(
                "unknown query parameter '{k}' (this path takes: after, rule, entity, kind, category)"
            )));
        }
        if let Some(k) = q.get("kind") {
            if !matches!(k.as_str(), "raised" | "cleared" | "momentary") {
                return Err(ApiError::bad_data(
                    "kind: one of raised, cleared, momentary",
                ));
            }
        }
        Ok(Filter {
            rule: q.get("rule").cloned(),
            entity: q.get("entity").cloned(),
            kind: q.get("kind").cloned(),
            category: q.get("category").cloned(),
        })
    }

    /// Incidents on the live feed: by category, and by a rule or an entity they hold;
    /// a `kind` filter is about rule events, so it leaves incidents out.
    fn keeps_incident(&self, i: &citybrain_hub::Incident) -> bool {
        self.kind.is_none()
            && self.category.as_deref().is_none_or(|c| c == i.category)
            && self
                .rule
                .as_deref()
                .is_none_or(|r| i.rules.iter().any(|x| x == r))
            && self
                .entity
                .as_deref()
                .is_none_or(|e| i.entities.iter().any(|x| x == e))
    }

    fn keeps(&self, e: &HubEvent) -> bool {
        let kind = match e.event.kind {
            citybrain_rules::EventKind::Raised => "raised",
            citybrain_rules::EventKind::Cleared => "cleared",
            citybrain_rules::EventKind::Momentary => "momentary",
        };
        self.rule.as_deref().is_none_or(|r| r == &*e.event.rule)
            && self.entity.as_deref().is_none_or(|x| x == &*e.event.entity)
            && self.kind.as_deref().is_none_or(|k| k == kind)
            && self
                .category
                .as_deref()
                .is_none_or(|c| c == &*e.event.category)
    }
}

pub async fn events(
    State(app): State<AppState>,
    Ctx(rc): Ctx,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let hub = hub(&app)?;
    let filter = Filter::of(&q)?;
    let after = match q.get("after") {
        None => 0,
        Some(a) => a
            .parse::<u64>()
            .map_err(|_| ApiError::bad_data("after: an event seq (a whole number)"))?,
    };
    let list: Vec<Arc<HubEvent>> = hub
        .recent(&rc.tenant, after)
        .into_iter()
        .filter(|e| filter.keeps(e))
        .filter_map(|e| hub.event_for(&rc, &e))
        .collect();
    Ok(json_response(StatusCode::OK, &json!(list)))
}

/// Which parts of the live feed a stream carries (`feed=events|incidents|all`).
#[derive(Clone, Copy, PartialEq)]
enum Feed {
    Events,
    Incidents,
    All,
}

pub async fn stream(
    State(app): State<AppState>,
    Ctx(rc): Ctx,
    Query(mut q): Query<HashMap<String, String>>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let hub = hub(&app)?;
    let feed = match q.remove("feed").as_deref() {
        None | Some("all") => Feed::All,
        Some("events") => Feed::Events,
        Some("incidents") => Feed::Incidents,
        Some(f) => {
            return Err(ApiError::bad_data(format!(
                "feed: '{f}' is not events, incidents or all"
            )))
        }
    };
    let filter = Filter::of(&q)?;
    // Incidents on the feed are for those who may read incidents (the route checked
    // events only): asked for alone, a refusal; within `all`, left out.
    let incidents = app
        .broker
        .authorizer()
        .authorize(&rc, &Action::read(Resource::Incident(None)));
    let feed = match (feed, incidents) {
        (Feed::Incidents, Err(denied)) => {
            return Err(ApiError::of(&citybrain_model::ModelError::from(denied)))
        }
        (Feed::All, Err(_)) => Feed::Events,
        (f, _) => f,
    };
    let t = rc.tenant.clone();
    let reader = (hub.clone(), rc);
    let state = (
        hub.subscribe(),
        hub.subscribe_incidents(),
        filter,
        t,
        feed,
        reader,
    );
    let s = futures::stream::unfold(
        state,
        |(mut rx, mut irx, filter, t, feed, reader)| async move {
            loop {
                let ev = tokio::select! {
                    r = rx.recv(), if feed != Feed::Incidents => match r {
                        Ok(e) if e.tenant == t && filter.keeps(&e) => reader
                            .0
                            .event_for(&reader.1, &e)
                            .map(|e| {
                                SseEvent::default()
                                    .id(e.seq.to_string())
                                    .event("rule-event")
                                    .data(json!(*e).to_string())
                            }),
                        Ok(_) => None,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => Some(lagged(n)),
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    },
                    r = irx.recv(), if feed != Feed::Events => match r {
                        Ok(c) if c.tenant == t && filter.keeps_incident(&c.incident) => Some(
                            SseEvent::default()
                                .event("incident")
                                .data(json!(c.incident).to_string()),
                        ),
                        Ok(_) => None,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => Some(lagged(n)),
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    },
                };
                if let Some(ev) = ev {
                    return Some((Ok(ev), (rx, irx, filter, t, feed, reader)));
                }
            }
        },
    );
    Ok(Sse::new(s).keep_alive(KeepAlive::default()))
}

/// What a reader of the live feed is told when it fell behind: how many it missed.
fn lagged(missed: u64) -> SseEvent {
    SseEvent::default()
        .event("lagged")
        .data(json!({ "missed": missed }).to_string())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BacktestRequest {
    #[serde(default)]
    rule: Option<RuleSpec>,
    #[serde(default, rename = "ruleId")]
    rule_id: Option<String>,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
}

pub async fn backtest(
    State(app): State<AppState>,
    Ctx(rc): Ctx,
    body: Bytes,
) -> ApiResult<Response> {
    let hub = hub(&app)?.clone();
    let t = rc.tenant.clone();
    let req: BacktestRequest = crate::request::parse_object(&body)?;
    let spec = match (req.rule, req.rule_id) {
        (Some(r), None) => r,
        (None, Some(id)) => hub
            .rule(&t, &id)
            .map(|v| v.record.rule)
            .ok_or_else(|| ApiError::from(HubError::NotFound(id)))?,
        _ => {
            return Err(ApiError::bad_data(
                "body: give either 'rule' (a rule to try) or 'ruleId' (a stored rule)",
            ))
        }
    };
    // Reading and replaying history is CPU work: off the async workers.
    let result = tokio::task::spawn_blocking(move || hub.backtest(&rc, &spec, req.from, req.to))
        .await
        .map_err(|e| ApiError::new(ErrorKind::InternalError, format!("back-test failed: {e}")))??;
    Ok(json_response(StatusCode::OK, &json!(result)))
}
