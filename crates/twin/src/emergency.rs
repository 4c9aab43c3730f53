//! Emergency response in the twin: ambulances wait at stations; a call (an incident
//! with a place on the network) dispatches the nearest available one by live travel
//! time; on its way, the signals ahead give its movement green (preemption), through
//! the program's own yellow and all-red.
//!
//! - **Live travel time**: at each dispatch every edge's current travel time is read
//!   from SUMO (length over the mean speed of the vehicles on it, the free-flow time
//!   when empty), capped at [`MAX_SLOWDOWN`] times the free-flow time, and given to
//!   SUMO's router (`edge.adaptTraveltime`), which then finds each available unit's
//!   fastest route (`simulation.findRoute`). The unit with the shortest is sent.
//! - **Preemption**: while an ambulance on a call is within `preempt_distance` of a
//!   controlled light on its route (`vehicle.getNextTLS`), that light is asked for the
//!   green serving the ambulance's link, protected before permissive, cutting the
//!   current green after [`crate::signal::PREEMPT_MIN_GREEN`] at most. Once the
//!   ambulance has passed, the light returns to its controller (or, under the
//!   network's own fixed plans, to its program at the green it shows).
//! - **The ambulance obeys signals**: it is a SUMO `emergency`-class vehicle without
//!   the blue-light device (which would let it run red lights and make others yield),
//!   so the measured gain is what preemption gives a vehicle that waits at red. Real
//!   ambulances may proceed through a red with care; the gain there is smaller but so
//!   is their speed through junctions.
//! - **Units**: each station has one ambulance; after a call it stays
//!   `scene_time` seconds at the scene, then drives back (no preemption) and is
//!   available again once at its station. Calls with no unit available wait in order.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;

use rand_core::SeedableRng;
use serde::Serialize;

use crate::episode::Session;
use crate::net::Network;
use crate::scenario::uniform;
use crate::traci::{ids, Value};
use crate::TwinError;

/// The SUMO vehicle type of ambulances (written to the session's additional file).
pub const AMBULANCE_TYPE: &str = "citybrain_ambulance";
/// Ambulance vehicle ids start with this (their trips are left out of other
/// traffic's indicators).
pub const VEHICLE_PREFIX: &str = "citybrain.ambulance.";
/// The slowest an edge is assumed to be, as a multiple of its free-flow time: a
/// queue standing at a red light otherwise reads as an almost endless travel time.
pub const MAX_SLOWDOWN: f64 = 10.0;

/// An ambulance station: where its unit waits, on an edge.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Station {
    pub id: String,
    pub edge: String,
}

#[derive(Debug, Clone)]
pub struct EmergencyOptions {
    pub stations: Vec<Station>,
    /// Whether signals give ambulances on a call green.
    pub preemption: bool,
    /// How far ahead (m) of a light an ambulance asks for its green.
    pub preempt_distance: f64,
    /// Seconds an ambulance stays at the scene before driving back.
    pub scene_time: f64,
}

impl EmergencyOptions {
    pub fn new(stations: Vec<Station>, preemption: bool) -> EmergencyOptions {
        EmergencyOptions {
            stations,
            preemption,
            preempt_distance: 300.0,
            scene_time: 900.0,
        }
    }
}

/// A call for an ambulance: an incident at a place on the network.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Call {
    pub id: String,
    pub edge: String,
    /// Metres along the edge (default: its end).
    pub pos: Option<f64>,
}

/// What a dispatch decided.
#[derive(Debug, Clone, Serialize)]
pub struct Dispatch {
    pub call: String,
    pub unit: String,
    pub station: String,
    /// When the call came in and when the unit was sent (later when none was free).
    pub called_at: f64,
    pub dispatched_at: f64,
    /// The router's estimate by live travel times (s).
    pub eta_s: f64,
    /// Estimates of the other available units, for the record.
    pub alternatives: Vec<(String, f64)>,
}

/// An ambulance reached its call.
#[derive(Debug, Clone, Serialize)]
pub struct Arrival {
    pub call: String,
    pub unit: String,
    pub station: String,
    pub called_at: f64,
    pub dispatched_at: f64,
    pub arrived_at: f64,
    /// From the call to arrival at the scene (s), waiting for a free unit included.
    pub response_s: f64,
    pub eta_s: f64,
    /// Distinct lights that gave it priority on the way.
    pub preempted_lights: usize,
}

