//! The seam to the traffic twin's what-if runs (`/platform/v1/twin/what-ifs`): the API
//! decodes and encodes; the binary, which owns the simulator, implements
//! [`Scenarios`]. A what-if runs the twin's scenario twice — without and with road
//! closures or slowdowns — which takes from seconds to minutes, so a request starts a
//! run and answers at once (202), and the run is read back by its id.

use chrono::{DateTime, Utc};
use citybrain_model::{ErrorCode, ErrorKind};
use serde::{Deserialize, Serialize};

/// A what-if as a client asks for it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WhatIfRequest {
    /// Edges closed to every vehicle.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub close: Vec<String>,
    /// Edges slowed down (an incident, works).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slow: Vec<Slowdown>,
    /// The signal controller in both runs (default: the live twin's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<String>,
    /// SUMO's seed, the same in both runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Seconds simulated (default: the scenario's own end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slowdown {
    pub edge: String,
    /// The new speed limit (km/h).
    pub kmh: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Running,
    Done,
    Failed,
}

/// A what-if run: what was asked, by whom, where it stands, and its result (the base
/// and scenario indicators and their relative change) once done.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WhatIfRun {
    pub id: String,
    pub status: RunStatus,
    pub request: WhatIfRequest,
    pub submitted_by: String,
    pub submitted_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScenarioError {
    /// The request names what the twin lacks, or a value out of range.
    #[error("{0}")]
    Invalid(String),
    /// Too many runs waiting.
    #[error("{0}")]
    Busy(String),
    /// The twin cannot run anything now (its worker has stopped).
    #[error("{0}")]
    Unavailable(String),
}

impl ErrorCode for ScenarioError {
    fn kind(&self) -> ErrorKind {
        match self {
            ScenarioError::Invalid(_) => ErrorKind::BadRequestData,
            ScenarioError::Busy(_) => ErrorKind::TooManyRequests,
            // 503: the twin may come back (a restart of its worker); not a fault of
            // the request, and not one to plan a 500 for.
            ScenarioError::Unavailable(_) => ErrorKind::Unavailable,
        }
    }
    fn problem_type(&self) -> Option<(&'static str, &'static str)> {
        match self {
            ScenarioError::Unavailable(_) => {
                Some(("TwinUnavailable", "The twin cannot run what-ifs now"))
            }
            _ => None,
        }
    }
}

/// What-if runs of the traffic twin. Runs belong to the tenant that asked: another
/// tenant neither lists nor reads them.
pub trait Scenarios: Send + Sync {
    /// Checks the request and queues the run; `by` is who asked.
    fn submit(
        &self,
        tenant: &str,
        by: &str,
        req: WhatIfRequest,
    ) -> Result<WhatIfRun, ScenarioError>;
    /// One run of the tenant, if known.
    fn run(&self, tenant: &str, id: &str) -> Option<WhatIfRun>;
    /// The tenant's runs kept, newest first.
    fn runs(&self, tenant: &str) -> Vec<WhatIfRun>;
    /// The twin's metrics (runs waiting and running, emergency response), for
    /// `/metrics`.
    fn visit_metrics(&self, out: &mut dyn FnMut(&'static citybrain_telemetry::MetricDef, f64)) {
        let _ = out;
    }
}
