//! What-if runs: the same scenario and seed without and with changes to the network
//! (closures, slowdowns), every vehicle rerouting in both, and the indicators compared.

use serde::Serialize;

use crate::episode::{run, Options, Report};
use crate::net::Network;
use crate::sumo::Sumo;
use crate::traci::{ids, Traci, Value};
use crate::TwinError;

/// A what-if change to the network, applied through TraCI when the run starts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// No vehicle may enter the edge (a road closure); vehicles reroute around it.
    Close { edge: String },
    /// The edge's speed limit falls to `speed` m/s (an incident, works).
    Slow { edge: String, speed: f64 },
}

/// Applies what-if changes; an edge the network lacks is an error naming it.
pub(crate) fn apply_changes(
    traci: &mut Traci,
    net: &Network,
    changes: &[Change],
) -> Result<(), TwinError> {
    for c in changes {
        let (Change::Close { edge } | Change::Slow { edge, .. }) = c;
        let e = net.edges.iter().find(|e| &e.id == edge).ok_or_else(|| {
            TwinError::Config(format!("what-if: the network has no edge {edge:?}"))
        })?;
        for lane in &e.lanes {
            match c {
                Change::Close { .. } => traci.set(
                    ids::SET_LANE,
                    LANE_DISALLOWED,
                    lane,
                    Value::StrList(vec!["all".into()]),
                )?,
                Change::Slow { speed, .. } => traci.set(
                    ids::SET_LANE,
                    ids::VAR_MAXSPEED,
                    lane,
                    Value::Double(speed.max(0.1)),
                )?,
            }
        }
    }
    Ok(())
}

const LANE_DISALLOWED: u8 = 0x35;

/// Runs `opts` without and with `changes`, same seed: the what-if and its base.
pub fn what_if(sumo: &Sumo, opts: &Options, changes: Vec<Change>) -> Result<WhatIf, TwinError> {
    if changes.is_empty() {
        return Err(TwinError::Config(
            "what-if: no change given (--close or --slow)".into(),
        ));
    }
    // The base run reroutes like the scenario does, so only the change differs.
    let mut base_opts = opts.clone();
    base_opts.changes = Vec::new();
    base_opts.work_dir = opts.work_dir.join("base");
    let mut scenario = opts.clone();
    scenario.changes = changes.clone();
    scenario.work_dir = opts.work_dir.join("scenario");
    let base = run_rerouting(sumo, &base_opts)?;
    let with = run_rerouting(sumo, &scenario)?;
    let pct = |a: f64, b: f64| if a != 0.0 { (b - a) / a * 100.0 } else { 0.0 };
    Ok(WhatIf {
        change_pct: WhatIfChange {
            mean_delay_all_s: pct(base.trips.mean_delay_all_s, with.trips.mean_delay_all_s),
            mean_travel_time_s: pct(base.trips.mean_travel_time_s, with.trips.mean_travel_time_s),
            throughput: pct(base.trips.throughput as f64, with.trips.throughput as f64),
            mean_queue: pct(base.mean_queue, with.mean_queue),
        },
        changes,
        base,
        scenario: with,
    })
}

/// [`run`] with every vehicle rerouting (as a what-if needs in both of its runs).
fn run_rerouting(sumo: &Sumo, opts: &Options) -> Result<Report, TwinError> {
    let mut o = opts.clone();
    o.reroute = true;
    run(sumo, &o)
}

#[derive(Debug, Clone, Serialize)]
pub struct WhatIfChange {
    pub mean_delay_all_s: f64,
    pub mean_travel_time_s: f64,
    pub throughput: f64,
    pub mean_queue: f64,
}

/// A what-if: both runs' indicators and the relative change (%).
#[derive(Debug, Clone, Serialize)]
pub struct WhatIf {
    pub changes: Vec<Change>,
    pub base: Report,
    pub scenario: Report,
    pub change_pct: WhatIfChange,
}
