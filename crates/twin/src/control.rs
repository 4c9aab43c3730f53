//! Signal controllers. Each one only ever names one of a program's own greens; the
//! [`Driver`] makes the switch safe (yellow, all-red, minimum green).
//!
//! - `fixed`: the network's own programs, untouched (the baseline);
//! - `actuated`: gap-based extension on detectors near the stop line, up to a maximum
//!   green, then the next green with demand;
//! - `max-pressure`: the green whose movements have the largest queue upstream minus
//!   downstream (Varaiya 2013), with queues counted as stopped vehicles over
//!   `reach` metres upstream, so a stop line with a few metres of lane before it still
//!   sees its queue;
//! - `webster`: fixed-time plans re-optimised every `replan` seconds from the flows the
//!   detectors counted (Webster 1958: C = (1.5 L + 5) / (1 − Y), greens by flow ratio).

use serde::Serialize;

use crate::signal::Driver;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ControllerKind {
    Fixed,
    Actuated,
    MaxPressure,
    Webster,
    /// The programs' own greens and durations in one common cycle, with offsets that
    /// make green waves along the network's arterials (`wave.rs`).
    GreenWave,
}

impl std::str::FromStr for ControllerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "fixed" => ControllerKind::Fixed,
            "actuated" => ControllerKind::Actuated,
            "max-pressure" | "maxpressure" => ControllerKind::MaxPressure,
            "webster" => ControllerKind::Webster,
            "green-wave" => ControllerKind::GreenWave,
            other => {
                return Err(format!(
                    "unknown controller {other:?}: fixed, actuated, max-pressure, webster or green-wave"
                ))
            }
        })
    }
}

impl std::fmt::Display for ControllerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ControllerKind::Fixed => "fixed",
            ControllerKind::Actuated => "actuated",
            ControllerKind::MaxPressure => "max-pressure",
            ControllerKind::Webster => "webster",
            ControllerKind::GreenWave => "green-wave",
        })
    }
}

/// Tuning shared by the controllers (defaults chosen on the grid's tuning seeds and
/// written down in docs/twin.md).
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Shortest green (s).
    pub min_green: f64,
    /// Longest green an actuated phase extends to (s).
    pub max_green: f64,
    /// Actuated: the gap (s since the last detection) that ends a green.
    pub gap: f64,
    /// Max-pressure: how far upstream queues are counted (m).
    pub reach: f64,
    /// Max-pressure: the weight of a moving vehicle against a stopped one (1: every
    /// vehicle on the approach counts, as in Varaiya's formulation; 0: queues only).
    pub moving_weight: f64,
    /// Max-pressure: the longest a green with stopped vehicles waits unserved (s).
    pub max_wait: f64,
    /// Webster: how often plans are recomputed (s), and the saturation flow (veh/s/lane).
    pub replan: f64,
    pub saturation: f64,
    /// Webster: the longest cycle (s). Short blocks cannot store a long red's queue.
    pub max_cycle: f64,
    /// Green wave: edges of the arterial to coordinate first (entering its signals).
    pub arterial: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            min_green: 10.0,
            max_green: 60.0,
            gap: 3.0,
            reach: 150.0,
            moving_weight: 1.0,
            max_wait: 300.0,
            replan: 600.0,
            saturation: 0.5,
            max_cycle: 90.0,
            arterial: Vec::new(),
        }
    }
}

impl Settings {
    /// Every duration and weight finite and in range: a NaN would never compare true
    /// and a negative green would switch every step.
    pub fn validate(&self) -> Result<(), String> {
        let check = |name: &str, v: f64, lo: f64, hi: f64| {
            if v.is_finite() && v >= lo && v <= hi {
                Ok(())
            } else {
                Err(format!("{name} must be between {lo} and {hi}, got {v}"))
            }
        };
        check("min_green", self.min_green, 1.0, 300.0)?;
        check("max_green", self.max_green, self.min_green, 600.0)?;
        check("gap", self.gap, 0.5, 60.0)?;
        check("reach", self.reach, 0.0, 5000.0)?;
        check("moving_weight", self.moving_weight, 0.0, 1.0)?;
        check("max_wait", self.max_wait, 1.0, 1e9)?;
        check("replan", self.replan, 60.0, 86_400.0)?;
        check("saturation", self.saturation, 0.05, 2.0)?;
        check("max_cycle", self.max_cycle, 20.0, 600.0)
    }
}

