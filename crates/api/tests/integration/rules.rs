//! `/platform/v1/rules` and `/platform/v1/events`: rules managed through the API,
//! versioned, evaluated on entity changes, their events listed and streamed.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::harness::{app_with_hub, App};

fn no2_rule(above: f64) -> Value {
    json!({
        "id": "no2-high",
        "category": "air-quality",
        "severity": "high",
        "for": {"type": "AirQualityObserved"},
        "when": {"kind": "threshold", "attr": "NO2", "above": above, "clear": 150}
    })
}

fn station(id: &str, no2: f64) -> Value {
    json!({
        "id": id,
        "type": "AirQualityObserved",
        "NO2": {"type": "Property", "value": no2, "observedAt": "2026-03-01T08:00:00Z"},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [116.4, 39.9]}}
    })
}

/// Waits until `GET /platform/v1/events` lists `n` events.
async fn events(app: &App, n: usize) -> Vec<Value> {
    for _ in 0..100 {
        let r = app.get("/platform/v1/events").await;
        let list = r.body.as_array().cloned().unwrap_or_default();
        if list.len() >= n {
            return list;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("fewer than {n} events");
}

#[tokio::test]
async fn a_rule_put_through_the_api_raises_and_clears_on_entity_changes() {
    let app = app_with_hub().await;
    let r = app.post("/platform/v1/rules", &no2_rule(200.0)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.header("location"), Some("/platform/v1/rules/no2-high"));
    assert_eq!(r.body["version"], 1);
    // Creating it again is a conflict; PUT makes version 2.
    assert_eq!(
        app.post("/platform/v1/rules", &no2_rule(200.0))
            .await
            .status,
        409
    );
    let r = app
        .put("/platform/v1/rules/no2-high", &no2_rule(180.0))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["version"], 2);

    let id = "urn:ngsi-ld:AirQualityObserved:S1";
    assert_eq!(
        app.post("/ngsi-ld/v1/entities", &station(id, 120.0))
            .await
            .status,
        201
    );
    let patch = |v: f64, t: &str| json!({"NO2": {"type": "Property", "value": v, "observedAt": t}});
    let r = app
        .patch(
            &format!("/ngsi-ld/v1/entities/{id}/attrs"),
            &patch(190.0, "2026-03-01T08:01:00Z"),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let list = events(&app, 1).await;
    assert_eq!(list[0]["rule"], "no2-high");
    assert_eq!(list[0]["kind"], "raised");
    assert_eq!(list[0]["entity"], id);
    assert_eq!(list[0]["value"], 190.0);
    assert_eq!(list[0]["at"], "2026-03-01T08:01:00Z");
    assert_eq!(list[0]["location"], json!([116.4, 39.9]));
    app.patch(
        &format!("/ngsi-ld/v1/entities/{id}/attrs"),
        &patch(100.0, "2026-03-01T08:02:00Z"),
    )
    .await;
    let list = events(&app, 2).await;
    assert_eq!(list[1]["kind"], "cleared");
    // Filters.
    let r = app.get("/platform/v1/events?kind=cleared").await;
    assert_eq!(r.body.as_array().map(Vec::len), Some(1));
    let after = list[0]["seq"].as_u64().unwrap();
    let r = app.get(&format!("/platform/v1/events?after={after}")).await;
    assert_eq!(r.body.as_array().map(Vec::len), Some(1));
    assert_eq!(app.get("/platform/v1/events?color=red").await.status, 400);

    // The rule with its status and its versions; deleting it is a version too.
    let r = app.get("/platform/v1/rules/no2-high").await;
    assert_eq!(r.body["status"]["enabled"], true);
    assert_eq!(r.body["status"]["entities"], 1);
    assert_eq!(r.body["rule"]["when"]["above"], 180.0);
    assert_eq!(app.delete("/platform/v1/rules/no2-high").await.status, 204);
    assert_eq!(app.get("/platform/v1/rules/no2-high").await.status, 404);
    let v = app.get("/platform/v1/rules/no2-high/versions").await;
    let versions = v.body.as_array().unwrap();
    assert_eq!(versions.len(), 3);
    assert_eq!(versions[0]["rule"]["when"]["above"], 200.0);
    assert_eq!(versions[2]["deleted"], true);
    assert_eq!(app.get("/platform/v1/rules").await.body, json!([]));
}

#[tokio::test]
async fn invalid_rules_are_refused_with_the_field() {
    let app = app_with_hub().await;
    let mut bad = no2_rule(200.0);
    bad["when"]["clear"] = json!(250);
    let r = app.post("/platform/v1/rules", &bad).await;
    assert_eq!(r.status, 400);
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .starts_with("when.clear:"),
        "{}",
        r.text
    );
    let mut typo = no2_rule(200.0);
    typo["when"]["abov"] = json!(1);
    let r = app.post("/platform/v1/rules", &typo).await;
    assert_eq!(r.status, 400);
    assert!(r.text.contains("abov"), "{}", r.text);
    // YAML works too; a path id that differs from the body's is refused.
    let yaml = "id: quiet\ncategory: maintenance\nfor: {type: Sensor}\nwhen: {kind: missing, after: 10m}\n";
    let r = app
        .call(
            "POST",
            "/platform/v1/rules",
            &[("content-type", "application/yaml")],
            Some(yaml),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = app.put("/platform/v1/rules/other", &no2_rule(1.0)).await;
    assert_eq!(r.status, 400);
    let r = app
        .call(
            "POST",
            "/platform/v1/rules",
            &[("content-type", "text/plain")],
            Some("x"),
        )
        .await;
    assert_eq!(r.status, 415);
}

#[tokio::test]
async fn the_live_feed_streams_events_as_server_sent_events() {
    let app = app_with_hub().await;
    assert_eq!(
        app.post("/platform/v1/rules", &no2_rule(200.0))
            .await
            .status,
        201
    );
    let req = axum::http::Request::builder()
        .uri("/platform/v1/events/stream?rule=no2-high&feed=events")
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = app.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut body = resp.into_body().into_data_stream();
    let id = "urn:ngsi-ld:AirQualityObserved:S9";
    assert_eq!(
        app.post("/ngsi-ld/v1/entities", &station(id, 250.0))
            .await
            .status,
        201
    );
    let mut text = String::new();
    let got = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(chunk) = body.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            if text.contains("\n\n") && text.contains("data:") {
                break;
            }
        }
        text
    })
    .await
    .expect("an event within 5 s");
    assert!(got.contains("event: rule-event"), "{got}");
    let data = got.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    let ev: Value = serde_json::from_str(data).unwrap();
    assert_eq!(ev["entity"], id);
    assert_eq!(ev["kind"], "raised");
}

