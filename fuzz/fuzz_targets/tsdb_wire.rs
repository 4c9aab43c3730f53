//! Any bytes as a history log record: decoding must never panic; what decodes must
//! round-trip through the encoder.
#![no_main]
use citybrain_tsdb::codec::Reader;
use citybrain_tsdb::wire::{decode_ops, encode_ops};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(ops) = decode_ops(&mut Reader::new(data)) {
        let mut buf = Vec::new();
        encode_ops(&ops, &mut buf);
        let back = decode_ops(&mut Reader::new(&buf));
        assert_eq!(format!("{back:?}"), format!("{:?}", Some(ops)));
    }
});
