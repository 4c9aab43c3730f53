//! Federation: context source registrations and distributed queries, with a second
//! broker (a department's) served over TCP as the context source.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{json, Value};

use super::harness::{app, vehicle, App};

/// Serves `app` over TCP; its base URL.
async fn serve(app: &App) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app.router.clone();
    tokio::spawn(citybrain_api::serve::serve(
        listener,
        router,
        citybrain_api::serve::ServeOptions {
            tls: None,
            header_timeout: Duration::from_secs(5),
            drain: Duration::from_secs(1),
        },
        std::future::pending::<()>(),
    ));
    format!("http://{addr}")
}

/// A server that answers every request with `status` and `body` after `delay`.
async fn fixed(status: u16, body: &'static str, delay: Duration) -> String {
    let app = axum::Router::new().fallback(move || async move {
        tokio::time::sleep(delay).await;
        (StatusCode::from_u16(status).unwrap(), body)
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn registration(id: &str, endpoint: &str, extra: Value) -> Value {
    let mut r = json!({
        "id": id,
        "type": "ContextSourceRegistration",
        "information": [{"entities": [{"type": "Vehicle"}]}],
        "endpoint": endpoint,
    });
    for (k, v) in extra.as_object().unwrap() {
        r[k] = v.clone();
    }
    r
}

fn ids(body: &Value) -> Vec<String> {
    let mut v: Vec<String> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn registrations_are_created_read_queried_changed_and_removed() {
    let a = app().await;
    let id = "urn:ngsi-ld:ContextSourceRegistration:1";
    let body = registration(
        id,
        "http://dept.example:1026",
        json!({"csourceProperty1": "aValue", "expiresAt": "2035-11-29T14:53:15Z",
               "information": [{"entities": [{"type": "Vehicle"}], "propertyNames": ["speed"]}]}),
    );
    let r = a.post("/ngsi-ld/v1/csourceRegistrations", &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(
        r.header("location"),
        Some("/ngsi-ld/v1/csourceRegistrations/urn:ngsi-ld:ContextSourceRegistration:1")
    );
    let r = a.post("/ngsi-ld/v1/csourceRegistrations", &body).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.error_type(), "AlreadyExists");

    // As written: date-times byte for byte, no status before the source was asked.
    let r = a
        .get(&format!("/ngsi-ld/v1/csourceRegistrations/{id}"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body, body);

    for (query, hits) in [
        ("type=Vehicle", 1),
        ("type=Building", 0),
        ("attrs=speed", 1),
        ("attrs=name&type=Vehicle", 0),
        ("q=csourceProperty1==%22aValue%22", 1),
        ("id=urn:ngsi-ld:Vehicle:9", 1),
    ] {
        let r = a
            .get(&format!("/ngsi-ld/v1/csourceRegistrations?{query}"))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.text);
        assert_eq!(r.body.as_array().unwrap().len(), hits, "{query}");
    }
    let r = a.get("/ngsi-ld/v1/csourceRegistrations").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "a query needs a filter");

    // PATCH: members replaced, null removes one, the whole validated again.
    let r = a
        .patch(
            &format!("/ngsi-ld/v1/csourceRegistrations/{id}"),
            &json!({"endpoint": "http://dept2.example:1026", "expiresAt": null}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let r = a
        .get(&format!("/ngsi-ld/v1/csourceRegistrations/{id}"))
        .await;
    assert_eq!(r.body["endpoint"], "http://dept2.example:1026");
    assert!(r.body.get("expiresAt").is_none());
    let r = a
        .patch(
            &format!("/ngsi-ld/v1/csourceRegistrations/{id}"),
            &json!({"information": null}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body["detail"].as_str().unwrap().contains("information"));

    let r = a
        .delete(&format!("/ngsi-ld/v1/csourceRegistrations/{id}"))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = a
        .get(&format!("/ngsi-ld/v1/csourceRegistrations/{id}"))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_type(), "ResourceNotFound");
    let r = a
        .delete("/ngsi-ld/v1/csourceRegistrations/invalidUri")
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = a
        .call(
            "PATCH",
            "/ngsi-ld/v1/csourceRegistrations/",
            &[],
            Some("{}"),
        )
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn registrations_are_checked_against_local_data_and_each_other() {
    let a = app().await;
    a.post(
        "/ngsi-ld/v1/entities",
        &vehicle("urn:ngsi-ld:Vehicle:1", 50.0, 13.4, 52.5),
    )
    .await;
    let exclusive = |id: &str, entity: &str, attr: &str| {
        registration(
            id,
            "http://dept.example:1026",
            json!({"mode": "exclusive", "information": [{"entities": [{"id": entity, "type": "Vehicle"}], "propertyNames": [attr]}]}),
        )
    };
    // The broker holds speed of Vehicle:1: no exclusive registration takes it.
    let r = a
        .post(
            "/ngsi-ld/v1/csourceRegistrations",
            &exclusive("urn:r:1", "urn:ngsi-ld:Vehicle:1", "speed"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert!(r.text.contains("Conflict"));
    // An attribute it does not hold may be registered exclusively, once.
    let r = a
        .post(
            "/ngsi-ld/v1/csourceRegistrations",
            &exclusive("urn:r:2", "urn:ngsi-ld:Vehicle:1", "fuelLevel"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = a
        .post(
            "/ngsi-ld/v1/csourceRegistrations",
            &exclusive("urn:r:3", "urn:ngsi-ld:Vehicle:1", "fuelLevel"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    // A redirect over an entity the broker holds.
    let r = a
        .post(
            "/ngsi-ld/v1/csourceRegistrations",
            &registration(
                "urn:r:4",
                "http://dept.example:1026",
                json!({"mode": "redirect", "information": [{"entities": [{"id": "urn:ngsi-ld:Vehicle:1", "type": "Vehicle"}]}]}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    // Exclusive without ids, auxiliary that writes.
    for (mode, info, ops) in [
        (
            "exclusive",
            json!([{"entities": [{"type": "Vehicle"}], "propertyNames": ["speed"]}]),
            json!(["federationOps"]),
        ),
        (
            "auxiliary",
            json!([{"entities": [{"type": "Vehicle"}]}]),
            json!(["updateEntity"]),
        ),
    ] {
        let r = a
            .post(
                "/ngsi-ld/v1/csourceRegistrations",
                &registration(
                    "urn:r:5",
                    "http://x:1",
                    json!({"mode": mode, "information": info, "operations": ops}),
                ),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{mode}: {}", r.text);
    }
}

#[tokio::test]
async fn queries_and_retrievals_reach_the_registered_broker_and_merge() {
    let city = app().await;
    let dept = app().await;
    let dept_url = serve(&dept).await;
    city.post(
        "/ngsi-ld/v1/entities",
        &vehicle("urn:ngsi-ld:Vehicle:1", 50.0, 13.4, 52.5),
    )
    .await;
    dept.post(
        "/ngsi-ld/v1/entities",
        &vehicle("urn:ngsi-ld:Vehicle:2", 30.0, 13.5, 52.5),
    )
    .await;
    // Vehicle:3 is in both: the department's reading is newer and it adds fuel.
    let mut older = vehicle("urn:ngsi-ld:Vehicle:3", 10.0, 13.6, 52.5);
    older["speed"]["observedAt"] = json!("2026-01-01T00:00:00Z");
    city.post("/ngsi-ld/v1/entities", &older).await;
    let mut newer = vehicle("urn:ngsi-ld:Vehicle:3", 20.0, 13.6, 52.5);
    newer["speed"]["observedAt"] = json!("2026-01-01T00:05:00Z");
    newer["fuel"] = json!({"type": "Property", "value": 0.5});
    dept.post("/ngsi-ld/v1/entities", &newer).await;

    let r = city
        .post(
            "/ngsi-ld/v1/csourceRegistrations",
            &registration("urn:r:dept", &dept_url, json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    let r = city
        .get("/ngsi-ld/v1/entities?type=Vehicle&count=true")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        ids(&r.body),
        [
            "urn:ngsi-ld:Vehicle:1",
            "urn:ngsi-ld:Vehicle:2",
            "urn:ngsi-ld:Vehicle:3"
        ]
    );
    assert_eq!(r.header("ngsild-results-count"), Some("3"));
    assert!(r.header("ngsild-warning").is_none());
    let v3 = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "urn:ngsi-ld:Vehicle:3")
        .unwrap();
    assert_eq!(v3["speed"]["value"], 20.0, "the newer observation wins");
    assert_eq!(v3["fuel"]["value"], 0.5);

    // local=true: this broker only; a filter the department's entities fail.
    let r = city
        .get("/ngsi-ld/v1/entities?type=Vehicle&local=true")
        .await;
    assert_eq!(
        ids(&r.body),
        ["urn:ngsi-ld:Vehicle:1", "urn:ngsi-ld:Vehicle:3"]
    );
    let r = city
        .get("/ngsi-ld/v1/entities?type=Vehicle&q=speed%3C40")
        .await;
    assert_eq!(
        ids(&r.body),
        ["urn:ngsi-ld:Vehicle:2", "urn:ngsi-ld:Vehicle:3"]
    );
    // Paging over the merged list.
    let r = city.get("/ngsi-ld/v1/entities?type=Vehicle&limit=2").await;
    assert_eq!(r.body.as_array().unwrap().len(), 2);
    assert!(
        r.header_all("link").contains("rel=\"next\""),
        "{:?}",
        r.headers
    );
    // orderBy cannot be honoured across brokers.
    let r = city
        .get("/ngsi-ld/v1/entities?type=Vehicle&orderBy=speed")
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // Retrieval: an entity only the department holds, keyValues as usual.
    let r = city
        .get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:2?options=keyValues")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["speed"], 30.0);
    let r = city.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:3").await;
    assert_eq!(r.body["speed"]["value"], 20.0);
    assert_eq!(r.body["fuel"]["value"], 0.5);
    let r = city.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:9").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // The registration shows that its source answered.
    let r = city
        .get("/ngsi-ld/v1/csourceRegistrations/urn:r:dept")
        .await;
    assert_eq!(r.body["status"], "ok");
    assert!(r.body["timesSent"].as_u64().unwrap() >= 5);
}

#[tokio::test]
async fn failing_and_slow_sources_are_named_and_never_stall_the_answer() {
    let city = app().await;
    city.post(
        "/ngsi-ld/v1/entities",
        &vehicle("urn:ngsi-ld:Vehicle:1", 50.0, 13.4, 52.5),
    )
    .await;
    let forbidden = fixed(403, "{}", Duration::ZERO).await;
    let garbage = fixed(200, "not a json document", Duration::ZERO).await;
    let slow = fixed(200, "[]", Duration::from_secs(30)).await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    for (n, url) in [(1, &forbidden), (2, &garbage), (3, &closed)] {
        let r = city
            .post(
                "/ngsi-ld/v1/csourceRegistrations",
                &registration(&format!("urn:r:{n}"), url, json!({})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let r = city
        .post(
            "/ngsi-ld/v1/csourceRegistrations",
            &registration("urn:r:4", &slow, json!({"management": {"timeout": 300}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);

    let started = Instant::now();
    let r = city.get("/ngsi-ld/v1/entities?type=Vehicle").await;
    let took = started.elapsed();
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(ids(&r.body), ["urn:ngsi-ld:Vehicle:1"]);
    let warnings = r.header_all("ngsild-warning");
    // Each source named by its registration (its endpoint is for those who may read
    // registrations).
    for (code, n) in [("299", 1), ("111", 2), ("199", 3), ("199", 4)] {
        assert!(
            warnings.contains(&format!("{code} urn:r:{n} ")),
            "{code} urn:r:{n} in {warnings}"
        );
    }
    assert!(!warnings.contains("127.0.0.1"), "{warnings}");
    // The slow source answers in 30 s; the query does not wait for it.
    assert!(took < Duration::from_secs(15), "took {took:?}");

    // A retrieval that finds nothing says why it may have missed.
    let r = city.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:9").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.header_all("ngsild-warning").contains("299"));

    let r = city.get("/ngsi-ld/v1/csourceRegistrations/urn:r:1").await;
    assert_eq!(r.body["status"], "failed");
    assert!(r.body["timesFailed"].as_u64().unwrap() >= 1);
    let r = city.get("/metrics").await;
    let failures: f64 = r
        .text
        .lines()
        .find(|l| l.starts_with("citybrain_federation_failures_total "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_default();
    assert!(failures >= 5.0, "{failures}");
}

#[tokio::test]
async fn brokers_registered_with_each_other_do_not_loop() {
    let a = app().await;
    let b = app().await;
    let (a_url, b_url) = (serve(&a).await, serve(&b).await);
    a.post(
        "/ngsi-ld/v1/entities",
        &vehicle("urn:ngsi-ld:Vehicle:a", 1.0, 13.4, 52.5),
    )
    .await;
    b.post(
        "/ngsi-ld/v1/entities",
        &vehicle("urn:ngsi-ld:Vehicle:b", 2.0, 13.4, 52.5),
    )
    .await;
    let r = a
        .post(
            "/ngsi-ld/v1/csourceRegistrations",
            &registration("urn:r:b", &b_url, json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = b
        .post(
            "/ngsi-ld/v1/csourceRegistrations",
            &registration("urn:r:a", &a_url, json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    for (broker, name) in [(&a, "a"), (&b, "b")] {
        let r = broker.get("/ngsi-ld/v1/entities?type=Vehicle").await;
        assert_eq!(r.status, StatusCode::OK, "{name}: {}", r.text);
        assert_eq!(
            ids(&r.body),
            ["urn:ngsi-ld:Vehicle:a", "urn:ngsi-ld:Vehicle:b"],
            "{name}"
        );
        assert!(
            r.header("ngsild-warning").is_none(),
            "{name}: {:?}",
            r.headers
        );
    }
    // Each broker's request came back to it through the other (its alias in Via) and
    // was refused with 508, which the other took as "nothing more here".
    for broker in [&a, &b] {
        let r = broker.get("/metrics").await;
        let loops: f64 = r
            .text
            .lines()
            .find(|l| l.starts_with("citybrain_federation_loops_total "))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or_default();
        assert!(loops >= 1.0, "{}", r.text);
    }
}

#[tokio::test]
async fn subscriptions_to_registrations_hear_of_matching_changes() {
    use super::subscriptions::receiver;
    let a = app().await;
    let (uri, mut rx) = receiver(Duration::ZERO).await;
    let next = |rx: &mut tokio::sync::mpsc::UnboundedReceiver<(axum::http::HeaderMap, Value)>| {
        let got = rx.try_recv().ok();
        got.map(|(_, v)| v)
    };
    async fn wait(
        rx: &mut tokio::sync::mpsc::UnboundedReceiver<(axum::http::HeaderMap, Value)>,
    ) -> Value {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("a notification")
            .expect("the receiver runs")
            .1
    }
    let speed =
        json!({"information": [{"entities": [{"type": "Vehicle"}], "propertyNames": ["speed"]}]});
    let r = a
        .post(
            "/ngsi-ld/v1/csourceRegistrations",
            &registration("urn:r:1", "http://d1:1026", speed.clone()),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let sub = json!({"id": "urn:ngsi-ld:Subscription:csr", "type": "Subscription",
        "entities": [{"type": "Vehicle"}], "watchedAttributes": ["speed"],
        "notification": {"format": "keyValues", "endpoint": {"uri": uri, "accept": "application/json"}}});
    let r = a.post("/ngsi-ld/v1/csourceSubscriptions", &sub).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(
        r.header("location"),
        Some("/ngsi-ld/v1/csourceSubscriptions/urn:ngsi-ld:Subscription:csr")
    );
    // What matched already, at once.
    let n = wait(&mut rx).await;
    assert_eq!(n["type"], "ContextSourceNotification");
    assert_eq!(n["subscriptionId"], "urn:ngsi-ld:Subscription:csr");
    assert_eq!(n["triggerReason"], "newlyMatching");
    assert_eq!(n["data"][0]["id"], "urn:r:1");

    // A registration of buildings: nothing. One with a matching and another entry:
    // only the matching entry is notified.
    a.post(
        "/ngsi-ld/v1/csourceRegistrations",
        &registration(
            "urn:r:2",
            "http://d2:1026",
            json!({"information": [{"entities": [{"type": "Building"}]}]}),
        ),
    )
    .await;
    a.post("/ngsi-ld/v1/csourceRegistrations", &registration("urn:r:3", "http://d3:1026",
        json!({"information": [{"entities": [{"type": "Building"}]}, {"entities": [{"type": "Vehicle"}], "propertyNames": ["speed"]}]}))).await;
    let n = wait(&mut rx).await;
    assert_eq!(n["triggerReason"], "newlyMatching");
    assert_eq!(n["data"][0]["id"], "urn:r:3");
    assert_eq!(
        n["data"][0]["information"],
        json!([{"entities": [{"type": "Vehicle"}], "propertyNames": ["speed"]}])
    );
    // Changed and still matching; changed out of matching; deleted.
    a.patch(
        "/ngsi-ld/v1/csourceRegistrations/urn:r:3",
        &json!({"endpoint": "http://d4:1026"}),
    )
    .await;
    let n = wait(&mut rx).await;
    assert_eq!(
        (
            n["triggerReason"].as_str(),
            n["data"][0]["endpoint"].as_str()
        ),
        (Some("updated"), Some("http://d4:1026"))
    );
    a.patch(
        "/ngsi-ld/v1/csourceRegistrations/urn:r:1",
        &json!({"information": [{"entities": [{"type": "Building"}]}]}),
    )
    .await;
    let n = wait(&mut rx).await;
    assert_eq!(
        (n["triggerReason"].as_str(), n["data"][0]["id"].as_str()),
        (Some("noLongerMatching"), Some("urn:r:1"))
    );
    a.delete("/ngsi-ld/v1/csourceRegistrations/urn:r:3").await;
    let n = wait(&mut rx).await;
    assert_eq!(
        (n["triggerReason"].as_str(), n["data"][0]["id"].as_str()),
        (Some("noLongerMatching"), Some("urn:r:3"))
    );

    // Paused: nothing; the status and counters show in the subscription.
    let r = a
        .patch(
            "/ngsi-ld/v1/csourceSubscriptions/urn:ngsi-ld:Subscription:csr",
            &json!({"isActive": false}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    a.post(
        "/ngsi-ld/v1/csourceRegistrations",
        &registration("urn:r:5", "http://d5:1026", speed),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        next(&mut rx).is_none(),
        "a paused subscription sends nothing"
    );
    let r = a
        .get("/ngsi-ld/v1/csourceSubscriptions/urn:ngsi-ld:Subscription:csr")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["status"], "paused");
    assert_eq!(r.body["notification"]["status"], "ok");
    assert_eq!(r.body["notification"]["timesSent"], 5);
    assert!(r.body["notification"].get("timesFailed").is_none());
    let r = a.get("/ngsi-ld/v1/csourceSubscriptions?count=true").await;
    assert_eq!(r.header("ngsild-results-count"), Some("1"));
    for bad in [
        json!({"type": "RandomType", "notification": {"endpoint": {"uri": "http://x:1"}}}),
        json!({"type": "Subscription"}),
        json!({"type": "Subscription", "q": "speed>", "notification": {"endpoint": {"uri": "http://x:1"}}}),
        json!({"type": "Subscription", "watchedAttributes": [], "notification": {"endpoint": {"uri": "http://x:1"}}}),
        json!({"type": "Subscription", "expiresAt": "2018-08-01T22:07:00Z", "notification": {"endpoint": {"uri": "http://x:1"}}}),
    ] {
        let r = a.post("/ngsi-ld/v1/csourceSubscriptions", &bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text);
    }
    let r = a
        .delete("/ngsi-ld/v1/csourceSubscriptions/urn:ngsi-ld:Subscription:csr")
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = a
        .get("/ngsi-ld/v1/csourceSubscriptions/urn:ngsi-ld:Subscription:csr")
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn exclusive_attributes_and_query_only_sources_are_asked_for_what_they_hold() {
    let city = app().await;
    let dept = app().await;
    let dept_url = serve(&dept).await;
    city.post(
        "/ngsi-ld/v1/entities",
        &vehicle("urn:ngsi-ld:Vehicle:1", 50.0, 13.4, 52.5),
    )
    .await;
    // The department holds Vehicle:1's fuel alone, and Vehicle:2 (which it answers
    // only to queries).
    dept.post(
        "/ngsi-ld/v1/entities",
        &json!({"id": "urn:ngsi-ld:Vehicle:1", "type": "Vehicle", "fuel": {"type": "Property", "value": 0.25}}),
    )
    .await;
    let mut v2 = vehicle("urn:ngsi-ld:Vehicle:2", 30.0, 13.5, 52.5);
    v2["fuel"] = json!({"type": "Property", "value": 0.75});
    dept.post("/ngsi-ld/v1/entities", &v2).await;
    let r = city
        .post(
            "/ngsi-ld/v1/csourceRegistrations",
            &registration(
                "urn:r:fuel",
                &dept_url,
                json!({"mode": "exclusive", "information": [{"entities": [{"id": "urn:ngsi-ld:Vehicle:1", "type": "Vehicle"}], "propertyNames": ["fuel"]}]}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = city.get("/ngsi-ld/v1/entities?type=Vehicle").await;
    assert_eq!(
        ids(&r.body),
        ["urn:ngsi-ld:Vehicle:1"],
        "only Vehicle:1 asked of the source"
    );
    assert_eq!(r.body[0]["fuel"]["value"], 0.25);
    assert_eq!(r.body[0]["speed"]["value"], 50.0);

    let r = city
        .post(
            "/ngsi-ld/v1/csourceRegistrations",
            &registration(
                "urn:r:query-only",
                &dept_url,
                json!({"operations": ["queryEntity"], "information": [{"entities": [{"idPattern": ".*:2$", "type": "Vehicle"}]}]}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = city.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:2").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["speed"]["value"], 30.0);
    // csf leaves the source out.
    let r = city
        .get("/ngsi-ld/v1/entities?type=Vehicle&csf=endpoint==%22http://elsewhere%22")
        .await;
    assert_eq!(ids(&r.body), ["urn:ngsi-ld:Vehicle:1"]);
    assert!(r.body[0].get("fuel").is_none());
}

#[tokio::test]
async fn batch_queries_are_federated_and_batch_only_sources_get_a_query_body() {
    let city = app().await;
    let dept = app().await;
    let dept_url = serve(&dept).await;
    city.post(
        "/ngsi-ld/v1/entities",
        &vehicle("urn:ngsi-ld:Vehicle:1", 50.0, 13.4, 52.5),
    )
    .await;
    dept.post(
        "/ngsi-ld/v1/entities",
        &vehicle("urn:ngsi-ld:Vehicle:2", 30.0, 13.5, 52.5),
    )
    .await;
    let r = city
        .post(
            "/ngsi-ld/v1/csourceRegistrations",
            &registration(
                "urn:r:batch",
                &dept_url,
                json!({"operations": ["queryBatch"]}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = city
        .get("/ngsi-ld/v1/entities?type=Vehicle&q=speed%3C40")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(ids(&r.body), ["urn:ngsi-ld:Vehicle:2"]);
    let r = city
        .post(
            "/ngsi-ld/v1/entityOperations/query",
            &json!({"type": "Query", "entities": [{"type": "Vehicle"}], "attrs": ["speed"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        ids(&r.body),
        ["urn:ngsi-ld:Vehicle:1", "urn:ngsi-ld:Vehicle:2"]
    );
    let r = city.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:2").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.header("ngsild-warning").is_none());
}

#[tokio::test]
async fn registrations_are_governed_and_their_credentials_shown_to_administrators_only() {
    use super::harness::app_governed;
    let g = app_governed(json!({})).await;
    let admin = g.admin.clone();
    let operator = g.key("olga", &["operator"], |_| {});
    let viewer = g.key("vic", &["viewer"], |_| {});
    let body = registration(
        "urn:r:secret",
        "http://dept.example:1026",
        json!({"contextSourceInfo": [{"key": "Authorization", "value": "Bearer dept-token"}]}),
    );
    let path = "/ngsi-ld/v1/csourceRegistrations";
    let r = g
        .call(Some(&operator), "POST", path, &[], Some(&body))
        .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "only administrators register sources"
    );
    let r = g.call(Some(&admin), "POST", path, &[], Some(&body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let one = format!("{path}/urn:r:secret");
    let r = g.call(Some(&admin), "GET", &one, &[], None).await;
    assert_eq!(r.body["contextSourceInfo"][0]["value"], "Bearer dept-token");
    let r = g.call(Some(&operator), "GET", &one, &[], None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["contextSourceInfo"][0]["value"], "***");
    let r = g.call(Some(&viewer), "GET", &one, &[], None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = g
        .call(None, "GET", &format!("{path}?type=Vehicle"), &[], None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_source_identity_names_each_tenant_apart() {
    let a = app().await;
    let id = |tenant: Option<&'static str>| {
        let a = &a;
        async move {
            let headers: Vec<(&str, &str)> = tenant
                .map(|t| vec![("ngsild-tenant", t)])
                .unwrap_or_default();
            let r = a
                .call("GET", "/ngsi-ld/v1/info/sourceIdentity", &headers, None)
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            r.body
        }
    };
    let (default, t1, t1_again, t2) = (
        id(None).await,
        id(Some("t1")).await,
        id(Some("t1")).await,
        id(Some("t2")).await,
    );
    assert_eq!(default["type"], "ContextSourceIdentity");
    assert!(default["id"].as_str().unwrap().starts_with("urn:"));
    let alias = |v: &Value| v["contextSourceAlias"].as_str().unwrap().to_string();
    assert_ne!(alias(&default), alias(&t1));
    assert_ne!(alias(&t1), alias(&t2));
    assert_eq!(alias(&t1), alias(&t1_again));
    let up = default["contextSourceUptime"].as_str().unwrap();
    assert!(up.starts_with("PT") && up.ends_with('S'), "{up}");
    assert!(default["contextSourceTimeAt"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
}

#[tokio::test]
async fn writes_go_to_the_sources_that_hold_what_they_write() {
    let city = app().await;
    let dept = app().await;
    let dept_url = serve(&dept).await;
    let parking = |id: &str, free: u32| json!({"id": id, "type": "Parking", "free": {"type": "Property", "value": free}});
    // Parking is the department's alone (redirect).
    let r = city
        .post(
            "/ngsi-ld/v1/csourceRegistrations",
            &registration(
                "urn:r:parking",
                &dept_url,
                json!({"mode": "redirect", "operations": ["redirectionOps"], "information": [{"entities": [{"type": "Parking"}]}]}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = city
        .post("/ngsi-ld/v1/entities", &parking("urn:P:1", 5))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(
        dept.get("/ngsi-ld/v1/entities/urn:P:1").await.status,
        StatusCode::OK
    );
    let r = city
        .get("/ngsi-ld/v1/entities?type=Parking&local=true")
        .await;
    assert_eq!(r.body, json!([]), "nothing of it stays here");
    let r = city
        .patch(
            "/ngsi-ld/v1/entities/urn:P:1/attrs",
            &json!({"free": {"type": "Property", "value": 4}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert_eq!(
        dept.get("/ngsi-ld/v1/entities/urn:P:1").await.body["free"]["value"],
        4
    );
    // An attribute named ".." would name the entity itself at the source.
    for bad in ["..", "%2E%2E", "."] {
        let r = city
            .delete(&format!("/ngsi-ld/v1/entities/urn:P:1/attrs/{bad}"))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text);
    }
    assert_eq!(
        dept.get("/ngsi-ld/v1/entities/urn:P:1").await.status,
        StatusCode::OK
    );
    let r = city.delete("/ngsi-ld/v1/entities/urn:P:1").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert_eq!(
        dept.get("/ngsi-ld/v1/entities/urn:P:1").await.status,
        StatusCode::NOT_FOUND
    );
    let r = city.delete("/ngsi-ld/v1/entities/urn:P:1").await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "deleted everywhere: {}",
        r.text
    );

    // Vehicle:1's fuel is the department's alone; the rest stays here.
    city.post(
        "/ngsi-ld/v1/entities",
        &vehicle("urn:ngsi-ld:Vehicle:1", 50.0, 13.4, 52.5),
    )
    .await;
    dept.post(
        "/ngsi-ld/v1/entities",
        &json!({"id": "urn:ngsi-ld:Vehicle:1", "type": "Vehicle"}),
    )
    .await;
    let r = city
        .post(
            "/ngsi-ld/v1/csourceRegistrations",
            &registration(
                "urn:r:fuel",
                &dept_url,
                json!({"mode": "exclusive", "operations": ["retrieveOps", "appendAttrs", "updateAttrs", "deleteAttrs"],
                       "information": [{"entities": [{"id": "urn:ngsi-ld:Vehicle:1", "type": "Vehicle"}], "propertyNames": ["fuel"]}]}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = city
        .post(
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:1/attrs",
            &json!({"fuel": {"type": "Property", "value": 0.5}, "speed": {"type": "Property", "value": 55.0}}),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.text);
    let here = city
        .get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:1?local=true")
        .await;
    assert_eq!(here.body["speed"]["value"], 55.0);
    assert!(here.body.get("fuel").is_none(), "{}", here.body);
    let there = dept.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:1").await;
    assert_eq!(there.body["fuel"]["value"], 0.5);
    assert!(there.body.get("speed").is_none());

    // Attribute by attribute: the fuel goes to the department, speed stays here.
    let r = city
        .patch(
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:1/attrs/fuel",
            &json!({"type": "Property", "value": 0.4}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let there = dept.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:1").await;
    assert_eq!(there.body["fuel"]["value"], 0.4);
    let r = city
        .delete("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:1/attrs/fuel")
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let there = dept.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:1").await;
    assert!(there.body.get("fuel").is_none(), "{}", there.body);
    let r = city
        .delete("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:1/attrs/speed")
        .await;
    assert_eq!(
        r.status,
        StatusCode::NO_CONTENT,
        "speed is this broker's: {}",
        r.text
    );

    // A redirect whose source does not take creates: nobody can create it.
    city.post(
        "/ngsi-ld/v1/csourceRegistrations",
        &registration(
            "urn:r:trams",
            &dept_url,
            json!({"mode": "redirect", "operations": ["retrieveOps"], "information": [{"entities": [{"type": "Tram"}]}]}),
        ),
    )
    .await;
    let r = city
        .post(
            "/ngsi-ld/v1/entities",
            &json!({"id": "urn:T:1", "type": "Tram"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);

    // A source that cannot be reached: the local part stands, the answer is 207.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    city.post(
        "/ngsi-ld/v1/csourceRegistrations",
        &registration(
            "urn:r:bikes",
            &closed,
            json!({"operations": ["createEntity"], "information": [{"entities": [{"type": "Bike"}]}]}),
        ),
    )
    .await;
    let r = city
        .post(
            "/ngsi-ld/v1/entities",
            &json!({"id": "urn:B:1", "type": "Bike"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::MULTI_STATUS, "{}", r.text);
    assert_eq!(r.body["notUpdated"][0]["registrationId"], "urn:r:bikes");
    assert!(r
        .header_all("ngsild-warning")
        .starts_with("199 urn:r:bikes"));
    let r = city.get("/ngsi-ld/v1/entities/urn:B:1?local=true").await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "an inclusive source's entity is kept here too"
    );
}

#[tokio::test]
async fn writes_to_sources_are_decided_by_the_same_policies() {
    use super::harness::app_governed;
    let g = app_governed(json!({})).await;
    let admin = g.admin.clone();
    let viewer = g.key("vic", &["viewer"], |_| {});
    let source = fixed(201, "", Duration::ZERO).await;
    let reg = registration(
        "urn:r:parking",
        &source,
        json!({"mode": "redirect", "operations": ["redirectionOps"], "information": [{"entities": [{"type": "Parking"}]}]}),
    );
    let r = g
        .call(
            Some(&admin),
            "POST",
            "/ngsi-ld/v1/csourceRegistrations",
            &[],
            Some(&reg),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let p = json!({"id": "urn:P:1", "type": "Parking"});
    let r = g
        .call(Some(&viewer), "POST", "/ngsi-ld/v1/entities", &[], Some(&p))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    let r = g
        .call(None, "DELETE", "/ngsi-ld/v1/entities/urn:P:1", &[], None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    let r = g
        .call(Some(&admin), "POST", "/ngsi-ld/v1/entities", &[], Some(&p))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

#[tokio::test]
async fn context_source_info_shapes_the_requests_sent() {
    use axum::http::HeaderMap;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(HeaderMap, String)>();
    let capture = axum::Router::new().fallback(move |headers: HeaderMap, body: String| {
        let tx = tx.clone();
        async move {
            let _ = tx.send((headers, body));
            StatusCode::CREATED
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, capture).await });
    let city = app().await;
    let r = city
        .post(
            "/ngsi-ld/v1/csourceRegistrations",
            &registration(
                "urn:r:shaped",
                &url,
                json!({"operations": ["createEntity"], "information": [{"entities": [{"type": "Bike"}]}],
                    "contextSourceInfo": [
                        {"key": "contentType", "value": "application/ld+json"},
                        {"key": "accept", "value": "application/ld+json"},
                        {"key": "X-Department", "value": "mobility"},
                        {"key": "Host", "value": "elsewhere.example"},
                        {"key": "NGSILD-Tenant", "value": "other"}]}),
            ),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = city
        .post(
            "/ngsi-ld/v1/entities",
            &json!({"id": "urn:B:1", "type": "Bike", "gear": {"type": "Property", "value": 3}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let (headers, body) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(h("content-type"), "application/ld+json");
    assert_eq!(h("accept"), "application/ld+json");
    assert_eq!(h("x-department"), "mobility");
    assert_ne!(h("host"), "elsewhere.example");
    assert_eq!(
        h("ngsild-tenant"),
        "",
        "the broker's own headers are not a registration's"
    );
    assert!(h("via").starts_with("1.1 citybrain-"), "{}", h("via"));
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["@context"], citybrain_model::context::CORE_CONTEXT_URL);
    assert_eq!(body["gear"]["value"], 3);
}

/// Registrations belong to their tenant: another tenant (even one whose name starts
/// the same) neither lists them nor has its queries forwarded by them.
#[tokio::test]
async fn registrations_are_kept_per_tenant() {
    let a = app().await;
    let path = "/ngsi-ld/v1/csourceRegistrations";
    for (tenant, id) in [
        ("t1", "urn:r:one"),
        ("t1", "urn:r:two"),
        ("t10", "urn:r:ten"),
    ] {
        let body = registration(id, "http://127.0.0.1:9/", json!({}));
        let r = a
            .call(
                "POST",
                path,
                &[("ngsild-tenant", tenant)],
                Some(&body.to_string()),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    for (tenant, n) in [
        (None, 0),
        (Some("t"), 0),
        (Some("t1"), 2),
        (Some("t10"), 1),
        (Some("t2"), 0),
    ] {
        let headers: Vec<(&str, &str)> = tenant
            .map(|t| vec![("ngsild-tenant", t)])
            .unwrap_or_default();
        let r = a
            .call("GET", &format!("{path}?type=Vehicle"), &headers, None)
            .await;
        let listed = if r.status == StatusCode::OK {
            r.body.as_array().unwrap().len()
        } else {
            0
        };
        assert_eq!(listed, n, "{tenant:?}: {}", r.text);
        // A tenant without registrations answers its queries locally (no source to
        // warn about); one with them asks the (unreachable) source and says so.
        let r = a
            .call("GET", "/ngsi-ld/v1/entities?type=Vehicle", &headers, None)
            .await;
        assert_eq!(
            r.header("ngsild-warning").is_some(),
            n > 0,
            "{tenant:?}: {:?}",
            r.headers
        );
    }
}
