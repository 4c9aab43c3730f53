//! Privacy budgets and their accounting.
//!
//! Every release costs either ε (pure differential privacy, the Laplace mechanism) or
//! ρ (zero-concentrated DP, the Gaussian mechanism). Spending is composed two ways
//! and the tighter bound is the one charged:
//! - pure ε adds up (basic composition);
//! - every release is also ρ-zCDP (an ε-DP release is ε²/2-zCDP, Bun and Steinke 2016,
//!   Proposition 1.4), ρ adds up, and ρ-zCDP implies (ρ + 2√(ρ·ln(1/δ)), δ)-DP
//!   (Proposition 1.3).
//!
//! A budget is (ε, δ): a release is admitted only when the spending after it stays
//! within both.

use serde::{Deserialize, Serialize};

use crate::ratio::Ratio;
use crate::PrivacyError;

/// What one release costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cost {
    /// Pure ε-DP.
    Epsilon(Ratio),
    /// ρ-zCDP.
    Rho(Ratio),
}

impl Cost {
    /// The same cost in zCDP.
    pub fn rho(&self) -> f64 {
        match self {
            Cost::Epsilon(e) => e.to_f64() * e.to_f64() / 2.0,
            Cost::Rho(r) => r.to_f64(),
        }
    }

    /// The cost in half: what each of the two releases of a mean costs (sum and count),
    /// so that the pair costs `self` (both forms compose linearly).
    pub fn halved(&self) -> Option<Cost> {
        Some(match self {
            Cost::Epsilon(e) => Cost::Epsilon(Ratio::new(e.n, e.d.checked_mul(2)?)?),
            Cost::Rho(r) => Cost::Rho(Ratio::new(r.n, r.d.checked_mul(2)?)?),
        })
    }
}

/// ε of (ε, δ)-DP implied by ρ-zCDP.
pub fn epsilon_of_rho(rho: f64, delta: f64) -> f64 {
    if rho <= 0.0 {
        return 0.0;
    }
    if delta <= 0.0 {
        return f64::INFINITY;
    }
    rho + 2.0 * (rho * (1.0 / delta).ln()).sqrt()
}

/// A consumer's allowance on a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Total ε.
    pub epsilon: f64,
    /// δ of the (ε, δ) guarantee (0: pure DP only, so Gaussian releases are refused).
    #[serde(default)]
    pub delta: f64,
}

impl Budget {
    pub fn validate(&self) -> Result<(), PrivacyError> {
        if !(self.epsilon.is_finite() && self.epsilon > 0.0) {
            return Err(PrivacyError::Invalid(
                "privacy.budget.epsilon must be a positive number".into(),
            ));
        }
        if !(self.delta.is_finite() && (0.0..1e-3).contains(&self.delta)) {
            return Err(PrivacyError::Invalid(
                "privacy.budget.delta must be at least 0 and below 0.001 (it is the chance the guarantee fails)".into(),
            ));
        }
        Ok(())
    }
}

/// What a consumer has spent on a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spent {
    /// Sum of pure ε (meaningful while no Gaussian release was made).
    pub epsilon: f64,
    /// Sum of ρ over every release (pure ones converted).
    pub rho: f64,
    /// Whether any release was Gaussian (then only the zCDP bound holds).
    pub gaussian: bool,
    pub releases: u64,
}

impl Spent {
    /// The ε spent, at the budget's δ: the tighter of the two compositions.
    pub fn epsilon_at(&self, delta: f64) -> f64 {
        let zcdp = epsilon_of_rho(self.rho, delta);
        if self.gaussian {
            zcdp
        } else {
            self.epsilon.min(zcdp)
        }
    }

    /// The spending after one more release.
    pub fn with(&self, cost: Cost) -> Spent {
        Spent {
            epsilon: self.epsilon
                + match cost {
                    Cost::Epsilon(e) => e.to_f64(),
                    Cost::Rho(_) => 0.0,
                },
            rho: self.rho + cost.rho(),
            gaussian: self.gaussian || matches!(cost, Cost::Rho(_)),
            releases: self.releases + 1,
        }
    }

