//! The rule engine of the coordination hub (issue #5).
//!
//! Rules are data ([`RuleSpec`], YAML or JSON): which entities they watch (a type,
//! optionally some ids) and a [`Condition`] on their observations. [`Engine`] compiles
//! them (every error names its field), indexes them by entity type and attribute, and
//! evaluates each observation against the rules that can use it, keeping one small
//! state per (rule, entity). It answers [`Event`]s: a condition *raised* or *cleared*,
//! or a momentary one (a geofence entered, a sequence completed).
//!
//! Time is event time: observations carry theirs, and [`Engine::tick`] moves the clock
//! for what happens without data (a window closing, a heartbeat missed, a hold
//! elapsing). The engine never reads a clock itself, so the case files under
//! `tests/rules/` replay deterministically.
//!
//! A rule whose evaluation fails at run time (its state would grow past its limits) is
//! disabled with the reason, visible through [`Engine::status`]; the others go on.

mod compile;
mod engine;
mod error;
mod signal;
pub mod spec;

pub use compile::Zone;
pub use engine::{Engine, Event, EventKind, ObsValue, Observation, RuleStatus};
pub use error::RuleError;
pub use spec::{parse_rules, Condition, RuleSpec, Severity};
