//! What a property-based API tester (schemathesis, `scripts/api-check.sh`) and a read of
//! every platform handler found: refusals at any layer are ProblemDetails, a refused
//! write leaves nothing behind, bodies are the objects they are documented as, and
//! what a caller may not read does not leak through a back-test or a configuration.

use axum::http::StatusCode;
use serde_json::json;

use super::governance::city;
use super::harness::{app_with, app_with_hub};

fn is_problem(r: &super::harness::Resp) -> bool {
    r.header("content-type") == Some("application/json")
        && r.body["type"].is_string()
        && r.body["status"] == r.status.as_u16()
        && r.body["detail"].is_string()
}

#[tokio::test]
async fn refusals_of_axum_itself_are_problem_details() {
    let app = app_with_hub().await;
    // A path value that is not UTF-8: axum's own rejection, rewritten.
    for uri in [
        "/platform/v1/rules/%FF",
        "/platform/v1/incidents/%FF",
        "/platform/v1/areas/%FF",
        "/ingest/deadletters/%FF",
    ] {
        let r = app.get(uri).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}: {}", r.text);
        assert!(
            is_problem(&r),
            "{uri}: {:?} {}",
            r.header("content-type"),
            r.text
        );
        assert!(
            r.body["detail"].as_str().unwrap().contains("UTF-8"),
            "{}",
            r.text
        );
    }
    // A body over the limit.
    let small = app_with(citybrain_api::HttpLimits {
        max_body_bytes: 64,
        ..Default::default()
    })
    .await;
    let big = json!({"id": "x".repeat(200)});
    let r = small.post("/platform/v1/backtests", &big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);
    assert!(is_problem(&r), "{}", r.text);
}

