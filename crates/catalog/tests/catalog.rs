#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure
//! The catalogue's domain: what aggregates read (current values, history windows, the
//! contribution bound, areas), and the budget ledger surviving a restart.
//!
//! At ε = 100,000 the discrete Laplace noise (scale at most 24/100,000 here) is 0 but
//! with probability below 10⁻¹⁰⁰, so
//! these tests check the exact statistic the noise is added to.

use std::sync::Arc;

use citybrain_access::{Principal, RequestContext};
use citybrain_broker::{Broker, BrokerConfig};
use citybrain_catalog::aggregate::AggregateRequest;
use citybrain_catalog::{Catalog, CatalogInfo, DatasetSpec};
use citybrain_model::context::JsonLdContext;
use citybrain_model::time::SystemClock;
use citybrain_storage::EntityStore;
use citybrain_store::{EmbeddedStore, StoreOptions};
use serde_json::{json, Value};

struct City {
    catalog: Catalog,
    broker: Arc<Broker>,
    store: EmbeddedStore,
}

async fn open(dir: &std::path::Path) -> City {
    let store = EmbeddedStore::open(StoreOptions::new(dir)).unwrap();
    let dynstore: Arc<dyn EntityStore> = Arc::new(store.clone());
    let broker = Broker::new(
        dynstore.clone(),
        Arc::new(SystemClock),
        BrokerConfig::default(),
    )
    .await;
    let catalog = Catalog::new(broker.clone(), dynstore, None, CatalogInfo::default());
    City {
        catalog,
        broker,
        store,
    }
}

fn admin() -> RequestContext {
    RequestContext::request("", Principal::user("root", &["admin"]), "t".into())
}

fn obj(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().unwrap().clone()
}

/// Five meters, each observed 10 times (values 1..=10) an hour apart from 2024-01-01.
async fn meters(c: &City) {
    let ld = JsonLdContext::core();
    let rc = admin();
    for m in 0..5 {
        let id = format!("urn:ngsi-ld:WaterMeter:{m}");
        let e = json!({"id": id, "type": "WaterMeter",
                       "status": {"type": "Property", "value": if m < 2 { "ok" } else { "leak" }},
                       "location": {"type": "GeoProperty",
                                    "value": {"type": "Point", "coordinates": [m as f64, 0.0]}},
                       "flow": {"type": "Property", "value": 0,
                                "observedAt": "2024-01-01T00:00:00Z"}});
        c.broker.create_entity(&rc, &ld, &obj(e)).await.unwrap();
        for i in 1..=10 {
            let patch = json!({"flow": {"type": "Property", "value": i,
                               "observedAt": format!("2024-01-01T{i:02}:00:00Z")}});
            c.broker
                .merge_entity(&rc, &ld, &id, &obj(patch))
                .await
                .unwrap();
        }
    }
}

fn dataset(max_contributions: u32) -> DatasetSpec {
    serde_json::from_value(json!({
        "title": "Water meters", "description": "Flow", "publisher": "water",
        "accessRights": "PUBLIC", "types": ["WaterMeter"],
        "privacy": {"budget": {"epsilon": 10000000}, "maxQueryCost": 100000,
                    "maxContributions": max_contributions,
                    "bounds": {"flow": {"lower": 0, "upper": 8, "resolution": 1}}}
    }))
    .unwrap()
}

fn request(pairs: &[(&str, &str)]) -> AggregateRequest {
    AggregateRequest::from_pairs(pairs.iter().copied()).unwrap()
}

#[tokio::test]
async fn aggregates_read_current_values_windows_and_areas() {
    let dir = tempfile::tempdir().unwrap();
    let c = open(dir.path()).await;
    meters(&c).await;
    c.catalog.put(&admin(), "water", dataset(3)).await.unwrap();
    let anon = RequestContext::tenant("");
    let run = |pairs: Vec<(&'static str, &'static str)>| {
        let req = request(&pairs);
        let c = &c;
        let anon = anon.clone();
        async move { c.catalog.aggregate(&anon, "water", &req).await.unwrap() }
    };
    // Current state: 5 meters; each flow is 10, clamped to 8: sum 40.
    let a = run(vec![("statistic", "count")]).await;
    assert_eq!(a.release.value, Some(5.0));
    let a = run(vec![("statistic", "sum"), ("attribute", "flow")]).await;
    assert_eq!(a.release.value, Some(40.0));
    // Categories of a text attribute.
    let a = run(vec![
        ("statistic", "histogram"),
        ("attribute", "status"),
        ("categories", "ok,leak"),
    ])
    .await;
    let bins: Vec<i128> = a.release.bins.unwrap().iter().map(|b| b.count).collect();
    assert_eq!(bins, [2, 3, 0]);
    // A time window: hours 2..6 hold 4 observations per meter, of which each meter
    // contributes its first 3 (values 2, 3, 4): count 15, sum 45.
    let window = [
        ("timerel", "between"),
        ("timeAt", "2024-01-01T02:00:00Z"),
        ("endTimeAt", "2024-01-01T06:00:00Z"),
        ("attribute", "flow"),
    ];
    let mut p = window.to_vec();
    p.push(("statistic", "count"));
    assert_eq!(run(p).await.release.value, Some(15.0));
    let mut p = window.to_vec();
    p.push(("statistic", "sum"));
    assert_eq!(run(p).await.release.value, Some(45.0));
    // An area: the meters at longitude 0 and 1 only.
    let a = run(vec![
        ("statistic", "count"),
        ("georel", "near;maxDistance==120000"),
        ("geometry", "Point"),
        ("coordinates", "[0.5,0]"),
    ])
    .await;
    assert_eq!(a.release.value, Some(2.0));
    // A window needs an attribute.
    let e = c
        .catalog
        .aggregate(
            &anon,
            "water",
            &request(&[("timerel", "after"), ("timeAt", "2024-01-01T00:00:00Z")]),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("attribute"), "{e}");
}

#[tokio::test]
async fn the_budget_spent_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let c = open(dir.path()).await;
        meters(&c).await;
        let mut d = dataset(1);
        let p = d.privacy.as_mut().unwrap();
        p.budget.epsilon = 1.0;
        p.max_query_cost = 0.4;
        c.catalog.put(&admin(), "water", d).await.unwrap();
        let anon = RequestContext::tenant("");
        let a = c
            .catalog
            .aggregate(&anon, "water", &request(&[]))
            .await
            .unwrap();
        assert!((a.privacy.budget.spent - 0.4).abs() < 1e-12);
        c.catalog
            .aggregate(&anon, "water", &request(&[]))
            .await
            .unwrap();
        c.store.close();
    }
    let c = open(dir.path()).await;
    let anon = RequestContext::tenant("");
    let b = c.catalog.budget(&anon, "water").unwrap();
    assert!((b.spent - 0.8).abs() < 1e-12, "{b:?}");
    assert_eq!(b.releases, 2);
    let e = c
        .catalog
        .aggregate(&anon, "water", &request(&[]))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("budget exhausted"), "{e}");
    // 0.2 still fits.
    c.catalog
        .aggregate(&anon, "water", &request(&[("epsilon", "0.2")]))
        .await
        .unwrap();
    // Removing and redefining the dataset does not refill the budget.
    c.catalog.delete(&admin(), "water").await.unwrap();
    let mut d = dataset(1);
    d.privacy.as_mut().unwrap().budget.epsilon = 1.0;
    c.catalog.put(&admin(), "water", d).await.unwrap();
    let e = c
        .catalog
        .aggregate(&anon, "water", &request(&[("epsilon", "0.1")]))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("budget exhausted"), "{e}");
}
