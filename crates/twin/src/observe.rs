//! What the twin reports to the city platform: detector readings (one per detector per
//! period, as a roadside controller would send them) and indicators per signalised
//! intersection and for the whole network.
//!
//! Definitions (per period, over the lanes entering each signal):
//! - `queue`: stopped vehicles (speed < 0.1 m/s), averaged over the period's steps;
//! - `mean_speed_kmh`: vehicle-weighted mean speed;
//! - `delay_s`: vehicle-seconds lost against free flow (Σ n·(1 − v/v_free)·Δt) per
//!   vehicle that crossed the stop-line detectors: control delay per vehicle;
//! - `travel_time_index`: the vehicles' travel time over their lanes at the speeds
//!   driven, divided by the same at free flow (1 = free flow; the congestion index of
//!   the report's "travel-time index").

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Reading {
    pub detector: String,
    pub lane: String,
    pub edge: String,
    /// Period, simulation seconds.
    pub begin: f64,
    pub end: f64,
    /// Vehicles that passed.
    pub count: f64,
    /// Vehicles per hour.
    pub flow: f64,
    /// Mean speed of the vehicles that passed (km/h); none when none passed.
    pub speed_kmh: Option<f64>,
    /// Share of the period the detector was occupied (0–1).
    pub occupancy: f64,
    /// Network coordinates of the detector.
    pub x: f64,
    pub y: f64,
}

impl Reading {
    /// Where the detector is, in WGS 84 degrees rounded to 1e-7 (about a centimetre).
    pub fn lon_lat(&self, geo: &crate::geo::Geo) -> (f64, f64) {
        let (lon, lat) = geo.lon_lat(self.x, self.y);
        ((lon * 1e7).round() / 1e7, (lat * 1e7).round() / 1e7)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Indicator {
    /// The traffic light's id, or `network`.
    pub id: String,
    pub begin: f64,
    pub end: f64,
    pub queue: f64,
    pub vehicles: f64,
    pub mean_speed_kmh: Option<f64>,
    pub delay_s: Option<f64>,
    pub travel_time_index: Option<f64>,
}

/// Per detector, over the running period.
#[derive(Debug, Clone, Default)]
pub(crate) struct DetectorAcc {
    pub count: f64,
    pub speed_sum: f64,
    pub speed_n: f64,
    pub occupancy_sum: f64,
}

/// One lane at one step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LaneStep {
    pub vehicles: f64,
    pub halting: f64,
    /// Mean speed (m/s).
    pub speed: f64,
    pub free_speed: f64,
    pub length: f64,
}

/// Per intersection (and one more for the network), over the running period.
#[derive(Debug, Clone, Default)]
pub(crate) struct AreaAcc {
    pub halting: f64,
    pub vehicles: f64,
    pub speed_weighted: f64,
    pub lost: f64,
    pub tt_actual: f64,
    pub tt_free: f64,
    pub passed: f64,
}

impl AreaAcc {
    /// Adds one lane's state for one step of `dt` seconds (`share` of the lane).
    pub fn lane(&mut self, share: f64, l: &LaneStep, dt: f64) {
        let n = l.vehicles * share;
        self.halting += l.halting * share;
        self.vehicles += n;
        if n > 0.0 && l.free_speed > 0.0 {
            let v = l.speed.clamp(0.0, l.free_speed);
            self.speed_weighted += n * v;
            self.lost += n * (1.0 - v / l.free_speed) * dt;
            self.tt_actual += n * l.length / v.max(0.5);
            self.tt_free += n * l.length / l.free_speed;
        }
    }

    pub fn finish(&self, id: &str, begin: f64, end: f64, steps: f64) -> Indicator {
        let steps = steps.max(1.0);
        Indicator {
            id: id.to_string(),
            begin,
            end,
            queue: self.halting / steps,
            vehicles: self.vehicles / steps,
            mean_speed_kmh: (self.vehicles > 0.0)
                .then(|| self.speed_weighted / self.vehicles * 3.6),
            delay_s: (self.passed > 0.0).then(|| self.lost / self.passed),
            travel_time_index: (self.tt_free > 0.0).then(|| self.tt_actual / self.tt_free),
        }
    }
}

/// A point `pos` metres along a polyline (its end when beyond).
pub fn along(shape: &[(f64, f64)], pos: f64) -> (f64, f64) {
    let mut left = pos.max(0.0);
    for w in shape.windows(2) {
        let (a, b) = (w[0], w[1]);
        let d = ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt();
        if d > 0.0 && left <= d {
            let f = left / d;
            return (a.0 + f * (b.0 - a.0), a.1 + f * (b.1 - a.1));
        }
        left -= d;
    }
    shape.last().copied().unwrap_or((0.0, 0.0))
}

/// A period's detector readings as the twin's roadside controller sends them to the
/// platform (ingest source `sumo-detectors`, examples/mappings/sumo-detectors.yaml).
/// `observed` is the Unix time (s) the period ended.
pub fn detector_payload(
    readings: &[Reading],
    geo: &crate::geo::Geo,
    observed: i64,
) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = readings
        .iter()
        .map(|r| {
            let (lon, lat) = r.lon_lat(geo);
            let mut v = serde_json::json!({
                "detector": crate::entities::sanitize(&r.detector),
                "lane": r.lane,
                "segment": crate::entities::sanitize(&r.edge),
                "ts": observed,
                "count": r.count,
                "flow": (r.flow * 10.0).round() / 10.0,
                "occupancy": (r.occupancy * 1000.0).round() / 1000.0,
                "lat": lat,
                "lon": lon,
                "period": r.end - r.begin,
            });
            if let Some(s) = r.speed_kmh {
                v["speed"] = serde_json::json!((s * 10.0).round() / 10.0);
            }
            v
        })
        .collect();
    serde_json::json!({ "readings": rows })
}

