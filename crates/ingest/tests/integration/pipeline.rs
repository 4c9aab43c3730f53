//! The ingestion pipeline against a real embedded store: the report's case end to end
//! (XML plate reads, JSON bus GPS, CSV bike docks imported with their mappings and
//! queried as unified NGSI-LD entities), dead letters and their replay, resumable
//! import, edge reduction.

use std::sync::Arc;

use citybrain_broker::{QueryParams, RequestContext};
use citybrain_ingest::deadletter::LetterQuery;
use citybrain_ingest::import::{import_file, ImportOptions};
use citybrain_ingest::Reason;
use citybrain_model::JsonLdContext;
use serde_json::{json, Value};

use super::harness::{env_with, examples, query};

#[tokio::test]
async fn report_case_three_vendors_become_one_city_model() {
    let env = env_with(&examples().join("mappings")).await;
    let opts = ImportOptions::default();
    let data = examples().join("city-data");

    let plates = import_file(
        &env.ing,
        "plate-reads",
        &data.join("plate-reads.xml"),
        &opts,
        &mut |_| {},
    )
    .await
    .unwrap();
    assert_eq!((plates.read, plates.written, plates.created), (5, 4, 3));
    assert_eq!(
        plates.rejected.get(&Reason::MissingValue),
        Some(&1),
        "{plates:?}"
    );

    let buses = import_file(
        &env.ing,
        "bus-gps",
        &data.join("bus-gps.json"),
        &opts,
        &mut |_| {},
    )
    .await
    .unwrap();
    assert_eq!(
        (buses.read, buses.written, buses.filtered),
        (5, 3, 1),
        "{buses:?}"
    );
    assert_eq!(buses.rejected.get(&Reason::BadGeometry), Some(&1));

    let docks = import_file(
        &env.ing,
        "bike-docks",
        &data.join("bike-docks.csv"),
        &opts,
        &mut |_| {},
    )
    .await
    .unwrap();
    assert_eq!(
        (docks.read, docks.written, docks.filtered),
        (5, 3, 1),
        "{docks:?}"
    );
    assert_eq!(docks.rejected.get(&Reason::BadValue), Some(&1));

    // One query over the unified model: every vehicle within 500 m of Tiananmen, whoever
    // reported it (police cameras or the bus operator).
    let near = query(
        &env.broker,
        QueryParams {
            type_: Some("Vehicle".into()),
            georel: Some("near;maxDistance==500".into()),
            geometry: Some("Point".into()),
            coordinates: Some(json!([116.3975, 39.9087])),
            ..Default::default()
        },
    );
    let mut ids: Vec<&str> = near.iter().map(|e| e["id"].as_str().unwrap()).collect();
    ids.sort();
    assert_eq!(
        ids,
        vec![
            "urn:ngsi-ld:Vehicle:bus-1042",
            "urn:ngsi-ld:Vehicle:plate-%E4%BA%ACB67890",
        ],
        "{near:?}"
    );
    let bus = near
        .iter()
        .find(|e| e["id"] == "urn:ngsi-ld:Vehicle:bus-1042")
        .unwrap();
    // The later of the two positions wins; 7.5 m/s is 27 km/h.
    assert_eq!(bus["speed"]["value"], json!(27.0));
    assert_eq!(bus["speed"]["unitCode"], "KMH");
    assert_eq!(bus["speed"]["observedAt"], "2026-03-01T00:01:05Z");
    assert_eq!(bus["serviceStatus"]["value"], "onRoute");
    assert_eq!(
        bus["refRoute"]["object"],
        "urn:ngsi-ld:PublicTransportRoute:52"
    );
    assert_eq!(bus["occupancy"]["value"], json!(64.0));

    let car = query(
        &env.broker,
        QueryParams {
            type_: Some("Vehicle".into()),
            q: Some("vehicleType==\"car\"".into()),
            ..Default::default()
        },
    );
    assert_eq!(car.len(), 1);
    let car = &car[0];
    assert_eq!(car["vehiclePlateIdentifier"]["value"], "京A12345");
    // 28 mph is 45.06 km/h; 08:03:41 in Beijing is 00:03:41Z.
    let kmh = car["speed"]["value"].as_f64().unwrap();
    assert!((kmh - 45.061_632).abs() < 1e-6, "{kmh}");
    assert_eq!(car["speed"]["observedAt"], "2026-03-01T00:03:41Z");
    assert_eq!(
        car["location"]["value"]["coordinates"],
        json!([116.4039, 39.9152])
    );
    assert_eq!(
        car["refCheckpoint"]["object"],
        "urn:ngsi-ld:Device:checkpoint-CP-12"
    );

    let docks = query(
        &env.broker,
        QueryParams {
            type_: Some("BikeHireDockingStation".into()),
            q: Some("availableBikeNumber>0".into()),
            ..Default::default()
        },
    );
    let mut names: Vec<&str> = docks
        .iter()
        .map(|e| e["name"]["value"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec!["Dongdan", "Tiananmen East"]);

    // Nothing was silently dropped: three dead letters, one per vendor.
    let (letters, total) = env.ing.dead.list(&LetterQuery {
        limit: 10,
        ..Default::default()
    });
    assert_eq!(total, 3);
    let reasons: Vec<(String, Reason)> = letters
        .iter()
        .map(|l| (l.source.clone(), l.reason))
        .collect();
    assert!(reasons.contains(&("bike-docks".into(), Reason::BadValue)));
    let bad_dock = letters.iter().find(|l| l.source == "bike-docks").unwrap();
    assert!(
        bad_dock.message.contains("availableBikeNumber"),
        "{}",
        bad_dock.message
    );
    assert!(bad_dock.message.contains("n/a"), "{}", bad_dock.message);
    let raw = String::from_utf8(env.ing.dead.raw(bad_dock.id).unwrap()).unwrap();
    assert!(raw.starts_with("station_id;name;"), "{raw}");
    assert!(raw.contains("TAM-003;Qianmen"), "{raw}");
}

#[tokio::test]
async fn dead_letters_replay_after_a_mapping_fix() {
    let mdir = tempfile::tempdir().unwrap();
    let mapping = std::fs::read_to_string(examples().join("mappings/bike-docks.toml")).unwrap();
    std::fs::write(mdir.path().join("bike-docks.toml"), &mapping).unwrap();
    let env = env_with(mdir.path()).await;
    let payload = std::fs::read(examples().join("city-data/bike-docks.csv")).unwrap();
    let s = env
        .ing
        .ingest_payload("bike-docks", &payload, None, &[])
        .await
        .unwrap();
    assert_eq!(s.dead_letters.len(), 1);
    let id = s.dead_letters[0];

    // Replaying with the same mapping fails again: the letter stays (as a new one).
    let again = env.ing.replay(&[id]).await.unwrap();
    assert!(!again[0].replayed);
    assert_eq!(env.ing.dead.len(), 1);
    let id = env.ing.dead.ids(None, None)[0];

    // The integrator fixes the mapping: "n/a" means unknown, written as 0 here.
    let fixed = mapping.replace(
        "name = \"availableBikeNumber\"\npath = \"bikes_available\"\ntype = \"integer\"",
        "name = \"availableBikeNumber\"\npath = \"bikes_available\"\ntype = \"integer\"\nregex = '^(\\d+)$'\ndefault = 0",
    );
    assert_ne!(fixed, mapping);
    // A broken edit is refused with file, line and field; the running mapping stays.
    std::fs::write(
        mdir.path().join("bike-docks.toml"),
        fixed.replace("type = \"integer\"\nregex", "type = \"integr\"\nregex"),
    )
    .unwrap();
    let err = env.ing.reload().unwrap_err().to_string();
    assert!(err.contains("bike-docks.toml:"), "{err}");
    assert!(err.contains("integr"), "{err}");
    std::fs::write(mdir.path().join("bike-docks.toml"), &fixed).unwrap();
    env.ing.reload().unwrap();
    let done = env.ing.replay(&[id]).await;
    // The regex does not match "n/a": the value is missing, so the default applies.
    let done = done.unwrap();
    assert!(done[0].replayed, "{done:?}");
    assert!(env.ing.dead.is_empty());
    let e = env
        .broker
        .retrieve_entity(
            &RequestContext::default(),
            "urn:ngsi-ld:BikeHireDockingStation:TAM-003",
        )
        .unwrap();
    let v = citybrain_model::render::render_entity(&e, &JsonLdContext::core(), &Default::default());
    let v = Value::Object(v);
    assert_eq!(v["availableBikeNumber"]["value"], json!(0));
}

#[tokio::test]
async fn broken_payloads_become_dead_letters_and_never_stop_the_pipeline() {
    let env = env_with(&examples().join("mappings")).await;
    let cases: Vec<(&str, Vec<u8>, Reason)> = vec![
        (
            "bus-gps",
            b"{\"vehicles\": [{\"busId\": \"1\"".to_vec(),
            Reason::Decode,
        ),
        ("bus-gps", vec![0xff, 0xfe, 0x00, 0x01], Reason::Encoding),
        (
            "plate-reads",
            b"<checkpointReads><read><plate>X".to_vec(),
            Reason::Decode,
        ),
        ("plate-reads", b"<a><b></a>".to_vec(), Reason::Decode),
        ("bus-gps", vec![b' '; 17 << 20], Reason::Oversized),
    ];
    for (source, payload, want) in cases {
        let s = env
            .ing
            .ingest_payload(source, &payload, None, &[])
            .await
            .unwrap();
        assert_eq!(s.written, 0);
        assert_eq!(s.rejected.get(&want), Some(&1), "{source}: {s:?}");
    }
    // The oversized one is kept truncated to the limit, flagged.
    let (letters, _) = env.ing.dead.list(&LetterQuery {
        reason: Some(Reason::Oversized),
        limit: 5,
        ..Default::default()
    });
    assert!(letters[0].truncated);
    assert_eq!(letters[0].size, 17 << 20);
    // The pipeline still works.
    let good = std::fs::read(examples().join("city-data/bus-gps.json")).unwrap();
    let s = env
        .ing
        .ingest_payload("bus-gps", &good, None, &[])
        .await
        .unwrap();
    assert_eq!(s.written, 3);
    // Unknown topic: a dead letter under the `mqtt` source.
    let s = env.ing.ingest_topic("somewhere/else", b"{}").await.unwrap();
    assert_eq!(s.rejected.get(&Reason::NoMapping), Some(&1));
    // A topic pattern captures variables usable in the mapping.
    let s = env
        .ing
        .ingest_topic(
            "city/transport/bus/9001/gps",
            br#"{"vehicles":[{"busId":"9001","route":"7","pos":{"lat":39.9,"lng":116.4},"spd_ms":1,"ts":1772323205,"status":"IN_SERVICE","occupancy":0.5}]}"#,
        )
        .await
        .unwrap();
    assert_eq!(s.written, 1, "{s:?}");
    assert_eq!(env.ing.dead.len(), 7);
    let _ = env.dir.path();
}

#[tokio::test]
async fn interrupted_import_resumes_where_it_stopped() {
    let env = env_with(&examples().join("mappings")).await;
    let data = env.dir.path().join("docks.csv");
    let mut csv = String::from(
        "station_id;name;lat;lon;bikes_available;docks_available;last_reported;status\n",
    );
    for i in 0..1000 {
        csv.push_str(&format!(
            "S{i};Dock {i};39.9;116.4;{};3;01/03/2026 08:00;active\n",
            i % 20
        ));
    }
    std::fs::write(&data, csv).unwrap();
    let state = env.dir.path().join("import-state");
    let opts = ImportOptions {
        chunk: 100,
        state_dir: Some(state.clone()),
    };
    // Simulate an interruption: the writer is stopped after three chunks by
    // panicking inside the progress callback of a spawned task.
    let ing = Arc::new(env);
    let ing2 = ing.clone();
    let data2 = data.clone();
    let opts2 = opts.clone();
    let handle = tokio::spawn(async move {
        let mut chunks = 0;
        import_file(&ing2.ing, "bike-docks", &data2, &opts2, &mut |_| {
            chunks += 1;
            assert!(chunks < 3, "interrupted");
        })
        .await
    });
    assert!(handle.await.is_err());
    assert_eq!(std::fs::read_dir(&state).unwrap().count(), 1);
    let mut resumed = 0;
    let s = import_file(&ing.ing, "bike-docks", &data, &opts, &mut |p| {
        resumed = p.resumed_from
    })
    .await
    .unwrap();
    assert_eq!(resumed, 300);
    assert_eq!(s.read, 700);
    assert_eq!(s.written, 700);
    // The resume file is gone after a complete import.
    assert_eq!(std::fs::read_dir(&state).unwrap().count(), 0);
    let all = query(
        &ing.broker,
        QueryParams {
            type_: Some("BikeHireDockingStation".into()),
            limit: Some("1000".into()),
            ..Default::default()
        },
    );
    assert_eq!(all.len(), 1000);
}
