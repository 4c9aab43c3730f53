//! Response times with and without signal preemption: the same seeded calls, the
//! same stations, the same controller and SUMO seed, run twice — once with the
//! lights giving ambulances green and once without — over several seeds. The other
//! traffic's delay is compared between the two runs, ambulances left out.

use serde::Serialize;

use crate::control::ControllerKind;
use crate::emergency::{
    random_calls, spread_stations, Arrival, Call, Dispatch, EmergencyOptions, Station,
};
use crate::episode::{run_with, Options, Report};
use crate::net::Network;
use crate::sumo::{Sumo, SumoConfig};
use crate::TwinError;

/// One episode with calls: the indicators, the dispatches, the arrivals, and the
/// calls no ambulance reached before the end.
#[derive(Debug, Clone, Serialize)]
pub struct Episode {
    pub report: Report,
    pub dispatches: Vec<Dispatch>,
    pub arrivals: Vec<Arrival>,
    pub unreached: Vec<String>,
}

/// Plays an episode, making each call at its time.
pub fn respond(sumo: &Sumo, opts: &Options, calls: &[(f64, Call)]) -> Result<Episode, TwinError> {
    if opts.emergency.is_none() {
        return Err(TwinError::Config(
            "emergency response is not enabled in the options".into(),
        ));
    }
    let mut next = 0;
    let mut dispatches = Vec::new();
    let mut arrivals = Vec::new();
    let report = run_with(sumo, opts, |s| {
        while next < calls.len() && calls[next].0 <= s.now + 1e-9 {
            s.call(calls[next].1.clone())?;
            next += 1;
        }
        dispatches.extend(s.take_dispatches());
        arrivals.extend(s.take_arrivals());
        Ok(())
    })?;
    let unreached = calls
        .iter()
        .map(|(_, c)| c.id.clone())
        .filter(|id| !arrivals.iter().any(|a: &Arrival| &a.call == id))
        .collect();
    Ok(Episode {
        report,
        dispatches,
        arrivals,
        unreached,
    })
}

/// What to evaluate.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub opts: Options,
    /// Stations (default: this many spread over the network).
    pub stations: Vec<Station>,
    pub station_count: usize,
    pub calls: usize,
    pub seeds: Vec<u64>,
    /// Calls come after this many seconds (the peak building up) and at least
    /// `margin` seconds before the end.
    pub warmup: f64,
    pub margin: f64,
}

/// Response-time figures over a set of calls.
/// Response is from the call to arrival at the scene; drive from dispatch to
/// arrival (the part signals act on; they differ when a call waited for a unit).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Summary {
    pub calls: usize,
    pub reached: usize,
    pub mean_response_s: f64,
    pub median_response_s: f64,
    pub p90_response_s: f64,
    pub max_response_s: f64,
    pub mean_drive_s: f64,
    pub median_drive_s: f64,
    pub p90_drive_s: f64,
}

impl Summary {
    pub fn of(calls: usize, arrivals: &[&Arrival]) -> Summary {
        let response: Vec<f64> = arrivals.iter().map(|a| a.response_s).collect();
        let drive: Vec<f64> = arrivals
            .iter()
            .map(|a| a.arrived_at - a.dispatched_at)
            .collect();
        let r = Stats::of(&response);
        let d = Stats::of(&drive);
        Summary {
            calls,
            reached: arrivals.len(),
            mean_response_s: r.mean,
            median_response_s: r.median,
            p90_response_s: r.p90,
            max_response_s: r.max,
            mean_drive_s: d.mean,
            median_drive_s: d.median,
            p90_drive_s: d.p90,
        }
    }
}

struct Stats {
    mean: f64,
    median: f64,
    p90: f64,
    max: f64,
}

impl Stats {
    fn of(values: &[f64]) -> Stats {
        let mut r: Vec<f64> = values.to_vec();
        r.sort_by(f64::total_cmp);
        let pick = |q: f64| {
            if r.is_empty() {
                return 0.0;
            }
            // Nearest rank.
            let k = ((q * r.len() as f64).ceil() as usize).clamp(1, r.len());
            r[k - 1]
        };
        Stats {
            mean: if r.is_empty() {
                0.0
            } else {
                r.iter().sum::<f64>() / r.len() as f64
            },
            median: pick(0.5),
            p90: pick(0.9),
            max: r.last().copied().unwrap_or(0.0),
        }
    }
}

/// The other traffic's indicators, averaged over the seeds' runs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OtherTraffic {
    pub mean_delay_all_s: f64,
    pub mean_travel_time_s: f64,
    pub throughput: f64,
}

