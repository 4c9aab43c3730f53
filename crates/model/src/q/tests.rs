use super::*;
use crate::entity::parse_entity;
use crate::time::{Clock as _, SystemClock};
use serde_json::json;

fn entity() -> Entity {
    let body = json!({
        "id": "urn:ngsi-ld:T:1", "type": "T",
        "speed": {"type": "Property", "value": 55, "observedAt": "2024-01-01T10:00:00Z",
                  "accuracy": {"type": "Property", "value": 0.9}},
        "name": "Main street",
        "address": {"type": "Property", "value": {"city": "Porto", "zip": {"code": "4000"}}},
        "tags": ["a", "b"],
        "owner": {"type": "Relationship", "object": "urn:ngsi-ld:Person:1"},
        "active": true,
        "when": "2024-03-01T00:00:00Z"
    });
    parse_entity(
        body.as_object().unwrap(),
        &JsonLdContext::core(),
        SystemClock.now_precise(),
    )
    .unwrap()
}

fn check(q: &str) -> bool {
    let mut q = Query::parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
    q.resolve(&JsonLdContext::core());
    q.matches(&entity())
}

#[test]
fn evaluates_the_grammar() {
    let yes = [
        "speed",
        "speed==55",
        "speed>50",
        "speed>=55",
        "speed<56",
        "speed!=54",
        "speed==50..60",
        "speed==1,55,3",
        "speed>50;name==\"Main street\"",
        "speed>100|name~=Main.*",
        "(speed>100|active==true);owner==urn:ngsi-ld:Person:1",
        "address[city]==\"Porto\"",
        "address[zip][code]==\"4000\"",
        "address[zip.code]==\"4000\"",
        "speed.accuracy>0.5",
        "speed.observedAt>2023-12-31T00:00:00Z",
        "tags==\"b\"",
        "!missing",
        "when>2024-02-01T00:00:00Z",
        "name!~=^Side",
        "tags!=\"c\"",
        "when==2024-01-01T00:00:00Z..2024-12-31T00:00:00Z",
    ];
    for q in yes {
        assert!(check(q), "expected match: {q}");
    }
    let no = [
        "missing",
        "speed>60",
        "speed==1,2",
        "speed==60..70",
        "name==\"Other\"",
        "speed>50;active==false",
        "!speed",
        "tags!=\"a\"",
        "address[nope]==1",
    ];
    for q in no {
        assert!(!check(q), "expected no match: {q}");
    }
}

#[test]
fn rejects_malformed() {
    for q in [
        "",
        "speed==",
        "(speed>1",
        "speed>1)",
        "speed=5",
        "spe ed>1",
        "speed>1..2",
        "name~=(",
        "a[b==1",
        "!a==1",
        "a..b==1",
    ] {
        assert!(Query::parse(q).is_err(), "{q}");
    }
}

#[test]
fn reports_attributes_read() {
    let mut q = Query::parse("a>1;(b==2|c.d==3)").unwrap();
    q.resolve(&JsonLdContext::core());
    assert_eq!(q.attributes().len(), 3);
}
