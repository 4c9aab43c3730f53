//! One run of the simulator under a controller: [`Session`] starts SUMO on a
//! configuration, takes over its traffic lights, steps it and observes it; [`run`]
//! plays a whole episode headless and returns its [`Report`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::control::{
    self, Approach, Controller, ControllerKind, Intersection, Observation, Settings,
};
pub use crate::detectors::{detector_file, detectors, Detector, DETECTOR_FILE};
use crate::emergency::{Emergency, EmergencyOptions, VEHICLE_PREFIX};
use crate::net::Network;
use crate::observe::{along, AreaAcc, DetectorAcc, Indicator, LaneStep, Reading};
use crate::program::{links_of, phases_of};
use crate::signal::{Driver, SignalPlan};
use crate::sumo::{Running, Sumo, SumoConfig};
use crate::traci::{ids, Traci, Value};
use crate::tripinfo::{self, TripStats};
use crate::whatif::apply_changes;
pub use crate::whatif::{what_if, Change, WhatIf, WhatIfChange};
use crate::TwinError;

#[derive(Debug, Clone)]
pub struct Options {
    pub sumocfg: PathBuf,
    pub controller: ControllerKind,
    pub settings: Settings,
    /// Seconds to simulate; by default the configuration's end, or until every vehicle
    /// has arrived.
    pub duration: Option<f64>,
    pub seed: u64,
    /// Where SUMO's outputs and the generated detectors go.
    pub work_dir: PathBuf,
    /// Report detector readings and indicators every this many simulated seconds
    /// ([`Session::take_period`]); `None` for headless episodes.
    pub observe: Option<f64>,
    /// What-if changes applied at the start (closures, slowdowns).
    pub changes: Vec<Change>,
    /// Every vehicle reroutes by current travel times every 30 s (what-if runs).
    pub reroute: bool,
    /// Ambulance stations and preemption ([`Session::call`]); `None`: no emergency
    /// response.
    pub emergency: Option<EmergencyOptions>,
}

/// An episode's indicators: one JSON object.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub controller: ControllerKind,
    pub seed: u64,
    pub sumo: String,
    #[serde(flatten)]
    pub trips: TripStats,
    /// Vehicles teleported by SUMO after being stuck (`time-to-teleport`).
    pub teleports: u64,
    /// Stopped vehicles on the lanes entering signals, per signal, averaged over steps.
    pub mean_queue: f64,
    pub traffic_lights: usize,
    /// Traffic lights the controller drove (all but those whose program has no green).
    pub controlled: usize,
    pub sim_seconds: f64,
    pub wall_seconds: f64,
    /// Simulated seconds per wall-clock second.
    pub speedup: f64,
    /// Wall time inside SUMO (stepping, including the socket) and in citybrain.
    pub sumo_seconds: f64,
    pub citybrain_seconds: f64,
}

/// How long to wait for SUMO to load a network and open its port.
const STARTUP_PATIENCE: Duration = Duration::from_secs(120);
/// A cap for runs with no end: a day of simulated time.
const MAX_SIM: f64 = 86_400.0;

pub struct Session {
    pub(crate) traci: Option<Traci>,
    sumo: Option<Running>,
    pub net: Network,
    pub lanes: Vec<String>,
    pub detectors: Vec<Detector>,
    pub intersections: Vec<Intersection>,
    /// Traffic lights in the network, controlled or not.
    pub traffic_lights: usize,
    pub obs: Observation,
    pub now: f64,
    pub end: Option<f64>,
    pub teleports: u64,
    pub expected: i64,
    controller: Option<Box<dyn Controller>>,
    tripinfo: PathBuf,
    queue_sum: f64,
    steps: u64,
    pub sumo_time: Duration,
    pub version: String,
    lane_index: HashMap<String, usize>,
    /// Detector index by lane, and by id.
    detector_index: HashMap<String, usize>,
    detector_by_id: HashMap<String, usize>,
    /// Each detector's running interval count at the last step.
    interval: Vec<f64>,
    /// Vehicles each detector counted in the last step.
    passed: Vec<f64>,
    observe: Option<Observing>,
    /// Per intersection: still running its own program, until it shows a green.
    waiting: Vec<bool>,
    /// Per intersection: the program it ran when the session began.
    pub(crate) programs: Vec<String>,
    pub(crate) emergency: Option<Emergency>,
}

