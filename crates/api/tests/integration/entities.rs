use serde_json::json;

use super::harness::{app, vehicle};

#[tokio::test]
async fn create_retrieve_conflict_delete() {
    let app = app().await;
    let r = app
        .post(
            "/ngsi-ld/v1/entities",
            &vehicle("urn:ngsi-ld:Vehicle:1", 50.0, 2.0, 41.0),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        r.header("location"),
        Some("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:1")
    );
    let r = app
        .post(
            "/ngsi-ld/v1/entities",
            &vehicle("urn:ngsi-ld:Vehicle:1", 50.0, 2.0, 41.0),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.error_type()), (409, "AlreadyExists"));

    let r = app.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:1").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body["speed"],
        json!({"type": "Property", "value": 50.0, "unitCode": "KMH"})
    );
    assert!(r
        .header("link")
        .unwrap()
        .contains("ngsi-ld-core-context-v1.8.jsonld"));
    assert_eq!(r.header("content-type"), Some("application/json"));

    let r = app
        .call(
            "GET",
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:1?options=keyValues,sysAttrs",
            &[("accept", "application/ld+json")],
            None,
        )
        .await;
    assert_eq!(r.body["speed"], json!(50.0));
    assert!(r.body["@context"].is_string());
    let r = app
        .get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:1?options=sysAttrs")
        .await;
    assert!(r.body["createdAt"].is_string() && r.body["speed"]["modifiedAt"].is_string());

    let r = app
        .call(
            "GET",
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:1",
            &[("accept", "application/geo+json")],
            None,
        )
        .await;
    assert_eq!(r.body["type"], "Feature");
    assert_eq!(r.body["geometry"]["type"], "Point");

    assert_eq!(
        app.delete("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:1")
            .await
            .status,
        204
    );
    let r = app.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:1").await;
    assert_eq!(
        (r.status.as_u16(), r.error_type()),
        (404, "ResourceNotFound")
    );
    assert_eq!(
        app.delete("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:1")
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn attribute_operations() {
    let app = app().await;
    let id = "urn:ngsi-ld:Vehicle:2";
    app.post("/ngsi-ld/v1/entities", &vehicle(id, 10.0, 2.0, 41.0))
        .await;
    let base = format!("/ngsi-ld/v1/entities/{id}");

    // Append with noOverwrite: new attribute added, existing one reported.
    let r = app.post(&format!("{base}/attrs?options=noOverwrite"), &json!({"speed": {"type": "Property", "value": 99}, "color": {"type": "Property", "value": "red"}})).await;
    assert_eq!(r.status, 207, "{}", r.text);
    assert_eq!(
        r.body["notUpdated"][0]["attributeName"],
        "https://uri.etsi.org/ngsi-ld/default-context/speed"
    );
    let r = app
        .post(
            &format!("{base}/attrs"),
            &json!({"speed": {"type": "Property", "value": 20}}),
        )
        .await;
    assert_eq!(r.status, 204);

    // Update existing only.
    let r = app.patch(&format!("{base}/attrs"), &json!({"speed": {"type": "Property", "value": 30, "unitCode": "KMH"}, "nope": {"type": "Property", "value": 1}})).await;
    assert_eq!(
        r.status, 204,
        "an update also appends new attributes (NGSI-LD 1.8)"
    );

    // Partial attribute update keeps unitCode.
    let r = app
        .patch(&format!("{base}/attrs/speed"), &json!({"value": 31}))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let e = app.get(&base).await.body;
    assert_eq!(e["speed"]["value"], 31);
    assert_eq!(e["speed"]["unitCode"], "KMH");

    // Merge: null deletes, new attributes are added.
    let r = app.patch(&base, &json!({"color": null, "owner": {"type": "Relationship", "object": "urn:ngsi-ld:Person:9"}})).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let e = app.get(&base).await.body;
    assert!(e.get("color").is_none());
    assert_eq!(e["owner"]["object"], "urn:ngsi-ld:Person:9");

    // Replace attribute and entity.
    let r = app
        .call(
            "PUT",
            &format!("{base}/attrs/brand"),
            &[],
            Some(r#"{"type":"Property","value":"Volvo"}"#),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = app
        .call("PUT", &base, &[], Some(r#"{"type":"Vehicle","speed":5}"#))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let e = app.get(&base).await.body;
    assert!(e.get("brand").is_none());
    assert_eq!(e["speed"]["value"], 5);

    // Delete attribute; deleting it again is 404.
    assert_eq!(app.delete(&format!("{base}/attrs/speed")).await.status, 204);
    let r = app.delete(&format!("{base}/attrs/speed")).await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn multi_instance_attributes_with_dataset_ids() {
    let app = app().await;
    let body = json!({"id": "urn:ngsi-ld:Sensor:1", "type": "Sensor",
        "temp": [{"type": "Property", "value": 20}, {"type": "Property", "value": 21, "datasetId": "urn:ngsi-ld:Dataset:b"}]});
    assert_eq!(app.post("/ngsi-ld/v1/entities", &body).await.status, 201);
    let e = app
        .get("/ngsi-ld/v1/entities/urn:ngsi-ld:Sensor:1")
        .await
        .body;
    assert_eq!(e["temp"].as_array().unwrap().len(), 2);
    let r = app
        .delete(
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Sensor:1/attrs/temp?datasetId=urn:ngsi-ld:Dataset:b",
        )
        .await;
    assert_eq!(r.status, 204);
    let e = app
        .get("/ngsi-ld/v1/entities/urn:ngsi-ld:Sensor:1")
        .await
        .body;
    assert_eq!(e["temp"]["value"], 20);
}

#[tokio::test]
async fn user_contexts_expand_and_compact() {
    let app = app().await;
    // Host a context here, then use it by URL in the Link header.
    let r = app.post("/ngsi-ld/v1/jsonldContexts", &json!({"@context": {"ex": "http://example.org/", "Car": "ex:Car", "speed": "ex:speed"}})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let url = format!("http://127.0.0.1:1026{}", r.header("location").unwrap());
    let link = format!(
        "<{url}>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\""
    );
    let body = json!({"id": "urn:ngsi-ld:Car:1", "type": "Car", "speed": 3});
    let r = app
        .call(
            "POST",
            "/ngsi-ld/v1/entities",
            &[("link", &link)],
            Some(&body.to_string()),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    // Without the context, terms come back as full IRIs.
    let e = app.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Car:1").await.body;
    assert_eq!(e["type"], "http://example.org/Car");
    assert!(e.get("http://example.org/speed").is_some());
    // With it, compacted.
    let e = app
        .call(
            "GET",
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Car:1",
            &[("link", &link)],
            None,
        )
        .await
        .body;
    assert_eq!(e["type"], "Car");
    assert!(e.get("speed").is_some());
    // JSON-LD body with an inline context.
    let body = json!({"id": "urn:ngsi-ld:Car:2", "type": "Car", "@context": [{"Car": "http://example.org/Car"}, "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"]});
    let r = app
        .call(
            "POST",
            "/ngsi-ld/v1/entities",
            &[("content-type", "application/ld+json")],
            Some(&body.to_string()),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = app
        .get("/ngsi-ld/v1/entities?type=http://example.org/Car&count=true")
        .await;
    assert_eq!(r.header("ngsild-results-count"), Some("2"));
    let list = app.get("/ngsi-ld/v1/jsonldContexts").await.body;
    assert!(list.as_array().unwrap().iter().any(|u| u == &json!(url)));
    // An unreachable remote context is 503 LdContextNotAvailable.
    let bad = "<http://127.0.0.1:9/none.jsonld>; rel=\"http://www.w3.org/ns/json-ld#context\"";
    let r = app
        .call(
            "GET",
            "/ngsi-ld/v1/entities?type=Car",
            &[("link", bad)],
            None,
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.error_type()),
        (503, "LdContextNotAvailable")
    );
}

#[tokio::test]
async fn tenants_are_created_on_first_write_and_isolated() {
    let app = app().await;
    // An unknown tenant is the same 404 on entities and on subscriptions.
    for (method, path) in [
        ("GET", "/ngsi-ld/v1/entities?type=Vehicle"),
        ("GET", "/ngsi-ld/v1/subscriptions"),
        (
            "GET",
            "/ngsi-ld/v1/subscriptions/urn:ngsi-ld:Subscription:x",
        ),
        (
            "DELETE",
            "/ngsi-ld/v1/subscriptions/urn:ngsi-ld:Subscription:x",
        ),
    ] {
        let r = app
            .call(method, path, &[("NGSILD-Tenant", "district9")], None)
            .await;
        assert_eq!(
            (r.status.as_u16(), r.error_type()),
            (404, "NonexistentTenant"),
            "{method} {path}"
        );
        // The tenant is echoed in the answer (6.3.14), refusals included.
        assert_eq!(
            r.header("ngsild-tenant"),
            Some("district9"),
            "{method} {path}"
        );
    }
    // Creating a subscription makes the tenant, as creating an entity does.
    let sub = json!({"type": "Subscription", "entities": [{"type": "Vehicle"}],
        "notification": {"endpoint": {"uri": "http://localhost:1/x"}}})
    .to_string();
    let r = app
        .call(
            "POST",
            "/ngsi-ld/v1/subscriptions",
            &[("NGSILD-Tenant", "district7")],
            Some(&sub),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = app
        .call(
            "GET",
            "/ngsi-ld/v1/subscriptions",
            &[("NGSILD-Tenant", "district7")],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let body = vehicle("urn:ngsi-ld:Vehicle:t", 1.0, 0.0, 0.0).to_string();
    let r = app
        .call(
            "POST",
            "/ngsi-ld/v1/entities",
            &[("NGSILD-Tenant", "district9")],
            Some(&body),
        )
        .await;
    assert_eq!(r.status, 201);
    let r = app
        .call(
            "GET",
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:t",
            &[("NGSILD-Tenant", "district9")],
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        app.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:t")
            .await
            .status,
        404
    );
    let r = app
        .call(
            "GET",
            "/ngsi-ld/v1/entities?type=Vehicle",
            &[("NGSILD-Tenant", "bad tenant!")],
            None,
        )
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn discovery_of_types_and_attributes() {
    let app = app().await;
    app.post(
        "/ngsi-ld/v1/entities",
        &vehicle("urn:ngsi-ld:Vehicle:d1", 1.0, 0.0, 0.0),
    )
    .await;
    app.post(
        "/ngsi-ld/v1/entities",
        &json!({"id": "urn:ngsi-ld:Park:1", "type": "Park", "area": 5}),
    )
    .await;
    let r = app.get("/ngsi-ld/v1/types").await;
    assert_eq!(r.body["typeList"], json!(["Park", "Vehicle"]));
    let r = app.get("/ngsi-ld/v1/types/Vehicle").await;
    assert_eq!(r.body["entityCount"], 1);
    assert_eq!(r.body["attributeDetails"].as_array().unwrap().len(), 3);
    let r = app.get("/ngsi-ld/v1/attributes").await;
    assert_eq!(
        r.body["attributeList"],
        json!(["area", "brand", "location", "speed"])
    );
    let r = app.get("/ngsi-ld/v1/attributes/speed").await;
    assert_eq!(r.body["typeNames"], json!(["Vehicle"]));
    assert_eq!(app.get("/ngsi-ld/v1/types/Nope").await.status, 404);
    let r = app.get("/ngsi-ld/v1/types?details=true").await;
    assert_eq!(r.body.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn linked_entities_inline_and_flat() {
    let app = app().await;
    app.post(
        "/ngsi-ld/v1/entities",
        &json!({"id": "urn:ngsi-ld:City:P", "type": "City", "name": "Paris"}),
    )
    .await;
    let b = json!({"id": "urn:ngsi-ld:Building:1", "type": "Building", "name": "Tower",
                   "locatedAt": {"type": "Relationship", "object": "urn:ngsi-ld:City:P"}});
    app.post("/ngsi-ld/v1/entities", &b).await;
    let r = app
        .get("/ngsi-ld/v1/entities/urn:ngsi-ld:Building:1?join=inline")
        .await;
    assert_eq!(
        r.body["locatedAt"]["entity"]["name"]["value"], "Paris",
        "{}",
        r.text
    );
    let r = app
        .get("/ngsi-ld/v1/entities/urn:ngsi-ld:Building:1?join=inline&options=keyValues")
        .await;
    assert_eq!(
        r.body["locatedAt"],
        json!({"id": "urn:ngsi-ld:City:P", "type": "City", "name": "Paris"})
    );
    let r = app
        .get("/ngsi-ld/v1/entities/urn:ngsi-ld:Building:1?join=flat")
        .await;
    assert_eq!(r.body.as_array().unwrap().len(), 2);
    let r = app
        .get("/ngsi-ld/v1/entities?type=Building&join=flat")
        .await;
    assert_eq!(r.body.as_array().unwrap().len(), 2);
    // A nested projection applies to the entities reached through that Relationship.
    let r = app
        .get("/ngsi-ld/v1/entities/urn:ngsi-ld:Building:1?join=flat&pick=id,locatedAt%7Bid,name%7D")
        .await;
    assert_eq!(
        r.body[1],
        json!({"id": "urn:ngsi-ld:City:P", "name": {"type": "Property", "value": "Paris"}}),
        "{}",
        r.text
    );
    assert_eq!(
        app.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Building:1?join=sideways")
            .await
            .status,
        400
    );
    // A projection that leaves nothing is 404.
    assert_eq!(
        app.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Building:1?attrs=nothing")
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn core_context_cannot_be_deleted_but_reloads() {
    let app = app().await;
    let core = "https%3A%2F%2Furi.etsi.org%2Fngsi-ld%2Fv1%2Fngsi-ld-core-context-v1.8.jsonld";
    assert_eq!(
        app.delete(&format!("/ngsi-ld/v1/jsonldContexts/{core}"))
            .await
            .status,
        400
    );
    assert_eq!(
        app.delete(&format!("/ngsi-ld/v1/jsonldContexts/{core}?reload=false"))
            .await
            .status,
        400
    );
    assert_eq!(
        app.delete(&format!("/ngsi-ld/v1/jsonldContexts/{core}?reload=true"))
            .await
            .status,
        204
    );
    let r = app
        .get(&format!("/ngsi-ld/v1/jsonldContexts/{core}?details=true"))
        .await;
    assert_eq!(r.body["localId"], "core");
}

/// Purge (NGSI-LD 1.9, 5.6.21), the cases of the ETSI suite's 060 and 5621 groups.
#[tokio::test]
async fn purge_deletes_what_the_query_matches_or_only_some_attributes() {
    let app = super::harness::app().await;
    async fn seed(app: &super::harness::App) {
        let building = |id: &str, name: &str| {
            json!({
                "id": format!("urn:ngsi-ld:Building:{id}"),
                "type": "Building",
                "name": {"type": "Property", "value": name},
                "subCategory": {"type": "Property", "value": "tower"},
                "almostFull": {"type": "Property", "value": false}
            })
        };
        let items = json!([
            building("a", "Eiffel Tower"),
            building("b", "Big Ben"),
            {"id": "urn:ngsi-ld:Car:1", "type": "Car", "name": {"type": "Property", "value": "Eiffel Tower"}}
        ]);
        let r = app
            .post("/ngsi-ld/v1/entityOperations/upsert", &items)
            .await;
        assert!(r.status.is_success(), "{}", r.text);
    }
    async fn exists(app: &super::harness::App, id: &str) -> bool {
        app.get(&format!("/ngsi-ld/v1/entities/{id}")).await.status == 200
    }
    seed(&app).await;
    // Too wide, or contradictory: 400 BadRequestData, nothing deleted.
    for bad in [
        "",
        "?type=Building&keep=name&drop=subCategory",
        "?id=urn:ngsi-ld:Building:a",
        "?idPattern=.*",
        "?attrs=createdAt",
        "?q=modifiedAt%3E%222020-01-01T00:00:00Z%22",
        "?type=Building&q=owner%7Bname%7D==%22x%22",
        "?type=Building&attrs=owner%7Bname%7D",
        "?type=Building&drop=createdAt",
        "?type=Building&limit=5",
    ] {
        let r = app.delete(&format!("/ngsi-ld/v1/entities{bad}")).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
        let t = r.error_type();
        assert!(t == "BadRequestData" || t == "InvalidRequest", "{bad}: {t}");
    }
    for id in [
        "urn:ngsi-ld:Building:a",
        "urn:ngsi-ld:Building:b",
        "urn:ngsi-ld:Car:1",
    ] {
        assert!(exists(&app, id).await, "{id} survived the refusals");
    }
    // q with a type: only the match of that type.
    let r = app
        .delete("/ngsi-ld/v1/entities?q=name==%22Eiffel%20Tower%22&type=Building")
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert!(!exists(&app, "urn:ngsi-ld:Building:a").await);
    assert!(exists(&app, "urn:ngsi-ld:Building:b").await);
    assert!(exists(&app, "urn:ngsi-ld:Car:1").await);
    // q alone: the matches of any type.
    seed(&app).await;
    let r = app
        .delete("/ngsi-ld/v1/entities?q=name==%22Eiffel%20Tower%22")
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert!(!exists(&app, "urn:ngsi-ld:Building:a").await);
    assert!(!exists(&app, "urn:ngsi-ld:Car:1").await);
    assert!(exists(&app, "urn:ngsi-ld:Building:b").await);
    // drop: the entities stay without the attribute.
    seed(&app).await;
    let r = app
        .delete("/ngsi-ld/v1/entities?type=Building&drop=name")
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let e = app
        .get("/ngsi-ld/v1/entities/urn:ngsi-ld:Building:b")
        .await
        .body;
    assert!(
        e.get("name").is_none() && e.get("subCategory").is_some(),
        "{e}"
    );
    // keep: only the attributes named stay.
    seed(&app).await;
    let r = app
        .delete("/ngsi-ld/v1/entities?id=urn:ngsi-ld:Building:a&type=Building&keep=name")
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let e = app
        .get("/ngsi-ld/v1/entities/urn:ngsi-ld:Building:a")
        .await
        .body;
    assert!(e.get("name").is_some(), "{e}");
    assert!(
        e.get("subCategory").is_none() && e.get("almostFull").is_none(),
        "{e}"
    );
    let e = app
        .get("/ngsi-ld/v1/entities/urn:ngsi-ld:Building:b")
        .await
        .body;
    assert!(e.get("subCategory").is_some(), "only the id named: {e}");
    // type: every Building; the Car stays.
    let r = app.delete("/ngsi-ld/v1/entities?type=Building").await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = app.get("/ngsi-ld/v1/entities?type=Building").await;
    assert_eq!(r.body, json!([]));
    assert!(exists(&app, "urn:ngsi-ld:Car:1").await);
    // local=true alone: everything.
    seed(&app).await;
    let r = app.delete("/ngsi-ld/v1/entities?local=true").await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = app.get("/ngsi-ld/v1/entities?local=true").await;
    assert_eq!(r.body, json!([]), "{}", r.text);
    // Nothing matching is no error.
    let r = app.delete("/ngsi-ld/v1/entities?type=Nothing").await;
    assert_eq!(r.status, 204);
}

/// A remote `@context` server that accepts and never answers: the error says it timed
/// out, and for a while the URL is not tried again (each request would otherwise wait
/// for the timeout).
#[tokio::test]
async fn a_silent_context_server_times_out_once_then_is_remembered() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(s); // never answered
        }
    });
    let app = super::harness::app_configured(citybrain_api::HttpLimits::default(), |c| {
        c.contexts.fetch_timeout = std::time::Duration::from_millis(300);
    })
    .await;
    let link =
        format!("<http://{addr}/silent.jsonld>; rel=\"http://www.w3.org/ns/json-ld#context\"");
    let r = app
        .call(
            "GET",
            "/ngsi-ld/v1/entities?type=Car",
            &[("link", &link)],
            None,
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.error_type()),
        (503, "LdContextNotAvailable")
    );
    let detail = r.body["detail"].as_str().unwrap().to_string();
    assert!(detail.contains("timed out"), "{detail}");
    let tries = accepted.load(Ordering::SeqCst);
    assert!(tries >= 1);
    let r = app
        .call(
            "GET",
            "/ngsi-ld/v1/entities?type=Car",
            &[("link", &link)],
            None,
        )
        .await;
    assert_eq!(r.status.as_u16(), 503);
    let detail = r.body["detail"].as_str().unwrap().to_string();
    assert!(detail.contains("not tried again"), "{detail}");
    // Not fetched again: no new connection.
    assert_eq!(accepted.load(Ordering::SeqCst), tries);
}
