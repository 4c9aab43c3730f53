//! Any text as an ISO 8601 duration (`aggrPeriodDuration`, retention): never panics, and
//! an accepted duration can be added to a date.
#![no_main]
use citybrain_model::duration::IsoDuration;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(d) = IsoDuration::parse("aggrPeriodDuration", s) {
            let _ = d.add_to(chrono::Utc::now());
            let _ = d.approx_millis();
        }
    }
});
