//! `citybrain forecast eval`: evaluate the forecasting models on any wide CSV of
//! sensor readings (docs/forecast.md).

use std::path::PathBuf;

use citybrain_forecast::eval::{evaluate, parse_span, EvalOptions};
use clap::{Args, Subcommand};

#[derive(Args)]
pub struct ForecastArgs {
    #[command(subcommand)]
    command: ForecastCommand,
}

#[derive(Subcommand)]
enum ForecastCommand {
    /// Train on the first part of a series, test on the rest; prints the figures
    /// (JSON, last line).
    Eval(EvalArgs),
}

#[derive(Args)]
struct EvalArgs {
    /// Wide CSV: a header of sensor ids, one row per time step, no timestamp column.
    #[arg(long)]
    input: PathBuf,
    /// Time between rows (5m, 300s, ...).
    #[arg(long, value_parser = parse_span)]
    interval: u64,
    /// How far ahead: every step up to it is predicted (15m, 1h, ...).
    #[arg(long, value_parser = parse_span)]
    horizon: u64,
    /// Share of the rows to train on (the rest is the test part).
    #[arg(long, default_value_t = 0.8)]
    train: f64,
    /// auto (chosen on a validation slice of the training part), last, average, ridge.
    #[arg(long, default_value = "auto")]
    model: String,
    /// N×N neighbour weights (no header, sensor order).
    #[arg(long)]
    adjacency: Option<PathBuf>,
    /// Write the test predictions: `row,step,<sensor ids…>`.
    #[arg(long)]
    predictions_out: Option<PathBuf>,
}

pub fn forecast(a: ForecastArgs) -> anyhow::Result<()> {
    match a.command {
        ForecastCommand::Eval(e) => {
            let report = evaluate(&EvalOptions {
                input: e.input,
                adjacency: e.adjacency,
                interval: e.interval,
                horizon: e.horizon,
                train: e.train,
                model: e.model,
                predictions_out: e.predictions_out,
            })?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
    }
}
