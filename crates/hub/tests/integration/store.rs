//! The hub over a real store: rules survive a restart with their versions, and a
//! change of an entity becomes events.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use citybrain_hub::Hub;
use citybrain_model::time::{Clock, ManualClock, SystemClock};
use citybrain_rules::parse_rules;
use citybrain_store::{EmbeddedStore, EntityStore, StoreOptions};

const RULE: &str = "id: hot\ncategory: heat\nfor: {type: WeatherObserved}\nwhen: {kind: threshold, attr: temperature, above: 35}\n";
const BEAT: &str =
    "id: beat\ncategory: devices\nfor: {type: Meter}\nwhen: {kind: missing, attr: v, after: 10m}\n";
const HIGH: &str = "id: high\ncategory: devices\nfor: {type: Meter}\nwhen: {kind: threshold, attr: v, above: 50}\n";

/// Puts the rule of a YAML text.
async fn add_rule(hub: &Hub, yaml: &str) {
    hub.put_rule(
        &crate::by("", "a"),
        parse_rules(yaml, "r").unwrap().remove(0),
        true,
    )
    .await
    .unwrap();
}

/// Writes entity `id` of type `ty` with `v` observed at `at`; durable when it answers.
async fn put_reading(store: &Arc<dyn EntityStore>, id: &str, ty: &str, v: i64, at: DateTime<Utc>) {
    let body = serde_json::json!({"id": id, "type": ty, "v": {
        "type": "Property", "value": v,
        "observedAt": citybrain_model::time::format_datetime(&at)}});
    let ctx = citybrain_model::context::JsonLdContext::core();
    let e = citybrain_model::entity::parse_entity(body.as_object().unwrap(), &ctx, at).unwrap();
    store
        .modify(
            "",
            id,
            &mut |_| Ok(Some(citybrain_store::Write::Put(e.clone()))),
            &citybrain_store::Origin::default(),
        )
        .unwrap()
        .unwrap()
        .commit
        .wait()
        .await
        .unwrap();
}

/// A fresh store in `dir`, a hub over it on a manual clock at `now`.
fn hub_on(
    dir: &std::path::Path,
    now: DateTime<Utc>,
) -> (
    EmbeddedStore,
    Arc<dyn EntityStore>,
    Arc<ManualClock>,
    Arc<Hub>,
) {
    let store = EmbeddedStore::open(StoreOptions::new(dir)).unwrap();
    let dynstore: Arc<dyn EntityStore> = Arc::new(store.clone());
    let clock = Arc::new(ManualClock::new(now));
    let hub = Hub::new(dynstore.clone(), clock.clone()).unwrap();
    (store, dynstore, clock, hub)
}

#[tokio::test]
async fn rules_and_their_versions_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = EmbeddedStore::open(StoreOptions::new(dir.path())).unwrap();
        let dynstore: Arc<dyn EntityStore> = Arc::new(store.clone());
        let hub = Hub::new(dynstore, Arc::new(SystemClock)).unwrap();
        let spec = parse_rules(RULE, "r").unwrap().remove(0);
        hub.put_rule(&crate::by("t1", "alice"), spec.clone(), true)
            .await
            .unwrap();
        let mut v2 = spec;
        v2.description = "second".into();
        hub.put_rule(&crate::by("t1", "bob"), v2, false)
            .await
            .unwrap();
        assert!(hub
            .put_rule(
                &crate::by("t1", "x"),
                parse_rules(RULE, "r").unwrap().remove(0),
                true
            )
            .await
            .is_err());
        store.close();
    }
    let store = EmbeddedStore::open(StoreOptions::new(dir.path())).unwrap();
    let dynstore: Arc<dyn EntityStore> = Arc::new(store.clone());
    let hub = Hub::new(dynstore, Arc::new(SystemClock)).unwrap();
    let rules = hub.rules("t1");
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].record.version, 2);
    assert_eq!(rules[0].record.modified_by, "user:bob");
    assert_eq!(rules[0].record.rule.description, "second");
    assert!(hub.rules("t2").is_empty(), "tenants are apart");
    let versions = hub.versions("t1", "hot");
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["modifiedBy"], "user:alice");
    // Deleted, then put again: the version number goes on.
    hub.delete_rule(&crate::by("t1", "carol"), "hot")
        .await
        .unwrap();
    let rec = hub
        .put_rule(
            &crate::by("t1", "dave"),
            parse_rules(RULE, "r").unwrap().remove(0),
            true,
        )
        .await
        .unwrap();
    assert_eq!(rec.version, 4);
    store.close();
}

