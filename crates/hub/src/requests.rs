//! What the desk is asked ([`NewIncident`], [`IncidentFilter`]) and how it refuses
//! ([`DeskError`]): in a module of their own, so that the services beside the desk
//! (modes, Open311) use them without importing the desk itself.

use crate::incident::{Status, TransitionError};
use crate::tasks::{TaskError, TaskSpec};
use crate::HubError;

/// Filters of the incident list.
#[derive(Debug, Default, Clone)]
pub struct IncidentFilter {
    pub status: Option<Status>,
    pub category: Option<String>,
    pub department: Option<String>,
    /// Only incidents still being handled.
    pub open: Option<bool>,
}

/// Why a desk operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DeskError {
    #[error("no incident '{0}'")]
    NotFound(String),
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Hub(#[from] HubError),
    #[error("{0}")]
    Task(String, TaskError),
    /// The request conflicts with the current state (an area in use).
    #[error("{0}")]
    Conflict(String),
    #[error("no area '{0}'")]
    NoArea(String),
}

/// A request filed by hand (an operator, a citizen channel): an incident, maybe with
/// tasks for several departments.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewIncident {
    pub category: String,
    pub title: String,
    #[serde(default)]
    pub severity: Option<citybrain_rules::Severity>,
    /// `[lon, lat]`.
    #[serde(default)]
    pub location: Option<[f64; 2]>,
    #[serde(default)]
    pub entities: Vec<String>,
    #[serde(default)]
    pub tasks: Vec<TaskSpec>,
}
