//! Failures at run time: the failing rule is disabled with its reason, the others go
//! on.

use chrono::{DateTime, Duration, Utc};
use citybrain_rules::{parse_rules, Engine, EventKind, ObsValue, Observation};

const RULES: &str = r#"
- id: flood-window
  category: test
  for: {type: Sensor}
  when: {kind: window, attr: v, window: 1d, agg: max, above: 1000}
- id: high
  category: test
  for: {type: Sensor}
  when: {kind: threshold, attr: v, above: 5}
"#;

#[test]
fn a_rule_whose_state_overflows_is_disabled_and_the_others_go_on() {
    let mut engine = Engine::new();
    for spec in parse_rules(RULES, "rules").unwrap() {
        engine.put(spec).unwrap();
    }
    let t0: DateTime<Utc> = "2026-03-01T00:00:00Z".parse().unwrap();
    // 100,001 values inside one day-long window, 1 ms apart.
    for i in 0..100_001i64 {
        engine.observe(&Observation {
            entity: "urn:s:1",
            entity_type: "Sensor",
            attr: "v",
            at: t0 + Duration::milliseconds(i),
            value: ObsValue::Number(1.0),
        });
    }
    let status = engine.status();
    let flood = status.iter().find(|s| s.id == "flood-window").unwrap();
    assert!(!flood.enabled);
    assert!(
        flood
            .disabled_reason
            .as_deref()
            .unwrap()
            .contains("more than 100000 values"),
        "{flood:?}"
    );
    assert_eq!(flood.entities, 0, "its state is dropped");
    let high = status.iter().find(|s| s.id == "high").unwrap();
    assert!(high.enabled && high.disabled_reason.is_none());
    let ev = engine.observe(&Observation {
        entity: "urn:s:1",
        entity_type: "Sensor",
        attr: "v",
        at: t0 + Duration::seconds(200),
        value: ObsValue::Number(9.0),
    });
    assert_eq!(ev.len(), 1);
    assert_eq!((&*ev[0].rule, ev[0].kind), ("high", EventKind::Raised));
    // Putting the rule again (fixed) starts it afresh.
    engine
        .put(parse_rules(RULES, "rules").unwrap().remove(0))
        .unwrap();
    assert!(engine.status().iter().all(|s| s.enabled));
}
