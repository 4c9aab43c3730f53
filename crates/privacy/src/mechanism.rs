//! Mechanisms calibrated to a query's sensitivity and a privacy cost.
//!
//! - **Discrete Laplace** with scale Δ₁/ε gives ε-differential privacy (pure) for a
//!   query of L1 sensitivity Δ₁.
//! - **Discrete Gaussian** with σ² ≥ Δ₂²/(2ρ) gives ρ-zero-concentrated differential
//!   privacy (zCDP) for a query of L2 sensitivity Δ₂ (Canonne, Kamath, Steinke 2020,
//!   Theorem 14). σ² is rounded up to an integer: more noise, never less privacy.
//!
//! Values are integers: a real-valued statistic is quantised by its publisher first
//! (counts are integers already; sums are counted in units of a resolution).

use serde::Serialize;

use crate::ratio::Ratio;
use crate::sample::{discrete_gaussian, discrete_laplace, RandomBits};
use crate::{Cost, PrivacyError};

/// Which noise a dataset's aggregates carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mechanism {
    /// Discrete Laplace, pure ε-DP.
    #[default]
    Laplace,
    /// Discrete Gaussian, ρ-zCDP.
    Gaussian,
}

impl Mechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::Laplace => "laplace",
            Mechanism::Gaussian => "gaussian",
        }
    }
}

/// Largest noise scale (in the statistic's integer units) the samplers accept: keeps
/// every product inside `u128`. A publisher beyond it chooses a coarser resolution.
pub const MAX_SCALE: u128 = 10_000_000;

/// Calibrated noise for one release.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Noise {
    /// Discrete Laplace with scale `t/s`.
    Laplace { t: u128, s: u128 },
    /// Discrete Gaussian with variance parameter `sigma2`.
    Gaussian { sigma2: u128 },
}

impl Noise {
    /// Noise for a query of sensitivity `sensitivity` (integer units) at `cost`: L1
    /// sensitivity for Laplace (ε), L2 for Gaussian (ρ).
    pub fn calibrate(sensitivity: u128, cost: Cost) -> Result<Noise, PrivacyError> {
        if sensitivity == 0 {
            return Err(PrivacyError::Invalid(
                "the sensitivity must be positive".into(),
            ));
        }
        let too_large = || {
            PrivacyError::Invalid(format!(
                "the noise this query needs is beyond {MAX_SCALE} units of its statistic: choose a coarser resolution, tighter bounds or a larger privacy cost"
            ))
        };
        match cost {
            Cost::Epsilon(e) => {
                if e.is_zero() {
                    return Err(PrivacyError::Invalid("'epsilon' must be positive".into()));
                }
                // scale = Δ/ε = Δ·d/n
                let t = sensitivity.checked_mul(e.d).ok_or_else(too_large)?;
                let r = Ratio::new(t, e.n).ok_or_else(too_large)?;
                if r.ceil() > MAX_SCALE {
                    return Err(too_large());
                }
                Ok(Noise::Laplace { t: r.n, s: r.d })
            }
            Cost::Rho(rho) => {
                if rho.is_zero() {
                    return Err(PrivacyError::Invalid("'rho' must be positive".into()));
                }
                // σ² = Δ²/(2ρ) = Δ²·d/(2n), rounded up
                let num = sensitivity
                    .checked_mul(sensitivity)
                    .and_then(|x| x.checked_mul(rho.d))
                    .ok_or_else(too_large)?;
                let den = rho.n.checked_mul(2).ok_or_else(too_large)?;
                let sigma2 = num.div_ceil(den).max(1);
                if sigma2 > MAX_SCALE * MAX_SCALE {
                    return Err(too_large());
                }
                Ok(Noise::Gaussian { sigma2 })
            }
        }
    }

    /// `value` plus one draw of the noise.
    pub fn add(&self, rng: &mut dyn RandomBits, value: i128) -> i128 {
        let z = match *self {
            Noise::Laplace { t, s } => discrete_laplace(rng, t, s),
            Noise::Gaussian { sigma2 } => discrete_gaussian(rng, sigma2),
        };
        value.saturating_add(z)
    }

    /// The noise's standard deviation (units of the statistic), for reports.
    pub fn std_dev(&self) -> f64 {
        match *self {
            Noise::Laplace { t, s } => {
                // Var = 2q/(1-q)² with q = exp(-s/t)
                let q = (-(s as f64) / t as f64).exp();
                (2.0 * q).sqrt() / (1.0 - q)
            }
            Noise::Gaussian { sigma2 } => (sigma2 as f64).sqrt(),
        }
    }

    /// Half-width of an interval holding the noise with probability ≥ 95 %.
    pub fn ci95(&self) -> f64 {
        match *self {
            Noise::Laplace { t, s } => {
                // P(|X| > k) = 2q^(k+1)/(1+q) ≤ 0.05 for the smallest such k.
                let q = (-(s as f64) / t as f64).exp();
                if q <= 0.0 {
                    return 0.0;
                }
                let k = ((0.05 * (1.0 + q) / 2.0).ln() / q.ln() - 1.0).ceil();
                k.max(0.0)
            }
            // The discrete Gaussian's tails are no heavier than the continuous one's.
            Noise::Gaussian { sigma2 } => (1.96 * (sigma2 as f64).sqrt()).ceil(),
        }
    }

    /// The scale as published: `t/s` for Laplace, σ for Gaussian.
    pub fn scale(&self) -> f64 {
        match *self {
            Noise::Laplace { t, s } => t as f64 / s as f64,
            Noise::Gaussian { sigma2 } => (sigma2 as f64).sqrt(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration() {
        let eps = |s| Cost::Epsilon(Ratio::parse("epsilon", s).unwrap());
        assert_eq!(
            Noise::calibrate(1, eps("0.5")).unwrap(),
            Noise::Laplace { t: 2, s: 1 }
        );
        assert_eq!(
            Noise::calibrate(3, eps("2")).unwrap(),
            Noise::Laplace { t: 3, s: 2 }
        );
        let rho = |s| Cost::Rho(Ratio::parse("rho", s).unwrap());
        // Δ=1, ρ=0.5: σ² = 1
        assert_eq!(
            Noise::calibrate(1, rho("0.5")).unwrap(),
            Noise::Gaussian { sigma2: 1 }
        );
        // Δ=2, ρ=0.3: σ² = 4/0.6 = 6.67 → 7
        assert_eq!(
            Noise::calibrate(2, rho("0.3")).unwrap(),
            Noise::Gaussian { sigma2: 7 }
        );
        assert!(Noise::calibrate(0, eps("1")).is_err());
        assert!(Noise::calibrate(1, eps("0")).is_err());
        let e = Noise::calibrate(1_000_000_000, eps("0.001")).unwrap_err();
        assert!(e.to_string().contains("coarser"), "{e}");
    }

    #[test]
    fn reports() {
        let n = Noise::Laplace { t: 1, s: 1 };
        // q = e^-1: sd = sqrt(2q)/(1-q)
        assert!((n.std_dev() - 1.3570).abs() < 1e-3, "{}", n.std_dev());
        // P(|X| > k) = 2 q^(k+1)/(1+q) ≤ 0.05 → k = 3
        assert_eq!(n.ci95(), 3.0);
        assert_eq!(Noise::Gaussian { sigma2: 100 }.ci95(), 20.0);
    }
}
