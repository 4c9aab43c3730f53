//! Green waves: coordinated fixed-time plans whose offsets let a platoon travelling
//! along an arterial at the speed limit meet green at every signal.
//!
//! Arterials are found in the network itself: chains of signals linked by straight
//! movements (`dir="s"` connections, through unsignalised nodes such as the start of a
//! turn pocket), the longest first, each signal in one chain. Along a chain, signal
//! `i`'s cycle starts (with the green that serves the arterial's through movement)
//! when a vehicle that left the first signal at the start of its green arrives:
//! the offset is the travel time at the lanes' speed limits. All coordinated signals
//! share one cycle: the longest program cycle among them, the extra time going to the
//! arterial green.

use std::collections::{HashMap, HashSet};

use crate::control::{Controller, Intersection, Observation};
use crate::net::Network;

/// A signal entered from an edge: a node of the arterial graph.
type Node<'a> = (usize, &'a str);

/// One cycle of one signal: (green, start within the cycle, end).
type Schedule = Vec<(usize, f64, f64)>;

/// A signal's place in a green wave.
#[derive(Debug, Clone, PartialEq)]
pub struct Coordination {
    /// Seconds after the wave's reference when this signal's arterial green starts.
    pub offset: f64,
    /// The green (index into the plan's greens) serving the arterial.
    pub green: usize,
}

/// Per intersection (in `at` order), its coordination, or `None` off every arterial.
/// A chain that enters a signal from one of the `preferred` edges is coordinated
/// first (the arterial an operator names); the rest, longest first.
pub fn coordinate(
    net: &Network,
    at: &[Intersection],
    preferred: &[String],
) -> Vec<Option<Coordination>> {
    let by_tls: HashMap<&str, usize> = at
        .iter()
        .enumerate()
        .map(|(i, x)| (x.driver.plan.tls.as_str(), i))
        .collect();
    let edge_of = |lane: &str| net.lanes.get(lane).map(|l| l.edge.as_str());
    let edge_len = |edge: &str| {
        net.edges
            .iter()
            .find(|e| e.id == edge)
            .and_then(|e| e.lanes.first())
            .and_then(|l| net.lanes.get(l))
            .map_or((0.0, 13.89), |l| (l.length, l.speed.max(1.0)))
    };
    // Straight continuation of each edge: (next edge, the signal crossed if any).
    let mut straight: HashMap<&str, (&str, Option<&str>)> = HashMap::new();
    for c in net.connections.iter().filter(|c| c.dir == "s") {
        if let (Some(a), Some(b)) = (edge_of(&c.from_lane), edge_of(&c.to_lane)) {
            straight.entry(a).or_insert((b, c.tl.as_deref()));
        }
    }
    // Node: (intersection, incoming edge). Successor along the straight path, with
    // the travel time between the two stop lines.
    let mut next: HashMap<Node, (Node, f64)> = HashMap::new();
    for (&a, &(b, tl)) in &straight {
        let Some(&i) = tl.and_then(|t| by_tls.get(t)) else {
            continue;
        };
        let (mut edge, mut time) = (b, 0.0);
        for _ in 0..8 {
            let (len, speed) = edge_len(edge);
            time += len / speed;
            match straight.get(edge) {
                Some(&(_, Some(t2))) => {
                    if let Some(&j) = by_tls.get(t2) {
                        if j != i {
                            next.insert((i, a), ((j, edge), time));
                        }
                    }
                    break;
                }
                Some(&(n, None)) => edge = n,
                None => break,
            }
        }
    }
    let has_pred: HashSet<Node> = next.values().map(|(n, _)| *n).collect();
    // Chains from every node without a predecessor, longest first.
    let mut chains: Vec<Vec<(Node, f64)>> = next
        .keys()
        .filter(|k| !has_pred.contains(*k))
        .map(|start| {
            let mut chain = vec![(*start, 0.0)];
            let mut cur = *start;
            let mut t = 0.0;
            let mut seen = HashSet::from([cur.0]);
            while let Some(&(n, dt)) = next.get(&cur) {
                if !seen.insert(n.0) {
                    break;
                }
                t += dt;
                chain.push((n, t));
                cur = n;
            }
            chain
        })
        .collect();
    let named = |c: &Vec<(Node, f64)>| c.iter().any(|((_, e), _)| preferred.iter().any(|p| p == e));
    chains.sort_by(|a, b| {
        named(b)
            .cmp(&named(a))
            .then_with(|| b.len().cmp(&a.len()))
            .then_with(|| a[0].0 .1.cmp(b[0].0 .1))
    });
    let mut out: Vec<Option<Coordination>> = vec![None; at.len()];
    for chain in chains.iter().filter(|c| c.len() >= 2) {
        if chain.iter().any(|((i, _), _)| out[*i].is_some()) {
            continue;
        }
        for ((i, edge), offset) in chain {
            let plan = &at[*i].driver.plan;
            // The green with the most protected links from the arterial's lanes.
            let green = (0..plan.greens.len()).max_by_key(|g| {
                plan.greens[*g]
                    .bytes()
                    .enumerate()
                    .filter(|(l, c)| {
                        *c == b'G'
                            && plan.links[*l]
                                .iter()
                                .any(|(inc, _)| edge_of(inc) == Some(*edge))
                    })
                    .count()
            });
            if let Some(green) = green {
                out[*i] = Some(Coordination {
                    offset: *offset,
                    green,
                });
            }
        }
    }
    out
}

