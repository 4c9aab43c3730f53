//! Incident case files (`tests/cases/*.yaml`): rules, an optional SLA policy, routing
//! and plans; then steps (observations, clock moves that tick the rules and check the
//! SLAs, incident moves, mode switches of the tenant or of an area); then the
//! incidents expected. The clock is injected, so windows, holds, heartbeats and SLA
//! breaches replay the same way every run.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use citybrain_hub::{Hub, IncidentFilter, Move};
use citybrain_model::time::ManualClock;
use citybrain_rules::{parse_rules, ObsValue, Observation};
use citybrain_store::{EmbeddedStore, EntityStore, StoreOptions};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    #[allow(dead_code)]
    description: String,
    start: DateTime<Utc>,
    rules: Vec<serde_yaml_ng::Value>,
    #[serde(default)]
    sla: Option<Value>,
    #[serde(default)]
    routing: BTreeMap<String, String>,
    #[serde(default)]
    emergency_routing: BTreeMap<String, String>,
    /// Named areas: GeoJSON geometries.
    #[serde(default)]
    areas: BTreeMap<String, Value>,
    #[serde(default)]
    plans: Option<Value>,
    steps: Vec<Step>,
    incidents: Vec<Expected>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    /// An observation at this time (the clock moves there first).
    #[serde(default)]
    at: Option<DateTime<Utc>>,
    #[serde(default)]
    entity: Option<String>,
    #[serde(default, rename = "type")]
    ty: Option<String>,
    #[serde(default)]
    attr: Option<String>,
    #[serde(default)]
    value: Option<Value>,
    /// The clock moves here: rules tick, SLAs are checked.
    #[serde(default)]
    clock: Option<DateTime<Utc>>,
    /// An incident move: `{incident: 1, to: acknowledged, ...}` (the clock stays).
    #[serde(default, rename = "move")]
    mv: Option<Value>,
    /// A mode switch: `{to: emergency, area: riverside, reason: ...}`.
    #[serde(default)]
    mode: Option<Value>,
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
struct Expected {
    /// The incident number.
    n: u64,
    category: String,
    status: String,
    severity: String,
    #[serde(default)]
    department: Option<String>,
    events: u64,
    entities: Vec<String>,
    #[serde(default)]
    escalated: bool,
    #[serde(default)]
    tasks: usize,
    /// The mode it was filed in (checked where the case names it).
    #[serde(default)]
    mode: Option<String>,
}

async fn run_case(path: &Path) {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).unwrap();
    let case: Case = serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(StoreOptions::new(dir.path())).unwrap();
    let dynstore: Arc<dyn EntityStore> = Arc::new(store.clone());
    let clock = Arc::new(ManualClock::new(case.start));
    let hub = Hub::new(dynstore, clock.clone()).unwrap();
    for r in &case.rules {
        let text = serde_yaml_ng::to_string(r).unwrap();
        for spec in parse_rules(&text, &name).unwrap_or_else(|e| panic!("{name}: {e}")) {
            hub.put_rule(&crate::by("", "case"), spec, true)
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
    if let Some(p) = &case.sla {
        hub.set_sla_policy(
            &crate::by("", "case"),
            serde_json::from_value(p.clone()).unwrap(),
        )
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    hub.set_routing(
        &crate::by("", "case"),
        Default::default(),
        case.routing.clone(),
    )
    .await
    .unwrap();
    hub.set_routing(
        &crate::by("", "case"),
        citybrain_hub::sla::Mode::Emergency,
        case.emergency_routing.clone(),
    )
    .await
    .unwrap();
    for (area, geometry) in &case.areas {
        let spec = citybrain_hub::AreaSpec {
            geometry: geometry.clone(),
            description: None,
        };
        hub.put_area(&crate::by("", "case"), area, spec)
            .await
            .unwrap_or_else(|e| panic!("{name}: area {area}: {e}"));
    }
    if let Some(p) = &case.plans {
        hub.set_plans(
            &crate::by("", "case"),
            serde_json::from_value(p.clone()).unwrap(),
        )
        .await
        .unwrap();
    }
    let ctx = citybrain_model::context::JsonLdContext::core();
    for (i, s) in case.steps.iter().enumerate() {
        if let Some(t) = s.clock {
            clock.set(t);
            for (tenant, events) in hub.tick() {
                hub.file_events(&tenant, &events).await.unwrap();
            }
            hub.check_slas().await.unwrap();
            continue;
        }
        if let Some(m) = &s.mode {
            let to = serde_json::from_value(m["to"].clone())
                .unwrap_or_else(|e| panic!("{name}: step {i}: mode.to: {e}"));
            let reason = m["reason"].as_str().unwrap_or("case");
            hub.set_mode(&crate::by("", "case"), to, reason, m["area"].as_str())
                .await
                .unwrap_or_else(|e| panic!("{name}: step {i}: {e}"));
            continue;
        }
        if let Some(m) = &s.mv {
            let n = m["incident"]
                .as_u64()
                .unwrap_or_else(|| panic!("{name}: step {i}: move.incident"));
            let mut body = m.clone();
            body.as_object_mut().unwrap().remove("incident");
            let mv: Move =
                serde_json::from_value(body).unwrap_or_else(|e| panic!("{name}: step {i}: {e}"));
            hub.move_incident(
                &crate::by("", "case"),
                &format!("urn:ngsi-ld:Incident:{n}"),
                &mv,
            )
            .await
            .unwrap_or_else(|e| panic!("{name}: step {i}: {e}"));
            continue;
        }
        let (Some(at), Some(entity), Some(ty), Some(attr), Some(value)) =
            (s.at, &s.entity, &s.ty, &s.attr, &s.value)
        else {
            panic!("{name}: step {i} is not an observation, a clock move or a move");
        };
        clock.set(at);
        // The hub expands rule names with the core context: observations carry the
        // expanded names, as entities do.
        let (ty, attr) = (ctx.expand(ty), ctx.expand(attr));
        let obs = Observation {
            entity,
            entity_type: &ty,
            attr: &attr,
            at,
            value: ObsValue::from_json(value),
        };
        let events = hub.observe("", &[obs]);
        hub.file_events("", &events).await.unwrap();
    }
    let mut got: Vec<Expected> = hub
        .incidents("", &IncidentFilter::default())
        .await
        .into_iter()
        .map(|i| Expected {
            n: i.id.rsplit(':').next().unwrap().parse().unwrap(),
            category: i.category.clone(),
            status: i.status.name().to_string(),
            severity: serde_json::to_value(i.severity)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string(),
            department: i.department.clone(),
            events: i.event_count,
            entities: i.entities.clone(),
            escalated: i.history.iter().any(|s| s.action == "escalated"),
            tasks: i.tasks.len(),
            mode: serde_json::to_value(i.sla.mode)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string)),
        })
        .collect();
    got.sort_by_key(|e| e.n);
    for (g, e) in got.iter_mut().zip(&case.incidents) {
        if e.mode.is_none() {
            g.mode = None;
        }
    }
    assert_eq!(got, case.incidents, "{name}");
    store.close();
}

#[tokio::test]
async fn every_incident_case_file() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "case files missing in {}", dir.display());
    for f in files {
        run_case(&f).await;
    }
}