#[derive(Debug, Clone)]
enum UnitState {
    Available,
    ToScene {
        call: Call,
        called_at: f64,
        vehicle: String,
        dispatched_at: f64,
        eta: f64,
        preempted: HashSet<String>,
    },
    AtScene {
        edge: String,
        until: f64,
    },
    Returning {
        vehicle: String,
    },
}

#[derive(Debug, Clone)]
struct Unit {
    id: String,
    station: usize,
    state: UnitState,
}

/// The emergency state of a session.
pub(crate) struct Emergency {
    opts: EmergencyOptions,
    units: Vec<Unit>,
    pending: VecDeque<(Call, f64)>,
    dispatches: Vec<Dispatch>,
    arrivals: Vec<Arrival>,
    /// Per intersection: the green an ambulance asks for now.
    pub(crate) preempt: Vec<Option<usize>>,
    /// Per intersection (fixed plans only): driven by citybrain while preempted.
    pub(crate) held: Vec<bool>,
    /// The network's edges and their free-flow times, for live travel times.
    edges: Vec<String>,
    free_time: Vec<f64>,
    vehicles: u64,
    /// Vehicles that arrived in the last step.
    pub(crate) arrived: Vec<String>,
}

impl Emergency {
    pub(crate) fn new(
        opts: EmergencyOptions,
        net: &Network,
        intersections: usize,
    ) -> Result<Emergency, TwinError> {
        if opts.stations.is_empty() {
            return Err(TwinError::Config("emergency: no ambulance station".into()));
        }
        if !(opts.preempt_distance.is_finite() && opts.preempt_distance > 0.0) {
            return Err(TwinError::Config(format!(
                "emergency: preempt distance must be positive, got {}",
                opts.preempt_distance
            )));
        }
        if !(opts.scene_time.is_finite() && opts.scene_time >= 0.0) {
            return Err(TwinError::Config(format!(
                "emergency: scene time must be zero or more, got {}",
                opts.scene_time
            )));
        }
        for s in &opts.stations {
            if !net.edges.iter().any(|e| e.id == s.edge) {
                return Err(TwinError::Config(format!(
                    "emergency: station {:?} is on edge {:?}, which the network lacks",
                    s.id, s.edge
                )));
            }
        }
        let (edges, free_time) = net
            .edges
            .iter()
            .map(|e| {
                let (length, speed) = e
                    .lanes
                    .iter()
                    .filter_map(|l| net.lanes.get(l))
                    .fold((0.0f64, 0.0f64), |(len, sp), l| {
                        (len.max(l.length), sp.max(l.speed))
                    });
                (e.id.clone(), length / speed.max(0.1))
            })
            .unzip();
        let units = opts
            .stations
            .iter()
            .enumerate()
            .map(|(i, s)| Unit {
                id: format!("ambulance-{}", s.id),
                station: i,
                state: UnitState::Available,
            })
            .collect();
        Ok(Emergency {
            opts,
            units,
            pending: VecDeque::new(),
            dispatches: Vec::new(),
            arrivals: Vec::new(),
            preempt: vec![None; intersections],
            held: vec![false; intersections],
            edges,
            free_time,
            vehicles: 0,
            arrived: Vec::new(),
        })
    }

    fn next_vehicle(&mut self) -> String {
        self.vehicles += 1;
        format!("{VEHICLE_PREFIX}{}", self.vehicles)
    }
}

/// The additional file that defines the ambulance type.
pub(crate) fn write_types(dir: &Path) -> Result<std::path::PathBuf, TwinError> {
    let path = dir.join("emergency.add.xml");
    std::fs::write(
        &path,
        format!(
            "<additional>\n  <vType id=\"{AMBULANCE_TYPE}\" vClass=\"emergency\" \
             speedFactor=\"1.2\" speedDev=\"0\" length=\"6.5\" color=\"1,1,1\"/>\n\
             </additional>\n"
        ),
    )?;
    Ok(path)
}

