use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::harness::{app, vehicle};

/// A notification receiver on a free port; `delay` makes it slow.
pub async fn receiver(delay: Duration) -> (String, mpsc::UnboundedReceiver<(HeaderMap, Value)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = Router::new()
        .route(
            "/notify",
            post(
                |State((tx, delay)): State<(
                    mpsc::UnboundedSender<(HeaderMap, Value)>,
                    Duration,
                )>,
                 headers: HeaderMap,
                 Json(v): Json<Value>| async move {
                    tokio::time::sleep(delay).await;
                    let _ = tx.send((headers, v));
                    "ok"
                },
            ),
        )
        .with_state((tx, delay));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/notify"), rx)
}

async fn next(
    rx: &mut mpsc::UnboundedReceiver<(HeaderMap, Value)>,
    within: Duration,
) -> Option<(HeaderMap, Value)> {
    tokio::time::timeout(within, rx.recv()).await.ok().flatten()
}

fn subscription(uri: &str) -> Value {
    json!({"type": "Subscription", "entities": [{"type": "Vehicle"}], "watchedAttributes": ["speed"], "q": "speed>50",
           "notification": {"attributes": ["speed"], "format": "keyValues", "endpoint": {"uri": uri, "accept": "application/json",
           "receiverInfo": [{"key": "X-Token", "value": "abc"}]}}})
}

