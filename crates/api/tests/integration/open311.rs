//! Open311 GeoReport v2: services, definitions, requests in and out (JSON and XML),
//! tokens, errors as the spec gives them, the status following the incident, ratings.

use serde_json::{json, Value};

use super::harness::{app_with_hub, App};

async fn setup() -> App {
    let app = app_with_hub().await;
    let cfg = json!({
        "services": [
            {"service_code": "pothole", "service_name": "Pothole", "description": "A hole in the road",
             "keywords": ["road", "street"], "group": "streets", "category": "roads",
             "attributes": [
                {"code": "size", "datatype": "singlevaluelist", "required": true, "order": 1,
                 "description": "How big is it?",
                 "values": [{"key": "s", "name": "small"}, {"key": "l", "name": "large"}]},
                {"code": "depth_cm", "datatype": "number", "description": "Depth in cm", "order": 2}
             ]},
            {"service_code": "streetlight", "service_name": "Street light out"}
        ],
        "api_keys": ["k-123"]
    });
    let r = app.put("/platform/v1/open311", &cfg).await;
    assert_eq!(r.status, 200, "{}", r.text);
    app.put(
        "/platform/v1/routing",
        &json!({"roads": "road-maintenance"}),
    )
    .await;
    app
}

async fn post_form(app: &App, uri: &str, form: &str) -> super::harness::Resp {
    app.call(
        "POST",
        uri,
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(form),
    )
    .await
}

