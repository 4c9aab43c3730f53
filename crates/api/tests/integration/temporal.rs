//! The temporal API: provision, retrieval, queries, aggregation, paging, bad input.

use serde_json::{json, Value};

use super::harness::{app, app_configured, App};
use citybrain_api::HttpLimits;

const T: &str = "/ngsi-ld/v1/temporal/entities";

fn vehicle(id: &str, day: &str) -> Value {
    json!({
        "id": id,
        "type": "Vehicle",
        "speed": [
            {"type": "Property", "value": 120, "observedAt": format!("{day}T12:03:00Z")},
            {"type": "Property", "value": 80, "observedAt": format!("{day}T12:05:00Z")},
            {"type": "Property", "value": 100, "observedAt": format!("{day}T12:07:00Z")}
        ],
        "fuelLevel": [
            {"type": "Property", "value": 67, "observedAt": format!("{day}T12:03:00Z")},
            {"type": "Property", "value": 53, "observedAt": format!("{day}T13:05:00Z")},
            {"type": "Property", "value": 40.5, "observedAt": format!("{day}T14:07:00Z"), "datasetId": "urn:ngsi-ld:Dataset:fuel"}
        ]
    })
}

async fn seeded() -> App {
    let app = app().await;
    for (id, day) in [
        ("urn:ngsi-ld:Vehicle:A", "2020-08-01"),
        ("urn:ngsi-ld:Vehicle:B", "2020-09-01"),
    ] {
        let r = app.post(T, &vehicle(id, day)).await;
        assert_eq!(r.status, 201, "{}", r.text);
        assert_eq!(r.header("location"), Some(format!("{T}/{id}").as_str()));
    }
    app
}