#[tokio::test]
async fn a_clock_tick_raises_what_has_no_data_to_raise_it() {
    let app = app_with_hub().await;
    let rule = json!({
        "id": "silent", "category": "maintenance",
        "for": {"type": "AirQualityObserved"},
        "when": {"kind": "missing", "attr": "NO2", "after": "10m"}
    });
    assert_eq!(app.post("/platform/v1/rules", &rule).await.status, 201);
    let id = "urn:ngsi-ld:AirQualityObserved:S2";
    assert_eq!(
        app.post("/ngsi-ld/v1/entities", &station(id, 10.0))
            .await
            .status,
        201
    );
    // The reading says 08:00 (long ago): the next tick finds it silent since 08:10.
    let hub = app.hub.as_ref().unwrap();
    for _ in 0..100 {
        hub.tick();
        let list = app.get("/platform/v1/events").await.body;
        if let Some(e) = list.as_array().and_then(|l| l.first()) {
            assert_eq!(e["rule"], "silent");
            assert_eq!(e["kind"], "raised");
            assert_eq!(e["at"], "2026-03-01T08:10:00Z");
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no event after ticks");
}

#[tokio::test]
async fn a_rule_is_back_tested_over_last_weeks_history() {
    let app = app_with_hub().await;
    // A week of hourly NO2 readings of two stations, written as history.
    for (station, peak_day) in [("S1", 2), ("S2", 5)] {
        let id = format!("urn:ngsi-ld:AirQualityObserved:{station}");
        let mut instances = Vec::new();
        for h in 0..(7 * 24) {
            let day = h / 24;
            let v = if day == peak_day && (8..12).contains(&(h % 24)) {
                230.0
            } else {
                90.0
            };
            let t = chrono::DateTime::parse_from_rfc3339("2026-03-02T00:00:00Z").unwrap()
                + chrono::Duration::hours(h);
            instances.push(json!({"type": "Property", "value": v,
                "observedAt": t.with_timezone(&chrono::Utc).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)}));
        }
        let body = json!({"id": id, "type": "AirQualityObserved", "NO2": instances});
        let r = app.post("/ngsi-ld/v1/temporal/entities", &body).await;
        assert!(r.status.is_success(), "{}", r.text);
    }
    let req = json!({
        "rule": no2_rule(200.0),
        "from": "2026-03-02T00:00:00Z",
        "to": "2026-03-09T00:00:00Z"
    });
    let r = app.post("/platform/v1/backtests", &req).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["entities"], 2);
    assert_eq!(r.body["observations"], 2 * 7 * 24);
    let events = r.body["events"].as_array().unwrap();
    let got: Vec<(String, String, String)> = events
        .iter()
        .map(|e| {
            (
                e["entity"]
                    .as_str()
                    .unwrap()
                    .rsplit(':')
                    .next()
                    .unwrap()
                    .to_string(),
                e["kind"].as_str().unwrap().to_string(),
                e["at"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("S1".into(), "raised".into(), "2026-03-04T08:00:00Z".into()),
            ("S1".into(), "cleared".into(), "2026-03-04T12:00:00Z".into()),
            ("S2".into(), "raised".into(), "2026-03-07T08:00:00Z".into()),
            ("S2".into(), "cleared".into(), "2026-03-07T12:00:00Z".into()),
        ]
    );
    // The live rules are untouched; a stored rule is tested by id; bad periods are refused.
    assert_eq!(app.get("/platform/v1/rules").await.body, json!([]));
    let r = app
        .post("/platform/v1/backtests", &json!({"ruleId": "nope", "from": "2026-03-02T00:00:00Z", "to": "2026-03-03T00:00:00Z"}))
        .await;
    assert_eq!(r.status, 404);
    let r = app
        .post("/platform/v1/backtests", &json!({"rule": no2_rule(1.0), "from": "2026-03-03T00:00:00Z", "to": "2026-03-02T00:00:00Z"}))
        .await;
    assert_eq!(r.status, 400);
    assert!(r.text.contains("to: must be after"), "{}", r.text);
}
