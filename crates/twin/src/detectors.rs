//! Induction-loop detectors: those a configuration defines, and one added near the
//! stop line of every signalised approach lane that has none.

use std::path::Path;

use crate::net::Network;
use crate::sumo::SumoConfig;
use crate::xml::{each_element, escape};
use crate::TwinError;

/// A detector the session reads: its id and lane.
#[derive(Debug, Clone)]
pub struct Detector {
    pub id: String,
    pub lane: String,
    /// Position along the lane (m; SUMO counts a negative one from the lane's end).
    pub pos: f64,
}

/// The file of detectors the twin adds where a configuration has none.
pub const DETECTOR_FILE: &str = "citybrain.det.xml";

/// Detectors near the stop line of every lane entering a traffic light: those the
/// configuration defines (E1 induction loops) are used as they are; lanes without one
/// get one, written to `work_dir/citybrain.det.xml`, two seconds of free-flow driving
/// before the stop line (as SUMO's own actuated signals place theirs).
pub fn detectors(
    net: &Network,
    cfg: &SumoConfig,
    work_dir: &Path,
) -> Result<Vec<Detector>, TwinError> {
    let mut out = Vec::new();
    for file in &cfg.additional {
        each_element(file, |name, a, _| {
            if name == "inductionLoop" || name == "e1Detector" {
                if let (Some(id), Some(lane)) = (a.get("id"), a.get("lane")) {
                    out.push(Detector {
                        id: id.to_string(),
                        lane: lane.to_string(),
                        pos: a.f64("pos")?.unwrap_or(0.0),
                    });
                }
            }
            Ok(())
        })?;
    }
    let xml = detector_file(net, &mut out);
    std::fs::write(work_dir.join(DETECTOR_FILE), xml)?;
    Ok(out)
}

/// Adds a detector for every signalised approach lane that has none; returns the XML.
pub fn detector_file(net: &Network, have: &mut Vec<Detector>) -> String {
    let mut lanes: Vec<&str> = net
        .connections
        .iter()
        .filter(|c| c.tl.is_some())
        .map(|c| c.from_lane.as_str())
        .collect();
    lanes.sort_unstable();
    lanes.dedup();
    let mut xml = String::from("<additional>\n");
    for lane in lanes {
        if have.iter().any(|d| d.lane == lane) {
            continue;
        }
        let Some(l) = net.lanes.get(lane) else {
            continue;
        };
        if !l.carries_cars() || l.length <= 0.0 {
            continue;
        }
        let back = (l.speed * 2.0).min(l.length * 0.9);
        let pos = l.length - back;
        let id = format!("cb_{lane}");
        xml.push_str(&format!(
            "  <inductionLoop id=\"{}\" lane=\"{}\" pos=\"{pos:.2}\" period=\"86400\" file=\"NUL\"/>\n",
            escape(&id),
            escape(lane)
        ));
        have.push(Detector {
            id,
            lane: lane.to_string(),
            pos,
        });
    }
    xml.push_str("</additional>\n");
    xml
}
