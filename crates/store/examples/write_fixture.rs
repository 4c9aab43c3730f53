//! Writes the format-compatibility fixture (`tests/fixtures/v<FORMAT_VERSION>/`):
//! `cargo run -p citybrain-store --example write_fixture -- DIR`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a one-off generator

use citybrain_model::entity::parse_entity;
use citybrain_model::time::{Clock as _, SystemClock};
use citybrain_model::JsonLdContext;
use citybrain_store::{EmbeddedStore, EntityStore, Origin, StoreOptions, Write};
use serde_json::json;

fn put(s: &EmbeddedStore, tenant: &str, body: serde_json::Value, rt: &tokio::runtime::Runtime) {
    let e = parse_entity(
        body.as_object().unwrap(),
        &JsonLdContext::core(),
        SystemClock.now_precise(),
    )
    .unwrap();
    let id = e.id.clone();
    let m = s
        .modify(
            tenant,
            &id,
            &mut |_| Ok(Some(Write::Put(e.clone()))),
            &Origin::default(),
        )
        .unwrap()
        .unwrap();
    rt.block_on(m.commit.wait()).unwrap();
}

fn main() {
    let dir = std::env::args().nth(1).expect("target directory");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s = EmbeddedStore::open(StoreOptions::new(&dir)).unwrap();
    for (id, t) in [("a", 20.0), ("b", 19.0), ("c", 18.0)] {
        put(
            &s,
            "",
            json!({"id": format!("urn:ngsi-ld:Sensor:{id}"), "type": "Sensor",
            "temperature": {"type": "Property", "value": t, "unitCode": "CEL", "observedAt": "2026-01-01T00:00:00Z"},
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [120.15, 30.25]}}}),
            &rt,
        );
    }
    put(
        &s,
        "district9",
        json!({"id": "urn:ngsi-ld:Sensor:x", "type": "Sensor", "temperature": 1}),
        &rt,
    );
    rt.block_on(
        s.put_doc(
            "",
            "subscriptions",
            "urn:ngsi-ld:Subscription:1",
            json!({"body": {"type": "Subscription"}}),
            &Origin::default(),
        )
        .unwrap()
        .wait(),
    )
    .unwrap();
    s.request_snapshot();
    std::thread::sleep(std::time::Duration::from_millis(500));
    put(
        &s,
        "",
        json!({"id": "urn:ngsi-ld:Sensor:a", "type": "Sensor", "temperature": {"type": "Property", "value": 21.5}}),
        &rt,
    );
    let m = s
        .modify(
            "",
            "urn:ngsi-ld:Sensor:b",
            &mut |_| Ok(Some(Write::Delete)),
            &Origin::default(),
        )
        .unwrap()
        .unwrap();
    rt.block_on(m.commit.wait()).unwrap();
    put(
        &s,
        "",
        json!({"id": "urn:ngsi-ld:Sensor:d", "type": "Sensor", "temperature": 17}),
        &rt,
    );
    // No close(): leave the log after the snapshot, as a crash would.
    std::mem::forget(s);
}
