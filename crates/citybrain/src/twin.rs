//! `citybrain twin`: the traffic digital twin from the command line.
//!
//! - `twin grid --out DIR`: writes the demo's signalised grid scenario;
//! - `twin run --sumocfg FILE --controller NAME`: plays a whole episode headless and
//!   prints its indicators as one JSON object on the last line;
//! - `twin what-if`: a run without and with closures or slowdowns, compared;
//! - `twin emergency`: ambulance response times without and with preemption.

use std::path::PathBuf;

use anyhow::Context;
use citybrain_twin::control::{ControllerKind, Settings};
use citybrain_twin::emergency::{EmergencyOptions, Station};
use citybrain_twin::episode::{self, Change, Options};
use citybrain_twin::response::{self, Evaluation};
use citybrain_twin::scenario::{self, Grid};
use citybrain_twin::sumo::Sumo;
use clap::{Args, Subcommand};

#[derive(Args)]
pub struct TwinArgs {
    #[command(subcommand)]
    command: TwinCommand,
}

#[derive(Subcommand)]
enum TwinCommand {
    /// Run one episode headless and print its indicators (JSON, last line).
    Run(RunArgs),
    /// Write the demo grid scenario (network, morning-peak demand, detectors, .sumocfg).
    Grid(GridArgs),
    /// Run a scenario without and with road closures or slowdowns (same seed, every
    /// vehicle rerouting) and compare their indicators (JSON, last line).
    WhatIf(WhatIfArgs),
    /// Ambulance response times without and with signal preemption: the same seeded
    /// calls over several seeds, and the effect on other traffic (JSON, last line).
    Emergency(EmergencyArgs),
}

#[derive(Args)]
struct EmergencyArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Seeds to run (each without and with preemption), e.g. 1,2,3.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    seeds: Vec<u64>,
    /// Calls per run, at seeded times and places.
    #[arg(long, default_value_t = 6)]
    calls: usize,
    /// Ambulance stations spread over the network (one ambulance each).
    #[arg(long, default_value_t = 4)]
    stations: usize,
    /// Station edges instead (repeatable).
    #[arg(long)]
    station: Vec<String>,
    /// How far ahead of a light an ambulance asks for green (m).
    #[arg(long, default_value_t = 300.0)]
    preempt_distance: f64,
    /// Minutes an ambulance stays at the scene before driving back.
    #[arg(long, default_value_t = 10.0)]
    scene_minutes: f64,
    /// Calls begin this many seconds into the run.
    #[arg(long, default_value_t = 600.0)]
    warmup: f64,
    /// The last call comes at least this many seconds before the end.
    #[arg(long, default_value_t = 600.0)]
    margin: f64,
    /// Print every call's pair of response times too.
    #[arg(long)]
    pairs: bool,
}

#[derive(Args)]
struct WhatIfArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Close an edge (repeatable): no vehicle may enter it.
    #[arg(long)]
    close: Vec<String>,
    /// Slow an edge down (repeatable): EDGE=KMH, e.g. A1B1=10.
    #[arg(long)]
    slow: Vec<String>,
}