impl Session {
    /// Takes a call: dispatches the nearest available unit now, or queues the call
    /// until one is free.
    pub fn call(&mut self, call: Call) -> Result<(), TwinError> {
        let now = self.now;
        let e = self.emergency_mut()?;
        if e.pending.iter().any(|(c, _)| c.id == call.id)
            || e.units.iter().any(
                |u| matches!(&u.state, UnitState::ToScene { call: c, .. } if c.id == call.id),
            )
        {
            return Err(TwinError::Config(format!(
                "emergency: call {:?} is already being handled",
                call.id
            )));
        }
        if !self.net.edges.iter().any(|x| x.id == call.edge) {
            return Err(TwinError::Config(format!(
                "emergency: call {:?} is on edge {:?}, which the network lacks",
                call.id, call.edge
            )));
        }
        self.emergency_mut()?.pending.push_back((call, now));
        self.dispatch_pending()
    }

    /// Dispatches made since the last call of this function.
    pub fn take_dispatches(&mut self) -> Vec<Dispatch> {
        self.emergency
            .as_mut()
            .map(|e| std::mem::take(&mut e.dispatches))
            .unwrap_or_default()
    }

    /// Arrivals at calls since the last call of this function.
    pub fn take_arrivals(&mut self) -> Vec<Arrival> {
        self.emergency
            .as_mut()
            .map(|e| std::mem::take(&mut e.arrivals))
            .unwrap_or_default()
    }

    /// Calls waiting for a free unit, and units out on a call or returning.
    pub fn emergency_load(&self) -> (usize, usize) {
        self.emergency.as_ref().map_or((0, 0), |e| {
            let busy = e
                .units
                .iter()
                .filter(|u| !matches!(u.state, UnitState::Available))
                .count();
            (e.pending.len(), busy)
        })
    }

    fn emergency_mut(&mut self) -> Result<&mut Emergency, TwinError> {
        self.emergency
            .as_mut()
            .ok_or_else(|| TwinError::Config("emergency response is not enabled".into()))
    }

    /// After each step: arrivals, units leaving the scene, queued calls, and the
    /// lights ambulances ask for.
    pub(crate) fn emergency_step(&mut self) -> Result<(), TwinError> {
        let now = self.now;
        let Some(e) = self.emergency.as_mut() else {
            return Ok(());
        };
        let arrived: HashSet<String> = std::mem::take(&mut e.arrived).into_iter().collect();
        let mut back = Vec::new();
        for (i, u) in e.units.iter_mut().enumerate() {
            let state = std::mem::replace(&mut u.state, UnitState::Available);
            u.state = match state {
                UnitState::ToScene {
                    call,
                    called_at,
                    vehicle,
                    dispatched_at,
                    eta,
                    preempted,
                } if arrived.contains(&vehicle) => {
                    tracing::info!(unit = %u.id, call = %call.id, response_s = now - called_at, "ambulance at the scene");
                    e.arrivals.push(Arrival {
                        call: call.id.clone(),
                        unit: u.id.clone(),
                        station: e.opts.stations[u.station].id.clone(),
                        called_at,
                        dispatched_at,
                        arrived_at: now,
                        response_s: now - called_at,
                        eta_s: eta,
                        preempted_lights: preempted.len(),
                    });
                    UnitState::AtScene {
                        edge: call.edge,
                        until: now + e.opts.scene_time,
                    }
                }
                UnitState::AtScene { edge, until } if now >= until => {
                    back.push((i, edge));
                    UnitState::Available
                }
                UnitState::Returning { vehicle } if arrived.contains(&vehicle) => {
                    UnitState::Available
                }
                other => other,
            };
        }
        for (i, edge) in back {
            self.drive_back(i, &edge)?;
        }
        self.dispatch_pending()?;
        self.request_greens()
    }

    /// Sends a unit from the scene back to its station (no priority on the way).
    fn drive_back(&mut self, unit: usize, from: &str) -> Result<(), TwinError> {
        let Some(e) = self.emergency.as_mut() else {
            return Ok(());
        };
        let station = e.opts.stations[e.units[unit].station].edge.clone();
        let vehicle = e.next_vehicle();
        let route = self.find_route(from, &station)?;
        let Some((edges, _)) = route.filter(|(edges, _)| edges.len() > 1) else {
            // Already there, or no way back: available at once.
            return Ok(());
        };
        self.add_vehicle(&vehicle, edges, None)?;
        if let Some(e) = self.emergency.as_mut() {
            e.units[unit].state = UnitState::Returning { vehicle };
        }
        Ok(())
    }

