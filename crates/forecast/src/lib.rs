//! Traffic forecasting for the algorithm hub: per-sensor forecasts for every step up to
//! a horizon, from the last hour of readings, and their evaluation the way the
//! published graph-network papers evaluate (T-GCN: a chronological train/test split,
//! accuracy 1 − ‖Y − Ŷ‖_F / ‖Y‖_F, RMSE, MAE, R² over all predicted steps pooled).
//!
//! - [`data`]: wide CSV series (a header of sensor ids, one row per step) and an
//!   adjacency matrix;
//! - [`model`]: last value, historical average, ridge regression on lags, neighbour
//!   means and time-of-day profiles;
//! - [`metrics`]: the figures;
//! - [`online`]: forecasts for live series, learnt as readings arrive, with bands;
//! - [`stream`]: irregular observations cut into intervals for [`online`];
//! - [`eval`]: split, model selection on a validation slice of the training part
//!   (never on the test part), predictions, report.

pub mod data;
pub mod eval;
pub mod metrics;
pub mod model;
pub mod online;
pub mod stream;

pub use data::Series;
pub use eval::{evaluate, EvalOptions, EvalReport};
pub use metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum ForecastError {
    #[error("{path}: {message}")]
    Input { path: String, message: String },
    #[error("invalid options: {0}")]
    Options(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
