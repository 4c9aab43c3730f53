//! Wide CSV series: a header of sensor ids, then one row per time step (no timestamp
//! column), as the public loop-detector data sets (METR-LA/LOS-loop, PeMS, SZ-taxi in
//! the T-GCN repository) are distributed.

use std::path::Path;

use crate::ForecastError;

#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub sensors: Vec<String>,
    /// `values[t][s]`: sensor `s` at step `t`.
    pub values: Vec<Vec<f64>>,
}

impl Series {
    pub fn steps(&self) -> usize {
        self.values.len()
    }
    pub fn width(&self) -> usize {
        self.sensors.len()
    }

    pub fn read(path: &Path) -> Result<Series, ForecastError> {
        let err = |message: String| ForecastError::Input {
            path: path.display().to_string(),
            message,
        };
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_path(path)
            .map_err(|e| err(e.to_string()))?;
        let sensors: Vec<String> = rdr
            .headers()
            .map_err(|e| err(e.to_string()))?
            .iter()
            .map(str::to_string)
            .collect();
        if sensors.is_empty() || sensors.iter().all(String::is_empty) {
            return Err(err("the header names no sensors".into()));
        }
        let mut values = Vec::new();
        for (i, rec) in rdr.records().enumerate() {
            let rec = rec.map_err(|e| err(e.to_string()))?;
            if rec.len() != sensors.len() {
                return Err(err(format!(
                    "row {} has {} values, the header {} sensors",
                    i + 1,
                    rec.len(),
                    sensors.len()
                )));
            }
            let row = rec
                .iter()
                .enumerate()
                .map(|(j, v)| {
                    v.parse::<f64>()
                        .ok()
                        .filter(|x| x.is_finite())
                        .ok_or_else(|| {
                            err(format!(
                                "row {}, sensor {}: not a number: {v:?}",
                                i + 1,
                                sensors[j]
                            ))
                        })
                })
                .collect::<Result<Vec<f64>, _>>()?;
            values.push(row);
        }
        if values.is_empty() {
            return Err(err("no data rows".into()));
        }
        Ok(Series { sensors, values })
    }
}

/// An N×N weight matrix (no header, sensor order); the diagonal is ignored.
pub fn read_adjacency(path: &Path, n: usize) -> Result<Vec<Vec<f64>>, ForecastError> {
    let err = |message: String| ForecastError::Input {
        path: path.display().to_string(),
        message,
    };
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| err(e.to_string()))?;
    let mut out = Vec::with_capacity(n);
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| err(e.to_string()))?;
        if rec.len() != n {
            return Err(err(format!(
                "row {} has {} weights; the series has {n} sensors",
                i + 1,
                rec.len()
            )));
        }
        let row = rec
            .iter()
            .map(|v| v.parse::<f64>().ok().filter(|x| x.is_finite() && *x >= 0.0))
            .collect::<Option<Vec<f64>>>()
            .ok_or_else(|| {
                err(format!(
                    "row {}: weights must be non-negative numbers",
                    i + 1
                ))
            })?;
        out.push(row);
    }
    if out.len() != n {
        return Err(err(format!(
            "{} rows; the series has {n} sensors",
            out.len()
        )));
    }
    Ok(out)
}
