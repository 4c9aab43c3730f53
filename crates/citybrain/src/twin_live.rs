//! The live traffic twin beside the server: SUMO plays the city, its detectors and
//! indicators enter the platform through the ingest path (sources `sumo-detectors`
//! and `sumo-indicators`, examples/mappings), its network becomes Road, RoadSegment
//! and TrafficLight entities, and the configured controller drives its signals.
//! Episodes follow one another (the next seed each time) until the server stops.
//!
//! Emergency response: an open incident of the configured categories with a place on
//! the simulated network dispatches the nearest available ambulance by live travel
//! time; the incident records the dispatch (status `dispatched`, its unit, why that
//! one) and the arrival, by `service:twin`. Only the default tenant's incidents are
//! answered (the twin's entities live there).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use citybrain_broker::{BatchItem, Broker, Principal, RequestContext, UpsertMode};
use citybrain_forecast::online::{Online, OnlineSettings};
use citybrain_hub::incident::{Move, Status};
use citybrain_hub::{Hub, IncidentChange};
use citybrain_ingest::Ingest;
use citybrain_model::time::Clock;
use citybrain_twin::control::{ControllerKind, Settings};
use citybrain_twin::emergency::{self, Arrival, Call, Dispatch, EmergencyOptions};
use citybrain_twin::episode::{Options, Session};
use citybrain_twin::geo::Geo;
use citybrain_twin::net::Network;
use citybrain_twin::scenario::{self, Grid};
use citybrain_twin::sumo::Sumo;
use citybrain_twin::sumo::SumoConfig;
use citybrain_twin::{entities, observe, TwinError};
use tokio::sync::mpsc;

use crate::config;

/// What the simulation thread hands the platform.
enum Out {
    Entities(Vec<serde_json::Value>),
    Payload(&'static str, Vec<u8>),
    /// The ambulances, as Vehicle entities.
    Fleet(Vec<serde_json::Value>),
    Dispatched(Dispatch),
    Arrived(Arrival),
    /// A call the twin could not answer, and why (for the incident's record).
    Unanswered(String, String),
}

/// An incident for the twin's ambulances: its id and `[lon, lat]`.
struct Alarm {
    incident: String,
    place: [f64; 2],
}

/// The live twin's emergency response, counted for `/metrics` (visited by the
/// what-if service, the twin's face towards the API).
pub mod stats {
    use citybrain_telemetry::{Counter, MetricDef};

    pub static CALLS_DEF: MetricDef = MetricDef::counter(
        "twin_emergency_calls",
        "Incidents handed to the traffic twin's ambulances",
    );
    pub static CALLS: Counter = Counter::new(&CALLS_DEF);
    pub static DISPATCHES_DEF: MetricDef = MetricDef::counter(
        "twin_emergency_dispatches",
        "Ambulances sent by the traffic twin",
    );
    pub static DISPATCHES: Counter = Counter::new(&DISPATCHES_DEF);
    pub static ARRIVALS_DEF: MetricDef = MetricDef::counter(
        "twin_emergency_arrivals",
        "Ambulances of the traffic twin at their scene",
    );
    pub static ARRIVALS: Counter = Counter::new(&ARRIVALS_DEF);
    pub static RESPONSE_DEF: MetricDef = MetricDef::counter(
        "twin_emergency_response_seconds",
        "Simulated seconds from call to arrival, summed over arrivals (mean: divide by arrivals)",
    );
    pub static RESPONSE: Counter = Counter::new(&RESPONSE_DEF);
    pub static UNANSWERED_DEF: MetricDef = MetricDef::counter(
        "twin_emergency_unanswered",
        "Calls the traffic twin could not answer (unreachable, episode ended)",
    );
    pub static UNANSWERED: Counter = Counter::new(&UNANSWERED_DEF);

