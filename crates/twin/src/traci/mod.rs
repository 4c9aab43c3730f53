//! A TraCI client for Eclipse SUMO, written here rather than taken from `traci-rs`
//! (EPL-2.0, a licence the project's Apache-2.0 users would have to track, and a client
//! whose per-domain scopes borrow awkwardly): the protocol is small and documented, and
//! the twin needs only stepping, subscriptions and a few get/set variables.
//!
//! [`codec`] is the wire format (pure, fuzzed); [`Traci`] the blocking client over TCP.

mod client;
pub mod codec;

pub use client::{Traci, TraciError};
pub use codec::{SubscriptionResult, Value};

/// Command ids and variables used by the twin (SUMO `tools/traci/constants.py`).
pub mod ids {
    pub const CMD_GETVERSION: u8 = 0x00;
    pub const CMD_SIMSTEP: u8 = 0x02;
    pub const CMD_CLOSE: u8 = 0x7f;

    pub const GET_INDUCTIONLOOP: u8 = 0xa0;
    pub const SUBSCRIBE_INDUCTIONLOOP: u8 = 0xd0;
    pub const GET_TL: u8 = 0xa2;
    pub const SET_TL: u8 = 0xc2;
    pub const GET_LANE: u8 = 0xa3;
    pub const SET_LANE: u8 = 0xc3;
    pub const SUBSCRIBE_LANE: u8 = 0xd3;
    pub const GET_VEHICLE: u8 = 0xa4;
    pub const SET_VEHICLE: u8 = 0xc4;
    pub const SUBSCRIBE_VEHICLE: u8 = 0xd4;
    pub const GET_EDGE: u8 = 0xaa;
    pub const SET_EDGE: u8 = 0xca;
    pub const GET_SIM: u8 = 0xab;
    pub const SET_ROUTE: u8 = 0xc6;
    pub const SUBSCRIBE_SIM: u8 = 0xdb;

    pub const RESPONSE_SUBSCRIBE_INDUCTIONLOOP: u8 = 0xe0;
    pub const RESPONSE_SUBSCRIBE_LANE: u8 = 0xe3;
    pub const RESPONSE_SUBSCRIBE_VEHICLE: u8 = 0xe4;
    pub const RESPONSE_SUBSCRIBE_SIM: u8 = 0xeb;

    pub const ID_LIST: u8 = 0x00;
    pub const LAST_STEP_VEHICLE_NUMBER: u8 = 0x10;
    pub const LAST_STEP_MEAN_SPEED: u8 = 0x11;
    pub const LAST_STEP_VEHICLE_ID_LIST: u8 = 0x12;
    pub const LAST_STEP_OCCUPANCY: u8 = 0x13;
    pub const LAST_STEP_HALTING_NUMBER: u8 = 0x14;
    pub const LAST_STEP_TIME_SINCE_DETECTION: u8 = 0x16;
    pub const VAR_INTERVAL_NUMBER: u8 = 0x25;

    pub const TL_RED_YELLOW_GREEN_STATE: u8 = 0x20;
    pub const TL_PHASE_INDEX: u8 = 0x22;
    pub const TL_PROGRAM: u8 = 0x23;
    pub const TL_CONTROLLED_LANES: u8 = 0x26;
    pub const TL_CONTROLLED_LINKS: u8 = 0x27;
    pub const TL_CURRENT_PHASE: u8 = 0x28;
    pub const TL_CURRENT_PROGRAM: u8 = 0x29;
    pub const TL_COMPLETE_DEFINITION_RYG: u8 = 0x2b;

    pub const LANE_LINKS: u8 = 0x33;
    pub const VAR_LENGTH: u8 = 0x44;
    pub const VAR_MAXSPEED: u8 = 0x41;
    pub const VAR_SPEED: u8 = 0x40;
    pub const VAR_POSITION: u8 = 0x42;
    pub const VAR_ROAD_ID: u8 = 0x50;
    pub const VAR_LANE_ID: u8 = 0x51;
    pub const VAR_WAITING_TIME: u8 = 0x7a;
    pub const VAR_TIMELOSS: u8 = 0x8c;
    pub const VAR_ROUTE: u8 = 0x57;
    pub const VAR_EDGES: u8 = 0x54;
    pub const VAR_SHAPE: u8 = 0x4e;
    pub const VAR_CURRENT_TRAVELTIME: u8 = 0x5a;
    pub const VAR_DEPARTURE: u8 = 0x3a;
    pub const VAR_DEPART_DELAY: u8 = 0x3b;
    pub const VAR_TYPE: u8 = 0x4f;

    pub const VAR_TIME: u8 = 0x66;
    pub const VAR_DELTA_T: u8 = 0x7b;
    pub const VAR_DEPARTED_VEHICLES_IDS: u8 = 0x74;
    pub const VAR_ARRIVED_VEHICLES_IDS: u8 = 0x7a;
    pub const VAR_ARRIVED_VEHICLES_NUMBER: u8 = 0x79;
    pub const VAR_DEPARTED_VEHICLES_NUMBER: u8 = 0x73;
    pub const VAR_TELEPORT_STARTING_VEHICLES_NUMBER: u8 = 0x75;
    pub const VAR_MIN_EXPECTED_VEHICLES: u8 = 0x7d;
    pub const VAR_LOADED_VEHICLES_NUMBER: u8 = 0x71;
    pub const VAR_PENDING_VEHICLES: u8 = 0x94;
    pub const POSITION_CONVERSION: u8 = 0x82;
    pub const FIND_ROUTE: u8 = 0x86;
    /// Edge: the global travel time routing uses (`edge.adaptTraveltime`).
    pub const VAR_EDGE_TRAVELTIME: u8 = 0x58;
    /// Vehicle: the traffic lights ahead on its route, with link index and distance.
    pub const VAR_NEXT_TLS: u8 = 0x70;
    /// Route: add one; vehicle: add one with every attribute.
    pub const ADD: u8 = 0x80;
    pub const ADD_FULL: u8 = 0x85;

    /// Subscription begin/end meaning "always" (`INVALID_DOUBLE_VALUE`).
    pub const ALWAYS: f64 = -1_073_741_824.0;
}