    /// The spending after `cost`, if the budget allows it; else why not.
    pub fn admit(&self, budget: &Budget, cost: Cost) -> Result<Spent, Exhausted> {
        let next = self.with(cost);
        let eps = next.epsilon_at(budget.delta);
        // A relative slack of 1e-9 absorbs the rounding of summed decimals
        // (ten releases of ε = 0.1 fit a budget of 1).
        if eps <= budget.epsilon * (1.0 + 1e-9) {
            Ok(next)
        } else {
            Err(Exhausted {
                spent: self.epsilon_at(budget.delta),
                needed: eps,
                budget: *budget,
            })
        }
    }
}

/// A release the budget does not allow.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exhausted {
    /// ε spent before the release.
    pub spent: f64,
    /// ε the spending would reach with it.
    pub needed: f64,
    pub budget: Budget,
}

impl std::fmt::Display for Exhausted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "privacy budget exhausted: ε = {:.4} spent of {} (δ = {:e}); this release would bring it to {:.4}",
            self.spent, self.budget.epsilon, self.budget.delta, self.needed
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps(s: &str) -> Cost {
        Cost::Epsilon(Ratio::parse("epsilon", s).unwrap())
    }
    fn rho(s: &str) -> Cost {
        Cost::Rho(Ratio::parse("rho", s).unwrap())
    }

    #[test]
    fn pure_releases_add_up_and_stop_at_the_budget() {
        let b = Budget {
            epsilon: 1.0,
            delta: 0.0,
        };
        let mut s = Spent::default();
        for _ in 0..10 {
            s = s.admit(&b, eps("0.1")).unwrap();
        }
        assert!((s.epsilon_at(0.0) - 1.0).abs() < 1e-9);
        let e = s.admit(&b, eps("0.1")).unwrap_err();
        assert!((e.spent - 1.0).abs() < 1e-9 && (e.needed - 1.1).abs() < 1e-9);
        assert!(e.to_string().contains("budget exhausted"), "{e}");
        // Gaussian releases need δ > 0.
        assert!(Spent::default().admit(&b, rho("0.001")).is_err());
    }

    #[test]
    fn zcdp_composes_tighter_than_pure_for_many_small_releases() {
        let b = Budget {
            epsilon: 2.0,
            delta: 1e-6,
        };
        // 400 releases of ε = 0.01: pure sum 4.0; zCDP ρ = 400·0.00005 = 0.02
        // → ε = 0.02 + 2√(0.02·ln 1e6) = 1.071
        let mut s = Spent::default();
        for _ in 0..400 {
            s = s.admit(&b, eps("0.01")).unwrap();
        }
        assert!((s.epsilon - 4.0).abs() < 1e-9);
        let at = s.epsilon_at(1e-6);
        assert!((at - 1.0712).abs() < 1e-3, "{at}");
    }

    #[test]
    fn gaussian_spending_is_the_zcdp_bound() {
        let b = Budget {
            epsilon: 1.0,
            delta: 1e-5,
        };
        let s = Spent::default().admit(&b, rho("0.01")).unwrap();
        // 0.01 + 2√(0.01·ln 1e5) = 0.6886
        assert!((s.epsilon_at(1e-5) - 0.6886).abs() < 1e-3);
        // ρ = 0.02 → ε = 0.980; ρ = 0.03 → ε = 1.205
        let s = s.admit(&b, rho("0.01")).unwrap();
        assert!(s.admit(&b, rho("0.01")).is_err());
    }

    #[test]
    fn budgets_are_validated() {
        let bad = [
            (0.0, 0.0),
            (-1.0, 0.0),
            (f64::NAN, 0.0),
            (1.0, 0.5),
            (1.0, -1.0),
        ];
        for (e, d) in bad {
            assert!(
                Budget {
                    epsilon: e,
                    delta: d
                }
                .validate()
                .is_err(),
                "{e} {d}"
            );
        }
        assert!(Budget {
            epsilon: 1.0,
            delta: 1e-6
        }
        .validate()
        .is_ok());
    }

    #[test]
    fn halving_keeps_the_total() {
        assert_eq!(eps("1").halved(), Some(eps("0.5")));
        assert_eq!(rho("0.1").halved(), Some(rho("0.05")));
    }
}
