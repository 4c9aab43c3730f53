//! `citybrain forecast eval`: a chronological split (train on the first part, test on
//! the rest), model selection on the last fifth of the training windows (never on the
//! test part), every step up to the horizon predicted from the last hour, and the
//! figures for the chosen model and the two baselines.

use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;

use crate::data::{read_adjacency, Series};
use crate::metrics::{Acc, Metrics};
use crate::model::{fit, Fitted, ModelKind, Setup};
use crate::ForecastError;

#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub input: PathBuf,
    pub adjacency: Option<PathBuf>,
    /// Seconds between rows.
    pub interval: u64,
    /// Seconds ahead (the last step predicted).
    pub horizon: u64,
    /// Share of the rows to train on.
    pub train: f64,
    /// `auto` (select on validation), `last`, `average` or `ridge`.
    pub model: String,
    pub predictions_out: Option<PathBuf>,
}

/// Ridge penalties tried by model selection.
const LAMBDAS: [f64; 7] = [0.1, 1.0, 10.0, 100.0, 1000.0, 3000.0, 10000.0];

#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    #[serde(flatten)]
    pub pooled: Metrics,
    pub per_step: Vec<Metrics>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    pub model: String,
    pub validation_rmse: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub model: String,
    #[serde(flatten)]
    pub figures: Figures,
    pub last_value: Figures,
    pub historical_average: Figures,
    pub selection: Vec<Candidate>,
    pub sensors: usize,
    pub rows: usize,
    pub train_rows: usize,
    pub lags: usize,
    pub horizon_steps: usize,
    pub test_windows: usize,
    pub fit_seconds: f64,
}

/// Windows' last input steps `t` with `t − lags + 1 ≥ lo` and `t + horizon < hi`.
fn windows(lo: usize, hi: usize, setup: &Setup) -> Vec<usize> {
    let first = lo + setup.lags - 1;
    if hi < setup.horizon + 1 || first + setup.horizon >= hi {
        return Vec::new();
    }
    (first..hi - setup.horizon).collect()
}

fn score(model: &Fitted, values: &[Vec<f64>], setup: &Setup, ts: &[usize]) -> Figures {
    let mut steps = vec![Acc::default(); setup.horizon];
    let mut pred = Vec::new();
    for &t in ts {
        for (h, acc) in (1..=setup.horizon).zip(steps.iter_mut()) {
            model.predict(values, setup, t, h, &mut pred);
            for (s, p) in pred.iter().enumerate() {
                acc.add(values[t + h][s], *p);
            }
        }
    }
    let mut all = Acc::default();
    steps.iter().for_each(|a| all.merge(a));
    Figures {
        pooled: all.finish(),
        per_step: steps.iter().map(Acc::finish).collect(),
    }
}

pub fn evaluate(o: &EvalOptions) -> Result<EvalReport, ForecastError> {
    let bad = |m: String| ForecastError::Options(m);
    if o.interval == 0 || o.horizon < o.interval || !o.horizon.is_multiple_of(o.interval) {
        return Err(bad(format!(
            "horizon ({} s) must be a positive multiple of the interval ({} s)",
            o.horizon, o.interval
        )));
    }
    if !(o.train > 0.0 && o.train < 1.0) {
        return Err(bad("--train must be between 0 and 1 (exclusive)".into()));
    }
    let series = Series::read(&o.input)?;
    let neighbours = match &o.adjacency {
        Some(p) => Setup::neighbours_from(&read_adjacency(p, series.width())?),
        None => Vec::new(),
    };
    let setup = Setup {
        lags: (3600 / o.interval).max(1) as usize,
        horizon: (o.horizon / o.interval) as usize,
        slots: (86_400 / o.interval).max(1) as usize,
        neighbours,
    };
    let values = &series.values;
    let rows = values.len();
    let train_end = (rows as f64 * o.train).floor() as usize;
    let train = windows(0, train_end, &setup);
    let test = windows(train_end, rows, &setup);
    if train.len() < 10 || test.is_empty() {
        return Err(bad(format!(
            "{rows} rows are too few for a {}-step input and a {}-step horizon with --train {}",
            setup.lags, setup.horizon, o.train
        )));
    }
    if o.model == "online" {
        return online_report(o, &series, &setup, train_end, &train, &test);
    }
    let candidates: Vec<ModelKind> = match o.model.as_str() {
        "auto" => std::iter::once(ModelKind::Last)
            .chain(std::iter::once(ModelKind::Average))
            .chain(LAMBDAS.iter().map(|l| ModelKind::Ridge { lambda: *l }))
            .collect(),
        "last" => vec![ModelKind::Last],
        "average" => vec![ModelKind::Average],
        "ridge" => LAMBDAS
            .iter()
            .map(|l| ModelKind::Ridge { lambda: *l })
            .collect(),
        other => {
            return Err(bad(format!(
                "unknown model {other:?}: auto, last, average or ridge"
            )))
        }
    };
    let started = std::time::Instant::now();
    // Selection: fit on the first four fifths of the training windows, score on the
    // last fifth (whose targets stay inside the training rows).
    let cut = train.len() * 4 / 5;
    let (fit_part, val_part) = train.split_at(cut);
    let fit_end = fit_part.last().map_or(0, |t| t + setup.horizon + 1);
    let mut selection = Vec::new();
    let mut best: Option<(ModelKind, f64)> = None;
    for kind in candidates {
        let m = fit(kind, values, &setup, fit_end, fit_part);
        let rmse = score(&m, values, &setup, val_part).pooled.rmse;
        selection.push(Candidate {
            model: kind.to_string(),
            validation_rmse: rmse,
        });
        if best.is_none_or(|(_, b)| rmse < b) {
            best = Some((kind, rmse));
        }
    }
    let (kind, _) = best.ok_or_else(|| bad("no model to evaluate".into()))?;
    let model = fit(kind, values, &setup, train_end, &train);
    let fit_seconds = started.elapsed().as_secs_f64();
    let figures = score(&model, values, &setup, &test);
    let last = fit(ModelKind::Last, values, &setup, train_end, &train);
    let average = fit(ModelKind::Average, values, &setup, train_end, &train);
    if let Some(path) = &o.predictions_out {
        write_predictions(path, &series, &model, &setup, &test)?;
    }
    Ok(EvalReport {
        model: kind.to_string(),
        figures,
        last_value: score(&last, values, &setup, &test),
        historical_average: score(&average, values, &setup, &test),
        selection,
        sensors: series.width(),
        rows,
        train_rows: train_end,
        lags: setup.lags,
        horizon_steps: setup.horizon,
        test_windows: test.len(),
        fit_seconds,
    })
}

