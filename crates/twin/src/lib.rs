//! The traffic digital twin: Eclipse SUMO as the city, citybrain as its brain.
//!
//! - [`traci`]: the TraCI client (wire codec and blocking TCP client);
//! - [`sumo`]: finding SUMO, reading a `.sumocfg`, launching the simulator;
//! - [`net`]: the network file (lanes, shapes, connections, location);
//! - [`signal`]: signal programs and the [`signal::Driver`] that switches safely;
//! - [`control`]: controllers (fixed, actuated, max-pressure, Webster);
//! - [`wave`]: green waves along arterials found in the network;
//! - [`emergency`]: ambulance dispatch by live travel time and signal preemption;
//! - [`episode`]: one headless run and its indicators ([`episode::Report`]);
//! - [`observe`]: detector readings and indicators per period, for the platform;
//! - [`whatif`]: a scenario without and with closures or slowdowns, compared;
//! - [`response`]: response times with and without preemption, over seeds;
//! - [`program`]: reading signal programs and links from TraCI answers;
//! - [`tripinfo`]: SUMO's per-vehicle trip output, read for the indicators;
//! - [`entities`]: the network as Road, RoadSegment and TrafficLight entities;
//! - [`geo`]: network coordinates to WGS 84;
//! - [`scenario`]: the reproducible signalised grid the demo ships.

pub mod control;
mod detectors;
pub mod emergency;
pub mod entities;
pub mod episode;
pub mod geo;
pub mod net;
pub mod observe;
pub mod program;
pub mod response;
pub mod scenario;
pub mod signal;
pub mod sumo;
pub mod traci;
pub mod tripinfo;
pub mod wave;
pub mod whatif;
mod xml;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TwinError {
    #[error("SUMO is not installed: {0}")]
    NoSumo(String),
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("SUMO failed: {0}")]
    Sumo(String),
    #[error(transparent)]
    Traci(#[from] traci::TraciError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
