use serde_json::json;

use super::harness::{app, vehicle};

#[tokio::test]
async fn batch_create_upsert_update_delete_merge() {
    let app = app().await;
    let items = json!([
        vehicle("urn:ngsi-ld:Vehicle:b1", 1.0, 0.0, 0.0),
        vehicle("urn:ngsi-ld:Vehicle:b2", 2.0, 0.0, 0.0)
    ]);
    let r = app
        .post("/ngsi-ld/v1/entityOperations/create", &items)
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(
        r.body,
        json!(["urn:ngsi-ld:Vehicle:b1", "urn:ngsi-ld:Vehicle:b2"])
    );

    // Partial failure: 207 with the error of each failed entity.
    let items = json!([vehicle("urn:ngsi-ld:Vehicle:b1", 1.0, 0.0, 0.0), vehicle("urn:ngsi-ld:Vehicle:b3", 3.0, 0.0, 0.0), {"id": "bad id", "type": "X"}]);
    let r = app
        .post("/ngsi-ld/v1/entityOperations/create", &items)
        .await;
    assert_eq!(r.status, 207);
    assert_eq!(r.body["success"], json!(["urn:ngsi-ld:Vehicle:b3"]));
    assert_eq!(r.body["errors"].as_array().unwrap().len(), 2);
    assert!(r.body["errors"][0]["error"]["type"]
        .as_str()
        .unwrap()
        .ends_with("AlreadyExists"));

    // Upsert: 201 with created ids when something was created, 204 otherwise.
    let r = app.post("/ngsi-ld/v1/entityOperations/upsert", &json!([vehicle("urn:ngsi-ld:Vehicle:b4", 4.0, 0.0, 0.0), {"id": "urn:ngsi-ld:Vehicle:b1", "type": "Vehicle", "speed": 10}])).await;
    assert_eq!(
        (r.status.as_u16(), r.body.clone()),
        (201, json!(["urn:ngsi-ld:Vehicle:b4"]))
    );
    let e = app
        .get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:b1")
        .await
        .body;
    assert!(e.get("brand").is_none(), "upsert replaces by default");
    let r = app
        .post(
            "/ngsi-ld/v1/entityOperations/upsert?options=update",
            &json!([{"id": "urn:ngsi-ld:Vehicle:b1", "type": "Vehicle", "color": "blue"}]),
        )
        .await;
    assert_eq!(r.status, 204);
    let e = app
        .get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:b1")
        .await
        .body;
    assert_eq!(
        (e["speed"]["value"].clone(), e["color"]["value"].clone()),
        (json!(10), json!("blue"))
    );

    // Update: existing entities only.
    let r = app.post("/ngsi-ld/v1/entityOperations/update", &json!([{"id": "urn:ngsi-ld:Vehicle:b2", "speed": 22}, {"id": "urn:ngsi-ld:Vehicle:zz", "speed": 1}])).await;
    assert_eq!(r.status, 207);
    assert_eq!(r.body["success"], json!(["urn:ngsi-ld:Vehicle:b2"]));

    // noOverwrite: an entity whose attributes were kept is a partial failure; new ones still land.
    let r = app
        .post(
            "/ngsi-ld/v1/entityOperations/update?options=noOverwrite",
            &json!([{"id": "urn:ngsi-ld:Vehicle:b2", "speed": 99, "fresh": 1}]),
        )
        .await;
    assert_eq!(r.status, 207, "{}", r.text);
    let e = app
        .get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:b2")
        .await
        .body;
    assert_eq!(
        (e["speed"]["value"].clone(), e["fresh"]["value"].clone()),
        (json!(22), json!(1))
    );

    // Merge.
    let r = app
        .post(
            "/ngsi-ld/v1/entityOperations/merge",
            &json!([{"id": "urn:ngsi-ld:Vehicle:b2", "brand": null}]),
        )
        .await;
    assert_eq!(r.status, 204);
    assert!(app
        .get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:b2")
        .await
        .body
        .get("brand")
        .is_none());

    // Delete.
    let r = app
        .post(
            "/ngsi-ld/v1/entityOperations/delete",
            &json!(["urn:ngsi-ld:Vehicle:b1", "urn:ngsi-ld:Vehicle:b2"]),
        )
        .await;
    assert_eq!(r.status, 204);
    let r = app
        .post(
            "/ngsi-ld/v1/entityOperations/delete",
            &json!(["urn:ngsi-ld:Vehicle:b1", "urn:ngsi-ld:Vehicle:b3"]),
        )
        .await;
    assert_eq!(r.status, 207);
    assert_eq!(r.body["success"], json!(["urn:ngsi-ld:Vehicle:b3"]));
}
