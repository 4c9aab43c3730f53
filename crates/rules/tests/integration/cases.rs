//! Runs every `tests/rules/*.yaml` case file. A case gives rules, then steps (an
//! observation, or a clock tick), and the events expected, in order and exactly; or
//! rules expected to be refused, with the field each error names. Time is only what
//! the steps say, so windows, holds and heartbeats replay the same way every run.

use std::path::Path;

use chrono::{DateTime, Utc};
use citybrain_rules::{parse_rules, Engine, Event, ObsValue, Observation};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    #[allow(dead_code)]
    description: String,
    #[serde(default)]
    rules: Vec<serde_yaml_ng::Value>,
    #[serde(default)]
    steps: Vec<Step>,
    #[serde(default)]
    expect: Vec<Expect>,
    /// Rules that must be refused: the error's field, and a part of its message.
    #[serde(default)]
    rejects: Vec<Reject>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    #[serde(default)]
    at: Option<DateTime<Utc>>,
    #[serde(default)]
    entity: Option<String>,
    #[serde(default, rename = "type")]
    ty: Option<String>,
    #[serde(default)]
    attr: Option<String>,
    #[serde(default)]
    value: Option<serde_json::Value>,
    #[serde(default)]
    tick: Option<DateTime<Utc>>,
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
struct Expect {
    at: DateTime<Utc>,
    rule: String,
    entity: String,
    kind: String,
    #[serde(default)]
    value: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reject {
    rule: serde_yaml_ng::Value,
    field: String,
    message: String,
}

fn expect_of(e: &Event, with_value: bool) -> Expect {
    Expect {
        at: e.at,
        rule: e.rule.to_string(),
        entity: e.entity.to_string(),
        kind: serde_json::to_value(e.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        value: if with_value {
            e.value.map(|v| (v * 1e6).round() / 1e6)
        } else {
            None
        },
    }
}

fn run_case(path: &Path) {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).unwrap();
    let case: Case = serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut engine = Engine::new();
    for r in case.rules {
        let text = serde_yaml_ng::to_string(&r).unwrap();
        for spec in parse_rules(&text, &name).unwrap_or_else(|e| panic!("{name}: {e}")) {
            engine.put(spec).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
    for rj in case.rejects {
        let text = serde_yaml_ng::to_string(&rj.rule).unwrap();
        let res = parse_rules(&text, "r")
            .and_then(|specs| specs.into_iter().try_for_each(|s| Engine::new().put(s)));
        let err = match res {
            Err(e) => e,
            Ok(()) => panic!("{name}: accepted {text}"),
        };
        assert_eq!(err.field, rj.field, "{name}: {err}");
        assert!(err.message.contains(&rj.message), "{name}: {err}");
    }
    let mut got = Vec::new();
    for (i, s) in case.steps.iter().enumerate() {
        if let Some(t) = s.tick {
            got.extend(engine.tick(t));
            continue;
        }
        let (Some(at), Some(entity), Some(ty), Some(attr), Some(value)) =
            (s.at, &s.entity, &s.ty, &s.attr, &s.value)
        else {
            panic!("{name}: step {i} is neither a tick nor a whole observation");
        };
        got.extend(engine.observe(&Observation {
            entity,
            entity_type: ty,
            attr,
            at,
            value: ObsValue::from_json(value),
        }));
    }
    let want = case.expect;
    let got: Vec<Expect> = got
        .iter()
        .zip(
            want.iter()
                .map(|w| w.value.is_some())
                .chain(std::iter::repeat(false)),
        )
        .map(|(e, v)| expect_of(e, v))
        .collect();
    assert_eq!(got, want, "{name}");
}

#[test]
fn every_case_file() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rules");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "case files missing in {}", dir.display());
    for f in files {
        run_case(&f);
    }
}
