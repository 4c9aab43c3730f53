//! Any text as a mapping file, in TOML and in YAML: loading must never panic; an error
//! names its file; a mapping that loads is applied to a few records without panicking.
#![no_main]
use citybrain_ingest::mapping::{parse, Syntax};
use citybrain_ingest::record::{Node, Record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let now = chrono::DateTime::from_timestamp(1_772_323_200, 0).unwrap_or_default();
    for syntax in [Syntax::Toml, Syntax::Yaml] {
        match parse(text, syntax, "f") {
            Ok(m) => {
                let recs = [
                    serde_json::json!({"id": "1", "t": "2026-03-01T00:00:00Z", "v": 1.5}),
                    serde_json::json!({"id": "a b", "v": "x", "lat": 91, "lon": 0}),
                    serde_json::json!([1, 2]),
                ];
                for r in recs {
                    let _ = m.apply(Record::Json(&Node::from(r)), &[("n".into(), "1".into())], now);
                }
            }
            Err(e) => assert!(e.to_string().starts_with("f")),
        }
    }
});
