//! Governance through the real HTTP stack, as `serve` runs it with authentication on:
//! API keys, the default policies over a classification, filtered and masked reads,
//! per-entity refusals in batches, the policy and key APIs, and who did what.

use serde_json::{json, Value};

use super::harness::{app_governed, Governed};

fn classification() -> Value {
    json!({
        "types": {
            "AirQualityObserved": {"level": "public", "owner": "environment"},
            "Vehicle": {"level": "internal", "owner": "transport"},
            "Camera": {"level": "core", "owner": "police"}
        },
        "attributes": {"Vehicle.licensePlate": {"level": "important"}}
    })
}

const ENTITIES: &str = "/ngsi-ld/v1/entities";

pub async fn city() -> Governed {
    let g = app_governed(classification()).await;
    let admin = g.admin.clone();
    let batch = json!([
        {"id": "urn:ngsi-ld:Vehicle:1", "type": "Vehicle",
         "licensePlate": {"type": "Property", "value": "粤B12345"},
         "speed": {"type": "Property", "value": 42}},
        {"id": "urn:ngsi-ld:Vehicle:2", "type": "Vehicle",
         "licensePlate": {"type": "Property", "value": "粤A67890"},
         "speed": {"type": "Property", "value": 7}},
        {"id": "urn:ngsi-ld:Camera:1", "type": "Camera",
         "status": {"type": "Property", "value": "on"}},
        {"id": "urn:ngsi-ld:AirQualityObserved:1", "type": "AirQualityObserved",
         "pm25": {"type": "Property", "value": 12}}
    ]);
    let r = g
        .call(
            Some(&admin),
            "POST",
            "/ngsi-ld/v1/entityOperations/create",
            &[],
            Some(&batch),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    g
}

#[tokio::test]
async fn credentials_are_checked_and_bound_to_their_limits() {
    let g = city().await;
    // A wrong key: 401 with a challenge, never a fall-back to anonymous.
    let mut wrong = g.admin.clone();
    wrong.pop();
    wrong.push('!');
    let r = g.call(Some(&wrong), "GET", ENTITIES, &[], None).await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"citybrain\"")
    );
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let r = g
        .app
        .call("GET", ENTITIES, &[("authorization", "Basic YTpi")], None)
        .await;
    assert_eq!(r.status, 401);

    // A read-only key of an administrator cannot write.
    let ro = g.key("root", &["admin"], |k| k.scopes = vec!["read".into()]);
    let car = json!({"id": "urn:ngsi-ld:Vehicle:9", "type": "Vehicle"});
    let r = g.call(Some(&ro), "POST", ENTITIES, &[], Some(&car)).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = g
        .call(
            Some(&ro),
            "GET",
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Camera:1",
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 200);

    // A key bound to a tenant cannot spoof another with the tenant header.
    let water = g.key("wu", &["operator"], |k| {
        k.tenants = Some(vec!["water".into()])
    });
    let r = g
        .call(
            Some(&water),
            "POST",
            ENTITIES,
            &[("NGSILD-Tenant", "water")],
            Some(&car),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = g
        .call(
            Some(&water),
            "GET",
            "/ngsi-ld/v1/entities?type=Vehicle",
            &[],
            None,
        )
        .await;
    assert_eq!(
        r.status, 403,
        "the default tenant is not the key's: {}",
        r.text
    );
    // Another tenant that exists: refused, and nothing of it answered.
    let r = g
        .call(
            Some(&g.admin),
            "POST",
            ENTITIES,
            &[("NGSILD-Tenant", "traffic")],
            Some(&car),
        )
        .await;
    assert_eq!(r.status, 201);
    let r = g
        .call(
            Some(&water),
            "GET",
            "/ngsi-ld/v1/entities?type=Vehicle",
            &[("NGSILD-Tenant", "traffic")],
            None,
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(!r.text.contains("Vehicle:9"));

    // Refusals are counted (a burst of them opens a security incident).
    let r = g.call(Some(&g.admin), "GET", "/metrics", &[], None).await;
    let denied = r
        .text
        .lines()
        .find(|l| l.starts_with("citybrain_auth_denied_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok());
    assert!(
        denied.is_some_and(|d| d >= 3.0),
        "{denied:?} {}",
        r.text
            .lines()
            .filter(|l| l.contains("auth"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // A revoked key stops working at once.
    let id = g.keys.list().last().unwrap().id.clone();
    g.keys.revoke(&id, chrono::DateTime::UNIX_EPOCH).unwrap();
    let r = g
        .call(
            Some(&water),
            "GET",
            ENTITIES,
            &[("NGSILD-Tenant", "water")],
            None,
        )
        .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn reads_are_filtered_and_masked_not_refused() {
    let g = city().await;
    let viewer = g.key("vic", &["viewer"], |_| {});

    // A viewer: vehicles with plates partially masked, no cameras, counts that agree.
    let r = g
        .call(
            Some(&viewer),
            "GET",
            "/ngsi-ld/v1/entities?type=Vehicle,Camera&count=true&options=keyValues",
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("ngsild-results-count"), Some("2"));
    let plates: Vec<&str> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["licensePlate"].as_str().unwrap())
        .collect();
    assert_eq!(plates, ["粤B****5", "粤A****0"]);
    assert!(!r.text.contains("12345") && !r.text.contains("Camera"));
    // Paging over what may be seen.
    let r = g
        .call(
            Some(&viewer),
            "GET",
            "/ngsi-ld/v1/entities?type=Vehicle,Camera&limit=1&offset=1&count=true",
            &[],
            None,
        )
        .await;
    assert_eq!(r.body.as_array().unwrap().len(), 1);
    assert_eq!(r.header("ngsild-results-count"), Some("2"));
    // A filter cannot probe what a mask hides.
    let r = g
        .call(
            Some(&viewer),
            "GET",
            "/ngsi-ld/v1/entities?type=Vehicle&q=licensePlate==%22%E7%B2%A4B12345%22",
            &[],
            None,
        )
        .await;
    assert_eq!(r.body, json!([]), "{}", r.text);
    // A camera by id: not found, as if it did not exist.
    let r = g
        .call(
            Some(&viewer),
            "GET",
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Camera:1",
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 404);

    // Anonymous: public data only, and a 200 with what may be seen.
    let r = g
        .call(
            None,
            "GET",
            "/ngsi-ld/v1/entities?type=Vehicle,AirQualityObserved,Camera",
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let ids: Vec<&str> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["urn:ngsi-ld:AirQualityObserved:1"]);

    // The administrator sees everything as stored.
    let r = g
        .call(
            Some(&g.admin),
            "GET",
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:1?options=keyValues",
            &[],
            None,
        )
        .await;
    assert_eq!(r.body["licensePlate"], "粤B12345");

    // The temporal API leaves out what may not be seen too.
    let r = g
        .call(
            Some(&viewer),
            "GET",
            "/ngsi-ld/v1/temporal/entities?type=Camera",
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body, json!([]));
}

#[tokio::test]
async fn batches_report_each_refusal() {
    let g = city().await;
    let operator = g.key("olga", &["operator"], |_| {});
    let batch = json!([
        {"id": "urn:ngsi-ld:Vehicle:3", "type": "Vehicle"},
        {"id": "urn:ngsi-ld:Camera:2", "type": "Camera"}
    ]);
    let r = g
        .call(
            Some(&operator),
            "POST",
            "/ngsi-ld/v1/entityOperations/upsert",
            &[],
            Some(&batch),
        )
        .await;
    assert_eq!(r.status, 207, "{}", r.text);
    assert_eq!(r.body["success"], json!(["urn:ngsi-ld:Vehicle:3"]));
    assert_eq!(r.body["errors"][0]["entityId"], "urn:ngsi-ld:Camera:2");
    assert_eq!(r.body["errors"][0]["error"]["status"], 403, "{}", r.text);
    // Read back: the camera was not written.
    let r = g
        .call(
            Some(&g.admin),
            "GET",
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Camera:2",
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn policies_and_keys_are_managed_through_the_api() {
    let g = city().await;
    let viewer = g.key("vic", &["viewer"], |_| {});
    let air = json!({"id": "urn:ngsi-ld:AirQualityObserved:2", "type": "AirQualityObserved"});
    let r = g
        .call(Some(&viewer), "POST", ENTITIES, &[], Some(&air))
        .await;
    assert_eq!(r.status, 403);

    // Viewers may not change policies; a bad policy is refused naming it.
    let r = g
        .call(
            Some(&viewer),
            "PUT",
            "/platform/v1/policies",
            &[("content-type", "text/plain")],
            None,
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let bad = json!({"policies": "@id(\"x\") permit (principal, action, resource) when { resource.color == 1 };"});
    let r = g
        .call(
            Some(&g.admin),
            "PUT",
            "/platform/v1/policies",
            &[],
            Some(&bad),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.body["detail"].as_str().unwrap().contains("color"),
        "{}",
        r.text
    );

    // A new version that lets viewers record air quality, in force at once.
    let text = format!(
        "{}\n@id(\"viewers-record-air\") permit (principal in Role::\"viewer\", action == Action::\"create\", resource is EntityType) when {{ resource.name == \"AirQualityObserved\" }};",
        citybrain_policy::DEFAULT_POLICIES
    );
    let r = g
        .call(
            Some(&g.admin),
            "PUT",
            "/platform/v1/policies",
            &[],
            Some(&json!({"policies": text})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (r.body["version"].as_u64(), r.body["author"].as_str()),
        (Some(1), Some("user:root"))
    );
    let r = g
        .call(Some(&viewer), "POST", ENTITIES, &[], Some(&air))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = g
        .call(
            Some(&viewer),
            "GET",
            "/platform/v1/policies/versions",
            &[],
            None,
        )
        .await;
    assert_eq!(r.body.as_array().unwrap().len(), 1);

    // Keys through the API: shown once, usable, revocable.
    let r = g
        .call(
            Some(&g.admin),
            "POST",
            "/platform/v1/keys",
            &[],
            Some(&json!({"user": "dana", "roles": ["operator"]})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let key = r.body["key"].as_str().unwrap().to_string();
    let id = r.body["id"].as_str().unwrap().to_string();
    let r = g
        .call(Some(&g.admin), "GET", "/platform/v1/keys", &[], None)
        .await;
    assert!(!r.text.contains(&key[21..]), "listings never show secrets");
    let r = g
        .call(Some(&key), "GET", "/platform/v1/incidents", &[], None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = g
        .call(
            Some(&viewer),
            "POST",
            "/platform/v1/keys",
            &[],
            Some(&json!({"user": "me", "roles": ["admin"]})),
        )
        .await;
    assert_eq!(r.status, 403, "a viewer cannot mint an administrator key");
    let r = g
        .call(
            Some(&g.admin),
            "DELETE",
            &format!("/platform/v1/keys/{id}"),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    let r = g
        .call(Some(&key), "GET", "/platform/v1/incidents", &[], None)
        .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn who_did_it_is_the_authenticated_user() {
    let g = city().await;
    let operator = g.key("olga", &["operator"], |_| {});
    let incident = json!({"title": "Signal failure", "category": "traffic", "severity": "high"});
    let r = g
        .call(
            Some(&operator),
            "POST",
            "/platform/v1/incidents",
            &[],
            Some(&incident),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let text = r.text.clone();
    assert!(text.contains("user:olga"), "{text}");
    let r = g
        .call(
            Some(&operator),
            "PUT",
            "/platform/v1/mode",
            &[],
            Some(&json!({"mode": "emergency", "reason": "flood"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.text.contains("user:olga"), "{}", r.text);
    let viewer = g.key("vic", &["viewer"], |_| {});
    let r = g
        .call(
            Some(&viewer),
            "PUT",
            "/platform/v1/mode",
            &[],
            Some(&json!({"mode": "normal", "reason": "x"})),
        )
        .await;
    assert_eq!(r.status, 403);
}

/// The administrator changes a camera (core data), then a vehicle's speed to 55.
async fn camera_then_vehicle(g: &Governed) {
    for (id, attr, value) in [
        ("urn:ngsi-ld:Camera:1", "status", json!("off")),
        ("urn:ngsi-ld:Vehicle:1", "speed", json!(55)),
    ] {
        let patch = json!({attr: {"type": "Property", "value": value}});
        let r = g
            .call(
                Some(&g.admin),
                "PATCH",
                &format!("/ngsi-ld/v1/entities/{id}/attrs"),
                &[],
                Some(&patch),
            )
            .await;
        assert_eq!(r.status, 204, "{}", r.text);
    }
}

#[tokio::test]
async fn notifications_carry_what_the_subscriber_may_see() {
    use std::time::Duration;
    let g = city().await;
    let viewer = g.key("vic", &["viewer"], |_| {});
    let (uri, mut rx) = super::subscriptions::receiver(Duration::ZERO).await;
    let sub = json!({"type": "Subscription", "entities": [{"type": "Vehicle"}, {"type": "Camera"}],
        "notification": {"format": "keyValues", "endpoint": {"uri": uri, "accept": "application/json"}}});
    let r = g
        .call(
            Some(&viewer),
            "POST",
            "/ngsi-ld/v1/subscriptions",
            &[],
            Some(&sub),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    // The administrator changes a camera, then a vehicle.
    camera_then_vehicle(&g).await;
    // Notifications until the vehicle's new speed (the feed may still carry the
    // entities' creation, which the new subscription can see too): never a camera,
    // always a masked plate.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, body) = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("a notification of the vehicle's speed")
            .unwrap();
        for data in body["data"].as_array().unwrap() {
            assert_eq!(
                data["type"], "Vehicle",
                "the camera is not notified: {body}"
            );
            assert_eq!(
                data["licensePlate"].as_str().map(|p| p.contains('*')),
                Some(true),
                "{body}"
            );
        }
        if body["data"][0]["speed"] == 55 {
            assert_eq!(body["data"][0]["licensePlate"], "粤B****5");
            break;
        }
    }
    // Nothing else arrives (the camera's change was skipped, not delayed).
    assert!(tokio::time::timeout(Duration::from_millis(300), rx.recv())
        .await
        .is_err());
}

#[tokio::test]
async fn a_live_stream_carries_what_its_reader_may_see() {
    use std::time::Duration;
    let g = city().await;
    let viewer = g.key("vic", &["viewer"], |_| {});
    let auth = format!("Bearer {viewer}");
    let mut ev = super::live::Events::open_with(
        &g.app,
        "type=Vehicle,Camera&format=keyValues",
        &[("authorization", auth.as_str())],
    )
    .await;
    let (name, _) = ev.next(Duration::from_secs(5)).await.expect("ready");
    assert_eq!(name, "ready");
    camera_then_vehicle(&g).await;
    // The camera (core data, hidden from viewers) is never streamed; vehicles come with
    // their plates masked (the feed may still carry the entities' creation).
    loop {
        let (name, n) = ev.next(Duration::from_secs(5)).await.expect("the vehicle");
        assert_eq!(name, "notification");
        for d in n["data"].as_array().unwrap() {
            assert_eq!(d["type"], "Vehicle", "{n}");
            assert!(d["licensePlate"].as_str().unwrap().contains('*'), "{n}");
        }
        if n["data"][0]["speed"] == 55 {
            assert_eq!(n["data"][0]["licensePlate"], "粤B****5");
            break;
        }
    }
    assert!(ev.next(Duration::from_millis(300)).await.is_none());
    // Another tenant's changes never reach it either.
    let other = json!({"id": "urn:ngsi-ld:Vehicle:9", "type": "Vehicle",
        "speed": {"type": "Property", "value": 1}});
    let r = g
        .call(
            Some(&g.admin),
            "POST",
            ENTITIES,
            &[("ngsild-tenant", "elsewhere")],
            Some(&other),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(ev.next(Duration::from_millis(300)).await.is_none());
}

#[tokio::test]
async fn history_shows_no_more_than_the_entity_does() {
    let g = city().await;
    let viewer = g.key("vic", &["viewer"], |_| {});
    let r = g
        .call(
            Some(&viewer),
            "GET",
            "/ngsi-ld/v1/temporal/entities?type=Vehicle&options=temporalValues",
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body.as_array().unwrap().len(), 2, "{}", r.text);
    assert!(r.text.contains("speed"), "{}", r.text);
    // The plate is masked for a viewer: its past values are shown masked, as the
    // entity shows it now, never as stored.
    assert!(r.text.contains("粤B****5"), "{}", r.text);
    assert!(!r.text.contains("12345"), "{}", r.text);
    // A filter cannot probe the masked history, and no aggregate is made of it.
    for probe in [
        "/ngsi-ld/v1/temporal/entities?type=Vehicle&q=licensePlate%3D%3D%22%E7%B2%A4B12345%22",
        "/ngsi-ld/v1/temporal/entities?type=Vehicle&q=licensePlate~%3D%2212345%22",
    ] {
        let r = g.call(Some(&viewer), "GET", probe, &[], None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body, json!([]), "{probe}: {}", r.text);
    }
    let r = g
        .call(
            Some(&viewer),
            "GET",
            "/ngsi-ld/v1/temporal/entities?type=Vehicle&options=aggregatedValues&aggrMethods=totalCount,distinctCount",
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(!r.text.contains("licensePlate"), "{}", r.text);
    // An analyst sees the history pseudonymised, with the pseudonym the entity shows.
    let analyst = g.key("ann", &["analyst"], |_| {});
    let now = g
        .call(
            Some(&analyst),
            "GET",
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:1?options=keyValues",
            &[],
            None,
        )
        .await;
    let pseudonym = now.body["licensePlate"].as_str().unwrap().to_string();
    assert!(pseudonym.starts_with("pn:"), "{}", now.text);
    let past = g
        .call(
            Some(&analyst),
            "GET",
            "/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:Vehicle:1?options=temporalValues",
            &[],
            None,
        )
        .await;
    assert_eq!(
        past.body["licensePlate"]["values"][0][0],
        json!(pseudonym),
        "{}",
        past.text
    );

    // A deleted attribute's history is masked all the same (it is judged by its name,
    // not by a current value to compare with).
    let r = g
        .call(
            Some(&g.admin),
            "DELETE",
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:1/attrs/licensePlate",
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = g
        .call(
            Some(&viewer),
            "GET",
            "/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:Vehicle:1?options=temporalValues",
            &[],
            None,
        )
        .await;
    assert!(!r.text.contains("12345"), "{}", r.text);
    let r = g
        .call(
            Some(&g.admin),
            "GET",
            "/ngsi-ld/v1/temporal/entities?type=Vehicle&options=temporalValues",
            &[],
            None,
        )
        .await;
    assert!(r.text.contains("12345"), "{}", r.text);
}

#[tokio::test]
async fn a_range_filter_cannot_bisect_a_masked_value() {
    let g = city().await;
    let viewer = g.key("vic", &["viewer"], |_| {});
    // The viewer sees 粤B****5 for the stored 粤B12345. Ranges from the masked value up
    // to a guess: if stored values picked the candidates, the answer would change
    // with the guess (below or above 粤B12345) and reveal it.
    let mut answers = Vec::new();
    for guess in ["%E7%B2%A4B1", "%E7%B2%A4B2"] {
        let uri = format!(
            "/ngsi-ld/v1/entities?type=Vehicle&q=licensePlate%3E%3D%22%E7%B2%A4B****5%22;licensePlate%3C%22{guess}%22&options=keyValues"
        );
        let r = g.call(Some(&viewer), "GET", &uri, &[], None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        answers.push(r.body.clone());
    }
    assert_eq!(
        answers[0], answers[1],
        "the answer depends on the stored value"
    );
    assert_eq!(answers[0].as_array().unwrap().len(), 1, "{:?}", answers[0]);
    // The administrator, who sees plates as stored, gets the index's fast path.
    let r = g
        .call(Some(&g.admin), "GET", "/ngsi-ld/v1/entities?type=Vehicle&q=licensePlate%3E%3D%22%E7%B2%A4B1%22;licensePlate%3C%22%E7%B2%A4B2%22", &[], None)
        .await;
    assert_eq!(r.body.as_array().unwrap().len(), 1, "{}", r.text);
}

#[tokio::test]
async fn each_principal_has_its_own_rate() {
    // The harness allows 5 requests/s with a burst of 500 per principal.
    let g = city().await;
    let greedy = g.key("greedy", &["viewer"], |_| {});
    let other = g.key("other", &["viewer"], |_| {});
    let mut limited = None;
    for i in 0..600 {
        let r = g
            .call(Some(&greedy), "GET", "/ngsi-ld/v1/types", &[], None)
            .await;
        if r.status == 429 {
            limited = Some((i, r));
            break;
        }
    }
    let (i, r) = limited.expect("the greedy caller is limited");
    assert!((500..=510).contains(&i), "limited after {i} requests");
    assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
    assert!(r.body["type"]
        .as_str()
        .unwrap()
        .ends_with("/TooManyRequests"));
    let r = g
        .call(Some(&other), "GET", "/ngsi-ld/v1/types", &[], None)
        .await;
    assert_eq!(r.status, 200, "another caller is not slowed");
}

#[tokio::test]
async fn every_action_is_in_the_audit_log_before_it_is_answered() {
    let g = city().await;
    let operator = g.key("olga", &["operator"], |_| {});
    let viewer = g.key("vic", &["viewer"], |_| {});
    let patch = json!({"speed": {"type": "Property", "value": 60}});
    let r = g
        .call(
            Some(&operator),
            "PATCH",
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:1/attrs",
            &[],
            Some(&patch),
        )
        .await;
    assert_eq!(r.status, 204);
    let rq = r.header("x-request-id").unwrap().to_string();
    // Acknowledged means recorded: the request's entry is durable as soon as the
    // answer is; its outcome follows.
    let find = |rq: &str| {
        g.audit
            .entries(0, 10_000)
            .unwrap()
            .into_iter()
            .filter(|e| e["rq"] == rq || e["outcome"] == rq)
            .collect::<Vec<_>>()
    };
    let found = find(&rq);
    assert_eq!(found[0]["actor"], "user:olga");
    assert_eq!(found[0]["method"], "PATCH");
    settle(&g.audit, g.audit.size() + 1).await;
    assert_eq!(find(&rq)[1]["status"], 204);
    // A refused credential and a read by a user are recorded; an anonymous read of
    // public data is not.
    let before = g.audit.size();
    g.call(
        Some("cbk_0000000000000000_nope"),
        "GET",
        "/ngsi-ld/v1/types",
        &[],
        None,
    )
    .await;
    g.call(
        Some(&viewer),
        "GET",
        "/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:1",
        &[],
        None,
    )
    .await;
    g.call(
        None,
        "GET",
        "/ngsi-ld/v1/entities?type=AirQualityObserved",
        &[],
        None,
    )
    .await;
    // The refusal and the user's read, each one entry with its status.
    assert_eq!(settle(&g.audit, before + 2).await, before + 2);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(
        g.audit.size(),
        before + 2,
        "the anonymous read is not recorded"
    );
    let refusal = g.audit.entries(before, 2).unwrap();
    assert!(
        refusal
            .iter()
            .any(|e| e["status"] == 401 && e["actor"] == "anonymous"),
        "{refusal:?}"
    );

    // Viewers may not read who did what; operators may, with proofs.
    let r = g
        .call(Some(&viewer), "GET", "/platform/v1/audit", &[], None)
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = g
        .call(Some(&operator), "GET", "/platform/v1/audit", &[], None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let note = r.body["checkpoint"].as_str().unwrap().to_string();
    let (name, key) =
        citybrain_audit::note::parse_verifier_key(r.body["verifierKey"].as_str().unwrap()).unwrap();
    let cp = citybrain_audit::note::Checkpoint::open(&note, &name, &key).unwrap();
    let index = cp.size - 3;
    let r = g
        .call(
            Some(&operator),
            "GET",
            &format!(
                "/platform/v1/audit/proofs/inclusion?index={index}&size={}",
                cp.size
            ),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let proof: Vec<String> = serde_json::from_value(r.body["proof"].clone()).unwrap();
    let proof = citybrain_audit::proof_hashes(&proof).unwrap();
    let entry = g.audit.entries(index, 1).unwrap();
    let leaf = citybrain_audit::merkle::leaf_hash(&serde_json::to_vec(&entry[0]).unwrap());
    assert!(citybrain_audit::merkle::verify_inclusion(
        index, cp.size, &leaf, &proof, &cp.root
    ));
    let report =
        citybrain_audit::verify(&g.audit_dir, &g.audit_dir.join("../security"), None).unwrap();
    assert!(report.problems.is_empty(), "{report:?}");
}

/// Waits (2 s at most) until the audit log holds `n` entries; its size then.
async fn settle(log: &citybrain_audit::AuditLog, n: u64) -> u64 {
    for _ in 0..200 {
        if log.size() >= n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    log.size()
}

/// A subscription is its owner's: another user neither lists, reads, changes nor
/// deletes it; administrators see every one.
#[tokio::test]
async fn subscriptions_belong_to_their_owners() {
    let g = city().await;
    let vic = g.key("vic", &["viewer"], |_| {});
    let val = g.key("val", &["viewer"], |_| {});
    let sub = json!({"id": "urn:ngsi-ld:Subscription:vic-1", "type": "Subscription",
                     "entities": [{"type": "Vehicle"}],
                     "notification": {"endpoint": {"uri": "http://127.0.0.1:9/none"}}});
    let r = g
        .call(
            Some(&vic),
            "POST",
            "/ngsi-ld/v1/subscriptions",
            &[],
            Some(&sub),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let one = "/ngsi-ld/v1/subscriptions/urn:ngsi-ld:Subscription:vic-1";
    let listed = |r: &super::harness::Resp| {
        r.body
            .as_array()
            .map(|a| a.iter().filter(|s| s["id"] == sub["id"]).count())
            .unwrap_or(0)
    };
    let r = g
        .call(Some(&vic), "GET", "/ngsi-ld/v1/subscriptions", &[], None)
        .await;
    assert_eq!(listed(&r), 1, "{}", r.text);
    let r = g
        .call(Some(&val), "GET", "/ngsi-ld/v1/subscriptions", &[], None)
        .await;
    assert_eq!(listed(&r), 0, "{}", r.text);
    let r = g.call(Some(&val), "GET", one, &[], None).await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = g
        .call(
            Some(&val),
            "PATCH",
            one,
            &[],
            Some(&json!({"isActive": false})),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = g.call(Some(&val), "DELETE", one, &[], None).await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = g
        .call(
            Some(&g.admin),
            "GET",
            "/ngsi-ld/v1/subscriptions",
            &[],
            None,
        )
        .await;
    assert_eq!(listed(&r), 1, "{}", r.text);
    // Still there, unchanged, for its owner, who manages it.
    let r = g.call(Some(&vic), "GET", one, &[], None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_ne!(r.body["isActive"], json!(false), "{}", r.text);
    let r = g
        .call(
            Some(&vic),
            "PATCH",
            one,
            &[],
            Some(&json!({"isActive": false})),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = g.call(Some(&vic), "DELETE", one, &[], None).await;
    assert_eq!(r.status, 204, "{}", r.text);
}
