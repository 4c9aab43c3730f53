//! Any bytes as a segment block: decoding must never panic, and whatever decodes must
//! encode back to a block that decodes to the same points.
#![no_main]
use citybrain_tsdb::segment::{decode_block, decode_numeric, encode_block};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (mut ts, mut vals) = (Vec::new(), Vec::new());
    let _ = decode_numeric(data, &mut ts, &mut vals);
    if let Some((series, points)) = decode_block(data) {
        let mut again = Vec::new();
        encode_block(series, &points, &mut again);
        let back = decode_block(&again).map(|(_, p)| p);
        // NaN payloads compare unequal; compare bit patterns through Debug.
        assert_eq!(format!("{back:?}"), format!("{:?}", Some(points)));
    }
});
