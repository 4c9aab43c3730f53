//! `GET /platform/v1/live`: entity changes as Server-Sent Events.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::harness::{app, vehicle, App};

/// Reads server-sent events from a live stream.
pub struct Events {
    body: axum::body::BodyDataStream,
    buf: String,
}

impl Events {
    async fn open(app: &App, query: &str) -> Events {
        Events::open_with(app, query, &[]).await
    }

    /// A stream opened with extra request headers (credentials).
    pub async fn open_with(app: &App, query: &str, headers: &[(&str, &str)]) -> Events {
        let mut req = axum::http::Request::builder()
            .uri(format!("/platform/v1/live?{query}"))
            .header("accept", "text/event-stream");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(axum::body::Body::empty()).unwrap();
        let resp = app.router.clone().oneshot(req).await.unwrap();
        if resp.status() != 200 {
            let b = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap();
            panic!("{query}: {}", String::from_utf8_lossy(&b));
        }
        assert!(resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        Events {
            body: resp.into_body().into_data_stream(),
            buf: String::new(),
        }
    }

    /// The next event (name, data), or `None` when none comes within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<(String, Value)> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = String::new();
                for l in block.lines() {
                    if let Some(n) = l.strip_prefix("event: ") {
                        name = n.to_string();
                    } else if let Some(d) = l.strip_prefix("data: ") {
                        data.push_str(d);
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some((name, serde_json::from_str(&data).unwrap()));
            }
            let chunk = tokio::time::timeout(wait, self.body.next()).await.ok()??;
            self.buf.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        }
    }
}

/// The status and ProblemDetails of a stream that is expected to be refused (read
/// only for a refusal: an accepted stream's body would never end).
async fn refusal(app: &App, query: &str) -> (u16, Value) {
    let req = axum::http::Request::builder()
        .uri(format!("/platform/v1/live?{query}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = app.router.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    assert_ne!(status, 200, "{query}: accepted");
    let b = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, serde_json::from_slice(&b).unwrap())
}

#[tokio::test]
async fn entity_changes_stream_as_notifications_filtered_like_a_subscription() {
    let app = app().await;
    let mut ev = Events::open(
        &app,
        "type=Vehicle&q=speed%3E50&attrs=speed&format=keyValues",
    )
    .await;
    let (name, ready) = ev.next(Duration::from_secs(5)).await.expect("ready");
    assert_eq!(name, "ready");
    let sub = ready["subscriptionId"].as_str().unwrap().to_string();
    assert!(sub.starts_with("urn:ngsi-ld:Subscription:live:"), "{sub}");

    let slow = "urn:ngsi-ld:Vehicle:slow";
    let fast = "urn:ngsi-ld:Vehicle:fast";
    assert_eq!(
        app.post("/ngsi-ld/v1/entities", &vehicle(slow, 20.0, 120.1, 30.2))
            .await
            .status,
        201
    );
    assert_eq!(
        app.post("/ngsi-ld/v1/entities", &vehicle(fast, 80.0, 120.1, 30.2))
            .await
            .status,
        201
    );
    let (name, n) = ev
        .next(Duration::from_secs(5))
        .await
        .expect("a notification");
    assert_eq!(name, "notification");
    assert_eq!(n["type"], "Notification");
    assert_eq!(n["subscriptionId"], sub.as_str());
    // Only the fast vehicle matches q; keyValues, projected on `attrs`.
    assert_eq!(
        n["data"],
        json!([{"id": fast, "type": "Vehicle", "speed": 80.0}])
    );

    // The slow one speeds up: now it matches.
    let r = app
        .patch(
            &format!("/ngsi-ld/v1/entities/{slow}/attrs"),
            &json!({"speed": {"type": "Property", "value": 90.0}}),
        )
        .await;
    assert_eq!(r.status, 204);
    let (_, n) = ev
        .next(Duration::from_secs(5))
        .await
        .expect("a notification");
    assert_eq!(n["data"][0]["id"], slow);
    assert_eq!(n["data"][0]["speed"], 90.0);

    // The live subscription is not one of the tenant's subscriptions.
    let list = app.get("/ngsi-ld/v1/subscriptions").await;
    assert_eq!(list.body, json!([]));
    // Nothing else is notified: the slow one's first version never matched.
    assert!(ev.next(Duration::from_millis(300)).await.is_none());
    let m = app.get("/metrics").await;
    assert!(
        m.text.contains("citybrain_subscriptions_live 1"),
        "{}",
        m.text
    );
    // The reader goes: so does its subscription.
    drop(ev);
    let m = app.get("/metrics").await;
    assert!(
        m.text.contains("citybrain_subscriptions_live 0"),
        "{}",
        m.text
    );
}

#[tokio::test]
async fn a_live_stream_is_refused_what_a_subscription_would_be() {
    let app = app().await;
    for (q, field) in [
        ("", "type"),
        ("type=Vehicle&bogus=1", "bogus"),
        ("type=Vehicle&q=speed%3D%3D", "q"),
        ("type=Vehicle&throttling=soon", "throttling"),
        ("type=Vehicle&format=pretty", "format"),
        (
            "type=Vehicle&notificationTrigger=entityVanished",
            "notificationTrigger",
        ),
    ] {
        let (status, body) = refusal(&app, q).await;
        assert_eq!(status, 400, "{q}");
        assert!(
            body["detail"].as_str().unwrap_or_default().contains(field),
            "{q}: {body}"
        );
    }
}

#[tokio::test]
async fn one_reader_holds_a_bounded_number_of_live_streams() {
    let app = app().await;
    let mut held = Vec::new();
    for _ in 0..citybrain_broker::subscriptions::LIVE_PER_PRINCIPAL {
        held.push(Events::open(&app, "type=Vehicle").await);
    }
    let (status, body) = refusal(&app, "type=Vehicle").await;
    assert_eq!(status, 429, "{body}");
    // One closes: one more may open.
    held.pop();
    held.push(Events::open(&app, "type=Vehicle").await);
}

#[tokio::test]
async fn a_live_reader_can_hear_of_deletions() {
    let app = app().await;
    let id = "urn:ngsi-ld:Vehicle:gone";
    assert_eq!(
        app.post("/ngsi-ld/v1/entities", &vehicle(id, 20.0, 120.1, 30.2))
            .await
            .status,
        201
    );
    let mut ev = Events::open(
        &app,
        "type=Vehicle&format=keyValues&notificationTrigger=attributeUpdated,entityDeleted",
    )
    .await;
    assert_eq!(ev.next(Duration::from_secs(5)).await.unwrap().0, "ready");
    assert_eq!(
        app.delete(&format!("/ngsi-ld/v1/entities/{id}"))
            .await
            .status,
        204
    );
    // (The feed may still carry the creation, from before the stream opened.)
    loop {
        let (_, n) = ev.next(Duration::from_secs(5)).await.expect("the deletion");
        if n["triggerReason"] == "entityDeleted" {
            assert_eq!(n["data"][0]["id"], id);
            break;
        }
    }
}
