//! The dispatcher and preemption, on a running [`Session`].

use std::collections::{HashMap, HashSet};

use super::{
    closed, next_lights, route_of, Arrival, Call, Dispatch, Emergency, UnitState, UnitView,
    AMBULANCE_TYPE, MAX_PREEMPT_HOLD, MAX_SLOWDOWN, PREEMPT_REST, WATCH_PERIOD,
};
use crate::episode::Session;
use crate::traci::{ids, Value};
use crate::TwinError;

impl Session {
    /// Takes a call: dispatches the nearest available unit now, or queues the call
    /// until one is free.
    pub fn call(&mut self, call: Call) -> Result<(), TwinError> {
        let now = self.now;
        let e = self.emergency_mut()?;
        if e.pending.iter().any(|(c, _)| c.id == call.id)
            || e.units
                .iter()
                .any(|u| matches!(&u.state, UnitState::ToScene { call: c, .. } if c.id == call.id))
        {
            return Err(TwinError::Config(format!(
                "emergency: call {:?} is already being handled",
                call.id
            )));
        }
        let Some(edge) = self.net.edges.iter().find(|x| x.id == call.edge) else {
            return Err(TwinError::Config(format!(
                "emergency: call {:?} is on edge {:?}, which the network lacks",
                call.id, call.edge
            )));
        };
        if let Some(pos) = call.pos {
            let length = edge
                .lanes
                .iter()
                .filter_map(|l| self.net.lanes.get(l))
                .map(|l| l.length)
                .fold(0.0, f64::max);
            if !(pos.is_finite() && (0.0..=length).contains(&pos)) {
                return Err(TwinError::Config(format!(
                    "emergency: call {:?} at {pos} m on edge {:?}, which is {length:.1} m long",
                    call.id, call.edge
                )));
            }
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

    /// Calls no available unit could reach (dropped) since the last call of this
    /// function.
    pub fn take_unreachable(&mut self) -> Vec<String> {
        self.emergency
            .as_mut()
            .map(|e| std::mem::take(&mut e.unreachable))
            .unwrap_or_default()
    }

    /// Lights being driven for an ambulance now: (light, the green asked for).
    pub fn preemptions(&self) -> Vec<(String, usize)> {
        let Some(e) = self.emergency.as_ref() else {
            return Vec::new();
        };
        self.intersections
            .iter()
            .enumerate()
            .filter(|(k, _)| e.since[*k].is_some())
            .filter_map(|(k, x)| Some((x.driver.plan.tls.clone(), e.preempt[k]?)))
            .collect()
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

    /// Every ambulance: where it is and what it does. Two round trips (position,
    /// speed) per ambulance on the road; the others stand at their station or at the
    /// scene.
    pub fn fleet(&mut self) -> Result<Vec<UnitView>, TwinError> {
        let Some(e) = self.emergency.as_ref() else {
            return Ok(Vec::new());
        };
        let traci = self.traci.as_mut().ok_or_else(closed)?;
        let mut out = Vec::with_capacity(e.units.len());
        for u in &e.units {
            let station = &e.opts.stations[u.station];
            let (status, call, vehicle, rest) = match &u.state {
                UnitState::Available => ("available", None, None, &station.edge),
                UnitState::ToScene { call, vehicle, .. } => (
                    "dispatched",
                    Some(call.id.clone()),
                    Some(vehicle),
                    &station.edge,
                ),
                UnitState::AtScene { call, edge, .. } => {
                    ("at_scene", Some(call.clone()), None, edge)
                }
                UnitState::Returning { vehicle, from } => ("returning", None, Some(vehicle), from),
            };
            let mut view = UnitView {
                unit: u.id.clone(),
                station: station.id.clone(),
                status,
                call,
                x: 0.0,
                y: 0.0,
                speed: 0.0,
            };
            // On the road: where SUMO has it (not yet inserted: where it starts).
            let on_road = match vehicle {
                Some(v) => match traci.get(ids::GET_VEHICLE, ids::VAR_POSITION, v) {
                    // Not yet inserted: SUMO answers an invalid position (−2³⁰).
                    Ok(crate::traci::Value::Pos2D(x, y)) if x > -1e9 && y > -1e9 => {
                        let speed = traci
                            .get(ids::GET_VEHICLE, ids::VAR_SPEED, v)
                            .ok()
                            .and_then(|s| s.as_f64())
                            .unwrap_or(0.0);
                        Some((x, y, speed))
                    }
                    _ => None,
                },
                None => None,
            };
            let (x, y, speed) = on_road.unwrap_or_else(|| {
                let (x, y) = edge_point(&self.net, rest);
                (x, y, 0.0)
            });
            (view.x, view.y, view.speed) = (x, y, speed.max(0.0));
            out.push(view);
        }
        Ok(out)
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
                        call: call.id,
                        edge: call.edge,
                        until: now + e.opts.scene_time,
                    }
                }
                UnitState::AtScene { edge, until, .. } if now >= until => {
                    back.push((i, edge));
                    UnitState::Available
                }
                UnitState::Returning { vehicle, .. } if arrived.contains(&vehicle) => {
                    UnitState::Available
                }
                other => other,
            };
        }
        for (i, edge) in back {
            self.drive_back(i, &edge)?;
        }
        self.watch_units()?;
        self.dispatch_pending()?;
        self.request_greens()
    }

    /// Units whose vehicle SUMO no longer knows (removed, never to arrive) are
    /// available again; their call, if any, is reported unreachable.
    fn watch_units(&mut self) -> Result<(), TwinError> {
        let now = self.now;
        let Some(e) = self.emergency.as_mut() else {
            return Ok(());
        };
        if now - e.checked_at < WATCH_PERIOD {
            return Ok(());
        }
        e.checked_at = now;
        let traci = self.traci.as_mut().ok_or_else(closed)?;
        for u in &mut e.units {
            let vehicle = match &u.state {
                UnitState::ToScene { vehicle, .. } | UnitState::Returning { vehicle, .. } => {
                    vehicle
                }
                _ => continue,
            };
            match traci.get(ids::GET_VEHICLE, ids::VAR_ROAD_ID, vehicle) {
                Ok(_) => {}
                Err(crate::traci::TraciError::Refused { .. }) => {
                    tracing::warn!(unit = %u.id, %vehicle, "ambulance gone from the simulation");
                    if let UnitState::ToScene { call, .. } = &u.state {
                        e.unreachable.push(call.id.clone());
                    }
                    u.state = UnitState::Available;
                }
                Err(other) => return Err(other.into()),
            }
        }
        Ok(())
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
        if self.add_vehicle(&vehicle, edges, None)? {
            if let Some(e) = self.emergency.as_mut() {
                e.units[unit].state = UnitState::Returning {
                    vehicle,
                    from: from.to_string(),
                };
            }
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
                if let Some(e) = self.emergency.as_mut() {
                    e.unreachable.push(call.id);
                }
                continue;
            };
            let Some(e) = self.emergency.as_mut() else {
                return Ok(());
            };
            let vehicle = e.next_vehicle();
            if !self.add_vehicle(&vehicle, edges, call.pos)? {
                if let Some(e) = self.emergency.as_mut() {
                    e.unreachable.push(call.id);
                }
                continue;
            }
            let Some(e) = self.emergency.as_mut() else {
                return Ok(());
            };
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

    /// Adds an ambulance on `edges`; `false` (logged) when SUMO refuses it.
    fn add_vehicle(
        &mut self,
        vehicle: &str,
        edges: Vec<String>,
        arrival_pos: Option<f64>,
    ) -> Result<bool, TwinError> {
        match self.try_add_vehicle(vehicle, edges, arrival_pos) {
            Ok(()) => Ok(true),
            Err(TwinError::Traci(crate::traci::TraciError::Refused { message, .. })) => {
                tracing::warn!(%vehicle, %message, "SUMO refused the ambulance");
                Ok(false)
            }
            Err(other) => Err(other),
        }
    }

    fn try_add_vehicle(
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
        let mut asker = vec![None; self.intersections.len()];
        let traci = self.traci.as_mut().ok_or_else(closed)?;
        for (unit, vehicle) in on_call {
            // Not yet inserted (or just gone): nothing ahead.
            let ahead = match traci.get(ids::GET_VEHICLE, ids::VAR_NEXT_TLS, &vehicle) {
                Ok(v) => v,
                Err(crate::traci::TraciError::Refused { .. }) => continue,
                Err(other) => return Err(other.into()),
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
                    let plan = &x.driver.plan;
                    let lanes = &self.net.lanes;
                    let approach =
                        plan.approach_of(link, |lane| lanes.get(lane).map(|l| l.edge.as_str()));
                    preempt[k] = plan.green_for_approach(link, &approach, x.driver.current);
                    if preempt[k].is_some() {
                        asker[k] = Some(unit);
                    }
                }
            }
        }
        let now = self.now;
        if let Some(e) = self.emergency.as_mut() {
            for (k, p) in preempt.iter_mut().enumerate() {
                if p.is_none() {
                    e.since[k] = None;
                } else if now < e.rest_until[k] {
                    *p = None;
                } else if e.since[k].is_some_and(|s| now - s > MAX_PREEMPT_HOLD) {
                    tracing::info!(tls = %self.intersections[k].driver.plan.tls, "preemption held too long; the light serves the others a while");
                    *p = None;
                    e.since[k] = None;
                    e.rest_until[k] = now + PREEMPT_REST;
                }
            }
            for (a, p) in asker.iter_mut().zip(&preempt) {
                if p.is_none() {
                    *a = None;
                }
            }
            e.preempt = preempt;
            e.asker = asker;
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

/// The middle of an edge's first lane (network coordinates).
fn edge_point(net: &crate::net::Network, edge: &str) -> (f64, f64) {
    net.edges
        .iter()
        .find(|e| e.id == edge)
        .and_then(|e| e.lanes.first())
        .and_then(|l| net.lanes.get(l))
        .map_or((0.0, 0.0), |l| {
            crate::observe::along(&l.shape, l.length / 2.0)
        })
}
