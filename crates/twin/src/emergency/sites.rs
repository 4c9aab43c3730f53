//! Where stations and calls go: edges in the network's strongly connected core.

use std::collections::HashMap;

use rand_core::SeedableRng;

use super::{Call, Station};
use crate::net::Network;
use crate::scenario::uniform;

/// Stations spread over the network: `n` edges among those cars can use inside the
/// network (not at its border), by farthest-point sampling from the edge nearest
/// the centre, then k-medoids (each station the edge nearest its area's centre).
pub fn spread_stations(net: &Network, n: usize) -> Vec<Station> {
    let candidates = service_edges(net);
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
    let mut nearest: Vec<f64> = candidates
        .iter()
        .map(|c| d2(c.1, candidates[first].1))
        .collect();
    while chosen.len() < n.min(candidates.len()) {
        let Some((next, _)) = nearest.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)) else {
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
                    .min_by(|a, b| {
                        d2(candidates[*a].1, centre).total_cmp(&d2(candidates[*b].1, centre))
                    })
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
    let candidates = service_edges(net);
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
pub fn service_edges(net: &Network) -> Vec<(String, (f64, f64))> {
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
            Some((
                e.id.clone(),
                crate::observe::along(&lane.shape, lane.length / 2.0),
            ))
        })
        .collect()
}

/// Points along the service edges, every `step` metres of their first car lane (ends
/// included): where an incident's place is matched to the nearest road, so that a
/// long edge is judged by its whole length, not its midpoint.
pub fn service_points(net: &Network, step: f64) -> Vec<(String, (f64, f64))> {
    let step = step.max(1.0);
    let mut out = Vec::new();
    for (edge, _) in service_edges(net) {
        let Some(lane) = net.edges.iter().find(|e| e.id == edge).and_then(|e| {
            e.lanes
                .iter()
                .filter_map(|l| net.lanes.get(l))
                .find(|l| l.carries_cars())
        }) else {
            continue;
        };
        let n = (lane.length / step).ceil().max(1.0) as usize;
        for k in 0..=n {
            let at = lane.length * k as f64 / n as f64;
            out.push((edge.clone(), crate::observe::along(&lane.shape, at)));
        }
    }
    out
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
    // Only movements cars may make (a bicycle or bus-only link is no way for an
    // ambulance).
    let cars = |lane: &str| net.lanes.get(lane).is_some_and(|l| l.carries_cars());
    for c in &net.connections {
        if !(cars(&c.from_lane) && cars(&c.to_lane)) {
            continue;
        }
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
    fn service_points_cover_each_edge_every_step() {
        let mut net = Network::default();
        for j in ["1", "2"] {
            net.junctions.insert(
                j.into(),
                crate::net::Junction {
                    id: j.into(),
                    kind: "priority".into(),
                    x: 0.0,
                    y: 0.0,
                },
            );
        }
        for (id, from, to, shape) in [
            ("a", "1", "2", vec![(0.0, 0.0), (100.0, 0.0)]),
            ("b", "2", "1", vec![(100.0, 0.0), (0.0, 0.0)]),
        ] {
            let e = edge(id, from, to);
            net.lanes.insert(
                e.lanes[0].clone(),
                crate::net::Lane {
                    id: e.lanes[0].clone(),
                    edge: id.into(),
                    length: 100.0,
                    shape,
                    ..Default::default()
                },
            );
            net.edges.push(e);
        }
        for (a, b) in [("a", "b"), ("b", "a")] {
            net.connections.push(crate::net::Connection {
                from_lane: format!("{a}_0"),
                to_lane: format!("{b}_0"),
                tl: None,
                link_index: None,
                dir: "t".into(),
            });
        }
        let points = service_points(&net, 20.0);
        let on_a: Vec<(f64, f64)> = points
            .iter()
            .filter(|(e, _)| e == "a")
            .map(|(_, p)| *p)
            .collect();
        assert_eq!(on_a.len(), 6, "{on_a:?}");
        assert_eq!(on_a[0], (0.0, 0.0));
        assert_eq!(on_a[5], (100.0, 0.0));
        assert_eq!(points.len(), 12);
    }

    #[test]
    fn the_core_is_the_largest_part_where_every_edge_reaches_every_other() {
        // A loop a→b→c→a, an entry e→a and an exit c→x.
        let mut net = Network::default();
        for (id, from, to) in [
            ("a", "1", "2"),
            ("b", "2", "3"),
            ("c", "3", "1"),
            ("e", "0", "1"),
            ("x", "3", "9"),
        ] {
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
        assert_eq!(
            strongly_connected_core(&net),
            vec![true, true, true, false, false]
        );
    }
}