/// One call answered in both runs of a seed.
#[derive(Debug, Clone, Serialize)]
pub struct Pair {
    pub seed: u64,
    pub call: String,
    pub edge: String,
    pub unit: String,
    pub without_s: Option<f64>,
    pub with_s: Option<f64>,
    /// From dispatch to arrival.
    pub without_drive_s: Option<f64>,
    pub with_drive_s: Option<f64>,
    pub preempted_lights: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub controller: ControllerKind,
    pub seeds: Vec<u64>,
    pub stations: Vec<Station>,
    pub calls_per_run: usize,
    pub preempt_distance_m: f64,
    pub without: Summary,
    pub with: Summary,
    /// Over the calls reached in both runs (the same calls on both sides): mean
    /// response and drive times with preemption against without (%; negative:
    /// faster); `null` when no call was reached in both.
    pub response_change_pct: Option<f64>,
    pub drive_change_pct: Option<f64>,
    /// Calls reached in both runs: how many were faster with preemption, and the
    /// mean time saved (s).
    pub paired_calls: usize,
    pub paired_faster: usize,
    pub paired_mean_saving_s: f64,
    pub other_traffic_without: OtherTraffic,
    pub other_traffic_with: OtherTraffic,
    /// The other traffic's all-vehicles delay with preemption against without (%).
    pub other_delay_change_pct: Option<f64>,
    pub pairs: Vec<Pair>,
    pub wall_seconds: f64,
}

/// Runs every seed without and with preemption and compares.
pub fn compare(sumo: &Sumo, ev: &Evaluation) -> Result<Comparison, TwinError> {
    let started = std::time::Instant::now();
    if ev.seeds.is_empty() || ev.calls == 0 {
        return Err(TwinError::Config(
            "emergency evaluation: give at least one seed and one call".into(),
        ));
    }
    let cfg = SumoConfig::load(&ev.opts.sumocfg)?;
    let net = Network::load(&cfg.net)?;
    let begin = cfg.begin.unwrap_or(0.0);
    let end = ev
        .opts
        .duration
        .map(|d| begin + d)
        .or(cfg.end)
        .ok_or_else(|| {
            TwinError::Config(
                "emergency evaluation: the configuration has no end; give a duration".into(),
            )
        })?;
    if !(ev.warmup.is_finite() && ev.warmup >= 0.0 && ev.margin.is_finite() && ev.margin >= 0.0) {
        return Err(TwinError::Config(format!(
            "emergency evaluation: warm-up and margin must be zero or more seconds, got {} and {}",
            ev.warmup, ev.margin
        )));
    }
    let (from, to) = (begin + ev.warmup, end - ev.margin);
    if to <= from {
        return Err(TwinError::Config(format!(
            "emergency evaluation: no time for calls between {from} s and {to} s \
             (warm-up {} s, margin {} s)",
            ev.warmup, ev.margin
        )));
    }
    let stations = if ev.stations.is_empty() {
        spread_stations(&net, ev.station_count)
    } else {
        ev.stations.clone()
    };
    if stations.is_empty() {
        return Err(TwinError::Config(
            "emergency evaluation: the network has no edge for a station".into(),
        ));
    }
    let base = ev
        .opts
        .emergency
        .clone()
        .unwrap_or_else(|| EmergencyOptions::new(Vec::new(), true));
    let mut pairs = Vec::new();
    let (mut without, mut with) = (Vec::new(), Vec::new());
    let (mut other_without, mut other_with) = (Vec::new(), Vec::new());
    for &seed in &ev.seeds {
        let calls = random_calls(&net, ev.calls, from, to, seed);
        let mut runs = Vec::new();
        for preemption in [false, true] {
            let mut opts = ev.opts.clone();
            opts.seed = seed;
            opts.work_dir = ev.opts.work_dir.join(format!(
                "seed{seed}-{}",
                if preemption { "with" } else { "without" }
            ));
            opts.emergency = Some(EmergencyOptions {
                stations: stations.clone(),
                preemption,
                ..base.clone()
            });
            let episode = respond(sumo, &opts, &calls)?;
            tracing::info!(
                seed,
                preemption,
                reached = episode.arrivals.len(),
                "emergency run done"
            );
            runs.push(episode);
        }
        let [off, on] = <[Episode; 2]>::try_from(runs)
            .map_err(|_| TwinError::Config("emergency evaluation: two runs expected".into()))?;
        for (_, call) in &calls {
            let a = off.arrivals.iter().find(|a| a.call == call.id);
            let b = on.arrivals.iter().find(|a| a.call == call.id);
            pairs.push(Pair {
                seed,
                call: call.id.clone(),
                edge: call.edge.clone(),
                unit: b.or(a).map(|x| x.unit.clone()).unwrap_or_default(),
                without_s: a.map(|x| x.response_s),
                with_s: b.map(|x| x.response_s),
                without_drive_s: a.map(|x| x.arrived_at - x.dispatched_at),
                with_drive_s: b.map(|x| x.arrived_at - x.dispatched_at),
                preempted_lights: b.map_or(0, |x| x.preempted_lights),
            });
        }
        without.extend(off.arrivals);
        with.extend(on.arrivals);
        other_without.push(off.report);
        other_with.push(on.report);
    }
    let total = ev.calls * ev.seeds.len();
    let without = Summary::of(total, &without.iter().collect::<Vec<_>>());
    let with = Summary::of(total, &with.iter().collect::<Vec<_>>());
    let both: Vec<(f64, f64)> = pairs
        .iter()
        .filter_map(|p| Some((p.without_s?, p.with_s?)))
        .collect();
    let drives: Vec<(f64, f64)> = pairs
        .iter()
        .filter_map(|p| Some((p.without_drive_s?, p.with_drive_s?)))
        .collect();
    let paired_change = |v: &[(f64, f64)]| {
        let n = v.len() as f64;
        let a = v.iter().map(|x| x.0).sum::<f64>() / n;
        let b = v.iter().map(|x| x.1).sum::<f64>() / n;
        pct(a, b)
    };
    let paired_faster = both.iter().filter(|(a, b)| b < a).count();
    let paired_mean_saving_s = if both.is_empty() {
        0.0
    } else {
        both.iter().map(|(a, b)| a - b).sum::<f64>() / both.len() as f64
    };
    let other_traffic_without = other(&other_without);
    let other_traffic_with = other(&other_with);
    Ok(Comparison {
        controller: ev.opts.controller,
        seeds: ev.seeds.clone(),
        stations,
        calls_per_run: ev.calls,
        preempt_distance_m: base.preempt_distance,
        response_change_pct: paired_change(&both),
        drive_change_pct: paired_change(&drives),
        without,
        with,
        paired_calls: both.len(),
        paired_faster,
        paired_mean_saving_s,
        other_delay_change_pct: pct(
            other_traffic_without.mean_delay_all_s,
            other_traffic_with.mean_delay_all_s,
        ),
        other_traffic_without,
        other_traffic_with,
        pairs,
        wall_seconds: started.elapsed().as_secs_f64(),
    })
}

