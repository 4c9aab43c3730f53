//! Forecasting models. Every model predicts, for each sensor, the value `h` steps after
//! step `t` from steps `t − lags + 1 ..= t` (and what it learnt from the training rows).
//!
//! - `last`: the last value (persistence);
//! - `average`: the sensor's mean at that time of day over the training rows;
//! - `ridge`: per sensor and step, a ridge regression on the sensor's lags, the
//!   weighted mean of its neighbours' lags (when an adjacency is given) and its
//!   time-of-day means at the target and the current step, with an intercept.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "model", rename_all = "snake_case")]
pub enum ModelKind {
    Last,
    Average,
    Ridge { lambda: f64 },
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelKind::Last => f.write_str("last"),
            ModelKind::Average => f.write_str("average"),
            ModelKind::Ridge { lambda } => write!(f, "ridge(lambda={lambda})"),
        }
    }
}

/// The shape of the problem.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Input steps (the last hour).
    pub lags: usize,
    /// Steps predicted (1..=horizon).
    pub horizon: usize,
    /// Steps per day (time-of-day slots); row 0 is taken as the start of a day.
    pub slots: usize,
    /// Per sensor: (neighbour, weight), weights summing to 1; empty: no graph.
    pub neighbours: Vec<Vec<(usize, f64)>>,
}

impl Setup {
    /// Neighbour lists from an adjacency matrix (row-normalised, diagonal ignored).
    pub fn neighbours_from(adj: &[Vec<f64>]) -> Vec<Vec<(usize, f64)>> {
        adj.iter()
            .enumerate()
            .map(|(i, row)| {
                let total: f64 = row
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, w)| w)
                    .sum();
                if total <= 0.0 {
                    return Vec::new();
                }
                row.iter()
                    .enumerate()
                    .filter(|(j, w)| *j != i && **w > 0.0)
                    .map(|(j, w)| (j, w / total))
                    .collect()
            })
            .collect()
    }
}

/// A model fitted on rows `0..train_end` of a series.
#[derive(Debug, Clone)]
pub struct Fitted {
    pub kind: ModelKind,
    /// Time-of-day means: `profile[slot][sensor]`.
    profile: Vec<Vec<f64>>,
    /// Ridge weights: `weights[h - 1][sensor]`.
    weights: Vec<Vec<Vec<f64>>>,
}

/// Time-of-day means over rows `0..end` (a slot never seen takes the sensor's mean).
fn profile(values: &[Vec<f64>], end: usize, slots: usize) -> Vec<Vec<f64>> {
    let n = values.first().map_or(0, Vec::len);
    let mut sum = vec![vec![0.0; n]; slots];
    let mut count = vec![0usize; slots];
    let mut total = vec![0.0; n];
    for (t, row) in values.iter().enumerate().take(end) {
        let k = t % slots;
        count[k] += 1;
        for s in 0..n {
            sum[k][s] += row[s];
            total[s] += row[s];
        }
    }
    let all = end.max(1) as f64;
    (0..slots)
        .map(|k| {
            (0..n)
                .map(|s| {
                    if count[k] > 0 {
                        sum[k][s] / count[k] as f64
                    } else {
                        total[s] / all
                    }
                })
                .collect()
        })
        .collect()
}

fn neighbour_mean(values: &[Vec<f64>], t: usize, nb: &[(usize, f64)]) -> f64 {
    nb.iter().map(|(j, w)| values[t][*j] * w).sum()
}

/// The ridge features of sensor `s` at step `t` for step `h`.
fn features(
    values: &[Vec<f64>],
    setup: &Setup,
    prof: &[Vec<f64>],
    t: usize,
    h: usize,
    s: usize,
    out: &mut Vec<f64>,
) {
    out.clear();
    let first = t + 1 - setup.lags;
    out.extend(values[first..=t].iter().map(|row| row[s]));
    if let Some(nb) = setup.neighbours.get(s).filter(|nb| !nb.is_empty()) {
        for u in first..=t {
            out.push(neighbour_mean(values, u, nb));
        }
    }
    out.push(prof[(t + h) % setup.slots][s]);
    out.push(prof[t % setup.slots][s]);
    out.push(1.0);
}

