//! Any text as a rule file: parsing and validation never panic; an error names a
//! field; a rule that loads is run over a few observations and ticks without panicking.
#![no_main]
use citybrain_rules::{parse_rules, Engine, ObsValue, Observation};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(specs) = parse_rules(text, "f") else {
        return;
    };
    let mut engine = Engine::new();
    for s in specs {
        if let Err(e) = engine.put(s) {
            assert!(!e.field.is_empty());
            continue;
        }
    }
    let t0 = chrono::DateTime::from_timestamp(1_772_323_200, 0).unwrap_or_default();
    let ty = "T";
    for (i, attr) in ["a", "b", "location", "x"].iter().enumerate() {
        let value = if *attr == "location" {
            ObsValue::Point([116.4, 39.9])
        } else {
            ObsValue::Number(i as f64 * 37.5 - 20.0)
        };
        for k in 0..5i64 {
            let _ = engine.observe(&Observation {
                entity: "urn:e:1",
                entity_type: ty,
                attr,
                at: t0 + chrono::Duration::seconds(k * 61 + i as i64),
                value: value.clone(),
            });
        }
    }
    let _ = engine.tick(t0 + chrono::Duration::days(2));
    let _ = engine.status();
});
