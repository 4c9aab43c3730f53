//! `geo`: geo-queries over a city of located entities, in process (issue #18, point 4).
//!
//! `--geo-entities` (1,000,000 by default) `TrafficFlowObserved` entities, each with a
//! Point location and two readings, are spread uniformly over a 30 × 33 km city
//! (0.44° × 0.30° around Berlin: about 1,000 a square kilometre) and written through
//! the store's bulk path. Then, from seeded random centres inside the city, it runs
//! `Broker::query_entities` (the engine behind `GET /ngsi-ld/v1/entities`, without
//! HTTP) and prints p50/p99/max latency:
//! - `near;maxDistance==500` with the default page (20) and with `count=true` (every
//!   match counted, about 800);
//! - `within` a 1 km square and `intersects` a 2 km × 100 m corridor, with
//!   `count=true`.
//!
//! The baseline is the same store reopened with `storage.spatial_index = false`, where
//! every query scans the type: fewer queries, since each one reads every entity. The
//! reopens time the snapshot load without the index and with it (packed in bulk),
//! twice in turn.

use std::sync::Arc;
use std::time::Instant;

use citybrain_broker::{Broker, BrokerConfig, EntityQuery, QueryParams, RequestContext};
use citybrain_model::context::JsonLdContext;
use citybrain_model::time::{Clock, SystemClock};
use citybrain_model::Entity;
use citybrain_store::{Commit, EmbeddedStore, EntityStore, ModifyOptions, StoreOptions};
use hdrhistogram::Histogram;
use serde_json::{json, Value};

const WEST: f64 = 13.1;
const SOUTH: f64 = 52.35;
const WIDTH: f64 = 0.44;
const HEIGHT: f64 = 0.30;

/// A small deterministic generator (SplitMix64), so runs compare like for like.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    fn point(&mut self) -> (f64, f64) {
        (WEST + self.next() * WIDTH, SOUTH + self.next() * HEIGHT)
    }
}

pub(crate) fn located(i: usize, lon: f64, lat: f64) -> anyhow::Result<Entity> {
    let body = json!({
        "id": format!("urn:ngsi-ld:TrafficFlowObserved:g{i:07}"),
        "type": "TrafficFlowObserved",
        "intensity": {"type": "Property", "value": (i % 1500) as i64},
        "averageVehicleSpeed": {"type": "Property", "value": (i % 90) as f64},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}
    });
    let obj = body
        .as_object()
        .ok_or_else(|| anyhow::anyhow!("entity body"))?;
    Ok(citybrain_model::entity::parse_entity(
        obj,
        &JsonLdContext::core(),
        SystemClock.now_precise(),
    )?)
}

fn params(georel: &str, geometry: &str, coordinates: Value, count: bool) -> QueryParams {
    QueryParams {
        type_: Some("TrafficFlowObserved".into()),
        georel: Some(georel.into()),
        geometry: Some(geometry.into()),
        coordinates: Some(coordinates),
        count,
        ..Default::default()
    }
}

