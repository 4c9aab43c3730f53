//! The T-GCN paper's and code's figures, over any set of (actual, predicted) pairs.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Metrics {
    /// 1 − ‖Y − Ŷ‖_F / ‖Y‖_F.
    pub accuracy: f64,
    pub rmse: f64,
    pub mae: f64,
    /// Mean |Y − Ŷ| / |Y| over the non-zero actual values, in per cent.
    pub mape: f64,
    pub r2: f64,
    pub n: usize,
}

/// Accumulates pairs; [`Acc::finish`] computes the figures.
#[derive(Debug, Clone, Default)]
pub struct Acc {
    n: usize,
    se: f64,
    ae: f64,
    ape: f64,
    ape_n: usize,
    yy: f64,
    y: f64,
}

impl Acc {
    pub fn add(&mut self, actual: f64, predicted: f64) {
        let e = actual - predicted;
        self.n += 1;
        self.se += e * e;
        self.ae += e.abs();
        if actual != 0.0 {
            self.ape += (e / actual).abs();
            self.ape_n += 1;
        }
        self.yy += actual * actual;
        self.y += actual;
    }

    pub fn merge(&mut self, o: &Acc) {
        self.n += o.n;
        self.se += o.se;
        self.ae += o.ae;
        self.ape += o.ape;
        self.ape_n += o.ape_n;
        self.yy += o.yy;
        self.y += o.y;
    }

    pub fn finish(&self) -> Metrics {
        let n = self.n.max(1) as f64;
        let mean = self.y / n;
        // Σ(y − ȳ)² = Σy² − n ȳ².
        let ss_tot = (self.yy - n * mean * mean).max(0.0);
        Metrics {
            accuracy: if self.yy > 0.0 {
                1.0 - (self.se / self.yy).sqrt()
            } else {
                0.0
            },
            rmse: (self.se / n).sqrt(),
            mae: self.ae / n,
            mape: if self.ape_n > 0 {
                100.0 * self.ape / self.ape_n as f64
            } else {
                0.0
            },
            r2: if ss_tot > 0.0 {
                1.0 - self.se / ss_tot
            } else {
                0.0
            },
            n: self.n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_match_their_definitions() {
        let mut a = Acc::default();
        for (y, p) in [(10.0, 8.0), (20.0, 23.0), (30.0, 30.0), (40.0, 44.0)] {
            a.add(y, p);
        }
        let m = a.finish();
        // errors 2, −3, 0, −4: Σe² = 29, Σ|e| = 9, Σy² = 3000, ȳ = 25, Σ(y−ȳ)² = 500.
        assert!((m.rmse - (29.0f64 / 4.0).sqrt()).abs() < 1e-12);
        assert!((m.mae - 2.25).abs() < 1e-12);
        assert!((m.accuracy - (1.0 - (29.0f64 / 3000.0).sqrt())).abs() < 1e-12);
        assert!((m.r2 - (1.0 - 29.0 / 500.0)).abs() < 1e-12);
        assert!((m.mape - 100.0 * (0.2 + 0.15 + 0.0 + 0.1) / 4.0).abs() < 1e-12);
    }
}
