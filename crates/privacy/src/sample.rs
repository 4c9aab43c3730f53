//! Exact samplers: Bernoulli(p) and Bernoulli(exp(-γ)) for rational p and γ, the
//! discrete Laplace and the discrete Gaussian, after Canonne, Kamath and Steinke, "The
//! Discrete Gaussian for Differential Privacy" (NeurIPS 2020), Algorithms 1–3.
//!
//! Every step draws uniform integers and compares integers: no floating-point number
//! is ever sampled or rounded, so the attacks on textbook Laplace noise (Mironov 2012:
//! the low bits of a double give the secret away) do not apply.

use crate::ratio::Ratio;

/// A source of uniformly random 64-bit words.
pub trait RandomBits {
    fn next_u64(&mut self) -> u64;
}

/// Random words from the operating system (`getrandom`), drawn 512 bytes at a time.
pub struct OsRandom {
    buf: [u8; 512],
    at: usize,
}

impl Default for OsRandom {
    fn default() -> Self {
        OsRandom {
            buf: [0; 512],
            at: 512,
        }
    }
}

impl RandomBits for OsRandom {
    fn next_u64(&mut self) -> u64 {
        if self.at + 8 > self.buf.len() {
            // The operating system's generator does not fail once the process runs
            // (Linux getrandom(2) blocks only until the pool is initialised at boot); if
            // it ever did, noise from a weak source would break the guarantee silently,
            // so the process stops instead of answering.
            if let Err(e) = getrandom::fill(&mut self.buf) {
                panic!("the operating system's random generator failed: {e}");
            }
            self.at = 0;
        }
        let mut w = [0u8; 8];
        w.copy_from_slice(&self.buf[self.at..self.at + 8]);
        self.at += 8;
        u64::from_le_bytes(w)
    }
}

/// A uniform integer in `[0, n)`, `n > 0`, by rejection (no modulo bias).
pub fn uniform_below(rng: &mut dyn RandomBits, n: u128) -> u128 {
    debug_assert!(n > 0);
    if n <= 1 {
        return 0;
    }
    let bits = 128 - (n - 1).leading_zeros();
    let mask = if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    loop {
        let x = ((rng.next_u64() as u128) << 64 | rng.next_u64() as u128) & mask;
        if x < n {
            return x;
        }
    }
}

/// Bernoulli(n/d), `n <= d`.
pub fn bernoulli(rng: &mut dyn RandomBits, n: u128, d: u128) -> bool {
    uniform_below(rng, d) < n
}

/// Bernoulli(exp(-γ)) for γ = n/d in [0, 1] (Algorithm 1, first part).
fn bernoulli_exp_unit(rng: &mut dyn RandomBits, n: u128, d: u128) -> bool {
    let mut k: u128 = 1;
    // Bernoulli(γ / k); d * k stays far inside u128 (d ≤ 2^61 and k is a Poisson-like
    // count that is almost never above 20).
    while let Some(dk) = d.checked_mul(k) {
        if !bernoulli(rng, n, dk) {
            break;
        }
        k += 1;
    }
    k % 2 == 1
}

/// Bernoulli(exp(-γ)) for any rational γ ≥ 0 (Algorithm 1).
pub fn bernoulli_exp(rng: &mut dyn RandomBits, gamma: Ratio) -> bool {
    let (mut n, d) = (gamma.n, gamma.d);
    while n > d {
        if !bernoulli_exp_unit(rng, 1, 1) {
            return false;
        }
        n -= d;
    }
    bernoulli_exp_unit(rng, n, d)
}

/// The discrete Laplace with scale `t/s` (Algorithm 2): P(x) ∝ exp(-|x|·s/t).
pub fn discrete_laplace(rng: &mut dyn RandomBits, t: u128, s: u128) -> i128 {
    debug_assert!(t > 0 && s > 0);
    loop {
        let u = uniform_below(rng, t);
        if !bernoulli_exp(rng, Ratio { n: u, d: t }) {
            continue;
        }
        let mut v: u128 = 0;
        while bernoulli_exp(rng, Ratio { n: 1, d: 1 }) {
            v += 1;
        }
        let x = u + t.saturating_mul(v);
        let y = x / s;
        let negative = bernoulli(rng, 1, 2);
        if negative && y == 0 {
            continue;
        }
        let y = y.min(i128::MAX as u128) as i128;
        return if negative { -y } else { y };
    }
}

/// The discrete Gaussian with variance parameter σ² (an integer; Algorithm 3):
/// P(x) ∝ exp(-x²/(2σ²)).
pub fn discrete_gaussian(rng: &mut dyn RandomBits, sigma2: u128) -> i128 {
    debug_assert!(sigma2 > 0);
    // t = floor(σ) + 1
    let t = sigma2.isqrt() + 1;
    loop {
        let y = discrete_laplace(rng, t, 1);
        let a = y.unsigned_abs();
        // γ = (|y| - σ²/t)² / (2σ²) = (|y|·t - σ²)² / (2σ²t²)
        let diff = (a.saturating_mul(t)).abs_diff(sigma2);
        let (Some(num), Some(den)) = (
            diff.checked_mul(diff),
            sigma2.checked_mul(2).and_then(|x| x.checked_mul(t * t)),
        ) else {
            // Beyond u128: exp(-γ) is astronomically small, so the sample is rejected.
            continue;
        };
        if bernoulli_exp(rng, Ratio { n: num, d: den }) {
            return y;
        }
    }
}

/// SplitMix64: a small seeded generator for reproducible statistical tests. Not for
/// production noise (predictable from its seed).
pub struct SplitMix64(pub u64);

impl RandomBits for SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_is_in_range_and_covers_it() {
        let mut rng = SplitMix64(1);
        let mut seen = [0u32; 7];
        for _ in 0..7000 {
            seen[uniform_below(&mut rng, 7) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| (850..1150).contains(&c)), "{seen:?}");
        assert_eq!(uniform_below(&mut rng, 1), 0);
        assert!(uniform_below(&mut rng, u128::MAX) < u128::MAX);
    }

    #[test]
    fn bernoulli_exp_matches_its_probability() {
        let mut rng = SplitMix64(2);
        for (n, d) in [(0u128, 1u128), (1, 2), (1, 1), (3, 1), (7, 3)] {
            let trials = 200_000;
            let hits = (0..trials)
                .filter(|_| bernoulli_exp(&mut rng, Ratio { n, d }))
                .count();
            let p = (-(n as f64) / d as f64).exp();
            let got = hits as f64 / trials as f64;
            let sd = (p * (1.0 - p) / trials as f64).sqrt();
            assert!(
                (got - p).abs() <= 5.0 * sd + 1e-9,
                "exp(-{n}/{d}) = {p}, sampled {got}"
            );
        }
    }
}