#[tokio::test]
async fn incidents_survive_a_restart_and_numbering_goes_on() {
    use citybrain_hub::{HubEvent, IncidentFilter, Move, Status};
    use citybrain_rules::{Event, EventKind, Severity};
    let dir = tempfile::tempdir().unwrap();
    let event = |entity: &str, at: &str| {
        Arc::new(HubEvent {
            seq: 1,
            tenant: "t".into(),
            event: Event {
                rule: Arc::from("r"),
                category: Arc::from("water"),
                severity: Severity::High,
                entity: Arc::from(entity),
                entity_type: Arc::from("T"),
                kind: EventKind::Raised,
                at: at.parse().unwrap(),
                value: Some(1.0),
                location: None,
            },
        })
    };
    {
        let store = EmbeddedStore::open(StoreOptions::new(dir.path())).unwrap();
        let hub = Hub::new(Arc::new(store.clone()), Arc::new(SystemClock)).unwrap();
        let made = hub
            .file_events(
                "t",
                &[
                    event("urn:e:1", "2026-03-01T00:00:00Z"),
                    event("urn:e:2", "2026-03-01T00:00:00Z"),
                ],
            )
            .await
            .unwrap();
        assert_eq!(
            made.len(),
            2,
            "no place and different entities: two incidents"
        );
        let m = Move {
            to: Some(Status::Acknowledged),
            ..Default::default()
        };
        hub.move_incident(&crate::by("t", "op"), &made[0].id, &m)
            .await
            .unwrap();
        store.close();
    }
    let store = EmbeddedStore::open(StoreOptions::new(dir.path())).unwrap();
    let hub = Hub::new(Arc::new(store.clone()), Arc::new(SystemClock)).unwrap();
    let all = hub.incidents("t", &IncidentFilter::default()).await;
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].status, Status::Acknowledged);
    assert!(
        store.get("t", &all[0].id).unwrap().is_some(),
        "the NGSI-LD entity is there too"
    );
    let more = hub
        .file_events("t", &[event("urn:e:9", "2026-03-01T00:00:00Z")])
        .await
        .unwrap();
    assert_eq!(more[0].id, "urn:ngsi-ld:Incident:3");
    store.close();
}

#[tokio::test]
async fn areas_and_their_modes_survive_a_restart() {
    use citybrain_hub::sla::Mode;
    use citybrain_rules::{EventKind, ObsValue, Observation};
    let rule = "id: lvl\ncategory: flood\nfor: {type: Gauge}\nwhen: {kind: threshold, attr: level, above: 5}\nemergency: {kind: threshold, attr: level, above: 3}\n";
    let dir = tempfile::tempdir().unwrap();
    let square = serde_json::json!({"type": "Polygon",
        "coordinates": [[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]]]});
    {
        let store = EmbeddedStore::open(StoreOptions::new(dir.path())).unwrap();
        let dynstore: Arc<dyn EntityStore> = Arc::new(store.clone());
        let hub = Hub::new(dynstore, Arc::new(SystemClock)).unwrap();
        hub.put_rule(
            &crate::by("", "a"),
            parse_rules(rule, "r").unwrap().remove(0),
            true,
        )
        .await
        .unwrap();
        let spec = citybrain_hub::AreaSpec {
            geometry: square,
            description: None,
        };
        assert!(hub
            .put_area(&crate::by("", "a"), "old-town", spec)
            .await
            .unwrap());
        hub.set_mode(
            &crate::by("", "a"),
            Mode::Emergency,
            "fire",
            Some("old-town"),
        )
        .await
        .unwrap();
        store.close();
    }
    let store = EmbeddedStore::open(StoreOptions::new(dir.path())).unwrap();
    let dynstore: Arc<dyn EntityStore> = Arc::new(store.clone());
    let hub = Hub::new(dynstore, Arc::new(SystemClock)).unwrap();
    let m = hub.mode("").await;
    assert_eq!(m.mode, Mode::Normal);
    assert_eq!(m.areas.get("old-town"), Some(&Mode::Emergency));
    assert_eq!(m.history.len(), 1);
    // The engine judges a gauge inside the area by the emergency threshold again.
    let ctx = citybrain_model::context::JsonLdContext::core();
    let (ty, loc, level) = (
        ctx.expand("Gauge"),
        ctx.expand("location"),
        ctx.expand("level"),
    );
    let at = SystemClock.now_precise();
    let located = Observation {
        entity: "urn:g:1",
        entity_type: &ty,
        attr: &loc,
        at,
        value: ObsValue::Point([0.5, 0.5]),
    };
    let _ = hub.observe("", &[located]);
    let reading = Observation {
        entity: "urn:g:1",
        entity_type: &ty,
        attr: &level,
        at,
        value: ObsValue::Number(4.0),
    };
    let events = hub.observe("", &[reading]);
    assert!(
        events.iter().any(|e| e.event.kind == EventKind::Raised),
        "{events:?}"
    );
    store.close();
}

