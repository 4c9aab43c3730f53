//! Anything SUMO (or whatever answers on its port) sends: decoding never panics, and
//! what decodes as a value re-encodes to the same bytes.
#![no_main]
use citybrain_twin::program::{links_of, phases_of};
use citybrain_twin::traci::codec::{self, Content, Reader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // As a step answer: status, then subscription results.
    let mut r = Reader::new(data);
    if codec::status(&mut r).is_ok() {
        let _ = codec::step_results(&mut r);
    }
    // As a get answer.
    let mut r = Reader::new(data);
    if codec::status(&mut r).is_ok() {
        let _ = codec::get_result(&mut r);
    }
    // As a typed value: decoding then encoding gives the bytes back, and the
    // program and link readers take whatever shape it has.
    let mut r = Reader::new(data);
    if let Ok(v) = r.value() {
        let used = r.position();
        let again = Content::new().value(&v);
        // NaN payloads and the polygon's short/long count forms may differ in bytes;
        // the value itself must survive.
        let mut back = Reader::new(&again.0);
        let v2 = back.value().expect("re-encoded value decodes");
        assert_eq!(format!("{v:?}"), format!("{v2:?}"));
        assert!(used <= data.len());
        let _ = phases_of(&v, "0");
        let _ = links_of(&v);
    }
});
