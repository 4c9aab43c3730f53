//! Differentially private statistics over units that contribute values: count, sum,
//! mean and histograms (numeric bins or categories).
//!
//! The privacy unit is whatever the caller groups values by (an entity: a sensor, a
//! car park, a citizen's report). A unit contributes at most `max_contributions`
//! values (the caller keeps the first ones), every numeric value is clamped to the
//! published bounds and counted in units of a resolution, so the sensitivity of each
//! statistic is known before the data is looked at:
//!
//! | statistic | L1 and L2 sensitivity |
//! | --- | --- |
//! | count | k |
//! | sum | k · max(|lower|, |upper|) / resolution |
//! | mean | sum and count, each at half the cost |
//! | histogram | k (a unit's k values change the bins by k in all) |
//!
//! Bins, categories and bounds come from the request or the dataset, never from the
//! data. Negative noisy counts are reported as 0 (post-processing costs nothing).

use serde::Serialize;

use crate::mechanism::Noise;
use crate::sample::RandomBits;
use crate::{Cost, PrivacyError};

/// One value a unit contributes.
#[derive(Debug, Clone, PartialEq)]
pub enum Datum {
    Number(f64),
    Text(String),
}

/// Clamping bounds and resolution of a numeric statistic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    pub lower: f64,
    pub upper: f64,
    /// The unit sums are counted in; `None`: a thousandth of the larger bound.
    pub resolution: Option<f64>,
}

impl Bounds {
    pub fn validate(&self) -> Result<(), PrivacyError> {
        if !(self.lower.is_finite() && self.upper.is_finite() && self.lower < self.upper) {
            return Err(PrivacyError::Invalid(
                "'lower' and 'upper' must be finite numbers with lower < upper".into(),
            ));
        }
        if let Some(r) = self.resolution {
            if !(r.is_finite() && r > 0.0) {
                return Err(PrivacyError::Invalid(
                    "'resolution' must be a positive number".into(),
                ));
            }
        }
        // A value counts at most this many units: sums of a million of them stay far
        // inside i128, and the noise limit refuses what is wider anyway.
        if self.lower.abs().max(self.upper.abs()) / self.resolution() > 1e12 {
            return Err(PrivacyError::Invalid(
                "'resolution' is too fine for the bounds (more than 10^12 units per value)".into(),
            ));
        }
        Ok(())
    }

    fn resolution(&self) -> f64 {
        self.resolution
            .unwrap_or_else(|| self.lower.abs().max(self.upper.abs()) / 1000.0)
    }

    /// (lowest unit, highest unit, resolution).
    fn units(&self) -> (i128, i128, f64) {
        let r = self.resolution();
        (
            (self.lower / r).round() as i128,
            (self.upper / r).round() as i128,
            r,
        )
    }
}

/// What to release.
#[derive(Debug, Clone, PartialEq)]
pub enum Statistic {
    Count,
    Sum(Bounds),
    Mean(Bounds),
    /// Bins `[edges[i], edges[i+1])`; values below the first edge count in the first bin
    /// and values at or above the last in the last (clamping).
    Histogram(Vec<f64>),
    /// One bin per category, and `other` for any other value.
    Categories(Vec<String>),
}

impl Statistic {
    pub fn name(&self) -> &'static str {
        match self {
            Statistic::Count => "count",
            Statistic::Sum(_) => "sum",
            Statistic::Mean(_) => "mean",
            Statistic::Histogram(_) => "histogram",
            Statistic::Categories(_) => "histogram",
        }
    }

    pub fn validate(&self) -> Result<(), PrivacyError> {
        match self {
            Statistic::Count => Ok(()),
            Statistic::Sum(b) | Statistic::Mean(b) => b.validate(),
            Statistic::Histogram(edges) => {
                if edges.len() < 2 || edges.len() > 1001 {
                    return Err(PrivacyError::Invalid(
                        "'bins' must list between 2 and 1001 edges".into(),
                    ));
                }
                if !edges.iter().all(|e| e.is_finite()) || !edges.windows(2).all(|w| w[0] < w[1]) {
                    return Err(PrivacyError::Invalid(
                        "'bins' must be finite numbers in increasing order".into(),
                    ));
                }
                Ok(())
            }
            Statistic::Categories(c) => {
                if c.is_empty() || c.len() > 1000 {
                    return Err(PrivacyError::Invalid(
                        "'categories' must list between 1 and 1000 values".into(),
                    ));
                }
                Ok(())
            }
        }
    }
}

/// One bin of a released histogram.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bin {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    pub count: i128,
}

/// The noise one released number carries.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Accuracy {
    /// Standard deviation of the noise, in the statistic's units.
    pub std_dev: f64,
    /// Half-width of a 95 % interval of the noise, in the statistic's units.
    pub ci95: f64,
}

/// A differentially private release.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Release {
    pub statistic: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// The noisy sum and count a mean was derived from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sum: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bins: Option<Vec<Bin>>,
    /// Per released number (for a mean: of the sum, then of the count).
    pub accuracy: Vec<Accuracy>,
}

