//! `GET /platform/v1/live`: entity changes as Server-Sent Events, for readers that
//! cannot be called back (a browser, a script behind a firewall).
//!
//! The query names what to watch as an entity query does (`type` (required), `id`,
//! `idPattern`, `q`, `georel`/`geometry`/`coordinates`/`geoproperty`, `attrs`,
//! `watchedAttributes`, `format`, `options=sysAttrs|keyValues|concise`, `throttling`
//! in seconds, `notificationTrigger` as a comma-separated list; `Link` for the
//! `@context`). It becomes a live subscription (see
//! `citybrain_broker::subscriptions::LiveSubscription`): matched and authorized like
//! one created with `POST /ngsi-ld/v1/subscriptions` (the caller needs `subscribe`),
//! never stored, ended when the reader goes. The stream carries:
//! - `event: ready`, `data: {"subscriptionId": …}` once the subscription is in place:
//!   every change after it will be notified (read the current state after this);
//! - `event: notification`, `data:` an NGSI-LD `Notification` (as an endpoint gets it);
//! - `event: lagged`, `data: {"missed": n}` when the reader fell behind and `n`
//!   notifications were dropped: read the current state again;
//! - `event: end` after [`MAX_STREAM`]: the stream closes and the reader reconnects,
//!   so that a revoked key or an expired token stops reading within that time (the
//!   credential is checked when a stream opens).

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use citybrain_broker::subscriptions::{LiveItem, LiveSubscription};
use futures::Stream;
use serde_json::{json, Map, Value};

use crate::problem::{ApiError, ApiResult};
use crate::request::NgsiRequest;
use crate::AppState;

/// How long one stream lasts before the reader must reconnect (and authenticate again).
pub const MAX_STREAM: std::time::Duration = std::time::Duration::from_secs(15 * 60);

pub async fn stream(
    State(app): State<AppState>,
    req: NgsiRequest,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let body = subscription_of(&req)?;
    let sub = app
        .broker
        .subscriptions
        .live(&req.rc, body, req.context.clone())
        .await?;
    let ready = SseEvent::default()
        .event("ready")
        .data(json!({ "subscriptionId": sub.id() }).to_string());
    let first = futures::stream::once(async move { Ok(ready) });
    let rest = futures::stream::unfold(sub, |mut sub: LiveSubscription| async move {
        let ev = match sub.next().await? {
            LiveItem::Notification(n) => SseEvent::default()
                .event("notification")
                .data(n.to_string()),
            LiveItem::Lagged(missed) => SseEvent::default()
                .event("lagged")
                .data(json!({ "missed": missed }).to_string()),
        };
        Some((Ok(ev), sub))
    });
    use futures::StreamExt;
    let end = futures::stream::once(async {
        Ok(SseEvent::default()
            .event("end")
            .data(json!({ "reason": "a stream lasts at most 15 minutes: reconnect" }).to_string()))
    });
    let s = first
        .chain(rest.take_until(tokio::time::sleep(MAX_STREAM)))
        .chain(end);
    Ok(Sse::new(s).keep_alive(KeepAlive::default()))
}

fn list(s: &str) -> Vec<Value> {
    s.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| Value::String(t.to_string()))
        .collect()
}

/// The subscription body the query describes (decoding only: the broker validates it
/// as it validates any subscription, naming the member at fault).
fn subscription_of(req: &NgsiRequest) -> ApiResult<Map<String, Value>> {
    let types = req
        .param("type")
        .map(list)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::bad_data("'type' is required: the entity types to watch"))?;
    let ids = req.param("id").map(list).unwrap_or_default();
    let mut entities = Vec::new();
    for t in &types {
        if ids.is_empty() {
            let mut e = json!({ "type": t });
            if let Some(p) = req.param("idPattern") {
                e["idPattern"] = Value::String(p.to_string());
            }
            entities.push(e);
        }
        for id in &ids {
            entities.push(json!({ "type": t, "id": id }));
        }
    }
    let mut body = Map::new();
    body.insert("type".into(), json!("Subscription"));
    body.insert("entities".into(), Value::Array(entities));
    if let Some(q) = req.param("q") {
        body.insert("q".into(), json!(q));
    }
    if let Some(w) = req.param("watchedAttributes") {
        body.insert("watchedAttributes".into(), Value::Array(list(w)));
    }
    if let Some(georel) = req.param("georel") {
        let coordinates = req
            .param("coordinates")
            .map(|c| {
                serde_json::from_str::<Value>(c).map_err(|e| {
                    ApiError::bad_data(format!("'coordinates' is not a JSON array: {e}"))
                })
            })
            .transpose()?;
        let mut g = json!({ "georel": georel });
        if let Some(t) = req.param("geometry") {
            g["geometry"] = json!(t);
        }
        if let Some(c) = coordinates {
            g["coordinates"] = c;
        }
        if let Some(p) = req.param("geoproperty") {
            g["geoproperty"] = json!(p);
        }
        body.insert("geoQ".into(), g);
    }
    if let Some(t) = req.param("notificationTrigger") {
        body.insert("notificationTrigger".into(), Value::Array(list(t)));
    }
    if let Some(t) = req.param("throttling") {
        let t: f64 = t
            .parse()
            .map_err(|_| ApiError::bad_data("'throttling' must be a number of seconds"))?;
        body.insert("throttling".into(), json!(t));
    }
    let mut notification = Map::new();
    if let Some(a) = req.param("attrs") {
        notification.insert("attributes".into(), Value::Array(list(a)));
    }
    let format = match req.param("format") {
        Some(f) => Some(f.to_string()),
        None if req.has_option("keyValues") || req.has_option("simplified") => {
            Some("keyValues".into())
        }
        None if req.has_option("concise") => Some("concise".into()),
        None => None,
    };
    if let Some(f) = format {
        notification.insert("format".into(), json!(f));
    }
    if req.has_option("sysAttrs") {
        notification.insert("sysAttrs".into(), json!(true));
    }
    body.insert("notification".into(), Value::Object(notification));
    Ok(body)
}
