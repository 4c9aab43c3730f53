//! Geo-queries answered by the spatial index through the HTTP API: paging and counts
//! as a scan gives them, and a masked location is matched as the caller sees it, never
//! through the index's stored geometry.

use serde_json::{json, Value};

use super::harness::{app, app_governed, vehicle, Governed};

fn ids(body: &Value) -> Vec<String> {
    body.as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn geo_queries_page_and_count_like_a_scan() {
    let app = app().await;
    // A 10 × 10 grid, 0.001° apart (68 m east-west, 111 m north-south at 52.5° N),
    // plus a road (a LineString) and a district (a Polygon).
    let mut batch: Vec<Value> = (0..100)
        .map(|i| {
            vehicle(
                &format!("urn:ngsi-ld:Vehicle:{i:03}"),
                1.0,
                13.4 + f64::from(i % 10) * 0.001,
                52.5 + f64::from(i / 10) * 0.001,
            )
        })
        .collect();
    batch.push(json!({"id": "urn:ngsi-ld:Road:1", "type": "Road",
        "location": {"type": "GeoProperty", "value": {"type": "LineString", "coordinates": [[13.3, 52.4995], [13.5, 52.4995]]}}}));
    batch.push(json!({"id": "urn:ngsi-ld:District:1", "type": "District",
        "location": {"type": "GeoProperty", "value": {"type": "Polygon", "coordinates": [[[13.0, 52.0], [14.0, 52.0], [14.0, 53.0], [13.0, 53.0], [13.0, 52.0]]]}}}));
    let r = app
        .post("/ngsi-ld/v1/entityOperations/create", &json!(batch))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);

    // 150 m around the grid's corner: (0,0), (1,0), (2,0), (0,1) and (1,1) at 130 m, not
    // (2,1) at 175 m; the road 55 m south;
    // the district contains the centre.
    let near = "georel=near;maxDistance==150&geometry=Point&coordinates=%5B13.4,52.5%5D";
    let r = app
        .get(&format!("/ngsi-ld/v1/entities?{near}&count=true&limit=100"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        ids(&r.body),
        [
            "urn:ngsi-ld:District:1",
            "urn:ngsi-ld:Road:1",
            "urn:ngsi-ld:Vehicle:000",
            "urn:ngsi-ld:Vehicle:001",
            "urn:ngsi-ld:Vehicle:002",
            "urn:ngsi-ld:Vehicle:010",
            "urn:ngsi-ld:Vehicle:011"
        ]
    );
    assert_eq!(r.header("ngsild-results-count"), Some("7"));
    // Pages in id order with the same count; a type narrows the candidates.
    let r = app
        .get(&format!(
            "/ngsi-ld/v1/entities?type=Vehicle&{near}&count=true&limit=2&offset=2"
        ))
        .await;
    assert_eq!(
        ids(&r.body),
        ["urn:ngsi-ld:Vehicle:002", "urn:ngsi-ld:Vehicle:010"]
    );
    assert_eq!(r.header("ngsild-results-count"), Some("5"));
    // within a box around the third row; intersects a line across the fifth column.
    let row = "%5B%5B%5B13.3995,52.5015%5D,%5B13.4095,52.5015%5D,%5B13.4095,52.5025%5D,%5B13.3995,52.5025%5D,%5B13.3995,52.5015%5D%5D%5D";
    let r = app
        .get(&format!(
            "/ngsi-ld/v1/entities?type=Vehicle&georel=within&geometry=Polygon&coordinates={row}&count=true"
        ))
        .await;
    assert_eq!(r.header("ngsild-results-count"), Some("10"), "{}", r.text);
    let column = "%5B%5B13.404,52.49%5D,%5B13.404,52.51%5D%5D";
    let r = app
        .get(&format!(
            "/ngsi-ld/v1/entities?georel=intersects&geometry=LineString&coordinates={column}&count=true&limit=100"
        ))
        .await;
    assert_eq!(r.header("ngsild-results-count"), Some("12"), "{}", r.text);
    // A moved vehicle is found where it is now, not where it was.
    let r = app
        .patch(
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:001/attrs",
            &json!({"location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [13.45, 52.5]}}}),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = app
        .get(&format!(
            "/ngsi-ld/v1/entities?type=Vehicle&{near}&count=true"
        ))
        .await;
    assert_eq!(r.header("ngsild-results-count"), Some("4"), "{}", r.text);
    // Disjoint and minDistance are answered by a scan: 100 vehicles minus 4 near ones.
    let r = app
        .get("/ngsi-ld/v1/entities?type=Vehicle&georel=near;minDistance==150&geometry=Point&coordinates=%5B13.4,52.5%5D&count=true")
        .await;
    assert_eq!(r.header("ngsild-results-count"), Some("96"), "{}", r.text);
}

#[tokio::test]
async fn a_masked_location_is_matched_as_the_caller_sees_it() {
    let g = app_governed(json!({
        "types": {"Vehicle": {"level": "internal", "owner": "transport"}},
        "attributes": {"Vehicle.location": {"level": "important"}}
    }))
    .await;
    let (g, (lon, lat), (clon, clat)) = viewers_see_cells(g).await;
    // The true position is well away from the cell's centre (the test's premise).
    assert!((clon - lon).abs() > 0.005 || (clat - lat).abs() > 0.005);
    let r = g
        .call(
            Some(&g.admin),
            "POST",
            "/ngsi-ld/v1/entities",
            &[],
            Some(&vehicle("urn:ngsi-ld:Vehicle:1", 30.0, lon, lat)),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let viewer = g.key("vic", &["viewer"], |_| {});
    let near = |x: f64, y: f64| {
        format!("/ngsi-ld/v1/entities?type=Vehicle&georel=near;maxDistance==100&geometry=Point&coordinates=%5B{x},{y}%5D")
    };
    let r = g
        .call(Some(&viewer), "GET", &near(clon, clat), &[], None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(ids(&r.body), ["urn:ngsi-ld:Vehicle:1"], "matched as seen");
    let seen = &r.body[0]["location"]["value"]["coordinates"];
    assert!((seen[0].as_f64().unwrap() - clon).abs() < 1e-9, "{seen}");
    // Around the stored position the viewer finds nothing: a geo-query cannot probe
    // where the mask hides the vehicle. The administrator finds it there.
    let r = g
        .call(Some(&viewer), "GET", &near(lon, lat), &[], None)
        .await;
    assert_eq!(ids(&r.body), Vec::<String>::new(), "{}", r.text);
    let r = g
        .call(Some(&g.admin), "GET", &near(lon, lat), &[], None)
        .await;
    assert_eq!(ids(&r.body), ["urn:ngsi-ld:Vehicle:1"], "{}", r.text);
}

#[tokio::test]
async fn another_type_that_masks_the_location_keeps_the_index_out() {
    // Cars' locations are open to viewers; trackers' are shown as a 4.9 km cell. A car
    // that is also a tracker is seen masked, even by a query for cars.
    let g = app_governed(json!({
        "types": {"Car": {"level": "internal"}, "Tracker": {"level": "internal"}},
        "attributes": {"Tracker.location": {"level": "important"}}
    }))
    .await;
    let (g, (lon, lat), (clon, clat)) = viewers_see_cells(g).await;
    let mut car = vehicle("urn:ngsi-ld:Car:1", 30.0, lon, lat);
    car["type"] = json!(["Car", "Tracker"]);
    let r = g
        .call(
            Some(&g.admin),
            "POST",
            "/ngsi-ld/v1/entities",
            &[],
            Some(&car),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let viewer = g.key("vic", &["viewer"], |_| {});
    let near = |x: f64, y: f64| {
        format!("/ngsi-ld/v1/entities?type=Car&georel=near;maxDistance==100&geometry=Point&coordinates=%5B{x},{y}%5D")
    };
    let r = g
        .call(Some(&viewer), "GET", &near(clon, clat), &[], None)
        .await;
    assert_eq!(ids(&r.body), ["urn:ngsi-ld:Car:1"], "{}", r.text);
    let r = g
        .call(Some(&viewer), "GET", &near(lon, lat), &[], None)
        .await;
    assert_eq!(ids(&r.body), Vec::<String>::new(), "{}", r.text);
}

/// Policies under which viewers see a confidential (level 2) location only as the
/// centre of its 4.9 km geohash cell; answers a position and its cell's centre.
async fn viewers_see_cells(g: Governed) -> (Governed, (f64, f64), (f64, f64)) {
    let policies = json!({"policies": r#"
@id("admin") permit (principal in Role::"admin", action, resource);
@id("viewer-read") permit (principal in Role::"viewer", action == Action::"read", resource) when { resource.level <= 1 };
@id("viewer-cells") @mask("geohash:5") permit (principal in Role::"viewer", action == Action::"read", resource is Attribute) when { resource.level == 2 };
"#});
    let r = g
        .call(
            Some(&g.admin),
            "PUT",
            "/platform/v1/policies",
            &[],
            Some(&policies),
        )
        .await;
    assert!(r.status.is_success(), "{}", r.text);
    let (lon, lat) = (13.4105, 52.5235);
    let (clon, clat, _) = citybrain_policy::mask::geohash_centre(lon, lat, 5);
    (g, (lon, lat), (clon, clat))
}
