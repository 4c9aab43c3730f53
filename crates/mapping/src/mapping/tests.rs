use super::*;
use crate::record::{Node, Record};
use citybrain_model::time::{Clock as _, SystemClock};
use serde_json::json;

fn toml_mapping(s: &str) -> Result<Mapping, MappingError> {
    parse(s, Syntax::Toml, "m.toml")
}

const BASE: &str = r#"
source = "s"
format = "json"
[entity]
id = "urn:ngsi-ld:Thing:{id}"
type = "Thing"
"#;

fn with(extra: &str) -> Result<Mapping, MappingError> {
    toml_mapping(&format!("{BASE}{extra}"))
}

fn map(m: &Mapping, v: serde_json::Value) -> Result<Mapped, crate::Reject> {
    m.apply(Record::Json(&Node::from(v)), &[], SystemClock.now_precise())
}

#[test]
fn unknown_keys_name_file_line_and_key() {
    let e = with("[[attributes]]\nname = \"a\"\npath = \"a\"\nscael = 2\n").unwrap_err();
    assert_eq!(e.file, "m.toml");
    assert_eq!(e.line, Some(10), "{e}");
    assert!(e.message.contains("scael"), "{e}");
    let e = parse(
        "source: s\nformat: json\nentity: {id: 'urn:x:{id}', type: T}\nattributes:\n  - name: a\n    pth: a\n",
        Syntax::Yaml,
        "m.yaml",
    )
    .unwrap_err();
    assert!(e.message.contains("pth"), "{e}");
    assert!(e.line.is_some(), "{e}");
    assert!(e.to_string().starts_with("m.yaml:"), "{e}");
}

#[test]
fn semantic_errors_name_the_field_and_line() {
    let cases = [
        ("[[attributes]]\nname = \"t\"\npath = \"t\"\nfrom_unit = \"CEL\"\nunit = \"KMH\"\n", "attributes[0].from_unit", Some(10)),
        ("[[attributes]]\nname = \"t\"\npath = \"t\"\n[[attributes]]\nname = \"u\"\npath = \"u\"\nregex = \"(\"\n", "attributes[1].regex", Some(13)),
        ("[[attributes]]\nname = \"t\"\npath = \"$.a[?(@.x)]\"\n", "attributes[0].path", Some(9)),
        ("[observed]\npath = \"t\"\ntimezone = \"Mars/Base\"\n[[attributes]]\nname = \"t\"\npath = \"t\"\n", "observed.timezone", Some(9)),
        ("[[attributes]]\nname = \"id\"\npath = \"t\"\n", "attributes[0].name", Some(8)),
        ("", "attributes", None),
    ];
    for (extra, field, line) in cases {
        let e = with(extra).unwrap_err();
        assert_eq!(e.field, field, "{e}");
        assert_eq!(e.line, line, "{e}");
    }
}

#[test]
fn maps_values_units_times_and_relationships() {
    let m = with(
        r#"
[fields]
room = { path = "/loc", regex = "room-(\\d+)" }
[observed]
path = "/t"
format = "unix_ms"
[location]
wkt = "/geom"
[[attributes]]
name = "temperature"
path = "/temp_f"
from_unit = "FAH"
unit = "CEL"
[[attributes]]
name = "state"
path = "/s"
map = { "0" = "off", "1" = "on" }
[[attributes]]
name = "label"
template = "Room {room}"
[[attributes]]
name = "refRoom"
template = "urn:ngsi-ld:Room:{room}"
type = "relationship"
[[attributes]]
name = "missing"
path = "/nope"
"#,
    )
    .unwrap();
    let out = map(
        &m,
        json!({"id": "a b", "loc": "room-12", "t": 1_772_323_200_000i64, "geom": "POINT(1 2)", "temp_f": 212, "s": 1}),
    )
    .unwrap();
    let Mapped::Entity(rec) = out else {
        panic!("filtered")
    };
    let (id, body) = (rec.id.clone(), rec.to_json());
    assert_eq!(id, "urn:ngsi-ld:Thing:a%20b");
    assert_eq!(body["temperature"]["value"], json!(100.0));
    assert_eq!(body["temperature"]["unitCode"], "CEL");
    assert_eq!(body["temperature"]["observedAt"], "2026-03-01T00:00:00Z");
    assert_eq!(body["state"]["value"], "on");
    assert_eq!(body["label"]["value"], "Room 12");
    assert_eq!(body["refRoom"]["object"], "urn:ngsi-ld:Room:12");
    assert_eq!(body["location"]["value"]["coordinates"], json!([1.0, 2.0]));
    assert!(body.get("missing").is_none());
}

