//! `/platform/v1/areas` and `/platform/v1/mode` with `area`: emergency mode for one
//! part of the city, end to end through NGSI-LD writes.

use std::time::Duration;

use serde_json::{json, Value};

use super::harness::{app_with_hub, App};

fn gauge(id: &str, lon: f64, lat: f64, level: f64) -> Value {
    json!({
        "id": id,
        "type": "WaterObserved",
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}},
        "level": {"type": "Property", "value": level, "observedAt": "2026-07-01T06:00:00Z"}
    })
}

async fn incidents(app: &App, n: usize) -> Vec<Value> {
    for _ in 0..100 {
        let list = app.get("/platform/v1/incidents").await.body;
        let list = list.as_array().cloned().unwrap_or_default();
        if list.len() >= n {
            return list;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("fewer than {n} incidents");
}

#[tokio::test]
async fn an_area_in_emergency_mode_changes_thresholds_and_routing_there_only() {
    let app = app_with_hub().await;
    let square = json!({"type": "Polygon",
        "coordinates": [[[10.0, 10.0], [11.0, 10.0], [11.0, 11.0], [10.0, 11.0], [10.0, 10.0]]]});
    // Areas are checked: a point is no area, and names are ids.
    let r = app
        .put(
            "/platform/v1/areas/riverside",
            &json!({"geometry": {"type": "Point", "coordinates": [10, 10]}}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.text.contains("geometry"), "{}", r.text);
    let r = app
        .put(
            "/platform/v1/areas/river%20side",
            &json!({"geometry": square}),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = app
        .put(
            "/platform/v1/areas/riverside",
            &json!({"geometry": square, "description": "the flood plain"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        app.put("/platform/v1/areas/riverside", &json!({"geometry": square}))
            .await
            .status,
        200,
        "redefined"
    );
    let all = app.get("/platform/v1/areas").await.body;
    assert_eq!(all["riverside"]["geometry"], square);
    assert_eq!(app.get("/platform/v1/areas/uptown").await.status, 404);

    app.put(
        "/platform/v1/routing",
        &json!({"flooding": "water-authority"}),
    )
    .await;
    app.put(
        "/platform/v1/routing?mode=emergency",
        &json!({"flooding": "flood-command"}),
    )
    .await;
    let rule = json!({
        "id": "flood", "category": "flooding",
        "for": {"type": "WaterObserved"},
        "when": {"kind": "threshold", "attr": "level", "above": 5.0},
        "emergency": {"kind": "threshold", "attr": "level", "above": 3.0}
    });
    assert_eq!(app.post("/platform/v1/rules", &rule).await.status, 201);

    // Switching an area that does not exist names the field.
    let r = app
        .put(
            "/platform/v1/mode",
            &json!({"mode": "emergency", "reason": "rain", "area": "uptown"}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.text.contains("area"), "{}", r.text);
    let r = app
        .put(
            "/platform/v1/mode",
            &json!({"mode": "emergency", "reason": "river cresting", "area": "riverside"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let m = app.get("/platform/v1/mode").await.body;
    assert_eq!(m["mode"], "normal", "the tenant stays normal");
    assert_eq!(m["areas"]["riverside"], "emergency");
    assert_eq!(m["history"][0]["area"], "riverside");

    // 4 m inside the area raises (emergency threshold 3); 4 m outside does not.
    app.post(
        "/ngsi-ld/v1/entities",
        &gauge("urn:ngsi-ld:WaterObserved:in", 10.5, 10.5, 4.0),
    )
    .await;
    app.post(
        "/ngsi-ld/v1/entities",
        &gauge("urn:ngsi-ld:WaterObserved:out", 30.0, 30.0, 4.0),
    )
    .await;
    let list = incidents(&app, 1).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["department"], "flood-command");
    assert_eq!(list[0]["sla"]["mode"], "emergency");
    assert_eq!(list[0]["entities"], json!(["urn:ngsi-ld:WaterObserved:in"]));
    // 6 m outside: a normal incident, routed as usual.
    let body =
        json!({"level": {"type": "Property", "value": 6.0, "observedAt": "2026-07-01T06:01:00Z"}});
    app.patch(
        "/ngsi-ld/v1/entities/urn:ngsi-ld:WaterObserved:out/attrs",
        &body,
    )
    .await;
    let list = incidents(&app, 2).await;
    let out = list
        .iter()
        .find(|i| i["entities"] == json!(["urn:ngsi-ld:WaterObserved:out"]))
        .unwrap();
    assert_eq!(out["department"], "water-authority");
    assert_eq!(out["sla"]["mode"], "normal");
    // The incident entity carries its mode, for responders' subscriptions.
    let e = app
        .get("/ngsi-ld/v1/entities?type=Incident&q=mode==%22emergency%22")
        .await
        .body;
    assert_eq!(e.as_array().map(Vec::len), Some(1), "{e}");

    // An area in emergency cannot be deleted; back to normal, it can.
    assert_eq!(app.delete("/platform/v1/areas/riverside").await.status, 409);
    let r = app
        .put(
            "/platform/v1/mode",
            &json!({"mode": "normal", "reason": "crest passed", "area": "riverside"}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["from"], "emergency");
    assert_eq!(app.delete("/platform/v1/areas/riverside").await.status, 204);
    assert_eq!(app.get("/platform/v1/areas/riverside").await.status, 404);
    let m = app.get("/platform/v1/mode").await.body;
    assert_eq!(m["history"].as_array().map(Vec::len), Some(2));
}