/// Readings and indicators accumulated over the running period.
struct Observing {
    period: f64,
    start: f64,
    steps: f64,
    last_now: f64,
    detectors: Vec<DetectorAcc>,
    /// One per intersection, then the network.
    areas: Vec<AreaAcc>,
    /// Per lane: mean speed (m/s) at the last step.
    speed: Vec<f64>,
    /// Per lane: free-flow speed (m/s) and length (m), looked up once.
    geometry: Vec<(f64, f64)>,
    /// Per detector: mean speed (m/s, −1 for none) and occupancy (%) at the last step.
    det_speed: Vec<f64>,
    det_occupancy: Vec<f64>,
}

impl Session {
    pub fn start(sumo: &Sumo, opts: &Options) -> Result<Session, TwinError> {
        opts.settings.validate().map_err(TwinError::Config)?;
        if opts.seed > i32::MAX as u64 {
            return Err(TwinError::Config(format!(
                "seed: SUMO takes at most {}, got {}",
                i32::MAX,
                opts.seed
            )));
        }
        if let Some(d) = opts.duration {
            if !(d.is_finite() && d > 0.0) {
                return Err(TwinError::Config(format!(
                    "duration must be a positive number of seconds, got {d}"
                )));
            }
        }
        let cfg = SumoConfig::load(&opts.sumocfg)?;
        let net = Network::load(&cfg.net)?;
        std::fs::create_dir_all(&opts.work_dir)?;
        let detectors = detectors(&net, &cfg, &opts.work_dir)?;
        let tripinfo = opts.work_dir.join("tripinfo.xml");
        let mut additional: Vec<String> = cfg
            .additional
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        additional.push(opts.work_dir.join(DETECTOR_FILE).display().to_string());
        if opts.emergency.is_some() {
            let types = crate::emergency::write_types(&opts.work_dir)?;
            additional.push(types.display().to_string());
        }
        let begin = cfg.begin.unwrap_or(0.0);
        let end = opts.duration.map(|d| begin + d).or(cfg.end);
        let mut args = vec![
            "--seed".to_string(),
            opts.seed.to_string(),
            "--additional-files".into(),
            additional.join(","),
            "--tripinfo-output".into(),
            tripinfo.display().to_string(),
            "--tripinfo-output.write-unfinished".into(),
            "--tripinfo-output.write-undeparted".into(),
            "--no-step-log".into(),
            "--duration-log.disable".into(),
        ];
        if let Some(end) = end {
            args.push("--end".into());
            args.push(end.to_string());
        }
        if opts.reroute || !opts.changes.is_empty() {
            // Vehicles find their way around a closure: every vehicle reroutes by
            // current travel times every 30 s (what navigation apps do). The what-if's
            // base run gets the same setting, so only the change differs.
            args.extend(
                [
                    "--device.rerouting.probability",
                    "1",
                    "--device.rerouting.period",
                    "30",
                ]
                .map(String::from),
            );
        }
        let mut running =
            Running::start(sumo, &opts.sumocfg, &args, &opts.work_dir.join("sumo.log"))?;
        // SUMO opens its port once the network is loaded: short tries, and between
        // them a look at whether it has exited (a refused network ends it at once).
        let started = Instant::now();
        let mut traci = loop {
            match Traci::connect(running.addr, Duration::from_millis(250)) {
                Ok(t) => break t,
                Err(e) => {
                    if let Some(why) = running.exited() {
                        return Err(TwinError::Sumo(why));
                    }
                    if started.elapsed() > STARTUP_PATIENCE {
                        return Err(sumo_failure(&mut running, e.into()));
                    }
                }
            }
        };
        let (api, version) = match traci.version() {
            Ok(v) => v,
            Err(e) => return Err(sumo_failure(&mut running, e.into())),
        };
        tracing::info!(api, %version, cfg = %opts.sumocfg.display(), "connected to SUMO");

        let mut s = Session {
            traci: None,
            sumo: Some(running),
            lanes: Vec::new(),
            detectors,
            intersections: Vec::new(),
            traffic_lights: 0,
            obs: Observation::default(),
            now: begin,
            end,
            teleports: 0,
            expected: 1,
            controller: None,
            tripinfo,
            queue_sum: 0.0,
            steps: 0,
            sumo_time: Duration::ZERO,
            version,
            lane_index: HashMap::new(),
            detector_index: HashMap::new(),
            detector_by_id: HashMap::new(),
            interval: Vec::new(),
            passed: Vec::new(),
            waiting: Vec::new(),
            programs: Vec::new(),
            emergency: None,
            observe: opts.observe.filter(|p| *p > 0.0).map(|period| Observing {
                period,
                start: begin,
                steps: 0.0,
                last_now: begin,
                detectors: Vec::new(),
                areas: Vec::new(),
                speed: Vec::new(),
                geometry: Vec::new(),
                det_speed: Vec::new(),
                det_occupancy: Vec::new(),
            }),
            net,
        };
        let setup = s
            .take_over(&mut traci, opts)
            .and_then(|()| s.subscribe(&mut traci, opts.emergency.is_some()))
            .and_then(|()| apply_changes(&mut traci, &s.net, &opts.changes));
        s.traci = Some(traci);
        if let Err(e) = setup {
            return Err(s.explain(e));
        }
        if let Some(e) = &opts.emergency {
            s.emergency = Some(Emergency::new(e.clone(), &s.net, s.intersections.len())?);
        }
        s.controller = match opts.controller {
            ControllerKind::GreenWave => {
                // A fixed plan's own greens are its minimum: the driver must not
                // stretch a 6 s protected left the program has.
                for x in &mut s.intersections {
                    let shortest = x
                        .driver
                        .plan
                        .green_durations
                        .iter()
                        .copied()
                        .fold(f64::INFINITY, f64::min);
                    x.driver.min_green = x.driver.min_green.min(shortest).max(1.0);
                }
                let coordination =
                    crate::wave::coordinate(&s.net, &s.intersections, &opts.settings.arterial);
                let wave = crate::wave::GreenWave::new(&s.intersections, &coordination);
                tracing::info!(
                    coordinated = coordination.iter().flatten().count(),
                    cycle = wave.cycle,
                    "green waves planned"
                );
                Some(Box::new(wave) as Box<dyn control::Controller>)
            }
            kind => control::make(kind, &opts.settings, &s.intersections),
        };
        if opts.controller != ControllerKind::Fixed {
            s.drive().map_err(|e| s.explain(e))?;
        }
        Ok(s)
    }