/// The query kinds, each a function of a random centre.
type Kind = (&'static str, fn(f64, f64) -> QueryParams);

const KINDS: [Kind; 4] = [
    ("near500_page", |x, y| {
        params("near;maxDistance==500", "Point", json!([x, y]), false)
    }),
    ("near500_count", |x, y| {
        params("near;maxDistance==500", "Point", json!([x, y]), true)
    }),
    ("within1km_count", |x, y| {
        // 1 km square: 0.0147° of longitude, 0.009° of latitude at 52.5° N.
        let (dx, dy) = (0.0147, 0.009);
        params(
            "within",
            "Polygon",
            json!([[[x, y], [x + dx, y], [x + dx, y + dy], [x, y + dy], [x, y]]]),
            true,
        )
    }),
    ("intersects_corridor_count", |x, y| {
        // A street corridor: 2 km by 100 m.
        let (dx, dy) = (0.0294, 0.0009);
        params(
            "intersects",
            "Polygon",
            json!([[[x, y], [x + dx, y], [x + dx, y + dy], [x, y + dy], [x, y]]]),
            true,
        )
    }),
];

/// Runs `n` queries of each kind; p50/p99/max in ms and the mean matches per query.
fn measure(broker: &Broker, n: usize, seed: u64) -> anyhow::Result<Value> {
    let rc = RequestContext::service("", citybrain_broker::Principal::SYSTEM);
    let ld = JsonLdContext::core();
    let mut out = serde_json::Map::new();
    for (name, make) in KINDS {
        let mut rng = Rng(seed);
        let mut h = Histogram::<u64>::new(3)?;
        let mut matched = 0usize;
        for _ in 0..n {
            let (x, y) = rng.point();
            let q = EntityQuery::from_params(&make(x, y), &ld, 20, 1000)?;
            let t = Instant::now();
            let page = broker.query_entities(&rc, &q)?;
            h.record(t.elapsed().as_micros() as u64)?;
            matched += page.total.unwrap_or(page.entities.len());
        }
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        eprintln!(
            "geo: {name}: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms, {:.0} matches/query",
            ms(0.5),
            ms(0.99),
            h.max() as f64 / 1000.0,
            matched as f64 / n as f64
        );
        out.insert(
            name.into(),
            json!({"queries": n, "p50_ms": ms(0.5), "p99_ms": ms(0.99),
                   "max_ms": h.max() as f64 / 1000.0,
                   "matches_per_query": matched as f64 / n as f64}),
        );
    }
    Ok(Value::Object(out))
}

async fn open(
    dir: &std::path::Path,
    spatial: bool,
) -> anyhow::Result<(EmbeddedStore, Arc<Broker>)> {
    let store = EmbeddedStore::open(StoreOptions {
        spatial_index: spatial,
        ..StoreOptions::new(dir)
    })?;
    let dynstore: Arc<dyn EntityStore> = Arc::new(store.clone());
    let broker = Broker::new(dynstore, Arc::new(SystemClock), BrokerConfig::default()).await;
    Ok((store, broker))
}

/// Writes `list` through the store's bulk path; answers the commits to wait for.
pub(crate) fn write_bulk(
    store: &EmbeddedStore,
    list: &[Entity],
    opts: ModifyOptions,
) -> anyhow::Result<Vec<Commit>> {
    let ids: Vec<String> = list.iter().map(|e| e.id.clone()).collect();
    let results = store.modify_many("", &ids, &mut |i, _| Ok(Some(list[i].clone())), opts)?;
    let mut commits = Vec::new();
    for r in results {
        if let Some(m) = r? {
            commits.push(m.commit);
        }
    }
    Ok(commits)
}

pub async fn run(
    entities: usize,
    queries: usize,
    baseline_queries: usize,
) -> anyhow::Result<Value> {
    let dir = tempfile::tempdir()?;
    let (store, broker) = open(dir.path(), true).await?;
    let t = Instant::now();
    let mut rng = Rng(7);
    let chunk = 10_000;
    let mut next = 0;
    while next < entities {
        let n = chunk.min(entities - next);
        let list: Vec<Entity> = (next..next + n)
            .map(|i| {
                let (x, y) = rng.point();
                located(i, x, y)
            })
            .collect::<anyhow::Result<_>>()?;
        let quiet = ModifyOptions {
            history: false,
            ..Default::default()
        };
        for c in write_bulk(&store, &list, quiet)? {
            c.wait().await?;
        }
        next += n;
    }
    let load_s = t.elapsed().as_secs_f64();
    eprintln!("geo: {entities} located entities written in {load_s:.1} s");
    let indexed = measure(&broker, queries, 11)?;
    store.close();
    drop(broker);

    // The same data reopened from its snapshot without and with the index, twice in
    // turn (one store in memory at a time), then the baseline's scans.
    let mut reopen = [Vec::new(), Vec::new()];
    for _ in 0..2 {
        for (k, spatial) in [false, true].into_iter().enumerate() {
            let t = Instant::now();
            let (store, broker) = open(dir.path(), spatial).await?;
            reopen[k].push(t.elapsed().as_secs_f64());
            store.close();
            drop(broker);
        }
    }
    eprintln!(
        "geo: reopened in {:.2?} s without the index, {:.2?} s with it",
        reopen[0], reopen[1]
    );
    let (store, broker) = open(dir.path(), false).await?;
    let scan = measure(&broker, baseline_queries, 11)?;
    store.close();
    Ok(json!({
        "entities": entities,
        "load_s": load_s,
        "reopen_without_index_s": reopen[0],
        "reopen_with_index_s": reopen[1],
        "indexed": indexed,
        "scan": scan,
    }))
}