/// One incoming lane of an intersection, with what controllers need to judge it.
#[derive(Debug, Clone)]
pub struct Approach {
    /// Index of the lane in the observation.
    pub lane: usize,
    /// Lanes whose stopped vehicles count as this lane's queue (itself first), each
    /// with its share: a lane upstream that feeds several approach lanes of the same
    /// intersection (the lane before a turn pocket) is split between them.
    pub upstream: Vec<(usize, f64)>,
    /// Per green: 1 protected, 0.5 permissive, 0 red.
    pub weight: Vec<f64>,
    /// Per green: the outgoing lanes this lane feeds then.
    pub exits: Vec<Vec<usize>>,
    /// The detector near its stop line, if any.
    pub detector: Option<usize>,
}

/// A signalised intersection under control.
#[derive(Debug, Clone)]
pub struct Intersection {
    pub driver: Driver,
    pub approaches: Vec<Approach>,
}

/// What the simulator reported at the last step.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    /// Stopped vehicles per lane.
    pub halting: Vec<f64>,
    /// Vehicles per lane.
    pub vehicles: Vec<f64>,
    /// Seconds since a detector last saw a vehicle.
    pub since_detection: Vec<f64>,
    /// Vehicles each detector has counted since the start.
    pub counted: Vec<f64>,
}

/// A controller: for each intersection, the green it wants now (or none).
pub trait Controller: Send {
    fn decide(&mut self, now: f64, at: &[Intersection], obs: &Observation) -> Vec<Option<usize>>;
}

pub fn make(
    kind: ControllerKind,
    settings: &Settings,
    at: &[Intersection],
) -> Option<Box<dyn Controller>> {
    match kind {
        ControllerKind::Fixed => None,
        ControllerKind::Actuated => Some(Box::new(Actuated(settings.clone()))),
        ControllerKind::MaxPressure => Some(Box::new(MaxPressure {
            moving: settings.moving_weight,
            max_wait: settings.max_wait,
            served: Vec::new(),
        })),
        ControllerKind::Webster => Some(Box::new(Webster::new(settings.clone(), at))),
        // Needs the network: built by the episode (`wave::GreenWave::new`).
        ControllerKind::GreenWave => None,
    }
}

/// Stopped vehicles over the approach.
fn queue(a: &Approach, obs: &Observation) -> f64 {
    load(a, obs, 0.0)
}

/// Stopped vehicles plus `moving` of each moving one, over the approach.
fn load(a: &Approach, obs: &Observation, moving: f64) -> f64 {
    a.upstream
        .iter()
        .map(|(l, share)| {
            (obs.halting[*l] + moving * (obs.vehicles[*l] - obs.halting[*l]).max(0.0)) * share
        })
        .sum()
}

/// Pressure of each green: vehicles upstream (moving ones weighted by `moving`) minus
/// stopped vehicles downstream, over its movements.
pub fn pressures(x: &Intersection, obs: &Observation, moving: f64) -> Vec<f64> {
    let n = x.driver.plan.greens.len();
    (0..n)
        .map(|p| {
            x.approaches
                .iter()
                .filter(|a| a.weight[p] > 0.0)
                .map(|a| {
                    let down = &a.exits[p];
                    let out = if down.is_empty() {
                        0.0
                    } else {
                        down.iter().map(|l| obs.halting[*l]).sum::<f64>() / down.len() as f64
                    };
                    a.weight[p] * (load(a, obs, moving) - out)
                })
                .sum()
        })
        .collect()
}

pub struct MaxPressure {
    moving: f64,
    max_wait: f64,
    /// Per intersection, per green: when it was last shown.
    served: Vec<Vec<f64>>,
}

impl MaxPressure {
    /// The green that has waited longest past `max_wait` with vehicles stopped on its
    /// protected approaches, if any: max-pressure alone may starve a movement whose
    /// exit is always queued (its pressure stays negative), and the entry behind it
    /// then stays blocked for the rest of the run.
    fn overdue(&self, i: usize, x: &Intersection, now: f64, obs: &Observation) -> Option<usize> {
        let served = &self.served[i];
        (0..served.len())
            .filter(|p| *p != x.driver.current && now - served[*p] > self.max_wait)
            .filter(|p| {
                x.approaches
                    .iter()
                    .any(|a| a.weight[*p] >= 0.5 && queue(a, obs) >= 1.0)
            })
            .min_by(|a, b| served[*a].total_cmp(&served[*b]))
    }
}