#[test]
fn rejections_carry_reason_and_field() {
    let m = with(
        r#"
[observed]
path = "/t"
[[attributes]]
name = "n"
path = "/n"
type = "number"
required = true
[[attributes]]
name = "e"
path = "/e"
map = { a = 1 }
"#,
    )
    .unwrap();
    let t = "2026-03-01T00:00:00Z";
    let cases = [
        (
            json!({"id": "1", "t": t}),
            crate::Reason::MissingValue,
            "'n'",
        ),
        (
            json!({"id": "1", "t": t, "n": "x"}),
            crate::Reason::BadValue,
            "'x' is not a number",
        ),
        (
            json!({"id": "1", "t": t, "n": 1, "e": "b"}),
            crate::Reason::BadValue,
            "value map",
        ),
        (
            json!({"id": "1", "t": "noon", "n": 1}),
            crate::Reason::BadTime,
            "noon",
        ),
        (
            json!({"id": "1", "n": 1}),
            crate::Reason::MissingValue,
            "observed",
        ),
        (
            json!({"t": t, "n": 1}),
            crate::Reason::MissingValue,
            "entity.id",
        ),
    ];
    for (rec, reason, text) in cases {
        let r = map(&m, rec.clone()).unwrap_err();
        assert_eq!(r.reason, reason, "{rec}: {r:?}");
        assert!(r.message.contains(text), "{rec}: {}", r.message);
    }
}

#[test]
fn filters() {
    let m = with(
        r#"
[[filters]]
path = "/status"
in = ["on", "idle"]
[[filters]]
path = "/v"
min = 0
max = 100
[[attributes]]
name = "v"
path = "/v"
"#,
    )
    .unwrap();
    let ok = |v: serde_json::Value| matches!(map(&m, v), Ok(Mapped::Entity(_)));
    assert!(ok(json!({"id": 1, "status": "on", "v": 5})));
    assert!(ok(json!({"id": 1, "status": "idle", "v": "100"})));
    assert!(!ok(json!({"id": 1, "status": "off", "v": 5})));
    assert!(!ok(json!({"id": 1, "status": "on", "v": 101})));
    assert!(!ok(json!({"id": 1, "v": 5})));
}

#[test]
fn topic_patterns() {
    let m = with("topics = [\"city/{district}/aq/{device}\", \"legacy/#\"]\n[[attributes]]\nname = \"d\"\ntemplate = \"{district}\"\n");
    // `topics` must come before tables in TOML; the error says where.
    assert!(m.is_err());
    let m = toml_mapping(&format!(
        "topics = [\"city/{{district}}/aq/{{device}}\", \"legacy/+/#\"]\n{BASE}[[attributes]]\nname = \"d\"\ntemplate = \"{{district}}\"\n"
    ))
    .unwrap();
    assert_eq!(m.topics[0].filter(), "city/+/aq/+");
    assert_eq!(
        m.match_topic("city/haidian/aq/s-1"),
        Some(vec![
            ("district".into(), "haidian".into()),
            ("device".into(), "s-1".into())
        ])
    );
    assert_eq!(m.match_topic("city/haidian/aq"), None);
    assert_eq!(m.match_topic("legacy/x/y/z"), Some(vec![]));
    let v = json!({"id": "1"});
    let vars = vec![("district".to_string(), "haidian".to_string())];
    let Ok(Mapped::Entity(rec)) = m.apply(
        Record::Json(&Node::from(v.clone())),
        &vars,
        SystemClock.now_precise(),
    ) else {
        panic!()
    };
    let body = rec.to_json();
    assert_eq!(body["d"]["value"], "haidian");
}

#[test]
fn examples_load() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/mappings");
    let all = load_dir(&dir).unwrap();
    let names: Vec<&str> = all.iter().map(|m| m.source.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "bike-docks",
            "bus-gps",
            "plate-reads",
            "sumo-detectors",
            "sumo-forecasts",
            "sumo-indicators"
        ]
    );
}