#[derive(Args)]
struct RunArgs {
    /// The SUMO configuration (any valid .sumocfg with traffic lights).
    #[arg(long)]
    sumocfg: PathBuf,
    /// fixed (the network's own plans), actuated, max-pressure, webster or green-wave.
    #[arg(long, default_value = "fixed")]
    controller: ControllerKind,
    /// Seconds to simulate (default: the configuration's end, or until all arrived).
    #[arg(long)]
    duration: Option<f64>,
    /// SUMO's random seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Minimum green (s).
    #[arg(long)]
    min_green: Option<f64>,
    /// Maximum green of the actuated controller (s).
    #[arg(long)]
    max_green: Option<f64>,
    /// Max-pressure: metres upstream over which stopped vehicles count.
    #[arg(long)]
    reach: Option<f64>,
    /// Max-pressure: weight of a moving vehicle against a stopped one (0–1).
    #[arg(long)]
    moving_weight: Option<f64>,
    /// Max-pressure: the longest a green with stopped vehicles waits unserved (s).
    #[arg(long)]
    max_wait: Option<f64>,
    /// Webster: seconds between plan recomputations.
    #[arg(long)]
    replan: Option<f64>,
    /// Green wave: an edge entering the arterial's signals, to coordinate first
    /// (repeatable; by default the longest arterials are found in the network).
    #[arg(long)]
    arterial: Vec<String>,
    /// Webster: the longest cycle (s).
    #[arg(long)]
    max_cycle: Option<f64>,
    /// Where SUMO's outputs go (default: a temporary directory, removed afterwards).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

#[derive(Args)]
struct GridArgs {
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// Signals per side.
    #[arg(long, default_value_t = 4)]
    size: u32,
    /// Peak vehicles per hour per entry from the heavy sides.
    #[arg(long, default_value_t = 700.0)]
    peak: f64,
    /// Seconds of demand.
    #[arg(long, default_value_t = 3600.0)]
    duration: f64,
    /// Demand seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

pub fn twin(a: TwinArgs) -> anyhow::Result<()> {
    let sumo = Sumo::locate()?;
    match a.command {
        TwinCommand::Grid(g) => {
            let grid = Grid {
                size: g.size,
                peak: g.peak,
                duration: g.duration,
                seed: g.seed,
                ..Grid::default()
            };
            let cfg = scenario::write_grid(&sumo, &g.out, &grid)?;
            println!("{}", cfg.display());
            Ok(())
        }
        TwinCommand::Run(r) => {
            let temp = tempfile::Builder::new()
                .prefix("citybrain-twin-")
                .tempdir()?;
            let opts = options(r, temp.path())?;
            let report = episode::run(&sumo, &opts).context("twin run")?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        TwinCommand::Emergency(e) => {
            let temp = tempfile::Builder::new()
                .prefix("citybrain-twin-")
                .tempdir()?;
            let opts = options(e.run, temp.path())?;
            let mut base = EmergencyOptions::new(Vec::new(), true);
            base.preempt_distance = e.preempt_distance;
            base.scene_time = e.scene_minutes * 60.0;
            let ev = Evaluation {
                opts: Options {
                    emergency: Some(base),
                    ..opts
                },
                stations: e
                    .station
                    .iter()
                    .enumerate()
                    .map(|(i, edge)| Station {
                        id: format!("S{}", i + 1),
                        edge: edge.clone(),
                    })
                    .collect(),
                station_count: e.stations,
                calls: e.calls,
                seeds: e.seeds,
                warmup: e.warmup,
                margin: e.margin,
            };
            let mut report = response::compare(&sumo, &ev).context("twin emergency")?;
            if !e.pairs {
                report.pairs.clear();
            }
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        TwinCommand::WhatIf(w) => {
            let mut changes: Vec<Change> = w
                .close
                .into_iter()
                .map(|edge| Change::Close { edge })
                .collect();
            for s in w.slow {
                let (edge, kmh) = s
                    .split_once('=')
                    .and_then(|(e, v)| Some((e.to_string(), v.trim().parse::<f64>().ok()?)))
                    .filter(|(_, v)| v.is_finite() && *v > 0.0)
                    .ok_or_else(|| {
                        anyhow::anyhow!("--slow {s:?}: expected EDGE=KMH with a positive speed")
                    })?;
                changes.push(Change::Slow {
                    edge,
                    speed: kmh / 3.6,
                });
            }
            let temp = tempfile::Builder::new()
                .prefix("citybrain-twin-")
                .tempdir()?;
            let opts = options(w.run, temp.path())?;
            let report = episode::what_if(&sumo, &opts, changes).context("twin what-if")?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
    }
}

fn options(r: RunArgs, temp: &std::path::Path) -> anyhow::Result<Options> {
    let mut settings = Settings::default();
    if let Some(v) = r.min_green {
        settings.min_green = v;
    }
    if let Some(v) = r.max_green {
        settings.max_green = v;
    }
    if let Some(v) = r.reach {
        settings.reach = v;
    }
    if let Some(v) = r.moving_weight {
        settings.moving_weight = v;
    }
    if let Some(v) = r.max_wait {
        settings.max_wait = v;
    }
    settings.arterial = r.arterial;
    if let Some(v) = r.max_cycle {
        settings.max_cycle = v;
    }
    if let Some(v) = r.replan {
        settings.replan = v;
    }
    let work_dir = r.work_dir.unwrap_or_else(|| temp.to_path_buf());
    Ok(Options {
        sumocfg: r.sumocfg,
        controller: r.controller,
        settings,
        duration: r.duration,
        seed: r.seed,
        work_dir,
        observe: None,
        changes: Vec::new(),
        reroute: false,
        emergency: None,
    })
}
