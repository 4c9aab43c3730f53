//! Any text as `q`: parsing and evaluation must never panic.
#![no_main]
use citybrain_model::entity::parse_entity;
use citybrain_model::q::Query;
use citybrain_model::JsonLdContext;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(mut q) = Query::parse(s) {
            let ctx = JsonLdContext::core();
            q.resolve(&ctx);
            let body = serde_json::json!({"id": "urn:a:1", "type": "T", "a": 1, "b": {"c": "x"}, "d": [1, 2]});
            if let Some(obj) = body.as_object() {
                if let Ok(e) = parse_entity(obj, &ctx, chrono::Utc::now()) {
                    let _ = q.matches(&e);
                }
            }
        }
    }
});