/// The change from `a` to `b` (%), `None` where `a` is zero or either is undefined.
fn pct(a: f64, b: f64) -> Option<f64> {
    (a.is_finite() && b.is_finite() && a != 0.0).then(|| (b - a) / a * 100.0)
}

fn other(reports: &[Report]) -> OtherTraffic {
    let n = reports.len().max(1) as f64;
    OtherTraffic {
        mean_delay_all_s: reports
            .iter()
            .map(|r| r.trips.mean_delay_all_s)
            .sum::<f64>()
            / n,
        mean_travel_time_s: reports
            .iter()
            .map(|r| r.trips.mean_travel_time_s)
            .sum::<f64>()
            / n,
        throughput: reports
            .iter()
            .map(|r| r.trips.throughput as f64)
            .sum::<f64>()
            / n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrival(called_at: f64, dispatched_at: f64, arrived_at: f64) -> Arrival {
        Arrival {
            call: "c".into(),
            unit: "u".into(),
            station: "s".into(),
            called_at,
            dispatched_at,
            arrived_at,
            response_s: arrived_at - called_at,
            eta_s: 0.0,
            preempted_lights: 0,
        }
    }

    #[test]
    fn summaries_use_nearest_rank_percentiles() {
        let all: Vec<Arrival> = [30.0, 10.0, 20.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0]
            .iter()
            .map(|r| arrival(0.0, 5.0, *r))
            .collect();
        let s = Summary::of(12, &all.iter().collect::<Vec<_>>());
        assert_eq!(s.calls, 12);
        assert_eq!(s.reached, 10);
        assert_eq!(s.mean_response_s, 55.0);
        assert_eq!(s.median_response_s, 50.0);
        assert_eq!(s.p90_response_s, 90.0);
        assert_eq!(s.max_response_s, 100.0);
        // The drive leaves out the 5 s before dispatch.
        assert_eq!(s.mean_drive_s, 50.0);
        assert_eq!(s.median_drive_s, 45.0);
        assert_eq!(Summary::of(3, &[]).reached, 0);
    }
}