/// A signal's own cycle: its program's greens and the transitions between them in order.
fn own_cycle(x: &Intersection) -> f64 {
    let plan = &x.driver.plan;
    let n = plan.greens.len();
    (0..n)
        .map(|k| {
            plan.green_durations[k]
                + plan
                    .transition(k, (k + 1) % n)
                    .iter()
                    .map(|(_, d)| d)
                    .sum::<f64>()
        })
        .sum()
}

/// One cycle's schedule of one signal, starting with green `first`.
fn schedule(x: &Intersection, first: usize, cycle: f64) -> Schedule {
    let plan = &x.driver.plan;
    let n = plan.greens.len();
    let own = own_cycle(x);
    let extra = (cycle - own).max(0.0);
    let mut t = 0.0;
    let mut out = Vec::with_capacity(n);
    for j in 0..n {
        let k = (first + j) % n;
        let green = plan.green_durations[k] + if j == 0 { extra } else { 0.0 };
        out.push((k, t, t + green));
        t += green
            + plan
                .transition(k, (k + 1) % n)
                .iter()
                .map(|(_, d)| d)
                .sum::<f64>();
    }
    out
}

/// Runs every signal on its program's greens and durations, coordinated signals with
/// their wave offsets in one common cycle.
pub struct GreenWave {
    /// Per intersection: offset, cycle, schedule.
    plans: Vec<(f64, f64, Schedule)>,
    /// The common cycle of the coordinated signals.
    pub cycle: f64,
}

impl GreenWave {
    pub fn new(at: &[Intersection], coordination: &[Option<Coordination>]) -> GreenWave {
        let cycle_of = own_cycle;
        let cycle = at.iter().map(cycle_of).fold(0.0, f64::max).max(1.0);
        let plans = at
            .iter()
            .zip(coordination)
            .map(|(x, c)| match c {
                Some(c) => (c.offset, cycle, schedule(x, c.green, cycle)),
                None => {
                    let own = cycle_of(x).max(1.0);
                    (0.0, own, schedule(x, 0, own))
                }
            })
            .collect();
        GreenWave { plans, cycle }
    }
}

impl Controller for GreenWave {
    fn decide(&mut self, now: f64, at: &[Intersection], _obs: &Observation) -> Vec<Option<usize>> {
        at.iter()
            .zip(&self.plans)
            .map(|(x, (offset, cycle, sched))| {
                let pos = (now - offset).rem_euclid(*cycle);
                // The green whose window holds `pos`; in a transition window, the next.
                let due = sched
                    .iter()
                    .find(|(_, start, end)| pos >= *start && pos < *end)
                    .or_else(|| sched.iter().find(|(_, start, _)| *start > pos))
                    .or(sched.first())
                    .map(|(k, _, _)| *k)?;
                (due != x.driver.current).then_some(due)
            })
            .collect()
    }
}