// Dense linear algebra reads best with indices.
#[allow(clippy::needless_range_loop)]
/// Solves (XᵀX + λI') w = Xᵀy by Cholesky (the intercept, last, is not penalised).
fn ridge(xtx: &mut [Vec<f64>], xty: &[f64], lambda: f64) -> Vec<f64> {
    let f = xty.len();
    for (i, row) in xtx.iter_mut().enumerate().take(f.saturating_sub(1)) {
        row[i] += lambda;
    }
    // A tiny jitter keeps a rank-deficient system (a constant sensor) solvable.
    for (i, row) in xtx.iter_mut().enumerate() {
        row[i] += 1e-9 * (1.0 + row[i].abs());
    }
    let mut l = vec![vec![0.0; f]; f];
    for i in 0..f {
        for j in 0..=i {
            let mut sum = xtx[i][j];
            for k in 0..j {
                sum -= l[i][k] * l[j][k];
            }
            if i == j {
                l[i][i] = sum.max(1e-12).sqrt();
            } else {
                l[i][j] = sum / l[j][j];
            }
        }
    }
    let mut z = vec![0.0; f];
    for i in 0..f {
        let mut sum = xty[i];
        for k in 0..i {
            sum -= l[i][k] * z[k];
        }
        z[i] = sum / l[i][i];
    }
    let mut w = vec![0.0; f];
    for i in (0..f).rev() {
        let mut sum = z[i];
        for k in i + 1..f {
            sum -= l[k][i] * w[k];
        }
        w[i] = sum / l[i][i];
    }
    w
}

#[allow(clippy::needless_range_loop)]
/// Fits `kind` on windows ending at `last_inputs` (each with `t + horizon` inside the
/// training rows `0..train_end`).
pub fn fit(
    kind: ModelKind,
    values: &[Vec<f64>],
    setup: &Setup,
    train_end: usize,
    last_inputs: &[usize],
) -> Fitted {
    let prof = profile(values, train_end, setup.slots);
    let mut weights = Vec::new();
    if let ModelKind::Ridge { lambda } = kind {
        let n = values.first().map_or(0, Vec::len);
        let mut x = Vec::new();
        for h in 1..=setup.horizon {
            let mut per_sensor = Vec::with_capacity(n);
            for s in 0..n {
                features(values, setup, &prof, setup.lags - 1, h, s, &mut x);
                let f = x.len();
                let mut xtx = vec![vec![0.0; f]; f];
                let mut xty = vec![0.0; f];
                for &t in last_inputs {
                    features(values, setup, &prof, t, h, s, &mut x);
                    let y = values[t + h][s];
                    for i in 0..f {
                        xty[i] += x[i] * y;
                        for j in 0..=i {
                            xtx[i][j] += x[i] * x[j];
                        }
                    }
                }
                for i in 0..f {
                    for j in 0..i {
                        xtx[j][i] = xtx[i][j];
                    }
                }
                per_sensor.push(ridge(&mut xtx, &xty, lambda));
            }
            weights.push(per_sensor);
        }
    }
    Fitted {
        kind,
        profile: prof,
        weights,
    }
}

impl Fitted {
    /// Predictions for every sensor, `h` steps after `t`.
    pub fn predict(
        &self,
        values: &[Vec<f64>],
        setup: &Setup,
        t: usize,
        h: usize,
        out: &mut Vec<f64>,
    ) {
        out.clear();
        let n = values.first().map_or(0, Vec::len);
        match self.kind {
            ModelKind::Last => out.extend_from_slice(&values[t]),
            ModelKind::Average => out.extend_from_slice(&self.profile[(t + h) % setup.slots]),
            ModelKind::Ridge { .. } => {
                let mut x = Vec::new();
                for s in 0..n {
                    features(values, setup, &self.profile, t, h, s, &mut x);
                    let w = &self.weights[h - 1][s];
                    out.push(x.iter().zip(w).map(|(a, b)| a * b).sum());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ridge_recovers_a_linear_law() {
        // y = 2 a − b + 3, exactly: λ → 0 recovers it.
        let rows: Vec<[f64; 3]> = (0..50)
            .map(|i| [i as f64, (i * i % 7) as f64, 1.0])
            .collect();
        let mut xtx = vec![vec![0.0; 3]; 3];
        let mut xty = vec![0.0; 3];
        for r in &rows {
            let y = 2.0 * r[0] - r[1] + 3.0;
            for i in 0..3 {
                xty[i] += r[i] * y;
                for j in 0..3 {
                    xtx[i][j] += r[i] * r[j];
                }
            }
        }
        let w = ridge(&mut xtx, &xty, 0.0);
        assert!(
            (w[0] - 2.0).abs() < 1e-6 && (w[1] + 1.0).abs() < 1e-6 && (w[2] - 3.0).abs() < 1e-5,
            "{w:?}"
        );
    }

    #[test]
    fn profiles_average_each_time_of_day() {
        let values: Vec<Vec<f64>> = (0..8)
            .map(|t| vec![(t % 4) as f64 * 10.0 + (t / 4) as f64])
            .collect();
        let p = profile(&values, 8, 4);
        assert_eq!(p[1][0], 10.5);
        assert_eq!(p[3][0], 30.5);
        // Slots never seen fall back to the overall mean.
        let p = profile(&values, 2, 4);
        assert_eq!(p[3][0], 5.0);
    }
}