#[tokio::test]
async fn notifications_follow_watched_attributes_and_q() {
    let app = app().await;
    let (uri, mut rx) = receiver(Duration::ZERO).await;
    let r = app
        .post("/ngsi-ld/v1/subscriptions", &subscription(&uri))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let sub_url = r.header("location").unwrap().to_string();

    app.post(
        "/ngsi-ld/v1/entities",
        &vehicle("urn:ngsi-ld:Vehicle:n1", 60.0, 0.0, 0.0),
    )
    .await;
    let (headers, n) = next(&mut rx, Duration::from_secs(5))
        .await
        .expect("notification on creation");
    assert_eq!(n["type"], "Notification");
    assert_eq!(
        n["data"][0],
        json!({"id": "urn:ngsi-ld:Vehicle:n1", "type": "Vehicle", "speed": 60.0})
    );
    assert_eq!(headers.get("x-token").unwrap(), "abc");
    assert!(headers.get("link").is_some());

    // Not watched: no notification. Watched but q false: none. Watched and q true: one.
    app.patch(
        "/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:n1/attrs",
        &json!({"brand": "Audi"}),
    )
    .await;
    app.patch(
        "/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:n1/attrs",
        &json!({"speed": 10}),
    )
    .await;
    app.patch(
        "/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:n1/attrs",
        &json!({"speed": 70}),
    )
    .await;
    let (_, n) = next(&mut rx, Duration::from_secs(5))
        .await
        .expect("notification on update");
    assert_eq!(n["data"][0]["speed"], 70);
    assert!(
        next(&mut rx, Duration::from_millis(300)).await.is_none(),
        "exactly one"
    );

    let s = app.get(&sub_url).await.body;
    assert_eq!(s["status"], "active");
    assert_eq!(s["notification"]["timesSent"], 2);
    assert!(s["notification"]["lastSuccess"].is_string());

    // Paused subscriptions are silent; listing and deleting work.
    assert_eq!(
        app.patch(&sub_url, &json!({"isActive": false}))
            .await
            .status,
        204
    );
    app.patch(
        "/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:n1/attrs",
        &json!({"speed": 80}),
    )
    .await;
    assert!(next(&mut rx, Duration::from_millis(300)).await.is_none());
    assert_eq!(app.get(&sub_url).await.body["status"], "paused");
    assert_eq!(
        app.get("/ngsi-ld/v1/subscriptions")
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(app.delete(&sub_url).await.status, 204);
    assert_eq!(app.get(&sub_url).await.status, 404);
}

#[tokio::test]
async fn a_dead_or_slow_endpoint_does_not_delay_others() {
    let app = app().await;
    let (good, mut good_rx) = receiver(Duration::ZERO).await;
    let (slow, _slow_rx) = receiver(Duration::from_secs(3)).await;
    for uri in ["http://127.0.0.1:9/dead", slow.as_str(), good.as_str()] {
        let r = app
            .post("/ngsi-ld/v1/subscriptions", &subscription(uri))
            .await;
        assert_eq!(r.status, 201);
    }
    let started = std::time::Instant::now();
    for i in 0..5 {
        app.post(
            "/ngsi-ld/v1/entities",
            &vehicle(&format!("urn:ngsi-ld:Vehicle:s{i}"), 90.0, 0.0, 0.0),
        )
        .await;
    }
    for _ in 0..5 {
        next(&mut good_rx, Duration::from_secs(2))
            .await
            .expect("the good endpoint is served");
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    // The dead endpoint's failures show in its status.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let list = app.get("/ngsi-ld/v1/subscriptions").await.body;
    let dead = list
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["notification"]["endpoint"]["uri"] == "http://127.0.0.1:9/dead")
        .unwrap();
    assert!(
        dead["notification"]["timesFailed"].as_u64().unwrap_or(0) >= 1,
        "{dead}"
    );
    assert_eq!(dead["notification"]["status"], "failed");
}

#[tokio::test]
async fn subscription_validation_and_persistence_shape() {
    let app = app().await;
    let bad = [
        json!({"type": "Subscription", "entities": [{"type": "V"}]}),
        json!({"type": "Subscription", "entities": [{"id": "urn:a:1"}], "notification": {"endpoint": {"uri": "http://x/"}}}),
        json!({"type": "Sub", "entities": [{"type": "V"}], "notification": {"endpoint": {"uri": "http://x/"}}}),
        json!({"type": "Subscription", "entities": [{"type": "V"}], "q": "a>", "notification": {"endpoint": {"uri": "http://x/"}}}),
        json!({"type": "Subscription", "entities": [{"type": "V"}], "timeInterval": 10, "watchedAttributes": ["a"], "notification": {"endpoint": {"uri": "http://x/"}}}),
        json!({"type": "Subscription", "entities": [{"type": "V"}], "expiresAt": "2000-01-01T00:00:00Z", "notification": {"endpoint": {"uri": "http://x/"}}}),
        json!({"type": "Subscription", "entities": [{"type": "V"}], "notification": {"endpoint": {"uri": "not a uri"}}}),
        json!({"type": "Subscription", "entities": [{"type": "V"}], "notificationTrigger": ["sometimes"], "notification": {"endpoint": {"uri": "http://x/"}}}),
    ];
    for b in bad {
        let r = app.post("/ngsi-ld/v1/subscriptions", &b).await;
        assert_eq!(r.status, 400, "{b}: {}", r.text);
    }
    let ok = json!({"id": "urn:ngsi-ld:Subscription:x", "type": "Subscription", "entities": [{"type": "V"}], "notification": {"endpoint": {"uri": "http://127.0.0.1:9/"}}});
    assert_eq!(app.post("/ngsi-ld/v1/subscriptions", &ok).await.status, 201);
    assert_eq!(app.post("/ngsi-ld/v1/subscriptions", &ok).await.status, 409);
}

#[tokio::test]
async fn entity_deletion_and_created_triggers() {
    let app = app().await;
    let (uri, mut rx) = receiver(Duration::ZERO).await;
    let sub = json!({"type": "Subscription", "entities": [{"type": "Vehicle"}], "notificationTrigger": ["entityCreated", "entityDeleted"],
                     "notification": {"endpoint": {"uri": uri}}});
    assert_eq!(
        app.post("/ngsi-ld/v1/subscriptions", &sub).await.status,
        201
    );
    app.post(
        "/ngsi-ld/v1/entities",
        &vehicle("urn:ngsi-ld:Vehicle:d", 1.0, 0.0, 0.0),
    )
    .await;
    let (_, n) = next(&mut rx, Duration::from_secs(5)).await.unwrap();
    assert_eq!(n["triggerReason"], "entityCreated");
    app.patch(
        "/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:d/attrs",
        &json!({"speed": 3}),
    )
    .await;
    app.delete("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:d")
        .await;
    let (_, n) = next(&mut rx, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        n["triggerReason"], "entityDeleted",
        "updates do not trigger: {n}"
    );
    assert!(n["data"][0]["deletedAt"].is_string());
}

#[tokio::test]
async fn show_changes_and_deleted_attributes() {
    let app = app().await;
    let (uri, mut rx) = receiver(Duration::ZERO).await;
    let sub = json!({"type": "Subscription", "entities": [{"type": "Vehicle"}],
                     "notificationTrigger": ["attributeUpdated", "attributeDeleted"],
                     "notification": {"showChanges": true, "endpoint": {"uri": uri}}});
    assert_eq!(
        app.post("/ngsi-ld/v1/subscriptions", &sub).await.status,
        201
    );
    app.post(
        "/ngsi-ld/v1/entities",
        &vehicle("urn:ngsi-ld:Vehicle:c", 10.0, 0.0, 0.0),
    )
    .await;
    app.patch(
        "/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:c/attrs",
        &json!({"speed": {"type": "Property", "value": 20}}),
    )
    .await;
    let (_, n) = next(&mut rx, Duration::from_secs(5)).await.unwrap();
    assert_eq!(n["data"][0]["speed"]["value"], 20);
    assert_eq!(n["data"][0]["speed"]["previousValue"], 10.0);
    app.delete("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:c/attrs/brand")
        .await;
    let (_, n) = next(&mut rx, Duration::from_secs(5)).await.unwrap();
    assert_eq!(n["triggerReason"], "attributeDeleted");
    assert_eq!(
        n["data"][0]["brand"],
        json!({"type": "Property", "value": "urn:ngsi-ld:null", "previousValue": "Mercedes"})
    );
}

#[tokio::test]
async fn inline_contexts_become_implicitly_created_contexts() {
    let app = app().await;
    let sub = json!({"type": "Subscription", "entities": [{"type": "Car"}],
                     "notification": {"endpoint": {"uri": "http://127.0.0.1:9/n"}},
                     "@context": [{"Car": "http://example.org/Car"}, "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"]});
    let r = app
        .call(
            "POST",
            "/ngsi-ld/v1/subscriptions",
            &[("content-type", "application/ld+json")],
            Some(&sub.to_string()),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let s = app.get(r.header("location").unwrap()).await.body;
    let url = s["jsonldContext"]
        .as_str()
        .expect("jsonldContext set")
        .to_string();
    let list = app
        .get("/ngsi-ld/v1/jsonldContexts?kind=ImplicitlyCreated&details=true")
        .await
        .body;
    assert_eq!(list[0]["URL"], url);
    assert_eq!(list[0]["kind"], "ImplicitlyCreated");
    let id = list[0]["localId"].as_str().unwrap();
    assert_eq!(
        app.delete(&format!("/ngsi-ld/v1/jsonldContexts/{id}?reload=true"))
            .await
            .status,
        400
    );
    assert_eq!(
        app.delete(&format!("/ngsi-ld/v1/jsonldContexts/{id}"))
            .await
            .status,
        204
    );
}

#[tokio::test]
async fn key_values_notifications_use_the_dataset_form_for_deleted_instances() {
    let app = app().await;
    let (uri, mut rx) = receiver(Duration::ZERO).await;
    let sub = json!({"type": "Subscription", "entities": [{"type": "Building"}], "watchedAttributes": ["name"],
                     "notificationTrigger": ["attributeDeleted"],
                     "notification": {"format": "keyValues", "endpoint": {"uri": uri}}});
    assert_eq!(
        app.post("/ngsi-ld/v1/subscriptions", &sub).await.status,
        201
    );
    let b = json!({"id": "urn:ngsi-ld:Building:kv", "type": "Building",
                   "name": [{"type": "Property", "value": "Eiffel Tower"},
                            {"type": "Property", "value": "Eiffelturm", "datasetId": "urn:ngsi-ld:Dataset:de"},
                            {"type": "Property", "value": "Tour Eiffel", "datasetId": "urn:ngsi-ld:Dataset:fr"}]});
    app.post("/ngsi-ld/v1/entities", &b).await;
    let r = app.delete("/ngsi-ld/v1/entities/urn:ngsi-ld:Building:kv/attrs/name?datasetId=urn:ngsi-ld:Dataset:fr").await;
    assert_eq!(r.status, 204);
    let (_, n) = next(&mut rx, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        n["data"][0]["name"],
        json!({"dataset": {"@none": "Eiffel Tower", "urn:ngsi-ld:Dataset:de": "Eiffelturm", "urn:ngsi-ld:Dataset:fr": "urn:ngsi-ld:null"}})
    );
}

/// A subscription's types and attribute names are compacted with the reader's
/// `@context`: read without one, terms of the subscription's own context read as
/// their full IRIs (NGSI-LD 5.8.2; the ETSI suite's 029_05_02).
#[tokio::test]
async fn subscriptions_read_with_the_readers_context() {
    let app = super::harness::app().await;
    let body = serde_json::json!({
        "type": "Subscription",
        "entities": [{"type": "Vehicle"}],
        "watchedAttributes": ["speed"],
        "notification": {"attributes": ["speed"], "endpoint": {"uri": "http://localhost:1/x"}},
        "@context": [{"Vehicle": "https://example.org/ns#Vehicle", "speed": "https://example.org/ns#speed"},
                     "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"]
    })
    .to_string();
    let r = app
        .call(
            "POST",
            "/ngsi-ld/v1/subscriptions",
            &[("content-type", "application/ld+json")],
            Some(&body),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let location = r.header("location").unwrap().to_string();
    let s = app.get(&location).await.body;
    assert_eq!(
        s["entities"][0]["type"], "https://example.org/ns#Vehicle",
        "{s}"
    );
    assert_eq!(
        s["watchedAttributes"][0], "https://example.org/ns#speed",
        "{s}"
    );
    assert_eq!(
        s["notification"]["attributes"][0], "https://example.org/ns#speed",
        "{s}"
    );
    let list = app.get("/ngsi-ld/v1/subscriptions").await.body;
    assert_eq!(
        list[0]["entities"][0]["type"], "https://example.org/ns#Vehicle",
        "{list}"
    );
}

/// Every instance of an attribute deleted (`deleteAll`): the notification carries one
/// tombstone for the attribute (the ETSI suite's 046_22_08); one instance deleted of
/// several: a tombstone for that instance beside the others.
#[tokio::test]
async fn deleting_all_instances_notifies_one_tombstone() {
    let app = app().await;
    let (uri, mut rx) = receiver(Duration::ZERO).await;
    let sub = json!({"type": "Subscription", "entities": [{"type": "Building"}], "watchedAttributes": ["name"],
                     "notificationTrigger": ["attributeDeleted"],
                     "notification": {"endpoint": {"uri": uri}}});
    assert_eq!(
        app.post("/ngsi-ld/v1/subscriptions", &sub).await.status,
        201
    );
    let b = json!({"id": "urn:ngsi-ld:Building:all", "type": "Building",
                   "name": [{"type": "Property", "value": "Eiffel Tower"},
                            {"type": "Property", "value": "Eiffelturm", "datasetId": "urn:ngsi-ld:Dataset:de"},
                            {"type": "Property", "value": "Tour Eiffel", "datasetId": "urn:ngsi-ld:Dataset:fr"}]});
    app.post("/ngsi-ld/v1/entities", &b).await;
    let r = app
        .delete("/ngsi-ld/v1/entities/urn:ngsi-ld:Building:all/attrs/name?datasetId=urn:ngsi-ld:Dataset:fr")
        .await;
    assert_eq!(r.status, 204);
    let (_, n) = next(&mut rx, Duration::from_secs(5)).await.unwrap();
    let name = &n["data"][0]["name"];
    assert!(
        name.is_array(),
        "the others stay beside the tombstone: {name}"
    );
    let r = app
        .delete("/ngsi-ld/v1/entities/urn:ngsi-ld:Building:all/attrs/name?deleteAll=true")
        .await;
    assert_eq!(r.status, 204);
    let (_, n) = next(&mut rx, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        n["data"][0]["name"],
        json!({"type": "Property", "value": "urn:ngsi-ld:null"}),
        "{n}"
    );
}