#[tokio::test]
async fn a_citizen_request_goes_in_is_handled_and_comes_back_out() {
    let app = setup().await;
    // Discovery and services, JSON and XML.
    let r = app.get("/open311/v2/discovery.json").await;
    assert_eq!(
        r.body["endpoints"][0]["specification"],
        "http://wiki.open311.org/GeoReport_v2"
    );
    let r = app.get("/open311/v2/services.json").await;
    assert_eq!(r.body[0]["service_code"], "pothole");
    assert_eq!(r.body[0]["metadata"], true);
    assert_eq!(r.body[1]["metadata"], false);
    assert_eq!(r.body[0]["keywords"], "road,street");
    let r = app.get("/open311/v2/services.xml").await;
    assert!(r.header("content-type").unwrap().starts_with("text/xml"));
    assert!(
        r.text
            .contains("<services><service><service_code>pothole</service_code>"),
        "{}",
        r.text
    );
    let r = app.get("/open311/v2/services/pothole.xml").await;
    assert!(
        r.text.contains(
            "<service_definition><service_code>pothole</service_code><attributes><attribute>"
        ),
        "{}",
        r.text
    );
    assert!(
        r.text
            .contains("<values><value><key>s</key><name>small</name></value>"),
        "{}",
        r.text
    );
    let r = app.get("/open311/v2/services/pothole.json").await;
    assert_eq!(r.body["attributes"][0]["code"], "size");

    // Errors as the spec gives them.
    let r = post_form(
        &app,
        "/open311/v2/requests.json",
        "service_code=pothole&lat=39.9&long=116.4",
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.body,
        json!([{"code": 403, "description": "api_key is required"}])
    );
    let r = post_form(
        &app,
        "/open311/v2/requests.xml",
        "api_key=k-123&service_code=nope&lat=39.9&long=116.4",
    )
    .await;
    assert_eq!(r.status, 404);
    assert!(r.text.contains("<errors><error><code>404</code><description>service_code 'nope' not found</description></error></errors>"), "{}", r.text);
    let r = post_form(
        &app,
        "/open311/v2/requests.json",
        "api_key=k-123&service_code=pothole",
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.body[0]["description"]
        .as_str()
        .unwrap()
        .contains("location is required"));
    let r = post_form(
        &app,
        "/open311/v2/requests.json",
        "api_key=k-123&service_code=pothole&lat=39.9&long=116.4",
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.body[0]["description"]
            .as_str()
            .unwrap()
            .contains("attribute[size] is required"),
        "{}",
        r.text
    );
    let r = post_form(
        &app,
        "/open311/v2/requests.json",
        "api_key=k-123&service_code=pothole&lat=39.9&long=116.4&attribute[size]=huge",
    )
    .await;
    assert_eq!(r.status, 400);

    // A good one: created, with a token.
    let form = "api_key=k-123&service_code=pothole&lat=39.91&long=116.40&attribute%5Bsize%5D=l\
                &attribute%5Bdepth_cm%5D=12&description=Deep+hole+near+the+school&email=a%40b.example\
                &media_url=https%3A%2F%2Fphotos.example%2F1.jpg";
    let r = post_form(&app, "/open311/v2/requests.json", form).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body[0]["service_request_id"]
        .as_str()
        .unwrap()
        .to_string();
    let token = r.body[0]["token"].as_str().unwrap().to_string();
    let r = app.get(&format!("/open311/v2/tokens/{token}.json")).await;
    assert_eq!(r.body[0]["service_request_id"], id.as_str());

    // It is an incident of the service's category, routed; the request shows it.
    let r = app.get(&format!("/open311/v2/requests/{id}.json")).await;
    let req = &r.body[0];
    assert_eq!(req["status"], "open");
    assert_eq!(req["service_code"], "pothole");
    assert_eq!(req["agency_responsible"], "road-maintenance");
    assert_eq!(req["lat"], 39.91);
    assert_eq!(req["long"], 116.40);
    assert_eq!(req["media_url"], "https://photos.example/1.jpg");
    assert!(
        req.get("email").is_none(),
        "contact details are not published"
    );
    let incident = format!("urn:ngsi-ld:Incident:{id}");
    let r = app.get(&format!("/platform/v1/incidents/{incident}")).await;
    assert_eq!(r.body["category"], "roads");

    // Handled: status and notes follow the incident.
    let t = format!("/platform/v1/incidents/{incident}/transitions");
    app.post(&t, &json!({"to": "dispatched", "unit": "crew-2"}))
        .await;
    app.post(&t, &json!({"to": "in_progress"})).await;
    app.post(
        &format!("/platform/v1/incidents/{incident}/comments"),
        &json!({"text": "Filled with asphalt"}),
    )
    .await;
    let r = app.get(&format!("/open311/v2/requests/{id}.json")).await;
    assert_eq!(r.body[0]["status"], "open");
    assert_eq!(r.body[0]["status_notes"], "Filled with asphalt");
    // Rating before closing is refused.
    let r = post_form(
        &app,
        &format!("/open311/v2/requests/{id}/rating.json"),
        "api_key=k-123&rating=5",
    )
    .await;
    assert_eq!(r.status, 409, "{}", r.text);
    app.post(&t, &json!({"to": "resolved"})).await;
    app.post(&t, &json!({"to": "closed"})).await;
    let r = app.get(&format!("/open311/v2/requests/{id}.xml")).await;
    assert!(r.text.contains("<status>closed</status>"), "{}", r.text);
    let r = post_form(
        &app,
        &format!("/open311/v2/requests/{id}/rating.json"),
        "api_key=k-123&rating=7",
    )
    .await;
    assert_eq!(r.status, 400);
    let r = post_form(
        &app,
        &format!("/open311/v2/requests/{id}/rating.json"),
        "api_key=k-123&rating=4",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body[0]["rating"], 4);
    let r = post_form(
        &app,
        &format!("/open311/v2/requests/{id}/rating.json"),
        "api_key=k-123&rating=5",
    )
    .await;
    assert_eq!(r.status, 409, "rated once");

    // GET requests with filters.
    let r2 = post_form(
        &app,
        "/open311/v2/requests.json",
        "api_key=k-123&service_code=streetlight&address_string=5+Main+St",
    )
    .await;
    let id2 = r2.body[0]["service_request_id"]
        .as_str()
        .unwrap()
        .to_string();
    let ids = |r: &Value| -> Vec<String> {
        r.as_array()
            .unwrap()
            .iter()
            .map(|x| x["service_request_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        ids(&app.get("/open311/v2/requests.json").await.body),
        vec![id2.clone(), id.clone()]
    );
    assert_eq!(
        ids(&app.get("/open311/v2/requests.json?status=open").await.body),
        vec![id2.clone()]
    );
    assert_eq!(
        ids(&app
            .get("/open311/v2/requests.json?status=closed")
            .await
            .body),
        vec![id.clone()]
    );
    assert_eq!(
        ids(&app
            .get("/open311/v2/requests.json?service_code=pothole,streetlight")
            .await
            .body)
        .len(),
        2
    );
    assert_eq!(
        ids(&app
            .get(&format!(
                "/open311/v2/requests.json?service_request_id={id}&status=open"
            ))
            .await
            .body),
        vec![id.clone()],
        "ids override other filters"
    );
    assert!(ids(&app.get("/open311/v2/requests.json?start_date=2000-01-01T00:00:00Z&end_date=2000-02-01T00:00:00Z").await.body).is_empty());
    let r = app.get("/open311/v2/requests.json?start_date=2000-01-01T00:00:00Z&end_date=2001-01-01T00:00:00Z").await;
    assert_eq!(r.status, 400, "more than 90 days");
    assert_eq!(
        app.get("/open311/v2/requests.json?status=lost")
            .await
            .status,
        400
    );
    let r = app.get("/open311/v2/requests/999.json").await;
    assert_eq!(
        (r.status.as_u16(), r.body[0]["code"].as_u64()),
        (404, Some(404))
    );
    assert_eq!(app.get("/open311/v2/services.yaml").await.status, 404);
}

/// GeoReport clients send `jurisdiction_id` with the other fields of the form: the
/// report is filed in that jurisdiction's tenant, and read back there only.
#[tokio::test]
async fn the_jurisdiction_in_a_form_body_is_the_tenant() {
    let app = app_with_hub().await;
    let cfg = json!({"services": [{"service_code": "pothole", "service_name": "Pothole"}],
                     "api_keys": ["k-west"]});
    let r = app
        .call(
            "PUT",
            "/platform/v1/open311",
            &[("ngsild-tenant", "west")],
            Some(&cfg.to_string()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = post_form(
        &app,
        "/open311/v2/requests.json",
        "jurisdiction_id=west&api_key=k-west&service_code=pothole&lat=52.5&long=13.4&description=deep",
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body[0]["service_request_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app
        .get(&format!(
            "/open311/v2/requests/{id}.json?jurisdiction_id=west"
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body[0]["description"], "deep");
    // The default tenant has no such request (nor the key it was filed with).
    let r = app.get(&format!("/open311/v2/requests/{id}.json")).await;
    assert_eq!(r.status, 404, "{}", r.text);
}
