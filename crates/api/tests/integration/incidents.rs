//! `/platform/v1/incidents`: rule events become incidents (gathered by place and
//! time, routed by category), moved through their lifecycle, visible through NGSI-LD.

use std::time::Duration;

use serde_json::{json, Value};

use super::harness::{app_with_hub, App};

fn station(id: &str, no2: f64, lon: f64, lat: f64, t: &str) -> Value {
    json!({
        "id": id,
        "type": "AirQualityObserved",
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}},
        "NO2": {"type": "Property", "value": no2, "observedAt": t}
    })
}

/// Waits until the incidents gather `events` events in all.
async fn incidents(app: &App, events: u64) -> Vec<Value> {
    for _ in 0..100 {
        let r = app.get("/platform/v1/incidents").await;
        let list = r.body.as_array().cloned().unwrap_or_default();
        let n: u64 = list
            .iter()
            .map(|i| i["eventCount"].as_u64().unwrap_or(0))
            .sum();
        if n >= events {
            return list;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("fewer than {events} events in incidents");
}

#[tokio::test]
async fn events_become_routed_incidents_that_move_through_their_lifecycle() {
    let app = app_with_hub().await;
    let r = app
        .put(
            "/platform/v1/routing",
            &json!({"air-quality": "environment-bureau"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let rule = json!({
        "id": "no2-high", "category": "air-quality", "severity": "high",
        "for": {"type": "AirQualityObserved"},
        "when": {"kind": "threshold", "attr": "NO2", "above": 200}
    });
    assert_eq!(app.post("/platform/v1/rules", &rule).await.status, 201);
    // Two stations 100 m apart go over the limit minutes apart: one incident.
    for (s, lat, t) in [
        ("A", 39.9000, "2026-03-01T08:00:00Z"),
        ("B", 39.9009, "2026-03-01T08:05:00Z"),
    ] {
        let r = app
            .post(
                "/ngsi-ld/v1/entities",
                &station(
                    &format!("urn:ngsi-ld:AirQualityObserved:{s}"),
                    250.0,
                    116.4,
                    lat,
                    t,
                ),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    // A third, 5 km away: a second incident.
    app.post(
        "/ngsi-ld/v1/entities",
        &station(
            "urn:ngsi-ld:AirQualityObserved:C",
            260.0,
            116.4,
            39.95,
            "2026-03-01T08:06:00Z",
        ),
    )
    .await;
    let list = incidents(&app, 3).await;
    assert_eq!(list.len(), 2, "{list:#?}");
    let far = &list[0]; // newest first
    let near = &list[1];
    assert_eq!(near["eventCount"], 2);
    assert_eq!(near["entities"].as_array().unwrap().len(), 2);
    assert_eq!(near["department"], "environment-bureau");
    assert_eq!(near["status"], "new");
    assert_eq!(near["severity"], "high");
    assert_eq!(far["eventCount"], 1);
    let id = near["id"].as_str().unwrap().to_string();

    // Lifecycle: an impossible move is a 409 that names the allowed ones.
    let path = format!("/platform/v1/incidents/{id}/transitions");
    let r = app.post(&path, &json!({"to": "resolved"})).await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(
        r.body["allowed"],
        json!(["acknowledged", "dispatched", "cancelled", "duplicate"])
    );
    assert_eq!(
        app.post(&path, &json!({"to": "acknowledged"})).await.status,
        200
    );
    let r = app
        .post(
            &path,
            &json!({"to": "dispatched", "unit": "inspection-team-3"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        app.post(&path, &json!({"to": "in_progress"})).await.status,
        200
    );
    let r = app.post(&path, &json!({"to": "on_hold"})).await;
    assert_eq!(r.status, 409, "a hold needs a reason: {}", r.text);
    assert_eq!(
        app.post(
            &path,
            &json!({"to": "on_hold", "reason": "waiting for lab results"})
        )
        .await
        .status,
        200
    );
    assert_eq!(
        app.post(&path, &json!({"to": "in_progress"})).await.status,
        200
    );
    let r = app
        .post(
            &format!("/platform/v1/incidents/{id}/comments"),
            &json!({"text": "source found: a boiler"}),
        )
        .await;
    assert_eq!(r.status, 201);
    let r = app
        .post(
            &format!("/platform/v1/incidents/{id}/attachments"),
            &json!({"url": "https://files.example/report.pdf", "name": "report"}),
        )
        .await;
    assert_eq!(r.status, 201);
    let r = app
        .post(
            &format!("/platform/v1/incidents/{id}/attachments"),
            &json!({"url": "file:///etc/passwd"}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        app.post(&path, &json!({"to": "resolved"})).await.status,
        200
    );
    assert_eq!(app.post(&path, &json!({"to": "closed"})).await.status, 200);
    let r = app.get(&format!("/platform/v1/incidents/{id}")).await;
    let actions: Vec<&str> = r.body["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "opened",
            "event",
            "status",
            "status",
            "status",
            "status",
            "status",
            "comment",
            "attachment",
            "status",
            "status"
        ]
    );
    assert_eq!(r.body["unit"], "inspection-team-3");
    assert!(r.body["acknowledgedAt"].is_string() && r.body["closedAt"].is_string());

    // Filters, and the incident as an NGSI-LD entity.
    let r = app.get("/platform/v1/incidents?status=closed").await;
    assert_eq!(r.body.as_array().unwrap().len(), 1);
    let r = app.get("/platform/v1/incidents?open=true").await;
    assert_eq!(r.body.as_array().unwrap().len(), 1);
    assert_eq!(
        app.get("/platform/v1/incidents?status=lost").await.status,
        400
    );
    let r = app.get(&format!("/ngsi-ld/v1/entities/{id}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["type"], "Incident");
    assert_eq!(r.body["status"]["value"], "closed");
    assert_eq!(r.body["department"]["value"], "environment-bureau");
    let r = app
        .get("/ngsi-ld/v1/entities?type=Incident&q=status==%22new%22")
        .await;
    assert_eq!(r.body.as_array().unwrap().len(), 1);
    assert_eq!(
        app.get("/platform/v1/incidents/urn:ngsi-ld:Incident:99")
            .await
            .status,
        404
    );
}

/// Waits until the incident list holds `n` incidents.
async fn count(app: &App, n: usize) -> Vec<Value> {
    for _ in 0..100 {
        let list = app.get("/platform/v1/incidents").await.body;
        if list.as_array().map(Vec::len) == Some(n) {
            return list.as_array().cloned().unwrap_or_default();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("not {n} incidents");
}

#[tokio::test]
async fn slas_escalate_on_breach_pause_on_hold_and_report_per_department() {
    use citybrain_model::time::ManualClock;
    use std::sync::Arc;
    let clock = Arc::new(ManualClock::new("2026-03-02T08:00:00Z".parse().unwrap()));
    let app = super::harness::app_with_hub_clock(clock.clone()).await;
    let hub = app.hub.clone().unwrap();
    let policy = json!({
        "normal": {"flooding": {"acknowledge": "15m", "resolve": "2h"}},
        "emergency": {"flooding": {"acknowledge": "2m", "resolve": "30m"}},
        "escalateTo": {"flooding": "city-command-center"}
    });
    let r = app.put("/platform/v1/sla/policy", &policy).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let mut bad = policy.clone();
    bad["normal"]["flooding"]["resolve"] = json!("5m");
    let r = app.put("/platform/v1/sla/policy", &bad).await;
    assert_eq!(r.status, 400);
    assert!(r.text.contains("normal.flooding.resolve"), "{}", r.text);
    app.put(
        "/platform/v1/routing",
        &json!({"flooding": "water-authority"}),
    )
    .await;
    let rule = json!({
        "id": "flood", "category": "flooding",
        "for": {"type": "WaterObserved"},
        "when": {"kind": "threshold", "attr": "level", "above": 3.0},
        "emergency": {"kind": "threshold", "attr": "level", "above": 2.0}
    });
    assert_eq!(app.post("/platform/v1/rules", &rule).await.status, 201);
    let water = |id: &str, level: f64| {
        json!({"id": id, "type": "WaterObserved",
               "level": {"type": "Property", "value": level, "observedAt": "2026-03-02T08:00:00Z"}})
    };
    // 2.5 m: nothing in normal mode.
    app.post(
        "/ngsi-ld/v1/entities",
        &water("urn:ngsi-ld:WaterObserved:W1", 2.5),
    )
    .await;
    app.post(
        "/ngsi-ld/v1/entities",
        &water("urn:ngsi-ld:WaterObserved:W2", 3.5),
    )
    .await;
    let list = count(&app, 1).await;
    let id = list[0]["id"].as_str().unwrap().to_string();
    assert_eq!(list[0]["department"], "water-authority");

    // 10 minutes: within the 15-minute target. 20 minutes: breached and escalated.
    clock.advance(chrono::Duration::minutes(10));
    assert!(hub.check_slas().await.unwrap().is_empty());
    clock.advance(chrono::Duration::minutes(10));
    let esc = hub.check_slas().await.unwrap();
    assert_eq!(esc.len(), 1);
    let i = app.get(&format!("/platform/v1/incidents/{id}")).await.body;
    assert_eq!(i["department"], "city-command-center");
    assert_eq!(i["severity"], "high", "medium → high");
    assert!(i["sla"]["ackBreachedAt"].is_string());
    assert!(
        hub.check_slas().await.unwrap().is_empty(),
        "a breach escalates once"
    );

    // On hold: the resolve clock stops. 1 h 30 min of work, 3 h on hold, resolved:
    // 1 h 50 min counted against 2 h, within the target.
    let path = format!("/platform/v1/incidents/{id}/transitions");
    app.post(&path, &json!({"to": "dispatched", "unit": "pump-crew"}))
        .await;
    app.post(&path, &json!({"to": "in_progress"})).await;
    clock.advance(chrono::Duration::minutes(70));
    app.post(&path, &json!({"to": "on_hold", "reason": "road closed"}))
        .await;
    clock.advance(chrono::Duration::hours(3));
    assert!(
        hub.check_slas().await.unwrap().is_empty(),
        "paused while on hold"
    );
    app.post(&path, &json!({"to": "in_progress"})).await;
    clock.advance(chrono::Duration::minutes(20));
    let r = app.post(&path, &json!({"to": "resolved"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let report = app.get("/platform/v1/sla/report").await.body;
    let dept = report
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["department"] == "city-command-center")
        .unwrap()
        .clone();
    assert_eq!(dept["incidents"], 1);
    assert_eq!(dept["ackCompliance"], 0.0, "acknowledged after the breach");
    assert_eq!(dept["resolveCompliance"], 1.0, "hold time not counted");
    assert_eq!(dept["mttaS"], 1200.0);
    assert_eq!(dept["mttrS"], (20 + 70 + 180 + 20) as f64 * 60.0);
    assert_eq!(dept["breaches"], 1);
    let metrics = app.get("/metrics").await.text;
    assert!(
        metrics.contains(
            "citybrain_incidents_mtta_seconds{tenant=\"\",department=\"city-command-center\"} 1200"
        ),
        "{metrics}"
    );

    // Emergency mode: lower thresholds and shorter targets at once; audited, reversible.
    let r = app
        .put("/platform/v1/mode", &json!({"mode": "emergency"}))
        .await;
    assert_eq!(r.status, 400, "a reason is required");
    let r = app
        .put(
            "/platform/v1/mode",
            &json!({"mode": "emergency", "reason": "typhoon warning"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let t = "2026-03-02T14:00:00Z";
    let body = json!({"level": {"type": "Property", "value": 2.6, "observedAt": t}});
    app.patch(
        "/ngsi-ld/v1/entities/urn:ngsi-ld:WaterObserved:W1/attrs",
        &body,
    )
    .await;
    let list = count(&app, 2).await;
    let new = &list[0];
    assert_eq!(new["sla"]["mode"], "emergency");
    clock.advance(chrono::Duration::minutes(3));
    let esc = hub.check_slas().await.unwrap();
    assert_eq!(
        esc.len(),
        1,
        "3 minutes breach the 2-minute emergency target"
    );
    let r = app
        .put(
            "/platform/v1/mode",
            &json!({"mode": "normal", "reason": "warning lifted"}),
        )
        .await;
    assert_eq!(r.status, 200);
    let m = app.get("/platform/v1/mode").await.body;
    assert_eq!(m["mode"], "normal");
    assert_eq!(m["history"].as_array().unwrap().len(), 2);
    assert_eq!(m["history"][0]["reason"], "typhoon warning");
    assert_eq!(m["history"][1]["from"], "emergency");
}

#[tokio::test]
async fn one_request_fans_out_into_tasks_and_completes_when_all_are_done() {
    let app = super::harness::app_with_hub().await;
    // A citizen's one request: open a small restaurant (一件事一次办).
    let req = json!({
        "category": "business-licence",
        "title": "Open a restaurant at 12 Wangfujing St",
        "tasks": [
            {"department": "market-regulation", "title": "business licence"},
            {"department": "fire-department", "title": "fire safety inspection"},
            {"department": "health-bureau", "title": "food hygiene permit", "after": [0, 1]}
        ]
    });
    let r = app.post("/platform/v1/incidents", &req).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        r.header("location"),
        Some(format!("/platform/v1/incidents/{id}").as_str())
    );
    assert_eq!(r.body["tasks"].as_array().unwrap().len(), 3);
    let task = |n: usize| format!("/platform/v1/incidents/{id}/tasks/{n}");
    // The hygiene permit waits for the other two.
    let r = app.post(&task(2), &json!({"status": "in_progress"})).await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.body["waitingFor"], json!([0, 1]));
    let r = app.post(&task(0), &json!({"status": "done"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["status"], "in_progress",
        "the citizen sees one status"
    );
    app.post(&task(1), &json!({"status": "done"})).await;
    let r = app.post(&task(2), &json!({"status": "done"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["status"], "resolved",
        "every task done: the request is resolved"
    );
    assert_eq!(
        app.post(&task(7), &json!({"status": "done"})).await.status,
        404
    );
    let bad = json!({"category": "x", "title": "y", "tasks": [{"department": "a", "title": "t", "after": [0]}]});
    let r = app.post("/platform/v1/incidents", &bad).await;
    assert_eq!(r.status, 400);
    assert!(r.text.contains("tasks[0].after"), "{}", r.text);
}

#[tokio::test]
async fn an_emergency_plan_opens_tasks_for_several_departments() {
    let app = super::harness::app_with_hub().await;
    let plans = json!([{
        "id": "flood-response", "category": "flooding",
        "tasks": [
            {"department": "water-authority", "title": "deploy pumps"},
            {"department": "traffic-police", "title": "close the underpass"},
            {"department": "civil-affairs", "title": "open shelters"}
        ]
    }]);
    assert_eq!(app.put("/platform/v1/plans", &plans).await.status, 200);
    let req = json!({"category": "flooding", "title": "underpass flooded"});
    // Normal mode: no plan.
    let r = app.post("/platform/v1/incidents", &req).await;
    assert!(r.body.get("tasks").is_none(), "{}", r.text);
    app.put(
        "/platform/v1/mode",
        &json!({"mode": "emergency", "reason": "rainstorm red alert"}),
    )
    .await;
    let r = app.post("/platform/v1/incidents", &req).await;
    let depts: Vec<&str> = r.body["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["department"].as_str().unwrap())
        .collect();
    assert_eq!(
        depts,
        ["water-authority", "traffic-police", "civil-affairs"]
    );
    assert_eq!(r.body["sla"]["mode"], "emergency");
}

#[tokio::test]
async fn responders_get_incidents_by_webhook_with_retries_and_on_the_live_feed() {
    use futures::StreamExt;
    use tower::ServiceExt;
    let app = super::harness::app_with_hub().await;
    // A responder's webhook: an NGSI-LD subscription on incidents of its department
    // (delivered by the subscription dispatcher, with its retries and backoff).
    let (url, mut rx) = super::subscriptions::receiver(Duration::ZERO).await;
    app.put(
        "/platform/v1/routing",
        &json!({"air-quality": "environment-bureau"}),
    )
    .await;
    let sub = json!({
        "type": "Subscription",
        "entities": [{"type": "Incident"}],
        "q": "department==\"environment-bureau\"",
        "notification": {"endpoint": {"uri": url, "accept": "application/json"}}
    });
    let r = app.post("/ngsi-ld/v1/subscriptions", &sub).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let rule = json!({
        "id": "no2-high", "category": "air-quality",
        "for": {"type": "AirQualityObserved"},
        "when": {"kind": "threshold", "attr": "NO2", "above": 200}
    });
    app.post("/platform/v1/rules", &rule).await;
    // The live feed, incidents only.
    let req = axum::http::Request::builder()
        .uri("/platform/v1/events/stream?feed=incidents")
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = app.router.clone().oneshot(req).await.unwrap();
    let mut body = resp.into_body().into_data_stream();
    app.post(
        "/ngsi-ld/v1/entities",
        &station(
            "urn:ngsi-ld:AirQualityObserved:Z",
            300.0,
            116.4,
            39.9,
            "2026-03-01T08:00:00Z",
        ),
    )
    .await;
    let (_, n) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a webhook within 5 s")
        .unwrap();
    let e = &n["data"][0];
    assert_eq!(e["type"], "Incident");
    assert_eq!(e["department"]["value"], "environment-bureau");
    assert_eq!(e["mode"]["value"], "normal");
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(chunk) = body.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            if text.contains("\n\n") {
                break;
            }
        }
    })
    .await
    .expect("an incident on the live feed");
    assert!(text.contains("event: incident"), "{text}");
    assert!(!text.contains("rule-event"), "feed=incidents: {text}");
}
