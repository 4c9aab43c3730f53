//! The attack suite: what a hostile caller tries against a governed server, each
//! attempt refused and, where it matters, checked by reading back that nothing
//! changed or leaked. Other attacks are tested where their defence lives; the index
//! is in `docs/security.md` ("Attack suite").

use serde_json::{json, Value};

use super::harness::{app_governed, Governed};

fn classification() -> Value {
    json!({
        "types": {
            "Vehicle": {"level": "internal", "owner": "transport"},
            "Camera": {"level": "core", "owner": "police"}
        }
    })
}

const CAMERA: &str = "urn:ngsi-ld:Camera:1";

async fn city() -> (Governed, String) {
    let g = app_governed(classification()).await;
    let long = format!("urn:ngsi-ld:Vehicle:{}", "a".repeat(200));
    let batch = json!([
        {"id": CAMERA, "type": "Camera", "status": {"type": "Property", "value": "on"},
         "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [120.1, 30.2]}}},
        {"id": long, "type": "Vehicle", "name": {"type": "Property", "value": "a".repeat(200)},
         "speed": {"type": "Property", "value": 10}}
    ]);
    let r = g
        .call(
            Some(&g.admin),
            "POST",
            "/ngsi-ld/v1/entityOperations/create",
            &[],
            Some(&batch),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let viewer = g.key("vic", &["viewer"], |_| {});
    (g, viewer)
}

#[tokio::test]
async fn regex_bombs_finish_and_oversized_patterns_are_refused() {
    let (g, viewer) = city().await;
    // Catastrophic backtracking patterns: the regex engine is linear-time (no
    // backtracking), so these answer at once, matching nothing.
    for uri in [
        "/ngsi-ld/v1/entities?type=Vehicle&idPattern=%5E(a%2B)%2B%24",
        "/ngsi-ld/v1/entities?type=Vehicle&idPattern=(a%7Caa)*b",
        "/ngsi-ld/v1/entities?type=Vehicle&q=name~%3D%22(a%7Caa)%2B%24b%22",
    ] {
        let r = g.call(Some(&viewer), "GET", uri, &[], None).await;
        assert_eq!(r.status, 200, "{uri}: {}", r.text);
        assert_eq!(r.body, json!([]), "{uri}");
    }
    // A pattern whose compiled form would be huge is refused by name, not built.
    let r = g
        .call(
            Some(&viewer),
            "GET",
            "/ngsi-ld/v1/entities?type=Vehicle&idPattern=(a%7B1000%7D)%7B1000%7D",
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("idPattern"), "{}", r.text);
}

#[tokio::test]
async fn query_injection_is_a_parse_error() {
    let (g, viewer) = city().await;
    for q in [
        "status%3D%3D%22on%22)%7C(type%3D%3DCamera",
        "status%3D%3D%22on%22%3B%3B",
        "%22%3B%20DROP%20TABLE%20x%3B--",
        "status%3D%3D%22on",
    ] {
        let uri = format!("/ngsi-ld/v1/entities?type=Camera&q={q}");
        let r = g.call(Some(&viewer), "GET", &uri, &[], None).await;
        assert_eq!(r.status, 400, "{q}: {}", r.text);
        assert!(
            r.body["type"].is_string() && r.body["detail"].is_string(),
            "{}",
            r.text
        );
    }
}

#[tokio::test]
async fn a_declared_purpose_is_a_short_name() {
    let (g, viewer) = city().await;
    let r = g
        .call(
            Some(&viewer),
            "GET",
            "/ngsi-ld/v1/types",
            &[("x-purpose", "<script>alert(1)</script>")],
            None,
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("X-Purpose"), "{}", r.text);
    let r = g
        .call(
            Some(&viewer),
            "GET",
            "/ngsi-ld/v1/types",
            &[("x-purpose", "research")],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn paths_cannot_escape_into_the_file_system() {
    let (g, _viewer) = city().await;
    for (method, uri) in [
        (
            "GET",
            "/ngsi-ld/v1/jsonldContexts/..%2F..%2F..%2Fetc%2Fpasswd",
        ),
        (
            "GET",
            "/ngsi-ld/v1/jsonldContexts/..%2Fsecurity%2Fkeys.json",
        ),
        ("GET", "/ngsi-ld/v1/entities/..%2F..%2Fsecurity%2Fkeys.json"),
        (
            "GET",
            "/platform/v1/datasets/..%2F..%2Fsecurity%2Fkeys.json",
        ),
        (
            "GET",
            "/platform/v1/catalog/datasets/..%2Faudit%2Flog.jsonl",
        ),
        ("POST", "/ingest/..%2F..%2Fetc%2Fpasswd"),
        ("GET", "/ingest/deadletters/..%2F..%2Fsecurity%2Fkeys.json"),
        ("GET", "/platform/v1/rules/..%2F..%2Fsecurity%2Fkeys.json"),
        (
            "GET",
            "/platform/v1/incidents/..%2F..%2Fsecurity%2Fkeys.json",
        ),
    ] {
        let r = g
            .call(Some(&g.admin), method, uri, &[], Some(&json!({})))
            .await;
        assert!(
            r.status.is_client_error(),
            "{method} {uri}: {} {}",
            r.status,
            r.text
        );
        for secret in ["root:x:", "\"hash\"", "cbk_", "audit-key", "\"seq\""] {
            assert!(
                !r.text.contains(secret),
                "{uri} leaked {secret}: {}",
                r.text
            );
        }
    }
}

#[tokio::test]
async fn restricted_data_does_not_leak_through_any_read_path() {
    let (g, viewer) = city().await;
    let reads: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", format!("/ngsi-ld/v1/entities/{CAMERA}"), None),
        ("GET", "/ngsi-ld/v1/entities?type=Camera".into(), None),
        ("GET", "/ngsi-ld/v1/entities?q=status%3D%3D%22on%22".into(), None),
        (
            "GET",
            "/ngsi-ld/v1/entities?georel=near%3BmaxDistance%3D%3D1000&geometry=Point&coordinates=%5B120.1,30.2%5D"
                .into(),
            None,
        ),
        ("GET", "/ngsi-ld/v1/entities?idPattern=Camera&attrs=status".into(), None),
        (
            "POST",
            "/ngsi-ld/v1/entityOperations/query".into(),
            Some(json!({"type": "Query", "entities": [{"type": "Camera"}]})),
        ),
        ("GET", "/ngsi-ld/v1/temporal/entities?type=Camera".into(), None),
        ("GET", format!("/ngsi-ld/v1/temporal/entities/{CAMERA}"), None),
        (
            "POST",
            "/ngsi-ld/v1/temporal/entityOperations/query".into(),
            Some(json!({"type": "Query", "entities": [{"type": "Camera"}]})),
        ),
    ];
    for (method, uri, body) in &reads {
        let r = g.call(Some(&viewer), method, uri, &[], body.as_ref()).await;
        assert!(
            r.status == 404 || r.body == json!([]),
            "{method} {uri}: {} {}",
            r.status,
            r.text
        );
        // A 404 may repeat the id the caller sent; nothing of the camera's content.
        for secret in ["\"on\"", "120.1", "\"Camera\""] {
            assert!(
                !r.text.contains(secret),
                "{method} {uri} leaked: {}",
                r.text
            );
        }
    }
    // Discovery names no type or attribute only the camera has.
    for uri in [
        "/ngsi-ld/v1/types",
        "/ngsi-ld/v1/types?details=true",
        "/ngsi-ld/v1/attributes",
    ] {
        let r = g.call(Some(&viewer), "GET", uri, &[], None).await;
        assert_eq!(r.status, 200, "{uri}: {}", r.text);
        assert!(!r.text.contains("Camera"), "{uri} leaked: {}", r.text);
        assert!(!r.text.contains("status"), "{uri} leaked: {}", r.text);
    }
    // A count says nothing either.
    let r = g
        .call(
            Some(&viewer),
            "GET",
            "/ngsi-ld/v1/entities?type=Camera&count=true&limit=0",
            &[],
            None,
        )
        .await;
    assert_eq!(r.header("ngsild-results-count"), Some("0"), "{}", r.text);
}

#[tokio::test]
async fn restricted_data_cannot_be_changed_through_any_write_path() {
    let (g, viewer) = city().await;
    let attrs = json!({"status": {"type": "Property", "value": "off"}});
    let whole =
        json!({"id": CAMERA, "type": "Camera", "status": {"type": "Property", "value": "off"}});
    let writes: Vec<(&str, String, Value)> = vec![
        (
            "PATCH",
            format!("/ngsi-ld/v1/entities/{CAMERA}/attrs"),
            attrs.clone(),
        ),
        (
            "POST",
            format!("/ngsi-ld/v1/entities/{CAMERA}/attrs"),
            attrs.clone(),
        ),
        (
            "PATCH",
            format!("/ngsi-ld/v1/entities/{CAMERA}"),
            attrs.clone(),
        ),
        (
            "PUT",
            format!("/ngsi-ld/v1/entities/{CAMERA}"),
            whole.clone(),
        ),
        (
            "PATCH",
            format!("/ngsi-ld/v1/entities/{CAMERA}/attrs/status"),
            json!({"value": "off"}),
        ),
        (
            "DELETE",
            format!("/ngsi-ld/v1/entities/{CAMERA}"),
            json!(null),
        ),
        (
            "POST",
            "/ngsi-ld/v1/entityOperations/upsert".into(),
            json!([whole.clone()]),
        ),
        (
            "POST",
            "/ngsi-ld/v1/entityOperations/update".into(),
            json!([whole.clone()]),
        ),
        (
            "POST",
            "/ngsi-ld/v1/entityOperations/merge".into(),
            json!([whole.clone()]),
        ),
        (
            "POST",
            "/ngsi-ld/v1/entityOperations/delete".into(),
            json!([CAMERA]),
        ),
        (
            "POST",
            "/ngsi-ld/v1/temporal/entities".into(),
            json!({"id": CAMERA, "type": "Camera",
                   "status": [{"type": "Property", "value": "off",
                               "observedAt": "2030-01-01T00:00:00Z"}]}),
        ),
        (
            "DELETE",
            format!("/ngsi-ld/v1/temporal/entities/{CAMERA}"),
            json!(null),
        ),
        // Re-typing: claim the id under a type the viewer may write? Viewers write
        // nothing; an operator may write Vehicles but not Cameras.
    ];
    for (method, uri, body) in &writes {
        let body = (!body.is_null()).then_some(body);
        let r = g.call(Some(&viewer), method, uri, &[], body).await;
        let refused = r.status == 403
            || r.status == 404
            || (r.status == 207
                && r.body["errors"].as_array().is_some_and(|e| !e.is_empty())
                && r.body["success"].as_array().is_none_or(|s| s.is_empty()));
        assert!(refused, "{method} {uri}: {} {}", r.status, r.text);
    }
    // An operator may write internal data, but cannot move the camera into a type it
    // may write.
    let op = g.key("olga", &["operator"], |_| {});
    let retype =
        json!({"id": CAMERA, "type": "Vehicle", "status": {"type": "Property", "value": "off"}});
    let r = g
        .call(
            Some(&op),
            "PUT",
            &format!("/ngsi-ld/v1/entities/{CAMERA}"),
            &[],
            Some(&retype),
        )
        .await;
    assert!(
        r.status == 403 || r.status == 404,
        "{} {}",
        r.status,
        r.text
    );
    // Read back as the administrator: untouched.
    let r = g
        .call(
            Some(&g.admin),
            "GET",
            &format!("/ngsi-ld/v1/entities/{CAMERA}"),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["type"], "Camera");
    assert_eq!(r.body["status"]["value"], "on", "{}", r.text);
}

/// Rule events carry what rules saw: a reader who may not see the entity does not see
/// its events, and readers who do not administer rules see them without the value.
#[tokio::test]
async fn rule_events_are_filtered_like_their_entities() {
    let (g, viewer) = city().await;
    for (id, ty, attr) in [
        ("cam-hot", "Camera", "temperature"),
        ("car-fast", "Vehicle", "speed"),
    ] {
        let rule = json!({"id": id, "category": "test", "for": {"type": ty},
                          "when": {"kind": "threshold", "attr": attr, "above": 50, "clear": 40}});
        let r = g
            .call(
                Some(&g.admin),
                "POST",
                "/platform/v1/rules",
                &[],
                Some(&rule),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let hot = json!({"temperature": {"type": "Property", "value": 90}});
    let r = g
        .call(
            Some(&g.admin),
            "POST",
            &format!("/ngsi-ld/v1/entities/{CAMERA}/attrs"),
            &[],
            Some(&hot),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let car = format!("urn:ngsi-ld:Vehicle:{}", "a".repeat(200));
    let fast = json!({"speed": {"type": "Property", "value": 99}});
    let r = g
        .call(
            Some(&g.admin),
            "PATCH",
            &format!("/ngsi-ld/v1/entities/{car}/attrs"),
            &[],
            Some(&fast),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    // The administrator sees both events, with values.
    let mut all = Value::Null;
    for _ in 0..100 {
        all = g
            .call(Some(&g.admin), "GET", "/platform/v1/events", &[], None)
            .await
            .body;
        if all.as_array().is_some_and(|a| a.len() >= 2) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(all.as_array().map(Vec::len), Some(2), "{all}");
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .all(|e| e["value"].is_number()),
        "{all}"
    );
    // The viewer: the vehicle's event only, without its value.
    let r = g
        .call(Some(&viewer), "GET", "/platform/v1/events", &[], None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let list = r.body.as_array().unwrap();
    assert_eq!(list.len(), 1, "{}", r.text);
    assert_eq!(list[0]["rule"], "car-fast");
    assert!(list[0].get("value").is_none(), "{}", r.text);
    assert!(!r.text.contains("Camera"), "{}", r.text);
}
