//! Any bytes as an entity body: parsing must never panic.
#![no_main]
use citybrain_model::entity::{parse_attributes, parse_entity, ParseMode};
use citybrain_model::JsonLdContext;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(serde_json::Value::Object(body)) = serde_json::from_slice::<serde_json::Value>(data) {
        let ctx = JsonLdContext::core();
        let now = chrono::Utc::now();
        let _ = parse_entity(&body, &ctx, now);
        let _ = parse_attributes(&body, &ctx, now, ParseMode { nulls_delete: true, temporal: false });
    }
});