    fn lane(&mut self, id: &str) -> usize {
        if let Some(i) = self.lane_index.get(id) {
            return *i;
        }
        self.lanes.push(id.to_string());
        self.lane_index.insert(id.to_string(), self.lanes.len() - 1);
        self.lanes.len() - 1
    }

    /// Reads every traffic light's program and links, and builds its intersection.
    fn take_over(&mut self, traci: &mut Traci, opts: &Options) -> Result<(), TwinError> {
        for (i, d) in self.detectors.iter().enumerate() {
            self.detector_index.insert(d.lane.clone(), i);
            self.detector_by_id.insert(d.id.clone(), i);
        }
        let tls = traci.get(ids::GET_TL, ids::ID_LIST, "")?;
        let tls: Vec<String> = tls.as_list().map(<[String]>::to_vec).unwrap_or_default();
        self.traffic_lights = tls.len();
        // The network is read while lanes are numbered: set it aside meanwhile.
        let net = std::mem::take(&mut self.net);
        let preds = net.predecessors();
        let mut built = Vec::new();
        for id in &tls {
            let program = traci.get(ids::GET_TL, ids::TL_CURRENT_PROGRAM, id)?;
            let logics = traci.get(ids::GET_TL, ids::TL_COMPLETE_DEFINITION_RYG, id)?;
            let phases = phases_of(&logics, program.as_str().unwrap_or_default())
                .map_err(|m| TwinError::Sumo(format!("traffic light {id}: {m}")))?;
            let links = links_of(&traci.get(ids::GET_TL, ids::TL_CONTROLLED_LINKS, id)?)
                .map_err(|m| TwinError::Sumo(format!("traffic light {id}: {m}")))?;
            let plan = match SignalPlan::new(id, &phases, links) {
                Ok(p) => p,
                Err(why) => {
                    tracing::warn!(tls = %id, %why, "left to its own program");
                    continue;
                }
            };
            // Taken over only while it shows one of its greens: in a yellow or
            // all-red it would otherwise lose its clearance. Until then its own
            // program runs (see `drive`).
            let shown = traci.get(ids::GET_TL, ids::TL_RED_YELLOW_GREEN_STATE, id)?;
            let first = plan
                .greens
                .iter()
                .position(|g| Some(g.as_str()) == shown.as_str());
            built.push((
                plan,
                first,
                program.as_str().unwrap_or_default().to_string(),
            ));
        }
        for (plan, first, program) in built {
            self.programs.push(program);
            let greens = plan.greens.len();
            let mut approaches = Vec::new();
            for inc in plan.incoming() {
                if net.lanes.get(inc).is_some_and(|l| !l.carries_cars()) {
                    continue;
                }
                let upstream: Vec<String> = net
                    .upstream(&preds, inc, opts.settings.reach)
                    .into_iter()
                    .map(str::to_string)
                    .collect();
                let weight: Vec<f64> = (0..greens)
                    .map(|p| {
                        plan.green_lanes(p)
                            .iter()
                            .find(|(l, _)| *l == inc)
                            .map_or(0.0, |(_, w)| *w)
                    })
                    .collect();
                let exits: Vec<Vec<String>> = (0..greens)
                    .map(|p| plan.exits(p, inc).into_iter().map(str::to_string).collect())
                    .collect();
                let detector = self.detector_index.get(inc).copied();
                let lane = self.lane(inc);
                let upstream = upstream.iter().map(|l| (self.lane(l), 1.0)).collect();
                let exits = exits
                    .iter()
                    .map(|e| e.iter().map(|l| self.lane(l)).collect())
                    .collect();
                approaches.push(Approach {
                    lane,
                    upstream,
                    weight,
                    exits,
                    detector,
                });
            }
            // Split shared upstream lanes between the approaches they feed.
            let mut feeds: HashMap<usize, f64> = HashMap::new();
            for a in &approaches {
                for (l, _) in &a.upstream {
                    *feeds.entry(*l).or_default() += 1.0;
                }
            }
            for a in &mut approaches {
                for (l, share) in &mut a.upstream {
                    *share = 1.0 / feeds[l];
                }
            }
            self.intersections.push(Intersection {
                driver: Driver::new(plan, first.unwrap_or(0), self.now, opts.settings.min_green),
                approaches,
            });
            self.waiting.push(first.is_none());
        }
        drop(preds);
        self.net = net;
        Ok(())
    }

