#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure
//! Statistical tests of the samplers: the empirical distribution of many draws against
//! the exact probability mass function, by Pearson's χ² test (seeded, so a run is
//! reproducible; the critical values are at p = 0.001, so a correct sampler fails a
//! given seed with probability 1/1000, and a wrong one fails for sure at these sizes).

use citybrain_privacy::sample::{discrete_gaussian, discrete_laplace, SplitMix64};
use citybrain_privacy::{Cost, Noise, Ratio};

/// χ² critical values at p = 0.001 by degrees of freedom (Wilson–Hilferty
/// approximation, accurate to < 0.5 % above 10 degrees of freedom).
fn critical(dof: usize) -> f64 {
    let k = dof as f64;
    let z = 3.0902; // the 0.999 quantile of the standard normal
    k * (1.0 - 2.0 / (9.0 * k) + z * (2.0 / (9.0 * k)).sqrt()).powi(3)
}

/// χ² of `samples` against `pmf`, over the values whose expected count is at least 5
/// (the tails pooled into one cell).
fn chi_square(samples: &[i128], pmf: impl Fn(i128) -> f64, range: i128) -> (f64, usize) {
    let n = samples.len() as f64;
    let mut cells: Vec<(f64, f64)> = Vec::new(); // (observed, expected)
    let mut tail = (0.0, 1.0);
    for x in -range..=range {
        let e = pmf(x) * n;
        let o = samples.iter().filter(|&&s| s == x).count() as f64;
        if e >= 5.0 {
            cells.push((o, e));
            tail.1 -= pmf(x);
        }
    }
    let inside: f64 = cells.iter().map(|c| c.0).sum();
    tail.0 = n - inside;
    tail.1 *= n;
    if tail.1 >= 5.0 {
        cells.push(tail);
    }
    let chi: f64 = cells.iter().map(|(o, e)| (o - e) * (o - e) / e).sum();
    (chi, cells.len() - 1)
}

#[test]
fn discrete_laplace_follows_its_distribution() {
    for (t, s, seed) in [(1u128, 1u128, 1u64), (5, 2, 2), (20, 1, 3), (3, 7, 4)] {
        let mut rng = SplitMix64(seed);
        let samples: Vec<i128> = (0..100_000)
            .map(|_| discrete_laplace(&mut rng, t, s))
            .collect();
        let q = (-(s as f64) / t as f64).exp();
        let pmf = |x: i128| (1.0 - q) / (1.0 + q) * q.powi(x.unsigned_abs() as i32);
        let (chi, dof) = chi_square(&samples, pmf, 200);
        assert!(
            chi < critical(dof),
            "scale {t}/{s}: χ² = {chi:.1} over {dof} degrees of freedom (critical {:.1})",
            critical(dof)
        );
        // and the moments
        let mean = samples.iter().sum::<i128>() as f64 / samples.len() as f64;
        let var = samples
            .iter()
            .map(|&x| (x as f64 - mean).powi(2))
            .sum::<f64>()
            / samples.len() as f64;
        let want = 2.0 * q / ((1.0 - q) * (1.0 - q));
        assert!((var / want - 1.0).abs() < 0.05, "variance {var} vs {want}");
        assert!(mean.abs() < 5.0 * (want / samples.len() as f64).sqrt() + 1e-9);
    }
}

#[test]
fn discrete_gaussian_follows_its_distribution() {
    for (sigma2, seed) in [(1u128, 10u64), (4, 11), (50, 12), (1000, 13)] {
        let mut rng = SplitMix64(seed);
        let samples: Vec<i128> = (0..100_000)
            .map(|_| discrete_gaussian(&mut rng, sigma2))
            .collect();
        let s2 = sigma2 as f64;
        let range = (12.0 * s2.sqrt()) as i128 + 5;
        let z: f64 = (-range * 3..=range * 3)
            .map(|x| (-(x * x) as f64 / (2.0 * s2)).exp())
            .sum();
        let pmf = |x: i128| (-(x * x) as f64 / (2.0 * s2)).exp() / z;
        let (chi, dof) = chi_square(&samples, pmf, range);
        assert!(
            chi < critical(dof),
            "σ² = {sigma2}: χ² = {chi:.1} over {dof} degrees of freedom (critical {:.1})",
            critical(dof)
        );
        let var = samples.iter().map(|&x| (x * x) as f64).sum::<f64>() / samples.len() as f64;
        // The discrete Gaussian's variance is below σ² and close to it for σ ≥ 1.
        assert!(
            var <= s2 * 1.03 && var >= s2 * 0.9,
            "σ² = {sigma2}: variance {var}"
        );
    }
}

#[test]
fn a_wrong_distribution_is_caught() {
    // The test above is not vacuous: Laplace draws of scale 2 fail against scale 1.5.
    let mut rng = SplitMix64(99);
    let samples: Vec<i128> = (0..100_000)
        .map(|_| discrete_laplace(&mut rng, 2, 1))
        .collect();
    let q = (-1.0f64 / 1.5).exp();
    let pmf = |x: i128| (1.0 - q) / (1.0 + q) * q.powi(x.unsigned_abs() as i32);
    let (chi, dof) = chi_square(&samples, pmf, 200);
    assert!(chi > critical(dof), "χ² = {chi}");
}

#[test]
fn calibrated_noise_has_the_promised_spread() {
    let eps = Cost::Epsilon(Ratio::parse("epsilon", "0.5").unwrap());
    let n = Noise::calibrate(1, eps).unwrap();
    let mut rng = SplitMix64(21);
    let draws: Vec<i128> = (0..50_000).map(|_| n.add(&mut rng, 0)).collect();
    let sd = (draws.iter().map(|&x| (x * x) as f64).sum::<f64>() / draws.len() as f64).sqrt();
    assert!(
        (sd / n.std_dev() - 1.0).abs() < 0.05,
        "{sd} vs {}",
        n.std_dev()
    );
    let inside = draws
        .iter()
        .filter(|&&x| (x as f64).abs() <= n.ci95())
        .count() as f64
        / draws.len() as f64;
    assert!((0.95..0.99).contains(&inside), "{inside}");
}

mod parsing {
    use citybrain_privacy::Ratio;
    use proptest::prelude::*;

    proptest! {
        /// Any text: an error or a reduced rational, never a panic.
        #[test]
        fn any_text_parses_or_is_refused(s in "\\PC{0,40}") {
            if let Ok(r) = Ratio::parse("epsilon", &s) {
                prop_assert!(r.d > 0);
            }
        }

        /// A decimal written with up to 6 fractional digits parses to exactly n / 10^k.
        #[test]
        fn decimals_parse_exactly(int in 0u64..1_000_000, frac in 0u64..1_000_000, k in 1u32..=6) {
            let frac = frac % 10u64.pow(k);
            let text = format!("{int}.{frac:0width$}", width = k as usize);
            let r = Ratio::parse("epsilon", &text).unwrap();
            let want = Ratio::new(int as u128 * 10u128.pow(k) + frac as u128, 10u128.pow(k)).unwrap();
            prop_assert_eq!(r, want);
        }
    }
}
