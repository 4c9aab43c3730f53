//! Differential privacy for open data.
//!
//! - [`sample`]: exact samplers (Bernoulli(exp(-γ)), discrete Laplace, discrete
//!   Gaussian) over uniform integers, never over floating point;
//! - [`mechanism`]: noise calibrated to a sensitivity and a cost (ε for Laplace, ρ for
//!   Gaussian);
//! - [`stats`]: count, sum, mean and histograms with clamped contributions;
//! - [`budget`]: what a consumer may spend and has spent, composed in pure DP and in
//!   zCDP, converted to (ε, δ).
//!
//! The crate is pure: no I/O, no clock. Randomness comes from a [`RandomBits`] the
//! caller passes ([`OsRandom`] in production).

pub mod budget;
pub mod mechanism;
pub mod ratio;
pub mod sample;
pub mod stats;

pub use budget::{epsilon_of_rho, Budget, Cost, Exhausted, Spent};
pub use mechanism::{Mechanism, Noise};
pub use ratio::Ratio;
pub use sample::{OsRandom, RandomBits};
pub use stats::{release, Bounds, Datum, Release, Statistic};

#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    #[error("{0}")]
    Invalid(String),
}
