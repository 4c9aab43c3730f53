//! Any bytes on an MQTT connection: sniffing the protocol and reading packets (3.1.1
//! and 5) must never panic and must consume input or ask for more.
#![no_main]
use bytes::BytesMut;
use citybrain_ingest::mqtt::codec::{read, sniff_version, Version};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sniff_version(data);
    for v in [Version::V4, Version::V5] {
        let mut buf = BytesMut::from(data);
        for _ in 0..64 {
            let before = buf.len();
            match read(v, &mut buf, 4096) {
                Ok(Some(_)) => assert!(buf.len() < before, "a packet consumes input"),
                Ok(None) | Err(_) => break,
            }
        }
    }
});