fn observed(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|i| i["observedAt"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn provision_then_retrieve_in_every_representation() {
    let app = seeded().await;
    let r = app.get(&format!("{T}/urn:ngsi-ld:Vehicle:A")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["type"], "Vehicle");
    assert_eq!(r.body["speed"].as_array().unwrap().len(), 3);
    assert_eq!(r.body["speed"][0]["value"], 120);
    assert!(r.body["speed"][0]["instanceId"]
        .as_str()
        .unwrap()
        .starts_with("urn:ngsi-ld:Instance:"));
    let fuel = r.body["fuelLevel"].as_array().unwrap();
    assert_eq!(fuel.len(), 3);
    assert!(fuel
        .iter()
        .any(|i| i["datasetId"] == "urn:ngsi-ld:Dataset:fuel" && i["value"] == 40.5));

    let r = app
        .get(&format!(
            "{T}/urn:ngsi-ld:Vehicle:A?options=temporalValues&attrs=speed"
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["speed"],
        json!({"type": "Property", "values": [[120, "2020-08-01T12:03:00Z"], [80, "2020-08-01T12:05:00Z"], [100, "2020-08-01T12:07:00Z"]]})
    );
    assert!(r.body.get("fuelLevel").is_none());

    let r = app
        .get(&format!("{T}/urn:ngsi-ld:Vehicle:A?options=aggregatedValues&aggrMethods=avg,max,totalCount&aggrPeriodDuration=PT1H&attrs=speed"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["speed"],
        json!({"type": "Property",
            "avg": [[100.0, "2020-08-01T12:03:00Z", "2020-08-01T13:03:00Z"]],
            "max": [[120.0, "2020-08-01T12:03:00Z", "2020-08-01T13:03:00Z"]],
            "totalCount": [[3, "2020-08-01T12:03:00Z", "2020-08-01T13:03:00Z"]]})
    );
    // Calendar periods: one day.
    let r = app
        .get(&format!("{T}/urn:ngsi-ld:Vehicle:A?format=aggregatedValues&aggrMethods=min,stddev,sumsq,distinctCount,sum&aggrPeriodDuration=P1D&attrs=speed"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let s = &r.body["speed"];
    assert_eq!(
        s["min"][0],
        json!([80.0, "2020-08-01T12:03:00Z", "2020-08-02T12:03:00Z"])
    );
    assert_eq!(s["sum"][0][0], 300.0);
    assert_eq!(
        s["sumsq"][0][0],
        120.0 * 120.0 + 80.0 * 80.0 + 100.0 * 100.0
    );
    assert_eq!(s["distinctCount"][0][0], 3);
    let sd = s["stddev"][0][0].as_f64().unwrap();
    assert!((sd - 16.3299).abs() < 1e-3, "{sd}");

    // The current entity follows the newest instances.
    let r = app.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:A").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["speed"]["value"], 100);
}

#[tokio::test]
async fn time_windows_last_n_and_queries() {
    let app = seeded().await;
    let get = |q: &str| {
        let url = format!("{T}/urn:ngsi-ld:Vehicle:A?{q}");
        let app = &app;
        async move { app.get(&url).await }
    };
    let r = get("timerel=before&timeAt=2020-08-01T12:05:00Z").await;
    assert_eq!(observed(&r.body["speed"]), vec!["2020-08-01T12:03:00Z"]);
    let r = get("timerel=after&timeAt=2020-08-01T12:05:00Z&attrs=speed").await;
    assert_eq!(
        observed(&r.body["speed"]),
        vec!["2020-08-01T12:05:00Z", "2020-08-01T12:07:00Z"]
    );
    let r = get("timerel=between&timeAt=2020-08-01T12:00:00Z&endTimeAt=2020-08-01T13:00:00Z").await;
    assert_eq!(observed(&r.body["speed"]).len(), 3);
    assert_eq!(observed(&r.body["fuelLevel"]), vec!["2020-08-01T12:03:00Z"]);
    let r = get("lastN=2&attrs=speed").await;
    assert_eq!(
        observed(&r.body["speed"]),
        vec!["2020-08-01T12:05:00Z", "2020-08-01T12:07:00Z"]
    );
    let r = get("datasetId=urn:ngsi-ld:Dataset:fuel").await;
    assert_eq!(observed(&r.body["fuelLevel"]), vec!["2020-08-01T14:07:00Z"]);
    assert!(r.body.get("speed").is_none());
    // createdAt: everything was written just now.
    let r =
        get("timeproperty=createdAt&timerel=after&timeAt=2020-01-01T00:00:00Z&attrs=speed").await;
    assert_eq!(observed(&r.body["speed"]).len(), 3);

    // Queries: type, ids, q over the window, attrs, POST with temporalQ.
    let ids = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect()
    };
    let r = app
        .get(&format!(
            "{T}?type=Vehicle&timerel=after&timeAt=2020-08-15T00:00:00Z"
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // A has no instance in the window, so it is not part of the answer.
    assert_eq!(ids(&r.body), vec!["urn:ngsi-ld:Vehicle:B"]);
    let r = app
        .get(&format!(
            "{T}?type=Vehicle&q=speed%3E110&timerel=after&timeAt=2020-08-15T00:00:00Z"
        ))
        .await;
    assert_eq!(ids(&r.body), vec!["urn:ngsi-ld:Vehicle:B"]);
    let r = app.get(&format!("{T}?type=Vehicle&q=speed%3E130")).await;
    assert!(ids(&r.body).is_empty());
    let r = app
        .get(&format!(
            "{T}?id=urn:ngsi-ld:Vehicle:A&attrs=fuelLevel&count=true"
        ))
        .await;
    assert_eq!(r.header("ngsild-results-count"), Some("1"));
    assert!(r.body[0].get("speed").is_none());
    let r = app
        .post(
            "/ngsi-ld/v1/temporal/entityOperations/query",
            &json!({"type": "Query", "entities": [{"type": "Vehicle"}], "attrs": ["speed"],
                    "temporalQ": {"timerel": "before", "timeAt": "2020-08-01T12:04:00Z"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(ids(&r.body), vec!["urn:ngsi-ld:Vehicle:A"]);
    assert_eq!(observed(&r.body[0]["speed"]), vec!["2020-08-01T12:03:00Z"]);
}

#[tokio::test]
async fn entity_changes_become_history_with_deletions() {
    let app = app().await;
    let r = app
        .post(
            "/ngsi-ld/v1/entities",
            &json!({"id": "urn:ngsi-ld:Sensor:1", "type": "Sensor",
            "temperature": {"type": "Property", "value": 20.5, "unitCode": "CEL"},
            "owner": {"type": "Relationship", "object": "urn:ngsi-ld:Person:1"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    for v in [21.0, 21.5] {
        let r = app
            .patch(
                "/ngsi-ld/v1/entities/urn:ngsi-ld:Sensor:1/attrs/temperature",
                &json!({"value": v}),
            )
            .await;
        assert_eq!(r.status, 204, "{}", r.text);
    }
    let r = app
        .get(&format!(
            "{T}/urn:ngsi-ld:Sensor:1?options=temporalValues&timeproperty=modifiedAt"
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let values: Vec<Value> = r.body["temperature"]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].clone())
        .collect();
    assert_eq!(values, vec![json!(20.5), json!(21.0), json!(21.5)]);
    let r = app
        .get(&format!(
            "{T}/urn:ngsi-ld:Sensor:1?attrs=temperature&lastN=1"
        ))
        .await;
    assert_eq!(r.body["temperature"][0]["unitCode"], "CEL");
    // Deleting an attribute records a deletion, seen with timeproperty=deletedAt only.
    let r = app
        .delete("/ngsi-ld/v1/entities/urn:ngsi-ld:Sensor:1/attrs/owner")
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = app
        .get(&format!("{T}/urn:ngsi-ld:Sensor:1?timeproperty=deletedAt"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let owner = r.body["owner"].as_array().unwrap();
    assert_eq!(owner.len(), 1);
    assert_eq!(owner[0]["object"], "urn:ngsi-ld:null");
    assert!(owner[0]["deletedAt"].is_string());
    assert!(r.body.get("temperature").is_none());
    let r = app
        .get(&format!("{T}/urn:ngsi-ld:Sensor:1?attrs=owner"))
        .await;
    assert_eq!(
        r.body["owner"].as_array().unwrap().len(),
        1,
        "the relationship's value"
    );
}

#[tokio::test]
async fn instances_are_modified_and_deleted_by_instance_id() {
    let app = seeded().await;
    let url = format!("{T}/urn:ngsi-ld:Vehicle:A");
    let r = app.get(&url).await;
    let first = r.body["speed"][0]["instanceId"]
        .as_str()
        .unwrap()
        .to_string();
    let second = r.body["speed"][1]["instanceId"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app
        .patch(
            &format!("{url}/attrs/speed/{first}"),
            &json!({"type": "Property", "value": 129, "observedAt": "2020-08-01T12:03:00Z"}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = app.delete(&format!("{url}/attrs/speed/{second}")).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = app.get(&url).await;
    let speed = r.body["speed"].as_array().unwrap();
    assert_eq!(speed.len(), 2);
    assert_eq!(speed[0]["value"], 129);
    assert_eq!(speed[0]["instanceId"], first.as_str());
    assert_eq!(
        app.delete(&format!("{url}/attrs/speed/{second}"))
            .await
            .status,
        404
    );
    assert_eq!(
        app.delete(&format!("{url}/attrs/speed/notAUri"))
            .await
            .status,
        400
    );
    // Append instances, delete one dataset, then the whole attribute, then the entity.
    let r = app
        .post(&format!("{url}/attrs"), &json!({"speed": [{"type": "Property", "value": 7, "observedAt": "2020-08-02T00:00:00Z"}]}))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(
        observed(&app.get(&format!("{url}?attrs=speed")).await.body["speed"]).len(),
        3
    );
    let r = app
        .delete(&format!(
            "{url}/attrs/fuelLevel?datasetId=urn:ngsi-ld:Dataset:fuel"
        ))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(observed(&app.get(&url).await.body["fuelLevel"]).len(), 2);
    assert_eq!(
        app.delete(&format!("{url}/attrs/fuelLevel?deleteAll=true"))
            .await
            .status,
        204
    );
    assert!(app.get(&url).await.body.get("fuelLevel").is_none());
    assert_eq!(
        app.delete(&format!("{url}/attrs/fuelLevel")).await.status,
        404
    );
    assert_eq!(app.delete(&url).await.status, 204);
    assert_eq!(app.get(&url).await.status, 404);
    assert_eq!(
        app.get("/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:A")
            .await
            .status,
        404
    );
    // A second POST of an existing temporal entity adds instances (204).
    let r = app
        .post(T, &vehicle("urn:ngsi-ld:Vehicle:B", "2020-10-01"))
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(
        observed(
            &app.get(&format!("{T}/urn:ngsi-ld:Vehicle:B?attrs=speed"))
                .await
                .body["speed"]
        )
        .len(),
        6
    );
    // Re-sent observations (same observedAt) replace, they do not duplicate.
    let mut again = vehicle("urn:ngsi-ld:Vehicle:B", "2020-10-01");
    again["speed"][0]["value"] = json!(121);
    assert_eq!(app.post(T, &again).await.status, 204);
    let r = app
        .get(&format!(
            "{T}/urn:ngsi-ld:Vehicle:B?attrs=speed&timerel=after&timeAt=2020-10-01T00:00:00Z"
        ))
        .await;
    assert_eq!(observed(&r.body["speed"]).len(), 3);
    assert_eq!(r.body["speed"][0]["value"], 121);
}

#[tokio::test]
async fn long_histories_are_paged_with_content_range() {
    let app = app_configured(HttpLimits::default(), |c| c.limits.max_instances = 5).await;
    let instances: Vec<Value> = (0..12)
        .map(|i| json!({"type": "Property", "value": i, "observedAt": format!("2020-01-01T00:{i:02}:00Z")}))
        .collect();
    let r = app
        .post(
            T,
            &json!({"id": "urn:ngsi-ld:S:1", "type": "S", "v": instances}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = app.get(&format!("{T}/urn:ngsi-ld:S:1")).await;
    assert_eq!(r.status, 206, "{}", r.text);
    assert_eq!(
        r.header("content-range"),
        Some("date-time 2020-01-01T00:00:00Z-2020-01-01T00:04:00Z/*")
    );
    assert_eq!(observed(&r.body["v"]).len(), 5);
    // The next page starts where this one ended.
    let r = app
        .get(&format!(
            "{T}/urn:ngsi-ld:S:1?timerel=after&timeAt=2020-01-01T00:05:00Z"
        ))
        .await;
    assert_eq!(r.status, 206);
    assert_eq!(
        r.header("content-range"),
        Some("date-time 2020-01-01T00:05:00Z-2020-01-01T00:09:00Z/*")
    );
    let r = app.get(&format!("{T}/urn:ngsi-ld:S:1?lastN=8")).await;
    assert_eq!(r.status, 206);
    assert_eq!(
        r.header("content-range"),
        Some("date-time 2020-01-01T00:11:00Z-2020-01-01T00:07:00Z/8")
    );
    let r = app.get(&format!("{T}/urn:ngsi-ld:S:1?lastN=3")).await;
    assert_eq!(r.status, 200);
    assert_eq!(observed(&r.body["v"]).len(), 3);
}

#[tokio::test]
async fn bad_temporal_input_gets_clear_errors() {
    let app = seeded().await;
    let url = format!("{T}/urn:ngsi-ld:Vehicle:A");
    for (q, kind, needle) in [
        (
            "timerel=during&timeAt=2020-01-01T00:00:00Z",
            "BadRequestData",
            "timerel",
        ),
        ("timerel=after", "BadRequestData", "timeAt"),
        ("timerel=after&timeAt=yesterday", "BadRequestData", "timeAt"),
        (
            "timerel=after&timeAt=99999-01-01T00:00:00Z",
            "BadRequestData",
            "timeAt",
        ),
        (
            "timerel=between&timeAt=2020-01-01T00:00:00Z",
            "BadRequestData",
            "endTimeAt",
        ),
        (
            "timerel=between&timeAt=2020-01-02T00:00:00Z&endTimeAt=2020-01-01T00:00:00Z",
            "BadRequestData",
            "endTimeAt",
        ),
        ("lastN=0", "BadRequestData", "lastN"),
        ("timeproperty=seenAt", "BadRequestData", "timeproperty"),
        ("options=aggregatedValues", "BadRequestData", "aggrMethods"),
        (
            "options=aggregatedValues&aggrMethods=median",
            "BadRequestData",
            "median",
        ),
        (
            "options=aggregatedValues&aggrMethods=avg&aggrPeriodDuration=1H",
            "BadRequestData",
            "aggrPeriodDuration",
        ),
        (
            "options=aggregatedValues&aggrMethods=avg&aggrPeriodDuration=P1.5M",
            "BadRequestData",
            "aggrPeriodDuration",
        ),
        (
            "options=temporalValues,invalidOptions",
            "InvalidRequest",
            "invalidOptions",
        ),
        ("format=invalidFormat", "InvalidRequest", "invalidFormat"),
        ("timeAt=2020-01-01T00:00:00Z", "BadRequestData", "timerel"),
    ] {
        let r = app.get(&format!("{url}?{q}")).await;
        assert_eq!(r.status, 400, "{q}: {}", r.text);
        assert_eq!(r.error_type(), kind, "{q}");
        assert!(r.text.contains(needle), "{q}: {}", r.text);
    }
    let r = app
        .get(&format!("{T}?timerel=after&timeAt=2020-07-01T12:05:00Z"))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_type(), "BadRequestData");
    assert_eq!(
        app.get(&format!("{T}/urn:ngsi-ld:Vehicle:none"))
            .await
            .status,
        404
    );
    assert_eq!(app.get(&format!("{T}/notAUri")).await.status, 400);
    assert_eq!(app.get(&format!("{url}?attrs=nothing")).await.status, 404);
    let r = app.post(T, &json!({})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_type(), "InvalidRequest");
    let r = app.post(T, &json!({"type": "Vehicle"})).await;
    assert_eq!(r.status, 400);
    let r = app.post(T, &json!({"id": "urn:x:1", "type": "T", "v": [{"type": "Property", "value": 1, "observedAt": "soon"}]})).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("observedAt"), "{}", r.text);
}

#[tokio::test]
async fn geo_queries_match_positions_inside_the_window() {
    let app = app().await;
    // A bus that was near the station in the morning and far away in the evening.
    let r = app
        .post(
            T,
            &json!({"id": "urn:ngsi-ld:Bus:1", "type": "Bus", "location": [
                {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [120.150, 30.250]}, "observedAt": "2024-05-01T08:00:00Z"},
                {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [120.400, 30.400]}, "observedAt": "2024-05-01T18:00:00Z"}
            ]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let near =
        "georel=near%3BmaxDistance%3D%3D500&geometry=Point&coordinates=%5B120.1501,30.2501%5D";
    let ids = |v: &Value| v.as_array().unwrap().len();
    let r = app
        .get(&format!(
            "{T}?type=Bus&{near}&timerel=before&timeAt=2024-05-01T12:00:00Z"
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(ids(&r.body), 1, "near the station in the morning");
    assert_eq!(r.body[0]["location"].as_array().unwrap().len(), 1);
    let r = app
        .get(&format!(
            "{T}?type=Bus&{near}&timerel=after&timeAt=2024-05-01T12:00:00Z"
        ))
        .await;
    assert_eq!(ids(&r.body), 0, "not near it in the evening");
}
