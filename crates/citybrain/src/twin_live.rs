//! The live traffic twin beside the server: SUMO plays the city, its detectors and
//! indicators enter the platform through the ingest path (sources `sumo-detectors`
//! and `sumo-indicators`, examples/mappings), its network becomes Road, RoadSegment
//! and TrafficLight entities, and the configured controller drives its signals.
//! Episodes follow one another (the next seed each time) until the server stops.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use citybrain_broker::{BatchItem, Broker, Principal, RequestContext, UpsertMode};
use citybrain_forecast::online::{Online, OnlineSettings};
use citybrain_ingest::Ingest;
use citybrain_model::time::Clock;
use citybrain_model::JsonLdContext;
use citybrain_twin::control::{ControllerKind, Settings};
use citybrain_twin::episode::{Options, Session};
use citybrain_twin::geo::Geo;
use citybrain_twin::scenario::{self, Grid};
use citybrain_twin::sumo::Sumo;
use citybrain_twin::{entities, observe, TwinError};
use tokio::sync::mpsc;

use crate::config;

/// What the simulation thread hands the platform.
enum Out {
    Entities(Vec<serde_json::Value>),
    Payload(&'static str, Vec<u8>),
}

/// Sources the twin posts to; their mappings must be installed.
pub const SOURCES: [&str; 3] = ["sumo-detectors", "sumo-indicators", "sumo-forecasts"];

/// Forecast horizons (minutes).
const HORIZONS: [u64; 4] = [5, 15, 30, 60];

/// Whether the twin should run, and with which SUMO: `None` (with the reason logged)
/// when it should not.
pub fn wanted(cfg: &config::Twin, demo: bool) -> Option<Sumo> {
    if cfg.enabled == Some(false) || (cfg.enabled.is_none() && !demo) {
        return None;
    }
    match Sumo::locate() {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(
                "the traffic twin is off: {e}; the demo runs without live traffic (docs/twin.md)"
            );
            None
        }
    }
}

/// Runs the twin until the returned future is dropped (server shutdown).
pub async fn run(
    sumo: Sumo,
    cfg: config::Twin,
    data_dir: PathBuf,
    ingest: Arc<Ingest>,
    broker: Arc<Broker>,
) {
    if let Some(missing) = SOURCES.iter().find(|s| ingest.source(s).is_none()) {
        tracing::error!(
            source = missing,
            "the traffic twin is off: no mapping for its ingest source; add examples/mappings/sumo-*.yaml to the mappings directory"
        );
        return;
    }
    let (tx, mut rx) = mpsc::channel::<Out>(64);
    let clock = broker.clock().clone();
    let sim = tokio::task::spawn_blocking(move || {
        if let Err(e) = simulate(&sumo, &cfg, &data_dir, clock.as_ref(), &tx) {
            tracing::error!(error = %e, "the traffic twin stopped");
        }
    });
    let rc = RequestContext::service("", Principal::SYSTEM);
    while let Some(out) = rx.recv().await {
        match out {
            Out::Entities(list) => {
                let batch: Vec<BatchItem> = list
                    .into_iter()
                    .map(|body| BatchItem {
                        body,
                        ld: Ok(JsonLdContext::core()),
                    })
                    .collect();
                match broker.batch_upsert(&rc, &batch, UpsertMode::Replace).await {
                    Ok(r) if r.errors.is_empty() => {
                        tracing::info!(entities = batch.len(), "twin network loaded")
                    }
                    Ok(r) => tracing::warn!(
                        refused = r.errors.len(),
                        "some twin network entities were refused"
                    ),
                    Err(e) => tracing::error!(error = %e, "loading the twin network failed"),
                }
            }
            Out::Payload(source, bytes) => {
                if let Err(e) = ingest
                    .ingest_payload(source, &bytes, Some("twin".into()), &[])
                    .await
                {
                    tracing::warn!(source, error = %e, "twin payload not ingested");
                }
            }
        }
    }
    let _ = sim.await;
}

/// The scenario to run: the configured one, or the demo grid (generated once).
fn scenario(
    sumo: &Sumo,
    cfg: &config::Twin,
    data_dir: &std::path::Path,
) -> Result<PathBuf, TwinError> {
    if let Some(c) = &cfg.sumocfg {
        return Ok(c.clone());
    }
    let dir = data_dir.join("twin").join("grid");
    let path = dir.join("grid.sumocfg");
    if path.is_file() {
        return Ok(path);
    }
    scenario::write_grid(sumo, &dir, &Grid::default())
}

