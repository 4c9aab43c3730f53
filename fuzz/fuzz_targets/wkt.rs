//! Any text as Well-Known Text: never panics; what parses is a valid GeoJSON geometry.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(g) = citybrain_ingest::mapping::parse_wkt(s) {
        assert!(
            citybrain_model::geojson::validate_geometry("f", &g).is_ok(),
            "{s} -> {g}"
        );
    }
});