impl Controller for MaxPressure {
    fn decide(&mut self, now: f64, at: &[Intersection], obs: &Observation) -> Vec<Option<usize>> {
        if self.served.len() != at.len() {
            self.served = at
                .iter()
                .map(|x| vec![now; x.driver.plan.greens.len()])
                .collect();
        }
        at.iter()
            .enumerate()
            .map(|(i, x)| {
                if x.driver.in_green() {
                    self.served[i][x.driver.current] = now;
                }
                if !x.driver.may_switch(now) {
                    return None;
                }
                if let Some(p) = self.overdue(i, x, now, obs) {
                    return Some(p);
                }
                let p = pressures(x, obs, self.moving);
                let cur = x.driver.current;
                let best = argmax(&p)?;
                (best != cur && p[best] > p[cur]).then_some(best)
            })
            .collect()
    }
}

fn argmax(v: &[f64]) -> Option<usize> {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
}

pub struct Actuated(Settings);

impl Actuated {
    fn demand(x: &Intersection, p: usize, obs: &Observation, gap: f64) -> f64 {
        x.approaches
            .iter()
            .filter(|a| a.weight[p] > 0.0)
            .map(|a| {
                let arriving = a.detector.is_some_and(|d| obs.since_detection[d] < gap);
                a.weight[p] * (queue(a, obs) + if arriving { 1.0 } else { 0.0 })
            })
            .sum()
    }
}

impl Controller for Actuated {
    fn decide(&mut self, now: f64, at: &[Intersection], obs: &Observation) -> Vec<Option<usize>> {
        let s = &self.0;
        at.iter()
            .map(|x| {
                if !x.driver.may_switch(now) {
                    return None;
                }
                let cur = x.driver.current;
                let n = x.driver.plan.greens.len();
                // Extend while vehicles keep arriving on the green's own detectors
                // (protected movements), up to the maximum green.
                let arriving = x.approaches.iter().any(|a| {
                    a.weight[cur] >= 0.5
                        && a.detector.is_some_and(|d| obs.since_detection[d] < s.gap)
                });
                if arriving && x.driver.green_time(now) < s.max_green {
                    return None;
                }
                // Gap out (or max out): the next green in program order with demand.
                (1..n)
                    .map(|k| (cur + k) % n)
                    .find(|p| Self::demand(x, *p, obs, s.gap) > 0.0)
            })
            .collect()
    }
}

/// Webster fixed-time plans, recomputed from counted flows.
///
/// Demand per lane is what its detector counted plus how much its queue grew over the
/// window: counted flow alone is served flow, and a starved approach would report less
/// and get even less green. All intersections share one cycle (the longest Webster
/// cycle among them), as coordinated fixed-time networks do, so that neighbouring
/// signals keep their relation from cycle to cycle.
pub struct Webster {
    s: Settings,
    /// Per intersection, per green: planned duration (s).
    plans: Vec<Vec<f64>>,
    last_plan: f64,
    counted_at_plan: Vec<f64>,
    /// Per intersection, per approach: its queue at the last plan.
    queues_at_plan: Vec<Vec<f64>>,
    /// Per intersection, per approach: the smoothed demand estimate (veh/s).
    demand: Vec<Vec<Option<f64>>>,
}

/// Weight of the newest window in the demand estimate (exponential smoothing): plans
/// follow the peak without swinging from one window's starved phase to the next.
const SMOOTHING: f64 = 0.5;

/// One intersection's critical flow ratios and lost time.
#[derive(Debug, Clone, PartialEq)]
pub struct Ratios {
    pub per_green: Vec<f64>,
    pub lost: f64,
}

impl Ratios {
    pub fn total(&self) -> f64 {
        self.per_green.iter().sum()
    }
    /// Webster's optimal cycle: (1.5 L + 5) / (1 − Y), the longest one at saturation.
    pub fn cycle(&self, min_green: f64, max_cycle: f64) -> f64 {
        let y = self.total();
        let floor = self.lost + self.per_green.len() as f64 * min_green;
        let ceiling = max_cycle.max(floor);
        if y >= 0.95 {
            return ceiling;
        }
        ((1.5 * self.lost + 5.0) / (1.0 - y)).clamp(floor, ceiling)
    }
    /// Greens for a given cycle, in proportion to the flow ratios.
    pub fn greens(&self, cycle: f64, min_green: f64) -> Vec<f64> {
        let y = self.total();
        let n = self.per_green.len() as f64;
        let effective = (cycle - self.lost).max(n * min_green);
        self.per_green
            .iter()
            .map(|r| {
                if y > 0.0 {
                    (effective * r / y).max(min_green)
                } else {
                    effective / n
                }
            })
            .collect()
    }
}

