//! On-disk format compatibility: data written by format version 1 (a snapshot and a log
//! segment after it, committed under `tests/fixtures/v1/`) must keep opening in every
//! later build. Regenerate only when the format version changes, and keep the old one.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

use std::path::Path;

use citybrain_model::context::DEFAULT_VOCAB;
use citybrain_store::{EmbeddedStore, EntityStore, StoreOptions};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn format_v1_data_still_opens() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture, dir.path());
    let s = EmbeddedStore::open(StoreOptions::new(dir.path())).unwrap();
    // 3 entities from the snapshot, then the log: one updated, one deleted, one created.
    assert_eq!(s.count("").unwrap(), 3);
    let a = s.get("", "urn:ngsi-ld:Sensor:a").unwrap().unwrap();
    let v = a
        .default_instance(&format!("{DEFAULT_VOCAB}temperature"))
        .unwrap();
    assert_eq!(v.value.to_value(), serde_json::json!(21.5));
    assert!(s.get("", "urn:ngsi-ld:Sensor:b").unwrap().is_none());
    assert!(s.get("", "urn:ngsi-ld:Sensor:d").unwrap().is_some());
    assert!(s.tenant_exists("district9").unwrap());
    assert_eq!(s.docs("", "subscriptions").unwrap().len(), 1);
    s.close();
}