    fn subscribe(&mut self, traci: &mut Traci, arrivals: bool) -> Result<(), TwinError> {
        self.obs.halting = vec![0.0; self.lanes.len()];
        self.obs.vehicles = vec![0.0; self.lanes.len()];
        self.obs.since_detection = vec![f64::INFINITY; self.detectors.len()];
        self.obs.counted = vec![0.0; self.detectors.len()];
        self.interval = vec![0.0; self.detectors.len()];
        self.passed = vec![0.0; self.detectors.len()];
        let observing = self.observe.is_some();
        let mut lane_vars = vec![ids::LAST_STEP_HALTING_NUMBER, ids::LAST_STEP_VEHICLE_NUMBER];
        let mut det_vars = vec![
            ids::LAST_STEP_TIME_SINCE_DETECTION,
            ids::VAR_INTERVAL_NUMBER,
        ];
        if observing {
            lane_vars.push(ids::LAST_STEP_MEAN_SPEED);
            det_vars.extend([ids::LAST_STEP_MEAN_SPEED, ids::LAST_STEP_OCCUPANCY]);
        }
        if let Some(o) = self.observe.as_mut() {
            o.detectors = vec![DetectorAcc::default(); self.detectors.len()];
            o.areas = vec![AreaAcc::default(); self.intersections.len() + 1];
            o.speed = vec![0.0; self.lanes.len()];
            o.geometry = self
                .lanes
                .iter()
                .map(|id| {
                    self.net
                        .lanes
                        .get(id)
                        .map_or((13.89, 0.0), |l| (l.speed, l.length))
                })
                .collect();
            o.det_speed = vec![-1.0; self.detectors.len()];
            o.det_occupancy = vec![0.0; self.detectors.len()];
        }
        traci.subscribe_many(ids::SUBSCRIBE_LANE, &self.lanes, &lane_vars)?;
        let dets: Vec<String> = self.detectors.iter().map(|d| d.id.clone()).collect();
        traci.subscribe_many(ids::SUBSCRIBE_INDUCTIONLOOP, &dets, &det_vars)?;
        let mut sim_vars = vec![
            ids::VAR_TIME,
            ids::VAR_TELEPORT_STARTING_VEHICLES_NUMBER,
            ids::VAR_MIN_EXPECTED_VEHICLES,
        ];
        if arrivals {
            sim_vars.push(ids::VAR_ARRIVED_VEHICLES_IDS);
        }
        traci.subscribe_many(ids::SUBSCRIBE_SIM, &[String::new()], &sim_vars)?;
        Ok(())
    }

