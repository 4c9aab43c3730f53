//! Exact non-negative rationals: privacy parameters as the caller wrote them
//! (`epsilon=0.25` is exactly 1/4), so that the samplers never round a parameter
//! through floating point.

use crate::PrivacyError;

/// A non-negative rational `n / d`, reduced, with `d > 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ratio {
    pub n: u128,
    pub d: u128,
}

/// Largest numerator or denominator a parameter may have (keeps every product the
/// samplers form inside `u128`).
const LIMIT: u128 = 1 << 60;

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Ratio {
    /// `n / d`, reduced; `None` when `d` is zero.
    pub fn new(n: u128, d: u128) -> Option<Ratio> {
        if d == 0 {
            return None;
        }
        let g = gcd(n, d).max(1);
        Some(Ratio { n: n / g, d: d / g })
    }

    pub fn integer(n: u128) -> Ratio {
        Ratio { n, d: 1 }
    }

    pub fn is_zero(&self) -> bool {
        self.n == 0
    }

    /// The nearest `f64` (for accounting and reports, never for sampling).
    pub fn to_f64(&self) -> f64 {
        self.n as f64 / self.d as f64
    }

    /// Parses a decimal such as `0.5`, `2`, `1e-3` or `2.5E2` exactly. `field` names the
    /// parameter in the error.
    pub fn parse(field: &str, s: &str) -> Result<Ratio, PrivacyError> {
        let bad = || {
            PrivacyError::Invalid(format!(
                "'{field}' must be a non-negative decimal number such as 0.5, got '{s}'"
            ))
        };
        let s = s.trim();
        let (mantissa, exp) = match s.find(['e', 'E']) {
            Some(i) => {
                let e: i32 = s[i + 1..].parse().map_err(|_| bad())?;
                (&s[..i], e)
            }
            None => (s, 0),
        };
        let (int, frac) = match mantissa.split_once('.') {
            Some((a, b)) => (a, b),
            None => (mantissa, ""),
        };
        if (int.is_empty() && frac.is_empty())
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let digits = format!("{int}{frac}");
        let digits = digits.trim_start_matches('0');
        let too_precise = || {
            PrivacyError::Invalid(format!(
                "'{field}' has too many significant digits or too large an exponent: '{s}'"
            ))
        };
        if digits.len() > 17 {
            return Err(too_precise());
        }
        let n: u128 = if digits.is_empty() {
            0
        } else {
            digits.parse().map_err(|_| bad())?
        };
        let scale = i64::from(exp) - frac.len() as i64;
        if !(-18..=18).contains(&scale) {
            return Err(too_precise());
        }
        let scale = scale as i32;
        let ten = |k: i32| 10u128.pow(k.unsigned_abs());
        let r = if scale >= 0 {
            Ratio::new(n * ten(scale), 1)
        } else {
            Ratio::new(n, ten(scale))
        };
        let r = r.ok_or_else(bad)?;
        if r.n > LIMIT || r.d > LIMIT {
            return Err(too_precise());
        }
        Ok(r)
    }

    /// Parses an `f64` through its shortest decimal form (what a JSON document holds).
    pub fn from_f64(field: &str, v: f64) -> Result<Ratio, PrivacyError> {
        if !v.is_finite() || v < 0.0 {
            return Err(PrivacyError::Invalid(format!(
                "'{field}' must be a non-negative finite number, got {v}"
            )));
        }
        Ratio::parse(field, &format!("{v:e}"))
    }

    /// `self * k` (checked).
    pub fn times(&self, k: u128) -> Option<Ratio> {
        let g = gcd(k, self.d).max(1);
        Ratio::new(self.n.checked_mul(k / g)?, self.d / g)
    }

    /// The smallest integer at least `self`.
    pub fn ceil(&self) -> u128 {
        self.n.div_ceil(self.d)
    }
}

impl std::fmt::Display for Ratio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.d == 1 {
            write!(f, "{}", self.n)
        } else {
            write!(f, "{}/{}", self.n, self.d)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimals_exactly() {
        let p = |s| Ratio::parse("epsilon", s).unwrap();
        assert_eq!(p("0.5"), Ratio { n: 1, d: 2 });
        assert_eq!(p("0.25"), Ratio { n: 1, d: 4 });
        assert_eq!(p("2"), Ratio { n: 2, d: 1 });
        assert_eq!(p("1e-3"), Ratio { n: 1, d: 1000 });
        assert_eq!(p("2.5E2"), Ratio { n: 250, d: 1 });
        assert_eq!(p(".1"), Ratio { n: 1, d: 10 });
        assert_eq!(p("0"), Ratio { n: 0, d: 1 });
        assert_eq!(Ratio::from_f64("x", 0.1).unwrap(), Ratio { n: 1, d: 10 });
        assert_eq!(
            Ratio::from_f64("x", 1e-6).unwrap(),
            Ratio { n: 1, d: 1_000_000 }
        );
        for bad in [
            "",
            "-1",
            "abc",
            "1..2",
            "1e",
            "0x10",
            "1e99",
            "nan",
            ".",
            "0.5e-2147483648",
            "1e2147483647",
        ] {
            let e = Ratio::parse("epsilon", bad).unwrap_err().to_string();
            assert!(e.contains("epsilon"), "{bad}: {e}");
        }
        assert!(Ratio::from_f64("x", f64::NAN).is_err());
        assert!(Ratio::from_f64("x", -0.5).is_err());
    }

    #[test]
    fn arithmetic() {
        let r = Ratio::new(3, 4).unwrap();
        assert_eq!(r.times(8), Some(Ratio { n: 6, d: 1 }));
        assert_eq!(r.ceil(), 1);
        assert_eq!(Ratio::new(8, 4).unwrap().ceil(), 2);
        assert_eq!(Ratio::new(1, 0), None);
        assert_eq!(r.to_string(), "3/4");
    }
}