#[tokio::test]
async fn a_deleted_entity_leaves_the_rules() {
    use citybrain_store::Write;
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(StoreOptions::new(dir.path())).unwrap();
    let dynstore: Arc<dyn EntityStore> = Arc::new(store.clone());
    let mut feed = dynstore.subscribe();
    let hub = Hub::new(dynstore.clone(), Arc::new(SystemClock)).unwrap();
    add_rule(&hub, BEAT).await;
    let ctx = citybrain_model::context::JsonLdContext::core();
    let body = serde_json::json!({"id": "urn:m:1", "type": "Meter", "v": 1});
    let e = citybrain_model::entity::parse_entity(
        body.as_object().unwrap(),
        &ctx,
        SystemClock.now_precise(),
    )
    .unwrap();
    let states = |hub: &Hub| hub.rules("")[0].status.entities;
    let mut feed_one = async |write: Write| {
        let m = dynstore
            .modify(
                "",
                "urn:m:1",
                &mut |_| Ok(Some(write.clone())),
                &citybrain_store::Origin::default(),
            )
            .unwrap()
            .unwrap();
        m.commit.wait().await.unwrap();
        loop {
            let c = feed.recv().await.unwrap();
            if c.after
                .as_ref()
                .or(c.before.as_ref())
                .is_some_and(|e| e.id == "urn:m:1")
            {
                return c;
            }
        }
    };
    let c = feed_one(Write::Put(e)).await;
    hub.on_change(&c);
    assert_eq!(states(&hub), 1, "the meter has a heartbeat state");
    let c = feed_one(Write::Delete).await;
    hub.on_change(&c);
    assert_eq!(states(&hub), 0, "deleted, it has none");
    store.close();
}

/// The evaluation loop moves the rule clocks itself (`run_ticks` only checks service
/// levels): a meter that falls silent is reported with nothing but `run` going.
#[tokio::test]
async fn the_evaluation_loop_moves_the_rule_clocks() {
    let dir = tempfile::tempdir().unwrap();
    let (store, dynstore, clock, hub) = hub_on(dir.path(), SystemClock.now_precise());
    add_rule(&hub, BEAT).await;
    let mut events = hub.subscribe();
    tokio::spawn(hub.clone().run(dynstore.subscribe()));
    put_reading(&dynstore, "urn:m:1", "Meter", 1, clock.now()).await;
    // Once the meter is known to the rule, its silence is due ten minutes on.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while hub.rules("")[0].status.entities == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the change was not evaluated"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    clock.advance(chrono::Duration::minutes(11));
    let got = tokio::time::timeout(std::time::Duration::from_secs(10), events.recv())
        .await
        .expect("no tick raised the heartbeat within 10 s")
        .unwrap();
    assert_eq!(&*got.event.rule, "beat");
    assert_eq!(got.event.kind, citybrain_rules::EventKind::Raised);
    assert_eq!(&*got.event.entity, "urn:m:1");
    store.close();
}

