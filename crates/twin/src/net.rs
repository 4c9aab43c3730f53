//! A SUMO network (`.net.xml`) as the twin needs it: edges and lanes with their
//! shapes, junctions, connections (for upstream walks and movements) and the location
//! that maps network coordinates to the world.

use std::collections::HashMap;
use std::path::Path;

use crate::xml::{each_element, Attrs};
use crate::TwinError;

#[derive(Debug, Clone, Default)]
pub struct Lane {
    pub id: String,
    pub edge: String,
    pub index: u32,
    pub speed: f64,
    pub length: f64,
    pub shape: Vec<(f64, f64)>,
    /// Vehicle classes allowed, as SUMO writes them (empty: all).
    pub allow: String,
    pub disallow: String,
}

impl Lane {
    /// Whether passenger cars may use the lane (detectors and queues count cars).
    pub fn carries_cars(&self) -> bool {
        let listed = |list: &str| {
            list.split_whitespace()
                .any(|c| c == "passenger" || c == "all")
        };
        if !self.allow.is_empty() {
            return listed(&self.allow);
        }
        !listed(&self.disallow)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Edge {
    pub id: String,
    pub from: String,
    pub to: String,
    pub name: Option<String>,
    pub kind: Option<String>,
    pub priority: Option<i32>,
    pub lanes: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Junction {
    pub id: String,
    pub kind: String,
    pub x: f64,
    pub y: f64,
}

#[derive(Debug, Clone)]
pub struct Connection {
    pub from_lane: String,
    pub to_lane: String,
    pub tl: Option<String>,
    pub link_index: Option<usize>,
    pub dir: String,
}

/// How network coordinates map to the world (`<location>`).
#[derive(Debug, Clone, Default)]
pub struct Location {
    pub net_offset: (f64, f64),
    /// A PROJ string, or `!` when the network is not geo-referenced.
    pub proj: String,
    pub conv_boundary: [f64; 4],
}

#[derive(Debug, Clone, Default)]
pub struct Network {
    pub location: Location,
    pub edges: Vec<Edge>,
    pub lanes: HashMap<String, Lane>,
    pub junctions: HashMap<String, Junction>,
    pub connections: Vec<Connection>,
    /// Traffic light ids, as defined by `<tlLogic>`.
    pub traffic_lights: Vec<String>,
}

impl Network {
    pub fn load(path: &Path) -> Result<Network, TwinError> {
        let mut net = Network::default();
        let mut current_edge: Option<usize> = None;
        each_element(path, |name, a, open| {
            match name {
                "location" => net.location = location(a)?,
                "edge" => {
                    current_edge = None;
                    if a.get("function") == Some("internal") {
                        return Ok(());
                    }
                    net.edges.push(Edge {
                        id: a.req("edge", "id")?.to_string(),
                        from: a.get("from").unwrap_or_default().to_string(),
                        to: a.get("to").unwrap_or_default().to_string(),
                        name: a.get("name").map(str::to_string),
                        kind: a.get("type").map(str::to_string),
                        priority: a.get("priority").and_then(|p| p.parse().ok()),
                        lanes: Vec::new(),
                    });
                    current_edge = Some(net.edges.len() - 1);
                }
                "lane" if open.last().map(String::as_str) == Some("edge") => {
                    let Some(e) = current_edge else {
                        return Ok(()); // a lane of an internal edge
                    };
                    let lane = Lane {
                        id: a.req("lane", "id")?.to_string(),
                        edge: net.edges[e].id.clone(),
                        index: a.get("index").and_then(|i| i.parse().ok()).unwrap_or(0),
                        speed: a.f64("speed")?.unwrap_or(13.89),
                        length: a.f64("length")?.unwrap_or(0.0),
                        shape: shape(a.get("shape").unwrap_or_default())?,
                        allow: a.get("allow").unwrap_or_default().to_string(),
                        disallow: a.get("disallow").unwrap_or_default().to_string(),
                    };
                    net.edges[e].lanes.push(lane.id.clone());
                    net.lanes.insert(lane.id.clone(), lane);
                }
                "junction" => {
                    let kind = a.get("type").unwrap_or_default().to_string();
                    if kind == "internal" {
                        return Ok(());
                    }
                    let id = a.req("junction", "id")?.to_string();
                    net.junctions.insert(
                        id.clone(),
                        Junction {
                            id,
                            kind,
                            x: a.f64("x")?.unwrap_or(0.0),
                            y: a.f64("y")?.unwrap_or(0.0),
                        },
                    );
                }
                "connection" => {
                    let from = a.req("connection", "from")?;
                    if from.starts_with(':') {
                        return Ok(()); // internal to a junction
                    }
                    let lane = |edge: &str, idx: &str| format!("{edge}_{idx}");
                    net.connections.push(Connection {
                        from_lane: lane(from, a.req("connection", "fromLane")?),
                        to_lane: lane(a.req("connection", "to")?, a.req("connection", "toLane")?),
                        tl: a.get("tl").map(str::to_string),
                        link_index: a.get("linkIndex").and_then(|i| i.parse().ok()),
                        dir: a.get("dir").unwrap_or_default().to_string(),
                    });
                }
                "tlLogic" => {
                    let id = a.req("tlLogic", "id")?.to_string();
                    if !net.traffic_lights.contains(&id) {
                        net.traffic_lights.push(id);
                    }
                }
                _ => {}
            }
            Ok(())
        })?;
        if net.edges.is_empty() {
            return Err(TwinError::File {
                path: path.to_path_buf(),
                message: "no edges: not a SUMO network".into(),
            });
        }
        Ok(net)
    }

    /// For every lane, the lanes that lead into it through a junction without a
    /// signal (a queue does not reach back through another signal: beyond it, it is
    /// that signal's queue).
    pub fn predecessors(&self) -> HashMap<&str, Vec<&str>> {
        let mut out: HashMap<&str, Vec<&str>> = HashMap::new();
        for c in self.connections.iter().filter(|c| c.tl.is_none()) {
            out.entry(c.to_lane.as_str())
                .or_default()
                .push(c.from_lane.as_str());
        }
        out
    }

    /// Lanes within `reach` metres upstream of `lane`'s end, the lane itself first
    /// (each once): where a queue for that lane's stop line stands. A lane a few
    /// metres long before the stop line (common in real networks) then still sees its
    /// queue.
    pub fn upstream<'a>(
        &'a self,
        preds: &HashMap<&'a str, Vec<&'a str>>,
        lane: &'a str,
        reach: f64,
    ) -> Vec<&'a str> {
        let mut out = vec![lane];
        let mut frontier = vec![(lane, self.lanes.get(lane).map_or(0.0, |l| l.length))];
        while let Some((l, dist)) = frontier.pop() {
            if dist >= reach {
                continue;
            }
            for p in preds.get(l).into_iter().flatten() {
                if out.contains(p) {
                    continue;
                }
                out.push(p);
                let len = self.lanes.get(*p).map_or(0.0, |x| x.length);
                frontier.push((p, dist + len));
            }
        }
        out
    }
}

fn location(a: &Attrs) -> Result<Location, String> {
    let pair = |s: &str| -> Result<(f64, f64), String> {
        let v = numbers(s)?;
        match v.as_slice() {
            [x, y] => Ok((*x, *y)),
            _ => Err(format!("expected two numbers, got {s:?}")),
        }
    };
    let b = numbers(a.get("convBoundary").unwrap_or("0,0,0,0"))?;
    Ok(Location {
        net_offset: pair(a.get("netOffset").unwrap_or("0,0"))?,
        proj: a.get("projParameter").unwrap_or("!").to_string(),
        conv_boundary: [
            b.first().copied().unwrap_or(0.0),
            b.get(1).copied().unwrap_or(0.0),
            b.get(2).copied().unwrap_or(0.0),
            b.get(3).copied().unwrap_or(0.0),
        ],
    })
}

fn numbers(s: &str) -> Result<Vec<f64>, String> {
    s.split(',')
        .map(|p| {
            p.trim()
                .parse::<f64>()
                .map_err(|_| format!("not a number: {p:?}"))
        })
        .collect()
}

/// A SUMO shape: `x,y x,y ...` (a third coordinate, where present, is ignored).
pub fn shape(s: &str) -> Result<Vec<(f64, f64)>, String> {
    s.split_whitespace()
        .map(|p| {
            let v = numbers(p)?;
            match v.as_slice() {
                [x, y] | [x, y, _] => Ok((*x, *y)),
                _ => Err(format!("bad shape point {p:?}")),
            }
        })
        .collect()
}
