#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure
//! The evaluation on synthetic loop-detector data made here: free-flow speeds with a
//! morning and an evening rush at every sensor, congestion that travels upstream along
//! a corridor (each sensor sees its downstream neighbour's slowdown a step later), and
//! measurement noise. The models must learn what is learnable and the figures must be
//! the ones the predictions file gives.

use std::path::Path;

use citybrain_forecast::eval::{evaluate, parse_span, EvalOptions};
use rand_core::{Rng, SeedableRng};

const SENSORS: usize = 6;
const DAYS: usize = 7;
const SLOTS: usize = 288;

fn uniform(r: &mut rand_pcg::Pcg64) -> f64 {
    (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

fn normal(r: &mut rand_pcg::Pcg64) -> f64 {
    // Box–Muller.
    let (u, v) = (uniform(r).max(1e-12), uniform(r));
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

/// Speeds (km/h): sensor 0 is the most downstream of a corridor.
fn synthetic(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let mut r = rand_pcg::Pcg64::seed_from_u64(11);
    let steps = DAYS * SLOTS;
    let mut v = vec![vec![0.0; SENSORS]; steps];
    let mut shock = [0.0; SENSORS];
    for (t, row) in v.iter_mut().enumerate() {
        let slot = (t % SLOTS) as f64 / SLOTS as f64 * 24.0;
        let rush = |c: f64, w: f64, depth: f64| depth * (-((slot - c) / w).powi(2)).exp();
        // Working days (as in a week of loop data): the same two rushes each day.
        let dip = rush(8.0, 1.2, 30.0) + rush(17.5, 1.5, 25.0);
        for s in 0..SENSORS {
            // Congestion shock: persistent, and passed upstream with a step of delay.
            let from_downstream = if s > 0 { 0.6 * shock[s - 1] } else { 0.0 };
            shock[s] = 0.8 * shock[s] + from_downstream * 0.3 + 2.0 * normal(&mut r);
            let free = 65.0 - 2.0 * s as f64;
            row[s] = (free - dip - shock[s].abs() + 1.5 * normal(&mut r)).clamp(3.0, 80.0);
        }
    }
    let input = dir.join("speed.csv");
    let mut text = (0..SENSORS)
        .map(|s| format!("det{s}"))
        .collect::<Vec<_>>()
        .join(",")
        + "\n";
    for row in &v {
        text += &row
            .iter()
            .map(|x| format!("{x:.3}"))
            .collect::<Vec<_>>()
            .join(",");
        text += "\n";
    }
    std::fs::write(&input, text).unwrap();
    let adj = dir.join("adj.csv");
    let mut a = String::new();
    for i in 0..SENSORS {
        let row: Vec<&str> = (0..SENSORS)
            .map(|j| if i.abs_diff(j) == 1 { "1" } else { "0" })
            .collect();
        a += &row.join(",");
        a += "\n";
    }
    std::fs::write(&adj, a).unwrap();
    (input, adj)
}

fn options(input: &Path) -> EvalOptions {
    EvalOptions {
        input: input.to_path_buf(),
        adjacency: None,
        interval: 300,
        horizon: 900,
        train: 0.8,
        model: "auto".into(),
        predictions_out: None,
    }
}

#[test]
fn the_chosen_model_beats_both_baselines_and_the_file_gives_the_same_figures() {
    let dir = tempfile::tempdir().unwrap();
    let (input, adj) = synthetic(dir.path());
    let pred = dir.path().join("pred.csv");
    let mut o = options(&input);
    o.adjacency = Some(adj);
    o.predictions_out = Some(pred.clone());
    let r = evaluate(&o).unwrap();
    assert_eq!((r.sensors, r.lags, r.horizon_steps), (SENSORS, 12, 3));
    assert_eq!(r.train_rows, (DAYS * SLOTS) * 8 / 10);
    assert!(r.model.starts_with("ridge"), "{}", r.model);
    assert!(r.figures.pooled.rmse < r.last_value.pooled.rmse, "{r:?}");
    assert!(
        r.figures.pooled.rmse < r.historical_average.pooled.rmse,
        "{r:?}"
    );
    assert!(r.figures.pooled.accuracy > r.last_value.pooled.accuracy);
    // Errors grow with the step.
    let p = &r.figures.per_step;
    assert!(p[0].rmse < p[1].rmse && p[1].rmse < p[2].rmse, "{p:?}");
    // Recompute the pooled RMSE and MAE from the predictions file and the input.
    let data: Vec<Vec<f64>> = std::fs::read_to_string(&input)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(|x| x.parse().unwrap()).collect())
        .collect();
    let text = std::fs::read_to_string(&pred).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "row,step,det0,det1,det2,det3,det4,det5"
    );
    let (mut se, mut ae, mut n) = (0.0, 0.0, 0.0);
    let mut rows = 0;
    for l in lines {
        let f: Vec<f64> = l.split(',').map(|x| x.parse().unwrap()).collect();
        let (row, step) = (f[0] as usize, f[1] as usize);
        assert!((1..=3).contains(&step));
        assert!(
            row >= r.train_rows + 12,
            "a test prediction reads only test rows"
        );
        for s in 0..SENSORS {
            let e = data[row][s] - f[2 + s];
            se += e * e;
            ae += e.abs();
            n += 1.0;
        }
        rows += 1;
    }
    assert_eq!(rows, r.test_windows * 3);
    assert!(((se / n).sqrt() - r.figures.pooled.rmse).abs() < 1e-6);
    assert!((ae / n - r.figures.pooled.mae).abs() < 1e-6);
}

#[test]
fn the_baselines_are_what_they_say() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = synthetic(dir.path());
    let mut o = options(&input);
    o.model = "last".into();
    let r = evaluate(&o).unwrap();
    assert_eq!(r.model, "last");
    assert_eq!(r.figures.pooled, r.last_value.pooled);
    o.model = "average".into();
    let r = evaluate(&o).unwrap();
    assert_eq!(r.figures.pooled, r.historical_average.pooled);
}

