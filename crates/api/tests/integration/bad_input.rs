use serde_json::{json, Value};

use super::harness::{app, app_with, vehicle};

/// (method, uri, headers, body, expected status, expected error type)
type Case = (
    &'static str,
    &'static str,
    Vec<(&'static str, &'static str)>,
    Option<String>,
    u16,
    &'static str,
);

#[tokio::test]
async fn malformed_requests_get_problem_details_not_5xx() {
    let app = app().await;
    let cases: Vec<Case> = vec![
        ("POST", "/ngsi-ld/v1/entities", vec![], Some("{not json".into()), 400, "InvalidRequest"),
        ("POST", "/ngsi-ld/v1/entities", vec![], Some("[1,2]".into()), 400, "InvalidRequest"),
        ("POST", "/ngsi-ld/v1/entities", vec![], Some(r#"{"id":"urn:a:1","type":"T","@context":{}}"#.into()), 400, "BadRequestData"),
        ("POST", "/ngsi-ld/v1/entities", vec![("content-type", "application/ld+json")], Some(r#"{"id":"urn:a:1","type":"T"}"#.into()), 400, "BadRequestData"),
        ("POST", "/ngsi-ld/v1/entities", vec![("content-type", "text/plain")], Some("hello".into()), 415, "InvalidRequest"),
        ("POST", "/ngsi-ld/v1/entities", vec![], Some(r#"{"id":"not a uri","type":"T"}"#.into()), 400, "BadRequestData"),
        ("POST", "/ngsi-ld/v1/entities", vec![], Some(r#"{"id":"urn:a:1","type":"T","p":{"type":"Property"}}"#.into()), 400, "BadRequestData"),
        ("POST", "/ngsi-ld/v1/entities", vec![], Some(r#"{"id":"urn:a:1","type":"T","location":{"type":"GeoProperty","value":{"type":"Point","coordinates":["x",1]}}}"#.into()), 400, "BadRequestData"),
        ("GET", "/ngsi-ld/v1/entities?type=T&q=speed%3D%3D", vec![], None, 400, "BadRequestData"),
        ("GET", "/ngsi-ld/v1/entities?type=T&q=(a%3E1", vec![], None, 400, "BadRequestData"),
        ("GET", "/ngsi-ld/v1/entities?type=T&georel=near&geometry=Point&coordinates=%5B1,2%5D", vec![], None, 400, "BadRequestData"),
        ("GET", "/ngsi-ld/v1/entities?type=T&georel=within&geometry=Polygon&coordinates=%5B1", vec![], None, 400, "BadRequestData"),
        ("GET", "/ngsi-ld/v1/entities?type=T&georel=within", vec![], None, 400, "BadRequestData"),
        ("GET", "/ngsi-ld/v1/entities", vec![], None, 400, "BadRequestData"),
        ("GET", "/ngsi-ld/v1/entities?type=T&limit=-1", vec![], None, 400, "BadRequestData"),
        ("GET", "/ngsi-ld/v1/entities?type=T&idPattern=(", vec![], None, 400, "BadRequestData"),
        ("GET", "/ngsi-ld/v1/entities?type=T&options=bogus", vec![], None, 400, "InvalidRequest"),
        // The same on writes and subscriptions as on queries.
        ("POST", "/ngsi-ld/v1/entities?options=bogus", vec![], Some(r#"{"id":"urn:a:9","type":"T"}"#.into()), 400, "InvalidRequest"),
        ("POST", "/ngsi-ld/v1/subscriptions?options=keyValues,bogus", vec![], Some(r#"{"type":"Subscription","entities":[{"type":"T"}],"notification":{"endpoint":{"uri":"http://localhost:1/x"}}}"#.into()), 400, "InvalidRequest"),
        ("GET", "/ngsi-ld/v1/subscriptions?options=bogus", vec![], None, 400, "InvalidRequest"),
        ("GET", "/ngsi-ld/v1/entities/not-a-uri", vec![], None, 400, "BadRequestData"),
        ("GET", "/ngsi-ld/v1/entities/urn:a:1", vec![("accept", "text/html")], None, 406, "InvalidRequest"),
        ("POST", "/ngsi-ld/v1/entityOperations/create", vec![], Some("{}".into()), 400, "BadRequestData"),
        ("POST", "/ngsi-ld/v1/entityOperations/create", vec![], Some("[]".into()), 400, "BadRequestData"),
        ("POST", "/ngsi-ld/v1/subscriptions", vec![], Some(r#"{"type":"Subscription"}"#.into()), 400, "BadRequestData"),
        ("GET", "/ngsi-ld/v1/nothing-here", vec![], None, 404, "ResourceNotFound"),
        ("GET", "/ngsi-ld/v1/entities?type=T&bogus=1", vec![], None, 400, "InvalidRequest"),
        // `@…` is a JSON-LD keyword form, never an attribute name (ETSI 055_03_03).
        ("PUT", "/ngsi-ld/v1/entities/urn:a:1/attrs/@invalid", vec![], Some(r#"{"type":"Property","value":true}"#.into()), 400, "BadRequestData"),
        // No attribute between `attrs/` and the instance: not an instance (ETSI 016_02_06).
        ("PATCH", "/ngsi-ld/v1/temporal/entities/urn:a:1/attrs//urn:ngsi-ld:Instance:1", vec![], Some(r#"{"type":"Property","value":1}"#.into()), 405, "OperationNotSupported"),
        // A purge with no filter (NGSI-LD 1.9, 5.6.21) would reach every entity.
        ("DELETE", "/ngsi-ld/v1/entities", vec![], None, 400, "BadRequestData"),
        ("DELETE", "/ngsi-ld/v1/types", vec![], None, 405, "OperationNotSupported"),
    ];
    for (method, uri, headers, body, status, ty) in cases {
        let r = app.call(method, uri, &headers, body.as_deref()).await;
        assert_eq!(
            r.status.as_u16(),
            status,
            "{method} {uri} {body:?}: {}",
            r.text
        );
        assert_eq!(r.error_type(), ty, "{method} {uri}: {}", r.text);
        assert!(
            r.body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "detail present: {}",
            r.text
        );
    }
    // Nothing above changed state.
    let r = app.get("/ngsi-ld/v1/entities?type=T&count=true").await;
    assert_eq!(r.status.as_u16(), 200);
    assert_eq!(r.header("ngsild-results-count"), Some("0"));
}

#[tokio::test]
async fn error_details_name_the_field() {
    let app = app().await;
    let r = app.post("/ngsi-ld/v1/entities", &json!({"id": "urn:a:1", "type": "T", "speed": {"type": "Property", "value": 1, "observedAt": "soon"}})).await;
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("speed.observedAt"),
        "{}",
        r.text
    );
    let r = app
        .post(
            "/ngsi-ld/v1/entities",
            &json!({"id": "urn:a:1", "type": "T", "owner": {"type": "Relationship", "object": 5}}),
        )
        .await;
    assert!(
        r.body["detail"].as_str().unwrap().contains("owner"),
        "{}",
        r.text
    );
}

#[tokio::test]
async fn size_and_depth_limits() {
    let app = app_with(citybrain_api::HttpLimits {
        max_body_bytes: 10_000,
        max_json_depth: 20,
        ..Default::default()
    })
    .await;
    let mut big = vehicle("urn:ngsi-ld:Vehicle:big", 1.0, 0.0, 0.0);
    big["blob"] = Value::String("x".repeat(20_000));
    let r = app.post("/ngsi-ld/v1/entities", &big).await;
    assert_eq!(r.status.as_u16(), 413, "{}", r.text);
    let deep = format!(
        "{{\"id\":\"urn:a:1\",\"type\":\"T\",\"p\":{}1{}}}",
        "[".repeat(50),
        "]".repeat(50)
    );
    let r = app
        .call("POST", "/ngsi-ld/v1/entities", &[], Some(&deep))
        .await;
    assert_eq!(r.status.as_u16(), 400);
    assert!(r.text.contains("deeper"), "{}", r.text);
}

#[tokio::test]
async fn requests_beyond_the_concurrency_limit_are_shed_with_503() {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;
    let app = app_with(citybrain_api::HttpLimits {
        max_concurrent_requests: 1,
        ..Default::default()
    })
    .await;
    // The first request holds the only slot: its body never finishes arriving.
    let stuck = Request::builder()
        .method("POST")
        .uri("/ngsi-ld/v1/entities")
        .header("content-type", "application/json")
        .body(Body::from_stream(futures::stream::pending::<
            Result<Vec<u8>, std::io::Error>,
        >()))
        .unwrap();
    let first = tokio::spawn(app.router.clone().oneshot(stuck));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let r = app.get("/ngsi-ld/v1/types").await;
    assert_eq!(r.status.as_u16(), 503, "{}", r.text);
    assert!(r.body["detail"]
        .as_str()
        .unwrap()
        .contains("concurrent request limit"));
    first.abort();
}
