use super::*;
use crate::context::DEFAULT_VOCAB;
use serde_json::json;

fn now() -> DateTime<Utc> {
    crate::time::parse_datetime("2024-01-01T00:00:00Z").unwrap()
}

fn parse(v: Value) -> Result<Entity> {
    parse_entity(v.as_object().unwrap(), &JsonLdContext::core(), now())
}

#[test]
fn parses_normalized_entity() {
    let e = parse(json!({
        "id": "urn:ngsi-ld:Vehicle:A1", "type": "Vehicle",
        "speed": {"type": "Property", "value": 50, "unitCode": "KMH", "observedAt": "2024-01-01T10:00:00Z",
                  "accuracy": {"type": "Property", "value": 0.9}},
        "owner": {"type": "Relationship", "object": "urn:ngsi-ld:Person:1"},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [2.1, 41.3]}},
        "name": {"type": "LanguageProperty", "languageMap": {"en": "car", "es": "coche"}}
    }))
    .unwrap();
    assert_eq!(&*e.types[0], format!("{DEFAULT_VOCAB}Vehicle"));
    let speed = e
        .default_instance(&format!("{DEFAULT_VOCAB}speed"))
        .unwrap();
    assert_eq!(speed.value.to_value(), json!(50));
    assert_eq!(speed.unit_code.as_deref(), Some("KMH"));
    assert!(speed
        .sub_attr(&format!("{DEFAULT_VOCAB}accuracy"))
        .is_some());
    assert_eq!(
        e.default_instance(iri::LOCATION).unwrap().kind,
        AttrKind::GeoProperty
    );
    assert_eq!(
        e.default_instance(&format!("{DEFAULT_VOCAB}owner"))
            .unwrap()
            .kind,
        AttrKind::Relationship
    );
}

#[test]
fn parses_concise_and_multi_instance() {
    let e = parse(json!({
        "id": "urn:ngsi-ld:X:1", "type": ["A", "B"],
        "temp": 20.5,
        "loc2": {"type": "Point", "coordinates": [1, 2]},
        "rel": {"object": "urn:x:y"},
        "multi": [{"type": "Property", "value": 1}, {"type": "Property", "value": 2, "datasetId": "urn:ds:2"}]
    }))
    .unwrap();
    assert_eq!(e.types.len(), 2);
    assert_eq!(
        e.default_instance(&format!("{DEFAULT_VOCAB}loc2"))
            .unwrap()
            .kind,
        AttrKind::GeoProperty
    );
    assert_eq!(e.attr(&format!("{DEFAULT_VOCAB}multi")).unwrap().len(), 2);
}

#[test]
fn rejects_bad_input_naming_the_field() {
    let cases = [
        (json!({"type": "T"}), "'id' is missing"),
        (json!({"id": "not a uri", "type": "T"}), "absolute URI"),
        (json!({"id": "urn:a:b"}), "'type' is missing"),
        (
            json!({"id": "urn:a:b", "type": "T", "r": {"type": "Relationship", "object": "x"}}),
            "relationship 'r'",
        ),
        (
            json!({"id": "urn:a:b", "type": "T", "p": {"type": "Property"}}),
            "has no 'value'",
        ),
        (
            json!({"id": "urn:a:b", "type": "T", "p": {"type": "Foo", "value": 1}}),
            "unknown type 'Foo'",
        ),
        (
            json!({"id": "urn:a:b", "type": "T", "location": 5}),
            "must be a GeoProperty",
        ),
        (
            json!({"id": "urn:a:b", "type": "T", "g": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [1]}}}),
            "'g'",
        ),
        (
            json!({"id": "urn:a:b", "type": "T", "p": {"type": "Property", "value": 1, "observedAt": "x"}}),
            "p.observedAt",
        ),
        (
            json!({"id": "urn:a:b", "type": "T", "bad name": 1}),
            "forbidden character",
        ),
        (
            json!({"id": "urn:a:b", "type": "T", "p": null}),
            "'p' must not be null",
        ),
    ];
    for (body, needle) in cases {
        let err = parse(body.clone()).unwrap_err();
        assert!(err.detail.contains(needle), "{body}: {}", err.detail);
    }
}

#[test]
fn serde_round_trip() {
    let e = parse(json!({"id": "urn:a:b", "type": "T", "p": {"type": "Property", "value": {"x": [1, 2]}, "observedAt": "2024-01-01T10:00:00.5Z"}})).unwrap();
    let bytes = serde_json::to_vec(&e).unwrap();
    let back: Entity = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(e, back);
}