fn accuracy(n: &Noise, unit: f64) -> Accuracy {
    Accuracy {
        std_dev: n.std_dev() * unit,
        ci95: n.ci95() * unit,
    }
}

/// Releases `stat` over `units` (each unit's values, at most `max_contributions` of
/// them are used) at `cost`.
pub fn release(
    stat: &Statistic,
    units: &[Vec<Datum>],
    max_contributions: u32,
    cost: Cost,
    rng: &mut dyn RandomBits,
) -> Result<Release, PrivacyError> {
    stat.validate()?;
    let k = max_contributions.max(1) as usize;
    let values = || units.iter().flat_map(|u| u.iter().take(k));
    let numbers = || {
        values().filter_map(|d| match d {
            Datum::Number(x) if x.is_finite() => Some(*x),
            _ => None,
        })
    };
    let mut out = Release {
        statistic: stat.name(),
        value: None,
        sum: None,
        count: None,
        bins: None,
        accuracy: Vec::new(),
    };
    let k128 = k as u128;
    match stat {
        Statistic::Count => {
            let noise = Noise::calibrate(k128, cost)?;
            let n = values().count() as i128;
            out.value = Some(noise.add(rng, n).max(0) as f64);
            out.accuracy.push(accuracy(&noise, 1.0));
        }
        Statistic::Sum(b) | Statistic::Mean(b) => {
            let (lo, hi, r) = b.units();
            let per = lo.unsigned_abs().max(hi.unsigned_abs()).max(1);
            let sens = per.checked_mul(k128).ok_or_else(|| {
                PrivacyError::Invalid("the bounds are too wide for the resolution".into())
            })?;
            let units_sum: i128 = numbers()
                .map(|x| ((x.clamp(b.lower, b.upper) / r).round() as i128).clamp(lo, hi))
                .sum();
            let mean = matches!(stat, Statistic::Mean(_));
            let part = if mean {
                cost.halved().ok_or_else(|| {
                    PrivacyError::Invalid("the privacy cost is too precise to split".into())
                })?
            } else {
                cost
            };
            let sum_noise = Noise::calibrate(sens, part)?;
            let sum = sum_noise.add(rng, units_sum) as f64 * r;
            out.accuracy.push(accuracy(&sum_noise, r));
            if mean {
                let count_noise = Noise::calibrate(k128, part)?;
                let n = count_noise.add(rng, numbers().count() as i128).max(0) as f64;
                out.accuracy.push(accuracy(&count_noise, 1.0));
                out.sum = Some(sum);
                out.count = Some(n);
                // Post-processing: the mean of the noisy parts, clamped to the bounds.
                out.value = Some(if n >= 1.0 {
                    (sum / n).clamp(b.lower, b.upper)
                } else {
                    (b.lower + b.upper) / 2.0
                });
            } else {
                out.value = Some(sum);
            }
        }
        Statistic::Histogram(edges) => {
            let noise = Noise::calibrate(k128, cost)?;
            let mut counts = vec![0i128; edges.len() - 1];
            for x in numbers() {
                // partition_point: the number of edges ≤ x; bin = that - 1, clamped.
                let i = edges.partition_point(|e| *e <= x).saturating_sub(1);
                let last = counts.len() - 1;
                counts[i.min(last)] += 1;
            }
            out.bins = Some(
                counts
                    .into_iter()
                    .enumerate()
                    .map(|(i, c)| Bin {
                        from: Some(edges[i]),
                        to: Some(edges[i + 1]),
                        category: None,
                        count: noise.add(rng, c).max(0),
                    })
                    .collect(),
            );
            out.accuracy.push(accuracy(&noise, 1.0));
        }
        Statistic::Categories(cats) => {
            let noise = Noise::calibrate(k128, cost)?;
            let mut counts = vec![0i128; cats.len() + 1];
            for d in values() {
                let text = match d {
                    Datum::Text(t) => t.clone(),
                    Datum::Number(x) => x.to_string(),
                };
                let i = cats.iter().position(|c| *c == text).unwrap_or(cats.len());
                counts[i] += 1;
            }
            out.bins = Some(
                counts
                    .into_iter()
                    .enumerate()
                    .map(|(i, c)| Bin {
                        from: None,
                        to: None,
                        category: Some(cats.get(i).cloned().unwrap_or_else(|| "other".into())),
                        count: noise.add(rng, c).max(0),
                    })
                    .collect(),
            );
            out.accuracy.push(accuracy(&noise, 1.0));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratio::Ratio;
    use crate::sample::SplitMix64;

    fn eps(s: &str) -> Cost {
        Cost::Epsilon(Ratio::parse("epsilon", s).unwrap())
    }

    fn units(values: &[&[f64]]) -> Vec<Vec<Datum>> {
        values
            .iter()
            .map(|u| u.iter().map(|x| Datum::Number(*x)).collect())
            .collect()
    }

    #[test]
    fn noisy_statistics_centre_on_the_truth() {
        // 200 units of one value each, 50.0; many releases average to the truth.
        let data = units(&vec![&[50.0][..]; 200]);
        let mut rng = SplitMix64(7);
        let b = Bounds {
            lower: 0.0,
            upper: 100.0,
            resolution: None,
        };
        let runs = 400;
        let mut sums = (0.0, 0.0, 0.0);
        for _ in 0..runs {
            let c = release(&Statistic::Count, &data, 1, eps("1"), &mut rng).unwrap();
            let s = release(&Statistic::Sum(b), &data, 1, eps("1"), &mut rng).unwrap();
            let m = release(&Statistic::Mean(b), &data, 1, eps("1"), &mut rng).unwrap();
            sums.0 += c.value.unwrap();
            sums.1 += s.value.unwrap();
            sums.2 += m.value.unwrap();
        }
        let n = runs as f64;
        assert!((sums.0 / n - 200.0).abs() < 0.5, "count {}", sums.0 / n);
        // sum noise sd = √2·100 per release → sd of the mean of 400 runs ≈ 7
        assert!((sums.1 / n - 10_000.0).abs() < 40.0, "sum {}", sums.1 / n);
        assert!((sums.2 / n - 50.0).abs() < 1.0, "mean {}", sums.2 / n);
    }

    #[test]
    fn contributions_and_values_are_clamped() {
        // One unit with 5 huge values, max 2 contributions, bounds [0, 10]: at most 20
        // of the sum comes from it, whatever it holds.
        let data = units(&[&[1e9, 1e9, 1e9, 1e9, 1e9]]);
        let b = Bounds {
            lower: 0.0,
            upper: 10.0,
            resolution: Some(1.0),
        };
        let mut rng = SplitMix64(3);
        let mut total = 0.0;
        for _ in 0..2000 {
            total += release(&Statistic::Sum(b), &data, 2, eps("1"), &mut rng)
                .unwrap()
                .value
                .unwrap();
        }
        assert!((total / 2000.0 - 20.0).abs() < 2.0, "{}", total / 2000.0);
        let r = release(&Statistic::Sum(b), &data, 2, eps("1"), &mut rng).unwrap();
        // sensitivity 2·10 at ε = 1: scale 20, sd = √2·20 ≈ 28.3
        assert!(
            (r.accuracy[0].std_dev - 28.28).abs() < 0.5,
            "{:?}",
            r.accuracy
        );
    }

    #[test]
    fn histograms_put_values_in_their_bins() {
        let data = units(&[&[-5.0], &[0.0], &[5.0], &[9.99], &[10.0], &[50.0]]);
        let edges = vec![0.0, 10.0, 20.0];
        let mut rng = SplitMix64(11);
        let mut totals = [0.0f64; 2];
        let runs = 2000;
        for _ in 0..runs {
            let r = release(
                &Statistic::Histogram(edges.clone()),
                &data,
                1,
                eps("2"),
                &mut rng,
            )
            .unwrap();
            let bins = r.bins.unwrap();
            assert_eq!(bins.len(), 2);
            assert_eq!((bins[1].from, bins[1].to), (Some(10.0), Some(20.0)));
            for (t, b) in totals.iter_mut().zip(&bins) {
                *t += b.count as f64;
            }
        }
        // -5, 0, 5, 9.99 → first bin (4); 10, 50 → last (2). Noise clipped at 0 biases
        // small counts up a little.
        assert!((totals[0] / runs as f64 - 4.0).abs() < 0.3, "{totals:?}");
        assert!((totals[1] / runs as f64 - 2.0).abs() < 0.4, "{totals:?}");
    }

    #[test]
    fn categories_count_the_others() {
        let data = vec![
            vec![Datum::Text("free".into())],
            vec![Datum::Text("occupied".into())],
            vec![Datum::Text("closed".into())],
        ];
        let mut rng = SplitMix64(5);
        let r = release(
            &Statistic::Categories(vec!["free".into(), "occupied".into()]),
            &data,
            1,
            eps("1"),
            &mut rng,
        )
        .unwrap();
        let names: Vec<_> = r
            .bins
            .unwrap()
            .iter()
            .map(|b| b.category.clone().unwrap())
            .collect();
        assert_eq!(names, ["free", "occupied", "other"]);
    }

    #[test]
    fn bad_statistics_are_refused_by_name() {
        let mut rng = SplitMix64(1);
        let cases = [
            (Statistic::Histogram(vec![1.0]), "bins"),
            (Statistic::Histogram(vec![2.0, 1.0]), "bins"),
            (Statistic::Categories(vec![]), "categories"),
            (
                Statistic::Sum(Bounds {
                    lower: 5.0,
                    upper: 1.0,
                    resolution: None,
                }),
                "lower",
            ),
            (
                Statistic::Mean(Bounds {
                    lower: 0.0,
                    upper: 1.0,
                    resolution: Some(0.0),
                }),
                "resolution",
            ),
        ];
        for (s, field) in cases {
            let e = release(&s, &[], 1, eps("1"), &mut rng)
                .unwrap_err()
                .to_string();
            assert!(e.contains(field), "{s:?}: {e}");
        }
    }
}