#[tokio::test]
async fn a_duration_too_long_for_arithmetic_is_refused() {
    let app = app_with_hub().await;
    let rule = |horizon: &str| {
        json!({"id": "far", "category": "traffic", "for": {"type": "TrafficFlowObserved"},
               "when": {"kind": "forecast", "attr": "averageVehicleSpeed", "window": "15m",
                        "horizon": horizon, "below": 15}})
    };
    for bad in ["P999999999999W", "P40000D"] {
        let r = app.post("/platform/v1/rules", &rule(bad)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text);
        assert!(r.text.contains("horizon"), "{}", r.text);
        let r = app
            .post(
                "/platform/v1/backtests",
                &json!({"rule": rule(bad), "from": "2026-03-02T00:00:00Z", "to": "2026-03-03T00:00:00Z"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text);
    }
    // Blank names are refused too (expanded, they looked like names).
    let blank = json!({"id": "blank", "category": "c", "for": {"type": ""},
                       "when": {"kind": "threshold", "attr": "", "above": 1}});
    let r = app.post("/platform/v1/rules", &blank).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(app.get("/platform/v1/rules").await.body, json!([]));
}

#[tokio::test]
async fn a_refused_incident_write_leaves_nothing_behind() {
    let app = app_with_hub().await;
    let r = app
        .post(
            "/platform/v1/incidents",
            &json!({"category": "a", "title": "b", "entities": ["not a uri"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(app.get("/platform/v1/incidents").await.body, json!([]));
    let r = app
        .post(
            "/platform/v1/incidents",
            &json!({"category": "a", "title": "b", "entities": ["urn:ngsi-ld:Road:1"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_string();
    let before = app.get(&format!("/platform/v1/incidents/{id}")).await.body;
    // Bodies are objects: an array would be read as the struct's fields in order.
    for (uri, body) in [
        (
            format!("/platform/v1/incidents/{id}/comments"),
            json!(["hello"]),
        ),
        (
            format!("/platform/v1/incidents/{id}/transitions"),
            json!(["acknowledged"]),
        ),
        (
            "/platform/v1/mode".to_string(),
            json!(["emergency", "test"]),
        ),
    ] {
        let r = app
            .call(
                if uri.ends_with("mode") { "PUT" } else { "POST" },
                &uri,
                &[],
                Some(&body.to_string()),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}: {}", r.text);
        assert!(r.text.contains("object"), "{}", r.text);
    }
    assert_eq!(
        app.get(&format!("/platform/v1/incidents/{id}")).await.body,
        before
    );
}

#[tokio::test]
async fn open311_posts_elsewhere_are_method_errors() {
    let app = app_with_hub().await;
    for uri in ["/open311/v2/services.json", "/open311/v2/discovery.xml"] {
        let r = app.call("POST", uri, &[], Some("a=b")).await;
        assert_eq!(
            r.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{uri}: {}",
            r.text
        );
        assert_eq!(r.header("allow"), Some("GET"));
    }
}

#[tokio::test]
async fn the_open311_configuration_and_its_keys_are_for_administrators() {
    let g = city().await;
    // Anyone reads Open311 itself …
    let r = g
        .call(None, "GET", "/open311/v2/services.json", &[], None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // … but not the configuration, which holds the keys reports are filed with.
    let viewer = g.key("vic", &["viewer"], |_| {});
    for who in [None, Some(viewer.as_str())] {
        let r = g.call(who, "GET", "/platform/v1/open311", &[], None).await;
        assert!(matches!(r.status.as_u16(), 401 | 403), "{}", r.text);
    }
    let admin = g.admin.clone();
    let r = g
        .call(Some(&admin), "GET", "/platform/v1/open311", &[], None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // A policy set that would lock its author out of governance is refused.
    let bearer = format!("Bearer {admin}");
    let r = g
        .app
        .call(
            "PUT",
            "/platform/v1/policies",
            &[("authorization", &bearer), ("content-type", "text/plain")],
            Some("// nothing"),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("administer governance"), "{}", r.text);
}

#[tokio::test]
async fn a_back_test_replays_only_what_its_caller_reads_as_stored() {
    let g = city().await;
    let admin = g.admin.clone();
    // Speeds and plates with their times, for the two vehicles (a viewer reads their
    // speeds as stored and their plates masked).
    for (id, v, plate) in [
        ("urn:ngsi-ld:Vehicle:1", 90, "粤B12345"),
        ("urn:ngsi-ld:Vehicle:2", 95, "粤A67890"),
    ] {
        let body = json!({"id": id, "type": "Vehicle",
            "speed": [
                {"type": "Property", "value": v, "observedAt": "2026-03-02T01:00:00Z"},
                {"type": "Property", "value": 10, "observedAt": "2026-03-02T02:00:00Z"}],
            "licensePlate": [
                {"type": "Property", "value": plate, "observedAt": "2026-03-02T01:00:00Z"}]});
        let r = g
            .call(
                Some(&admin),
                "POST",
                "/ngsi-ld/v1/temporal/entities",
                &[],
                Some(&body),
            )
            .await;
        assert!(r.status.is_success(), "{}", r.text);
    }
    let test = |attr: &str| {
        json!({
            "rule": {"id": "t", "category": "traffic", "for": {"type": "Vehicle"},
                     "when": {"kind": "threshold", "attr": attr, "above": 80}},
            "from": "2026-03-02T00:00:00Z", "to": "2026-03-03T00:00:00Z"
        })
    };
    let viewer = g.key("vic", &["viewer"], |_| {});
    // Speeds: both read them as stored, and both see the same events, values included.
    // Plates: the administrator's back-test replays them, the viewer's does not.
    for (attr, who, entities, observations) in [
        ("speed", &admin, 2, 4),
        ("speed", &viewer, 2, 4),
        ("licensePlate", &admin, 2, 2),
        ("licensePlate", &viewer, 0, 0),
    ] {
        let r = g
            .call(
                Some(who),
                "POST",
                "/platform/v1/backtests",
                &[],
                Some(&test(attr)),
            )
            .await;
        assert_eq!(r.status, 200, "{attr}: {}", r.text);
        assert_eq!(r.body["entities"], entities, "{attr}: {}", r.text);
        assert_eq!(r.body["observations"], observations, "{attr}: {}", r.text);
        if attr == "speed" {
            assert!(r.body["events"][0]["value"].is_number(), "{}", r.text);
        }
    }
}

#[tokio::test]
async fn content_types_are_read_whatever_their_case() {
    let app = app_with_hub().await;
    let rule = json!({"id": "r1", "category": "c", "for": {"type": "T"},
                      "when": {"kind": "threshold", "attr": "a", "above": 1}});
    let r = app
        .call(
            "POST",
            "/platform/v1/rules",
            &[("content-type", "Application/JSON; Charset=UTF-8")],
            Some(&rule.to_string()),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
}

#[tokio::test]
async fn only_a_citizens_request_is_rated() {
    let app = app_with_hub().await;
    let cfg = json!({"services": [{"service_code": "pothole", "service_name": "Pothole"}],
                     "api_keys": ["k"]});
    assert_eq!(app.put("/platform/v1/open311", &cfg).await.status, 200);
    let r = app
        .post(
            "/platform/v1/incidents",
            &json!({"category": "a", "title": "b"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let n = r.body["id"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    let r = app
        .call(
            "POST",
            &format!("/open311/v2/requests/{n}/rating.json"),
            &[("content-type", "application/x-www-form-urlencoded")],
            Some("api_key=k&rating=5"),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
}
