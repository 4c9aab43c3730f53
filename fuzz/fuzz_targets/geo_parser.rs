//! Any text as georel / geometry / coordinates: parsing and matching must never panic.
#![no_main]
use citybrain_model::geojson::{to_geometry, GeoQuery};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let mut parts = s.splitn(3, '\n');
    let (rel, geom, coords) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if let Ok(q) = GeoQuery::new(rel, geom, serde_json::Value::String(coords.to_string()), "l".into()) {
        if let Ok(target) = to_geometry(&serde_json::json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]})) {
            let _ = q.matches(&target);
        }
    }
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(s) {
        let _ = to_geometry(&v);
    }
});