    pub fn visit(out: &mut dyn FnMut(&'static MetricDef, f64)) {
        for c in [&CALLS, &DISPATCHES, &ARRIVALS, &RESPONSE, &UNANSWERED] {
            c.visit(out);
        }
    }
}

/// Who the twin's steps on incidents are recorded as.
const RESPONDER: Principal = Principal::Service("twin");
/// An incident farther than this (m) from any road of the twin is not its to answer.
const MAX_PLACE_DISTANCE: f64 = 500.0;
/// How often (simulated s) the ambulances' positions are written.
const FLEET_PERIOD: f64 = 10.0;

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
    hub: Arc<Hub>,
) {
    if let Some(missing) = SOURCES.iter().find(|s| ingest.source(s).is_none()) {
        tracing::error!(
            source = missing,
            "the traffic twin is off: no mapping for its ingest source; add examples/mappings/sumo-*.yaml to the mappings directory"
        );
        return;
    }
    let (tx, mut rx) = mpsc::channel::<Out>(64);
    let (alarm_tx, alarm_rx) = std::sync::mpsc::channel::<Alarm>();
    let clock = broker.clock().clone();
    let sim_cfg = cfg.clone();
    let sim = tokio::task::spawn_blocking(move || {
        if let Err(e) = simulate(&sumo, &sim_cfg, &data_dir, clock.as_ref(), &tx, &alarm_rx) {
            tracing::error!(error = %e, "the traffic twin stopped");
        }
    });
    let rc = RequestContext::service("", Principal::SYSTEM);
    let responder = RequestContext::service("", RESPONDER);
    let mut incidents = hub.subscribe_incidents();
    let mut listening = cfg.ambulances > 0;
    let mut seen: HashMap<String, Status> = HashMap::new();
    loop {
        let out = tokio::select! {
            out = rx.recv() => match out {
                Some(out) => out,
                None => break,
            },
            change = incidents.recv(), if listening => {
                match change {
                    Ok(c) => {
                        if let Some(alarm) = alarm_for(&cfg, &c, &mut seen) {
                            tracing::info!(incident = %alarm.incident, "incident for the twin's ambulances");
                            stats::CALLS.inc();
                            if alarm_tx.send(alarm).is_err() {
                                listening = false;
                            }
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "the twin missed incident changes");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => listening = false,
                }
                continue;
            }
        };
        match out {
            Out::Fleet(list) => {
                let batch: Vec<BatchItem> = list.into_iter().map(BatchItem::core).collect();
                match broker.batch_upsert(&rc, &batch, UpsertMode::Replace).await {
                    Ok(r) if r.errors.is_empty() => {}
                    Ok(r) => tracing::warn!(errors = ?r.errors, "ambulance positions refused"),
                    Err(e) => tracing::warn!(error = %e, "ambulance positions not written"),
                }
            }
            Out::Dispatched(d) => {
                stats::DISPATCHES.inc();
                record_dispatch(&hub, &responder, &d, &cfg.ambulance_department).await
            }
            Out::Arrived(a) => {
                stats::ARRIVALS.inc();
                stats::RESPONSE.add(a.response_s.max(0.0).round() as u64);
                let lights = match a.preempted_lights {
                    0 => "no traffic light gave it priority".to_string(),
                    1 => "1 traffic light gave it green".to_string(),
                    n => format!("{n} traffic lights gave it green"),
                };
                let text = format!(
                    "{} at the scene {:.0} s after the call ({:.0} s estimated); {lights}",
                    a.unit, a.response_s, a.eta_s
                );
                if let Err(e) = hub.comment(&responder, &a.call, &text).await {
                    tracing::warn!(incident = %a.call, error = %e, "arrival not recorded");
                }
            }
            Out::Unanswered(incident, why) => {
                stats::UNANSWERED.inc();
                if let Err(e) = hub.comment(&responder, &incident, &why).await {
                    tracing::warn!(%incident, error = %e, "unanswered call not recorded");
                }
            }
            Out::Entities(list) => {
                let batch: Vec<BatchItem> = list.into_iter().map(BatchItem::core).collect();
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

/// Whether an incident change is a call for the twin's ambulances: an open incident
/// of the categories, with a place, first seen new or acknowledged without a unit, or
/// reopened (again). `seen` keeps each open incident's last status (so the twin's own
/// steps on it never call again); closed ones are forgotten.
fn alarm_for(
    cfg: &config::Twin,
    c: &IncidentChange,
    seen: &mut HashMap<String, Status>,
) -> Option<Alarm> {
    let i = &c.incident;
    let ours = c.tenant.is_empty()
        && cfg
            .ambulance_categories
            .iter()
            .any(|k| k.eq_ignore_ascii_case(&i.category));
    if !ours {
        return None;
    }
    if !i.status.is_open() {
        seen.remove(&i.id);
        return None;
    }
    let before = seen.insert(i.id.clone(), i.status);
    let call = match i.status {
        Status::New | Status::Acknowledged => before.is_none() && i.unit.is_none(),
        Status::Reopened => before != Some(Status::Reopened),
        _ => false,
    };
    let place = i.location.filter(|_| call)?;
    Some(Alarm {
        incident: i.id.clone(),
        place,
    })
}

/// The dispatch on the incident: status `dispatched` with the unit and why it was
/// chosen; a comment instead when the incident has moved on meanwhile.
async fn record_dispatch(hub: &Hub, rc: &RequestContext, d: &Dispatch, department: &str) {
    let mut why = format!(
        "nearest available ambulance by live travel time: {} from station {}, {:.0} s estimated",
        d.unit, d.station, d.eta_s
    );
    if !d.alternatives.is_empty() {
        let others: Vec<String> = d
            .alternatives
            .iter()
            .map(|(u, t)| format!("{u} {t:.0} s"))
            .collect();
        why.push_str(&format!(" (others: {})", others.join(", ")));
    }
    if d.dispatched_at > d.called_at {
        why.push_str(&format!(
            "; waited {:.0} s for a free ambulance",
            d.dispatched_at - d.called_at
        ));
    }
    // An incident routed nowhere yet goes to the ambulance service's department.
    let routed = hub
        .incident(&rc.tenant, &d.call)
        .await
        .is_some_and(|i| i.department.is_some());
    let m = Move {
        to: Some(Status::Dispatched),
        unit: Some(d.unit.clone()),
        reason: Some(why.clone()),
        department: (!routed).then(|| department.to_string()),
        ..Move::default()
    };
    if let Err(e) = hub.move_incident(rc, &d.call, &m).await {
        tracing::info!(incident = %d.call, error = %e, "dispatch recorded as a comment");
        if let Err(e) = hub.comment(rc, &d.call, &why).await {
            tracing::warn!(incident = %d.call, error = %e, "dispatch not recorded");
        }
    }
}

/// Roads an ambulance can be sent to, as points every 20 m along them with their
/// `[lon, lat]`.
struct Places(Vec<(String, (f64, f64))>);

impl Places {
    fn new(net: &Network, geo: &Geo) -> Places {
        Places(
            emergency::service_points(net, 20.0)
                .into_iter()
                .map(|(edge, (x, y))| (edge, geo.lon_lat(x, y)))
                .collect(),
        )
    }

    /// The nearest road to `[lon, lat]` and its distance (m).
    fn nearest(&self, place: [f64; 2]) -> Option<(&str, f64)> {
        let k = place[1].to_radians().cos();
        self.0
            .iter()
            .map(|(edge, (lon, lat))| {
                let dx = (lon - place[0]) * k * 111_320.0;
                let dy = (lat - place[1]) * 110_540.0;
                (edge.as_str(), (dx * dx + dy * dy).sqrt())
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
    }
}

/// The scenario to run: the configured one, or the demo grid (generated once).
pub fn scenario(
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

/// Hands an incident to the session's dispatcher when it lies on the network.
fn take_call(
    s: &mut Session,
    places: &Places,
    alarm: Alarm,
    open_calls: &mut HashSet<String>,
) -> Option<Out> {
    let (edge, distance) = places.nearest(alarm.place)?;
    if distance > MAX_PLACE_DISTANCE {
        tracing::debug!(incident = %alarm.incident, distance, "incident outside the twin's network");
        return None;
    }
    let call = Call {
        id: alarm.incident.clone(),
        edge: edge.to_string(),
        pos: None,
    };
    match s.call(call) {
        Ok(()) => {
            open_calls.insert(alarm.incident);
            None
        }
        Err(e) => Some(Out::Unanswered(
            alarm.incident,
            format!("the traffic twin could not take the call: {e}"),
        )),
    }
}

/// The simulation thread: episode after episode, paced to `speed`× real time.
fn simulate(
    sumo: &Sumo,
    cfg: &config::Twin,
    data_dir: &std::path::Path,
    clock: &dyn Clock,
    tx: &mpsc::Sender<Out>,
    alarms: &std::sync::mpsc::Receiver<Alarm>,
) -> Result<(), TwinError> {
    let sumocfg = scenario(sumo, cfg, data_dir)?;
    let net = Network::load(&SumoConfig::load(&sumocfg)?.net)?;
    let stations = emergency::spread_stations(&net, cfg.ambulances);
    let (geo, why) = Geo::for_net(&net.location, (cfg.origin[0], cfg.origin[1]));
    if let Some(why) = why {
        tracing::warn!(%why, "twin network placement");
    }
    let places = Places::new(&net, &geo);
    drop(net);
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
            emergency: (!stations.is_empty())
                .then(|| EmergencyOptions::new(stations.clone(), cfg.preemption)),
        };
        let mut s = Session::start(sumo, &opts)?;
        // Calls being answered in this episode.
        let mut open_calls: HashSet<String> = HashSet::new();
        let mut next_fleet = s.now;
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
            if opts.emergency.is_none() {
                // No station on this network: say so rather than keep the calls.
                while let Ok(alarm) = alarms.try_recv() {
                    let why = "the traffic twin has no ambulance station on its network".into();
                    if tx
                        .blocking_send(Out::Unanswered(alarm.incident, why))
                        .is_err()
                    {
                        return Ok(());
                    }
                }
            } else {
                let mut out = Vec::new();
                while let Ok(alarm) = alarms.try_recv() {
                    if let Some(o) = take_call(&mut s, &places, alarm, &mut open_calls) {
                        out.push(o);
                    }
                }
                for d in s.take_dispatches() {
                    out.push(Out::Dispatched(d));
                }
                for a in s.take_arrivals() {
                    open_calls.remove(&a.call);
                    out.push(Out::Arrived(a));
                }
                for call in s.take_unreachable() {
                    open_calls.remove(&call);
                    out.push(Out::Unanswered(
                        call,
                        "no ambulance of the traffic twin can reach this place".into(),
                    ));
                }
                // Positions go first: on a dispatch or an arrival at once, so the
                // vehicle's history shows the change before the incident does.
                if s.now >= next_fleet || !out.is_empty() {
                    next_fleet = s.now + FLEET_PERIOD;
                    out.insert(0, Out::Fleet(entities::ambulances(&s.fleet()?, &geo)));
                }
                for o in out {
                    if tx.blocking_send(o).is_err() {
                        return Ok(());
                    }
                }
            }
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
        for call in open_calls.drain() {
            let why = "the traffic twin's episode ended before an ambulance arrived".to_string();
            if tx.blocking_send(Out::Unanswered(call, why)).is_err() {
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