    /// Whether the episode is over (its end reached, or every vehicle arrived).
    pub fn done(&self) -> bool {
        match self.end {
            Some(end) => self.now >= end - 1e-9,
            None => self.expected <= 0 || self.now >= MAX_SIM,
        }
    }

    /// Adds this step to the running period's readings and indicators.
    fn accumulate(&mut self) {
        let Some(o) = self.observe.as_mut() else {
            return;
        };
        let dt = (self.now - o.last_now).max(0.0);
        o.last_now = self.now;
        o.steps += 1.0;
        for (i, d) in o.detectors.iter_mut().enumerate() {
            d.count += self.passed[i];
            if o.det_speed[i] >= 0.0 {
                d.speed_sum += o.det_speed[i];
                d.speed_n += 1.0;
            }
            d.occupancy_sum += o.det_occupancy[i] / 100.0;
        }
        let network = self.intersections.len();
        for (k, x) in self.intersections.iter().enumerate() {
            for a in &x.approaches {
                let passed = a.detector.map_or(0.0, |d| self.passed[d]);
                for (l, share) in &a.upstream {
                    let (free_speed, length) = o.geometry[*l];
                    let step = LaneStep {
                        vehicles: self.obs.vehicles[*l],
                        halting: self.obs.halting[*l],
                        speed: o.speed[*l],
                        free_speed,
                        length,
                    };
                    for area in [k, network] {
                        o.areas[area].lane(*share, &step, dt);
                    }
                }
                o.areas[k].passed += passed;
                o.areas[network].passed += passed;
            }
        }
    }

