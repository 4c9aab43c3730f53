//! Golden files for API responses (`tests/golden/*.json`). A response that changes shape
//! fails here; after a deliberate change, regenerate with `UPDATE_GOLDEN=1`.

use std::path::PathBuf;

use serde_json::{json, Value};

use super::harness::app;

fn check(name: &str, actual: &Value) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.json"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(actual).unwrap() + "\n").unwrap();
        return;
    }
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("missing {}", path.display())),
    )
    .unwrap();
    assert_eq!(actual, &expected, "{name} differs from {}", path.display());
}

#[tokio::test]
async fn representations_match_golden_files() {
    let app = app().await;
    let body = json!({
        "id": "urn:ngsi-ld:OffStreetParking:golden", "type": "OffStreetParking",
        "name": {"type": "LanguageProperty", "languageMap": {"en": "Central car park", "zh": "中央停车场"}},
        "availableSpotNumber": {"type": "Property", "value": 121, "observedAt": "2026-11-28T08:00:00Z",
                                "reliability": {"type": "Property", "value": 0.9}},
        "totalSpotNumber": 200,
        "refParkingSite": {"type": "Relationship", "object": "urn:ngsi-ld:ParkingSite:1"},
        "occupancy": [{"type": "Property", "value": 0.4, "datasetId": "urn:ngsi-ld:Dataset:camera"},
                      {"type": "Property", "value": 0.41}],
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [120.16, 30.25]}}
    });
    assert_eq!(app.post("/ngsi-ld/v1/entities", &body).await.status, 201);
    let base = "/ngsi-ld/v1/entities/urn:ngsi-ld:OffStreetParking:golden";
    check("entity-normalized", &app.get(base).await.body);
    check(
        "entity-concise",
        &app.get(&format!("{base}?format=concise")).await.body,
    );
    check(
        "entity-keyvalues",
        &app.get(&format!("{base}?options=keyValues")).await.body,
    );
    check(
        "entity-lang-zh",
        &app.get(&format!("{base}?lang=zh&pick=id,name")).await.body,
    );
    let geo = app
        .call("GET", base, &[("accept", "application/geo+json")], None)
        .await
        .body;
    check("entity-geojson", &geo);
    let jsonld = app
        .call(
            "GET",
            &format!("{base}?attrs=totalSpotNumber"),
            &[("accept", "application/ld+json")],
            None,
        )
        .await
        .body;
    check("entity-jsonld-attrs", &jsonld);
    let err = app
        .get("/ngsi-ld/v1/entities?type=OffStreetParking&q=availableSpotNumber%3E")
        .await
        .body;
    check("error-invalid-q", &err);
}