/// After a restart the rule states are rebuilt from the entities as they are: a meter
/// silent since before the restart is reported, and a level raised before clears,
/// while the events of the rebuilding itself (filed the first time) are not raised
/// again.
#[tokio::test]
async fn rule_states_are_rebuilt_from_the_entities_at_start() {
    use citybrain_rules::EventKind;
    let dir = tempfile::tempdir().unwrap();
    let now = SystemClock.now_precise();
    let (store, dynstore, clock, before) = hub_on(dir.path(), now);
    add_rule(&before, BEAT).await;
    add_rule(&before, HIGH).await;
    drop(before);
    // Last heard 20 minutes ago, above the limit.
    put_reading(
        &dynstore,
        "urn:m:1",
        "Meter",
        80,
        now - chrono::Duration::minutes(20),
    )
    .await;

    // The restart.
    let hub = Hub::new(dynstore.clone(), clock.clone()).unwrap();
    let kinds = |events: &[Arc<citybrain_hub::HubEvent>]| -> Vec<(String, EventKind)> {
        events
            .iter()
            .map(|e| (e.event.rule.to_string(), e.event.kind))
            .collect()
    };
    let ticked: Vec<_> = hub.tick().into_iter().flat_map(|(_, e)| e).collect();
    assert_eq!(
        kinds(&ticked),
        vec![("beat".to_string(), EventKind::Raised)],
        "silent for 20 minutes: reported; the level, raised before, is not raised again"
    );
    assert_eq!(&*ticked[0].event.entity, "urn:m:1");

    let mut feed = dynstore.subscribe();
    put_reading(&dynstore, "urn:m:1", "Meter", 10, now).await;
    // The feed may still deliver the first write (published just after it was
    // durable, when the subscription was made): the update is the one with a before.
    let change = loop {
        let c = feed.recv().await.unwrap();
        if c.before.is_some() {
            break c;
        }
    };
    let events = hub.on_change(&change);
    assert!(
        kinds(&events).contains(&("high".to_string(), EventKind::Cleared)),
        "the level raised before the restart clears: {:?}",
        kinds(&events)
    );
    store.close();
}

/// A rule put while entities exist judges them as they are: a value already over the
/// limit raises (and is filed as an incident), a meter already silent is reported at
/// the next tick; an entity the rule does not select is left alone.
#[tokio::test]
async fn a_rule_put_judges_the_entities_as_they_are() {
    use citybrain_rules::EventKind;
    let dir = tempfile::tempdir().unwrap();
    let now = SystemClock.now_precise();
    let (store, dynstore, _clock, hub) = hub_on(dir.path(), now);
    for (id, ty, v) in [
        ("urn:m:1", "Meter", 80),
        ("urn:m:2", "Meter", 20),
        ("urn:p:1", "Pump", 90),
    ] {
        put_reading(&dynstore, id, ty, v, now - chrono::Duration::minutes(20)).await;
    }
    let mut events = hub.subscribe();
    add_rule(&hub, HIGH).await;
    let e = events.try_recv().unwrap();
    assert_eq!(
        (&*e.event.rule, &*e.event.entity, e.event.kind),
        ("high", "urn:m:1", EventKind::Raised)
    );
    assert!(
        events.try_recv().is_err(),
        "only the meter over the limit raises"
    );
    let open = hub.incidents("", &Default::default()).await;
    assert_eq!(open.len(), 1, "filed when the rule is put");
    assert_eq!(open[0].entities, vec!["urn:m:1".to_string()]);

    let beat = "id: beat\ncategory: devices\nfor: {type: Meter, ids: [urn:m:2]}\nwhen: {kind: missing, attr: v, after: 10m}\n";
    add_rule(&hub, beat).await;
    assert!(events.try_recv().is_err(), "nothing is due yet");
    let ticked: Vec<_> = hub.tick().into_iter().flat_map(|(_, e)| e).collect();
    let got: Vec<_> = ticked
        .iter()
        .map(|e| (e.event.rule.to_string(), e.event.entity.to_string()))
        .collect();
    assert_eq!(got, vec![("beat".to_string(), "urn:m:2".to_string())]);
    store.close();
}
