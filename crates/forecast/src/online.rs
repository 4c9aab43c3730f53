//! Online forecasts for live series (a detector's speed every period): per series and
//! per horizon, a recursive-least-squares regression of the change ahead on the last
//! `lags` values, with exponential forgetting, and a band from the running squared
//! error of that horizon's own past forecasts.
//!
//! Untrained, every forecast is the last value (the weights start at zero and the
//! target is the change from the last value), so a new detector starts at the
//! persistence baseline and improves as it learns.

use std::collections::{HashMap, VecDeque};

use serde::Serialize;

/// One forecast: `steps` ahead, with its band (≈ 95 %: ±1.96 root-mean-square error).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Forecast {
    pub steps: usize,
    pub value: f64,
    pub lower: f64,
    pub upper: f64,
}

#[derive(Debug, Clone)]
pub struct OnlineSettings {
    pub lags: usize,
    /// Horizons, in steps.
    pub horizons: Vec<usize>,
    /// RLS forgetting factor (close to 1: long memory).
    pub forgetting: f64,
    /// Weight of the newest squared error in the band's running mean.
    pub band_weight: f64,
}

impl Default for OnlineSettings {
    fn default() -> Self {
        OnlineSettings {
            lags: 12,
            horizons: vec![5, 15, 30, 60],
            forgetting: 0.999,
            band_weight: 0.02,
        }
    }
}

#[derive(Debug, Clone)]
struct Rls {
    w: Vec<f64>,
    p: Vec<Vec<f64>>,
    mse: Option<f64>,
}

impl Rls {
    fn new(f: usize) -> Rls {
        let mut p = vec![vec![0.0; f]; f];
        for (i, row) in p.iter_mut().enumerate() {
            row[i] = 100.0;
        }
        Rls {
            w: vec![0.0; f],
            p,
            mse: None,
        }
    }
    fn predict(&self, x: &[f64]) -> f64 {
        self.w.iter().zip(x).map(|(a, b)| a * b).sum()
    }
    /// The standard RLS update with forgetting factor `lambda`.
    #[allow(clippy::needless_range_loop)] // dense linear algebra reads best with indices
    fn update(&mut self, x: &[f64], y: f64, lambda: f64) {
        let f = x.len();
        let px: Vec<f64> = (0..f)
            .map(|i| (0..f).map(|j| self.p[i][j] * x[j]).sum())
            .collect();
        let denom = lambda + x.iter().zip(&px).map(|(a, b)| a * b).sum::<f64>();
        if !(denom.is_finite() && denom > 1e-12) {
            return;
        }
        let k: Vec<f64> = px.iter().map(|v| v / denom).collect();
        let err = y - self.predict(x);
        for i in 0..f {
            self.w[i] += k[i] * err;
        }
        for i in 0..f {
            for j in 0..f {
                self.p[i][j] = (self.p[i][j] - k[i] * px[j]) / lambda;
            }
        }
    }
}

#[derive(Debug, Clone)]
struct State {
    /// The newest value last.
    recent: VecDeque<f64>,
    /// Feature vectors of past steps (the newest last), kept for the longest horizon.
    past: VecDeque<(Vec<f64>, f64)>,
    models: Vec<Rls>,
}

/// Online forecasters for many series, by key.
#[derive(Debug, Clone, Default)]
pub struct Online {
    settings: OnlineSettings,
    series: HashMap<String, State>,
}

impl Online {
    pub fn new(settings: OnlineSettings) -> Online {
        Online {
            settings,
            series: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Drops a series and what was learnt of it (its sensor is gone).
    pub fn forget(&mut self, key: &str) {
        self.series.remove(key);
    }

    /// Features: the last `lags` values minus the newest (the newest is the level the
    /// change is predicted from), scaled down, and an intercept.
    fn features(recent: &VecDeque<f64>, lags: usize) -> Option<(Vec<f64>, f64)> {
        if recent.len() < lags {
            return None;
        }
        let last = *recent.back()?;
        let mut x: Vec<f64> = recent
            .iter()
            .skip(recent.len() - lags)
            .map(|v| (v - last) / 10.0)
            .collect();
        x.push(1.0);
        Some((x, last))
    }

    /// Takes the series' next value (one per step) and returns its forecasts.
    pub fn observe(&mut self, key: &str, value: f64) -> Vec<Forecast> {
        let s = &self.settings;
        let f = s.lags + 1;
        let max_h = s.horizons.iter().copied().max().unwrap_or(1);
        let st = self.series.entry(key.to_string()).or_insert_with(|| State {
            recent: VecDeque::with_capacity(s.lags + 1),
            past: VecDeque::with_capacity(max_h + 1),
            models: s.horizons.iter().map(|_| Rls::new(f)).collect(),
        });
        if !value.is_finite() {
            return Vec::new();
        }
        // Learn: the features of `h` steps ago now have their answer.
        for (k, h) in s.horizons.iter().enumerate() {
            if st.past.len() >= *h {
                let (x, level) = &st.past[st.past.len() - h];
                let m = &mut st.models[k];
                let err = value - (level + 10.0 * m.predict(x));
                m.mse = Some(match m.mse {
                    Some(old) => (1.0 - s.band_weight) * old + s.band_weight * err * err,
                    None => err * err,
                });
                m.update(x, (value - level) / 10.0, s.forgetting);
            }
        }
        st.recent.push_back(value);
        if st.recent.len() > s.lags {
            st.recent.pop_front();
        }
        let Some((x, level)) = Self::features(&st.recent, s.lags) else {
            return Vec::new();
        };
        let out = s
            .horizons
            .iter()
            .zip(&st.models)
            .map(|(h, m)| {
                let value = level + 10.0 * m.predict(&x);
                let half = 1.96 * m.mse.unwrap_or(0.0).sqrt();
                Forecast {
                    steps: *h,
                    value,
                    lower: value - half,
                    upper: value + half,
                }
            })
            .collect();
        st.past.push_back((x, level));
        if st.past.len() > max_h {
            st.past.pop_front();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrained_it_is_persistence_and_it_learns_a_cycle() {
        let mut o = Online::new(OnlineSettings {
            lags: 6,
            horizons: vec![1, 3],
            ..OnlineSettings::default()
        });
        let f = (0..6)
            .map(|t| o.observe("a", 50.0 + t as f64))
            .last()
            .unwrap();
        assert_eq!(f[0].value, 55.0, "starts at the last value");
        // A clean sine of period 24 steps: after learning, forecasts beat persistence.
        let wave = |t: usize| 50.0 + 20.0 * (t as f64 * std::f64::consts::TAU / 24.0).sin();
        let (mut err, mut naive) = (0.0, 0.0);
        let mut prev: Option<Vec<Forecast>> = None;
        for t in 0..2000 {
            let v = wave(t);
            if t > 1500 {
                if let Some(p) = &prev {
                    err += (p[0].value - v).abs();
                    naive += (wave(t - 1) - v).abs();
                }
            }
            prev = Some(o.observe("b", v));
        }
        assert!(err < naive / 10.0, "learnt {err} vs persistence {naive}");
        let p = prev.unwrap();
        assert!(p[1].lower <= p[1].value && p[1].value <= p[1].upper);
        assert!(
            p[1].upper - p[1].lower < 2.0,
            "a narrow band on a clean signal: {p:?}"
        );
        assert_eq!(o.len(), 2);
    }
}