    /// The period's detector readings and indicators once a period is complete (and
    /// the next one begun); `None` before, or when not observing.
    pub fn take_period(&mut self) -> Option<(Vec<Reading>, Vec<Indicator>)> {
        let o = self.observe.as_mut()?;
        if self.now - o.start < o.period - 1e-9 {
            return None;
        }
        let (begin, end) = (o.start, self.now);
        let span = (end - begin).max(1e-9);
        let steps = o.steps;
        let readings = self
            .detectors
            .iter()
            .zip(&o.detectors)
            .map(|(d, acc)| {
                let lane = self.net.lanes.get(&d.lane);
                let (x, y) = lane.map_or((0.0, 0.0), |l| {
                    along(&l.shape, if d.pos < 0.0 { l.length + d.pos } else { d.pos })
                });
                Reading {
                    detector: d.id.clone(),
                    lane: d.lane.clone(),
                    edge: lane.map(|l| l.edge.clone()).unwrap_or_default(),
                    begin,
                    end,
                    count: acc.count,
                    flow: acc.count * 3600.0 / span,
                    speed_kmh: (acc.speed_n > 0.0).then(|| acc.speed_sum / acc.speed_n * 3.6),
                    occupancy: acc.occupancy_sum / steps.max(1.0),
                    x,
                    y,
                }
            })
            .collect();
        let mut indicators: Vec<Indicator> = self
            .intersections
            .iter()
            .zip(&o.areas)
            .map(|(x, acc)| acc.finish(&x.driver.plan.tls, begin, end, steps))
            .collect();
        if let Some(net) = o.areas.last() {
            indicators.push(net.finish("network", begin, end, steps));
        }
        o.start = self.now;
        o.steps = 0.0;
        o.detectors
            .iter_mut()
            .for_each(|d| *d = DetectorAcc::default());
        o.areas.iter_mut().for_each(|a| *a = AreaAcc::default());
        Some((readings, indicators))
    }

    /// A TraCI failure, explained by SUMO's log when SUMO is the one that stopped.
    fn explain(&mut self, e: TwinError) -> TwinError {
        match self.sumo.as_mut() {
            Some(running) => sumo_failure(running, e),
            None => e,
        }
    }

    /// One simulation step, then the controller's decisions for the next.
    pub fn step(&mut self) -> Result<(), TwinError> {
        self.step_inner().map_err(|e| self.explain(e))
    }

