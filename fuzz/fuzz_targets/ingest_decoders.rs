//! Any bytes as a JSON, JSON Lines, CSV or XML payload (the first byte picks the
//! format), decoded and mapped with a mapping of that format: decoding and mapping must
//! never panic; every record either maps, is filtered, or is rejected with a reason.
#![no_main]
use std::sync::OnceLock;

use citybrain_ingest::decode::{decode_payload, Item};
use citybrain_ingest::mapping::{parse, Mapping, Syntax};
use libfuzzer_sys::fuzz_target;

const COMMON: &str = r#"
[entity]
id = "urn:ngsi-ld:Thing:{id}"
type = "Thing"
[observed]
path = "t"
missing = "now"
[location]
lat = "lat"
lon = "lon"
[[filters]]
path = "skip"
exists = false
[[attributes]]
name = "temperature"
path = "temp"
from_unit = "FAH"
unit = "CEL"
[[attributes]]
name = "state"
path = "s"
map = { "0" = "off", "1" = "on" }
[[attributes]]
name = "code"
path = "code"
regex = "([A-Z]+)-\\d+"
[[attributes]]
name = "ref"
template = "urn:ngsi-ld:Room:{room}"
type = "relationship"
[[attributes]]
name = "doc"
path = "doc"
type = "json"
"#;

fn mappings() -> &'static [Mapping; 4] {
    static M: OnceLock<[Mapping; 4]> = OnceLock::new();
    M.get_or_init(|| {
        let m = |head: &str| {
            parse(&format!("{head}{COMMON}"), Syntax::Toml, "fuzz.toml").expect("fuzz mapping")
        };
        [
            m("source = \"j\"\nformat = \"json\"\nrecords = \"$.items[*]\"\n"),
            m("source = \"l\"\nformat = \"jsonl\"\n"),
            m("source = \"c\"\nformat = \"csv\"\n"),
            m("source = \"x\"\nformat = \"xml\"\nrecords = \"//item\"\n"),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, payload)) = data.split_first() else {
        return;
    };
    let m = &mappings()[(sel % 4) as usize];
    let now = chrono::DateTime::from_timestamp(1_772_323_200, 0).unwrap_or_default();
    if let Ok(items) = decode_payload(m, payload) {
        for item in items {
            match item {
                Item::Record(r) => {
                    let _ = m.apply(r.as_record(), &[], now);
                    let _ = r.as_record().raw(b',');
                }
                Item::Bad { reject, .. } => assert!(!reject.message.is_empty()),
            }
        }
    }
});