/// The simulation thread: episode after episode, paced to `speed`× real time.
fn simulate(
    sumo: &Sumo,
    cfg: &config::Twin,
    data_dir: &std::path::Path,
    clock: &dyn Clock,
    tx: &mpsc::Sender<Out>,
) -> Result<(), TwinError> {
    let sumocfg = scenario(sumo, cfg, data_dir)?;
    let controller: ControllerKind = cfg.controller.parse().map_err(TwinError::Config)?;
    let mut seed = 1u64;
    let mut loaded = false;
    // One step of the online forecasters is one period.
    let steps: Vec<usize> = HORIZONS
        .iter()
        .map(|m| ((*m as f64 * 60.0 / cfg.period_secs).round() as usize).max(1))
        .collect();
    let mut online = Online::new(OnlineSettings {
        horizons: steps.clone(),
        ..OnlineSettings::default()
    });
    // The last speed each detector reported: a period without vehicles repeats it, so
    // every series keeps one value per period.
    let mut last_speed: HashMap<String, f64> = HashMap::new();
    loop {
        if tx.is_closed() {
            return Ok(()); // the server is stopping
        }
        let opts = Options {
            sumocfg: sumocfg.clone(),
            controller,
            settings: Settings::default(),
            duration: None,
            seed,
            work_dir: data_dir.join("twin").join("run"),
            observe: Some(cfg.period_secs),
            changes: Vec::new(),
            reroute: false,
            emergency: None,
        };
        let mut s = Session::start(sumo, &opts)?;
        let (geo, why) = Geo::for_net(&s.net.location, (cfg.origin[0], cfg.origin[1]));
        if let Some(why) = why {
            tracing::warn!(%why, "twin network placement");
        }
        if !loaded {
            if tx
                .blocking_send(Out::Entities(entities::network(&s.net, &geo)))
                .is_err()
            {
                return Ok(());
            }
            loaded = true;
        }
        tracing::info!(seed, controller = %controller, cfg = %sumocfg.display(), "twin episode started");
        let wall = Instant::now();
        let begin = s.now;
        while !s.done() {
            s.step()?;
            if let Some((readings, indicators)) = s.take_period() {
                // Observation times are the platform's clock when the reading is made:
                // a twin faster than real time compresses time, never writes the future.
                let now = clock.now().timestamp();
                let det = observe::detector_payload(&readings, &geo, now);
                let ind = observe::indicator_payload(&indicators, now);
                let rows: Vec<_> = readings
                    .iter()
                    .map(|r| {
                        let speed = r.speed_kmh.or_else(|| last_speed.get(&r.detector).copied());
                        let f = match speed {
                            Some(v) => {
                                last_speed.insert(r.detector.clone(), v);
                                online.observe(&r.detector, v)
                            }
                            None => Vec::new(),
                        };
                        let f = f
                            .iter()
                            .zip(HORIZONS)
                            .map(|(f, m)| (m, f.value, f.lower, f.upper))
                            .collect();
                        (r, f)
                    })
                    .collect();
                let fc = observe::forecast_payload(&rows, &geo, now);
                for (source, v) in [(SOURCES[0], det), (SOURCES[1], ind), (SOURCES[2], fc)] {
                    let bytes =
                        serde_json::to_vec(&v).map_err(|e| TwinError::Sumo(e.to_string()))?;
                    if tx.blocking_send(Out::Payload(source, bytes)).is_err() {
                        return Ok(()); // the server is stopping
                    }
                }
            }
            // Pace: simulated time runs `speed` times faster than the wall clock.
            let due = Duration::from_secs_f64(((s.now - begin) / cfg.speed).max(0.0));
            if let Some(wait) = due.checked_sub(wall.elapsed()) {
                std::thread::sleep(wait);
            }
            if tx.is_closed() {
                return Ok(());
            }
        }
        let (trips, _) = s.finish()?;
        tracing::info!(
            seed,
            delay_all_s = trips.mean_delay_all_s,
            trips = trips.trips,
            "twin episode finished"
        );
        seed += 1;
    }
}