#[test]
fn bad_input_gets_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.csv");
    std::fs::write(&p, "a,b\n1,2\n3\n").unwrap();
    let e = evaluate(&options(&p)).unwrap_err().to_string();
    assert!(e.contains("row 2 has 1 values"), "{e}");
    std::fs::write(&p, "a,b\n1,zz\n").unwrap();
    let e = evaluate(&options(&p)).unwrap_err().to_string();
    assert!(e.contains("sensor b: not a number"), "{e}");
    std::fs::write(&p, "a,b\n1,2\n3,4\n").unwrap();
    let e = evaluate(&options(&p)).unwrap_err().to_string();
    assert!(e.contains("too few"), "{e}");
    let mut o = options(&p);
    o.horizon = 400;
    let e = evaluate(&o).unwrap_err().to_string();
    assert!(e.contains("multiple of the interval"), "{e}");
    assert_eq!(parse_span("5m"), Ok(300));
    assert_eq!(parse_span("1h"), Ok(3600));
    assert_eq!(parse_span("300"), Ok(300));
    assert!(parse_span("5d").is_err() && parse_span("0m").is_err() && parse_span("m").is_err());
}

#[test]
fn the_online_forecaster_learns_as_it_reads_and_beats_persistence() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = synthetic(dir.path());
    let pred = dir.path().join("online.csv");
    let mut o = options(&input);
    o.model = "online".into();
    o.predictions_out = Some(pred.clone());
    let r = evaluate(&o).unwrap();
    assert_eq!(r.model, "online");
    assert!(r.figures.pooled.rmse < r.last_value.pooled.rmse, "{r:?}");
    // The file holds exactly the scored forecasts, for test rows only.
    let text = std::fs::read_to_string(&pred).unwrap();
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), r.test_windows * 3);
    assert!(rows
        .iter()
        .all(|l| l.split(',').next().unwrap().parse::<usize>().unwrap() > r.train_rows));
}

mod parsers {
    use citybrain_forecast::data::{read_adjacency, Series};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        /// Whatever the input files hold, reading them answers, never panics; and a
        /// well-formed series reads back exactly.
        #[test]
        fn reading_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("x.csv");
            std::fs::write(&p, &bytes).unwrap();
            let _ = Series::read(&p);
            let _ = read_adjacency(&p, 3);
        }

        #[test]
        fn well_formed_series_read_back(rows in proptest::collection::vec(proptest::collection::vec(-1e6f64..1e6, 3), 1..20)) {
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("x.csv");
            let mut text = String::from("a,b,c\n");
            for r in &rows {
                text += &r.iter().map(|v| format!("{v:?}")).collect::<Vec<_>>().join(",");
                text += "\n";
            }
            std::fs::write(&p, text).unwrap();
            let s = Series::read(&p).unwrap();
            prop_assert_eq!(s.sensors, vec!["a", "b", "c"]);
            prop_assert_eq!(s.values, rows);
        }
    }
}
