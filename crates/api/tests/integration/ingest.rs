//! `/ingest`: raw vendor payloads over HTTP (200/202/413/404 semantics), the
//! dead-letter API (list, show, replay after a mapping fix, delete), reload errors and
//! the ingestion metrics.

use std::path::Path;

use axum::http::StatusCode;
use serde_json::json;

use super::harness::app_with_ingest;

fn examples() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn copy_mappings() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(examples().join("mappings")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, d.path().join(f.file_name().unwrap())).unwrap();
    }
    d
}

fn read(name: &str) -> String {
    std::fs::read_to_string(examples().join("city-data").join(name)).unwrap()
}

#[tokio::test]
async fn payloads_map_to_entities_with_documented_statuses() {
    let m = copy_mappings();
    let app = app_with_ingest(m.path(), 64 * 1024).await;
    let ct = [("content-type", "text/csv")];

    // All records written or filtered: 200.
    let clean: String = read("bike-docks.csv")
        .lines()
        .filter(|l| !l.contains("n/a"))
        .map(|l| format!("{l}\n"))
        .collect();
    let r = app
        .call("POST", "/ingest/bike-docks", &ct, Some(&clean))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["written"], 3);
    assert_eq!(r.body["filtered"], 1);

    // Some records rejected: 202 with the dead letters listed.
    let r = app
        .call(
            "POST",
            "/ingest/bike-docks",
            &ct,
            Some(&read("bike-docks.csv")),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    assert_eq!(r.body["rejected"], json!({"bad_value": 1}));
    let letter = r.body["deadLetters"][0].as_u64().unwrap();

    // A broken payload: 202, kept whole.
    let r = app
        .call(
            "POST",
            "/ingest/bus-gps",
            &[],
            Some("{\"vehicles\": [{\"busId\":"),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.body["rejected"], json!({"decode": 1}));

    // Oversized: 413, the first bytes kept as a dead letter.
    let big = "x".repeat(70 * 1024);
    let r = app.call("POST", "/ingest/bus-gps", &[], Some(&big)).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);
    assert_eq!(r.body["rejected"], json!({"oversized": 1}));

    // Unknown source and unknown parameter.
    let r = app.call("POST", "/ingest/nope", &[], Some("{}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app
        .call("POST", "/ingest/bus-gps?x=1", &[], Some("{}"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // The entities are plain NGSI-LD.
    let r = app
        .get("/ngsi-ld/v1/entities/urn:ngsi-ld:BikeHireDockingStation:TAM-001")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["availableBikeNumber"]["value"], 7);
    assert_eq!(r.body["status"]["value"], "working");

    // Dead letters: list, filter, show.
    let r = app.get("/ingest/deadletters").await;
    assert_eq!(r.body["total"], 3);
    let r = app
        .get("/ingest/deadletters?source=bike-docks&reason=bad_value")
        .await;
    assert_eq!(r.body["total"], 1);
    let r = app.get("/ingest/deadletters?reason=bogus").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = app.get(&format!("/ingest/deadletters/{letter}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body["payload"].as_str().unwrap().contains("TAM-003"));
    assert!(r.body["message"]
        .as_str()
        .unwrap()
        .contains("availableBikeNumber"));

    // A bad mapping edit is refused with file and line; the running mapping stays.
    let file = m.path().join("bike-docks.toml");
    let orig = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        orig.replace("type = \"integer\"\nrequired", "type = \"int\"\nrequired"),
    )
    .unwrap();
    let r = app.post("/ingest/reload", &json!({})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let detail = r.body["detail"].as_str().unwrap();
    assert!(detail.contains("bike-docks.toml:"), "{detail}");

    // The fix: "n/a" means no count reported; replay the letter.
    std::fs::write(
        &file,
        orig.replace(
            "path = \"bikes_available\"\ntype = \"integer\"\nrequired = true",
            "path = \"bikes_available\"\ntype = \"integer\"\nregex = '^(\\d+)$'\ndefault = 0",
        ),
    )
    .unwrap();
    let r = app.post("/ingest/reload", &json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // A filter of the wrong type is refused (it once meant "replay everything").
    for bad in [json!({"reason": 5}), json!({"source": ["bike-docks"]})] {
        let r = app.post("/ingest/deadletters/replay", &bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text);
    }
    let r = app
        .post(
            "/ingest/deadletters/replay",
            &json!({"source": "bike-docks"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["replayed"], 1);
    let r = app
        .get("/ngsi-ld/v1/entities/urn:ngsi-ld:BikeHireDockingStation:TAM-003")
        .await;
    assert_eq!(r.body["availableBikeNumber"]["value"], 0);

    // Metrics count per source and reason; counters are counters.
    let r = app.get("/metrics").await;
    assert!(
        r.text.contains(
            "citybrain_ingest_records_total{source=\"bike-docks\",outcome=\"written\"} 7.0"
        ),
        "{}",
        r.text
    );
    assert!(r.text.contains("# TYPE citybrain_ingest_records counter"));
    assert!(r.text.contains("# TYPE citybrain_deadletters_stored gauge"));
    assert!(r
        .text
        .contains("# TYPE citybrain_store_log_records counter"));
    assert!(r.text.contains("# TYPE citybrain_store_entities gauge"));
    assert!(
        r.text.contains("citybrain_encode_failures_total 0"),
        "{}",
        r.text
    );
    assert!(r
        .text
        .contains("citybrain_deadletters_stored{source=\"bus-gps\",reason=\"decode\"} 1.0"));
    assert!(!r
        .text
        .contains("citybrain_deadletters_stored{source=\"bike-docks\""));

    // Delete the rest.
    for id in app.ingest.as_ref().unwrap().dead.ids(None, None) {
        let r = app.delete(&format!("/ingest/deadletters/{id}")).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
    }
    let r = app.delete("/ingest/deadletters/999").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app.get("/ingest/deadletters").await;
    assert_eq!(r.body["total"], 0);
}

#[tokio::test]
async fn ingest_is_404_when_not_enabled() {
    let app = super::harness::app().await;
    let r = app.post("/ingest/anything", &json!({})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.text.contains("not enabled"));
}