impl Webster {
    fn new(s: Settings, at: &[Intersection]) -> Webster {
        Webster {
            plans: at
                .iter()
                .map(|x| {
                    x.driver
                        .plan
                        .green_durations
                        .iter()
                        .map(|d| d.max(s.min_green))
                        .collect()
                })
                .collect(),
            s,
            last_plan: 0.0,
            counted_at_plan: Vec::new(),
            queues_at_plan: Vec::new(),
            demand: at.iter().map(|x| vec![None; x.approaches.len()]).collect(),
        }
    }

    /// Critical flow ratios of one intersection from per-lane demands (veh/s).
    pub fn ratios(
        x: &Intersection,
        demand: impl Fn(usize, &Approach) -> Option<f64>,
        s: &Settings,
    ) -> Ratios {
        let n = x.driver.plan.greens.len();
        let plan = &x.driver.plan;
        let mut per_green = vec![0.0f64; n];
        for (p, r) in per_green.iter_mut().enumerate() {
            for (k, a) in x.approaches.iter().enumerate() {
                if let Some(q) = demand(k, a) {
                    *r = r.max(a.weight[p] * q / s.saturation);
                }
            }
        }
        // Lost time: each green's transition to the next plus 2 s of start-up.
        let lost = (0..n)
            .map(|p| {
                plan.transition(p, (p + 1) % n)
                    .iter()
                    .map(|(_, d)| d)
                    .sum::<f64>()
                    + 2.0
            })
            .sum();
        Ratios { per_green, lost }
    }

    fn queues(at: &[Intersection], obs: &Observation) -> Vec<Vec<f64>> {
        at.iter()
            .map(|x| x.approaches.iter().map(|a| queue(a, obs)).collect())
            .collect()
    }
}

impl Controller for Webster {
    fn decide(&mut self, now: f64, at: &[Intersection], obs: &Observation) -> Vec<Option<usize>> {
        if self.counted_at_plan.is_empty() {
            self.counted_at_plan = obs.counted.clone();
            self.queues_at_plan = Self::queues(at, obs);
            self.last_plan = now;
        }
        if now - self.last_plan >= self.s.replan {
            let window = now - self.last_plan;
            for (i, x) in at.iter().enumerate() {
                for (k, a) in x.approaches.iter().enumerate() {
                    let Some(d) = a.detector else { continue };
                    // Arrivals = departures + what the queue grew by.
                    let served = (obs.counted[d] - self.counted_at_plan[d]).max(0.0);
                    let grew = queue(a, obs) - self.queues_at_plan[i][k];
                    let now_q = ((served + grew) / window).max(0.0);
                    let est = &mut self.demand[i][k];
                    *est = Some(match *est {
                        Some(old) => SMOOTHING * now_q + (1.0 - SMOOTHING) * old,
                        None => now_q,
                    });
                }
            }
            let ratios: Vec<Ratios> = at
                .iter()
                .zip(&self.demand)
                .map(|(x, demand)| Self::ratios(x, |k, _| demand[k], &self.s))
                .collect();
            let cycle = ratios
                .iter()
                .filter(|r| r.total() > 0.0)
                .map(|r| r.cycle(self.s.min_green, self.s.max_cycle))
                .fold(0.0, f64::max);
            if cycle > 0.0 {
                for (plan, r) in self.plans.iter_mut().zip(&ratios) {
                    if r.total() > 0.0 {
                        *plan = r.greens(cycle, self.s.min_green);
                    }
                }
                tracing::debug!(cycle, "Webster plans recomputed");
            }
            self.counted_at_plan = obs.counted.clone();
            self.queues_at_plan = Self::queues(at, obs);
            self.last_plan = now;
        }
        at.iter()
            .zip(&self.plans)
            .map(|(x, plan)| {
                let cur = x.driver.current;
                if !x.driver.in_green() || x.driver.green_time(now) < plan[cur] {
                    return None;
                }
                Some((cur + 1) % plan.len())
            })
            .collect()
    }
}
