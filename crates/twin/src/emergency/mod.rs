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

mod dispatch;
mod sites;

use std::collections::{HashSet, VecDeque};
use std::path::Path;

use serde::Serialize;

use crate::net::Network;
use crate::traci::Value;
use crate::TwinError;

pub use sites::{random_calls, service_edges, service_points, spread_stations};

/// The SUMO vehicle type of ambulances (written to the session's additional file).
pub const AMBULANCE_TYPE: &str = "citybrain_ambulance";
/// Ambulance vehicle ids start with this (their trips are left out of other
/// traffic's indicators).
pub const VEHICLE_PREFIX: &str = "citybrain.ambulance.";
/// The slowest an edge is assumed to be, as a multiple of its free-flow time: a
/// queue standing at a red light otherwise reads as an almost endless travel time.
pub const MAX_SLOWDOWN: f64 = 10.0;
/// The longest a light is held for an ambulance (s): one that cannot pass (blocked
/// downstream, stuck in the wrong lane) must not starve the junction. The light then
/// serves the others for [`PREEMPT_REST`] before it may be preempted again.
pub const MAX_PREEMPT_HOLD: f64 = 60.0;
pub const PREEMPT_REST: f64 = 30.0;
/// How often (s) units on the road are checked to still exist in SUMO (a vehicle
/// removed by the simulator never arrives).
pub(crate) const WATCH_PERIOD: f64 = 30.0;

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
            scene_time: 600.0,
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

/// Where an ambulance is and what it does (for the map).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnitView {
    pub unit: String,
    pub station: String,
    /// `available`, `dispatched` (on its way to a call), `at_scene` or `returning`.
    pub status: &'static str,
    /// The call it answers (dispatched or at the scene).
    pub call: Option<String>,
    /// Network coordinates (m) and speed (m/s).
    pub x: f64,
    pub y: f64,
    pub speed: f64,
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
        call: String,
        edge: String,
        until: f64,
    },
    Returning {
        vehicle: String,
        /// Where it left from (the scene's edge).
        from: String,
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
    /// Calls no unit can reach.
    unreachable: Vec<String>,
    /// Per intersection: the green an ambulance asks for now, and which unit asks.
    pub(crate) preempt: Vec<Option<usize>>,
    pub(crate) asker: Vec<Option<usize>>,
    /// Per intersection (fixed plans only): driven by citybrain while preempted.
    pub(crate) held: Vec<bool>,
    /// Per intersection: since when it is preempted, and until when it rests after
    /// a preemption that lasted [`MAX_PREEMPT_HOLD`].
    pub(crate) since: Vec<Option<f64>>,
    pub(crate) rest_until: Vec<f64>,
    /// The network's edges and their free-flow times, for live travel times.
    edges: Vec<String>,
    free_time: Vec<f64>,
    vehicles: u64,
    /// Vehicles that arrived in the last step.
    pub(crate) arrived: Vec<String>,
    /// When units on the road were last checked to still exist in SUMO.
    checked_at: f64,
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
            unreachable: Vec::new(),
            preempt: vec![None; intersections],
            held: vec![false; intersections],
            asker: vec![None; intersections],
            checked_at: f64::NEG_INFINITY,
            since: vec![None; intersections],
            rest_until: vec![f64::NEG_INFINITY; intersections],
            edges,
            free_time,
            vehicles: 0,
            arrived: Vec::new(),
        })
    }

    /// Light `k` is being driven toward the green unit `asker[k]` asked for: its
    /// hold time runs from now, and the unit counts it as preempted.
    pub(crate) fn driven(&mut self, k: usize, tls: &str, now: f64) {
        let Some(u) = self.asker[k] else {
            return;
        };
        self.since[k].get_or_insert(now);
        if let Some(UnitState::ToScene { preempted, .. }) =
            self.units.get_mut(u).map(|u| &mut u.state)
        {
            if !preempted.contains(tls) {
                preempted.insert(tls.to_string());
            }
        }
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

pub(crate) fn closed() -> TwinError {
    TwinError::Sumo("session closed".into())
}

/// A `findRoute` answer (a TraCIStage compound): its edges, then its travel time.
pub(crate) fn route_of(stage: &Value) -> Option<(Vec<String>, f64)> {
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
pub(crate) fn next_lights(v: &Value) -> Vec<(String, usize, f64)> {
    let Value::Compound(items) = v else {
        return Vec::new();
    };
    let mut out = Vec::new();
    // A count, then per light: id, link index, distance, state.
    for rec in items.get(1..).unwrap_or_default().chunks_exact(4) {
        if let (Value::Str(id), Some(link), Some(dist)) =
            (&rec[0], rec[1].as_f64(), rec[2].as_f64())
        {
            out.push((id.clone(), link.max(0.0) as usize, dist));
        }
    }
    out
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