/// One forecast of a detector's speed: minutes ahead, value, band (km/h).
pub type SpeedForecast = (u64, f64, f64, f64);

/// Online speed forecasts per detector (ingest source `sumo-forecasts`): for each
/// reading with a speed (km/h), the forecasts at the given horizons.
pub fn forecast_payload(
    rows: &[(&Reading, Vec<SpeedForecast>)],
    geo: &crate::geo::Geo,
    observed: i64,
) -> serde_json::Value {
    let r1 = |x: f64| (x.max(0.0) * 10.0).round() / 10.0;
    let list: Vec<serde_json::Value> = rows
        .iter()
        .filter(|(_, f)| !f.is_empty())
        .map(|(r, f)| {
            let (lon, lat) = r.lon_lat(geo);
            let mut v = serde_json::json!({
                "detector": crate::entities::sanitize(&r.detector),
                "ts": observed,
                "lat": lat,
                "lon": lon,
            });
            for (minutes, value, lower, upper) in f {
                v[format!("s{minutes}")] = serde_json::json!(r1(*value));
                v[format!("s{minutes}_lo")] = serde_json::json!(r1(*lower));
                v[format!("s{minutes}_hi")] = serde_json::json!(r1(*upper));
            }
            v
        })
        .collect();
    serde_json::json!({ "forecasts": list })
}

/// A period's indicators (ingest source `sumo-indicators`).
pub fn indicator_payload(indicators: &[Indicator], observed: i64) -> serde_json::Value {
    let round = |v: Option<f64>| v.map(|x| (x * 100.0).round() / 100.0);
    let rows: Vec<serde_json::Value> = indicators
        .iter()
        .map(|i| {
            serde_json::json!({
                "area": crate::entities::sanitize(&i.id),
                "ts": observed,
                "queue": (i.queue * 100.0).round() / 100.0,
                "vehicles": (i.vehicles * 100.0).round() / 100.0,
                "speed": round(i.mean_speed_kmh),
                "delay": round(i.delay_s),
                "tti": round(i.travel_time_index),
                "congested": i.travel_time_index.is_some_and(|t| t >= 1.5),
            })
        })
        .collect();
    serde_json::json!({ "indicators": rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_flow_has_index_one_and_no_delay() {
        let mut a = AreaAcc::default();
        let free = LaneStep {
            vehicles: 4.0,
            halting: 0.0,
            speed: 13.0,
            free_speed: 13.0,
            length: 100.0,
        };
        a.lane(1.0, &free, 1.0);
        a.passed = 4.0;
        let i = a.finish("x", 0.0, 1.0, 1.0);
        assert_eq!(i.travel_time_index, Some(1.0));
        assert_eq!(i.delay_s, Some(0.0));
        assert!((i.mean_speed_kmh.unwrap() - 46.8).abs() < 1e-9);
    }

    #[test]
    fn stopped_vehicles_lose_their_whole_step() {
        let mut a = AreaAcc::default();
        // 10 stopped vehicles for 30 steps, 5 of them then pass.
        for _ in 0..30 {
            let stopped = LaneStep {
                vehicles: 10.0,
                halting: 10.0,
                speed: 0.0,
                free_speed: 10.0,
                length: 50.0,
            };
            a.lane(1.0, &stopped, 1.0);
        }
        a.passed = 5.0;
        let i = a.finish("x", 0.0, 30.0, 30.0);
        assert_eq!(i.queue, 10.0);
        assert_eq!(i.delay_s, Some(60.0));
        assert_eq!(i.travel_time_index, Some(20.0));
    }

    #[test]
    fn points_along_a_polyline() {
        let s = [(0.0, 0.0), (10.0, 0.0), (10.0, 10.0)];
        assert_eq!(along(&s, 5.0), (5.0, 0.0));
        assert_eq!(along(&s, 15.0), (10.0, 5.0));
        assert_eq!(along(&s, 50.0), (10.0, 10.0));
    }
}