    /// Dispatches queued calls, oldest first, while units are free.
    fn dispatch_pending(&mut self) -> Result<(), TwinError> {
        let now = self.now;
        loop {
            let Some(e) = self.emergency.as_mut() else {
                return Ok(());
            };
            let free: Vec<usize> = (0..e.units.len())
                .filter(|i| matches!(e.units[*i].state, UnitState::Available))
                .collect();
            if free.is_empty() {
                return Ok(());
            }
            let Some((call, called_at)) = e.pending.pop_front() else {
                return Ok(());
            };
            self.refresh_travel_times()?;
            let mut best: Option<(usize, Vec<String>, f64)> = None;
            let mut estimates = Vec::new();
            for i in free {
                let Some(e) = self.emergency.as_ref() else {
                    return Ok(());
                };
                let station = e.opts.stations[e.units[i].station].edge.clone();
                let unit = e.units[i].id.clone();
                if let Some((edges, time)) = self.find_route(&station, &call.edge)? {
                    estimates.push((unit, time));
                    if best.as_ref().is_none_or(|(_, _, t)| time < *t) {
                        best = Some((i, edges, time));
                    }
                }
            }
            let Some((i, edges, eta)) = best else {
                tracing::warn!(call = %call.id, edge = %call.edge, "no ambulance can reach the call");
                continue;
            };
            let Some(e) = self.emergency.as_mut() else {
                return Ok(());
            };
            let vehicle = e.next_vehicle();
            let unit = e.units[i].id.clone();
            let station = e.opts.stations[e.units[i].station].id.clone();
            estimates.retain(|(u, _)| *u != unit);
            tracing::info!(%unit, call = %call.id, eta_s = eta, "ambulance dispatched");
            e.dispatches.push(Dispatch {
                call: call.id.clone(),
                unit,
                station,
                called_at,
                dispatched_at: now,
                eta_s: eta,
                alternatives: estimates,
            });
            e.units[i].state = UnitState::ToScene {
                call: call.clone(),
                called_at,
                vehicle: vehicle.clone(),
                dispatched_at: now,
                eta,
                preempted: HashSet::new(),
            };
            self.add_vehicle(&vehicle, edges, call.pos)?;
        }
    }

    /// Gives SUMO's router the edges' current travel times.
    fn refresh_travel_times(&mut self) -> Result<(), TwinError> {
        let traci = self.traci.as_mut().ok_or_else(closed)?;
        let Some(e) = self.emergency.as_ref() else {
            return Ok(());
        };
        let now = traci.get_many(ids::GET_EDGE, ids::VAR_CURRENT_TRAVELTIME, &e.edges)?;
        let times: Vec<f64> = now
            .iter()
            .zip(&e.free_time)
            .map(|(v, free)| {
                let t = v.as_f64().filter(|t| t.is_finite() && *t > 0.0);
                t.unwrap_or(*free).clamp(*free, free * MAX_SLOWDOWN)
            })
            .collect();
        let sets: Vec<(u8, u8, &str, Value)> = e
            .edges
            .iter()
            .zip(times)
            .map(|(edge, t)| {
                (
                    ids::SET_EDGE,
                    ids::VAR_EDGE_TRAVELTIME,
                    edge.as_str(),
                    Value::Compound(vec![Value::Double(t)]),
                )
            })
            .collect();
        let traci = self.traci.as_mut().ok_or_else(closed)?;
        for chunk in sets.chunks(512) {
            traci.set_many(chunk)?;
        }
        Ok(())
    }