    fn step_inner(&mut self) -> Result<(), TwinError> {
        let traci = self
            .traci
            .as_mut()
            .ok_or_else(|| TwinError::Sumo("session closed".into()))?;
        let t0 = Instant::now();
        let results = traci.step(0.0)?;
        self.sumo_time += t0.elapsed();
        self.passed.iter_mut().for_each(|p| *p = 0.0);
        for r in results {
            match r.response {
                ids::RESPONSE_SUBSCRIBE_LANE => {
                    let Some(i) = self.lane_index.get(&r.object).copied() else {
                        continue;
                    };
                    for (var, v) in r.values {
                        let v = v.ok().and_then(|v| v.as_f64()).unwrap_or(0.0);
                        match var {
                            ids::LAST_STEP_HALTING_NUMBER => self.obs.halting[i] = v,
                            ids::LAST_STEP_VEHICLE_NUMBER => self.obs.vehicles[i] = v,
                            ids::LAST_STEP_MEAN_SPEED => {
                                if let Some(o) = self.observe.as_mut() {
                                    o.speed[i] = v;
                                }
                            }
                            _ => {}
                        }
                    }
                }
                ids::RESPONSE_SUBSCRIBE_INDUCTIONLOOP => {
                    let Some(i) = self.detector_by_id.get(&r.object).copied() else {
                        continue;
                    };
                    for (var, v) in r.values {
                        let v = v.ok().and_then(|v| v.as_f64()).unwrap_or(0.0);
                        match var {
                            ids::LAST_STEP_TIME_SINCE_DETECTION => self.obs.since_detection[i] = v,
                            ids::VAR_INTERVAL_NUMBER => {
                                // A running count; an interval's end resets it.
                                let prev = self.interval[i];
                                let add = if v >= prev { v - prev } else { v };
                                self.interval[i] = v;
                                self.passed[i] = add;
                                self.obs.counted[i] += add;
                            }
                            ids::LAST_STEP_MEAN_SPEED => {
                                if let Some(o) = self.observe.as_mut() {
                                    o.det_speed[i] = v;
                                }
                            }
                            ids::LAST_STEP_OCCUPANCY => {
                                if let Some(o) = self.observe.as_mut() {
                                    o.det_occupancy[i] = v;
                                }
                            }
                            _ => {}
                        }
                    }
                }
                ids::RESPONSE_SUBSCRIBE_SIM => {
                    for (var, v) in r.values {
                        let Ok(v) = v else { continue };
                        match var {
                            ids::VAR_TIME => self.now = v.as_f64().unwrap_or(self.now),
                            ids::VAR_TELEPORT_STARTING_VEHICLES_NUMBER => {
                                self.teleports += v.as_i32().unwrap_or(0).max(0) as u64
                            }
                            ids::VAR_MIN_EXPECTED_VEHICLES => {
                                self.expected = i64::from(v.as_i32().unwrap_or(0))
                            }
                            ids::VAR_ARRIVED_VEHICLES_IDS => {
                                if let (Some(e), Some(ids)) = (self.emergency.as_mut(), v.as_list())
                                {
                                    e.arrived = ids
                                        .iter()
                                        .filter(|id| id.starts_with(VEHICLE_PREFIX))
                                        .cloned()
                                        .collect();
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        self.accumulate();
        self.steps += 1;
        if !self.intersections.is_empty() {
            let q: f64 = self
                .intersections
                .iter()
                .flat_map(|x| &x.approaches)
                .map(|a| self.obs.halting[a.lane])
                .sum();
            self.queue_sum += q / self.intersections.len() as f64;
        }
        if self.emergency.is_some() {
            self.emergency_step()?;
        }
        if self.controller.is_some() || self.emergency.is_some() {
            self.drive()?;
        }
        Ok(())
    }

    /// Asks the controller and sends the states that change, in one message.
    /// An ambulance's request overrides the controller (and, under fixed plans, the
    /// light is driven only while it is preempted).
    fn drive(&mut self) -> Result<(), TwinError> {
        let n = self.intersections.len();
        let fixed = self.controller.is_none();
        let wishes = match self.controller.as_mut() {
            Some(c) => c.decide(self.now, &self.intersections, &self.obs),
            None => vec![None; n],
        };
        let now = self.now;
        let mut sets: Vec<(u8, u8, String, Value)> = Vec::new();
        if fixed {
            self.hold_for_preemption(&mut sets)?;
        } else if self.waiting.iter().any(|w| *w) {
            self.take_over_at_greens()?;
        }
        let (preempt, held) = match &self.emergency {
            Some(e) => (e.preempt.clone(), e.held.clone()),
            None => (vec![None; n], vec![false; n]),
        };
        for (k, (x, wish)) in self.intersections.iter_mut().zip(wishes).enumerate() {
            let driven = if fixed { held[k] } else { !self.waiting[k] };
            if !driven {
                continue;
            }
            let state = match preempt[k] {
                Some(p) => {
                    if let Some(e) = self.emergency.as_mut() {
                        e.driven(k, &x.driver.plan.tls, now);
                    }
                    x.driver.tick_urgent(now, p)
                }
                // Under fixed plans a held light keeps its green until handed back.
                None if fixed => x.driver.tick(now, None),
                None => x.driver.tick(now, wish),
            };
            if let Some(state) = state {
                sets.push((
                    ids::SET_TL,
                    ids::TL_RED_YELLOW_GREEN_STATE,
                    x.driver.plan.tls.clone(),
                    Value::Str(state),
                ));
            }
        }
        let sets: Vec<(u8, u8, &str, Value)> = sets
            .iter()
            .map(|(d, v, o, x)| (*d, *v, o.as_str(), x.clone()))
            .collect();
        let traci = self
            .traci
            .as_mut()
            .ok_or_else(|| TwinError::Sumo("session closed".into()))?;
        let t0 = Instant::now();
        traci.set_many(&sets)?;
        self.sumo_time += t0.elapsed();
        Ok(())
    }

    /// What every controlled signal shows now, read back from SUMO (one round trip per
    /// light: for checks and for the map, not for every step of a fast run).
    pub fn signal_states(&mut self) -> Result<Vec<String>, TwinError> {
        let traci = self
            .traci
            .as_mut()
            .ok_or_else(|| TwinError::Sumo("session closed".into()))?;
        let mut out = Vec::with_capacity(self.intersections.len());
        for x in &self.intersections {
            let v = traci.get(
                ids::GET_TL,
                ids::TL_RED_YELLOW_GREEN_STATE,
                &x.driver.plan.tls,
            )?;
            out.push(v.as_str().unwrap_or_default().to_string());
        }
        Ok(out)
    }

    /// Lights still on their own program are taken over once they show a green.
    fn take_over_at_greens(&mut self) -> Result<(), TwinError> {
        let traci = self
            .traci
            .as_mut()
            .ok_or_else(|| TwinError::Sumo("session closed".into()))?;
        for (x, waiting) in self.intersections.iter_mut().zip(self.waiting.iter_mut()) {
            if !*waiting {
                continue;
            }
            let shown = traci.get(
                ids::GET_TL,
                ids::TL_RED_YELLOW_GREEN_STATE,
                &x.driver.plan.tls,
            )?;
            if let Some(k) = x
                .driver
                .plan
                .greens
                .iter()
                .position(|g| Some(g.as_str()) == shown.as_str())
            {
                x.driver = Driver::new(x.driver.plan.clone(), k, self.now, x.driver.min_green);
                *waiting = false;
            }
        }
        Ok(())
    }

    /// Closes the simulation and reads the trips.
    pub fn finish(mut self) -> Result<(TripStats, f64), TwinError> {
        if let Some(t) = self.traci.take() {
            t.close()?;
        }
        if let Some(s) = self.sumo.take() {
            s.wait()?;
        }
        let trips = tripinfo::read_excluding(&self.tripinfo, VEHICLE_PREFIX)?;
        let mean_queue = if self.steps > 0 {
            self.queue_sum / self.steps as f64
        } else {
            0.0
        };
        Ok((trips, mean_queue))
    }
}

/// When SUMO has exited (or exits within a moment), its own last words say more
/// than the broken connection does.
fn sumo_failure(running: &mut Running, e: TwinError) -> TwinError {
    for _ in 0..20 {
        if let Some(why) = running.exited() {
            return TwinError::Sumo(why);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    e
}

/// Plays a whole episode headless.
pub fn run(sumo: &Sumo, opts: &Options) -> Result<Report, TwinError> {
    run_with(sumo, opts, |_| Ok(()))
}

/// [`run`], calling `each_step` after every step (to make calls, read arrivals).
pub fn run_with(
    sumo: &Sumo,
    opts: &Options,
    mut each_step: impl FnMut(&mut Session) -> Result<(), TwinError>,
) -> Result<Report, TwinError> {
    let wall = Instant::now();
    let mut s = Session::start(sumo, opts)?;
    let begin = s.now;
    while !s.done() {
        s.step()?;
        each_step(&mut s)?;
    }
    let sim_seconds = s.now - begin;
    let (traffic_lights, controlled) = (s.traffic_lights, s.intersections.len());
    let version = s.version.clone();
    let teleports = s.teleports;
    let sumo_time = s.sumo_time;
    let (trips, mean_queue) = s.finish()?;
    let elapsed = wall.elapsed();
    let wall_seconds = elapsed.as_secs_f64();
    Ok(Report {
        controller: opts.controller,
        seed: opts.seed,
        sumo: version,
        trips,
        teleports,
        mean_queue,
        traffic_lights,
        controlled: if opts.controller == ControllerKind::Fixed {
            0
        } else {
            controlled
        },
        sim_seconds,
        wall_seconds,
        speedup: if wall_seconds > 0.0 {
            sim_seconds / wall_seconds
        } else {
            0.0
        },
        sumo_seconds: sumo_time.as_secs_f64(),
        citybrain_seconds: elapsed.saturating_sub(sumo_time).as_secs_f64(),
    })
}