/// The online forecaster (what the live twin runs) on the same split: it reads the
/// series once, row by row, learning from each row as it arrives and never from a
/// row before its time; the figures are its forecasts made at the test windows.
fn online_report(
    o: &EvalOptions,
    series: &Series,
    setup: &Setup,
    train_end: usize,
    train: &[usize],
    test: &[usize],
) -> Result<EvalReport, ForecastError> {
    use crate::online::{Online, OnlineSettings};
    let started = std::time::Instant::now();
    let mut online = Online::new(OnlineSettings {
        lags: setup.lags,
        horizons: (1..=setup.horizon).collect(),
        ..OnlineSettings::default()
    });
    let values = &series.values;
    let keys: Vec<String> = (0..series.width()).map(|s| s.to_string()).collect();
    let mut steps = vec![Acc::default(); setup.horizon];
    let first_test = test.first().copied().unwrap_or(usize::MAX);
    let mut out = o
        .predictions_out
        .as_ref()
        .map(|p| std::fs::File::create(p).map(std::io::BufWriter::new))
        .transpose()?;
    if let Some(w) = out.as_mut() {
        let ids: Vec<String> = series.sensors.iter().map(|s| csv_field(s)).collect();
        writeln!(w, "row,step,{}", ids.join(","))?;
    }
    let last_test = test.last().copied().unwrap_or(0);
    for t in 0..=last_test.min(values.len().saturating_sub(1)) {
        let forecasts: Vec<Vec<f64>> = (0..series.width())
            .map(|s| {
                online
                    .observe(&keys[s], values[t][s])
                    .iter()
                    .map(|f| f.value)
                    .collect()
            })
            .collect();
        if t >= first_test && test.binary_search(&t).is_ok() {
            for h in 1..=setup.horizon {
                let row: Vec<f64> = forecasts
                    .iter()
                    .enumerate()
                    .map(|(s, f)| f.get(h - 1).copied().unwrap_or(values[t][s]))
                    .collect();
                for (s, p) in row.iter().enumerate() {
                    steps[h - 1].add(values[t + h][s], *p);
                }
                if let Some(w) = out.as_mut() {
                    let cells: Vec<String> = row.iter().map(f64::to_string).collect();
                    writeln!(w, "{},{h},{}", t + h, cells.join(","))?;
                }
            }
        }
    }
    if let Some(mut w) = out {
        w.flush()?;
    }
    let mut all = Acc::default();
    steps.iter().for_each(|a| all.merge(a));
    let last = fit(ModelKind::Last, values, setup, train_end, train);
    let average = fit(ModelKind::Average, values, setup, train_end, train);
    Ok(EvalReport {
        model: "online".into(),
        figures: Figures {
            pooled: all.finish(),
            per_step: steps.iter().map(Acc::finish).collect(),
        },
        last_value: score(&last, values, setup, test),
        historical_average: score(&average, values, setup, test),
        selection: Vec::new(),
        sensors: series.width(),
        rows: values.len(),
        train_rows: train_end,
        lags: setup.lags,
        horizon_steps: setup.horizon,
        test_windows: test.len(),
        fit_seconds: started.elapsed().as_secs_f64(),
    })
}

/// `row,step,<sensor ids…>`: `row` is the 0-based data row predicted.
fn write_predictions(
    path: &std::path::Path,
    series: &Series,
    model: &Fitted,
    setup: &Setup,
    test: &[usize],
) -> Result<(), ForecastError> {
    let file = std::fs::File::create(path)?;
    let mut w = std::io::BufWriter::new(file);
    let mut header = String::from("row,step");
    for s in &series.sensors {
        header.push(',');
        header.push_str(&csv_field(s));
    }
    writeln!(w, "{header}")?;
    let mut pred = Vec::new();
    for &t in test {
        for h in 1..=setup.horizon {
            model.predict(&series.values, setup, t, h, &mut pred);
            write!(w, "{},{h}", t + h)?;
            for p in &pred {
                write!(w, ",{p}")?;
            }
            writeln!(w)?;
        }
    }
    w.flush()?;
    Ok(())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `300`, `300s`, `5m`, `1h`: seconds.
pub fn parse_span(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a duration such as 5m, 300s or 1h"))?;
    let mult = match unit {
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        _ => return Err(format!("{s:?}: the unit must be s, m or h")),
    };
    n.checked_mul(mult)
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("{s:?}: must be positive"))
}