    /// SUMO's fastest route for an ambulance by the travel times it was given:
    /// its edges and time, or `None` when there is none.
    fn find_route(
        &mut self,
        from: &str,
        to: &str,
    ) -> Result<Option<(Vec<String>, f64)>, TwinError> {
        let traci = self.traci.as_mut().ok_or_else(closed)?;
        let param = Value::Compound(vec![
            Value::Str(from.into()),
            Value::Str(to.into()),
            Value::Str(AMBULANCE_TYPE.into()),
            Value::Double(-1.0),
            Value::Int(0),
        ]);
        let stage = match traci.get_with(ids::GET_SIM, ids::FIND_ROUTE, "", Some(&param)) {
            Ok(v) => v,
            // SUMO refuses a route it cannot find; the connection stays usable.
            Err(crate::traci::TraciError::Refused { message, .. }) => {
                tracing::debug!(%from, %to, %message, "no route");
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        Ok(route_of(&stage))
    }

    fn add_vehicle(
        &mut self,
        vehicle: &str,
        edges: Vec<String>,
        arrival_pos: Option<f64>,
    ) -> Result<(), TwinError> {
        let traci = self.traci.as_mut().ok_or_else(closed)?;
        let route = format!("{vehicle}.route");
        traci.set(ids::SET_ROUTE, ids::ADD, &route, Value::StrList(edges))?;
        let s = |v: &str| Value::Str(v.to_string());
        let arrival = arrival_pos.map_or_else(|| "max".to_string(), |p| format!("{p:.2}"));
        traci.set(
            ids::SET_VEHICLE,
            ids::ADD_FULL,
            vehicle,
            Value::Compound(vec![
                s(&route),
                s(AMBULANCE_TYPE),
                s("now"),
                s("best"),
                s("base"),
                s("max"),
                s("current"),
                s(&arrival),
                s("current"),
                s(""),
                s(""),
                s(""),
                Value::Int(0),
                Value::Int(0),
            ]),
        )?;
        Ok(())
    }

    /// Which green each light should give an ambulance approaching it now.
    fn request_greens(&mut self) -> Result<(), TwinError> {
        let Some(e) = self.emergency.as_ref() else {
            return Ok(());
        };
        let mut preempt = vec![None; self.intersections.len()];
        if !e.opts.preemption {
            if let Some(e) = self.emergency.as_mut() {
                e.preempt = preempt;
            }
            return Ok(());
        }
        let reach = e.opts.preempt_distance;
        let on_call: Vec<(usize, String)> = e
            .units
            .iter()
            .enumerate()
            .filter_map(|(i, u)| match &u.state {
                UnitState::ToScene { vehicle, .. } => Some((i, vehicle.clone())),
                _ => None,
            })
            .collect();
        let by_tls: HashMap<&str, usize> = self
            .intersections
            .iter()
            .enumerate()
            .map(|(k, x)| (x.driver.plan.tls.as_str(), k))
            .collect();
        let mut asked = Vec::new();
        let traci = self.traci.as_mut().ok_or_else(closed)?;
        for (unit, vehicle) in on_call {
            // Not yet inserted (or just gone): nothing ahead.
            let Ok(ahead) = traci.get(ids::GET_VEHICLE, ids::VAR_NEXT_TLS, &vehicle) else {
                continue;
            };
            for (tls, link, dist) in next_lights(&ahead) {
                if dist > reach {
                    break;
                }
                let Some(&k) = by_tls.get(tls.as_str()) else {
                    continue;
                };
                let x = &self.intersections[k];
                if preempt[k].is_none() {
                    preempt[k] = x.driver.plan.green_for_link(link, x.driver.current);
                    if preempt[k].is_some() {
                        asked.push((unit, tls));
                    }
                }
            }
        }
        if let Some(e) = self.emergency.as_mut() {
            for (unit, tls) in asked {
                if let UnitState::ToScene { preempted, .. } = &mut e.units[unit].state {
                    preempted.insert(tls);
                }
            }
            e.preempt = preempt;
        }
        Ok(())
    }

    /// Under the network's own plans: lights an ambulance asks for are taken over
    /// while they show a green, and handed back to their program once it has passed.
    pub(crate) fn hold_for_preemption(
        &mut self,
        sets: &mut Vec<(u8, u8, String, Value)>,
    ) -> Result<(), TwinError> {
        let now = self.now;
        let Some(e) = self.emergency.as_mut() else {
            return Ok(());
        };
        let traci = self.traci.as_mut().ok_or_else(closed)?;
        for (k, x) in self.intersections.iter_mut().enumerate() {
            let wanted = e.preempt[k].is_some();
            if wanted && !e.held[k] {
                let shown = traci.get(
                    ids::GET_TL,
                    ids::TL_RED_YELLOW_GREEN_STATE,
                    &x.driver.plan.tls,
                )?;
                if let Some(g) = x
                    .driver
                    .plan
                    .greens
                    .iter()
                    .position(|g| Some(g.as_str()) == shown.as_str())
                {
                    x.driver = crate::signal::Driver::new(
                        x.driver.plan.clone(),
                        g,
                        now,
                        x.driver.min_green,
                    );
                    e.held[k] = true;
                }
            } else if !wanted && e.held[k] && x.driver.in_green() {
                let tls = x.driver.plan.tls.clone();
                let phase = x.driver.plan.program_index[x.driver.current];
                sets.push((
                    ids::SET_TL,
                    ids::TL_PROGRAM,
                    tls.clone(),
                    Value::Str(self.programs[k].clone()),
                ));
                sets.push((
                    ids::SET_TL,
                    ids::TL_PHASE_INDEX,
                    tls,
                    Value::Int(i32::try_from(phase).unwrap_or(0)),
                ));
                e.held[k] = false;
            }
        }
        Ok(())
    }
}

fn closed() -> TwinError {
    TwinError::Sumo("session closed".into())
}

/// A `findRoute` answer (a TraCIStage compound): its edges, then its travel time.
fn route_of(stage: &Value) -> Option<(Vec<String>, f64)> {
    let Value::Compound(items) = stage else {
        return None;
    };
    let at = items.iter().position(|v| matches!(v, Value::StrList(_)))?;
    let Value::StrList(edges) = &items[at] else {
        return None;
    };
    let time = items[at + 1..].iter().find_map(Value::as_f64)?;
    (!edges.is_empty()).then(|| (edges.clone(), time))
}

/// A `getNextTLS` answer: (light, link index, distance) in route order.
fn next_lights(v: &Value) -> Vec<(String, usize, f64)> {
    let Value::Compound(items) = v else {
        return Vec::new();
    };
    let mut out = Vec::new();
    // A count, then per light: id, link index, distance, state.
    for rec in items.get(1..).unwrap_or_default().chunks_exact(4) {
        if let (Value::Str(id), Some(link), Some(dist)) = (&rec[0], rec[1].as_f64(), rec[2].as_f64())
        {
            out.push((id.clone(), link.max(0.0) as usize, dist));
        }
    }
    out
}

/// Stations spread over the network: `n` edges among those cars can use inside the
/// network (not at its border), by farthest-point sampling from the edge nearest
/// the centre, then k-medoids (each station the edge nearest its area's centre).
pub fn spread_stations(net: &Network, n: usize) -> Vec<Station> {
    let candidates = interior_edges(net);
    if candidates.is_empty() || n == 0 {
        return Vec::new();
    }
    let (cx, cy) = {
        let (sx, sy) = candidates
            .iter()
            .fold((0.0, 0.0), |(sx, sy), (_, (x, y))| (sx + x, sy + y));
        let k = candidates.len() as f64;
        (sx / k, sy / k)
    };
    let d2 = |a: (f64, f64), b: (f64, f64)| (a.0 - b.0).powi(2) + (a.1 - b.1).powi(2);
    let first = candidates
        .iter()
        .enumerate()
        .min_by(|a, b| d2(a.1 .1, (cx, cy)).total_cmp(&d2(b.1 .1, (cx, cy))))
        .map_or(0, |(i, _)| i);
    let mut chosen = vec![first];
    let mut nearest: Vec<f64> = candidates.iter().map(|c| d2(c.1, candidates[first].1)).collect();
    while chosen.len() < n.min(candidates.len()) {
        let Some((next, _)) = nearest
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
        else {
            break;
        };
        chosen.push(next);
        for (i, c) in candidates.iter().enumerate() {
            nearest[i] = nearest[i].min(d2(c.1, candidates[next].1));
        }
    }
    // Farthest points cover the network but sit at its edge; a few rounds of
    // k-medoids move each station to the middle of the area it serves (where a
    // city would site it: least mean distance to its calls).
    for _ in 0..20 {
        let mut sums = vec![(0.0, 0.0, 0usize); chosen.len()];
        for c in &candidates {
            let k = (0..chosen.len())
                .min_by(|a, b| {
                    d2(c.1, candidates[chosen[*a]].1).total_cmp(&d2(c.1, candidates[chosen[*b]].1))
                })
                .unwrap_or(0);
            sums[k].0 += c.1 .0;
            sums[k].1 += c.1 .1;
            sums[k].2 += 1;
        }
        let moved: Vec<usize> = sums
            .iter()
            .zip(&chosen)
            .map(|((sx, sy, m), old)| {
                if *m == 0 {
                    return *old;
                }
                let centre = (sx / *m as f64, sy / *m as f64);
                (0..candidates.len())
                    .min_by(|a, b| d2(candidates[*a].1, centre).total_cmp(&d2(candidates[*b].1, centre)))
                    .unwrap_or(*old)
            })
            .collect();
        if moved == chosen {
            break;
        }
        chosen = moved;
    }
    chosen
        .into_iter()
        .enumerate()
        .map(|(i, c)| Station {
            id: format!("S{}", i + 1),
            edge: candidates[c].0.clone(),
        })
        .collect()
}

/// Seeded calls at random interior edges, at random times in `[from, to)`, in time
/// order: `(time, call)`.
pub fn random_calls(net: &Network, n: usize, from: f64, to: f64, seed: u64) -> Vec<(f64, Call)> {
    let candidates = interior_edges(net);
    if candidates.is_empty() {
        return Vec::new();
    }
    // Calls have their own stream: the same seed as the demand gives other numbers.
    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed ^ 0x0a5b_11ce_5eed);
    let mut drawn: Vec<(f64, String)> = (0..n)
        .map(|_| {
            let t = from + (to - from) * uniform(&mut rng);
            let pick = (uniform(&mut rng) * candidates.len() as f64) as usize;
            let (edge, _) = &candidates[pick.min(candidates.len() - 1)];
            (t.floor(), edge.clone())
        })
        .collect();
    drawn.sort_by(|a, b| a.0.total_cmp(&b.0));
    drawn
        .into_iter()
        .enumerate()
        .map(|(i, (t, edge))| {
            (
                t,
                Call {
                    id: format!("call-{}", i + 1),
                    edge,
                    pos: None,
                },
            )
        })
        .collect()
}

/// Edges cars may use, at least 20 m long, in the network's largest strongly
/// connected part (from any of them to any other and back: an ambulance sent
/// there can return), not starting or ending at a dead end, with their midpoints.
fn interior_edges(net: &Network) -> Vec<(String, (f64, f64))> {
    let core = strongly_connected_core(net);
    net.edges
        .iter()
        .enumerate()
        .filter(|(i, _)| core[*i])
        .map(|(_, e)| e)
        .filter(|e| {
            [&e.from, &e.to].iter().all(|j| {
                net.junctions
                    .get(j.as_str())
                    .is_some_and(|j| j.kind != "dead_end")
            })
        })
        .filter_map(|e| {
            let lane = e
                .lanes
                .iter()
                .filter_map(|l| net.lanes.get(l))
                .find(|l| l.carries_cars() && l.length >= 20.0)?;
            Some((e.id.clone(), crate::observe::along(&lane.shape, lane.length / 2.0)))
        })
        .collect()
}

/// Per edge: whether it lies in the largest strongly connected component of the
/// edge graph (edges linked by connections), by Kosaraju's algorithm.
fn strongly_connected_core(net: &Network) -> Vec<bool> {
    let n = net.edges.len();
    let index: HashMap<&str, usize> = net
        .edges
        .iter()
        .enumerate()
        .map(|(i, e)| (e.id.as_str(), i))
        .collect();
    let edge_of = |lane: &str| {
        net.lanes
            .get(lane)
            .and_then(|l| index.get(l.edge.as_str()).copied())
    };
    let mut next = vec![Vec::new(); n];
    let mut prev = vec![Vec::new(); n];
    for c in &net.connections {
        if let (Some(a), Some(b)) = (edge_of(&c.from_lane), edge_of(&c.to_lane)) {
            next[a].push(b);
            prev[b].push(a);
        }
    }
    // First pass: finishing order, iteratively.
    let mut order = Vec::with_capacity(n);
    let mut seen = vec![false; n];
    for start in 0..n {
        if seen[start] {
            continue;
        }
        seen[start] = true;
        let mut stack = vec![(start, 0usize)];
        while let Some((v, i)) = stack.pop() {
            if let Some(&w) = next[v].get(i) {
                stack.push((v, i + 1));
                if !seen[w] {
                    seen[w] = true;
                    stack.push((w, 0));
                }
            } else {
                order.push(v);
            }
        }
    }
    // Second pass on the reversed graph, in reverse finishing order.
    let mut component = vec![usize::MAX; n];
    let mut sizes = Vec::new();
    for &start in order.iter().rev() {
        if component[start] != usize::MAX {
            continue;
        }
        let c = sizes.len();
        sizes.push(0usize);
        component[start] = c;
        let mut stack = vec![start];
        while let Some(v) = stack.pop() {
            sizes[c] += 1;
            for &w in &prev[v] {
                if component[w] == usize::MAX {
                    component[w] = c;
                    stack.push(w);
                }
            }
        }
    }
    let largest = (0..sizes.len()).max_by_key(|c| sizes[*c]);
    component.iter().map(|c| Some(*c) == largest).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_answer_gives_edges_and_time() {
        let stage = Value::Compound(vec![
            Value::Int(2),
            Value::Str(AMBULANCE_TYPE.into()),
            Value::Str(String::new()),
            Value::Str(String::new()),
            Value::StrList(vec!["a".into(), "b".into()]),
            Value::Double(42.5),
            Value::Double(40.0),
            Value::Double(600.0),
        ]);
        assert_eq!(route_of(&stage), Some((vec!["a".into(), "b".into()], 42.5)));
        let empty = Value::Compound(vec![Value::StrList(Vec::new()), Value::Double(0.0)]);
        assert_eq!(route_of(&empty), None);
        assert_eq!(route_of(&Value::Int(1)), None);
    }

    fn edge(id: &str, from: &str, to: &str) -> crate::net::Edge {
        crate::net::Edge {
            id: id.into(),
            from: from.into(),
            to: to.into(),
            lanes: vec![format!("{id}_0")],
            ..Default::default()
        }
    }

    #[test]
    fn the_core_is_the_largest_part_where_every_edge_reaches_every_other() {
        // A loop a→b→c→a, an entry e→a and an exit c→x.
        let mut net = Network::default();
        for (id, from, to) in [("a", "1", "2"), ("b", "2", "3"), ("c", "3", "1"), ("e", "0", "1"), ("x", "3", "9")] {
            let e = edge(id, from, to);
            net.lanes.insert(
                e.lanes[0].clone(),
                crate::net::Lane {
                    id: e.lanes[0].clone(),
                    edge: id.into(),
                    ..Default::default()
                },
            );
            net.edges.push(e);
        }
        for (a, b) in [("a", "b"), ("b", "c"), ("c", "a"), ("e", "b"), ("c", "x")] {
            net.connections.push(crate::net::Connection {
                from_lane: format!("{a}_0"),
                to_lane: format!("{b}_0"),
                tl: None,
                link_index: None,
                dir: "s".into(),
            });
        }
        assert_eq!(strongly_connected_core(&net), vec![true, true, true, false, false]);
    }

    #[test]
    fn next_lights_are_read_in_route_order() {
        let v = Value::Compound(vec![
            Value::Int(2),
            Value::Str("B1".into()),
            Value::Int(4),
            Value::Double(120.0),
            Value::Byte(b'r' as i8),
            Value::Str("C1".into()),
            Value::Int(10),
            Value::Double(320.0),
            Value::Byte(b'G' as i8),
        ]);
        assert_eq!(
            next_lights(&v),
            vec![("B1".into(), 4, 120.0), ("C1".into(), 10, 320.0)]
        );
        assert!(next_lights(&Value::Compound(vec![Value::Int(0)])).is_empty());
    }
}
